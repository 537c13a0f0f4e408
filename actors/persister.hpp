#pragma once
/// The persister actor: turns stats messages into stored series (batched,
/// one transaction per flush), keeps 5-minute and hourly rollups, applies
/// retention, records lease events, and answers history/request. It runs
/// detached (its own thread) so a slow disk never stalls other actors; while
/// the disk fails, samples wait in a bounded queue and the oldest are
/// dropped with a count.

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <caf/all.hpp>

#include "messages/page.hpp"
#include "messages/topics.hpp"
#include "src/limits.hpp"
#include "src/security.hpp"
#include "src/store/persist_settings.hpp"
#include "src/store/store.hpp"

namespace lull {

struct persister_options {
  topic_names topics;
  /// broker.secure: history requests come on history/<user>/request and are
  /// answered only under workers/<user>/ (docs/security.md).
  security_settings security;
  std::string host_id;
  /// How often samples are written, how many wait while the disk fails,
  /// and how long raw samples, 5-minute rollups and quiet streaks are kept
  /// (purged every retention_interval).
  persist_settings persist;
  /// Finished jobs (the queue's) last updated longer ago go with the same
  /// purge; unset: jobs are not the persister's to purge.
  std::optional<std::int64_t> finished_jobs_retention_sec;
  /// Distinct series one source (a worker's status, a host's snapshot, a
  /// process) may name, and all sources together: a new name past either is
  /// refused and counted (max_series_per_worker, max_series). Hosts whose
  /// health (errors, disks) is kept: max_hosts, each forgotten after
  /// host_forget_after of silence. Every history/request reply fits
  /// max_reply_bytes, the lists paged (`limit`, `cursor`, `next`;
  /// messages/page.hpp).
  limits_settings limits;
  std::int64_t stale_after_sec = 30;
  /// Local time of the learned quiet windows (lease.timezone).
  std::string timezone = "local";
  /// Told the backlog and write errors when they change (the lease manager,
  /// for scheduler/status); none when null.
  caf::actor status_to;
};

caf::actor spawn_persister(caf::actor_system& sys, caf::actor bridge,
                           std::shared_ptr<store> db, persister_options opts);

} // namespace lull
