#pragma once
/// The lease wire contract (docs/leases.md): requests,
/// heartbeats, releases, reports and revokes as they arrive on the bus, and
/// the replies lull sends back. Parsing works on a decoded document tree, so
/// JSON and msgpack payloads share it; it never throws and names the field
/// and the expected type in every error.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <nlohmann/json.hpp>

#include "messages/codec.hpp"
#include "messages/priority.hpp"
#include "messages/request.hpp"

namespace lull {

enum class cost_class { low, normal, high };
enum class lease_state { active, released, expired, revoked };

NLOHMANN_JSON_SERIALIZE_ENUM(cost_class, {{cost_class::low, "LOW"},
                                          {cost_class::normal, "NORMAL"},
                                          {cost_class::high, "HIGH"}})
NLOHMANN_JSON_SERIALIZE_ENUM(lease_state, {{lease_state::active, "ACTIVE"},
                                           {lease_state::released, "RELEASED"},
                                           {lease_state::expired, "EXPIRED"},
                                           {lease_state::revoked, "REVOKED"}})

const char* to_string(cost_class c);
const char* to_string(lease_state s);
/// Any case ("high", "High"); nullopt for anything else.
std::optional<cost_class> parse_cost_class(std::string_view text);

/// The units of a host's capacity each cost class takes: a lease's and a
/// job's alike (a job costs what its lease will).
struct class_costs {
  int low = 5, normal = 20, high = 50;
  int units(cost_class c) const {
    switch (c) {
      case cost_class::low: return low;
      case cost_class::high: return high;
      case cost_class::normal: break;
    }
    return normal;
  }
};

/// The fixed error codes of the wire contract (shared by every request topic).
using lease_error_code = error_code;
using lease_error = request_error;

/// Payloads larger than this are refused with PayloadTooLarge before decoding.
inline constexpr std::size_t max_lease_payload_bytes = 16 * 1024;
inline constexpr request_limits lease_limits{max_lease_payload_bytes, 32};

/// The most GPUs one lease may ask for (`gpu`).
inline constexpr int max_lease_gpus = 16;

struct lease_constraints {
  bool cpu_heavy = false;
  bool disk_write_heavy = false;
  bool network_heavy = false;
};

/// The processes doing a lease's work, as its worker reports them (docs/
/// leases.md, "Telling lull's work from the owner's"): the leader of the
/// work's process group, its start time (field 22 of /proc/<pid>/stat, clock
/// ticks after boot) so a recycled pid is never counted, and a cgroup v2 group
/// when the worker made one. The host agent measures them.
struct lease_process {
  int pid = 0;
  std::optional<std::uint64_t> pid_start;
  std::string cgroup; ///< ".../lull-lease-<id16>" relative to the cgroup2 mount, or empty
  bool operator==(const lease_process& o) const {
    return pid == o.pid && pid_start == o.pid_start && cgroup == o.cgroup;
  }
  bool operator!=(const lease_process& o) const { return !(*this == o); }
};

/// The name of the cgroup v2 group lull makes for a lease's work
/// ("lull-lease-" and the id's first 16 characters): the only group a
/// lease's claim may name.
std::string lease_cgroup_name(const std::string& lease_id);

/// Why lull will not count the claimed processes `p` as lease `lease_id`'s,
/// from the claim alone: pid 1 (init, and every process on the host below
/// it), or a cgroup that is not the lease's own (`/`, `/user.slice`). The
/// host agent checks the rest against the processes (docs/collectors.md).
std::optional<std::string> claim_refusal(const lease_process& p, const std::string& lease_id);

/// HeavyLeaseRequest.
struct lease_request {
  int v = schema_version;
  std::string worker_id; ///< `addon_id` accepted as its alias
  std::string job_type;
  std::string host_id;   ///< empty: lull picks (the worker's host, else the only one)
  std::optional<int> cost_units;        ///< 1-100, canonical
  std::optional<cost_class> cost_class_; ///< mapped to units when cost_units is absent
  work_priority priority = work_priority::normal;
  std::optional<double> expected_duration_sec;
  std::optional<double> ttl_sec;        ///< asked-for TTL; lull clamps it
  lease_constraints constraints;
  /// GPUs the work needs (0-16): counted against the host's GPUs, and held
  /// while the owner uses one (docs/leases.md, "GPUs").
  int gpu = 0;
  std::optional<lease_process> process; ///< `pid`, `pid_start`, `cgroup`
  std::string request_id; ///< v3.1.1 correlation (echoed)
  std::string reply_to;   ///< v3.1.1 reply topic
};

/// Heartbeat, release, report and revoke share one shape; fields a given
/// action does not use are ignored.
struct lease_action_request {
  int v = schema_version;
  std::string worker_id; ///< the holder (open mode); empty for revoke
  std::string request_id;
  std::string reply_to;
  std::string reason;                    ///< revoke, release: free text
  std::optional<double> progress;        ///< report: 0-1
  nlohmann::json accounting;             ///< report: free-form object (or null)
  std::optional<lease_process> process;  ///< heartbeat: `pid`, `pid_start`, `cgroup`
  std::string message;                   ///< report: free text
  std::string outcome;                   ///< release: succeeded, failed, ... (a job's end)
  nlohmann::json result;                 ///< release: the job's result (any JSON)
  std::string error;                     ///< release: why the job failed
};

/// Validation of a document decode_request accepted (messages/request.hpp)
/// into a typed request. `worker_required`: false in secure mode, where the topic names the worker.
std::variant<lease_request, lease_error> parse_lease_request(const nlohmann::json& doc,
                                                             bool worker_required = true);
std::variant<lease_action_request, lease_error>
parse_lease_action(const nlohmann::json& doc, std::string_view action);

/// Best effort: the request_id / reply_to of a document that failed to parse.
std::string peek_string(const nlohmann::json& doc, const char* field);

// -- replies -------------------------------------------------------------------

struct lease_grant_reply {
  std::string request_id;
  bool approved = false;
  std::string lease_id;
  std::string host_id;
  std::uint64_t fencing_token = 0;
  double ttl_sec = 30;
  double heartbeat_interval_sec = 10;
  /// How long an expired lease's units stay reserved: a holder cut off from
  /// lulld may keep running up to ttl_sec + lock_delay_sec after its last
  /// answered heartbeat without overshooting capacity.
  double lock_delay_sec = 15;
  bool ttl_clamped = false;
  std::int64_t expires_at = 0; ///< unix seconds
  std::string reason;
  double retry_after_sec = 0; ///< denials only
  int cost_units = 0;
  int gpu = 0; ///< GPUs granted with it
  /// NORMAL/BUSY denials on a host with learned quiet windows: the start of
  /// the next hour it is usually QUIET (unix seconds).
  std::optional<std::int64_t> next_window;
};

nlohmann::json to_json(const lease_grant_reply& r);


/// `pid`, `pid_start` and `cgroup` of a request or heartbeat; nullopt in
/// `out` when absent.
std::optional<lease_error> read_lease_process(const nlohmann::json& doc,
                                              std::optional<lease_process>& out);
/// The same fields as JSON, for a client to merge into its message.
nlohmann::json to_json(const lease_process& p);

/// The longest wait a retry hint may ask for: lulld's default for
/// lease.max_retry_hint, and what lull run, lull work and the client library
/// wait at most whatever a reply says.
constexpr double default_max_retry_hint_sec = 3600;

/// A retry hint from the bus as a wait: at most `max_sec`, at least 0; a
/// value that is not a finite number waits `max_sec`.
double clamp_retry_hint(double sec, double max_sec = default_max_retry_hint_sec);

/// Parses a grant reply (client side); nullopt when it is not one. Times are
/// clamped as the client waits on them: retry_after_sec by
/// clamp_retry_hint, the heartbeat interval to at most a third of the TTL.
std::optional<lease_grant_reply> grant_reply_from_json(const nlohmann::json& j);

} // namespace lull
