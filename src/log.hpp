#pragma once
/// Logging through spdlog. Lines name their component first
/// ("mqtt bridge: connected to ...").

#include <string>

#include <spdlog/common.h>

#include <spdlog/spdlog.h>

namespace lull::log {

using spdlog::debug;
using spdlog::error;
using spdlog::info;
using spdlog::trace;
using spdlog::warn;

/// How a line looks. `plain`, for a terminal or a file:
///   2025-03-01T10:04:05.123 info  lease manager: restored 2 leases
/// `journal`, for journald: a syslog priority prefix that journald turns
/// into the entry's priority (systemd's SyslogLevelPrefix=) and no time of
/// lull's own, since the journal stamps every line:
///   <6>lease manager: restored 2 leases
/// Priorities: <3> error, <4> warning, <6> info, <7> debug and trace.
enum class log_format { plain, journal };

/// `journal` when `journal_stream` (the JOURNAL_STREAM variable, "DEVICE:INODE",
/// that systemd sets for a service whose output it connects to the journal)
/// names the file open on `fd`; `plain` when it is unset, malformed, or names
/// another file (stderr redirected, or a program started by one that was).
log_format format_for(const char* journal_stream, int fd);

/// Sets up stderr logging at `level` (trace, debug, info, warn, error, off),
/// in the format format_for(JOURNAL_STREAM, stderr) picks.
void init(const std::string& level);

/// The same onto `out` in `format` (what tests read).
void init(const std::string& level, log_format format, spdlog::sink_ptr out);

} // namespace lull::log
