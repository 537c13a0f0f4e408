#pragma once
// What the example tests share: a real Mosquitto and lulld (scheduler role,
// short lease TTL so heartbeats are needed) with one host made QUIET by hand,
// an example started as a child process with its output in files, the
// leases it holds as scheduler/status shows them, and every message it
// publishes to lulld, put through lulld's own decoders.

#include <signal.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "messages/codec.hpp"
#include "src/process.hpp"
#include "tests/support/schema_check.hpp"
#include "tests/support/support.hpp"

namespace lull::test {

using json = nlohmann::json;

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string make_temp_dir(const char* name) {
  std::string tmpl = std::string("/tmp/") + name + "-XXXXXX";
  return ::mkdtemp(tmpl.data());
}

/// A temporary directory, removed with everything in it.
struct temp_dir {
  explicit temp_dir(const char* name) : path(make_temp_dir(name)) {}
  ~temp_dir() { std::filesystem::remove_all(path); }
  operator const std::string&() const { return path; }
  std::string operator+(const std::string& rel) const { return path + rel; }
  std::string path;
};

/// An example program running as a child process.
class example_process {
public:
  example_process(std::vector<std::string> argv, const std::string& dir,
                  std::vector<std::string> env = {}) {
    spawn_options o;
    o.argv = std::move(argv);
    o.extra_env = std::move(env);
    o.stdin_path = "/dev/null";
    static int n = 0;
    auto base = dir + "/example-" + std::to_string(++n);
    o.stdout_path = out_path_ = base + ".out";
    o.stderr_path = err_path_ = base + ".err";
    o.new_process_group = true;
    std::string err;
    auto pid = spawn(o, &err);
    if (pid)
      pid_ = *pid;
    else
      err_ = err;
  }
  ~example_process() {
    if (pid_ > 0 && !code_) {
      ::kill(-pid_, SIGKILL);
      wait_for_exit(pid_, std::chrono::seconds(5));
    }
  }
  bool started() const { return pid_ > 0; }
  /// Sends `sig` to its process group (SIGINT: a clean stop).
  void signal(int sig) {
    if (pid_ > 0 && !code_)
      ::kill(-pid_, sig);
  }
  /// The exit code after waiting up to `timeout`; nullopt while it runs.
  std::optional<int> wait(std::chrono::milliseconds timeout) {
    if (!code_ && pid_ > 0)
      if (auto st = wait_for_exit(pid_, timeout))
        code_ = exit_code_of(*st);
    return code_;
  }
  std::string out() const { return slurp(out_path_); }
  std::string err() const { return err_.empty() ? slurp(err_path_) : err_; }
  std::string output() const { return "stdout:\n" + out() + "\nstderr:\n" + err(); }

private:
  pid_t pid_ = -1;
  std::optional<int> code_;
  std::string out_path_, err_path_, err_;
};

/// Mosquitto + lulld + a QUIET host `exhost` + an observer client.
class example_env {
public:
  explicit example_env(std::vector<std::string> lulld_extra = {})
    : dir_(make_temp_dir("lull-examples")), b_("local.conf") {
    std::vector<std::string> args = {"--broker", b_.uri(), "--host-id", "exhost", "--data-dir",
                                     dir_, "--roles", "collectors,scheduler", "--lease-ttl",
                                     "6s", "--lease-lock-delay", "1s"};
    args.insert(args.end(), lulld_extra.begin(), lulld_extra.end());
    inputs_ = std::make_unique<input_recorder>(b_.uri());
    d_ = std::make_unique<lulld>(args);
    c_ = std::make_unique<client>(b_.uri());
    c_->subscribe("scheduler/status");
    c_->subscribe("scheduler/events");
  }
  ~example_env() {
    inputs_.reset();
    c_.reset();
    d_.reset();
    std::filesystem::remove_all(dir_);
  }

