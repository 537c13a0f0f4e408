// lulld end to end against a real Mosquitto on a free loopback port.

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "messages/codec.hpp"
#include "messages/host_snapshot.hpp"
#include "messages/util.hpp"
#include "src/process.hpp"
#include "tests/support/support.hpp"

using namespace lull;
using namespace lull::test;

namespace {

void expect_valid_snapshot(const mqtt_message& m, const std::string& host) {
  auto doc = decode(m.payload, wire_format::json);
  ASSERT_TRUE(doc) << m.payload;
  auto s = host_snapshot_from_json(*doc); // throws on a malformed snapshot
  EXPECT_EQ(s.host_id, host);
  EXPECT_GT(s.cpu_count.value_or(0), 0);
  ASSERT_TRUE(s.cpu_pct);
  EXPECT_GE(*s.cpu_pct, 0);
  EXPECT_LE(*s.cpu_pct, 100);
  EXPECT_GT(s.mem_total_bytes.value_or(0), 0u);
  ASSERT_FALSE(s.disks.empty());
  EXPECT_EQ(s.disks[0].mount, "/");
  EXPECT_GT(s.disks[0].total_bytes.value_or(0), 0u);
  EXPECT_TRUE(s.net_rx_bytes.has_value());
  EXPECT_GT(s.uptime_sec.value_or(0), 0);
  EXPECT_TRUE(s.boot_time.has_value());
  auto now = unix_seconds_now();
  EXPECT_NEAR(static_cast<double>(s.collected_at), static_cast<double>(now), 10);
  EXPECT_EQ(m.content_type, "application/json");
}

} // namespace

TEST(lulld, publishes_a_valid_snapshot_within_5s) {
  broker b;
  client sub(b.uri());
  ASSERT_TRUE(sub.connected()) << sub.error();
  sub.subscribe("stats/host/+");
  lulld d(lulld_args(b.uri(), "itest-a", {"--interval", "500ms"}));
  auto m = sub.wait_for_topic("stats/host/itest-a", 5s);
  ASSERT_TRUE(m) << d.log();
  expect_valid_snapshot(*m, "itest-a");
}

TEST(lulld, availability_is_online_and_retained) {
  broker b;
  lulld d(lulld_args(b.uri(), "itest-b"));
  ASSERT_TRUE(d.wait_log("connected to", 5s)) << d.log();
  // Once lulld has said it (a subscriber that came first may see it live)...
  client first(b.uri());
  first.subscribe("lull/itest-b/availability");
  ASSERT_TRUE(first.wait_for([](auto& m) { return m.payload == "online"; }, 5s)) << d.log();
  // ...a subscriber that arrives later gets the retained state.
  client sub(b.uri());
  sub.subscribe("lull/itest-b/availability");
  auto m = sub.wait_for([](auto& m) { return m.payload == "online"; }, 5s);
  ASSERT_TRUE(m) << d.log();
  EXPECT_TRUE(m->retain);
}

TEST(lulld, kill_9_makes_the_broker_deliver_offline) {
  broker b;
  client sub(b.uri());
  sub.subscribe("lull/itest-c/availability");
  lulld d(lulld_args(b.uri(), "itest-c"));
  ASSERT_TRUE(sub.wait_for([](auto& m) { return m.payload == "online"; }, 5s)) << d.log();
  d.signal(SIGKILL);
  auto m = sub.wait_for([](auto& m) { return m.payload == "offline"; }, 5s);
  ASSERT_TRUE(m) << "the last-will did not fire";
  // And it is retained for whoever looks next.
  client later(b.uri());
  later.subscribe("lull/itest-c/availability");
  auto r = later.wait_for([](auto& m) { return m.payload == "offline"; }, 5s);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->retain);
}

// How long the exit takes is a figure for bench/ (bench_shutdown); here the
// deadline is generous so a loaded machine cannot fail it.
TEST(lulld, sigterm_publishes_offline_and_exits_0) {
  broker b;
  client sub(b.uri());
  sub.subscribe("lull/itest-d/availability");
  lulld d(lulld_args(b.uri(), "itest-d"));
  ASSERT_TRUE(sub.wait_for([](auto& m) { return m.payload == "online"; }, 5s)) << d.log();
  d.signal(SIGTERM);
  auto code = d.wait_exit(30s);
  ASSERT_TRUE(code) << "lulld still running 30 s after SIGTERM\n" << d.log();
  EXPECT_EQ(*code, 0) << d.log();
  EXPECT_TRUE(sub.wait_for([](auto& m) { return m.payload == "offline"; }, 10s));
  EXPECT_NE(d.log().find("SIGTERM received"), std::string::npos);
}

TEST(lulld, sigint_also_shuts_down_cleanly) {
  broker b;
  lulld d(lulld_args(b.uri(), "itest-e"));
  ASSERT_TRUE(d.wait_log("connected to", 5s)) << d.log();
  d.signal(SIGINT);
  auto code = d.wait_exit(2s);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0);
}

