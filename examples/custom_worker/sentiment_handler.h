// A stateful handler object: a tiny word-weight sentiment "model" loaded from
// a file in the constructor, a decision threshold taken from the backend's
// user_config, and three methods:
//   score    -> the text's score, e.g. "1.500"
//   classify -> "positive" or "negative" (score >= threshold)
//   info     -> "words=10 threshold=0.000"
// Batches: every item of a batch shares one method; each item gets its own
// result, and an empty text fails only its own item.
//
// Threads: HandleBatch runs on several pool threads at once and Reconfigure
// on the worker's I/O thread; the model is read-only after construction and
// the threshold is an atomic.
#ifndef SENTIMENT_HANDLER_H_
#define SENTIMENT_HANDLER_H_

#include <atomic>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "zserve/handler.h"

class SentimentHandler : public zserve::Handler {
 public:
  // Throws std::runtime_error if the model file can't be read or is malformed.
  explicit SentimentHandler(const std::string& model_path);

  std::vector<zserve::Result> HandleBatch(std::span<const zserve::Request> batch) override;
  std::vector<std::string> Methods() const override { return {"score", "classify", "info"}; }
  // user_config: a JSON object, e.g. {"threshold": 0.7}; "" keeps the default 0.
  zserve::Status Reconfigure(std::string_view user_config) override;

 private:
  double Score(std::string_view text) const;

  std::unordered_map<std::string, double> weights_;
  std::atomic<double> threshold_{0.0};
};

#endif  // SENTIMENT_HANDLER_H_
