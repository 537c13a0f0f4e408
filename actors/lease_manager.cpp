#include "actors/lease_manager.hpp"

#include <cmath>

#include "actors/actor_util.hpp"
#include "actors/atoms.hpp"
#include "messages/util.hpp"
#include "src/log.hpp"

namespace lull {

namespace {

using commit_atom = caf::atom_constant<caf::atom("commit")>;

struct lease_manager_state {
  std::unique_ptr<lease_service> service;
  caf::actor_clock::time_point last_status{};
  /// Output waiting for the next commit: nothing leaves before it is durable.
  std::vector<mqtt_message> pending;
  std::vector<std::pair<caf::response_promise, lease_grant_reply>> pending_replies;
  /// Actors told every lease_outcome (the queue dispatcher).
  std::vector<caf::actor> watchers;
  bool commit_scheduled = false;
  std::uint64_t persist_errors = 0;
  static inline const char* name = "lease_manager";
};

using self_ptr = caf::stateful_actor<lease_manager_state>*;

/// Writes the leases that changed and the fencing counter in one
/// transaction. False when the write failed.
bool persist(self_ptr self, const std::shared_ptr<store>& db) {
  auto& table = self->state.service->table();
  auto dirty = table.take_dirty();
  if (!db || dirty.empty())
    return true;
  // The same clock the table measures TTLs on.
  auto now_mono =
    std::chrono::duration<double>(self->clock().now().time_since_epoch()).count();
  auto now_wall = unix_seconds_now();
  auto err = db->begin();
  for (auto& id : dirty) {
    if (err)
      break;
    auto it = table.active().find(id);
    if (it == table.active().end()) {
      err = db->delete_lease(id);
      continue;
    }
    auto& r = it->second;
    auto remaining = std::max(0.0, r.expires_mono - now_mono);
    err = db->save_lease({r.lease_id, r.worker_id, r.host_id, "active",
                          now_wall + static_cast<std::int64_t>(std::ceil(remaining)),
                          to_json(r).dump()});
  }
  if (!err)
    err = db->save_counter("fencing_token", static_cast<std::int64_t>(table.fencing_token()));
  if (!err)
    err = db->commit();
  if (err) {
    db->rollback();
    ++self->state.persist_errors;
    log::error("lease manager: cannot persist {} leases: {}; not acknowledging them",
               dirty.size(), err.message);
    return false;
  }
  return true;
}

caf::behavior lease_manager_impl(self_ptr self, caf::actor bridge, lease_manager_options opts) {
  auto& st = self->state;
  // TTLs run on the actor system's clock: steady_clock in lulld, the
  // test_coordinator's clock under test, so expiry tests need no sleeps.
  auto env = lease_env::system();
  env.mono_sec = [self] {
    return std::chrono::duration<double>(self->clock().now().time_since_epoch()).count();
  };
  auto first = opts.first_fencing_token;
  if (opts.db)
    first = std::max<std::uint64_t>(first, static_cast<std::uint64_t>(
                                             opts.db->load_counter("fencing_token")));
  st.service = std::make_unique<lease_service>(opts.service, std::move(env), first);
  if (opts.db) {
    int restored = 0;
    auto now = unix_seconds_now();
    for (auto& rec : opts.db->load_leases()) {
      try {
        auto r = lease_record_from_json(nlohmann::json::parse(rec.record));
        st.service->table().restore(std::move(r), static_cast<double>(rec.expires_at - now));
        ++restored;
      } catch (const std::exception& e) {
        log::error("lease manager: skipping unreadable lease record {}: {}", rec.id, e.what());
      }
    }
    persist(self, opts.db); // records of leases that expired while down go away
    log::info("lease manager: restored {} leases, fencing token continues above {}", restored,
              st.service->table().fencing_token());
  }
  for (auto& f : st.service->filters())
    self->send(bridge, subscribe_atom::value, f, caf::actor{self});
  self->send(bridge, online_atom::value, caf::actor{self});
  self->send(bridge, offline_atom::value, caf::actor{self});
  self->delayed_send(self, opts.tick, tick_atom::value);
  log::info("lease manager: {} mode, TTL {}s, lock_delay {}s",
            opts.service.secure ? "secure (identity from topics)" : "open",
            opts.service.policy.ttl_sec, opts.service.policy.lock_delay_sec);

  // Group commit: output is held until a commit message, queued behind
  // whatever else is already in the mailbox, writes it all at once.
  auto stage = [self](std::vector<mqtt_message>&& out) {
    auto& s = self->state;
    for (auto& m : out)
      s.pending.push_back(std::move(m));
    if (!s.commit_scheduled) {
      s.commit_scheduled = true;
      self->send(self, commit_atom::value);
    }
  };
  auto publish_status = [self, bridge] {
    self->state.last_status = self->clock().now();
    self->send(bridge, publish_atom::value, self->state.service->status_message());
  };
  return {
    [=](inbound_atom, const mqtt_message& msg) {
      guard_inbound("lease manager", msg, [&] { stage(self->state.service->handle(msg)); });
    },
    [=](commit_atom) {
      auto& s = self->state;
      s.commit_scheduled = false;
      for (auto& m : s.service->take_host_leases())
        s.pending.push_back(std::move(m));
      bool ok = persist(self, opts.db);
      for (auto& m : s.pending)
        if (ok || m.topic == opts.service.topics.scheduler_events())
          self->send(bridge, publish_atom::value, std::move(m));
      s.pending.clear();
      // Outcomes go whether or not the write worked, like the events: the
      // lease did end in memory.
      for (auto& o : s.service->take_outcomes())
        for (auto& w : s.watchers)
          self->send(w, o);
      for (auto& [rp, reply] : s.pending_replies) {
        if (!ok) {
          reply = lease_grant_reply{};
          reply.reason = "lease could not be stored";
          reply.retry_after_sec = 5;
        }
        rp.deliver(std::move(reply));
      }
      s.pending_replies.clear();
    },
    [=](tick_atom) {
      auto& s = self->state;
      stage(s.service->tick());
      if (self->clock().now() - s.last_status >= opts.status_interval
          && s.service->take_status_dirty())
        publish_status();
      self->delayed_send(self, opts.tick, tick_atom::value);
    },
    [=](offline_atom) {
      auto& table = self->state.service->table();
      if (!table.expiry_paused())
        log::warn("lease manager: broker unreachable; no lease expires until lulld is back");
      table.bus_disconnected();
    },
    [=](online_atom) {
      auto& table = self->state.service->table();
      if (table.expiry_paused()) {
        table.bus_reconnected();
        log::info("lease manager: broker reachable again; {} active leases renewed for a full TTL",
                  table.active().size());
        stage(self->state.service->tick());
      }
      publish_status();
    },
    [=](job_lease_atom, const lease_ask& ask) {
      auto rp = self->make_response_promise();
      auto grant = self->state.service->table().request(to_lease_request(ask), ask.worker_id);
      self->state.pending_replies.emplace_back(rp, std::move(grant));
      stage(self->state.service->tick()); // publishes the decision's event and notice
      return rp;
    },
    [=](revoke_atom, const std::string& lease_id, const std::string& reason) {
      auto r = self->state.service->table().revoke(lease_id, "", reason);
      if (auto* e = std::get_if<lease_error>(&r))
        log::info("lease manager: revoke of {} not needed: {}", lease_id, e->message);
      stage(self->state.service->tick());
    },
    [=](queue_atom, const queue_depths& q) {
      self->state.service->set_queue_status({{"queued", q.queued}, {"depths", q.by_priority}});
    },
    [=](watch_atom, const caf::actor& watcher, const std::set<std::string>& held) {
      auto& st = self->state;
      st.watchers.push_back(watcher);
      std::set<std::string> gone;
      for (auto& id : held)
        if (st.service->table().active().count(id) == 0)
          gone.insert(id);
      return gone;
    },
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
