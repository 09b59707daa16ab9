// The zserve binary: one executable, one subcommand per process role and
// per operator action. Each subcommand parses its flags with CLI11, builds the
// options struct of its component and runs it.
#include <prometheus/registry.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "broker/broker.h"
#include "cli/bench.h"
#include "cli/ctl.h"
#include "cli/curve_flags.h"
#include "cli/supervisor.h"
#include "common/liveness.h"
#include "common/logging.h"
#include "common/metrics_server.h"
#include "common/signals.h"
#include "controller/controller.h"
#include "gateway/gateway.h"
#include "worker/builtin_handlers.h"
#include "worker/plugin_handler.h"
#include "zserve/client.h"
#include "zserve/worker.h"

namespace zserve::cli {
namespace {

// --heartbeat-ms of up, broker and worker: what a READY may name.
const CLI::Range kHeartbeatRange(kMinHeartbeatInterval.count(), kMaxHeartbeatInterval.count());

int Fail(const Status& s, const char* what) {
  std::fprintf(stderr, "zserve %s: %s\n", what, s.ToString().c_str());
  return 1;
}

// True when a signal that stops the process arrived; SIGHUP runs `on_hup`.
bool TakeSignals(SignalPipe& signals, const std::function<void()>& on_hup = {}) {
  bool stop = false;
  for (int s : signals.Take()) {
    if (s == SIGINT || s == SIGTERM) stop = true;
    if (s == SIGHUP && on_hup) on_hup();
  }
  return stop;
}

struct CallArgs {
  std::string broker = "tcp://127.0.0.1:5555";
  CurveFlags curve;
  std::string endpoint;
  std::string payload;
  bool payload_given = false;
  int64_t timeout_ms = 0;
  std::string method = "__call__";
  std::string shard_key;
  int32_t priority = 0;
};

int RunCall(const CallArgs& a) {
  std::string payload = a.payload;
  if (a.payload == "-") {
    payload.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  StatusOr<CurveKeys> keys = LoadCurveKeys(a.curve);
  if (!keys.ok()) return Fail(keys.status(), "call");
  ClientOptions copts;
  copts.broker_address = a.broker;
  copts.curve_key = keys->key;
  copts.curve_server_key = keys->broker_key;
  StatusOr<std::unique_ptr<Client>> client = Client::Create(copts);
  if (!client.ok()) return Fail(client.status(), "call");
  CallOptions o;
  o.method = a.method;
  o.timeout = std::chrono::milliseconds(a.timeout_ms);
  o.shard_key = a.shard_key;
  o.priority = a.priority;
  StatusOr<std::string> r = (*client)->Call(a.endpoint, payload, o);
  if (!r.ok()) return Fail(r.status(), "call");
  std::fwrite(r->data(), 1, r->size(), stdout);
  if (r->empty() || r->back() != '\n') std::fputc('\n', stdout);
  return 0;
}

// Serves `registry` on `bind` (none when empty) and logs where.
StatusOr<std::unique_ptr<MetricsServer>> ServeMetrics(
    const std::string& bind, prometheus::Registry* registry, const Logger& log,
    std::map<std::string, std::function<HttpAnswer()>> handlers = {}) {
  if (bind.empty()) return std::unique_ptr<MetricsServer>();
  StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Create({bind, registry, std::move(handlers)});
  if (server.ok()) log->info("metrics on http://{}/metrics", (*server)->address());
  return server;
}

std::string Join(const nlohmann::json& map) {
  std::string out;
  for (auto& [k, v] : map.items()) out += (out.empty() ? "" : " ") + k + "=" + v.dump();
  return out.empty() ? "-" : out;
}

// Which of --handler and --plugin a worker runs (true: the plugin). A flag
// given wins; with neither, ZSERVE_HANDLER or ZSERVE_PLUGIN, exactly one.
StatusOr<bool> WorkerHandlerChoice(bool handler_flag, bool plugin_flag, std::string* handler,
                                   std::string* plugin, bool plugin_arg) {
  if (!handler_flag && !plugin_flag) {
    const char* h = std::getenv("ZSERVE_HANDLER");
    const char* p = std::getenv("ZSERVE_PLUGIN");
    if (h != nullptr && *h != '\0' && p != nullptr && *p != '\0') {
      return BadRequest(
          "ZSERVE_HANDLER and ZSERVE_PLUGIN are both set: set one (or give "
          "--handler or --plugin, which wins)");
    }
    if (h != nullptr && *h != '\0') {
      *handler = h;
      handler_flag = true;
    } else if (p != nullptr && *p != '\0') {
      *plugin = p;
      plugin_flag = true;
    } else {
      return BadRequest(
          "one of --handler and --plugin is required (or ZSERVE_HANDLER or "
          "ZSERVE_PLUGIN)");
    }
  }
  if (plugin_arg && !plugin_flag) return BadRequest("--plugin-arg needs --plugin");
  return plugin_flag;
}

// `ready_only`: exit 0 when the broker says it is ready, else 1 (a failed
// STATUS, a broker not up, counts as not ready).
int RunStatus(const std::string& broker, const CurveFlags& curve, bool json, bool ready_only,
              int64_t timeout_ms) {
  StatusOr<CurveKeys> keys = LoadCurveKeys(curve);
  if (!keys.ok()) return Fail(keys.status(), "status");
  ClientOptions copts;
  copts.broker_address = broker;
  copts.curve_key = keys->key;
  copts.curve_server_key = keys->broker_key;
  StatusOr<std::unique_ptr<Client>> client = Client::Create(copts);
  if (!client.ok()) return Fail(client.status(), "status");
  StatusOr<std::string> r = (*client)->BrokerStatus(std::chrono::milliseconds(timeout_ms));
  if (!r.ok()) return Fail(r.status(), "status");
  nlohmann::json j = nlohmann::json::parse(*r, nullptr, false);
  if (ready_only) {
    bool ready = !j.is_discarded() && j.value("ready", false);
    std::string why = j.is_discarded() ? "unreadable STATUS reply"
                                       : j.value("not_ready_reason", std::string("?"));
    std::printf("%s\n", ready ? "ready" : ("not ready: " + why).c_str());
    return ready ? 0 : 1;
  }
  if (json || j.is_discarded()) {
    std::printf("%s\n", r->c_str());
    return 0;
  }
  std::printf("config version %llu, %s\n",
              static_cast<unsigned long long>(j.value("config_version", 0ull)),
              j.value("ready", false)
                  ? "ready"
                  : ("NOT READY: " + j.value("not_ready_reason", std::string("?"))).c_str());
  std::printf("%-24s %-28s %-20s %8s %8s %7s\n", "ENDPOINT", "TRAFFIC", "SHADOW", "REQ/1m",
              "ERR/1m", "ERR%");
  for (auto& [name, e] : j["endpoints"].items()) {
    uint64_t requests = e.value("requests_last_minute", 0ull);
    uint64_t errors = e.value("errors_last_minute", 0ull);
    std::string rate = requests == 0 ? "-" : std::to_string(100 * errors / requests) + "%";
    std::printf("%-24s %-28s %-20s %8llu %8llu %7s\n", name.c_str(), Join(e["traffic"]).c_str(),
                Join(e.value("shadow", nlohmann::json::object())).c_str(),
                static_cast<unsigned long long>(requests), static_cast<unsigned long long>(errors),
                rate.c_str());
  }
  std::printf("%-24s %13s %8s %9s %8s\n", "BACKEND", "LIVE/DESIRED", "QUEUED", "IN_FLIGHT",
              "MAX_CQ");
  for (auto& [name, b] : j["backends"].items()) {
    std::string replicas = std::to_string(b.value("replicas", 0)) + "/" +
                           std::to_string(b.value("desired_replicas", 0));
    std::printf("%-24s %13s %8d %9d %8d\n", name.c_str(), replicas.c_str(), b.value("queued", 0),
                b.value("in_flight", 0), b.value("max_concurrent_queries", 0));
  }
  return 0;
}

// A number on the command line is decimal, as in a deployment file: CLI11
// reads integers with strtoll's base 0, so 0100 was 64 and 0x10 was 16.
// Leading zeros are dropped; anything but an optional '-' and digits is
// refused.
std::string DecimalOnly(std::string& value) {
  size_t digits = value.starts_with('-') ? 1 : 0;
  if (digits == value.size() ||
      !std::all_of(value.begin() + static_cast<std::ptrdiff_t>(digits), value.end(),
                   [](char c) { return c >= '0' && c <= '9'; })) {
    return "must be a whole number in decimal, got '" + value + "'";
  }
  size_t first = value.find_first_not_of('0', digits);
  value.erase(digits, (first == std::string::npos ? value.size() - 1 : first) - digits);
  return "";
}

// Settles what every command and option shares, once they are all added:
// - integer options take decimal only (DecimalOnly);
// - a command reads the ZSERVE_* variables of its own options only. CLI11
//   reads them for every command that has no parse-complete callback, so a
//   bad ZSERVE_THREADS, meant for a worker, failed `zserve status` too.
void SettleCommands(CLI::App& app) {
  for (CLI::Option* opt : app.get_options()) {
    const std::string type = opt->get_type_name();
    if (type.starts_with("INT") || type.starts_with("UINT")) {
      opt->transform(CLI::Validator(DecimalOnly, ""));
    }
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    if (!sub->get_name().empty()) sub->parse_complete_callback([] {});
    SettleCommands(*sub);
  }
}

}  // namespace
}  // namespace zserve::cli

int main(int argc, char** argv) {
  using namespace zserve;
  using namespace zserve::cli;
  CLI::App app{"zserve: serve request handlers from worker processes over ZeroMQ"};
  app.require_subcommand(1);
  std::string log_level = "info";
  auto add_log_level = [&log_level](CLI::App* sub) {
    sub->add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
        ->envname("ZSERVE_LOG_LEVEL")
        ->check(CLI::IsMember(
            {"trace", "debug", "info", "warn", "warning", "error", "critical", "off"}));
  };

  // up
  UpOptions up;
  CLI::App* up_cmd =
      app.add_subcommand("up", "Start controller, broker and workers of a deployment");
  up_cmd->add_option("file", up.deployment_file, "Deployment file (YAML)")->capture_default_str();
  up_cmd->add_option("--client-port", up.client_port, "Broker port for clients (0: free)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  up_cmd->add_option("--worker-port", up.worker_port, "Broker port for workers (0: free)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  up_cmd->add_option("--admin-port", up.admin_port, "Controller admin/snapshot port (0: free)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  up_cmd->add_option("--pub-port", up.pub_port, "Controller update port (0: free)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  int64_t ready_timeout_ms = 30'000;
  up_cmd->add_option("--ready-timeout-ms", ready_timeout_ms, "Give up if not served by then")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{3'600'000}));
  up_cmd->add_option("--heartbeat-ms", up.heartbeat_ms, "Broker/worker heartbeat interval")
      ->capture_default_str()
      ->check(kHeartbeatRange);
  up_cmd
      ->add_option("--heartbeat-liveness", up.heartbeat_liveness,
                   "Silent intervals before a peer is dead")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  up_cmd->add_option("--state-dir", up.state_dir, "Directory of the controller's store")
      ->capture_default_str();
  up_cmd
      ->add_option("--http-port", up.http_port,
                   "HTTP gateway port on 127.0.0.1 (0: free; -1: no gateway)")
      ->capture_default_str()
      ->check(CLI::Range(-1, 65535));
  up_cmd
      ->add_option("--metrics-port", up.metrics_port,
                   "Metrics HTTP ports: controller this, broker +1, workers +2 upward (0: free)")
      ->capture_default_str()
      ->check(CLI::Range(0, 64535));  // room for the workers' ports above it
  add_log_level(up_cmd);

  // controller
  controller::ControllerOptions copts;
  CLI::App* ctl_cmd = app.add_subcommand("controller", "Run the controller");
  ctl_cmd->add_option("--store", copts.store_path, "SQLite store (created if missing)")
      ->envname("ZSERVE_STORE")
      ->required();
  ctl_cmd->add_option("--config", copts.deployment_file, "Deployment file applied at start")
      ->envname("ZSERVE_CONFIG");
  ctl_cmd->add_flag("--config-on-reload-only", copts.reload_only,
                    "Apply --config on SIGHUP only, not at start (start from the store)");
  ctl_cmd->add_option("--admin-bind", copts.admin_bind, "Admin/snapshot ROUTER address")
      ->envname("ZSERVE_ADMIN_BIND")
      ->capture_default_str();
  ctl_cmd->add_option("--pub-bind", copts.pub_bind, "Update PUB address")
      ->envname("ZSERVE_PUB_BIND")
      ->capture_default_str();
  std::string ctl_metrics = "127.0.0.1:9100";
  ctl_cmd
      ->add_option("--metrics-bind", ctl_metrics,
                   "Metrics HTTP HOST:PORT (port 0: free; empty: none)")
      ->envname("ZSERVE_METRICS_BIND")
      ->capture_default_str();
  CurveFlags ctl_curve;
  ctl_curve.Add(ctl_cmd, kCurveAllow);
  add_log_level(ctl_cmd);

  // broker
  broker::BrokerOptions bopts;
  CLI::App* broker_cmd = app.add_subcommand("broker", "Run the broker");
  broker_cmd->add_option("--client-bind", bopts.client_bind, "Client ROUTER address")
      ->envname("ZSERVE_CLIENT_BIND")
      ->capture_default_str();
  broker_cmd->add_option("--worker-bind", bopts.worker_bind, "Worker ROUTER address")
      ->envname("ZSERVE_WORKER_BIND")
      ->capture_default_str();
  broker_cmd->add_option("--controller", bopts.controller_snapshot, "Controller admin address")
      ->envname("ZSERVE_CONTROLLER")
      ->capture_default_str();
  broker_cmd->add_option("--controller-pub", bopts.controller_updates, "Controller PUB address")
      ->envname("ZSERVE_CONTROLLER_PUB")
      ->capture_default_str();
  int64_t broker_heartbeat_ms = 1000;
  broker_cmd->add_option("--heartbeat-ms", broker_heartbeat_ms, "Heartbeat interval with workers")
      ->envname("ZSERVE_HEARTBEAT_MS")
      ->capture_default_str()
      ->check(kHeartbeatRange);
  broker_cmd
      ->add_option("--heartbeat-liveness", bopts.heartbeat.liveness,
                   "Silent intervals before a replica is dead")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  broker_cmd
      ->add_option("--max-queued", bopts.router.max_total_queued,
                   "Broker-wide bound on queued requests")
      ->capture_default_str();
  broker_cmd
      ->add_option("--max-message-bytes", bopts.max_message_bytes,
                   "Most payload bytes in one client message (a payload of this size "
                   "is served); a larger frame closes the connection")
      ->envname("ZSERVE_MAX_MESSAGE_BYTES")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  broker_cmd
      ->add_option("--max-inflight-per-client", bopts.max_inflight_per_client,
                   "Unanswered calls one client connection may have")
      ->envname("ZSERVE_MAX_INFLIGHT_PER_CLIENT")
      ->capture_default_str()
      ->check(CLI::Range(1u, 100'000'000u));
  CurveFlags broker_curve;
  broker_curve.Add(broker_cmd, kCurveAllow | kCurveController);
  std::string broker_metrics = "127.0.0.1:9101";
  broker_cmd
      ->add_option("--metrics-bind", broker_metrics,
                   "Metrics, /healthz and /readyz HTTP HOST:PORT (port 0: free; empty: none)")
      ->envname("ZSERVE_METRICS_BIND")
      ->capture_default_str();
  add_log_level(broker_cmd);

  // worker
  WorkerOptions wopts;
  std::string handler_name;
  worker::BuiltinOptions builtin;
  std::string plugin_path;
  std::string plugin_arg;
  CLI::App* worker_cmd =
      app.add_subcommand("worker", "Run a replica with a built-in handler or a handler plugin");
  worker_cmd->add_option("--backend", wopts.backend, "Backend this replica serves")
      ->envname("ZSERVE_BACKEND")
      ->required();
  // Exactly one of --handler and --plugin: CLI11 refuses both on the
  // command line; their variables (ZSERVE_HANDLER, ZSERVE_PLUGIN) are read
  // after parsing, only when neither flag is given, so that a flag wins over
  // the other's variable too (WorkerHandlerChoice).
  CLI::Option_group* worker_handler =
      worker_cmd->add_option_group("handler", "What handles the requests (exactly one)");
  CLI::Option* handler_opt = worker_handler->add_option(
      "--handler", handler_name,
      "Built-in handler: echo, sleep, fail, dense, batch, batch_size, whoami, config "
      "(Env:ZSERVE_HANDLER)");
  CLI::Option* plugin_opt = worker_handler->add_option(
      "--plugin", plugin_path,
      "Handler plugin: a shared library with the C ABI of zserve/plugin.h (Env:ZSERVE_PLUGIN)");
  worker_handler->require_option(0, 1);
  worker_cmd
      ->add_option("--plugin-arg", plugin_arg, "Text for the plugin's create(), e.g. a model path")
      ->envname("ZSERVE_PLUGIN_ARG");
  worker_cmd->add_option("--broker", wopts.broker_address, "Broker worker address")
      ->envname("ZSERVE_WORKER_BROKER")
      ->capture_default_str();
  worker_cmd
      ->add_option("--replica-tag", wopts.replica_tag,
                   "Name in logs and metrics, and what shard keys hash on (default host-pid)")
      ->envname("ZSERVE_REPLICA_TAG");
  worker_cmd->add_option("--threads", wopts.threads, "Handler threads")
      ->envname("ZSERVE_THREADS")
      ->capture_default_str();
  worker_cmd->add_option("--capacity", wopts.capacity, "Most requests held (0: backend's)")
      ->capture_default_str();
  worker_cmd
      ->add_option("--max-result-bytes", wopts.max_result_bytes,
                   "A larger result fails its call (HANDLER_ERROR); keep it within the broker's "
                   "--max-message-bytes")
      ->envname("ZSERVE_MAX_RESULT_BYTES")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1} << 40));
  worker_cmd
      ->add_option("--controller", wopts.controller_address,
                   "Controller admin address, to follow user_config (empty: don't)")
      ->envname("ZSERVE_CONTROLLER");
  worker_cmd
      ->add_option("--controller-pub", wopts.controller_updates_address,
                   "Controller PUB address (with --controller)")
      ->envname("ZSERVE_CONTROLLER_PUB");
  std::string worker_metrics = "127.0.0.1:0";
  worker_cmd
      ->add_option("--metrics-bind", worker_metrics,
                   "Metrics HTTP HOST:PORT (port 0: free; empty: none)")
      ->envname("ZSERVE_METRICS_BIND")
      ->capture_default_str();
  worker_cmd
      ->add_option("--start-count", wopts.start_count,
                   "Times this replica has been started, this one included (set by up)")
      ->capture_default_str();
  int64_t worker_drain_timeout_ms = 30'000;
  worker_cmd
      ->add_option("--drain-timeout-ms", worker_drain_timeout_ms,
                   "On SIGTERM, give up draining after this long and exit 1")
      ->envname("ZSERVE_DRAIN_TIMEOUT_MS")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{3'600'000}));
  int64_t worker_heartbeat_ms = 1000;
  worker_cmd
      ->add_option("--heartbeat-ms", worker_heartbeat_ms, "Heartbeat interval with the broker")
      ->envname("ZSERVE_HEARTBEAT_MS")
      ->capture_default_str()
      ->check(kHeartbeatRange);
  worker_cmd
      ->add_option("--heartbeat-liveness", wopts.heartbeat_liveness,
                   "Silent intervals before the broker is dead")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  worker_cmd->add_option("--sleep-ms", builtin.sleep_ms, "sleep handler: default milliseconds")
      ->capture_default_str();
  CurveFlags worker_curve;
  worker_curve.Add(worker_cmd, kCurveBroker | kCurveController);
  add_log_level(worker_cmd);

  // http
  gateway::GatewayOptions hopts;
  CLI::App* http_cmd = app.add_subcommand(
      "http", "Run the HTTP gateway: each endpoint's route calls it (docs/http.md)");
  http_cmd->add_option("--listen", hopts.listen, "HTTP HOST:PORT (port 0: free)")
      ->envname("ZSERVE_HTTP_LISTEN")
      ->capture_default_str();
  http_cmd->add_option("--broker", hopts.broker_address, "Broker client address")
      ->envname("ZSERVE_BROKER")
      ->capture_default_str();
  http_cmd->add_option("--controller", hopts.controller_address, "Controller admin address")
      ->envname("ZSERVE_CONTROLLER")
      ->capture_default_str();
  http_cmd
      ->add_option("--controller-pub", hopts.controller_updates_address, "Controller PUB address")
      ->envname("ZSERVE_CONTROLLER_PUB")
      ->capture_default_str();
  http_cmd
      ->add_option("--threads", hopts.threads,
                   "HTTP connections served at once (a keep-alive connection holds one)")
      ->envname("ZSERVE_HTTP_THREADS")
      ->capture_default_str()
      ->check(CLI::Range(1, 10'000));
  http_cmd
      ->add_option("--max-body-bytes", hopts.max_body_bytes,
                   "Largest request body; keep it within the broker's --max-message-bytes")
      ->envname("ZSERVE_HTTP_MAX_BODY_BYTES")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, gateway::kMaxBodyLimit));
  CurveFlags http_curve;
  http_curve.Add(http_cmd, kCurveBroker | kCurveController);
  add_log_level(http_cmd);

  // call
  CallArgs call;
  CLI::App* call_cmd = app.add_subcommand("call", "Call an endpoint and print the result");
  call_cmd->add_option("endpoint", call.endpoint, "Endpoint name")->required();
  call_cmd->add_option("payload", call.payload, "Payload, or - for stdin");
  call_cmd
      ->add_option("--timeout", call.timeout_ms, "Deadline in ms (0: the endpoint's timeout_ms)")
      ->check(CLI::Range(0, 3'600'000));
  call_cmd->add_option("--method", call.method, "Method")->capture_default_str();
  call_cmd->add_option("--shard-key", call.shard_key, "Sticky routing key");
  call_cmd->add_option("--priority", call.priority, "Priority: > 0 is high (docs/semantics.md)")
      ->capture_default_str();
  call_cmd->add_option("--broker", call.broker, "Broker client address")
      ->envname("ZSERVE_BROKER")
      ->capture_default_str();
  call.curve.Add(call_cmd, kCurveBroker);

  // status
  std::string status_broker = "tcp://127.0.0.1:5555";
  bool status_json = false;
  int64_t status_timeout = 2000;
  CLI::App* status_cmd = app.add_subcommand("status", "Show the broker's endpoints and backends");
  bool status_ready = false;
  status_cmd->add_option("--broker", status_broker, "Broker client address")
      ->envname("ZSERVE_BROKER")
      ->capture_default_str();
  status_cmd->add_flag("--json", status_json, "Print the JSON document");
  status_cmd->add_flag("--ready", status_ready,
                       "Exit 0 if the broker is ready, 1 if not (for health checks)");
  status_cmd->add_option("--timeout", status_timeout, "Milliseconds to wait")
      ->check(CLI::Range(1, 3'600'000))
      ->capture_default_str();
  CurveFlags status_curve;
  status_curve.Add(status_cmd, kCurveBroker);

  std::function<int()> run_keygen = AddKeygenCommand(app);

  std::function<int()> run_bench = AddBenchCommand(app);

  CtlCommands admin_cmds(&app);  // ctl and apply
  SettleCommands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help is 0; any usage error (a flag unknown, missing or out of
    // range) is 2 whichever it is, apart from the 1 of a failed command.
    return app.exit(e) == 0 ? 0 : 2;
  }
  // CLI11 skips a variable set to the empty string; for --metrics-bind an
  // empty value means no metrics server, so ZSERVE_METRICS_BIND= says that.
  for (auto [cmd, value] :
       {std::pair{ctl_cmd, &ctl_metrics}, std::pair{broker_cmd, &broker_metrics},
        std::pair{worker_cmd, &worker_metrics}}) {
    const char* env = std::getenv("ZSERVE_METRICS_BIND");
    if (cmd->parsed() && cmd->count("--metrics-bind") == 0 && env != nullptr && *env == '\0') {
      value->clear();
    }
  }
  if (admin_cmds.parsed()) return admin_cmds.Run();

  if (up_cmd->parsed()) {
    up.log_level = log_level;
    up.ready_timeout = std::chrono::milliseconds(ready_timeout_ms);
    return RunUp(up);
  }
  if (call_cmd->parsed()) return RunCall(call);
  if (status_cmd->parsed()) {
    return RunStatus(status_broker, status_curve, status_json, status_ready, status_timeout);
  }
  if (app.got_subcommand("bench")) return run_bench();
  if (app.got_subcommand("keygen")) return run_keygen();

  SignalPipe& signals = SignalPipe::Install();
  zmq::context_t context(1);
  prometheus::Registry registry;  // this process's metrics; outlives its components
  if (ctl_cmd->parsed()) {
    copts.context = &context;
    copts.logger = MakeLogger("controller", log_level);
    copts.metrics = &registry;
    StatusOr<CurveKeys> keys = LoadCurveKeys(ctl_curve);
    if (!keys.ok()) return Fail(keys.status(), "controller");
    copts.curve_key = keys->key;
    copts.curve_allow_file = keys->allow_file;
    StatusOr<std::unique_ptr<controller::Controller>> c = controller::Controller::Create(copts);
    if (!c.ok()) return Fail(c.status(), "controller");
    auto metrics = ServeMetrics(ctl_metrics, &registry, copts.logger);
    if (!metrics.ok()) return Fail(metrics.status(), "controller");
    controller::Controller* ctl = c->get();
    Status s = ctl->Run(signals.fd(), [&] {
      // SIGHUP reloads the deployment file.
      return TakeSignals(signals, [ctl] { (void)ctl->Reload(); });
    });
    return s.ok() ? 0 : Fail(s, "controller");
  }
  if (broker_cmd->parsed()) {
    bopts.context = &context;
    bopts.logger = MakeLogger("broker", log_level);
    bopts.heartbeat.interval = std::chrono::milliseconds(broker_heartbeat_ms);
    bopts.metrics = &registry;
    StatusOr<CurveKeys> keys = LoadCurveKeys(broker_curve);
    if (!keys.ok()) return Fail(keys.status(), "broker");
    bopts.curve_key = keys->key;
    bopts.curve_allow_file = keys->allow_file;
    bopts.curve_controller_key = keys->controller_key;
    StatusOr<std::unique_ptr<broker::Broker>> b = broker::Broker::Create(bopts);
    if (!b.ok()) return Fail(b.status(), "broker");
    broker::Broker* broker = b->get();
    auto metrics = ServeMetrics(
        broker_metrics, &registry, bopts.logger,
        {{"/healthz",
          [] {
            return HttpAnswer{200, "ok\n"};
          }},
         {"/readyz", [broker] {
            return broker->ready()
                       ? HttpAnswer{200, "ready\n"}
                       : HttpAnswer{503, "not ready: " + broker->not_ready_reason() + "\n"};
          }}});
    if (!metrics.ok()) return Fail(metrics.status(), "broker");
    Status s = (*b)->Run(signals.fd(), [&] { return TakeSignals(signals); });
    return s.ok() ? 0 : Fail(s, "broker");
  }
  if (http_cmd->parsed()) {
    hopts.context = &context;
    hopts.logger = MakeLogger("http", log_level);
    StatusOr<CurveKeys> keys = LoadCurveKeys(http_curve);
    if (!keys.ok()) return Fail(keys.status(), "http");
    hopts.curve_key = keys->key;
    hopts.curve_broker_key = keys->broker_key;
    hopts.curve_controller_key = keys->controller_key;
    StatusOr<std::unique_ptr<gateway::Gateway>> g = gateway::Gateway::Create(hopts);
    if (!g.ok()) return Fail(g.status(), "http");
    hopts.logger->info("http gateway listening on http://{}", (*g)->address());
    Status s = (*g)->Run(signals.fd(), [&] { return TakeSignals(signals); });
    return s.ok() ? 0 : Fail(s, "http");
  }
  if (worker_cmd->parsed()) {
    wopts.log_level = log_level;
    wopts.heartbeat_interval = std::chrono::milliseconds(worker_heartbeat_ms);
    wopts.drain_timeout = std::chrono::milliseconds(worker_drain_timeout_ms);
    builtin.replica_tag =
        wopts.replica_tag.empty() ? "pid-" + std::to_string(getpid()) : wopts.replica_tag;
    StatusOr<bool> use_plugin =
        WorkerHandlerChoice(handler_opt->count() > 0, plugin_opt->count() > 0, &handler_name,
                            &plugin_path, !plugin_arg.empty());
    if (!use_plugin.ok()) return Fail(use_plugin.status(), "worker");
    StatusOr<std::unique_ptr<Handler>> handler =
        *use_plugin ? worker::LoadPluginHandler(plugin_path, plugin_arg)
                    : worker::MakeBuiltinHandler(handler_name, builtin);
    if (!handler.ok()) return Fail(handler.status(), "worker");
    wopts.metrics = &registry;
    // The controller's key only when it follows the controller.
    if (wopts.controller_address.empty()) worker_curve.which &= ~unsigned{kCurveController};
    StatusOr<CurveKeys> keys = LoadCurveKeys(worker_curve);
    if (!keys.ok()) return Fail(keys.status(), "worker");
    wopts.curve_key = keys->key;
    wopts.curve_broker_key = keys->broker_key;
    wopts.curve_controller_key = keys->controller_key;
    StatusOr<std::unique_ptr<Worker>> w = Worker::Create(wopts, std::move(handler).value());
    if (!w.ok()) return Fail(w.status(), "worker");
    auto metrics = ServeMetrics(worker_metrics, &registry,
                                MakeLogger("worker " + (*w)->replica_tag(), log_level));
    if (!metrics.ok()) return Fail(metrics.status(), "worker");
    Worker* worker = w->get();
    // SIGTERM drains, from the handler itself (Drain is async-signal-safe):
    // the thread that reads the signal pipe may be in a handler call.
    static Worker* draining_worker = nullptr;
    draining_worker = worker;
    signals.OnStopSignal([] { draining_worker->Drain(); });
    // A SIGTERM that came while the handler was made (a plugin loading its
    // model) is in the pipe only: it drains now. It was dropped, and the
    // worker served on.
    Status s = worker->Run(signals.fd(), [&] {
      if (TakeSignals(signals)) worker->Drain();
    });
    signals.OnStopSignal(nullptr);
    if (s.ok()) return 0;
    // A drain that timed out may leave a handler call running, which the
    // Worker's destructor would wait for: leave without it.
    Fail(s, "worker");
    spdlog::shutdown();
    std::fflush(nullptr);
    std::_Exit(1);
  }
  return 0;
}
