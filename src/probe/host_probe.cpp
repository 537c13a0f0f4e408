#include "src/probe/host_probe.hpp"

#include <sys/statvfs.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "messages/util.hpp"

namespace lull {

namespace {

std::optional<double> pct(std::uint64_t part, std::uint64_t whole) {
  if (whole == 0)
    return std::nullopt;
  return 100.0 * static_cast<double>(part) / static_cast<double>(whole);
}

double round2(double x) { return static_cast<double>(static_cast<long long>(x * 100.0 + (x < 0 ? -0.5 : 0.5))) / 100.0; }

std::optional<double> round2(std::optional<double> x) {
  if (!x)
    return x;
  return round2(*x);
}

/// Applies a data-quality range: out-of-range values become null and leave
/// an entry in `errors`.
std::optional<double> checked(std::optional<double> v, double lo, double hi, const char* field,
                              std::vector<std::string>& errors) {
  if (v && (*v < lo || *v > hi)) {
    char buf[128];
    std::snprintf(buf, sizeof buf, "%s: %.1f outside %g-%g", field, *v, lo, hi);
    errors.emplace_back(buf);
    return std::nullopt;
  }
  return v;
}

} // namespace

throttle_flags decode_throttled(std::uint32_t raw) {
  throttle_flags f;
  f.raw = raw;
  f.under_voltage = raw & (1u << 0);
  f.freq_capped = raw & (1u << 1);
  f.throttled = raw & (1u << 2);
  f.soft_temp_limit = raw & (1u << 3);
  f.under_voltage_occurred = raw & (1u << 16);
  f.freq_capped_occurred = raw & (1u << 17);
  f.throttled_occurred = raw & (1u << 18);
  f.soft_temp_limit_occurred = raw & (1u << 19);
  return f;
}

host_probe::host_probe(host_probe_options opts)
  : opts_(std::move(opts)),
    stat_(path("/proc/stat")),
    meminfo_(path("/proc/meminfo")),
    loadavg_(path("/proc/loadavg")),
    net_dev_(path("/proc/net/dev")),
    uptime_(path("/proc/uptime")) {
  discover_sensors();
}

std::string host_probe::path(const std::string& rel) const {
  return under_root(opts_.root, rel);
}

void host_probe::discover_sensors() {
  namespace fs = std::filesystem;
  std::error_code ec;
  // Thermal: prefer the zone that names the CPU/SoC, else the first zone.
  std::vector<std::pair<std::string, std::string>> zones; // (name, type)
  for (auto& e : fs::directory_iterator(path("/sys/class/thermal"), ec)) {
    auto name = e.path().filename().string();
    if (name.rfind("thermal_zone", 0) != 0)
      continue;
    auto type = read_small_file(e.path().string() + "/type").value_or("");
    type.erase(std::remove(type.begin(), type.end(), '\n'), type.end());
    zones.emplace_back(name, type);
  }
  std::sort(zones.begin(), zones.end());
  auto preferred = std::find_if(zones.begin(), zones.end(), [](auto& z) {
    auto& t = z.second;
    return t.find("cpu") != std::string::npos || t == "x86_pkg_temp"
           || t.find("soc") != std::string::npos || t.find("coretemp") != std::string::npos;
  });
  if (preferred == zones.end() && !zones.empty())
    preferred = zones.begin();
  if (preferred != zones.end())
    temp_.emplace(path("/sys/class/thermal/" + preferred->first + "/temp"));
  // CPU frequency: every core that exposes cpufreq.
  for (int i = 0; i < 1024; ++i) {
    auto p = path("/sys/devices/system/cpu/cpu" + std::to_string(i) + "/cpufreq/scaling_cur_freq");
    if (!fs::exists(p, ec)) {
      if (!fs::exists(path("/sys/devices/system/cpu/cpu" + std::to_string(i)), ec))
        break;
      continue;
    }
    freqs_.emplace_back(p);
  }
  auto thr = path("/sys/devices/platform/soc/soc:firmware/get_throttled");
  if (fs::exists(thr, ec))
    throttled_.emplace(thr);
  // Pressure stall information: Linux 4.20 and later with CONFIG_PSI; a
  // kernel built with CONFIG_PSI_DEFAULT_DISABLED (Raspberry Pi OS) needs
  // psi=1 on its command line, and then the files exist but cannot be read.
  if (fs::exists(path("/proc/pressure/cpu"), ec)) {
    psi_cpu_.emplace(path("/proc/pressure/cpu"));
    psi_memory_.emplace(path("/proc/pressure/memory"));
    psi_io_.emplace(path("/proc/pressure/io"));
  } else {
    psi_missing_ = "no /proc/pressure: the kernel has no pressure stall information "
                   "(CONFIG_PSI)";
  }
  // Power supplies.
  for (auto& e : fs::directory_iterator(path("/sys/class/power_supply"), ec)) {
    auto dir = e.path().string();
    auto first_line = [&](const char* name) {
      auto text = read_small_file(dir + "/" + name).value_or("");
      return text.substr(0, text.find('\n'));
    };
    auto type = first_line("type");
    if (type == "Mains" || type == "USB")
      ac_supplies_.push_back(dir);
    else if (type == "Battery" && first_line("scope") != "Device")
      batteries_.push_back(dir);
  }
  std::sort(ac_supplies_.begin(), ac_supplies_.end());
  std::sort(batteries_.begin(), batteries_.end());
}

host_snapshot host_probe::sample(std::int64_t now_unix, double now_mono_sec) {
  host_snapshot s;
  s.host_id = opts_.host_id;
  s.collected_at = now_unix;
  double elapsed = prev_mono_ > 0 ? now_mono_sec - prev_mono_ : 0;

  if (auto text = stat_.read()) {
    if (auto st = proc::parse_stat(*text)) {
      s.cpu_count = static_cast<int>(st->cores.size());
      if (prev_stat_) {
        s.cpu_pct = round2(checked(proc::cpu_percent(prev_stat_->total, st->total), 0, 100,
                                   "cpu.total_pct", s.errors));
        for (size_t i = 0; i < st->cores.size(); ++i) {
          std::optional<double> core;
          if (i < prev_stat_->cores.size())
            core = round2(checked(proc::cpu_percent(prev_stat_->cores[i], st->cores[i]), 0,
                                  100, "cpu.per_core_pct", s.errors));
          s.cpu_per_core_pct.push_back(core);
        }
      } else {
        s.cpu_per_core_pct.assign(st->cores.size(), std::nullopt);
      }
      s.boot_time = st->boot_time;
      prev_stat_ = std::move(*st);
    } else {
      s.errors.emplace_back("cpu: /proc/stat has no cpu line");
    }
  } else {
    s.errors.emplace_back("cpu: cannot read " + stat_.path());
  }

  if (auto text = meminfo_.read()) {
    auto m = proc::parse_meminfo(*text);
    s.mem_total_bytes = m.total;
    s.mem_available_bytes = m.available;
    if (m.total && m.available && *m.available <= *m.total) {
      s.mem_available_pct = round2(pct(*m.available, *m.total));
      s.mem_used_pct = round2(pct(*m.total - *m.available, *m.total));
    }
    s.swap_total_bytes = m.swap_total;
    if (m.swap_total && m.swap_free && *m.swap_free <= *m.swap_total) {
      s.swap_used_bytes = *m.swap_total - *m.swap_free;
      s.swap_used_pct = *m.swap_total == 0 ? std::optional<double>(0.0)
                                           : round2(pct(*s.swap_used_bytes, *m.swap_total));
    }
  } else {
    s.errors.emplace_back("mem: cannot read " + meminfo_.path());
  }

  if (auto text = loadavg_.read()) {
    if (auto l = proc::parse_loadavg(*text)) {
      s.load1 = l->load1;
      s.load5 = l->load5;
      s.load15 = l->load15;
    }
  }

  for (auto& mount : opts_.mounts) {
    disk_usage d;
    d.mount = mount;
    struct statvfs v {};
    auto p = (opts_.root.empty() || opts_.root == "/") ? mount : path(mount);
    if (::statvfs(p.c_str(), &v) == 0) {
      d.total_bytes = static_cast<std::uint64_t>(v.f_blocks) * v.f_frsize;
      d.free_bytes = static_cast<std::uint64_t>(v.f_bavail) * v.f_frsize;
      d.free_pct = round2(pct(*d.free_bytes, *d.total_bytes));
    } else {
      s.errors.emplace_back("disk: cannot statvfs " + mount);
    }
    s.disks.push_back(std::move(d));
  }

  if (auto text = net_dev_.read()) {
    auto now = proc::parse_net_dev(*text);
    std::uint64_t rx = 0, tx = 0;
    double rx_rate = 0, tx_rate = 0;
    bool rates = elapsed > 0;
    for (auto& c : now) {
      net_interface iface{c.name, c.rx_bytes, c.tx_bytes, std::nullopt, std::nullopt};
      if (c.name != "lo") {
        rx += c.rx_bytes;
        tx += c.tx_bytes;
      }
      auto prev = std::find_if(prev_net_.begin(), prev_net_.end(),
                               [&](auto& p) { return p.name == c.name; });
      if (elapsed > 0 && prev != prev_net_.end()) {
        auto drx = counter_delta(prev->rx_bytes, c.rx_bytes);
        auto dtx = counter_delta(prev->tx_bytes, c.tx_bytes);
        if (drx)
          iface.rx_bytes_per_sec = round2(static_cast<double>(*drx) / elapsed);
        if (dtx)
          iface.tx_bytes_per_sec = round2(static_cast<double>(*dtx) / elapsed);
      }
      if (c.name != "lo") {
        if (iface.rx_bytes_per_sec && iface.tx_bytes_per_sec) {
          rx_rate += *iface.rx_bytes_per_sec;
          tx_rate += *iface.tx_bytes_per_sec;
        } else {
          rates = false;
        }
      }
      s.interfaces.push_back(std::move(iface));
    }
    s.net_rx_bytes = rx;
    s.net_tx_bytes = tx;
    if (rates) {
      s.net_rx_bytes_per_sec = round2(rx_rate);
      s.net_tx_bytes_per_sec = round2(tx_rate);
    }
    prev_net_ = std::move(now);
  } else {
    s.errors.emplace_back("net: cannot read " + net_dev_.path());
  }

  if (auto text = uptime_.read()) {
    s.uptime_sec = proc::parse_uptime(*text);
    if (s.uptime_sec && !s.boot_time)
      s.boot_time = now_unix - static_cast<std::int64_t>(*s.uptime_sec);
  }

  if (temp_) {
    if (auto text = temp_->read())
      if (auto milli = proc::parse_int(*text))
        s.cpu_temp_c = checked(round2(static_cast<double>(*milli) / 1000.0), 0, 120,
                               "cpu.temp_c", s.errors);
  }
  if (!freqs_.empty()) {
    double sum = 0;
    int n = 0;
    for (auto& f : freqs_)
      if (auto text = f.read())
        if (auto khz = proc::parse_int(*text)) {
          sum += static_cast<double>(*khz) / 1000.0;
          ++n;
        }
    if (n > 0)
      s.cpu_freq_mhz = round2(sum / n);
  }
  if (throttled_) {
    if (auto text = throttled_->read())
      if (auto raw = proc::parse_hex(*text))
        s.throttling = decode_throttled(static_cast<std::uint32_t>(*raw));
  }

  if (psi_cpu_) {
    auto read = [](proc_file& f, bool& ok) {
      pressure_stall out;
      auto text = f.read();
      if (!text) {
        ok = false;
        return out;
      }
      auto p = proc::parse_pressure(*text);
      out.some_avg10 = p.some.avg10;
      out.some_avg60 = p.some.avg60;
      out.full_avg10 = p.full.avg10;
      out.full_avg60 = p.full.avg60;
      return out;
    };
    bool ok = true;
    host_pressure p;
    p.cpu = read(*psi_cpu_, ok);
    p.memory = read(*psi_memory_, ok);
    p.io = read(*psi_io_, ok);
    if (ok)
      s.pressure = p;
    else
      s.pressure_unavailable = "cannot read " + psi_cpu_->path()
                               + ": pressure stall information is disabled (boot with psi=1; "
                                 "Raspberry Pi OS: add psi=1 to /boot/firmware/cmdline.txt)";
  } else {
    s.pressure_unavailable = psi_missing_;
  }

  if (!ac_supplies_.empty() || !batteries_.empty()) {
    host_power pw;
    for (auto& dir : ac_supplies_)
      if (auto v = read_small_file(dir + "/online"))
        if (auto n = proc::parse_int(*v))
          pw.ac_online = pw.ac_online.value_or(false) || *n == 1;
    double sum = 0;
    int n = 0;
    for (auto& dir : batteries_) {
      if (auto v = read_small_file(dir + "/capacity"))
        if (auto pct = proc::parse_int(*v); pct && *pct >= 0 && *pct <= 100) {
          sum += static_cast<double>(*pct);
          ++n;
        }
      if (pw.battery_status.empty())
        if (auto st = read_small_file(dir + "/status"))
          pw.battery_status = st->substr(0, std::min<std::size_t>(st->find('\n'), 32));
    }
    if (n > 0)
      pw.battery_pct = round2(sum / n);
    s.power = pw;
  }

  prev_mono_ = now_mono_sec;
  return s;
}

} // namespace lull
