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
  l.Add("v", t0);                                       // silent since t0
  CHECK(l.Check(t0 + milliseconds(120)).dead.empty());  // too soon after the last check
  CHECK(l.Check(t0 + milliseconds(150)).dead == std::vector<std::string>{"v"});
}

TEST_CASE("A peer that named its interval is judged and heartbeated at that pace", "[common]") {
  Liveness l({milliseconds(100), 3});
  TimePoint t0 = Clock::now();
  l.Add("slow", t0, milliseconds(1000));
  l.Add("ours", t0);
  // Ours is dead after 300 ms of silence; the slow one only after 3 s.
  Liveness::Tick tick = l.Check(t0 + milliseconds(300));
  CHECK(tick.dead == std::vector<std::string>{"ours"});
  CHECK(tick.due.empty());  // the slow one was sent to less than 1 s ago
  CHECK(l.Check(t0 + milliseconds(2900)).dead.empty());
  CHECK(l.Check(t0 + milliseconds(3000)).dead == std::vector<std::string>{"slow"});

  // A faster peer makes the checks come sooner: every half of its interval.
  TimePoint t1 = t0 + milliseconds(5000);
  l.Add("fast", t1, milliseconds(20));
  CHECK(l.NextCheck() == t0 + milliseconds(3000) + milliseconds(10));
  tick = l.Check(t1 + milliseconds(20));
  CHECK(tick.due == std::vector<std::string>{"fast"});
  CHECK(l.Check(t1 + milliseconds(60)).dead == std::vector<std::string>{"fast"});
  // Gone: back to half of ours.
  CHECK(l.NextCheck() == t1 + milliseconds(60) + milliseconds(50));
}

TEST_CASE("A peer added again keeps one entry at its new pace", "[common]") {
  Liveness l({milliseconds(100), 3});
  TimePoint t0 = Clock::now();
  l.Add("w", t0, milliseconds(20));
  l.Add("w", t0, milliseconds(1000));
  l.Check(t0);
  CHECK(l.NextCheck() == t0 + milliseconds(50));  // the 20 ms pace is forgotten
  CHECK(l.Check(t0 + milliseconds(2000)).dead.empty());
  l.Remove("w");
  CHECK(l.Check(t0 + milliseconds(4000)).dead.empty());
}

}  // namespace
}  // namespace zserve
