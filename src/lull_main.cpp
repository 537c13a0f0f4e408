// lull: the worker's command line.
//
//   lull run [--cost N|--class C] [--priority P] [--host H] [--wait D] -- CMD ARGS...
//   lull status
//   lull revoke LEASE_ID [--reason TEXT]

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <mutex>

#include <CLI/CLI.hpp>

#include "src/client/lease_client.hpp"
#include "src/config.hpp"
#include "src/process.hpp"

using namespace lull;
using namespace std::chrono;

namespace {

// sysexits.h
constexpr int ex_usage = 64;
constexpr int ex_unavailable = 69;
constexpr int ex_tempfail = 75;

std::string default_worker_id() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0')
    return "worker";
  std::string out;
  for (char* p = buf; *p != '\0' && *p != '.' && out.size() < 64; ++p)
    out += (std::isalnum(static_cast<unsigned char>(*p)) || *p == '-' || *p == '_') ? *p : '_';
  return out.empty() ? "worker" : out;
}

std::string fmt(double sec) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", sec);
  return buf;
}

/// Waits for one of `set` up to `timeout`; 0 on timeout.
int wait_signal(const sigset_t& set, duration<double> timeout) {
  if (timeout.count() < 0)
    timeout = duration<double>(0);
  timespec ts;
  ts.tv_sec = static_cast<time_t>(timeout.count());
  ts.tv_nsec = static_cast<long>((timeout.count() - static_cast<double>(ts.tv_sec)) * 1e9);
  int sig = ::sigtimedwait(&set, nullptr, &ts);
  return sig < 0 ? 0 : sig;
}

struct global_opts {
  std::string broker = "tcp://127.0.0.1:1883";
  std::string worker = default_worker_id();
  std::string user, password, prefix;
  bool secure = false;
  double timeout_sec = 10;
};

std::variant<std::unique_ptr<lease_client>, std::string> connect(const global_opts& g,
                                                                 bool announce) {
  lease_client_options o;
  o.uri = g.broker;
  o.worker_id = g.secure && !g.user.empty() ? g.user : g.worker;
  o.username = g.user;
  o.password = g.password;
  o.secure = g.secure;
  o.topic_prefix = g.prefix;
  o.announce = announce;
  o.connect_timeout = milliseconds(static_cast<long>(g.timeout_sec * 1000));
  return lease_client::connect(o);
}

struct run_opts {
  int cost = 0;
  std::string cls;
  std::string priority = "NORMAL";
  std::string host;
  std::string wait = "0";
  std::string job_type;
  std::string ttl;
  std::string grace = "10s";
  bool quiet = false;
  std::vector<std::string> cmd;
};

