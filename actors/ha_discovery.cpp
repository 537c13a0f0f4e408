#include "actors/ha_discovery.hpp"

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "actors/actor_util.hpp"
#include "actors/collector_atoms.hpp"
#include "messages/host_snapshot.hpp"
#include "src/log.hpp"
#include "src/stats/host_roster.hpp"

namespace lull {

namespace {

/// Removals a device config keeps carrying (for a Home Assistant that was
/// away when the thing went), the newest this many.
constexpr std::size_t max_gone = 32;

/// Adds `item` to `list` (newest last, at most max_gone), once.
void remember_gone(std::vector<std::string>& list, const std::string& item) {
  list.erase(std::remove(list.begin(), list.end(), item), list.end());
  list.push_back(item);
  if (list.size() > max_gone)
    list.erase(list.begin());
}

struct host_disks {
  std::vector<std::string> mounts; ///< of its latest snapshot read
  std::vector<std::string> gone;   ///< announced before, gone since
  host_features features;          ///< what its latest snapshot read reports
  double next_check = 0;           ///< steady seconds
};

struct ha_discovery_state {
  std::unique_ptr<host_roster> hosts;
  std::map<std::string, host_disks> disks;
  std::vector<std::string> gone_hosts; ///< whose switches the scheduler device removes
  bool announce_pending = false;
  bool scheduler_pending = false;
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
  self->state.hosts =
    std::make_unique<host_roster>(opts.limits.max_hosts, opts.limits.host_forget_after_sec);
  if (!opts.discovery.own_instance.empty())
    self->state.hosts->pin(opts.discovery.own_instance);

  // A host is announced once its snapshot was read: its mounts are known
  // then (a device first announced without them would have its disk
  // entities removed and made again, losing their settings in HA).
  auto announce_one = [=](const std::string& host) {
    auto d = self->state.disks.find(host);
    if (!opts.discovery.hosts || d == self->state.disks.end())
      return;
    auto msg = build_discovery(host, d->second.mounts, opts.topics, opts.discovery,
                               d->second.gone, d->second.features);
    self->send(bridge, publish_atom::value, json_message(msg.topic, msg.payload, true, 1));
  };
  auto announce_scheduler = [=] {
    if (!opts.discovery.scheduler)
      return;
    auto& s = self->state;
    std::vector<std::string> reported;
    for (auto& h : s.hosts->hosts())
      if (s.disks.count(h))
        reported.push_back(h);
    auto msg = build_scheduler_discovery(reported, opts.topics, opts.discovery, s.gone_hosts);
    self->send(bridge, publish_atom::value, json_message(msg.topic, msg.payload, true, 1));
  };
  // The scheduler's device lists every host: one announcement for a burst
  // of new hosts (lulld's start, when every agent's snapshot arrives).
  auto scheduler_changed = [=] {
    auto& s = self->state;
    if (!opts.discovery.scheduler || s.scheduler_pending)
      return;
    s.scheduler_pending = true;
    self->delayed_send(self, std::chrono::seconds(1), sched_dev_atom::value);
  };
  // Its device goes from Home Assistant too: an empty retained config, and
  // its switch from the scheduler's device.
  auto forget = [=](const std::string& host, const char* why) {
    auto& s = self->state;
    s.disks.erase(host);
    if (opts.discovery.hosts) {
      auto msg = discovery_removal(host, opts.discovery);
      log::info("ha discovery: removing the device of host {} ({})", host, why);
      self->send(bridge, publish_atom::value, cleared(msg.topic));
    }
    remember_gone(s.gone_hosts, host);
    scheduler_changed();
  };
  auto sweep_every = std::chrono::milliseconds(static_cast<long long>(
    std::clamp(opts.limits.host_forget_after_sec / 10, 1.0, 600.0) * 1000));
  self->delayed_send(self, sweep_every, stale_atom::value);

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
          log::info("ha discovery: Home Assistant is online; announcing {} host(s)",
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
      auto& s = self->state;
      auto now = steady_seconds();
      bool known = s.hosts->contains(host);
      auto d = s.disks.find(host);
      // A known host's snapshot is only noted, but for its mounts once a
      // minute: decoding each one would cost more than the rest of this actor.
      if (known && d != s.disks.end() && now < d->second.next_check) {
        s.hosts->seen(host, now);
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
        auto seen = s.hosts->seen(host, now);
        if (seen.evicted)
          forget(*seen.evicted, "limits.max_hosts reached: silent longest");
        if (!known && !seen.added)
          return false;
        std::vector<std::string> mounts;
        for (auto& disk : snap.disks) // at most 32 (host_snapshot_limits)
          if (discoverable_mount(disk.mount)
              && std::find(mounts.begin(), mounts.end(), disk.mount) == mounts.end())
            mounts.push_back(disk.mount);
        auto& hd = s.disks[host];
        bool mounts_changed = mounts != hd.mounts;
        if (mounts_changed) {
          for (auto& m : hd.mounts)
            if (std::find(mounts.begin(), mounts.end(), m) == mounts.end())
              remember_gone(hd.gone, m);
          hd.gone.erase(std::remove_if(hd.gone.begin(), hd.gone.end(),
                                       [&](const std::string& m) {
                                         return std::find(mounts.begin(), mounts.end(), m)
                                                != mounts.end();
                                       }),
                        hd.gone.end());
          hd.mounts = std::move(mounts);
        }
        host_features features;
        features.owner = snap.owner.has_value() || hd.features.owner;
        features.pressure = snap.pressure.has_value();
        features.power = snap.power.has_value();
        for (auto& g : snap.gpus) // at most 16 (host_snapshot_limits)
          if (discoverable_gpu(g.id)
              && std::find(features.gpus.begin(), features.gpus.end(), g.id)
                   == features.gpus.end())
            features.gpus.push_back(g.id);
        bool features_changed = features != hd.features;
        features.carry_gone(hd.features);
        hd.features = std::move(features);
        bool first = hd.next_check == 0;
        hd.next_check = now + mounts_check_sec(opts.discovery.snapshot_interval_sec);
        if (first || mounts_changed || features_changed)
          announce_one(host);
        if (first) {
          s.gone_hosts.erase(std::remove(s.gone_hosts.begin(), s.gone_hosts.end(), host),
                             s.gone_hosts.end());
          scheduler_changed();
        }
        return true;
      });
    },
    [=](online_atom) { schedule(200, 2000); },
    [=](announce_atom) {
      self->state.announce_pending = false;
      for (auto& h : self->state.hosts->hosts())
        announce_one(h);
      announce_scheduler();
    },
    [=](sched_dev_atom) {
      self->state.scheduler_pending = false;
      announce_scheduler();
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
