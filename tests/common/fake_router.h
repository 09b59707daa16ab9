// Test support: a ROUTER socket on a free loopback port that plays the
// broker for the client and worker library tests. Used by one thread at a
// time (handed over by std::thread start and join). No sleeps: Recv waits on
// the socket with a bounded poll.
#ifndef ZSERVE_TESTS_COMMON_FAKE_ROUTER_H_
#define ZSERVE_TESTS_COMMON_FAKE_ROUTER_H_

#include <chrono>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "common/zmq_util.h"

namespace zserve::testing {

class FakeRouter {
 public:
  static constexpr std::chrono::milliseconds kWait{5000};  // the most any message may take

  FakeRouter() : router_(context_, zmq::socket_type::router) {
    Monitor();
    router_.bind("tcp://127.0.0.1:*");
    address_ = LoopbackAddress(BoundPort(router_));
  }
  // On a given address: a broker started again where one was.
  explicit FakeRouter(const std::string& address) : router_(context_, zmq::socket_type::router) {
    Monitor();
    router_.bind(address);
    address_ = address;
  }

  // Waits until a peer has completed a handshake with this socket (one not
  // waited for before), within `timeout`.
  bool WaitForPeer(std::chrono::milliseconds timeout = kWait) {
    const auto end = Clock::now() + timeout;
    while (true) {
      Frames event;
      while (RecvFrames(monitor_, &event)) {
        uint16_t id = 0;
        if (!event.empty() && event[0].size() >= sizeof id) {
          std::memcpy(&id, event[0].data(), sizeof id);
        }
        if (id == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) return true;
      }
      auto left = std::chrono::ceil<std::chrono::milliseconds>(end - Clock::now());
      if (left.count() <= 0) return false;
      zmq::pollitem_t item{monitor_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, left);
    }
  }

  const std::string& address() const { return address_; }

  // The next message without its routing id, within `timeout`; false if none
  // came. Remembers the sender for Send.
  bool Recv(Frames* frames, std::chrono::milliseconds timeout = kWait) {
    const auto end = Clock::now() + timeout;
    Frames raw;
    while (!RecvFrames(router_, &raw)) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(end - Clock::now());
      if (left.count() <= 0) return false;
      zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, left);
    }
    if (raw.size() < 2) return false;
    peer_ = std::string(View(raw[0]));
    frames->clear();
    for (size_t i = 1; i < raw.size(); ++i) frames->push_back(std::move(raw[i]));
    return true;
  }

  // One message to the last sender: `frames` as given.
  Status Send(const std::vector<std::string>& frames) {
    Frames out;
    out.emplace_back(peer_.data(), peer_.size());
    for (const std::string& f : frames) out.emplace_back(f.data(), f.size());
    return SendFrames(router_, out);
  }

 private:
  void Monitor() {
    ConfigureRouter(router_);
    std::string name = "inproc://fake-router-monitor";
    zmq_socket_monitor(router_.handle(), name.c_str(), ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
    monitor_.set(zmq::sockopt::linger, 0);
    monitor_.connect(name);
  }

  zmq::context_t context_{1};
  zmq::socket_t router_;
  zmq::socket_t monitor_{context_, zmq::socket_type::pair};
  std::string address_;
  std::string peer_;
};

}  // namespace zserve::testing

#endif  // ZSERVE_TESTS_COMMON_FAKE_ROUTER_H_
