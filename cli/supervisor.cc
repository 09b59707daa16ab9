#include "cli/supervisor.h"

#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <vector>

#include "common/logging.h"
#include "common/signals.h"
#include "common/zmq_util.h"
#include "controller/deployment_file.h"
#include "gateway/gateway.h"
#include "schemas/config_subscriber.h"
#include "worker/builtin_handlers.h"
#include "zserve/client.h"

namespace zserve::cli {
namespace {

struct Child {
  std::string name;
  std::string role;  // controller, broker, worker
  pid_t pid = -1;
  std::string backend;  // workers: what they serve, with which handler
  std::string handler;
  bool draining = false;          // sent SIGTERM by Reconcile
  int metrics_port = 0;           // its /metrics
  std::vector<std::string> args;  // to start it again
};

// Whether up can start replicas of `b`: none are wanted, or its handler is
// built in (a plugin's workers are started by hand, docs/deployment.md).
Status UpCanStart(const schemas::BackendConfig& b) {
  if (b.num_replicas == 0) return Status::Ok();
  const std::vector<std::string> builtin = worker::BuiltinHandlerNames();
  if (std::find(builtin.begin(), builtin.end(), b.handler) != builtin.end()) return Status::Ok();
  std::string list;
  for (const std::string& name : builtin) list += (list.empty() ? "" : ", ") + name;
  return BadRequest("backend '" + b.name + "': handler '" + b.handler + "' is not built in (" +
                    list +
                    "); up starts replicas of built-in handlers only: for a plugin, give "
                    "num_replicas 0 and start its workers with zserve worker --plugin");
}

std::string SelfExe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "zserve";
}

pid_t Spawn(const std::string& exe, const std::vector<std::string>& args) {
  // Everything the child needs is made before fork(): up has other threads
  // (ZeroMQ's, the logger's), and one of them may hold the allocator's lock
  // at the fork, so the child calls only async-signal-safe functions until
  // its exec. (Under ASan in CI a controller child once hung before it
  // logged a line or created its store, and did not stop on SIGINT, as a
  // child stuck before exec with up's signal handlers would.)
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(exe.c_str()));
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = ForkForExec();
  if (pid != 0) return pid;
  // Child: die with the supervisor, even on its kill -9.
  if (!DieWithParent(parent, SIGTERM)) _exit(1);
  // In a process group of its own: the terminal's Ctrl-C (SIGINT) and
  // hang-up (SIGHUP) go to the foreground group, up's, and up alone stops
  // the stack in order. Else the broker would exit with the workers still
  // draining, and the controller would take SIGHUP for a reload.
  setpgid(0, 0);
  execv(argv[0], argv.data());
  _exit(127);
}

class Stack {
 public:
  Stack(UpOptions o, Logger log) : o_(std::move(o)), log_(std::move(log)), exe_(SelfExe()) {}

  // Controller and broker; the workers come from Reconcile.
  void Start(const std::string& store_path) {
    int port = MetricsPort("controller");
    Add("controller", "controller",
        {"controller", "--store", store_path, "--config", o_.deployment_file, "--admin-bind",
         LoopbackAddress(o_.admin_port), "--pub-bind", LoopbackAddress(o_.pub_port),
         "--metrics-bind", MetricsBind(port), Level()});
    children_.back().metrics_port = port;
    port = MetricsPort("broker");
    Add("broker", "broker",
        {"broker", "--metrics-bind", MetricsBind(port), "--client-bind",
         LoopbackAddress(o_.client_port), "--worker-bind", LoopbackAddress(o_.worker_port),
         "--controller", LoopbackAddress(o_.admin_port), "--controller-pub",
         LoopbackAddress(o_.pub_port), "--heartbeat-ms", std::to_string(o_.heartbeat_ms),
         "--heartbeat-liveness", std::to_string(o_.heartbeat_liveness), Level()});
    children_.back().metrics_port = port;
    if (o_.http_port > 0) {
      Add("http", "http",
          {"http", "--listen", "127.0.0.1:" + std::to_string(o_.http_port), "--broker",
           LoopbackAddress(o_.client_port), "--controller", LoopbackAddress(o_.admin_port),
           "--controller-pub", LoopbackAddress(o_.pub_port), Level()});
    }
  }

