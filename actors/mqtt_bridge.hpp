#pragma once
/// The MQTT bridge actor: owns the broker connection (through mqtt_transport),
/// reconnects with backoff, resubscribes on every connect, publishes the
/// retained availability with a last-will, routes inbound messages to the
/// actors that subscribed, and publishes for them. Inbound messages are
/// routed on Paho's callback thread, straight into the subscribers'
/// mailboxes (one message shared by all of them), not through the bridge's
/// own mailbox.
///
/// Messages it handles:
///   (subscribe_atom, std::string filter, caf::actor who)  route matches to who;
///                                   a filter already held by another actor is not
///                                   subscribed again: who gets the retained
///                                   messages the bridge kept for it instead
///   (online_atom, caf::actor who)   tell who (online_atom) on every connect
///   (offline_atom, caf::actor who)  tell who (offline_atom) whenever it drops
///   (publish_atom, mqtt_message)    publish (buffered while disconnected)
///   (inbound_atom, mqtt_message)    route as if it came from the broker
///   (stats_atom) -> (uint64 in, uint64 out, uint64 reconnects, bool connected)
///   (bus_atom) -> std::string       bus stats JSON for the interval since the last
///                                   (msgs in/out per second, error rate, p50/p95,
///                                   in flight); see src/stats/bus_meter.hpp
///   (handled_atom, double sec, bool ok)  a handler's latency and verdict
///   (shutdown_atom)                 stop routing, publish what is queued (<= 300 ms),
///                                   publish offline, disconnect, quit (<= 1.3 s in all);
///                                   lulld sends it at high priority

#include <functional>
#include <memory>
#include <string>

#include <caf/all.hpp>

#include "actors/atoms.hpp"
#include "messages/topics.hpp"
#include "src/limits.hpp"
#include "src/mqtt/transport.hpp"
#include "src/stats/inbound_budget.hpp"

namespace lull {

using transport_factory = std::function<std::unique_ptr<mqtt_transport>(
  transport_options, std::shared_ptr<transport_events>)>;

struct bridge_options {
  transport_options transport;
  topic_names topics;
  std::string instance; ///< availability topic lull/<instance>/availability
  transport_factory factory; ///< default: Paho
  /// Inbound payloads larger than limits.max_payload are dropped before any
  /// actor decodes them (counted as `oversize` in bus stats, logged with the
  /// topic).
  limits_settings limits;
  /// Retained messages kept for actors that subscribe to a filter another
  /// actor already holds (the broker sends them only once per filter).
  std::size_t retained_max_topics = 10000;
  std::size_t retained_max_bytes = 16 * 1024 * 1024;
  /// Rate per source and room per lane for inbound messages, checked
  /// before any actor decodes them (src/stats/inbound_budget.hpp).
  budget_options budget = budget_options::defaults();
};

caf::actor spawn_mqtt_bridge(caf::actor_system& sys, bridge_options opts);

} // namespace lull
