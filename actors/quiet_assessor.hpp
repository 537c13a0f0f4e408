#pragma once
/// The quiet assessor actor: consumes every host's snapshot on stats/host/+
/// (this lulld's and other hosts' agents') and the bus stats on stats/bus,
/// runs them through quiet_assessor, and publishes each host's assessment
/// retained (QoS 1) on stats/host/<host_id>/quiet. On every (re)connect it
/// republishes the latest assessments, since a broker without persistence
/// forgets retained messages. Quiet streaks are logged as they close and go
/// retained to lull/debug/streaks/<host_id>.

#include <caf/all.hpp>

#include "messages/topics.hpp"
#include "src/limits.hpp"
#include "src/quiet/quiet_assessor.hpp"

namespace lull {

struct quiet_assessor_options {
  quiet_thresholds thresholds;
  topic_names topics;
  /// Hosts assessed at once (max_hosts; when full, the host silent longest
  /// gives way); a host silent host_forget_after is forgotten and its
  /// retained assessment cleared.
  limits_settings limits;
};

caf::actor spawn_quiet_assessor(caf::actor_system& sys, caf::actor bridge,
                                quiet_assessor_options opts);

} // namespace lull
