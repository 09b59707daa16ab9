// LatencyRecorder: an HDR-like histogram of latencies in nanoseconds, with
// log-bucketed counts (256 linear buckets per power of two past 256 ns, so a
// quantile is within 0.4% of the recorded value) and a fixed size: recording
// allocates nothing and costs a few instructions.
//
// A plain value; one thread uses it.
#ifndef ZSERVE_BENCH_LATENCY_RECORDER_H_
#define ZSERVE_BENCH_LATENCY_RECORDER_H_

#include <array>
#include <cstdint>

namespace zserve::bench {

class LatencyRecorder {
 public:
  void Record(uint64_t nanos);
  void Reset();

  uint64_t count() const { return count_; }
  uint64_t max() const { return max_; }
  double mean() const { return count_ == 0 ? 0 : static_cast<double>(sum_) / count_; }
  // The value at quantile q in [0, 1] (0 when empty), in nanoseconds.
  uint64_t Quantile(double q) const;

 private:
  static constexpr int kPrecisionBits = 8;
  // Enough buckets for any uint64_t value.
  static constexpr int kBuckets = (64 - kPrecisionBits + 2) << (kPrecisionBits - 1);
  static int Index(uint64_t v);
  static uint64_t Value(int index);  // the middle of the bucket

  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t max_ = 0;
};

}  // namespace zserve::bench

#endif  // ZSERVE_BENCH_LATENCY_RECORDER_H_
