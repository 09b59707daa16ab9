// Majordomo Protocol 0.1 (ZeroMQ RFC 7, MDP/0.1, with RFC 8's MMI) framing:
// how the broker tells an MDP message from a ZSP one, reads MDP client
// requests and worker commands, and builds the messages it sends back.
// schemas/PROTOCOL.md section 7 states what the broker does with them.
//
// Pure: no sockets. Frames are ZeroMQ messages as a ROUTER receives them
// (routing id first); decoded views point into those frames and live as long
// as they do. Functions only; any thread.
#ifndef ZSERVE_BROKER_MDP_H_
#define ZSERVE_BROKER_MDP_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <zmq.hpp>

#include "common/zmq_util.h"
#include "zserve/status.h"

namespace zserve::broker::mdp {

inline constexpr std::string_view kClientProtocol = "MDPC01";
inline constexpr std::string_view kWorkerProtocol = "MDPW01";
// RFC 8: services in this namespace are the broker's own.
inline constexpr std::string_view kMmiPrefix = "mmi.";
inline constexpr std::string_view kMmiService = "mmi.service";
// The only method an MDP request can carry.
inline constexpr std::string_view kMethod = "__call__";
// Longest service name read (as for ZSP names, PROTOCOL.md section 3).
inline constexpr size_t kMaxServiceName = 128;

enum class WorkerCommand : uint8_t {
  kReady = 1,
  kRequest = 2,
  kReply = 3,
  kHeartbeat = 4,
  kDisconnect = 5,
};
std::string_view WorkerCommandName(WorkerCommand command);

// True when the message after the routing id opens with an empty frame: MDP
// (a ZSP header is a non-empty MessagePack array). `frames` includes the
// routing id.
bool IsMdp(std::span<const zmq::message_t> frames);

// [routing id, "", "MDPC01", service, body...].
struct ClientRequest {
  std::string_view service;
  size_t first_body = 4;   // index in the frames of the first body frame
  size_t body_frames = 0;  // may be 0 or more than 1: the broker decides
};
// BAD_REQUEST when the frames are not an MDP/Client request: too few frames,
// no empty delimiter, or a protocol frame other than "MDPC01" (the caller can
// tell "MDPW01" apart with Protocol()).
StatusOr<ClientRequest> DecodeClientRequest(std::span<const zmq::message_t> frames);

// The protocol frame ("MDPC01", "MDPW01", anything) of an MDP message, empty
// when there is none.
std::string_view Protocol(std::span<const zmq::message_t> frames);

// [routing id, "", "MDPW01", command, ...], one of the five commands of RFC 7
// with exactly its frames (REQUEST and REPLY: one address frame, an empty
// frame, body frames).
struct WorkerMessage {
  WorkerCommand command = WorkerCommand::kHeartbeat;
  std::string_view service;  // READY
  std::string_view address;  // REQUEST, REPLY
  size_t first_body = 6;     // REQUEST, REPLY: index of the first body frame
  size_t body_frames = 0;    // REQUEST, REPLY
};
StatusOr<WorkerMessage> DecodeWorker(std::span<const zmq::message_t> frames);

// The client address frame the broker puts in a REQUEST: the request's token
// in decimal, which the worker's REPLY carries back.
std::string TokenAddress(uint64_t token);
// False unless `address` is a decimal uint64 as TokenAddress writes it.
bool ParseTokenAddress(std::string_view address, uint64_t* token);

// Messages to send on a ROUTER: routing id first. The routing id and bodies
// are taken by value (move them in; zmq::message_t shares buffers on copy()).
Frames ClientReply(zmq::message_t client, std::string_view service, zmq::message_t body);
// An error for an MDP client, which has no error channel: two body frames,
// "ERROR <CODE>: <message>" and "<CODE>" (a result always has exactly one).
Frames ClientError(zmq::message_t client, std::string_view service, const Status& status);
Frames WorkerRequest(std::string_view replica, uint64_t token, zmq::message_t body);
// HEARTBEAT or DISCONNECT (or any command without arguments).
Frames WorkerSimple(std::string_view replica, WorkerCommand command);

}  // namespace zserve::broker::mdp

#endif  // ZSERVE_BROKER_MDP_H_
