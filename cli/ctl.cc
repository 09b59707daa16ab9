#include "cli/ctl.h"

#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/curve_flags.h"
#include "controller/admin_client.h"
#include "controller/deployment_file.h"
#include "schemas/codec.h"

namespace zserve::cli {
namespace {

namespace sc = zserve::schemas;
using U32Field = std::optional<uint32_t> sc::BackendFields::*;

// The numeric backend flags, shared by create-backend and update-backend.
struct U32Flag {
  const char* flag;
  U32Field field;
  const char* help;
  sc::FieldRange range;  // the controller's (schemas/config.h)
};
constexpr U32Flag kU32Flags[] = {
    {"--num-replicas", &sc::BackendFields::num_replicas, "Replicas `zserve up` runs",
     sc::kNumReplicasRange},
    {"--max-batch-size", &sc::BackendFields::max_batch_size, "Requests per batch",
     sc::kMaxBatchSizeRange},
    {"--batch-wait-timeout-ms", &sc::BackendFields::batch_wait_timeout_ms,
     "Longest wait to fill a batch", sc::kBatchWaitTimeoutRange},
    {"--max-concurrent-queries", &sc::BackendFields::max_concurrent_queries,
     "In flight per replica (0: default)", sc::kMaxConcurrentQueriesRange},
    {"--max-queued-requests", &sc::BackendFields::max_queued_requests, "Queued before OVERLOADED",
     sc::kMaxQueuedRequestsRange},
    {"--retry-on-replica-failure", &sc::BackendFields::retry_on_replica_failure,
     "Retries when a replica is lost", sc::kRetryOnReplicaFailureRange},
};

// "HELP (MIN..MAX)".
std::string WithRange(const char* help, const sc::FieldRange& r) {
  return std::string(help) + " (" + std::to_string(r.min) + ".." + std::to_string(r.max) + ")";
}

// A flag's value as the uint32 field it sets; one that does not fit is
// refused as the controller would refuse it (exit 1, the range named).
StatusOr<uint32_t> FieldValue(const char* flag, int64_t value, const sc::FieldRange& r) {
  if (value < 0 || value > int64_t{UINT32_MAX}) {
    return BadRequest(std::string(flag) + " " + std::to_string(value) + ": " + sc::RangeText(r));
  }
  return static_cast<uint32_t>(value);
}
constexpr size_t kNumU32Flags = sizeof kU32Flags / sizeof kU32Flags[0];

int Fail(const char* what, const Status& s) {
  std::fprintf(stderr, "zserve %s: %s\n", what, s.ToString().c_str());
  return 1;
}

// "backend=0.5" pairs into a policy map.
StatusOr<std::map<std::string, double>> ParseWeights(const std::vector<std::string>& pairs) {
  std::map<std::string, double> out;
  for (const std::string& pair : pairs) {
    size_t eq = pair.find('=');
    double value = 0;
    const char* end = pair.data() + pair.size();
    if (eq == std::string::npos || eq == 0 || eq + 1 == pair.size()) {
      return BadRequest("'" + pair + "' is not BACKEND=NUMBER");
    }
    auto [ptr, ec] = std::from_chars(pair.data() + eq + 1, end, value);
    if (ec == std::errc::result_out_of_range) {
      return BadRequest("'" + pair + "': the number is out of range");
    }
    if (ec != std::errc() || ptr != end) return BadRequest("'" + pair + "' is not BACKEND=NUMBER");
    if (!out.emplace(pair.substr(0, eq), value).second) {
      return BadRequest("backend '" + pair.substr(0, eq) + "' is given twice");
    }
  }
  return out;
}

// "GET,post" -> {"GET", "POST"}: the --methods flag. An empty item
// ("GET,,POST", "GET,") is refused: it was skipped, hiding a typo.
StatusOr<std::vector<std::string>> ParseMethods(const std::string& text) {
  std::vector<std::string> out;
  std::string current;
  for (char c : text + ",") {
    if (c == ',') {
      if (current.empty()) {
        return BadRequest("--methods '" + text +
                          "' has an empty item: give methods separated by commas, e.g. GET,POST");
      }
      out.push_back(current);
      current.clear();
    } else if (c != ' ') {
      current += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
  }
  return out;
}

std::string JoinMethods(const std::vector<std::string>& methods) {
  std::string out;
  for (const std::string& m : methods) out += (out.empty() ? "" : ",") + m;
  return out;
}

nlohmann::json ToJson(uint64_t version, const sc::ConfigState& state) {
  nlohmann::json j = {{"version", version},
                      {"backends", nlohmann::json::object()},
                      {"endpoints", nlohmann::json::object()}};
  for (const auto& [name, b] : state.backends) {
    j["backends"][name] = {{"handler", b.handler},
                           {"num_replicas", b.num_replicas},
                           {"max_batch_size", b.max_batch_size},
                           {"batch_wait_timeout_ms", b.batch_wait_timeout_ms},
                           {"max_concurrent_queries", b.max_concurrent_queries},
                           {"max_queued_requests", b.max_queued_requests},
                           {"retry_on_replica_failure", b.retry_on_replica_failure},
                           {"user_config", b.user_config}};
  }
  for (const auto& [name, e] : state.endpoints) {
    j["endpoints"][name] = {{"traffic", e.traffic},
                            {"shadow", e.shadow},
                            {"timeout_ms", e.timeout_ms},
                            {"route", e.route},
                            {"methods", e.methods}};
  }
  return j;
}

std::string Policy(const std::map<std::string, double>& m) {
  std::string out;
  for (const auto& [k, v] : m) out += (out.empty() ? "" : " ") + k + "=" + nlohmann::json(v).dump();
  return out.empty() ? "-" : out;
}

void PrintState(uint64_t version, const sc::ConfigState& state) {
  std::printf("config version %llu\n", static_cast<unsigned long long>(version));
  std::printf("%-20s %-10s %8s %9s %7s %6s %10s %7s %s\n", "BACKEND", "HANDLER", "REPLICAS",
              "MAX_BATCH", "WAIT_MS", "MAX_CQ", "MAX_QUEUED", "RETRIES", "USER_CONFIG");
  for (const auto& [name, b] : state.backends) {
    std::printf("%-20s %-10s %8u %9u %7u %6u %10u %7u %s\n", name.c_str(), b.handler.c_str(),
                b.num_replicas, b.max_batch_size, b.batch_wait_timeout_ms, b.max_concurrent_queries,
                b.max_queued_requests, b.retry_on_replica_failure,
                b.user_config.empty() ? "-" : b.user_config.c_str());
  }
  std::printf("%-20s %10s %-30s %-20s %-16s %s\n", "ENDPOINT", "TIMEOUT_MS", "TRAFFIC", "SHADOW",
              "ROUTE", "METHODS");
  for (const auto& [name, e] : state.endpoints) {
    std::printf("%-20s %10u %-30s %-20s %-16s %s\n", name.c_str(), e.timeout_ms,
                Policy(e.traffic).c_str(), Policy(e.shadow).c_str(),
                e.route.empty() ? "-" : e.route.c_str(),
                e.route.empty() ? "-" : JoinMethods(e.methods).c_str());
  }
}

}  // namespace

struct CtlCommands::Args {
  std::string controller = "tcp://127.0.0.1:5557";
  int64_t timeout_ms = 5000;
  CLI::App* ctl = nullptr;
  CLI::App* apply = nullptr;
  std::vector<std::pair<CLI::App*, sc::Command>> commands;