  // The metrics HTTP port of a new child of `role` (UpOptions::metrics_port).
  int MetricsPort(const std::string& role) const {
    if (o_.metrics_port == 0) return PickFreeLoopbackPort();
    if (role == "controller") return o_.metrics_port;
    if (role == "broker") return o_.metrics_port + 1;
    // The lowest no worker of ours holds and no other process does (a port
    // taken by another program would make the worker exit, again and again).
    int port = o_.metrics_port + 2;
    while (port < 65535 &&
           (std::any_of(children_.begin(), children_.end(),
                        [port](const Child& c) { return c.metrics_port == port; }) ||
            !CanBindLoopback(port, /*reuse_addr=*/true))) {
      ++port;
    }
    return port;
  }
  // A worker's metrics port: the one its tag had, when a replacement takes
  // the tag of a crashed worker and that port is free (a scrape config keeps
  // finding it, also with --metrics-port 0); else MetricsPort's.
  int WorkerMetricsPort(const std::string& tag) const {
    auto had = tag_ports_.find(tag);
    if (had != tag_ports_.end() &&
        std::none_of(children_.begin(), children_.end(),
                     [&had](const Child& c) { return c.metrics_port == had->second; }) &&
        CanBindLoopback(had->second, /*reuse_addr=*/true)) {
      return had->second;
    }
    return MetricsPort("worker");
  }
  static std::string MetricsBind(int port) { return "127.0.0.1:" + std::to_string(port); }

  // Name and metrics port of each running child that serves metrics (not
  // the gateway), in start order.
  std::vector<std::pair<std::string, int>> MetricsPorts() const {
    std::vector<std::pair<std::string, int>> out;
    for (const Child& c : children_) {
      if (c.pid > 0 && !c.draining && c.metrics_port > 0) out.emplace_back(c.name, c.metrics_port);
    }
    return out;
  }

  // Makes the running workers match `state`: drains (SIGTERM) the workers of
  // deleted backends, of a changed handler and beyond num_replicas (newest
  // first), then starts what is missing.
  // A backend whose handler is not built in (a change made with ctl; the
  // file was checked at start) gets no new worker from up, and its running
  // ones are kept: up would start workers that exit at once, and take the
  // backend down.
  void Reconcile(const schemas::ConfigState& state) {
    last_state_ = state;
    std::map<std::string, uint32_t> live;
    for (const auto& [name, b] : state.backends) {
      const std::string key = name + "\n" + b.handler;
      if (Status s = UpCanStart(b); !s.ok() && warned_.insert(key).second) {
        log_->error("{}; up starts no replica of it and keeps those running", s.message());
      }
    }
    for (Child& c : children_) {
      if (c.role != "worker" || c.pid <= 0 || c.draining) continue;
      auto b = state.backends.find(c.backend);
      if (b != state.backends.end() &&
          (b->second.handler == c.handler || !UpCanStart(b->second).ok()) &&
          live[c.backend] < b->second.num_replicas) {
        ++live[c.backend];
        continue;
      }
      log_->info("draining {} (pid {})", c.name, c.pid);
      kill(c.pid, SIGTERM);
      c.draining = true;
    }
    TimePoint now = Clock::now();
    reconciled_at_ = now;
    for (const auto& [name, b] : state.backends) {
      if (!UpCanStart(b).ok()) continue;
      std::vector<std::string>& reusable = free_tags_[name];
      // A crashed replica's tag holds its place until its backoff is over.
      auto waiting = static_cast<uint32_t>(
          std::count_if(reusable.begin(), reusable.end(),
                        [&](const std::string& tag) { return crashes_[tag].restart_at > now; }));
      for (uint32_t n = live[name]; n < b.num_replicas; ++n) {
        std::string tag;
        auto due = std::find_if(reusable.begin(), reusable.end(), [&](const std::string& t) {
          return crashes_[t].restart_at <= now;
        });
        if (due != reusable.end()) {
          tag = *due;
          reusable.erase(due);
        } else if (waiting > 0) {
          --waiting;
          continue;
        } else {
          tag = name + "-" + std::to_string(++started_[name]);
        }
        int port = WorkerMetricsPort(tag);
        tag_ports_[tag] = port;
        Add(tag, "worker",
            {"worker",
             "--metrics-bind",
             MetricsBind(port),
             "--start-count",
             std::to_string(++starts_[tag]),
             "--backend",
             name,
             "--handler",
             b.handler,
             "--broker",
             LoopbackAddress(o_.worker_port),
             "--replica-tag",
             tag,
             "--controller",
             LoopbackAddress(o_.admin_port),
             "--controller-pub",
             LoopbackAddress(o_.pub_port),
             "--heartbeat-ms",
             std::to_string(o_.heartbeat_ms),
             "--heartbeat-liveness",
             std::to_string(o_.heartbeat_liveness),
             Level()},
            name, b.handler);
        children_.back().metrics_port = port;
        log_->info("{} serves metrics on http://{}/metrics", tag, MetricsBind(port));
      }
    }
  }

