#include "src/probe/gpu_probe.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <filesystem>

#include "src/probe/process_probe.hpp"

namespace lull {

namespace {

double round2(double x) { return std::round(x * 100.0) / 100.0; }

/// Drivers of display controllers and firmware framebuffers: DRM cards that
/// are no GPU to measure or lease.
bool display_only(const std::string& driver) {
  static const char* const names[] = {"simple-framebuffer", "simpledrm", "efi-framebuffer",
                                      "vesa-framebuffer", "ofdrm", "vc4-drm", "vc4_drm",
                                      "bochs-drm", "cirrus", "cirrus-qemu", "hyperv_drm",
                                      "ast", "mgag200", "udl", "gm12u320", "vkms"};
  return std::find(std::begin(names), std::end(names), driver) != std::end(names);
}

std::optional<int> card_number(const std::string& name) {
  if (name.size() < 5 || name.compare(0, 4, "card") != 0)
    return std::nullopt;
  int n = 0;
  for (std::size_t i = 4; i < name.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(name[i])) || n > 100000)
      return std::nullopt; // card0-eDP-1 is a connector
    n = n * 10 + (name[i] - '0');
  }
  return n;
}

std::optional<int> number_of(const char* name) {
  int n = 0;
  if (*name == '\0')
    return std::nullopt;
  for (const char* p = name; *p; ++p) {
    if (*p < '0' || *p > '9' || n > 100000000)
      return std::nullopt;
    n = n * 10 + (*p - '0');
  }
  return n;
}

} // namespace

std::vector<drm_card_use> drm_card_busy(const drm_clients& before, const drm_clients& now,
                                        double elapsed_sec, std::size_t cards) {
  std::vector<drm_card_use> out(cards);
  struct engine_ns {
    double all = 0, leased = 0;
  };
  std::vector<std::map<std::string, engine_ns>> ns(cards);
  std::vector<std::map<std::string, int>> capacity(cards);
  static const std::map<std::string, std::uint64_t> none;
  for (auto& [key, c] : now) {
    auto card = key.first;
    if (card >= cards)
      continue;
    if (!c.has_engines)
      out[card].engines = false;
    for (auto& [engine, cap] : c.capacity)
      capacity[card][engine] = std::max(capacity[card][engine], cap);
    auto prev = before.find(key);
    if (prev == before.end() && !c.leased)
      continue; // new since the last sample: its time so far is not this interval's
    auto& was = prev == before.end() ? none : prev->second.engine_ns;
    for (auto& [engine, t] : c.engine_ns) {
      auto p = was.find(engine);
      std::uint64_t from = p == was.end() ? 0 : p->second;
      if (t < from || (p == was.end() && prev != before.end()))
        continue;
      auto d = static_cast<double>(t - from);
      auto& slot = ns[card][engine];
      slot.all += d;
      if (c.leased)
        slot.leased += d;
    }
  }
  if (!(elapsed_sec > 0))
    return out;
  auto pct = [](double d, double whole) { return std::min(100.0, 100.0 * d / whole); };
  for (std::size_t card = 0; card < cards; ++card)
    for (auto& [engine, d] : ns[card]) {
      auto cap = capacity[card].count(engine) ? capacity[card][engine] : 1;
      double whole = elapsed_sec * 1e9 * cap;
      auto& u = out[card];
      u.busy_pct = std::max(u.busy_pct, pct(d.all, whole));
      u.leased_pct = std::max(u.leased_pct, pct(d.leased, whole));
      u.owner_pct = std::max(u.owner_pct, pct(d.all - d.leased, whole));
    }
  return out;
}

gpu_probe::gpu_probe(gpu_probe_options opts) : opts_(std::move(opts)) { discover(); }

std::string gpu_probe::path(const std::string& rel) const { return under_root(opts_.root, rel); }

