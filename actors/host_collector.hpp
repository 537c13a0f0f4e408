#pragma once
/// The host collector actor: every `interval` (+/- jitter) it samples the host
/// through host_probe and publishes the JSON snapshot on stats/host/<host_id>;
/// on its own slower interval it sizes the configured directories (cached,
/// rate-limited walks) and adds them to the snapshot as `dirs`.
///
/// Each part runs under a collector_guard: an exception or an overrun lands in
/// the snapshot's `errors` and, with its last duration, on
/// lull/debug/collectors/<host_id>; the other part carries on. The main series
/// go into a rolling window whose avg/min/max/p95 are published on
/// lull/debug/window/<host_id> every minute.
///
/// Owner presence (src/probe/presence.hpp) is polled twice a second: when
/// somebody gives input after a few seconds without any, a snapshot goes out
/// at once rather than at the next interval, so leases below HIGH are
/// suspended within 2 s of the first key press (quiet.owner_idle).

#include <chrono>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "messages/topics.hpp"
#include "src/probe/host_probe.hpp"
#include "src/probe/presence.hpp"
#include "src/stats/collector_settings.hpp"

namespace lull {

struct host_collector_options {
  std::string host_id;
  /// interval, dir_interval, dirs, mounts, jitter, timeout, window and
  /// proc_root are this collector's.
  collector_settings collect;
  topic_names topics;
  /// The scheduler runs in this lulld: its lease manager hands this host's
  /// lease list (scheduler/host/<me>/leases) straight to the collector, and
  /// the bus topic, which another client could publish on in open mode, is
  /// not read (docs/security.md, "Who writes what").
  bool leases_in_process = false;
  /// The local seat sessions (lulld: logind over sd-bus when
  /// collectors.logind); none: only the terminals in utmp are read.
  logind_source logind;
};

caf::actor spawn_host_collector(caf::actor_system& sys, caf::actor bridge,
                                host_collector_options opts);

} // namespace lull
