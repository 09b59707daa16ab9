// A poll loop over ZeroMQ sockets that asks the kernel once per turn.
//
// zmq_poll() asks every socket for its state (ZMQ_EVENTS: a poll(2) and a
// getpid(2) inside libzmq each) before and after its own poll(2), and a
// receive that finds nothing costs the same again. With a few sockets that
// is about ten system calls per loop turn, and on the synchronous path
// (one request per turn) it was most of the broker's work.
//
// A PolledSocket remembers when it was last read dry (a receive returned
// EAGAIN). From then on every new message, connection or command makes its
// ZMQ_FD readable, so Poll() waits on that fd alone and Recv() returns at
// once, without asking ZeroMQ, until the fd signals. Anything else done on
// the socket (a send, a connect) may take in ZeroMQ's commands without
// reading, so it forgets that state, and the next Poll() asks ZeroMQ
// (ZMQ_EVENTS) about that socket alone. One poll(2) per turn, plus one
// question per socket used since the last turn.
//
// Owned and used by one thread, like the socket.
#ifndef ZSERVE_COMMON_POLLED_SOCKET_H_
#define ZSERVE_COMMON_POLLED_SOCKET_H_

#include <chrono>
#include <span>
#include <zmq.hpp>

#include "common/zmq_util.h"
#include "zserve/status.h"

namespace zserve {

struct PollItem;

class PolledSocket {
 public:
  PolledSocket() = default;
  PolledSocket(zmq::context_t& context, zmq::socket_type type)
      : PolledSocket(zmq::socket_t(context, type)) {}
  explicit PolledSocket(zmq::socket_t socket);

  // The socket, to set options, bind, connect or monitor. Whatever is done
  // through it may take in ZeroMQ's commands, so the next Poll() asks.
  zmq::socket_t& socket() {
    dry_ = false;
    return socket_;
  }
  const zmq::socket_t& socket() const { return socket_; }
  explicit operator bool() const { return static_cast<bool>(socket_); }
  void close() { *this = PolledSocket(); }

  // SendFrames (common/zmq_util.h).
  Status Send(std::span<zmq::message_t> frames);
  // RecvFrames, but false at once while the socket is known to be dry: what
  // arrived since is seen after the next Poll().
  bool Recv(Frames* frames);

 private:
  friend void Poll(std::span<PollItem> items, std::chrono::milliseconds timeout);

  zmq::socket_t socket_;
  int fd_ = -1;       // ZMQ_FD: readable when something arrives once dry
  bool dry_ = false;  // read to EAGAIN, nothing done on it since
};

// A socket or a plain fd to wait on; `ready` is Poll()'s answer.
struct PollItem {
  PolledSocket* socket = nullptr;
  int fd = -1;
  bool ready = false;
};

// Waits until an item is ready or `timeout` passes (negative: no limit). A
// socket is ready when it may have input (read it with Recv until false); an
// fd when it is readable. Returns at once, after a poll(2) that does not
// block, when a socket used since it was last read dry has input. A signal
// (EINTR) returns early with what is known.
void Poll(std::span<PollItem> items, std::chrono::milliseconds timeout);

}  // namespace zserve

#endif  // ZSERVE_COMMON_POLLED_SOCKET_H_
