// Small helpers over cppzmq shared by every component: whole-message receive
// and non-blocking send with the errors of a ROUTER_MANDATORY socket turned
// into a Status.
//
// Functions only; each call uses the socket of the calling thread.
#ifndef ZSERVE_COMMON_ZMQ_UTIL_H_
#define ZSERVE_COMMON_ZMQ_UTIL_H_

#include <chrono>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "zserve/status.h"

namespace zserve {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Frames = std::vector<zmq::message_t>;

// t + d for d >= 0, or TimePoint::max() where that is past what a TimePoint
// holds: a timeout of milliseconds::max() means no limit, not an overflow.
inline TimePoint SaturatingAdd(TimePoint t, std::chrono::milliseconds d) {
  const auto room = std::chrono::floor<std::chrono::milliseconds>(TimePoint::max() - t);
  return d >= room ? TimePoint::max() : t + d;
}

inline std::string_view View(const zmq::message_t& m) {
  return std::string_view(static_cast<const char*>(m.data()), m.size());
}

// Sends all frames as one message without blocking. OK, or UNAVAILABLE when
// the peer is gone (EHOSTUNREACH) or at its high-water mark (EAGAIN); then
// nothing was sent. The frames are consumed (moved out) only on success.
Status SendFrames(zmq::socket_t& socket, std::span<zmq::message_t> frames);

// Receives one whole multipart message without blocking; false if none waits.
bool RecvFrames(zmq::socket_t& socket, Frames* frames);

// The event and its value from a socket monitor's message (its first frame,
// zmq_socket_monitor); false if it is not one.
bool ReadMonitorEvent(const Frames& frames, uint16_t* event, uint32_t* value);

// Counts a failed handshake (ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL or
// _NO_DETAIL) in *in_a_row; true when it is to be reported: a protocol
// error at once (CURVE at one end only, another key: ZeroMQ does not try
// again after one), a connection closed during the handshake the second
// time in a row (once may be a peer going away mid-handshake).
bool HandshakeFailed(uint16_t event, int* in_a_row);

// The TCP port a socket was bound on (after binding "tcp://127.0.0.1:*").
int BoundPort(const zmq::socket_t& socket);

// A TCP port on 127.0.0.1 that binds now, chosen at random outside the
// kernel's ephemeral range (so no bind(0) or outgoing connection takes it
// before its user binds it) and never twice in one process, for
// `zserve up --client-port 0` and for tests; 0 on failure.
int PickFreeLoopbackPort();

// A port PickFreeLoopbackPort must never return in this process: one given
// explicitly that this process or its children bind later (`zserve up
// --client-port 5555 --metrics-port 0` must not pick 5555 for a metrics
// server before the broker has bound it).
void ReserveLoopbackPort(int port);

// Whether a TCP socket binds 127.0.0.1:`port` now (with SO_REUSEADDR, as
// servers bind: a port left in TIME_WAIT by closed connections counts as
// free). The probe socket is closed at once.
bool CanBindLoopback(int port, bool reuse_addr);

// "tcp://127.0.0.1:PORT".
std::string LoopbackAddress(int port);

// An HTTP listener's "HOST:PORT" (the gateway's --listen, a --metrics-bind):
// HOST an IPv4 address or a host name (letters, digits, '.', '-'), PORT a
// decimal number 0..65535 (0: a free port). Anything else, such as a second
// address after a comma, is BAD_REQUEST naming `what`.
Status SplitHostPort(const std::string& address, std::string_view what, std::string* host,
                     int* port);

// Why an HTTP listener cannot listen on host:port (an IPv4 address or a
// host name), as the system says it: "cannot resolve 'HOST': ..." or the
// bind's error ("Address already in use"); empty if it binds now.
// civetweb's own errors ("null context when constructing CivetServer") do
// not say.
std::string ListenProblem(const std::string& host, int port);

// Runs `stop`, which stops an HTTP server (civetweb) listening on
// host:port, and connects to that port every 10 ms until `stop` returns:
// civetweb's listening thread reads its stop flag only when its poll(2)
// returns, which with nobody connecting is a whole second later (the stop
// of every process that serves HTTP took that long). A host that is not an
// IPv4 address, or 0.0.0.0, is reached on 127.0.0.1.
void StopWakingListener(const std::string& host, int port, const std::function<void()>& stop);

// socket.connect(address) and socket.bind(address), with a failure as a
// Status that names `what` ("cannot connect to the broker") and the address:
// BAD_REQUEST when ZeroMQ cannot read the address (no or an unknown
// transport, no port: EINVAL, EPROTONOSUPPORT, ENOCOMPATPROTO), which no
// retry mends; else UNAVAILABLE (a port in use, a context shut down).
Status Connect(zmq::socket_t& socket, const std::string& address, std::string_view what);
Status Bind(zmq::socket_t& socket, const std::string& address, std::string_view what);

// Sets the options every ROUTER of zserve has: mandatory routing, no linger.
void ConfigureRouter(zmq::socket_t& socket);

}  // namespace zserve

#endif  // ZSERVE_COMMON_ZMQ_UTIL_H_
