// The check the example tests put every published message through: it
// refuses what lulld's decoders refuse, naming the field, accepts what they
// accept, and refuses topics it has no decoder for.

#include <gtest/gtest.h>

#include "tests/support/schema_check.hpp"

using namespace lull;
using namespace lull::test;

namespace {

mqtt_message msg(const std::string& topic, const std::string& payload) {
  return {topic, payload, 1, false, "", "", ""};
}

} // namespace

TEST(schema_check, worker_status_as_the_registry_reads_it) {
  EXPECT_FALSE(lulld_refusal(msg("stats/worker/w1", R"({"v":1,"state":"online","job_types":[]})")));
  EXPECT_FALSE(lulld_refusal(msg("stats/worker/w1", R"({"v":1,"state":"offline"})")));
  EXPECT_FALSE(lulld_refusal(msg("stats/worker/w1", "offline")));
  EXPECT_FALSE(lulld_refusal(msg("stats/worker/w1", ""))) << "clears the worker";
  auto why = lulld_refusal(msg("stats/worker/w1", R"({"v":1,"state":"stopped"})"));
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("worker registry: stats/worker/w1: state: expected online"),
            std::string::npos)
      << *why;
  EXPECT_NE(why->find("'stopped'"), std::string::npos) << *why;
  EXPECT_TRUE(lulld_refusal(msg("stats/worker/w1", R"({"v":2,"state":"online"})")));
  EXPECT_TRUE(lulld_refusal(msg("stats/worker/bad id", "online")));
}

TEST(schema_check, lease_requests_and_actions_as_the_lease_manager_reads_them) {
  EXPECT_FALSE(lulld_refusal(
      msg("scheduler/lease/request", R"({"v":1,"worker_id":"w1","cost_class":"LOW"})")));
  auto why = lulld_refusal(msg("scheduler/lease/request", R"({"v":1,"cost_class":"LOW"})"));
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("lease manager: InvalidRequest"), std::string::npos) << *why;
  EXPECT_NE(why->find("worker_id"), std::string::npos) << *why;
  why = lulld_refusal(
      msg("scheduler/lease/request", R"({"v":1,"worker_id":"w1","cost_class":"HUGE"})"));
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("cost_class"), std::string::npos) << *why;
  EXPECT_TRUE(lulld_refusal(msg("scheduler/lease/request", "{not json")));
  // A heartbeat for a lease nobody holds is well formed (lulld answers
  // ResourceNotFound: state, not schema); one without its holder is not.
  EXPECT_FALSE(lulld_refusal(msg("scheduler/lease/abc/heartbeat", R"({"v":1,"worker_id":"w1"})")));
  why = lulld_refusal(msg("scheduler/lease/abc/release", R"({"v":1,"outcome":"succeeded"})"));
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("worker_id"), std::string::npos) << *why;
  EXPECT_FALSE(lulld_refusal(msg("scheduler/lease/abc/revoke", ""))) << "an empty revoke";
  // Secure layout: the topic names the worker.
  EXPECT_FALSE(lulld_refusal(msg("scheduler/w1/lease/request", R"({"v":1,"cost_class":"LOW"})")));
}

TEST(schema_check, job_requests_as_the_queue_reads_them) {
  EXPECT_FALSE(
      lulld_refusal(msg("scheduler/job/submit",
                        R"({"v":1,"job_type":"backup","priority":"low","cost_class":"HIGH"})")));
  auto why = lulld_refusal(
      msg("scheduler/job/submit", R"({"v":1,"job_type":"backup","priority":"urgent"})"));
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("queue dispatcher: InvalidRequest: field 'priority'"), std::string::npos)
      << *why;
  EXPECT_TRUE(lulld_refusal(msg("scheduler/job/next", R"({"v":1})"))) << "no worker_id";
  EXPECT_FALSE(lulld_refusal(msg("scheduler/job/next", R"({"v":1,"worker_id":"w1"})")));
  EXPECT_FALSE(lulld_refusal(msg("scheduler/job/j1/cancel", R"({"v":1})")));
}

TEST(schema_check, pause_and_switch_as_the_lease_manager_reads_them) {
  EXPECT_FALSE(lulld_refusal(msg("scheduler/control/nuc/set", "OFF")));
  EXPECT_FALSE(lulld_refusal(msg("scheduler/control/nuc/set", "on")));
  EXPECT_TRUE(lulld_refusal(msg("scheduler/control/nuc/set", "maybe")));
  EXPECT_FALSE(lulld_refusal(msg("scheduler/control/nuc", R"({"paused":false})")));
}

TEST(schema_check, a_topic_without_a_checked_decoder_is_refused_by_name) {
  auto why = lulld_refusal(msg("history/request", R"({"v":1,"kind":"history"})"));
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("history/request"), std::string::npos) << *why;
  EXPECT_TRUE(lulld_refusal(msg("scheduler/lease/x/y/z", "{}")));
}

TEST(schema_check, the_filters_cover_every_topic_it_checks) {
  auto filters = client_input_filters();
  auto covered = [&](const std::string& topic) {
    for (auto& f : filters)
      if (topic_matches(f, topic))
        return true;
    return false;
  };
  for (auto topic :
       {"stats/worker/w1", "scheduler/lease/request", "scheduler/lease/l1/heartbeat",
        "scheduler/lease/l1/release", "scheduler/lease/l1/report", "scheduler/lease/l1/revoke",
        "scheduler/job/submit", "scheduler/job/next", "scheduler/job/get", "scheduler/job/list",
        "scheduler/job/j1/cancel", "scheduler/control/nuc", "scheduler/control/nuc/set",
        "history/request", "scheduler/w1/lease/request", "scheduler/w1/lease/l1/heartbeat",
        "scheduler/p1/job/submit", "history/p1/request"})
    EXPECT_TRUE(covered(topic)) << topic;
  // What only lulld's roles write is not a client's input.
  for (auto topic :
       {"stats/host/nuc", "stats/host/nuc/quiet", "scheduler/status", "scheduler/lease/l1/state",
        "scheduler/job/j1/state", "lull/nuc/availability", "scheduler/events"})
    EXPECT_FALSE(covered(topic)) << topic;
}

TEST(schema_check, log_lines_that_refuse_a_message_for_its_form) {
  auto lines = refusal_log_lines(
      "[warning] worker registry: rejected stats/worker/py5: state: expected online, ...\n"
      "[warning] lease manager: rejected message on scheduler/lease/abc/heartbeat: "
      "InvalidStateTransition: lease abc is REVOKED\n"
      "[warning] lease manager: rejected message on scheduler/lease/request: InvalidRequest: "
      "missing field 'worker_id'\n"
      "[info] worker registry: py5 is offline\n"
      "[warning] queue dispatcher: rejected message on scheduler/job/submit: InvalidRequest: x\n");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_NE(lines[0].find("stats/worker/py5"), std::string::npos);
  EXPECT_NE(lines[1].find("InvalidRequest"), std::string::npos);
  EXPECT_NE(lines[2].find("queue dispatcher"), std::string::npos);
}
