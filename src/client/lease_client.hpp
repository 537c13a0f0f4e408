#pragma once
/// lull's client library: what a worker links to negotiate leases with lulld
/// over MQTT. It speaks the wire contract of docs/leases.md (MQTT v5 response topic +
/// correlation data, falling back to v3.1.1 reply_to + request_id), picks the
/// open or secure topic layout (docs/security.md), and turns lease notices
/// into callbacks. Calls block the calling thread up to their timeout; nothing
/// throws.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>

#include <nlohmann/json.hpp>

#include "messages/lease.hpp"
#include "messages/topics.hpp"
#include "src/mqtt/transport.hpp"

namespace lull {

struct lease_client_options {
  std::string uri = "tcp://127.0.0.1:1883";
  std::string worker_id;      ///< secure mode: the broker user name
  std::string username;
  std::string password;
  bool secure = false;        ///< per-worker topics (scheduler/<worker>/lease/...)
  std::string topic_prefix;
  /// TLS (ssl:// URIs): CA file (empty: the system's trust store), and a
  /// client certificate and key for brokers that take the user from it.
  std::string ca_file, cert_file, key_file;
  /// "auto" (v5, else v3.1.1), "5" or "3.1.1".
  std::string mqtt_version = "auto";
  /// Announce stats/worker/<worker_id> online (retained) with an offline last
  /// will, so lulld expires this worker's leases the moment it dies. Only for
  /// a process that is the only one using its worker id.
  bool announce = false;
  std::chrono::milliseconds connect_timeout{5000};
};

/// Why a call failed: lulld's error reply, or no reply in time.
struct call_error {
  bool timed_out = false;
  lease_error error;
  /// RequestThrottled: how long lulld asks the worker to wait.
  std::optional<double> retry_after_sec = std::nullopt;
};

/// A lease notice from scheduler/lease/<id>/state (or the secure inbox).
struct lease_notice {
  std::string lease_id;
  std::string state;  ///< ACTIVE, RELEASED, EXPIRED, REVOKED
  std::string reason;
  std::string type;   ///< granted, suspended, resumed, revoked, ...
  /// Set on suspended / resumed notices: whether the work should be stopped.
  std::optional<bool> suspended;
  /// A revoke that gave the host back to its owner (a job so revoked goes
  /// back in the queue without counting an attempt).
  bool preempted = false;
};

class lease_client : private transport_events {
public:
  /// Connects; an error message when the broker cannot be reached in time.
  static std::variant<std::unique_ptr<lease_client>, std::string>
  connect(lease_client_options opts);
  ~lease_client() override;

  /// Asks for a lease. `req.worker_id` defaults to the client's.
  std::variant<lease_grant_reply, call_error> request(lease_request req,
                                                      std::chrono::milliseconds timeout);
  /// Heartbeat, release and report replies: {"ok":true,"state":..,...}.
  /// A heartbeat is sent again every second until lulld answers or
  /// `timeout` passes: one published while lulld is not (yet) subscribed,
  /// right after a broker restart, reaches nobody.
  /// `process`: the work's processes (pid, start time, cgroup), so the host
  /// agent measures them as lull's load rather than the owner's.
  std::variant<nlohmann::json, call_error> heartbeat(const std::string& lease_id,
                                                     std::chrono::milliseconds timeout,
                                                     const std::optional<lease_process>& process
                                                     = std::nullopt);
  /// `extra` fields go into the release (a job's outcome, result, error).
  /// Sent again every second until lulld answers, `timeout` passes or
  /// `cancelled` returns true: a release published while lulld is cut off
  /// from the broker (a broker restart, lulld restarting) reaches nobody, and
  /// a lost release would leave the lease to expire and its job to run again.
  /// lulld answers a repeated release of a lease it already ended with ok.
  std::variant<nlohmann::json, call_error> release(const std::string& lease_id,
                                                   std::chrono::milliseconds timeout,
                                                   const std::string& reason = {},
                                                   const nlohmann::json& extra = nullptr,
                                                   const std::function<bool()>& cancelled
                                                   = nullptr);
  std::variant<nlohmann::json, call_error> report(const std::string& lease_id, double progress,
                                                  const std::string& message,
                                                  std::chrono::milliseconds timeout);
  /// Admin revoke (scheduler/lease/<id>/revoke): waits for the REVOKED notice
  /// or an error reply.
  std::variant<lease_notice, call_error> revoke(const std::string& lease_id,
                                                const std::string& reason,
                                                std::chrono::milliseconds timeout);
  /// Calls `fn` (on the MQTT thread: keep it short) on every notice about
  /// `lease_id` after this call.
  void watch(const std::string& lease_id, std::function<void(const lease_notice&)> fn);
  /// Calls `fn` (on the MQTT thread: keep it short) after every reconnect to
  /// the broker, once the subscriptions are back: a lease holder heartbeats
  /// at once then. Replaces the previous one; nullptr removes it.
  void on_reconnect(std::function<void()> fn);
  /// True while the broker connection is up.
  bool connected();
  /// The retained scheduler/status document.
  std::optional<nlohmann::json> status(std::chrono::milliseconds timeout);
  /// The first scheduler/status document for which `pred` holds, waiting up
  /// to `timeout` for lulld to publish one; nullopt when none came.
  std::optional<nlohmann::json> status_where(const std::function<bool(const nlohmann::json&)>& pred,
                                             std::chrono::milliseconds timeout);
  /// Publishes `body` (JSON) on `relative` (under lulld's prefix), QoS 1.
  void publish(const std::string& relative, const nlohmann::json& body, bool retain);
  /// Calls `fn` (on the MQTT thread: keep it short) with the topic (without
  /// the prefix) and decoded payload of every message matching `filters`
  /// (relative to the prefix), retained ones included; kept across reconnects.
  void follow(const std::vector<std::string>& filters,
              std::function<void(const std::string&, const nlohmann::json&)> fn);

