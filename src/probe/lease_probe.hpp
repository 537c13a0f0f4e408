#pragma once
/// Measures what lull's leases use on this host (docs/collectors.md, "Whose
/// load"): each lease's processes, found from the leader a worker reported,
/// and lulld's own process.
///
/// A lease's processes are, in order of preference:
///  - its cgroup v2 group when the worker made one (`lull run` does where it
///    may): cpu.stat, memory.current and io.stat are exact and no double fork
///    escapes;
///  - else its process tree under /proc: the leader (pid *and* start time, so
///    a recycled pid is never counted), every descendant, every process in the
///    leader's process group, and every process counted before that still
///    runs (a child whose parent exited keeps counting after it is re-parented
///    to init).
///
/// CPU of a tree over one interval is the growth of utime + stime + cutime +
/// cstime summed over its live processes: a child reaped by a counted parent
/// moves its time into the parent's cutime, so short-lived children (a
/// compiler run by make) are counted; a process that started after the last
/// sample counts from zero; one counted before and now gone loses at most its
/// last interval. Reads go through a root path so tests use fixture trees.

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "messages/host_snapshot.hpp"
#include "messages/lease.hpp"
#include "src/probe/process_probe.hpp"

namespace lull {

/// A lease's processes as the worker reported them: a claim, counted only
/// once verified (lease_probe::verify).
struct leased_process_ref {
  std::string lease_id;
  int pid = 0;
  std::optional<std::uint64_t> pid_start; ///< /proc/<pid>/stat field 22 (clock ticks after boot)
  std::string cgroup;                     ///< cgroup v2 path (".../lull-lease-<id>"), or empty
  std::int64_t granted_at = 0;            ///< unix seconds of the grant (0: unknown)
};


struct lease_probe_options {
  std::string root = "/";
  pid_t self_pid = 0;  ///< lulld itself (0: getpid(); -1: not measured)
  long clk_tck = 0;    ///< 0: sysconf(_SC_CLK_TCK)
  long page_size = 0;  ///< 0: sysconf(_SC_PAGESIZE)
};

class lease_probe {
public:
  explicit lease_probe(lease_probe_options opts);

  /// The leases to measure from now on; known ones keep their history.
  void set_leases(std::vector<leased_process_ref> leases);

  /// One sample of every lease and of lulld; `cpu_count` turns core % into
  /// host %. CPU and IO rates are null on the first sample.
  leased_load sample(double now_mono, std::optional<int> cpu_count, std::int64_t now_unix = 0);

  /// The (pid, start) pairs a lease counted at its last sample (tests, and
  /// suspending a lease's processes).
  std::vector<std::pair<int, std::uint64_t>> members(const std::string& lease_id) const;

  /// The cgroup directory of a path a worker reported, if it exists here.
  std::optional<std::string> cgroup_dir(const std::string& cgroup) const;

  std::size_t processes_scanned() const { return scanned_; }

private:
  struct member {
    std::uint64_t start = 0;
    std::uint64_t total = 0; ///< utime + stime + cutime + cstime at the last sample
    int ppid = 0;
    std::optional<std::uint64_t> read_bytes, write_bytes;
  };
  struct tracked {
    leased_process_ref ref;
    bool verified = false;              ///< the claim holds: count it
    std::optional<std::string> refused; ///< it does not, and never will (same claim)
    std::optional<std::uint64_t> leader_start;
    std::map<int, member> members;
    bool sampled = false;
    std::optional<std::uint64_t> cg_usage_usec, cg_rbytes, cg_wbytes;
  };
  struct proc_entry {
    pid_stat st;
  };

  std::string path(const std::string& rel) const;
  void scan();
  /// Why the claim `t` must not be counted, or nullopt once it is verified:
  /// a named cgroup must be the lease's own; a named pid must carry
  /// LULL_LEASE_ID=<lease> in its environment, or, where its environment
  /// cannot be read, must have started after the grant and not lead a
  /// session; pid 1 never counts.
  std::optional<std::string> verify(tracked& t, std::optional<double> uptime,
                                    std::int64_t now_unix);
  lease_usage sample_tree(tracked& t, double elapsed, std::optional<double> prev_uptime);
  std::optional<lease_usage> sample_cgroup(tracked& t, double elapsed);

  lease_probe_options opts_;
  std::map<std::string, tracked> leases_;
  std::map<int, proc_entry> procs_; ///< the last scan
  std::optional<double> prev_mono_, prev_uptime_;
  std::optional<std::uint64_t> self_prev_;
  /// The leases' groups' pressure stall in the sample under way (the
  /// largest of each figure); null until a group's is read.
  std::optional<host_pressure> group_pressure_;
  std::size_t scanned_ = 0;
};

/// Reads /proc/<pid>/stat's start time (field 22) of a process, or nullopt.
std::optional<std::uint64_t> process_start_ticks(int pid, const std::string& root = "/");

} // namespace lull
