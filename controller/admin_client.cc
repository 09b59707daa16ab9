#include "controller/admin_client.h"

#include "common/curve.h"
#include "common/zmq_util.h"

namespace zserve::controller {

namespace sc = zserve::schemas;

Status ReplyStatus(const sc::AdminReply& reply) {
  if (reply.code == StatusCode::kOk) return Status::Ok();
  return Status(reply.code, reply.message);
}

StatusOr<std::unique_ptr<AdminClient>> AdminClient::Create(const std::string& address,
                                                           const KeyPair& curve_key,
                                                           const std::string& curve_server_key) {
  std::unique_ptr<AdminClient> c(new AdminClient(address, curve_key, curve_server_key));
  if (Status s = c->Connect(); !s.ok()) return s;
  return c;
}

Status AdminClient::Connect() {
  try {
    monitor_.reset();
    socket_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
    if (Status s = SecureClient(*socket_, curve_key_, curve_server_key_); !s.ok()) return s;
    socket_->set(zmq::sockopt::linger, 0);
    // A refused key or a CURVE mismatch shows only here: the command would
    // wait out its timeout and blame a controller that is running. Set up
    // before connecting, so that no event is missed.
    std::string monitor = "inproc://zserve-admin-monitor-" + std::to_string(++monitors_);
    if (zmq_socket_monitor(socket_->handle(), monitor.c_str(),
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0) {
      return Internal("zmq_socket_monitor failed");
    }
    monitor_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::pair);
    monitor_->set(zmq::sockopt::linger, 0);
    monitor_->connect(monitor);
  } catch (const zmq::error_t& e) {
    return Internal(std::string("cannot set up the controller connection: ") + e.what());
  }
  handshake_failures_ = 0;
  return zserve::Connect(*socket_, address_, "cannot connect to the controller");
}

std::optional<Status> AdminClient::HandshakeFailure() {
  Frames frames;
  uint16_t event = 0;
  uint32_t value = 0;
  while (RecvFrames(*monitor_, &frames)) {
    if (!ReadMonitorEvent(frames, &event, &value)) continue;
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
      handshake_failures_ = 0;
    } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
      return PermissionDenied("the controller at " + address_ +
                              " refused this CURVE key (it must be in its allow-list with role "
                              "admin, docs/security.md); nothing was sent");
    } else if (HandshakeFailed(event, &handshake_failures_)) {
      return Unavailable("the handshake with the controller at " + address_ +
                         " failed: no zserve controller's admin port there, or CURVE on at one "
                         "end only, or another controller key; nothing was sent");
    }
  }
  return std::nullopt;
}

StatusOr<sc::AdminReply> AdminClient::Call(sc::AdminRequest request,
                                           std::chrono::milliseconds timeout) {
  request.request_id = next_id_++;
  std::string header = sc::EncodeAdminRequest(request);
  zmq::message_t out(header.data(), header.size());
  TimePoint end = Clock::now() + timeout;
  // A DEALER queues until the controller is there; a failed send means its
  // queue is full, which for one command at a time means no controller.
  if (Status s = SendFrames(*socket_, std::span(&out, 1)); !s.ok()) {
    return Unavailable("cannot reach the controller at " + address_);
  }
  Frames frames;
  while (true) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(end - Clock::now());
    if (left.count() <= 0) break;
    zmq::pollitem_t items[2] = {{socket_->handle(), 0, ZMQ_POLLIN, 0},
                                {monitor_->handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 2, left);
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) return Internal(std::string("poll failed: ") + e.what());
    }
    if (std::optional<Status> failed = HandshakeFailure()) {
      if (Status s = Connect(); !s.ok()) return s;  // afresh, for a next command
      return *failed;
    }
    while (RecvFrames(*socket_, &frames)) {
      if (frames.size() != 1) continue;
      std::string_view h = View(frames[0]);
      StatusOr<sc::Command> command = sc::PeekCommand(h);
      if (command.ok() && *command == sc::Command::kError) {
        StatusOr<sc::ErrorHeader> err = sc::DecodeError(h);
        if (!err.ok()) return err.status();
        return Status(err->code, "the controller refused the command: " + err->message);
      }
      StatusOr<sc::AdminReply> reply = sc::DecodeAdminReply(h);
      if (!reply.ok())
        return Internal("malformed reply from the controller: " + reply.status().message());
      if (reply->request_id == request.request_id) return reply;
      // A late reply to an earlier command that timed out: skip it.
    }
  }
  // Start afresh, so that a late reply cannot be taken for the next one.
  if (Status s = Connect(); !s.ok()) return s;
  return Unavailable(
      "no answer from the controller at " + address_ + " within " +
      std::to_string(timeout.count()) + " ms" +
      (request.command == sc::Command::kGetState
           ? " (is it running there?)"
           : " (a change may or may not have been applied: `zserve ctl get` shows)"));
}

StatusOr<sc::AdminReply> AdminClient::CallOk(sc::AdminRequest request,
                                             std::chrono::milliseconds timeout) {
  StatusOr<sc::AdminReply> reply = Call(std::move(request), timeout);
  if (!reply.ok()) return reply;
  if (Status s = ReplyStatus(*reply); !s.ok()) return s;
  return reply;
}

}  // namespace zserve::controller
