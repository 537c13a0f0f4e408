// A fleet on one broker: three host agents (roles collectors) on fixture
// /proc roots that look like different machines, and one scheduler. Capacity
// per host, one Home Assistant device per host and one for the scheduler,
// lull status, a host whose agent goes offline, and a scheduler that dies. Then the MQTT version: a broker that drops v5 CONNECTs
// without a CONNACK (as RabbitMQ's MQTT plugin does), in front of Mosquitto.

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "messages/codec.hpp"
#include "src/mqtt/transport.hpp"
#include "src/process.hpp"
#include "tests/fixture_tree.hpp"
#include "tests/support/support.hpp"

using namespace lull;
using namespace lull::test;
using json = nlohmann::json;

namespace {

std::optional<json> status_of(client& c) {
  auto all = c.received(); // oldest first
  for (auto it = all.rbegin(); it != all.rend(); ++it)
    if (it->topic == "scheduler/status") {
      auto j = json::parse(it->payload, nullptr, false);
      if (j.is_object())
        return j;
    }
  return std::nullopt;
}

/// Waits until the latest scheduler/status satisfies `pred`.
std::optional<json> wait_status(client& c, const std::function<bool(const json&)>& pred,
                                std::chrono::milliseconds timeout) {
  std::optional<json> last;
  wait_until(
    [&] {
      last = status_of(c);
      return last && pred(*last);
    },
    timeout);
  return last && pred(*last) ? last : std::nullopt;
}

json ask(client& c, const json& body, const std::string& key) {
  c.publish({"scheduler/lease/request", body.dump(), 1, false, json_content_type, "fleet/reply",
             key});
  auto r = c.wait_for([&](auto& m) { return m.correlation_data == key; }, 10s);
  return r ? json::parse(r->payload, nullptr, false) : json();
}

} // namespace

