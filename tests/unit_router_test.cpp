// The inbound router and its retained cache (src/bus/): which subscriber
// gets which message, what a late subscriber is given, and what is dropped
// before any subscriber sees it.

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "src/bus/retained_cache.hpp"
#include "src/bus/router.hpp"

using namespace lull;

namespace {

mqtt_message msg(std::string topic, std::string payload, bool retain = false) {
  mqtt_message m;
  m.topic = std::move(topic);
  m.payload = std::move(payload);
  m.retain = retain;
  return m;
}

/// Delivers into a map of subscriber name -> messages, counting packs.
struct recording_delivery {
  using handle = std::string;
  using packet = mqtt_message;
  std::map<std::string, std::vector<mqtt_message>>* got;
  int* packs;
  packet pack(const mqtt_message& m) const {
    ++*packs;
    return m;
  }
  void send(const handle& who, const packet& p) const { (*got)[who].push_back(p); }
};

struct router_fixture {
  std::map<std::string, std::vector<mqtt_message>> got;
  int packs = 0;
  std::atomic<std::uint64_t> shed{0};
  inbound_router<recording_delivery> r;

  explicit router_fixture(router_options o = {})
    : r(with_counter(std::move(o)), recording_delivery{&got, &packs}) {}

  router_options with_counter(router_options o) {
    o.shed_total = &shed;
    return o;
  }
  std::vector<std::string> payloads(const std::string& who) {
    std::vector<std::string> out;
    for (auto& m : got[who])
      out.push_back(m.payload);
    return out;
  }
};

} // namespace

TEST(retained_cache, keeps_the_latest_retained_message_per_topic_and_forgets_cleared_ones) {
  retained_cache c(10, 1 << 20);
  EXPECT_EQ(c.note(msg("a/1", "x")), retained_cache::noted::ignored)
    << "a message the broker did not retain starts nothing";
  EXPECT_EQ(c.note(msg("a/1", "v1", true)), retained_cache::noted::kept);
  // A later live message on the topic replaces it: it is what the broker now retains.
  EXPECT_EQ(c.note(msg("a/1", "v2")), retained_cache::noted::updated);
  EXPECT_EQ(c.note(msg("b/1", "w", true)), retained_cache::noted::kept);
  std::vector<std::string> seen;
  c.each_matching("a/#", [&](const mqtt_message& m) { seen.push_back(m.payload); });
  EXPECT_EQ(seen, std::vector<std::string>{"v2"});
  EXPECT_EQ(c.note(msg("a/1", "", true)), retained_cache::noted::cleared);
  EXPECT_EQ(c.size(), 1u);
  EXPECT_EQ(c.bytes(), std::string("b/1w").size());
  c.clear();
  EXPECT_EQ(c.size(), 0u);
  EXPECT_EQ(c.bytes(), 0u);
}

TEST(retained_cache, refuses_new_topics_past_its_bounds_and_counts_them) {
  retained_cache by_count(2, 1 << 20);
  by_count.note(msg("t/1", "x", true));
  by_count.note(msg("t/2", "x", true));
  EXPECT_EQ(by_count.note(msg("t/3", "x", true)), retained_cache::noted::refused);
  EXPECT_EQ(by_count.refused(), 1u);
  EXPECT_EQ(by_count.note(msg("t/1", "y", true)), retained_cache::noted::updated)
    << "a kept topic is still updated when full";

  retained_cache by_bytes(100, 10);
  EXPECT_EQ(by_bytes.note(msg("t", "123456789", true)), retained_cache::noted::kept);
  EXPECT_EQ(by_bytes.note(msg("u", "1", true)), retained_cache::noted::refused);
  EXPECT_EQ(by_bytes.size(), 1u);
}

TEST(router, each_subscriber_of_a_matching_filter_gets_one_shared_packet) {
  router_fixture f;
  EXPECT_TRUE(f.r.subscribe("stats/host/+", "assessor", true));
  EXPECT_FALSE(f.r.subscribe("stats/host/+", "persister", true)) << "the filter is held already";
  EXPECT_TRUE(f.r.subscribe("scheduler/#", "leases", true));
  EXPECT_EQ(f.r.filters(), (std::vector<std::string>{"stats/host/+", "scheduler/#"}));

  f.r.route(msg("stats/host/pi", "{}"), steady_seconds());
  EXPECT_EQ(f.payloads("assessor"), std::vector<std::string>{"{}"});
  EXPECT_EQ(f.payloads("persister"), std::vector<std::string>{"{}"});
  EXPECT_TRUE(f.got["leases"].empty());
  EXPECT_EQ(f.packs, 1) << "packed once for both subscribers";

  f.r.route(msg("nobody/listens", "x"), steady_seconds());
  EXPECT_EQ(f.packs, 1);
  EXPECT_EQ(f.r.msgs_in(), 2u);
}

TEST(router, a_late_subscriber_gets_what_is_retained_only_while_connected) {
  router_fixture f;
  f.r.subscribe("stats/host/+/quiet", "assessor", true);
  f.r.route(msg("stats/host/pi/quiet", "QUIET", true), steady_seconds());
  // The broker sent the retained message to the first subscriber only.
  f.r.subscribe("stats/host/+/quiet", "ha", true);
  EXPECT_EQ(f.payloads("ha"), std::vector<std::string>{"QUIET"});
  f.r.subscribe("stats/host/+/quiet", "offline-joiner", false);
  EXPECT_TRUE(f.got["offline-joiner"].empty()) << "disconnected: the broker resends on connect";
  // A reconnect forgets what was kept: the broker sends what is retained now.
  f.r.connected();
  EXPECT_EQ(f.r.retained_kept(), 0u);
  f.r.subscribe("stats/host/+/quiet", "after-reconnect", true);
  EXPECT_TRUE(f.got["after-reconnect"].empty());
}

TEST(router, drops_oversize_payloads_and_shed_messages_before_any_subscriber) {
  router_options o;
  o.max_payload_bytes = 8;
  o.budget.lanes[static_cast<std::size_t>(inbound_lane::stats)].max_msgs = 2;
  router_fixture f(o);
  f.r.subscribe("#", "all", true);
  f.r.route(msg("stats/host/pi", "123456789"), steady_seconds());
  EXPECT_TRUE(f.got["all"].empty());
  EXPECT_EQ(f.r.oversize(), 1u);
  // The recorded packets hold their lane's budget, as an actor's unhandled
  // messages do: the lane takes two, the third is shed and counted.
  for (int i = 0; i < 3; ++i)
    f.r.route(msg("stats/host/pi", std::to_string(i)), steady_seconds());
  EXPECT_EQ(f.payloads("all"), (std::vector<std::string>{"0", "1"}));
  EXPECT_EQ(f.shed.load(), 1u);
  EXPECT_EQ(f.r.lanes()["stats"]["lane_full"], 1);
  // Handled (let go), the lane has room again.
  f.got.clear();
  f.r.route(msg("stats/host/pi", "3"), steady_seconds());
  EXPECT_EQ(f.payloads("all"), std::vector<std::string>{"3"});
}

TEST(router, routes_nothing_once_stopped) {
  router_fixture f;
  f.r.subscribe("#", "all", true);
  f.r.stop();
  f.r.route(msg("a", "b"), steady_seconds());
  EXPECT_TRUE(f.got["all"].empty());
  EXPECT_TRUE(f.r.filters().empty());
}
