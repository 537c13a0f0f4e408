#pragma once
/// The lease table and its policy (docs/leases.md): plain C++ with an
/// injected monotonic clock (TTLs), wall clock (wire timestamps) and random
/// source (jitter, ids). No CAF, no MQTT: lease_service turns messages into
/// calls on this class, and tests drive it directly.
///
/// One class, five files: lease_table.cpp (grant bookkeeping, heartbeats,
/// release, expiry, the outboxes, restore), admission.cpp (request, the
/// request budgets, capacity), yield.cpp (load holds: suspend, resume,
/// preempt), host_control.cpp (pauses and their authority) and
/// lease_json.cpp (the JSON renderings and the status view).

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "messages/lease.hpp"
#include "messages/quiet.hpp"
#include "messages/util.hpp"
#include "src/lease/windows.hpp"

namespace lull {

struct lease_policy_config {
  double ttl_sec = 30;          ///< default heartbeat TTL
  double min_ttl_sec = 5;       ///< asked-for TTLs are clamped to [min, max]
  double max_ttl_sec = 600;
  double lock_delay_sec = 15;   ///< an expired lease's units stay reserved this long
  /// A worker's last will ends its leases this long after it arrives, unless
  /// the worker is heard from again or lulld loses the broker first: a broker
  /// that shuts down publishes every client's will, lulld's peers' included,
  /// just before it drops lulld's own connection. 0: at once.
  double will_grace_sec = 2;
  double panic_cooldown_sec = 120; ///< after a PANIC, hard deny this long
  double busy_retry_sec = 15;   ///< retry hint while a host is not QUIET
  int units_per_cpu = 25;       ///< capacity = cpus * units_per_cpu * (1 - headroom)
  double headroom = 0.2;        ///< share kept for the rest of the system
  int capacity_units = 0;       ///< > 0 overrides the computed capacity of every host
  int max_leases_global = 32;
  int max_leases_per_worker = 4;
  double grant_rate_per_sec = 20; ///< token bucket refill
  double grant_burst = 40;        ///< token bucket size
  /// Per-worker token bucket on lease messages (requests, heartbeats, ...):
  /// past it a worker gets RequestThrottled, others are answered as usual.
  double worker_rate_per_sec = 50;
  double worker_burst = 100;
  std::size_t worker_buckets_kept = 10000; ///< idle buckets beyond this are dropped
  double jitter = 0.2;            ///< retry_after_sec *= 1 + U[0, jitter)
  class_costs costs; ///< cost_class -> units
  std::size_t recent_kept = 200;  ///< ended leases remembered (status, late calls)
  /// Giving the host back (docs/leases.md, "Yielding"): leases below HIGH are
  /// suspended once the host has been BUSY (or PANIC) this long, resumed once
  /// it has been QUIET this long, and revoked once suspended this long.
  double suspend_after_sec = 10;
  double resume_after_sec = 60;
  double preempt_after_sec = 900;
  /// Power (lease.on_battery, lease.min_battery): while a host runs on its
  /// battery, work below HIGH is held ("deny"); with run_on_battery it is
  /// held only once the charge is below min_battery_pct.
  bool run_on_battery = false;
  double min_battery_pct = 50;
  /// Owner presence (quiet.owner_idle): work below HIGH is held on a host
  /// whose owner gave input less than this ago; 0: not held for it.
  double owner_idle_sec = 0;
  /// GPU (lease.gpu_owner_busy): while the owner's use of a host's GPU is
  /// above this, %, its GPU leases (gpu > 0) below HIGH are held; a held
  /// one resumes once that use is gpu_hysteresis_pct below it.
  double gpu_owner_busy_pct = 20;
  double gpu_hysteresis_pct = 5;
  /// When hosts take work below HIGH (empty: always).
  lease_windows windows;
  /// The time zone of learned quiet windows (lease.timezone).
  std::string timezone = "local";
  /// A NORMAL/BUSY denial points its retry to the next hour QUIET at least
  /// this share of the time, once a host's map holds `learned_min_days`.
  double learned_share = 0.6;
  double learned_min_days = 7;
  /// An assessment older than this is no assessment: requests below HIGH are
  /// denied ("No fresh quiet assessment"), so a dead assessor fails closed.
  double stale_after_sec = 30;
  /// Workers with a decision summary; past it, the longest-idle ones without
  /// an active lease are forgotten (counted as workers_evicted).
  std::size_t max_tracked_workers = 10000;
  /// Hosts known at once: when full, the host whose agent has been silent
  /// longest (and holds no lease) gives way to a new agent.
  std::size_t max_hosts = 256;
  /// A host whose agent sent no snapshot this long (and that holds no lease)
  /// is forgotten (limits.host_forget_after).
  double host_forget_after_sec = 86400;
  /// Times from the bus are clamped: a cooldown_until counts at most this
  /// long from now (the larger of lease.panic_cooldown and quiet.cooldown),
  /// every retry_after_sec is at most max_retry_hint_sec
  /// (lease.max_retry_hint), and a learned window is looked for this far
  /// ahead at most.
  double max_cooldown_sec = 120;
  double max_retry_hint_sec = 3600;
  double learned_horizon_sec = 7 * 86400;
  std::size_t status_workers = 100; ///< most recent workers listed in scheduler/status
  /// Active leases listed in scheduler/status, newest first (`active_total`
  /// counts them all; each host's list is on scheduler/host/<host>/leases).
  std::size_t status_leases = 100;
};

/// Who set a pause, lowest first: a pause is lifted or replaced only from its
/// own level or a higher one (the Home Assistant switch cannot lift an
/// admin's `lull pause`).
enum class pause_level { schedule, home_assistant, admin };
const char* to_string(pause_level l);
/// "schedule", "home_assistant" (or "ha"), "admin"; any case.
std::optional<pause_level> parse_pause_level(std::string_view s);

/// A pause of one host (lull pause, the Home Assistant switch), kept retained
/// on scheduler/control/<host>.
struct host_pause {
  std::string by;       ///< who paused it
  std::string reason;
  std::int64_t since = 0;              ///< unix seconds
  std::optional<std::int64_t> until;   ///< unix seconds; none: until resumed
  pause_level level = pause_level::admin; ///< at which level of authority
};

/// The retained control message: {"v":1,"host_id":..,"paused":true,"by":..,
/// "level":..,"reason":..,"since":..,"until":..|null}, or {"paused":false}.
nlohmann::json to_json(const std::string& host_id, const std::optional<host_pause>& p);

/// A control message: a pause to set, or none (lift), at a level of
/// authority (its "level", default admin: the control topic is the admin's).
struct host_control {
  std::optional<host_pause> pause;
  pause_level level = pause_level::admin;
};
/// The error names the bad field.
std::variant<host_control, std::string> parse_host_control(const nlohmann::json& j);

/// Injected time and randomness.
struct lease_env {
  std::function<double()> mono_sec;         ///< monotonic seconds
  std::function<std::int64_t()> wall_sec;   ///< unix seconds
  std::function<double()> uniform;          ///< [0, 1)
  std::function<std::string()> new_id;      ///< unguessable lease ids
  /// The real clocks, getrandom(2) and a 128-bit id from it.
  static lease_env system();
};

// random_lease_id(): messages/util.hpp.

/// Token bucket on grants.
class token_bucket {
public:
  token_bucket(double rate_per_sec, double burst, double now);
  /// Takes a token when one is there.
  bool take(double now);
  /// Seconds until a token will be there.
  double wait_sec(double now) const;
  double tokens(double now) const;

private:
  double rate_, burst_, tokens_, last_;
};

/// What holds a host's leases back (suspends running ones, denies new
/// ones): a pause stops every priority; its lease windows and a hold for
/// its load, power and its owner's presence stop work below HIGH only, and
/// the owner's GPU use work below HIGH that asked for a GPU
/// (lease_table::hold_of).
enum class hold_cause { none, pause, window, load, power, owner, gpu };
const char* to_string(hold_cause c);
std::optional<hold_cause> parse_hold_cause(std::string_view s);

struct lease_record {
  std::string lease_id;
  std::string worker_id;
  std::string host_id;
  std::string job_type;
  int cost_units = 0;
  int gpu = 0;                   ///< GPUs it asked for
  work_priority priority = work_priority::normal;
  std::uint64_t fencing_token = 0;
  double ttl_sec = 30;
  lease_state state = lease_state::active;
  double granted_mono = 0, last_heartbeat_mono = 0, expires_mono = 0;
  std::int64_t granted_at = 0;   ///< unix seconds
  std::int64_t ended_at = 0;     ///< unix seconds, 0 while active
  double hold_until_mono = 0;    ///< expired/revoked: units reserved until then
  std::string end_reason;
  bool heartbeat_warned = false;
  std::optional<double> progress;
  std::string last_report;
  nlohmann::json accounting;
  std::optional<lease_process> process; ///< what the host agent measures
  /// Why the claimed processes are not counted as this lease's (by the
  /// claim itself, or as the host agent reported); empty when they are.
  std::string process_refused;
  bool suspended = false;        ///< its work should be stopped (SIGSTOP) now
  double suspended_mono = 0;     ///< since when
  std::int64_t suspended_at = 0; ///< unix seconds, 0 while running
  std::string suspend_reason;
  hold_cause suspend_cause = hold_cause::none; ///< what suspended it (kept across restarts)
};

/// One entry of scheduler/events.
struct lease_event {
  std::string type; ///< granted, denied, heartbeat_missed, released, expired, revoked, reported
  std::string lease_id;
  std::string worker_id;
  std::string host_id;
  std::string reason;
  std::uint64_t fencing_token = 0;
  std::int64_t at = 0; ///< unix seconds
  std::optional<lease_state> state; ///< set when the lease changed state
  std::optional<bool> suspended;    ///< suspended / resumed notices, heartbeats
  bool preempted = false;           ///< revoked to give the host back
};

nlohmann::json to_json(const lease_event& e);

/// A lease record as saved to the store (monotonic times as remaining
/// seconds are not saved: the store keeps the wall-clock expiry).
nlohmann::json to_json(const lease_record& r);
/// Throws nlohmann::json::exception on a malformed record.
lease_record lease_record_from_json(const nlohmann::json& j);

/// Per-worker decision summary (grants, denies, last reason, cool-down).
struct worker_summary {
  std::uint64_t grants = 0;
  std::uint64_t denies = 0;
  std::string last_decision;  ///< "granted" / "denied"
  std::string last_reason;
  std::int64_t last_decision_at = 0;
  std::optional<std::int64_t> cooldown_until; ///< host PANIC cool-down seen by its last denial
  bool online = true;
};

struct host_info {
  std::optional<quiet_assessment> quiet;
  std::optional<int> cpu_count;
  double panic_until_mono = 0; ///< cool-down end after a PANIC
  /// Since when the host has been BUSY or PANIC / QUIET without a break.
  std::optional<double> busy_since_mono, quiet_since_mono;
  /// Its leases below HIGH are held (suspended) for its load: set after
  /// suspend_after of BUSY, cleared after resume_after of QUIET.
  bool load_hold = false;
  std::string load_reason; ///< why, as the notices say it
  std::int64_t load_hold_since = 0; ///< when the hold began (wall clock)
  std::optional<host_pause> pause;
  std::optional<quiet_hour_map> quiet_hours; ///< learned, from the persister
  double quiet_fresh_mono = 0; ///< when `quiet` was assessed, on the monotonic clock
  /// The cool-down the latest assessment asked for (its cooldown_until,
  /// clamped): replaced by each fresh assessment, unlike panic_until_mono.
  double cooldown_until_mono = 0;
  double last_snapshot_mono = 0; ///< when its agent last sent a snapshot
  /// When its agent said it went offline (wall clock); cleared by its next
  /// snapshot or an "online".
  std::optional<std::int64_t> offline_since;
  double offline_mono = 0; ///< when that notice arrived (monotonic)
};

/// Result of a heartbeat (and of the other actions on a lease).
struct lease_ack {
  std::string lease_id;
  lease_state state = lease_state::active;
  double ttl_remaining_sec = 0;
  std::int64_t expires_at = 0;
  std::uint64_t fencing_token = 0;
  bool suspended = false; ///< the holder should keep its work stopped
  std::string process_refused; ///< lease_record::process_refused
};

class lease_table {
public:
  /// `first_fencing_token`: grants hand out tokens above it (a persister
  /// restores the last one so tokens never decrease across restarts).
  lease_table(lease_policy_config cfg, lease_env env, std::uint64_t first_fencing_token = 0);

