// The secure broker config (broker-config/secure.conf + acl) with two worker
// users: B cannot act on A's lease nor read A's replies; anonymous clients
// are refused; the admin can revoke.

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "messages/codec.hpp"
#include "messages/quiet.hpp"
#include "src/process.hpp"
#include "tests/secure_broker.hpp"
#include "tests/support/support.hpp"

using namespace lull;
using namespace lull::test;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

} // namespace

TEST(lease_acl, two_workers_cannot_touch_each_others_leases) {
  secure_dir dir;
  std::string err;
  auto bp = local_broker::start(dir.path + "/secure.conf", 0, &err);
  ASSERT_TRUE(bp) << err;
  auto uri = bp->uri();

  // Anonymous clients are refused.
  client anon(uri);
  EXPECT_FALSE(anon.connected());
  client wrong(uri, [] {
    auto o = user("wa");
    o.password = "nope";
    return o;
  }());
  EXPECT_FALSE(wrong.connected());

  lulld d(lulld_args(uri, "shost",
                     {"--username", "lulld", "--password", "pw-lulld", "--broker-secure",
                      "true", "--roles", "collectors,scheduler", "--quiet-stale-after", "1h"}));
  client admin(uri, user("lull-admin"));
  ASSERT_TRUE(admin.connected()) << admin.error();
  admin.subscribe("scheduler/status");
  client lulld_peer(uri, user("lulld")); // stands in for the quiet assessor
  quiet_assessment q;
  q.host_id = "shost";
  q.state = quiet_state::quiet;
  lulld_peer.publish("stats/host/shost/quiet", to_json(q).dump(), 1, true);
  ASSERT_TRUE(admin.wait_for(
    [](auto& m) { return m.payload.find("\"QUIET\"") != std::string::npos; }, 10s))
    << d.log();

  client a(uri, user("wa"));
  client b(uri, user("wb"));
  ASSERT_TRUE(a.connected()) << a.error();
  ASSERT_TRUE(b.connected()) << b.error();
  a.subscribe("workers/wa/#");
  b.subscribe("workers/wb/#");
  // Mosquitto may accept the subscription; its ACL then filters delivery.
  try {
    b.subscribe("workers/wa/#");
  } catch (const std::exception&) {
  }
  b.subscribe("workers/#");    // granted, but only workers/wb/... is delivered

  // A gets a lease on its own topic. Its payload's worker_id is ignored.
  a.publish({"scheduler/wa/lease/request", R"({"worker_id":"wb","cost_units":5})", 1, false,
             json_content_type, "workers/wa/reply", "a-1"});
  auto granted = a.wait_for_topic("workers/wa/reply", 10s);
  ASSERT_TRUE(granted) << d.log();
  auto g = json::parse(granted->payload);
  ASSERT_EQ(g["approved"], true) << g.dump();
  auto id = g["lease_id"].get<std::string>();

  // B on A's topics: the broker refuses them (MQTT v5 says "not authorized").
  auto refused = [&](const std::string& topic) {
    try {
      b.publish({topic, "{}", 1, false, json_content_type, "workers/wb/reply", "blocked"});
    } catch (const std::exception&) {
      return true;
    }
    return false;
  };
  for (auto* action : {"heartbeat", "release", "report", "revoke"})
    EXPECT_TRUE(refused("scheduler/wa/lease/" + id + "/" + action)) << action;
  EXPECT_TRUE(refused("scheduler/lease/" + id + "/revoke"));
  // B on its own topics, naming A's lease: lulld refuses, NotHolder.
  for (auto* action : {"heartbeat", "release", "report", "revoke"}) {
    b.publish({"scheduler/wb/lease/" + id + "/" + action, R"({"worker_id":"wa"})", 1, false,
               json_content_type, "workers/wb/reply", action});
    auto r = b.wait_for(
      [&](auto& m) { return m.topic == "workers/wb/reply" && m.correlation_data == action; },
      10s);
    ASSERT_TRUE(r) << action << "\n" << d.log();
    auto j = json::parse(r->payload);
    EXPECT_EQ(j["ok"], false) << action;
    EXPECT_EQ(j["error"]["code"], "NotHolder") << action;
  }
  // The NotHolder replies above answer requests B sent after the refused
  // ones, so any reply to a refused one would already be here.
  for (auto& m : b.received())
    EXPECT_NE(m.correlation_data, "blocked") << m.topic;
  // B asking lulld to reply into A's inbox gets nothing sent there.
  b.publish({"scheduler/wb/lease/request", R"({"cost_units":1})", 1, false, json_content_type,
             "workers/wa/reply", "hijack"});

  // A's lease is untouched: its heartbeat succeeds.
  a.publish({"scheduler/wa/lease/" + id + "/heartbeat", "{}", 1, false, json_content_type,
             "workers/wa/reply", "a-2"});
  auto hb = a.wait_for([](auto& m) { return m.correlation_data == "a-2"; }, 10s);
  ASSERT_TRUE(hb);
  EXPECT_EQ(json::parse(hb->payload)["state"], "ACTIVE");
  // A later request from B is answered: lulld has handled the hijack by then.
  b.publish({"scheduler/wb/lease/" + id + "/heartbeat", "{}", 1, false, json_content_type,
             "workers/wb/reply", "after-hijack"});
  ASSERT_TRUE(b.wait_for([](auto& m) { return m.correlation_data == "after-hijack"; }, 10s));
  ASSERT_TRUE(a.wait_for([](auto& m) { return m.correlation_data == "a-2"; }, 10s));
  for (auto& m : a.received())
    EXPECT_NE(m.correlation_data, "hijack") << m.topic;

  // B never saw any of A's replies or notices.
  for (auto& m : b.received())
    EXPECT_NE(m.topic.rfind("workers/wa/", 0), 0u) << m.topic;
  EXPECT_TRUE(b.received().size() >= 4);

  // Only the admin may pause a host; the pause suspends A's lease, and A hears
  // it on its own inbox, then the resumption.
  EXPECT_TRUE(refused("scheduler/control/shost"));
  EXPECT_TRUE(refused("scheduler/control/shost/set"));
  admin.publish("scheduler/control/shost",
                R"({"v":1,"paused":true,"by":"lull-admin","reason":"backup","until":null})", 1,
                true);
  auto sus = a.wait_for(
    [&](auto& m) { return m.topic == "workers/wa/lease/" + id + "/state"
                          && m.payload.find("\"type\":\"suspended\"") != std::string::npos; },
    10s);
  ASSERT_TRUE(sus) << d.log();
  EXPECT_EQ(json::parse(sus->payload)["reason"], "Paused by lull-admin: backup");
  EXPECT_EQ(sus->qos, 1);
  admin.publish("scheduler/control/shost", R"({"v":1,"paused":false})", 1, true);
  ASSERT_TRUE(a.wait_for(
    [&](auto& m) { return m.topic == "workers/wa/lease/" + id + "/state"
                          && m.payload.find("\"type\":\"resumed\"") != std::string::npos; },
    10s))
    << d.log();
  admin.publish("scheduler/control/shost", "", 1, true); // leave no retained state

  // The admin can revoke; A hears it on its own inbox.
  admin.publish("scheduler/lease/" + id + "/revoke", R"({"reason":"maintenance"})");
  auto rv = a.wait_for(
    [&](auto& m) { return m.topic == "workers/wa/lease/" + id + "/state"
                          && m.payload.find("REVOKED") != std::string::npos; },
    10s);
  ASSERT_TRUE(rv) << d.log();
  EXPECT_EQ(json::parse(rv->payload)["reason"], "maintenance");
}

