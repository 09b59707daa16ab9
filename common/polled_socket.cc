#include "common/polled_socket.h"

#include <poll.h>

#include <cerrno>
#include <utility>
#include <vector>

namespace zserve {

PolledSocket::PolledSocket(zmq::socket_t socket) : socket_(std::move(socket)) {
  if (socket_) fd_ = socket_.get(zmq::sockopt::fd);
}

Status PolledSocket::Send(std::span<zmq::message_t> frames) {
  dry_ = false;
  return SendFrames(socket_, frames);
}

bool PolledSocket::Recv(Frames* frames) {
  if (dry_ || !socket_) {
    frames->clear();
    return false;
  }
  if (RecvFrames(socket_, frames)) return true;
  dry_ = true;
  return false;
}

void Poll(std::span<PollItem> items, std::chrono::milliseconds timeout) {
  // One loop's few items: no allocation after the first turn.
  thread_local std::vector<pollfd> fds;
  fds.resize(items.size());
  bool ready = false;
  for (size_t i = 0; i < items.size(); ++i) {
    PollItem& item = items[i];
    item.ready = false;
    fds[i] = {item.fd, POLLIN, 0};
    PolledSocket* s = item.socket;
    if (s == nullptr) continue;
    fds[i].fd = s->socket_ ? s->fd_ : -1;
    if (s->dry_ || !s->socket_) continue;
    // Used since it was last read dry: ask ZeroMQ. This takes in its pending
    // commands; no input then means every pipe is empty and the next
    // arrival signals the fd.
    try {
      if (s->socket_.get(zmq::sockopt::events) & ZMQ_POLLIN) {
        item.ready = ready = true;
      } else {
        s->dry_ = true;
      }
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
      item.ready = ready = true;  // unknown: let the caller read
    }
  }
  int wait = ready ? 0 : timeout.count() < 0 ? -1 : static_cast<int>(timeout.count());
  int n = ::poll(fds.data(), fds.size(), wait);
  if (n <= 0) return;  // timeout, or EINTR: nothing more is known
  for (size_t i = 0; i < items.size(); ++i) {
    if ((fds[i].revents & (POLLIN | POLLERR | POLLHUP)) == 0) continue;
    items[i].ready = true;
    if (items[i].socket != nullptr) items[i].socket->dry_ = false;
  }
}

}  // namespace zserve