  // -- inputs --------------------------------------------------------------
  /// A host's assessment. One for a host no agent has reported is kept
  /// aside (bounded) until its agent's first snapshot. An assessment older
  /// than the one held is ignored; a fresh one replaces the cool-down the
  /// last one asked for.
  void on_quiet(const quiet_assessment& q);
  /// A snapshot from the host's agent (stats/host/<host>), with its CPU count
  /// when it gave a sane one: the only way a host enters the table. When
  /// max_hosts are known, the host silent longest without a lease gives
  /// way; false when none can (the snapshot is ignored).
  bool on_snapshot(const std::string& host_id, std::optional<int> cpus = std::nullopt);
  /// The host agent of `host_id` did not count lease `lease_id`'s claimed
  /// processes, for `reason` (its snapshot's leased.per_lease): the holder
  /// learns it from its next heartbeat reply. Ignored for a lease that is
  /// not active on that host.
  void on_claim_refused(const std::string& host_id, const std::string& lease_id,
                        const std::string& reason);
  /// A worker's retained status: offline (its last will) expires its leases.
  void on_worker_status(const std::string& worker_id, bool online);
  /// A host agent's availability (lull/<host>/availability). Offline: every
  /// request for the host is denied at once ("Host h is offline"), whatever
  /// its last assessment said; its leases keep their TTL, since their workers
  /// may still be running. Online, or its next snapshot, brings it back.
  void on_host_availability(const std::string& host_id, bool online);
  /// A host's learned quiet windows (stats/host/<host>/quiet_hours).
  void on_quiet_hours(const std::string& host_id, quiet_hour_map m);
  /// Sets a host's pause (`pause`, whose level is `level`) or lifts it
  /// (nullopt) at `level`. A pause set at a higher level is neither lifted
  /// nor replaced: the refusal says by whom it is held.
  std::optional<std::string> on_pause(const std::string& host_id, std::optional<host_pause> pause,
                                      pause_level level = pause_level::admin);
  /// Hosts forgotten since the last call (silent past host_forget_after, or
  /// making room for a new agent): their retained topics should be cleared.
  std::vector<std::string> take_hosts_evicted();
  std::uint64_t hosts_evicted() const { return hosts_evicted_; }
  std::uint64_t hosts_refused() const { return hosts_refused_; }
  /// Hosts whose pause ran out since the last call (their retained control
  /// message should be cleared).
  std::vector<std::string> take_pauses_ended();