int do_run(const global_opts& g, const run_opts& r) {
  auto wait_sec = parse_duration_sec(r.wait);
  auto grace_sec = parse_duration_sec(r.grace);
  if (!wait_sec || !grace_sec) {
    std::cerr << "lull: --wait and --grace take a duration such as 30s, 5m or 1h\n";
    return ex_usage;
  }
  lease_request req;
  if (r.cost > 0)
    req.cost_units = r.cost;
  if (!r.cls.empty()) {
    req.cost_class_ = parse_cost_class(r.cls);
    if (!req.cost_class_) {
      std::cerr << "lull: --class takes LOW, NORMAL or HIGH\n";
      return ex_usage;
    }
  }
  auto pr = parse_priority(r.priority);
  if (!pr) {
    std::cerr << "lull: --priority takes LOW, NORMAL or HIGH\n";
    return ex_usage;
  }
  req.priority = *pr;
  req.host_id = r.host;
  req.job_type = !r.job_type.empty() ? r.job_type : r.cmd.front().substr(r.cmd.front().rfind('/') + 1);
  if (!r.ttl.empty()) {
    auto t = parse_duration_sec(r.ttl);
    if (!t) {
      std::cerr << "lull: --ttl takes a duration such as 30s\n";
      return ex_usage;
    }
    req.ttl_sec = *t;
  }

  // Signals are taken synchronously; the child gets a clean mask (spawn).
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGUSR1})
    sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  auto connected = connect(g, false);
  if (auto* err = std::get_if<std::string>(&connected)) {
    std::cerr << "lull: " << *err << "\n";
    return ex_unavailable;
  }
  auto& client = *std::get<std::unique_ptr<lease_client>>(connected);
  auto call_timeout = milliseconds(static_cast<long>(g.timeout_sec * 1000));
  auto say = [&](const std::string& text) {
    if (!r.quiet)
      std::cerr << "lull: " << text << std::endl;
  };

  // 1. Wait for a grant.
  auto started = steady_clock::now();
  lease_grant_reply lease;
  while (true) {
    auto reply = client.request(req, call_timeout);
    if (auto* e = std::get_if<call_error>(&reply)) {
      std::cerr << "lull: lease request failed: " << to_string(e->error.code) << ": "
                << e->error.message << "\n";
      return e->timed_out ? ex_unavailable : ex_usage;
    }
    lease = std::get<lease_grant_reply>(reply);
    if (lease.approved)
      break;
    double waited = duration<double>(steady_clock::now() - started).count();
    double retry = std::max(0.5, lease.retry_after_sec);
    if (*wait_sec > 0 && waited + retry > *wait_sec) {
      std::cerr << "lull: no lease within " << r.wait << ": " << lease.reason << "\n";
      return ex_tempfail;
    }
    say("waiting " + fmt(retry) + "s: " + lease.reason);
    int sig = wait_signal(set, duration<double>(retry));
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
      say("interrupted while waiting for a lease");
      return 128 + sig;
    }
  }
  say("lease " + lease.lease_id + " on " + lease.host_id + " (fencing token "
      + std::to_string(lease.fencing_token) + "): " + lease.reason);

  // Notices about this lease (revoke, expiry) interrupt the wait below.
  std::mutex lost_mtx;
  std::string lost_reason;
  client.watch(lease.lease_id, [&](const lease_notice& n) {
    if (n.state == "REVOKED" || n.state == "EXPIRED") {
      {
        std::lock_guard<std::mutex> guard(lost_mtx);
        lost_reason = n.state + ": " + n.reason;
      }
      ::kill(::getpid(), SIGUSR1);
    }
  });

  // 2. Run the command.
  spawn_options so;
  so.argv = r.cmd;
  so.extra_env = {"LULL_LEASE_ID=" + lease.lease_id,
                  "LULL_FENCING_TOKEN=" + std::to_string(lease.fencing_token)};
  std::string err;
  auto pid = spawn(so, &err);
  if (!pid) {
    std::cerr << "lull: cannot run " << r.cmd.front() << ": " << err << "\n";
    client.release(lease.lease_id, call_timeout, "command did not start");
    return 127;
  }

  // 3. Heartbeat at TTL/3 until it exits; stop it when the lease is lost.
  auto interval = duration<double>(std::max(0.2, lease.heartbeat_interval_sec));
  auto ttl = duration<double>(lease.ttl_sec);
  auto next_hb = steady_clock::now() + duration_cast<steady_clock::duration>(interval);
  auto last_ok = steady_clock::now();
  std::optional<steady_clock::time_point> kill_at;
  bool lost = false, interrupted = false;
  int status = 0;
  auto stop_child = [&](const std::string& why) {
    if (kill_at)
      return;
    say(why + "; stopping " + r.cmd.front() + " (SIGTERM, SIGKILL after " + r.grace + ")");
    ::kill(*pid, SIGTERM);
    kill_at = steady_clock::now() + duration_cast<steady_clock::duration>(
                                      duration<double>(*grace_sec));
  };
  while (true) {
    auto now = steady_clock::now();
    auto until = kill_at && *kill_at < next_hb ? *kill_at : next_hb;
    int sig = wait_signal(set, until - now);
    if (::waitpid(*pid, &status, WNOHANG) == *pid)
      break;
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
      interrupted = true;
      stop_child(std::string("interrupted (") + (sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP") + ")");
    } else if (sig == SIGUSR1) {
      std::lock_guard<std::mutex> guard(lost_mtx);
      lost = true;
      stop_child("lease " + lost_reason);
    }
    now = steady_clock::now();
    if (kill_at && now >= *kill_at) {
      ::kill(*pid, SIGKILL);
      kill_at = now + hours(24);
    }
    if (!lost && now >= next_hb) {
      auto hb = client.heartbeat(lease.lease_id,
                                 duration_cast<milliseconds>(std::min(interval, duration<double>(5))));
      if (auto* e = std::get_if<call_error>(&hb)) {
        if (!e->timed_out) {
          lost = true;
          stop_child("lease lost: " + e->error.message);
        } else if (steady_clock::now() - last_ok > ttl) {
          lost = true;
          stop_child("lease lost: no heartbeat reply for " + fmt(ttl.count()) + "s");
        }
      } else {
        last_ok = steady_clock::now();
      }
      next_hb = steady_clock::now() + duration_cast<steady_clock::duration>(interval);
    }
  }

  // 4. Release (also after a revoke: it tells lulld the work has stopped).
  auto rel = client.release(lease.lease_id, call_timeout,
                            interrupted ? "interrupted" : lost ? "stopped after losing the lease"
                                                               : "command exited");
  if (auto* e = std::get_if<call_error>(&rel))
    say("release failed: " + e->error.message);
  int code = exit_code_of(status);
  if (interrupted && !kill_at)
    code = 130;
  return code;
}

