#pragma once
/// Samples the host's GPUs through /sys/class/drm and the DRM fdinfo of
/// /proc under a root path, so tests point it at fixture trees
/// (docs/collectors.md, "GPU").
///
/// Per DRM card that is a GPU (display-only devices such as simpledrm are
/// left out), in this order of preference:
///  - busy %: the driver's own `device/gpu_busy_percent` (amdgpu); else the
///    engine time its clients' fdinfo reports (`drm-engine-<name>: <ns> ns`,
///    i915, xe, v3d, msm, panfrost and others since Linux 5.19), summed per
///    engine over every client (deduplicated by `drm-client-id`) between two
///    samples, the busiest engine counting. That sum is only known when
///    lulld may read every process's fdinfo (root, or all of them its own):
///    else busy is null and says why;
///  - VRAM used and total (amdgpu `mem_info_vram_used`/`_total`);
///  - the leases' share: the engine time of the clients that the leases'
///    processes hold (their fdinfo is read every sample), null when lulld
///    may not read them.
/// The proprietary nvidia driver reports no engine time through DRM: its
/// cards are listed with busy null (nvidia-smi is not read).
///
/// Cost: the sysfs files are kept open; the fdinfo of every process is
/// looked for only on cards without a busy file, at most every rescan_sec,
/// and each sample re-reads only the DRM fdinfo files found then (at most
/// max_fdinfo) and those of the leases' processes.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "messages/host_snapshot.hpp"
#include "src/probe/proc_file.hpp"
#include "src/probe/proc_parse.hpp"

namespace lull {

struct gpu_probe_options {
  std::string root = "/";            ///< prefix for /proc and /sys
  std::size_t max_gpus = host_snapshot_limits::max_gpus;
  std::size_t max_fdinfo = 256;      ///< DRM fdinfo files read per sample
  std::size_t max_fds_scanned = 32768; ///< fd links looked at per scan of /proc
  std::size_t max_leased_pids = 256; ///< leased processes whose fds are read per sample
  double rescan_sec = 10;            ///< a scan of every process's fds at most this often
};

/// One DRM client as one sample saw it: its card, whether a lease's
/// process holds it, and its engines' busy time since it opened the card.
struct drm_client_sample {
  bool leased = false;
  bool has_engines = false;
  std::map<std::string, std::uint64_t> engine_ns;
  std::map<std::string, int> capacity;
};

/// Clients by (card index, drm-client-id).
using drm_clients = std::map<std::pair<std::size_t, std::uint64_t>, drm_client_sample>;

/// A card's use between two samples from its clients' engine time: the
/// busiest engine's share of `elapsed_sec` (divided by the engines of its
/// class), of every client, of the leased ones and of the others (the
/// owner's). A client not seen before counts nothing, unless it is a
/// lease's: then all its time so far counts as this interval's (the work
/// just started), so a lease's own start is never taken for the owner's
/// use. Counters that went backwards count nothing.
struct drm_card_use {
  double busy_pct = 0;
  double leased_pct = 0;
  double owner_pct = 0;
  bool engines = true; ///< false: a client of the card reports no engine time
};
std::vector<drm_card_use> drm_card_busy(const drm_clients& before, const drm_clients& now,
                                        double elapsed_sec, std::size_t cards);

class gpu_probe {
public:
  explicit gpu_probe(gpu_probe_options opts);

  struct result {
    std::vector<gpu_device> gpus;
    std::string unavailable; ///< why `gpus` is empty
  };

  /// One sample; `leased_pids` are the processes of lull's leases on this
  /// host (lease_probe::members). Busy from fdinfo and the leases' share
  /// need a previous sample and are null on the first.
  result sample(double now_mono, const std::set<int>& leased_pids);

  /// DRM fdinfo files read by the last sample (tests, budgets).
  std::size_t fdinfo_read() const { return fdinfo_read_; }

private:
  struct card {
    std::string id, driver, vendor, pdev;
    std::optional<proc_file> busy, vram_used, vram_total;
  };
  enum class fd_scan { ok, gone, denied };

  std::string path(const std::string& rel) const;
  void discover();
  /// The fds of `pid` that name /dev/dri/*; `budget` fd links at most.
  fd_scan drm_fds_of(int pid, std::vector<int>& fds, std::size_t& budget) const;
  bool kernel_thread(int pid) const;
  void scan_all();
  std::optional<std::size_t> card_of(const proc::drm_fdinfo& info) const;

  gpu_probe_options opts_;
  std::vector<card> cards_;
  std::string missing_; ///< why there is no GPU (empty when there is one)
  bool need_scan_ = false; ///< a card has no busy file: its clients give its busy %
  // The last scan of every process.
  std::vector<std::pair<int, int>> drm_fds_; ///< (pid, fd)
  double last_scan_ = 0;
  bool scanned_ = false;
  std::size_t unreadable_ = 0; ///< processes whose fds lulld may not read
  bool truncated_ = false;     ///< a budget ran out
  drm_clients prev_;
  std::optional<double> prev_mono_;
  std::size_t fdinfo_read_ = 0;
};

} // namespace lull
