#include "src/history/history_service.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <string_view>
#include <tuple>

#include "messages/codec.hpp"
#include "messages/util.hpp"
#include "src/lease/windows.hpp"
#include "src/store/series.hpp"

namespace lull {

namespace {

// -- cursors (opaque to clients; each names the last item sent) ----------------

/// Digits only, into an int64 (no sign, no overflow).
std::optional<std::int64_t> parse_int(std::string_view s) {
  if (s.empty() || s.size() > 18)
    return std::nullopt;
  std::int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

/// A cursor `tag` + "<n1>.<n2>...": its `n` numbers, then (with `rest`)
/// whatever follows the n-th dot (a host or worker id).
std::optional<std::pair<std::vector<std::int64_t>, std::string>>
split_cursor(const std::string& c, char tag, std::size_t n, bool rest) {
  if (c.empty() || c[0] != tag)
    return std::nullopt;
  std::vector<std::int64_t> nums;
  std::size_t pos = 1;
  for (std::size_t i = 0; i < n; ++i) {
    auto dot = c.find('.', pos);
    bool last = i + 1 == n && !rest;
    auto end = last ? c.size() : dot;
    if (!last && dot == std::string::npos)
      return std::nullopt;
    auto v = parse_int(std::string_view(c).substr(pos, end - pos));
    if (!v)
      return std::nullopt;
    nums.push_back(*v);
    pos = last ? c.size() : dot + 1;
  }
  return std::make_pair(nums, rest ? c.substr(pos) : std::string());
}

/// history: "h<source>.<step>.<next bucket start>.<end of the range>".
std::string history_cursor(history_source src, std::int64_t step, std::int64_t start,
                           std::int64_t to) {
  return "h" + std::to_string(static_cast<int>(src)) + "." + std::to_string(step) + "."
         + std::to_string(start) + "." + std::to_string(to);
}

page_spec spec_of(const char* field, const page_args& pa, const history_options& opts,
                  bool object = false) {
  page_spec spec;
  spec.field = field;
  spec.object = object;
  spec.limit = pa.limit;
  spec.max_bytes = opts.max_reply_bytes;
  return spec;
}

} // namespace

std::int64_t host_stale_after_sec(double snapshot_interval_sec) {
  return std::max<std::int64_t>(30, static_cast<std::int64_t>(snapshot_interval_sec * 5));
}

history_service::history_service(store& db, history_options opts, history_sources sources)
  : db_(db), opts_(std::move(opts)), sources_(std::move(sources)) {}

nlohmann::json history_service::answer(const nlohmann::json& req, const reply_route& route,
                                       std::optional<request_error>& error, std::int64_t now) {
  auto& opts = opts_;
  auto flush = [this] {
    if (sources_.flush)
      sources_.flush(); // answer with everything received so far
  };
  std::string kind = "history";
  for (auto* name : {"kind", "host"})
    if (auto it = req.find(name); it != req.end() && !it->is_string()) {
      error = {error_code::invalid_request, std::string("field '") + name + "' must be a string"};
      return {};
    }
  if (auto it = req.find("kind"); it != req.end())
    kind = it->get<std::string>();
  // `limit` and `cursor`, for the kinds that list.
  auto paging = [&](std::size_t default_limit) -> std::optional<page_args> {
    auto pa = parse_page_args(req, default_limit, 1000);
    if (auto* e = std::get_if<request_error>(&pa)) {
      error = *e;
      return std::nullopt;
    }
    return std::get<page_args>(pa);
  };
  auto paged = [&](std::variant<nlohmann::json, request_error> page) -> nlohmann::json {
    if (auto* e = std::get_if<request_error>(&page)) {
      error = *e;
      return {};
    }
    return std::move(std::get<nlohmann::json>(page));
  };
  if (kind == "history") {
    auto parsed = parse_history_query(req, opts.host_id);
    if (auto* msg = std::get_if<std::string>(&parsed)) {
      error = {error_code::invalid_request, *msg};
      return {};
    }
    auto q = std::get<history_query>(parsed);
    auto pa = paging(1);
    if (!pa)
      return {};
    auto to = now + 1;
    auto from = to - q.range_sec;
    auto src = choose_source(q, now, opts.raw_retention_sec, opts.rollup_retention_sec);
    if (!pa->cursor.empty()) {
      // The range, its end and its source stay those of the first page.
      auto c = split_cursor(pa->cursor, 'h', 4, false);
      if (!c || c->first[0] > 2 || c->first[1] != q.step_sec || c->first[2] % q.step_sec != 0
          || c->first[2] >= c->first[3] || (c->first[3] - c->first[2]) / q.step_sec > 5000) {
        error = bad_cursor(pa->cursor);
        error->message += " (with the same group, host, step and metrics)";
        return {};
      }
      src = static_cast<history_source>(c->first[0]);
      from = c->first[2];
      to = c->first[3];
    }
    flush();
    nlohmann::json body;
    if (src == history_source::raw) {
      body = bucket_points(db_.query_points(q.host, q.group, from - q.step_sec, to), from,
                           to, q.step_sec, q.metrics);
    } else {
      auto res = src == history_source::five_minutes ? rollup_resolution::five_minutes
                                                     : rollup_resolution::hour;
      body = bucket_rollups(db_.query_rollups(res, q.host, q.group, from - q.step_sec, to),
                            from, to, q.step_sec, q.metrics);
    }
    body["ok"] = true;
    body["kind"] = "history";
    body["group"] = q.group;
    body["host"] = q.host;
    body["source"] = src;
    body["start_utc"] = utc_timestamp(body["start"].get<std::int64_t>());
    // Paged by buckets: each page its own `start` and `buckets`, the next
    // one starting where it ends.
    auto n = body["buckets"].get<std::size_t>();
    auto start = body["start"].get<std::int64_t>();
    auto reserve = 16 + history_cursor(src, q.step_sec, to, to).size();
    auto k = buckets_that_fit(route, body, opts.max_reply_bytes, reserve);
    if (k == 0 && n > 0) {
      error = reply_too_large("one bucket of " + std::to_string(body["series"].size())
                                + " series",
                              reply_size(route, slice_buckets(body, 0, 1)) + reserve,
                              opts.max_reply_bytes);
      error->message += "; ask for fewer 'metrics'";
      return {};
    }
    if (k < n) {
      body = slice_buckets(body, 0, k);
      body["next"] = history_cursor(src, q.step_sec,
                                    start + static_cast<std::int64_t>(k) * q.step_sec, to);
    }
    return body;
  }
  if (kind == "quiet_streaks") {
    auto host = req.value("host", std::string());
    auto pa = paging(1000);
    if (!pa)
      return {};
    std::optional<std::pair<std::int64_t, std::string>> after;
    if (!pa->cursor.empty()) {
      auto c = split_cursor(pa->cursor, 's', 1, true);
      if (!c) {
        error = bad_cursor(pa->cursor);
        return {};
      }
      after = std::make_pair(c->first[0], c->second);
    }
    flush();
    auto rows = db_.quiet_streaks_page(host, now - 86400, static_cast<int>(pa->limit) + 1, after);
    return paged(build_page(
      route, {{"ok", true}, {"kind", kind}}, rows.size(),
      [&](std::size_t i) {
        auto& s = rows[i];
        return page_item{{{"host", s.host},
                          {"start", utc_timestamp(s.start)},
                          {"end", utc_timestamp(s.end)},
                          {"duration_sec", s.end - s.start},
                          {"avg_score", s.avg_score},
                          {"min_score", s.min_score}},
                         "s" + std::to_string(s.start) + "." + s.host,
                         {},
                         "a quiet streak"};
      },
      spec_of("streaks", *pa, opts)));
  }
  if (kind == "windows") {
    // Learned quiet windows: the share of each local hour of the week the
    // host was QUIET, from its quiet streaks over the last `weeks`.
    auto host = req.value("host", opts.host_id);
    int weeks = 4;
    if (auto it = req.find("weeks"); it != req.end()) {
      if (!it->is_number_integer() || it->get<std::int64_t>() < 1 || it->get<std::int64_t>() > 52) {
        error = {error_code::invalid_request, "field 'weeks' must be an integer from 1 to 52"};
        return {};
      }
      weeks = it->get<int>();
    }
    flush();
    auto* zone = find_time_zone(opts.timezone, nullptr);
    if (!zone)
      zone = find_time_zone("UTC", nullptr);
    std::int64_t since = now - static_cast<std::int64_t>(weeks) * 7 * 86400;
    // Observed from the first quiet assessment kept in that range.
    std::optional<std::int64_t> first;
    auto hourly = db_.query_rollups(rollup_resolution::hour, host, "quiet", since, now);
    for (auto& r : hourly)
      first = std::min(first.value_or(r.bucket), r.bucket);
    if (!first)
      for (auto& p : db_.query_points(host, "quiet", since, now))
        first = std::min(first.value_or(p.ts), p.ts);
    std::vector<std::pair<std::int64_t, std::int64_t>> spans;
    for (auto& s : db_.quiet_streaks(host, since))
      spans.emplace_back(s.start, s.end);
    auto map = learn_quiet_hours(spans, first.value_or(now), now, zone);
    static const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    nlohmann::json rows = nlohmann::json::array();
    for (int d = 0; d < 7; ++d) {
      nlohmann::json row = nlohmann::json::array();
      for (int h = 0; h < 24; ++h) {
        auto s = map.share(d, h);
        row.push_back(s ? nlohmann::json(std::round(*s * 1000) / 1000) : nlohmann::json(nullptr));
      }
      rows.push_back(std::move(row));
    }
    auto next = next_quiet_hour(map, now, zone);
    return {{"ok", true},
            {"kind", kind},
            {"host", host},
            {"timezone", zone_name(zone)},
            {"weeks", weeks},
            {"days_observed", std::round(map.days_observed * 10) / 10},
            {"ready", map.days_observed >= 7},
            {"days", days},
            {"hours", rows},
            {"next_window", next ? nlohmann::json(utc_timestamp(*next)) : nlohmann::json(nullptr)}};
  }
  if (kind == "health") {
    auto pa = paging(1000);
    if (!pa)
      return {};
    static const std::map<std::string, host_health_input> no_hosts;
    static const persister_health_input no_health;
    auto report = assess_health_report(sources_.hosts ? *sources_.hosts : no_hosts,
                                       sources_.health ? *sources_.health : no_health, now,
                                       health_thresholds{opts.stale_after_sec, 10, 5});
    // A reason's key: its section, host and place; the cursor names the last one sent.
    auto& reasons = report.reasons;
    auto cursor_of = [](const health_reason& r) {
      return "r" + std::to_string(r.section) + "." + std::to_string(r.index) + "." + r.host;
    };
    std::size_t first = 0;
    if (!pa->cursor.empty()) {
      auto c = split_cursor(pa->cursor, 'r', 2, true);
      if (!c || c->first[0] > 1) {
        error = bad_cursor(pa->cursor);
        return {};
      }
      auto key = std::make_tuple(static_cast<int>(c->first[0]), c->second,
                                 static_cast<std::size_t>(c->first[1]));
      while (first < reasons.size()
             && std::make_tuple(reasons[first].section, reasons[first].host,
                                reasons[first].index)
                  <= key)
        ++first;
    }
    auto count = std::min(reasons.size() - first, pa->limit + 1);
    return paged(build_page(
      route, {{"ok", true}, {"kind", kind}, {"status", report.status}}, count,
      [&](std::size_t i) {
        auto& r = reasons[first + i];
        return page_item{r.text, cursor_of(r), {}, "a health reason"};
      },
      spec_of("reasons", *pa, opts)));
  }
  if (kind == "lease_events") {
    auto pa = paging(200);
    if (!pa)
      return {};
    std::int64_t before = 0;
    if (!pa->cursor.empty()) {
      auto c = split_cursor(pa->cursor, 'e', 1, false);
      if (!c || c->first[0] <= 0) {
        error = bad_cursor(pa->cursor);
        return {};
      }
      before = c->first[0];
    }
    flush();
    auto events = db_.recent_lease_events(now - 86400, static_cast<int>(pa->limit) + 1, before);
    return paged(build_page(
      route, {{"ok", true}, {"kind", kind}}, events.size(),
      [&](std::size_t i) {
        auto& e = events[i];
        // Rows stored before text was bounded are cut here too.
        return page_item{{{"ts", utc_timestamp(e.ts)},
                          {"event", clip_text(e.event, max_id_text_bytes)},
                          {"lease_id", clip_text(e.lease_id, max_id_text_bytes)},
                          {"worker_id", clip_text(e.worker_id, max_id_text_bytes)},
                          {"host_id", clip_text(e.host_id, max_id_text_bytes)},
                          {"reason", clip_text(e.reason)}},
                         "e" + std::to_string(e.id),
                         {},
                         "lease event " + std::to_string(e.id)};
      },
      spec_of("events", *pa, opts)));
  }
  if (kind == "decisions") {
    auto pa = paging(1000);
    if (!pa)
      return {};
    if (!pa->cursor.empty() && pa->cursor[0] != 'w') {
      error = bad_cursor(pa->cursor);
      return {};
    }
    auto after = pa->cursor.empty() ? std::string() : pa->cursor.substr(1);
    flush();
    auto events = db_.recent_lease_events(now - 86400, 100000);
    std::map<std::string, nlohmann::json> workers;
    // events are newest first: the first reason seen is the last one given.
    for (auto& e : events) {
      if (e.worker_id.empty())
        continue;
      auto id = clip_text(e.worker_id, max_id_text_bytes);
      if (!pa->cursor.empty() && id <= after)
        continue;
      auto& w = workers[id];
      if (w.is_null())
        w = {{"grants", 0}, {"denies", 0}, {"expired", 0}, {"last_reason", clip_text(e.reason)},
             {"last_event", clip_text(e.event, max_id_text_bytes)},
             {"last_at", utc_timestamp(e.ts)}};
      if (e.event == "grant" || e.event == "granted")
        w["grants"] = w["grants"].get<int>() + 1;
      else if (e.event == "deny" || e.event == "denied")
        w["denies"] = w["denies"].get<int>() + 1;
      else if (e.event == "expire" || e.event == "expired")
        w["expired"] = w["expired"].get<int>() + 1;
    }
    std::vector<std::map<std::string, nlohmann::json>::iterator> order;
    for (auto it = workers.begin(); it != workers.end() && order.size() <= pa->limit; ++it)
      order.push_back(it);
    return paged(build_page(
      route, {{"ok", true}, {"kind", kind}}, order.size(),
      [&](std::size_t i) {
        return page_item{order[i]->second, "w" + order[i]->first, order[i]->first,
                         "worker " + order[i]->first};
      },
      spec_of("workers", *pa, opts, true)));
  }
  error = {error_code::invalid_request,
           "field 'kind' must be one of history, quiet_streaks, windows, health, lease_events, "
           "decisions"};
  return {};
}


std::optional<nlohmann::json> history_service::quiet_hours(const std::string& host,
                                                           std::int64_t now) {
  std::optional<request_error> err;
  auto map = answer({{"kind", "windows"}, {"host", host}}, reply_route{}, err, now);
  if (err)
    return std::nullopt;
  map.erase("ok");
  map.erase("kind");
  map["v"] = schema_version;
  return map;
}

} // namespace lull
