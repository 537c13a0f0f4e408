#pragma once
/// lull's CAF message vocabulary: the type-ID block and the atoms the actors
/// exchange. Atom text is at most 10 characters (CAF 0.17).

#include <cstdint>
#include <map>
#include <string>

#include <caf/all.hpp>

#include "messages/lease.hpp"
#include "messages/mqtt_message.hpp"
#include "src/lease/lease_outcome.hpp"
#include "src/probe/lease_probe.hpp"
#include "src/queue/queue_service.hpp"

namespace lull {

/// The queue's depths for scheduler/status (dispatcher -> lease manager).
struct queue_depths {
  std::uint64_t queued = 0;
  std::map<std::string, std::uint64_t> by_priority; ///< high, normal, low, background
  std::uint64_t write_errors = 0; ///< job writes that failed so far
  std::string last_error;         ///< the last one's cause ("" when none)
  bool failing = false;           ///< the last job write failed
  std::uint64_t payload_bytes = 0; ///< of jobs not finished (queue.max_bytes)
  std::uint64_t refused = 0;      ///< submits refused by a quota or a full queue
  std::uint64_t dead = 0;         ///< dead jobs remembered (lull jobs --dead)
};

/// A std::optional member as CAF 0.17 can carry it (it has no inspect() for
/// std::optional): a flag and a value, written back once loaded.
template <class T>
struct optional_field {
  explicit optional_field(std::optional<T>& x)
    : target(x), present(x.has_value()), value(x.value_or(T{})) {}
  caf::error store() {
    target = present ? std::optional<T>(value) : std::nullopt;
    return caf::none;
  }
  std::optional<T>& target;
  bool present;
  T value;
};

// inspect() of lull's structs lives here, next to their type IDs, so that
// messages/ and the cores stay free of CAF.

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, mqtt_message& x) {
  return f(caf::meta::type_name("mqtt_message"), x.topic, x.payload, x.qos, x.retain,
           x.content_type, x.response_topic, x.correlation_data, x.expiry_sec);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, lease_ask& x) {
  return f(caf::meta::type_name("lease_ask"), x.ask_id, x.job_id, x.worker_id, x.job_type,
           x.host_id, x.cost_units, x.priority);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, lease_grant_reply& x) {
  optional_field<std::int64_t> next_window{x.next_window};
  return f(caf::meta::type_name("lease_grant_reply"), x.request_id, x.approved, x.lease_id,
           x.host_id, x.fencing_token, x.ttl_sec, x.heartbeat_interval_sec, x.lock_delay_sec,
           x.ttl_clamped, x.expires_at, x.reason, x.retry_after_sec, x.cost_units,
           next_window.present, next_window.value,
           caf::meta::load_callback([&]() -> caf::error { return next_window.store(); }));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, leased_process_ref& x) {
  optional_field<std::uint64_t> pid_start{x.pid_start};
  return f(caf::meta::type_name("leased_process_ref"), x.lease_id, x.pid, pid_start.present,
           pid_start.value, x.cgroup, x.granted_at,
           caf::meta::load_callback([&]() -> caf::error { return pid_start.store(); }));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, lease_outcome& x) {
  return f(caf::meta::type_name("lease_outcome"), x.type, x.lease_id, x.worker_id, x.reason,
           x.outcome, x.result, x.error);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, queue_depths& x) {
  return f(caf::meta::type_name("queue_depths"), x.queued, x.by_priority, x.write_errors,
           x.last_error, x.failing, x.payload_bytes, x.refused, x.dead);
}

} // namespace lull

CAF_BEGIN_TYPE_ID_BLOCK(lull, caf::first_custom_type_id)
  CAF_ADD_TYPE_ID(lull, (lull::mqtt_message))
  CAF_ADD_TYPE_ID(lull, (lull::lease_ask))
  CAF_ADD_TYPE_ID(lull, (lull::lease_grant_reply))
  CAF_ADD_TYPE_ID(lull, (lull::lease_outcome))
  CAF_ADD_TYPE_ID(lull, (lull::queue_depths))
  CAF_ADD_TYPE_ID(lull, (lull::leased_process_ref))
  CAF_ADD_TYPE_ID(lull, (std::vector<lull::leased_process_ref>))
CAF_END_TYPE_ID_BLOCK(lull)

namespace lull {

// bridge <-> actors
using publish_atom = caf::atom_constant<caf::atom("publish")>;
using inbound_atom = caf::atom_constant<caf::atom("inbound")>;
using subscribe_atom = caf::atom_constant<caf::atom("subscribe")>;
using online_atom = caf::atom_constant<caf::atom("online")>;
/// (offline_atom, who): tell who (offline_atom) whenever the connection drops
using offline_atom = caf::atom_constant<caf::atom("offline")>;
// Paho callbacks -> bridge
using conn_ok_atom = caf::atom_constant<caf::atom("conn_ok")>;
using conn_fail_atom = caf::atom_constant<caf::atom("conn_fail")>;
using conn_lost_atom = caf::atom_constant<caf::atom("conn_lost")>;
using connect_atom = caf::atom_constant<caf::atom("connect")>;
using disc_done_atom = caf::atom_constant<caf::atom("disc_done")>;
// lifecycle and timers
using tick_atom = caf::atom_constant<caf::atom("tick")>;
/// A writer's group commit (lease manager, queue dispatcher): sent to
/// itself, handled once the messages before it are.
using commit_atom = caf::atom_constant<caf::atom("commit")>;
using shutdown_atom = caf::atom_constant<caf::atom("shutdown")>;
using stats_atom = caf::atom_constant<caf::atom("stats")>;
// queue dispatcher <-> lease manager
/// (job_lease_atom, lease_ask) -> lease_grant_reply
using job_lease_atom = caf::atom_constant<caf::atom("job_lease")>;
/// (revoke_atom, lease id, reason): core-initiated revoke
using revoke_atom = caf::atom_constant<caf::atom("revoke")>;
/// (watch_atom, actor, std::set<std::string> held lease ids) -> the held ones
/// the lease manager does not have; from then on the watcher gets every
/// lease_outcome, once per change.
using watch_atom = caf::atom_constant<caf::atom("watch")>;
/// (queue_atom, queue_depths): for scheduler/status
using queue_atom = caf::atom_constant<caf::atom("queue")>;
/// (store_atom, queued, dropped, write_errors, last_error, series,
/// series_refused, series_evicted): the persister's backlog and its series
/// quota, for scheduler/status
using store_atom = caf::atom_constant<caf::atom("store")>;

/// (leases_atom, std::vector<leased_process_ref>): the lease manager tells
/// the host collector in its own lulld which leases' processes run on this
/// host, each time the host's list changes (an agent elsewhere reads
/// scheduler/host/<host>/leases instead).
using leases_atom = caf::atom_constant<caf::atom("leases")>;

/// (alive_atom) -> (uint64 hosts, uint64 active leases, uint64 queued jobs):
/// the lease manager answers at once; lulld's service notifier asks it
/// (ahead of its mailbox) before every watchdog ping.
using alive_atom = caf::atom_constant<caf::atom("alive")>;

/// Registers lull's message types with an actor system config.
inline void add_lull_types(caf::actor_system_config& cfg) {
  cfg.add_message_types<caf::id_block::lull>();
}

} // namespace lull
