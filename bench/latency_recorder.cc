#include "bench/latency_recorder.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace zserve::bench {

// Values below 2^P are their own bucket. Above, with k = msb(v) - P + 1,
// v >> k lies in [2^(P-1), 2^P) and the bucket is k * 2^(P-1) + (v >> k): the
// buckets of successive k follow each other without gaps or overlap.
int LatencyRecorder::Index(uint64_t v) {
  constexpr uint64_t kLinear = uint64_t{1} << kPrecisionBits;
  if (v < kLinear) return static_cast<int>(v);
  int k = (63 - std::countl_zero(v)) - kPrecisionBits + 1;
  return (k << (kPrecisionBits - 1)) + static_cast<int>(v >> k);
}

uint64_t LatencyRecorder::Value(int index) {
  constexpr int kLinear = 1 << kPrecisionBits;
  if (index < kLinear) return static_cast<uint64_t>(index);
  int k = (index >> (kPrecisionBits - 1)) - 1;
  auto top = static_cast<uint64_t>(index - (k << (kPrecisionBits - 1)));
  return (top << k) + (uint64_t{1} << (k - 1));
}

void LatencyRecorder::Record(uint64_t nanos) {
  ++counts_[static_cast<size_t>(Index(nanos))];
  ++count_;
  sum_ += nanos;
  max_ = std::max(max_, nanos);
}

void LatencyRecorder::Reset() { *this = LatencyRecorder(); }

uint64_t LatencyRecorder::Quantile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  uint64_t rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * count_)));
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += counts_[static_cast<size_t>(i)];
    if (seen >= rank) return std::min(Value(i), max_);
  }
  return max_;
}

}  // namespace zserve::bench
