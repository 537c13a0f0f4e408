#pragma once
/// What the lease manager tells its watchers (the queue dispatcher) about a
/// lease, once per change: its holder started work (first heartbeat or
/// report), or it ended (released, expired, revoked). Sent actor to actor,
/// never through the broker, so nobody else can fake one.

#include <string>

namespace lull {

struct lease_outcome {
  std::string type; ///< running, released, expired, revoked
  std::string lease_id;
  std::string worker_id;
  std::string reason;
  /// A release's "outcome" (succeeded, failed, ...), "result" as JSON text
  /// ("" when absent) and "error", as the holder sent them.
  std::string outcome;
  std::string result;
  std::string error;
  /// Revoked to give its host back (suspended too long, or memory PANIC):
  /// the job goes back to the queue without using up an attempt.
  bool preempted = false;
};

} // namespace lull
