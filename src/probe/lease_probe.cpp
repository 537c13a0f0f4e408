#include "src/probe/lease_probe.hpp"

#include <dirent.h>
#include <unistd.h>

#include <cmath>
#include <ctime>
#include <deque>
#include <set>

#include "src/probe/proc_file.hpp"
#include "src/probe/proc_parse.hpp"

namespace lull {

namespace {

double r2(double x) { return std::round(x * 100.0) / 100.0; }

/// "read_bytes: N" and "write_bytes: N" of /proc/<pid>/io.
std::pair<std::optional<std::uint64_t>, std::optional<std::uint64_t>>
parse_pid_io(std::string_view text) {
  std::optional<std::uint64_t> rd, wr;
  auto field = [&](std::string_view key) -> std::optional<std::uint64_t> {
    auto at = text.find(key);
    if (at == std::string_view::npos || (at > 0 && text[at - 1] != '\n'))
      return std::nullopt;
    auto rest = text.substr(at + key.size());
    auto end = rest.find('\n');
    auto v = proc::parse_int(rest.substr(0, end));
    if (!v || *v < 0)
      return std::nullopt;
    return static_cast<std::uint64_t>(*v);
  };
  rd = field("read_bytes:");
  wr = field("write_bytes:");
  return {rd, wr};
}

std::optional<std::uint64_t> keyed_value(std::string_view text, std::string_view key) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto end = text.find('\n', pos);
    auto line = text.substr(pos, end == std::string_view::npos ? std::string_view::npos
                                                                : end - pos);
    if (line.size() > key.size() && line.substr(0, key.size()) == key
        && line[key.size()] == ' ') {
      auto v = proc::parse_int(line.substr(key.size() + 1));
      if (v && *v >= 0)
        return static_cast<std::uint64_t>(*v);
      return std::nullopt;
    }
    if (end == std::string_view::npos)
      break;
    pos = end + 1;
  }
  return std::nullopt;
}

/// Sums rbytes= and wbytes= over the devices of a cgroup's io.stat.
std::pair<std::uint64_t, std::uint64_t> parse_io_stat(std::string_view text) {
  std::uint64_t rd = 0, wr = 0;
  auto add = [&](std::string_view key, std::uint64_t& to) {
    std::size_t pos = 0;
    while ((pos = text.find(key, pos)) != std::string_view::npos) {
      if (pos == 0 || text[pos - 1] == ' ') {
        auto rest = text.substr(pos + key.size());
        auto end = rest.find_first_of(" \n");
        if (auto v = proc::parse_int(rest.substr(0, end)); v && *v >= 0)
          to += static_cast<std::uint64_t>(*v);
      }
      pos += key.size();
    }
  };
  add("rbytes=", rd);
  add("wbytes=", wr);
  return {rd, wr};
}

bool safe_cgroup_path(const std::string& cg) {
  return !cg.empty() && cg.front() == '/' && cg.size() <= 512
         && cg.find("..") == std::string::npos && cg.find('\0') == std::string::npos;
}

} // namespace

std::optional<std::uint64_t> process_start_ticks(int pid, const std::string& root) {
  if (pid <= 0)
    return std::nullopt;
  std::string r = root == "/" ? "" : root;
  auto text = read_small_file(r + "/proc/" + std::to_string(pid) + "/stat");
  if (!text)
    return std::nullopt;
  auto st = parse_pid_stat(*text);
  if (!st)
    return std::nullopt;
  return st->starttime;
}

lease_probe::lease_probe(lease_probe_options opts) : opts_(std::move(opts)) {
  fill_proc_defaults(opts_.self_pid, opts_.clk_tck, opts_.page_size);
}

std::string lease_probe::path(const std::string& rel) const {
  return under_root(opts_.root, rel);
}

void lease_probe::set_leases(std::vector<leased_process_ref> leases) {
  std::map<std::string, tracked> next;
  for (auto& ref : leases) {
    if (ref.lease_id.empty() || ref.pid <= 0)
      continue;
    auto it = leases_.find(ref.lease_id);
    if (it != leases_.end() && it->second.ref.pid == ref.pid
        && it->second.ref.pid_start == ref.pid_start && it->second.ref.cgroup == ref.cgroup
        && it->second.ref.granted_at == ref.granted_at) {
      next.emplace(ref.lease_id, std::move(it->second));
      continue;
    }
    tracked t;
    t.ref = ref;
    t.leader_start = ref.pid_start;
    next.emplace(ref.lease_id, std::move(t));
  }
  leases_ = std::move(next);
}

