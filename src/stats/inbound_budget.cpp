#include "src/stats/inbound_budget.hpp"

#include <algorithm>

namespace lull {

namespace {

std::vector<std::string_view> levels_of(std::string_view topic) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (out.size() < 8) {
    auto slash = topic.find('/', start);
    out.push_back(topic.substr(start, slash == std::string_view::npos ? topic.npos : slash - start));
    if (slash == std::string_view::npos)
      break;
    start = slash + 1;
  }
  return out;
}

/// A source name as a bucket key: bounded, so a long topic level costs
/// nothing extra.
std::string source_key(std::string_view s) { return std::string(s.substr(0, 64)); }

} // namespace

const char* lane_name(inbound_lane lane) {
  switch (lane) {
    case inbound_lane::lease: return "lease";
    case inbound_lane::job: return "job";
    case inbound_lane::control: return "control";
    case inbound_lane::history: return "history";
    case inbound_lane::stats: return "stats";
    case inbound_lane::other: return "other";
  }
  return "other";
}

inbound_class classify_inbound(std::string_view topic) {
  inbound_class c;
  auto lv = levels_of(topic);
  auto at = [&](std::size_t i) { return i < lv.size() ? lv[i] : std::string_view(); };
  if (at(0) == "scheduler" && at(1) == "host") {
    // scheduler/host/<h>/leases: lulld's own retained lease list, read by
    // the host's agent. Only the latest matters and no client's rate is in
    // it (the scheduler alone may write it in secure mode): room only.
    c.lane = inbound_lane::other;
    c.source = source_key(at(2));
    c.exempt = true;
  } else if (at(0) == "scheduler") {
    // scheduler/lease/..., scheduler/job/..., scheduler/control/... (open)
    // or scheduler/<user>/lease/..., scheduler/<user>/job/... (secure).
    std::size_t kind = 1;
    if (at(1) != "lease" && at(1) != "job" && at(1) != "control") {
      c.source = source_key(at(1));
      kind = 2;
    }
    if (at(kind) == "lease") {
      c.lane = inbound_lane::lease;
      auto last = lv.back();
      c.keep = lv.size() > kind + 2 && (last == "heartbeat" || last == "release");
    } else if (at(kind) == "job") {
      c.lane = inbound_lane::job;
    } else if (at(1) == "control") {
      c.lane = inbound_lane::control;
      c.source = source_key(at(2)); // the host it is about
    } else {
      c.lane = inbound_lane::other;
    }
  } else if (at(0) == "history") {
    c.lane = inbound_lane::history;
    if (lv.size() > 2)
      c.source = source_key(at(1));
  } else if (at(0) == "stats") {
    c.lane = inbound_lane::stats;
    if ((at(1) == "host" || at(1) == "worker") && lv.size() > 2)
      c.source = source_key(at(2));
    // stats/host/<h>/quiet and /quiet_hours: the assessor's and persister's
    // retained outputs (one writer each in secure mode), latest wins.
    c.exempt = at(1) == "host" && lv.size() > 3;
  } else {
    c.lane = inbound_lane::other;
  }
  return c;
}

budget_options budget_options::defaults() {
  budget_options o;
  auto set = [&](inbound_lane l, double rate, double burst, double open_rate, double open_burst,
                 std::size_t msgs, std::size_t bytes) {
    o.lanes[static_cast<std::size_t>(l)] = {rate, burst, open_rate, open_burst, msgs, bytes};
  };
  constexpr std::size_t mib = 1024 * 1024;
  // Lease requests, heartbeats, releases: in secure mode each worker is
  // its own user (the ACL ties it to its topics), and one worker asks a few
  // times a second at most; open mode's everyone gets far more (the bench
  // cycles ~2,700 leases/s, 5,400 messages).
  set(inbound_lane::lease, 50, 100, 20000, 20000, 4000, 8 * mib);
  // Job submits and polls: a producer may queue a batch at once.
  set(inbound_lane::job, 200, 1000, 10000, 10000, 2000, 16 * mib);
  // Pause switches: a person or Home Assistant, now and then.
  set(inbound_lane::control, 10, 20, 200, 400, 256, mib);
  // History queries: each reads the database.
  set(inbound_lane::history, 5, 20, 200, 400, 64, 2 * mib);
  // Snapshots (an agent every 2 s), worker status (every few seconds), bus
  // stats: a burst of 20 covers a reconnect's backlog.
  set(inbound_lane::stats, 5, 20, 200, 400, 2000, 8 * mib);
  // Whatever else lulld subscribes to (availability, status, events).
  set(inbound_lane::other, 50, 100, 2000, 4000, 4000, 2 * mib);
  return o;
}

inbound_budget::inbound_budget(budget_options opts) : opts_(std::move(opts)) {}