  // -- actions -------------------------------------------------------------
  /// Decides a request. `worker_id` is the identity to use (from the topic in
  /// secure mode, else the payload's).
  lease_grant_reply request(const lease_request& req, const std::string& worker_id);
  /// `process`: the work's processes when the holder reports them.
  std::variant<lease_ack, lease_error> heartbeat(const std::string& lease_id,
                                                 const std::string& worker_id,
                                                 const std::optional<lease_process>& process
                                                 = std::nullopt);
  /// Takes a token from `worker`'s message bucket; when it is empty, the
  /// seconds until it holds one again (the reply's retry_after_sec).
  std::optional<double> throttle(const std::string& worker_id);
  /// Messages refused by throttle() so far.
  std::uint64_t throttled() const { return throttled_; }
  /// Active leases on a host with their processes, for the host's agent
  /// (scheduler/host/<host>/leases).
  nlohmann::json host_leases_json(const std::string& host_id) const;
  /// Hosts whose leases or their processes changed since the last call.
  std::vector<std::string> take_hosts_changed();
  std::variant<lease_ack, lease_error> release(const std::string& lease_id,
                                               const std::string& worker_id,
                                               const std::string& reason = {});
  std::variant<lease_ack, lease_error> report(const std::string& lease_id,
                                              const std::string& worker_id,
                                              const lease_action_request& rep);
  /// `holder`: empty for an admin revoke, else the holder must match.
  std::variant<lease_ack, lease_error> revoke(const std::string& lease_id,
                                              const std::string& holder,
                                              const std::string& reason);
  /// Expires leases whose TTL passed and warns on missed heartbeats.
  void tick();

