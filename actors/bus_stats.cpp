#include "actors/bus_stats.hpp"

#include "actors/actor_util.hpp"
#include "actors/collector_atoms.hpp"

namespace lull {

caf::actor spawn_bus_stats(caf::actor_system& sys, caf::actor bridge, bus_stats_options opts) {
  return sys.spawn([bridge, opts](caf::event_based_actor* self) -> caf::behavior {
    self->delayed_send(self, ms_of(opts.interval_sec), tick_atom::value);
    auto topic = opts.topics.bus_stats();
    return {
      [=](tick_atom) {
        self->request(bridge, std::chrono::seconds(5), bus_atom::value)
          .then([=](const std::string& report) {
            self->send(bridge, publish_atom::value,
                       mqtt_message{topic, report, 0, false, json_content_type, {}, {}});
          });
        self->delayed_send(self, ms_of(opts.interval_sec), tick_atom::value);
      },
    };
  });
}

} // namespace lull
