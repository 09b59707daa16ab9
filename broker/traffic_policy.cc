#include "broker/traffic_policy.h"

#include <algorithm>

#include "schemas/config.h"

namespace zserve::broker {

StatusOr<TrafficPolicy> TrafficPolicy::Create(const std::map<std::string, double>& weights) {
  if (Status s = schemas::ValidateWeights(weights); !s.ok()) return s;
  TrafficPolicy p;
  double sum = 0;
  for (const auto& [backend, weight] : weights) {
    if (weight <= 0) continue;
    sum += weight;
    p.backends_.push_back(backend);
    p.cumulative_.push_back(sum);
  }
  // Normalise away the 1e-6 of slack so that every u in [0, 1) finds a backend.
  for (double& c : p.cumulative_) c /= sum;
  p.cumulative_.back() = 1.0;
  return p;
}

const std::string& TrafficPolicy::Pick(double u) const {
  auto it = std::upper_bound(cumulative_.begin(), cumulative_.end(), u);
  if (it == cumulative_.end()) --it;
  return backends_[static_cast<size_t>(it - cumulative_.begin())];
}

const std::string& TrafficPolicy::PickByKey(std::string_view key) const {
  // The top 53 bits make a double in [0, 1).
  return Pick(static_cast<double>(HashKey(key) >> 11) * 0x1.0p-53);
}

uint64_t HashKey(std::string_view key, uint64_t seed) {
  uint64_t h = 14695981039346656037ull ^ seed;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

}  // namespace zserve::broker
