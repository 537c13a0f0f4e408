#include "actors/queue_dispatcher.hpp"

#include <map>

#include "actors/actor_util.hpp"
#include "actors/atoms.hpp"
#include "messages/util.hpp"
#include "src/store/group_commit.hpp"
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
  write_failures writes{"queue dispatcher", "job"};
  bool told_failing = false;
  std::uint64_t told_errors = 0;
  /// Lease outcomes whose job change could not be written: applied again
  /// each tick until it is (the lease itself has ended for good).
  std::vector<lease_outcome> retry_outcomes;
  /// The group commit: what the messages since the last write changed, and
  /// the lease outcomes among them (retried if the write fails).
  queue_output staged;
  std::vector<lease_outcome> staged_outcomes;
  bool commit_scheduled = false;
  std::map<std::string, std::size_t> told_depths; ///< last depths sent for scheduler/status
  std::uint64_t told_bytes = 0, told_refused = 0, told_dead = 0;
  bool told = false;
  static inline const char* name = "queue_dispatcher";
};

using self_ptr = caf::stateful_actor<dispatcher_state>*;

void stage(self_ptr self, queue_output out);

/// Persists what changed, then publishes, asks and revokes. When the write
/// fails the changes are rolled back and every request they answered gets
/// an InternalError naming the cause: nothing is acknowledged that was not
/// written, and no worker is left waiting. False when the write failed.
bool finish(self_ptr self, const caf::actor& bridge, const caf::actor& leases,
            queue_output out) {
  auto& st = self->state;
  auto dirty = st.service->queue().take_dirty();
  std::optional<std::string> failed;
  if (!dirty.empty())
    failed = write_batch(*st.db, [&] {
      sqlite_error err;
      for (auto* j : dirty)
        if ((err = st.db->save_job(j->job_id, to_string(j->state), j->updated_at,
                                   to_json(*j).dump())))
          break;
      return err;
    });
  if (failed) {
    st.writes.failed(dirty.size(), *failed, unix_seconds_now());
    out = st.service->roll_back(std::move(out), *failed);
  } else {
    st.service->committed(out);
    if (!dirty.empty())
      st.writes.worked();
  }
  for (auto& w : out.warnings)
    log::warn("queue dispatcher: {}", w);
  for (auto& m : out.publish)
    self->send(bridge, publish_atom::value, std::move(m));
  auto depths = st.service->depths();
  auto& queue = st.service->queue();
  if (!st.told || depths != st.told_depths || st.told_errors != st.writes.count()
      || st.told_failing != st.writes.failing() || st.told_bytes != queue.live_bytes()
      || st.told_refused != queue.refused() || st.told_dead != queue.dead()) {
    std::size_t queued = 0;
    for (auto& [p, n] : depths)
      queued += n;
    st.told_depths = depths;
    st.told = true;
    st.told_errors = st.writes.count();
    st.told_failing = st.writes.failing();
    st.told_bytes = queue.live_bytes();
    st.told_refused = queue.refused();
    st.told_dead = queue.dead();
    queue_depths q;
    q.dead = queue.dead();
    q.payload_bytes = queue.live_bytes();
    q.refused = queue.refused();
    q.queued = queued;
    for (auto& [p, n] : depths)
      q.by_priority[p] = n;
    q.write_errors = st.writes.count();
    q.last_error = st.writes.last_error();
    q.failing = st.writes.failing();
    self->send(leases, queue_atom::value, std::move(q));
  }
  for (auto& [lease, reason] : out.revoke)
    self->send(leases, revoke_atom::value, lease, reason);
  for (auto& ask : out.asks) {
    auto id = ask.ask_id;
    self->request(leases, std::chrono::seconds(5), job_lease_atom::value, ask)
      .then(
        [=](const lease_grant_reply& grant) {
          stage(self, self->state.service->on_lease_reply(id, grant));
        },
        [=](caf::error& e) {
          stage(self, self->state.service->on_lease_unanswered(
                        id, "lease manager did not answer: " + to_string(e)));
        });
  }
  return !failed;
}

