// Test support: whole messages of strings on a raw cppzmq socket, for tests
// that speak the wire protocol themselves (hostile input, Majordomo peers,
// limits).
#ifndef ZSERVE_TESTS_E2E_RAW_SOCKET_H_
#define ZSERVE_TESTS_E2E_RAW_SOCKET_H_

#include <chrono>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

namespace zserve::testing {

using Strings = std::vector<std::string>;

// Sends `parts` as one message (blocking).
inline void SendStrings(zmq::socket_t& s, const Strings& parts) {
  for (size_t i = 0; i < parts.size(); ++i) {
    s.send(zmq::buffer(parts[i]),
           i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
}

// One whole message, or nullopt if none arrives within `limit`.
inline std::optional<Strings> RecvStrings(zmq::socket_t& s, std::chrono::milliseconds limit) {
  zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, limit) == 0) return std::nullopt;
  Strings out;
  while (true) {
    zmq::message_t m;
    if (!s.recv(m, zmq::recv_flags::none)) return std::nullopt;
    out.emplace_back(m.to_string());
    if (!m.more()) return out;
  }
}

}  // namespace zserve::testing

#endif  // ZSERVE_TESTS_E2E_RAW_SOCKET_H_
