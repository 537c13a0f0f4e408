#pragma once
/// lull's topic names (README.md, "Topics"). An optional prefix is prepended to
/// every topic lull owns; reply topics chosen by clients are used as given.

#include <string>
#include <string_view>
#include <vector>

namespace lull {

class topic_names {
public:
  topic_names() = default;
  explicit topic_names(std::string prefix);

  const std::string& prefix() const { return prefix_; }

  std::string host_stats(std::string_view host_id) const;
  std::string host_stats_filter() const; ///< stats/host/+
  std::string host_quiet(std::string_view host_id) const;
  std::string process_stats(std::string_view host_id, std::string_view name) const;
  std::string bus_stats() const;
  std::string worker_status(std::string_view worker_id) const;
  std::string worker_status_filter() const; ///< stats/worker/+
  std::string availability(std::string_view instance) const;
  std::string lease_request() const;
  std::string lease_action(std::string_view lease_id, std::string_view action) const;
  std::string lease_action_filter(std::string_view action) const;
  std::string scheduler_status() const;
  /// scheduler/host/<host_id>/leases: a host's active leases and their
  /// processes, retained, for the agent that measures them.
  std::string host_leases(std::string_view host_id) const;
  /// scheduler/control/<host_id>: the host's pause, retained; lull pause and
  /// lull resume write it (admin only under the secure config).
  std::string host_control(std::string_view host_id) const;
  std::string scheduler_events() const;
  std::string history_request() const;
  std::string debug(std::string_view what) const;

  /// The topic without this instance's prefix, or empty when it lacks it.
  std::string_view strip(std::string_view topic) const;

  /// Joins the prefix and a relative topic.
  std::string full(std::string_view relative) const;

private:
  std::string prefix_; ///< empty, or ends in '/'
};

/// The levels of a topic ("a/b/c" -> a, b, c; "" -> one empty level).
std::vector<std::string_view> split_levels(std::string_view topic);

/// MQTT topic filter matching with '+' and '#' wildcards.
bool topic_matches(std::string_view filter, std::string_view topic);

/// True when `id` is usable as one topic level and as a Home Assistant id:
/// 1-64 characters from [a-zA-Z0-9_-].
bool valid_id(std::string_view id);

} // namespace lull
