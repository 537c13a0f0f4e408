#pragma once
/// Runs a command under a lease: heartbeats at the lease's interval while it
/// runs, and stops it (SIGTERM, then SIGKILL after a grace period) when the
/// lease is revoked or lost, or when the caller is interrupted. Shared by
/// `lull run` and `lull work`; a C++ worker can use it too.

#include <signal.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "src/client/lease_client.hpp"

namespace lull {

struct supervise_options {
  std::vector<std::string> cmd;
  std::vector<std::string> extra_env;
  std::string stdin_path;    ///< empty: inherit
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
  bool killed = false;     ///< it had to be stopped
};

/// Blocks until the command has exited. Does not release the lease.
supervise_result run_under_lease(lease_client& client, const lease_grant_reply& lease,
                                 const supervise_options& opts);

/// Waits for one of `set` (blocked) up to `timeout`; 0 on timeout.
int wait_signal(const sigset_t& set, std::chrono::duration<double> timeout);

/// The signals run_under_lease expects blocked, blocked in this thread.
sigset_t block_supervise_signals();

} // namespace lull
