#pragma once
/// Written owner-presence fixtures: a utmp file with the given sessions
/// under <root>/run/utmp, and terminals under <root>/dev whose access time
/// (the kernel's last-input time of a tty) a test sets.

#include <fcntl.h>
#include <sys/stat.h>
#include <utmpx.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace lull::test {

struct utmp_entry {
  std::string line; ///< "pts/0", "tty1", ":0"
  short type = USER_PROCESS;
  std::string user = "owner";
};

inline std::string utmp_bytes(const std::vector<utmp_entry>& entries) {
  std::string out;
  for (auto& e : entries) {
    struct utmpx u;
    std::memset(&u, 0, sizeof u);
    u.ut_type = e.type;
    u.ut_pid = 4242;
    std::strncpy(u.ut_line, e.line.c_str(), sizeof u.ut_line - 1);
    std::strncpy(u.ut_user, e.user.c_str(), sizeof u.ut_user - 1);
    out.append(reinterpret_cast<const char*>(&u), sizeof u);
  }
  return out;
}

inline void write_utmp(const std::string& root, const std::vector<utmp_entry>& entries) {
  std::filesystem::create_directories(root + "/run");
  std::ofstream(root + "/run/utmp", std::ios::binary | std::ios::trunc) << utmp_bytes(entries);
}

/// Creates <root>/dev/<line> if needed and sets its access time: the last
/// input on that terminal.
inline void set_last_input(const std::string& root, const std::string& line, double unix_sec) {
  auto path = std::filesystem::path(root) / "dev" / line;
  std::filesystem::create_directories(path.parent_path());
  if (!std::filesystem::exists(path))
    std::ofstream(path.string()) << "";
  struct timespec times[2];
  times[0].tv_sec = static_cast<time_t>(unix_sec);
  times[0].tv_nsec = static_cast<long>((unix_sec - static_cast<double>(times[0].tv_sec)) * 1e9);
  times[1].tv_sec = 0;
  times[1].tv_nsec = UTIME_OMIT;
  ::utimensat(AT_FDCWD, path.c_str(), times, 0);
}

} // namespace lull::test
