// The control plane end to end, with real processes: the controller's
// durable store (kill -9 and restart), the admin commands through `zserve
// ctl` / `zserve apply`, and live propagation to brokers and `zserve up`'s
// workers. Every wait is on a condition with a bounded timeout.
#include <atomic>
#include <catch2/catch.hpp>
#include <csignal>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <set>
#include <thread>
#include <zmq.hpp>

#include "controller/admin_client.h"
#include "controller/config_change.h"
#include "tests/e2e/stack.h"
#include "tests/e2e/test_client.h"
#include "zserve/client.h"

namespace zserve::testing {
namespace {

using std::chrono::milliseconds;
namespace sc = zserve::schemas;
using controller::AdminClient;
using sc::Command;

constexpr milliseconds kAdminTimeout{5000};

std::string Address(int port) { return "tcp://127.0.0.1:" + std::to_string(port); }

// "x7": appended, not "x" + std::to_string(7), on which GCC 12's -Wrestrict
// misfires in a Release build.
std::string Numbered(std::string prefix, int i) { return prefix += std::to_string(i); }

std::unique_ptr<AdminClient> Admin(const std::string& address) {
  StatusOr<std::unique_ptr<AdminClient>> c = AdminClient::Create(address);
  REQUIRE(c.ok());
  return std::move(c).value();
}

sc::AdminRequest Req(Command command, std::string name = "") {
  sc::AdminRequest r;
  r.command = command;
  r.name = std::move(name);
  return r;
}

sc::AdminRequest Backend(const std::string& name, const std::string& handler, uint32_t n = 1) {
  sc::AdminRequest r = Req(Command::kCreateBackend, name);
  r.backend.handler = handler;
  r.backend.num_replicas = n;
  return r;
}

sc::AdminRequest Endpoint(const std::string& name, std::map<std::string, double> traffic) {
  sc::AdminRequest r = Req(Command::kCreateEndpoint, name);
  r.endpoint.traffic = std::move(traffic);
  return r;
}

sc::AdminRequest Traffic(const std::string& endpoint, std::map<std::string, double> weights) {
  sc::AdminRequest r = Req(Command::kSetTraffic, endpoint);
  r.weights = std::move(weights);
  return r;
}

// A controller on fixed ports and a store in `dir`, restartable on both.
class ControllerProcess {
 public:
  explicit ControllerProcess(std::string dir)
      : dir_(std::move(dir)), admin_port_(FreePort()), pub_port_(FreePort()) {}