std::optional<std::string> lease_probe::cgroup_dir(const std::string& cg) const {
  if (!safe_cgroup_path(cg))
    return std::nullopt;
  // cgroup v2 alone (/sys/fs/cgroup) or beside v1 (/sys/fs/cgroup/unified).
  for (const char* mount : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}) {
    auto dir = path(std::string(mount) + cg);
    if (read_small_file(dir + "/cgroup.procs"))
      return dir;
  }
  return std::nullopt;
}

void lease_probe::scan() {
  procs_.clear();
  scanned_ = 0;
  auto dir_path = path("/proc");
  DIR* d = ::opendir(dir_path.c_str());
  if (!d)
    return;
  std::string base = dir_path + "/";
  while (auto* e = ::readdir(d)) {
    const char* n = e->d_name;
    if (*n < '1' || *n > '9')
      continue;
    bool digits = true;
    for (const char* c = n; *c; ++c)
      digits = digits && *c >= '0' && *c <= '9';
    if (!digits)
      continue;
    auto text = read_small_file(base + n + "/stat");
    if (!text)
      continue; // exited while we looked
    auto st = parse_pid_stat(*text);
    if (!st)
      continue;
    ++scanned_;
    procs_[std::atoi(n)] = proc_entry{std::move(*st)};
  }
  ::closedir(d);
}

std::optional<std::string> lease_probe::verify(tracked& t, std::optional<double> uptime,
                                               std::int64_t now_unix) {
  if (t.verified)
    return std::nullopt;
  if (t.refused)
    return t.refused;
  auto pid = std::to_string(t.ref.pid);
  auto refuse = [&](std::string why) {
    t.refused = std::move(why);
    return t.refused;
  };
  if (auto why = claim_refusal({t.ref.pid, t.ref.pid_start, t.ref.cgroup}, t.ref.lease_id))
    return refuse(*why);
  if (!t.ref.cgroup.empty()) {
    // Named for this lease: lull made it, and only its maker (or root) can
    // move processes into it.
    if (cgroup_dir(t.ref.cgroup)) {
      t.verified = true;
      return std::nullopt;
    }
  }
  // The claimed process is gone, or its pid now belongs to another one:
  // nothing to verify, and nothing the tree sample will count ("gone").
  auto it = procs_.find(t.ref.pid);
  if (it == procs_.end())
    return std::nullopt;
  auto& st = it->second.st;
  if (t.ref.pid_start && *t.ref.pid_start != st.starttime)
    return std::nullopt;
  auto marker = "LULL_LEASE_ID=" + t.ref.lease_id;
  if (auto env = read_small_file(path("/proc/" + pid + "/environ"))) {
    // NUL-separated NAME=value entries.
    std::size_t at = 0;
    while (at < env->size()) {
      auto end = env->find('\0', at);
      if (end == std::string::npos)
        end = env->size();
      if (std::string_view(*env).substr(at, end - at) == marker) {
        t.verified = true;
        return std::nullopt;
      }
      at = end + 1;
    }
    return refuse("pid " + pid + " does not carry " + marker
                  + " in its environment: only what lull started for this lease counts as its");
  }
  // Its environment cannot be read (another user's process, and lulld may
  // not look: DynamicUser, no CAP_SYS_PTRACE). Accept only a process that
  // started after the grant and leads no session of its own (a shell, a
  // tmux server, a login: the owner's whole session).
  if (st.session == t.ref.pid)
    return refuse("pid " + pid + " leads a session (a shell or a login) and its environment "
                  "cannot be read to show it is this lease's");
  if (t.ref.granted_at <= 0 || !uptime)
    return refuse("pid " + pid + ": its environment cannot be read and the lease's grant time "
                  "is not known");
  double age = *uptime - static_cast<double>(st.starttime) / static_cast<double>(opts_.clk_tck);
  double started = static_cast<double>(now_unix) - age;
  // A few seconds for the clocks of the scheduler and this host.
  if (started + 5 < static_cast<double>(t.ref.granted_at))
    return refuse("pid " + pid + " started before the lease was granted and its environment "
                  "cannot be read to show it is this lease's");
  t.verified = true;
  return std::nullopt;
}

