// The bridge over an in-memory transport.
// - Shutdown: told to stop (at high priority, as lulld does, so that an
//   inbound flood cannot hold it back), it routes nothing more, still
//   publishes what was queued before it, then publishes offline as the last
//   message and quits.
// - Late subscribers: the broker sends retained messages once per SUBSCRIBE
//   and the bridge subscribes once per filter, so an actor that subscribes
//   to a filter another actor already holds gets the retained messages from
//   the bridge (lulld's lease manager and persister both take
//   stats/host/+/quiet; a host's assessment must reach both).
// - Routing: messages the transport hands over on its own thread (Paho's
//   callback) go from that thread straight to every subscriber, each in
//   the order it came, and none once the bridge is told to stop.

#include <gtest/gtest.h>

#include <algorithm>
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
  std::vector<std::string> subscribed; ///< every filter sent to the broker
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
  void subscribe(const std::vector<std::string>& filters, int) override {
    std::lock_guard<std::mutex> lock(w_->mu);
    w_->subscribed.insert(w_->subscribed.end(), filters.begin(), filters.end());
  }
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

namespace {

/// An actor that records what the bridge routes to it.
struct inbox {
  std::mutex mu;
  std::vector<mqtt_message> got;

  std::vector<mqtt_message> snapshot() {
    std::lock_guard<std::mutex> lock(mu);
    return got;
  }
  /// Waits until a message on `topic` has arrived; what came before it is
  /// in `got` too (the bridge sends to one actor in order).
  bool wait_for_topic(const std::string& topic, std::chrono::seconds limit = 10s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      for (auto& m : snapshot())
        if (m.topic == topic)
          return true;
      std::this_thread::sleep_for(1ms);
    }
    return false;
  }
};

caf::actor spawn_inbox(caf::actor_system& sys, std::shared_ptr<inbox> box) {
  return sys.spawn([box](caf::event_based_actor*) -> caf::behavior {
    return {[box](inbound_atom, const mqtt_message& m) {
      std::lock_guard<std::mutex> lock(box->mu);
      box->got.push_back(m);
    }};
  });
}

std::vector<std::string> topics_and_payloads(const std::vector<mqtt_message>& ms) {
  std::vector<std::string> out;
  for (auto& m : ms)
    out.push_back(m.topic + "=" + m.payload);
  return out;
}

struct bridge_fixture : ::testing::Test {
  std::shared_ptr<wire> w = std::make_shared<wire>();
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::vector<caf::actor> actors;

  caf::actor start(bridge_options b = {}) {
    add_lull_types(cfg);
    cfg.set("scheduler.policy", caf::atom("sharing"));
    cfg.set("logger.verbosity", caf::atom("quiet"));
    sys = std::make_unique<caf::actor_system>(cfg);
    b.instance = "rtest";
    b.factory = [w = w](transport_options, std::shared_ptr<transport_events> ev) {
      return std::make_unique<memory_transport>(w, std::move(ev));
    };
    auto bridge = spawn_mqtt_bridge(*sys, b);
    actors.push_back(bridge);
    // Connected first: every connect clears what the bridge kept.
    caf::scoped_actor self{*sys};
    auto deadline = std::chrono::steady_clock::now() + 10s;
    bool up = false;
    while (!up && std::chrono::steady_clock::now() < deadline)
      self->request(bridge, 10s, stats_atom::value)
        .receive([&](uint64_t, uint64_t, uint64_t, bool connected) { up = connected; },
                 [](caf::error&) {});
    EXPECT_TRUE(up) << "the bridge did not connect";
    return bridge;
  }
  caf::actor sink(std::shared_ptr<inbox> box) {
    auto a = spawn_inbox(*sys, box);
    actors.push_back(a);
    return a;
  }
  /// The filters the bridge subscribed at the broker, once it has handled
  /// everything sent to it before (a stats request answers after them).
  std::vector<std::string> broker_filters(caf::actor bridge) {
    caf::scoped_actor self{*sys};
    self->request(bridge, 10s, stats_atom::value).receive([](uint64_t, uint64_t, uint64_t, bool) {},
                                                         [](caf::error&) {});
    std::lock_guard<std::mutex> lock(w->mu);
    return w->subscribed;
  }
  void TearDown() override {
    for (auto& a : actors)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  }
};

mqtt_message msg(std::string topic, std::string payload, bool retain) {
  return mqtt_message{std::move(topic), std::move(payload), 1, retain, {}, {}, {}};
}

} // namespace

TEST_F(bridge_fixture, a_late_subscriber_to_a_held_filter_gets_the_retained_messages_once) {
  auto bridge = start();
  caf::scoped_actor self{*sys};
  auto first = std::make_shared<inbox>();
  self->send(bridge, subscribe_atom::value, std::string("stats/host/+/quiet"), sink(first));
  // What the broker sends on the first SUBSCRIBE: two retained assessments
  // and one host's cleared one; then live traffic.
  self->send(bridge, inbound_atom::value, msg("stats/host/a/quiet", "a1", true));
  self->send(bridge, inbound_atom::value, msg("stats/host/b/quiet", "b1", true));
  self->send(bridge, inbound_atom::value, msg("stats/host/c/quiet", "c1", true));
  self->send(bridge, inbound_atom::value, msg("stats/host/c/quiet", "", true)); // cleared
  self->send(bridge, inbound_atom::value, msg("stats/host/a/quiet", "a2", false)); // newer
  self->send(bridge, inbound_atom::value, msg("stats/host/d/quiet", "d1", false)); // never retained
  self->send(bridge, inbound_atom::value, msg("stats/host/a/snapshot", "s1", true)); // no match

  auto late = std::make_shared<inbox>();
  self->send(bridge, subscribe_atom::value, std::string("stats/host/+/quiet"), sink(late));
  // A live message after the subscription proves the bridge handled it.
  self->send(bridge, inbound_atom::value, msg("stats/host/e/quiet", "e1", false));
  ASSERT_TRUE(late->wait_for_topic("stats/host/e/quiet"));
  auto got = topics_and_payloads(late->snapshot());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::string>{"stats/host/a/quiet=a2", "stats/host/b/quiet=b1",
                                           "stats/host/e/quiet=e1"}));
  // The first subscriber got everything once, nothing replayed to it.
  ASSERT_TRUE(first->wait_for_topic("stats/host/e/quiet"));
  EXPECT_EQ(first->snapshot().size(), 7u); // a1 b1 c1 c-cleared a2 d1 e1
  // The broker was asked once for the filter.
  EXPECT_EQ(broker_filters(bridge), (std::vector<std::string>{"stats/host/+/quiet"}));
}

