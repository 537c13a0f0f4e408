#include "src/quiet/quiet_assessor.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "messages/codec.hpp"

namespace lull {

namespace {

double r1(double x) { return std::round(x * 10.0) / 10.0; }
double r2(double x) { return std::round(x * 100.0) / 100.0; }

int rank(quiet_state s) {
  switch (s) {
    case quiet_state::panic:
      return 0;
    case quiet_state::busy:
      return 1;
    case quiet_state::normal:
      return 2;
    case quiet_state::quiet:
      return 3;
  }
  return 2;
}

struct scored_input {
  const char* key;   ///< name in `inputs`
  std::string label; ///< for reasons
  double value;
  const char* unit;
  input_thresholds t;
  bool reversed;
  double p;
  /// The value that decides PANIC when it is not `value` (memory: the host's
  /// total, whoever uses it).
  std::optional<double> panic_value;
  std::string panic_label;
  /// Seconds of samples behind an average too short to call PANIC on (the
  /// first seconds after lulld starts: one hot sample is not two minutes).
  std::optional<double> warming_sec;
};

std::string reason_for(const scored_input& in) {
  const char* edge = in.p >= 1 ? "panic" : in.p >= 0.5 ? "busy" : "quiet";
  double at = in.p >= 1 ? in.t.panic : in.p >= 0.5 ? in.t.busy : in.t.quiet;
  char buf[240];
  if (std::string_view(in.key) == "cpu_foreign_avg")
    std::snprintf(buf, sizeof buf, "%s use %.1f%s CPU, %s the %s threshold %g%s",
                  in.label.c_str(), in.value, in.unit, in.reversed ? "below" : "above", edge,
                  at, in.unit);
  else
    std::snprintf(buf, sizeof buf, "%s %.1f%s is %s the %s threshold %g%s", in.label.c_str(),
                  in.value, in.unit, in.reversed ? "below" : "above", edge, at, in.unit);
  return buf;
}

std::string panic_reason(const scored_input& in) {
  char buf[240];
  std::snprintf(buf, sizeof buf, "%s %.1f%s is %s the panic threshold %g%s",
                in.panic_label.c_str(), *in.panic_value, in.unit,
                in.reversed ? "below" : "above", in.t.panic, in.unit);
  return buf;
}

/// "2 min", "30 s", "1 h" for reasons.
std::string span_text(double sec) {
  char buf[32];
  if (sec >= 3600 && std::fmod(sec, 3600) == 0)
    std::snprintf(buf, sizeof buf, "%g h", sec / 3600);
  else if (sec >= 60 && std::fmod(sec, 60) == 0)
    std::snprintf(buf, sizeof buf, "%g min", sec / 60);
  else
    std::snprintf(buf, sizeof buf, "%g s", sec);
  return buf;
}

} // namespace

nlohmann::json to_json(const quiet_streak& s) {
  return {{"host_id", s.host_id},
          {"start", utc_timestamp(s.start)},
          {"end", s.end ? nlohmann::json(utc_timestamp(s.end)) : nlohmann::json(nullptr)},
          {"duration_sec", s.end ? s.end - s.start : 0},
          {"avg_score", r1(s.avg_score)},
          {"min_score", r1(s.min_score)},
          {"samples", s.samples}};
}

double pressure(double x, const input_thresholds& t, bool reversed) {
  // Mirror reversed inputs so "more is worse" holds for the arithmetic below.
  double v = reversed ? -x : x;
  double fl = reversed ? -t.floor : t.floor, q = reversed ? -t.quiet : t.quiet,
         b = reversed ? -t.busy : t.busy, pn = reversed ? -t.panic : t.panic;
  auto lerp = [](double v, double x0, double x1, double y0, double y1) {
    if (x1 <= x0)
      return v >= x1 ? y1 : y0;
    return y0 + (y1 - y0) * (v - x0) / (x1 - x0);
  };
  if (v <= fl)
    return 0;
  if (v <= q)
    return lerp(v, fl, q, 0, 0.25);
  if (v <= b)
    return lerp(v, q, b, 0.25, 0.5);
  if (v < pn)
    return lerp(v, b, pn, 0.5, 1.0);
  return 1.0;
}

quiet_assessor::quiet_assessor(quiet_thresholds th, mono_fn mono, unix_fn unix_now)
  : th_(th), mono_(std::move(mono)), unix_(std::move(unix_now)) {}

void quiet_assessor::on_bus(const std::string& host_id, std::optional<double> rps,
                            std::optional<double> p95_ms) {
  // Hosts are learned from their agents' snapshots only: a bus report naming
  // any other host would add one per message.
  if (auto it = hosts_.find(host_id); it != hosts_.end())
    it->second.bus = bus_input{rps, p95_ms, mono_()};
}

const std::deque<quiet_streak>& quiet_assessor::streaks(const std::string& host_id) const {
  static const std::deque<quiet_streak> none;
  auto it = hosts_.find(host_id);
  return it == hosts_.end() ? none : it->second.closed;
}

std::optional<quiet_streak> quiet_assessor::open_streak(const std::string& host_id) const {
  auto it = hosts_.find(host_id);
  return it == hosts_.end() ? std::nullopt : it->second.streak;
}

std::vector<quiet_assessment> quiet_assessor::check_stale() {
  std::vector<quiet_assessment> out;
  auto now = mono_();
  for (auto& [host, hs] : hosts_) {
    if (hs.stale || hs.last_snapshot == 0 || now - hs.last_snapshot <= th_.stale_after_sec)
      continue;
    hs.stale = true;
    quiet_assessment a;
    a.host_id = host;
    a.assessed_at = unix_();
    a.quiet_score = 0;
    a.state = quiet_state::busy;
    char buf[160];
    std::snprintf(buf, sizeof buf, "No snapshot from %s for %.0f s; cannot call it quiet",
                  host.c_str(), now - hs.last_snapshot);
    a.reasons.push_back(buf);
    a.inputs = {{"stale_sec", std::round(now - hs.last_snapshot)}};
    if (hs.cooldown_until_mono && now < *hs.cooldown_until_mono)
      a.cooldown_until = hs.cooldown_until_unix;
    hs.state = quiet_state::busy;
    if (hs.streak) {
      hs.streak->end = a.assessed_at;
      hs.closed.push_back(*hs.streak);
      if (hs.closed.size() > 100)
        hs.closed.pop_front();
      hs.streak.reset();
    }
    out.push_back(std::move(a));
  }
  return out;
}

quiet_state quiet_assessor::banded(double score, std::optional<quiet_state> current) const {
  int cur = current ? rank(*current) : -1;
  double h = current ? th_.hysteresis : 0;
  // Staying in a state needs the edge minus h; entering it, the edge plus h.
  double q_edge = th_.quiet_score + (cur >= 3 ? -h : h);
  if (score >= q_edge)
    return quiet_state::quiet;
  double n_edge = th_.normal_score + (cur >= 2 ? -h : h);
  if (score >= n_edge)
    return quiet_state::normal;
  return quiet_state::busy;
}

quiet_assessment quiet_assessor::assess(const host_snapshot& s) {
  auto now = mono_();
  auto now_unix = unix_();
  auto& hs = hosts_[s.host_id];
  hs.last_snapshot = now;
  hs.stale = false;
  // lull's own share of this sample: its leases and lulld itself.
  std::optional<double> own_cpu;
  if (s.leased && (s.leased->cpu_pct || s.leased->agent_cpu_pct))
    own_cpu = s.leased->cpu_pct.value_or(0) + s.leased->agent_cpu_pct.value_or(0);
  if (s.cpu_pct) {
    hs.cpu.add(now, *s.cpu_pct);
    hs.cpu_foreign.add(now, std::clamp(*s.cpu_pct - own_cpu.value_or(0), 0.0, 100.0));
    hs.cpu_leased.add(now, std::min(own_cpu.value_or(0), *s.cpu_pct));
  }

  quiet_assessment a;
  a.host_id = s.host_id;
  a.assessed_at = now_unix;
  nlohmann::json inputs = nlohmann::json::object();
  std::vector<scored_input> scored;
  auto add = [&](const char* key, std::string label, std::optional<double> v, const char* unit,
                 const input_thresholds& t, bool reversed = false, bool score = true) {
    inputs[key] = v ? nlohmann::json(r2(*v)) : nlohmann::json(nullptr);
    if (v && score)
      scored.push_back({key, std::move(label), *v, unit, t, reversed, pressure(*v, t, reversed),
                        std::nullopt, {}, std::nullopt});
  };
  auto jopt = [](std::optional<double> v) {
    return v ? nlohmann::json(r2(*v)) : nlohmann::json(nullptr);
  };

  auto window = span_text(th_.cpu_window_sec);
  std::optional<double> cpu_avg, cpu_foreign, cpu_leased;
  if (auto w = hs.cpu.summary(now, th_.cpu_window_sec))
    cpu_avg = w->avg;
  if (auto w = hs.cpu_foreign.summary(now, th_.cpu_window_sec))
    cpu_foreign = w->avg;
  if (auto w = hs.cpu_leased.summary(now, th_.cpu_window_sec))
    cpu_leased = w->avg;
  add("cpu_foreign_avg", "Other processes (" + window + " average)", cpu_foreign, "%",
      th_.cpu);
  // An average that covers less than its warm-up (30 s, or the whole window
  // when that is shorter) may make the host BUSY but not PANIC, so a start
  // on a machine still hot from a build or a boot does not begin with a
  // cool-down.
  if (auto w = hs.cpu_foreign.summary(now, th_.cpu_window_sec);
      w && w->span_sec < cpu_warmup_sec() && !scored.empty()
      && std::string_view(scored.back().key) == "cpu_foreign_avg" && scored.back().p >= 1) {
    scored.back().warming_sec = w->span_sec;
    scored.back().p = 0.99;
  }
  inputs["cpu_avg"] = jopt(cpu_avg);
  inputs["cpu_leased_avg"] = jopt(cpu_leased);
  inputs["cpu_window_sec"] = th_.cpu_window_sec;
  inputs["cpu_pct"] = s.cpu_pct ? nlohmann::json(*s.cpu_pct) : nlohmann::json(nullptr);
  // Memory: the owner's share decides QUIET/NORMAL/BUSY, the total PANIC.
  std::optional<double> mem_foreign = s.mem_used_pct;
  if (s.mem_used_pct && s.leased && s.mem_total_bytes && *s.mem_total_bytes > 0)
    mem_foreign = std::max(0.0, *s.mem_used_pct
                                  - 100.0 * static_cast<double>(s.leased->rss_bytes)
                                      / static_cast<double>(*s.mem_total_bytes));
  inputs["mem_pct"] = jopt(s.mem_used_pct);
  inputs["mem_foreign_pct"] = jopt(mem_foreign);
  if (mem_foreign) {
    scored_input in{"mem_foreign_pct", "Memory used by other processes", *mem_foreign, "%",
                    th_.mem, false, pressure(*mem_foreign, th_.mem), s.mem_used_pct,
                    "Memory used", std::nullopt};
    scored.push_back(std::move(in));
  }
  if (s.leased) {
    inputs["leased_cpu_pct"] = jopt(s.leased->cpu_pct);
    inputs["agent_cpu_pct"] = jopt(s.leased->agent_cpu_pct);
    inputs["leased_rss_bytes"] = s.leased->rss_bytes;
    inputs["leases_measured"] = s.leased->leases;
  }
  std::optional<double> disk_free;
  std::string disk_mount;
  for (auto& d : s.disks)
    if (d.free_pct && (!disk_free || *d.free_pct < *disk_free)) {
      disk_free = d.free_pct;
      disk_mount = d.mount;
    }
  add("disk_free_pct", "Disk " + disk_mount + " free", disk_free, "%", th_.disk_free, true);
  inputs["disk_mount"] = disk_mount.empty() ? nlohmann::json(nullptr) : nlohmann::json(disk_mount);
  add("swap_pct", "Swap used", s.swap_used_pct, "%", th_.swap);
  add("temp_c", "CPU temperature", s.cpu_temp_c, " C", th_.temp);
  std::optional<double> rps, p95;
  if (hs.bus && now - hs.bus->at <= th_.bus_fresh_sec) {
    rps = hs.bus->rps;
    p95 = hs.bus->p95_ms;
  }
  add("bus_rps", "Bus traffic", rps, " msg/s", th_.bus_rps, false, th_.bus_inputs);
  add("bus_p95_ms", "Bus p95 latency", p95, " ms", th_.bus_p95, false, th_.bus_inputs);
  // Pressure stall (PSI): time tasks waited for memory, IO and CPU.
  if (s.pressure) {
    // The leases' own groups' stall, where they run in groups of their own.
    const host_pressure* leased_psi =
      s.leased && s.leased->pressure ? &*s.leased->pressure : nullptr;
    auto leased_of = [&](pressure_stall host_pressure::*r) -> std::optional<double> {
      return leased_psi ? (leased_psi->*r).some_avg60 : std::nullopt;
    };
    add("psi_memory_pct", "Memory pressure (1 min)", s.pressure->memory.some_avg60, "%",
        th_.psi_memory);
    add("psi_io_pct", "IO pressure (1 min)", s.pressure->io.some_avg60, "%", th_.psi_io);
    // CPU: a niced leased job waits for the CPU itself, which is not the
    // owner's stall. With the leases' groups' own figure, the owner's is the
    // host's minus it; without, CPU stall is not scored while leased work
    // runs. (Memory and IO stall count whoever causes them: a leased job's
    // reclaim and IO slow the owner's programs too.)
    bool leased_running = s.leased && s.leased->cpu_pct && *s.leased->cpu_pct >= 1.0;
    auto psi_cpu_leased = leased_of(&host_pressure::cpu);
    std::optional<double> cpu_owner = s.pressure->cpu.some_avg60;
    if (cpu_owner && psi_cpu_leased)
      cpu_owner = std::round(std::max(0.0, *cpu_owner - *psi_cpu_leased) * 100) / 100;
    bool cpu_scored = psi_cpu_leased.has_value() || !leased_running;
    add("psi_cpu_pct", psi_cpu_leased ? "CPU pressure outside lull's leases (1 min)"
                                  : "CPU pressure (1 min)",
        cpu_owner, "%", th_.psi_cpu, false, cpu_scored);
    inputs["psi_cpu_scored"] = cpu_scored;
    for (auto [key, r] : {std::pair{"psi_cpu_leased_pct", &host_pressure::cpu},
                          std::pair{"psi_memory_leased_pct", &host_pressure::memory},
                          std::pair{"psi_io_leased_pct", &host_pressure::io}}) {
      auto v = leased_of(r);
      inputs[key] = v ? nlohmann::json(*v) : nlohmann::json(nullptr);
    }
  } else {
    for (auto* key : {"psi_memory_pct", "psi_io_pct", "psi_cpu_pct"})
      inputs[key] = nullptr;
    if (!s.pressure_unavailable.empty())
      inputs["psi_unavailable"] = s.pressure_unavailable;
  }
  bool throttled_now = s.throttling && (s.throttling->under_voltage || s.throttling->throttled
                                        || s.throttling->freq_capped
                                        || s.throttling->soft_temp_limit);
  inputs["throttled"] = s.throttling ? nlohmann::json(throttled_now) : nlohmann::json(nullptr);
  // The owner's GPU use (not scored: it holds GPU leases only, in the lease
  // table, by lease.gpu_owner_busy).
  std::optional<double> gpu_owner;
  for (auto& g : s.gpus)
    if (auto o = g.owner_pct)
      gpu_owner = std::max(gpu_owner.value_or(0.0), *o);
  inputs["gpu_owner_pct"] = gpu_owner ? nlohmann::json(*gpu_owner) : nlohmann::json(nullptr);

  // The score: the worst input decides, the others nudge.
  std::sort(scored.begin(), scored.end(), [](auto& x, auto& y) { return x.p > y.p; });
  double p_max = scored.empty() ? 0 : scored.front().p;
  double rest = 0;
  for (size_t i = 1; i < scored.size(); ++i)
    rest += scored[i].p;
  std::vector<std::string> reasons;
  if (throttled_now) {
    p_max = std::max(p_max, 0.55);
    std::string what;
    auto& t = *s.throttling;
    for (auto [on, name] : {std::pair{t.under_voltage, "under-voltage"},
                            std::pair{t.throttled, "throttled"},
                            std::pair{t.freq_capped, "frequency capped"},
                            std::pair{t.soft_temp_limit, "soft temperature limit"}})
      if (on)
        what += (what.empty() ? "" : ", ") + std::string(name);
    reasons.push_back("Pi firmware reports " + what);
  }
  double score = std::clamp(100.0 * (1.0 - p_max) - 5.0 * rest, 0.0, 100.0);
  a.quiet_score = r1(score);
  for (auto& in : scored) {
    if (in.warming_sec) {
      char buf[240];
      std::snprintf(buf, sizeof buf,
                    "%s use %.1f%s CPU, above the panic threshold %g%s, over only %.0fs of "
                    "samples (PANIC needs %.0fs)",
                    in.label.c_str(), in.value, in.unit, in.t.panic, in.unit, *in.warming_sec,
                    cpu_warmup_sec());
      reasons.push_back(buf);
    } else if (in.panic_value && pressure(*in.panic_value, in.t, in.reversed) >= 1)
      reasons.push_back(panic_reason(in));
    else if (in.p >= 0.25)
      reasons.push_back(reason_for(in));
  }

  // PANIC, with hysteresis on the way out.
  bool was_panic = hs.state == quiet_state::panic;
  bool panic = std::any_of(scored.begin(), scored.end(), [&](auto& in) {
    if (in.warming_sec && !was_panic)
      return false;
    double v = in.panic_value.value_or(in.value);
    if (pressure(v, in.t, in.reversed) >= 1)
      return true;
    if (!was_panic)
      return false;
    // Leaving PANIC needs the input 5 % of its panic level below it.
    double margin = std::abs(in.t.panic) * 0.05;
    return in.reversed ? v <= in.t.panic + margin : v >= in.t.panic - margin;
  });
  quiet_state st;
  if (panic) {
    st = quiet_state::panic;
    for (auto& in : scored) {
      double v = in.panic_value.value_or(in.value);
      if ((pressure(v, in.t, in.reversed) < 1 || in.warming_sec) && !was_panic)
        continue;
      if (was_panic && pressure(v, in.t, in.reversed) < 1) {
        double margin = std::abs(in.t.panic) * 0.05;
        if (!(in.reversed ? v <= in.t.panic + margin : v >= in.t.panic - margin))
          continue;
      }
      std::string_view k = in.key;
      a.panic_by.push_back(k == "cpu_foreign_avg"   ? "cpu"
                           : k == "mem_foreign_pct" ? "memory"
                           : k == "swap_pct"        ? "swap"
                           : k == "disk_free_pct"   ? "disk"
                           : k == "temp_c"          ? "temperature"
                           : k == "psi_memory_pct"  ? "memory"
                           : k == "psi_io_pct"      ? "io"
                           : k == "psi_cpu_pct"     ? "cpu"
                                                    : std::string(k));
    }
    hs.cooldown_until_mono = now + th_.cooldown_sec;
    hs.cooldown_until_unix = now_unix + static_cast<std::int64_t>(th_.cooldown_sec);
  } else {
    st = banded(score, was_panic ? std::optional<quiet_state>(quiet_state::busy) : hs.state);
    if (!cpu_foreign && st == quiet_state::quiet) {
      st = quiet_state::normal;
      reasons.push_back("No CPU reading yet; QUIET needs one");
    }
    if (hs.cooldown_until_mono && now < *hs.cooldown_until_mono) {
      if (st == quiet_state::quiet)
        st = quiet_state::normal;
      reasons.push_back("Recent PANIC detected; cooling down until "
                        + utc_timestamp(*hs.cooldown_until_unix));
    }
  }
  if (hs.cooldown_until_mono && now < *hs.cooldown_until_mono)
    a.cooldown_until = hs.cooldown_until_unix;
  if (reasons.empty())
    reasons.push_back("All inputs below their quiet thresholds");
  if (cpu_leased && *cpu_leased >= 1.0) {
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "Leased work uses %.1f%% CPU (%s average); not counted against the host",
                  *cpu_leased, window.c_str());
    reasons.push_back(buf);
  }
  if (s.owner && s.owner->in_use(th_.owner_idle_sec))
    reasons.push_back("Host in use: last input " + std::to_string(std::lround(s.owner->idle_sec))
                      + "s ago (" + s.owner->source + "); work below HIGH waits until it has "
                      "been idle " + std::to_string(std::lround(th_.owner_idle_sec))
                      + "s (quiet.owner_idle)");
  // The owner's signals the lease table holds work for, named here too.
  if (s.power && s.power->on_battery())
    reasons.push_back("On battery (" + std::to_string(std::lround(*s.power->battery_pct))
                      + " %, " + (s.power->battery_status.empty() ? "Unknown"
                                                                  : s.power->battery_status)
                      + "); lease.on_battery decides whether work below HIGH runs");
  for (auto& g : s.gpus)
    if (g.owner_pct && *g.owner_pct >= 1.0)
      reasons.push_back("The owner uses GPU " + g.id + " ("
                        + std::to_string(std::lround(*g.owner_pct))
                        + " % busy); lease.gpu_owner_busy decides whether GPU work runs");
  a.state = st;
  a.power = s.power;
  a.owner = s.owner;
  a.gpus = s.gpus;
  hs.state = st;

  // Streaks.
  if (st == quiet_state::quiet) {
    if (!hs.streak)
      hs.streak = quiet_streak{s.host_id, now_unix, 0, 0, 100, 0};
    auto& k = *hs.streak;
    k.avg_score = (k.avg_score * static_cast<double>(k.samples) + score)
                  / static_cast<double>(k.samples + 1);
    k.min_score = std::min(k.min_score, score);
    ++k.samples;
  } else if (hs.streak) {
    hs.streak->end = now_unix;
    hs.closed.push_back(*hs.streak);
    if (hs.closed.size() > 100)
      hs.closed.pop_front();
    hs.streak.reset();
  }
  inputs["pressures"] = nlohmann::json::object();
  for (auto& in : scored)
    inputs["pressures"][in.key] = r2(in.p);
  a.inputs = std::move(inputs);
  if (hs.streak)
    a.streak = to_json(*hs.streak);
  a.reasons = std::move(reasons);
  return a;
}

} // namespace lull
