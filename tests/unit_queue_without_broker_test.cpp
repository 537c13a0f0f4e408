// The queue learns how its jobs' leases go from the lease manager itself:
// the real bridge, lease manager and queue dispatcher (with a real SQLite
// file) run over an in-memory transport that delivers only what the test
// sends and never echoes what lull publishes, so no broker can carry a lease
// event back to the queue.

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include <caf/all.hpp>

#include "actors/atoms.hpp"
#include "actors/lease_manager.hpp"
#include "actors/mqtt_bridge.hpp"
#include "actors/queue_dispatcher.hpp"
#include "tests/lease_test_env.hpp"

using namespace lull;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

/// What the bridge's transport saw; the test injects inbound messages.
struct wire {
  std::mutex mu;
  std::vector<mqtt_message> published;
  std::vector<std::string> filters;
  std::shared_ptr<transport_events> events;

  void inject(mqtt_message m) {
    std::shared_ptr<transport_events> ev;
    {
      std::lock_guard<std::mutex> lock(mu);
      ev = events;
    }
    ev->on_message(std::move(m));
  }
  /// The last JSON document published on `topic` that satisfies `pred`.
  std::optional<json> wait_for(const std::string& topic,
                               const std::function<bool(const json&)>& pred) {
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard<std::mutex> lock(mu);
        for (auto it = published.rbegin(); it != published.rend(); ++it)
          if (it->topic == topic) {
            auto j = json::parse(it->payload, nullptr, false);
            if (!j.is_discarded() && pred(j))
              return j;
          }
      }
      std::this_thread::sleep_for(5ms);
    }
    return std::nullopt;
  }
  int count(const std::string& topic, const std::function<bool(const json&)>& pred) {
    std::lock_guard<std::mutex> lock(mu);
    int n = 0;
    for (auto& m : published)
      if (m.topic == topic) {
        auto j = json::parse(m.payload, nullptr, false);
        n += !j.is_discarded() && pred(j);
      }
    return n;
  }
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
    w_->filters.insert(w_->filters.end(), filters.begin(), filters.end());
  }
  void disconnect(const mqtt_message&, std::chrono::milliseconds) override {
    w_->events->on_disconnected();
  }
  int mqtt_version() const override { return 5; }

private:
  std::shared_ptr<wire> w_;
};

mqtt_message json_in(std::string topic, const json& body) {
  return {std::move(topic), body.dump(), 1, false, json_content_type, {}, {}};
}

} // namespace

TEST(queue_without_broker, lease_outcomes_reach_the_queue_from_the_lease_manager) {
  struct temp_dir {
    std::string path;
    temp_dir() {
      char tmpl[] = "/tmp/lull-queue-XXXXXX";
      path = ::mkdtemp(tmpl);
    }
    ~temp_dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  } tmp;
  const std::string& dir = tmp.path;
  auto w = std::make_shared<wire>();
  {
    caf::actor_system_config cfg;
    add_lull_types(cfg);
    cfg.set("scheduler.policy", caf::atom("sharing"));
    cfg.set("logger.verbosity", caf::atom("quiet"));
    caf::actor_system sys{cfg};

    bridge_options b;
    b.instance = "test";
    b.factory = [w](transport_options, std::shared_ptr<transport_events> ev) {
      return std::make_unique<memory_transport>(w, std::move(ev));
    };
    auto opened = store::open(dir + "/lull.db");
    ASSERT_EQ(opened.index(), 0u) << std::get<std::string>(opened);
    auto opened2 = store::open(dir + "/lull.db");
    ASSERT_EQ(opened2.index(), 0u);
    auto bridge = spawn_mqtt_bridge(sys, b);
    lease_manager_options lo;
    lo.service.policy.capacity_units = 60;
    lo.db = std::move(std::get<0>(opened));
    auto leases = spawn_lease_manager(sys, bridge, lo);
    auto dispatcher = spawn_queue_dispatcher(sys, bridge, leases,
                                             std::move(std::get<0>(opened2)), {});
    // The actors tick forever: stop them however the test ends, before the
    // actor system waits for them.
    struct stopper {
      std::vector<caf::actor> actors;
      ~stopper() {
        for (auto& a : actors)
          caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
      }
    } stop{{dispatcher, leases, bridge}};

    // Wait until both actors subscribed, then make the host quiet.
    ASSERT_TRUE(w->wait_for("scheduler/status", [](const json&) { return true; }));
    auto deadline = std::chrono::steady_clock::now() + 30s;
    auto subscribed = [&](const std::string& f) {
      std::lock_guard<std::mutex> lock(w->mu);
      return std::find(w->filters.begin(), w->filters.end(), f) != w->filters.end();
    };
    while (!subscribed("scheduler/job/next") && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(5ms);
    ASSERT_TRUE(subscribed("scheduler/job/next"));
    // Nothing in lull listens to its own event stream.
    EXPECT_FALSE(subscribed("scheduler/events"));
    w->inject(json_in("stats/host/pi", {{"v", 1}, {"host_id", "pi"}, {"cpu", {{"count", nullptr}}}}));
    w->inject(json_in("stats/host/pi/quiet", to_json(test::quiet_of("pi", quiet_state::quiet))));

    w->inject(json_in("scheduler/job/submit",
                      {{"job_type", "thumbs"}, {"reply_to", "p/inbox"}, {"request_id", "s1"}}));
    auto sub = w->wait_for("p/inbox", [](const json& j) { return j["request_id"] == "s1"; });
    ASSERT_TRUE(sub);
    auto job_id = (*sub)["job_id"].get<std::string>();
    auto state_topic = "scheduler/job/" + job_id + "/state";

    // A worker asks for work until the lease manager grants the job's lease.
    std::optional<json> next;
    for (int i = 0; i < 100 && !next; ++i) {
      auto rid = "n" + std::to_string(i);
      w->inject(json_in("scheduler/job/next", {{"worker_id", "w1"}, {"host_id", "pi"},
                                               {"reply_to", "w1/inbox"}, {"request_id", rid}}));
      auto r = w->wait_for("w1/inbox", [&](const json& j) { return j["request_id"] == rid; });
      ASSERT_TRUE(r);
      if ((*r).value("approved", false))
        next = r;
    }
    ASSERT_TRUE(next);
    auto lease_id = (*next)["lease"]["lease_id"].get<std::string>();

    // First heartbeat: the job is running.
    w->inject(json_in("scheduler/lease/" + lease_id + "/heartbeat", {{"worker_id", "w1"}}));
    EXPECT_TRUE(w->wait_for(state_topic, [](const json& j) { return j["state"] == "running"; }));
    // Release with an outcome: the job succeeded with its result.
    w->inject(json_in("scheduler/lease/" + lease_id + "/release",
                      {{"worker_id", "w1"}, {"outcome", "succeeded"}, {"result", {{"n", 3}}}}));
    auto done =
      w->wait_for(state_topic, [](const json& j) { return j["state"] == "succeeded"; });
    ASSERT_TRUE(done);
    EXPECT_EQ((*done)["result"]["n"], 3);
    // Once per change: one running and one succeeded state for the job.
    w->inject(json_in("scheduler/lease/" + lease_id + "/heartbeat", {{"worker_id", "w1"}}));
    w->wait_for(state_topic, [](const json&) { return true; });
    EXPECT_EQ(w->count(state_topic, [](const json& j) { return j["state"] == "running"; }), 1);
    EXPECT_EQ(w->count(state_topic, [](const json& j) { return j["state"] == "succeeded"; }),
              1);

  }
}
