// Yield: the host's load holds and releases, and what they do to the
// leases on it (suspend, resume, preempt).

#include "src/lease/lease_table.hpp"
#include "src/lease/fmt.hpp"

#include <algorithm>
#include <string>
#include <utility>

namespace lull {

void lease_table::on_quiet(const quiet_assessment& q) {
  auto hit = hosts_.find(q.host_id);
  if (hit == hosts_.end()) {
    if (auto* p = pending(q.host_id))
      p->quiet = q;
    return;
  }
  auto& h = hit->second;
  double now = env_.mono_sec();
  auto wall = env_.wall_sec();
  // Its age counts from when it was assessed (a retained one may be old);
  // a time in the future counts as now.
  std::int64_t at = q.assessed_at > 0 ? std::min(q.assessed_at, wall) : wall;
  if (h.quiet && at < h.quiet->assessed_at)
    return; // older than the one held: a late retained copy
  h.quiet_fresh_mono = now - static_cast<double>(wall - at);
  if (q.state == quiet_state::panic)
    h.panic_until_mono = std::max(h.panic_until_mono, now + cfg_.panic_cooldown_sec);
  // The cool-down it asks for replaces the last one's, and counts at most
  // max_cooldown_sec from now whatever time it names.
  h.cooldown_until_mono = 0;
  if (q.cooldown_until) {
    double left = static_cast<double>(*q.cooldown_until - wall);
    if (left > 0)
      h.cooldown_until_mono = now + std::min(left, cfg_.max_cooldown_sec);
  }
  bool busy = q.state == quiet_state::busy || q.state == quiet_state::panic;
  if (!busy)
    h.busy_since_mono.reset();
  else if (!h.busy_since_mono)
    h.busy_since_mono = now;
  if (q.state != quiet_state::quiet)
    h.quiet_since_mono.reset();
  else if (!h.quiet_since_mono)
    h.quiet_since_mono = now;
  h.quiet = q;
  h.quiet->assessed_at = at;
  apply_yield(&q.host_id);
}

void lease_table::apply_yield(const std::string* only_host) {
  if (expiry_paused_)
    return; // cut off from the broker: no notice could reach a holder
  double now = env_.mono_sec();
  auto wall = env_.wall_sec();
  for (auto& [id, h] : hosts_) {
    if (only_host && id != *only_host)
      continue;
    if (h.pause && h.pause->until && *h.pause->until <= wall) {
      h.pause.reset();
      pauses_ended_.push_back(id);
    }
    if (!h.load_hold && h.busy_since_mono && now - *h.busy_since_mono >= cfg_.suspend_after_sec
        && h.quiet) {
      h.load_hold = true;
      h.load_hold_since = wall;
      h.load_reason = std::string("System is ") + to_string(h.quiet->state) + " for "
                      + fmt_sec(now - *h.busy_since_mono) + "s"
                      + (h.quiet->reasons.empty() ? "" : " (" + h.quiet->reasons.front() + ")");
    } else if (h.load_hold && h.quiet_since_mono
               && now - *h.quiet_since_mono >= cfg_.resume_after_sec) {
      h.load_hold = false;
      h.load_reason.clear();
    }
  }
  for (auto it = active_.begin(); it != active_.end();) {
    auto next = std::next(it);
    auto& r = it->second;
    if (only_host && r.host_id != *only_host) {
      it = next;
      continue;
    }
    auto hit = hosts_.find(r.host_id);
    if (hit == hosts_.end()) {
      it = next;
      continue;
    }
    auto& h = hit->second;
    bool below_high = lull::below_high(r.priority);
    // A stopped process keeps its memory: PANIC through memory or swap
    // revokes leases below HIGH at once.
    if (below_high && h.quiet && h.quiet->state == quiet_state::panic) {
      auto& by = h.quiet->panic_by;
      bool mem = std::find(by.begin(), by.end(), "memory") != by.end()
                 || std::find(by.begin(), by.end(), "swap") != by.end();
      if (mem) {
        preempt(it, "preempted: host " + r.host_id + " is PANIC through memory"
                      + (h.quiet->reasons.empty() ? "" : " (" + h.quiet->reasons.front() + ")"));
        it = next;
        continue;
      }
    }
    auto held = hold_of(r.host_id, h, r.priority, r.gpu,
                        r.suspended && r.suspend_cause == hold_cause::gpu);
    if (held && !r.suspended) {
      r.suspended = true;
      r.suspended_mono = now;
      r.suspended_at = wall;
      r.suspend_reason = held->text;
      r.suspend_cause = held->cause;
      dirty_.push_back(r.lease_id);
      emit("suspended", r, held->text, lease_state::active, true);
    } else if (!held && r.suspended
               && !((r.suspend_cause == hold_cause::power || r.suspend_cause == hold_cause::owner
                     || r.suspend_cause == hold_cause::gpu)
                    && !h.quiet)) {
      // (Held for power, its owner or the GPU before a restart: resumed once
      // an assessment says the host is on AC, its owner idle or off the GPU,
      // not before any has come.)
      r.suspended = false;
      r.suspended_at = 0;
      r.suspend_reason.clear();
      r.suspend_cause = hold_cause::none;
      dirty_.push_back(r.lease_id);
      emit("resumed", r,
           "host " + r.host_id + " may run it again (not paused, inside its windows, QUIET for "
             + fmt_sec(cfg_.resume_after_sec) + "s, on AC power or charged enough, its owner "
               "idle"
             + (r.gpu > 0 ? ", its GPUs not in use by the owner)" : ")"),
           lease_state::active, false);
    } else if (r.suspended && now - r.suspended_mono >= cfg_.preempt_after_sec) {
      preempt(it, "preempted: suspended for " + fmt_sec(now - r.suspended_mono) + "s ("
                    + r.suspend_reason + ")");
    }
    it = next;
  }
}

void lease_table::preempt(std::map<std::string, lease_record>::iterator it, std::string reason) {
  preempting_ = true;
  end_lease(it, lease_state::revoked, std::move(reason), true);
  preempting_ = false;
}

} // namespace lull
