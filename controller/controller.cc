#include "controller/controller.h"

#include "controller/deployment_file.h"
#include "schemas/codec.h"

namespace zserve::controller {

namespace sc = zserve::schemas;

namespace {
zmq::message_t ToMessage(const std::string& s) { return zmq::message_t(s.data(), s.size()); }
}  // namespace

Controller::Controller(const ControllerOptions& options)
    : options_(options),
      log_(options.logger),
      admin_(*options.context, zmq::socket_type::router),
      pub_(*options.context, zmq::socket_type::pub) {}

StatusOr<std::unique_ptr<Controller>> Controller::Create(const ControllerOptions& options) {
  if (options.context == nullptr || options.logger == nullptr) {
    return Internal("ControllerOptions needs a context and a logger");
  }
  StatusOr<sc::ConfigState> state = LoadDeploymentFile(options.deployment_file);
  if (!state.ok()) return state.status();
  std::unique_ptr<Controller> c(new Controller(options));
  if (StatusOr<bool> r = c->store_.Replace(std::move(state).value()); !r.ok()) return r.status();
  try {
    ConfigureRouter(c->admin_);
    c->pub_.set(zmq::sockopt::linger, 0);
    c->admin_.bind(options.admin_bind);
    c->pub_.bind(options.pub_bind);
  } catch (const zmq::error_t& e) {
    return Unavailable(std::string("controller cannot bind: ") + e.what());
  }
  c->log_->info("controller serving config version {} from '{}': admin {}, updates {}",
                c->store_.version(), options.deployment_file, LoopbackAddress(c->admin_port()),
                LoopbackAddress(c->pub_port()));
  return c;
}

Status Controller::Reload() {
  StatusOr<sc::ConfigState> state = LoadDeploymentFile(options_.deployment_file);
  if (!state.ok()) {
    log_->error("reload refused, keeping version {}: {}", store_.version(),
                state.status().message());
    return state.status();
  }
  StatusOr<bool> changed = store_.Replace(std::move(state).value());
  if (!changed.ok()) return changed.status();
  if (!*changed) {
    log_->info("reload: no change, still version {}", store_.version());
    return Status::Ok();
  }
  log_->info("reload: committed version {}", store_.version());
  Publish(sc::Command::kUpdate);
  return Status::Ok();
}

void Controller::Publish(sc::Command command) {
  std::string body = command == sc::Command::kUpdate
                         ? sc::EncodeSnapshot(command, {store_.version(), store_.state()})
                         : sc::EncodeControllerHeartbeat(store_.version());
  zmq::message_t frames[2] = {ToMessage(std::string(sc::kConfigTopic)), ToMessage(body)};
  (void)SendFrames(pub_, frames);  // PUB never blocks; slow subscribers catch up by snapshot
}

Status Controller::Run(int wake_fd, const std::function<bool()>& on_wake) {
  Frames frames;
  TimePoint next_heartbeat = Clock::now();
  while (true) {
    TimePoint now = Clock::now();
    if (now >= next_heartbeat) {
      Publish(sc::Command::kControllerHeartbeat);
      next_heartbeat = now + options_.heartbeat;
    }
    auto wait = std::chrono::ceil<std::chrono::milliseconds>(next_heartbeat - now);
    zmq::pollitem_t items[] = {{admin_.handle(), 0, ZMQ_POLLIN, 0},
                               {nullptr, wake_fd, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, wake_fd >= 0 ? 2 : 1, wait);
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) return Internal(std::string("poll failed: ") + e.what());
    }
    if (wake_fd >= 0 && (items[1].revents & ZMQ_POLLIN) && on_wake()) break;
    for (int i = 0; i < 256 && RecvFrames(admin_, &frames); ++i) HandleAdmin(frames);
  }
  log_->info("controller stopping at version {}", store_.version());
  return Status::Ok();
}

void Controller::HandleAdmin(Frames& frames) {
  if (frames.size() != 2) {
    log_->warn("admin message with {} frames dropped", frames.size());
    return;
  }
  StatusOr<sc::Command> command = sc::PeekCommand(View(frames[1]));
  std::string reply;
  if (!command.ok()) {
    reply = sc::EncodeError(command.status());
  } else if (*command == sc::Command::kSnapshotRequest) {
    reply = sc::EncodeSnapshot(sc::Command::kSnapshot, {store_.version(), store_.state()});
  } else {
    reply = sc::EncodeError(
        BadRequest("the controller does not serve " + std::string(sc::CommandName(*command))));
  }
  zmq::message_t out[2] = {std::move(frames[0]), ToMessage(reply)};
  if (!SendFrames(admin_, out).ok()) log_->debug("reply to a gone peer dropped");
}

}  // namespace zserve::controller
