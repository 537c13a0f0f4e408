#pragma once
/// The lease policy lulld runs with: lease.* as configured, completed from
/// the keys it shares with the quiet assessor and the limits.

#include "src/lease/lease_table.hpp"
#include "src/limits.hpp"
#include "src/quiet/quiet_assessor.hpp"

namespace lull {

/// `lease` with its TTL bounds made to hold lease.ttl, and what it shares
/// with the others: an assessment older than quiet.stale_after is none; a
/// cooldown_until from the bus counts at most the larger of
/// lease.panic_cooldown and quiet.cooldown (the assessor's own, so no honest
/// one asks for more); hosts are bounded and forgotten as limits.max_hosts
/// and limits.host_forget_after say.
lease_policy_config effective_lease_policy(lease_policy_config lease,
                                           const quiet_thresholds& quiet,
                                           const limits_settings& limits);

} // namespace lull
