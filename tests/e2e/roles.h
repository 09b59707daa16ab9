// Test support: a zserve deployment as separate processes — `zserve
// controller`, `zserve broker` and `zserve worker`s — so that a test knows
// every PID and can kill or restart any one of them (where Stack runs them all
// under `zserve up`). Heartbeats are short (100 ms by default: dead after 3
// silent ones) so failures show quickly. Everything the processes write to
// stderr goes to log().
#ifndef ZSERVE_TESTS_E2E_ROLES_H_
#define ZSERVE_TESTS_E2E_ROLES_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "tests/e2e/process.h"

namespace zserve::testing {

struct RolesOptions {
  std::chrono::milliseconds heartbeat{100};
  // Added to the command lines of `zserve controller`, `zserve broker` and
  // every `zserve worker` (keys, limits).
  std::vector<std::string> controller_args, broker_args, worker_args;
  // The broker's metrics, /healthz and /readyz (a test that scrapes them
  // picks the port).
  std::string broker_metrics_bind = "127.0.0.1:0";
};

class Roles {
 public:
  // Starts the controller on `yaml` and the broker.
  explicit Roles(const std::string& yaml, RolesOptions options = {});
  ~Roles();

  void StartBroker();
  // kill -9 of the broker; true once it has exited.
  bool KillBroker();
  // A worker of `backend` running the built-in `handler`, tagged
  // "BACKEND-N" (N counts the workers started), with `extra_args` added.
  Process& StartWorker(const std::string& backend, const std::string& handler,
                       const std::vector<std::string>& extra_args = {});

  Process& broker() { return *broker_; }
  Process& controller() { return *controller_; }
  const std::string& client_address() const { return client_; }
  const std::string& worker_address() const { return workers_; }
  const std::string& admin_address() const { return admin_; }
  const std::string& updates_address() const { return pub_; }
  const std::string& dir() const { return dir_; }
  std::string log() const { return dir_ + "/roles.log"; }

 private:
  RolesOptions options_;
  std::string dir_, client_, workers_, admin_, pub_;
  std::unique_ptr<Process> controller_, broker_;
  std::vector<std::unique_ptr<Process>> workers_started_;
};

}  // namespace zserve::testing

#endif  // ZSERVE_TESTS_E2E_ROLES_H_
