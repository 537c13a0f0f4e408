#pragma once
/// The queue dispatcher actor: job intents on scheduler/job/*, handed to
/// workers together with a lease from the lease manager when the policy
/// admits them. Every change is written to SQLite before it is acknowledged.
/// It watches the lease manager (watch_atom) and hears how its jobs' leases
/// go as lease_outcome messages, never through the broker.

#include <chrono>
#include <memory>

#include <caf/all.hpp>

#include "src/queue/queue_service.hpp"
#include "src/store/store.hpp"

namespace lull {

struct queue_dispatcher_options {
  queue_service_options service;
  queue_config queue;
  std::chrono::milliseconds tick{1000};
  std::int64_t finished_retention_sec = 7 * 86400;
};

caf::actor spawn_queue_dispatcher(caf::actor_system& sys, caf::actor bridge,
                                  caf::actor lease_manager, std::shared_ptr<store> db,
                                  queue_dispatcher_options opts);

} // namespace lull