TEST(lease_acl, jobs_and_history_run_as_the_topic_user) {
  secure_dir dir;
  std::string err;
  auto bp = local_broker::start(dir.path + "/secure.conf", 0, &err);
  ASSERT_TRUE(bp) << err;
  auto uri = bp->uri();
  lulld d(lulld_args(uri, "shost",
                     {"--username", "lulld", "--password", "pw-lulld", "--broker-secure",
                      "true", "--roles", "collectors,scheduler", "--quiet-stale-after", "1h"}));
  client lulld_peer(uri, user("lulld")); // stands in for the quiet assessor
  ASSERT_TRUE(lulld_peer.connected()) << lulld_peer.error();
  quiet_assessment q;
  q.host_id = "shost";
  q.state = quiet_state::quiet;
  lulld_peer.subscribe("scheduler/status");
  lulld_peer.publish("stats/host/shost/quiet", to_json(q).dump(), 1, true);
  ASSERT_TRUE(lulld_peer.wait_for(
    [](auto& m) { return m.payload.find("\"QUIET\"") != std::string::npos; }, 10s))
    << d.log();
  auto as = [&](const std::string& u, std::vector<std::string> args) {
    // Global flags first: after `--` they would be the command's.
    args.insert(args.begin(), {"--broker", uri, "--secure", "--user", u, "--password", "pw-" + u});
    return lull_cli(args);
  };

  // A submits as itself (the payload's producer is ignored); B works the job
  // as itself, end to end, through lull work's secure topics.
  auto s = as("wa", {"submit", "--type", "render", "--producer", "wb", "--host", "shost"});
  ASSERT_EQ(s.code, 0) << s.err << d.log();
  auto job1 = s.out.substr(0, s.out.find('\n'));
  auto w = as("wb", {"work", "--type", "render", "--max-jobs", "1", "--poll", "10s", "--no-cgroup",
                     "--", "sh", "-c", "exit 0"});
  ASSERT_EQ(w.code, 0) << w.err << d.log();
  auto mine = as("wa", {"jobs", "--json"});
  ASSERT_EQ(mine.code, 0) << mine.err;
  auto listed = json::parse(mine.out, nullptr, false);
  ASSERT_TRUE(listed.is_object()) << mine.out;
  ASSERT_EQ(listed["jobs"].size(), 1u) << mine.out;
  EXPECT_EQ(listed["jobs"][0]["job_id"], job1);
  EXPECT_EQ(listed["jobs"][0]["state"], "succeeded") << mine.out;
  EXPECT_EQ(listed["jobs"][0]["producer"], "wa");
  EXPECT_EQ(listed["jobs"][0]["worker_id"], "wb");

  // A second job of A's: B may not cancel, read or list it.
  auto s2 = as("wa", {"submit", "--type", "render", "--host", "nowhere"});
  ASSERT_EQ(s2.code, 0) << s2.err;
  auto job2 = s2.out.substr(0, s2.out.find('\n'));
  auto bc = as("wb", {"cancel", job2});
  EXPECT_EQ(bc.code, 1);
  EXPECT_NE(bc.err.find("cancel failed: NotHolder"), std::string::npos) << bc.err;
  auto bl = as("wb", {"jobs", "--json"});
  ASSERT_EQ(bl.code, 0) << bl.err;
  auto blj = json::parse(bl.out, nullptr, false);
  ASSERT_TRUE(blj.is_object()) << bl.out;
  ASSERT_EQ(blj["jobs"].size(), 1u) << bl.out; // the job B worked, not job2
  EXPECT_EQ(blj["jobs"][0]["job_id"], job1);

  client b(uri, user("wb"));
  ASSERT_TRUE(b.connected()) << b.error();
  b.subscribe("workers/wb/#");
  auto ask = [&](const std::string& topic, json body, const std::string& reply_to,
                 const std::string& key) {
    b.publish({topic, body.dump(), 1, false, json_content_type, reply_to, key});
    return b.wait_for([&](auto& m) { return m.correlation_data == key; }, 10s);
  };
  auto got = ask("scheduler/wb/job/get", {{"job_id", job2}}, "workers/wb/r", "get");
  ASSERT_TRUE(got) << d.log();
  EXPECT_EQ(json::parse(got->payload)["error"]["code"], "NotHolder") << got->payload;
  // On A's topics the broker refuses B outright.
  for (std::string t : {std::string("scheduler/wa/job/submit"), "scheduler/wa/job/" + job2 + "/cancel",
                 std::string("history/wa/request"), std::string("scheduler/job/submit"),
                 std::string("history/request")}) {
    bool refused = false;
    try {
      b.publish({t, R"({"job_type":"x"})", 1, false, json_content_type, "workers/wb/r", "no"});
    } catch (const std::exception&) {
      refused = true;
    }
    EXPECT_TRUE(refused) << t;
  }
  // B asking for a reply in A's inbox gets none; the next request is answered.
  client a(uri, user("wa"));
  ASSERT_TRUE(a.connected()) << a.error();
  a.subscribe("workers/wa/#");
  b.publish({"scheduler/wb/job/list", "{}", 1, false, json_content_type, "workers/wa/r", "hijack"});
  b.publish({"history/wb/request", R"({"kind":"health"})", 1, false, json_content_type,
             "workers/wa/r", "hijack2"});
  auto h = ask("history/wb/request", {{"kind", "health"}}, "workers/wb/r", "health");
  ASSERT_TRUE(h) << d.log();
  EXPECT_EQ(json::parse(h->payload)["ok"], true) << h->payload;
  auto l = ask("scheduler/wb/job/list", json::object(), "workers/wb/r", "list");
  ASSERT_TRUE(l);
  for (auto& m : a.received())
    EXPECT_EQ(m.correlation_data.rfind("hijack", 0), std::string::npos) << m.topic;
  EXPECT_TRUE(d.wait_log("not replying to 'workers/wa/r'"));

  // lull history works as A; A cancels its own job; the admin sees every job.
  auto hist = as("wa", {"history", "--group", "host", "--range", "10m", "--step", "10s"});
  EXPECT_EQ(hist.code, 0) << hist.err;
  auto ac = as("wa", {"cancel", job2});
  ASSERT_EQ(ac.code, 0) << ac.err;
  EXPECT_EQ(ac.out, "job " + job2 + " cancelled\n");
  auto all = as("lull-admin", {"jobs", "--json"});
  ASSERT_EQ(all.code, 0) << all.err;
  auto allj = json::parse(all.out, nullptr, false);
  ASSERT_TRUE(allj.is_object()) << all.out;
  EXPECT_EQ(allj["jobs"].size(), 2u) << all.out;
}