  // Reaps exited children.
  void Reap() {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      for (auto it = children_.begin(); it != children_.end(); ++it) {
        if (it->pid != pid) continue;
        if (stopping_ || it->draining) {
          log_->info("{} (pid {}) exited ({})", it->name, pid, Describe(status));
        } else if (it->role == "worker") {
          ScheduleRestart(*it, status);
          // Its replacement takes its tag, so its metrics series go on (its
          // starts counter counts the restart).
          free_tags_[it->backend].push_back(it->name);
        } else {
          // The broker or the controller: the same command again (same
          // ports, same store), after the same backoff as workers. The
          // controller comes back from its store alone: the deployment file
          // was applied at its first start (MaybeRestart waits for a
          // published state), and applying it again would undo the changes
          // acknowledged since.
          ScheduleRestart(*it, status);
          if (it->role == "controller" && std::find(it->args.begin(), it->args.end(),
                                                    "--config-on-reload-only") == it->args.end()) {
            it->args.push_back("--config-on-reload-only");  // SIGHUP still reloads the file
          }
          respawn_.push_back(std::move(*it));
        }
        children_.erase(it);
        break;
      }
    }
  }

  // A crashed child is started again after a backoff of its own that
  // doubles with each of its crashes in a row (100 ms up to 5 s; a crash
  // after a quiet minute starts again at 100 ms), so one crashing worker
  // never delays the restart of another, or of the broker or controller.
  // Replacing a worker is Reconcile's job. The earliest restart still to
  // come, if any:
  std::optional<TimePoint> NextRestart(TimePoint now) const {
    std::optional<TimePoint> next;
    auto consider = [&](const std::string& name) {
      auto it = crashes_.find(name);
      if (it == crashes_.end() || it->second.restart_at <= now) return;
      if (!next || it->second.restart_at < *next) next = it->second.restart_at;
    };
    for (const Child& c : respawn_) consider(c.name);
    for (const auto& [backend, tags] : free_tags_) {
      for (const std::string& tag : tags) consider(tag);
    }
    return next;
  }
  void MaybeRestart(TimePoint now) {
    if (stopping_ || !last_state_) return;
    for (auto it = respawn_.begin(); it != respawn_.end();) {
      if (crashes_[it->name].restart_at > now) {
        ++it;
        continue;
      }
      Add(it->name, it->role, it->args);
      children_.back().metrics_port = it->metrics_port;
      it = respawn_.erase(it);
    }
    // Reconcile again once a crashed worker's backoff has run out since the
    // last time, to start its replacement.
    bool due = false;
    for (const auto& [backend, tags] : free_tags_) {
      for (const std::string& tag : tags) {
        TimePoint at = crashes_[tag].restart_at;
        due = due || (at > reconciled_at_ && at <= now);
      }
    }
    if (due) Reconcile(*last_state_);
  }
  int restarts() const { return restarts_; }

  bool Alive(const std::string& role) const {
    for (const Child& c : children_) {
      if (c.role == role && c.pid > 0) return true;
    }
    return false;
  }

  // The gateway (no new calls), workers (they drain), the broker, then the
  // controller.
  // Each stage is gone before the next begins: what is left of it after
  // 10 s is killed.
  void Stop(SignalPipe& signals) {
    stopping_ = true;
    for (const char* role : {"http", "worker", "broker", "controller"}) {
      for (Child& c : children_) {
        if (c.role == role && c.pid > 0) kill(c.pid, SIGTERM);
      }
      WaitRole(role, signals, std::chrono::seconds(10));
      for (Child& c : children_) {
        if (c.role == role && c.pid > 0) {
          log_->warn("{} (pid {}) did not stop in time: killing it", c.name, c.pid);
          kill(c.pid, SIGKILL);
          waitpid(c.pid, nullptr, 0);
          c.pid = -1;
        }
      }
    }
  }

 private:
  void ScheduleRestart(const Child& c, int status) {
    TimePoint now = Clock::now();
    Crashes& k = crashes_[c.name];
    if (now - k.last > std::chrono::minutes(1)) k.in_a_row = 0;
    k.last = now;
    auto backoff = std::min(std::chrono::milliseconds(100) * (1 << std::min(k.in_a_row, 6)),
                            std::chrono::milliseconds(5000));
    ++k.in_a_row;
    k.restart_at = now + backoff;
    ++restarts_;
    log_->error("{} (pid {}) exited unexpectedly ({}); restarting in {} ms", c.name, c.pid,
                Describe(status), backoff.count());
  }

  static std::string Describe(int status) {
    if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
    return "status " + std::to_string(status);
  }

  std::string Level() const { return "--log-level=" + o_.log_level; }

  void Add(std::string name, std::string role, const std::vector<std::string>& args,
           std::string backend = "", std::string handler = "") {
    pid_t pid = Spawn(exe_, args);
    log_->info("started {} (pid {})", name, pid);
    Child c;
    c.name = std::move(name);
    c.role = std::move(role);
    c.pid = pid;
    c.backend = std::move(backend);
    c.handler = std::move(handler);
    c.args = args;
    children_.push_back(std::move(c));
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
  std::map<std::string, int> started_;  // workers started per backend, for their tags
  std::map<std::string, std::vector<std::string>> free_tags_;  // of crashed workers
  std::vector<Child> respawn_;              // a crashed broker or controller, to start again
  std::map<std::string, uint64_t> starts_;  // starts per replica tag (--start-count)
  std::map<std::string, int> tag_ports_;    // the metrics port each replica tag last had
  bool stopping_ = false;
  std::optional<schemas::ConfigState> last_state_;  // what Reconcile last made true
  struct Crashes {
    int in_a_row = 0;
    TimePoint last{};
    TimePoint restart_at{};  // not before then
  };
  std::map<std::string, Crashes> crashes_;  // by child name (replica tag, "broker", ...)
  TimePoint reconciled_at_{};               // when Reconcile last ran
  std::set<std::string> warned_;            // "backend\nhandler" that UpCanStart refused
  int restarts_ = 0;
};

