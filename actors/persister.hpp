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
#include "src/store/store.hpp"

namespace lull {

struct persister_options {
  topic_names topics;
  /// broker.secure: history requests come on history/<user>/request and are
  /// answered only under workers/<user>/ (docs/security.md).
  bool secure = false;
  std::string host_id;
  std::chrono::milliseconds flush_interval{5000};
  std::size_t queue_bound = 200000;
  std::int64_t raw_retention_sec = 7 * 86400;
  std::int64_t rollup_retention_sec = 30 * 86400;
  /// Finished jobs (the queue's) last updated longer ago go with the same
  /// purge; unset: jobs are not the persister's to purge.
  std::optional<std::int64_t> finished_jobs_retention_sec;
  /// Quiet streaks that ended longer ago go with the same purge
  /// (retention.quiet_streaks: 52 weeks, the longest windows query).
  std::int64_t quiet_streaks_retention_sec = 364 * 86400;
  std::chrono::milliseconds retention_interval{std::chrono::hours(1)};
  /// Distinct series one source (a worker's status, a host's snapshot, a
  /// process) may name, and all sources together; a new name past either
  /// is refused and counted (limits.max_series_per_worker, limits.max_series).
  std::size_t max_series_per_source = 256;
  std::size_t max_series = 20000;
  /// Hosts whose health (errors, disks) is kept: limits.max_hosts, each
  /// forgotten after limits.host_forget_after of silence.
  std::size_t max_hosts = 256;
  double host_forget_after_sec = 86400;
  std::int64_t stale_after_sec = 30;
  /// Local time of the learned quiet windows (lease.timezone).
  std::string timezone = "local";
  /// Told the backlog and write errors when they change (the lease manager,
  /// for scheduler/status); none when null.
  caf::actor status_to;
  /// limits.max_reply_bytes: every history/request reply fits it, the
  /// lists paged (`limit`, `cursor`, `next`; messages/page.hpp).
  std::size_t max_reply_bytes = default_max_reply_bytes;
};

caf::actor spawn_persister(caf::actor_system& sys, caf::actor bridge,
                           std::shared_ptr<store> db, persister_options opts);

} // namespace lull
