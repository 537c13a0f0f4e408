#pragma once
/// The lease manager's message logic: turns one inbound MQTT message into
/// calls on lease_table and builds every reply, state notice, event and the
/// retained status. The lease_manager actor only feeds it messages and ticks
/// and publishes what it returns, so all of this is tested without CAF.
///
/// Topics (relative to the prefix):
///   open mode   scheduler/lease/request, scheduler/lease/<id>/<action>
///               (identity: the payload's worker_id)
///   secure mode scheduler/<worker>/lease/request,
///               scheduler/<worker>/lease/<id>/<action>
///               (identity: the topic, which the broker's ACL pins to the
///               user), replies only under workers/<worker>/, admin revokes
///               on scheduler/lease/<id>/revoke
///   both        stats/host/+/quiet, stats/host/+, stats/worker/+,
///               scheduler/control/+ (a host's pause, retained) and
///               scheduler/control/+/set (Home Assistant's switch: ON / OFF)
/// and it publishes scheduler/host/<host>/leases (retained) whenever a host's
/// active leases or their reported processes change.

#include <cstdint>
#include <map>
#include <set>
#include <optional>
#include <string>
#include <vector>

#include "messages/mqtt_message.hpp"
#include "messages/request.hpp"
#include "messages/topics.hpp"
#include "src/lease/lease_outcome.hpp"
#include "src/lease/lease_table.hpp"
#include "src/security.hpp"

namespace lull {

struct lease_service_options {
  topic_names topics;
  /// broker.secure and lease.high_users (broker.admin_user is the queue's).
  security_settings security;
  lease_policy_config policy;
  /// Replies that acknowledge a change wait for committed() (lulld with a
  /// store: nothing is acknowledged before it is written). False: they go
  /// out with the rest of handle()'s output.
  bool hold_acks = false;
};

struct lease_service_counters {
  std::uint64_t received = 0;
  std::uint64_t rejected = 0;  ///< answered (or dropped) with an error
  std::uint64_t replies = 0;
  std::uint64_t unanswerable = 0; ///< no reply topic, or a forbidden one
  std::uint64_t grants = 0;
  std::uint64_t denies = 0;
  std::uint64_t throttled = 0; ///< RequestThrottled replies
  std::uint64_t expired = 0;   ///< requests past their deadline: dropped unanswered
  std::uint64_t suspended = 0; ///< suspended notices sent
  std::uint64_t resumed = 0;
  std::uint64_t preempted = 0;
  std::uint64_t permission_denied = 0; ///< HIGH asked for by a user not in high_users
  std::uint64_t pause_refused = 0;     ///< a lower level tried to lift a higher one's pause
};

class lease_service {
public:
  lease_service(lease_service_options opts, lease_env env, std::uint64_t first_fencing = 0);

  /// Topic filters to subscribe to.
  std::vector<std::string> filters() const;

  /// Handles one inbound message; returns what to publish, replies first.
  std::vector<mqtt_message> handle(const mqtt_message& in);

  /// How leases started and ended since the last call, once per change, for
  /// the lease manager's watchers (the queue dispatcher).
  std::vector<lease_outcome> take_outcomes();

  /// Expires leases; returns the resulting notices and events.
  std::vector<mqtt_message> tick();

  /// The retained lease list (`scheduler/host/<h>/leases`) of every host whose
  /// leases changed since the last call, one message per host however many
  /// changes it saw, skipped when the list reads as last published. The
  /// lease manager takes them once per commit, so a burst of grants and
  /// releases costs one list per host rather than one per message.
  std::vector<mqtt_message> take_host_leases();

  /// The retained scheduler/status message.
  mqtt_message status_message() const;

  /// The queue's depths, shown under "queue" in scheduler/status.
  /// Inbound messages lulld shed before routing (counters.inbound_shed in
  /// the next status; not a change that publishes one by itself).
  void set_inbound_shed(std::uint64_t n);
  void set_queue_status(nlohmann::json queue);

