#pragma once
/// QuietAssessment, published retained on stats/host/<host_id>/quiet by the
/// quiet assessor and consumed by the lease manager (of this or another lulld).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "messages/host_snapshot.hpp"

namespace lull {

enum class quiet_state { quiet, normal, busy, panic };
NLOHMANN_JSON_SERIALIZE_ENUM(quiet_state, {{quiet_state::quiet, "QUIET"},
                                           {quiet_state::normal, "NORMAL"},
                                           {quiet_state::busy, "BUSY"},
                                           {quiet_state::panic, "PANIC"}})

/// "QUIET", "NORMAL", "BUSY", "PANIC".
const char* to_string(quiet_state s);

/// Accepts any case ("quiet", "Busy"); nullopt for anything else.
std::optional<quiet_state> parse_quiet_state(std::string_view text);

struct quiet_assessment {
  std::string host_id;
  std::int64_t assessed_at = 0; ///< unix seconds, UTC on the wire
  double quiet_score = 0;       ///< 0 (saturated) .. 100 (idle)
  quiet_state state = quiet_state::normal;
  std::vector<std::string> reasons;
  nlohmann::json inputs = nlohmann::json::object(); ///< cpu_avg_2m, mem_pct, ...
  /// End of the cool-down after a PANIC (unix seconds); the host cannot be
  /// QUIET before it.
  std::optional<std::int64_t> cooldown_until;
  /// The QUIET streak in progress ({start, avg_score, min_score, samples}),
  /// or null when the host is not QUIET.
  nlohmann::json streak = nullptr;
  /// In PANIC: what put it there ("cpu", "memory", "swap", "disk",
  /// "temperature"). A stopped process still holds its memory, so leases on
  /// a host in PANIC through memory or swap are revoked, not suspended.
  std::vector<std::string> panic_by;
  /// The host's power as its last snapshot told (null: it reports none):
  /// the lease table holds work below HIGH on battery (lease.on_battery).
  std::optional<host_power> power;
  /// Somebody at the host as its last snapshot told (null: it cannot tell):
  /// the lease table holds work below HIGH while the owner uses it
  /// (quiet.owner_idle).
  std::optional<owner_presence> owner;
  /// The host's GPUs as its last snapshot told (empty: none): the lease
  /// table counts a lease's `gpu` against them and holds GPU leases while
  /// the owner's use of a GPU is above lease.gpu_owner_busy.
  std::vector<gpu_device> gpus;
};

nlohmann::json to_json(const quiet_assessment& q);

/// Throws nlohmann::json::exception when a field is missing or mistyped.
quiet_assessment quiet_assessment_from_json(const nlohmann::json& j);

} // namespace lull
