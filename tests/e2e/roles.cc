#include "tests/e2e/roles.h"

#include <algorithm>
#include <csignal>

#include "tests/e2e/stack.h"

namespace zserve::testing {

Roles::Roles(const std::string& yaml, RolesOptions options)
    : options_(std::move(options)), dir_(MakeTempDir()) {
  WriteFile(dir_ + "/deployment.yaml", yaml);
  for (std::string* a : {&client_, &workers_, &admin_, &pub_}) {
    *a = "tcp://127.0.0.1:" + std::to_string(FreePort());
  }
  std::vector<std::string> args{"controller",
                                "--store",
                                dir_ + "/controller.db",
                                "--config",
                                dir_ + "/deployment.yaml",
                                "--admin-bind",
                                admin_,
                                "--pub-bind",
                                pub_,
                                "--metrics-bind",
                                "127.0.0.1:0"};
  args.insert(args.end(), options_.controller_args.begin(), options_.controller_args.end());
  controller_ = std::make_unique<Process>(kBinary, args, log());
  StartBroker();
}

Roles::~Roles() = default;

void Roles::StartBroker() {
  std::vector<std::string> args{"broker",
                                "--client-bind",
                                client_,
                                "--worker-bind",
                                workers_,
                                "--controller",
                                admin_,
                                "--controller-pub",
                                pub_,
                                "--heartbeat-ms",
                                std::to_string(options_.heartbeat.count()),
                                "--metrics-bind",
                                options_.broker_metrics_bind};
  args.insert(args.end(), options_.broker_args.begin(), options_.broker_args.end());
  broker_ = std::make_unique<Process>(kBinary, args, log());
}

bool Roles::KillBroker() {
  broker_->Signal(SIGKILL);
  return broker_->Wait(std::chrono::milliseconds(5000)).has_value();
}

Process& Roles::StartWorker(const std::string& backend, const std::string& handler,
                            const std::vector<std::string>& extra_args) {
  std::vector<std::string> args{
      "worker",    "--backend",     backend,
      "--handler", handler,         "--broker",
      workers_,    "--replica-tag", backend + "-" + std::to_string(workers_started_.size() + 1)};
  // The roles' heartbeat, unless this worker is given its own.
  if (std::find(extra_args.begin(), extra_args.end(), "--heartbeat-ms") == extra_args.end()) {
    args.insert(args.end(), {"--heartbeat-ms", std::to_string(options_.heartbeat.count())});
  }
  args.insert(args.end(), options_.worker_args.begin(), options_.worker_args.end());
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  workers_started_.push_back(std::make_unique<Process>(kBinary, args, log()));
  return *workers_started_.back();
}

}  // namespace zserve::testing
