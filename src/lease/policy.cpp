#include "src/lease/policy.hpp"

#include <algorithm>

namespace lull {

lease_policy_config effective_lease_policy(lease_policy_config lease,
                                           const quiet_thresholds& quiet,
                                           const limits_settings& limits) {
  lease.min_ttl_sec = std::min(lease.min_ttl_sec, lease.ttl_sec);
  lease.max_ttl_sec = std::max(lease.max_ttl_sec, lease.ttl_sec);
  lease.stale_after_sec = quiet.stale_after_sec;
  lease.owner_idle_sec = quiet.owner_idle_sec;
  lease.max_cooldown_sec = std::max(lease.panic_cooldown_sec, quiet.cooldown_sec);
  lease.max_hosts = limits.max_hosts;
  lease.host_forget_after_sec = limits.host_forget_after_sec;
  return lease;
}

} // namespace lull