TEST(fleet, three_agents_one_scheduler_and_a_host_that_leaves) {
  broker b;
  auto uri = b.uri();
  lulld sched(lulld_args(uri, "sched", {"--roles", "assessor,scheduler"}));
  auto agent_args = [&](const std::string& host, const std::string& fixture) {
    return lulld_args(uri, host, {"--roles", "collectors", "--proc-root", fixture_dir(fixture)});
  };
  auto pi = std::make_unique<lulld>(agent_args("pi-a", "pi4-throttled"));
  lulld laptop(agent_args("laptop", "x86-laptop"));
  lulld nuc(agent_args("nuc", "no-thermal"));

  client c(uri);
  ASSERT_TRUE(c.connected()) << c.error();
  c.subscribe("fleet/reply");
  c.subscribe("scheduler/status");
  c.subscribe("homeassistant/device/+/config");
  // Each host's capacity follows its own CPU count (pi4: 4 cores; the x86
  // recordings: 2), as its own agent reported it.
  auto st = wait_status(
    c,
    [](const json& s) {
      auto& h = s["hosts"];
      return h.contains("pi-a") && h.contains("laptop") && h.contains("nuc")
             && h["pi-a"]["cpu_count"] == 4 && h["laptop"]["cpu_count"] == 2
             && h["nuc"]["cpu_count"] == 2;
    },
    30s);
  ASSERT_TRUE(st) << sched.log() << pi->log();
  EXPECT_EQ((*st)["hosts"]["pi-a"]["capacity_units"], 80);
  EXPECT_EQ((*st)["hosts"]["laptop"]["capacity_units"], 40);
  EXPECT_EQ((*st)["hosts"]["nuc"]["capacity_units"], 40);
  EXPECT_FALSE((*st)["hosts"].contains("sched")) << "the scheduler runs no collectors";
  // One Home Assistant device per host, with the host's availability and
  // nothing of the scheduler's on it ...
  for (auto* h : {"pi-a", "laptop", "nuc"}) {
    auto dev = c.wait_for(
      [&](auto& m) { return m.topic == std::string("homeassistant/device/lull_") + h + "/config"; },
      15s);
    ASSERT_TRUE(dev) << h;
    auto j = json::parse(dev->payload);
    EXPECT_EQ(j["availability"][0]["topic"], std::string("lull/") + h + "/availability");
    for (auto& [key, cmp] : j["cmps"].items())
      EXPECT_TRUE(cmp.size() == 1 || cmp["state_topic"] != "scheduler/status") << h << " " << key;
  }
  // ... and one scheduler device, with the scheduler's availability and a
  // pause switch for each host.
  auto sched_dev = c.wait_for(
    [&](auto& m) {
      if (m.topic != "homeassistant/device/lull-scheduler/config")
        return false;
      auto j = json::parse(m.payload);
      return j["cmps"].contains("allow_work_pi-a") && j["cmps"].contains("allow_work_laptop")
             && j["cmps"].contains("allow_work_nuc");
    },
    15s);
  ASSERT_TRUE(sched_dev) << sched.log();
  EXPECT_EQ(json::parse(sched_dev->payload)["availability"][0]["topic"], "lull/sched/availability");
  // Queued jobs, dead jobs, database writes, a switch for each of the 3 hosts.
  EXPECT_EQ(json::parse(sched_dev->payload)["cmps"].size(), 6u) << sched_dev->payload;

  // HIGH work is placed on the host asked for, within its capacity.
  auto g = ask(c, {{"worker_id", "w1"}, {"host_id", "pi-a"}, {"cost_units", 60},
                   {"priority", "HIGH"}, {"ttl_sec", 60}},
               "g1");
  ASSERT_EQ(g["approved"], true) << g.dump();
  auto over = ask(c, {{"worker_id", "w2"}, {"host_id", "laptop"}, {"cost_units", 60},
                      {"priority", "HIGH"}},
                  "g2");
  EXPECT_EQ(over["approved"], false) << "60 units do not fit the laptop's 40";

  auto status_cli = lull_cli({"status", "--broker", uri});
  ASSERT_EQ(status_cli.code, 0) << status_cli.err;
  for (auto* h : {"pi-a", "laptop", "nuc"})
    EXPECT_NE(status_cli.out.find(h), std::string::npos) << status_cli.out;

  // The Pi's agent stops: its availability turns offline, and the scheduler
  // denies work there at once (not after quiet.stale_after), at any priority.
  pi->signal(SIGTERM);
  ASSERT_TRUE(pi->wait_exit(20s));
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_status(c, [](const json& s) { return s["hosts"]["pi-a"]["online"] == false; },
                          10s))
    << sched.log();
  auto d = ask(c, {{"worker_id", "w3"}, {"host_id", "pi-a"}, {"cost_units", 1},
                   {"priority", "HIGH"}},
               "g3");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 15s);
  EXPECT_EQ(d["approved"], false);
  EXPECT_EQ(d["reason"].get<std::string>().rfind("Host pi-a is offline", 0), 0u) << d.dump();
  // Its lease keeps its TTL: its worker may still be running.
  auto now = status_of(c);
  ASSERT_TRUE(now);
  bool still = false;
  for (auto& l : (*now)["active"])
    still = still || l["lease_id"] == g["lease_id"];
  EXPECT_TRUE(still) << now->dump();
  auto offline_cli = lull_cli({"status", "--broker", uri});
  EXPECT_NE(offline_cli.out.find("pi-a: offline since "), std::string::npos) << offline_cli.out;

  // The agent comes back: its next snapshot brings the host back.
  pi = std::make_unique<lulld>(agent_args("pi-a", "pi4-throttled"));
  ASSERT_TRUE(wait_status(c, [](const json& s) { return s["hosts"]["pi-a"]["online"] == true; },
                          20s))
    << sched.log();
  auto back = ask(c, {{"worker_id", "w3"}, {"host_id", "pi-a"}, {"cost_units", 1},
                      {"priority", "HIGH"}},
                  "g4");
  EXPECT_EQ(back["approved"], true) << back.dump();

  // The scheduler dies while the agents live: the scheduler device's
  // availability turns offline (its last will), the hosts' stays online, so
  // Home Assistant greys out the queue and the switches, and only them.
  client avail(uri);
  avail.subscribe("lull/+/availability");
  ASSERT_TRUE(avail.wait_for(
    [](auto& m) { return m.topic == "lull/sched/availability" && m.payload == "online"; }, 10s));
  avail.clear();
  sched.signal(SIGKILL);
  EXPECT_TRUE(avail.wait_for(
    [](auto& m) { return m.topic == "lull/sched/availability" && m.payload == "offline"; }, 20s))
    << "no last will from the scheduler";
  client late(uri);
  late.subscribe("lull/+/availability");
  for (auto* h : {"pi-a", "laptop", "nuc"})
    EXPECT_TRUE(late.wait_for(
      [&](auto& m) {
        return m.topic == std::string("lull/") + h + "/availability" && m.payload == "online";
      },
      10s))
      << h;
}

