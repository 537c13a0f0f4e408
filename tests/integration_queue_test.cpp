// The job queue end to end: real Mosquitto, real SQLite, real `lull work`
// workers, and a kill -9 of lulld in the middle.

#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <functional>
#include <map>
#include <mutex>
#include <regex>
#include <set>

#include "messages/codec.hpp"
#include "src/process.hpp"
#include "src/store/store.hpp"
#include "tests/support/support.hpp"

using namespace lull;
using namespace lull::test;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

/// Removed when the test program ends, even after a failed assertion.
std::string temp_dir() { return test_data_dir(); }

/// A host no collector on this machine assesses, made QUIET by hand, so the
/// test does not depend on how busy the CI machine is.
void make_farm_quiet(client& c) {
  json q = {{"v", 1},           {"host_id", "farm"},
            {"state", "QUIET"}, {"quiet_score", 95},
            {"reasons", json::array()}, {"assessed_at", utc_timestamp(std::time(nullptr))}};
  publish_agent(c, "farm");
  c.publish("stats/host/farm/quiet", q.dump(), 1, true);
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);)
    if (!line.empty())
      out.push_back(line);
  return out;
}

/// Follows scheduler/events: leases active per host, from grants and ends.
struct capacity_watch {
  std::mutex mtx;
  std::set<std::string> active;
  std::size_t max_active = 0;
  std::vector<std::string> violations;
  int grants = 0;

  void on_event(const json& e) {
    std::lock_guard<std::mutex> guard(mtx);
    auto type = e.value("type", "");
    auto id = e.value("lease_id", "");
    if (type == "granted") {
      ++grants;
      active.insert(id);
      max_active = std::max(max_active, active.size());
      // lull's own accounting, as stated in the grant: used <= capacity.
      static const std::regex used(R"(used=(\d+)/(\d+))");
      std::smatch m;
      auto reason = e.value("reason", "");
      if (std::regex_search(reason, m, used) && std::stoi(m[1]) > std::stoi(m[2]))
        violations.push_back(reason);
    } else if (type == "released" || type == "expired" || type == "revoked") {
      active.erase(id);
    }
  }
  void reset(const std::set<std::string>& now_active) {
    std::lock_guard<std::mutex> guard(mtx);
    active = now_active;
  }
};

} // namespace

