// DeadlineQueue (common/deadline_queue.h): items come due earliest first,
// whatever mix of timeouts they were added with, against an ordered set as
// the model.
#include "common/deadline_queue.h"

#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <set>
#include <utility>
#include <vector>

namespace zserve {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using TimePoint = DeadlineQueue::TimePoint;

TEST_CASE("Deadlines come due earliest first, and removed ones never", "[common]") {
  DeadlineQueue q;
  const TimePoint t0 = TimePoint() + milliseconds(1000);
  // Two timeouts interleaved, as a client with a short and a long one.
  auto a = q.Add(t0 + milliseconds(30'000), 1);
  q.Add(t0 + milliseconds(100), 2);
  q.Add(t0 + milliseconds(30'001), 3);
  auto d = q.Add(t0 + milliseconds(101), 4);
  q.Add(t0 + milliseconds(50), 5);  // out of order: earlier than every tail
  CHECK(q.size() == 5);
  q.Remove(d);
  q.Remove(a);
  CHECK(q.size() == 3);
  REQUIRE(q.Earliest().has_value());
  CHECK(*q.Earliest() == t0 + milliseconds(50));
  uint64_t id = 0;
  CHECK_FALSE(q.PopDue(t0 + milliseconds(49), &id));
  std::vector<uint64_t> due;
  while (q.PopDue(t0 + milliseconds(40'000), &id)) due.push_back(id);
  CHECK(due == std::vector<uint64_t>{5, 2, 3});
  CHECK(q.empty());
  CHECK_FALSE(q.Earliest().has_value());
}

// Random adds, removes and pops: `timeouts` distinct timeouts (more than
// the lanes go partly to the ordered set), the clock moving forward.
void CheckAgainstModel(int timeouts, uint64_t seed) {
  std::mt19937_64 rng(seed);
  DeadlineQueue q;
  std::set<std::pair<TimePoint, uint64_t>> model;
  std::map<uint64_t, std::pair<DeadlineQueue::Handle, TimePoint>> live;
  TimePoint now = TimePoint() + milliseconds(1);
  uint64_t next_id = 1;
  for (int step = 0; step < 200'000; ++step) {
    now += nanoseconds(1 + rng() % 1000);
    const uint64_t op = rng() % 10;
    if (op < 5 || live.empty()) {
      TimePoint deadline =
          now + milliseconds(1 + static_cast<int>(rng() % timeouts) * 7) + nanoseconds(step % 7);
      if (rng() % 50 == 0) deadline = now;  // one already due
      const uint64_t id = next_id++;
      live[id] = {q.Add(deadline, id), deadline};
      model.emplace(deadline, id);
    } else if (op < 8) {
      auto it = live.lower_bound(rng() % next_id);
      if (it == live.end()) it = live.begin();
      q.Remove(it->second.first);
      model.erase({it->second.second, it->first});
      live.erase(it);
    } else {
      uint64_t id;
      while (q.PopDue(now, &id)) {
        // The earliest (of equal deadlines, any).
        auto l = live.find(id);
        REQUIRE(l != live.end());
        REQUIRE_FALSE(model.empty());
        REQUIRE(l->second.second == model.begin()->first);
        REQUIRE(l->second.second <= now);
        model.erase({l->second.second, id});
        live.erase(l);
      }
      REQUIRE((model.empty() || model.begin()->first > now));
    }
    REQUIRE(q.size() == model.size());
    if (model.empty()) {
      REQUIRE_FALSE(q.Earliest().has_value());
    } else {
      REQUIRE(q.Earliest() == model.begin()->first);
    }
  }
}

TEST_CASE("DeadlineQueue agrees with an ordered set: one timeout", "[common]") {
  CheckAgainstModel(1, 1);
}

TEST_CASE("DeadlineQueue agrees with an ordered set: a few timeouts", "[common]") {
  CheckAgainstModel(3, 2);
}

TEST_CASE("DeadlineQueue agrees with an ordered set: more timeouts than lanes", "[common]") {
  CheckAgainstModel(40, 3);
}

}  // namespace
}  // namespace zserve
