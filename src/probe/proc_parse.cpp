#include "src/probe/proc_parse.hpp"

#include <charconv>
#include <cstdlib>
#include <limits>

namespace lull::proc {

namespace {

std::string_view next_line(std::string_view& text) {
  auto pos = text.find('\n');
  auto line = text.substr(0, pos);
  text = pos == std::string_view::npos ? std::string_view{} : text.substr(pos + 1);
  return line;
}

std::string_view next_field(std::string_view& line) {
  size_t i = 0;
  while (i < line.size() && (line[i] == ' ' || line[i] == '\t'))
    ++i;
  size_t j = i;
  while (j < line.size() && line[j] != ' ' && line[j] != '\t')
    ++j;
  auto field = line.substr(i, j - i);
  line = line.substr(j);
  return field;
}

template <class T>
bool to_number(std::string_view s, T& out) {
  auto res = std::from_chars(s.data(), s.data() + s.size(), out);
  return res.ec == std::errc{} && res.ptr == s.data() + s.size();
}

bool parse_cpu_line(std::string_view rest, cpu_times& t) {
  std::uint64_t* fields[] = {&t.user, &t.nice, &t.system, &t.idle,
                             &t.iowait, &t.irq, &t.softirq, &t.steal};
  int parsed = 0;
  for (auto* f : fields) {
    auto tok = next_field(rest);
    if (tok.empty())
      break;
    if (!to_number(tok, *f))
      return false;
    ++parsed;
  }
  return parsed >= 4; // user nice system idle are always present
}

} // namespace

std::optional<stat_info> parse_stat(std::string_view text) {
  stat_info info;
  bool have_total = false;
  while (!text.empty()) {
    auto line = next_line(text);
    auto key = next_field(line);
    if (key == "cpu") {
      have_total = parse_cpu_line(line, info.total);
    } else if (key.size() > 3 && key.substr(0, 3) == "cpu") {
      unsigned idx = 0;
      if (!to_number(key.substr(3), idx))
        continue;
      cpu_times t;
      if (!parse_cpu_line(line, t))
        continue;
      if (info.cores.size() <= idx)
        info.cores.resize(idx + 1);
      info.cores[idx] = t;
    } else if (key == "btime") {
      std::int64_t bt = 0;
      if (to_number(next_field(line), bt))
        info.boot_time = bt;
    }
  }
  if (!have_total)
    return std::nullopt;
  return info;
}

std::optional<double> cpu_percent(const cpu_times& before, const cpu_times& after) {
  auto t0 = before.total(), t1 = after.total();
  auto i0 = before.idle_all(), i1 = after.idle_all();
  if (t1 <= t0 || i1 < i0)
    return std::nullopt;
  auto dt = static_cast<double>(t1 - t0);
  auto di = static_cast<double>(i1 - i0);
  if (di > dt)
    return std::nullopt;
  return 100.0 * (dt - di) / dt;
}

meminfo parse_meminfo(std::string_view text) {
  meminfo m;
  while (!text.empty()) {
    auto line = next_line(text);
    auto key = next_field(line);
    std::uint64_t kb = 0;
    if (!to_number(next_field(line), kb))
      continue;
    auto bytes = kb * 1024;
    if (key == "MemTotal:")
      m.total = bytes;
    else if (key == "MemAvailable:")
      m.available = bytes;
    else if (key == "MemFree:")
      m.free = bytes;
    else if (key == "Buffers:")
      m.buffers = bytes;
    else if (key == "Cached:")
      m.cached = bytes;
    else if (key == "SwapTotal:")
      m.swap_total = bytes;
    else if (key == "SwapFree:")
      m.swap_free = bytes;
  }
  // Kernels before 3.14 lack MemAvailable; approximate it as procps does.
  if (!m.available && m.free && m.buffers && m.cached)
    m.available = *m.free + *m.buffers + *m.cached;
  return m;
}

std::optional<loadavg> parse_loadavg(std::string_view text) {
  loadavg l;
  auto a = next_field(text), b = next_field(text), c = next_field(text);
  std::string sa(a), sb(b), sc(c);
  char* end = nullptr;
  l.load1 = std::strtod(sa.c_str(), &end);
  if (sa.empty() || *end != '\0')
    return std::nullopt;
  l.load5 = std::strtod(sb.c_str(), &end);
  if (sb.empty() || *end != '\0')
    return std::nullopt;
  l.load15 = std::strtod(sc.c_str(), &end);
  if (sc.empty() || *end != '\0')
    return std::nullopt;
  return l;
}

std::vector<net_counters> parse_net_dev(std::string_view text) {
  std::vector<net_counters> out;
  // Two header lines, then "  iface: rx_bytes packets ... (8 fields) tx_bytes ...".
  next_line(text);
  next_line(text);
  while (!text.empty()) {
    auto line = next_line(text);
    auto colon = line.find(':');
    if (colon == std::string_view::npos)
      continue;
    auto name = line.substr(0, colon);
    while (!name.empty() && name.front() == ' ')
      name.remove_prefix(1);
    auto rest = line.substr(colon + 1);
    std::uint64_t vals[9] = {};
    bool ok = true;
    for (auto& v : vals) {
      if (!to_number(next_field(rest), v)) {
        ok = false;
        break;
      }
    }
    if (!ok || name.empty())
      continue;
    out.push_back({std::string(name), vals[0], vals[8]});
  }
  return out;
}

std::optional<double> parse_uptime(std::string_view text) {
  auto tok = next_field(text);
  std::string s(tok);
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0')
    return std::nullopt;
  return v;
}

std::optional<std::int64_t> parse_int(std::string_view text) {
  auto tok = next_field(text);
  while (!tok.empty() && (tok.back() == '\n' || tok.back() == '\r'))
    tok.remove_suffix(1);
  if (tok.empty())
    return std::nullopt;
  // get_throttled reads "throttled=0x50005" through vcgencmd, plain hex in sysfs.
  if (auto eq = tok.find('='); eq != std::string_view::npos)
    tok = tok.substr(eq + 1);
  std::int64_t v = 0;
  if (tok.size() > 2 && tok[0] == '0' && (tok[1] == 'x' || tok[1] == 'X')) {
    auto res = std::from_chars(tok.data() + 2, tok.data() + tok.size(), v, 16);
    if (res.ec != std::errc{} || res.ptr != tok.data() + tok.size())
      return std::nullopt;
    return v;
  }
  if (!to_number(tok, v))
    return std::nullopt;
  return v;
}

std::optional<std::int64_t> parse_hex(std::string_view text) {
  auto tok = next_field(text);
  while (!tok.empty() && (tok.back() == '\n' || tok.back() == '\r'))
    tok.remove_suffix(1);
  if (auto eq = tok.find('='); eq != std::string_view::npos)
    tok = tok.substr(eq + 1);
  if (tok.size() > 2 && tok[0] == '0' && (tok[1] == 'x' || tok[1] == 'X'))
    tok.remove_prefix(2);
  if (tok.empty())
    return std::nullopt;
  std::int64_t v = 0;
  auto res = std::from_chars(tok.data(), tok.data() + tok.size(), v, 16);
  if (res.ec != std::errc{} || res.ptr != tok.data() + tok.size())
    return std::nullopt;
  return v;
}

pressure_file parse_pressure(std::string_view text) {
  pressure_file out;
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    auto kind = next_field(line);
    pressure_line* target = kind == "some" ? &out.some : kind == "full" ? &out.full : nullptr;
    if (target == nullptr)
      continue;
    for (auto tok = next_field(line); !tok.empty(); tok = next_field(line)) {
      auto eq = tok.find('=');
      if (eq == std::string_view::npos)
        continue;
      auto key = tok.substr(0, eq);
      std::string value(tok.substr(eq + 1));
      char* end = nullptr;
      double v = std::strtod(value.c_str(), &end);
      if (value.empty() || *end != '\0' || !(v >= 0 && v <= 100))
        continue; // a share of time: 0-100, anything else is not trusted
      if (key == "avg10")
        target->avg10 = v;
      else if (key == "avg60")
        target->avg60 = v;
    }
  }
  return out;
}

