// Stopping: lulld ends after SIGTERM with a large queue under a flood of
// submits and keeps every job it acknowledged; `lull work` stops during a
// long poll and, running a job, within its grace. The deadlines here are
// generous (lulld's goal, 2 s, is measured by bench/shutdown.sh): they
// catch a shutdown that waits for its mailboxes to drain (minutes), not a
// slow machine.

#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "messages/codec.hpp"
#include "src/process.hpp"
#include "src/queue/job_queue.hpp"
#include "src/store/store.hpp"
#include "tests/support/support.hpp"

using namespace lull;
using namespace lull::test;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr int seeded_jobs = 30000;

/// Writes `n` queued jobs for a host nobody runs straight into the database
/// (submitting them one by one over MQTT takes minutes), as lulld would.
void seed_jobs(const std::string& db_path, int n) {
  auto opened = store::open(db_path);
  ASSERT_TRUE(std::holds_alternative<std::unique_ptr<store>>(opened))
    << std::get<std::string>(opened);
  auto& db = *std::get<std::unique_ptr<store>>(opened);
  ASSERT_FALSE(db.begin());
  auto now = static_cast<std::int64_t>(std::time(nullptr));
  for (int i = 0; i < n; ++i) {
    job j;
    j.job_id = "j-seed-" + std::to_string(i);
    j.spec.job_type = "sd-seed";
    j.spec.cost_units = 1;
    j.spec.host_id = "nowhere";
    j.spec.priority = static_cast<work_priority>(i % 4);
    j.spec.producer = "p" + std::to_string(i % 5);
    j.spec.idempotency_key = "seed-" + std::to_string(i);
    j.spec.payload = job_payload(json{{"i", i}});
    j.submitted_at = j.updated_at = now;
    j.seq = static_cast<std::uint64_t>(i + 1);
    ASSERT_FALSE(db.save_job(j.job_id, to_string(j.state), j.updated_at, to_json(j).dump()));
  }
  ASSERT_FALSE(db.commit());
}

/// Every job id in the database.
std::set<std::string> stored_job_ids(const std::string& db_path) {
  std::set<std::string> ids;
  auto opened = store::open(db_path);
  if (!std::holds_alternative<std::unique_ptr<store>>(opened))
    return ids;
  for (auto& rec : std::get<std::unique_ptr<store>>(opened)->load_jobs(0))
    ids.insert(json::parse(rec).value("job_id", ""));
  return ids;
}

/// Ready when the dispatcher answers a request.
bool queue_answers(client& c, const std::string& topic) {
  c.subscribe(topic);
  return wait_until(
    [&] {
      c.publish("scheduler/job/list", json{{"limit", 1}, {"reply_to", topic}}.dump());
      return c.wait_for_topic(topic, 500ms).has_value();
    },
    30s);
}

std::set<std::string> acked_job_ids(client& c, const std::string& topic) {
  std::set<std::string> ids;
  for (auto& m : c.received()) {
    if (m.topic != topic)
      continue;
    auto d = json::parse(m.payload, nullptr, false);
    if (d.is_object() && d.value("ok", false) && d.contains("job_id"))
      ids.insert(d["job_id"].get<std::string>());
  }
  return ids;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

} // namespace

