#pragma once
/// The queue dispatcher's message logic: turns inbound MQTT messages into
/// calls on job_queue and builds every reply, state notice and event. The
/// queue_dispatcher actor feeds it messages, asks the lease manager for the
/// leases it proposes, persists what changed, and publishes what it returns.
///
/// Topics (relative to the prefix):
///   scheduler/job/submit          producers: a job intent -> job_id (after it is durable)
///   scheduler/job/next            workers: {worker_id, types, host_id, wait_sec}
///                                 -> a job plus its lease, or retry_after_sec + reason
///   scheduler/job/get, /list      anyone: one job, or jobs by state/type/worker
///   scheduler/job/<job_id>/cancel producers/admins: cancel (a held lease is revoked)
///   (secure mode: scheduler/<user>/job/..., the same four requests and cancel,
///   with the user taken from the topic; docs/security.md)
///   scheduler/job/<job_id>/state  lulld -> all, retained: the job's latest state
///   scheduler/events              lulld -> all: every job transition
/// A job completes through its lease: `scheduler/lease/<id>/release` with
/// {"outcome": "succeeded" | "failed", "result": .., "error": ..}. The lease
/// manager tells the dispatcher how its jobs' leases go (lease_outcome),
/// actor to actor; the queue listens to no lease topic.

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "messages/lease.hpp"
#include "messages/mqtt_message.hpp"
#include "messages/page.hpp"
#include "messages/request.hpp"
#include "messages/topics.hpp"
#include "src/lease/lease_outcome.hpp"
#include "src/limits.hpp"
#include "src/queue/job_queue.hpp"
#include "src/security.hpp"

namespace lull {

struct queue_service_options {
  topic_names topics;
  double max_wait_sec = 60;      ///< longest a `next` may wait for a job
  double idle_retry_sec = 5;     ///< retry hint when no job is queued
  class_costs costs; ///< cost_class -> units, the lease table's
  /// Secure mode (broker.secure): requests come on scheduler/<user>/job/...,
  /// the broker's ACL vouches for <user>, replies go only to workers/<user>/;
  /// admin_user may read and cancel every job, high_users submit HIGH ones.
  security_settings security;
  /// Replies that acknowledge a change wait in queue_output::acks for
  /// committed() (lulld, which writes jobs first). False: they go out in
  /// `publish` at once.
  bool hold_acks = false;
  /// max_parked: `next` requests waiting at once, more are throttled;
  /// max_reply_bytes: no reply is larger (messages/page.hpp), a list pages
  /// within it and a reply that cannot is ReplyTooLarge.
  limits_settings limits;
};

/// In a scheduler/job/list reply a job's payload (or result) larger than
/// this, as JSON text, or than an eighth of limits.max_reply_bytes, is left
/// out; `payload_bytes` (`result_bytes`) gives its size, and
/// scheduler/job/get the whole job. So even the smallest budget (4096)
/// holds a listed job.
inline constexpr std::size_t list_inline_bytes = 4096;

/// The room a job/next reply needs besides the job's payload (its other
/// fields, about 600 bytes; the lease, about 500; the envelope): a submit
/// whose payload would not fit limits.max_reply_bytes with it is refused
/// (PayloadTooLarge).
inline constexpr std::size_t job_reply_reserve = 2048;

/// A job as scheduler/job/list shows it: to_json(j), its `payload_bytes`
/// and `result_bytes`, without a payload or result over `inline_bytes`, its
/// `error` cut to 1 KiB (clip_text).
nlohmann::json list_item(const job& j, std::size_t inline_bytes = list_inline_bytes);

/// A lease the dispatcher asks the lease manager for, on a worker's behalf.
struct lease_ask {
  std::uint64_t ask_id = 0;
  std::string job_id;
  std::string worker_id;
  std::string job_type;
  std::string host_id; ///< empty: lull picks
  int cost_units = 0;
  int gpu = 0;
  work_priority priority = work_priority::normal;
};

/// The HeavyLeaseRequest an ask stands for (request_id "job:<job_id>").
lease_request to_lease_request(const lease_ask& ask);

struct queue_output {
  std::vector<mqtt_message> publish;
  std::vector<lease_ask> asks;
  std::vector<std::pair<std::string, std::string>> revoke; ///< lease id, reason
  /// For the log: secure replies refused, and requests refused for their
  /// form ("rejected message on <topic>: <Code>: <why>").
  std::vector<std::string> warnings;
  /// Replies that acknowledge a change (a submit, a job handed out, a
  /// cancel): published only once the change is written.
  std::vector<std::pair<reply_route, nlohmann::json>> acks;
};

class queue_service {
public:
  queue_service(queue_service_options opts, queue_config cfg, queue_clock clock);

  std::vector<std::string> filters() const;

