// lulld and lull as systemd runs them. lulld under Type=notify: the real
// lulld with NOTIFY_SOCKET pointing at a datagram socket this test owns (as
// systemd's), WATCHDOG_USEC=2 s and WATCHDOG_PID its own pid: READY=1 even
// while the broker is away, STATUS= lines, WATCHDOG=1 about every second,
// STOPPING=1 on SIGTERM, every message from lulld's own pid (NotifyAccess=main).
// And the exit codes the shipped units act on: a configuration error exits
// with what RestartPreventExitStatus= names, an unreachable broker does not,
// and `lull work` stopped by SIGTERM exits with what SuccessExitStatus= names.

#include <gtest/gtest.h>

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "src/process.hpp"
#include "tests/support/support.hpp"

using namespace lull;
using namespace lull::test;
using namespace std::chrono;

namespace {

/// What a service manager receives: an AF_UNIX datagram socket in a fresh
/// directory, with the sender's credentials on every message. The socket
/// and its directory are removed with it.
class notify_socket {
public:
  struct datagram {
    pid_t pid = -1;
    std::string text;
    steady_clock::time_point at;
    bool has(const std::string& line_start) const {
      std::istringstream in(text);
      std::string l;
      while (std::getline(in, l))
        if (l.rfind(line_start, 0) == 0)
          return true;
      return false;
    }
    std::string status() const {
      std::istringstream in(text);
      std::string l;
      while (std::getline(in, l))
        if (l.rfind("STATUS=", 0) == 0)
          return l.substr(7);
      return "";
    }
  };

