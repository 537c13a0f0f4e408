#include "actors/worker_registry.hpp"

#include "actors/actor_util.hpp"
#include "actors/collector_atoms.hpp"
#include "src/log.hpp"
#include "src/stats/collector_guard.hpp"
#include "src/stats/dir_size.hpp"
#include "src/workers/worker_registry.hpp"

namespace lull {

std::string worker_summary_topic(const topic_names& topics, const std::string& host_id) {
  return topics.full("stats/workers/" + host_id);
}

namespace {

struct worker_registry_state {
  std::unique_ptr<worker_registry> registry;
  std::unique_ptr<dir_sizer> sizer;
  static inline const char* name = "worker_registry";
};

caf::behavior worker_registry_impl(caf::stateful_actor<worker_registry_state>* self,
                                   caf::actor bridge, worker_registry_options opts) {
  auto& st = self->state;
  st.registry = std::make_unique<worker_registry>(opts.collect.worker_stale_after_sec);
  st.sizer = std::make_unique<dir_sizer>(opts.collect.dir_interval_sec, 100000, nullptr);
  auto prefix = opts.topics.worker_status("");
  auto summary_topic = worker_summary_topic(opts.topics, opts.host_id);
  auto publish_summary = [=] {
    auto& s = self->state;
    auto j = s.registry->summary(opts.host_id, unix_seconds_now());
    for (auto& [id, w] : s.registry->workers()) {
      if (!w.runtime_dir)
        continue;
      auto& size = s.sizer->size(*w.runtime_dir, steady_seconds() + 0.5);
      j["workers"][id]["runtime_dir_bytes"] = size.bytes ? nlohmann::json(*size.bytes)
                                                         : nlohmann::json(nullptr);
    }
    self->send(bridge, publish_atom::value, json_message(summary_topic, j, true, 1));
  };
  self->send(bridge, subscribe_atom::value, opts.topics.worker_status_filter(),
             caf::actor_cast<caf::actor>(self));
  self->delayed_send(self, ms_of(opts.collect.worker_interval_sec), tick_atom::value);
  return {
    [=](inbound_atom, const mqtt_message& msg) {
      auto start = steady_seconds();
      if (msg.topic.size() <= prefix.size() || msg.topic.compare(0, prefix.size(), prefix) != 0)
        return;
      auto id = msg.topic.substr(prefix.size());
      if (!valid_id(id)) {
        log::warn("worker registry: ignoring {}: the worker id is not [a-zA-Z0-9_-]{{1,64}}",
                  msg.topic);
        self->send(bridge, handled_atom::value, steady_seconds() - start, false);
        return;
      }
      worker_update up;
      if (!guard_inbound("worker registry", msg, [&] {
            up = self->state.registry->on_status(id, msg.payload, start, unix_seconds_now());
          })) {
        self->send(bridge, handled_atom::value, steady_seconds() - start, false);
        return;
      }
      if (!up.ok)
        log::warn("worker registry: rejected {}", up.error);
      else if (up.online_changed || up.removed)
        log::info("worker registry: {} is {}", id,
                  up.removed ? "forgotten" : up.now_online ? "online" : "offline");
      if (up.ok)
        publish_summary();
      self->send(bridge, handled_atom::value, steady_seconds() - start, up.ok);
    },
    [=](tick_atom) {
      for (auto& id : self->state.registry->check_stale(steady_seconds()))
        log::warn("worker registry: {} is stale (silent for over {} s)", id,
                  opts.collect.worker_stale_after_sec);
      publish_summary();
      self->delayed_send(self, ms_of(opts.collect.worker_interval_sec), tick_atom::value);
    },
  };
}

} // namespace

caf::actor spawn_worker_registry(caf::actor_system& sys, caf::actor bridge,
                                 worker_registry_options opts) {
  return sys.spawn(worker_registry_impl, std::move(bridge), std::move(opts));
}

} // namespace lull
