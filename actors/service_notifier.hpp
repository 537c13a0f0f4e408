#pragma once
/// The service notifier: tells lulld's service manager how lulld is, through
/// a `notify` function (sd_notify in lulld, a recorder in tests). Spawned
/// only when lulld runs under one (NOTIFY_SOCKET set).
///
/// Every `interval` it makes a round trip to the MQTT bridge and, when lulld
/// schedules, the lease manager, each asked ahead of its mailbox (high
/// priority): an actor that is merely busy answers after the message in
/// hand, one that is stuck never does. Each completed round trip sends
///   READY=1 (the first: the actors are up and the database is open; the
///           broker may still be away, which must not fail a start),
///   WATCHDOG=1 (later ones, with a watchdog), and
///   STATUS=<src/service/status.hpp's line>.
/// A round trip that is not answered within `interval` sends nothing and is
/// logged: a wedged actor, or a wedged scheduler that no longer runs this
/// actor's tick, stops the pings and systemd restarts lulld. The bridge's
/// connects and drops update STATUS at once.
///
/// Messages it handles:
///   (tick_atom)                    its own timer
///   (online_atom) / (offline_atom) the bridge (re)connected / lost the broker

#include <chrono>
#include <functional>
#include <string>

#include <caf/all.hpp>

namespace lull {

struct service_notifier_options {
  std::string broker; ///< the URI, for STATUS
  /// Between round trips: half of WATCHDOG_USEC, as sd_watchdog_enabled(3)
  /// advises, or how often STATUS refreshes without a watchdog.
  std::chrono::milliseconds interval{10000};
  bool watchdog = false; ///< send WATCHDOG=1 after each round trip but the first
  /// Sends newline-separated assignments to the service manager.
  std::function<void(const std::string&)> notify;
  /// Unix seconds now (tests: a fixed clock).
  std::function<std::int64_t()> wall_clock;
};

/// `leases` may be null (a lulld without the scheduler role): the round trip
/// is then the bridge's alone.
caf::actor spawn_service_notifier(caf::actor_system& sys, caf::actor bridge, caf::actor leases,
                                  service_notifier_options opts);

} // namespace lull
