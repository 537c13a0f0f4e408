#include "actors/quiet_assessor.hpp"

#include <map>

#include "actors/actor_util.hpp"
#include "actors/collector_atoms.hpp"
#include "src/log.hpp"
#include "src/stats/collector_guard.hpp"
#include "src/stats/host_roster.hpp"

namespace lull {

namespace {

struct quiet_assessor_state {
  std::unique_ptr<quiet_assessor> assessor;
  std::map<std::string, nlohmann::json> latest; ///< host -> last assessment
  std::map<std::string, std::size_t> streaks_seen;
  std::unique_ptr<host_roster> roster;
  static inline const char* name = "quiet_assessor";
};

caf::behavior quiet_assessor_impl(caf::stateful_actor<quiet_assessor_state>* self,
                                  caf::actor bridge, quiet_assessor_options opts) {
  self->state.assessor = std::make_unique<quiet_assessor>(opts.thresholds, steady_seconds,
                                                          unix_seconds_now);
  self->state.roster =
    std::make_unique<host_roster>(opts.limits.max_hosts, opts.limits.host_forget_after_sec);
  auto me = caf::actor_cast<caf::actor>(self);
  // A forgotten host: nothing of it stays, in lulld or retained in the broker.
  auto forget = [=](const std::string& host, const char* why) {
    auto& s = self->state;
    s.assessor->forget(host);
    s.latest.erase(host);
    s.streaks_seen.erase(host);
    log::info("quiet assessor: forgot host {} ({}); {} forgotten so far", host, why,
              s.roster->evicted());
    self->send(bridge, publish_atom::value, cleared(opts.topics.host_quiet(host)));
    self->send(bridge, publish_atom::value,
               cleared(opts.topics.debug("streaks/" + host)));
  };
  self->send(bridge, subscribe_atom::value, opts.topics.host_stats_filter(), me);
  self->send(bridge, subscribe_atom::value, opts.topics.bus_stats(), me);
  self->send(bridge, online_atom::value, me);
  auto bus_topic = opts.topics.bus_stats();
  auto stale_every = std::chrono::milliseconds(
    std::max<long long>(1000, static_cast<long long>(opts.thresholds.stale_after_sec * 250)));
  self->delayed_send(self, stale_every, stale_atom::value);

  auto on_snapshot = [=](const mqtt_message& msg) -> bool {
    auto& s = self->state;
    auto doc = decode(msg.payload, detect_format(msg.payload, msg.content_type));
    if (!doc) {
      log::warn("quiet assessor: {} is not JSON or msgpack", msg.topic);
      return false;
    }
    host_snapshot snap;
    try {
      snap = host_snapshot_from_json(*doc);
    } catch (const std::exception& e) {
      log::warn("quiet assessor: bad snapshot on {}: {}", msg.topic, e.what());
      return false;
    }
    if (!valid_id(snap.host_id) || msg.topic != opts.topics.host_stats(snap.host_id)) {
      log::warn("quiet assessor: {} carries host_id '{}'", msg.topic, snap.host_id);
      return false;
    }
    auto seen = s.roster->seen(snap.host_id, steady_seconds());
    if (seen.evicted)
      forget(*seen.evicted, "limits.max_hosts reached: silent longest");
    auto a = s.assessor->assess(snap);
    auto j = to_json(a);
    auto prev = s.latest.find(snap.host_id);
    if (prev == s.latest.end() || prev->second["state"] != j["state"])
      log::info("quiet assessor: {} is {} (score {})", snap.host_id, to_string(a.state),
                a.quiet_score);
    s.latest[snap.host_id] = j;
    self->send(bridge, publish_atom::value,
               json_message(opts.topics.host_quiet(snap.host_id), j, true, 1));
    auto& closed = s.assessor->streaks(snap.host_id);
    if (closed.size() != s.streaks_seen[snap.host_id]) {
      s.streaks_seen[snap.host_id] = closed.size();
      auto arr = nlohmann::json::array();
      for (auto& k : closed)
        arr.push_back(to_json(k));
      log::info("quiet assessor: {} quiet streak ended: {}", snap.host_id,
                to_json(closed.back()).dump());
      self->send(bridge, publish_atom::value,
                 json_message(opts.topics.debug("streaks/" + snap.host_id),
                              {{"v", schema_version}, {"host_id", snap.host_id}, {"streaks", arr}},
                              true, 1));
    }
    return true;
  };

  auto on_bus = [=](const mqtt_message& msg) -> bool {
    auto doc = decode(msg.payload, detect_format(msg.payload, msg.content_type));
    if (!doc || !doc->is_object())
      return false;
    auto host = doc->find("host_id");
    if (host == doc->end() || !host->is_string() || !valid_id(host->get<std::string>()))
      return false;
    auto num = [&](const char* k) -> std::optional<double> {
      auto it = doc->find(k);
      if (it == doc->end() || !it->is_number())
        return std::nullopt;
      return it->get<double>();
    };
    self->state.assessor->on_bus(host->get<std::string>(), num("rps"),
                                 num("p95_ms"));
    return true;
  };

  return {
    [=](inbound_atom, const mqtt_message& msg) {
      auto start = steady_seconds();
      bool ok = guard_inbound("quiet assessor", msg,
                              [&] { return msg.topic == bus_topic ? on_bus(msg) : on_snapshot(msg); });
      self->send(bridge, handled_atom::value, steady_seconds() - start, ok);
    },
    [=](stale_atom) {
      auto& s = self->state;
      for (auto& a : s.assessor->check_stale()) {
        log::warn("quiet assessor: {}", a.reasons.front());
        auto j = to_json(a);
        s.latest[a.host_id] = j;
        self->send(bridge, publish_atom::value,
                   json_message(opts.topics.host_quiet(a.host_id), j, true, 1));
      }
      for (auto& host : s.roster->expire(steady_seconds()))
        forget(host, "silent past limits.host_forget_after");
      self->delayed_send(self, stale_every, stale_atom::value);
    },
    [=](online_atom) {
      for (auto& [host, j] : self->state.latest)
        self->send(bridge, publish_atom::value,
                   json_message(opts.topics.host_quiet(host), j, true, 1));
    },
  };
}

} // namespace

caf::actor spawn_quiet_assessor(caf::actor_system& sys, caf::actor bridge,
                                quiet_assessor_options opts) {
  return sys.spawn(quiet_assessor_impl, std::move(bridge), std::move(opts));
}

} // namespace lull
