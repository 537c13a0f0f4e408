#include "src/store/series.hpp"

#include <algorithm>
#include <cmath>

#include "messages/codec.hpp"
#include "messages/page.hpp"
#include "messages/util.hpp"

namespace lull {

std::optional<series_source> classify_topic(const topic_names& topics, std::string_view topic,
                                            const std::string& local_host) {
  auto rel = topics.strip(topic);
  if (rel.empty())
    return std::nullopt;
  auto levels = split_levels(rel);
  if (levels.size() < 2 || levels[0] != "stats")
    return std::nullopt;
  if (levels[1] == "host" && levels.size() == 3)
    return series_source{std::string(levels[2]), "host"};
  if (levels[1] == "host" && levels.size() == 4 && levels[3] == "quiet")
    return series_source{std::string(levels[2]), "quiet"};
  if (levels[1] == "process" && levels.size() == 4)
    return series_source{std::string(levels[2]), "process:" + std::string(levels[3])};
  if (levels[1] == "bus" && levels.size() == 2)
    return series_source{local_host, "bus"};
  if (levels[1] == "worker" && levels.size() == 3)
    return series_source{local_host, "worker:" + std::string(levels[2])};
  return std::nullopt;
}

namespace {

void add_if_number(std::vector<sample_point>& out, const series_source& src, std::int64_t ts,
                   const std::string& metric, const nlohmann::json& v) {
  if (v.is_number() && std::isfinite(v.get<double>()))
    out.push_back({ts, src.host, src.group, metric, v.get<double>()});
}

const nlohmann::json& at_path(const nlohmann::json& doc, std::initializer_list<const char*> path) {
  static const nlohmann::json null_value;
  const nlohmann::json* cur = &doc;
  for (auto* key : path) {
    if (!cur->is_object())
      return null_value;
    auto it = cur->find(key);
    if (it == cur->end())
      return null_value;
    cur = &*it;
  }
  return *cur;
}

} // namespace

std::vector<sample_point> extract_points(const series_source& src, const nlohmann::json& doc,
                                         std::int64_t ts) {
  std::vector<sample_point> out;
  if (!doc.is_object())
    return out;
  if (src.group == "host") {
    add_if_number(out, src, ts, "cpu.total_pct", at_path(doc, {"cpu", "total_pct"}));
    add_if_number(out, src, ts, "cpu.temp_c", at_path(doc, {"cpu", "temp_c"}));
    add_if_number(out, src, ts, "cpu.freq_mhz", at_path(doc, {"cpu", "freq_mhz"}));
    add_if_number(out, src, ts, "load.1m", at_path(doc, {"load", "1m"}));
    add_if_number(out, src, ts, "mem.used_pct", at_path(doc, {"mem", "used_pct"}));
    add_if_number(out, src, ts, "swap.used_pct", at_path(doc, {"swap", "used_pct"}));
    add_if_number(out, src, ts, "net.rx_bytes", at_path(doc, {"net", "rx_bytes"}));
    add_if_number(out, src, ts, "net.tx_bytes", at_path(doc, {"net", "tx_bytes"}));
    if (auto& disks = at_path(doc, {"disks"}); disks.is_array())
      for (auto& d : disks)
        if (d.is_object() && d.contains("mount") && d["mount"].is_string())
          add_if_number(out, src, ts, "disk." + d["mount"].get<std::string>() + ".free_pct",
                        d.value("free_pct", nlohmann::json()));
    return out;
  }
  // At most 64 series per message, named in at most 64 characters: the keys
  // come from whoever publishes, and each new name is a new stored series.
  constexpr std::size_t max_points = 64, max_name = 64;
  for (auto& [k, v] : doc.items()) {
    if (k == "v" || k.size() > max_name)
      continue;
    if (v.is_object()) {
      for (auto& [k2, v2] : v.items())
        if (out.size() < max_points && k.size() + 1 + k2.size() <= max_name)
          add_if_number(out, src, ts, k + "." + k2, v2);
    } else {
      add_if_number(out, src, ts, k, v);
    }
    if (out.size() >= max_points)
      break;
  }
  return out;
}

bool is_counter(const std::string& metric) {
  auto ends_with = [&](const char* suffix) {
    std::string s(suffix);
    return metric.size() >= s.size() && metric.compare(metric.size() - s.size(), s.size(), s) == 0;
  };
  return ends_with("rx_bytes") || ends_with("tx_bytes");
}

summary summarize(std::vector<double> values) {
  summary s;
  if (values.empty())
    return s;
  std::sort(values.begin(), values.end());
  s.count = static_cast<std::int64_t>(values.size());
  double sum = 0;
  for (double v : values)
    sum += v;
  s.avg = sum / static_cast<double>(values.size());
  s.min = values.front();
  s.max = values.back();
  s.p95 = percentile(values, 95);
  return s;
}

std::vector<timed_value> counter_rates(const std::vector<timed_value>& counter) {
  std::vector<timed_value> out;
  for (size_t i = 1; i < counter.size(); ++i) {
    auto dt = counter[i].ts - counter[i - 1].ts;
    if (dt <= 0 || counter[i].value < 0 || counter[i - 1].value < 0)
      continue;
    auto delta = counter_delta(static_cast<std::uint64_t>(counter[i - 1].value),
                                     static_cast<std::uint64_t>(counter[i].value));
    if (delta)
      out.push_back({counter[i].ts, static_cast<double>(*delta) / static_cast<double>(dt)});
  }
  return out;
}

std::vector<rollup_row> rollup_accumulator::add(const sample_point& p) {
  std::vector<rollup_row> out;
  std::string key = p.host + '\x1f' + p.group + '\x1f' + p.metric;
  auto& s = series_[key];
  if (s.metric.empty()) {
    s.host = p.host;
    s.group = p.group;
    s.metric = p.metric;
  }
  if (is_counter(p.metric)) {
    auto prev = s.last_counter;
    s.last_counter = timed_value{p.ts, p.value};
    if (!prev)
      return out;
    auto rates = counter_rates({*prev, {p.ts, p.value}});
    if (rates.empty())
      return out;
    feed(s, p.ts, rates[0].value, out);
  } else {
    feed(s, p.ts, p.value, out);
  }
  return out;
}

void rollup_accumulator::feed(series_buckets& s, std::int64_t ts, double v,
                              std::vector<rollup_row>& out) {
  auto five = ts - ((ts % 300) + 300) % 300;
  auto hour = ts - ((ts % 3600) + 3600) % 3600;
  if (s.five.start != five) {
    if (s.five.start >= 0 && five > s.five.start)
      close_five(s, out);
    if (five > s.five.start) {
      s.five.start = five;
      s.five.values.clear();
    }
  }
  if (s.hour.start != hour) {
    if (s.hour.start >= 0 && hour > s.hour.start)
      close_hour(s, out);
    if (hour > s.hour.start)
      s.hour = hour_bucket{hour, {}};
  }
  // A late point for a bucket already closed is dropped from the rollups (it
  // is still stored raw).
  if (s.five.start == five && s.hour.start == hour)
    s.five.values.push_back(v);
}

void merged_summary::add(std::int64_t n, double part_avg, double part_min, double part_max,
                         double part_p95) {
  if (count == 0) {
    min = part_min;
    max = part_max;
    p95 = part_p95;
  } else {
    min = std::min(min, part_min);
    max = std::max(max, part_max);
    p95 = std::max(p95, part_p95);
  }
  count += n;
  sum += part_avg * static_cast<double>(n);
}

void rollup_accumulator::close_five(series_buckets& s, std::vector<rollup_row>& out) {
  auto& b = s.five;
  if (b.values.empty())
    return;
  auto sum = summarize(b.values);
  out.push_back({rollup_resolution::five_minutes, s.host, s.group, s.metric, b.start, sum.count,
                 sum.avg, sum.min, sum.max, sum.p95});
  b.values.clear();
  b.values.shrink_to_fit();
  auto& h = s.hour;
  if (h.start < 0 || b.start < h.start || b.start >= h.start + 3600)
    return;
  h.merged.add(sum.count, sum.avg, sum.min, sum.max, sum.p95);
}

void rollup_accumulator::close_hour(series_buckets& s, std::vector<rollup_row>& out) {
  // The hour's last 5-minute bucket first: it belongs to the hour.
  if (s.five.start >= s.hour.start && s.five.start < s.hour.start + 3600)
    close_five(s, out);
  auto& h = s.hour;
  auto& m = h.merged;
  if (m.count > 0)
    out.push_back({rollup_resolution::hour, s.host, s.group, s.metric, h.start, m.count, m.avg(),
                   m.min, m.max, m.p95});
  h = hour_bucket{h.start, {}};
}

std::vector<rollup_row> rollup_accumulator::close_before(std::int64_t now) {
  std::vector<rollup_row> out;
  for (auto& [key, s] : series_) {
    if (s.five.start >= 0 && s.five.start + 300 <= now)
      close_five(s, out);
    if (s.hour.start >= 0 && s.hour.start + 3600 <= now)
      close_hour(s, out);
  }
  return out;
}

void rollup_accumulator::forget(const std::string& host, const std::string& group,
                                const std::string& metric) {
  series_.erase(host + '\x1f' + group + '\x1f' + metric);
}

std::variant<history_query, std::string> parse_history_query(const nlohmann::json& req,
                                                             const std::string& default_host) {
  history_query q;
  q.host = default_host;
  if (!req.is_object())
    return std::string("request must be a JSON object");
  auto str_field = [&](const char* name, std::string& out) -> std::optional<std::string> {
    if (auto it = req.find(name); it != req.end()) {
      if (!it->is_string())
        return std::string("field '") + name + "' must be a string";
      out = it->get<std::string>();
    }
    return std::nullopt;
  };
  if (auto e = str_field("group", q.group))
    return *e;
  if (auto e = str_field("host", q.host))
    return *e;
  if (!valid_id(q.host))
    return "field 'host' must be a host id ([a-zA-Z0-9_-], 1-64 characters)";
  auto dur_field = [&](const char* name, std::int64_t& out, std::int64_t lo,
                       std::int64_t hi) -> std::optional<std::string> {
    auto it = req.find(name);
    if (it == req.end())
      return std::nullopt;
    std::optional<double> d;
    if (it->is_string())
      d = parse_duration_sec(it->get<std::string>());
    else if (it->is_number())
      d = it->get<double>();
    if (!d || !(*d >= static_cast<double>(lo) && *d <= static_cast<double>(hi)))
      return std::string("field '") + name + "' must be a duration such as 10s, 5m, 1h or 7d, "
             + "between " + std::to_string(lo) + " and " + std::to_string(hi) + " seconds";
    out = static_cast<std::int64_t>(*d);
    return std::nullopt;
  };
  if (auto e = dur_field("range", q.range_sec, 1, 400 * 86400))
    return *e;
  if (auto e = dur_field("step", q.step_sec, 1, 30 * 86400))
    return *e;
  if (q.range_sec / q.step_sec > 5000)
    return "range/step gives " + std::to_string(q.range_sec / q.step_sec)
           + " buckets; at most 5000 — use a larger 'step'";
  if (auto it = req.find("metrics"); it != req.end()) {
    if (!it->is_array())
      return std::string("field 'metrics' must be an array of metric names");
    for (auto& m : *it) {
      if (!m.is_string())
        return std::string("field 'metrics' must be an array of metric names");
      q.metrics.push_back(m.get<std::string>());
    }
  }
  return q;
}

history_source choose_source(const history_query& q, std::int64_t now,
                             std::int64_t raw_retention_sec, std::int64_t rollup_retention_sec) {
  auto from = now - q.range_sec;
  if (q.step_sec < 300 && from >= now - raw_retention_sec)
    return history_source::raw;
  if (q.step_sec < 3600 && from >= now - rollup_retention_sec)
    return history_source::five_minutes;
  return history_source::hour;
}

namespace {

bool wanted(const std::vector<std::string>& metrics, const std::string& m) {
  return metrics.empty() || std::find(metrics.begin(), metrics.end(), m) != metrics.end();
}

nlohmann::json null_array(size_t n) { return nlohmann::json(std::vector<std::nullptr_t>(n)); }

nlohmann::json empty_series(size_t n) {
  return {{"avg", null_array(n)}, {"min", null_array(n)}, {"max", null_array(n)},
          {"p95", null_array(n)}, {"n", std::vector<std::int64_t>(n, 0)}};
}

} // namespace

nlohmann::json bucket_points(const std::vector<point_row>& points, std::int64_t from,
                             std::int64_t to, std::int64_t step,
                             const std::vector<std::string>& metrics) {
  auto start = from - ((from % step) + step) % step;
  auto n = static_cast<size_t>((to - start + step - 1) / step);
  nlohmann::json series = nlohmann::json::object();
  // points arrive ordered by metric, then time.
  size_t i = 0;
  while (i < points.size()) {
    auto& metric = points[i].metric;
    size_t j = i;
    std::vector<timed_value> vals;
    while (j < points.size() && points[j].metric == metric) {
      vals.push_back({points[j].ts, points[j].value});
      ++j;
    }
    if (wanted(metrics, metric)) {
      if (is_counter(metric))
        vals = counter_rates(vals);
      std::vector<std::vector<double>> buckets(n);
      for (auto& v : vals) {
        if (v.ts < start || v.ts >= to)
          continue;
        auto b = static_cast<size_t>((v.ts - start) / step);
        if (b < n)
          buckets[b].push_back(v.value);
      }
      auto s = empty_series(n);
      for (size_t b = 0; b < n; ++b) {
        if (buckets[b].empty())
          continue;
        auto sum = summarize(std::move(buckets[b]));
        s["avg"][b] = sum.avg;
        s["min"][b] = sum.min;
        s["max"][b] = sum.max;
        s["p95"][b] = sum.p95;
        s["n"][b] = sum.count;
      }
      series[is_counter(metric) ? metric + "_per_sec" : metric] = std::move(s);
    }
    i = j;
  }
  return {{"start", start}, {"step_sec", step}, {"buckets", n}, {"series", series}};
}

nlohmann::json bucket_rollups(const std::vector<rollup_row>& rows, std::int64_t from,
                              std::int64_t to, std::int64_t step,
                              const std::vector<std::string>& metrics) {
  auto start = from - ((from % step) + step) % step;
  auto n = static_cast<size_t>((to - start + step - 1) / step);
  nlohmann::json series = nlohmann::json::object();
  size_t i = 0;
  while (i < rows.size()) {
    auto& metric = rows[i].metric;
    size_t j = i;
    std::vector<merged_summary> buckets(n);
    while (j < rows.size() && rows[j].metric == metric) {
      auto& r = rows[j++];
      if (r.bucket < start || r.bucket >= to || r.count <= 0)
        continue;
      auto b = static_cast<size_t>((r.bucket - start) / step);
      if (b >= n)
        continue;
      buckets[b].add(r.count, r.avg, r.min, r.max, r.p95);
    }
    if (wanted(metrics, metric)) {
      auto s = empty_series(n);
      for (size_t b = 0; b < n; ++b) {
        auto& a = buckets[b];
        if (a.count == 0)
          continue;
        s["avg"][b] = a.avg();
        s["min"][b] = a.min;
        s["max"][b] = a.max;
        s["p95"][b] = a.p95;
        s["n"][b] = a.count;
      }
      series[is_counter(metric) ? metric + "_per_sec" : metric] = std::move(s);
    }
    i = j;
  }
  return {{"start", start}, {"step_sec", step}, {"buckets", n}, {"series", series}};
}

namespace {

constexpr const char* series_arrays[] = {"avg", "min", "max", "p95", "n"};

} // namespace

nlohmann::json slice_buckets(const nlohmann::json& body, std::size_t first, std::size_t count) {
  auto out = body;
  auto n = body.value("buckets", std::size_t{0});
  first = std::min(first, n);
  count = std::min(count, n - first);
  auto step = body.value("step_sec", std::int64_t{0});
  out["start"] = body.value("start", std::int64_t{0}) + static_cast<std::int64_t>(first) * step;
  out["buckets"] = count;
  if (!body.contains("series") || !body["series"].is_object())
    return out;
  for (auto& [name, s] : out["series"].items()) {
    (void)name;
    for (auto* a : series_arrays) {
      if (!s.contains(a) || !s[a].is_array())
        continue;
      auto& src = s[a];
      nlohmann::json cut = nlohmann::json::array();
      for (std::size_t i = first; i < first + count && i < src.size(); ++i)
        cut.push_back(std::move(src[i]));
      src = std::move(cut);
    }
  }
  return out;
}

std::size_t buckets_that_fit(const reply_route& route, const nlohmann::json& body,
                             std::size_t max_bytes, std::size_t reserve) {
  auto n = body.value("buckets", std::size_t{0});
  if (reserve >= max_bytes)
    return 0;
  auto budget = max_bytes - reserve;
  if (reply_size(route, body) <= budget)
    return n;
  static const nlohmann::json no_series = nlohmann::json::object();
  auto found = body.find("series");
  const auto& series = found != body.end() && found->is_object() ? *found : no_series;
  // msgpack's array headers grow from 1 byte to 3 and 5 as they lengthen,
  // and `start` may take more bytes: room for both.
  auto used = reply_size(route, slice_buckets(body, 0, 0)) + 8 + 20 * series.size();
  std::size_t k = 0;
  for (; k < n; ++k) {
    std::size_t cost = 0;
    for (auto& [name, s] : series.items()) {
      (void)name;
      for (auto* a : series_arrays)
        if (s.contains(a) && s[a].is_array() && k < s[a].size())
          cost += encode(s[a][k], route.format).size() + 1;
    }
    if (used + cost > budget)
      break;
    used += cost;
  }
  // The estimate is an upper bound; the encoded reply decides.
  while (k > 0 && reply_size(route, slice_buckets(body, 0, k)) > budget)
    k = k * 9 / 10;
  return k;
}

} // namespace lull