std::optional<std::string> uevent_value(std::string_view text, std::string_view key) {
  while (!text.empty()) {
    auto line = next_line(text);
    if (line.size() > key.size() && line.compare(0, key.size(), key) == 0
        && line[key.size()] == '=')
      return std::string(line.substr(key.size() + 1));
  }
  return std::nullopt;
}

std::optional<drm_fdinfo> parse_drm_fdinfo(std::string_view text) {
  constexpr std::size_t max_engines = 32;
  constexpr std::size_t max_name = 64;
  drm_fdinfo out;
  bool have_driver = false, have_client = false;
  auto trim = [](std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
      s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
      s.remove_suffix(1);
    return s;
  };
  while (!text.empty()) {
    auto line = next_line(text);
    auto colon = line.find(':');
    if (colon == std::string_view::npos)
      continue;
    auto key = line.substr(0, colon);
    auto value = trim(line.substr(colon + 1));
    if (key == "drm-driver") {
      if (value.empty() || value.size() > max_name)
        return std::nullopt;
      out.driver = std::string(value);
      have_driver = true;
    } else if (key == "drm-pdev") {
      if (value.size() <= max_name)
        out.pdev = std::string(value);
    } else if (key == "drm-client-id") {
      if (!to_number(value, out.client_id))
        return std::nullopt;
      have_client = true;
    } else if (key.rfind("drm-engine-capacity-", 0) == 0) {
      auto name = key.substr(20);
      int n = 0;
      if (!name.empty() && name.size() <= max_name && to_number(value, n) && n > 0
          && n <= 1024 && out.engine_capacity.size() < max_engines)
        out.engine_capacity.emplace_back(std::string(name), n);
    } else if (key.rfind("drm-engine-", 0) == 0) {
      auto name = key.substr(11);
      auto num = next_field(value);
      auto unit = next_field(value);
      std::uint64_t ns = 0;
      if (!name.empty() && name.size() <= max_name && unit == "ns" && to_number(num, ns)
          && out.engine_ns.size() < max_engines)
        out.engine_ns.emplace_back(std::string(name), ns);
    }
  }
  if (!have_driver || !have_client)
    return std::nullopt;
  return out;
}

} // namespace lull::proc
