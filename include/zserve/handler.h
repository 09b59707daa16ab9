// The contract between zserve and a user's request handler.
//
// A handler receives a batch of 1..max_batch_size requests that share one
// method and returns exactly one result per request, in order. A result is
// either the reply payload or an error Status; an error fails only its own
// request (reported to the caller as HANDLER_ERROR, message kept). A handler
// that throws fails every request of that batch with HANDLER_ERROR; the
// worker lives on. Returning the wrong number of results does the same.
//
// Threads: HandleBatch is called from the worker's pool threads, possibly
// several at once, and, while its calls are short (docs/semantics.md, "Where
// a worker runs its handler"), from the worker's I/O thread; never more than
// the worker's `threads` at once. A handler with state guards it itself, and
// must not wait for a later request to its own replica (none is read while
// the I/O thread is in a call). The request views are valid only during the
// call.
#ifndef ZSERVE_HANDLER_H_
#define ZSERVE_HANDLER_H_

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "zserve/status.h"

namespace zserve {

struct Request {
  std::string_view method;   // "__call__" unless the caller named one
  std::string_view payload;  // the caller's bytes, as sent
  std::chrono::steady_clock::time_point deadline;
};

using Result = StatusOr<std::string>;

class Handler {
 public:
  virtual ~Handler() = default;
  virtual std::vector<Result> HandleBatch(std::span<const Request> batch) = 0;
  // The methods this handler serves; a request for another method is
  // answered NOT_FOUND without calling HandleBatch. Empty (the default):
  // every method.
  virtual std::vector<std::string> Methods() const;
  // Takes the backend's user_config without a restart: once when the worker
  // first hears from the controller, then at every change. Runs on the
  // worker's I/O thread, possibly while HandleBatch runs on pool threads
  // (never during a HandleBatch on the I/O thread itself). An
  // error is logged and the handler keeps its previous configuration.
  virtual Status Reconfigure(std::string_view user_config);
};

// A handler from a function of one request, applied to each item of a batch.
std::unique_ptr<Handler> MakeHandler(std::function<Result(const Request&)> fn);

// A handler from a function of a whole batch.
std::unique_ptr<Handler> MakeBatchHandler(
    std::function<std::vector<Result>(std::span<const Request>)> fn);

// A handler serving several methods, each a function of one request.
std::unique_ptr<Handler> MakeMethodHandler(
    std::map<std::string, std::function<Result(const Request&)>> methods);

}  // namespace zserve

#endif  // ZSERVE_HANDLER_H_
