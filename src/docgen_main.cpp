// lull_docgen OUTDIR: writes what the package installs beside the programs,
// from the same definitions as their --help, so none of it falls behind:
//   OUTDIR/man/lull.1, OUTDIR/man/lulld.8, OUTDIR/man/lull.toml.5
//   OUTDIR/completions/lull (bash), OUTDIR/completions/_lull (zsh)
// The completion scripts are what `lull completion bash|zsh` prints.

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "src/cli/cli.hpp"
#include "src/cli/commands.hpp"
#include "src/cli/man.hpp"

namespace {

bool write(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  if (!out.flush()) {
    std::cerr << "lull_docgen: cannot write " << path.string() << ": " << std::strerror(errno)
              << "\n";
    return false;
  }
  return true;
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: lull_docgen OUTDIR\n";
    return 64;
  }
  std::filesystem::path out = argv[1];
  std::error_code ec;
  std::filesystem::create_directories(out / "man", ec);
  std::filesystem::create_directories(out / "completions", ec);
  if (ec) {
    std::cerr << "lull_docgen: cannot make " << out.string() << ": " << ec.message() << "\n";
    return 1;
  }
  CLI::App app;
  lull::cli::global_opts g;
  [[maybe_unused]] auto commands = lull::cli::build(app, g); // owns what the options bind to
  bool ok = true;
  for (auto& page : lull::cli::man_pages(app))
    ok = write(out / "man" / page.file, page.text) && ok;
  ok = write(out / "completions" / "lull", lull::cli::completion_script(app, "bash")) && ok;
  ok = write(out / "completions" / "_lull", lull::cli::completion_script(app, "zsh")) && ok;
  return ok ? 0 : 1;
}
