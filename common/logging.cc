#include "common/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace zserve {

Logger MakeLogger(const std::string& name, const std::string& level) {
  static auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>(name, sink);
  logger->set_level(spdlog::level::from_str(level));
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");
  return logger;
}

Status ValidateLogLevel(const std::string& level) {
  for (const char* known :
       {"trace", "debug", "info", "warning", "warn", "error", "critical", "off"}) {
    if (level == known) return Status::Ok();
  }
  return BadRequest("unknown log level '" + level + "' (trace, debug, info, warn, error, off)");
}

}  // namespace zserve