  const std::string& worker_id() const { return opts_.worker_id; }
  int mqtt_version() const;

  /// Any request/response call on `topic` (job queue, history): adds v,
  /// request_id, reply_to (and worker_id in open mode) and waits for the reply.
  /// `cancelled`, when given, is asked every 100 ms; once it says true the
  /// call gives up (timed_out) so a long poll never delays a shutdown.
  std::variant<nlohmann::json, call_error> call(const std::string& topic, nlohmann::json body,
                                                std::chrono::milliseconds timeout,
                                                const std::function<bool()>& cancelled = {});
  /// A topic under lulld's prefix.
  std::string topic(const std::string& relative) const { return topics_.full(relative); }
  /// The topic to send a job or history request on: `relative` as given
  /// (scheduler/job/submit, history/request, ...) in open mode; in secure
  /// mode with this worker's id after the first level
  /// (scheduler/<worker>/job/submit, history/<worker>/request).
  std::string request_topic(const std::string& relative) const;

private:
  explicit lease_client(lease_client_options opts);
  void on_connected(int mqtt_version) override;
  void on_connect_failed(std::string reason, bool retry_now) override;
  void on_connection_lost(std::string reason) override;
  void on_message(mqtt_message msg) override;
  void on_disconnected() override;

  std::string action_topic(const std::string& lease_id, const std::string& action) const;
  /// call() every second (a fresh request id each time) until an answer,
  /// `t` or `cancelled`: for idempotent actions (heartbeat, release).
  std::variant<nlohmann::json, call_error> call_repeated(const std::string& topic,
                                                         const nlohmann::json& body,
                                                         std::chrono::milliseconds t,
                                                         const std::string& what,
                                                         const std::function<bool()>& cancelled
                                                         = nullptr);
  std::string state_topic(const std::string& lease_id) const;

  lease_client_options opts_;
  topic_names topics_;
  std::string nonce_;
  std::string reply_topic_;
  std::unique_ptr<mqtt_transport> transport_;
  std::shared_ptr<transport_events> self_events_;

  std::mutex mtx_;
  std::condition_variable cv_;
  bool connected_ = false;
  bool ever_connected_ = false;
  bool disconnected_ = false;
  std::function<void()> on_reconnect_;
  std::string connect_error_;
  bool connect_retry_now_ = false; ///< the transport switched MQTT version: connect again now
  std::uint64_t next_id_ = 0;
  std::map<std::string, std::optional<nlohmann::json>> pending_;
  std::map<std::string, std::function<void(const lease_notice&)>> watchers_;
  std::optional<nlohmann::json> status_;
  bool status_subscribed_ = false;
  std::vector<std::string> followed_; ///< full topic filters
  std::function<void(const std::string&, const nlohmann::json&)> follower_;
};

} // namespace lull