  /// True once since the last call when the status changed.
  bool take_status_dirty();

  /// The replies that acknowledge a change (a grant, a heartbeat's renewal,
  /// a release, ...) are held back until the change is written. The write
  /// of `ids` (lease_table::take_dirty) succeeded: the held replies, to
  /// publish.
  std::vector<mqtt_message> committed(const std::vector<std::string>& ids);
  /// The write of `ids` failed: the leases go back to what the store holds,
  /// outcomes not yet taken are dropped, and each held reply becomes an
  /// InternalError naming `cause` (returned, to publish): nothing is
  /// acknowledged that was not written.
  std::vector<mqtt_message> roll_back(const std::vector<std::string>& ids,
                                      const std::string& cause);
  /// Store writes that failed, and the last one's cause (scheduler/status).
  void set_store_status(nlohmann::json store);

  const lease_service_counters& counters() const { return counters_; }
  lease_table& table() { return table_; }
  const lease_table& table() const { return table_; }

private:
  void on_request(const mqtt_message& in, const std::string& topic_worker,
                  std::vector<mqtt_message>& out);
  void on_action(const mqtt_message& in, const std::string& lease_id,
                 const std::string& action, const std::string& topic_worker,
                 std::vector<mqtt_message>& out);
  void on_quiet(const mqtt_message& in);
  void on_host(const std::string& host_id, const mqtt_message& in);
  void on_availability(const std::string& host_id, const mqtt_message& in);
  void on_worker(const std::string& worker_id, const mqtt_message& in);
  void on_control(const std::string& host_id, const mqtt_message& in);
  /// Records the host agent's refusals of claimed processes (its snapshot's
  /// leased.per_lease[].refused) for the holders' heartbeat replies.
  void on_refused_claims(const std::string& host_id, const mqtt_message& in);
  void on_quiet_hours(const std::string& host_id, const mqtt_message& in);
  void on_switch(const std::string& host_id, const mqtt_message& in,
                 std::vector<mqtt_message>& out);
  void publish_pauses_ended(std::vector<mqtt_message>& out);
  /// Clears the retained lease list of every host the table forgot.
  void publish_evicted(std::vector<mqtt_message>& out);
  /// The retained control message holding `host`'s current pause.
  mqtt_message control_message(const std::string& host) const;
  /// `ack`: the reply acknowledges a change, so it waits for the write.
  void reply(const reply_route& route, const std::optional<std::string>& sender,
             nlohmann::json body, std::vector<mqtt_message>& out, bool ack = false);
  void reject(const reply_route& route, const std::optional<std::string>& sender,
              const lease_error& e, const std::string& topic, std::vector<mqtt_message>& out);
  void drain_events(std::vector<mqtt_message>& out);
  void publish_host_leases(std::vector<mqtt_message>& out);
  /// Answers RequestThrottled when `worker` is past its message rate.
  bool throttled(const reply_route& route, const std::optional<std::string>& sender,
                 const std::string& worker, const std::string& topic,
                 std::vector<mqtt_message>& out);

  lease_service_options opts_;
  lease_table table_;

  lease_service_counters counters_;
  struct release_detail {
    std::string outcome, result, error;
  };
  std::map<std::string, release_detail> release_details_; ///< released, event not yet out
  std::set<std::string> started_; ///< leases whose "running" outcome went out
  std::vector<lease_outcome> outcomes_;
  struct held_ack {
    reply_route route;
    nlohmann::json body;
  };
  std::vector<held_ack> acks_; ///< replies waiting for their write
  nlohmann::json store_status_ = nlohmann::json::object();
  bool dirty_ = true;
  std::uint64_t inbound_shed_ = 0;
  nlohmann::json queue_status_ = {{"queued", 0}, {"depths", nlohmann::json::object()}};
  std::map<std::string, std::string> host_leases_sent_; ///< host -> last payload
  std::vector<mqtt_message> pending_host_leases_;
};

} // namespace lull
