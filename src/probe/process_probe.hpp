#pragma once
/// Samples watched processes through /proc under a root path (fixture trees
/// in tests): RSS, CPU % of one core, threads, open fds, uptime, and restarts
/// (a new pid, or the same pid with a new start time, for the same watch).
///
/// A watch is "self" (this process), a path starting with '/' (a pid file,
/// read on every sample so a restarted daemon's new pid is picked up), or a
/// process name matched against /proc/<pid>/comm and argv[0]'s basename.
/// Finding a name scans /proc; the pid is then kept and only re-validated, and
/// a missing process is looked for again at most every `rescan_sec`.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "messages/process_stats.hpp"
#include "src/probe/proc_file.hpp"

namespace lull {

struct process_probe_options {
  std::string root = "/";
  std::string host_id;
  std::vector<std::string> watches = {"self"};
  pid_t self_pid = 0;      ///< 0: getpid()
  std::string self_name = "lulld";
  double rescan_sec = 10.0;
  long clk_tck = 0;        ///< 0: sysconf(_SC_CLK_TCK)
  long page_size = 0;      ///< 0: sysconf(_SC_PAGESIZE)
};

/// The fields of /proc/<pid>/stat lull uses.
struct pid_stat {
  std::string comm;
  char state = '?';
  int ppid = 0;
  int pgrp = 0;
  int session = 0;                    ///< session id (== pid for a session leader)
  std::uint64_t utime = 0, stime = 0; ///< clock ticks
  std::uint64_t cutime = 0, cstime = 0; ///< of waited-for children, clock ticks
  int threads = 0;
  std::uint64_t starttime = 0;        ///< clock ticks after boot
  std::uint64_t rss_pages = 0;
};

/// Parses /proc/<pid>/stat; the command name may hold spaces and ')'.
std::optional<pid_stat> parse_pid_stat(std::string_view text);

/// "lulld", "/run/mosquitto.pid" -> "mosquitto"; anything outside
/// [a-zA-Z0-9_-] becomes '_' so it fits one topic level.
std::string watch_display_name(const std::string& watch, const std::string& self_name);

class process_probe {
public:
  explicit process_probe(process_probe_options opts);

  /// One entry per watch, in config order.
  std::vector<process_stats> sample(std::int64_t now_unix, double now_mono_sec);

private:
  struct tracked {
    std::string watch, name;
    std::optional<pid_t> pid;
    std::uint64_t starttime = 0;
    std::uint64_t prev_ticks = 0;
    double prev_mono = 0;
    bool have_prev = false;
    std::uint64_t restarts = 0;
    double last_scan = -1e18;
  };

  std::string path(const std::string& rel) const;
  std::optional<pid_t> locate(tracked& t, double now_mono);
  std::optional<pid_t> scan_for(const std::string& name);
  process_stats sample_one(tracked& t, std::int64_t now_unix, double now_mono);

  process_probe_options opts_;
  std::vector<tracked> tracked_;
  proc_file uptime_;
};

} // namespace lull