// True once every endpoint's backends with weight > 0 (and replicas that up
// starts) have a live replica.
// What the stack still lacks to serve `state`, by the broker's STATUS;
// empty when it serves it.
std::string NotServed(const schemas::ConfigState& state, const std::string& status_json) {
  nlohmann::json j = nlohmann::json::parse(status_json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || j.value("config_version", 0) == 0) {
    return "the broker has no configuration yet";
  }
  for (const auto& [name, e] : state.endpoints) {
    for (const auto& [backend, weight] : e.traffic) {
      // num_replicas 0: served by workers `up` does not start (users' own
      // binaries, plugins on other hosts); up does not wait for them.
      auto wanted = state.backends.find(backend);
      if (weight <= 0 || (wanted != state.backends.end() && wanted->second.num_replicas == 0)) {
        continue;
      }
      const auto& b = j["backends"];
      if (!b.contains(backend) || b[backend].value("replicas", 0) < 1) {
        return "endpoint '" + name + "' has no replica of backend '" + backend + "' registered";
      }
    }
  }
  return "";
}

// SIGHUP too: up's terminal is gone (its children are in groups of their
// own and do not see it).
bool StopRequested(const std::vector<int>& signals) {
  for (int s : signals) {
    if (s == SIGINT || s == SIGTERM || s == SIGHUP) return true;
  }
  return false;
}

