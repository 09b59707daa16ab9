// The deadlines of many pending calls, earliest first: the broker's router
// keeps one per token, the client library one per call.
//
// An ordered set costs a tree node, a rebalance and a few cache misses per
// call (about 3.5 % of the broker's CPU and 4.5 % of the client's at 1000
// calls in flight, bench/broker_profile.md). But calls made with the same
// timeout come due in the order they were made, since the clock only moves
// forward. So the queue keeps a few lanes, each a FIFO list in deadline
// order: a deadline joins the end of the first lane whose last deadline is
// not later than it, which for one timeout is always the same lane, for a
// few timeouts one lane each. Only when no lane takes it (more distinct
// timeouts at once than lanes, or a deadline out of order) does it go to an
// ordered set. Add and Remove cost O(1) in a lane, and the earliest is the
// least of the lanes' heads and the set's first.
//
// Not thread-safe; owned by one thread like its owner.
#ifndef ZSERVE_COMMON_DEADLINE_QUEUE_H_
#define ZSERVE_COMMON_DEADLINE_QUEUE_H_

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <utility>
#include <vector>

namespace zserve {

class DeadlineQueue {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  // Names one item for Remove, until it is removed or popped.
  using Handle = uint32_t;

  Handle Add(TimePoint deadline, uint64_t id);
  void Remove(Handle handle);
  // The earliest deadline; nullopt when empty.
  std::optional<TimePoint> Earliest() const;
  // Removes the item with the earliest deadline if that is at or before
  // `now`, and gives its id.
  bool PopDue(TimePoint now, uint64_t* id);
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  static constexpr size_t kLanes = 8;
  static constexpr uint32_t kNone = UINT32_MAX;
  static constexpr uint8_t kInSet = kLanes;  // Node::lane of an item in set_
  struct Node {
    TimePoint deadline;
    uint64_t id = 0;
    uint32_t prev = kNone;
    uint32_t next = kNone;
    uint8_t lane = 0;
  };
  struct Lane {
    uint32_t head = kNone;
    uint32_t tail = kNone;
  };
  // Where the earliest item is: a lane, or kInSet; nullopt when empty.
  std::optional<uint8_t> EarliestPlace() const;

  std::vector<Node> nodes_;   // by handle; freed ones are reused
  std::vector<Handle> free_;  // handles to reuse
  std::array<Lane, kLanes> lanes_{};
  std::set<std::pair<TimePoint, Handle>> set_;  // what no lane took
  size_t size_ = 0;
};

}  // namespace zserve

#endif  // ZSERVE_COMMON_DEADLINE_QUEUE_H_
