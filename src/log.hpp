#pragma once
/// Logging through spdlog. Lines name their component first
/// ("mqtt bridge: connected to ...").

#include <string>

#include <spdlog/spdlog.h>

namespace lull::log {

using spdlog::debug;
using spdlog::error;
using spdlog::info;
using spdlog::trace;
using spdlog::warn;

/// Sets up stderr logging at `level` (trace, debug, info, warn, error, off).
void init(const std::string& level);

} // namespace lull::log
