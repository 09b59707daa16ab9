#include "controller/controller.h"

#include <optional>

#include "controller/config_change.h"
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
  if (options.store_path.empty()) return BadRequest("the controller needs a store (--store)");
  std::unique_ptr<Controller> c(new Controller(options));
  StatusOr<std::unique_ptr<ConfigStore>> store = ConfigStore::Open(options.store_path);
  if (!store.ok()) return store.status();
  c->store_ = std::move(store).value();
  if (options.metrics != nullptr) {
    c->metrics_ = std::make_unique<ControllerMetrics>(*options.metrics);
  }
  c->log_->info("store '{}' opened at version {}", options.store_path, c->store_->version());
  if (size_t bytes = sc::EncodedStateBytes(c->store_->state()); bytes > sc::kMaxStateBytes) {
    // Committed by a controller that did not check: served as it is, so that
    // a change can shrink it, but no subscriber or admin client can take it.
    c->log_->error(
        "store '{}' holds a configuration of {} bytes encoded, more than the {} one SNAPSHOT "
        "carries: brokers and zserve ctl cannot read it until a change (deleting backends, "
        "smaller user_configs) brings it under",
        options.store_path, bytes, sc::kMaxStateBytes);
  }
  // The file is read and checked here, and committed only by Run(): a
  // controller that cannot start (its ports, or the caller's own setup, such
  // as the metrics server) leaves its store as it was.
  if (!options.deployment_file.empty() && !options.reload_only) {
    StatusOr<sc::ConfigState> state = LoadDeploymentFile(options.deployment_file);
    if (!state.ok()) return state.status();
    c->start_state_ = std::move(state).value();
  }
  StatusOr<std::unique_ptr<ZapHandler>> zap =
      ZapHandler::ForServer("controller", options.curve_key, options.curve_allow_file,
                            *options.context, c->log_, options.metrics);
  if (!zap.ok()) return zap.status();
  c->zap_ = std::move(zap).value();
  for (zmq::socket_t* socket : {&c->admin_, &c->pub_}) {
    if (Status s = SecureServer(*socket, options.curve_key, kDomainController); !s.ok()) return s;
  }
  try {
    ConfigureRouter(c->admin_);
    c->pub_.set(zmq::sockopt::linger, 0);
  } catch (const zmq::error_t& e) {
    return Internal(std::string("controller cannot set up its sockets: ") + e.what());
  }
  if (Status s = Bind(c->admin_, options.admin_bind, "controller cannot bind admin"); !s.ok()) {
    return s;
  }
  if (Status s = Bind(c->pub_, options.pub_bind, "controller cannot bind updates"); !s.ok()) {
    return s;
  }
  if (c->metrics_) c->metrics_->SetVersion(c->store_->version());
  return c;
}

Status Controller::Reload() {
  if (options_.deployment_file.empty()) {
    log_->info("reload: no deployment file was given; nothing to do");
    return Status::Ok();
  }
  StatusOr<sc::ConfigState> state = LoadDeploymentFile(options_.deployment_file);
  if (!state.ok()) {
    log_->error("reload refused, keeping version {}: {}", store_->version(),
                state.status().message());
    return state.status();
  }
  StatusOr<std::vector<std::string>> changes =
      Commit(std::move(state).value(), "reload " + options_.deployment_file);
  if (!changes.ok()) return changes.status();
  if (changes->empty()) log_->info("reload: no change, still version {}", store_->version());
  return Status::Ok();
}

StatusOr<std::vector<std::string>> Controller::Commit(sc::ConfigState next,
                                                      const std::string& what) {
  std::vector<std::string> changes = DiffStates(store_->state(), next);
  StatusOr<bool> committed = store_->Replace(std::move(next));
  if (!committed.ok()) {
    log_->warn("{}: refused at version {}: {}", what, store_->version(),
               committed.status().message());
    return committed.status();
  }
  if (!*committed) return std::vector<std::string>{};
  // Only the first commit of a new store changes no backend or endpoint: it
  // is a change still (brokers serve from version 1), and says so.
  if (changes.empty()) changes.push_back("+ first version: an empty configuration");
  // Committed: publish, and only then is the change acknowledged.
  Publish(sc::Command::kUpdate);
  if (metrics_) metrics_->SetVersion(store_->version());
  log_->info("{}: committed version {}", what, store_->version());
  for (const std::string& line : changes) log_->info("  {}", line);
  return changes;
}