  std::string name;
  std::string handler;
  std::string user_config;
  int64_t numbers[kNumU32Flags] = {};
  std::string backend;
  std::vector<std::string> traffic;
  std::vector<std::string> shadow;
  int64_t timeout_ms_flag = 0;
  std::string route;
  std::string methods;
  bool json = false;
  std::string file;
  CurveFlags curve;

  void AddConnectionFlags(CLI::App* app) {
    app->add_option("--controller", controller, "Controller admin address")
        ->envname("ZSERVE_CONTROLLER")
        ->capture_default_str();
    curve.Add(app, kCurveController);
    app->add_option("--timeout", timeout_ms, "Milliseconds to wait for the controller")
        ->capture_default_str()
        ->check(CLI::Range(int64_t{1}, int64_t{3'600'000}));
  }

  CLI::App* Add(sc::Command command, const char* name_, const char* help) {
    CLI::App* sub = ctl->add_subcommand(name_, help);
    sub->fallthrough();
    commands.emplace_back(sub, command);
    return sub;
  }

  void AddBackendFlags(CLI::App* sub) {
    sub->add_option("--handler", handler, "Built-in handler of `zserve up`'s workers");
    for (size_t i = 0; i < kNumU32Flags; ++i) {
      sub->add_option(kU32Flags[i].flag, numbers[i],
                      WithRange(kU32Flags[i].help, kU32Flags[i].range));
    }
    sub->add_option("--user-config", user_config, "Opaque text for the handler's Reconfigure");
  }

