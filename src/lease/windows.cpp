#include "src/lease/windows.hpp"

#include "messages/util.hpp"

#include <date/tz.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace lull {

namespace {

using namespace std::chrono;

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
    s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  while (true) {
    auto pos = s.find(sep);
    out.push_back(trim(s.substr(0, pos)));
    if (pos == std::string_view::npos)
      return out;
    s.remove_prefix(pos + 1);
  }
}

const char* const day_names[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
const char* const long_names[] = {"sunday",   "monday", "tuesday", "wednesday",
                                  "thursday", "friday", "saturday"};

std::optional<int> parse_day(std::string_view s) {
  auto low = lower(s);
  for (int d = 0; d < 7; ++d) {
    if (low == lower(day_names[d]) || low == long_names[d])
      return d;
  }
  return std::nullopt;
}

/// "HH:MM" (24:00 allowed as an end) -> minutes.
std::optional<int> parse_clock(std::string_view s, bool end) {
  if (s.size() != 5 || s[2] != ':' || !std::isdigit(static_cast<unsigned char>(s[0]))
      || !std::isdigit(static_cast<unsigned char>(s[1]))
      || !std::isdigit(static_cast<unsigned char>(s[3]))
      || !std::isdigit(static_cast<unsigned char>(s[4])))
    return std::nullopt;
  int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
  if (m > 59 || h > 24 || (h == 24 && (m != 0 || !end)))
    return std::nullopt;
  return h * 60 + m;
}

std::string clock_text(int min) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02d:%02d", min / 60, min % 60);
  return buf;
}

bool is_host_prefix(std::string_view p) {
  if (p.empty() || p.size() > 64)
    return false;
  bool digits = true;
  for (char c : p) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'))
      return false;
    digits = digits && std::isdigit(static_cast<unsigned char>(c));
  }
  return !digits;
}

} // namespace

const date::time_zone* find_time_zone(std::string_view name, std::string* why) {
  try {
    if (!name.empty() && name != "local")
      return date::locate_zone(std::string(name));
    if (const char* tz = std::getenv("TZ"); tz != nullptr && *tz != '\0') {
      std::string_view z(tz);
      if (z.front() == ':')
        z.remove_prefix(1);
      try {
        return date::locate_zone(std::string(z));
      } catch (const std::exception&) {
        // A POSIX TZ rule rather than a zone name: use the system's zone.
      }
    }
    try {
      return date::current_zone();
    } catch (const std::exception&) {
      return date::locate_zone("UTC"); // no /etc/localtime: a container
    }
  } catch (const std::exception& e) {
    if (why)
      *why = "unknown time zone '" + std::string(name)
             + "': expected an IANA name such as Europe/Berlin or \"local\" ("
             + e.what() + ")";
    return nullptr;
  }
}

std::string zone_name(const date::time_zone* zone) { return zone ? zone->name() : "UTC"; }

std::variant<window_schedule, std::string> window_schedule::parse(std::string_view spec,
                                                                  const date::time_zone* zone) {
  window_schedule out;
  out.zone_ = zone;
  for (auto part : split(spec, ',')) {
    if (part.empty())
      return "empty window entry in '" + std::string(spec) + "'";
    entry e;
    std::string days_text, time_text;
    for (auto tok : split(part, ' ')) {
      if (tok.empty())
        continue;
      if (std::isdigit(static_cast<unsigned char>(tok.front()))) {
        if (!time_text.empty())
          return "two time ranges in window '" + std::string(part) + "'";
        auto dash = tok.find('-');
        auto a = parse_clock(tok.substr(0, dash), false);
        auto b = dash == std::string_view::npos ? std::nullopt
                                                : parse_clock(tok.substr(dash + 1), true);
        if (!a || !b)
          return "bad time range '" + std::string(tok)
                 + "': expected HH:MM-HH:MM such as 22:00-07:00 or 00:00-24:00";
        e.start_min = *a;
        e.end_min = *b;
        if (e.start_min == e.end_min)
          return "empty time range '" + std::string(tok) + "'";
        time_text = clock_text(*a) + "-" + clock_text(*b);
      } else {
        if (!days_text.empty() || !time_text.empty())
          return "bad window '" + std::string(part)
                 + "': expected [days] [HH:MM-HH:MM] such as Mon-Fri 22:00-07:00";
        auto dash = tok.find('-');
        auto a = parse_day(tok.substr(0, dash));
        auto b = dash == std::string_view::npos ? a : parse_day(tok.substr(dash + 1));
        if (!a || !b)
          return "bad days '" + std::string(tok) + "': expected Mon, Mon-Fri or Fri-Mon";
        e.days = 0;
        for (int d = *a;; d = (d + 1) % 7) {
          e.days |= 1u << d;
          if (d == *b)
            break;
        }
        days_text = day_names[*a];
        if (*b != *a)
          days_text += std::string("-") + day_names[*b];
      }
    }
    if (days_text.empty() && time_text.empty())
      return "empty window entry in '" + std::string(spec) + "'";
    if (time_text.empty())
      time_text = "00:00-24:00";
    out.text_ += (out.text_.empty() ? "" : ", ") + (days_text.empty() ? "" : days_text + " ")
                 + time_text;
    out.entries_.push_back(e);
  }
  return out;
}