std::optional<lease_usage> lease_probe::sample_cgroup(tracked& t, double elapsed) {
  auto dir = cgroup_dir(t.ref.cgroup);
  if (!dir)
    return std::nullopt;
  auto cpu = read_small_file(*dir + "/cpu.stat");
  std::optional<std::uint64_t> usage;
  if (cpu)
    usage = keyed_value(*cpu, "usage_usec");
  if (!usage)
    return std::nullopt;
  lease_usage u;
  u.lease_id = t.ref.lease_id;
  u.pid = t.ref.pid;
  u.source = "cgroup";
  std::vector<int> pids;
  if (auto procs = read_small_file(*dir + "/cgroup.procs")) {
    std::size_t pos = 0;
    while (pos < procs->size()) {
      auto end = procs->find('\n', pos);
      if (auto v = proc::parse_int(std::string_view(*procs).substr(pos, end - pos)); v && *v > 0)
        pids.push_back(static_cast<int>(*v));
      if (end == std::string::npos)
        break;
      pos = end + 1;
    }
  }
  u.processes = static_cast<int>(pids.size());
  t.members.clear();
  for (int pid : pids)
    if (auto it = procs_.find(pid); it != procs_.end())
      t.members[pid] = member{it->second.st.starttime, 0, it->second.st.ppid, {}, {}};
  std::optional<std::int64_t> mem_current;
  if (auto mem = read_small_file(*dir + "/memory.current"))
    mem_current = proc::parse_int(*mem);
  if (mem_current && *mem_current >= 0) {
    u.rss_bytes = static_cast<std::uint64_t>(*mem_current);
  } else {
    // No memory controller in this group: sum its processes' RSS.
    for (int pid : pids)
      if (auto it = procs_.find(pid); it != procs_.end())
        u.rss_bytes += it->second.st.rss_pages * static_cast<std::uint64_t>(opts_.page_size);
  }
  std::optional<std::pair<std::uint64_t, std::uint64_t>> io;
  if (auto text = read_small_file(*dir + "/io.stat"))
    io = parse_io_stat(*text);
  if (t.cg_usage_usec && elapsed > 0 && *usage >= *t.cg_usage_usec)
    u.cpu_core_pct = r2(100.0 * static_cast<double>(*usage - *t.cg_usage_usec) / 1e6 / elapsed);
  if (io && t.cg_rbytes && elapsed > 0) {
    if (io->first >= *t.cg_rbytes)
      u.read_bytes_per_sec = r2(static_cast<double>(io->first - *t.cg_rbytes) / elapsed);
    if (io->second >= *t.cg_wbytes)
      u.write_bytes_per_sec = r2(static_cast<double>(io->second - *t.cg_wbytes) / elapsed);
  }
  // The group's own pressure stall (cgroup v2 keeps one per group, whatever
  // controllers it has): the largest over the leases of each figure.
  for (auto [file, pick] :
       {std::pair{"/cpu.pressure", &host_pressure::cpu},
        std::pair{"/memory.pressure", &host_pressure::memory},
        std::pair{"/io.pressure", &host_pressure::io}}) {
    auto text = read_small_file(*dir + file);
    if (!text)
      continue;
    auto p = proc::parse_pressure(*text);
    if (!group_pressure_)
      group_pressure_.emplace();
    auto& into = (*group_pressure_).*pick;
    auto take = [](std::optional<double>& a, std::optional<double> b) {
      if (b && (!a || *b > *a))
        a = b;
    };
    take(into.some_avg10, p.some.avg10);
    take(into.some_avg60, p.some.avg60);
    take(into.full_avg10, p.full.avg10);
    take(into.full_avg60, p.full.avg60);
  }
  t.cg_usage_usec = usage;
  if (io) {
    t.cg_rbytes = io->first;
    t.cg_wbytes = io->second;
  }
  t.sampled = true;
  return u;
}

