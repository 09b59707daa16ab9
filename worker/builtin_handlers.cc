#include "worker/builtin_handlers.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace zserve::worker {

namespace {

class DenseHandler final : public Handler {
 public:
  DenseHandler() : weights_(kDenseInputs * kDenseOutputs), bias_(kDenseOutputs) {
    for (size_t i = 0; i < weights_.size(); ++i) weights_[i] = 0.1f * std::sin(float(i));
    for (size_t j = 0; j < bias_.size(); ++j) bias_[j] = 0.01f * float(j);
  }

  std::vector<std::string> Methods() const override { return {"__call__"}; }

  // One (n x 64) . (64 x 16) product over the valid items of the batch.
  std::vector<Result> HandleBatch(std::span<const Request> batch) override {
    std::vector<Result> out(batch.size(), HandlerError("unset"));
    std::vector<size_t> valid;
    std::vector<float> x;
    x.reserve(batch.size() * kDenseInputs);
    for (size_t i = 0; i < batch.size(); ++i) {
      if (batch[i].payload.size() != kDenseInputs * sizeof(float)) {
        out[i] = HandlerError("dense: payload must be " + std::to_string(kDenseInputs) +
                              " float32 (" + std::to_string(kDenseInputs * sizeof(float)) +
                              " bytes), got " + std::to_string(batch[i].payload.size()) + " bytes");
        continue;
      }
      valid.push_back(i);
      size_t at = x.size();
      x.resize(at + kDenseInputs);
      std::memcpy(&x[at], batch[i].payload.data(), kDenseInputs * sizeof(float));
    }
    std::vector<float> y(valid.size() * kDenseOutputs);
    for (size_t r = 0; r < valid.size(); ++r) {
      float* row = &y[r * kDenseOutputs];
      for (size_t j = 0; j < kDenseOutputs; ++j) row[j] = bias_[j];
      for (size_t k = 0; k < kDenseInputs; ++k) {
        float xv = x[r * kDenseInputs + k];
        const float* w = &weights_[k * kDenseOutputs];
        for (size_t j = 0; j < kDenseOutputs; ++j) row[j] += xv * w[j];
      }
      for (size_t j = 0; j < kDenseOutputs; ++j) row[j] = std::max(row[j], 0.0f);
      out[valid[r]] =
          std::string(reinterpret_cast<const char*>(row), kDenseOutputs * sizeof(float));
    }
    return out;
  }

 private:
  std::vector<float> weights_;  // kDenseInputs x kDenseOutputs, row-major
  std::vector<float> bias_;
};

class ConfigHandler final : public Handler {
 public:
  std::vector<Result> HandleBatch(std::span<const Request> batch) override {
    std::lock_guard<std::mutex> lock(mu_);
    return std::vector<Result>(batch.size(), user_config_);
  }
  Status Reconfigure(std::string_view user_config) override {
    std::lock_guard<std::mutex> lock(mu_);
    user_config_ = std::string(user_config);
    return Status::Ok();
  }

 private:
  std::mutex mu_;
  std::string user_config_;  // guarded by mu_
};

}  // namespace

std::vector<std::string> BuiltinHandlerNames() {
  return {"echo", "sleep", "fail", "dense", "batch", "batch_size", "whoami", "config"};
}

StatusOr<std::unique_ptr<Handler>> MakeBuiltinHandler(const std::string& name,
                                                      const BuiltinOptions& options) {
  if (name == "echo") {
    return MakeHandler([](const Request& r) -> Result { return std::string(r.payload); });
  }
  if (name == "sleep") {
    uint32_t fallback = options.sleep_ms;
    return MakeHandler([fallback](const Request& r) -> Result {
      uint32_t ms = fallback;
      const char* end = r.payload.data() + r.payload.size();
      uint32_t parsed;
      auto [ptr, ec] = std::from_chars(r.payload.data(), end, parsed);
      if (ec == std::errc() && ptr == end && !r.payload.empty()) ms = parsed;
      // The sleep is the handler's work, not synchronisation.
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      return std::string(r.payload);
    });
  }
  if (name == "fail") {
    return MakeHandler([](const Request& r) -> Result {
      if (r.payload.starts_with("throw:")) {
        throw std::runtime_error(std::string(r.payload.substr(6)));
      }
      if (r.payload.starts_with("error:")) return HandlerError(std::string(r.payload.substr(6)));
      return std::string(r.payload);
    });
  }
  if (name == "dense") return std::unique_ptr<Handler>(std::make_unique<DenseHandler>());
  if (name == "batch") {
    return MakeBatchHandler([](std::span<const Request> batch) {
      // The device's time, not synchronisation.
      std::this_thread::sleep_for(std::chrono::microseconds(
          kBatchCallUs + kBatchItemUs * static_cast<uint32_t>(batch.size())));
      std::vector<Result> out;
      out.reserve(batch.size());
      for (const Request& r : batch) out.emplace_back(std::string(r.payload));
      return out;
    });
  }
  if (name == "batch_size") {
    return MakeBatchHandler([](std::span<const Request> batch) {
      return std::vector<Result>(batch.size(), std::to_string(batch.size()));
    });
  }
  if (name == "whoami") {
    std::string tag = options.replica_tag;
    return MakeHandler([tag](const Request&) -> Result { return tag; });
  }
  if (name == "config") return std::unique_ptr<Handler>(std::make_unique<ConfigHandler>());
  std::string known;
  for (const std::string& n : BuiltinHandlerNames()) known += (known.empty() ? "" : ", ") + n;
  return BadRequest("unknown handler '" + name + "' (built-in handlers: " + known + ")");
}

}  // namespace zserve::worker