TEST(lease_acl, an_agent_speaks_only_for_its_own_host) {
  secure_dir dir;
  std::string err;
  auto bp = local_broker::start(dir.path + "/secure.conf", 0, &err);
  ASSERT_TRUE(bp) << err;
  auto uri = bp->uri();
  lulld sched(lulld_args(uri, "shost",
                         {"--username", "lulld", "--password", "pw-lulld", "--broker-secure",
                          "true", "--roles", "collectors,assessor,scheduler"}));
  lulld agent(lulld_args(uri, "pi-b",
                         {"--username", "pi-b", "--password", "pw-pi-b", "--broker-secure",
                          "true", "--roles", "collectors"}));
  client admin(uri, user("lull-admin"));
  ASSERT_TRUE(admin.connected()) << admin.error();
  admin.subscribe("stats/host/+/quiet");
  admin.subscribe("lull/+/availability");
  // The agent's snapshots reach the scheduler's assessor, which assesses pi-b.
  ASSERT_TRUE(admin.wait_for([](auto& m) { return m.topic == "stats/host/pi-b/quiet"; }, 30s))
    << agent.log() << sched.log();
  ASSERT_TRUE(admin.wait_for(
    [](auto& m) { return m.topic == "lull/pi-b/availability" && m.payload == "online"; }, 10s));
  // lulld's client id is not guessable: it is not lulld-<host> but carries a
  // random part, kept in the data directory.
  EXPECT_TRUE(sched.wait_log("as lulld-shost-")) << sched.log();
  EXPECT_EQ(sched.log().find("as lulld-shost\n"), std::string::npos);

  // The agent's user may not speak for another host or for the scheduler,
  // nor write what only lulld derives for its own host: the assessment and
  // the learned windows (a cool-down in 2100, a week of closed hours).
  client pib(uri, user("pi-b"));
  ASSERT_TRUE(pib.connected()) << pib.error();
  for (std::string t : {"stats/host/shost", "stats/host/shost/quiet", "stats/host/pi-b/quiet",
                        "stats/host/pi-b/quiet_hours", "lull/shost/availability", "scheduler/status", "scheduler/events",
                        "scheduler/host/pi-b/leases", "homeassistant/sensor/x/config"}) {
    bool refused = false;
    try {
      pib.publish({t, "{}", 1, false, json_content_type, "", ""});
    } catch (const std::exception&) {
      refused = true;
    }
    EXPECT_TRUE(refused) << t;
  }
  // A worker user may not publish host stats for a host of another name.
  client wa(uri, user("wa"));
  ASSERT_TRUE(wa.connected()) << wa.error();
  bool refused = false;
  try {
    wa.publish({"stats/host/pi-b", "{}", 1, false, json_content_type, "", ""});
  } catch (const std::exception&) {
    refused = true;
  }
  EXPECT_TRUE(refused);
}

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

} // namespace