lease_usage lease_probe::sample_tree(tracked& t, double elapsed,
                                     std::optional<double> prev_uptime) {
  lease_usage u;
  u.lease_id = t.ref.lease_id;
  u.pid = t.ref.pid;
  u.source = "proc";
  // Who counts now: the leader, members still running as themselves, their
  // descendants, and the leader's process group.
  std::set<int> now;
  if (auto it = procs_.find(t.ref.pid); it != procs_.end()) {
    if (!t.leader_start)
      t.leader_start = it->second.st.starttime; // pinned at first sight
    if (*t.leader_start == it->second.st.starttime)
      now.insert(t.ref.pid);
  }
  for (auto& [pid, m] : t.members)
    if (auto it = procs_.find(pid); it != procs_.end() && it->second.st.starttime == m.start)
      now.insert(pid);
  // The leader's process group, unless its pid now names another process: the
  // kernel does not reuse a pid while a group of that id lives, so a new
  // process with that pid means the lease's group is gone.
  auto holder = procs_.find(t.ref.pid);
  bool group_ours = holder == procs_.end() || (t.leader_start && holder->second.st.starttime
                                                                     == *t.leader_start);
  if (t.leader_start && group_ours)
    for (auto& [pid, p] : procs_)
      if (p.st.pgrp == t.ref.pid && p.st.starttime >= *t.leader_start)
        now.insert(pid);
  std::map<int, std::vector<int>> children;
  for (auto& [pid, p] : procs_)
    children[p.st.ppid].push_back(pid);
  std::deque<int> todo(now.begin(), now.end());
  while (!todo.empty()) {
    int pid = todo.front();
    todo.pop_front();
    auto kids = children.find(pid);
    if (kids == children.end())
      continue;
    auto parent_start = procs_.at(pid).st.starttime;
    for (int k : kids->second)
      // A child cannot be older than its parent: guards against a recycled pid.
      if (procs_.at(k).st.starttime >= parent_start && now.insert(k).second)
        todo.push_back(k);
  }

  // CPU: growth of the tree's total over the interval.
  double tck = static_cast<double>(opts_.clk_tck);
  std::int64_t delta = 0;
  bool have_delta = t.sampled && elapsed > 0;
  std::map<int, member> next;
  std::uint64_t rd_delta = 0, wr_delta = 0;
  bool io_known = false;
  std::string r = path("/proc/");
  for (int pid : now) {
    auto& st = procs_.at(pid).st;
    member m;
    m.start = st.starttime;
    m.total = st.utime + st.stime + st.cutime + st.cstime;
    m.ppid = st.ppid;
    u.rss_bytes += st.rss_pages * static_cast<std::uint64_t>(opts_.page_size);
    if (auto io = read_small_file(r + std::to_string(pid) + "/io")) {
      auto [rd, wr] = parse_pid_io(*io);
      m.read_bytes = rd;
      m.write_bytes = wr;
    }
    auto before = t.members.find(pid);
    bool continuing = before != t.members.end() && before->second.start == m.start;
    // New since the last sample: all of its time falls in this interval.
    bool fresh = !continuing && prev_uptime
                 && static_cast<double>(m.start) / tck >= *prev_uptime - 1.0 / tck;
    if (continuing) {
      delta += static_cast<std::int64_t>(m.total) - static_cast<std::int64_t>(before->second.total);
      if (m.read_bytes && before->second.read_bytes && *m.read_bytes >= *before->second.read_bytes) {
        rd_delta += *m.read_bytes - *before->second.read_bytes;
        io_known = true;
      }
      if (m.write_bytes && before->second.write_bytes
          && *m.write_bytes >= *before->second.write_bytes)
        wr_delta += *m.write_bytes - *before->second.write_bytes;
    } else if (fresh) {
      delta += static_cast<std::int64_t>(m.total);
      rd_delta += m.read_bytes.value_or(0);
      wr_delta += m.write_bytes.value_or(0);
      io_known = io_known || m.read_bytes.has_value();
    }
    next[pid] = m;
  }
  // A counted process that ended and was reaped by a counted parent moved its
  // whole total into the parent's cutime: take back what was already counted.
  // The reaper may itself have ended in the same interval and been reaped in
  // turn (make -> sh -> cc): walk up the last known parents to a live member.
  for (auto& [pid, m] : t.members) {
    if (next.count(pid))
      continue;
    int up = m.ppid;
    for (int hops = 0; hops < 64 && !next.count(up); ++hops) {
      auto before = t.members.find(up);
      if (before == t.members.end())
        break;
      up = before->second.ppid;
    }
    if (next.count(up))
      delta -= static_cast<std::int64_t>(m.total);
  }
  if (have_delta)
    u.cpu_core_pct = r2(100.0 * static_cast<double>(std::max<std::int64_t>(0, delta)) / tck
                        / elapsed);
  if (have_delta && io_known) {
    u.read_bytes_per_sec = r2(static_cast<double>(rd_delta) / elapsed);
    u.write_bytes_per_sec = r2(static_cast<double>(wr_delta) / elapsed);
  }
  u.processes = static_cast<int>(next.size());
  if (next.empty())
    u.source = "gone";
  t.members = std::move(next);
  t.sampled = true;
  return u;
}

