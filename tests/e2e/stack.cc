#include "tests/e2e/stack.h"

#include <csignal>
#include <fstream>
#include <sstream>

namespace zserve::testing {

Stack::Stack(const std::string& deployment_yaml, const std::vector<std::string>& extra_args)
    : dir_(MakeTempDir()),
      client_port_(FreePort()),
      worker_port_(FreePort()),
      admin_port_(FreePort()),
      pub_port_(FreePort()) {
  WriteFile(dir_ + "/deployment.yaml", deployment_yaml);
  std::vector<std::string> args{"up",
                                dir_ + "/deployment.yaml",
                                "--client-port",
                                std::to_string(client_port_),
                                "--worker-port",
                                std::to_string(worker_port_),
                                "--admin-port",
                                std::to_string(admin_port_),
                                "--pub-port",
                                std::to_string(pub_port_),
                                "--state-dir",
                                dir_ + "/state",
                                "--metrics-port",
                                "0"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  up_ = std::make_unique<Process>(kBinary, args, dir_ + "/stack.log");
  ready_ = up_->WaitForLine("Ctrl-C stops everything.", std::chrono::seconds(30));
}

Stack::~Stack() {
  up_->Signal(SIGTERM);
  if (!up_->Wait(std::chrono::seconds(20))) up_->Signal(SIGKILL);
}

std::string Stack::client_address() const {
  return "tcp://127.0.0.1:" + std::to_string(client_port_);
}

std::string Stack::admin_address() const {
  return "tcp://127.0.0.1:" + std::to_string(admin_port_);
}

std::string Stack::worker_address() const {
  return "tcp://127.0.0.1:" + std::to_string(worker_port_);
}

std::string Stack::log() const {
  std::ifstream in(dir_ + "/stack.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace zserve::testing
