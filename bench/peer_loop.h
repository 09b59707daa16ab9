// The poll loop of the raw ZeroMQ peers (zmq_echo_server, zmq_forwarder):
// wait on their sockets and on SIGINT/SIGTERM, and after each wake-up let
// the peer drain its sockets, until a stop signal comes. The peer's main()
// calls SignalPipe::Install() first, before its ZeroMQ context starts threads.
#ifndef ZSERVE_BENCH_PEER_LOOP_H_
#define ZSERVE_BENCH_PEER_LOOP_H_

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <vector>
#include <zmq.hpp>

#include "common/signals.h"
#include "common/zmq_util.h"

namespace zserve::bench {

template <typename Drain>
void ServeUntilStopped(const std::vector<zmq::socket_t*>& sockets, Drain drain) {
  SignalPipe& signals = SignalPipe::Install();
  std::vector<zmq::pollitem_t> items;
  for (zmq::socket_t* s : sockets) items.push_back({s->handle(), 0, ZMQ_POLLIN, 0});
  items.push_back({nullptr, signals.fd(), ZMQ_POLLIN, 0});
  while (true) {
    try {
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(-1));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    if (items.back().revents & ZMQ_POLLIN) {
      bool stop = false;
      for (int s : signals.Take()) stop = stop || s == SIGINT || s == SIGTERM;
      if (stop) return;
    }
    drain();
  }
}

// Sends every message waiting on `from` to `to` as it came (frames and all,
// no copy); returns how many could not be sent at once and were dropped.
inline uint64_t PassOn(zmq::socket_t& from, zmq::socket_t& to, Frames& frames) {
  uint64_t dropped = 0;
  while (RecvFrames(from, &frames)) {
    if (!SendFrames(to, frames).ok()) ++dropped;
  }
  return dropped;
}

// At exit: says on stderr how many messages a peer dropped, if any.
inline void ReportDropped(const char* peer, uint64_t dropped) {
  if (dropped > 0) {
    std::fprintf(stderr, "%s: %llu messages not sent\n", peer,
                 static_cast<unsigned long long>(dropped));
  }
}

}  // namespace zserve::bench

#endif  // ZSERVE_BENCH_PEER_LOOP_H_
