#include "src/probe/process_probe.hpp"

#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "src/probe/proc_parse.hpp"

namespace lull {

namespace {

std::string_view next_field(std::string_view& s) {
  size_t i = 0;
  while (i < s.size() && s[i] == ' ')
    ++i;
  size_t j = i;
  while (j < s.size() && s[j] != ' ' && s[j] != '\n')
    ++j;
  auto f = s.substr(i, j - i);
  s = s.substr(j);
  return f;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\0'))
    s.pop_back();
  return s;
}

} // namespace

std::optional<pid_stat> parse_pid_stat(std::string_view text) {
  auto open = text.find('(');
  auto close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open)
    return std::nullopt;
  pid_stat st;
  st.comm = std::string(text.substr(open + 1, close - open - 1));
  auto rest = text.substr(close + 1);
  // Fields after the command, 0-based: 0 state, 1 ppid, 2 pgrp, 3 session, 11 utime,
  // 12 stime, 13 cutime, 14 cstime, 17 num_threads, 19 starttime, 21 rss
  // (proc(5) numbers them 3, 4, 5, 6, 14, 15, 16, 17, 20, 22, 24).
  std::string_view f[22];
  for (auto& x : f) {
    x = next_field(rest);
    if (x.empty())
      return std::nullopt;
  }
  auto num = [](std::string_view s) { return proc::parse_int(s); };
  auto ut = num(f[11]), stt = num(f[12]), th = num(f[17]), start = num(f[19]), rss = num(f[21]);
  if (!ut || !stt || !th || !start || !rss)
    return std::nullopt;
  auto pp = num(f[1]), pg = num(f[2]), sid = num(f[3]), cut = num(f[13]), cst = num(f[14]);
  st.state = f[0].empty() ? '?' : f[0].front();
  st.ppid = pp ? static_cast<int>(*pp) : 0;
  st.pgrp = pg ? static_cast<int>(*pg) : 0;
  st.session = sid ? static_cast<int>(*sid) : 0;
  st.cutime = cut ? static_cast<std::uint64_t>(*cut) : 0;
  st.cstime = cst ? static_cast<std::uint64_t>(*cst) : 0;
  st.utime = static_cast<std::uint64_t>(*ut);
  st.stime = static_cast<std::uint64_t>(*stt);
  st.threads = static_cast<int>(*th);
  st.starttime = static_cast<std::uint64_t>(*start);
  st.rss_pages = static_cast<std::uint64_t>(*rss);
  return st;
}

