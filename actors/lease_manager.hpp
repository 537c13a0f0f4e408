#pragma once
/// The lease manager actor: a thin shell around lease_service. It subscribes
/// through the bridge to the lease topics and to stats/host/+/quiet,
/// stats/host/+ and stats/worker/+, hands every inbound message to the
/// service and publishes what comes back (replies at QoS 1), ticks for TTL
/// expiry, and keeps the retained scheduler/status current (at most once per
/// `status_interval`, and on every reconnect).
///
/// Messages it handles:
///   (inbound_atom, mqtt_message)   from the bridge
///   (tick_atom)                    its own expiry tick
///   (online_atom)                  the bridge (re)connected: leases renewed if it had dropped
///   (offline_atom)                 the bridge lost the broker: no lease expires meanwhile
///   (stats_atom) -> (uint64 received, uint64 rejected, uint64 grants,
///                    uint64 denies, uint64 active)
///   (alive_atom) -> (uint64 hosts, uint64 active, uint64 queued jobs)
///                                  the service notifier's round trip
///   (job_lease_atom, lease_ask) -> lease_grant_reply
///                                  a lease for the queue dispatcher
///   (revoke_atom, string lease id, string reason)   core-initiated revoke
///   (queue_atom, queue_depths)     shown in scheduler/status
///   (watch_atom, actor, set<string> held lease ids) -> set<string> gone
///                                  the watcher then gets every lease_outcome
///                                  (running, released, expired, revoked),
///                                  once per change
///
/// With a store, every grant, renewal and end is written before it is
/// acknowledged (group commit: the replies of one burst of messages share
/// one transaction), and the leases and fencing counter are restored at
/// start.

#include <chrono>

#include <caf/all.hpp>

#include "src/lease/lease_service.hpp"
#include "src/store/store.hpp"

namespace lull {

struct lease_manager_options {
  lease_service_options service;
  std::chrono::milliseconds tick{250};
  std::chrono::milliseconds status_interval{1000};
  std::shared_ptr<store> db; ///< null: leases live in memory only
  /// This lulld's own host collector, if it runs one: it gets its host's
  /// lease list (the processes to count as lull's) from here, not the bus.
  caf::actor local_agent;
  std::string local_host;
};

caf::actor spawn_lease_manager(caf::actor_system& sys, caf::actor bridge,
                               lease_manager_options opts);

} // namespace lull