// Waits up to `limit` for a signal or a new config; reconciles the workers
// with a new config and reaps exited children. True when asked to stop.
bool Step(Stack& stack, schemas::ConfigSubscriber& config, SignalPipe& signals,
          std::chrono::milliseconds limit) {
  std::vector<PollItem> items = {{.fd = signals.fd()}};
  config.AddPollItems(&items);
  TimePoint now = Clock::now();
  for (std::optional<TimePoint> timer : {config.NextTimer(), stack.NextRestart(now)}) {
    if (!timer) continue;
    limit = std::clamp(std::chrono::ceil<std::chrono::milliseconds>(*timer - now),
                       std::chrono::milliseconds(0), limit);
  }
  Poll(items, limit);  // a signal (EINTR) returns early; it is on the pipe
  bool stop = StopRequested(signals.Take());
  if (std::optional<schemas::Snapshot> snapshot = config.Read(Clock::now()); snapshot && !stop) {
    stack.Reconcile(snapshot->state);
  }
  stack.Reap();
  if (!stop) stack.MaybeRestart(Clock::now());
  return stop;
}

}  // namespace

int RunUp(UpOptions o) {
  Logger log = MakeLogger("up", o.log_level);
  StatusOr<schemas::ConfigState> state = controller::LoadDeploymentFile(o.deployment_file);
  if (!state.ok()) {
    std::fprintf(stderr, "zserve up: %s\n", state.status().ToString().c_str());
    return 1;
  }
  for (const auto& [name, b] : state->backends) {
    if (Status s = UpCanStart(b); !s.ok()) {
      std::fprintf(stderr, "zserve up: %s: %s\n", o.deployment_file.c_str(), s.message().c_str());
      return 1;
    }
  }
  if (mkdir(o.state_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    std::fprintf(stderr, "zserve up: cannot create the state directory '%s': %s\n",
                 o.state_dir.c_str(), std::strerror(errno));
    return 1;
  }
  const std::string store_path = o.state_dir + "/controller.db";
  // The ports given are the children's to bind: never picked for another.
  // One already taken (another `up` of the same ports, most likely) is
  // refused here: else this `up` would serve with the other stack's broker
  // and controller while its own fail to bind, over and over.
  const std::pair<int, const char*> given[] = {
      {o.client_port, "--client-port"},
      {o.worker_port, "--worker-port"},
      {o.admin_port, "--admin-port"},
      {o.pub_port, "--pub-port"},
      {o.http_port, "--http-port"},
      {o.metrics_port, "--metrics-port (the controller's)"},
      {o.metrics_port > 0 ? o.metrics_port + 1 : 0, "--metrics-port + 1 (the broker's)"}};
  for (const auto& [port, flag] : given) {
    if (port <= 0) continue;
    for (const auto& [other, other_flag] : given) {
      if (other == port && other_flag != flag) {
        std::fprintf(stderr, "zserve up: port %d is given twice: %s and %s\n", port, flag,
                     other_flag);
        return 1;
      }
    }
    if (!CanBindLoopback(port, /*reuse_addr=*/true)) {
      std::fprintf(stderr,
                   "zserve up: port %d (%s) is in use on 127.0.0.1: another zserve up, or "
                   "another program, has it; stop that or give another port\n",
                   port, flag);
      return 1;
    }
    ReserveLoopbackPort(port);
  }
  for (int* port : {&o.client_port, &o.worker_port, &o.admin_port, &o.pub_port, &o.http_port}) {
    if (*port == 0) *port = PickFreeLoopbackPort();
  }
  SignalPipe& signals = SignalPipe::Install();
  zmq::context_t context(1);
  schemas::ConfigSubscriberOptions sopts;
  sopts.snapshot_address = LoopbackAddress(o.admin_port);
  sopts.updates_address = LoopbackAddress(o.pub_port);
  sopts.context = &context;
  sopts.logger = log;
  StatusOr<std::unique_ptr<schemas::ConfigSubscriber>> config =
      schemas::ConfigSubscriber::Create(sopts);
  if (!config.ok()) {
    std::fprintf(stderr, "zserve up: %s\n", config.status().ToString().c_str());
    return 1;
  }
  Stack stack(o, log);
  stack.Start(store_path);

  ClientOptions copts;
  copts.broker_address = LoopbackAddress(o.client_port);
  std::unique_ptr<Client> client = std::move(Client::Create(copts)).value();
  TimePoint end = Clock::now() + o.ready_timeout;
  TimePoint next_check = Clock::now();
  std::string waiting = "the broker did not answer STATUS";  // what the stack lacks, last seen
  while (true) {
    if (Clock::now() >= next_check) {
      StatusOr<std::string> status = client->BrokerStatus(std::chrono::milliseconds(500));
      waiting = status.ok() ? NotServed(*state, *status)
                            : "the broker did not answer STATUS: " + status.status().message();
      if (waiting.empty() && o.http_port > 0 &&
          !gateway::ServesRoutes("127.0.0.1", o.http_port, std::chrono::milliseconds(500))) {
        waiting = "the HTTP gateway does not serve its routes";
      }
      if (waiting.empty()) break;
      next_check = Clock::now() + std::chrono::milliseconds(50);
    }
    if (Step(stack, **config, signals, std::chrono::milliseconds(50))) {
      // Asked to stop (Ctrl-C) while starting: not a failure.
      std::fprintf(stderr, "zserve up: stopping before the stack was ready, as asked\n");
      stack.Stop(signals);
      return 0;
    }
    const char* gone = !stack.Alive("controller")                  ? "controller"
                       : !stack.Alive("broker")                    ? "broker"
                       : (o.http_port > 0 && !stack.Alive("http")) ? "http gateway"
                                                                   : nullptr;
    if (gone != nullptr || Clock::now() >= end) {
      if (gone != nullptr) {
        std::fprintf(stderr,
                     "zserve up: the %s exited before the stack was ready (its log above "
                     "says why); stopping\n",
                     gone);
      } else {
        std::fprintf(stderr,
                     "zserve up: the stack did not become ready in %lld ms (%s); stopping\n",
                     static_cast<long long>(o.ready_timeout.count()), waiting.c_str());
      }
      stack.Stop(signals);
      return 1;
    }
  }

  const size_t endpoints = state->endpoints.size(), backends = state->backends.size();
  std::printf("zserve is up: %zu endpoint%s, %zu backend%s from %s\n", endpoints,
              endpoints == 1 ? "" : "s", backends, backends == 1 ? "" : "s",
              o.deployment_file.c_str());
  // The hint names the broker unless it is the one `zserve call` finds by default.
  std::printf("  clients  %s   (try: zserve call%s %s hello)\n",
              LoopbackAddress(o.client_port).c_str(),
              o.client_port == 5555 ? "" : (" --broker " + LoopbackAddress(o.client_port)).c_str(),
              state->endpoints.empty() ? "ENDPOINT" : state->endpoints.begin()->first.c_str());
  std::printf("  workers  %s\n", LoopbackAddress(o.worker_port).c_str());
  std::printf("  admin    %s   (try: zserve ctl --controller %s get)\n",
              LoopbackAddress(o.admin_port).c_str(), LoopbackAddress(o.admin_port).c_str());
  std::printf("  updates  %s\n", LoopbackAddress(o.pub_port).c_str());
  if (o.http_port > 0) {
    std::string route;
    for (const auto& [name, e] : state->endpoints) {
      if (route.empty()) route = e.route;
    }
    std::string url = "http://127.0.0.1:" + std::to_string(o.http_port);
    std::printf("  http     %s   (try: %s)\n", url.c_str(),
                route.empty() ? ("curl " + url + "/-/routes").c_str()
                              : ("curl -d hello " + url + route).c_str());
  }
  std::printf("  store    %s\n", store_path.c_str());
  for (const auto& [name, port] : stack.MetricsPorts()) {
    std::printf("  metrics  %-10s http://%s/metrics%s\n", name.c_str(),
                ("127.0.0.1:" + std::to_string(port)).c_str(),
                name == "broker" ? "   (and /healthz, /readyz)" : "");
  }
  std::printf("Ctrl-C stops everything.\n");
  std::fflush(stdout);

  while (!Step(stack, **config, signals, std::chrono::milliseconds(1000))) {
  }
  log->info("stopping: the gateway and workers first");
  stack.Stop(signals);
  log->info("stopped");
  return 0;
}

}  // namespace zserve::cli
