// lull run [--cost N|--class C] [--priority P] [--host H] [--wait D] -- CMD ARGS...

#include <cctype>
#include <chrono>
#include <cmath>
#include <ctime>
#include <iostream>

#include "src/cli/commands.hpp"
#include "src/client/supervise.hpp"
#include "messages/codec.hpp"
#include "messages/util.hpp"
#include "src/config.hpp"

namespace lull::cli {

using namespace std::chrono;

namespace {

/// `t` in local time: "04:12:31" on the day of `now`, else "2026-12-01 04:12:31".
std::string local_clock(std::int64_t t, std::int64_t now) {
  auto tt = static_cast<std::time_t>(t), nt = static_cast<std::time_t>(now);
  std::tm at{}, today{};
  ::localtime_r(&tt, &at);
  ::localtime_r(&nt, &today);
  bool same_day = at.tm_year == today.tm_year && at.tm_yday == today.tm_yday;
  char buf[32];
  std::strftime(buf, sizeof buf, same_day ? "%H:%M:%S" : "%Y-%m-%d %H:%M:%S", &at);
  return buf;
}

} // namespace

std::string wait_message(const lease_grant_reply& denial, work_priority priority,
                         double retry_sec, std::int64_t now, double gives_up_in) {
  static const std::string cooling = "Recent PANIC detected; cooling down until ";
  static const std::string panic = "System is PANIC";
  const auto& why = denial.reason;
  auto host = denial.host_id.empty() ? std::string() : "host " + denial.host_id;
  // PANIC and its cool-down stop every priority; HIGH waits like the rest.
  auto everyone = priority == work_priority::high ? ", not even HIGH" : "";
  std::string out;
  if (why.rfind(cooling, 0) == 0) {
    auto until = parse_utc_timestamp(why.substr(cooling.size(), 20));
    out = (host.empty() ? std::string("the host") : host) + " is cooling down after a PANIC"
          + (until ? " (until " + local_clock(*until, now) + ")" : std::string())
          + "; nothing runs there until then" + everyone;
  } else if (why.rfind(panic, 0) == 0) {
    out = (host.empty() ? std::string("the host") : host)
          + " is in PANIC; nothing runs there during a PANIC or the cool-down after it "
            "(lease.panic_cooldown)"
          + everyone;
  } else {
    out = "no lease" + (host.empty() ? std::string() : " on " + denial.host_id) + " yet: " + why;
  }
  out += "; asking again in " + human_duration(retry_sec);
  if (gives_up_in < 0)
    out += " (Ctrl-C to give up; --wait DURATION waits at most that long)";
  else
    out += " (Ctrl-C to give up; --wait gives up at "
           + local_clock(now + static_cast<std::int64_t>(std::ceil(gives_up_in)), now) + ")";
  return out;
}

CLI::App* add_run(CLI::App& app, run_opts& r) {
  auto* run = app.add_subcommand("run", "wait for a lease, run CMD, heartbeat, release");
  auto* cost = run->add_option("--cost", r.cost, "cost in units (1-100)")
                 ->check(CLI::Range(1, 100));
  run->add_option("--class", r.cls, "cost class LOW, NORMAL or HIGH")->excludes(cost);
  run->add_option("--priority", r.priority, "LOW, NORMAL or HIGH")->capture_default_str();
  run->add_option("--host", r.host, "host whose capacity the work uses");
  run->add_option("--gpu", r.gpu, "GPUs the command needs, counted against the host's (0-16)")
    ->check(CLI::Range(0, max_lease_gpus));
  run->add_option("--wait", r.wait, "give up after this long without a lease (0: never)")
    ->capture_default_str();
  run->add_option("--job-type", r.job_type, "job type (default: CMD's name)");
  run->add_option("--ttl", r.ttl, "lease TTL to ask for (lulld may clamp it)");
  run->add_option("--grace", r.grace, "SIGTERM to SIGKILL grace on a lost lease")
    ->capture_default_str();
  run->add_flag("-q,--quiet", r.quiet, "do not say why it waits");
  run->add_flag("--keep-priority", r.keep_priority,
                "run LOW/NORMAL work at normal priority (default: nice 19, idle IO)");
  run->add_flag("--no-cgroup", r.no_cgroup, "do not put CMD in a cgroup of its own");
  run->add_option("command", r.cmd, "CMD ARGS... (after --)")->required();
  return run;
}

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
  auto pr = parse_lease_priority(r.priority);
  if (!pr) {
    std::cerr << "lull: --priority takes LOW, NORMAL or HIGH\n";
    return ex_usage;
  }
  req.priority = *pr;
  req.host_id = r.host;
  req.gpu = r.gpu;
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
  auto set = block_supervise_signals();

