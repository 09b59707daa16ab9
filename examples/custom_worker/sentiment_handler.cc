#include "sentiment_handler.h"

#include <cctype>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace {

std::string Format(double value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", value);
  return buf;
}

}  // namespace

SentimentHandler::SentimentHandler(const std::string& model_path) {
  std::ifstream in(model_path);
  if (!in) throw std::runtime_error("cannot read model file '" + model_path + "'");
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string word;
    double weight = 0;
    if (!(fields >> word >> weight)) {
      throw std::runtime_error(model_path + ":" + std::to_string(n) + ": expected 'word weight'");
    }
    weights_[word] = weight;
  }
  if (weights_.empty()) throw std::runtime_error("model file '" + model_path + "' has no words");
}

double SentimentHandler::Score(std::string_view text) const {
  double score = 0;
  std::string word;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) {
      word += static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
      continue;
    }
    if (auto it = weights_.find(word); it != weights_.end()) score += it->second;
    word.clear();
  }
  return score;
}

std::vector<zserve::Result> SentimentHandler::HandleBatch(std::span<const zserve::Request> batch) {
  std::vector<zserve::Result> results;
  results.reserve(batch.size());
  double threshold = threshold_.load();
  for (const zserve::Request& r : batch) {
    if (r.method == "info") {
      results.emplace_back("words=" + std::to_string(weights_.size()) +
                           " threshold=" + Format(threshold));
    } else if (r.payload.empty()) {
      results.emplace_back(zserve::BadRequest("empty text"));
    } else if (r.method == "score") {
      results.emplace_back(Format(Score(r.payload)));
    } else {  // classify: Methods() keeps every other method away
      results.emplace_back(Score(r.payload) >= threshold ? "positive" : "negative");
    }
  }
  return results;
}

zserve::Status SentimentHandler::Reconfigure(std::string_view user_config) {
  if (user_config.empty()) return zserve::Status::Ok();
  nlohmann::json j = nlohmann::json::parse(user_config, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("threshold") || !j["threshold"].is_number()) {
    return zserve::BadRequest("user_config must be a JSON object with a number 'threshold'");
  }
  threshold_ = j["threshold"].get<double>();
  return zserve::Status::Ok();
}