std::string pad(std::string s, std::size_t w) {
  if (s.size() < w)
    s.append(w - s.size(), ' ');
  return s;
}

std::string num(const nlohmann::json& j, int decimals = 0) {
  if (!j.is_number())
    return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, j.get<double>());
  return buf;
}

std::string str(const nlohmann::json& j) { return j.is_string() ? j.get<std::string>() : "-"; }

int do_status(const global_opts& g, bool as_json) {
  auto connected = connect(g, false);
  if (auto* err = std::get_if<std::string>(&connected)) {
    std::cerr << "lull: " << *err << "\n";
    return ex_unavailable;
  }
  auto st = std::get<std::unique_ptr<lease_client>>(connected)->status(
    milliseconds(static_cast<long>(g.timeout_sec * 1000)));
  if (!st) {
    std::cerr << "lull: no scheduler/status on " << g.broker << " (is lulld running?)\n";
    return ex_unavailable;
  }
  if (as_json) {
    std::cout << st->dump(2) << "\n";
    return 0;
  }
  auto& s = *st;
  std::cout << pad("HOST", 16) << pad("STATE", 8) << pad("SCORE", 7) << pad("UNITS", 10)
            << pad("LEASES", 8) << "COOLDOWN\n";
  for (auto& [id, h] : s["hosts"].items())
    std::cout << pad(id, 16) << pad(str(h["state"]), 8) << pad(num(h["quiet_score"]), 7)
              << pad(num(h["used_units"]) + "/" + num(h["capacity_units"]), 10)
              << pad(num(h["active_leases"]), 8)
              << (h.contains("cooldown_remaining_sec") ? num(h["cooldown_remaining_sec"]) + "s"
                                                       : std::string("-"))
              << "\n";
  std::cout << "\n"
            << pad("LEASE", 34) << pad("WORKER", 16) << pad("HOST", 12) << pad("UNITS", 6)
            << pad("PRIO", 7) << pad("TTL", 6) << "JOB\n";
  if (s["active"].empty())
    std::cout << "(no active leases)\n";
  for (auto& l : s["active"])
    std::cout << pad(str(l["lease_id"]), 34) << pad(str(l["worker_id"]), 16)
              << pad(str(l["host_id"]), 12) << pad(num(l["cost_units"]), 6)
              << pad(str(l["priority"]), 7) << pad(num(l["ttl_remaining_sec"]) + "s", 6)
              << str(l["job_type"]) << "\n";
  if (!s["workers"].empty()) {
    std::cout << "\n" << pad("WORKER", 16) << pad("GRANTS", 8) << pad("DENIES", 8) << "LAST\n";
    for (auto& [id, w] : s["workers"].items())
      std::cout << pad(id, 16) << pad(num(w["grants"]), 8) << pad(num(w["denies"]), 8)
                << str(w["last_decision"]) << ": " << str(w["last_reason"]) << "\n";
  }
  std::cout << "\n(as of " << str(s["updated_at"]) << ")\n";
  return 0;
}