namespace {

/// A TCP proxy to Mosquitto that closes every MQTT v5 CONNECT without an
/// answer, as a v3.1.1-only broker such as RabbitMQ's MQTT plugin does, and
/// passes everything else through. With drop_v5(false) it passes v5 too;
/// with upstream_down(true) it closes every CONNECT unanswered, as a proxy
/// does whose broker is away.
class v5_dropping_proxy {
public:
  explicit v5_dropping_proxy(int upstream, bool drop_v5 = true)
    : upstream_(upstream), drop_v5_(drop_v5) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0
        || ::listen(listen_fd_, 16) != 0)
      throw std::runtime_error("proxy: cannot listen");
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~v5_dropping_proxy() {
    upstream_down_ = true; // no new connection once stopping
    stop_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    kick();
    accept_thread_.join();
    for (auto& t : pumps_)
      t.join();
    ::close(listen_fd_);
  }
  int port() const { return port_; }
  int v5_dropped() const { return v5_dropped_; }
  int v311_passed() const { return v311_passed_; }
  int v5_passed() const { return v5_passed_; }
  int v311_dropped() const { return v311_dropped_; }
  void upstream_down(bool down) { upstream_down_ = down; }
  /// Cuts every connection passed through (the broker "restarts").
  void kick() {
    std::lock_guard<std::mutex> g(mtx_);
    for (int fd : open_)
      ::shutdown(fd, SHUT_RDWR);
  }

private:
  void accept_loop() {
    while (!stop_) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (stop_)
          return;
        continue;
      }
      std::lock_guard<std::mutex> g(mtx_);
      open_.push_back(fd);
      pumps_.emplace_back([this, fd] { serve(fd); });
    }
  }
  /// The protocol level of a CONNECT: byte 0 type, 1-4 bytes of remaining
  /// length, then "\0\4MQTT" and the level.
  static std::optional<int> level_of(const std::string& b) {
    std::size_t i = 1;
    while (i < b.size() && i < 5 && (static_cast<unsigned char>(b[i]) & 0x80))
      ++i;
    std::size_t at = i + 1 + 6;
    if (b.size() <= at)
      return std::nullopt;
    return static_cast<unsigned char>(b[at]);
  }
  void serve(int fd) {
    std::string head;
    char buf[4096];
    std::optional<int> level;
    while (!level && head.size() < 64) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 5000) != 1)
        break;
      auto n = ::read(fd, buf, sizeof buf);
      if (n <= 0)
        break;
      head.append(buf, static_cast<std::size_t>(n));
      level = level_of(head);
    }
    if (!level || (*level == 5 && drop_v5_) || upstream_down_) {
      if (level)
        ++(*level == 5 ? v5_dropped_ : v311_dropped_);
      ::close(fd);
      forget(fd);
      return;
    }
    ++(*level == 5 ? v5_passed_ : v311_passed_);
    int up = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(upstream_));
    if (::connect(up, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0
        || ::write(up, head.data(), head.size()) != static_cast<ssize_t>(head.size())) {
      ::close(up);
      ::close(fd);
      forget(fd);
      return;
    }
    {
      std::lock_guard<std::mutex> g(mtx_);
      open_.push_back(up);
    }
    pollfd ps[2] = {{fd, POLLIN, 0}, {up, POLLIN, 0}};
    for (bool open = true; open && !stop_;) {
      if (::poll(ps, 2, 200) < 0)
        break;
      for (int i = 0; i < 2 && open; ++i) {
        if (ps[i].revents == 0)
          continue;
        auto n = ::read(ps[i].fd, buf, sizeof buf);
        open = n > 0 && ::write(ps[1 - i].fd, buf, static_cast<std::size_t>(n)) == n;
      }
    }
    ::close(up);
    ::close(fd);
    forget(up);
    forget(fd);
  }
  void forget(int fd) {
    std::lock_guard<std::mutex> g(mtx_);
    open_.erase(std::remove(open_.begin(), open_.end(), fd), open_.end());
  }

  int upstream_;
  bool drop_v5_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false}, upstream_down_{false};
  std::atomic<int> v5_dropped_{0}, v311_passed_{0}, v5_passed_{0}, v311_dropped_{0};
  std::mutex mtx_;
  std::vector<int> open_;
  std::vector<std::thread> pumps_;
  std::thread accept_thread_;
};

} // namespace

