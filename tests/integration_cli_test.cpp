// The lull command line against a real lulld and Mosquitto: what each
// command prints and how it exits, global flags given after the command.

#include <gtest/gtest.h>

#include <poll.h>
#include <pty.h>
#include <unistd.h>

#include <ctime>
#include <future>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "messages/codec.hpp"
#include "src/process.hpp"
#include "tests/support/support.hpp"

using namespace lull;
using namespace lull::test;
using json = nlohmann::json;

namespace {

class cli_integration : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_TRUE(c_.connected()) << c_.error();
    // No quiet assessor: the test says the host is QUIET.
    json q = {{"v", 1},           {"host_id", "clihost"},
              {"state", "QUIET"}, {"quiet_score", 95},
              {"reasons", json::array()}, {"assessed_at", utc_timestamp(std::time(nullptr))}};
    c_.publish("stats/host/clihost/quiet", q.dump(), 1, true);
    c_.subscribe("scheduler/status");
    ASSERT_TRUE(c_.wait_for(
      [](const mqtt_message& m) {
        auto j = json::parse(m.payload, nullptr, false);
        return m.topic == "scheduler/status" && j.is_object()
               && j["hosts"].contains("clihost");
      },
      30s))
      << d_.log();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string dir_ = [] {
    char tmpl[] = "/tmp/lull-cli-data-XXXXXX";
    return std::string(::mkdtemp(tmpl));
  }();
  broker b_;
  lulld d_{{"--broker", b_.uri(), "--host-id", "clihost", "--data-dir", dir_, "--roles",
            "collectors,scheduler", "--log-level", "debug"}};
  client c_{b_.uri()};
};

} // namespace