bool inbound_budget::take_token(lane_data& l, const lane_limits& lim, const std::string& source,
                                double now) {
  bool open = source.empty();
  double rate = open ? lim.open_rate : lim.rate;
  double burst = open ? lim.open_burst : lim.burst;
  bucket* b = nullptr;
  auto it = l.buckets.find(source);
  if (it != l.buckets.end()) {
    b = &it->second;
  } else {
    if (l.buckets.size() >= opts_.max_sources) {
      // Forget sources whose bucket has refilled (idle ones) first.
      for (auto i = l.buckets.begin(); i != l.buckets.end();)
        i = (now - i->second.last) * rate >= burst ? l.buckets.erase(i) : std::next(i);
    }
    if (l.buckets.size() < opts_.max_sources) {
      b = &l.buckets.emplace(source, bucket{burst, now}).first->second;
    } else {
      b = &l.shared;
      if (b->last == 0)
        *b = {burst, now};
    }
  }
  b->tokens = std::min(burst, b->tokens + std::max(0.0, now - b->last) * rate);
  b->last = now;
  if (b->tokens < 1)
    return false;
  b->tokens -= 1;
  return true;
}

inbound_budget::decision inbound_budget::admit(const inbound_class& c, std::size_t bytes,
                                               double now) {
  auto idx = static_cast<std::size_t>(c.lane);
  auto& l = lanes_[idx];
  const auto& lim = opts_.lanes[idx];
  decision d;
  auto shed = [&](verdict v, const char* why) {
    d.v = v;
    ++(v == verdict::rate_limited ? l.rate_limited : l.lane_full);
    auto key = std::string(lane_name(c.lane)) + '\t' + (c.source.empty() ? "*" : c.source) + '\t'
               + why;
    auto it = shed_since_.find(key);
    if (it != shed_since_.end())
      ++it->second;
    else if (shed_since_.size() < 256)
      shed_since_.emplace(std::move(key), 1);
    else
      ++shed_unnamed_;
    return d;
  };
  if (!c.exempt && !take_token(l, lim, c.source, now))
    return shed(verdict::rate_limited, "over its rate");
  // Room: heartbeats and releases may fill the lane, the rest a share of it.
  double share = c.keep || c.lane != inbound_lane::lease ? 1.0 : opts_.keep_share;
  auto msgs = l.live->msgs.load(std::memory_order_relaxed);
  auto held = l.live->bytes.load(std::memory_order_relaxed);
  if (static_cast<double>(msgs + 1) > share * static_cast<double>(lim.max_msgs)
      || static_cast<double>(held) + static_cast<double>(bytes)
           > share * static_cast<double>(lim.max_bytes))
    return shed(verdict::lane_full, "lane full");
  ++l.admitted;
  auto live = l.live;
  auto n = static_cast<std::int64_t>(bytes);
  live->msgs.fetch_add(1, std::memory_order_relaxed);
  live->bytes.fetch_add(n, std::memory_order_relaxed);
  // The hold is a shared pointer to the lane's counters whose deleter gives
  // the message's share back: the last copy of the message let go.
  d.hold = std::shared_ptr<void>(live.get(), [live, n](void*) {
    live->msgs.fetch_sub(1, std::memory_order_relaxed);
    live->bytes.fetch_sub(n, std::memory_order_relaxed);
  });
  return d;
}

inbound_budget::lane_counts inbound_budget::counts(inbound_lane lane) const {
  auto& l = lanes_[static_cast<std::size_t>(lane)];
  lane_counts c;
  c.queued_msgs = static_cast<std::uint64_t>(std::max<std::int64_t>(0, l.live->msgs.load()));
  c.queued_bytes = static_cast<std::uint64_t>(std::max<std::int64_t>(0, l.live->bytes.load()));
  c.admitted = l.admitted;
  c.rate_limited = l.rate_limited;
  c.lane_full = l.lane_full;
  return c;
}

std::uint64_t inbound_budget::shed_total() const {
  std::uint64_t n = 0;
  for (auto& l : lanes_)
    n += l.rate_limited + l.lane_full;
  return n;
}

std::vector<std::string> inbound_budget::report(double now, std::size_t max_lines) {
  std::vector<std::string> lines;
  double span = last_report_ > 0 ? now - last_report_ : 0;
  last_report_ = now;
  if (shed_since_.empty() && shed_unnamed_ == 0)
    return lines;
  std::vector<std::pair<std::uint64_t, std::string>> by_count;
  for (auto& [key, n] : shed_since_)
    by_count.emplace_back(n, key);
  std::sort(by_count.begin(), by_count.end(), [](auto& a, auto& b) { return a.first > b.first; });
  auto since = span > 0 ? " in the last " + std::to_string(static_cast<long>(span + 0.5)) + " s"
                        : std::string();
  std::uint64_t rest = shed_unnamed_, rest_sources = shed_unnamed_ > 0 ? 1 : 0;
  for (std::size_t i = 0; i < by_count.size(); ++i) {
    if (i >= max_lines) {
      rest += by_count[i].first;
      ++rest_sources;
      continue;
    }
    auto& key = by_count[i].second;
    auto t1 = key.find('\t'), t2 = key.find('\t', t1 + 1);
    auto lane = key.substr(0, t1), source = key.substr(t1 + 1, t2 - t1 - 1),
         why = key.substr(t2 + 1);
    lines.push_back("dropped " + std::to_string(by_count[i].first) + " messages "
                    + (source == "*" ? std::string("from unnamed clients")
                                     : "from '" + source + "'")
                    + " on the " + lane + " lane (" + why + ")" + since);
  }
  if (rest > 0)
    lines.push_back("dropped " + std::to_string(rest) + " more messages from "
                    + std::to_string(rest_sources) + " more sources" + since);
  shed_since_.clear();
  shed_unnamed_ = 0;
  return lines;
}

} // namespace lull
