// lull work --type T -- CMD ARGS...: take jobs from the queue, run CMD for
// each with the job's JSON on its stdin, release with the outcome.

#include <algorithm>
#include <cctype>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iostream>

#include "src/cli/commands.hpp"
#include "src/client/supervise.hpp"
#include "src/config.hpp"
#include "src/queue/job_queue.hpp"

namespace lull::cli {

using namespace std::chrono;

CLI::App* add_work(CLI::App& app, work_opts& wo) {
  auto* work = app.add_subcommand("work", "take jobs from the queue and run CMD for each "
                                          "(the job's JSON on its stdin)");
  work->add_option("--type", wo.types, "job types this worker accepts (repeatable)")
    ->required();
  work->add_option("--host", wo.host, "the host this worker runs on");
  work->add_option("--poll", wo.poll, "how long one request for work may wait")
    ->capture_default_str();
  work->add_option("--grace", wo.grace, "SIGTERM to SIGKILL grace on a lost lease")
    ->capture_default_str();
  work->add_option("--max-jobs", wo.max_jobs, "stop after this many jobs (0: never)");
  work->add_flag("-q,--quiet", wo.quiet, "do not say what it does");
  work->add_flag("--keep-priority", wo.keep_priority,
                 "run jobs below high priority at normal priority (default: nice 19, idle IO)");
  work->add_flag("--no-cgroup", wo.no_cgroup, "do not put jobs in a cgroup of their own");
  work->add_option("command", wo.cmd, "CMD ARGS... (after --)")->required();
  return work;
}

int do_work(const global_opts& g, const work_opts& o) {
  auto poll = parse_duration_sec(o.poll);
  auto grace = parse_duration_sec(o.grace);
  if (!poll || !grace) {
    std::cerr << "lull: --poll and --grace take a duration such as 20s\n";
    return ex_usage;
  }
  auto set = block_supervise_signals();
  // Announced with a last will: if this worker dies, lulld expires its lease
  // at once and the job goes back to the queue.
  auto client = connect_or_say(g, true);
  if (!client)
    return ex_unavailable;
  auto say = [&](const std::string& text) {
    if (!o.quiet)
      std::cerr << "lull: " << text << std::endl;
  };
  char tmpl[] = "/tmp/lull-job-XXXXXX";
  int fd = ::mkstemp(tmpl);
  if (fd < 0) {
    std::cerr << "lull: cannot create a file for the job's input\n";
    return ex_failed;
  }
  ::close(fd);
  std::string job_file = tmpl;
  int done = 0;
  int code = ex_ok;
  while (o.max_jobs == 0 || done < o.max_jobs) {
    nlohmann::json body = {{"types", o.types}, {"wait_sec", *poll}};
    if (!o.host.empty())
      body["host_id"] = o.host;
    // SIGINT/SIGTERM/SIGHUP stay pending (blocked) while the long poll
    // waits: seeing one ends the poll, so lull work stops at once.
    auto stop_pending = [&set] {
      sigset_t pending;
      sigemptyset(&pending);
      ::sigpending(&pending);
      for (int s : {SIGINT, SIGTERM, SIGHUP})
        if (sigismember(&pending, s) && sigismember(&set, s))
          return true;
      return false;
    };
    auto r = client->call(client->request_topic("scheduler/job/next"), body,
                          call_timeout_of(g) + milliseconds(static_cast<long>(*poll * 1000)),
                          stop_pending);
    double retry = 2;
    if (stop_pending()) {
      int sig = wait_signal(set, duration<double>(0));
      code = 128 + sig;
      break;
    }
    if (auto* e = std::get_if<call_error>(&r)) {
      say("asking for work failed: " + describe(g, *e));
    } else {
      auto& reply = std::get<nlohmann::json>(r);
      auto lease = reply["job"].is_null() ? std::nullopt : grant_reply_from_json(reply["lease"]);
      if (!lease) {
        auto hint = reply.find("retry_after_sec");
        // A hint from the bus waits at most lease.max_retry_hint's default.
        retry = std::max(0.5, hint != reply.end() && hint->is_number()
                                ? clamp_retry_hint(hint->get<double>())
                                : 2.0);
        say("no work yet (" + str(reply["reason"]) + "); asking again in "
            + human_duration(retry) + " (Ctrl-C to stop)");
      } else {
        auto& job = reply["job"];
        auto job_id = str(job["job_id"]);
        std::ofstream(job_file, std::ios::trunc) << job.dump() << "\n";
        say("job " + job_id + " (" + str(job["job_type"]) + ") under lease " + lease->lease_id);
        supervise_options so;
        so.cmd = o.cmd;
        so.extra_env = {"LULL_JOB_ID=" + job_id, "LULL_JOB_TYPE=" + str(job["job_type"])};
        so.stdin_path = job_file;
        so.low_priority =
          !o.keep_priority
          && below_high(parse_priority(str(job["priority"])).value_or(work_priority::normal));
        so.use_cgroup = !o.no_cgroup;
        so.grace_sec = *grace;
        so.grace_text = o.grace;
        so.signals = set;
        so.say = say;
        auto res = run_under_lease(*client, *lease, so);
        nlohmann::json outcome;
        if (!res.started)
          outcome = {{"outcome", "failed"}, {"error", "cannot run " + o.cmd.front() + ": "
                                                        + res.start_error}};
        else if (res.exit_code == 0 && !res.killed)
          outcome = {{"outcome", "succeeded"}, {"result", {{"exit_code", 0}}}};
        else
          outcome = {{"outcome", "failed"},
                     {"result", {{"exit_code", res.exit_code}}},
                     {"error", res.lost ? "lease lost: " + res.lost_reason
                                        : "exit status " + std::to_string(res.exit_code)}};
        // lulld gives every lease a full TTL when it is back from an outage,
        // so a release sent again for up to a TTL lands before the lease
        // could expire (else the job would run again).
        auto rel_timeout = res.interrupted
                             ? call_timeout_of(g)
                             : std::max(call_timeout_of(g),
                                        milliseconds(static_cast<long>(lease->ttl_sec * 1000)));
        auto rel = client->release(lease->lease_id, rel_timeout, "job finished", outcome,
                                   stop_pending);
        if (auto* e = std::get_if<call_error>(&rel))
          say("release of " + lease->lease_id + " failed: " + e->error.message);
        // Preempted: lulld gave the host back to its owner and put the job
        // back in the queue; it does not count as done here either.
        bool preempted = res.lost && res.preempted;
        if (preempted)
          say("job " + job_id + " preempted; it is back in the queue");
        else
          say("job " + job_id + " " + outcome["outcome"].get<std::string>());
        done += preempted ? 0 : 1;
        if (res.interrupted) {
          code = 128 + res.interrupt_signal;
          break;
        }
        continue;
      }
    }
    int sig = wait_signal(set, duration<double>(retry));
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
      code = 128 + sig;
      break;
    }
  }
  ::unlink(job_file.c_str());
  return code;
}

} // namespace lull::cli
