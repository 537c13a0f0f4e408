#pragma once
/// Each `lull` command: its options, how it declares them on the app (so tests
/// parse them), the function that runs it, and what prints its output (so
/// tests check it without a broker). One file per command in src/cli/.

#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <variant>
#include <vector>

#include "src/cli/cli.hpp"

namespace lull::cli {

// -- lull run: wait for a lease, run CMD, heartbeat, release -------------------
struct run_opts {
  int cost = 0;
  int gpu = 0; ///< GPUs the command needs (counted against the host's)
  std::string cls;
  std::string priority = "NORMAL";
  std::string host;
  std::string wait = "0";
  std::string job_type;
  std::string ttl;
  std::string grace = "10s";
  bool quiet = false;
  bool keep_priority = false; ///< do not lower the command's CPU/IO priority
  bool no_cgroup = false;     ///< do not put the command in a cgroup of its own
  std::vector<std::string> cmd;
};
CLI::App* add_run(CLI::App& app, run_opts& o);
int do_run(const global_opts& g, const run_opts& o);
/// What `lull run` says while a denial makes it wait: the host and why (a
/// PANIC or its cool-down in words, its end in local time), the one wait
/// before it asks again, and how to stop waiting. `now` in unix seconds;
/// `gives_up_in`: seconds until --wait runs out (< 0: it never does).
std::string wait_message(const lease_grant_reply& denial, work_priority priority,
                         double retry_sec, std::int64_t now, double gives_up_in);

// -- lull status ---------------------------------------------------------------
struct status_opts {
  bool as_json = false;
};
CLI::App* add_status(CLI::App& app, status_opts& o);
int do_status(const global_opts& g, const status_opts& o);
/// The hosts, leases and workers tables of a scheduler/status document.
void print_status(std::ostream& out, const nlohmann::json& status);

// -- lull pause / lull resume ----------------------------------------------------
struct pause_opts {
  std::string host, reason, for_text, by;
};
CLI::App* add_pause(CLI::App& app, pause_opts& o);
int do_pause(const global_opts& g, const pause_opts& o);
struct resume_opts {
  std::string host;
};
CLI::App* add_resume(CLI::App& app, resume_opts& o);
int do_resume(const global_opts& g, const resume_opts& o);

// -- lull revoke LEASE_ID --------------------------------------------------------
struct revoke_opts {
  std::string lease_id, reason;
};
CLI::App* add_revoke(CLI::App& app, revoke_opts& o);
int do_revoke(const global_opts& g, const revoke_opts& o);

// -- lull submit ------------------------------------------------------------------
struct submit_opts {
  std::string type, payload, cls, priority = "NORMAL", host, key, deadline, producer;
  std::string wait = "30s";
  int cost = 0, max_attempts = 3;
  int gpu = 0; ///< GPUs the job needs
  bool as_json = false;
};
CLI::App* add_submit(CLI::App& app, submit_opts& o);
int do_submit(const global_opts& g, const submit_opts& o);

// -- lull jobs --------------------------------------------------------------------
struct jobs_opts {
  std::string state, type, worker;
  int limit = 100;
  bool as_json = false;
  bool dead = false; ///< --dead: the dead letters, with their last error
};
CLI::App* add_jobs(CLI::App& app, jobs_opts& o);
int do_jobs(const global_opts& g, const jobs_opts& o);
/// The jobs table and queue depths of a scheduler/job/list reply (its
/// pages joined: a `next` left means --limit cut the list).
/// The jobs of a scheduler/job/list reply as a table; `errors`: with each
/// job's last error (lull jobs --dead).
void print_jobs(std::ostream& out, const nlohmann::json& reply, bool errors = false);
/// Asks for page after page of a list (`field` of each reply) by passing
/// each reply's `next` as the next request's `cursor`, until the list ends
/// or `max_items` are in. `call` sends one request. The last reply with
/// every page's items in `field`, `next` kept only when items were left.
std::variant<nlohmann::json, call_error>
follow_pages(nlohmann::json body, const std::string& field, std::size_t max_items,
             const std::function<std::variant<nlohmann::json, call_error>(const nlohmann::json&)>&
               call);

// -- lull cancel JOB_ID -----------------------------------------------------------
struct cancel_opts {
  std::string job_id, reason;
};
CLI::App* add_cancel(CLI::App& app, cancel_opts& o);
int do_cancel(const global_opts& g, const cancel_opts& o);

// -- lull retry JOB_ID --------------------------------------------------------------
struct retry_opts {
  std::string job_id, reason;
};
CLI::App* add_retry(CLI::App& app, retry_opts& o);
int do_retry(const global_opts& g, const retry_opts& o);

// -- lull work: take jobs from the queue --------------------------------------------
struct work_opts {
  std::vector<std::string> types;
  std::string host;
  std::string poll = "20s";
  std::string grace = "10s";
  int max_jobs = 0;
  bool quiet = false;
  bool keep_priority = false; ///< do not lower the command's CPU/IO priority
  bool no_cgroup = false;     ///< do not put the command in a cgroup of its own
  std::vector<std::string> cmd;
};
CLI::App* add_work(CLI::App& app, work_opts& o);
int do_work(const global_opts& g, const work_opts& o);

// -- lull history -------------------------------------------------------------------
struct history_opts {
  std::string group = "host", host, range = "1h", step = "1m";
  std::vector<std::string> metrics;
  bool as_json = false;
  bool windows = false; ///< the learned quiet windows as a heat map
  int weeks = 4;
};
CLI::App* add_history(CLI::App& app, history_opts& o);
/// The learned quiet windows (a history/request of kind "windows") as a
/// 7 x 24 heat map: one row per weekday, one cell per local hour.
void print_quiet_windows(std::ostream& out, const nlohmann::json& reply);
int do_history(const global_opts& g, const history_opts& o);
/// Why `group` is not one lulld keeps history of (host, quiet, bus,
/// process:<name>, worker:<id>), naming the valid ones; nullopt when it is.
std::optional<std::string> check_history_group(const std::string& group);
/// "no host 'x'; known hosts: a, b" when `host` is not among the hosts of
/// the scheduler/status document `status`; nullopt when it is, when `host`
/// is empty, or when the document has no hosts table to tell.
std::optional<std::string> unknown_host(const std::string& host, const nlohmann::json& status);
/// A sparkline with min/avg/max/last per series of a history reply.
void print_history(std::ostream& out, const nlohmann::json& reply, const history_opts& o);
/// Appends the next page of a paged history reply to `all` (the pages so
/// far): each series' buckets follow on, a series missing from one side
/// filled with empty buckets.
void append_history_page(nlohmann::json& all, const nlohmann::json& page);

// -- lull watch: a live view ----------------------------------------------------
struct watch_opts {
  double refresh_sec = 1;
  int history = 40; ///< quiet scores kept per host for its sparkline
};
CLI::App* add_watch(CLI::App& app, watch_opts& o);
int do_watch(const global_opts& g, const watch_opts& o);

/// What `lull watch` shows, from scheduler/status, stats/host/<id> and
/// stats/host/<id>/quiet; no terminal, no clock of its own (tests feed it).
class watch_view {
public:
  explicit watch_view(int history = 40) : history_(history) {}
  /// A message on `topic` (without the topic prefix); false when it changes
  /// nothing shown.
  bool on_message(const std::string& topic, const nlohmann::json& doc);
  /// The frame: hosts with their quiet score sparkline, leases, queue depths.
  /// `header` is its first line.
  std::string render(const std::string& header) const;

private:
  struct host {
    std::string state;
    nlohmann::json score, cpu;
    std::vector<double> scores;
  };
  int history_;
  std::map<std::string, host> hosts_;
  nlohmann::json status_;
};

// -- lull completion bash|zsh --------------------------------------------------------
struct completion_opts {
  std::string shell;
};
CLI::App* add_completion(CLI::App& app, completion_opts& o);
/// A completion script for `shell` (bash or zsh) of every command and option of `app`.
std::string completion_script(const CLI::App& app, const std::string& shell);

} // namespace lull::cli
