// An endpoint's traffic policy (broker/traffic_policy.h): weighted random
// picks and stable picks by shard key.
#include "broker/traffic_policy.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "zserve/status.h"

namespace {

using zserve::StatusCode;
using zserve::broker::TrafficPolicy;

TrafficPolicy Make(const std::map<std::string, double>& weights) {
  auto p = TrafficPolicy::Create(weights);
  REQUIRE(p.ok());
  return std::move(p).value();
}

}  // namespace

TEST_CASE("A 70/30 split lands within 2 points over 20000 random picks", "[broker]") {
  TrafficPolicy p = Make({{"a", 0.7}, {"b", 0.3}});
  std::mt19937_64 rng(12345);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  constexpr int kPicks = 20'000;
  std::map<std::string, int> counts;
  for (int i = 0; i < kPicks; ++i) ++counts[p.Pick(uniform(rng))];
  REQUIRE(counts.size() == 2);
  const double share_a = static_cast<double>(counts["a"]) / kPicks;
  CHECK(share_a == Approx(0.7).margin(0.02));
  CHECK(static_cast<double>(counts["b"]) / kPicks == Approx(0.3).margin(0.02));
}

TEST_CASE("Pick maps the whole unit interval onto the cumulative weights", "[broker]") {
  TrafficPolicy p = Make({{"a", 0.7}, {"b", 0.3}});
  CHECK(p.Pick(0.0) == "a");
  CHECK(p.Pick(0.6999) == "a");
  CHECK(p.Pick(0.7001) == "b");
  CHECK(p.Pick(0.9999999999) == "b");
  // Out-of-range draws still land on a backend instead of running off the end.
  CHECK(p.Pick(1.0) == "b");
}

TEST_CASE("Weights that don't sum to 1 or are negative or none are refused", "[broker]") {
  const std::map<std::string, double> bad[] = {
      {{"a", 0.6}, {"b", 0.3}},
      {{"a", 0.8}, {"b", 0.3}},
      {{"a", 1.2}, {"b", -0.2}},
      {},
  };
  for (const auto& weights : bad) {
    auto p = TrafficPolicy::Create(weights);
    CHECK_FALSE(p.ok());
    CHECK(p.status().code() == StatusCode::kBadRequest);
  }
}

TEST_CASE("A backend with weight 0 is never picked", "[broker]") {
  TrafficPolicy p = Make({{"a", 0.0}, {"b", 1.0}, {"c", 0.0}});
  CHECK(p.backends() == std::vector<std::string>{"b"});
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (int i = 0; i < 2'000; ++i) REQUIRE(p.Pick(uniform(rng)) == "b");
  CHECK(p.Pick(0.0) == "b");
  for (int i = 0; i < 2'000; ++i) REQUIRE(p.PickByKey("key-" + std::to_string(i)) == "b");

  TrafficPolicy q = Make({{"a", 0.5}, {"b", 0.0}, {"c", 0.5}});
  for (int i = 0; i < 2'000; ++i) REQUIRE(q.Pick(uniform(rng)) != "b");
  CHECK(q.Pick(0.5) == "c");
}

TEST_CASE("PickByKey is stable across calls and across policies", "[broker]") {
  const std::map<std::string, double> weights = {{"a", 0.7}, {"b", 0.3}};
  TrafficPolicy p1 = Make(weights);
  TrafficPolicy p2 = Make(weights);
  for (int i = 0; i < 1'000; ++i) {
    const std::string key = "user-" + std::to_string(i);
    const std::string first = p1.PickByKey(key);
    REQUIRE(p1.PickByKey(key) == first);
    REQUIRE(p2.PickByKey(key) == first);
  }
}

TEST_CASE("PickByKey splits distinct keys 70/30 within 3 points", "[broker]") {
  TrafficPolicy p = Make({{"a", 0.7}, {"b", 0.3}});
  constexpr int kKeys = 20'000;
  std::map<std::string, int> counts;
  for (int i = 0; i < kKeys; ++i) ++counts[p.PickByKey("user-" + std::to_string(i))];
  CHECK(static_cast<double>(counts["a"]) / kKeys == Approx(0.7).margin(0.03));
  CHECK(static_cast<double>(counts["b"]) / kKeys == Approx(0.3).margin(0.03));
}

TEST_CASE("Keys that differ only in their last character still spread over backends",
          "[broker]") {
  auto p = zserve::broker::TrafficPolicy::Create({{"a", 0.5}, {"b", 0.5}});
  REQUIRE(p.ok());
  int a = 0;
  for (int i = 0; i < 100; ++i) a += p->PickByKey("key-" + std::to_string(i)) == "a";
  CHECK(a > 30);
  CHECK(a < 70);
}
