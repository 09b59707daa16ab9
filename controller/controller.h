// The controller process: owns the configuration (ConfigStore), answers
// SNAPSHOT_REQUESTs on its ROUTER and publishes every committed change, and a
// heartbeat with the current version, on its PUB (schemas/PROTOCOL.md §4.3).
//
// Create() loads the deployment file and binds; Run() blocks the calling
// thread, which owns the sockets. `on_wake` runs on that thread when
// `wake_fd` turns readable and returns true to stop; it may call Reload().
#ifndef ZSERVE_CONTROLLER_CONTROLLER_H_
#define ZSERVE_CONTROLLER_CONTROLLER_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <zmq.hpp>

#include "common/logging.h"
#include "common/zmq_util.h"
#include "controller/config_store.h"
#include "schemas/codec.h"

namespace zserve::controller {

struct ControllerOptions {
  std::string admin_bind = "tcp://127.0.0.1:5557";
  std::string pub_bind = "tcp://127.0.0.1:5558";
  std::string deployment_file;        // required
  zmq::context_t* context = nullptr;  // required, borrowed
  Logger logger;                      // required
  std::chrono::milliseconds heartbeat{1000};
};

class Controller {
 public:
  static StatusOr<std::unique_ptr<Controller>> Create(const ControllerOptions& options);

  int admin_port() const { return BoundPort(admin_); }
  int pub_port() const { return BoundPort(pub_); }
  uint64_t version() const { return store_.version(); }

  Status Run(int wake_fd, const std::function<bool()>& on_wake);

  // Reads the deployment file again; a valid change is committed and
  // published, an invalid file is refused and the old state kept.
  Status Reload();

 private:
  explicit Controller(const ControllerOptions& options);
  void HandleAdmin(Frames& frames);
  void Publish(zserve::schemas::Command command);

  ControllerOptions options_;
  Logger log_;
  zmq::socket_t admin_;  // ROUTER
  zmq::socket_t pub_;    // PUB
  ConfigStore store_;
};

}  // namespace zserve::controller

#endif  // ZSERVE_CONTROLLER_CONTROLLER_H_