int do_revoke(const global_opts& g, const std::string& id, const std::string& reason) {
  auto connected = connect(g, false);
  if (auto* err = std::get_if<std::string>(&connected)) {
    std::cerr << "lull: " << *err << "\n";
    return ex_unavailable;
  }
  auto r = std::get<std::unique_ptr<lease_client>>(connected)->revoke(
    id, reason, milliseconds(static_cast<long>(g.timeout_sec * 1000)));
  if (auto* e = std::get_if<call_error>(&r)) {
    std::cerr << "lull: revoke failed: " << to_string(e->error.code) << ": " << e->error.message
              << "\n";
    return e->timed_out ? ex_unavailable : 1;
  }
  std::cout << "lease " << id << " revoked: " << std::get<lease_notice>(r).reason << "\n";
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  CLI::App app{"lull: run heavy work when the host is quiet (leases from lulld over MQTT)"};
  app.set_version_flag("--version", "lull 0.1.0");
  app.require_subcommand(1);
  global_opts g;
  app.add_option("--broker", g.broker, "MQTT broker URI")->envname("LULL_BROKER")
    ->capture_default_str();
  app.add_option("--worker", g.worker, "this worker's id (default: the hostname)")
    ->envname("LULL_WORKER_ID");
  app.add_option("--user", g.user, "MQTT user name (secure broker: the worker id)")
    ->envname("LULL_USERNAME");
  app.add_option("--password", g.password, "MQTT password (prefer the env)")
    ->envname("LULL_PASSWORD");
  app.add_flag("--secure", g.secure, "the broker runs broker-config/secure.conf")
    ->envname("LULL_BROKER_SECURE");
  app.add_option("--topic-prefix", g.prefix, "lulld's topic prefix")->envname("LULL_TOPIC_PREFIX");
  app.add_option("--timeout", g.timeout_sec, "seconds to wait for the broker and each reply")
    ->capture_default_str();

  run_opts r;
  auto* run = app.add_subcommand("run", "wait for a lease, run CMD, heartbeat, release");
  auto* cost = run->add_option("--cost", r.cost, "cost in units (1-100)")
                 ->check(CLI::Range(1, 100));
  run->add_option("--class", r.cls, "cost class LOW, NORMAL or HIGH")->excludes(cost);
  run->add_option("--priority", r.priority, "LOW, NORMAL or HIGH")->capture_default_str();
  run->add_option("--host", r.host, "host whose capacity the work uses");
  run->add_option("--wait", r.wait, "give up after this long without a lease (0: never)")
    ->capture_default_str();
  run->add_option("--job-type", r.job_type, "job type (default: CMD's name)");
  run->add_option("--ttl", r.ttl, "lease TTL to ask for (lulld may clamp it)");
  run->add_option("--grace", r.grace, "SIGTERM to SIGKILL grace on a lost lease")
    ->capture_default_str();
  run->add_flag("-q,--quiet", r.quiet, "do not say why it waits");
  run->add_option("command", r.cmd, "CMD ARGS... (after --)")->required();

  bool as_json = false;
  auto* status = app.add_subcommand("status", "hosts, quiet states and leases");
  status->add_flag("--json", as_json, "print scheduler/status as JSON");

  std::string lease_id, reason;
  auto* revoke = app.add_subcommand("revoke", "revoke a lease (admin)");
  revoke->add_option("lease_id", lease_id, "the lease id")->required();
  revoke->add_option("--reason", reason, "why (shown to the holder)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : ex_usage;
  }
  if (*run)
    return do_run(g, r);
  if (*status)
    return do_status(g, as_json);
  return do_revoke(g, lease_id, reason);
}