TEST(queue_integration, thousand_jobs_survive_a_kill_9_and_each_succeeds) {
  constexpr int jobs = 1000, producers = 3, workers = 5, cost = 5, capacity = 20;
  broker b;
  auto dir = temp_dir();
  auto args = lulld_args(
    b.uri(), "qhost",
    {"--db", dir + "/lull.db", "--lease-capacity-units", std::to_string(capacity),
     "--lease-grant-rate", "1000", "--lease-grant-burst", "1000", "--lease-ttl", "5s",
     "--lease-lock-delay", "1s", "--lease-max-per-worker", "8", "--quiet-stale-after", "1h"});
  auto daemon = std::make_unique<lulld>(args);

  client_options copts;
  copts.keep_alive = std::chrono::seconds(60); // thousands of messages in (see client_options)
  client c(b.uri(), copts);
  ASSERT_TRUE(c.connected()) << c.error();
  capacity_watch watch;
  c.subscribe("scheduler/events");
  c.subscribe("q/acks");
  make_farm_quiet(c);
  // Ready when the dispatcher answers: earlier submissions would reach a
  // broker with no subscriber yet.
  auto ready = [&](const std::string& topic) {
    c.subscribe(topic);
    return wait_until(
      [&] {
        c.publish("scheduler/job/list", json{{"limit", 1}, {"reply_to", topic}}.dump());
        return c.wait_for_topic(topic, 200ms).has_value();
      },
      10s);
  };
  ASSERT_TRUE(ready("q/ready1")) << daemon->log();

  // 3 producers submit 1000 jobs; each is acknowledged once durable.
  auto submit_all = [&] {
    for (int i = 0; i < jobs; ++i) {
      json body = {{"job_type", "count"},      {"cost_units", cost},
                   {"host_id", "farm"},        {"producer", "p" + std::to_string(i % producers)},
                   {"idempotency_key", "job-" + std::to_string(i)},
                   {"payload", {{"n", i}}},    {"reply_to", "q/acks"},
                   {"request_id", "job-" + std::to_string(i)}};
      c.publish("scheduler/job/submit", body.dump(), 1);
    }
  };
  submit_all();
  auto acked = [&] {
    std::set<std::string> ids;
    for (auto& m : c.received())
      if (m.topic == "q/acks") {
        auto d = json::parse(m.payload, nullptr, false);
        if (d.is_object() && d.value("ok", false))
          ids.insert(d.value("job_id", ""));
      }
    return ids;
  };
  ASSERT_TRUE(wait_until([&] { return acked().size() == jobs; }, 60s))
    << acked().size() << " of " << jobs << " acknowledged; client connection: "
    << (c.lost().empty() ? "up" : c.lost()) << "\n"
    << daemon->log();
  auto job_ids = acked();
  // Queue depths per priority show in the retained scheduler/status.
  c.subscribe("scheduler/status");
  EXPECT_TRUE(c.wait_for(
    [](auto& m) {
      auto d = json::parse(m.payload, nullptr, false);
      return m.topic == "scheduler/status" && d.is_object() && d.contains("queue")
             && d["queue"]["depths"].value("normal", 0) > 0;
    },
    10s))
    << daemon->log();

  // 5 workers; each run appends the job id to the result records.
  auto results = dir + "/results";
  std::vector<std::unique_ptr<lulld>> unused;
  std::vector<pid_t> worker_pids;
  for (int w = 0; w < workers; ++w) {
    spawn_options o;
    o.argv = {binary_path("src/lull"), "--broker", b.uri(), "--worker", "w" + std::to_string(w),
              "--timeout", "3", "work", "--type", "count", "--host", "farm", "--poll", "2s",
              // What is tested is the queue's durability, not yielding: the
              // jobs keep lull work's priority, so a machine busy with other
              // work does not starve them at nice 19.
              "--keep-priority",
              "--", "sh", "-c", "cat >/dev/null; echo \"$LULL_JOB_ID\" >> " + results};
    o.stderr_path = dir + "/worker" + std::to_string(w) + ".log";
    std::string err;
    auto pid = spawn(o, &err);
    ASSERT_TRUE(pid) << err;
    worker_pids.push_back(*pid);
  }
  auto stop_workers = [&] {
    for (auto p : worker_pids) {
      ::kill(p, SIGTERM);
      if (!wait_for_exit(p, 5s)) {
        ::kill(p, SIGKILL);
        wait_for_exit(p, 2s);
      }
    }
    worker_pids.clear();
  };
  // A failed assertion or an exception below still stops the workers.
  struct at_exit {
    std::function<void()> f;
    ~at_exit() { f(); }
  } stop_at_exit{stop_workers};

  // Midway, kill -9 lulld and start it again on the same database.
  ASSERT_TRUE(wait_until([&] { return lines_of(results).size() >= 300; }, 120s))
    << lines_of(results).size() << " results\n" << daemon->log();
  daemon->signal(SIGKILL);
  ASSERT_TRUE(daemon->wait_exit(5s));
  daemon.reset();
  auto done_before_crash = lines_of(results).size();
  daemon = std::make_unique<lulld>(args);
  ASSERT_TRUE(daemon->wait_log("queue dispatcher: restored", 10s)) << daemon->log();
  ASSERT_TRUE(ready("q/ready2")) << daemon->log();

  // Every job ends succeeded. A list of 1000 jobs is larger than one reply
  // may be (limits.max_reply_bytes): it comes in pages, followed to the end.
  auto list_all = [&](json query) -> std::vector<json> {
    static int n = 0;
    std::vector<json> out;
    for (int page = 0; page < 100; ++page) {
      auto id = "list-" + std::to_string(++n);
      query["limit"] = 1000;
      query["reply_to"] = "q/list";
      query["request_id"] = id;
      c.publish("scheduler/job/list", query.dump());
      auto m = c.wait_for(
        [&](auto& m) {
          if (m.topic != "q/list")
            return false;
          auto d = json::parse(m.payload, nullptr, false);
          return d.is_object() && d.value("request_id", "") == id;
        },
        5s);
      if (!m)
        break;
      auto d = json::parse(m->payload);
      for (auto& j : d["jobs"])
        out.push_back(j);
      if (!d.contains("next"))
        break;
      query["cursor"] = d["next"];
    }
    return out;
  };
  auto list_succeeded = [&] { return list_all({{"state", "succeeded"}}).size(); };
  c.subscribe("q/list");
  bool all_done = wait_until([&] { return list_succeeded() == jobs; }, 240s);
  // On a failure: how many jobs are in each state, and what each worker said last.
  auto diagnosis = [&] {
    std::ostringstream out;
    std::map<std::string, int> states;
    for (auto& j : list_all(json::object()))
      ++states[j.value("state", "?")];
    out << "jobs by state:";
    for (auto& [st, n] : states)
      out << " " << st << "=" << n;
    out << "\n";
    for (int w = 0; w < workers; ++w) {
      auto lines = lines_of(dir + "/worker" + std::to_string(w) + ".log");
      out << "worker w" << w << ", last lines of " << lines.size() << ":\n";
      for (auto i = lines.size() > 8 ? lines.size() - 8 : 0; i < lines.size(); ++i)
        out << "  " << lines[i] << "\n";
    }
    return out.str();
  };
  std::string why = all_done ? std::string() : diagnosis();
  stop_workers();
  ASSERT_TRUE(all_done) << list_succeeded() << " of " << jobs << " succeeded\n"
                        << why << daemon->log();

  // The result records hold every job at least once (a job whose release was
  // lost in the crash may have run twice), and nothing unknown.
  std::map<std::string, int> runs;
  for (auto& line : lines_of(results))
    ++runs[line];
  EXPECT_EQ(runs.size(), static_cast<std::size_t>(jobs));
  int twice = 0;
  std::set<std::string> again;
  for (auto& [id, n] : runs) {
    EXPECT_TRUE(job_ids.count(id)) << "unknown job " << id;
    twice += n > 1;
    if (n > 1)
      again.insert(id);
  }
  // lull promises at least once: a job may run again after a crash, but only
  // one that was running or being released when lulld died, never one
  // finished before (a release lulld throttled used to be dropped by the
  // client, and such jobs ran again when their leases expired: 12-17 of
  // them). Each re-run job's first run is among the last results before the
  // kill -9.
  auto lines = lines_of(results);
  std::size_t oldest = 0;
  for (std::size_t i = 0; i < lines.size() && i < done_before_crash; ++i)
    if (again.count(lines[i]))
      oldest = std::max(oldest, done_before_crash - i);
  EXPECT_LE(oldest, static_cast<std::size_t>(workers * 2))
    << "a job finished " << oldest << " results before the kill -9 ran again";
  EXPECT_LE(twice, workers * 2) << "more re-runs than jobs in flight at the crash";
  std::cout << "[ info ] " << done_before_crash << " results before the kill -9, " << twice
            << " jobs ran twice, the oldest first run " << oldest << " results before it\n";

  // Capacity was never exceeded according to the lease events.
  for (auto& m : c.received())
    if (m.topic == "scheduler/events") {
      auto d = json::parse(m.payload, nullptr, false);
      if (d.is_object())
        watch.on_event(d);
    }
  EXPECT_TRUE(watch.violations.empty()) << watch.violations.front();
  EXPECT_GE(watch.grants, jobs);
  EXPECT_LE(watch.max_active * cost, static_cast<std::size_t>(capacity) + workers * cost)
    << "max concurrently active leases " << watch.max_active;
  fs::remove_all(dir);
}

