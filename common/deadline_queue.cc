#include "common/deadline_queue.h"

namespace zserve {

DeadlineQueue::Handle DeadlineQueue::Add(TimePoint deadline, uint64_t id) {
  Handle h;
  if (free_.empty()) {
    h = static_cast<Handle>(nodes_.size());
    nodes_.emplace_back();
  } else {
    h = free_.back();
    free_.pop_back();
  }
  Node& n = nodes_[h];
  n.deadline = deadline;
  n.id = id;
  n.prev = n.next = kNone;
  ++size_;
  for (uint8_t l = 0; l < kLanes; ++l) {
    Lane& lane = lanes_[l];
    if (lane.tail != kNone && nodes_[lane.tail].deadline > deadline) continue;
    n.lane = l;
    n.prev = lane.tail;
    if (lane.tail == kNone) {
      lane.head = h;
    } else {
      nodes_[lane.tail].next = h;
    }
    lane.tail = h;
    return h;
  }
  n.lane = kInSet;
  set_.emplace(deadline, h);
  return h;
}

void DeadlineQueue::Remove(Handle h) {
  Node& n = nodes_[h];
  if (n.lane == kInSet) {
    set_.erase({n.deadline, h});
  } else {
    Lane& lane = lanes_[n.lane];
    (n.prev == kNone ? lane.head : nodes_[n.prev].next) = n.next;
    (n.next == kNone ? lane.tail : nodes_[n.next].prev) = n.prev;
  }
  free_.push_back(h);
  --size_;
}

std::optional<uint8_t> DeadlineQueue::EarliestPlace() const {
  std::optional<uint8_t> place;
  const TimePoint* best = nullptr;
  for (uint8_t l = 0; l < kLanes; ++l) {
    if (lanes_[l].head == kNone) continue;
    const TimePoint& d = nodes_[lanes_[l].head].deadline;
    if (best == nullptr || d < *best) {
      best = &d;
      place = l;
    }
  }
  if (!set_.empty() && (best == nullptr || set_.begin()->first < *best)) place = kInSet;
  return place;
}

std::optional<DeadlineQueue::TimePoint> DeadlineQueue::Earliest() const {
  std::optional<uint8_t> place = EarliestPlace();
  if (!place) return std::nullopt;
  return *place == kInSet ? set_.begin()->first : nodes_[lanes_[*place].head].deadline;
}

bool DeadlineQueue::PopDue(TimePoint now, uint64_t* id) {
  std::optional<uint8_t> place = EarliestPlace();
  if (!place) return false;
  const Handle h = *place == kInSet ? set_.begin()->second : lanes_[*place].head;
  if (nodes_[h].deadline > now) return false;
  *id = nodes_[h].id;
  Remove(h);
  return true;
}

}  // namespace zserve