std::string watch_display_name(const std::string& watch, const std::string& self_name) {
  std::string n = watch;
  if (watch == "self") {
    n = self_name;
  } else if (!watch.empty() && watch.front() == '/') {
    n = std::filesystem::path(watch).filename().string();
    if (auto dot = n.rfind(".pid"); dot != std::string::npos && dot + 4 == n.size())
      n.erase(dot);
  }
  for (auto& c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'))
      c = '_';
  if (n.empty())
    n = "_";
  return n.substr(0, 64);
}

process_probe::process_probe(process_probe_options opts)
  : opts_(std::move(opts)), uptime_(path("/proc/uptime")) {
  fill_proc_defaults(opts_.self_pid, opts_.clk_tck, opts_.page_size);
  for (auto& w : opts_.watches) {
    tracked t;
    t.watch = w;
    t.name = watch_display_name(w, opts_.self_name);
    tracked_.push_back(std::move(t));
  }
}

std::string process_probe::path(const std::string& rel) const {
  return under_root(opts_.root, rel);
}

std::optional<pid_t> process_probe::scan_for(const std::string& name) {
  namespace fs = std::filesystem;
  std::error_code ec;
  auto comm_name = name.substr(0, 15); // the kernel truncates comm to 15 bytes
  for (auto& e : fs::directory_iterator(path("/proc"), ec)) {
    auto fname = e.path().filename().string();
    auto pid = proc::parse_int(fname);
    if (!pid || fname.find_first_not_of("0123456789") != std::string::npos)
      continue;
    auto base = e.path().string();
    if (auto comm = read_small_file(base + "/comm"); comm && trim(*comm) == comm_name)
      return static_cast<pid_t>(*pid);
    if (auto cmd = read_small_file(base + "/cmdline"); cmd && !cmd->empty()) {
      auto argv0 = std::string(cmd->c_str()); // up to the first NUL
      if (std::filesystem::path(argv0).filename() == name)
        return static_cast<pid_t>(*pid);
    }
  }
  return std::nullopt;
}

std::optional<pid_t> process_probe::locate(tracked& t, double now_mono) {
  if (t.watch == "self")
    return opts_.self_pid;
  if (!t.watch.empty() && t.watch.front() == '/') {
    auto text = read_small_file(path(t.watch));
    if (!text)
      return std::nullopt;
    auto pid = proc::parse_int(*text);
    if (!pid || *pid <= 0)
      return std::nullopt;
    return static_cast<pid_t>(*pid);
  }
  // A name: keep the known pid while it still runs under that name.
  if (t.pid) {
    auto text = read_small_file(path("/proc/" + std::to_string(*t.pid) + "/stat"));
    if (text)
      if (auto st = parse_pid_stat(*text); st && st->comm == t.watch.substr(0, 15))
        return t.pid;
  }
  if (now_mono - t.last_scan < opts_.rescan_sec && !t.pid)
    return std::nullopt;
  t.last_scan = now_mono;
  return scan_for(t.watch);
}

process_stats process_probe::sample_one(tracked& t, std::int64_t now_unix, double now_mono) {
  process_stats p;
  p.host_id = opts_.host_id;
  p.name = t.name;
  p.watch = t.watch;
  p.collected_at = now_unix;
  p.restarts = t.restarts;
  auto pid = locate(t, now_mono);
  std::optional<pid_stat> st;
  std::string base;
  if (pid) {
    base = path("/proc/" + std::to_string(*pid));
    if (auto text = read_small_file(base + "/stat"))
      st = parse_pid_stat(*text);
  }
  if (!st) {
    t.pid.reset();
    t.have_prev = false;
    return p;
  }
  // A different pid, or the same pid started anew, is a restart.
  if (t.pid && (*t.pid != *pid || t.starttime != st->starttime)) {
    ++t.restarts;
    t.have_prev = false;
  }
  t.pid = pid;
  t.starttime = st->starttime;
  p.restarts = t.restarts;
  p.running = true;
  p.pid = *pid;
  p.threads = st->threads;
  p.rss_bytes = st->rss_pages * static_cast<std::uint64_t>(opts_.page_size);
  auto ticks = st->utime + st->stime;
  double tck = static_cast<double>(opts_.clk_tck);
  if (t.have_prev && now_mono > t.prev_mono && ticks >= t.prev_ticks) {
    double cpu = 100.0 * (static_cast<double>(ticks - t.prev_ticks) / tck)
                 / (now_mono - t.prev_mono);
    p.cpu_pct = std::round(cpu * 100.0) / 100.0;
  }
  t.prev_ticks = ticks;
  t.prev_mono = now_mono;
  t.have_prev = true;
  if (auto text = uptime_.read())
    if (auto up = proc::parse_uptime(*text)) {
      double u = *up - static_cast<double>(st->starttime) / tck;
      if (u >= 0)
        p.uptime_sec = std::round(u * 100.0) / 100.0;
    }
  namespace fs = std::filesystem;
  std::error_code ec;
  int fds = 0;
  fs::directory_iterator it(base + "/fd", ec);
  if (!ec) {
    for (; it != fs::directory_iterator(); it.increment(ec)) {
      if (ec)
        break;
      ++fds;
    }
  }
  if (ec)
    p.errors.push_back("open_fds: " + ec.message());
  else
    p.open_fds = fds;
  return p;
}

std::vector<process_stats> process_probe::sample(std::int64_t now_unix, double now_mono_sec) {
  std::vector<process_stats> out;
  out.reserve(tracked_.size());
  for (auto& t : tracked_)
    out.push_back(sample_one(t, now_unix, now_mono_sec));
  return out;
}

} // namespace lull