std::vector<std::pair<std::int64_t, std::int64_t>>
window_schedule::spans(std::int64_t around, int days) const {
  std::vector<std::pair<std::int64_t, std::int64_t>> out;
  auto local = zone_->to_local(date::sys_seconds{seconds{around}});
  auto today = date::floor<date::days>(local);
  auto to_unix = [&](date::local_seconds t, date::choose c) {
    // A skipped time (spring forward) maps to the change itself.
    return zone_->to_sys(t, c).time_since_epoch().count();
  };
  for (int d = -1; d <= days; ++d) {
    auto day = today + date::days{d};
    unsigned wd = date::weekday{day}.c_encoding();
    for (auto& e : entries_) {
      if (!(e.days & (1u << wd)))
        continue;
      auto start = date::local_seconds{day} + minutes{e.start_min};
      auto end = date::local_seconds{day + date::days{e.end_min <= e.start_min ? 1 : 0}}
                 + minutes{e.end_min};
      auto s = to_unix(start, date::choose::earliest);
      auto t = to_unix(end, date::choose::latest);
      if (t > s)
        out.emplace_back(s, t);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool window_schedule::open_at(std::int64_t t) const {
  for (auto& [s, e] : spans(t, 1))
    if (s <= t && t < e)
      return true;
  return false;
}

std::optional<std::int64_t> window_schedule::next_open(std::int64_t t) const {
  if (entries_.empty())
    return std::nullopt;
  std::optional<std::int64_t> best;
  for (auto& [s, e] : spans(t, 8)) {
    if (s <= t && t < e)
      return t;
    if (s > t && (!best || s < *best))
      best = s;
  }
  return best;
}

std::optional<std::int64_t> window_schedule::next_close(std::int64_t t) const {
  auto all = spans(t, 8);
  std::int64_t cur = t;
  std::int64_t horizon = 0;
  for (auto& sp : all)
    horizon = std::max(horizon, sp.second);
  bool moved = true;
  while (moved) {
    moved = false;
    for (auto& [s, e] : all)
      if (s <= cur && cur < e) {
        cur = e;
        moved = true;
      }
  }
  if (cur >= horizon && cur > t)
    return std::nullopt; // open all the way through the horizon: always open
  return cur;
}

namespace {

/// Local weekday (0 = Sunday), hour, and the unix second the local hour ends.
struct local_hour {
  int weekday, hour;
  std::int64_t hour_end;
};

local_hour hour_of(std::int64_t t, const date::time_zone* zone) {
  auto info = zone->get_info(date::sys_seconds{seconds{t}});
  std::int64_t local = t + info.offset.count();
  std::int64_t day = local >= 0 ? local / 86400 : (local - 86399) / 86400;
  std::int64_t in_day = local - day * 86400;
  local_hour h;
  h.weekday = static_cast<int>(((day % 7) + 11) % 7); // 1970-01-01 was a Thursday
  h.hour = static_cast<int>(in_day / 3600);
  h.hour_end = t + (3600 - in_day % 3600);
  // A DST change inside this hour ends the slot there.
  auto change = info.end.time_since_epoch().count();
  if (change > t && change < h.hour_end)
    h.hour_end = change;
  return h;
}

void spread(std::int64_t a, std::int64_t b, const date::time_zone* zone, double (&into)[7][24]) {
  while (a < b) {
    auto h = hour_of(a, zone);
    auto end = std::min(b, h.hour_end);
    into[h.weekday][h.hour] += static_cast<double>(end - a);
    a = end;
  }
}

} // namespace

std::optional<double> quiet_hour_map::share(int weekday, int hour) const {
  if (observed_sec[weekday][hour] <= 0)
    return std::nullopt;
  return std::min(1.0, quiet_sec[weekday][hour] / observed_sec[weekday][hour]);
}

quiet_hour_map learn_quiet_hours(const std::vector<std::pair<std::int64_t, std::int64_t>>& quiet,
                                 std::int64_t from, std::int64_t to, const date::time_zone* zone) {
  quiet_hour_map m;
  if (to <= from)
    return m;
  m.days_observed = static_cast<double>(to - from) / 86400.0;
  spread(from, to, zone, m.observed_sec);
  // Their union, clipped to [from, to): overlapping spans (repeated or
  // made-up streaks) count once, and the walk below costs the hours they
  // cover, not their number times their length.
  std::vector<std::pair<std::int64_t, std::int64_t>> spans;
  spans.reserve(quiet.size());
  for (auto [a, b] : quiet)
    if (std::max(a, from) < std::min(b, to))
      spans.emplace_back(std::max(a, from), std::min(b, to));
  std::sort(spans.begin(), spans.end());
  std::int64_t a = 0, b = 0;
  bool open = false;
  for (auto& [s, e] : spans) {
    if (open && s <= b) {
      b = std::max(b, e);
      continue;
    }
    if (open)
      spread(a, b, zone, m.quiet_sec);
    a = s;
    b = e;
    open = true;
  }
  if (open)
    spread(a, b, zone, m.quiet_sec);
  return m;
}

std::optional<std::int64_t> next_quiet_hour(const quiet_hour_map& m, std::int64_t now,
                                            const date::time_zone* zone, double threshold) {
  std::int64_t t = now;
  for (int i = 0; i < 24 * 7 + 2; ++i) {
    auto h = hour_of(t, zone);
    auto s = m.share(h.weekday, h.hour);
    if (s && *s >= threshold)
      return t;
    t = h.hour_end;
  }
  return std::nullopt;
}

const window_schedule* lease_windows::for_host(const std::string& host) const {
  if (auto it = hosts.find(host); it != hosts.end())
    return &it->second;
  return all ? &*all : nullptr;
}

std::variant<lease_windows, std::string> parse_lease_windows(std::string_view spec,
                                                             std::string_view zone_name) {
  std::string why;
  auto* zone = find_time_zone(zone_name, &why);
  if (!zone)
    return why;
  lease_windows out;
  if (trim(spec).empty())
    return out;
  for (auto part : split(spec, ';')) {
    if (part.empty())
      continue;
    std::string host;
    if (auto colon = part.find(':'); colon != std::string_view::npos) {
      auto prefix = trim(part.substr(0, colon));
      if (is_host_prefix(prefix) && !parse_day(prefix)) {
        host = std::string(prefix);
        part = trim(part.substr(colon + 1));
      }
    }
    auto parsed = window_schedule::parse(part, zone);
    if (auto* e = std::get_if<std::string>(&parsed))
      return host.empty() ? *e : host + ": " + *e;
    auto& sched = std::get<window_schedule>(parsed);
    if (host.empty()) {
      if (out.all)
        return std::string("two schedules without a host; name the host as host: ...");
      out.all = std::move(sched);
    } else if (!out.hosts.emplace(host, std::move(sched)).second) {
      return "host " + host + " has two schedules";
    }
  }
  return out;
}

} // namespace lull
