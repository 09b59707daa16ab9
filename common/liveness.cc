#include "common/liveness.h"

namespace zserve {

Liveness::Tick Liveness::Check(TimePoint now) {
  Tick tick;
  if (now < NextCheck()) return tick;
  last_check_ = now;
  for (auto it = peers_.begin(); it != peers_.end();) {
    if (now - it->second.heard >= timeout()) {
      tick.dead.push_back(it->first);
      it = peers_.erase(it);
      continue;
    }
    if (now - it->second.sent >= options_.interval) {
      tick.due.push_back(it->first);
      it->second.sent = now;
    }
    ++it;
  }
  return tick;
}

}  // namespace zserve
