#include "actors/host_collector.hpp"

#include "actors/atoms.hpp"
#include "messages/codec.hpp"

namespace lull {

namespace {

struct host_collector_state {
  std::unique_ptr<host_probe> probe;
  static inline const char* name = "host_collector";
};

caf::behavior host_collector_impl(caf::stateful_actor<host_collector_state>* self,
                                  caf::actor bridge, host_collector_options opts) {
  self->state.probe = std::make_unique<host_probe>(opts.probe);
  auto topic = opts.topics.host_stats(opts.probe.host_id);
  // The first sample primes CPU and network deltas; the first publish follows
  // a short moment later so even it carries CPU %.
  auto sample = [self] {
    auto now = std::chrono::system_clock::now();
    auto mono = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch());
    return self->state.probe->sample(
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count(),
      mono.count());
  };
  sample();
  self->delayed_send(self, std::chrono::milliseconds(250), tick_atom::value);
  return {
    [=](tick_atom) {
      auto snap = sample();
      self->send(bridge, publish_atom::value,
                 mqtt_message{topic, encode(to_json(snap), wire_format::json), 0, false,
                              json_content_type, {}, {}});
      self->delayed_send(self, opts.interval, tick_atom::value);
    },
  };
}

} // namespace

caf::actor spawn_host_collector(caf::actor_system& sys, caf::actor bridge,
                                host_collector_options opts) {
  return sys.spawn(host_collector_impl, std::move(bridge), std::move(opts));
}

} // namespace lull
