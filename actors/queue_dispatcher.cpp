#include "actors/queue_dispatcher.hpp"

#include <map>

#include "actors/actor_util.hpp"
#include "actors/atoms.hpp"
#include "messages/util.hpp"
#include "src/log.hpp"

namespace lull {

namespace {

/// Unguessable, like lease ids (same kernel CSPRNG), and shorter.
std::string random_job_id() { return "j-" + random_lease_id().substr(0, 16); }

queue_clock system_queue_clock() {
  return {steady_seconds, unix_seconds_now, random_job_id};
}

struct dispatcher_state {
  std::unique_ptr<queue_service> service;
  std::shared_ptr<store> db;
  std::uint64_t persist_errors = 0;
  std::map<std::string, std::size_t> told_depths; ///< last depths sent for scheduler/status
  bool told = false;
  static inline const char* name = "queue_dispatcher";
};

using self_ptr = caf::stateful_actor<dispatcher_state>*;

/// Persists what changed, then publishes, asks and revokes. When the write
/// fails nothing is acknowledged: the producer's retry (same idempotency
/// key) finds the job.
void finish(self_ptr self, const caf::actor& bridge, const caf::actor& leases,
            queue_output out) {
  auto& st = self->state;
  auto dirty = st.service->queue().take_dirty();
  if (!dirty.empty()) {
    auto err = st.db->begin();
    for (auto* j : dirty) {
      if (err)
        break;
      err = st.db->save_job(j->job_id, to_string(j->state), j->updated_at, to_json(*j).dump());
    }
    if (!err)
      err = st.db->commit();
    if (err) {
      st.db->rollback();
      ++st.persist_errors;
      log::error("queue dispatcher: cannot persist {} jobs ({}); not acknowledging",
                 dirty.size(), err.message);
      return;
    }
  }
  for (auto& w : out.warnings)
    log::warn("queue dispatcher: {}", w);
  for (auto& m : out.publish)
    self->send(bridge, publish_atom::value, std::move(m));
  auto depths = st.service->depths();
  if (!st.told || depths != st.told_depths) {
    std::size_t queued = 0;
    for (auto& [p, n] : depths)
      queued += n;
    st.told_depths = depths;
    st.told = true;
    queue_depths q;
    q.queued = queued;
    for (auto& [p, n] : depths)
      q.by_priority[p] = n;
    self->send(leases, queue_atom::value, std::move(q));
  }
  for (auto& [lease, reason] : out.revoke)
    self->send(leases, revoke_atom::value, lease, reason);
  for (auto& ask : out.asks) {
    auto id = ask.ask_id;
    self->request(leases, std::chrono::seconds(5), job_lease_atom::value, ask)
      .then(
        [=](const lease_grant_reply& grant) {
          finish(self, bridge, leases, self->state.service->on_lease_reply(id, to_json(grant)));
        },
        [=](caf::error& e) {
          finish(self, bridge, leases,
                 self->state.service->on_lease_reply(
                   id, {{"approved", false},
                        {"reason", "lease manager did not answer: " + to_string(e)}}));
        });
  }
}

caf::behavior dispatcher_impl(self_ptr self, caf::actor bridge, caf::actor leases,
                              std::shared_ptr<store> db, queue_dispatcher_options opts) {
  auto& st = self->state;
  st.db = std::move(db);
  st.service = std::make_unique<queue_service>(opts.service, opts.queue, system_queue_clock());
  auto now = unix_seconds_now();
  st.db->purge_jobs(now - opts.finished_retention_sec);
  int restored = 0, bad = 0;
  for (auto& rec : st.db->load_jobs(now - 86400)) {
    try {
      st.service->queue().restore(job_from_json(nlohmann::json::parse(rec)));
      ++restored;
    } catch (const std::exception& e) {
      ++bad;
      log::error("queue dispatcher: skipping an unreadable job record: {}", e.what());
    }
  }
  log::info("queue dispatcher: restored {} jobs{}", restored,
            bad ? " (" + std::to_string(bad) + " unreadable)" : std::string());
  for (auto& f : st.service->filters())
    self->send(bridge, subscribe_atom::value, f, caf::actor{self});
  self->delayed_send(self, opts.tick, tick_atom::value);
  // From here on the lease manager tells this actor how its jobs' leases go;
  // it answers with the restored jobs' leases that ended while lulld was down.
  self->request(leases, std::chrono::seconds(30), watch_atom::value, caf::actor{self},
                st.service->held_leases())
    .then(
      [=](const std::set<std::string>& gone) {
        if (!gone.empty())
          log::info("queue dispatcher: {} jobs' leases ended while lulld was down", gone.size());
        finish(self, bridge, leases, self->state.service->on_leases_gone(gone));
      },
      [=](caf::error& e) {
        log::error("queue dispatcher: the lease manager did not take the watch: {}",
                   to_string(e));
      });
  return {
    [=](inbound_atom, const mqtt_message& msg) {
      guard_inbound("queue dispatcher", msg,
                    [&] { finish(self, bridge, leases, self->state.service->handle(msg)); });
    },
    [=](tick_atom) {
      finish(self, bridge, leases, self->state.service->tick());
      self->delayed_send(self, opts.tick, tick_atom::value);
    },
    [=](const lease_outcome& o) {
      finish(self, bridge, leases, self->state.service->on_lease_outcome(o));
    },
    [=](stats_atom) {
      auto d = self->state.service->depths();
      return caf::make_message(static_cast<std::uint64_t>(d["high"]),
                               static_cast<std::uint64_t>(d["normal"]),
                               static_cast<std::uint64_t>(d["low"]),
                               static_cast<std::uint64_t>(d["background"]));
    },
  };
}

} // namespace

caf::actor spawn_queue_dispatcher(caf::actor_system& sys, caf::actor bridge,
                                  caf::actor lease_manager, std::shared_ptr<store> db,
                                  queue_dispatcher_options opts) {
  return sys.spawn(dispatcher_impl, std::move(bridge), std::move(lease_manager), std::move(db),
                   std::move(opts));
}

} // namespace lull
