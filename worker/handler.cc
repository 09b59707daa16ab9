#include "zserve/handler.h"

namespace zserve {

Status Handler::Reconfigure(std::string_view) { return Status::Ok(); }

std::vector<std::string> Handler::Methods() const { return {}; }

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

class MethodHandler final : public Handler {
 public:
  explicit MethodHandler(std::map<std::string, std::function<Result(const Request&)>> methods)
      : methods_(std::move(methods)) {}
  // The worker hands over batches of one method, and only of these methods.
  std::vector<Result> HandleBatch(std::span<const Request> batch) override {
    std::vector<Result> out;
    out.reserve(batch.size());
    for (const Request& r : batch) out.push_back(methods_.at(std::string(r.method))(r));
    return out;
  }
  std::vector<std::string> Methods() const override {
    std::vector<std::string> names;
    for (const auto& [name, fn] : methods_) names.push_back(name);
    return names;
  }

 private:
  std::map<std::string, std::function<Result(const Request&)>> methods_;
};

}  // namespace

std::unique_ptr<Handler> MakeMethodHandler(
    std::map<std::string, std::function<Result(const Request&)>> methods) {
  return std::make_unique<MethodHandler>(std::move(methods));
}

std::unique_ptr<Handler> MakeHandler(std::function<Result(const Request&)> fn) {
  return std::make_unique<FunctionHandler>(std::move(fn));
}

std::unique_ptr<Handler> MakeBatchHandler(
    std::function<std::vector<Result>(std::span<const Request>)> fn) {
  return std::make_unique<BatchFunctionHandler>(std::move(fn));
}

}  // namespace zserve