// secure.conf's TLS listener, uncommented as its comments say, with
// certificates from scripts/lull-certs: lulld and a producer log in with a
// password over TLS, a worker with a client certificate (its CN is its user).
TEST(lease_acl, leases_and_jobs_over_tls_with_passwords_and_client_certificates) {
  secure_dir dir;
  spawn_options certs;
  certs.argv = {source_path("scripts/lull-certs"), dir.path + "/certs", "localhost", "wa"};
  certs.stdout_path = "/dev/null";
  auto cp = spawn(certs);
  ASSERT_TRUE(cp);
  ASSERT_EQ(exit_code_of(wait_for_exit(*cp, 60s).value_or(1 << 8)), 0);
  // The script keeps keys 0600 in a 0700 directory; the broker started as
  // root runs as the mosquitto user, so let it read them here.
  ::chmod((dir.path + "/certs").c_str(), 0755);
  for (auto& f : fs::directory_iterator(dir.path + "/certs"))
    ::chmod(f.path().c_str(), 0644);
  auto tls_port = free_loopback_port();
  auto cert_port = free_loopback_port();
  auto conf = read_text(dir.path + "/secure.conf");
  auto uncomment = [&](const std::string& from, const std::string& to) {
    auto pos = conf.find(from);
    ASSERT_NE(pos, std::string::npos) << from;
    conf.replace(pos, from.size(), to);
  };
  uncomment("#listener 8883", "listener " + std::to_string(tls_port) + " 127.0.0.1");
  for (auto* f : {"cafile", "certfile", "keyfile"}) {
    std::string name = std::string(f) == "cafile" ? "ca" : "server";
    std::string ext = std::string(f) == "keyfile" ? ".key" : ".crt";
    uncomment(std::string("#") + f + " /etc/mosquitto/certs/" + name + ext,
              std::string(f) + " " + dir.path + "/certs/" + name + ext);
  }
  uncomment("#tls_version tlsv1.2", "tls_version tlsv1.2");
  conf += "\nlistener " + std::to_string(cert_port) + " 127.0.0.1\ncafile " + dir.path
          + "/certs/ca.crt\ncertfile " + dir.path + "/certs/server.crt\nkeyfile " + dir.path
          + "/certs/server.key\nrequire_certificate true\nuse_identity_as_username true\n";
  std::ofstream(dir.path + "/tls.conf") << conf;
  std::string err;
  auto bp = local_broker::start(dir.path + "/tls.conf", 0, &err);
  ASSERT_TRUE(bp) << err;
  ASSERT_TRUE(wait_until([&] { return port_accepts(cert_port); }, 10s));
  auto tls = "ssl://127.0.0.1:" + std::to_string(tls_port);
  auto by_cert = "ssl://127.0.0.1:" + std::to_string(cert_port);
  auto ca = dir.path + "/certs/ca.crt";

  lulld d(lulld_args(tls, "shost",
                     {"--username", "lulld", "--password", "pw-lulld", "--broker-secure", "true",
                      "--broker-ca-file", ca, "--roles", "collectors,scheduler",
                      "--quiet-stale-after", "1h"}));
  client peer(bp->uri(), user("lulld")); // stands in for the quiet assessor
  ASSERT_TRUE(peer.connected()) << peer.error();
  quiet_assessment q;
  q.host_id = "shost";
  q.state = quiet_state::quiet;
  peer.subscribe("scheduler/status");
  peer.publish("stats/host/shost/quiet", to_json(q).dump(), 1, true);
  ASSERT_TRUE(peer.wait_for(
    [](auto& m) { return m.payload.find("\"QUIET\"") != std::string::npos; }, 20s))
    << d.log();
  EXPECT_NE(d.log().find("connecting to " + tls), std::string::npos) << d.log();

  // A producer with a password over TLS; a worker with its certificate.
  auto s = lull_cli({"submit", "--type", "render", "--broker", tls, "--ca-file", ca, "--secure",
                     "--user", "wb", "--password", "pw-wb"});
  ASSERT_EQ(s.code, 0) << s.err << d.log();
  auto job = s.out.substr(0, s.out.find('\n'));
  auto cert_args = std::vector<std::string>{"--broker", by_cert, "--ca-file", ca, "--cert",
                                            dir.path + "/certs/wa.crt", "--key",
                                            dir.path + "/certs/wa.key", "--secure", "--user", "wa"};
  auto w = [&] {
    std::vector<std::string> a = {"work", "--type", "render", "--max-jobs", "1", "--poll", "10s",
                                  "--no-cgroup"};
    a.insert(a.end(), cert_args.begin(), cert_args.end());
    a.insert(a.end(), {"--", "sh", "-c", "exit 0"});
    return lull_cli(a);
  }();
  ASSERT_EQ(w.code, 0) << w.err << d.log();
  auto r = [&] {
    std::vector<std::string> a = {"run", "--no-cgroup"};
    a.insert(a.end(), cert_args.begin(), cert_args.end());
    a.insert(a.end(), {"--", "sh", "-c", "exit 0"});
    return lull_cli(a);
  }();
  EXPECT_EQ(r.code, 0) << r.err << d.log();
  auto jobs = lull_cli({"jobs", "--json", "--broker", tls, "--ca-file", ca, "--secure", "--user",
                        "wb", "--password", "pw-wb"});
  ASSERT_EQ(jobs.code, 0) << jobs.err;
  auto doc = json::parse(jobs.out, nullptr, false);
  ASSERT_TRUE(doc.is_object()) << jobs.out;
  ASSERT_EQ(doc["jobs"].size(), 1u) << jobs.out;
  EXPECT_EQ(doc["jobs"][0]["job_id"], job);
  EXPECT_EQ(doc["jobs"][0]["state"], "succeeded");
  EXPECT_EQ(doc["jobs"][0]["worker_id"], "wa"); // the certificate's CN

  // Without the CA the broker's certificate is not trusted: a clear refusal.
  auto untrusted = lull_cli({"status", "--broker", tls, "--user", "wb", "--password", "pw-wb",
                             "--timeout", "5"});
  EXPECT_EQ(untrusted.code, 69) << untrusted.err;
  // Without a certificate the certificate listener refuses the worker.
  auto nocert = lull_cli({"status", "--broker", by_cert, "--ca-file", ca, "--user", "wa",
                          "--timeout", "5"});
  EXPECT_EQ(nocert.code, 69) << nocert.err;
}