  /// Says the host is QUIET (no assessor runs) and waits until lulld knows.
  bool make_quiet() {
    json q = {{"v", 1},           {"host_id", "exhost"},
              {"state", "QUIET"}, {"quiet_score", 95},
              {"reasons", json::array()}, {"assessed_at", utc_timestamp(std::time(nullptr))}};
    c_->publish("stats/host/exhost/quiet", q.dump(), 1, true);
    return status_shows([](const json& s) {
      return s["hosts"].contains("exhost") && s["hosts"]["exhost"]["state"] == "QUIET";
    });
  }

  /// Waits until a scheduler/status satisfies `pred`.
  bool status_shows(const std::function<bool(const json&)>& pred,
                    std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    return c_
      ->wait_for(
        [&](const mqtt_message& m) {
          if (m.topic != "scheduler/status")
            return false;
          auto j = json::parse(m.payload, nullptr, false);
          return j.is_object() && pred(j);
        },
        timeout)
      .has_value();
  }

  /// The id of `worker`'s active lease, once it has one.
  std::string active_lease_of(const std::string& worker) {
    std::string id;
    status_shows([&](const json& s) {
      for (auto& l : s["active"])
        if (l["worker_id"] == worker) {
          id = l["lease_id"];
          return true;
        }
      return false;
    });
    return id;
  }

  /// The ended lease `id` as scheduler/status lists it, once it has ended.
  json ended_lease(const std::string& id) {
    json out;
    status_shows([&](const json& s) {
      for (auto& l : s["recent"])
        if (l["lease_id"] == id) {
          out = l;
          return true;
        }
      return false;
    });
    return out;
  }

  /// Leases `worker` ended, from scheduler/status.
  json ended_leases_of(const std::string& worker, std::size_t at_least) {
    json out = json::array();
    status_shows([&](const json& s) {
      out = json::array();
      for (auto& l : s["recent"])
        if (l["worker_id"] == worker)
          out.push_back(l);
      return out.size() >= at_least;
    });
    return out;
  }

  void revoke(const std::string& lease_id) {
    c_->publish("scheduler/lease/" + lease_id + "/revoke", R"({"v":1,"reason":"test revoke"})");
  }

  const std::string& dir() const { return dir_; }
  broker& mqtt_broker() { return b_; }
  client& observer() { return *c_; }
  /// Every message published on a topic lulld reads from clients.
  input_recorder& inputs() { return *inputs_; }
  lulld& daemon() { return *d_; }
  /// host:port of the broker.
  std::string host_port() const { return "127.0.0.1:" + std::to_string(b_.port()); }

private:
  std::string dir_;
  broker b_;
  std::unique_ptr<input_recorder> inputs_;
  std::unique_ptr<lulld> d_;
  std::unique_ptr<client> c_;
};

/// What lulld makes of the messages an example published: each one on a
/// topic lulld reads from clients passes lulld's own decoders (a failure
/// names its topic, payload and the decoder's error), there was at least
/// one on each of `expected` (topic filters: the check never passes on
/// nothing), and lulld's log refuses none.
inline ::testing::AssertionResult lulld_accepts_what_it_published(
  input_recorder& inputs, const std::string& lulld_log, const std::vector<std::string>& expected) {
  auto fail = ::testing::AssertionFailure();
  bool ok = true;
  auto seen = inputs.messages();
  for (auto& filter : expected)
    if (inputs.count(filter) == 0) {
      ok = false;
      fail << "nothing was published on " << filter << "\n";
    }
  for (auto& r : inputs.refusals()) {
    ok = false;
    fail << "lulld's decoders refuse " << r << "\n";
  }
  for (auto& line : refusal_log_lines(lulld_log)) {
    ok = false;
    fail << "lulld's log refuses a message: " << line << "\n";
  }
  if (!ok) {
    fail << "(" << seen.size() << " messages recorded:";
    for (auto& m : seen)
      fail << "\n  " << m.topic << " " << m.payload;
    return fail << ")";
  }
  return ::testing::AssertionSuccess() << seen.size() << " messages accepted";
}

} // namespace lull::test
