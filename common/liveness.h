// Heartbeat bookkeeping for the Paranoid Pirate pattern, without sockets:
// when each peer was last heard from and last sent to. Any traffic counts.
// A peer silent for `interval * liveness` is dead; a peer we have sent
// nothing to for `interval` is due a HEARTBEAT. The interval is the peer's
// own when it told us one (a worker's READY does, schemas/PROTOCOL.md 4.2),
// so that each side judges the other by the pace the other keeps.
//
// Not thread-safe: owned by one I/O thread. Time comes in as arguments.
#ifndef ZSERVE_COMMON_LIVENESS_H_
#define ZSERVE_COMMON_LIVENESS_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/zmq_util.h"

namespace zserve {

// The heartbeat intervals a broker, a worker or a READY may name.
inline constexpr std::chrono::milliseconds kMinHeartbeatInterval{10};
inline constexpr std::chrono::milliseconds kMaxHeartbeatInterval{60'000};

struct HeartbeatOptions {
  std::chrono::milliseconds interval{1000};
  uint32_t liveness = 3;  // intervals of silence before a peer is dead
};

class Liveness {
 public:
  explicit Liveness(const HeartbeatOptions& options) : options_(options) {}

  // `interval`: the peer's own, if it named one; else options().interval.
  void Add(const std::string& peer, TimePoint now,
           std::optional<std::chrono::milliseconds> interval = std::nullopt);
  void Remove(const std::string& peer);
  void Heard(const std::string& peer, TimePoint now) {
    if (auto it = peers_.find(peer); it != peers_.end()) it->second.heard = now;
  }
  void Sent(const std::string& peer, TimePoint now) {
    if (auto it = peers_.find(peer); it != peers_.end()) it->second.sent = now;
  }

  // Checked on a tick, every half of the shortest interval (ours or a
  // peer's), so that the cost per loop turn does not grow with the number of
  // peers.
  struct Tick {
    std::vector<std::string> dead;  // silent for too long; now forgotten
    std::vector<std::string> due;   // due a heartbeat; now counted as sent to
  };
  Tick Check(TimePoint now);
  TimePoint NextCheck() const { return last_check_ + Shortest() / 2; }

  const HeartbeatOptions& options() const { return options_; }

 private:
  struct Peer {
    TimePoint heard;
    TimePoint sent;
    std::chrono::milliseconds interval;
  };
  std::chrono::milliseconds Shortest() const {
    return intervals_.empty() ? options_.interval
                              : std::min(options_.interval, intervals_.begin()->first);
  }
  using Peers = std::unordered_map<std::string, Peer>;
  Peers::iterator Forget(Peers::iterator it);

  HeartbeatOptions options_;
  Peers peers_;
  std::map<std::chrono::milliseconds, uint32_t> intervals_;  // peers by interval
  TimePoint last_check_{};
};

}  // namespace zserve

#endif  // ZSERVE_COMMON_LIVENESS_H_