TEST(shutdown, sigterm_with_30000_queued_jobs_and_a_flood_exits_and_keeps_every_acknowledged_job) {
  broker b;
  auto dir = test_data_dir();
  auto db_path = dir + "/shutdown.db";
  seed_jobs(db_path, seeded_jobs);
  if (HasFatalFailure())
    return;
  auto args = lulld_args(b.uri(), "sdhost", {"--db", db_path});
  auto daemon = std::make_unique<lulld>(args);
  ASSERT_TRUE(daemon->wait_log("queue dispatcher: restored " + std::to_string(seeded_jobs)
                                 + " jobs",
                               60s))
    << daemon->log();
  client c(b.uri());
  ASSERT_TRUE(c.connected()) << c.error();
  c.subscribe("sd/acks");
  ASSERT_TRUE(queue_answers(c, "sd/ready")) << daemon->log();

  // The flood: submits on a connection of their own, far faster than the
  // dispatcher takes them with 30,000 jobs queued, until lulld has exited.
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0};
  std::thread flood([&] {
    client f(b.uri());
    if (!f.connected())
      return;
    for (int i = 0; !stop.load(); ++i) {
      json body = {{"job_type", "sd-flood"}, {"cost_units", 1}, {"host_id", "nowhere"},
                   {"producer", "flood"},    {"idempotency_key", "flood-" + std::to_string(i)},
                   {"reply_to", "sd/acks"},  {"request_id", "flood-" + std::to_string(i)},
                   {"payload", {{"i", i}}}};
      f.publish("scheduler/job/submit", body.dump(), 0);
      sent.fetch_add(1);
      // Paced (about 5,000 a second), not waiting for anything: the
      // broker's queue for lulld stays within its bounds.
      if (i % 100 == 99)
        std::this_thread::sleep_for(20ms);
    }
  });
  struct joiner {
    std::atomic<bool>& stop;
    std::thread& t;
    ~joiner() {
      stop = true;
      if (t.joinable())
        t.join();
    }
  } join_flood{stop, flood};

  // lulld is taking the flood (acknowledgements come back) and is far
  // behind it (thousands sent).
  ASSERT_TRUE(wait_until([&] { return acked_job_ids(c, "sd/acks").size() >= 5 && sent >= 5000; },
                         60s))
    << acked_job_ids(c, "sd/acks").size() << " acknowledged of " << sent << " sent\n"
    << daemon->log();

  daemon->signal(SIGTERM);
  auto code = daemon->wait_exit(10s);
  stop = true;
  flood.join();
  ASSERT_TRUE(code.has_value()) << "lulld still running 10 s after SIGTERM\n" << daemon->log();
  EXPECT_EQ(*code, 0) << daemon->log();
  EXPECT_NE(daemon->log().find("lulld: stopped in"), std::string::npos) << daemon->log();
  daemon.reset();

  // The retained availability says offline, whatever replies were still
  // waiting for the broker's in-flight window (Mosquitto's default, 20): the
  // offline goes out ahead of them (it stayed `online` in 6 of 6 such runs
  // when it queued behind them).
  client watcher(b.uri());
  watcher.subscribe("lull/sdhost/availability");
  auto availability = watcher.wait_for_topic("lull/sdhost/availability", 10s);
  ASSERT_TRUE(availability);
  EXPECT_EQ(availability->payload, "offline");

  // Every acknowledged job was written: the seeded ones and the flood's.
  auto acked = acked_job_ids(c, "sd/acks");
  auto stored = stored_job_ids(db_path);
  EXPECT_GE(acked.size(), 5u);
  std::size_t missing = 0;
  for (auto& id : acked)
    missing += stored.count(id) ? 0 : 1;
  for (int i = 0; i < seeded_jobs; ++i)
    missing += stored.count("j-seed-" + std::to_string(i)) ? 0 : 1;
  EXPECT_EQ(missing, 0u) << acked.size() << " acknowledged, " << stored.size() << " stored";

  // And lulld restores all of them.
  daemon = std::make_unique<lulld>(args);
  EXPECT_TRUE(daemon->wait_log("queue dispatcher: restored " + std::to_string(stored.size())
                                 + " jobs",
                               60s))
    << daemon->log();
  daemon->signal(SIGTERM);
  EXPECT_EQ(daemon->wait_exit(10s), 0) << daemon->log();
}

TEST(shutdown, lull_work_stops_at_once_during_a_long_poll) {
  broker b;
  auto dir = test_data_dir();
  lulld daemon(lulld_args(b.uri(), "sdpoll", {"--db", dir + "/poll.db"}));
  client c(b.uri());
  ASSERT_TRUE(c.connected()) << c.error();
  ASSERT_TRUE(queue_answers(c, "sd/ready")) << daemon.log();
  c.subscribe("scheduler/job/next");

  spawn_options o;
  o.argv = {binary_path("src/lull"), "--broker", b.uri(), "--worker", "sd-poller", "--timeout",
            "3", "work", "--type", "nothing-comes", "--poll", "60s", "--", "true"};
  o.stderr_path = dir + "/poller.log";
  std::string err;
  auto pid = spawn(o, &err);
  ASSERT_TRUE(pid) << err;
  // Its request is on the bus: it waits in a 60 s long poll now.
  ASSERT_TRUE(c.wait_for_topic("scheduler/job/next", 15s)) << slurp(o.stderr_path);
  ::kill(*pid, SIGTERM);
  auto code = wait_for_exit(*pid, 10s);
  if (!code) {
    ::kill(*pid, SIGKILL);
    wait_for_exit(*pid, 5s);
  }
  ASSERT_TRUE(code) << "lull work still polling 10 s after SIGTERM\n" << slurp(o.stderr_path);
  EXPECT_EQ(exit_code_of(*code), 128 + SIGTERM) << slurp(o.stderr_path);
}

