// Heartbeat bookkeeping for the Paranoid Pirate pattern, without sockets:
// when each peer was last heard from and last sent to. Any traffic counts.
// A peer silent for `interval * liveness` is dead; a peer we have sent
// nothing to for `interval` is due a HEARTBEAT.
//
// Not thread-safe: owned by one I/O thread. Time comes in as arguments.
#ifndef ZSERVE_COMMON_LIVENESS_H_
#define ZSERVE_COMMON_LIVENESS_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/zmq_util.h"

namespace zserve {

struct HeartbeatOptions {
  std::chrono::milliseconds interval{1000};
  uint32_t liveness = 3;  // intervals of silence before a peer is dead
};

class Liveness {
 public:
  explicit Liveness(const HeartbeatOptions& options) : options_(options) {}

  void Add(const std::string& peer, TimePoint now) { peers_[peer] = {now, now}; }
  void Remove(const std::string& peer) { peers_.erase(peer); }
  void Heard(const std::string& peer, TimePoint now) {
    if (auto it = peers_.find(peer); it != peers_.end()) it->second.heard = now;
  }
  void Sent(const std::string& peer, TimePoint now) {
    if (auto it = peers_.find(peer); it != peers_.end()) it->second.sent = now;
  }

  // Checked on a tick, every interval / 2, so that the cost per loop turn
  // does not grow with the number of peers.
  struct Tick {
    std::vector<std::string> dead;  // silent for too long; now forgotten
    std::vector<std::string> due;   // due a heartbeat; now counted as sent to
  };
  Tick Check(TimePoint now);
  TimePoint NextCheck() const { return last_check_ + options_.interval / 2; }

  std::chrono::milliseconds timeout() const { return options_.interval * options_.liveness; }
  const HeartbeatOptions& options() const { return options_; }

 private:
  struct Peer {
    TimePoint heard;
    TimePoint sent;
  };
  HeartbeatOptions options_;
  std::unordered_map<std::string, Peer> peers_;
  TimePoint last_check_{};
};

}  // namespace zserve

#endif  // ZSERVE_COMMON_LIVENESS_H_
