// The secure broker config (broker-config/secure.conf + acl) with two worker
// users: B cannot act on A's lease nor read A's replies; anonymous clients
// are refused; the admin can revoke.

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>

#include "messages/codec.hpp"
#include "messages/quiet.hpp"
#include "src/process.hpp"
#include "tests/support/support.hpp"

using namespace lull;
using namespace lull::test;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

/// A copy of broker-config/secure.conf and acl with a fresh password file.
struct secure_dir {
  std::string path;
  secure_dir() {
    char tmpl[] = "/tmp/lull-secure-XXXXXX";
    path = ::mkdtemp(tmpl);
    ::chmod(path.c_str(), 0755); // see below
    fs::copy_file(source_path("broker-config/secure.conf"), path + "/secure.conf");
    fs::copy_file(source_path("broker-config/acl"), path + "/acl");
    for (auto* u : {"lulld", "lull-admin", "wa", "wb"}) {
      spawn_options o;
      o.argv = {source_path("scripts/lull-broker-user"), path + "/passwd", u,
                std::string("pw-") + u};
      o.stdout_path = "/dev/null";
      auto pid = spawn(o);
      if (!pid || exit_code_of(wait_for_exit(*pid, 10s).value_or(1 << 8)) != 0)
        throw std::runtime_error("lull-broker-user failed");
    }
    // Mosquitto started as root drops to the mosquitto user, which must be
    // able to read the file the script created 0600.
    ::chmod((path + "/passwd").c_str(), 0644);
  }
  ~secure_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

client_options user(const std::string& name, int version = 5) {
  client_options o;
  o.username = name;
  o.password = "pw-" + name;
  o.mqtt_version = version;
  return o;
}

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
