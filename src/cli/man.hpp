#pragma once
/// lull's manual pages, written in roff from the definitions --help prints:
/// lull(1) from the CLI11 app of src/cli/app.cpp, lulld(8) and lull.toml(5)
/// from the configuration keys of src/config.cpp. The build writes them
/// (lull_docgen) and the package installs them.

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace lull::cli {

struct man_page {
  std::string file;    ///< lull.1, lulld.8, lull.toml.5
  std::string section; ///< 1, 8, 5
  std::string text;    ///< roff source
};

/// lull(1) from `lull_app` (as cli::build made it), lulld(8) and lull.toml(5).
std::vector<man_page> man_pages(const CLI::App& lull_app);

/// `text` for a roff text line: backslashes and dashes escaped, and a line
/// starting with '.' or '\'' kept from reading as a request.
std::string roff_text(const std::string& text);

} // namespace lull::cli