TEST(lulld, started_before_the_broker_connects_once_it_comes_up) {
  int port = free_loopback_port();
  std::string uri = "tcp://127.0.0.1:" + std::to_string(port);
  lulld d(lulld_args(uri, "itest-f", {"--interval", "500ms"}));
  ASSERT_TRUE(d.wait_log("retrying in", 5s)) << d.log();
  ASSERT_TRUE(d.running());
  broker b("local.conf", port);
  client sub(b.uri());
  sub.subscribe("stats/host/itest-f");
  auto m = sub.wait_for_topic("stats/host/itest-f", 8s);
  ASSERT_TRUE(m) << d.log();
  expect_valid_snapshot(*m, "itest-f");
}

TEST(lulld, reconnects_and_republishes_after_the_broker_restarts) {
  broker b;
  lulld d(lulld_args(b.uri(), "itest-g", {"--interval", "500ms"}));
  ASSERT_TRUE(d.wait_log("connected to", 5s)) << d.log();
  std::string err;
  ASSERT_TRUE(b.process().restart(&err)) << err;
  // The local config keeps nothing across restarts: "online" comes back only
  // because lulld republishes it on reconnect.
  client sub(b.uri());
  sub.subscribe("lull/itest-g/availability");
  sub.subscribe("stats/host/itest-g");
  EXPECT_TRUE(sub.wait_for([](auto& m) { return m.payload == "online"; }, 10s)) << d.log();
  EXPECT_TRUE(sub.wait_for_topic("stats/host/itest-g", 5s));
}

TEST(lulld, without_a_broker_starts_its_own_and_says_how_to_watch_it) {
  lulld d({"--host-id", "itest-h", "--local-broker-port", "0", "--interval", "500ms",
           "--data-dir", test_data_dir()});
  ASSERT_TRUE(d.wait_log("mosquitto_sub -h 127.0.0.1 -p ", 5s)) << d.log();
  auto log = d.log();
  auto pos = log.find("mosquitto_sub -h 127.0.0.1 -p ") + 30;
  int port = std::stoi(log.substr(pos));
  client sub("tcp://127.0.0.1:" + std::to_string(port));
  ASSERT_TRUE(sub.connected());
  sub.subscribe("stats/host/itest-h");
  ASSERT_TRUE(sub.wait_for_topic("stats/host/itest-h", 5s)) << d.log();
  d.signal(SIGTERM);
  ASSERT_EQ(d.wait_exit(3s), 0);
  // The broker it started is gone with it.
  EXPECT_TRUE(wait_until([&] { return !port_accepts(port); }, 3s));
}

TEST(lulld, without_a_broker_uses_the_one_already_on_its_port) {
  // Debian's mosquitto service on the port lulld would take: lulld uses it
  // instead of starting a second broker on a port nobody knows.
  broker b;
  client sub(b.uri());
  ASSERT_TRUE(sub.connected()) << sub.error();
  sub.subscribe("stats/host/itest-reuse");
  lulld d({"--host-id", "itest-reuse", "--local-broker-port", std::to_string(b.port()),
           "--interval", "500ms", "--data-dir", test_data_dir()});
  ASSERT_TRUE(d.wait_log("using the MQTT broker already listening on 127.0.0.1:"
                           + std::to_string(b.port()), 5s)) << d.log();
  EXPECT_TRUE(sub.wait_for_topic("stats/host/itest-reuse", 5s)) << d.log();
  EXPECT_EQ(d.log().find("started Mosquitto"), std::string::npos) << d.log();
  d.signal(SIGTERM);
  ASSERT_EQ(d.wait_exit(3s), 0);
  // The broker was not lulld's to stop.
  EXPECT_TRUE(port_accepts(b.port()));
}

TEST(lulld, without_a_broker_and_its_port_taken_by_something_else_starts_its_own) {
  // A listener that accepts and never speaks MQTT.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  int taken = ntohs(addr.sin_port);
  lulld d({"--host-id", "itest-taken", "--local-broker-port", std::to_string(taken),
           "--interval", "500ms", "--data-dir", test_data_dir()});
  ASSERT_TRUE(d.wait_log("mosquitto_sub -h 127.0.0.1 -p ", 10s)) << d.log();
  auto log = d.log();
  EXPECT_NE(log.find("port " + std::to_string(taken)
                     + " is taken by something that is not a usable MQTT broker (no MQTT answer"),
            std::string::npos) << log;
  int port = std::stoi(log.substr(log.find("mosquitto_sub -h 127.0.0.1 -p ") + 30));
  EXPECT_NE(port, taken);
  client sub("tcp://127.0.0.1:" + std::to_string(port));
  ASSERT_TRUE(sub.connected());
  sub.subscribe("stats/host/itest-taken");
  EXPECT_TRUE(sub.wait_for_topic("stats/host/itest-taken", 5s)) << d.log();
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(3s), 0);
  ::close(fd);
}

TEST(lulld, bad_config_value_exits_2_naming_the_key) {
  lulld d({"--interval", "often"});
  auto code = d.wait_exit(5s);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 2);
  EXPECT_NE(d.log().find("bad value for interval"), std::string::npos) << d.log();
}
