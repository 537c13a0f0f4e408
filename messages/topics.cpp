#include "messages/topics.hpp"

namespace lull {

topic_names::topic_names(std::string prefix) : prefix_(std::move(prefix)) {
  if (!prefix_.empty() && prefix_.back() != '/')
    prefix_ += '/';
}

std::string topic_names::full(std::string_view relative) const {
  std::string out;
  out.reserve(prefix_.size() + relative.size());
  out += prefix_;
  out += relative;
  return out;
}

std::string topic_names::host_stats(std::string_view host_id) const {
  return full("stats/host/" + std::string(host_id));
}
std::string topic_names::host_stats_filter() const { return full("stats/host/+"); }
std::string topic_names::host_leases(std::string_view host_id) const {
  return full("scheduler/host/" + std::string(host_id) + "/leases");
}

std::string topic_names::host_control(std::string_view host_id) const {
  return full("scheduler/control/" + std::string(host_id));
}

std::string topic_names::host_quiet(std::string_view host_id) const {
  return full("stats/host/" + std::string(host_id) + "/quiet");
}
std::string topic_names::process_stats(std::string_view host_id, std::string_view name) const {
  return full("stats/process/" + std::string(host_id) + "/" + std::string(name));
}
std::string topic_names::bus_stats() const { return full("stats/bus"); }
std::string topic_names::worker_status(std::string_view worker_id) const {
  return full("stats/worker/" + std::string(worker_id));
}
std::string topic_names::worker_status_filter() const { return full("stats/worker/+"); }
std::string topic_names::availability(std::string_view instance) const {
  return full("lull/" + std::string(instance) + "/availability");
}
std::string topic_names::lease_request() const { return full("scheduler/lease/request"); }
std::string topic_names::lease_action(std::string_view lease_id,
                                      std::string_view action) const {
  return full("scheduler/lease/" + std::string(lease_id) + "/" + std::string(action));
}
std::string topic_names::lease_action_filter(std::string_view action) const {
  return full("scheduler/lease/+/" + std::string(action));
}
std::string topic_names::scheduler_status() const { return full("scheduler/status"); }
std::string topic_names::scheduler_events() const { return full("scheduler/events"); }
std::string topic_names::history_request() const { return full("history/request"); }
std::string topic_names::debug(std::string_view what) const {
  return full("lull/debug/" + std::string(what));
}

std::string_view topic_names::strip(std::string_view topic) const {
  if (topic.substr(0, prefix_.size()) != prefix_)
    return {};
  return topic.substr(prefix_.size());
}

std::vector<std::string_view> split_levels(std::string_view topic) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    auto pos = topic.find('/', start);
    if (pos == std::string_view::npos) {
      out.push_back(topic.substr(start));
      return out;
    }
    out.push_back(topic.substr(start, pos - start));
    start = pos + 1;
  }
}

bool topic_matches(std::string_view filter, std::string_view topic) {
  size_t f = 0, t = 0;
  while (f < filter.size()) {
    auto fend = filter.find('/', f);
    auto flevel = filter.substr(f, fend == std::string_view::npos ? std::string_view::npos
                                                                  : fend - f);
    if (flevel == "#")
      return true;
    if (t > topic.size())
      return false;
    auto tend = topic.find('/', t);
    auto tlevel = topic.substr(t, tend == std::string_view::npos ? std::string_view::npos
                                                                 : tend - t);
    if (flevel != "+" && flevel != tlevel)
      return false;
    if (fend == std::string_view::npos)
      return tend == std::string_view::npos;
    if (tend == std::string_view::npos) {
      // "a/#" also matches "a".
      return filter.substr(fend + 1) == "#";
    }
    f = fend + 1;
    t = tend + 1;
  }
  return false;
}

bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > 64)
    return false;
  for (char c : id)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
          || c == '_' || c == '-'))
      return false;
  return true;
}

} // namespace lull
