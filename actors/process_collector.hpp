#pragma once
/// The process collector actor: every `interval` (+/- jitter) samples lulld
/// itself and the configured processes (names or pid files) through
/// process_probe and publishes each on stats/process/<host_id>/<name>.
/// Runs under a collector_guard like the host collector; failures go to
/// lull/debug/collectors/<host_id>/process.

#include <chrono>

#include <caf/all.hpp>

#include "messages/topics.hpp"
#include "src/probe/process_probe.hpp"
#include "src/stats/collector_settings.hpp"

namespace lull {

struct process_collector_options {
  std::string host_id;
  /// process_interval, processes (lulld itself is always watched), jitter,
  /// timeout and proc_root are this collector's.
  collector_settings collect;
  topic_names topics;
};

caf::actor spawn_process_collector(caf::actor_system& sys, caf::actor bridge,
                                   process_collector_options opts);

} // namespace lull
