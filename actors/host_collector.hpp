#pragma once
/// The host collector actor: every `interval` it samples the host through
/// host_probe and publishes the JSON snapshot on stats/host/<host_id>.

#include <chrono>

#include <caf/all.hpp>

#include "messages/topics.hpp"
#include "src/probe/host_probe.hpp"

namespace lull {

struct host_collector_options {
  host_probe_options probe;
  std::chrono::milliseconds interval{2000};
  topic_names topics;
};

caf::actor spawn_host_collector(caf::actor_system& sys, caf::actor bridge,
                                host_collector_options opts);

} // namespace lull
