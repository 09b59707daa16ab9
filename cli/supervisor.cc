#include "cli/supervisor.h"

#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/logging.h"
#include "common/signals.h"
#include "common/zmq_util.h"
#include "controller/deployment_file.h"
#include "zserve/client.h"

namespace zserve::cli {
namespace {

struct Child {
  std::string name;
  std::string role;  // controller, broker, worker
  pid_t pid = -1;
};

std::string SelfExe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "zserve";
}

pid_t Spawn(const std::string& exe, const std::vector<std::string>& args) {
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid != 0) return pid;
  // Child: die with the supervisor, even on its kill -9.
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) _exit(1);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(exe.c_str()));
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv(exe.c_str(), argv.data());
  _exit(127);
}

class Stack {
 public:
  Stack(UpOptions o, Logger log) : o_(std::move(o)), log_(std::move(log)), exe_(SelfExe()) {}

  void Start(const schemas::ConfigState& state) {
    const std::string level = "--log-level=" + o_.log_level;
    Add("controller", "controller",
        {"controller", "--config", o_.deployment_file, "--admin-bind",
         LoopbackAddress(o_.admin_port), "--pub-bind", LoopbackAddress(o_.pub_port), level});
    Add("broker", "broker",
        {"broker", "--client-bind", LoopbackAddress(o_.client_port), "--worker-bind",
         LoopbackAddress(o_.worker_port), "--controller", LoopbackAddress(o_.admin_port),
         "--controller-pub", LoopbackAddress(o_.pub_port), level});
    for (const auto& [name, b] : state.backends) {
      for (uint32_t i = 1; i <= b.num_replicas; ++i) {
        std::string tag = name + "-" + std::to_string(i);
        Add(tag, "worker",
            {"worker", "--backend", name, "--handler", b.handler, "--broker",
             LoopbackAddress(o_.worker_port), "--replica-tag", tag, level});
      }
    }
  }

  // Reaps exited children; returns the names of those that exited.
  std::vector<std::string> Reap() {
    std::vector<std::string> gone;
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      for (Child& c : children_) {
        if (c.pid != pid) continue;
        c.pid = -1;
        gone.push_back(c.name);
        if (!stopping_) {
          log_->error("{} (pid {}) exited unexpectedly ({}); it is not restarted", c.name, pid,
                      Describe(status));
        }
      }
    }
    return gone;
  }

  bool Alive(const std::string& role) const {
    for (const Child& c : children_) {
      if (c.role == role && c.pid > 0) return true;
    }
    return false;
  }

  // Workers first (they drain), then the broker, then the controller.
  void Stop(SignalPipe& signals) {
    stopping_ = true;
    for (const char* role : {"worker", "broker", "controller"}) {
      for (Child& c : children_) {
        if (c.role == role && c.pid > 0) kill(c.pid, SIGTERM);
      }
      WaitRole(role, signals, std::chrono::seconds(10));
    }
    for (Child& c : children_) {
      if (c.pid > 0) {
        log_->warn("{} (pid {}) did not stop in time: killing it", c.name, c.pid);
        kill(c.pid, SIGKILL);
        waitpid(c.pid, nullptr, 0);
        c.pid = -1;
      }
    }
  }

 private:
  static std::string Describe(int status) {
    if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
    return "status " + std::to_string(status);
  }

  void Add(std::string name, std::string role, std::vector<std::string> args) {
    pid_t pid = Spawn(exe_, args);
    log_->info("started {} (pid {})", name, pid);
    children_.push_back({std::move(name), std::move(role), pid});
  }

  void WaitRole(const std::string& role, SignalPipe& signals, std::chrono::milliseconds limit) {
    TimePoint end = Clock::now() + limit;
    while (Alive(role) && Clock::now() < end) {
      pollfd p{signals.fd(), POLLIN, 0};
      auto left = std::chrono::ceil<std::chrono::milliseconds>(end - Clock::now());
      poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
      signals.Take();  // SIGCHLD wakes us; a second Ctrl-C does not cut the drain short
      Reap();
    }
  }

  UpOptions o_;
  Logger log_;
  std::string exe_;
  std::vector<Child> children_;
  bool stopping_ = false;
};

// True once every endpoint's backends with weight > 0 have a live replica.
bool Served(const schemas::ConfigState& state, const std::string& status_json) {
  nlohmann::json j = nlohmann::json::parse(status_json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || j.value("config_version", 0) == 0) return false;
  for (const auto& [name, e] : state.endpoints) {
    for (const auto& [backend, weight] : e.traffic) {
      if (weight <= 0) continue;
      const auto& b = j["backends"];
      if (!b.contains(backend) || b[backend].value("replicas", 0) < 1) return false;
    }
  }
  return true;
}

bool StopRequested(const std::vector<int>& signals) {
  for (int s : signals) {
    if (s == SIGINT || s == SIGTERM) return true;
  }
  return false;
}

}  // namespace

int RunUp(UpOptions o) {
  Logger log = MakeLogger("up", o.log_level);
  StatusOr<schemas::ConfigState> state = controller::LoadDeploymentFile(o.deployment_file);
  if (!state.ok()) {
    std::fprintf(stderr, "zserve up: %s\n", state.status().ToString().c_str());
    return 1;
  }
  for (int* port : {&o.client_port, &o.worker_port, &o.admin_port, &o.pub_port}) {
    if (*port == 0) *port = PickFreeLoopbackPort();
  }
  SignalPipe& signals = SignalPipe::Install();
  Stack stack(o, log);
  stack.Start(*state);

  ClientOptions copts;
  copts.broker_address = LoopbackAddress(o.client_port);
  std::unique_ptr<Client> client = std::move(Client::Create(copts)).value();
  TimePoint end = Clock::now() + o.ready_timeout;
  bool ready = false;
  while (!ready) {
    StatusOr<std::string> status = client->BrokerStatus(std::chrono::milliseconds(500));
    ready = status.ok() && Served(*state, *status);
    if (ready) break;
    stack.Reap();
    if (!stack.Alive("broker") || !stack.Alive("controller") || Clock::now() >= end ||
        StopRequested(signals.Take())) {
      std::fprintf(stderr, "zserve up: the stack did not become ready%s; stopping\n",
                   Clock::now() >= end ? " in time" : "");
      stack.Stop(signals);
      return 1;
    }
    // Between checks, wait on signals (Ctrl-C, a child's exit) for a moment.
    pollfd p{signals.fd(), POLLIN, 0};
    poll(&p, 1, 50);
  }

  std::printf("zserve is up: %zu endpoints, %zu backends from %s\n", state->endpoints.size(),
              state->backends.size(), o.deployment_file.c_str());
  std::printf("  clients  %s   (try: zserve call %s hello)\n",
              LoopbackAddress(o.client_port).c_str(),
              state->endpoints.empty() ? "ENDPOINT" : state->endpoints.begin()->first.c_str());
  std::printf("  workers  %s\n", LoopbackAddress(o.worker_port).c_str());
  std::printf("  admin    %s\n", LoopbackAddress(o.admin_port).c_str());
  std::printf("  updates  %s\n", LoopbackAddress(o.pub_port).c_str());
  std::printf("Ctrl-C stops everything.\n");
  std::fflush(stdout);

  while (true) {
    pollfd p{signals.fd(), POLLIN, 0};
    poll(&p, 1, -1);
    bool stop = StopRequested(signals.Take());
    stack.Reap();
    if (stop) break;
  }
  log->info("stopping: workers first");
  stack.Stop(signals);
  log->info("stopped");
  return 0;
}

}  // namespace zserve::cli