std::string Controller::HandleAdminCommand(std::string_view header, bool admin) {
  StatusOr<sc::AdminRequest> request = sc::DecodeAdminRequest(header);
  if (!request.ok()) {
    if (metrics_) metrics_->Malformed();
    return sc::EncodeError(request.status());
  }
  sc::AdminReply reply;
  reply.request_id = request->request_id;
  StatusOr<sc::ConfigState> next =
      admin ? ApplyAdminRequest(store_->state(), *request)
            : StatusOr<sc::ConfigState>(PermissionDenied(
                  std::string(sc::CommandName(request->command)) +
                  " needs a key with the admin role in the controller's allow-list"));
  Status status = next.status();
  if (next.ok() && request->command != sc::Command::kGetState) {
    std::string what = std::string(sc::CommandName(request->command));
    if (!request->name.empty()) what += " " + request->name;
    StatusOr<std::vector<std::string>> changes = Commit(std::move(next).value(), what);
    status = changes.status();
    if (changes.ok()) reply.changes = std::move(changes).value();
  } else if (!status.ok()) {
    log_->info("{} refused: {}", sc::CommandName(request->command), status.message());
  }
  if (metrics_) metrics_->Admin(sc::CommandName(request->command), !status.ok());
  reply.code = status.code();
  reply.message = status.message();
  reply.version = store_->version();
  reply.state = store_->state();
  return sc::EncodeAdminReply(reply);
}

void Controller::Publish(sc::Command command) {
  std::string body = command == sc::Command::kUpdate
                         ? sc::EncodeSnapshot(command, {store_->version(), store_->state()})
                         : sc::EncodeControllerHeartbeat(store_->version());
  zmq::message_t frames[2] = {ToMessage(std::string(sc::kConfigTopic)), ToMessage(body)};
  (void)SendFrames(pub_, frames);  // PUB never blocks; slow subscribers catch up by snapshot
}

Status Controller::Run(int wake_fd, const std::function<bool()>& on_wake) {
  if (start_state_) {
    auto r = Commit(std::move(*start_state_), "apply " + options_.deployment_file);
    start_state_.reset();
    if (!r.ok()) return r.status();
  }
  log_->info("controller serving config version {}: admin {}, updates {}", store_->version(),
             LoopbackAddress(admin_port()), LoopbackAddress(pub_port()));
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
  log_->info("controller stopping at version {}", store_->version());
  return Status::Ok();
}

void Controller::HandleAdmin(Frames& frames) {
  if (frames.size() != 2) {
    if (metrics_) metrics_->Malformed();
    log_->warn("admin message with {} frames dropped (an admin message is one frame)",
               frames.size() - 1);
    return;
  }
  StatusOr<sc::Command> command = sc::PeekCommand(View(frames[1]));
  std::string reply;
  if (!command.ok()) {
    if (metrics_) metrics_->Malformed();
    reply = sc::EncodeError(command.status());
  } else if (*command == sc::Command::kSnapshotRequest) {
    reply = sc::EncodeSnapshot(sc::Command::kSnapshot, {store_->version(), store_->state()});
    if (metrics_) metrics_->SnapshotServed();
  } else if (sc::IsAdminCommand(*command)) {
    bool admin = options_.curve_key.empty() || PeerHasRole(frames[1], Role::kAdmin);
    reply = HandleAdminCommand(View(frames[1]), admin);
  } else {
    reply = sc::EncodeError(
        BadRequest("the controller does not serve " + std::string(sc::CommandName(*command))));
  }
  zmq::message_t out[2] = {std::move(frames[0]), ToMessage(reply)};
  if (!SendFrames(admin_, out).ok()) log_->debug("reply to a gone peer dropped");
}

}  // namespace zserve::controller
