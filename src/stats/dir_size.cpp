#include "src/stats/dir_size.hpp"

#include <filesystem>

namespace lull {

nlohmann::json to_json(const dir_size& d) {
  return {{"path", d.path},
          {"bytes", d.bytes ? nlohmann::json(*d.bytes) : nlohmann::json(nullptr)},
          {"files", d.files},
          {"complete", d.complete},
          {"walk_ms", d.walk_ms},
          {"error", d.error ? nlohmann::json(*d.error) : nlohmann::json(nullptr)}};
}

dir_sizer::dir_sizer(double min_interval_sec, std::size_t max_entries, mono_clock_fn clock)
  : min_interval_sec_(min_interval_sec),
    max_entries_(max_entries),
    clock_(clock ? std::move(clock) : mono_clock_fn(steady_seconds)) {}

const dir_size& dir_sizer::size(const std::string& path, double deadline) {
  auto now = clock_();
  auto it = cache_.find(path);
  if (it != cache_.end() && now - it->second.walked_at < min_interval_sec_)
    return it->second;
  auto fresh = walk(path, deadline);
  return cache_[path] = std::move(fresh);
}

dir_size dir_sizer::walk(const std::string& path, double deadline) {
  namespace fs = std::filesystem;
  ++walks_;
  dir_size d;
  d.path = path;
  auto start = clock_();
  d.walked_at = start;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    d.error = "not a directory";
    return d;
  }
  std::uint64_t bytes = 0;
  std::size_t entries = 0;
  fs::recursive_directory_iterator it(path, fs::directory_options::skip_permission_denied, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (++entries > max_entries_) {
      d.complete = false;
      d.error = "stopped after " + std::to_string(max_entries_) + " entries";
      break;
    }
    // The clock is read every 256 entries: cheap, yet a stuck NFS mount or a
    // huge tree cannot hold the collector for long past its deadline.
    if ((entries & 0xff) == 0 && clock_() > deadline) {
      d.complete = false;
      d.error = "walk timed out";
      break;
    }
    std::error_code fe;
    auto st = it->symlink_status(fe);
    if (fe || !fs::is_regular_file(st))
      continue;
    auto sz = it->file_size(fe);
    if (!fe) {
      bytes += sz;
      ++d.files;
    }
  }
  if (ec && !d.error)
    d.error = ec.message();
  d.bytes = bytes;
  d.walk_ms = (clock_() - start) * 1000.0;
  return d;
}

} // namespace lull
