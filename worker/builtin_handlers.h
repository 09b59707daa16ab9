// The handlers built into the generic `zserve worker` binary, by name:
//   echo   returns the payload.
//   sleep  waits the milliseconds given as the payload (a decimal number), or
//          `sleep_ms` when the payload is not a number, then returns the payload.
//   fail   for tests of error paths: a payload "throw:MSG" makes the handler
//          throw (the whole batch fails), "error:MSG" fails that request
//          only; any other payload is echoed.
#ifndef ZSERVE_WORKER_BUILTIN_HANDLERS_H_
#define ZSERVE_WORKER_BUILTIN_HANDLERS_H_

#include <memory>
#include <string>
#include <vector>

#include "zserve/handler.h"

namespace zserve::worker {

struct BuiltinOptions {
  uint32_t sleep_ms = 100;
};

std::vector<std::string> BuiltinHandlerNames();
StatusOr<std::unique_ptr<Handler>> MakeBuiltinHandler(const std::string& name,
                                                      const BuiltinOptions& options);

}  // namespace zserve::worker

#endif  // ZSERVE_WORKER_BUILTIN_HANDLERS_H_
