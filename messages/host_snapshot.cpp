#include "messages/host_snapshot.hpp"

#include <algorithm>

#include "messages/codec.hpp"

namespace lull {

namespace {

template <class T>
nlohmann::json opt(const std::optional<T>& x) {
  return x ? nlohmann::json(*x) : nlohmann::json(nullptr);
}

template <class T>
std::optional<T> get_opt(const nlohmann::json& j, const char* key) {
  auto i = j.find(key);
  if (i == j.end() || i->is_null())
    return std::nullopt;
  return i->get<T>();
}

nlohmann::json to_json(const pressure_stall& p) {
  return {{"some_avg10", opt(p.some_avg10)},
          {"some_avg60", opt(p.some_avg60)},
          {"full_avg10", opt(p.full_avg10)},
          {"full_avg60", opt(p.full_avg60)}};
}

/// A share of time or charge, 0-100; anything else from the bus is dropped.
std::optional<double> get_pct(const nlohmann::json& j, const char* key) {
  auto v = get_opt<double>(j, key);
  if (v && !(*v >= 0 && *v <= 100))
    return std::nullopt;
  return v;
}

pressure_stall pressure_stall_from_json(const nlohmann::json& j) {
  if (!j.is_object())
    return {};
  return {get_pct(j, "some_avg10"), get_pct(j, "some_avg60"), get_pct(j, "full_avg10"),
          get_pct(j, "full_avg60")};
}

nlohmann::json to_json(const host_pressure& p) {
  return {{"cpu", to_json(p.cpu)}, {"memory", to_json(p.memory)}, {"io", to_json(p.io)}};
}

host_pressure host_pressure_from_json(const nlohmann::json& j) {
  host_pressure p;
  for (auto [key, target] :
       {std::pair{"cpu", &p.cpu}, std::pair{"memory", &p.memory}, std::pair{"io", &p.io}})
    if (auto r = j.find(key); r != j.end())
      *target = pressure_stall_from_json(*r);
  return p;
}

nlohmann::json to_json(const throttle_flags& t) {
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%x", t.raw);
  return {{"raw", hex},
          {"under_voltage", t.under_voltage},
          {"freq_capped", t.freq_capped},
          {"throttled", t.throttled},
          {"soft_temp_limit", t.soft_temp_limit},
          {"under_voltage_occurred", t.under_voltage_occurred},
          {"freq_capped_occurred", t.freq_capped_occurred},
          {"throttled_occurred", t.throttled_occurred},
          {"soft_temp_limit_occurred", t.soft_temp_limit_occurred}};
}

nlohmann::json to_json(const leased_load& l) {
  nlohmann::json per = nlohmann::json::array();
  for (auto& u : l.per_lease)
    per.push_back({{"lease_id", u.lease_id},
                   {"pid", u.pid},
                   {"source", u.source},
                   {"processes", u.processes},
                   {"cpu_core_pct", opt(u.cpu_core_pct)},
                   {"rss_bytes", u.rss_bytes},
                   {"read_bytes_per_sec", opt(u.read_bytes_per_sec)},
                   {"write_bytes_per_sec", opt(u.write_bytes_per_sec)},
                   {"counted", u.refused.empty()},
                   {"refused", u.refused.empty() ? nlohmann::json(nullptr)
                                                 : nlohmann::json(u.refused)}});
  return {{"leases", l.leases},
          {"processes", l.processes},
          {"cpu_pct", opt(l.cpu_pct)},
          {"rss_bytes", l.rss_bytes},
          {"read_bytes_per_sec", opt(l.read_bytes_per_sec)},
          {"write_bytes_per_sec", opt(l.write_bytes_per_sec)},
          {"agent_cpu_pct", opt(l.agent_cpu_pct)},
          {"per_lease", per},
          {"pressure", l.pressure ? to_json(*l.pressure) : nlohmann::json(nullptr)}};
}

namespace lim = host_snapshot_limits;

leased_load leased_load_from_json(const nlohmann::json& j) {
  leased_load l;
  l.leases = j.at("leases").get<int>();
  l.processes = j.value("processes", 0);
  l.cpu_pct = get_opt<double>(j, "cpu_pct");
  l.rss_bytes = j.value("rss_bytes", std::uint64_t{0});
  l.read_bytes_per_sec = get_opt<double>(j, "read_bytes_per_sec");
  l.write_bytes_per_sec = get_opt<double>(j, "write_bytes_per_sec");
  l.agent_cpu_pct = get_opt<double>(j, "agent_cpu_pct");
  if (auto it = j.find("per_lease"); it != j.end() && it->is_array())
    for (auto& u : *it) {
      if (l.per_lease.size() >= lim::max_leases)
        break;
      lease_usage x;
      x.lease_id = bounded_text(u.at("lease_id").get<std::string>(), lim::max_lease_text_bytes);
      x.pid = u.value("pid", 0);
      x.source = bounded_text(u.value("source", std::string()), lim::max_lease_text_bytes);
      x.processes = u.value("processes", 0);
      x.cpu_core_pct = get_opt<double>(u, "cpu_core_pct");
      x.rss_bytes = u.value("rss_bytes", std::uint64_t{0});
      x.read_bytes_per_sec = get_opt<double>(u, "read_bytes_per_sec");
      x.write_bytes_per_sec = get_opt<double>(u, "write_bytes_per_sec");
      if (auto r = u.find("refused"); r != u.end() && r->is_string())
        x.refused = bounded_text(r->get<std::string>(), lim::max_lease_text_bytes);
      l.per_lease.push_back(std::move(x));
    }
  if (auto it = j.find("pressure"); it != j.end() && it->is_object())
    l.pressure = host_pressure_from_json(*it);
  return l;
}

} // namespace

std::string bounded_text(std::string s, std::size_t max) {
  if (s.size() <= max)
    return s;
  auto keep = max < 3 ? 0 : max - 3;
  // Back off to the start of a character: never leave half of one.
  while (keep > 0 && (static_cast<unsigned char>(s[keep]) & 0xc0) == 0x80)
    --keep;
  s.resize(keep);
  s += "...";
  return s;
}

std::vector<std::string> bounded_errors(const nlohmann::json& errors) {
  std::vector<std::string> out;
  if (!errors.is_array())
    return out;
  std::size_t more = 0;
  for (auto& e : errors) {
    if (!e.is_string())
      continue;
    if (out.size() < lim::max_errors)
      out.push_back(bounded_text(e.get<std::string>(), lim::max_error_bytes));
    else
      ++more;
  }
  if (more > 0) {
    // The last place says what was left out (itself among it).
    out.back() = "and " + std::to_string(more + 1) + " more errors";
  }
  return out;
}

nlohmann::json to_json(const host_power& p) {
  return {{"ac_online", opt(p.ac_online)},
          {"battery_pct", opt(p.battery_pct)},
          {"battery_status", p.battery_status},
          {"on_battery", p.on_battery()}};
}

std::optional<host_power> host_power_from_json(const nlohmann::json& j) {
  if (!j.is_object())
    return std::nullopt;
  host_power pw;
  if (auto a = j.find("ac_online"); a != j.end() && a->is_boolean())
    pw.ac_online = a->get<bool>();
  pw.battery_pct = get_pct(j, "battery_pct");
  if (auto st = j.find("battery_status"); st != j.end() && st->is_string())
    pw.battery_status = bounded_text(st->get<std::string>(), lim::max_status_bytes);
  return pw;
}

nlohmann::json to_json(const owner_presence& o) {
  return {{"idle_sec", o.idle_sec},
          {"locked", o.locked},
          {"sessions", o.sessions},
          {"source", o.source}};
}

std::optional<owner_presence> owner_presence_from_json(const nlohmann::json& j) {
  if (!j.is_object())
    return std::nullopt;
  auto idle = j.find("idle_sec");
  if (idle == j.end() || !idle->is_number() || !(idle->get<double>() >= 0))
    return std::nullopt;
  owner_presence o;
  o.idle_sec = std::min(idle->get<double>(), 1e9);
  if (auto l = j.find("locked"); l != j.end() && l->is_boolean())
    o.locked = l->get<bool>();
  if (auto n = j.find("sessions"); n != j.end() && n->is_number_integer())
    o.sessions = static_cast<int>(std::clamp<std::int64_t>(n->get<std::int64_t>(), 0, 1 << 20));
  if (auto src = j.find("source"); src != j.end() && src->is_string())
    o.source = bounded_text(src->get<std::string>(), lim::max_status_bytes);
  return o;
}

nlohmann::json gpus_json(const std::vector<gpu_device>& gpus) {
  if (gpus.empty())
    return nullptr;
  auto arr = nlohmann::json::array();
  for (auto& g : gpus)
    arr.push_back(to_json(g));
  return arr;
}

nlohmann::json to_json(const gpu_device& g) {
  return {{"id", g.id},
          {"driver", g.driver},
          {"vendor", g.vendor.empty() ? nlohmann::json(nullptr) : nlohmann::json(g.vendor)},
          {"busy_pct", opt(g.busy_pct)},
          {"source", g.source.empty() ? nlohmann::json(nullptr) : nlohmann::json(g.source)},
          {"vram_used_mb", opt(g.vram_used_mb)},
          {"vram_total_mb", opt(g.vram_total_mb)},
          {"leased_pct", opt(g.leased_pct)},
          {"owner_pct", opt(g.owner_pct)},
          {"unavailable",
           g.unavailable.empty() ? nlohmann::json(nullptr) : nlohmann::json(g.unavailable)}};
}

std::vector<gpu_device> gpus_from_json(const nlohmann::json& j) {
  std::vector<gpu_device> out;
  if (!j.is_array())
    return out;
  auto text = [](const nlohmann::json& o, const char* key, std::size_t max) {
    auto it = o.find(key);
    return it != o.end() && it->is_string() ? bounded_text(it->get<std::string>(), max)
                                            : std::string();
  };
  auto mb = [](const nlohmann::json& o, const char* key) -> std::optional<double> {
    auto it = o.find(key);
    if (it == o.end() || !it->is_number())
      return std::nullopt;
    double v = it->get<double>();
    if (!(v >= 0 && v <= 1e9)) // a petabyte of VRAM is not a reading
      return std::nullopt;
    return v;
  };
  auto pct = [](const nlohmann::json& o, const char* key) -> std::optional<double> {
    auto it = o.find(key);
    if (it == o.end() || !it->is_number())
      return std::nullopt;
    double v = it->get<double>();
    if (!(v >= 0 && v <= 100))
      return std::nullopt;
    return v;
  };
  for (auto& g : j) {
    if (out.size() >= lim::max_gpus)
      break;
    if (!g.is_object())
      continue;
    gpu_device d;
    d.id = text(g, "id", lim::max_gpu_text_bytes);
    if (d.id.empty())
      continue;
    d.driver = text(g, "driver", lim::max_gpu_text_bytes);
    d.vendor = text(g, "vendor", lim::max_gpu_text_bytes);
    d.source = text(g, "source", lim::max_gpu_text_bytes);
    d.unavailable = text(g, "unavailable", lim::max_error_bytes);
    d.busy_pct = pct(g, "busy_pct");
    d.leased_pct = pct(g, "leased_pct");
    d.owner_pct = pct(g, "owner_pct");
    if (!d.busy_pct) {
      d.leased_pct = d.owner_pct = std::nullopt;
    } else {
      // Either share of it is at most all of it.
      if (d.leased_pct && *d.leased_pct > *d.busy_pct)
        d.leased_pct = d.busy_pct;
      if (d.owner_pct && *d.owner_pct > *d.busy_pct)
        d.owner_pct = d.busy_pct;
    }
    d.vram_used_mb = mb(g, "vram_used_mb");
    d.vram_total_mb = mb(g, "vram_total_mb");
    out.push_back(std::move(d));
  }
  return out;
}

nlohmann::json to_json(const host_snapshot& s) {
  nlohmann::json per_core = nlohmann::json::array();
  for (auto& c : s.cpu_per_core_pct)
    per_core.push_back(opt(c));
  nlohmann::json disks = nlohmann::json::array();
  for (auto& d : s.disks)
    disks.push_back({{"mount", d.mount},
                     {"total_bytes", opt(d.total_bytes)},
                     {"free_bytes", opt(d.free_bytes)},
                     {"free_pct", opt(d.free_pct)}});
  nlohmann::json ifaces = nlohmann::json::array();
  for (auto& i : s.interfaces)
    ifaces.push_back({{"name", i.name},
                      {"rx_bytes", i.rx_bytes},
                      {"tx_bytes", i.tx_bytes},
                      {"rx_bytes_per_sec", opt(i.rx_bytes_per_sec)},
                      {"tx_bytes_per_sec", opt(i.tx_bytes_per_sec)}});
  return {
    {"v", schema_version},
    {"host_id", s.host_id},
    {"collected_at", utc_timestamp(s.collected_at)},
    {"cpu",
     {{"total_pct", opt(s.cpu_pct)},
      {"per_core_pct", per_core},
      {"count", opt(s.cpu_count)},
      {"temp_c", opt(s.cpu_temp_c)},
      {"freq_mhz", opt(s.cpu_freq_mhz)},
      {"throttling", s.throttling ? to_json(*s.throttling) : nlohmann::json(nullptr)}}},
    {"load", {{"1m", opt(s.load1)}, {"5m", opt(s.load5)}, {"15m", opt(s.load15)}}},
    {"mem",
     {{"total_bytes", opt(s.mem_total_bytes)},
      {"available_bytes", opt(s.mem_available_bytes)},
      {"used_pct", opt(s.mem_used_pct)},
      {"available_pct", opt(s.mem_available_pct)}}},
    {"swap",
     {{"total_bytes", opt(s.swap_total_bytes)},
      {"used_bytes", opt(s.swap_used_bytes)},
      {"used_pct", opt(s.swap_used_pct)}}},
    {"disks", disks},
    {"net",
     {{"rx_bytes", opt(s.net_rx_bytes)},
      {"tx_bytes", opt(s.net_tx_bytes)},
      {"rx_bytes_per_sec", opt(s.net_rx_bytes_per_sec)},
      {"tx_bytes_per_sec", opt(s.net_tx_bytes_per_sec)},
      {"interfaces", ifaces}}},
    {"uptime_sec", opt(s.uptime_sec)},
    {"boot_time", s.boot_time ? nlohmann::json(utc_timestamp(*s.boot_time))
                              : nlohmann::json(nullptr)},
    {"leased", s.leased ? to_json(*s.leased) : nlohmann::json(nullptr)},
    {"pressure", s.pressure ? to_json(*s.pressure) : nlohmann::json(nullptr)},
    {"pressure_unavailable", s.pressure ? nlohmann::json(nullptr)
                                        : nlohmann::json(s.pressure_unavailable)},
    {"power", s.power ? to_json(*s.power) : nlohmann::json(nullptr)},
    {"owner", s.owner ? to_json(*s.owner) : nlohmann::json(nullptr)},
    {"owner_unavailable", s.owner ? nlohmann::json(nullptr) : nlohmann::json(s.owner_unavailable)},
    {"gpus", gpus_json(s.gpus)},
    {"gpu_unavailable", s.gpus.empty() && !s.gpu_unavailable.empty()
                          ? nlohmann::json(s.gpu_unavailable)
                          : nlohmann::json(nullptr)},
    {"errors", s.errors},
  };
}

host_snapshot host_snapshot_from_json(const nlohmann::json& j) {
  host_snapshot s;
  if (j.at("v").get<int>() != schema_version)
    throw nlohmann::json::other_error::create(501, "unsupported schema version", &j);
  s.host_id = j.at("host_id").get<std::string>();
  auto ts = parse_utc_timestamp(j.at("collected_at").get<std::string>());
  if (!ts)
    throw nlohmann::json::other_error::create(502, "collected_at is not RFC 3339 UTC", &j);
  s.collected_at = *ts;
  auto& cpu = j.at("cpu");
  s.cpu_pct = get_opt<double>(cpu, "total_pct");
  for (auto& c : cpu.at("per_core_pct")) {
    if (s.cpu_per_core_pct.size() >= lim::max_cores)
      break;
    s.cpu_per_core_pct.push_back(c.is_null() ? std::nullopt
                                             : std::optional<double>(c.get<double>()));
  }
  s.cpu_count = get_opt<int>(cpu, "count");
  s.cpu_temp_c = get_opt<double>(cpu, "temp_c");
  s.cpu_freq_mhz = get_opt<double>(cpu, "freq_mhz");
  if (auto& t = cpu.at("throttling"); !t.is_null()) {
    throttle_flags f;
    f.raw = static_cast<std::uint32_t>(std::stoul(t.at("raw").get<std::string>(), nullptr, 16));
    f.under_voltage = t.at("under_voltage");
    f.freq_capped = t.at("freq_capped");
    f.throttled = t.at("throttled");
    f.soft_temp_limit = t.at("soft_temp_limit");
    f.under_voltage_occurred = t.at("under_voltage_occurred");
    f.freq_capped_occurred = t.at("freq_capped_occurred");
    f.throttled_occurred = t.at("throttled_occurred");
    f.soft_temp_limit_occurred = t.at("soft_temp_limit_occurred");
    s.throttling = f;
  }
  auto& load = j.at("load");
  s.load1 = get_opt<double>(load, "1m");
  s.load5 = get_opt<double>(load, "5m");
  s.load15 = get_opt<double>(load, "15m");
  auto& mem = j.at("mem");
  s.mem_total_bytes = get_opt<std::uint64_t>(mem, "total_bytes");
  s.mem_available_bytes = get_opt<std::uint64_t>(mem, "available_bytes");
  s.mem_used_pct = get_opt<double>(mem, "used_pct");
  s.mem_available_pct = get_opt<double>(mem, "available_pct");
  auto& swap = j.at("swap");
  s.swap_total_bytes = get_opt<std::uint64_t>(swap, "total_bytes");
  s.swap_used_bytes = get_opt<std::uint64_t>(swap, "used_bytes");
  s.swap_used_pct = get_opt<double>(swap, "used_pct");
  for (auto& d : j.at("disks")) {
    if (s.disks.size() >= lim::max_disks)
      break;
    s.disks.push_back({bounded_text(d.at("mount").get<std::string>(), lim::max_name_bytes),
                       get_opt<std::uint64_t>(d, "total_bytes"),
                       get_opt<std::uint64_t>(d, "free_bytes"), get_opt<double>(d, "free_pct")});
  }
  auto& net = j.at("net");
  s.net_rx_bytes = get_opt<std::uint64_t>(net, "rx_bytes");
  s.net_tx_bytes = get_opt<std::uint64_t>(net, "tx_bytes");
  s.net_rx_bytes_per_sec = get_opt<double>(net, "rx_bytes_per_sec");
  s.net_tx_bytes_per_sec = get_opt<double>(net, "tx_bytes_per_sec");
  for (auto& i : net.at("interfaces")) {
    if (s.interfaces.size() >= lim::max_interfaces)
      break;
    s.interfaces.push_back({bounded_text(i.at("name").get<std::string>(), lim::max_name_bytes),
                            i.at("rx_bytes").get<std::uint64_t>(),
                            i.at("tx_bytes").get<std::uint64_t>(),
                            get_opt<double>(i, "rx_bytes_per_sec"),
                            get_opt<double>(i, "tx_bytes_per_sec")});
  }
  s.uptime_sec = get_opt<double>(j, "uptime_sec");
  if (auto bt = get_opt<std::string>(j, "boot_time"))
    s.boot_time = parse_utc_timestamp(*bt);
  if (auto it = j.find("leased"); it != j.end() && it->is_object())
    s.leased = leased_load_from_json(*it);
  // Older agents send neither; a malformed figure is dropped, not trusted.
  if (auto it = j.find("pressure"); it != j.end() && it->is_object()) {
    s.pressure = host_pressure_from_json(*it);
  } else if (auto why = j.find("pressure_unavailable"); why != j.end() && why->is_string()) {
    s.pressure_unavailable = bounded_text(why->get<std::string>(), lim::max_error_bytes);
  }
  if (auto it = j.find("power"); it != j.end())
    s.power = host_power_from_json(*it);
  if (auto it = j.find("owner"); it != j.end() && it->is_object())
    s.owner = owner_presence_from_json(*it);
  if (auto why = j.find("owner_unavailable"); !s.owner && why != j.end() && why->is_string())
    s.owner_unavailable = bounded_text(why->get<std::string>(), lim::max_error_bytes);
  if (auto it = j.find("gpus"); it != j.end())
    s.gpus = gpus_from_json(*it);
  if (auto why = j.find("gpu_unavailable"); s.gpus.empty() && why != j.end() && why->is_string())
    s.gpu_unavailable = bounded_text(why->get<std::string>(), lim::max_error_bytes);
  auto& errors = j.at("errors");
  if (!errors.is_array())
    throw nlohmann::json::type_error::create(302, "errors must be an array", &errors);
  s.errors = bounded_errors(errors);
  return s;
}

} // namespace lull
