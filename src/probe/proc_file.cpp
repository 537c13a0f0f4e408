#include "src/probe/proc_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <utility>

namespace lull {

proc_file::proc_file(std::string path) : path_(std::move(path)), buf_(4096, '\0') {}

proc_file::~proc_file() {
  if (fd_ >= 0)
    ::close(fd_);
}

proc_file::proc_file(proc_file&& other) noexcept
  : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)),
    buf_(std::move(other.buf_)) {}

proc_file& proc_file::operator=(proc_file&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0)
      ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    buf_ = std::move(other.buf_);
  }
  return *this;
}

std::optional<std::string_view> proc_file::read() {
  if (fd_ < 0) {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0)
      return std::nullopt;
  }
  for (;;) {
    auto n = ::pread(fd_, buf_.data(), buf_.size(), 0);
    if (n < 0) {
      ::close(fd_);
      fd_ = -1;
      return std::nullopt;
    }
    if (static_cast<size_t>(n) < buf_.size())
      return std::string_view(buf_.data(), static_cast<size_t>(n));
    // Buffer full: the file may be longer; grow and read again from 0 so the
    // snapshot stays consistent.
    buf_.resize(buf_.size() * 2);
  }
}

std::optional<std::string> read_small_file(const std::string& path) {
  proc_file f(path);
  auto content = f.read();
  if (!content)
    return std::nullopt;
  return std::string(*content);
}

void fill_proc_defaults(pid_t& self_pid, long& clk_tck, long& page_size) {
  if (self_pid == 0)
    self_pid = ::getpid();
  if (clk_tck <= 0)
    clk_tck = ::sysconf(_SC_CLK_TCK);
  if (page_size <= 0)
    page_size = ::sysconf(_SC_PAGESIZE);
}

std::string under_root(const std::string& root, const std::string& rel) {
  if (root.empty() || root == "/")
    return rel;
  return (root.back() == '/' ? root.substr(0, root.size() - 1) : root) + rel;
}

} // namespace lull
