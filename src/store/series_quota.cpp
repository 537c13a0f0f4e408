#include "src/store/series_quota.hpp"

namespace lull {

namespace {

std::string source_key(const std::string& host, const std::string& group) {
  std::string k;
  k.reserve(host.size() + group.size() + 1);
  k += host;
  k += '\x1f';
  k += group;
  return k;
}

constexpr std::int64_t log_every_sec = 60;

} // namespace

std::vector<series_quota::refusal> series_quota::admit(std::vector<sample_point>& points,
                                                       std::int64_t now) {
  std::vector<refusal> out;
  // The refusals of this batch, by source, in the order first met.
  std::map<std::string, std::size_t> batch;
  std::size_t kept = 0;
  for (std::size_t i = 0; i < points.size(); ++i) {
    auto& p = points[i];
    auto key = source_key(p.host, p.group);
    auto it = sources_.find(key);
    bool ok = false, by_total = false;
    if (it != sources_.end()) {
      if (auto s = it->second.last_seen.find(p.metric); s != it->second.last_seen.end()) {
        s->second = now;
        ok = true;
      }
    }
    if (!ok) {
      std::size_t has = it == sources_.end() ? 0 : it->second.last_seen.size();
      if (has >= limits_.per_source) {
        by_total = false;
      } else if (total_ >= limits_.total) {
        by_total = true;
      } else {
        if (it == sources_.end())
          it = sources_.emplace(key, source{p.host, p.group, {}, never}).first;
        it->second.last_seen.emplace(p.metric, now);
        ++total_;
        ok = true;
      }
    }
    if (ok) {
      if (kept != i)
        points[kept] = std::move(p);
      ++kept;
      continue;
    }
    ++refused_;
    auto [b, fresh] = batch.emplace(key, out.size());
    if (fresh) {
      refusal r;
      r.host = p.host;
      r.group = p.group;
      r.metric = p.metric;
      r.by_total = by_total;
      r.source_series = it == sources_.end() ? 0 : it->second.last_seen.size();
      out.push_back(std::move(r));
    }
    ++out[b->second].dropped;
  }
  points.resize(kept);
  // At most one line a minute per source at its own cap; refusals by the
  // total share one line a minute, however many sources meet it.
  std::vector<refusal> logged;
  for (auto& r : out) {
    auto it = r.by_total ? sources_.end() : sources_.find(source_key(r.host, r.group));
    auto& last = it == sources_.end() ? total_last_log_ : it->second.last_log;
    if (last != never && now - last < log_every_sec)
      continue;
    last = now;
    logged.push_back(std::move(r));
  }
  return logged;
}

std::vector<series_quota::series_name> series_quota::evict_silent(std::int64_t before) {
  std::vector<series_name> out;
  for (auto it = sources_.begin(); it != sources_.end();) {
    auto& names = it->second.last_seen;
    for (auto s = names.begin(); s != names.end();) {
      if (s->second < before) {
        out.push_back({it->second.host, it->second.group, s->first});
        s = names.erase(s);
        --total_;
        ++evicted_;
      } else {
        ++s;
      }
    }
    it = names.empty() ? sources_.erase(it) : std::next(it);
  }
  return out;
}

std::size_t series_quota::series_of(const std::string& host, const std::string& group) const {
  auto it = sources_.find(source_key(host, group));
  return it == sources_.end() ? 0 : it->second.last_seen.size();
}

} // namespace lull