TEST_F(bridge_fixture, what_was_kept_is_forgotten_on_reconnect) {
  auto bridge = start();
  caf::scoped_actor self{*sys};
  auto first = std::make_shared<inbox>();
  self->send(bridge, subscribe_atom::value, std::string("lull/+/availability"), sink(first));
  self->send(bridge, inbound_atom::value, msg("lull/x/availability", "online", true));
  ASSERT_TRUE(first->wait_for_topic("lull/x/availability"));
  // The connection drops and comes back: the broker sends again what is
  // retained now (here: nothing), so nothing kept before may be replayed.
  std::shared_ptr<transport_events> events;
  {
    std::lock_guard<std::mutex> lock(w->mu);
    events = w->events;
  }
  events->on_connection_lost("test");
  events->on_connected(5);
  auto late = std::make_shared<inbox>();
  self->send(bridge, subscribe_atom::value, std::string("lull/+/availability"), sink(late));
  self->send(bridge, inbound_atom::value, msg("lull/y/availability", "online", false));
  ASSERT_TRUE(late->wait_for_topic("lull/y/availability"));
  EXPECT_EQ(topics_and_payloads(late->snapshot()),
            (std::vector<std::string>{"lull/y/availability=online"}));
}

TEST_F(bridge_fixture, keeps_at_most_the_configured_number_of_retained_topics) {
  bridge_options b;
  b.retained_max_topics = 2;
  auto bridge = start(b);
  caf::scoped_actor self{*sys};
  auto first = std::make_shared<inbox>();
  self->send(bridge, subscribe_atom::value, std::string("t/#"), sink(first));
  for (auto t : {"t/1", "t/2", "t/3"})
    self->send(bridge, inbound_atom::value, msg(t, "x", true));
  auto late = std::make_shared<inbox>();
  self->send(bridge, subscribe_atom::value, std::string("t/#"), sink(late));
  self->send(bridge, inbound_atom::value, msg("t/end", "x", false));
  ASSERT_TRUE(late->wait_for_topic("t/end"));
  auto got = topics_and_payloads(late->snapshot());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::string>{"t/1=x", "t/2=x", "t/end=x"}));
}

TEST_F(bridge_fixture, routes_on_the_transports_thread_to_every_subscriber_in_order) {
  auto bridge = start();
  caf::scoped_actor self{*sys};
  auto a = std::make_shared<inbox>(), b = std::make_shared<inbox>();
  auto b_actor = sink(b);
  self->send(bridge, subscribe_atom::value, std::string("leases/+/request"), sink(a));
  self->send(bridge, subscribe_atom::value, std::string("leases/#"), b_actor);
  broker_filters(bridge); // both subscriptions are in
  std::shared_ptr<transport_events> events;
  {
    std::lock_guard<std::mutex> lock(w->mu);
    events = w->events;
  }
  // Paho calls on_message from its own thread; the bridge routes there.
  constexpr int n = 1000;
  std::thread paho([&] {
    for (int i = 0; i < n; ++i)
      events->on_message(msg("leases/w" + std::to_string(i % 3) + "/request",
                             std::to_string(i), false));
    events->on_message(msg("leases/w0/released", "end", false));
  });
  paho.join();
  ASSERT_TRUE(b->wait_for_topic("leases/w0/released"));
  auto got_b = b->snapshot();
  ASSERT_EQ(got_b.size(), std::size_t{n + 1});
  for (int i = 0; i < n; ++i)
    ASSERT_EQ(got_b[i].payload, std::to_string(i)) << "out of order at " << i;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (a->snapshot().size() < std::size_t{n} && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  auto got_a = a->snapshot();
  ASSERT_EQ(got_a.size(), std::size_t{n}); // not the release: no match
  for (int i = 0; i < n; ++i)
    ASSERT_EQ(got_a[i].payload, std::to_string(i));
  // The bridge counted them all in.
  std::uint64_t in = 0;
  self->request(bridge, 10s, stats_atom::value)
    .receive([&](uint64_t i, uint64_t, uint64_t, bool) { in = i; }, [](caf::error&) {});
  EXPECT_EQ(in, std::uint64_t{n + 1});

  // Once the bridge is told to stop, the transport's thread routes nothing.
  self->send<caf::message_priority::high>(bridge, shutdown_atom::value);
  self->request(bridge, 10s, stats_atom::value).receive([](uint64_t, uint64_t, uint64_t, bool) {},
                                                       [](caf::error&) {});
  events->on_message(msg("leases/w1/request", "after", false));
  // Routing happens inside on_message: a marker sent to b after it returns
  // arrives after anything routed.
  self->send(b_actor, inbound_atom::value, msg("marker", "", false));
  ASSERT_TRUE(b->wait_for_topic("marker"));
  for (auto& m : b->snapshot())
    EXPECT_NE(m.payload, "after") << "routed after shutdown";
}
