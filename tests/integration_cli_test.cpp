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

// The dead letters: a job that fails every attempt ends dead with its last
// error, lull jobs --dead shows it, lull retry queues it again and a worker
// then completes it. One with attempts left waits its backoff first.
TEST_F(cli_integration, a_job_failing_every_attempt_is_dead_and_lull_retry_revives_it) {
  auto s = lull_cli({"submit", "--broker", b_.uri(), "--type", "flaky", "--host", "clihost",
                     "--max-attempts", "1"});
  ASSERT_EQ(s.code, 0) << s.err;
  auto job_id = s.out.substr(0, s.out.find('\n'));
  auto work = [&](const char* cmd) {
    return lull_cli({"work", "--broker", b_.uri(), "--worker", "w1", "--type", "flaky", "--host",
                     "clihost", "--max-jobs", "1", "--no-cgroup", "--poll", "5s", "--", "sh",
                     "-c", cmd});
  };
  work("exit 3");
  auto dead = lull_cli({"jobs", "--dead", "--broker", b_.uri()});
  ASSERT_EQ(dead.code, 0) << dead.err;
  EXPECT_NE(dead.out.find(job_id), std::string::npos) << dead.out;
  EXPECT_NE(dead.out.find("LAST ERROR"), std::string::npos) << dead.out;
  EXPECT_NE(dead.out.find("exit status 3"), std::string::npos) << dead.out;

  auto retry = lull_cli({"retry", job_id, "--broker", b_.uri()});
  ASSERT_EQ(retry.code, 0) << retry.err;
  EXPECT_EQ(retry.out, "job " + job_id + " queued again\n");
  auto listed = json::parse(lull_cli({"jobs", "--json", "--broker", b_.uri()}).out, nullptr, false);
  ASSERT_TRUE(listed.is_object());
  ASSERT_EQ(listed["jobs"].size(), 1u);
  EXPECT_EQ(listed["jobs"][0]["state"], "queued");
  EXPECT_EQ(listed["jobs"][0]["attempts"], 0);
  ASSERT_EQ(work("exit 0").code, 0);
  listed = json::parse(lull_cli({"jobs", "--json", "--broker", b_.uri()}).out, nullptr, false);
  EXPECT_EQ(listed["jobs"][0]["state"], "succeeded") << listed.dump();
  auto again = lull_cli({"retry", job_id, "--broker", b_.uri()});
  EXPECT_NE(again.code, 0);
  EXPECT_NE(again.err.find("only a dead job can be retried"), std::string::npos) << again.err;

  // With an attempt left, the job goes back after queue.retry_backoff (10 s).
  auto s2 = lull_cli({"submit", "--broker", b_.uri(), "--type", "flaky", "--host", "clihost",
                      "--max-attempts", "2"});
  ASSERT_EQ(s2.code, 0) << s2.err;
  auto second = s2.out.substr(0, s2.out.find('\n'));
  auto before = std::time(nullptr);
  work("exit 4");
  listed = json::parse(lull_cli({"jobs", "--json", "--state", "queued", "--broker", b_.uri()}).out,
                       nullptr, false);
  ASSERT_EQ(listed["jobs"].size(), 1u) << listed.dump();
  EXPECT_EQ(listed["jobs"][0]["job_id"], second);
  auto retry_at = parse_utc_timestamp(listed["jobs"][0].value("retry_at", ""));
  ASSERT_TRUE(retry_at) << listed.dump();
  EXPECT_GE(*retry_at, before + 10);
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

TEST_F(cli_integration, history_refuses_an_unknown_group_and_names_the_known_hosts) {
  auto group = lull_cli({"history", "--group", "cpu", "--broker", b_.uri()});
  EXPECT_EQ(group.code, 64) << group.err;
  EXPECT_NE(group.err.find("--group 'cpu' is not a history group; valid groups: host, quiet, "
                           "bus, process:<name>, worker:<id>"),
            std::string::npos)
    << group.err;
  EXPECT_EQ(group.out, "");
  for (auto extra : {std::vector<std::string>{}, std::vector<std::string>{"--windows"}}) {
    std::vector<std::string> args = {"history", "--host", "nosuch", "--broker", b_.uri()};
    args.insert(args.end(), extra.begin(), extra.end());
    auto host = lull_cli(args);
    EXPECT_EQ(host.code, 1) << host.err << host.out;
    EXPECT_NE(host.err.find("no host 'nosuch'; known hosts: clihost"), std::string::npos)
      << host.err;
    EXPECT_EQ(host.out.find("(no data)"), std::string::npos) << host.out;
  }
  // A known host with nothing stored yet is still an empty history, not an error.
  auto known = lull_cli({"history", "--group", "process:nothing-here", "--host", "clihost",
                         "--broker", b_.uri()});
  EXPECT_EQ(known.code, 0) << known.err;
  EXPECT_NE(known.out.find("(no data)"), std::string::npos) << known.out;
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
  EXPECT_EQ(*code, 0) << w.output(); // a sanitizer's report would be here
  EXPECT_EQ(run.get().code, 0);
}

// -- lull finds its lulld ----------------------------------------------------------

namespace {

/// `lull ARGS...` with `env` ("KEY=VALUE") added to the environment.
cli_result lull_env(std::vector<std::string> args, std::vector<std::string> env) {
  auto dir = test_data_dir();
  spawn_options o;
  o.argv = {binary_path("src/lull")};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.extra_env = std::move(env);
  o.stdout_path = dir + "/out";
  o.stderr_path = dir + "/err";
  o.stdin_path = "/dev/null";
  cli_result r;
  if (auto pid = spawn(o)) {
    if (auto st = wait_for_exit(*pid, 60s))
      r.code = exit_code_of(*st);
    else
      ::kill(*pid, SIGKILL), wait_for_exit(*pid, 5s);
  }
  auto slurp = [](const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  r.out = slurp(o.stdout_path);
  r.err = slurp(o.stderr_path);
  std::filesystem::remove_all(dir);
  return r;
}

} // namespace

// An installed lulld with no broker configured starts its own Mosquitto, on a
// free port when 1883 is taken; lull finds it through <data_dir>/broker.uri,
// or through the lull.toml both read, and says where it looked when it cannot.
TEST(cli_finds_lulld, through_broker_uri_or_lull_toml_and_names_the_source_when_it_cannot) {
  auto data = test_data_dir();
  auto home = test_data_dir();
  // No file of the user's, no inherited broker: only what each step names.
  // (An empty LULL_BROKER would be a broker named empty, as for lulld.)
  for (const char* name : {"LULL_BROKER", "LULL_CONFIG", "LULL_DATA_DIR"})
    ::unsetenv(name);
  std::vector<std::string> base = {"HOME=" + home, "XDG_CONFIG_HOME=" + home + "/.config",
                                   "XDG_STATE_HOME=" + home + "/state"};
  auto with = [&](std::vector<std::string> more) {
    auto env = base;
    env.insert(env.end(), more.begin(), more.end());
    return env;
  };
  lulld d{{"--host-id", "findme", "--data-dir", data, "--local-broker-port", "0", "--roles",
           "collectors,scheduler"},
          with({})};
  auto uri_file = data + "/broker.uri";
  ASSERT_TRUE(wait_until([&] { return std::filesystem::exists(uri_file); }, 30s)) << d.log();
  std::string uri;
  std::ifstream(uri_file) >> uri;
  ASSERT_EQ(uri.rfind("tcp://127.0.0.1:", 0), 0u) << uri;
  EXPECT_NE(uri, "tcp://127.0.0.1:1883") << "a free port, as when 1883 is taken";
  EXPECT_EQ(std::filesystem::status(uri_file).permissions() & std::filesystem::perms::all,
            std::filesystem::perms(0644));

  auto shows_findme = [](const cli_result& r) {
    return r.code == 0 && r.out.find("findme") != std::string::npos;
  };
  // 1. Only LULL_DATA_DIR: its broker.uri.
  cli_result r;
  ASSERT_TRUE(wait_until([&] {
    r = lull_env({"status"}, with({"LULL_DATA_DIR=" + data}));
    return shows_findme(r);
  }, 30s))
    << r.code << " " << r.err << r.out << d.log();

  // 2. A lull.toml naming the broker, with lulld's other keys in it.
  auto toml = home + "/lull.toml";
  std::ofstream(toml) << "broker = \"" << uri << "\"\nhost_id = \"findme\"\n"
                      << "[lease]\nttl = \"45s\"\n";
  r = lull_env({"status", "--config", toml}, with({}));
  EXPECT_TRUE(shows_findme(r)) << r.code << " " << r.err << r.out;
  r = lull_env({"status"}, with({"LULL_CONFIG=" + toml}));
  EXPECT_TRUE(shows_findme(r)) << r.code << " " << r.err << r.out;
  // ... and the user's own file, found without being named.
  std::filesystem::create_directories(home + "/.config/lull");
  std::filesystem::copy_file(toml, home + "/.config/lull/lull.toml");
  r = lull_env({"status"}, with({}));
  EXPECT_TRUE(shows_findme(r)) << r.code << " " << r.err << r.out;
  std::filesystem::remove(home + "/.config/lull/lull.toml");

  // 3. Unreachable: the message names the broker and where it came from.
  auto dead = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  auto dead_toml = home + "/dead.toml";
  std::ofstream(dead_toml) << "broker = \"" << dead << "\"\n";
  r = lull_env({"status", "--config", dead_toml, "--timeout", "2"}, with({}));
  EXPECT_EQ(r.code, 69) << r.err;
  EXPECT_NE(r.err.find("cannot connect to " + dead + " (from " + dead_toml + ":1)"),
            std::string::npos)
    << r.err;
  r = lull_env({"jobs", "--timeout", "2"}, with({"LULL_BROKER=" + dead}));
  EXPECT_EQ(r.code, 69) << r.err;
  EXPECT_NE(r.err.find("cannot connect to " + dead + " (from LULL_BROKER)"), std::string::npos)
    << r.err;

  // 4. A malformed lull.toml: a usage error naming the file and the key.
  auto bad = home + "/bad.toml";
  std::ofstream(bad) << "[broker]\nsecure = \"maybe\"\n";
  r = lull_env({"status", "--config", bad}, with({}));
  EXPECT_EQ(r.code, 64) << r.err;
  EXPECT_NE(r.err.find("bad value for broker.secure (from file " + bad + ":2)"), std::string::npos)
    << r.err;

  // A clean exit takes broker.uri with it.
  d.signal(SIGTERM);
  auto code = d.wait_exit(30s);
  ASSERT_TRUE(code) << d.log();
  EXPECT_EQ(*code, 0) << d.log();
  EXPECT_FALSE(std::filesystem::exists(uri_file));
  std::filesystem::remove_all(data);
  std::filesystem::remove_all(home);
}

// The broker answers but no lulld does: a timeout, told apart from lulld's
// own failure (69) by its exit code and naming the broker.
TEST(cli_no_lulld, a_timeout_names_the_broker_and_exits_124) {
  broker b;
  for (auto args : {std::vector<std::string>{"jobs"}, {"status"}, {"cancel", "x"},
                    {"history"}}) {
    args.insert(args.end(), {"--broker", b.uri(), "--timeout", "1"});
    auto r = lull_cli(args);
    EXPECT_EQ(r.code, 124) << args[0] << ": " << r.err;
    EXPECT_NE(r.err.find("Timeout: no answer from lulld within 1s on " + b.uri()
                         + " (from --broker)"),
              std::string::npos)
      << args[0] << ": " << r.err;
    EXPECT_EQ(r.err.find("InternalError"), std::string::npos) << r.err;
  }
}
