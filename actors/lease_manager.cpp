#include "actors/lease_manager.hpp"

#include <algorithm>
#include <cmath>

#include "actors/actor_util.hpp"
#include "actors/atoms.hpp"
#include "messages/util.hpp"
#include "src/store/group_commit.hpp"
#include "src/log.hpp"

namespace lull {

namespace {

struct lease_manager_state {
  std::unique_ptr<lease_service> service;
  caf::actor_clock::time_point last_status{};
  /// Output waiting for the next commit: nothing leaves before it is durable.
  std::vector<mqtt_message> pending;
  std::vector<std::pair<caf::response_promise, lease_grant_reply>> pending_replies;
  /// Actors told every lease_outcome (the queue dispatcher).
  std::vector<caf::actor> watchers;
  bool commit_scheduled = false;
  /// The broker has been reachable once: before that, "unreachable" is a
  /// start, not an outage, and is not worth a warning.
  bool ever_online = false;
  write_failures writes{"lease manager", "lease"}; ///< of lease changes
  std::int64_t last_error_at = 0; ///< when shown_error happened
  bool queue_failing = false; ///< the last job write failed (told by the queue dispatcher)
  std::uint64_t queue_write_errors = 0; ///< told by the queue dispatcher
  std::uint64_t queued_jobs = 0;        ///< told by the queue dispatcher
  std::string shown_error; ///< the latest failure's cause, leases' or jobs'
  nlohmann::json persister = nullptr; ///< its backlog, as it last told
  caf::actor persister_actor; ///< told store.failing for the health rollup
  bool told_failing = false;
  static inline const char* name = "lease_manager";
};

using self_ptr = caf::stateful_actor<lease_manager_state>*;

/// Writes leases `dirty` and the fencing counter in one transaction; the
/// error when it failed (and was rolled back).
std::optional<std::string> persist(self_ptr self, const std::shared_ptr<store>& db,
                                   const std::vector<std::string>& dirty) {
  auto& table = self->state.service->table();
  if (!db || dirty.empty())
    return std::nullopt;
  // The same clock the table measures TTLs on.
  auto now_mono =
    std::chrono::duration<double>(self->clock().now().time_since_epoch()).count();
  auto now_wall = unix_seconds_now();
  return write_batch(*db, [&] {
    for (auto& id : dirty) {
      auto it = table.active().find(id);
      auto err = it == table.active().end()
                   ? db->delete_lease(id)
                   : db->save_lease({it->second.lease_id, it->second.worker_id,
                                     it->second.host_id, "active",
                                     now_wall + static_cast<std::int64_t>(std::ceil(std::max(
                                                  0.0, it->second.expires_mono - now_mono))),
                                     to_json(it->second).dump()});
      if (err)
        return err;
    }
    return db->save_counter("fencing_token", static_cast<std::int64_t>(table.fencing_token()));
  });
}

/// A lease write failed: counted and logged (write_failures), and shown.
void note_failure(self_ptr self, std::size_t n, const std::string& cause) {
  auto& st = self->state;
  st.writes.failed(n, cause, unix_seconds_now());
  st.shown_error = "leases: " + cause;
  st.last_error_at = st.writes.last_error_at();
}

/// Tells the persister (for the health rollup) when store.failing changed.
void tell_failing(self_ptr self) {
  auto& st = self->state;
  bool failing = st.writes.failing() || st.queue_failing;
  if (!st.persister_actor || failing == st.told_failing)
    return;
  st.told_failing = failing;
  self->send(st.persister_actor, store_atom::value, failing,
             failing ? st.shown_error : std::string());
}

nlohmann::json store_status(const lease_manager_state& st) {
  auto& last = st.shown_error;
  return {{"lease_write_errors", st.writes.count()},
          {"job_write_errors", st.queue_write_errors},
          {"failing", st.writes.failing() || st.queue_failing},
          {"last_error", last.empty() ? nlohmann::json(nullptr) : nlohmann::json(last)},
          {"last_error_at", st.last_error_at ? nlohmann::json(utc_timestamp(st.last_error_at))
                                             : nlohmann::json(nullptr)},
          {"persister", st.persister}};
}

/// The processes of the active leases on `host` that named one, for the
/// host collector in this lulld.
std::vector<leased_process_ref> local_processes(const lease_table& table, const std::string& host) {
  std::vector<leased_process_ref> out;
  for (auto& [id, r] : table.active())
    if (r.host_id == host && r.process)
      out.push_back({r.lease_id, r.process->pid, r.process->pid_start, r.process->cgroup,
                     r.granted_at});
  return out;
}

caf::behavior lease_manager_impl(self_ptr self, caf::actor bridge, lease_manager_options opts) {
  auto& st = self->state;
  // TTLs run on the actor system's clock: steady_clock in lulld, the
  // test_coordinator's clock under test, so expiry tests need no sleeps.
  auto env = lease_env::system();
  env.mono_sec = [self] {
    return std::chrono::duration<double>(self->clock().now().time_since_epoch()).count();
  };
  // Tokens continue above the last one the store kept.
  std::uint64_t first = 0;
  if (opts.db)
    first = static_cast<std::uint64_t>(opts.db->load_counter("fencing_token"));
  auto sopts = opts.service;
  sopts.hold_acks = true; // acknowledgements wait for the group commit's write
  st.service = std::make_unique<lease_service>(sopts, std::move(env), first);
  st.service->set_store_status(store_status(st));
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
    // Records of leases that expired while down go away.
    auto dirty = st.service->table().take_dirty();
    if (auto err = persist(self, opts.db, dirty)) {
      note_failure(self, dirty.size(), *err);
      st.service->roll_back(dirty, *err);
    } else {
      st.service->committed(dirty);
    }
    st.service->table().all_committed();
    log::info("lease manager: restored {} leases, fencing token continues above {}", restored,
              st.service->table().fencing_token());
  }
  for (auto& f : st.service->filters())
    self->send(bridge, subscribe_atom::value, f, caf::actor{self});
  self->send(bridge, online_atom::value, caf::actor{self});
  self->send(bridge, offline_atom::value, caf::actor{self});
  self->delayed_send(self, opts.tick, tick_atom::value);
  log::info("lease manager: {} mode, TTL {}s, lock_delay {}s",
            opts.service.security.secure ? "secure (identity from topics)" : "open",
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
  auto local_leases = opts.local_host.empty() ? std::string()
                                             : opts.service.topics.host_leases(opts.local_host);
  auto publish_status = [self, bridge] {
    self->state.last_status = self->clock().now();
    self->state.service->set_inbound_shed(inbound_shed().load(std::memory_order_relaxed));
    self->send(bridge, publish_atom::value, self->state.service->status_message());
  };
  return {
    [=](inbound_atom, const mqtt_message& msg) {
      guard_inbound("lease manager", msg, [&] { stage(self->state.service->handle(msg)); });
    },
    [=](commit_atom) {
      auto& s = self->state;
      s.commit_scheduled = false;
      auto dirty = s.service->table().take_dirty();
      auto err = persist(self, opts.db, dirty);
      if (!err) {
        // Only a write that happened says the disk works again: a commit
        // with nothing to write proves nothing.
        if (!dirty.empty() && opts.db && s.writes.worked()) {
          s.service->set_store_status(store_status(s));
          tell_failing(self);
        }
        // Acknowledgements first, then notices, events and host lists.
        for (auto& m : s.service->committed(dirty))
          self->send(bridge, publish_atom::value, std::move(m));
        for (auto& m : s.service->take_host_leases())
          s.pending.push_back(std::move(m));
        for (auto& m : s.pending) {
          if (opts.local_agent && m.topic == local_leases)
            self->send(opts.local_agent, leases_atom::value,
                       local_processes(s.service->table(), opts.local_host));
          self->send(bridge, publish_atom::value, std::move(m));
        }
        for (auto& o : s.service->take_outcomes())
          for (auto& w : s.watchers)
            self->send(w, o);
      } else {
        // Nothing of the batch happened: its leases are as stored, its
        // requests are answered InternalError, its notices and events are
        // dropped. Pause changes are not lease state and still go out.
        note_failure(self, dirty.size(), *err);
        for (auto& m : s.service->roll_back(dirty, *err))
          self->send(bridge, publish_atom::value, std::move(m));
        auto control = opts.service.topics.full("scheduler/control/");
        for (auto& m : s.pending)
          if (m.topic.compare(0, control.size(), control) == 0)
            self->send(bridge, publish_atom::value, std::move(m));
        s.service->set_store_status(store_status(s));
        tell_failing(self);
      }
      s.pending.clear();
      for (auto& [rp, reply] : s.pending_replies) {
        if (err) {
          reply = lease_grant_reply{};
          reply.reason = "lease could not be stored: " + *err;
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
      if (!table.expiry_paused()) {
        if (self->state.ever_online)
          log::warn("lease manager: broker unreachable; no lease expires until lulld is back");
        else
          log::debug("lease manager: not connected to the broker yet; no lease expires "
                     "until it is");
      }
      table.bus_disconnected();
    },
    [=](online_atom) {
      bool first = !self->state.ever_online;
      self->state.ever_online = true;
      auto& table = self->state.service->table();
      if (table.expiry_paused()) {
        table.bus_reconnected();
        if (!first)
          log::info("lease manager: broker reachable again; {} active leases renewed for a "
                    "full TTL", table.active().size());
        else if (!table.active().empty())
          log::info("lease manager: connected; {} restored leases renewed for a full TTL",
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
      auto& st = self->state;
      st.queued_jobs = q.queued;
      st.service->set_queue_status({{"queued", q.queued},
                                    {"depths", q.by_priority},
                                    {"payload_bytes", q.payload_bytes},
                                    {"refused", q.refused},
                                    {"dead", q.dead}});
      if (q.write_errors != st.queue_write_errors || q.failing != st.queue_failing) {
        st.queue_write_errors = q.write_errors;
        st.queue_failing = q.failing;
        st.shown_error = "jobs: " + q.last_error;
        st.last_error_at = unix_seconds_now();
        st.service->set_store_status(store_status(st));
        tell_failing(self);
      }
    },
    [=](store_atom, std::uint64_t queued, std::uint64_t dropped, std::uint64_t errors,
        const std::string& last_error, std::uint64_t series, std::uint64_t series_refused,
        std::uint64_t series_evicted) {
      auto& st = self->state;
      st.persister_actor = caf::actor_cast<caf::actor>(self->current_sender());
      st.persister = {{"queued", queued},
                      {"dropped", dropped},
                      {"write_errors", errors},
                      {"last_error", last_error.empty() ? nlohmann::json(nullptr)
                                                        : nlohmann::json(last_error)},
                      {"series", series},
                      {"series_refused", series_refused},
                      {"series_evicted", series_evicted}};
      st.service->set_store_status(store_status(st));
      tell_failing(self);
    },
    [=](watch_atom, const caf::actor& watcher, const std::set<std::string>& held) {
      auto& st = self->state;
      // A watcher whose first answer was lost asks again: registered once.
      if (std::find(st.watchers.begin(), st.watchers.end(), watcher) == st.watchers.end())
        st.watchers.push_back(watcher);
      std::set<std::string> gone;
      for (auto& id : held)
        if (st.service->table().active().count(id) == 0)
          gone.insert(id);
      return gone;
    },
    [=](alive_atom) {
      auto& table = self->state.service->table();
      return caf::make_message(static_cast<std::uint64_t>(table.hosts().size()),
                               static_cast<std::uint64_t>(table.active().size()),
                               self->state.queued_jobs);
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
  // With a store it commits to SQLite, which may wait (a busy database, a
  // slow disk): on its own thread it cannot hold up the bus's actors.
  if (opts.db)
    return sys.spawn<caf::detached>(lease_manager_impl, std::move(bridge), std::move(opts));
  return sys.spawn(lease_manager_impl, std::move(bridge), std::move(opts));
}

} // namespace lull
