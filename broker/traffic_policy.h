// An endpoint's traffic policy: backend -> weight, weights >= 0 summing to 1.
// Picks a backend per request, at random or by a stable hash of a shard key
// (the same key always lands on the same backend while the weights stay).
//
// Immutable after Create; safe to read from any thread.
#ifndef ZSERVE_BROKER_TRAFFIC_POLICY_H_
#define ZSERVE_BROKER_TRAFFIC_POLICY_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "zserve/status.h"

namespace zserve::broker {

// A well-mixed 64-bit hash of a string (FNV-1a, then a splitmix64 finisher:
// FNV alone leaves keys that differ in their last byte close together).
uint64_t HashKey(std::string_view key, uint64_t seed = 0);

class TrafficPolicy {
 public:
  // Refuses weights that are negative, don't sum to 1 (within 1e-6) or are empty.
  static StatusOr<TrafficPolicy> Create(const std::map<std::string, double>& weights);

  // The backend for a uniform draw u in [0, 1).
  const std::string& Pick(double u) const;
  // The backend for a shard key: HashKey mapped onto [0, 1).
  const std::string& PickByKey(std::string_view key) const;

  const std::vector<std::string>& backends() const { return backends_; }

 private:
  TrafficPolicy() = default;
  std::vector<std::string> backends_;  // only those with weight > 0
  std::vector<double> cumulative_;     // running sums, last one == 1
};

}  // namespace zserve::broker

#endif  // ZSERVE_BROKER_TRAFFIC_POLICY_H_
