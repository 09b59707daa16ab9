#include "zserve/handler.h"

namespace zserve {

Status Handler::Reconfigure(std::string_view) { return Status::Ok(); }

namespace {

class FunctionHandler final : public Handler {
 public:
  explicit FunctionHandler(std::function<Result(const Request&)> fn) : fn_(std::move(fn)) {}
  std::vector<Result> HandleBatch(std::span<const Request> batch) override {
    std::vector<Result> out;
    out.reserve(batch.size());
    for (const Request& r : batch) out.push_back(fn_(r));
    return out;
  }

 private:
  std::function<Result(const Request&)> fn_;
};

class BatchFunctionHandler final : public Handler {
 public:
  explicit BatchFunctionHandler(std::function<std::vector<Result>(std::span<const Request>)> fn)
      : fn_(std::move(fn)) {}
  std::vector<Result> HandleBatch(std::span<const Request> batch) override { return fn_(batch); }

 private:
  std::function<std::vector<Result>(std::span<const Request>)> fn_;
};

}  // namespace

std::unique_ptr<Handler> MakeHandler(std::function<Result(const Request&)> fn) {
  return std::make_unique<FunctionHandler>(std::move(fn));
}

std::unique_ptr<Handler> MakeBatchHandler(
    std::function<std::vector<Result>(std::span<const Request>)> fn) {
  return std::make_unique<BatchFunctionHandler>(std::move(fn));
}

}  // namespace zserve
