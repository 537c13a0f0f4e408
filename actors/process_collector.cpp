#include "actors/process_collector.hpp"

#include "actors/actor_util.hpp"
#include "actors/collector_atoms.hpp"
#include "src/log.hpp"
#include "src/stats/collector_guard.hpp"

namespace lull {

namespace {

struct process_collector_state {
  std::unique_ptr<process_probe> probe;
  std::unique_ptr<collector_guard> guard;
  static inline const char* name = "process_collector";
};

caf::behavior process_collector_impl(caf::stateful_actor<process_collector_state>* self,
                                     caf::actor bridge, process_collector_options opts) {
  auto& st = self->state;
  auto& c = opts.collect;
  process_probe_options probe;
  probe.root = c.proc_root;
  probe.host_id = opts.host_id;
  probe.watches = {"self"}; // lulld itself, always
  probe.watches.insert(probe.watches.end(), c.processes.begin(), c.processes.end());
  st.probe = std::make_unique<process_probe>(probe);
  st.guard = std::make_unique<collector_guard>(
    collector_options{"process", c.process_interval_sec, c.jitter, c.timeout_sec}, nullptr);
  auto host_id = opts.host_id;
  auto debug_topic = opts.topics.debug("collectors/" + host_id + "/process");
  // Prime CPU % so the first publish carries it.
  try {
    st.probe->sample(unix_seconds_now(), steady_seconds());
  } catch (const std::exception& e) {
    log::warn("process collector: first sample threw {}", e.what());
  }
  self->delayed_send(self, std::chrono::milliseconds(300), tick_atom::value);
  return {
    [=](tick_atom) {
      auto& s = self->state;
      std::vector<process_stats> out;
      auto err = s.guard->run([&] { out = s.probe->sample(unix_seconds_now(), steady_seconds()); });
      for (auto& p : out) {
        if (err)
          p.errors.push_back(*err);
        self->send(bridge, publish_atom::value,
                   json_message(opts.topics.process_stats(host_id, p.name), to_json(p)));
      }
      if (err) {
        log::warn("process collector: {}", *err);
        nlohmann::json j = {{"v", schema_version},
                            {"host_id", host_id},
                            {"collected_at", utc_timestamp(unix_seconds_now())},
                            {"collectors", {to_json(s.guard->status())}}};
        self->send(bridge, publish_atom::value, json_message(debug_topic, j));
      }
      self->delayed_send(self, s.guard->next_delay(), tick_atom::value);
    },
  };
}

} // namespace

caf::actor spawn_process_collector(caf::actor_system& sys, caf::actor bridge,
                                   process_collector_options opts) {
  return sys.spawn(process_collector_impl, std::move(bridge), std::move(opts));
}

} // namespace lull