// Authority is explicit: Home Assistant cannot lift the admin's pause, and
// only lease.high_users ask for HIGH leases or submit HIGH jobs.
TEST(lease_acl, home_assistant_cannot_lift_an_admin_pause_and_high_is_for_high_users) {
  secure_dir dir;
  std::string err;
  auto bp = local_broker::start(dir.path + "/secure.conf", 0, &err);
  ASSERT_TRUE(bp) << err;
  auto uri = bp->uri();
  lulld d(lulld_args(uri, "shost",
                     {"--username", "lulld", "--password", "pw-lulld", "--broker-secure",
                      "true", "--roles", "collectors,scheduler", "--quiet-stale-after", "1h"}));
  client admin(uri, user("lull-admin"));
  ASSERT_TRUE(admin.connected()) << admin.error();
  admin.subscribe("scheduler/status");
  admin.subscribe("workers/lull-admin/#");
  client peer(uri, user("lulld")); // stands in for the quiet assessor
  quiet_assessment q;
  q.host_id = "shost";
  q.state = quiet_state::quiet;
  peer.publish("stats/host/shost/quiet", to_json(q).dump(), 1, true);
  auto status_shows = [&](const std::function<bool(const json&)>& pred) {
    return admin
      .wait_for(
        [&](const mqtt_message& m) {
          if (m.topic != "scheduler/status")
            return false;
          auto j = json::parse(m.payload, nullptr, false);
          return j.is_object() && j["hosts"].contains("shost") && pred(j["hosts"]["shost"]);
        },
        20s)
      .has_value();
  };
  ASSERT_TRUE(status_shows([](const json& h) { return h["state"] == "QUIET"; })) << d.log();

  // The admin pauses the host (lull pause's message, retained).
  admin.publish("scheduler/control/shost",
                R"({"v":1,"paused":true,"by":"lull-admin","reason":"maintenance"})", 1, true);
  ASSERT_TRUE(status_shows([](const json& h) {
    return h.value("paused_by", "") == "paused by lull-admin (admin)";
  })) << d.log();
  // Home Assistant's switch says ON: refused, logged, and the pause holds.
  client ha(uri, user("homeassistant"));
  ASSERT_TRUE(ha.connected()) << ha.error();
  ha.publish("scheduler/control/shost/set", "ON", 1, false);
  ASSERT_TRUE(d.wait_log("Home Assistant's ON for host shost refused", 20s)) << d.log();
  auto still = admin.wait_for(
    [](const mqtt_message& m) {
      auto j = json::parse(m.payload, nullptr, false);
      return m.topic == "scheduler/status" && j.is_object()
             && j["counters"].value("pause_refused", 0) >= 1;
    },
    20s);
  ASSERT_TRUE(still) << d.log();
  EXPECT_EQ(json::parse(still->payload)["hosts"]["shost"]["paused_by"],
            "paused by lull-admin (admin)");
  // Home Assistant's own pause, it lifts itself once the admin's is gone.
  admin.publish("scheduler/control/shost", R"({"v":1,"paused":false})", 1, true);
  ASSERT_TRUE(status_shows([](const json& h) { return h["paused"].is_null(); })) << d.log();
  ha.publish("scheduler/control/shost/set", "OFF", 1, false);
  ASSERT_TRUE(status_shows([](const json& h) {
    return h.value("paused_by", "") == "paused by Home Assistant (home_assistant)";
  })) << d.log();
  ha.publish("scheduler/control/shost/set", "ON", 1, false);
  ASSERT_TRUE(status_shows([](const json& h) { return h["paused"].is_null(); })) << d.log();

  // HIGH: wa is not in lease.high_users (default lull-admin).
  client a(uri, user("wa"));
  ASSERT_TRUE(a.connected()) << a.error();
  a.subscribe("workers/wa/#");
  a.publish({"scheduler/wa/lease/request", R"({"cost_units":5,"priority":"HIGH"})", 1, false,
             json_content_type, "workers/wa/reply", "hi-1"});
  auto denied = a.wait_for_topic("workers/wa/reply", 20s);
  ASSERT_TRUE(denied) << d.log();
  auto dj = json::parse(denied->payload);
  EXPECT_EQ(dj["ok"], false) << dj.dump();
  EXPECT_EQ(dj["error"]["code"], "PermissionDenied") << dj.dump();
  EXPECT_NE(dj["error"]["message"].get<std::string>().find("lease.high_users (lull-admin)"),
            std::string::npos)
    << dj.dump();
  a.clear();
  a.publish({"scheduler/wa/job/submit", R"({"job_type":"t","priority":"high"})", 1, false,
             json_content_type, "workers/wa/job-reply", "hj-1"});
  auto job_denied = a.wait_for_topic("workers/wa/job-reply", 20s);
  ASSERT_TRUE(job_denied) << d.log();
  EXPECT_EQ(json::parse(job_denied->payload)["error"]["code"], "PermissionDenied");
  // lull-admin is.
  admin.publish({"scheduler/lull-admin/lease/request", R"({"cost_units":5,"priority":"HIGH"})", 1,
                 false, json_content_type, "workers/lull-admin/reply", "hi-2"});
  auto granted = admin.wait_for_topic("workers/lull-admin/reply", 20s);
  ASSERT_TRUE(granted) << d.log();
  auto gj = json::parse(granted->payload);
  EXPECT_EQ(gj["approved"], true) << gj.dump();
  EXPECT_EQ(gj["host_id"], "shost");
}

