#include "tests/e2e/stack.h"

#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "zserve/client.h"

namespace zserve::testing {

Stack::Stack(const std::string& deployment_yaml, const std::vector<std::string>& extra_args)
    : dir_(MakeTempDir()) {
  WriteFile(dir_ + "/deployment.yaml", deployment_yaml);
  // The ports are picked here and bound later by `up`'s children: another
  // process (a test running alongside) may bind one in between, a ZeroMQ
  // port or a metrics port `up` picked. Then the broker cannot bind
  // ("Address already in use"), `up` stops, and the stack starts again on
  // other ports and a fresh state directory; any other failure is the test's.
  for (int attempt = 1; attempt <= 3; ++attempt) {
    client_port_ = FreePort();
    worker_port_ = FreePort();
    admin_port_ = FreePort();
    pub_port_ = FreePort();
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
                                  dir_ + "/state" + (attempt > 1 ? std::to_string(attempt) : ""),
                                  "--metrics-port",
                                  "0",
                                  "--http-port",
                                  "0"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    up_ = std::make_unique<Process>(kBinary, args, dir_ + "/stack.log");
    ready_ = up_->WaitForLine("Ctrl-C stops everything.", std::chrono::seconds(30)) &&
             AllReplicasRegistered(client_address(), std::chrono::seconds(30));
    if (ready_ || log().find("Address already in use") == std::string::npos) return;
    up_->Signal(SIGTERM);
    if (!up_->Wait(std::chrono::seconds(20))) up_->Signal(SIGKILL);
    up_->Wait(std::chrono::seconds(5));
    WriteFile(dir_ + "/stack.log", "");  // the next attempt's log only
  }
}

bool AllReplicasRegistered(const std::string& broker_address, std::chrono::milliseconds limit) {
  ClientOptions o;
  o.broker_address = broker_address;
  StatusOr<std::unique_ptr<Client>> client = Client::Create(o);
  if (!client.ok()) return false;
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    // Each check is a STATUS round trip to the broker.
    StatusOr<std::string> status = (*client)->BrokerStatus(std::chrono::milliseconds(2000));
    if (!status.ok()) continue;
    nlohmann::json j = nlohmann::json::parse(*status, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.contains("backends")) continue;
    bool all = true;
    for (const auto& [name, b] : j["backends"].items()) {
      all = all && b["replicas"] == b["desired_replicas"];
    }
    if (all) return true;
  }
  return false;
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

std::string Stack::updates_address() const {
  return "tcp://127.0.0.1:" + std::to_string(pub_port_);
}

std::string Stack::worker_address() const {
  return "tcp://127.0.0.1:" + std::to_string(worker_port_);
}

std::string Stack::http_url() const {
  // The banner line "  http     http://127.0.0.1:PORT   (try: ...)".
  std::istringstream in(up_->output());
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string first, url;
    if (words >> first >> url && first == "http") return url;
  }
  return "";
}

std::string Stack::log() const { return ReadFile(dir_ + "/stack.log"); }

}  // namespace zserve::testing
