#include "schemas/config_subscriber.h"

#include "common/curve.h"

namespace zserve::schemas {

namespace {
constexpr int kReadBurst = 256;
}  // namespace

ConfigSubscriber::ConfigSubscriber(const ConfigSubscriberOptions& o)
    : options_(o),
      log_(o.logger),
      updates_(*o.context, zmq::socket_type::sub),
      snapshots_(*o.context, zmq::socket_type::dealer) {}

StatusOr<std::unique_ptr<ConfigSubscriber>> ConfigSubscriber::Create(
    const ConfigSubscriberOptions& o) {
  if (o.context == nullptr || o.logger == nullptr) {
    return Internal("ConfigSubscriberOptions needs a context and a logger");
  }
  std::unique_ptr<ConfigSubscriber> s(new ConfigSubscriber(o));
  for (PolledSocket* socket : {&s->updates_, &s->snapshots_}) {
    if (Status c = SecureClient(socket->socket(), o.curve_key, o.curve_server_key); !c.ok()) {
      return c;
    }
  }
  try {
    s->updates_.socket().set(zmq::sockopt::linger, 0);
    s->snapshots_.socket().set(zmq::sockopt::linger, 0);
    // Clone pattern: subscribe first, then ask for the snapshot.
    s->updates_.socket().set(zmq::sockopt::subscribe, std::string(kConfigTopic));
  } catch (const zmq::error_t& e) {
    return Internal(std::string("cannot set up the controller connection: ") + e.what());
  }
  if (Status c = Connect(s->updates_.socket(), o.updates_address,
                         "cannot connect to the controller's updates");
      !c.ok()) {
    return c;
  }
  if (Status c = Connect(s->snapshots_.socket(), o.snapshot_address,
                         "cannot connect to the controller's snapshots");
      !c.ok()) {
    return c;
  }
  s->RequestSnapshot(Clock::now());
  return s;
}

void ConfigSubscriber::AddPollItems(std::vector<PollItem>* items) {
  items->push_back({.socket = &updates_});
  items->push_back({.socket = &snapshots_});
}

std::optional<TimePoint> ConfigSubscriber::NextTimer() const {
  if (!snapshot_pending_) return std::nullopt;
  return snapshot_requested_at_ + options_.snapshot_retry;
}

void ConfigSubscriber::RequestSnapshot(TimePoint now) {
  std::string req = EncodeSimple(Command::kSnapshotRequest);
  zmq::message_t m(req.data(), req.size());
  // A DEALER queues while the controller is away; a failed send is retried.
  if (!snapshots_.Send(std::span(&m, 1)).ok()) log_->debug("snapshot request not sent yet");
  snapshot_pending_ = true;
  snapshot_requested_at_ = now;
}

std::optional<Snapshot> ConfigSubscriber::Read(TimePoint now) {
  std::optional<Snapshot> newest;
  for (int i = 0; i < kReadBurst && updates_.Recv(&frames_); ++i) {
    Handle(frames_, /*from_pub=*/true, now, &newest);
  }
  for (int i = 0; i < kReadBurst && snapshots_.Recv(&frames_); ++i) {
    Handle(frames_, /*from_pub=*/false, now, &newest);
  }
  if (snapshot_pending_ && now - snapshot_requested_at_ >= options_.snapshot_retry) {
    RequestSnapshot(now);
  }
  return newest;
}

void ConfigSubscriber::Handle(Frames& frames, bool from_pub, TimePoint now,
                              std::optional<Snapshot>* newest) {
  // PUB messages carry the topic frame first.
  size_t h = from_pub ? 1 : 0;
  if (frames.size() != h + 1) {
    ++malformed_;
    log_->warn("controller message with {} frames dropped", frames.size());
    return;
  }
  std::string_view header = View(frames[h]);
  StatusOr<Command> command = PeekCommand(header);
  if (!command.ok()) {
    ++malformed_;
    log_->warn("malformed controller message dropped: {}", command.status().message());
    return;
  }
  if (*command == Command::kControllerHeartbeat) {
    StatusOr<uint64_t> version = DecodeControllerHeartbeat(header);
    if (version.ok() && *version > version_ && !snapshot_pending_) {
      log_->info("controller is at version {}, we hold {}: asking for a snapshot", *version,
                 version_);
      RequestSnapshot(now);
    }
    return;
  }
  if (*command == Command::kError) {
    StatusOr<ErrorHeader> err = DecodeError(header);
    log_->warn("controller error: {}", err.ok() ? err->message : err.status().message());
    return;
  }
  StatusOr<Snapshot> snap = DecodeSnapshot(header);
  if (!snap.ok()) {
    ++malformed_;
    log_->warn("controller message refused: {}", snap.status().message());
    return;
  }
  if (*command == Command::kSnapshot) snapshot_pending_ = false;
  if (snap->version <= version_) return;
  version_ = snap->version;
  *newest = std::move(snap).value();
}

}  // namespace zserve::schemas
