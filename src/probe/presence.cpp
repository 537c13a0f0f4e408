#include "src/probe/presence.hpp"

#include <sys/stat.h>
#include <utmpx.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>

namespace lull {

namespace {

bool is_terminal_line(const std::string& line) {
  if (line.empty() || line.find("..") != std::string::npos || line.front() == '/')
    return false;
  if (line.rfind("pts/", 0) == 0)
    return line.size() > 4 && std::all_of(line.begin() + 4, line.end(), [](char c) {
             return c >= '0' && c <= '9';
           });
  if (line.rfind("tty", 0) == 0)
    return line.size() > 3 && std::all_of(line.begin() + 3, line.end(), [](char c) {
             return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z');
           });
  return false;
}

} // namespace

std::vector<std::string> utmp_session_ttys(const std::string& bytes, std::size_t max_lines) {
  std::vector<std::string> out;
  const std::size_t rec = sizeof(struct utmpx);
  for (std::size_t off = 0; off + rec <= bytes.size() && out.size() < max_lines; off += rec) {
    struct utmpx u;
    std::memcpy(&u, bytes.data() + off, rec);
    if (u.ut_type != USER_PROCESS)
      continue;
    std::string line(u.ut_line, strnlen(u.ut_line, sizeof u.ut_line));
    if (is_terminal_line(line) && std::find(out.begin(), out.end(), line) == out.end())
      out.push_back(line);
  }
  return out;
}

std::optional<owner_presence> combine_presence(const std::vector<logind_session>* logind,
                                               const std::vector<double>& tty_input_unix,
                                               double now_unix) {
  std::optional<double> open_idle, locked_idle;
  int sessions = 0;
  bool from_logind = false;
  auto take = [](std::optional<double>& into, double v) {
    v = std::max(v, 0.0);
    into = into ? std::min(*into, v) : v;
  };
  if (logind)
    for (auto& s : *logind) {
      if (s.seat.empty() || !s.active)
        continue; // remote sessions count through their terminal; a switched-away one not at all
      ++sessions;
      from_logind = true;
      double idle = s.idle_hint ? now_unix - static_cast<double>(s.idle_since_usec) / 1e6 : 0.0;
      take(s.locked ? locked_idle : open_idle, idle);
    }
  for (double t : tty_input_unix) {
    ++sessions;
    take(open_idle, now_unix - t);
  }
  if (!open_idle && !locked_idle)
    return std::nullopt;
  owner_presence o;
  o.locked = !open_idle;
  o.idle_sec = open_idle ? *open_idle : *locked_idle;
  o.sessions = sessions;
  bool from_tty = !tty_input_unix.empty();
  o.source = from_logind && from_tty ? "logind+tty" : from_logind ? "logind" : "tty";
  return o;
}

presence_probe::presence_probe(presence_probe_options opts) : opts_(std::move(opts)) {
  if (opts_.root.empty())
    opts_.root = "/";
  if (opts_.root.back() == '/')
    opts_.root.pop_back();
}

std::optional<owner_presence> presence_probe::sample(double now_unix, std::string& why) {
  std::optional<std::vector<logind_session>> sessions;
  std::string logind_why = "logind is not asked";
  if (opts_.logind) {
    sessions = opts_.logind(logind_why);
    if (sessions)
      logind_why = "logind lists no active session on a seat";
  }
  std::vector<double> inputs;
  std::string utmp = opts_.root + "/run/utmp";
  std::ifstream in(utmp, std::ios::binary);
  std::string bytes;
  if (in) {
    // A utmp file holds a record per terminal ever used since boot; 1000
    // records is far beyond a fleet host's and bounds the read.
    bytes.resize(1000 * sizeof(struct utmpx));
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    bytes.resize(static_cast<std::size_t>(in.gcount()));
  }
  for (auto& line : utmp_session_ttys(bytes)) {
    struct stat st;
    if (::stat((opts_.root + "/dev/" + line).c_str(), &st) == 0)
      inputs.push_back(static_cast<double>(st.st_atim.tv_sec)
                       + static_cast<double>(st.st_atim.tv_nsec) / 1e9);
  }
  auto p = combine_presence(sessions ? &*sessions : nullptr, inputs, now_unix);
  if (!p)
    why = "no login session: neither a local seat session (" + logind_why + ") nor a terminal in "
          + utmp + (in ? "" : " (unreadable)");
  return p;
}

} // namespace lull
