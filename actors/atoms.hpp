#pragma once
/// lull's CAF message vocabulary: the type-ID block and the atoms the actors
/// exchange. Atom text is at most 10 characters (CAF 0.17).

#include <caf/all.hpp>

#include "messages/mqtt_message.hpp"

CAF_BEGIN_TYPE_ID_BLOCK(lull, caf::first_custom_type_id)
  CAF_ADD_TYPE_ID(lull, (lull::mqtt_message))
CAF_END_TYPE_ID_BLOCK(lull)

namespace lull {

// bridge <-> actors
using publish_atom = caf::atom_constant<caf::atom("publish")>;
using inbound_atom = caf::atom_constant<caf::atom("inbound")>;
using subscribe_atom = caf::atom_constant<caf::atom("subscribe")>;
using online_atom = caf::atom_constant<caf::atom("online")>;
// Paho callbacks -> bridge
using conn_ok_atom = caf::atom_constant<caf::atom("conn_ok")>;
using conn_fail_atom = caf::atom_constant<caf::atom("conn_fail")>;
using conn_lost_atom = caf::atom_constant<caf::atom("conn_lost")>;
using connect_atom = caf::atom_constant<caf::atom("connect")>;
using disc_done_atom = caf::atom_constant<caf::atom("disc_done")>;
// lifecycle and timers
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using shutdown_atom = caf::atom_constant<caf::atom("shutdown")>;
using stats_atom = caf::atom_constant<caf::atom("stats")>;
// queue dispatcher -> lease manager
/// (job_lease_atom, request JSON, worker id) -> grant reply JSON
using job_lease_atom = caf::atom_constant<caf::atom("job_lease")>;
/// (revoke_atom, lease id, reason): core-initiated revoke
using revoke_atom = caf::atom_constant<caf::atom("revoke")>;
/// (ended_atom, lease ids joined by '\n') -> the ones no longer active, same form
using ended_atom = caf::atom_constant<caf::atom("ended")>;
/// (queue_atom, {"queued":n,"depths":{..}} as JSON): for scheduler/status
using queue_atom = caf::atom_constant<caf::atom("queue")>;

/// Registers lull's message types with an actor system config.
inline void add_lull_types(caf::actor_system_config& cfg) {
  cfg.add_message_types<caf::id_block::lull>();
}

} // namespace lull