namespace {

/// chattr +i (or -i) on every file of the database: even root cannot write
/// them then. False where chattr or the filesystem cannot do it.
bool set_immutable(const std::string& db_path, bool on) {
  auto cmd = std::string("chattr ") + (on ? "+i" : "-i") + " " + db_path + " " + db_path
             + "-wal 2>/dev/null";
  return std::system(cmd.c_str()) == 0;
}

} // namespace

// A database lulld cannot write (here: its files made immutable while lulld
// runs, as a filesystem gone read-only or a full disk fail): lulld stays
// up (no SIGBUS: it keeps SQLite's WAL index off a memory-mapped -shm file),
// every request is answered at once with InternalError naming the cause,
// nothing is acknowledged or half-applied, scheduler/status says so until a
// write really succeeds, and the same requests work once the files are
// writable again.
TEST(queue_integration, a_database_that_cannot_be_written_answers_internal_error_and_loses_nothing) {
  broker b;
  auto dir = temp_dir();
  auto db_path = dir + "/locked.db";
  auto args = lulld_args(b.uri(), "lockhost",
                         {"--db", db_path, "--lease-capacity-units", "20",
                          "--quiet-stale-after", "1h"});
  lulld daemon(args);
  client c(b.uri());
  ASSERT_TRUE(c.connected()) << c.error();
  c.subscribe("lk/+");
  c.subscribe("scheduler/status");
  make_farm_quiet(c);
  ASSERT_TRUE(wait_until(
    [&] {
      c.publish("scheduler/job/list", json{{"limit", 1}, {"reply_to", "lk/ready"}}.dump());
      return c.wait_for_topic("lk/ready", 200ms).has_value();
    },
    10s))
    << daemon.log();
  EXPECT_FALSE(fs::exists(db_path + "-shm"))
    << "lulld keeps the WAL index in its own memory, so no -shm file can vanish under it";
  auto reply = [&](const std::string& topic, const std::string& request_id)
    -> std::optional<json> {
    auto m = c.wait_for(
      [&](const mqtt_message& m) {
        return m.topic == topic && json::parse(m.payload).value("request_id", "") == request_id;
      },
      15s);
    if (!m)
      return std::nullopt;
    return json::parse(m->payload);
  };
  json job = {{"job_type", "t"}, {"host_id", "farm"}, {"idempotency_key", "k-locked"},
              {"reply_to", "lk/submit"}};
  json lease = {{"worker_id", "wl"}, {"host_id", "farm"}, {"cost_units", 20},
                {"reply_to", "lk/lease"}};

  // The database's files become unwritable under lulld.
  if (!set_immutable(db_path, true)) {
    fs::remove_all(dir);
    GTEST_SKIP() << "chattr +i needs root and a filesystem with the immutable flag";
  }
  struct unfreeze {
    std::string path;
    ~unfreeze() { set_immutable(path, false); }
  } thaw{db_path};

  job["request_id"] = "s1";
  c.publish("scheduler/job/submit", job.dump());
  auto r1 = reply("lk/submit", "s1");
  ASSERT_TRUE(r1) << "a submit lulld cannot store is answered, not left to time out\n"
                  << daemon.log();
  EXPECT_EQ((*r1)["error"]["code"], "InternalError") << r1->dump();
  EXPECT_NE(r1->dump().find("I/O error"), std::string::npos) << r1->dump();

  lease["request_id"] = "l1";
  c.publish("scheduler/lease/request", lease.dump());
  auto g1 = reply("lk/lease", "l1");
  ASSERT_TRUE(g1) << daemon.log();
  EXPECT_EQ((*g1)["error"]["code"], "InternalError") << g1->dump();

  // scheduler/status tells the failure and its cause.
  auto failing = c.wait_for(
    [](const mqtt_message& m) {
      if (m.topic != "scheduler/status")
        return false;
      auto s = json::parse(m.payload)["store"];
      return s.is_object() && s.value("lease_write_errors", 0) > 0
             && s.value("job_write_errors", 0) > 0;
    },
    10s);
  ASSERT_TRUE(failing) << daemon.log();
  EXPECT_NE(json::parse(failing->payload)["store"]["last_error"].dump().find("I/O error"),
            std::string::npos);
  EXPECT_TRUE(json::parse(failing->payload)["store"]["failing"].get<bool>());
  c.clear(); // only statuses from now on
  // Nothing was written since: the flag stays up (lulld publishes its status
  // every few seconds; none of them may say the writes work again).
  auto cleared = c.wait_for(
    [](const mqtt_message& m) {
      return m.topic == "scheduler/status"
             && !json::parse(m.payload)["store"].value("failing", true);
    },
    4s);
  EXPECT_FALSE(cleared) << "store.failing cleared with no write done: " << cleared->payload;
  EXPECT_TRUE(daemon.running()) << "lulld is alive\n" << daemon.log();

  // The database is writable again: the same requests work, in full.
  ASSERT_TRUE(set_immutable(db_path, false));
  job["request_id"] = "s2";
  c.publish("scheduler/job/submit", job.dump());
  auto r2 = reply("lk/submit", "s2");
  ASSERT_TRUE(r2) << daemon.log();
  EXPECT_TRUE((*r2)["ok"].get<bool>()) << r2->dump();
  EXPECT_TRUE((*r2)["created"].get<bool>()) << "the failed submit left nothing behind: "
                                             << r2->dump();
  lease["request_id"] = "l2";
  c.publish("scheduler/lease/request", lease.dump());
  auto g2 = reply("lk/lease", "l2");
  ASSERT_TRUE(g2) << daemon.log();
  EXPECT_TRUE(g2->value("approved", false))
    << "the refused grant holds no units, so all 20 are free: " << g2->dump();
  auto works = c.wait_for(
    [](const mqtt_message& m) {
      return m.topic == "scheduler/status"
             && !json::parse(m.payload)["store"].value("failing", true);
    },
    10s);
  EXPECT_TRUE(works) << "store.failing clears once a write succeeded\n" << daemon.log();

  // Both are in the database, so a kill -9 loses neither.
  daemon.signal(SIGKILL);
  daemon.wait_exit(10s);
  auto check = store::open(db_path);
  ASSERT_EQ(check.index(), 0u);
  auto& db = std::get<0>(check);
  EXPECT_EQ(db->load_jobs(0).size(), 1u);
  EXPECT_EQ(db->load_leases().size(), 1u);
}