  /// lulld lost its broker: heartbeats cannot reach it, so no lease expires
  /// for missing them until `bus_reconnected`.
  void bus_disconnected();
  /// lulld is back on the broker: every active lease gets at least one full
  /// TTL from now (etcd renews its leases the same way when a new leader
  /// takes over), so an outage never costs a holder its lease.
  void bus_reconnected();
  bool expiry_paused() const { return expiry_paused_; }

  /// Brings back a lease saved before a restart. It gets at least one full
  /// TTL from now (as on a reconnect): its holder could not heartbeat while
  /// lulld was down, and one that has gone expires a TTL later with its
  /// units held for lock_delay. Fencing tokens continue above the restored
  /// ones.
  void restore(lease_record r, double remaining_sec);

  /// Ids of leases granted, renewed or ended since the last call (to persist).
  std::vector<std::string> take_dirty();
  /// The write of `ids` (from take_dirty) succeeded: what they hold now is
  /// what the store holds.
  void committed(const std::vector<std::string>& ids);
  /// The write of `ids` failed: each lease goes back to what the store holds
  /// (docs/persistence.md, "When a write fails"). A grant never written is
  /// gone, holding no units; an ended lease is active again; a renewal is
  /// undone. Fencing tokens are not reused. Hosts of the leases count as
  /// changed, so their lease lists go out again.
  void roll_back(const std::vector<std::string>& ids);
  /// Every active lease is as the store holds it (after a restore).
  void all_committed();