TEST(fleet, mqtt_version_3_1_1_reaches_a_broker_that_drops_v5) {
  broker b;
  v5_dropping_proxy proxy(b.port());
  auto via = "tcp://127.0.0.1:" + std::to_string(proxy.port());
  lulld d(lulld_args(via, "rhost", {"--roles", "collectors,scheduler", "--mqtt-version", "3.1.1"}));
  ASSERT_TRUE(d.wait_log("connected to " + via + " (MQTT v3.1.1)", 20s)) << d.log();
  EXPECT_EQ(proxy.v5_dropped(), 0) << "3.1.1 never tries v5";

  // The choice holds across reconnects: the broker "restarts".
  proxy.kick();
  ASSERT_TRUE(wait_until(
    [&] {
      auto log = d.log();
      auto first = log.find("(MQTT v3.1.1)");
      return first != std::string::npos && log.find("(MQTT v3.1.1)", first + 1) != std::string::npos;
    },
    20s))
    << d.log();
  EXPECT_EQ(proxy.v5_dropped(), 0);

  // lull likewise; forced v5 cannot connect there and says so.
  auto st = lull_cli({"status", "--json", "--broker", via, "--mqtt-version", "3.1.1"});
  ASSERT_EQ(st.code, 0) << st.err << d.log();
  EXPECT_TRUE(json::parse(st.out, nullptr, false).is_object()) << st.out;
  EXPECT_EQ(proxy.v5_dropped(), 0);
  auto v5 = lull_cli({"status", "--broker", via, "--mqtt-version", "5", "--timeout", "3"});
  EXPECT_EQ(v5.code, 69) << v5.err;
  EXPECT_GE(proxy.v5_dropped(), 1);
  auto bad = lull_cli({"status", "--broker", via, "--mqtt-version", "4"});
  EXPECT_NE(bad.code, 0);
}

/// Counts of `text` in `log`.
static int occurrences(const std::string& log, const std::string& text) {
  int n = 0;
  for (auto at = log.find(text); at != std::string::npos; at = log.find(text, at + 1))
    ++n;
  return n;
}

TEST(fleet, mqtt_version_auto_falls_back_at_once_where_v5_is_dropped_and_keeps_it) {
  broker b;
  v5_dropping_proxy proxy(b.port());
  auto via = "tcp://127.0.0.1:" + std::to_string(proxy.port());
  // lulld with the default (auto): one v5 attempt, then v3.1.1 at once.
  lulld d(lulld_args(via, "rhost", {"--roles", "collectors,scheduler"}));
  ASSERT_TRUE(d.wait_log("connected to " + via + " (MQTT v3.1.1)", 20s)) << d.log();
  EXPECT_NE(d.log().find("without a CONNACK; falling back to v3.1.1"), std::string::npos)
    << d.log();
  EXPECT_EQ(proxy.v5_dropped(), 1) << d.log();

  // Kept for reconnects: the broker "restarts", lulld comes back on v3.1.1
  // without trying v5 again.
  proxy.kick();
  ASSERT_TRUE(wait_until([&] { return occurrences(d.log(), "(MQTT v3.1.1)") >= 2; }, 20s))
    << d.log();
  EXPECT_EQ(proxy.v5_dropped(), 1) << d.log();

  // lull (auto) falls back the same way: status, and a lease granted, run
  // and released over v3.1.1.
  auto st = lull_cli({"status", "--json", "--broker", via});
  ASSERT_EQ(st.code, 0) << st.err << d.log();
  EXPECT_TRUE(json::parse(st.out, nullptr, false).is_object()) << st.out;
  EXPECT_EQ(proxy.v5_dropped(), 2);
  auto run = lull_cli({"run", "--broker", via, "--worker", "w311", "--priority", "HIGH", "--", "true"});
  EXPECT_EQ(run.code, 0) << run.out << run.err << d.log();
  EXPECT_EQ(proxy.v5_dropped(), 3);
  auto after = lull_cli({"status", "--json", "--broker", via});
  ASSERT_EQ(after.code, 0) << after.err;
  auto j = json::parse(after.out, nullptr, false);
  EXPECT_TRUE(j.is_object() && j.contains("active") && j["active"].empty()) << after.out;
}

