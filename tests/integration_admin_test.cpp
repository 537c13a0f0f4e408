// lulld --check-config and --print-config as an admin runs them: the real
// lulld, a real configuration file, a real Mosquitto it must not touch.

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "src/process.hpp"
#include "tests/support/support.hpp"

using namespace lull;
using namespace lull::test;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct ran {
  int code = -1;
  std::string out, err;
};

/// A directory of this test's own, removed with what is in it.
struct scratch {
  std::string path;
  scratch() {
    char tmpl[] = "/tmp/lull-admin-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~scratch() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name, const std::string& text) const {
    std::ofstream(path + "/" + name) << text;
    return path + "/" + name;
  }
};

/// lulld ARGS with `env` added, to completion (at most 30 s).
ran lulld_run(const scratch& s, std::vector<std::string> args, std::vector<std::string> env = {}) {
  spawn_options o;
  o.argv = {binary_path("src/lulld")};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.extra_env = std::move(env);
  o.stdin_path = "/dev/null";
  o.stdout_path = s.path + "/lulld.out";
  o.stderr_path = s.path + "/lulld.err";
  ran r;
  if (auto pid = spawn(o)) {
    if (auto st = wait_for_exit(*pid, std::chrono::seconds(30)))
      r.code = exit_code_of(*st);
    else
      ::kill(*pid, SIGKILL), wait_for_exit(*pid, std::chrono::seconds(5));
  }
  r.out = slurp(o.stdout_path);
  r.err = slurp(o.stderr_path);
  ::unlink(o.stdout_path.c_str()); // the next run's output starts afresh
  ::unlink(o.stderr_path.c_str());
  return r;
}

/// A TCP listener on a free loopback port that counts who connects.
class listener {
public:
  listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(fd_, 8) != 0
        || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error("cannot listen on loopback");
    port_ = ntohs(a.sin_port);
  }
  ~listener() {
    for (int c : accepted_)
      ::close(c);
    ::close(fd_);
  }
  int port() const { return port_; }
  /// Connections accepted so far, waiting up to `timeout` for a first one.
  int connections(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) > 0)
      for (int c; (c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC)) >= 0;)
        accepted_.push_back(c);
    return static_cast<int>(accepted_.size());
  }

private:
  int fd_ = -1;
  int port_ = 0;
  std::vector<int> accepted_;
};

} // namespace

// --check-config reads the configuration as a start does and stops there:
// no data directory, no database, no lock, no connection to the broker.
TEST(admin, check_config_opens_nothing_and_connects_nowhere) {
  scratch s;
  listener fake_broker;
  auto data = s.path + "/state";
  auto conf = s.file("lull.toml", "broker.uri = \"tcp://127.0.0.1:" + std::to_string(fake_broker.port())
                                    + "\"\nhost_id = \"admin-check\"\ndata_dir = \"" + data
                                    + "\"\n[lease]\nttl = \"45s\"\n");
  auto r = lulld_run(s, {"--config", conf, "--check-config"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "lulld: configuration OK (" + conf + ")\n");
  EXPECT_EQ(r.err, "");
  EXPECT_FALSE(std::filesystem::exists(data)) << "--check-config made the data directory";
  EXPECT_EQ(fake_broker.connections(std::chrono::milliseconds(200)), 0);

  // Without a file, from the environment alone.
  r = lulld_run(s, {"--check-config"},
                {"LULL_BROKER=tcp://127.0.0.1:" + std::to_string(fake_broker.port()),
                 "LULL_DATA_DIR=" + data});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "lulld: configuration OK (no file)\n");
  EXPECT_FALSE(std::filesystem::exists(data));
  EXPECT_EQ(fake_broker.connections(std::chrono::milliseconds(200)), 0);

  // The same configuration started for real does both, which is what the
  // checks above would have seen.
  lulld started({"--config", conf, "--roles", "collectors"});
  EXPECT_TRUE(wait_until([&] { return fake_broker.connections(std::chrono::milliseconds(100)) > 0; },
                         20s))
    << started.log();
  EXPECT_TRUE(std::filesystem::exists(data + "/lulld.lock"));
}

