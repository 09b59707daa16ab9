#include "common/liveness.h"

namespace zserve {

void Liveness::Add(const std::string& peer, TimePoint now,
                   std::optional<std::chrono::milliseconds> interval) {
  Remove(peer);
  std::chrono::milliseconds pace = interval.value_or(options_.interval);
  peers_.emplace(peer, Peer{now, now, pace});
  ++intervals_[pace];
}

void Liveness::Remove(const std::string& peer) {
  if (auto it = peers_.find(peer); it != peers_.end()) Forget(it);
}

Liveness::Peers::iterator Liveness::Forget(Peers::iterator it) {
  auto counted = intervals_.find(it->second.interval);
  if (--counted->second == 0) intervals_.erase(counted);
  return peers_.erase(it);
}

Liveness::Tick Liveness::Check(TimePoint now) {
  Tick tick;
  if (now < NextCheck()) return tick;
  last_check_ = now;
  for (auto it = peers_.begin(); it != peers_.end();) {
    if (now - it->second.heard >= it->second.interval * options_.liveness) {
      tick.dead.push_back(it->first);
      it = Forget(it);
      continue;
    }
    if (now - it->second.sent >= it->second.interval) {
      tick.due.push_back(it->first);
      it->second.sent = now;
    }
    ++it;
  }
  return tick;
}

}  // namespace zserve
