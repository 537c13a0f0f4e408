#include "src/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace lull::log {

void init(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("lull");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %v");
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

} // namespace lull::log
