#include "broker/mdp.h"

#include <charconv>

namespace zserve::broker::mdp {

namespace {

zmq::message_t Text(std::string_view s) { return zmq::message_t(s.data(), s.size()); }

bool IsCommand(uint8_t byte) { return byte >= 1 && byte <= 5; }

}  // namespace

std::string_view WorkerCommandName(WorkerCommand command) {
  switch (command) {
    case WorkerCommand::kReady:
      return "READY";
    case WorkerCommand::kRequest:
      return "REQUEST";
    case WorkerCommand::kReply:
      return "REPLY";
    case WorkerCommand::kHeartbeat:
      return "HEARTBEAT";
    case WorkerCommand::kDisconnect:
      return "DISCONNECT";
  }
  return "UNKNOWN";
}

bool IsMdp(std::span<const zmq::message_t> frames) {
  return frames.size() >= 2 && frames[1].size() == 0;
}

std::string_view Protocol(std::span<const zmq::message_t> frames) {
  if (!IsMdp(frames) || frames.size() < 3) return {};
  return View(frames[2]);
}

StatusOr<ClientRequest> DecodeClientRequest(std::span<const zmq::message_t> frames) {
  if (!IsMdp(frames)) return BadRequest("not an MDP message: no empty delimiter frame");
  if (Protocol(frames) != kClientProtocol) {
    return BadRequest("MDP client message without the \"MDPC01\" protocol frame");
  }
  if (frames.size() < 4) return BadRequest("MDP client REQUEST without a service frame");
  ClientRequest req;
  req.service = View(frames[3]);
  req.first_body = 4;
  req.body_frames = frames.size() - 4;
  return req;
}

StatusOr<WorkerMessage> DecodeWorker(std::span<const zmq::message_t> frames) {
  if (!IsMdp(frames)) return BadRequest("not an MDP message: no empty delimiter frame");
  if (Protocol(frames) != kWorkerProtocol) {
    return BadRequest("MDP worker message without the \"MDPW01\" protocol frame");
  }
  if (frames.size() < 4 || frames[3].size() != 1 ||
      !IsCommand(*static_cast<const uint8_t*>(frames[3].data()))) {
    return BadRequest("MDP worker message without a command byte of 0x01 to 0x05");
  }
  WorkerMessage m;
  m.command = static_cast<WorkerCommand>(*static_cast<const uint8_t*>(frames[3].data()));
  std::string_view name = WorkerCommandName(m.command);
  switch (m.command) {
    case WorkerCommand::kReady:
      if (frames.size() != 5) {
        return BadRequest("MDP READY needs exactly one service frame");
      }
      m.service = View(frames[4]);
      return m;
    case WorkerCommand::kRequest:
    case WorkerCommand::kReply:
      // RFC 7: precisely one client address frame, then an empty frame.
      if (frames.size() < 6 || frames[5].size() != 0) {
        return BadRequest("MDP " + std::string(name) +
                          " needs one address frame followed by an empty frame");
      }
      m.address = View(frames[4]);
      m.first_body = 6;
      m.body_frames = frames.size() - 6;
      return m;
    case WorkerCommand::kHeartbeat:
    case WorkerCommand::kDisconnect:
      if (frames.size() != 4) {
        return BadRequest("MDP " + std::string(name) + " takes no frames after the command");
      }
      return m;
  }
  return BadRequest("unknown MDP worker command");
}

std::string TokenAddress(uint64_t token) { return std::to_string(token); }

bool ParseTokenAddress(std::string_view address, uint64_t* token) {
  if (address.empty() || address.size() > 20) return false;
  if (address.size() > 1 && address[0] == '0') return false;  // one spelling per token
  const char* end = address.data() + address.size();
  auto [ptr, ec] = std::from_chars(address.data(), end, *token);
  return ec == std::errc() && ptr == end;
}

Frames ClientReply(zmq::message_t client, std::string_view service, zmq::message_t body) {
  Frames out;
  out.reserve(5);
  out.push_back(std::move(client));
  out.emplace_back();
  out.push_back(Text(kClientProtocol));
  out.push_back(Text(service));
  out.push_back(std::move(body));
  return out;
}

Frames ClientError(zmq::message_t client, std::string_view service, const Status& status) {
  Frames out = ClientReply(std::move(client), service, Text("ERROR " + status.ToString()));
  out.push_back(Text(StatusCodeName(status.code())));
  return out;
}

Frames WorkerRequest(std::string_view replica, uint64_t token, zmq::message_t body) {
  const uint8_t command = static_cast<uint8_t>(WorkerCommand::kRequest);
  Frames out;
  out.reserve(7);
  out.push_back(Text(replica));
  out.emplace_back();
  out.push_back(Text(kWorkerProtocol));
  out.emplace_back(&command, 1);
  out.push_back(Text(TokenAddress(token)));
  out.emplace_back();
  out.push_back(std::move(body));
  return out;
}

Frames WorkerSimple(std::string_view replica, WorkerCommand command) {
  const uint8_t byte = static_cast<uint8_t>(command);
  Frames out;
  out.reserve(4);
  out.push_back(Text(replica));
  out.emplace_back();
  out.push_back(Text(kWorkerProtocol));
  out.emplace_back(&byte, 1);
  return out;
}

}  // namespace zserve::broker::mdp
