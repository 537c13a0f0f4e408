#pragma once
/// The bus stats actor: every `interval` asks the bridge for its bus report
/// (messages in/out per second, error rate, p50/p95 latency, in flight) and
/// publishes it on stats/bus. The counting lives in the bridge's bus_meter,
/// so this actor holds no state of its own.

#include <caf/all.hpp>

#include "messages/topics.hpp"
#include "src/stats/collector_settings.hpp"

namespace lull {

struct bus_stats_options {
  collector_settings collect; ///< bus_interval is this actor's
  topic_names topics;
};

caf::actor spawn_bus_stats(caf::actor_system& sys, caf::actor bridge, bus_stats_options opts);

} // namespace lull
