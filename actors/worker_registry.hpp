#pragma once
/// The worker registry actor: subscribes to stats/worker/+, feeds every status
/// (and every last-will) to worker_registry, and publishes the registry's
/// view retained on stats/workers/<host_id> whenever a worker changes and
/// every `interval` (when it also marks silent workers stale). Rejected
/// payloads are logged and counted as bus errors.

#include <caf/all.hpp>

#include "messages/topics.hpp"
#include "src/stats/collector_settings.hpp"

namespace lull {

struct worker_registry_options {
  std::string host_id;
  /// worker_interval (health sweep and summary), worker_stale_after and
  /// dir_interval (runtime_dir walks, cached) are the registry's.
  collector_settings collect;
  topic_names topics;
};

/// stats/workers/<host_id>: the registry's summary topic.
std::string worker_summary_topic(const topic_names& topics, const std::string& host_id);

caf::actor spawn_worker_registry(caf::actor_system& sys, caf::actor bridge,
                                 worker_registry_options opts);

} // namespace lull
