// The client side of the controller's admin commands (schemas/PROTOCOL.md
// §4.4), for `zserve ctl`, `zserve apply` and tests: one DEALER, one command
// in flight at a time.
//
// Owns its ZeroMQ context and socket; use from one thread. Call() blocks up
// to its timeout.
#ifndef ZSERVE_CONTROLLER_ADMIN_CLIENT_H_
#define ZSERVE_CONTROLLER_ADMIN_CLIENT_H_

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <zmq.hpp>

#include "schemas/codec.h"
#include "zserve/curve.h"
#include "zserve/status.h"

namespace zserve::controller {

class AdminClient {
 public:
  // `address`: the controller's admin ROUTER, e.g. "tcp://127.0.0.1:5557".
  // With `curve_key`, over CURVE to the controller with public key
  // `curve_server_key` (docs/security.md).
  static StatusOr<std::unique_ptr<AdminClient>> Create(const std::string& address,
                                                       const KeyPair& curve_key = {},
                                                       const std::string& curve_server_key = "");

  // Sends `request` (its request_id is assigned here) and waits for the
  // reply. A refused command is a reply with a non-OK code (see Check); a
  // non-OK Status means no reply: UNAVAILABLE when none came in `timeout`,
  // BAD_REQUEST when the controller could not decode the command.
  StatusOr<schemas::AdminReply> Call(schemas::AdminRequest request,
                                     std::chrono::milliseconds timeout);

  // Call(), with a refusal turned into its Status.
  StatusOr<schemas::AdminReply> CallOk(schemas::AdminRequest request,
                                       std::chrono::milliseconds timeout);

 private:
  AdminClient(std::string address, KeyPair curve_key, std::string curve_server_key)
      : address_(std::move(address)),
        curve_key_(std::move(curve_key)),
        curve_server_key_(std::move(curve_server_key)) {}
  Status Connect();

  std::string address_;
  KeyPair curve_key_;
  std::string curve_server_key_;
  // Why the handshake with the controller failed, once a monitor event
  // says so; nullopt while it has not.
  std::optional<Status> HandshakeFailure();

  zmq::context_t context_{1};
  std::unique_ptr<zmq::socket_t> socket_;
  std::unique_ptr<zmq::socket_t> monitor_;  // PAIR: socket_'s handshake events
  uint64_t monitors_ = 0;                   // monitor endpoints made, for unique names
  int handshake_failures_ = 0;              // protocol failures in a row
  uint64_t next_id_ = 1;
};

// The reply's status code and message as a Status.
Status ReplyStatus(const schemas::AdminReply& reply);

}  // namespace zserve::controller

#endif  // ZSERVE_CONTROLLER_ADMIN_CLIENT_H_
