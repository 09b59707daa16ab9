// PolledSocket and Poll (common/polled_socket.h): the poll loop of the broker,
// the worker and the client. What matters to their users: every message is
// seen without waiting for a timeout, whatever was done on the socket last.
#include "common/polled_socket.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <zmq.hpp>

namespace zserve {
namespace {

using std::chrono::milliseconds;

zmq::message_t Text(const std::string& s) { return zmq::message_t(s.data(), s.size()); }

// A ROUTER on another thread that answers every message with its body, until
// it is destroyed.
class EchoPeer {
 public:
  explicit EchoPeer(zmq::context_t& context) : router_(context, zmq::socket_type::router) {
    router_.bind("tcp://127.0.0.1:*");
    address_ = router_.get(zmq::sockopt::last_endpoint);
    thread_ = std::thread([this] { Loop(); });
  }
  ~EchoPeer() {
    stop_ = true;
    thread_.join();
  }
  const std::string& address() const { return address_; }

 private:
  void Loop() {
    Frames frames;
    while (!stop_) {
      zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, milliseconds(20));
      while (RecvFrames(router_, &frames)) (void)SendFrames(router_, frames);
    }
  }
  zmq::socket_t router_;
  std::string address_;
  std::atomic<bool> stop_ = false;
  std::thread thread_;
};

PolledSocket Dealer(zmq::context_t& context, const std::string& address) {
  PolledSocket s(context, zmq::socket_type::dealer);
  s.socket().set(zmq::sockopt::linger, 0);
  s.socket().connect(address);
  return s;
}

// A PAIR over inproc: `peer` sends, `s` is the socket under test.
struct Pair {
  Pair(zmq::context_t& context, const std::string& name)
      : peer(context, zmq::socket_type::pair), s(context, zmq::socket_type::pair) {
    peer.bind("inproc://" + name);
    s.socket().connect("inproc://" + name);
  }
  zmq::socket_t peer;
  PolledSocket s;
};

TEST_CASE("A message to a socket read dry wakes Poll and is read once", "[common]") {
  zmq::context_t context;
  auto [peer, s] = Pair(context, "polled-dry");
  Frames frames;
  CHECK_FALSE(s.Recv(&frames));  // read dry
  PollItem item{.socket = &s};
  Poll(std::span(&item, 1), milliseconds(0));
  CHECK_FALSE(s.Recv(&frames));

  zmq::message_t m = Text("hello");
  REQUIRE(SendFrames(peer, std::span(&m, 1)).ok());
  auto start = std::chrono::steady_clock::now();
  Poll(std::span(&item, 1), milliseconds(10'000));
  CHECK(item.ready);
  CHECK(std::chrono::steady_clock::now() - start < milliseconds(5'000));
  REQUIRE(s.Recv(&frames));
  CHECK(View(frames[0]) == "hello");
  CHECK_FALSE(s.Recv(&frames));
}

TEST_CASE("Poll waits for the timeout when nothing arrives", "[common]") {
  zmq::context_t context;
  auto [peer, s] = Pair(context, "polled-quiet");
  PollItem item{.socket = &s};
  auto start = std::chrono::steady_clock::now();
  // A spurious wake-up is allowed (ready means "may have input"); then the
  // read finds nothing and Poll waits again.
  Frames frames;
  while (std::chrono::steady_clock::now() - start < milliseconds(100)) {
    Poll(std::span(&item, 1), milliseconds(100));
    CHECK_FALSE(s.Recv(&frames));
  }
  CHECK(std::chrono::steady_clock::now() - start >= milliseconds(100));
}

TEST_CASE("Replies to a socket last used for sending are seen without a timeout", "[common]") {
  // Sending can take in ZeroMQ's commands without reading, which leaves input
  // waiting with a quiet fd. Every reply must still arrive well before the
  // 10 s timeout of each Poll: 20 000 round trips in bursts of 1 to 50.
  zmq::context_t context;
  EchoPeer peer(context);
  PolledSocket s = Dealer(context, peer.address());
  int sent = 0, received = 0, timeouts = 0;
  Frames frames;
  for (int burst = 0; sent < 20'000; burst = (burst + 7) % 50) {
    for (int i = 0; i <= burst; ++i) {
      zmq::message_t m = Text(std::to_string(sent++));
      REQUIRE(s.Send(std::span(&m, 1)).ok());
    }
    while (received < sent) {
      PollItem item{.socket = &s};
      Poll(std::span(&item, 1), milliseconds(10'000));
      if (!item.ready) ++timeouts;
      while (s.Recv(&frames)) {
        CHECK(View(frames[0]) == std::to_string(received));
        ++received;
      }
      if (timeouts > 0) break;
    }
    if (timeouts > 0) break;
  }
  CHECK(timeouts == 0);
  CHECK(received == sent);
}

TEST_CASE("A reply that arrived before a send is seen after it", "[common]") {
  // The send takes in ZeroMQ's commands (at most once a millisecond), among
  // them the one saying the reply is there, and the fd goes quiet.
  zmq::context_t context;
  EchoPeer peer(context);
  PolledSocket s = Dealer(context, peer.address());
  const int fd = s.socket().get(zmq::sockopt::fd);
  Frames frames;
  for (int round = 0; round < 20; ++round) {
    CHECK_FALSE(s.Recv(&frames));  // read dry
    zmq::message_t m = Text("first");
    REQUIRE(s.Send(std::span(&m, 1)).ok());
    // Wait for the reply's signal on the fd, without taking it.
    pollfd p{fd, POLLIN, 0};
    REQUIRE(::poll(&p, 1, 10'000) == 1);
    // Past ZeroMQ's command throttle, so that the next send takes the commands in.
    auto until = std::chrono::steady_clock::now() + milliseconds(2);
    while (std::chrono::steady_clock::now() < until) {
    }
    zmq::message_t second = Text("second");
    REQUIRE(s.Send(std::span(&second, 1)).ok());
    int got = 0;
    for (int polls = 0; got < 2 && polls < 2; ++polls) {
      PollItem item{.socket = &s};
      Poll(std::span(&item, 1), milliseconds(2'000));
      REQUIRE(item.ready);
      while (s.Recv(&frames)) ++got;
    }
    CHECK(got == 2);
  }
}

TEST_CASE("Poll reports a readable fd next to sockets", "[common]") {
  zmq::context_t context;
  auto [peer, s] = Pair(context, "polled-fd");
  Frames frames;
  CHECK_FALSE(s.Recv(&frames));
  int fd = eventfd(0, EFD_NONBLOCK);
  REQUIRE(fd >= 0);
  PollItem items[2] = {{.socket = &s}, {.fd = fd}};
  Poll(items, milliseconds(0));
  CHECK_FALSE(items[1].ready);
  uint64_t one = 1;
  REQUIRE(write(fd, &one, sizeof one) == sizeof one);
  Poll(items, milliseconds(10'000));
  CHECK(items[1].ready);
  CHECK_FALSE(s.Recv(&frames));
  close(fd);
}

}  // namespace
}  // namespace zserve
