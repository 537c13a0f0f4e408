#pragma once
/// The Home Assistant discovery actor: announces a device (retained, under the
/// configured prefix) for every host it sees on stats/host/+ (when this lulld
/// assesses hosts) and the scheduler's device with a switch per host (when
/// it runs the scheduler), and announces all of them again after a short
/// random delay (1-5 s, so a fleet of lullds does not answer in one burst)
/// whenever `<prefix>/status` says `online` and on every (re)connect of
/// lull's own, since HA's birth message is not retained. A host's device
/// follows its snapshot's mounts (one disk sensor each), checked once a
/// minute.

#include <caf/all.hpp>

#include "messages/topics.hpp"
#include "src/ha/discovery.hpp"
#include "src/limits.hpp"

namespace lull {

struct ha_discovery_options {
  discovery_options discovery;
  topic_names topics;
  /// Devices announced at most (max_hosts; when full, the host silent
  /// longest gives way); a host silent host_forget_after is forgotten and
  /// its retained device cleared.
  limits_settings limits;
};

caf::actor spawn_ha_discovery(caf::actor_system& sys, caf::actor bridge,
                              ha_discovery_options opts);

} // namespace lull
