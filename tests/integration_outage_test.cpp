// Broker outages: a Mosquitto restart must not cost a leased job anything.
// lulld pauses expiry while it is cut off and renews every lease for a full
// TTL when it is back; lull run keeps its child while it cannot know the
// lease's fate (TTL + lock_delay) and heartbeats as soon as it reconnects.

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "messages/quiet.hpp"
#include "src/client/lease_client.hpp"
#include "src/process.hpp"
#include "tests/support/support.hpp"

using namespace lull;
using namespace lull::test;
using json = nlohmann::json;

namespace {

void publish_quiet(client& c, const std::string& host) {
  quiet_assessment q;
  q.host_id = host;
  q.state = quiet_state::quiet;
  q.quiet_score = 95;
  q.assessed_at = std::time(nullptr);
  c.publish("stats/host/" + host + "/quiet", to_json(q).dump(), 1, true);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool alive(pid_t pid) { return ::kill(pid, 0) == 0; }

} // namespace

TEST(outage_integration, a_10s_broker_outage_under_a_12s_lease_changes_nothing) {
  broker b;
  lulld d(lulld_args(b.uri(), "ohost", {"--roles", "collectors,scheduler"}));
  std::string child_file = "/tmp/lull-outage-child-" + std::to_string(::getpid());
  std::optional<pid_t> run;
  {
    client c(b.uri());
    ASSERT_TRUE(c.connected()) << c.error();
    c.subscribe("scheduler/lease/+/state");
    c.subscribe("scheduler/status");
    publish_quiet(c, "ohost");
    // lulld is subscribed once its status shows the host QUIET.
    ASSERT_TRUE(c.wait_for(
      [](const mqtt_message& m) {
        if (m.topic != "scheduler/status")
          return false;
        auto j = json::parse(m.payload, nullptr, false);
        return j.is_object() && j["hosts"].contains("ohost")
               && j["hosts"]["ohost"]["state"] == "QUIET";
      },
      20s))
      << d.log();
    spawn_options o;
    o.argv = {binary_path("src/lull"), "--broker", b.uri(), "--worker", "steady", "run",
              "--ttl", "12s", "--grace", "2s", "--", "sh", "-c",
              "echo $$ > " + child_file + "; exec sleep 300"};
    run = spawn(o);
    ASSERT_TRUE(run);
  }
  // The grant may come before the test client's subscription: read it from
  // the retained status instead.
  std::string lease_id;
  std::uint64_t token = 0;
  {
    client c(b.uri());
    c.subscribe("scheduler/status");
    auto granted = c.wait_for(
      [&](const mqtt_message& m) {
        if (m.topic != "scheduler/status")
          return false;
        auto j = json::parse(m.payload, nullptr, false);
        if (!j.is_object() || !j["active"].is_array() || j["active"].empty())
          return false;
        lease_id = j["active"][0].value("lease_id", std::string());
        token = j["active"][0].value("fencing_token", std::uint64_t{0});
        return !lease_id.empty();
      },
      20s);
    ASSERT_TRUE(granted) << d.log();
  }
  ASSERT_TRUE(wait_until([&] { return !slurp(child_file).empty(); }, 10s));
  pid_t child = std::stoi(slurp(child_file));
  ::unlink(child_file.c_str());

  // The fault: the broker is away for 10 s (the fault's length, not a wait
  // for a condition), then back on the same port.
  b.process().stop();
  auto stopped_at = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(10s);
  std::string err;
  ASSERT_TRUE(b.process().restart(&err)) << err;
  auto back_at = std::chrono::steady_clock::now();

  // lulld is back (its retained availability) and says so about the leases.
  client c(b.uri());
  ASSERT_TRUE(c.connected()) << c.error();
  c.subscribe("lull/+/availability");
  ASSERT_TRUE(c.wait_for([](auto& m) { return m.payload == "online"; }, 30s)) << d.log();
  auto online_at = std::chrono::steady_clock::now();
  std::cout << "broker away " << std::chrono::duration<double>(back_at - stopped_at).count()
            << " s; lulld back online "
            << std::chrono::duration<double>(online_at - back_at).count()
            << " s after the broker (an upper bound: includes this client's connect)\n";
  ASSERT_TRUE(d.wait_log("renewed for a full TTL", 10s)) << d.log();

  // More than a whole TTL after the broker came back, the lease is still
  // the same active lease: a heartbeat in the holder's name (open mode takes
  // the payload's worker_id) is answered ACTIVE with the same fencing token.
  c.subscribe("scheduler/events");
  c.subscribe("test/probe");
  ASSERT_TRUE(wait_until(
    [&] { return std::chrono::steady_clock::now() - back_at > 14s; }, 30s));
  c.publish("scheduler/lease/" + lease_id + "/heartbeat",
            R"({"v":1,"worker_id":"steady","request_id":"probe-1","reply_to":"test/probe"})");
  auto probe = c.wait_for_topic("test/probe", 20s);
  ASSERT_TRUE(probe) << d.log();
  auto pj = json::parse(probe->payload);
  EXPECT_EQ(pj["ok"], true) << pj.dump() << "\n" << d.log();
  EXPECT_EQ(pj["state"], "ACTIVE") << pj.dump();
  EXPECT_EQ(pj["fencing_token"], token);
  EXPECT_TRUE(alive(*run)) << "lull run stopped";
  EXPECT_TRUE(alive(child)) << "the leased command was stopped";
  EXPECT_EQ(d.log().find("missed heartbeats"), std::string::npos) << d.log();

  // Ctrl-C ends it as usual: the lease is released, not expired.
  ::kill(*run, SIGINT);
  auto st = wait_for_exit(*run, 15s);
  ASSERT_TRUE(st);
  EXPECT_TRUE(wait_until([&] { return !alive(child); }, 5s));
  auto released = c.wait_for(
    [&](auto& m) {
      return m.topic == "scheduler/events" && m.payload.find(lease_id) != std::string::npos
             && m.payload.find("\"released\"") != std::string::npos;
    },
    10s);
  EXPECT_TRUE(released) << d.log();
}

// Three rounds, each with three holders (`lull run --ttl 12s`, default 10 s
// grace, so a holder cut off from lulld keeps its child for TTL + lock_delay
// - grace = 17 s after its last answered heartbeat): the broker goes away for
// 10 s each round. Every child must survive, with no lease expired and no
// heartbeat_missed for a lease lulld renewed when it came back. A holder's
// first heartbeat after reconnecting may reach the broker before lulld has
// subscribed again (the broker kept no sessions); it is sent again every
// second until answered.
TEST(outage_integration, nine_holders_ride_out_three_10s_broker_restarts) {
  broker b;
  // The test's assessment is the only one (no assessor here): it must not
  // go stale over the three rounds.
  lulld d(lulld_args(b.uri(), "rhost",
                     {"--roles", "collectors,scheduler", "--quiet-stale-after", "1h"}));
  auto quiet_and_ready = [&](client& c) {
    publish_quiet(c, "rhost");
    return c.wait_for(
      [](const mqtt_message& m) {
        if (m.topic != "scheduler/status")
          return false;
        auto j = json::parse(m.payload, nullptr, false);
        return j.is_object() && j["hosts"].contains("rhost")
               && j["hosts"]["rhost"]["state"] == "QUIET";
      },
      20s);
  };
  {
    client c(b.uri());
    ASSERT_TRUE(c.connected()) << c.error();
    c.subscribe("scheduler/status");
    ASSERT_TRUE(quiet_and_ready(c)) << d.log();
  }
  int survived = 0;
  for (int round = 0; round < 3; ++round) {
    std::vector<pid_t> runs, children;
    std::vector<std::string> files;
    for (int k = 0; k < 3; ++k) {
      files.push_back("/tmp/lull-outage3-" + std::to_string(::getpid()) + "-" + std::to_string(k));
      spawn_options o;
      o.argv = {binary_path("src/lull"), "--broker", b.uri(), "--worker",
                "h" + std::to_string(round) + std::to_string(k), "run", "--ttl", "12s", "--cost",
                "5", "--", "sh", "-c", "echo $$ > " + files.back() + "; exec sleep 300"};
      auto pid = spawn(o);
      ASSERT_TRUE(pid);
      runs.push_back(*pid);
    }
    for (auto& f : files) {
      ASSERT_TRUE(wait_until([&] { return !slurp(f).empty(); }, 20s)) << d.log();
      children.push_back(std::stoi(slurp(f)));
      ::unlink(f.c_str());
    }
    // Each holder has told lulld its child's pid (its first heartbeat) once
    // its lease lists a process.
    {
      client c(b.uri());
      c.subscribe("scheduler/status");
      ASSERT_TRUE(c.wait_for(
        [](const mqtt_message& m) {
          auto j = json::parse(m.payload, nullptr, false);
          return j.is_object() && j["active_total"] == 3;
        },
        20s))
        << d.log();
    }

    b.process().stop();
    auto stopped_at = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(10s); // the fault's length
    std::string err;
    ASSERT_TRUE(b.process().restart(&err)) << err;
    client c(b.uri());
    ASSERT_TRUE(c.connected()) << c.error();
    c.subscribe("scheduler/events");
    c.subscribe("scheduler/status");
    // Past the holders' own bound (17 s after the last answered heartbeat,
    // itself before the stop): had a renewal not landed, they would have
    // stopped their children by now.
    ASSERT_TRUE(wait_until(
      [&] { return std::chrono::steady_clock::now() - stopped_at > 19s; }, 30s));
    auto st = c.wait_for(
      [](const mqtt_message& m) {
        auto j = json::parse(m.payload, nullptr, false);
        return m.topic == "scheduler/status" && j.is_object() && j["active_total"] == 3;
      },
      10s);
    EXPECT_TRUE(st) << "round " << round << ": the three leases are still active\n" << d.log();
    for (std::size_t k = 0; k < runs.size(); ++k) {
      bool ok = alive(runs[k]) && alive(children[k]);
      EXPECT_TRUE(ok) << "round " << round << ", holder " << k << " stopped\n" << d.log();
      survived += ok ? 1 : 0;
    }
    for (auto& m : c.received()) {
      if (m.topic == "scheduler/events") {
        EXPECT_EQ(m.payload.find("heartbeat_missed"), std::string::npos)
          << "round " << round << ": a lease renewed on reconnect was reported missed: "
          << m.payload;
      }
    }
    for (auto pid : runs)
      ::kill(pid, SIGINT);
    for (auto pid : runs)
      EXPECT_TRUE(wait_for_exit(pid, 20s));
    for (auto pid : children)
      EXPECT_TRUE(wait_until([&] { return !alive(pid); }, 10s));
  }
  EXPECT_EQ(survived, 9);
  EXPECT_EQ(d.log().find("missed heartbeats"), std::string::npos) << d.log();
}

// Requests published while lulld is down wait in its broker session and
// reach it at its restart. One whose deadline has passed (its client gave up
// long ago) is dropped and counted, never granted: a grant would hold
// capacity for nobody. One still within its deadline is answered.
TEST(outage_integration, a_request_older_than_its_deadline_is_not_granted_at_restart) {
  broker b;
  auto args = lulld_args(b.uri(), "shost", {"--roles", "scheduler"});
  auto ready = [&](client& c) {
    publish_agent(c, "shost"); // no collector runs here
    publish_quiet(c, "shost");
    return c.wait_for(
      [](const mqtt_message& m) {
        auto j = json::parse(m.payload, nullptr, false);
        return m.topic == "scheduler/status" && j.is_object() && j["hosts"].contains("shost")
               && j["hosts"]["shost"]["state"] == "QUIET";
      },
      20s);
  };
  client c(b.uri());
  ASSERT_TRUE(c.connected()) << c.error();
  c.subscribe("stale/+");
  c.subscribe("scheduler/status");
  {
    lulld d(args);
    ASSERT_TRUE(ready(c)) << d.log();
    d.signal(SIGTERM);
    ASSERT_TRUE(d.wait_exit(15s)) << d.log();
  }
  auto now = static_cast<double>(std::time(nullptr));
  json stale = {{"v", 1},          {"worker_id", "gone"},   {"host_id", "shost"},
                {"cost_units", 5}, {"request_id", "old-1"}, {"reply_to", "stale/old"},
                {"deadline", now - 120}};
  json fresh = {{"v", 1},          {"worker_id", "here"},     {"host_id", "shost"},
                {"cost_units", 5}, {"request_id", "fresh-1"}, {"reply_to", "stale/fresh"},
                {"deadline", now + 600}};
  c.publish("scheduler/lease/request", stale.dump());
  c.publish("scheduler/lease/request", fresh.dump());

  lulld d(args);
  c.clear();
  auto answered = c.wait_for_topic("stale/fresh", 30s);
  ASSERT_TRUE(answered) << "the request still within its deadline is answered\n" << d.log();
  if (!json::parse(answered->payload).value("approved", false)) {
    // It reached lulld before the host's agent did (a host is known only
    // from its agent's snapshot, which arrives at resubscription): denied
    // with a retry hint, as a client then asks again.
    EXPECT_NE(answered->payload.find("shost"), std::string::npos) << answered->payload;
    ASSERT_TRUE(c.wait_for(
      [](const mqtt_message& m) {
        auto j = json::parse(m.payload, nullptr, false);
        return m.topic == "scheduler/status" && j.is_object() && j["hosts"].contains("shost");
      },
      20s))
      << d.log();
    c.clear();
    c.publish("scheduler/lease/request", fresh.dump());
    answered = c.wait_for_topic("stale/fresh", 30s);
    ASSERT_TRUE(answered) << d.log();
  }
  EXPECT_TRUE(json::parse(answered->payload).value("approved", false)) << answered->payload;
  auto counted = c.wait_for(
    [](const mqtt_message& m) {
      auto j = json::parse(m.payload, nullptr, false);
      return m.topic == "scheduler/status" && j.is_object()
             && j["counters"].value("expired", 0) >= 1;
    },
    15s);
  EXPECT_TRUE(counted) << "the expired request is counted in scheduler/status\n" << d.log();
  EXPECT_FALSE(c.wait_for_topic("stale/old", 1s)) << "nobody waits for it: no reply";
  auto st = c.wait_for(
    [](const mqtt_message& m) {
      auto j = json::parse(m.payload, nullptr, false);
      return m.topic == "scheduler/status" && j.is_object() && j["active_total"] == 1;
    },
    10s);
  ASSERT_TRUE(st) << d.log();
  auto j = json::parse(st->payload);
  EXPECT_EQ(j["active"][0]["worker_id"], "here") << j["active"].dump();
}

// A worker whose publishes waited for the broker (a release sent again
// every second during a broker restart) reconnects, announces itself again
// from Paho's connected callback, and sends what waited. That callback once
// waited for the publish buffer's lock while the buffer's flusher, holding
// it, waited inside Paho for a lock the callback's thread held: the client
// hung for good and its worker's lease expired. Ten restarts, each with
// more waiting than the broker's in-flight window (20) takes at once.
TEST(outage_integration, a_client_reconnects_and_sends_what_waited_after_each_of_ten_restarts) {
  broker b;
  lease_client_options o;
  o.uri = b.uri();
  o.worker_id = "rejoin";
  o.announce = true;
  auto made = lease_client::connect(o);
  ASSERT_TRUE(std::holds_alternative<std::unique_ptr<lease_client>>(made))
    << std::get<std::string>(made);
  auto& lc = *std::get<std::unique_ptr<lease_client>>(made);
  constexpr int waiting = 30;
  for (int round = 0; round < 10; ++round) {
    b.process().stop();
    ASSERT_TRUE(wait_until([&] { return !lc.connected(); }, 10s)) << "round " << round;
    // Retained, each on its own topic: the broker (no persistence) keeps
    // only what reached it after the restart, so the test's client, which
    // can subscribe only then, sees each one that did.
    for (int k = 0; k < waiting; ++k)
      lc.publish("test/rejoin/" + std::to_string(round) + "/" + std::to_string(k),
                 {{"round", round}, {"k", k}}, true);
    std::string err;
    ASSERT_TRUE(b.process().restart(&err)) << err;
    client c(b.uri());
    ASSERT_TRUE(c.connected()) << c.error();
    c.subscribe("stats/worker/rejoin");
    c.subscribe("test/rejoin/" + std::to_string(round) + "/#");
    // "online" again: the broker lost it with the restart.
    auto online = c.wait_for(
      [](const mqtt_message& m) {
        return m.topic == "stats/worker/rejoin"
               && m.payload.find("\"online\"") != std::string::npos;
      },
      15s);
    ASSERT_TRUE(online) << "round " << round << ": the client never announced itself again";
    ASSERT_TRUE(wait_until(
      [&] {
        int n = 0;
        for (auto& m : c.received())
          n += m.topic.rfind("test/rejoin/", 0) == 0 ? 1 : 0;
        return n == waiting;
      },
      15s))
      << "round " << round << ": not every waiting publish reached the broker";
    ASSERT_TRUE(lc.connected());
  }
}
