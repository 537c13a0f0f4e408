#pragma once
/// Recorded /proc + /sys trees under tests/fixtures/proc/<name>, copied to a
/// scratch directory so a test can advance them to their next reading
/// (`stat.1`, `net/dev.1`) the way the kernel does: same file, new contents,
/// so the probe's kept-open descriptors see it.

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace lull::test {

inline std::string fixture_dir(const std::string& name) {
  return std::string(LULL_SOURCE_DIR) + "/tests/fixtures/proc/" + name;
}

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

/// Rewrites `p` in place (truncate + write keeps the inode).
inline void overwrite(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::trunc);
  out << text;
}

class fixture_tree {
public:
  explicit fixture_tree(const std::string& name) {
    namespace fs = std::filesystem;
    auto base = fs::temp_directory_path()
                / ("lull-fixture-" + name + "-" + std::to_string(::getpid()) + "-"
                   + std::to_string(counter()++));
    fs::remove_all(base);
    fs::create_directories(base);
    // Symlinks stay links (/proc/<pid>/fd/<n> -> /dev/dri/renderD128).
    fs::copy(fixture_dir(name), base,
             fs::copy_options::recursive | fs::copy_options::copy_symlinks);
    root_ = base.string();
  }
  ~fixture_tree() {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
  fixture_tree(const fixture_tree&) = delete;
  fixture_tree& operator=(const fixture_tree&) = delete;

  const std::string& root() const { return root_; }
  std::filesystem::path path(const std::string& rel) const { return root_ + "/" + rel; }

  /// Moves every `<file>.1` over `<file>`: the second reading.
  void advance() {
    namespace fs = std::filesystem;
    for (auto& e : fs::recursive_directory_iterator(root_)) {
      auto next = e.path();
      if (e.is_symlink() || !e.is_regular_file() || next.extension() != ".1")
        continue;
      auto now = next;
      now.replace_extension();
      if (fs::exists(now))
        overwrite(now, slurp(next));
    }
  }

private:
  static int& counter() {
    static int n = 0;
    return n;
  }
  std::string root_;
};

} // namespace lull::test
