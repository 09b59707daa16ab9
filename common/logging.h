// Named spdlog loggers, one per component ("broker", "worker", ...), writing
// to stderr. Thread-safe (spdlog's _mt sinks).
#ifndef ZSERVE_COMMON_LOGGING_H_
#define ZSERVE_COMMON_LOGGING_H_

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

#include "zserve/status.h"

namespace zserve {

using Logger = std::shared_ptr<spdlog::logger>;

// A new logger named `name` at `level` ("trace".."off"); not registered
// globally, so tests can make several in one process.
Logger MakeLogger(const std::string& name, const std::string& level = "info");

// Checks a level name given on the command line.
Status ValidateLogLevel(const std::string& level);

}  // namespace zserve

#endif  // ZSERVE_COMMON_LOGGING_H_
