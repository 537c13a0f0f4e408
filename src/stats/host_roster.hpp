#pragma once
/// The hosts a role keeps state for (quiet assessments, Home Assistant
/// devices), learned from their agents' snapshots: at most `max_hosts` at
/// once, each forgotten once its agent has been silent `forget_after_sec`,
/// and, when full, the host silent longest gives way to a new agent, so a
/// flood of made-up host ids cannot lock a real one out. Plain C++: the
/// caller passes the (monotonic) time.

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace lull {

class host_roster {
public:
  host_roster(std::size_t max_hosts, double forget_after_sec);

  struct seen_result {
    bool added = false;                 ///< the host was not known before
    std::optional<std::string> evicted; ///< the host that gave way to it
  };
  /// A snapshot from `host`'s agent at `now`.
  seen_result seen(const std::string& host, double now);
  /// Hosts silent past forget_after at `now`, removed.
  std::vector<std::string> expire(double now);
  /// `host` is always known and never forgotten (lulld's own host).
  void pin(const std::string& host);

  bool contains(const std::string& host) const { return last_.count(host) > 0; }
  std::size_t size() const { return last_.size(); }
  std::vector<std::string> hosts() const;
  std::uint64_t evicted() const { return evicted_; }

private:
  std::size_t max_;
  double forget_after_;
  std::map<std::string, double> last_; ///< host -> last snapshot
  std::set<std::string> pinned_;
  std::uint64_t evicted_ = 0;
};

} // namespace lull