// Replies always fit. 20 jobs with 60 kB payloads (1.2 MB together, past
// the broker's 1 MB message_size_limit) are listed by the real `lull jobs`:
// the list leaves payloads over 4 KiB out, so lulld never publishes a reply
// the broker refuses (which ended lulld's connection and, its QoS 1 reply
// sent again on every reconnect, did so forever). lulld keeps its
// connection and leases still work. Restarted with a 4 KiB reply budget,
// the same list comes in pages that `lull jobs` follows to the end, and a
// single job too large for the budget is ReplyTooLarge naming the limit.
TEST(queue_integration, a_list_of_large_jobs_fits_the_broker_and_lull_jobs_shows_it_whole) {
  broker b;
  auto dir = temp_dir();
  auto args = lulld_args(b.uri(), "pghost",
                         {"--db", dir + "/pages.db", "--lease-capacity-units", "20",
                          "--quiet-stale-after", "1h"});
  auto daemon = std::make_unique<lulld>(args);
  client_options copts;
  copts.keep_alive = std::chrono::seconds(60);
  client c(b.uri(), copts);
  ASSERT_TRUE(c.connected()) << c.error();
  c.subscribe("pg/+");
  make_farm_quiet(c);
  int asked = 0;
  auto ask = [&](const std::string& topic, json body) -> std::optional<mqtt_message> {
    auto id = "pg-" + std::to_string(++asked);
    body["request_id"] = id;
    body["reply_to"] = "pg/replies";
    c.publish(topic, body.dump());
    return c.wait_for(
      [&](const mqtt_message& m) {
        auto d = json::parse(m.payload, nullptr, false);
        return m.topic == "pg/replies" && d.is_object() && d.value("request_id", "") == id;
      },
      5s);
  };
  auto ready = [&] {
    return wait_until([&] { return ask("scheduler/job/list", {{"limit", 1}}).has_value(); }, 15s);
  };
  ASSERT_TRUE(ready()) << daemon->log();

  std::set<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    json body = {{"job_type", "big"}, {"host_id", "farm"},
                 {"idempotency_key", "big-" + std::to_string(i)},
                 {"payload", {{"blob", std::string(60000, static_cast<char>('a' + i))}}}};
    auto r = ask("scheduler/job/submit", body);
    ASSERT_TRUE(r) << "submit " << i << "\n" << daemon->log();
    auto d = json::parse(r->payload);
    ASSERT_TRUE(d.value("ok", false)) << d.dump().substr(0, 400);
    ids.insert(d["job_id"].get<std::string>());
  }
  ASSERT_EQ(ids.size(), 20u);

  auto printed = [&](const cli_result& r) {
    std::size_t n = 0;
    for (auto& id : ids)
      n += r.out.find(id) != std::string::npos;
    return n;
  };
  auto listed = lull_cli({"--broker", b.uri(), "jobs"});
  EXPECT_EQ(listed.code, 0) << listed.err << daemon->log();
  EXPECT_EQ(printed(listed), 20u) << listed.out << listed.err;

  // The list in one reply, each job's payload left out with its size.
  auto one = ask("scheduler/job/list", {{"limit", 100}});
  ASSERT_TRUE(one) << daemon->log();
  auto page = json::parse(one->payload);
  EXPECT_EQ(page["jobs"].size(), 20u);
  EXPECT_FALSE(page.contains("next"));
  EXPECT_FALSE(page["jobs"][0].contains("payload"));
  EXPECT_GT(page["jobs"][0]["payload_bytes"].get<int>(), 60000);
  std::cout << "[ info ] 20 jobs with 60 kB payloads listed in 1 reply of " << one->payload.size()
            << " bytes (limits.max_reply_bytes 262144)\n";
  // One job whole: 60 kB fits the default budget.
  auto got = ask("scheduler/job/get", {{"job_id", *ids.begin()}});
  ASSERT_TRUE(got);
  EXPECT_EQ(json::parse(got->payload)["job"]["payload"]["blob"].get<std::string>().size(), 60000u);

  // lulld never lost the broker: it says so in stats/bus, and its log
  // has no lost connection.
  auto bus_reconnects = [&]() -> std::optional<int> {
    c.subscribe("stats/bus");
    auto m = c.wait_for(
      [&](const mqtt_message& m) {
        return m.topic == "stats/bus" && json::parse(m.payload, nullptr, false).contains("reconnects");
      },
      15s);
    if (!m)
      return std::nullopt;
    return json::parse(m->payload)["reconnects"].get<int>();
  };
  c.clear();
  auto rc = bus_reconnects();
  ASSERT_TRUE(rc) << daemon->log();
  EXPECT_EQ(*rc, 0) << daemon->log();
  EXPECT_EQ(daemon->log().find("reconnecting"), std::string::npos) << daemon->log();

  // Leases still work: a grant and a heartbeat.
  auto grant = ask("scheduler/lease/request",
                   {{"v", 1}, {"worker_id", "pw"}, {"host_id", "farm"}, {"cost_units", 5}});
  ASSERT_TRUE(grant) << daemon->log();
  auto g = json::parse(grant->payload);
  ASSERT_TRUE(g.value("approved", false)) << g.dump();
  auto hb = ask("scheduler/lease/" + g["lease_id"].get<std::string>() + "/heartbeat",
                {{"v", 1}, {"worker_id", "pw"}});
  ASSERT_TRUE(hb) << daemon->log();
  EXPECT_EQ(json::parse(hb->payload)["state"], "ACTIVE") << hb->payload;

  // A 4 KiB budget: the list pages.
  daemon->signal(SIGTERM);
  ASSERT_TRUE(daemon->wait_exit(5s));
  auto small = args;
  small.insert(small.end(), {"--limits-max-reply-bytes", "4096"});
  daemon = std::make_unique<lulld>(small);
  c.clear();
  ASSERT_TRUE(ready()) << daemon->log();
  std::vector<std::string> seen;
  std::string cursor;
  int pages = 0;
  std::size_t largest = 0;
  while (true) {
    json body = {{"limit", 100}};
    if (!cursor.empty())
      body["cursor"] = cursor;
    auto m = ask("scheduler/job/list", body);
    ASSERT_TRUE(m) << "page " << pages << "\n" << daemon->log();
    largest = std::max(largest, m->payload.size());
    EXPECT_LE(m->payload.size(), 4096u);
    auto d = json::parse(m->payload);
    ASSERT_TRUE(d.value("ok", false)) << d.dump();
    ++pages;
    for (auto& j : d["jobs"])
      seen.push_back(j["job_id"].get<std::string>());
    if (!d.contains("next"))
      break;
    cursor = d["next"].get<std::string>();
    ASSERT_LT(pages, 50);
  }
  EXPECT_EQ(seen.size(), 20u);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), ids);
  EXPECT_GT(pages, 1);
  std::cout << "[ info ] with limits.max_reply_bytes 4096: " << pages
            << " pages, the largest " << largest << " bytes\n";
  listed = lull_cli({"jobs", "--broker", b.uri()});
  EXPECT_EQ(listed.code, 0) << listed.err << daemon->log();
  EXPECT_EQ(printed(listed), 20u) << listed.out << listed.err;
  // One job alone is larger than the budget.
  got = ask("scheduler/job/get", {{"job_id", *ids.begin()}});
  ASSERT_TRUE(got);
  auto e = json::parse(got->payload);
  EXPECT_EQ(e["error"]["code"], "ReplyTooLarge") << e.dump();
  EXPECT_NE(e["error"]["message"].get<std::string>().find("4096 bytes"), std::string::npos)
    << e.dump();
  auto shown = lull_cli({"jobs", "--broker", b.uri(), "--limit", "3"});
  EXPECT_EQ(printed(shown), 3u) << shown.out;
  EXPECT_NE(shown.out.find("--limit lists more"), std::string::npos) << shown.out;
  c.clear();
  rc = bus_reconnects();
  ASSERT_TRUE(rc) << daemon->log();
  EXPECT_EQ(*rc, 0) << daemon->log();
  EXPECT_EQ(daemon->log().find("reconnecting"), std::string::npos) << daemon->log();
  daemon->signal(SIGTERM);
  daemon->wait_exit(5s);
  daemon.reset();
}

