// Heartbeat bookkeeping (common/liveness.h), with a hand-driven clock.
#include "common/liveness.h"

#include <catch2/catch.hpp>

namespace zserve {
namespace {

using std::chrono::milliseconds;

TEST_CASE("A silent peer is dead after interval times liveness", "[common]") {
  Liveness l({milliseconds(100), 3});
  TimePoint t0 = Clock::now();
  l.Add("w", t0);
  CHECK(l.Check(t0 + milliseconds(250)).dead.empty());
  Liveness::Tick tick = l.Check(t0 + milliseconds(300));
  CHECK(tick.dead == std::vector<std::string>{"w"});
  // Forgotten once dead: never reported twice.
  CHECK(l.Check(t0 + milliseconds(1000)).dead.empty());
}

TEST_CASE("Any traffic from a peer keeps it alive", "[common]") {
  Liveness l({milliseconds(100), 3});
  TimePoint t0 = Clock::now();
  l.Add("w", t0);
  for (int i = 1; i <= 10; ++i) {
    l.Heard("w", t0 + milliseconds(200 * i));
    CHECK(l.Check(t0 + milliseconds(200 * i + 50)).dead.empty());
  }
}

TEST_CASE("A peer we were quiet to is due a heartbeat once per interval", "[common]") {
  Liveness l({milliseconds(100), 3});
  TimePoint t0 = Clock::now();
  l.Add("w", t0);
  l.Heard("w", t0 + milliseconds(90));
  CHECK(l.Check(t0 + milliseconds(60)).due.empty());
  CHECK(l.Check(t0 + milliseconds(110)).due == std::vector<std::string>{"w"});
  // Counted as sent: not due again before another interval.
  l.Heard("w", t0 + milliseconds(150));
  CHECK(l.Check(t0 + milliseconds(170)).due.empty());
  l.Sent("w", t0 + milliseconds(200));  // a batch counts as traffic too
  CHECK(l.Check(t0 + milliseconds(260)).due.empty());
  CHECK(l.Check(t0 + milliseconds(310)).due == std::vector<std::string>{"w"});
}

TEST_CASE("Checks run at most every half interval", "[common]") {
  Liveness l({milliseconds(100), 1});
  TimePoint t0 = Clock::now();
  l.Add("w", t0);
  CHECK(l.Check(t0 + milliseconds(100)).dead.size() == 1);
  CHECK(l.NextCheck() == t0 + milliseconds(150));
  l.Add("v", t0);  // silent since t0
  CHECK(l.Check(t0 + milliseconds(120)).dead.empty());  // too soon after the last check
  CHECK(l.Check(t0 + milliseconds(150)).dead == std::vector<std::string>{"v"});
}

}  // namespace
}  // namespace zserve
