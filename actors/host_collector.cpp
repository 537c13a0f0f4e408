#include "actors/host_collector.hpp"

#include <algorithm>
#include <set>

#include "actors/actor_util.hpp"
#include "actors/collector_atoms.hpp"
#include "messages/codec.hpp"
#include "messages/lease.hpp"
#include "messages/util.hpp"
#include "src/log.hpp"
#include "src/probe/gpu_probe.hpp"
#include "src/probe/lease_probe.hpp"
#include "src/stats/collector_guard.hpp"
#include "src/stats/dir_size.hpp"
#include "src/stats/rolling_window.hpp"

namespace lull {

namespace {

using presence_atom = caf::atom_constant<caf::atom("presence")>;

/// How often presence is polled, and what makes input worth a snapshot at
/// once: a first input after this many seconds without any.
constexpr auto presence_poll = std::chrono::milliseconds(500);
constexpr double presence_away_sec = 4;
constexpr double presence_fresh_sec = 2;

struct host_collector_state {
  std::unique_ptr<host_probe> probe;
  std::unique_ptr<presence_probe> presence;
  std::optional<owner_presence> owner;           ///< as last polled
  std::string owner_why;                         ///< why owner is null
  std::optional<owner_presence> owner_published; ///< in the last snapshot
  std::unique_ptr<lease_probe> leases;           ///< what lull's own leases use here
  std::unique_ptr<gpu_probe> gpus;               ///< the GPUs, and the leases' share of them
  std::unique_ptr<collector_guard> host_guard, dir_guard;
  std::unique_ptr<dir_sizer> sizer;
  std::unique_ptr<series_store> window;
  nlohmann::json dirs = nlohmann::json::array();
  std::vector<std::string> pending_errors; ///< from the dir walks, for the next snapshot
  double last_window_publish = 0;
  static inline const char* name = "host_collector";
};

caf::behavior host_collector_impl(caf::stateful_actor<host_collector_state>* self,
                                  caf::actor bridge, host_collector_options opts) {
  auto& st = self->state;
  auto& c = opts.collect;
  host_probe_options probe;
  probe.root = c.proc_root;
  probe.host_id = opts.host_id;
  probe.mounts = c.mounts;
  st.probe = std::make_unique<host_probe>(probe);
  st.host_guard = std::make_unique<collector_guard>(
      collector_options{"host", c.interval_sec, c.jitter, c.timeout_sec}, nullptr);
  st.dir_guard = std::make_unique<collector_guard>(
      collector_options{"dirs", c.dir_interval_sec, c.jitter, c.timeout_sec}, nullptr);
  st.sizer = std::make_unique<dir_sizer>(c.dir_interval_sec * 0.9, 200000, nullptr);
  st.window = std::make_unique<series_store>(c.window_sec);
  auto host_id = opts.host_id;
  auto topic = opts.topics.host_stats(host_id);
  auto debug_topic = opts.topics.debug("collectors/" + host_id);
  auto window_topic = opts.topics.debug("window/" + host_id);
  auto window_get = window_topic + "/get";
  auto leases_topic = opts.topics.host_leases(host_id);
  lease_probe_options lpo;
  lpo.root = c.proc_root;
  st.leases = std::make_unique<lease_probe>(lpo);
  gpu_probe_options gpo;
  gpo.root = c.proc_root;
  st.gpus = std::make_unique<gpu_probe>(gpo);
  st.presence
      = std::make_unique<presence_probe>(presence_probe_options{c.presence_root, opts.logind});
  auto poll_presence = [self] {
    auto& s = self->state;
    try {
      s.owner = s.presence->sample(
          std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
              .count(),
          s.owner_why);
    } catch (const std::exception& e) {
      s.owner.reset();
      s.owner_why = std::string("owner presence: ") + e.what();
    }
  };
  poll_presence();

  // avg/min/max/p95 per series over the window, or over its last `range`.
  auto window_report = [=](std::optional<double> range, const std::string& only) {
    auto now = steady_seconds();
    auto all = self->state.window->summaries(now, range);
    nlohmann::json series = nlohmann::json::object();
    for (auto& [k, v] : all.items())
      if (only.empty() || k == only)
        series[k] = v;
    return nlohmann::json{{"v", schema_version},
                          {"host_id", host_id},
                          {"window_sec", opts.collect.window_sec},
                          {"range_sec", range ? nlohmann::json(*range) : nlohmann::json(nullptr)},
                          {"series", series}};
  };

  auto publish_debug = [=] {
    auto& s = self->state;
    nlohmann::json j
        = {{"v", schema_version},
           {"host_id", host_id},
           {"collected_at", utc_timestamp(unix_seconds_now())},
           {"collectors", {to_json(s.host_guard->status()), to_json(s.dir_guard->status())}}};
    self->send(bridge, publish_atom::value, json_message(debug_topic, j));
  };

  auto sample = [self] { return self->state.probe->sample(unix_seconds_now(), steady_seconds()); };
  // The first sample primes CPU and network deltas; the first publish follows
  // a short moment later so even it carries CPU %.
  try {
    sample();
  } catch (const std::exception& e) {
    log::warn("host collector: first sample threw {}", e.what());
  }
  self->delayed_send(self, std::chrono::milliseconds(250), tick_atom::value);
  self->delayed_send(self, presence_poll, presence_atom::value);
  self->send(bridge, subscribe_atom::value, window_get, caf::actor_cast<caf::actor>(self));
  if (!opts.leases_in_process)
    self->send(bridge, subscribe_atom::value, leases_topic, caf::actor_cast<caf::actor>(self));
  if (!opts.collect.dirs.empty())
    self->send(self, dir_tick_atom::value);

  // scheduler/host/<me>/leases: the leases whose processes run here.
  auto on_leases = [self](const mqtt_message& msg) {
    std::vector<leased_process_ref> refs;
    if (!msg.payload.empty()) {
      auto doc = decode(msg.payload, detect_format(msg.payload, msg.content_type));
      if (!doc || !doc->is_object() || !doc->contains("leases") || !(*doc)["leases"].is_array()) {
        log::warn("host collector: ignoring {}: expected {{\"leases\": [...]}}", msg.topic);
        return;
      }
      const auto* arr = &(*doc)["leases"];
      for (auto& l : *arr) {
        if (!l.is_object() || !l.contains("lease_id") || !l.at("lease_id").is_string())
          continue;
        std::optional<lease_process> p;
        if (read_lease_process(l, p) || !p)
          continue; // no process reported (yet): nothing to measure
        std::int64_t granted_at = 0;
        if (auto g = l.find("granted_at"); g != l.end() && g->is_number_integer())
          granted_at
              = std::clamp<std::int64_t>(g->template get<std::int64_t>(), 0, unix_seconds_now());
        refs.push_back({l.at("lease_id").template get<std::string>(), p->pid, p->pid_start,
                        p->cgroup, granted_at});
      }
    }
    log::debug("host collector: measuring {} leased process trees", refs.size());
    self->state.leases->set_leases(std::move(refs));
  };

  // One snapshot, published now.
  auto publish_snapshot = [=] {
    auto& s = self->state;
    host_snapshot snap;
    bool sampled = false;
    auto err = s.host_guard->run([&] {
      snap = sample();
      sampled = true;
    });
    if (!sampled) {
      snap.host_id = host_id;
      snap.collected_at = unix_seconds_now();
    }
    if (err) {
      snap.errors.push_back(*err);
      log::warn("host collector: {}", *err);
    }
    try {
      snap.leased = s.leases->sample(steady_seconds(), snap.cpu_count);
    } catch (const std::exception& e) {
      snap.errors.push_back(std::string("leased: ") + e.what());
    }
    // The GPUs after the leases: their processes of this very sample tell
    // the leases' GPU use from the owner's.
    try {
      std::set<int> leased_pids;
      if (snap.leased)
        for (auto& u : snap.leased->per_lease)
          if (u.refused.empty())
            for (auto& [pid, start] : s.leases->members(u.lease_id))
              leased_pids.insert(pid);
      auto g = s.gpus->sample(steady_seconds(), leased_pids);
      snap.gpus = std::move(g.gpus);
      snap.gpu_unavailable = std::move(g.unavailable);
    } catch (const std::exception& e) {
      snap.errors.push_back(std::string("gpus: ") + e.what());
    }
    snap.owner = s.owner;
    snap.owner_unavailable = s.owner ? std::string() : s.owner_why;
    s.owner_published = s.owner;
    for (auto& e : s.pending_errors)
      snap.errors.push_back(e);
    s.pending_errors.clear();
    auto now = steady_seconds();
    s.window->add("cpu.total_pct", now, snap.cpu_pct);
    s.window->add("mem.used_pct", now, snap.mem_used_pct);
    s.window->add("load.1m", now, snap.load1);
    s.window->add("cpu.temp_c", now, snap.cpu_temp_c);
    s.window->add("net.rx_bytes_per_sec", now, snap.net_rx_bytes_per_sec);
    s.window->add("net.tx_bytes_per_sec", now, snap.net_tx_bytes_per_sec);
    if (!snap.disks.empty())
      s.window->add("disk.free_pct", now, snap.disks.front().free_pct);
    auto j = to_json(snap);
    j["dirs"] = s.dirs;
    self->send(bridge, publish_atom::value, json_message(topic, j));
    if (err)
      publish_debug();
    if (now - s.last_window_publish >= 60) {
      s.last_window_publish = now;
      auto w = window_report(std::nullopt, {});
      w["last_2m"] = s.window->summaries(now, 120.0);
      self->send(bridge, publish_atom::value, json_message(window_topic, w));
      publish_debug();
    }
  };

  return {
      [=](tick_atom) {
        publish_snapshot();
        self->delayed_send(self, self->state.host_guard->next_delay(), tick_atom::value);
      },
      [=](presence_atom) {
        auto& s = self->state;
        poll_presence();
        // Input after a few seconds without any: tell the assessor now.
        bool was_away = !s.owner_published || s.owner_published->idle_sec >= presence_away_sec;
        if (s.owner && s.owner->idle_sec < presence_fresh_sec && was_away)
          publish_snapshot();
        self->delayed_send(self, presence_poll, presence_atom::value);
      },
      // A request on lull/debug/window/<host>/get: {"series": "cpu.total_pct",
      // "range_sec": 600, "reply_to": "...", "request_id": "..."}, all optional;
      // the reply goes to the v5 response topic, else reply_to, else the
      // window topic.
      // The lease manager of this lulld (leases_in_process).
      [=](leases_atom, std::vector<leased_process_ref>& refs) {
        log::debug("host collector: measuring {} leased process trees", refs.size());
        self->state.leases->set_leases(std::move(refs));
      },
      [=](inbound_atom, const mqtt_message& msg) {
        if (msg.topic == leases_topic) {
          on_leases(msg);
          return;
        }
        auto req = decode(msg.payload, detect_format(msg.payload, msg.content_type));
        nlohmann::json r = req && req->is_object() ? *req : nlohmann::json::object();
        std::optional<double> range;
        if (auto it = r.find("range_sec"); it != r.end() && it->is_number())
          range = it->get<double>();
        auto str = [&](const char* k, std::string dflt) {
          auto it = r.find(k);
          return it != r.end() && it->is_string() ? it->get<std::string>() : dflt;
        };
        auto only = str("series", {});
        auto out = window_report(range, only);
        if (r.contains("request_id"))
          out["request_id"] = r["request_id"];
        auto to = !msg.response_topic.empty() ? msg.response_topic : str("reply_to", window_topic);
        auto reply = json_message(to, out);
        reply.correlation_data = msg.correlation_data;
        self->send(bridge, publish_atom::value, std::move(reply));
      },
      [=](dir_tick_atom) {
        auto& s = self->state;
        auto err = s.dir_guard->run([&] {
          auto out = nlohmann::json::array();
          for (auto& d : opts.collect.dirs) {
            auto& size = s.sizer->size(d, s.dir_guard->deadline());
            out.push_back(to_json(size));
            if (size.error && size.bytes)
              s.pending_errors.push_back("dirs: " + d + ": " + *size.error);
          }
          s.dirs = std::move(out);
        });
        if (err) {
          s.pending_errors.push_back(*err);
          log::warn("host collector: {}", *err);
          publish_debug();
        }
        self->delayed_send(self, s.dir_guard->next_delay(), dir_tick_atom::value);
      },
  };
}

} // namespace

caf::actor spawn_host_collector(caf::actor_system& sys, caf::actor bridge,
                                host_collector_options opts) {
  return sys.spawn(host_collector_impl, std::move(bridge), std::move(opts));
}

} // namespace lull
