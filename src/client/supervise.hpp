#pragma once
/// Runs a command under a lease: heartbeats at the lease's interval while it
/// runs, and stops it (SIGTERM, then SIGKILL after a grace period) when the
/// lease is revoked or lost, or when the caller is interrupted. Shared by
/// `lull run` and `lull work`; a C++ worker can use it too.

#include <signal.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "src/client/lease_client.hpp"

namespace lull {

struct supervise_options {
  std::vector<std::string> cmd;
  std::vector<std::string> extra_env;
  std::string stdin_path;    ///< empty: inherit
  /// Start the command at the lowest CPU and IO priority (LOW and NORMAL
  /// leases; `lull run --keep-priority` opts out).
  bool low_priority = true;
  /// Put the command in a cgroup v2 group of its own where lull may make one
  /// (root, or a delegated subtree); else its process tree is measured.
  bool use_cgroup = true;
  double grace_sec = 10;
  std::string grace_text = "10s";
  /// Signals the caller blocked: SIGINT/SIGTERM/SIGHUP interrupt, SIGCHLD
  /// wakes, SIGUSR1 is raised by lease notices.
  sigset_t signals;
  std::function<void(const std::string&)> say;
};

struct supervise_result {
  bool started = false;
  std::string start_error;
  int exit_code = 0;       ///< as a shell reports it (128 + signal)
  bool interrupted = false;
  int interrupt_signal = 0;
  bool lost = false;       ///< the lease was revoked, expired or lost
  std::string lost_reason;
  bool preempted = false;  ///< revoked to give the host back (the notice said so)
  bool killed = false;     ///< it had to be stopped
  std::string cgroup;      ///< the group it ran in, if any
};

/// A cgroup v2 group for one lease's processes, under this process's own
/// group; removed when destroyed (if its processes have gone).
class lease_cgroup {
public:
  /// Makes the group; nullptr (and `why`) when lull may not make one here.
  static std::unique_ptr<lease_cgroup> make(const std::string& lease_id, std::string* why);
  ~lease_cgroup();
  /// Path relative to the cgroup2 mount, as a lease reports it.
  const std::string& path() const { return rel_; }
  /// The group's directory.
  const std::string& dir() const { return dir_; }
  /// Freezes or thaws every process in the group at once.
  bool freeze(bool on);

private:
  std::string rel_, dir_;
};

/// The start time of a process (field 22 of /proc/<pid>/stat), or nullopt.
std::optional<std::uint64_t> process_start_time(int pid);

/// Blocks until the command has exited. Does not release the lease.
supervise_result run_under_lease(lease_client& client, const lease_grant_reply& lease,
                                 const supervise_options& opts);

/// Waits for one of `set` (blocked) up to `timeout`; 0 on timeout.
int wait_signal(const sigset_t& set, std::chrono::duration<double> timeout);

/// The signals run_under_lease expects blocked, blocked in this thread.
sigset_t block_supervise_signals();

} // namespace lull
