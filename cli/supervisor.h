// `zserve up`: runs the embedded default stack as child processes on
// loopback — one controller, one broker and each backend's num_replicas
// workers — waits until every endpoint is served, and stops them all on
// SIGINT/SIGTERM (workers first, drained; then broker and controller).
//
// Runs on the main thread; installs the signal pipe.
#ifndef ZSERVE_CLI_SUPERVISOR_H_
#define ZSERVE_CLI_SUPERVISOR_H_

#include <chrono>
#include <string>

namespace zserve::cli {

struct UpOptions {
  std::string deployment_file = "examples/deployment.yaml";
  int client_port = 5555;  // 0: a free port
  int worker_port = 5556;
  int admin_port = 5557;
  int pub_port = 5558;
  std::string log_level = "info";
  std::chrono::milliseconds ready_timeout{30'000};
};

// Returns the process exit code.
int RunUp(UpOptions options);

}  // namespace zserve::cli

#endif  // ZSERVE_CLI_SUPERVISOR_H_
