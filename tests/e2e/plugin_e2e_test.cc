// End to end, handlers as plugins (issue 8, include/zserve/plugin.h): the
// stock `zserve worker --plugin` serving a plugin built by the tests
// (tests/worker/plugins/) as a replica of a `zserve up` stack, called through
// the client library; and each bad plugin refused at start with its reason.
#include <catch2/catch.hpp>
#include <csignal>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "tests/e2e/stack.h"
#include "tests/e2e/test_client.h"
#include "zserve/client.h"

namespace zserve::testing {
namespace {

using std::chrono::milliseconds;

// `up` starts no replica of textops (num_replicas 0) and does not wait for
// one: the test runs it by hand with --plugin.
constexpr const char* kDeployment = R"(
backends:
  echo:
    handler: echo
    num_replicas: 1
  textops:
    handler: textops
    num_replicas: 0
    max_batch_size: 8
endpoints:
  echo:
    backend: echo
  text:
    backend: textops
)";

// Runs `zserve ctl ARGS...` against the stack; it must succeed.
void Ctl(const Stack& stack, std::vector<std::string> args) {
  args.insert(args.begin(), {"ctl", "--controller", stack.admin_address()});
  Process ctl(kBinary, args, stack.dir() + "/ctl.log");
  std::optional<int> code = ctl.Wait(milliseconds(10'000));
  INFO(ReadFile(stack.dir() + "/ctl.log"));
  REQUIRE(code == 0);
}

TEST_CASE("zserve worker --plugin serves a plugin's methods as a replica", "[e2e][plugin]") {
  Stack stack(kDeployment);
  REQUIRE(stack.ready());
  const std::string worker_log = stack.dir() + "/plugin_worker.log";
  Process worker(
      kBinary,
      {"worker", "--plugin", PLUGIN_TEXTOPS, "--plugin-arg", "arg> ", "--backend", "textops",
       "--broker", stack.worker_address(), "--controller", stack.admin_address(),
       "--controller-pub", stack.updates_address(), "--metrics-bind", ""},
      worker_log);
  auto client = Connect(stack);
  bool registered = Eventually([&] {
    nlohmann::json j = BrokerStatus(*client);
    return j["backends"].contains("textops") && j["backends"]["textops"]["replicas"] == 1;
  });
  INFO(ReadFile(worker_log));  // on failure, what the worker said
  REQUIRE(registered);

  CallOptions upper;
  upper.method = "upper";
  StatusOr<std::string> r = client->Call("text", "hello plugin", upper);
  REQUIRE(r.ok());
  CHECK(*r == "arg> HELLO PLUGIN");  // the prefix given to create()
  CallOptions len;
  len.method = "len";
  r = client->Call("text", std::string("a\0b", 3), len);
  REQUIRE(r.ok());
  CHECK(*r == "3");

  // A per-request error of the plugin reaches the caller as HANDLER_ERROR
  // with the plugin's message, and fails that request only.
  std::map<int, StatusOr<std::string>> answers;
  for (int i = 0; i < 20; ++i) {
    std::string payload = i % 5 == 0 ? "" : "item " + std::to_string(i);
    client->CallAsync("text", payload, upper,
                      [&answers, i](StatusOr<std::string> a) { answers.emplace(i, std::move(a)); });
  }
  client->Wait();
  REQUIRE(answers.size() == 20);
  for (auto& [i, a] : answers) {
    INFO("call " << i);
    if (i % 5 == 0) {
      REQUIRE_FALSE(a.ok());
      CHECK(a.status().code() == StatusCode::kHandlerError);
      CHECK(a.status().message() == "upper: empty payload");
    } else {
      REQUIRE(a.ok());
      CHECK(*a == "arg> ITEM " + std::to_string(i));
    }
  }

  // A method outside the plugin's list never reaches it.
  CallOptions other;
  other.method = "lower";
  r = client->Call("text", "x", other);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kNotFound);
  CHECK_THAT(r.status().message(), Catch::Contains("has no method 'lower'"));

  // The backend's user_config reaches the plugin's reconfigure, live.
  Ctl(stack, {"update-backend", "textops", "--user-config", "cfg> "});
  CHECK(Eventually([&] {
    StatusOr<std::string> a = client->Call("text", "again", upper);
    return a.ok() && *a == "cfg> AGAIN";
  }));

  // SIGTERM drains the plugin's worker; it exits 0 (destroy, then dlclose).
  worker.Signal(SIGTERM);
  REQUIRE(worker.Wait(milliseconds(15'000)) == 0);
}

TEST_CASE("A worker told to stop while its plugin loads drains once loaded and exits",
          "[e2e][plugin]") {
  // SIGTERM during create() was left in the signal pipe and dropped: the
  // worker served on, and `up` counted it as gone (it scaled past it).
  Stack stack(kDeployment);
  REQUIRE(stack.ready());
  const std::string go = stack.dir() + "/loaded";
  const std::string worker_log = stack.dir() + "/slow_worker.log";
  Process worker(kBinary,
                 {"worker", "--plugin", PLUGIN_SLOW_CREATE, "--plugin-arg", go, "--backend",
                  "textops", "--broker", stack.worker_address(), "--metrics-bind", ""},
                 worker_log);
  REQUIRE(Eventually([&] { return std::ifstream(go + ".loading").good(); }));
  worker.Signal(SIGTERM);  // while create() runs
  WriteFile(go, "");       // the model is loaded
  std::optional<int> code = worker.Wait(milliseconds(10'000));
  INFO(ReadFile(worker_log));
  CHECK(code == 0);
  CHECK_THAT(ReadFile(worker_log), Catch::Contains("drained: every result sent, leaving"));
}

TEST_CASE("zserve worker refuses a bad plugin at start with the reason", "[e2e][plugin]") {
  const std::string dir = MakeTempDir();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {PLUGIN_NO_SYMBOL, "refused: it has no symbol 'zserve_plugin_v1'"},
      {PLUGIN_WRONG_ABI, "refused: plugin ABI version 2, this zserve speaks 1"},
      {PLUGIN_MISSING_FUNCTION, "refused: its table lacks required functions: handle_batch"},
      {PLUGIN_CREATE_FAILS,
       "refused: create() failed: cannot open model file /nonexistent/model.bin"},
      {PLUGIN_CREATE_THROWS, "refused: create() threw: model weights are corrupt"},
      {dir + "/libmissing.so",
       "NOT_FOUND: plugin '" + dir + "/libmissing.so' refused: no such file"},
  };
  int n = 0;
  for (const auto& [plugin, message] : cases) {
    INFO(plugin);
    const std::string err = dir + "/worker-" + std::to_string(n++) + ".err";
    // No broker is needed: the plugin is refused before the worker connects.
    Process worker(kBinary,
                   {"worker", "--plugin", plugin, "--backend", "x", "--broker",
                    "tcp://127.0.0.1:" + std::to_string(FreePort())},
                   err);
    REQUIRE(worker.Wait(milliseconds(10'000)) == 1);
    std::string text = ReadFile(err);
    CHECK_THAT(text, Catch::Contains("zserve worker: "));
    CHECK_THAT(text, Catch::Contains(message));
    CHECK_THAT(text, Catch::Contains(plugin));
  }
}

TEST_CASE("zserve worker wants exactly one of --handler and --plugin", "[e2e][plugin]") {
  const std::string dir = MakeTempDir();
  Process neither(kBinary, {"worker", "--backend", "x"}, dir + "/neither.err");
  std::optional<int> code = neither.Wait(milliseconds(10'000));
  REQUIRE(code.has_value());
  CHECK(*code != 0);
  CHECK_THAT(ReadFile(dir + "/neither.err"),
             Catch::Contains("one of --handler and --plugin is required"));

  // Were both taken, the worker would load the plugin and run: the bounded
  // wait would fail the test.
  Process both(kBinary,
               {"worker", "--backend", "x", "--handler", "echo", "--plugin", PLUGIN_TEXTOPS},
               dir + "/both.err");
  code = both.Wait(milliseconds(10'000));
  REQUIRE(code.has_value());
  CHECK(*code == 2);  // a usage error
  CHECK_THAT(ReadFile(dir + "/both.err"),
             Catch::Contains("Requires at most 1 options be given from [--handler,--plugin]"));
}

TEST_CASE("zserve worker takes --handler over ZSERVE_PLUGIN and refuses both variables",
          "[e2e][plugin]") {
  const std::string dir = MakeTempDir();
  // The flag wins over the other's variable: the plugin is not loaded (the
  // variable names no file, which would be refused).
  setenv("ZSERVE_PLUGIN", "/nonexistent/plugin.so", 1);
  Process flag(kBinary,
               {"worker", "--backend", "x", "--handler", "echo", "--broker", "tcp://127.0.0.1:1",
                "--metrics-bind", ""},
               dir + "/flag.err");
  CHECK(
      Eventually([&] { return ReadFile(dir + "/flag.err").find("serving") != std::string::npos; }));
  flag.Signal(SIGTERM);
  CHECK(flag.Wait(milliseconds(10'000)).has_value());
  CHECK_THAT(ReadFile(dir + "/flag.err"), !Catch::Contains("plugin"));
  // Both variables and no flag: which one is meant is not guessed.
  setenv("ZSERVE_HANDLER", "echo", 1);
  Process both(kBinary, {"worker", "--backend", "x", "--broker", "tcp://127.0.0.1:1"},
               dir + "/both.err");
  REQUIRE(both.Wait(milliseconds(10'000)) == std::optional<int>(1));
  CHECK_THAT(ReadFile(dir + "/both.err"),
             Catch::Contains("ZSERVE_HANDLER and ZSERVE_PLUGIN are both set"));
  unsetenv("ZSERVE_PLUGIN");
  unsetenv("ZSERVE_HANDLER");
}

}  // namespace
}  // namespace zserve::testing