/// Adds `out` to the group commit, which runs once the messages already in
/// the mailbox are handled: a burst of releases, takes and submits costs one
/// transaction, and a completed job's write follows its lease's release by
/// one batch, not by a queue of single writes (integration_queue's kill -9
/// measures what ran twice).
// From here on the lease manager tells this actor how its jobs' leases go;
// it answers with the restored jobs' leases that ended while lulld was down.
// Asked again until it answers: a lease manager slow to start (thousands of
// leases restored) must not leave those jobs leased for good.
void watch_leases(self_ptr self, const caf::actor& leases) {
  self->request(leases, std::chrono::seconds(30), watch_atom::value, caf::actor{self},
                self->state.service->held_leases())
    .then(
      [=](const std::set<std::string>& gone) {
        if (!gone.empty())
          log::info("queue dispatcher: {} jobs' leases ended while lulld was down", gone.size());
        stage(self, self->state.service->on_leases_gone(gone));
      },
      [=](caf::error& e) {
        log::error("queue dispatcher: the lease manager did not take the watch ({}); asking again",
                   to_string(e));
        watch_leases(self, leases);
      });
}

void stage(self_ptr self, queue_output out) {
  auto& st = self->state.staged;
  for (auto& m : out.publish)
    st.publish.push_back(std::move(m));
  for (auto& a : out.asks)
    st.asks.push_back(std::move(a));
  for (auto& r : out.revoke)
    st.revoke.push_back(std::move(r));
  for (auto& w : out.warnings)
    st.warnings.push_back(std::move(w));
  for (auto& a : out.acks)
    st.acks.push_back(std::move(a));
  if (!self->state.commit_scheduled) {
    self->state.commit_scheduled = true;
    self->send(self, commit_atom::value);
  }
}

caf::behavior dispatcher_impl(self_ptr self, caf::actor bridge, caf::actor leases,
                              std::shared_ptr<store> db, queue_dispatcher_options opts) {
  auto& st = self->state;
  st.db = std::move(db);
  auto sopts = opts.service;
  sopts.hold_acks = true; // replies wait for the job's write
  st.service = std::make_unique<queue_service>(sopts, opts.queue, system_queue_clock());
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
  self->send(bridge, online_atom::value, caf::actor{self});
  self->send(bridge, offline_atom::value, caf::actor{self});
  self->delayed_send(self, opts.tick, tick_atom::value);
  watch_leases(self, leases);
  return {
    [=](inbound_atom, const mqtt_message& msg) {
      guard_inbound("queue dispatcher", msg,
                    [&] { stage(self, self->state.service->handle(msg)); });
    },
    [=](commit_atom) {
      auto& s = self->state;
      s.commit_scheduled = false;
      auto outcomes = std::exchange(s.staged_outcomes, {});
      if (!finish(self, bridge, leases, std::exchange(s.staged, {})))
        for (auto& o : outcomes)
          s.retry_outcomes.push_back(std::move(o));
    },
    [=](tick_atom) {
      for (auto& o : std::exchange(self->state.retry_outcomes, {})) {
        stage(self, self->state.service->on_lease_outcome(o));
        self->state.staged_outcomes.push_back(std::move(o));
      }
      stage(self, self->state.service->tick());
      self->delayed_send(self, opts.tick, tick_atom::value);
    },
    [=](offline_atom) { self->state.service->set_bus_up(false); },
    [=](online_atom) {
      self->state.service->set_bus_up(true);
      stage(self, self->state.service->tick());
    },
    [=](const lease_outcome& o) {
      stage(self, self->state.service->on_lease_outcome(o));
      self->state.staged_outcomes.push_back(o);
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
  // Its own thread: a job write that waits on SQLite holds up no other actor.
  return sys.spawn<caf::detached>(dispatcher_impl, std::move(bridge), std::move(lease_manager), std::move(db),
                   std::move(opts));
}

} // namespace lull