  auto connected = connect_or_say(g);
  if (!connected)
    return ex_unavailable;
  auto& client = *connected;
  auto call_timeout = call_timeout_of(g);
  auto say = [&](const std::string& text) {
    if (!r.quiet)
      std::cerr << "lull: " << text << std::endl;
  };

  // 1. Wait for a grant.
  auto started = steady_clock::now();
  lease_grant_reply lease;
  int failures = 0;
  while (true) {
    auto reply = client.request(req, call_timeout);
    if (auto* e = std::get_if<call_error>(&reply)) {
      // lulld away, or unable to store the grant (a full or locked disk):
      // asked again within --wait; a refusal of the request itself ends it.
      double waited = duration<double>(steady_clock::now() - started).count();
      if (service_failure(*e) && (*wait_sec == 0 || waited < *wait_sec)) {
        double pause = retry_pause(failures++, *wait_sec > 0 ? *wait_sec - waited : -1);
        say("lease request failed (" + describe(g, *e) + "); asking again in "
            + human_duration(pause));
        int sig = wait_signal(set, duration<double>(pause));
        if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
          say("interrupted while waiting for a lease");
          return 128 + sig;
        }
        continue;
      }
      std::cerr << "lull: lease request failed: " << describe(g, *e) << "\n";
      return e->timed_out ? ex_timeout : service_failure(*e) ? ex_unavailable : ex_usage;
    }
    failures = 0;
    lease = std::get<lease_grant_reply>(reply);
    if (lease.approved)
      break;
    double waited = duration<double>(steady_clock::now() - started).count();
    double retry = std::max(0.5, clamp_retry_hint(lease.retry_after_sec));
    if (*wait_sec > 0 && waited + retry > *wait_sec) {
      std::cerr << "lull: no lease within " << r.wait << ": " << lease.reason << "\n";
      return ex_tempfail;
    }
    say(wait_message(lease, req.priority, retry, unix_seconds_now(),
                     *wait_sec > 0 ? *wait_sec - waited : -1));
    int sig = wait_signal(set, duration<double>(retry));
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
      say("interrupted while waiting for a lease");
      return 128 + sig;
    }
  }
  say("lease " + lease.lease_id + " on " + lease.host_id + " (fencing token "
      + std::to_string(lease.fencing_token) + "): " + lease.reason);

  // 2. Run the command, heartbeating until it exits.
  supervise_options so;
  so.cmd = r.cmd;
  so.low_priority = !r.keep_priority && below_high(req.priority);
  so.use_cgroup = !r.no_cgroup;
  so.grace_sec = *grace_sec;
  so.grace_text = r.grace;
  so.signals = set;
  so.say = say;
  auto res = run_under_lease(client, lease, so);
  if (!res.started && res.lost) {
    std::cerr << "lull: " << res.start_error << "\n";
    client.release(lease.lease_id, call_timeout, "lost before the command started");
    return ex_tempfail;
  }
  if (!res.started) {
    std::cerr << "lull: cannot run " << r.cmd.front() << ": " << res.start_error << "\n";
    client.release(lease.lease_id, call_timeout, "command did not start");
    return 127;
  }

  // 3. Release (also after a revoke: it tells lulld the work has stopped).
  auto rel = client.release(lease.lease_id, call_timeout,
                            res.interrupted ? "interrupted"
                            : res.lost      ? "stopped after losing the lease"
                                            : "command exited");
  if (auto* e = std::get_if<call_error>(&rel))
    say("release failed: " + e->error.message);
  return res.exit_code;
}

} // namespace lull::cli
