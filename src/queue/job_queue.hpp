#pragma once
/// The job queue (docs/queue.md): job intents that wait for a lull. Plain
/// C++ with injected clocks; the queue dispatcher actor feeds it messages and
/// asks the lease table to admit the jobs it proposes.
///
/// Ordering: strict priority (high, normal, low, background) with aging --
/// every `aging_sec` a job waits lifts it one level, so none starves -- and,
/// within a level, round robin across producers (the producer served longest
/// ago goes first), then submission order.

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "messages/priority.hpp"

namespace lull {

/// `dead`: every attempt failed (the dead letters, `lull jobs --dead`, `lull
/// retry`).
enum class job_state { queued, leased, running, succeeded, cancelled, expired, dead };
NLOHMANN_JSON_SERIALIZE_ENUM(job_state, {{job_state::queued, "queued"},
                                         {job_state::leased, "leased"},
                                         {job_state::running, "running"},
                                         {job_state::succeeded, "succeeded"},
                                         {job_state::cancelled, "cancelled"},
                                         {job_state::expired, "expired"},
                                         {job_state::dead, "dead"}})

const char* to_string(job_state s);    ///< "queued", ...
/// Any case; "failed", what lulld called a dead job before, reads as dead.
std::optional<job_state> parse_job_state(std::string_view text);
bool is_final(job_state s);

/// A job's payload, opaque to lull, held as its JSON text: that is what it
/// costs in memory (parsed, a 60 kB array of empty objects takes 1.8 MB, 30
/// times its text), so the bytes queue.max_bytes_per_producer and
/// queue.max_bytes count are what lulld holds. Copies share the text.
class job_payload {
public:
  job_payload() = default; ///< null
  explicit job_payload(const nlohmann::json& doc);
  /// The payload as JSON (parsed from its text on each call).
  nlohmann::json json() const;
  /// Its JSON text's size in bytes (4 for null).
  std::size_t bytes() const { return text_ ? text_->size() : 4; }

private:
  std::shared_ptr<const std::string> text_;
};

struct job_spec {
  std::string job_type;
  job_payload payload;
  int cost_units = 20;
  int gpu = 0;                  ///< GPUs its lease asks for (docs/leases.md, "GPUs")
  work_priority priority = work_priority::normal;
  std::string host_id;          ///< empty: any host
  std::string idempotency_key;  ///< empty: none
  int max_attempts = 3;
  std::optional<std::int64_t> deadline; ///< unix seconds: expire if not done by then
  std::string producer;         ///< who submitted (for fairness)
};

struct job {
  std::string job_id;
  job_spec spec;
  job_state state = job_state::queued;
  int attempts = 0;             ///< leases handed out so far
  std::string lease_id, worker_id, host_id;
  std::int64_t submitted_at = 0, updated_at = 0; ///< unix seconds
  /// A requeued job is not handed out before this (unix seconds; 0: at
  /// once): queue.retry_backoff, doubling with each attempt.
  std::int64_t retry_at = 0;
  double queued_mono = 0;       ///< when it (re)entered the queue, for aging
  std::uint64_t seq = 0;        ///< submission order
  nlohmann::json result;        ///< success result or failure detail
  std::string error;
};

nlohmann::json to_json(const job& j);
/// Throws nlohmann::json::exception on a malformed record.
job job_from_json(const nlohmann::json& j);

struct job_event {
  std::string job_id;
  std::optional<job_state> from; ///< nullopt for a new job
  job_state to;
  std::string reason;
  std::int64_t at = 0;
};

nlohmann::json to_json(const job_event& e);

struct queue_config {
  double aging_sec = 60;         ///< waiting this long lifts a job one priority level
  std::size_t max_jobs = 100000; ///< queued + active; more are refused
  /// One producer's jobs not finished (queued, leased, running), and their
  /// payload bytes; more are refused, so no producer fills everyone's queue.
  std::size_t max_jobs_per_producer = 10000;
  std::size_t max_bytes_per_producer = 64u << 20;
  /// Payload bytes of all jobs not finished: with max_jobs, what the queue
  /// may hold in memory.
  std::size_t max_bytes = 256u << 20;
  std::size_t finished_kept = 5000; ///< finished jobs remembered for get/list/idempotency
  /// A job back in the queue after a failed, expired or preempted attempt
  /// waits retry_backoff, doubled for each attempt it has used, at most
  /// retry_backoff_max (Kubernetes Jobs back off 10 s, 20 s, 40 s ... 6 min).
  double retry_backoff_sec = 10;
  double retry_backoff_max_sec = 600;
};

struct queue_clock {
  std::function<double()> mono_sec;
  std::function<std::int64_t()> wall_sec;
  std::function<std::string()> new_id;
};

class job_queue {
public:
  job_queue(queue_config cfg, queue_clock clock);

  /// Adds a job, or returns the existing one for a repeated idempotency key
  /// (second: true when created). Error text, naming the limit and what is
  /// held, when the producer is at its quota or the queue is full.
  std::variant<std::pair<const job*, bool>, std::string> submit(job_spec spec);

