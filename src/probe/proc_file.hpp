#pragma once
/// A /proc or /sys file kept open and re-read with one pread at offset 0 into a
/// reused buffer (netdata's procfile): a consistent snapshot without an
/// open/close per sample.

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

namespace lull {

class proc_file {
public:
  explicit proc_file(std::string path);
  ~proc_file();
  proc_file(const proc_file&) = delete;
  proc_file& operator=(const proc_file&) = delete;
  proc_file(proc_file&& other) noexcept;
  proc_file& operator=(proc_file&& other) noexcept;

  /// The whole file, or nullopt when it does not exist or cannot be read.
  std::optional<std::string_view> read();

  const std::string& path() const { return path_; }

private:
  std::string path_;
  int fd_ = -1;
  std::string buf_;
};

/// `rel` (an absolute path such as /proc/stat) under a fixture root; `rel`
/// itself for an empty root or "/".
std::string under_root(const std::string& root, const std::string& rel);

/// What a probe's options left at 0 comes from the running system: its own
/// pid, the clock ticks per second and the page size.
void fill_proc_defaults(pid_t& self_pid, long& clk_tck, long& page_size);

/// Reads a small file once (open, read, close); nullopt when missing.
std::optional<std::string> read_small_file(const std::string& path);

} // namespace lull
