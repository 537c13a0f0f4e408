#include "actors/ha_discovery.hpp"

#include <algorithm>
#include <random>
#include <set>

#include "actors/actor_util.hpp"
#include "actors/collector_atoms.hpp"
#include "messages/host_snapshot.hpp"
#include "src/log.hpp"
#include "src/stats/host_roster.hpp"

namespace lull {

namespace {

struct ha_discovery_state {
  std::unique_ptr<host_roster> hosts;
  bool announce_pending = false;
  std::minstd_rand rng{std::random_device{}()};
  static inline const char* name = "ha_discovery";
};

caf::behavior ha_discovery_impl(caf::stateful_actor<ha_discovery_state>* self, caf::actor bridge,
                                ha_discovery_options opts) {
  auto me = caf::actor_cast<caf::actor>(self);
  auto status_topic = ha_status_topic(opts.discovery);
  auto host_prefix = opts.topics.host_stats("");
  self->send(bridge, subscribe_atom::value, status_topic, me);
  self->send(bridge, subscribe_atom::value, opts.topics.host_stats_filter(), me);
  self->send(bridge, online_atom::value, me);
  self->state.hosts = std::make_unique<host_roster>(opts.max_hosts, opts.forget_after_sec);
  if (!opts.discovery.own_instance.empty())
    self->state.hosts->pin(opts.discovery.own_instance);
  // Its device goes from Home Assistant too: an empty retained config.
  auto forget = [=](const std::string& host, const char* why) {
    auto msg = build_discovery(host, opts.topics, opts.discovery);
    log::info("ha discovery: removing the device of host {} ({})", host, why);
    self->send(bridge, publish_atom::value, mqtt_message{msg.topic, "", 1, true, {}, {}, {}});
  };
  auto sweep_every = std::chrono::milliseconds(static_cast<long long>(
    std::clamp(opts.forget_after_sec / 10, 1.0, 600.0) * 1000));
  self->delayed_send(self, sweep_every, stale_atom::value);

  auto announce_one = [=](const std::string& host) {
    auto msg = build_discovery(host, opts.topics, opts.discovery);
    self->send(bridge, publish_atom::value, json_message(msg.topic, msg.payload, true, 1));
  };
  auto schedule = [=](int min_ms, int max_ms) {
    auto& s = self->state;
    if (s.announce_pending)
      return;
    s.announce_pending = true;
    std::uniform_int_distribution<int> d(min_ms, max_ms);
    self->delayed_send(self, std::chrono::milliseconds(d(s.rng)), announce_atom::value);
  };

  return {
    [=](inbound_atom, const mqtt_message& msg) {
      if (msg.topic == status_topic) {
        if (msg.payload == "online") {
          log::info("ha discovery: Home Assistant is online; announcing {} device(s)",
                    self->state.hosts->size());
          schedule(1000, 5000);
        }
        return;
      }
      if (msg.topic.compare(0, host_prefix.size(), host_prefix) != 0)
        return;
      auto host = msg.topic.substr(host_prefix.size());
      if (!valid_id(host))
        return;
      if (self->state.hosts->contains(host)) {
        self->state.hosts->seen(host, steady_seconds());
        return;
      }
      // A device only for a host whose agent reported a real snapshot, and
      // a bounded number of them: each is a retained config in the broker.
      guard_inbound("ha discovery", msg, [&] {
        auto doc = decode(msg.payload, detect_format(msg.payload, msg.content_type));
        if (!doc || !doc->is_object())
          return false;
        auto snap = host_snapshot_from_json(*doc);
        if (snap.host_id != host)
          return false;
        auto seen = self->state.hosts->seen(host, steady_seconds());
        if (seen.evicted)
          forget(*seen.evicted, "limits.max_hosts reached: silent longest");
        if (!seen.added)
          return false;
        announce_one(host);
        return true;
      });
    },
    [=](online_atom) { schedule(200, 2000); },
    [=](announce_atom) {
      self->state.announce_pending = false;
      for (auto& h : self->state.hosts->hosts())
        announce_one(h);
    },
    [=](stale_atom) {
      for (auto& h : self->state.hosts->expire(steady_seconds()))
        forget(h, "silent past limits.host_forget_after");
      self->delayed_send(self, sweep_every, stale_atom::value);
    },
  };
}

} // namespace

caf::actor spawn_ha_discovery(caf::actor_system& sys, caf::actor bridge,
                              ha_discovery_options opts) {
  return sys.spawn(ha_discovery_impl, std::move(bridge), std::move(opts));
}

} // namespace lull