  /// What a producer's jobs not finished hold.
  struct producer_usage {
    std::size_t jobs = 0;
    std::size_t bytes = 0;
  };
  producer_usage usage(const std::string& producer) const;
  /// Payload bytes of all jobs not finished.
  std::size_t live_bytes() const { return live_bytes_; }
  /// Submits refused by a quota or a full queue so far.
  std::uint64_t refused() const { return refused_; }
  /// Dead jobs remembered (the dead letters, until forgotten with the other
  /// finished jobs).
  std::size_t dead() const { return dead_; }

  /// Queued jobs a worker could take, best first: types it accepts (empty:
  /// any) and its host (jobs for any host, or for this one).
  std::vector<const job*> candidates(const std::vector<std::string>& types,
                                     const std::string& host, std::size_t limit) const;

  /// The dispatcher obtained a lease for a queued job.
  bool mark_leased(const std::string& job_id, const std::string& lease_id,
                   const std::string& worker_id, const std::string& host_id);
  /// The worker started (first heartbeat or report on its lease).
  bool mark_running(const std::string& job_id);
  /// Completion reported by the worker through the lease.
  std::optional<std::string> complete(const std::string& job_id, const std::string& lease_id,
                                      bool ok, nlohmann::json result, std::string error);
  /// Cancels; returns the lease to revoke when the job held one.
  std::variant<std::optional<std::string>, std::string> cancel(const std::string& job_id,
                                                                const std::string& reason);
  /// The job's lease ended without completion (expired, revoked, released
  /// early): back to the queue while attempts remain, else failed.
  /// `preempted`: revoked to give its host back, so the attempt does not count.
  void lease_ended(const std::string& lease_id, const std::string& why, bool preempted = false);
  /// A dead job back to the queue with its attempts used up again, at once.
  /// Error text when there is no such job, it is not dead, or the queue has
  /// no room for it.
  std::optional<std::string> retry(const std::string& job_id, const std::string& reason);
  /// Expires jobs past their deadline.
  void tick();

  /// Restores a job saved before a restart (leased/running ones keep their
  /// lease; the lease manager's own restore decides whether it is alive).
  void restore(job j);

  std::vector<job_event> take_events();

  /// Ids of finished jobs forgotten since the last call (their retained state is cleared).

  std::vector<std::string> take_forgotten();
  const job* get(const std::string& job_id) const;
  const job* by_lease(const std::string& lease_id) const;
  /// Jobs by state, type and holding worker (empty: any), in submission
  /// order (seq), from the first after `after_seq` (a page's last job).
  /// `party` (non-empty) keeps only the jobs it submitted or holds.
  std::vector<const job*> list(std::optional<job_state> state, const std::string& type,
                               const std::string& worker, std::size_t limit,
                               const std::string& party = {},
                               std::uint64_t after_seq = 0) const;
  std::map<std::string, std::size_t> depths() const; ///< queued per priority
  std::size_t size() const { return jobs_.size(); }
  /// Jobs changed since the last call (to persist), then cleared.
  std::vector<const job*> take_dirty();
  /// The write of what take_dirty() gave succeeded: those changes stand.
  void committed();
  /// The write failed: every job changed before the last take_dirty() goes
  /// back to how it was (a new job is gone and its idempotency key free
  /// again), and events not yet taken are dropped. Returns the leases that
  /// the undone changes had given jobs (to revoke: no job holds them now).
  std::vector<std::string> roll_back();

  /// The effective level of a queued job after aging (0 = high).
  double effective_level(const job& j, double now) const;

private:
  /// Keeps how job `id` was before its first change since take_dirty()
  /// (nullopt: it is new), for roll_back().
  void touch(const std::string& id);
  void transition(job& j, job_state to, std::string reason);
  /// Back to the queue after an attempt that did not finish it, not handed
  /// out again before its backoff; `why` gets the wait appended.
  void requeue(job& j, std::string why);
  /// Adds (+1) or takes away (-1) `j` from the live and queued counts.
  void count(const job& j, int sign);
  void forget_finished();

  queue_config cfg_;
  queue_clock clock_;
  std::map<std::string, job> jobs_;
  std::map<std::string, std::string> by_key_;   ///< idempotency key -> job id
  std::map<std::string, std::string> by_lease_; ///< lease id -> job id
  std::map<std::string, std::uint64_t> producer_served_; ///< producer -> dispatch tick
  std::uint64_t seq_ = 0, served_ = 0;
  std::vector<job_event> events_;
  std::vector<std::string> dirty_;
  std::size_t live_ = 0;                 ///< jobs not in a final state
  std::size_t live_bytes_ = 0;           ///< their payload bytes
  std::map<std::string, producer_usage> producers_; ///< producers with jobs not finished
  std::uint64_t refused_ = 0;
  std::size_t dead_ = 0;
  std::array<std::size_t, 4> queued_{};  ///< queued jobs per priority (high .. background)
  std::map<std::string, std::optional<job>> before_;  ///< changed since take_dirty()
  std::map<std::string, std::optional<job>> writing_; ///< given by take_dirty(), unconfirmed
  std::vector<std::string> finished_order_;
  std::vector<std::string> forgotten_; ///< purged finished jobs, for take_forgotten
};

} // namespace lull
