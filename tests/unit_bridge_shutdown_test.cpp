// The bridge's shutdown over an in-memory transport: told to stop (at high
// priority, as lulld does, so that an inbound flood cannot hold it back), it
// routes nothing more, still publishes what was queued before it, then
// publishes offline as the last message and quits.

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include <caf/all.hpp>

#include "actors/atoms.hpp"
#include "actors/mqtt_bridge.hpp"

using namespace lull;
using namespace std::chrono_literals;

namespace {

struct wire {
  std::mutex mu;
  std::vector<mqtt_message> published; ///< the disconnect's last message too
  bool disconnected = false;
  std::shared_ptr<transport_events> events;
};

class memory_transport : public mqtt_transport {
public:
  memory_transport(std::shared_ptr<wire> w, std::shared_ptr<transport_events> ev) : w_(w) {
    std::lock_guard<std::mutex> lock(w_->mu);
    w_->events = std::move(ev);
  }
  void connect() override { w_->events->on_connected(5); }
  void publish(const mqtt_message& m) override {
    std::lock_guard<std::mutex> lock(w_->mu);
    w_->published.push_back(m);
  }
  void subscribe(const std::vector<std::string>&, int) override {}
  void disconnect(const mqtt_message& last, std::chrono::milliseconds) override {
    {
      std::lock_guard<std::mutex> lock(w_->mu);
      w_->published.push_back(last);
      w_->disconnected = true;
    }
    w_->events->on_disconnected();
  }
  int mqtt_version() const override { return 5; }

private:
  std::shared_ptr<wire> w_;
};

} // namespace

TEST(bridge_shutdown, publishes_what_was_queued_then_offline_last_and_routes_nothing_more) {
  auto w = std::make_shared<wire>();
  auto routed = std::make_shared<std::atomic<int>>(0);
  caf::actor_system_config cfg;
  add_lull_types(cfg);
  cfg.set("scheduler.policy", caf::atom("sharing"));
  cfg.set("logger.verbosity", caf::atom("quiet"));
  caf::actor_system sys{cfg};

  bridge_options b;
  b.instance = "sdtest";
  b.factory = [w](transport_options, std::shared_ptr<transport_events> ev) {
    return std::make_unique<memory_transport>(w, std::move(ev));
  };
  auto bridge = spawn_mqtt_bridge(sys, b);
  auto sink = sys.spawn([routed](caf::event_based_actor*) -> caf::behavior {
    return {[routed](inbound_atom, const mqtt_message&) { routed->fetch_add(1); }};
  });
  caf::scoped_actor self{sys};
  self->send(bridge, subscribe_atom::value, std::string("in/#"), sink);
  // Routing works before the shutdown.
  self->send(bridge, inbound_atom::value, mqtt_message{"in/0", "x", 1, false, {}, {}, {}});
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (routed->load() == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  ASSERT_EQ(routed->load(), 1);

  constexpr int queued = 500;
  for (int i = 0; i < queued; ++i)
    self->send(bridge, publish_atom::value,
               mqtt_message{"out/" + std::to_string(i), "r", 1, false, {}, {}, {}});
  self->monitor(bridge);
  self->send<caf::message_priority::high>(bridge, shutdown_atom::value);
  // Sent after the shutdown: never routed.
  for (int i = 0; i < 100; ++i)
    self->send(bridge, inbound_atom::value, mqtt_message{"in/1", "x", 1, false, {}, {}, {}});

  bool down = false;
  self->receive([&](const caf::down_msg&) { down = true; }, caf::after(10s) >> [] {});
  ASSERT_TRUE(down) << "the bridge did not quit";
  std::lock_guard<std::mutex> lock(w->mu);
  EXPECT_TRUE(w->disconnected);
  ASSERT_FALSE(w->published.empty());
  EXPECT_EQ(w->published.back().topic, "lull/sdtest/availability");
  EXPECT_EQ(w->published.back().payload, "offline");
  int out = 0;
  for (auto& m : w->published)
    out += m.topic.rfind("out/", 0) == 0 ? 1 : 0;
  EXPECT_EQ(out, queued);
  EXPECT_EQ(routed->load(), 1);
  caf::anon_send_exit(sink, caf::exit_reason::user_shutdown);
}