  void Start(const std::string& config_file = "", const std::string& metrics = "127.0.0.1:0") {
    std::vector<std::string> args = {"controller",       "--store",        store(),
                                     "--admin-bind",     admin(),          "--pub-bind",
                                     Address(pub_port_), "--metrics-bind", metrics};
    if (!config_file.empty()) args.insert(args.end(), {"--config", config_file});
    process_ = std::make_unique<Process>(kBinary, args, dir_ + "/controller.log");
  }
  void Kill9() {
    process_->Signal(SIGKILL);
    REQUIRE(process_->Wait(milliseconds(10'000)).has_value());
  }
  std::string store() const { return dir_ + "/controller.db"; }
  std::string admin() const { return Address(admin_port_); }
  std::string pub() const { return Address(pub_port_); }
  Process& process() { return *process_; }

 private:
  std::string dir_;
  int admin_port_, pub_port_;
  std::unique_ptr<Process> process_;
};

// A broker following `c`, with a client port.
struct BrokerProcess {
  BrokerProcess(const std::string& dir, ControllerProcess& c)
      : client(Address(FreePort())), worker(Address(FreePort())) {
    process = std::make_unique<Process>(
        kBinary,
        std::vector<std::string>{"broker", "--client-bind", client, "--worker-bind", worker,
                                 "--controller", c.admin(), "--controller-pub", c.pub(),
                                 "--metrics-bind", "127.0.0.1:0"},
        dir + "/broker.log");
  }
  std::unique_ptr<Process> Worker(const std::string& dir, const std::string& backend,
                                  const std::string& handler, const std::string& tag) {
    return std::make_unique<Process>(
        kBinary,
        std::vector<std::string>{"worker", "--backend", backend, "--handler", handler, "--broker",
                                 worker, "--replica-tag", tag},
        dir + "/worker.log");
  }
  std::string client, worker;
  std::unique_ptr<Process> process;
};

TEST_CASE("zserve ctl runs each admin command and refuses bad ones with exit code 1",
          "[e2e][control]") {
  std::string dir = MakeTempDir();
  ControllerProcess c(dir);
  c.Start();
  std::string err = dir + "/ctl.err";
  auto ctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"ctl", "--controller", c.admin()});
    auto p = std::make_unique<Process>(kBinary, args, err);
    REQUIRE(p->Wait(milliseconds(10'000)).has_value());
    return p;
  };
  CHECK(ctl({"create-backend", "mlp", "--handler", "echo", "--num-replicas", "2",
             "--max-batch-size", "8", "--batch-wait-timeout-ms", "5"})
            ->output()
            .find("applied: version 1") != std::string::npos);
  CHECK(*ctl({"create-backend", "mlp_v2", "--handler", "echo"})->Wait(milliseconds(0)) == 0);
  CHECK(*ctl({"create-endpoint", "classify", "--backend", "mlp"})->Wait(milliseconds(0)) == 0);
  auto traffic = ctl({"set-traffic", "classify", "mlp=0.9", "mlp_v2=0.1"});
  CHECK(*traffic->Wait(milliseconds(0)) == 0);
  CHECK(traffic->output() ==
        "~ endpoint classify: traffic {mlp: 1} -> {mlp: 0.9, mlp_v2: 0.1}\n"
        "applied: version 4\n");
  CHECK(*ctl({"set-shadow", "classify", "mlp_v2=0.2"})->Wait(milliseconds(0)) == 0);
  CHECK(*ctl({"update-backend", "mlp", "--max-concurrent-queries", "32", "--user-config",
              R"({"threshold":0.7})"})
             ->Wait(milliseconds(0)) == 0);
  // The same change again changes nothing and keeps the version.
  CHECK(ctl({"set-shadow", "classify", "mlp_v2=0.2"})->output() == "no change: version 6\n");

  // Refusals: exit 1, the reason on stderr, nothing changed.
  CHECK(*ctl({"delete-backend", "mlp_v2"})->Wait(milliseconds(0)) == 1);
  CHECK(*ctl({"set-traffic", "classify", "mlp=0.5", "mlp_v2=0.4"})->Wait(milliseconds(0)) == 1);
  CHECK(*ctl({"set-shadow", "classify", "mlp_v2=1.5"})->Wait(milliseconds(0)) == 1);
  CHECK(*ctl({"update-backend", "nope", "--num-replicas", "3"})->Wait(milliseconds(0)) == 1);
  CHECK(*ctl({"update-backend", "mlp", "--num-replicas", "5000"})->Wait(milliseconds(0)) == 1);
  // A value no uint32 holds is refused the same way, by the command line.
  CHECK(*ctl({"update-backend", "mlp", "--num-replicas", "-1"})->Wait(milliseconds(0)) == 1);
  CHECK(*ctl({"create-backend", "bad/name"})->Wait(milliseconds(0)) == 1);
  CHECK(*ctl({"create-backend", "mlp"})->Wait(milliseconds(0)) == 1);
  CHECK(*ctl({"set-traffic", "classify", "mlp"})->Wait(milliseconds(0)) == 1);
  CHECK(*ctl({"set-shadow", "classify", "mlp_v2=1e400"})->Wait(milliseconds(0)) == 1);
  // A --timeout of 0 would send the change and give up at once: refused by
  // the command line, before anything is sent.
  CHECK(*ctl({"set-shadow", "classify", "--timeout", "0"})->Wait(milliseconds(0)) == 2);
  std::string errors = ReadFile(err);
  CHECK_THAT(errors, Catch::Contains("'mlp_v2=1e400': the number is out of range"));
  CHECK_THAT(errors, Catch::Contains("--timeout"));
  CHECK_THAT(errors, Catch::Contains("still in the traffic policy of endpoint 'classify'"));
  CHECK_THAT(errors, Catch::Contains("traffic weights must sum to 1"));
  CHECK_THAT(errors, Catch::Contains("shadow fraction of 'mlp_v2' must be in [0, 1]"));
  CHECK_THAT(errors, Catch::Contains("NOT_FOUND: no backend named 'nope'"));
  CHECK_THAT(errors, Catch::Contains("num_replicas must be 0..1024"));
  CHECK_THAT(errors, Catch::Contains("--num-replicas -1: num_replicas must be 0..1024"));
  CHECK_THAT(errors, Catch::Contains("outside [A-Za-z0-9_.-]"));
  CHECK_THAT(errors, Catch::Contains("backend 'mlp' already exists"));
  CHECK_THAT(errors, Catch::Contains("'mlp' is not BACKEND=NUMBER"));

  auto get = ctl({"get", "--json"});
  REQUIRE(*get->Wait(milliseconds(0)) == 0);
  nlohmann::json j = nlohmann::json::parse(get->output());
  CHECK(j["version"] == 6);
  CHECK(j["backends"]["mlp"]["num_replicas"] == 2);
  CHECK(j["backends"]["mlp"]["max_batch_size"] == 8);
  CHECK(j["backends"]["mlp"]["batch_wait_timeout_ms"] == 5);
  CHECK(j["backends"]["mlp"]["max_concurrent_queries"] == 32);
  CHECK(j["backends"]["mlp"]["user_config"] == R"({"threshold":0.7})");
  CHECK(j["endpoints"]["classify"]["traffic"]["mlp_v2"] == 0.1);
  CHECK(j["endpoints"]["classify"]["shadow"]["mlp_v2"] == 0.2);
  CHECK_THAT(ctl({"get"})->output(), Catch::Contains("config version 6"));

  // Emptied again, in the order the references allow.
  CHECK(*ctl({"delete-endpoint", "classify"})->Wait(milliseconds(0)) == 0);
  CHECK(*ctl({"delete-backend", "mlp_v2"})->Wait(milliseconds(0)) == 0);
  CHECK(*ctl({"delete-backend", "mlp"})->Wait(milliseconds(0)) == 0);
  j = nlohmann::json::parse(ctl({"get", "--json"})->output());
  CHECK(j["version"] == 9);
  CHECK(j["backends"].empty());
  CHECK(j["endpoints"].empty());
}

TEST_CASE("zserve apply of an empty deployment to a new store says it committed version 1",
          "[e2e][control]") {
  std::string dir = MakeTempDir();
  ControllerProcess c(dir);
  c.Start();
  WriteFile(dir + "/empty.yaml", "backends: {}\n");
  auto apply = [&] {
    auto p = std::make_unique<Process>(
        kBinary, std::vector<std::string>{"apply", dir + "/empty.yaml", "--controller", c.admin()},
        dir + "/apply.err");
    REQUIRE(p->Wait(milliseconds(10'000)) == std::optional<int>(0));
    return p->output();
  };
  CHECK(apply() == "+ first version: an empty configuration\napplied: version 1\n");
  CHECK(apply() == "no change: version 1\n");
}

TEST_CASE("zserve ctl with no controller there says whether a change may have been made",
          "[e2e][control]") {
  // Nothing listens: a `get` changes nothing and must not say it may have.
  const std::string dir = MakeTempDir();
  const std::string nobody = LoopbackAddress(FreePort());
  Process get(kBinary, {"ctl", "--controller", nobody, "--timeout", "300", "get"},
              dir + "/get.err");
  REQUIRE(get.Wait(milliseconds(10'000)) == 1);
  const std::string get_err = ReadFile(dir + "/get.err");
  CHECK_THAT(get_err, Catch::Contains("no answer from the controller") &&
                          Catch::Contains("is it running there?") &&
                          !Catch::Contains("may or may not have been applied"));
  Process change(kBinary,
                 {"ctl", "--controller", nobody, "--timeout", "300", "create-backend", "b"},
                 dir + "/change.err");
  REQUIRE(change.Wait(milliseconds(10'000)) == 1);
  CHECK_THAT(ReadFile(dir + "/change.err"), Catch::Contains("may or may not have been applied"));
}

TEST_CASE("zserve apply converges to the file and a second apply is a no-op", "[e2e][control]") {
  std::string dir = MakeTempDir();
  ControllerProcess c(dir);
  c.Start();
  auto apply = [&](const std::string& yaml) {
    WriteFile(dir + "/d.yaml", yaml);
    auto p = std::make_unique<Process>(
        kBinary, std::vector<std::string>{"apply", dir + "/d.yaml", "--controller", c.admin()},
        dir + "/apply.err");
    REQUIRE(p->Wait(milliseconds(10'000)).has_value());
    return p;
  };
  const std::string first =
      "backends:\n  a: {handler: echo}\n  b: {handler: echo, num_replicas: 2}\n"
      "endpoints:\n  e: {traffic: {a: 0.5, b: 0.5}}\n  gone: {backend: b}\n";
  auto p = apply(first);
  CHECK(*p->Wait(milliseconds(0)) == 0);
  CHECK_THAT(p->output(), Catch::Contains("+ backend a:"));
  CHECK_THAT(p->output(), Catch::Contains("+ endpoint gone:"));
  CHECK_THAT(p->output(), Catch::Contains("applied: version 1"));
  p = apply(first);
  CHECK(p->output() == "no change: version 1\n");

  // Update, create and delete in one go.
  p = apply(
      "backends:\n  a: {handler: echo, max_batch_size: 4}\n  c: {handler: echo}\n"
      "endpoints:\n  e: {backend: a}\n");
  CHECK(*p->Wait(milliseconds(0)) == 0);
  CHECK(p->output() ==
        "~ backend a: max_batch_size 1 -> 4\n"
        "+ backend c: handler=echo num_replicas=1 max_batch_size=1 batch_wait_timeout_ms=0 "
        "max_concurrent_queries=0 max_queued_requests=100000 retry_on_replica_failure=1 "
        "user_config=''\n"
        "~ endpoint e: traffic {a: 0.5, b: 0.5} -> {a: 1}\n"
        "- endpoint gone\n"
        "- backend b\n"
        "applied: version 2\n");

  // A typo: refused with line and field, nothing changed.
  p = apply("backends:\n  a: {handler: echo}\n  c:\n    handler: echo\n    num_replica: 3\n");
  CHECK(*p->Wait(milliseconds(0)) == 1);
  CHECK_THAT(ReadFile(dir + "/apply.err"), Catch::Contains("d.yaml:5: unknown key 'num_replica'"));
  auto admin = Admin(c.admin());
  auto state = admin->CallOk(Req(Command::kGetState), kAdminTimeout);
  REQUIRE(state.ok());
  CHECK(state->version == 2);
}

TEST_CASE("No acknowledged change is lost when the controller is killed with -9",
          "[e2e][control]") {
  std::string dir = MakeTempDir();
  ControllerProcess c(dir);
  c.Start();
  auto admin = Admin(c.admin());
  std::random_device rd;
  const unsigned seed = rd();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  std::set<int> kill_points;
  while (kill_points.size() < 5) kill_points.insert(static_cast<int>(rng() % 200));

  REQUIRE(admin->CallOk(Backend("a", "echo"), kAdminTimeout).ok());
  REQUIRE(admin->CallOk(Backend("b", "echo"), kAdminTimeout).ok());
  auto last = admin->CallOk(Endpoint("e", {{"a", 1.0}}), kAdminTimeout);
  REQUIRE(last.ok());
  uint64_t version = last->version;
  sc::ConfigState state = last->state;
  for (int i = 0; i < 200; ++i) {
    // A mix of commands that each change the state.
    sc::AdminRequest r;
    switch (i % 4) {
      case 0:
        r = Req(Command::kUpdateBackend, "a");
        r.backend.num_replicas = static_cast<uint32_t>(i % 7);
        r.backend.user_config = "step " + std::to_string(i);
        break;
      case 1:
        r = Traffic("e", {{"a", i / 200.0}, {"b", 1 - i / 200.0}});
        break;
      case 2:
        r = Endpoint(Numbered("x", i), {{"b", 1.0}});
        break;
      default:
        r = Req(Command::kDeleteEndpoint, Numbered("x", i - 1));
        break;
    }
    if (kill_points.contains(i)) {
      // Killed with this change in flight: after the restart it is either
      // wholly there (version + 1) or not at all.
      StatusOr<sc::AdminReply> maybe = admin->Call(r, milliseconds(1));
      c.Kill9();
      c.Start();
      auto now = admin->CallOk(Req(Command::kGetState), kAdminTimeout);
      REQUIRE(now.ok());
      auto applied = controller::ApplyAdminRequest(state, r);
      REQUIRE(applied.ok());
      if (maybe.ok()) REQUIRE(now->version == version + 1);  // it was acknowledged
      if (now->version == version + 1) {
        CHECK(now->state == *applied);
      } else {
        REQUIRE(now->version == version);
        CHECK(now->state == state);
        REQUIRE(admin->CallOk(r, kAdminTimeout).ok());
      }
      ++version;
      state = *applied;
      continue;
    }
    auto reply = admin->CallOk(r, kAdminTimeout);
    REQUIRE(reply.ok());
    REQUIRE(reply->version == version + 1);
    version = reply->version;
    state = reply->state;
  }
  c.Kill9();
  c.Start();
  auto final_state = admin->CallOk(Req(Command::kGetState), kAdminTimeout);
  REQUIRE(final_state.ok());
  CHECK(final_state->version == version);
  CHECK(final_state->state == state);
}

TEST_CASE("A controller that cannot start leaves its store unchanged", "[e2e][control]") {
  // What holds the start up: the admin port, the metrics port (both held by
  // another program), or a metrics address that is none.
  enum class Held { kAdminPort, kMetricsPort, kMetricsAddress };
  const Held held = GENERATE(Held::kAdminPort, Held::kMetricsPort, Held::kMetricsAddress);
  std::string dir = MakeTempDir();
  WriteFile(dir + "/v1.yaml", "backends:\n  a: {handler: echo}\nendpoints:\n  e: {backend: a}\n");
  WriteFile(dir + "/v2.yaml",
            "backends:\n  a: {handler: echo}\nendpoints:\n  other: {backend: a}\n");
  ControllerProcess c(dir);
  c.Start(dir + "/v1.yaml");
  auto admin = Admin(c.admin());
  auto before = admin->CallOk(Req(Command::kGetState), kAdminTimeout);
  REQUIRE(before.ok());
  c.Kill9();
  {
    zmq::context_t context(1);
    zmq::socket_t holder(context, zmq::socket_type::router);
    holder.set(zmq::sockopt::linger, 0);
    const int metrics_port = FreePort();
    std::string metrics = "127.0.0.1:0", error = "Address already in use";
    if (held == Held::kAdminPort) holder.bind(c.admin());
    if (held == Held::kMetricsPort) {
      holder.bind(Address(metrics_port));
      metrics = "127.0.0.1:" + std::to_string(metrics_port);
      error = "cannot serve metrics on " + metrics;
    }
    if (held == Held::kMetricsAddress) {
      metrics = "garbage";
      error = "metrics address 'garbage' is not HOST:PORT";
    }
    c.Start(dir + "/v2.yaml", metrics);
    REQUIRE(c.process().Wait(milliseconds(10'000)) == std::optional<int>(1));
    CHECK_THAT(ReadFile(dir + "/controller.log"), Catch::Contains(error));
  }
  c.Start();  // from its store alone
  auto after = admin->CallOk(Req(Command::kGetState), kAdminTimeout);
  REQUIRE(after.ok());
  CHECK(after->version == before->version);
  CHECK(after->state == before->state);
  CHECK(after->state.endpoints.contains("e"));
  CHECK_FALSE(after->state.endpoints.contains("other"));
}

// Which backend answered: blue runs `echo`, which returns the payload
// "error:green"; green runs `fail`, which fails it as HANDLER_ERROR "green".
std::string Color(const StatusOr<std::string>& r) {
  if (r.ok()) return *r == "error:green" ? "blue" : "?";
  if (r.status().code() == StatusCode::kHandlerError && r.status().message() == "green") {
    return "green";
  }
  return r.status().ToString();
}

TEST_CASE("Traffic switched 100/0 to 0/100 under load moves every later request",
          "[e2e][control]") {
  std::string dir = MakeTempDir();
  ControllerProcess c(dir);
  WriteFile(dir + "/d.yaml",
            "backends:\n  blue: {handler: echo}\n  green: {handler: fail}\n"
            "endpoints:\n  ep: {traffic: {blue: 1, green: 0}}\n");
  c.Start(dir + "/d.yaml");
  BrokerProcess broker(dir, c);
  auto blue = broker.Worker(dir, "blue", "echo", "blue-1");
  auto green = broker.Worker(dir, "green", "fail", "green-1");
  auto client = Connect(broker.client);
  CallOptions o;
  o.timeout = milliseconds(10'000);
  REQUIRE(Eventually([&] {
    nlohmann::json s = BrokerStatus(*client);
    // (No backends at all until the broker has its configuration.)
    return s.contains("backends") && s["backends"].contains("green") &&
           s["backends"].contains("blue") && s["backends"]["green"].value("replicas", 0) == 1 &&
           s["backends"]["blue"].value("replicas", 0) == 1;
  }));

  // Continuous load from a second client while the traffic changes.
  std::atomic<bool> stop{false};
  std::atomic<int> other{0}, served{0};
  std::thread load([&] {
    auto loader = Connect(broker.client);
    while (!stop.load()) {
      std::string color = Color(loader->Call("ep", "error:green", o));
      if (color == "blue" || color == "green") {
        ++served;
      } else {
        ++other;
      }
    }
  });
  for (int i = 0; i < 50; ++i) REQUIRE(Color(client->Call("ep", "error:green", o)) == "blue");
  auto admin = Admin(c.admin());
  auto switched = admin->CallOk(Traffic("ep", {{"blue", 0}, {"green", 1}}), kAdminTimeout);
  REQUIRE(switched.ok());
  // The broker applies the change within a moment; from the first green
  // reply on, every request goes to green.
  std::string color = "blue";
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (color == "blue" && std::chrono::steady_clock::now() < end) {
    color = Color(client->Call("ep", "error:green", o));
  }
  REQUIRE(color == "green");
  for (int i = 0; i < 50; ++i) CHECK(Color(client->Call("ep", "error:green", o)) == "green");
  stop = true;
  load.join();
  CHECK(other.load() == 0);
  CHECK(served.load() > 0);
  CHECK(BrokerStatus(*client)["config_version"] == switched->version);
}

TEST_CASE("Calls queued on a deleted backend fail UNAVAILABLE once its last replica drains",
          "[e2e][control]") {
  Stack stack(
      "backends:\n  a: {handler: sleep, max_concurrent_queries: 1}\n  b: {handler: echo}\n"
      "endpoints:\n  e: {backend: a}\n");
  REQUIRE(stack.ready());
  auto client = Connect(stack.client_address());
  auto admin = Admin(stack.admin_address());
  CallOptions o;
  o.timeout = milliseconds(30'000);
  std::vector<StatusOr<std::string>> got;
  for (int i = 0; i < 10; ++i) {
    client->CallAsync("e", "300", o, [&got](StatusOr<std::string> r) { got.push_back(r); });
  }
  WaitForStatus(*client, [](const nlohmann::json& j) {
    return j["backends"]["a"]["in_flight"] == 1 && j["backends"]["a"]["queued"] == 9;
  });
  const auto deleted_at = std::chrono::steady_clock::now();
  REQUIRE(admin->CallOk(Traffic("e", {{"b", 1}}), kAdminTimeout).ok());
  REQUIRE(admin->CallOk(Req(Command::kDeleteBackend, "a"), kAdminTimeout).ok());
  client->Wait();
  // Long before their 30 s deadline: the one in flight finishes, the queued
  // ones are told at once that they did not run.
  CHECK(std::chrono::steady_clock::now() - deleted_at < milliseconds(10'000));
  REQUIRE(got.size() == 10);
  int ok = 0, unavailable = 0;
  for (const StatusOr<std::string>& r : got) {
    if (r.ok()) {
      ++ok;
      continue;
    }
    INFO(r.status().ToString());
    CHECK(r.status().code() == StatusCode::kUnavailable);
    CHECK_THAT(r.status().message(), Catch::Contains("backend 'a' left the configuration"));
    ++unavailable;
  }
  CHECK(ok >= 1);
  CHECK(ok + unavailable == 10);
  // New calls go to b.
  StatusOr<std::string> r = client->Call("e", "to b", o);
  REQUIRE(r.ok());
  CHECK(*r == "to b");
}

TEST_CASE("A broker started after 50 changes converges to the latest version", "[e2e][control]") {
  std::string dir = MakeTempDir();
  ControllerProcess c(dir);
  c.Start();
  auto admin = Admin(c.admin());
  REQUIRE(admin->CallOk(Backend("echo", "echo"), kAdminTimeout).ok());
  uint64_t version = 0;
  for (int i = 0; i < 49; ++i) {
    // Endpoints come and go; the last one stays.
    auto r = i % 2 == 0
                 ? admin->CallOk(Endpoint("ep" + std::to_string(i), {{"echo", 1}}), kAdminTimeout)
                 : admin->CallOk(Req(Command::kDeleteEndpoint, "ep" + std::to_string(i - 1)),
                                 kAdminTimeout);
    REQUIRE(r.ok());
    version = r->version;
  }
  REQUIRE(version == 50);
  BrokerProcess broker(dir, c);
  auto worker = broker.Worker(dir, "echo", "echo", "echo-1");
  auto client = Connect(broker.client);
  CallOptions o;
  o.timeout = milliseconds(10'000);
  StatusOr<std::string> r = client->Call("ep48", "late", o);
  REQUIRE(r.ok());
  CHECK(*r == "late");
  CHECK(client->Call("ep46", "x", o).status().code() == StatusCode::kNotFound);
  CHECK(BrokerStatus(*client)["config_version"] == 50);
}

TEST_CASE("Serving goes on while the controller is down and a change after its restart applies",
          "[e2e][control]") {
  std::string dir = MakeTempDir();
  ControllerProcess c(dir);
  WriteFile(dir + "/d.yaml",
            "backends:\n  echo: {handler: echo}\nendpoints:\n  echo: {backend: echo}\n");
  c.Start(dir + "/d.yaml");
  BrokerProcess broker(dir, c);
  auto worker = broker.Worker(dir, "echo", "echo", "echo-1");
  auto client = Connect(broker.client);
  CallOptions o;
  o.timeout = milliseconds(10'000);
  REQUIRE(client->Call("echo", "before", o).ok());

  c.Kill9();
  for (int i = 0; i < 20; ++i) {
    StatusOr<std::string> r = client->Call("echo", "during " + std::to_string(i), o);
    REQUIRE(r.ok());
    CHECK(*r == "during " + std::to_string(i));
  }

  c.Start();  // same store, same ports, no file: the committed state
  auto admin = Admin(c.admin());
  auto created = admin->CallOk(Endpoint("later", {{"echo", 1}}), kAdminTimeout);
  REQUIRE(created.ok());
  CHECK(created->version == 2);
  CHECK(Eventually([&] {
    StatusOr<std::string> r = client->Call("later", "after", o);
    return r.ok() && *r == "after";
  }));
  CHECK(client->Call("echo", "still", o).ok());
}

TEST_CASE("up follows num_replicas and new backends from the controller", "[e2e][control]") {
  Stack stack(
      "backends:\n  echo: {handler: echo, num_replicas: 1}\n"
      "endpoints:\n  echo: {backend: echo}\n");
  REQUIRE(stack.ready());
  auto client = Connect(stack.client_address());
  auto admin = Admin(stack.admin_address());
  auto live = [&](const std::string& backend, int n) {
    return Eventually([&] {
      nlohmann::json s = BrokerStatus(*client);
      return s.contains("backends") && s["backends"].contains(backend) &&
             s["backends"][backend].value("replicas", -1) == n &&
             s["backends"][backend].value("desired_replicas", -1) == n;
    });
  };
  sc::AdminRequest up = Req(Command::kUpdateBackend, "echo");
  up.backend.num_replicas = 3;
  REQUIRE(admin->CallOk(up, kAdminTimeout).ok());
  CHECK(live("echo", 3));
  up.backend.num_replicas = 1;
  REQUIRE(admin->CallOk(up, kAdminTimeout).ok());
  CHECK(live("echo", 1));

  REQUIRE(admin->CallOk(Backend("more", "echo", 2), kAdminTimeout).ok());
  REQUIRE(admin->CallOk(Endpoint("more", {{"more", 1}}), kAdminTimeout).ok());
  CHECK(live("more", 2));
  CallOptions o;
  o.timeout = milliseconds(10'000);
  StatusOr<std::string> r = client->Call("more", "hi", o);
  REQUIRE(r.ok());
  CHECK(*r == "hi");
  CHECK(client->Call("echo", "hi", o).ok());
  CHECK_THAT(stack.log(), Catch::Contains("draining echo-"));
}

TEST_CASE("up keeps a backend's replicas when its handler is changed to one it cannot start",
          "[e2e][control]") {
  Stack stack(
      "backends:\n  echo: {handler: echo, num_replicas: 2}\n"
      "endpoints:\n  echo: {backend: echo}\n");
  REQUIRE(stack.ready());
  auto client = Connect(stack.client_address());
  auto admin = Admin(stack.admin_address());
  sc::AdminRequest typo = Req(Command::kUpdateBackend, "echo");
  typo.backend.handler = "ecko";
  auto changed = admin->CallOk(typo, kAdminTimeout);
  REQUIRE(changed.ok());
  REQUIRE(Eventually([&] {
    return stack.log().find("backend 'echo': handler 'ecko' is not built in") != std::string::npos;
  }));
  CHECK(BrokerStatus(*client)["config_version"] == changed->version);
  CallOptions o;
  o.timeout = milliseconds(10'000);
  for (int i = 0; i < 10; ++i) {
    StatusOr<std::string> r = client->Call("echo", "still served", o);
    REQUIRE(r.ok());
    CHECK(*r == "still served");
  }
  CHECK(BrokerStatus(*client)["backends"]["echo"]["replicas"] == 2);
  CHECK_THAT(stack.log(), !Catch::Contains("draining echo-"));
}

TEST_CASE("up starts a crashed controller again from its store, keeping the changes made since",
          "[e2e][control]") {
  Stack stack(
      "backends:\n  echo: {handler: echo, num_replicas: 1}\n"
      "endpoints:\n  echo: {backend: echo}\n");
  REQUIRE(stack.ready());
  auto admin = Admin(stack.admin_address());
  REQUIRE(admin->CallOk(Backend("more", "echo", 1), kAdminTimeout).ok());
  auto acknowledged = admin->CallOk(Endpoint("more", {{"more", 1}}), kAdminTimeout);
  REQUIRE(acknowledged.ok());
  // The file is then made invalid: a restart must not need it.
  WriteFile(stack.dir() + "/deployment.yaml", "backends: [not a map\n");

  std::smatch m;
  std::string log = stack.log();
  REQUIRE(std::regex_search(log, m, std::regex("started controller \\(pid ([0-9]+)\\)")));
  const pid_t pid = std::stoi(m[1]);
  REQUIRE(kill(pid, SIGKILL) == 0);
  REQUIRE(Eventually([&] {
    return std::regex_search(stack.log(), std::regex("started controller \\(pid (?!" +
                                                     std::to_string(pid) + "\\))[0-9]+\\)"));
  }));
  auto now = admin->CallOk(Req(Command::kGetState), kAdminTimeout);
  REQUIRE(now.ok());
  CHECK(now->version == acknowledged->version);
  CHECK(now->state == acknowledged->state);
  auto client = Connect(stack.client_address());
  CallOptions o;
  o.timeout = milliseconds(10'000);
  StatusOr<std::string> r = client->Call("more", "still there", o);
  REQUIRE(r.ok());
  CHECK(*r == "still there");
  CHECK_THAT(stack.log(), !Catch::Contains("draining more-"));

  // SIGHUP to the restarted controller still applies the file.
  std::string restarted_log = stack.log();
  std::smatch again;
  REQUIRE(std::regex_search(
      restarted_log, again,
      std::regex("started controller \\(pid (?!" + std::to_string(pid) + "\\))([0-9]+)\\)")));
  WriteFile(stack.dir() + "/deployment.yaml",
            "backends:\n  echo: {handler: echo, num_replicas: 1}\n  viahup: {handler: echo}\n"
            "endpoints:\n  echo: {backend: echo}\n");
  REQUIRE(kill(std::stoi(again[1]), SIGHUP) == 0);
  CHECK(Eventually([&] {
    auto state = admin->CallOk(Req(Command::kGetState), kAdminTimeout);
    return state.ok() && state->state.backends.contains("viahup") &&
           !state->state.backends.contains("more");
  }));
}

TEST_CASE("A user_config change reaches the handler of every replica without a restart",
          "[e2e][control]") {
  Stack stack(
      "backends:\n  cfg: {handler: config, num_replicas: 2, user_config: v1}\n"
      "endpoints:\n  cfg: {backend: cfg}\n");
  REQUIRE(stack.ready());
  auto client = Connect(stack.client_address());
  auto admin = Admin(stack.admin_address());
  CallOptions o;
  o.timeout = milliseconds(10'000);
  CHECK(Eventually([&] {
    StatusOr<std::string> r = client->Call("cfg", "", o);
    return r.ok() && *r == "v1";
  }));
  sc::AdminRequest change = Req(Command::kUpdateBackend, "cfg");
  change.backend.user_config = "v2";
  REQUIRE(admin->CallOk(change, kAdminTimeout).ok());
  // Once both replicas answered v2 in a row of calls, none answers v1 again.
  int in_a_row = 0;
  CHECK(Eventually([&] {
    StatusOr<std::string> r = client->Call("cfg", "", o);
    in_a_row = r.ok() && *r == "v2" ? in_a_row + 1 : 0;
    return in_a_row >= 20;
  }));
}

}  // namespace
}  // namespace zserve::testing
