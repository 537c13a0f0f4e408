#include "src/stats/host_roster.hpp"

#include <algorithm>

namespace lull {

host_roster::host_roster(std::size_t max_hosts, double forget_after_sec)
  : max_(std::max<std::size_t>(1, max_hosts)), forget_after_(forget_after_sec) {}

void host_roster::pin(const std::string& host) {
  pinned_.insert(host);
  last_.emplace(host, 0.0);
}

host_roster::seen_result host_roster::seen(const std::string& host, double now) {
  seen_result r;
  if (auto it = last_.find(host); it != last_.end()) {
    it->second = now;
    return r;
  }
  if (last_.size() >= max_) {
    auto oldest = last_.end();
    for (auto it = last_.begin(); it != last_.end(); ++it)
      if (!pinned_.count(it->first) && (oldest == last_.end() || it->second < oldest->second))
        oldest = it;
    if (oldest == last_.end())
      return r; // every slot pinned: cannot happen with max_hosts >= 2
    r.evicted = oldest->first;
    last_.erase(oldest);
    ++evicted_;
  }
  last_.emplace(host, now);
  r.added = true;
  return r;
}

std::vector<std::string> host_roster::expire(double now) {
  std::vector<std::string> out;
  for (auto it = last_.begin(); it != last_.end();) {
    if (!pinned_.count(it->first) && now - it->second > forget_after_) {
      out.push_back(it->first);
      it = last_.erase(it);
      ++evicted_;
    } else {
      ++it;
    }
  }
  return out;
}

std::vector<std::string> host_roster::hosts() const {
  std::vector<std::string> out;
  out.reserve(last_.size());
  for (auto& [h, t] : last_)
    out.push_back(h);
  return out;
}

} // namespace lull