  // -- outputs -------------------------------------------------------------
  /// Events since the last call (grant, deny, ... ), oldest first.
  std::vector<lease_event> take_events();
  const std::map<std::string, lease_record>& active() const { return active_; }
  const std::deque<lease_record>& recent() const { return recent_; }
  const lease_record* find(const std::string& lease_id) const;
  const std::map<std::string, worker_summary>& workers() const { return workers_; }
  const std::map<std::string, host_info>& hosts() const { return hosts_; }
  int capacity_units(const std::string& host_id) const;
  /// Units of active leases plus those of expired leases within lock_delay.
  int used_units(const std::string& host_id) const;
  std::uint64_t fencing_token() const { return fencing_; }
  int units_for(const lease_request& req) const;
  /// The whole state for scheduler/status.
  nlohmann::json status_json() const;
  const lease_policy_config& config() const { return cfg_; }
  std::int64_t now_wall() const { return env_.wall_sec(); }
  double heartbeat_interval_sec(double ttl) const { return ttl / 3; }
  std::uint64_t workers_evicted() const { return workers_evicted_; }

private:
  struct reservation {
    std::string host_id;
    double free_at; ///< monotonic
    int units;
    int gpus = 0;
  };
  std::optional<std::string> resolve_host(const lease_request& req, const std::string& worker,
                                          std::string& why) const;
  lease_grant_reply deny(const lease_request& req, const std::string& worker,
                         const std::string& host, std::string reason, double retry_sec,
                         std::optional<std::int64_t> cooldown_until = std::nullopt);
  void end_lease(std::map<std::string, lease_record>::iterator it, lease_state st,
                 std::string reason, bool hold_units);
  std::variant<std::map<std::string, lease_record>::iterator, lease_error>
  holder_lookup(const std::string& lease_id, const std::string& worker_id);
  lease_ack ack_of(const lease_record& r) const;
  /// Takes a claim of processes unless claim_refusal() refuses it (then
  /// records why); true when `r.process` changed.
  bool set_claim(lease_record& r, const std::optional<lease_process>& process);
  /// Expires every lease of `worker_id` (its last will took effect).
  void end_leases_of(const std::string& worker_id);
  void emit(std::string type, const lease_record& r, std::string reason,
            std::optional<lease_state> st = std::nullopt,
            std::optional<bool> suspended = std::nullopt);
  /// Revokes a lease to give its host back (the queue requeues its job
  /// without counting the attempt).
  void preempt(std::map<std::string, lease_record>::iterator it, std::string reason);
  double earliest_free(const std::string& host_id, int need_units) const;
  /// Suspends, resumes and preempts leases by their hosts' load, windows
  /// and pauses (the yield policy): of every host on a tick, of one host
  /// when only its state changed (a quiet assessment, a pause), so that a
  /// fleet's burst of assessments costs each one its own host's leases only.
  void apply_yield(const std::string* only_host = nullptr);
  /// HIGH work skips a host's lease windows, its load hold and the QUIET
  /// requirement; never a pause, a PANIC or its cool-down, or the budgets.
  static bool skips_load_rules(work_priority p) { return !below_high(p); }
  struct hold {
    hold_cause cause = hold_cause::none;
    std::string text; ///< as a suspended lease's reason says it
  };
  /// What holds leases of `priority` asking for `gpus` GPUs on `host_id`
  /// back now, if anything: the one rule both a running lease (yield) and a
  /// request (admission) follow. `gpu_held`: the lease is suspended for the
  /// owner's GPU use already (it resumes only below the hysteresis).
  std::optional<hold> hold_of(const std::string& host_id, const host_info& h,
                              work_priority priority, int gpus = 0,
                              bool gpu_held = false) const;
  /// A refusal of a request: why, and when to ask again.
  struct refusal {
    std::string reason;
    double retry_sec = 0;
    std::optional<std::int64_t> cooldown_until; ///< a PANIC's cool-down end
    std::optional<std::int64_t> next_window;    ///< a learned quiet hour
    refusal() = default;
    refusal(std::string why, double retry, std::optional<std::int64_t> cooldown = std::nullopt)
      : reason(std::move(why)), retry_sec(retry), cooldown_until(cooldown) {}
  };
  /// The admission gates, in the order request() asks them; each says no
  /// with its reason or lets the request through.
  std::optional<refusal> refuse_offline(const std::string& host, const host_info& h) const;
  std::optional<refusal> refuse_panic(const std::string& host, const host_info& h,
                                      double now) const;
  std::optional<refusal> refuse_held(const std::string& host, const host_info& h,
                                     work_priority priority, int gpus, double now) const;
  std::optional<refusal> refuse_unquiet(const std::string& host, const host_info& h,
                                        double now) const;
  std::optional<refusal> refuse_lease_count(const std::string& worker, double now) const;
  std::optional<refusal> refuse_capacity(const std::string& host, int units) const;
  /// Fewer free GPUs on the host (its snapshot's, less those its active
  /// leases asked for) than `gpus`.
  std::optional<refusal> refuse_gpus(const std::string& host, const host_info& h,
                                     int gpus) const;
  void prune_held();
  /// The summary of `worker_id`, making room first when the table is full.
  worker_summary& track_worker(const std::string& worker_id);
  /// What arrived for a host before its agent's first snapshot.
  struct pending_host {
    std::optional<quiet_assessment> quiet;
    std::optional<quiet_hour_map> quiet_hours;
    std::optional<host_control> control;
  };
  /// The pending entry of an unknown host (bounded by max_hosts); nullptr
  /// for a bad id.
  pending_host* pending(const std::string& host_id);
  void evict_host(std::map<std::string, host_info>::iterator it, const char* why);
  /// Forgets hosts silent past host_forget_after.
  void forget_silent();
  std::optional<std::string> set_pause(host_info& h, const std::string& host_id,
                                       std::optional<host_pause> pause, pause_level level);

