#include "actors/bus_stats.hpp"

#include "actors/actor_util.hpp"
#include "actors/collector_atoms.hpp"

namespace lull {

namespace {

// A free function with its arguments passed to spawn: CAF 0.17 dereferences
// an empty argument tuple for a capturing lambda spawned without arguments,
// which UBSan rightly reports.
caf::behavior bus_stats_impl(caf::event_based_actor* self, caf::actor bridge,
                             bus_stats_options opts) {
  self->delayed_send(self, ms_of(opts.collect.bus_interval_sec), tick_atom::value);
  auto topic = opts.topics.bus_stats();
  return {
    [=](tick_atom) {
      self->request(bridge, std::chrono::seconds(5), bus_atom::value)
        .then([=](const std::string& report) {
          self->send(bridge, publish_atom::value,
                     event_json(topic, report));
        });
      self->delayed_send(self, ms_of(opts.collect.bus_interval_sec), tick_atom::value);
    },
  };
}

} // namespace

caf::actor spawn_bus_stats(caf::actor_system& sys, caf::actor bridge, bus_stats_options opts) {
  return sys.spawn(bus_stats_impl, std::move(bridge), std::move(opts));
}

} // namespace lull