TEST_F(cli_integration, status_prints_the_host_table) {
  auto r = lull_cli({"status", "--broker", b_.uri()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("HOST"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("clihost"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("QUIET"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(no active leases)"), std::string::npos) << r.out;

  auto j = lull_cli({"--broker", b_.uri(), "status", "--json"});
  ASSERT_EQ(j.code, 0) << j.err;
  auto doc = json::parse(j.out, nullptr, false);
  ASSERT_TRUE(doc.is_object()) << j.out;
  EXPECT_TRUE(doc["hosts"].contains("clihost"));
}

TEST_F(cli_integration, submit_jobs_cancel_with_global_flags_after_the_command) {
  auto s = lull_cli({"submit", "--type", "thumbs", "--key", "k-1", "--payload", R"({"n":1})",
                     "--broker", b_.uri(), "--worker", "producer1", "--host", "nowhere"});
  ASSERT_EQ(s.code, 0) << s.err;
  auto job_id = s.out.substr(0, s.out.find('\n'));
  ASSERT_FALSE(job_id.empty());
  auto again = lull_cli({"submit", "--broker", b_.uri(), "--type", "thumbs", "--key", "k-1",
                         "--host", "nowhere"});
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(again.out, job_id + " (already submitted)\n");

  auto jobs = lull_cli({"jobs", "--state", "queued", "--broker", b_.uri()});
  ASSERT_EQ(jobs.code, 0) << jobs.err;
  EXPECT_NE(jobs.out.find(job_id), std::string::npos) << jobs.out;
  EXPECT_NE(jobs.out.find("thumbs"), std::string::npos) << jobs.out;
  EXPECT_NE(jobs.out.find("queued: "), std::string::npos) << jobs.out;

  auto cancel = lull_cli({"cancel", job_id, "--reason", "not needed", "--broker", b_.uri()});
  ASSERT_EQ(cancel.code, 0) << cancel.err;
  EXPECT_EQ(cancel.out, "job " + job_id + " cancelled\n");
  auto after = lull_cli({"jobs", "--json", "--broker", b_.uri()});
  auto doc = json::parse(after.out, nullptr, false);
  ASSERT_TRUE(doc.is_object()) << after.out;
  ASSERT_EQ(doc["jobs"].size(), 1u);
  EXPECT_EQ(doc["jobs"][0]["state"], "cancelled");
}

TEST_F(cli_integration, errors_name_the_code_and_exit_nonzero) {
  auto revoke = lull_cli({"revoke", "no-such-lease", "--broker", b_.uri()});
  EXPECT_EQ(revoke.code, 1);
  EXPECT_NE(revoke.err.find("revoke failed: ResourceNotFound"), std::string::npos) << revoke.err;
  auto cancel = lull_cli({"cancel", "no-such-job", "--broker", b_.uri()});
  EXPECT_EQ(cancel.code, 1);
  EXPECT_NE(cancel.err.find("cancel failed: ResourceNotFound"), std::string::npos) << cancel.err;
  auto bad = lull_cli({"submit", "--type", "t", "--payload", "{not json", "--broker", b_.uri()});
  EXPECT_EQ(bad.code, 64);
  EXPECT_NE(bad.err.find("--payload is not JSON"), std::string::npos) << bad.err;
}

TEST_F(cli_integration, history_prints_a_header_and_series) {
  auto r = lull_cli({"history", "--group", "quiet", "--host", "clihost", "--range", "10m",
                     "--step", "10s", "--broker", b_.uri()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("quiet of clihost, last 10m in 10s steps from ", 0), 0u) << r.out;
}

TEST(cli_no_broker, every_command_says_why_and_exits_69) {
  auto uri = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  for (auto args : {std::vector<std::string>{"status"}, {"jobs"}, {"history"},
                    {"cancel", "x"}, {"revoke", "x"}, {"submit", "--type", "t"}}) {
    args.insert(args.end(), {"--broker", uri, "--timeout", "2"});
    auto r = lull_cli(args);
    EXPECT_EQ(r.code, 69) << args[0] << ": " << r.err;
    EXPECT_NE(r.err.find("lull: "), std::string::npos) << args[0];
  }
}

namespace {

/// `lull ARGS...` on a pseudo-terminal, as a user runs it.
class pty_lull {
public:
  explicit pty_lull(std::vector<std::string> args) {
    args.insert(args.begin(), binary_path("src/lull"));
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    winsize ws{40, 120, 0, 0};
    pid_ = ::forkpty(&master_, nullptr, nullptr, &ws);
    if (pid_ == 0) {
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~pty_lull() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      wait_for_exit(pid_, 5s);
    }
    if (master_ >= 0)
      ::close(master_);
  }
  bool started() const { return pid_ > 0; }
  /// Reads the terminal until `pred` holds on all output so far, or `timeout`.
  bool read_until(const std::function<bool(const std::string&)>& pred,
                  std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred(out_)) {
      if (std::chrono::steady_clock::now() > deadline)
        return false;
      pollfd p{master_, POLLIN, 0};
      if (::poll(&p, 1, 100) > 0) {
        char buf[4096];
        auto n = ::read(master_, buf, sizeof buf);
        if (n <= 0)
          return pred(out_);
        out_.append(buf, static_cast<std::size_t>(n));
      }
    }
    return true;
  }
  void type(const std::string& keys) {
    EXPECT_EQ(::write(master_, keys.data(), keys.size()), static_cast<ssize_t>(keys.size()));
  }
  /// The exit code, reading what it still prints meanwhile.
  std::optional<int> wait(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      read_until([](const std::string&) { return false; }, 200ms);
      if (auto st = wait_for_exit(pid_, 10ms)) {
        exited_ = true;
        read_until([](const std::string&) { return false; }, 200ms);
        return exit_code_of(*st);
      }
    }
    return std::nullopt;
  }
  const std::string& output() const { return out_; }

private:
  int master_ = -1;
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string out_;
};

} // namespace

TEST_F(cli_integration, watch_draws_the_hosts_and_quits_on_q) {
  pty_lull w({"watch", "--broker", b_.uri()});
  ASSERT_TRUE(w.started());
  // The host, its state, a full bar for its score of 95, and the queue line.
  ASSERT_TRUE(w.read_until(
    [](const std::string& out) {
      return out.find("clihost") != std::string::npos && out.find("QUIET") != std::string::npos
             && out.find("\u2588") != std::string::npos
             && out.find("QUEUE  0 queued") != std::string::npos;
    },
    60s))
    << w.output();
  EXPECT_NE(w.output().find("(no active leases)"), std::string::npos);
  w.type("q");
  auto code = w.wait(30s);
  ASSERT_TRUE(code) << w.output();
  EXPECT_EQ(*code, 0);
  // It left the alternate screen and showed the cursor again.
  EXPECT_NE(w.output().find("\x1b[?25h\x1b[?1049l"), std::string::npos);
}

TEST_F(cli_integration, watch_quits_on_ctrl_c_and_follows_new_leases) {
  pty_lull w({"--broker", b_.uri(), "watch", "--refresh", "0.5"});
  ASSERT_TRUE(w.read_until(
    [](const std::string& out) { return out.find("(no active leases)") != std::string::npos; },
    60s))
    << w.output();
  // A lease taken meanwhile shows up.
  auto run = std::async(std::launch::async, [&] {
    return lull_cli({"run", "--broker", b_.uri(), "--worker", "watched", "--", "sleep", "8"});
  });
  EXPECT_TRUE(w.read_until(
    [](const std::string& out) { return out.find("watched") != std::string::npos; }, 60s))
    << w.output();
  w.type("\x03"); // Ctrl-C
  auto code = w.wait(30s);
  ASSERT_TRUE(code) << w.output();
  EXPECT_EQ(*code, 0);
  EXPECT_EQ(run.get().code, 0);
}
