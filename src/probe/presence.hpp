#pragma once
/// Whether somebody uses the host (the owner-presence input, docs/collectors.md):
/// the local seat sessions as systemd-logind tells them (idle hint, lock),
/// and every login session's terminal from utmp, whose input time the kernel
/// keeps as the device's access time (what `w` shows as IDLE). All files
/// are read under a root, so tests drive it with written fixtures.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "messages/host_snapshot.hpp"

namespace lull {

/// One session as logind lists it (org.freedesktop.login1.Session).
struct logind_session {
  std::string id;
  std::string seat;                  ///< empty for a remote (ssh) session
  bool active = false;               ///< in the foreground of its seat
  bool idle_hint = false;            ///< the session (its desktop) says nobody is there
  std::uint64_t idle_since_usec = 0; ///< CLOCK_REALTIME µs of the last idle hint change
  bool locked = false;
};

/// logind's answer: the sessions, or nullopt with `why` when logind cannot
/// be asked (no system bus, no logind).
using logind_source = std::function<std::optional<std::vector<logind_session>>(std::string& why)>;

/// The terminals (ut_line: "pts/3", "tty1") of the user sessions in a utmp
/// file's bytes; records that are not USER_PROCESS, lines that are not a
/// terminal (":0") or that could leave /dev are skipped, and at most
/// `max_lines` are returned.
std::vector<std::string> utmp_session_ttys(const std::string& bytes, std::size_t max_lines = 64);

/// The presence the sessions add up to at `now_unix` (seconds):
/// - an active local session not locked counts with its idle time (0 while
///   its idle hint is off); a locked one only when nothing else counts, and
///   then the host is `locked`;
/// - each terminal counts with now minus its last input (`tty_input_unix`).
/// nullopt when there is no session at all.
std::optional<owner_presence> combine_presence(const std::vector<logind_session>* logind,
                                               const std::vector<double>& tty_input_unix,
                                               double now_unix);

struct presence_probe_options {
  std::string root = "/"; ///< prefix of /run/utmp and /dev
  logind_source logind;   ///< none: logind is not asked
};

class presence_probe {
public:
  explicit presence_probe(presence_probe_options opts);

  /// The presence now, or nullopt with `why` (a headless host: no login
  /// session lulld can see).
  std::optional<owner_presence> sample(double now_unix, std::string& why);

private:
  presence_probe_options opts_;
};

} // namespace lull