TEST(shutdown, lull_work_running_a_job_stops_within_its_grace_and_the_job_goes_back) {
  broker b;
  auto dir = test_data_dir();
  lulld daemon(lulld_args(b.uri(), "sdgrace",
                          {"--db", dir + "/grace.db", "--quiet-stale-after", "1h",
                           "--lease-capacity-units", "10"}));
  client c(b.uri());
  ASSERT_TRUE(c.connected()) << c.error();
  ASSERT_TRUE(queue_answers(c, "sd/ready")) << daemon.log();
  // A host no collector here assesses, QUIET by hand.
  publish_agent(c, "sdfarm");
  c.publish("stats/host/sdfarm/quiet",
            json{{"v", 1},
                 {"host_id", "sdfarm"},
                 {"state", "QUIET"},
                 {"quiet_score", 95},
                 {"reasons", json::array()},
                 {"assessed_at", utc_timestamp(std::time(nullptr))}}
              .dump(),
            1, true);
  c.subscribe("sd/submitted");
  c.publish("scheduler/job/submit", json{{"job_type", "stubborn"},
                                         {"cost_units", 1},
                                         {"host_id", "sdfarm"},
                                         {"reply_to", "sd/submitted"}}
                                      .dump());
  auto ack = c.wait_for_topic("sd/submitted", 10s);
  ASSERT_TRUE(ack) << daemon.log();
  auto job_id = json::parse(ack->payload).value("job_id", "");
  ASSERT_FALSE(job_id.empty()) << ack->payload;

  // The command ignores SIGTERM: only the grace's SIGKILL ends it.
  auto started = dir + "/started";
  spawn_options o;
  o.argv = {binary_path("src/lull"), "--broker", b.uri(), "--worker", "sd-grace", "--timeout", "3",
            "work", "--type", "stubborn", "--host", "sdfarm", "--grace", "1s", "--", "sh", "-c",
            "trap '' TERM; echo $$ > " + started + ".tmp; mv " + started + ".tmp " + started
              + "; while :; do sleep 1; done"};
  o.stderr_path = dir + "/grace.log";
  std::string err;
  auto pid = spawn(o, &err);
  ASSERT_TRUE(pid) << err;
  ASSERT_TRUE(wait_until([&] { return fs::exists(started); }, 30s))
    << slurp(o.stderr_path) << daemon.log();
  auto child = std::stoi(slurp(started));

  ::kill(*pid, SIGTERM);
  auto code = wait_for_exit(*pid, 10s);
  if (!code) {
    ::kill(*pid, SIGKILL);
    wait_for_exit(*pid, 5s);
  }
  ASSERT_TRUE(code) << "lull work still running 10 s after SIGTERM (grace 1s)\n"
                    << slurp(o.stderr_path);
  EXPECT_EQ(exit_code_of(*code), 128 + SIGTERM) << slurp(o.stderr_path);
  EXPECT_TRUE(wait_until([&] { return ::kill(child, 0) != 0; }, 5s))
    << "the job's command outlived lull work";
  EXPECT_NE(slurp(o.stderr_path).find("SIGKILL after 1s"), std::string::npos)
    << slurp(o.stderr_path);

  // The lease was released with the failure: the job is back in the queue
  // for its next attempt.
  c.subscribe("sd/job");
  json state;
  EXPECT_TRUE(wait_until(
    [&] {
      c.clear();
      c.publish("scheduler/job/get", json{{"job_id", job_id}, {"reply_to", "sd/job"}}.dump());
      auto m = c.wait_for_topic("sd/job", 2s);
      if (!m)
        return false;
      state = json::parse(m->payload, nullptr, false);
      return state.is_object() && state["job"].is_object() && state["job"]["state"] == "queued"
             && state["job"]["attempts"] == 1;
    },
    15s))
    << state.dump() << "\n" << daemon.log();
}