// A bad configuration fails the check with exit status 2 and a message that
// names the key, where its value came from, and what was expected.
TEST(admin, check_config_names_the_bad_key_and_where_it_came_from) {
  scratch s;
  auto conf = s.file("lull.toml", "# a comment\nhost_id = \"pi\"\n\n[lease]\nttl = \"soon\"\n");
  auto r = lulld_run(s, {"--config", conf, "--check-config"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("bad value for lease.ttl (from file " + conf + ":5): got 'soon', "
                       "expected a duration"),
            std::string::npos)
    << r.err;

  conf = s.file("typo.toml", "[collectors]\nproceses = [\"mosquitto\"]\n");
  r = lulld_run(s, {"--config", conf, "--check-config"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("unknown key 'collectors.proceses' in " + conf
                       + ":2; did you mean 'collectors.processes'?"),
            std::string::npos)
    << r.err;

  r = lulld_run(s, {"--check-config"}, {"LULL_LEASE_HEADROOM=2"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("lease.headroom (from env LULL_LEASE_HEADROOM): got '2', expected a "
                       "number from 0 to 0.95"),
            std::string::npos)
    << r.err;

  r = lulld_run(s, {"--check-config", "--roles", "everything"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("roles (from flag --roles)"), std::string::npos) << r.err;

  conf = s.file("broken.toml", "broker = \"tcp://a:1883\n");
  r = lulld_run(s, {"--config", conf, "--print-config"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("cannot read config file " + conf), std::string::npos) << r.err;
}

// --print-config shows every key with its source; its output is a file
// lulld takes back, giving the same values.
TEST(admin, print_config_is_a_config_file_lulld_reads_back) {
  scratch s;
  auto conf = s.file("lull.toml", "[broker]\nuri = \"tcp://nuc.local:1883\"\n"
                                  "secure = true\n[quiet]\ncpu = \"0,25,70,90\"\n");
  auto r = lulld_run(s, {"--config", conf, "--print-config", "--interval", "5s"},
                     {"LULL_PASSWORD=s3cret", "LULL_LEASE_TTL=1m"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  auto& out = r.out;
  EXPECT_NE(out.find("\nbroker.uri = \"tcp://nuc.local:1883\"  # file " + conf + ":2\n"),
            std::string::npos)
    << out;
  EXPECT_NE(out.find("\nbroker.secure = true  # file " + conf + ":3\n"), std::string::npos);
  EXPECT_NE(out.find("\nquiet.cpu = \"0,25,70,90\"  # file " + conf + ":5\n"), std::string::npos);
  EXPECT_NE(out.find("\ninterval = \"5s\"  # flag --interval\n"), std::string::npos);
  EXPECT_NE(out.find("\nlease.ttl = \"1m\"  # env LULL_LEASE_TTL\n"), std::string::npos);
  EXPECT_NE(out.find("\npassword = \"<set>\"  # env LULL_PASSWORD\n"), std::string::npos);
  EXPECT_NE(out.find("\nlease.max_global = 32  # default\n"), std::string::npos);
  EXPECT_EQ(out.find("s3cret"), std::string::npos);

  auto printed = s.file("printed.toml", out);
  auto again = lulld_run(s, {"--config", printed, "--print-config"});
  ASSERT_EQ(again.code, 0) << again.err;
  // Every value the same; every source now this file.
  std::istringstream a(out), b(again.out);
  std::string la, lb;
  int keys = 0;
  while (std::getline(a, la) && std::getline(b, lb)) {
    if (la.empty() || la[0] == '#')
      continue;
    ++keys;
    EXPECT_EQ(la.substr(0, la.rfind("  # ")), lb.substr(0, lb.rfind("  # ")));
    EXPECT_NE(lb.find("  # file " + printed + ":"), std::string::npos) << lb;
  }
  EXPECT_GT(keys, 50);
  EXPECT_EQ(lulld_run(s, {"--config", printed, "--check-config"}).code, 0);
}