  /// One inbound message.
  queue_output handle(const mqtt_message& in);
  /// The lease manager's answer to an ask.
  queue_output on_lease_reply(std::uint64_t ask_id, const lease_grant_reply& grant);
  /// No answer to an ask (the lease manager failed or timed out): a denial
  /// naming `reason`, asked again after the idle retry.
  queue_output on_lease_unanswered(std::uint64_t ask_id, const std::string& reason);
  /// Deadlines, parked `next` requests that timed out, re-evaluation.
  queue_output tick();

  /// A job's lease started (running) or ended (released with the job's
  /// outcome, expired, revoked).
  queue_output on_lease_outcome(const lease_outcome& o);

  /// Leases of leased and running jobs, to check with the lease manager.
  std::set<std::string> held_leases() const;
  /// Leases the lease manager does not have (checked once at start: they
  /// ended while lulld was down): their jobs go back to the queue.
  queue_output on_leases_gone(const std::set<std::string>& gone);

  /// Messages for the job changes since the last call (state notices and
  /// events); the actor persists take_dirty() first, then publishes these.
  void drain(queue_output& out);

  /// The write of queue().take_dirty() succeeded: `out`'s acknowledgements
  /// become replies in its `publish` (first), and its changes stand.
  void committed(queue_output& out);
  /// The write failed with `cause`: the jobs go back to how they were, and
  /// what `failed` would have done becomes what is still true: each
  /// acknowledgement an InternalError naming the cause, job notices and
  /// events dropped, asks withdrawn (their workers stay parked), revokes of
  /// leases that a job holds again dropped, and leases that undone changes
  /// had given jobs revoked.
  queue_output roll_back(queue_output failed, const std::string& cause);

  /// Whether lulld is on the broker. While it is not, no job is proposed
  /// for a waiting worker (the answer could not reach it in time).
  void set_bus_up(bool up) { bus_up_ = up; }

  job_queue& queue() { return queue_; }
  std::map<std::string, std::size_t> depths() const { return queue_.depths(); }
  /// Secure-mode requests not answered because their reply topic was outside
  /// the sender's inbox (or absent).
  std::uint64_t unanswerable() const { return unanswerable_; }
  /// Requests dropped because their deadline had passed.
  std::uint64_t expired() const { return expired_; }

private:
  struct waiting_worker {
    reply_route route;
    std::string worker_id, host_id;
    std::vector<std::string> types;
    double until_mono = 0;
    double next_try_mono = 0; ///< after a denial: not before its retry_after_sec
    bool asking = false;      ///< an ask for it is in flight
  };
  /// decode_request, then the secure inbox rule: a reply topic outside the
  /// sender's inbox is dropped (the request goes unanswered, counted).
  inbound_request decode(const mqtt_message& in, bool empty_ok, queue_output& out);
  /// Secure mode: may the current sender see or cancel job `j`?
  bool may_touch(const job& j, bool cancel) const;
  void on_submit(const mqtt_message& in, queue_output& out);
  void on_next(const mqtt_message& in, queue_output& out);
  void on_get(const mqtt_message& in, queue_output& out);
  void on_list(const mqtt_message& in, queue_output& out);
  void on_cancel(const mqtt_message& in, const std::string& job_id, queue_output& out);
  void on_retry(const mqtt_message& in, const std::string& job_id, queue_output& out);
  /// Proposes a job for waiting worker `w` (an ask), or answers it.
  void try_dispatch(std::uint64_t wid, queue_output& out, bool final_answer);
  /// Every reply goes through here (and committed()): one over
  /// max_reply_bytes becomes ReplyTooLarge.
  void reply(const reply_route& r, nlohmann::json body, queue_output& out);
  std::optional<mqtt_message> fitted_reply(const reply_route& r, nlohmann::json body) const;
  /// Whether job `j` can be handed out (job/next's reply) within max_reply_bytes.
  bool fits_reply(const job& j) const;
  /// A reply acknowledging a change: held in out.acks until it is written.
  void ack(const reply_route& r, nlohmann::json body, queue_output& out);
  void error(const reply_route& r, error_code c, const std::string& msg, queue_output& out);

  queue_service_options opts_;
  job_queue queue_;
  queue_clock clock_;
  std::map<std::uint64_t, waiting_worker> waiting_;
  std::uint64_t refused_parked_ = 0; ///< `next` requests refused for max_parked
  std::map<std::uint64_t, std::uint64_t> asks_; ///< ask id -> waiting worker id
  std::map<std::uint64_t, std::string> ask_job_;
  std::uint64_t next_id_ = 0;
  std::uint64_t unanswerable_ = 0;
  std::uint64_t expired_ = 0;
  bool bus_up_ = true;
  /// The user the current request's topic names (secure mode), else nullopt.
  std::optional<std::string> sender_;
  /// The current request's topic, for the log line of a refusal.
  std::string topic_;
  /// The current request came after its deadline (dropped, not malformed).
  bool expired_now_ = false;
};

} // namespace lull
