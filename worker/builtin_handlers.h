// The handlers built into the generic `zserve worker` binary, by name:
//   echo   returns the payload.
//   sleep  waits the milliseconds given as the payload (a decimal number), or
//          `sleep_ms` when the payload is not a number, then returns the payload.
//   fail   for tests of error paths: a payload "throw:MSG" makes the handler
//          throw (the whole batch fails), "error:MSG" fails that request
//          only; any other payload is echoed.
//   dense  a small dense layer, batched as one matrix product: each payload
//          is 64 float32 (256 bytes, little-endian), each reply 16 float32,
//          relu(x W + b) with fixed weights. Method `__call__` only.
//   batch  a model on an accelerator, for batching measurements: each
//          handler call waits kBatchCallUs plus kBatchItemUs per request
//          (waiting, not computing, as a host thread waits for a device),
//          then returns every payload. Larger batches amortise the fixed
//          part; bench/run.sh measures max_batch_size 1, 8, 32 with it.
//   batch_size  replies with the size of the batch its request was handled
//          in, as decimal text (to observe batching).
//   whoami replies with the replica's tag (to observe sticky routing).
//   config replies with the backend's user_config as the handler last took
//          it (to observe live reconfiguration).
#ifndef ZSERVE_WORKER_BUILTIN_HANDLERS_H_
#define ZSERVE_WORKER_BUILTIN_HANDLERS_H_

#include <memory>
#include <string>
#include <vector>

#include "zserve/handler.h"

namespace zserve::worker {

struct BuiltinOptions {
  uint32_t sleep_ms = 100;
  std::string replica_tag;  // for whoami
};

inline constexpr uint32_t kBatchCallUs = 1000;
inline constexpr uint32_t kBatchItemUs = 10;
inline constexpr size_t kDenseInputs = 64;
inline constexpr size_t kDenseOutputs = 16;

std::vector<std::string> BuiltinHandlerNames();
StatusOr<std::unique_ptr<Handler>> MakeBuiltinHandler(const std::string& name,
                                                      const BuiltinOptions& options);

}  // namespace zserve::worker

#endif  // ZSERVE_WORKER_BUILTIN_HANDLERS_H_
