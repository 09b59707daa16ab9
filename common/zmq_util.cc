#include "common/zmq_util.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace zserve {

Status SendFrames(zmq::socket_t& socket, std::span<zmq::message_t> frames) {
  for (size_t i = 0; i < frames.size(); ++i) {
    auto flags = zmq::send_flags::dontwait;
    if (i + 1 < frames.size()) flags = flags | zmq::send_flags::sndmore;
    while (true) {
      try {
        if (!socket.send(frames[i], flags)) {
          // EAGAIN. Only the first frame can fail this way: once the first
          // part is queued, ZeroMQ accepts the rest of the message.
          return Unavailable("peer is at its high-water mark");
        }
        break;
      } catch (const zmq::error_t& e) {
        // A signal (SIGTERM, SIGCHLD) during the call: nothing was sent.
        if (e.num() == EINTR) continue;
        if (e.num() == EHOSTUNREACH) return Unavailable("peer is gone");
        return Internal(std::string("zmq send failed: ") + e.what());
      }
    }
  }
  return Status::Ok();
}

bool RecvFrames(zmq::socket_t& socket, Frames* frames) {
  frames->clear();
  while (true) {
    zmq::message_t msg;
    zmq::recv_result_t got;
    try {
      got = socket.recv(msg, zmq::recv_flags::dontwait);
    } catch (const zmq::error_t& e) {
      // A signal during the call (found by fuzzing): nothing was taken.
      if (e.num() == EINTR) continue;
      throw;
    }
    if (!got) return !frames->empty();
    bool more = msg.more();
    frames->push_back(std::move(msg));
    if (!more) return true;
  }
}

int BoundPort(const zmq::socket_t& socket) {
  std::string endpoint = socket.get(zmq::sockopt::last_endpoint);
  auto colon = endpoint.rfind(':');
  if (colon == std::string::npos) return 0;
  // Not every endpoint ends in a port (inproc://name): 0 then.
  int port = 0;
  for (char c : endpoint.substr(colon + 1)) {
    if (c < '0' || c > '9' || port > 65535) return 0;
    port = port * 10 + (c - '0');
  }
  return port;
}

int PickFreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

std::string LoopbackAddress(int port) { return "tcp://127.0.0.1:" + std::to_string(port); }

void ConfigureRouter(zmq::socket_t& socket) {
  socket.set(zmq::sockopt::router_mandatory, 1);
  socket.set(zmq::sockopt::linger, 0);
  // Flow control is zserve's (capacity and queue bounds), not the pipes'.
  socket.set(zmq::sockopt::sndhwm, 100'000);
  socket.set(zmq::sockopt::rcvhwm, 100'000);
}

}  // namespace zserve