TEST(fleet, mqtt_version_auto_keeps_v5_on_mosquitto_and_through_its_outages) {
  broker b;
  // A proxy that passes v5, so the broker can look "away" behind it (taking
  // connections and closing them) without a port change.
  v5_dropping_proxy proxy(b.port(), /*drop_v5=*/false);
  auto via = "tcp://127.0.0.1:" + std::to_string(proxy.port());
  lulld d(lulld_args(via, "v5host", {"--roles", "collectors,scheduler"}));
  ASSERT_TRUE(d.wait_log("connected to " + via + " (MQTT v5)", 20s)) << d.log();
  auto st = lull_cli({"status", "--json", "--broker", via});
  ASSERT_EQ(st.code, 0) << st.err << d.log();
  EXPECT_EQ(proxy.v311_passed() + proxy.v311_dropped(), 0) << "auto never tried v3.1.1";

  // The broker goes away behind the proxy, every CONNECT closed unanswered:
  // lulld has had v5 from this broker, so it keeps trying v5 only.
  proxy.upstream_down(true);
  proxy.kick();
  int before = proxy.v5_dropped();
  ASSERT_TRUE(wait_until([&] { return proxy.v5_dropped() >= before + 3; }, 30s)) << d.log();
  proxy.upstream_down(false);
  ASSERT_TRUE(wait_until([&] { return occurrences(d.log(), "(MQTT v5)") >= 2; }, 20s)) << d.log();
  EXPECT_EQ(proxy.v311_passed() + proxy.v311_dropped(), 0) << d.log();
  EXPECT_EQ(d.log().find("(MQTT v3.1.1)"), std::string::npos) << d.log();

  // lull (auto) on Mosquitto: v5, never v3.1.1.
  auto run = lull_cli({"run", "--broker", via, "--worker", "w5", "--priority", "HIGH", "--", "true"});
  EXPECT_EQ(run.code, 0) << run.out << run.err << d.log();
  EXPECT_EQ(proxy.v311_passed() + proxy.v311_dropped(), 0);
}

TEST(fleet, mqtt_version_auto_alternates_while_a_proxied_broker_is_away) {
  // A broker that was never reached, behind a proxy that closes every
  // CONNECT: a v5 drop looks like a v3.1.1-only broker, so v3.1.1 is tried
  // at once; it is dropped too, so the next attempt is v5 again and a v5
  // broker that comes back is reached over v5 (unless it comes back in the
  // moment between the two attempts).
  broker b;
  v5_dropping_proxy proxy(b.port(), /*drop_v5=*/false);
  proxy.upstream_down(true);
  auto via = "tcp://127.0.0.1:" + std::to_string(proxy.port());
  lulld d(lulld_args(via, "awayhost", {"--roles", "collectors,scheduler"}));
  ASSERT_TRUE(wait_until([&] { return proxy.v5_dropped() >= 3 && proxy.v311_dropped() >= 2; },
                         30s))
    << d.log();
  EXPECT_TRUE(d.wait_log("the broker looks down, not v3.1.1-only; MQTT v5 first again", 5s))
    << d.log();
  // A lull command against it fails (after one try of each) rather than
  // hanging or settling on v3.1.1.
  auto st = lull_cli({"status", "--broker", via, "--timeout", "3"});
  EXPECT_EQ(st.code, 69) << st.err;
  EXPECT_NE(st.err.find("looks down"), std::string::npos) << st.err;
  proxy.upstream_down(false);
  ASSERT_TRUE(wait_until([&] { return d.log().find("connected to " + via) != std::string::npos; },
                         20s))
    << d.log();
}