  lease_policy_config cfg_;
  lease_env env_;
  std::uint64_t fencing_;
  token_bucket bucket_;
  std::map<std::string, lease_record> active_;
  std::deque<lease_record> recent_;
  std::map<std::string, reservation> held_; ///< by lease id: expired/revoked units
  std::map<std::string, host_info> hosts_;
  std::map<std::string, worker_summary> workers_;
  std::vector<lease_event> events_;
  std::vector<std::string> dirty_;
  /// Workers whose last will arrived: when it takes effect (monotonic).
  std::map<std::string, double> wills_;
  /// Each lease as last written: what roll_back() returns to.
  std::map<std::string, lease_record> durable_;
  std::uint64_t workers_evicted_ = 0;
  std::map<std::string, token_bucket> worker_buckets_;
  std::uint64_t throttled_ = 0;
  std::vector<std::string> hosts_changed_;
  std::vector<std::string> pauses_ended_;
  std::map<std::string, pending_host> pending_;
  std::vector<std::string> evicted_;
  std::uint64_t hosts_evicted_ = 0;
  std::uint64_t hosts_refused_ = 0;
  bool expiry_paused_ = false;
  double bus_back_mono_ = -1e18; ///< when lulld last came back to the broker
  bool preempting_ = false;
  const date::time_zone* zone_ = nullptr;
};

} // namespace lull
