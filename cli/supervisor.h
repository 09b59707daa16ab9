// `zserve up`: runs the embedded default stack as child processes on
// loopback — one controller on the store in `state_dir` with the deployment
// file applied, one broker, the HTTP gateway, and each backend's num_replicas
// workers — waits until every endpoint is served, and stops them all on
// SIGINT/SIGTERM (the gateway first, then the workers, drained; then broker
// and controller). It follows the controller (schemas::ConfigSubscriber) as
// the local supervisor: workers are started and drained (SIGTERM) as
// num_replicas, handlers and backends change; a crashed broker, controller or
// gateway is started again.
//
// Runs on the main thread; installs the signal pipe.
#ifndef ZSERVE_CLI_SUPERVISOR_H_
#define ZSERVE_CLI_SUPERVISOR_H_

#include <chrono>
#include <string>

namespace zserve::cli {

struct UpOptions {
  std::string deployment_file = "examples/deployment.yaml";
  std::string state_dir = ".zserve";  // the store is STATE_DIR/controller.db
  int client_port = 5555;             // 0: a free port
  int worker_port = 5556;
  int admin_port = 5557;
  int pub_port = 5558;
  int http_port = 8000;  // the HTTP gateway's (docs/http.md); 0: a free port; -1: none
  std::string log_level = "info";
  std::chrono::milliseconds ready_timeout{30'000};
  int heartbeat_ms = 1000;  // broker <-> worker heartbeats (docs/operations.md)
  int heartbeat_liveness = 3;
  // Metrics HTTP ports (docs/metrics.md): the controller's; the broker's is
  // one more; workers take the lowest free one from two more upward. 0: each
  // process gets a free port. `up` prints them.
  int metrics_port = 9100;
};

// Returns the process exit code.
int RunUp(UpOptions options);

}  // namespace zserve::cli

#endif  // ZSERVE_CLI_SUPERVISOR_H_
