#include "actors/lease_manager.hpp"

#include "actors/atoms.hpp"
#include "src/log.hpp"

namespace lull {

namespace {

struct lease_manager_state {
  std::unique_ptr<lease_service> service;
  caf::actor_clock::time_point last_status{};
  static inline const char* name = "lease_manager";
};

caf::behavior lease_manager_impl(caf::stateful_actor<lease_manager_state>* self,
                                 caf::actor bridge, lease_manager_options opts) {
  auto& st = self->state;
  // TTLs run on the actor system's clock: steady_clock in lulld, the
  // test_coordinator's clock under test, so expiry tests need no sleeps.
  auto env = lease_env::system();
  env.mono_sec = [self] {
    return std::chrono::duration<double>(self->clock().now().time_since_epoch()).count();
  };
  st.service = std::make_unique<lease_service>(opts.service, std::move(env),
                                               opts.first_fencing_token);
  for (auto& f : st.service->filters())
    self->send(bridge, subscribe_atom::value, f, caf::actor{self});
  self->send(bridge, online_atom::value, caf::actor{self});
  self->delayed_send(self, opts.tick, tick_atom::value);
  log::info("lease manager: {} mode, TTL {}s, lock_delay {}s",
            opts.service.secure ? "secure (identity from topics)" : "open",
            opts.service.policy.ttl_sec, opts.service.policy.lock_delay_sec);

  auto publish_all = [self, bridge](std::vector<mqtt_message>&& out) {
    for (auto& m : out)
      self->send(bridge, publish_atom::value, std::move(m));
  };
  auto publish_status = [self, bridge] {
    self->state.last_status = self->clock().now();
    self->send(bridge, publish_atom::value, self->state.service->status_message());
  };
  return {
    [=](inbound_atom, const mqtt_message& msg) {
      publish_all(self->state.service->handle(msg));
    },
    [=](tick_atom) {
      auto& s = self->state;
      publish_all(s.service->tick());
      if (self->clock().now() - s.last_status >= opts.status_interval
          && s.service->take_status_dirty())
        publish_status();
      self->delayed_send(self, opts.tick, tick_atom::value);
    },
    [=](online_atom) { publish_status(); },
    [=](stats_atom) {
      auto& c = self->state.service->counters();
      return caf::make_message(c.received, c.rejected, c.grants, c.denies,
                               static_cast<std::uint64_t>(
                                 self->state.service->table().active().size()));
    },
  };
}

} // namespace

caf::actor spawn_lease_manager(caf::actor_system& sys, caf::actor bridge,
                               lease_manager_options opts) {
  return sys.spawn(lease_manager_impl, std::move(bridge), std::move(opts));
}

} // namespace lull
