// The poll loop of the raw ZeroMQ peers (zmq_echo_server, zmq_forwarder):
// wait on their sockets and on SIGINT/SIGTERM, and after each wake-up let
// the peer drain its sockets, until a stop signal comes. The peer's main()
// calls SignalPipe::Install() first, before its ZeroMQ context starts threads.
#ifndef ZSERVE_BENCH_PEER_LOOP_H_
#define ZSERVE_BENCH_PEER_LOOP_H_

#include <cerrno>
#include <chrono>
#include <csignal>
#include <vector>
#include <zmq.hpp>

#include "common/signals.h"

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

}  // namespace zserve::bench

#endif  // ZSERVE_BENCH_PEER_LOOP_H_
