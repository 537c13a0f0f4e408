#include "actors/persister.hpp"

#include <cmath>
#include <deque>
#include <map>
#include <optional>

#include "actors/actor_util.hpp"
#include "actors/atoms.hpp"
#include "messages/codec.hpp"
#include "messages/page.hpp"
#include "messages/request.hpp"
#include "src/history/history_service.hpp"
#include "src/log.hpp"
#include "src/store/health.hpp"

#include <tuple>
#include "messages/host_snapshot.hpp"
#include "src/stats/host_roster.hpp"
#include "src/store/series.hpp"
#include "src/store/series_quota.hpp"

namespace lull {

namespace {

using flush_atom = caf::atom_constant<caf::atom("flush")>;
using purge_atom = caf::atom_constant<caf::atom("purge")>;
/// One more step of a purge under way (queued behind what came in meanwhile).
using purge_more_atom = caf::atom_constant<caf::atom("purgemore")>;

constexpr request_limits history_limits{16 * 1024, 32};

struct persister_state {
  std::shared_ptr<store> db;
  std::deque<sample_point> points;
  std::vector<rollup_row> rollups;
  std::vector<lease_event_row> events;
  std::vector<quiet_streak_row> streaks;
  rollup_accumulator acc;
  /// Which series may be stored: at most limits.max_series_per_worker per
  /// source and limits.max_series in all; what acc and db's cache hold
  /// follows it.
  std::unique_ptr<series_quota> quota;
  std::map<std::string, host_health_input> hosts;
  /// The hosts kept in `hosts`: at most limits.max_hosts, forgotten after
  /// limits.host_forget_after.
  std::unique_ptr<host_roster> roster;
  std::unique_ptr<history_service> history; ///< answers history/request
  persister_health_input health;
  /// queued, dropped, write errors, failing, series, refused, evicted as
  /// last told to opts.status_to
  std::tuple<std::size_t, std::uint64_t, std::uint64_t, bool, std::size_t, std::uint64_t,
             std::uint64_t>
    told{0, 0, 0, false, 0, 0, 0};
  bool failing = false; ///< the last write failed
  /// The retention purge under way, if any, with its cut-offs.
  std::optional<store::purge_progress> purge;
  std::int64_t purge_raw_before = 0, purge_five_before = 0, purge_streaks_before = 0;
  std::optional<std::int64_t> purge_jobs_before;
  std::chrono::steady_clock::time_point purge_started;
  static inline const char* name = "persister";
};

using self_ptr = caf::stateful_actor<persister_state>*;

void bound(self_ptr self);

void enqueue(self_ptr self, std::vector<sample_point> pts, const persister_options& opts) {
  auto& st = self->state;
  for (auto& p : pts) {
    for (auto& r : st.acc.add(p))
      st.rollups.push_back(std::move(r));
    st.points.push_back(std::move(p));
  }
  while (st.points.size() > opts.persist.queue_bound) {
    st.points.pop_front();
    ++st.health.dropped;
  }
  bound(self);
}

/// While writes fail nothing leaves the buffers: each keeps its newest
/// `queue_bound` rows at most, the older ones dropped and counted.
void bound(self_ptr self) {
  auto& st = self->state;
  auto limit = st.health.queue_bound;
  auto trim = [&](auto& v) {
    if (limit == 0 || v.size() <= limit)
      return;
    auto n = v.size() - limit;
    v.erase(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(n));
    st.health.dropped += n;
  };
  trim(st.rollups);
  trim(st.events);
  trim(st.streaks);
  st.health.queued = st.points.size() + st.rollups.size() + st.events.size() + st.streaks.size();
}

void on_stats(self_ptr self, const mqtt_message& msg, const persister_options& opts) {
  auto src = classify_topic(opts.topics, msg.topic, opts.host_id);
  if (!src)
    return;
  auto doc = decode(msg.payload, detect_format(msg.payload, msg.content_type));
  if (!doc || !doc->is_object()) {
    // Workers' last-will "offline" is plain text: nothing numeric to keep.
    return;
  }
  std::int64_t ts = unix_seconds_now();
  for (auto* key : {"collected_at", "assessed_at", "ts"})
    if (auto it = doc->find(key); it != doc->end() && it->is_string())
      if (auto t = parse_utc_timestamp(it->get<std::string>())) {
        ts = *t;
        break;
      }
  auto& st = self->state;
  // Health is kept for hosts with a valid id only: a topic such as
  // stats/host/<64 kB of text> names no host lull could lease on.
  if (src->group == "host" && valid_id(src->host)) {
    // What the health rollup keeps of a host is bounded as the snapshot's
    // decoder bounds it, for at most limits.max_hosts hosts.
    if (auto seen = st.roster->seen(src->host, steady_seconds()); seen.evicted)
      st.hosts.erase(*seen.evicted);
    auto& h = st.hosts[src->host];
    h.last_seen = ts;
    h.errors = bounded_errors(doc->value("errors", nlohmann::json()));
    h.disk_free_pct.clear();
    if (auto it = doc->find("disks"); it != doc->end() && it->is_array())
      for (auto& d : *it) {
        if (h.disk_free_pct.size() >= host_snapshot_limits::max_disks)
          break;
        if (d.is_object() && d.value("free_pct", nlohmann::json()).is_number())
          h.disk_free_pct[d.value("mount", nlohmann::json()).is_string()
                            ? bounded_text(d["mount"].get<std::string>(),
                                           host_snapshot_limits::max_name_bytes)
                            : std::string("?")] = d["free_pct"].get<double>();
      }
  }
  auto points = extract_points(*src, *doc, ts);
  // Series names come from the publisher: past its quota a new one is
  // refused (counted, logged once a minute per source).
  for (auto& r : st.quota->admit(points, unix_seconds_now())) {
    if (r.by_total)
      log::warn("persister: {} series stored in all, the most limits.max_series allows; "
                "refusing new ones such as {} of {} on {} ({} refused so far)",
                st.quota->series(), r.metric, r.group, r.host, st.quota->refused());
    else
      log::warn("persister: {} on {} names {} series, the most limits.max_series_per_worker "
                "allows; refusing new ones such as {} ({} refused so far)",
                r.group, r.host, r.source_series, r.metric, st.quota->refused());
  }
  enqueue(self, std::move(points), opts);
}

void on_event(self_ptr self, const mqtt_message& msg) {
  auto doc = decode(msg.payload, detect_format(msg.payload, msg.content_type));
  if (!doc || !doc->is_object())
    return;
  auto str = [&](const char* k) {
    auto it = doc->find(k);
    return it != doc->end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  lease_event_row e;
  e.ts = unix_seconds_now();
  if (auto t = parse_utc_timestamp(str("ts")))
    e.ts = *t;
  // Anyone may publish on scheduler/events in open mode: text is bounded
  // when stored, so no event can make a lease_events page too large.
  e.event = clip_text(str("event"), max_id_text_bytes);
  if (e.event.empty())
    e.event = clip_text(str("type"), max_id_text_bytes);
  e.lease_id = clip_text(str("lease_id"), max_id_text_bytes);
  e.worker_id = clip_text(str("worker_id"), max_id_text_bytes);
  e.host_id = clip_text(str("host_id"), max_id_text_bytes);
  e.reason = clip_text(str("reason"));
  e.detail = msg.payload.size() < 4096 ? doc->dump() : std::string();
  self->state.events.push_back(std::move(e));
  bound(self);
}

/// Closed quiet streaks, as the quiet assessor lists them on
/// lull/debug/streaks/<host> (each streak's start is its key: repeats replace).
void on_streaks(self_ptr self, const mqtt_message& msg) {
  auto doc = decode(msg.payload, detect_format(msg.payload, msg.content_type));
  if (!doc || !doc->is_object() || !(*doc)["streaks"].is_array())
    return;
  for (auto& s : (*doc)["streaks"]) {
    if (!s.is_object() || !s.value("end", nlohmann::json()).is_string())
      continue;
    if (!s.value("start", nlohmann::json()).is_string())
      continue;
    auto start = parse_utc_timestamp(s["start"].get<std::string>());
    auto end = parse_utc_timestamp(s["end"].get<std::string>());
    if (!start || !end)
      continue;
    auto host = s.value("host_id", doc->value("host_id", nlohmann::json()));
    auto num = [&](const char* k) {
      auto v = s.value(k, nlohmann::json());
      return v.is_number() ? v.get<double>() : 0.0;
    };
    if (!host.is_string() || !valid_id(host.get<std::string>()))
      continue;
    self->state.streaks.push_back(
      {host.get<std::string>(), *start, *end, num("avg_score"), num("min_score")});
  }
  bound(self);
}

/// Samples go to the database in transactions of at most this many rows
/// (a few milliseconds each): the lease manager's and the queue's commits
/// take their turn between two of them (store::begin) instead of waiting
/// for a whole flush.
constexpr std::size_t rows_per_transaction = 500;

void flush(self_ptr self) {
  auto& st = self->state;
  if (st.points.empty() && st.rollups.empty() && st.events.empty() && st.streaks.empty())
    return;
  auto t0 = std::chrono::steady_clock::now();
  std::size_t written = 0;
  sqlite_error err;
  std::vector<sample_point> chunk;
  // The samples chunk by chunk; rollups, events and streaks with the last.
  while (true) {
    auto n = std::min(rows_per_transaction, st.points.size());
    bool last = n == st.points.size();
    chunk.assign(st.points.begin(), st.points.begin() + static_cast<std::ptrdiff_t>(n));
    err = st.db->begin();
    if (!err)
      err = st.db->insert_points(chunk);
    if (last) {
      if (!err)
        err = st.db->insert_rollups(st.rollups);
      if (!err)
        err = st.db->insert_lease_events(st.events);
      for (auto& s : st.streaks)
        if (!err)
          err = st.db->insert_quiet_streak(s);
    }
    if (!err)
      err = st.db->commit();
    if (err)
      break;
    st.points.erase(st.points.begin(), st.points.begin() + static_cast<std::ptrdiff_t>(n));
    written += n;
    if (last)
      break;
  }
  if (err) {
    st.db->rollback();
    ++st.health.write_errors;
    st.health.last_error = err.message;
    st.failing = true;
    st.health.queued = st.points.size() + st.rollups.size() + st.events.size() + st.streaks.size();
    log::error("persister: writing {} samples failed: {}; keeping them queued ({} written)",
               st.points.size(), err.message, written);
    return;
  }
  st.rollups.clear();
  st.events.clear();
  st.streaks.clear();
  st.health.queued = 0;
  st.failing = false;
  st.health.last_flush_ok = unix_seconds_now();
  // The WAL back into the database file, here rather than inside a lease
  // commit (lulld's other connections leave checkpoints to this one).
  int copied = st.db->checkpoint();
  auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0);
  log::debug("persister: wrote {} samples in {:.1f} ms (checkpoint: {} pages; SQLite holds "
             "{:.1f} MB)",
             written, ms.count(), copied, static_cast<double>(sqlite3_memory_used()) / 1e6);
}

void on_inbound(self_ptr self, const caf::actor& bridge, const mqtt_message& msg,
                const persister_options& opts) {
  if (msg.topic == opts.topics.scheduler_events()) {
    on_event(self, msg);
    return;
  }
  if (topic_matches(opts.topics.debug("streaks/+"), msg.topic)) {
    on_streaks(self, msg);
    return;
  }
  // Secure mode: history/<user>/request, answered only under workers/<user>/.
  std::optional<std::string> sender;
  if (opts.security.secure) {
    if (!topic_matches(opts.topics.full("history/+/request"), msg.topic)) {
      on_stats(self, msg, opts);
      return;
    }
    auto rel = opts.topics.strip(msg.topic);
    sender = std::string(rel.substr(8, rel.size() - 8 - 8)); // history/<user>/request
  } else if (msg.topic != opts.topics.history_request()) {
    on_stats(self, msg, opts);
    return;
  }
  auto req = decode_request(msg, history_limits);
  if (sender && !reply_allowed(req.route.topic, opts.topics, true, sender)) {
    log::warn("persister: not replying to '{}': replies for '{}' go under {}", req.route.topic,
              *sender, opts.topics.full("workers/" + *sender + "/"));
    return;
  }
  std::optional<request_error> error = req.error;
  nlohmann::json body;
  if (!error)
    body = self->state.history->answer(req.doc, req.route, error, unix_seconds_now());
  auto reply = error ? make_error_reply(req.route, *error) : make_reply(req.route, std::move(body));
  // Lists page within the budget; any other answer must fit whole.
  if (reply && !error && reply->payload.size() > opts.limits.max_reply_bytes) {
    error = reply_too_large("the reply", reply->payload.size(), opts.limits.max_reply_bytes);
    reply = make_error_reply(req.route, *error);
  }
  if (error)
    log::warn("persister: rejected history request: {}", error->message);
  if (reply)
    self->send(bridge, publish_atom::value, std::move(*reply));
}

/// Each host's learned quiet windows, retained, for the lease manager's
/// retry hints (and anyone drawing them), refreshed after each purge.
void publish_quiet_hours(self_ptr self, const caf::actor& bridge, const persister_options& opts) {
  auto now = unix_seconds_now();
  for (auto& [host, h] : self->state.hosts) {
    if (!valid_id(host))
      continue;
    if (auto map = self->state.history->quiet_hours(host, now))
      self->send(bridge, publish_atom::value,
                 retained_json(opts.topics.full("stats/host/" + host + "/quiet_hours"), *map));
  }
}

caf::behavior persister_impl(self_ptr self, caf::actor bridge, std::shared_ptr<store> db,
                             persister_options opts) {
  self->state.db = std::move(db);
  // Retention in whole seconds, the intervals as timers.
  const auto raw_retention_sec = static_cast<std::int64_t>(opts.persist.raw_retention_sec);
  const auto rollup_retention_sec = static_cast<std::int64_t>(opts.persist.rollup_retention_sec);
  const auto streaks_retention_sec =
    static_cast<std::int64_t>(opts.persist.quiet_streaks_retention_sec);
  const auto flush_interval = ms_of(opts.persist.flush_interval_sec);
  const auto retention_interval = ms_of(opts.persist.retention_interval_sec);
  self->state.quota = std::make_unique<series_quota>(
    series_quota::limits{opts.limits.max_series_per_worker, opts.limits.max_series});
  self->state.roster =
    std::make_unique<host_roster>(opts.limits.max_hosts, opts.limits.host_forget_after_sec);
  self->state.health.queue_bound = opts.persist.queue_bound;
  history_options hopts;
  hopts.host_id = opts.host_id;
  hopts.raw_retention_sec = raw_retention_sec;
  hopts.rollup_retention_sec = rollup_retention_sec;
  hopts.timezone = opts.timezone;
  hopts.stale_after_sec = opts.stale_after_sec;
  hopts.max_reply_bytes = opts.limits.max_reply_bytes;
  self->state.history = std::make_unique<history_service>(
    *self->state.db, hopts,
    history_sources{[self] { flush(self); }, &self->state.hosts, &self->state.health});
  self->state.health.flush_interval_sec =
    std::max<std::int64_t>(1, std::chrono::duration_cast<std::chrono::seconds>(flush_interval)
                                .count());
  auto& t = opts.topics;
  for (auto filter : {t.host_stats_filter(), t.full("stats/host/+/quiet"),
                      t.full("stats/process/+/+"), t.bus_stats(), t.worker_status_filter(),
                      t.scheduler_events(),
                      opts.security.secure ? t.full("history/+/request") : t.history_request(),
                      t.debug("streaks/+")})
    self->send(bridge, subscribe_atom::value, filter, caf::actor_cast<caf::actor>(self));
  self->delayed_send(self, flush_interval, flush_atom::value);
  self->delayed_send(self, std::min<std::chrono::milliseconds>(std::chrono::minutes(1),
                                                                retention_interval),
                     purge_atom::value);
  self->set_down_handler([](caf::down_msg&) {});
  return {
    [=](inbound_atom, const mqtt_message& msg) {
      guard_inbound("persister", msg, [&] { on_inbound(self, bridge, msg, opts); });
    },
    // The lease manager's store.failing, for the health rollup.
    [=](store_atom, bool failing, const std::string& cause) {
      self->state.health.state_writes_failing = failing;
      self->state.health.state_error = cause;
    },
    [=](flush_atom) {
      auto& h = self->state.health;
      auto& q = *self->state.quota;
      auto told = std::make_tuple(h.queued, h.dropped, h.write_errors, self->state.failing,
                                  q.series(), q.refused(), q.evicted());
      if (opts.status_to && told != self->state.told) {
        self->state.told = told;
        // The cause while writes fail; empty once they work again.
        self->send(opts.status_to, store_atom::value, static_cast<std::uint64_t>(h.queued),
                   static_cast<std::uint64_t>(h.dropped), static_cast<std::uint64_t>(h.write_errors),
                   self->state.failing ? h.last_error : std::string(),
                   static_cast<std::uint64_t>(q.series()), static_cast<std::uint64_t>(q.refused()),
                   static_cast<std::uint64_t>(q.evicted()));
      }
      for (auto& host : self->state.roster->expire(steady_seconds()))
        self->state.hosts.erase(host);
      for (auto& r : self->state.acc.close_before(unix_seconds_now()))
        self->state.rollups.push_back(std::move(r));
      flush(self);
      self->delayed_send(self, flush_interval, flush_atom::value);
    },
    [=](purge_atom) {
      auto& st = self->state;
      self->delayed_send(self, retention_interval, purge_atom::value);
      if (st.purge)
        return; // the last one is still going
      auto now = unix_seconds_now();
      // Series silent for the retention period give their slots back, and
      // their entries in the accumulator and the id cache go with them.
      auto silent = st.quota->evict_silent(now - raw_retention_sec);
      for (auto& n : silent) {
        st.acc.forget(n.host, n.group, n.metric);
        st.db->forget_series(n.host, n.group, n.metric);
      }
      if (!silent.empty())
        log::info("persister: let go of {} series silent for {} s ({} held)", silent.size(),
                  raw_retention_sec, st.quota->series());
      st.purge.emplace();
      st.purge_raw_before = now - raw_retention_sec;
      st.purge_five_before = now - rollup_retention_sec;
      st.purge_streaks_before = now - streaks_retention_sec;
      st.purge_jobs_before.reset();
      if (opts.finished_jobs_retention_sec)
        st.purge_jobs_before = now - *opts.finished_jobs_retention_sec;
      st.purge_started = std::chrono::steady_clock::now();
      self->send(self, purge_more_atom::value);
    },
    // A step of at most ~5,000 rows in one write turn, then the mailbox
    // (samples, history requests) and the other writers get their turn.
    [=](purge_more_atom) {
      auto& st = self->state;
      if (!st.purge)
        return;
      if (auto err = st.db->purge_step(st.purge_raw_before, st.purge_five_before, *st.purge,
                                       5000, st.purge_jobs_before, st.purge_streaks_before)) {
        log::warn("persister: retention stopped after {} rows: {} (tried again in {} s)",
                  st.purge->deleted, err.message,
                  std::chrono::duration_cast<std::chrono::seconds>(retention_interval)
                    .count());
        st.purge.reset();
        return;
      }
      if (!st.purge->done) {
        self->send(self, purge_more_atom::value);
        return;
      }
      auto n = st.purge->deleted;
      auto series = st.purge->series_removed;
      st.purge.reset();
      if (n > 0 || series > 0)
        log::info("persister: retention removed {} rows in {:.1f} s, and {} series with "
                  "nothing left",
                  n,
                  std::chrono::duration<double>(std::chrono::steady_clock::now()
                                                - st.purge_started)
                    .count(),
                  series);
      publish_quiet_hours(self, bridge, opts);
    },
    [=](shutdown_atom) {
      flush(self);
      self->quit();
    },
  };
}

} // namespace

caf::actor spawn_persister(caf::actor_system& sys, caf::actor bridge, std::shared_ptr<store> db,
                           persister_options opts) {
  return sys.spawn<caf::detached>(persister_impl, std::move(bridge), std::move(db),
                                  std::move(opts));
}

} // namespace lull