leased_load lease_probe::sample(double now_mono, std::optional<int> cpu_count,
                                std::int64_t now_unix) {
  leased_load out;
  if (now_unix == 0)
    now_unix = static_cast<std::int64_t>(::time(nullptr));
  std::optional<double> uptime;
  if (auto text = read_small_file(path("/proc/uptime")))
    uptime = proc::parse_uptime(*text);
  double elapsed = prev_mono_ ? now_mono - *prev_mono_ : 0;
  group_pressure_.reset();
  bool need_scan = !leases_.empty();
  if (need_scan)
    scan();
  double cpu_sum = 0;
  bool cpu_known = false;
  bool io_known = false;
  double rd = 0, wr = 0;
  for (auto& [id, t] : leases_) {
    ++out.leases;
    if (auto why = verify(t, uptime, now_unix)) {
      // Not counted: the host is judged on its full load.
      lease_usage u;
      u.lease_id = id;
      u.pid = t.ref.pid;
      u.source = "refused";
      u.refused = *why;
      t.members.clear();
      t.sampled = false;
      out.per_lease.push_back(std::move(u));
      continue;
    }
    std::optional<lease_usage> u;
    if (!t.ref.cgroup.empty())
      u = sample_cgroup(t, elapsed);
    if (!u)
      u = sample_tree(t, elapsed, prev_uptime_);
    out.processes += u->processes;
    out.rss_bytes += u->rss_bytes;
    if (u->cpu_core_pct) {
      cpu_sum += *u->cpu_core_pct;
      cpu_known = true;
    }
    if (u->read_bytes_per_sec) {
      rd += *u->read_bytes_per_sec;
      wr += u->write_bytes_per_sec.value_or(0);
      io_known = true;
    }
    out.per_lease.push_back(std::move(*u));
  }
  out.pressure = group_pressure_;
  int cpus = cpu_count && *cpu_count > 0 ? *cpu_count : 1;
  if (cpu_known || (leases_.empty() && prev_mono_))
    out.cpu_pct = r2(cpu_sum / cpus);
  if (io_known) {
    out.read_bytes_per_sec = r2(rd);
    out.write_bytes_per_sec = r2(wr);
  }
  // lulld itself: its own threads only (the broker it may have started is
  // measured as any other process).
  if (opts_.self_pid > 0) {
    if (auto text = read_small_file(path("/proc/" + std::to_string(opts_.self_pid) + "/stat")))
      if (auto st = parse_pid_stat(*text)) {
        auto ticks = st->utime + st->stime;
        if (self_prev_ && elapsed > 0 && ticks >= *self_prev_)
          out.agent_cpu_pct = r2(100.0 * static_cast<double>(ticks - *self_prev_)
                                 / static_cast<double>(opts_.clk_tck) / elapsed / cpus);
        self_prev_ = ticks;
      }
  }
  prev_mono_ = now_mono;
  prev_uptime_ = uptime;
  return out;
}

std::vector<std::pair<int, std::uint64_t>> lease_probe::members(const std::string& id) const {
  std::vector<std::pair<int, std::uint64_t>> out;
  auto it = leases_.find(id);
  if (it == leases_.end())
    return out;
  for (auto& [pid, m] : it->second.members)
    out.emplace_back(pid, m.start);
  return out;
}

} // namespace lull