  notify_socket() {
    char tmpl[] = "/tmp/lull-notify-XXXXXX";
    if (!::mkdtemp(tmpl))
      throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    path_ = dir_ + "/notify";
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    int on = 1;
    if (fd_ < 0 || ::setsockopt(fd_, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0
        || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      throw std::runtime_error(std::string("notify socket: ") + std::strerror(errno));
    // Anyone may write to it, as to systemd's /run/systemd/notify: a child
    // that changes its user (Mosquitto started as root) could still send.
    ::chmod(dir_.c_str(), 0755);
    ::chmod(path_.c_str(), 0777);
  }
  ~notify_socket() {
    ::close(fd_);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  const std::string& path() const { return path_; }
  const std::string& dir() const { return dir_; }

  /// Every message until one matches `pred` (returned), or `timeout` passes.
  std::optional<datagram> wait_for(const std::function<bool(const datagram&)>& pred,
                                   milliseconds timeout) {
    auto deadline = steady_clock::now() + timeout;
    for (;;) {
      auto left = duration_cast<milliseconds>(deadline - steady_clock::now());
      if (left.count() <= 0)
        return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
        continue;
      char buf[4096];
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
      iovec iov{buf, sizeof buf};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      auto n = ::recvmsg(fd_, &msg, 0);
      if (n < 0)
        continue;
      datagram d;
      d.text.assign(buf, static_cast<std::size_t>(n));
      d.at = steady_clock::now();
      for (auto* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
          ucred cred;
          std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
          d.pid = cred.pid;
        }
      all.push_back(d);
      if (pred(d))
        return d;
    }
  }

  std::vector<datagram> all; ///< everything received so far

private:
  std::string dir_, path_;
  int fd_ = -1;
};

/// Runs lulld as systemd would: WATCHDOG_PID is lulld's own pid (the shell
/// exports its pid, then becomes lulld).
std::vector<std::string> as_main_pid() {
  return {"/bin/sh", "-c", "export WATCHDOG_PID=$$; exec \"$0\" \"$@\""};
}

std::string all_text(const notify_socket& s) {
  std::string out;
  for (auto& d : s.all)
    out += "[pid " + std::to_string(d.pid) + "] " + d.text + "\n";
  return out;
}

const milliseconds slow = LULL_UNDER_ASAN ? 120s : 60s;

} // namespace

TEST(systemd_notify, ready_status_watchdog_every_second_and_stopping_on_sigterm) {
  broker b;
  notify_socket sock;
  auto started = steady_clock::now();
  lulld d(lulld_args(b.uri(), "sdnotify"),
          {"NOTIFY_SOCKET=" + sock.path(), "WATCHDOG_USEC=2000000"}, as_main_pid());

  auto ready = sock.wait_for([](auto& m) { return m.has("READY=1"); }, slow);
  ASSERT_TRUE(ready) << all_text(sock) << d.log();
  std::printf("READY=1 %.3f s after lulld started\n",
              duration<double>(ready->at - started).count());
  EXPECT_EQ(ready->pid, d.pid());
  EXPECT_NE(ready->status().find(b.uri()), std::string::npos) << ready->text;

  // What `systemctl status lulld` shows once lulld has heard its own host.
  auto want = "connected to " + b.uri() + "; 1 host, 0 active leases, 0 jobs queued";
  auto status = sock.wait_for([&](auto& m) { return m.status() == want; }, slow);
  ASSERT_TRUE(status) << "no STATUS=" << want << "\n" << all_text(sock) << d.log();

  // Half of WATCHDOG_USEC between pings: never near the 2 s systemd allows.
  std::vector<steady_clock::time_point> pings;
  auto sixth = sock.wait_for(
    [&](auto& m) {
      if (m.has("WATCHDOG=1"))
        pings.push_back(m.at);
      return pings.size() >= 6;
    },
    slow);
  ASSERT_TRUE(sixth) << all_text(sock) << d.log();
  double total = 0;
  for (std::size_t i = 1; i < pings.size(); ++i) {
    double gap = duration<double>(pings[i] - pings[i - 1]).count();
    total += gap;
    EXPECT_GT(gap, 0.5) << "ping " << i;
    EXPECT_LT(gap, 1.9) << "ping " << i << ": systemd would have killed lulld";
  }
  double mean = total / static_cast<double>(pings.size() - 1);
  std::printf("watchdog pings: %zu, mean interval %.3f s\n", pings.size(), mean);
  EXPECT_NEAR(mean, 1.0, 0.25);

  d.signal(SIGTERM);
  auto stopping = sock.wait_for([](auto& m) { return m.has("STOPPING=1"); }, 10s);
  ASSERT_TRUE(stopping) << all_text(sock) << d.log();
  EXPECT_EQ(stopping->status(), "stopping: SIGTERM");
  EXPECT_EQ(d.wait_exit(10s), 0) << d.log();
  for (auto& m : sock.all)
    EXPECT_EQ(m.pid, d.pid()) << m.text;
}

TEST(systemd_notify, ready_while_the_broker_is_away_and_status_says_since_when) {
  auto uri = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  notify_socket sock;
  auto started = steady_clock::now();
  lulld d(lulld_args(uri, "sdaway"), {"NOTIFY_SOCKET=" + sock.path(), "WATCHDOG_USEC=2000000"},
          as_main_pid());
  auto ready = sock.wait_for([](auto& m) { return m.has("READY=1"); }, slow);
  ASSERT_TRUE(ready) << "a broker outage held back READY=1\n" << all_text(sock) << d.log();
  std::printf("READY=1 %.3f s after lulld started, broker away\n",
              duration<double>(ready->at - started).count());
  auto away = sock.wait_for(
    [&](auto& m) { return m.status().rfind("broker " + uri + " unreachable since ", 0) == 0; },
    30s);
  ASSERT_TRUE(away) << all_text(sock) << d.log();
  // The watchdog goes on: lulld is alive, its broker is not.
  auto ping = sock.wait_for([](auto& m) { return m.has("WATCHDOG=1"); }, 10s);
  EXPECT_TRUE(ping) << all_text(sock);
  d.signal(SIGTERM);
  EXPECT_TRUE(sock.wait_for([](auto& m) { return m.has("STOPPING=1"); }, 10s)) << all_text(sock);
  EXPECT_EQ(d.wait_exit(10s), 0) << d.log();
}

TEST(systemd_notify, the_local_broker_lulld_starts_says_nothing_to_the_service_manager) {
  // Mosquitto is built with libsystemd and would report READY=1 itself.
  notify_socket sock;
  auto dir = test_data_dir();
  lulld d({"--host-id", "sdlocal", "--data-dir", dir, "--local-broker-port", "0",
           "--broker-config-dir", source_path("broker-config")},
          {"NOTIFY_SOCKET=" + sock.path()}, as_main_pid());
  auto connected = sock.wait_for(
    [](auto& m) { return m.status().rfind("connected to tcp://127.0.0.1:", 0) == 0; }, slow);
  ASSERT_TRUE(connected) << all_text(sock) << d.log();
  d.signal(SIGTERM);
  ASSERT_TRUE(sock.wait_for([](auto& m) { return m.has("STOPPING=1"); }, 10s)) << all_text(sock);
  EXPECT_EQ(d.wait_exit(10s), 0) << d.log();
  for (auto& m : sock.all)
    EXPECT_EQ(m.pid, d.pid()) << "from another process: " << m.text;
}

namespace {

/// The numbers a unit file gives `key` (e.g. RestartPreventExitStatus=64),
/// from the unit as built (packaging/*.service.in with the paths filled in).
std::set<int> unit_values(const std::string& unit, const std::string& key) {
  std::ifstream in(binary_path("packaging/" + unit));
  EXPECT_TRUE(in) << unit;
  std::set<int> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + "=", 0) != 0)
      continue;
    std::istringstream values(line.substr(key.size() + 1));
    std::string v;
    while (values >> v)
      out.insert(std::stoi(v));
  }
  return out;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

} // namespace

TEST(unit_exit_codes, a_worker_misconfigured_exits_with_what_its_unit_does_not_restart) {
  auto prevent = unit_values("lull-worker@.service", "RestartPreventExitStatus");
  ASSERT_FALSE(prevent.empty());
  auto uri = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  // As lull-worker@.service runs it: lull --worker %i work $LULL_WORK_ARGS.
  std::vector<std::vector<std::string>> misconfigured = {
    {"--worker", "thumbs", "work", "--typo", "thumbnails", "--", "true"}, // a bad flag
    {"--worker", "thumbs", "work"}, // LULL_WORK_ARGS empty or missing
    {"--worker", "thumbs", "work", "--type", "t", "--poll", "soon", "--", "true"}, // bad value
    {"--worker", "my.thumbs", "work", "--type", "t", "--", "true"}, // lull-worker@my.thumbs
    {"--broker", "nuc.local:1883", "--worker", "thumbs", "work", "--type", "t", "--", "true"},
    {"--broker", uri, "--ca-file", "/nonexistent/ca.crt", "--worker", "thumbs", "work", "--type",
     "t", "--", "true"},
  };
  for (auto& args : misconfigured) {
    if (args[0] != "--broker")
      args.insert(args.begin(), {"--broker", uri});
    auto r = lull_cli(args);
    std::string cmd;
    for (auto& a : args)
      cmd += " " + a;
    EXPECT_TRUE(prevent.count(r.code))
      << "lull" << cmd << " exited " << r.code << ", which lull-worker@.service restarts\n"
      << r.err;
    EXPECT_FALSE(r.err.empty()) << "lull" << cmd << " said nothing";
  }
  // A broker that is away is worth retrying: the unit restarts on it.
  auto away = lull_cli(
    {"--broker", uri, "--timeout", "1", "--worker", "thumbs", "work", "--type", "t", "--", "true"});
  EXPECT_EQ(away.code, 69) << away.err;
  EXPECT_FALSE(prevent.count(away.code));
}

TEST(unit_exit_codes, lulld_misconfigured_exits_with_what_its_unit_does_not_restart) {
  auto prevent = unit_values("lulld.service", "RestartPreventExitStatus");
  ASSERT_FALSE(prevent.empty());
  auto dir = test_data_dir();
  std::string conf = dir + "/bad.toml";
  std::ofstream(conf) << "interval = \"soon\"\n";
  for (auto args : std::vector<std::vector<std::string>>{
         {"--interval", "soon"}, {"--no-such-flag"}, {"--config", conf}}) {
    args.insert(args.end(), {"--data-dir", dir});
    lulld d(args);
    auto code = d.wait_exit(30s);
    ASSERT_TRUE(code) << args[0] << ": still running\n" << d.log();
    EXPECT_TRUE(prevent.count(*code))
      << args[0] << " exited " << *code << ", which lulld.service restarts\n"
      << d.log();
  }
}

TEST(unit_exit_codes, lull_work_stopped_by_systemd_exits_with_what_its_unit_calls_clean) {
  auto clean = unit_values("lull-worker@.service", "SuccessExitStatus");
  ASSERT_FALSE(clean.empty());
  broker b;
  client c(b.uri());
  ASSERT_TRUE(c.connected()) << c.error();
  c.subscribe("scheduler/job/next");
  auto dir = test_data_dir();
  spawn_options o;
  o.argv = {binary_path("src/lull"),
            "--broker",
            b.uri(),
            "--worker",
            "sd-stop",
            "work",
            "--type",
            "t",
            "--poll",
            "60s",
            "--",
            "true"};
  o.stderr_path = dir + "/worker.log";
  std::string err;
  auto pid = spawn(o, &err);
  ASSERT_TRUE(pid) << err;
  // It asks for work: it is running, as systemd sees it.
  ASSERT_TRUE(c.wait_for_topic("scheduler/job/next", 15s)) << slurp(o.stderr_path);
  ::kill(*pid, SIGTERM); // systemctl stop
  auto st = wait_for_exit(*pid, 10s);
  if (!st) {
    ::kill(*pid, SIGKILL);
    wait_for_exit(*pid, 5s);
  }
  ASSERT_TRUE(st) << "lull work still running 10 s after SIGTERM\n" << slurp(o.stderr_path);
  EXPECT_TRUE(clean.count(exit_code_of(*st)))
    << "exited " << exit_code_of(*st) << ", which lull-worker@.service calls a failure";
}
