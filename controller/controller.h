// The controller process: owns the durable configuration (ConfigStore), serves
// admin commands and SNAPSHOT_REQUESTs on its ROUTER, and publishes every
// committed change, and a heartbeat with the current version, on its PUB
// (schemas/PROTOCOL.md §4.3, §4.4). A change is committed, then published,
// then acknowledged.
//
// Create() opens the store, reads and checks the deployment file if one is
// given, and binds; Run() commits that file, then blocks the calling thread,
// which owns the sockets, serving. So a start that fails before Run() (the
// caller's own setup, such as a metrics server, included) changes nothing.
// `on_wake` runs on that thread when `wake_fd` turns readable and returns true
// to stop; it may call Reload().
#ifndef ZSERVE_CONTROLLER_CONTROLLER_H_
#define ZSERVE_CONTROLLER_CONTROLLER_H_

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "common/curve.h"
#include "common/logging.h"
#include "common/zmq_util.h"
#include "controller/config_store.h"
#include "controller/controller_metrics.h"
#include "schemas/codec.h"

namespace zserve::controller {

struct ControllerOptions {
  std::string admin_bind = "tcp://127.0.0.1:5557";
  std::string pub_bind = "tcp://127.0.0.1:5558";
  std::string store_path;             // required: the SQLite store
  std::string deployment_file;        // optional: applied at start and on Reload()
  bool reload_only = false;           // the file is applied on Reload() only, not at start
  zmq::context_t* context = nullptr;  // required, borrowed
  Logger logger;                      // required
  std::chrono::milliseconds heartbeat{1000};
  prometheus::Registry* metrics = nullptr;  // borrowed; null: no metrics (docs/metrics.md)
  // CURVE (docs/security.md): this controller's key pair and the allow-list
  // of the keys it lets in. Empty: plain ZeroMQ.
  KeyPair curve_key;
  std::string curve_allow_file;
};

class Controller {
 public:
  static StatusOr<std::unique_ptr<Controller>> Create(const ControllerOptions& options);

  int admin_port() const { return BoundPort(admin_); }
  int pub_port() const { return BoundPort(pub_); }
  uint64_t version() const { return store_->version(); }

  Status Run(int wake_fd, const std::function<bool()>& on_wake);

  // Applies the deployment file again (converges to it, like `zserve
  // apply`); a valid change is committed and published, an invalid file is
  // refused and the old state kept.
  Status Reload();

 private:
  explicit Controller(const ControllerOptions& options);
  void HandleAdmin(Frames& frames);
  void Publish(zserve::schemas::Command command);
  // `admin`: the sender may change the config (it has the admin role, or
  // CURVE is off).
  std::string HandleAdminCommand(std::string_view header, bool admin);
  // Validated `next` committed, published and logged; `what` names the cause.
  StatusOr<std::vector<std::string>> Commit(schemas::ConfigState next, const std::string& what);

  ControllerOptions options_;
  Logger log_;
  zmq::socket_t admin_;  // ROUTER
  zmq::socket_t pub_;    // PUB
  std::unique_ptr<ConfigStore> store_;
  std::unique_ptr<ControllerMetrics> metrics_;  // null: no metrics
  std::unique_ptr<ZapHandler> zap_;             // with CURVE only
  // The deployment file's state, read by Create() and committed by Run().
  std::optional<schemas::ConfigState> start_state_;
};

}  // namespace zserve::controller

#endif  // ZSERVE_CONTROLLER_CONTROLLER_H_
