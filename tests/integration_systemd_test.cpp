// lulld and lull as systemd runs them: the exit codes the shipped units act
// on. A configuration error exits with what RestartPreventExitStatus= names,
// an unreachable broker does not, and `lull work` stopped by SIGTERM exits
// with what SuccessExitStatus= names.

#include <gtest/gtest.h>

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
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
