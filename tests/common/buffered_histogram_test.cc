// BufferedHistogram (common/metrics_server.h): what Prometheus scrapes is the
// same as with an Observe per value, once flushed.
#include <prometheus/histogram.h>

#include <catch2/catch.hpp>
#include <vector>

#include "common/metrics_server.h"

namespace zserve {
namespace {

TEST_CASE("A buffered histogram scrapes like one observed value by value", "[common]") {
  const std::vector<double>& bounds = LatencyBuckets();
  prometheus::Histogram direct(bounds);
  prometheus::Histogram target(bounds);
  BufferedHistogram buffered(target, bounds);
  // Boundaries exactly (le: counted in their own bucket), between them,
  // below the first and above the last.
  std::vector<double> values = {0, 0.00005, 0.0001, 0.0002, 0.001, 0.0011, 0.5, 10, 11, 1e6};
  int first = 0;
  for (double v : values) {
    direct.Observe(v);
    first += buffered.Observe(v);
  }
  CHECK(first == 1);  // only the first observation since a flush says so
  CHECK(target.Collect().histogram.sample_count == 0);
  buffered.Flush();
  auto want = direct.Collect().histogram;
  auto got = target.Collect().histogram;
  CHECK(got.sample_count == want.sample_count);
  CHECK(got.sample_sum == Approx(want.sample_sum));
  REQUIRE(got.bucket.size() == want.bucket.size());
  for (size_t i = 0; i < want.bucket.size(); ++i) {
    CHECK(got.bucket[i].cumulative_count == want.bucket[i].cumulative_count);
  }
  // A second flush with nothing new adds nothing; the next batch adds on.
  buffered.Flush();
  CHECK(target.Collect().histogram.sample_count == values.size());
  CHECK(buffered.Observe(0.3));
  buffered.Flush();
  CHECK(target.Collect().histogram.sample_count == values.size() + 1);
}

}  // namespace
}  // namespace zserve