// One producer cannot fill everyone's queue: past queue.max_jobs_per_producer
// (50 here) or queue.max_bytes_per_producer (1 MiB here) its submits get
// RequestThrottled naming the limit and what it holds, while another
// producer's submit is still accepted. After a kill -9 the restored jobs
// count again: the producer is still at its quota.
TEST(queue_integration, a_producer_at_its_quota_is_throttled_and_others_are_not) {
  broker b;
  auto dir = temp_dir();
  auto args = lulld_args(b.uri(), "quotahost",
                         {"--db", dir + "/lull.db", "--roles", "scheduler",
                          "--queue-max-jobs-per-producer", "50",
                          "--queue-max-bytes-per-producer", "1MiB"});
  auto daemon = std::make_unique<lulld>(args);
  client c(b.uri());
  ASSERT_TRUE(c.connected()) << c.error();
  c.subscribe("qq/+");
  // A reply topic of its own each time: the client keeps what it received,
  // and the first lulld's answer must not pass for the restarted one's.
  int readies = 0;
  auto ready = [&] {
    auto topic = "qq/ready" + std::to_string(++readies);
    return wait_until(
      [&] {
        c.publish("scheduler/job/list", json{{"limit", 1}, {"reply_to", topic}}.dump());
        return c.wait_for_topic(topic, 200ms).has_value();
      },
      20s);
  };
  ASSERT_TRUE(ready()) << daemon->log();
  int n = 0;
  auto submit = [&](const std::string& producer, const json& payload) {
    auto id = "s" + std::to_string(++n);
    c.publish("scheduler/job/submit", json{{"job_type", "t"}, {"producer", producer},
                                            {"payload", payload}, {"reply_to", "qq/acks"},
                                            {"request_id", id}}
                                        .dump());
    auto m = c.wait_for(
      [&](const mqtt_message& m) {
        auto d = json::parse(m.payload, nullptr, false);
        return m.topic == "qq/acks" && d.is_object() && d.value("request_id", "") == id;
      },
      15s);
    return m ? json::parse(m->payload) : json();
  };
  for (int i = 0; i < 50; ++i)
    ASSERT_TRUE(submit("flood", {{"i", i}}).value("ok", false)) << i << daemon->log();
  auto refused = submit("flood", {{"i", 50}});
  ASSERT_FALSE(refused.value("ok", true)) << refused.dump();
  EXPECT_EQ(refused["error"]["code"], "RequestThrottled");
  auto why = refused["error"]["message"].get<std::string>();
  EXPECT_NE(why.find("producer 'flood' has 50 jobs"), std::string::npos) << why;
  EXPECT_NE(why.find("queue.max_jobs_per_producer"), std::string::npos) << why;
  EXPECT_TRUE(submit("other", {{"i", 0}}).value("ok", false));

  // Bytes: 60 kB payloads fill 1 MiB after 17 jobs.
  json big = std::string(60000, 'x');
  int accepted = 0;
  json last;
  for (int i = 0; i < 30; ++i) {
    last = submit("big", big);
    if (!last.value("ok", false))
      break;
    ++accepted;
  }
  EXPECT_EQ(accepted, 17) << last.dump();
  EXPECT_EQ(last["error"]["code"], "RequestThrottled") << last.dump();
  why = last["error"]["message"].get<std::string>();
  EXPECT_NE(why.find("producer 'big' has 1020034 payload bytes"), std::string::npos) << why;
  EXPECT_NE(why.find("queue.max_bytes_per_producer (1048576)"), std::string::npos) << why;

  // kill -9 and a restart: the restored jobs count again.
  daemon->signal(SIGKILL);
  ASSERT_TRUE(daemon->wait_exit(5s));
  daemon = std::make_unique<lulld>(args);
  ASSERT_TRUE(daemon->wait_log("queue dispatcher: restored", 20s)) << daemon->log();
  ASSERT_TRUE(ready()) << daemon->log();
  refused = submit("flood", {{"i", 51}});
  EXPECT_EQ(refused["error"]["code"], "RequestThrottled") << refused.dump();
  EXPECT_NE(refused.dump().find("producer 'flood' has 50 jobs"), std::string::npos)
    << refused.dump();
  EXPECT_EQ(submit("big", big)["error"]["code"], "RequestThrottled");
  EXPECT_TRUE(submit("other", {{"i", 1}}).value("ok", false));
  daemon->signal(SIGTERM);
  EXPECT_EQ(daemon->wait_exit(10s), 0);
  fs::remove_all(dir);
}
