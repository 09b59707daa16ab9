#include "common/zmq_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <future>
#include <mutex>
#include <random>
#include <system_error>
#include <unordered_set>
#include <utility>
#include <vector>

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

bool ReadMonitorEvent(const Frames& frames, uint16_t* event, uint32_t* value) {
  if (frames.empty() || frames[0].size() < sizeof *event + sizeof *value) return false;
  std::memcpy(event, frames[0].data(), sizeof *event);
  std::memcpy(value, static_cast<const char*>(frames[0].data()) + sizeof *event, sizeof *value);
  return true;
}

bool HandshakeFailed(uint16_t event, int* in_a_row) {
  ++*in_a_row;
  return event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || *in_a_row >= 2;
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

namespace {

// The kernel's ephemeral port range: where bind(port 0) and outgoing
// connections take their ports from.
std::pair<int, int> EphemeralRange() {
  int low = 32768, high = 60999;
  if (FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    int l = 0, h = 0;
    if (std::fscanf(f, "%d %d", &l, &h) == 2 && 0 < l && l <= h && h <= 65535) {
      low = l;
      high = h;
    }
    std::fclose(f);
  }
  return {low, high};
}

}  // namespace

namespace {

// Ports handed out or reserved in this process.
std::mutex given_mu;
std::unordered_set<int> given;

}  // namespace

void ReserveLoopbackPort(int port) {
  std::lock_guard<std::mutex> lock(given_mu);
  given.insert(port);
}

int PickFreeLoopbackPort() {
  // A port from the ephemeral range, once released, is soon handed to the
  // next bind(0) or outgoing connection of any process (the broker's
  // metrics server took `up`'s gateway port that way). So pick at random
  // outside it, never the same port twice in one process (nor a reserved
  // one), and check that it binds now.
  static std::mt19937 rng(std::random_device{}() ^ static_cast<unsigned>(getpid()));
  auto [low, high] = EphemeralRange();
  std::vector<std::pair<int, int>> ranges;
  if (low - 1 >= 10000) ranges.emplace_back(10000, low - 1);
  if (high + 1 <= 65535) ranges.emplace_back(high + 1, 65535);
  std::lock_guard<std::mutex> lock(given_mu);
  int total = 0;
  for (auto [a, b] : ranges) total += b - a + 1;
  for (int tries = 0; total > 0 && tries < 200; ++tries) {
    int k = std::uniform_int_distribution<int>(0, total - 1)(rng);
    int port = 0;
    for (auto [a, b] : ranges) {
      if (k <= b - a) {
        port = a + k;
        break;
      }
      k -= b - a + 1;
    }
    if (given.count(port) || !CanBindLoopback(port, /*reuse_addr=*/false)) continue;
    given.insert(port);
    return port;
  }
  return 0;
}

bool CanBindLoopback(int port, bool reuse_addr) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int one = 1;
  if (reuse_addr) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

namespace {

// Opens a TCP connection to addr and closes it: waits at most 10 ms for it
// to be established (a listener whose backlog is full does not answer).
void Knock(const sockaddr_in& addr) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 &&
      errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    poll(&p, 1, 10);
  }
  close(fd);
}

}  // namespace

std::string ListenProblem(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int err = getaddrinfo(host.c_str(), nullptr, &hints, &found); err != 0) {
    return "cannot resolve '" + host + "': " + gai_strerror(err);
  }
  sockaddr_in addr = *reinterpret_cast<const sockaddr_in*>(found->ai_addr);
  freeaddrinfo(found);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  std::string why;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) why = std::strerror(errno);
  close(fd);
  return why;
}

void StopWakingListener(const std::string& host, int port, const std::function<void()>& stop) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1 ||
      addr.sin_addr.s_addr == htonl(INADDR_ANY)) {
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  }
  std::future<void> stopped;
  try {
    stopped = std::async(std::launch::async, stop);
  } catch (const std::system_error&) {  // no thread to be had: stop slowly
    stop();
    return;
  }
  while (port > 0 && stopped.wait_for(std::chrono::milliseconds(10)) != std::future_status::ready) {
    Knock(addr);
  }
  stopped.get();
}

std::string LoopbackAddress(int port) { return "tcp://127.0.0.1:" + std::to_string(port); }

Status SplitHostPort(const std::string& address, std::string_view what, std::string* host,
                     int* port) {
  const size_t colon = address.rfind(':');
  const std::string_view h =
      std::string_view(address).substr(0, colon == std::string::npos ? 0 : colon);
  const std::string_view p =
      colon == std::string::npos ? std::string_view() : std::string_view(address).substr(colon + 1);
  auto host_char = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-';
  };
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (h.empty() || p.empty() || p.size() > 5 || !std::all_of(h.begin(), h.end(), host_char) ||
      !std::all_of(p.begin(), p.end(), digit) || std::stoi(std::string(p)) > 65535) {
    return BadRequest(std::string(what) + " '" + address +
                      "' is not HOST:PORT (an IPv4 address or host name, and a port 0..65535)");
  }
  *host = std::string(h);
  *port = std::stoi(std::string(p));
  return Status::Ok();
}

namespace {

// Runs `attach` (a connect or bind of `address`), its throw made a Status.
template <typename F>
Status Attach(F attach, const std::string& address, std::string_view what) {
  // ZeroMQ takes a TCP port past 65535 and keeps trying it: refused here.
  if (address.starts_with("tcp://")) {
    size_t colon = address.rfind(':');
    std::string_view port = std::string_view(address).substr(colon + 1);
    if (colon > 5 && !port.empty() && port.size() <= 10 &&
        std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
        std::stoull(std::string(port)) > 65535) {
      return BadRequest(std::string(what) + " at '" + address + "': port " + std::string(port) +
                        " is past 65535");
    }
  }
  try {
    attach();
  } catch (const zmq::error_t& e) {
    std::string message = std::string(what) + " at '" + address + "': " + e.what();
    if (e.num() == EINVAL || e.num() == EPROTONOSUPPORT || e.num() == ENOCOMPATPROTO) {
      return BadRequest(message + " (an address is tcp://HOST:PORT or ipc://PATH)");
    }
    return Unavailable(message);
  }
  return Status::Ok();
}

}  // namespace

Status Connect(zmq::socket_t& socket, const std::string& address, std::string_view what) {
  return Attach([&] { socket.connect(address); }, address, what);
}

Status Bind(zmq::socket_t& socket, const std::string& address, std::string_view what) {
  return Attach([&] { socket.bind(address); }, address, what);
}

void ConfigureRouter(zmq::socket_t& socket) {
  socket.set(zmq::sockopt::router_mandatory, 1);
  socket.set(zmq::sockopt::linger, 0);
  // Flow control is zserve's (capacity and queue bounds), not the pipes'.
  socket.set(zmq::sockopt::sndhwm, 100'000);
  socket.set(zmq::sockopt::rcvhwm, 100'000);
}

}  // namespace zserve