namespace {

/// Transport events as a bridge would see them, for a test that drives the
/// transport itself.
struct recorded_events : transport_events {
  std::mutex mtx;
  std::condition_variable cv;
  int connects = 0, version = 0;
  bool disconnected = false;
  std::vector<std::string> failures;
  void on_connected(int v) override {
    std::lock_guard<std::mutex> g(mtx);
    ++connects;
    version = v;
    cv.notify_all();
  }
  void on_connect_failed(std::string why, bool) override {
    std::lock_guard<std::mutex> g(mtx);
    failures.push_back(std::move(why));
    cv.notify_all();
  }
  void on_connection_lost(std::string) override {}
  void on_message(mqtt_message) override {}
  void on_disconnected() override {
    std::lock_guard<std::mutex> g(mtx);
    disconnected = true;
    cv.notify_all();
  }
};

} // namespace

// The fallback switches Paho clients while other threads publish and ask for
// the version, and Paho's threads call back: run under ThreadSanitizer this
// is the transport's race test (a build with -fsanitize=thread reports any
// unsynchronised access; see docs/fleet.md).
TEST(fleet, transport_falls_back_while_other_threads_publish) {
  broker b;
  v5_dropping_proxy proxy(b.port());
  client sub(b.uri());
  ASSERT_TRUE(sub.connected()) << sub.error();
  sub.subscribe("race/#");
  auto ev = std::make_shared<recorded_events>();
  transport_options o;
  o.uri = "tcp://127.0.0.1:" + std::to_string(proxy.port());
  o.client_id = "race-fallback";
  o.on_error = [](const std::string&) {};
  auto t = make_paho_transport(o, ev);

  std::atomic<bool> stop{false};
  std::atomic<int> versions_seen{0};
  std::vector<std::thread> publishers;
  struct joiner {
    std::atomic<bool>& stop;
    std::vector<std::thread>& threads;
    ~joiner() {
      stop = true;
      for (auto& th : threads)
        if (th.joinable())
          th.join();
    }
  } join_at_exit{stop, publishers};
  for (int i = 0; i < 2; ++i)
    publishers.emplace_back([&, i] {
      for (int n = 0; !stop; ++n) {
        t->publish({"race/" + std::to_string(i), std::to_string(n), 1, false, {}, {}, {}});
        versions_seen |= 1 << t->mqtt_version();
        std::this_thread::sleep_for(std::chrono::milliseconds(1)); // pacing only
      }
    });
  // The owner's part, as the bridge does it: connect, and again at once when
  // the transport falls back.
  t->connect();
  {
    std::unique_lock<std::mutex> g(ev->mtx);
    std::size_t handled = 0;
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (ev->connects == 0
           && ev->cv.wait_until(g, deadline) != std::cv_status::timeout) {
      for (; handled < ev->failures.size(); ++handled)
        if (ev->failures[handled].find("falling back to v3.1.1") != std::string::npos) {
          g.unlock();
          t->connect();
          g.lock();
        }
    }
    ASSERT_EQ(ev->connects, 1) << (ev->failures.empty() ? "" : ev->failures.back());
    EXPECT_EQ(ev->version, 4);
  }
  EXPECT_EQ(proxy.v5_dropped(), 1);
  // Both publishers get through once connected, and again after the broker
  // "restarts" under them (Paho's own reconnect, still v3.1.1).
  for (auto* topic : {"race/0", "race/1"})
    EXPECT_TRUE(sub.wait_for_topic(topic, 10s)) << topic;
  proxy.kick();
  {
    std::unique_lock<std::mutex> g(ev->mtx);
    EXPECT_TRUE(ev->cv.wait_for(g, 20s, [&] { return ev->connects >= 2; }));
    EXPECT_EQ(ev->version, 4);
  }
  sub.clear();
  for (auto* topic : {"race/0", "race/1"})
    EXPECT_TRUE(sub.wait_for_topic(topic, 10s)) << topic;
  EXPECT_EQ(proxy.v5_dropped(), 1);
  stop = true;
  for (auto& p : publishers)
    p.join();
  EXPECT_TRUE(versions_seen.load() & (1 << 4)) << "v3.1.1 once fallen back";
  EXPECT_EQ(t->mqtt_version(), 4);
  // A last message, as the bridge sends: Paho C drops a bare disconnect
  // issued while QoS 1 publishes are in flight.
  t->disconnect({"race/last", "bye", 1, false, {}, {}, {}}, std::chrono::milliseconds(1000));
  {
    std::unique_lock<std::mutex> g(ev->mtx);
    EXPECT_TRUE(ev->cv.wait_for(g, 5s, [&] { return ev->disconnected; }));
  }
  t.reset();
}