  // --timeout-ms, --route and --methods of create-endpoint and update-endpoint.
  void AddEndpointFlags(CLI::App* sub) {
    sub->add_option("--timeout-ms", timeout_ms_flag,
                    WithRange("Default deadline", sc::kTimeoutMsRange));
    sub->add_option("--route", route, "HTTP gateway path, e.g. /echo (\"\": none; docs/http.md)");
    sub->add_option("--methods", methods,
                    "HTTP methods allowed on the route: GET,POST,PUT,DELETE,PATCH");
  }

  Status TakeEndpointFlags(CLI::App* sub, sc::EndpointFields* f) const {
    if (sub->count("--timeout-ms")) {
      StatusOr<uint32_t> v = FieldValue("--timeout-ms", timeout_ms_flag, sc::kTimeoutMsRange);
      if (!v.ok()) return v.status();
      f->timeout_ms = *v;
    }
    if (sub->count("--route")) f->route = route;
    if (sub->count("--methods")) {
      StatusOr<std::vector<std::string>> parsed = ParseMethods(methods);
      if (!parsed.ok()) return parsed.status();
      f->methods = std::move(parsed).value();
    }
    return Status::Ok();
  }

  // The request of the parsed ctl subcommand.
  StatusOr<sc::AdminRequest> Request(CLI::App* sub, sc::Command command) const {
    sc::AdminRequest r;
    r.command = command;
    r.name = name;
    if (command == sc::Command::kCreateBackend || command == sc::Command::kUpdateBackend) {
      if (sub->count("--handler")) r.backend.handler = handler;
      if (sub->count("--user-config")) r.backend.user_config = user_config;
      for (size_t i = 0; i < kNumU32Flags; ++i) {
        if (sub->count(kU32Flags[i].flag)) {
          StatusOr<uint32_t> v = FieldValue(kU32Flags[i].flag, numbers[i], kU32Flags[i].range);
          if (!v.ok()) return v.status();
          r.backend.*kU32Flags[i].field = *v;
        }
      }
    }
    if (command == sc::Command::kCreateEndpoint) {
      if (!backend.empty() && !traffic.empty()) {
        return BadRequest("give --backend or --traffic, not both");
      }
      StatusOr<std::map<std::string, double>> t =
          backend.empty() ? ParseWeights(traffic) : ParseWeights({backend + "=1"});
      if (!t.ok()) return t.status();
      if (!t->empty()) r.endpoint.traffic = *t;
      StatusOr<std::map<std::string, double>> s = ParseWeights(shadow);
      if (!s.ok()) return s.status();
      if (!s->empty()) r.endpoint.shadow = *s;
      if (Status f = TakeEndpointFlags(sub, &r.endpoint); !f.ok()) return f;
    }
    if (command == sc::Command::kUpdateEndpoint) {
      if (Status f = TakeEndpointFlags(sub, &r.endpoint); !f.ok()) return f;
      if (r.endpoint == sc::EndpointFields{}) {
        return BadRequest("give at least one of --route, --methods, --timeout-ms");
      }
    }
    if (command == sc::Command::kSetTraffic || command == sc::Command::kSetShadow) {
      StatusOr<std::map<std::string, double>> w =
          ParseWeights(command == sc::Command::kSetTraffic ? traffic : shadow);
      if (!w.ok()) return w.status();
      r.weights = *w;
    }
    return r;
  }
};

CtlCommands::CtlCommands(CLI::App* app) : args_(std::make_unique<Args>()) {
  Args& a = *args_;
  a.ctl = app->add_subcommand("ctl", "Change or show the controller's configuration");
  a.ctl->require_subcommand(1);
  a.AddConnectionFlags(a.ctl);

  CLI::App* sub = a.Add(sc::Command::kCreateBackend, "create-backend", "Create a backend");
  sub->add_option("name", a.name, "Backend name")->required();
  a.AddBackendFlags(sub);
  sub = a.Add(sc::Command::kUpdateBackend, "update-backend",
              "Change the given fields of a backend; the others stay");
  sub->add_option("name", a.name, "Backend name")->required();
  a.AddBackendFlags(sub);
  sub = a.Add(sc::Command::kDeleteBackend, "delete-backend",
              "Delete a backend that no traffic or shadow policy names");
  sub->add_option("name", a.name, "Backend name")->required();

  sub = a.Add(sc::Command::kCreateEndpoint, "create-endpoint", "Create an endpoint");
  sub->add_option("name", a.name, "Endpoint name")->required();
  sub->add_option("--backend", a.backend, "The one backend that takes all traffic");
  sub->add_option("--traffic", a.traffic, "BACKEND=WEIGHT ..., weights summing to 1");
  sub->add_option("--shadow", a.shadow, "BACKEND=FRACTION ..., fractions in [0, 1]");
  a.AddEndpointFlags(sub);
  sub = a.Add(sc::Command::kUpdateEndpoint, "update-endpoint",
              "Change an endpoint's route, methods or timeout; the others stay");
  sub->add_option("name", a.name, "Endpoint name")->required();
  a.AddEndpointFlags(sub);
  sub = a.Add(sc::Command::kDeleteEndpoint, "delete-endpoint", "Delete an endpoint");
  sub->add_option("name", a.name, "Endpoint name")->required();
  sub = a.Add(sc::Command::kSetTraffic, "set-traffic", "Replace an endpoint's traffic policy");
  sub->add_option("endpoint", a.name, "Endpoint name")->required();
  sub->add_option("weights", a.traffic, "BACKEND=WEIGHT ..., summing to 1")->required();
  sub = a.Add(sc::Command::kSetShadow, "set-shadow",
              "Replace an endpoint's shadow policy (none given: no shadow)");
  sub->add_option("endpoint", a.name, "Endpoint name")->required();
  sub->add_option("fractions", a.shadow, "BACKEND=FRACTION ..., each in [0, 1]");
  sub = a.Add(sc::Command::kGetState, "get", "Print the configuration and its version");
  sub->add_flag("--json", a.json, "As JSON");

  a.apply = app->add_subcommand(
      "apply", "Converge the controller to a deployment file: create, update, delete");
  a.apply->add_option("file", a.file, "Deployment file (YAML)")->required();
  a.AddConnectionFlags(a.apply);
}

CtlCommands::~CtlCommands() = default;

bool CtlCommands::parsed() const { return args_->ctl->parsed() || args_->apply->parsed(); }

int CtlCommands::Run() {
  const Args& a = *args_;
  const char* what = a.apply->parsed() ? "apply" : "ctl";
  sc::AdminRequest request;
  if (a.apply->parsed()) {
    StatusOr<sc::ConfigState> state = controller::LoadDeploymentFile(a.file);
    if (!state.ok()) return Fail(what, state.status());
    request.command = sc::Command::kApply;
    request.state = std::move(state).value();
  } else {
    for (const auto& [sub, command] : a.commands) {
      if (!sub->parsed()) continue;
      StatusOr<sc::AdminRequest> r = a.Request(sub, command);
      if (!r.ok()) return Fail(what, r.status());
      request = std::move(r).value();
    }
  }
  StatusOr<CurveKeys> keys = LoadCurveKeys(a.curve);
  if (!keys.ok()) return Fail(what, keys.status());
  StatusOr<std::unique_ptr<controller::AdminClient>> client =
      controller::AdminClient::Create(a.controller, keys->key, keys->controller_key);
  if (!client.ok()) return Fail(what, client.status());
  StatusOr<sc::AdminReply> reply =
      (*client)->CallOk(request, std::chrono::milliseconds(a.timeout_ms));
  if (!reply.ok()) return Fail(what, reply.status());
  if (request.command == sc::Command::kGetState) {
    if (a.json) {
      std::printf("%s\n", ToJson(reply->version, reply->state).dump(2).c_str());
    } else {
      PrintState(reply->version, reply->state);
    }
    return 0;
  }
  for (const std::string& line : reply->changes) std::printf("%s\n", line.c_str());
  std::printf("%s: version %llu\n", reply->changes.empty() ? "no change" : "applied",
              static_cast<unsigned long long>(reply->version));
  return 0;
}

}  // namespace zserve::cli