void gpu_probe::discover() {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<std::pair<int, std::string>> found;
  bool any_card = false;
  for (auto& e : fs::directory_iterator(path("/sys/class/drm"), ec)) {
    auto name = e.path().filename().string();
    auto n = card_number(name);
    if (!n)
      continue;
    any_card = true;
    found.emplace_back(*n, name);
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> display;
  for (auto& [n, name] : found) {
    auto dir = path("/sys/class/drm/" + name + "/device");
    auto uevent = read_small_file(dir + "/uevent");
    if (!uevent)
      continue;
    auto driver = proc::uevent_value(*uevent, "DRIVER").value_or("");
    if (driver.empty() || display_only(driver)) {
      display.push_back(name + (driver.empty() ? "" : " (" + driver + ")"));
      continue;
    }
    if (cards_.size() >= opts_.max_gpus)
      break;
    card c;
    c.id = name;
    c.driver = bounded_text(driver, host_snapshot_limits::max_gpu_text_bytes);
    c.pdev = proc::uevent_value(*uevent, "PCI_SLOT_NAME").value_or("");
    auto pci_id = proc::uevent_value(*uevent, "PCI_ID").value_or("");
    c.vendor = pci_id.substr(0, pci_id.find(':'));
    std::transform(c.vendor.begin(), c.vendor.end(), c.vendor.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    c.vendor = bounded_text(c.vendor, host_snapshot_limits::max_gpu_text_bytes);
    if (fs::exists(dir + "/gpu_busy_percent", ec))
      c.busy.emplace(dir + "/gpu_busy_percent");
    else if (c.driver != "nvidia")
      need_scan_ = true;
    if (fs::exists(dir + "/mem_info_vram_total", ec)) {
      c.vram_used.emplace(dir + "/mem_info_vram_used");
      c.vram_total.emplace(dir + "/mem_info_vram_total");
    }
    cards_.push_back(std::move(c));
  }
  if (!cards_.empty())
    return;
  if (!any_card) {
    missing_ = "no GPU: /sys/class/drm has no card";
  } else if (!display.empty()) {
    std::string list;
    for (auto& d : display)
      list += (list.empty() ? "" : ", ") + d;
    missing_ = "no GPU: /sys/class/drm has only display devices (" + list + ")";
  } else {
    missing_ = "no GPU lulld may read: no /sys/class/drm/card*/device/uevent";
  }
  missing_ = bounded_text(missing_, host_snapshot_limits::max_error_bytes);
}

gpu_probe::fd_scan gpu_probe::drm_fds_of(int pid, std::vector<int>& fds,
                                         std::size_t& budget) const {
  auto dir_path = path("/proc/" + std::to_string(pid) + "/fd");
  DIR* dir = ::opendir(dir_path.c_str());
  if (dir == nullptr)
    return errno == EACCES || errno == EPERM ? fd_scan::denied : fd_scan::gone;
  int dfd = ::dirfd(dir);
  char target[64];
  while (auto* e = ::readdir(dir)) {
    auto fd = number_of(e->d_name);
    if (!fd)
      continue;
    if (budget == 0)
      break;
    --budget;
    auto n = ::readlinkat(dfd, e->d_name, target, sizeof target - 1);
    if (n < 9)
      continue;
    target[n] = '\0';
    if (std::string_view(target, 9) == "/dev/dri/")
      fds.push_back(*fd);
  }
  ::closedir(dir);
  return fd_scan::ok;
}

bool gpu_probe::kernel_thread(int pid) const {
  if (pid == 2)
    return true;
  auto text = read_small_file(path("/proc/" + std::to_string(pid) + "/stat"));
  if (!text)
    return true; // gone: nothing of it to miss
  auto st = parse_pid_stat(*text);
  return st && st->ppid == 2;
}

void gpu_probe::scan_all() {
  drm_fds_.clear();
  unreadable_ = 0;
  truncated_ = false;
  std::size_t budget = opts_.max_fds_scanned;
  DIR* proc = ::opendir(path("/proc").c_str());
  if (proc == nullptr) {
    truncated_ = true;
    return;
  }
  while (auto* e = ::readdir(proc)) {
    auto pid = number_of(e->d_name);
    if (!pid)
      continue;
    std::vector<int> fds;
    auto r = drm_fds_of(*pid, fds, budget);
    if (r == fd_scan::denied && !kernel_thread(*pid))
      ++unreadable_;
    for (int fd : fds)
      drm_fds_.emplace_back(*pid, fd);
    if (budget == 0) {
      truncated_ = true;
      break;
    }
  }
  ::closedir(proc);
}

std::optional<std::size_t> gpu_probe::card_of(const proc::drm_fdinfo& info) const {
  for (std::size_t i = 0; i < cards_.size(); ++i) {
    auto& c = cards_[i];
    if (!info.pdev.empty() ? info.pdev == c.pdev : (c.pdev.empty() && info.driver == c.driver))
      return i;
  }
  return std::nullopt;
}

gpu_probe::result gpu_probe::sample(double now_mono, const std::set<int>& leased_pids) {
  result out;
  fdinfo_read_ = 0;
  if (cards_.empty()) {
    out.unavailable = missing_;
    return out;
  }
  if (need_scan_ && (!scanned_ || now_mono - last_scan_ >= opts_.rescan_sec)) {
    scan_all();
    scanned_ = true;
    last_scan_ = now_mono;
  }
  // The leases' processes are looked at every sample: their work is told
  // from the owner's at once, not at the next scan.
  std::set<std::pair<int, int>> fds;
  if (need_scan_)
    fds.insert(drm_fds_.begin(), drm_fds_.end());
  bool leased_denied = false, fdinfo_truncated = false;
  std::size_t budget = opts_.max_fds_scanned, pids = 0;
  for (int pid : leased_pids) {
    if (++pids > opts_.max_leased_pids) {
      leased_denied = true;
      break;
    }
    std::vector<int> mine;
    if (drm_fds_of(pid, mine, budget) == fd_scan::denied)
      leased_denied = true;
    for (int fd : mine)
      fds.emplace(pid, fd);
  }
  drm_clients now;
  for (auto& [pid, fd] : fds) {
    if (fdinfo_read_ >= opts_.max_fdinfo) {
      fdinfo_truncated = true;
      break;
    }
    ++fdinfo_read_;
    auto text =
      read_small_file(path("/proc/" + std::to_string(pid) + "/fdinfo/" + std::to_string(fd)));
    if (!text)
      continue; // closed since the scan
    auto info = proc::parse_drm_fdinfo(*text);
    if (!info)
      continue;
    auto card = card_of(*info);
    if (!card)
      continue;
    // One client, several fds (dup, fork): counted once, leased when a
    // lease's process holds it.
    auto& c = now[{*card, info->client_id}];
    c.leased = c.leased || leased_pids.count(pid) > 0;
    c.has_engines = c.has_engines || !info->engine_ns.empty();
    for (auto& [engine, t] : info->engine_ns)
      c.engine_ns[engine] = std::max(c.engine_ns[engine], t);
    for (auto& [engine, n] : info->engine_capacity)
      c.capacity[engine] = n;
  }
  double elapsed = prev_mono_ ? now_mono - *prev_mono_ : 0;
  auto use = drm_card_busy(prev_, now, elapsed, cards_.size());
  bool have_delta = prev_mono_ && elapsed > 0;
  bool leased_known = !leased_denied && !fdinfo_truncated && have_delta;

  for (std::size_t i = 0; i < cards_.size(); ++i) {
    auto& c = cards_[i];
    gpu_device g;
    g.id = c.id;
    g.driver = c.driver;
    g.vendor = c.vendor;
    if (c.busy) {
      if (auto text = c.busy->read())
        if (auto v = proc::parse_int(*text); v && *v >= 0 && *v <= 100) {
          g.busy_pct = static_cast<double>(*v);
          g.source = "gpu_busy_percent";
        }
      if (!g.busy_pct)
        g.unavailable = "no busy % (0-100) in " + c.busy->path();
    } else if (c.driver == "nvidia") {
      g.unavailable = "the nvidia driver reports no busy time through DRM (lull does not run "
                      "nvidia-smi)";
    } else if (!have_delta) {
      g.unavailable = "busy time from DRM fdinfo needs two samples";
    } else if (unreadable_ > 0) {
      g.unavailable = "cannot read the DRM fdinfo of " + std::to_string(unreadable_)
                      + " processes of other users (lulld is not root)";
    } else if (truncated_ || fdinfo_truncated) {
      g.unavailable = "more DRM clients than lull reads per sample ("
                      + std::to_string(opts_.max_fdinfo) + " fdinfo files, "
                      + std::to_string(opts_.max_fds_scanned) + " fds)";
    } else if (!use[i].engines) {
      g.unavailable = "the " + c.driver + " driver reports no engine time in DRM fdinfo";
    } else {
      g.busy_pct = round2(use[i].busy_pct);
      g.source = "fdinfo";
    }
    if (c.vram_total)
      if (auto total = c.vram_total->read())
        if (auto t = proc::parse_int(*total); t && *t > 0) {
          g.vram_total_mb = round2(static_cast<double>(*t) / 1048576.0);
          if (auto used = c.vram_used->read())
            if (auto u = proc::parse_int(*used); u && *u >= 0 && *u <= *t)
              g.vram_used_mb = round2(static_cast<double>(*u) / 1048576.0);
        }
    if (g.busy_pct) {
      bool from_fdinfo = g.source == "fdinfo";
      if (leased_pids.empty()) {
        g.leased_pct = 0.0; // no lease runs here: all of it is the owner's
        g.owner_pct = g.busy_pct;
      } else if (leased_known && use[i].engines) {
        g.leased_pct = std::min(*g.busy_pct, round2(use[i].leased_pct));
        g.owner_pct = from_fdinfo ? std::min(*g.busy_pct, round2(use[i].owner_pct))
                                  : round2(std::max(0.0, *g.busy_pct - *g.leased_pct));
      } else if (!have_delta) {
        // Not known yet, rather than the leases' own work taken for the
        // owner's until the next sample.
        g.unavailable = "the leases' share needs two samples";
      } else {
        g.owner_pct = g.busy_pct; // the split cannot be told: all of it counts
        g.unavailable = leased_denied || fdinfo_truncated
                          ? "cannot read the DRM fdinfo of the leases' processes; all use "
                            "counts as the owner's"
                          : "the " + c.driver + " driver reports no engine time per client; "
                                                "all use counts as the owner's";
      }
    }
    g.unavailable = bounded_text(g.unavailable, host_snapshot_limits::max_error_bytes);
    out.gpus.push_back(std::move(g));
  }
  prev_ = std::move(now);
  prev_mono_ = now_mono;
  return out;
}

} // namespace lull
