// The deployment file (controller/deployment_file.h) and the versioned
// configuration store (controller/config_store.h).
#include "controller/deployment_file.h"

#include <yaml-cpp/yaml.h>

#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "controller/config_store.h"
#include "schemas/config.h"
#include "zserve/status.h"

#ifndef ZSERVE_SOURCE_DIR
#error "ZSERVE_SOURCE_DIR must name the source tree (tests/controller/CMakeLists.txt)"
#endif

namespace {

using Catch::Matchers::Contains;
using zserve::StatusCode;
using zserve::controller::ConfigStore;
using zserve::controller::LoadDeploymentFile;
using zserve::controller::ParseDeployment;
namespace sc = zserve::schemas;

const std::string kSourceDir = ZSERVE_SOURCE_DIR;

}  // namespace

TEST_CASE("The shorthand 'backend: echo' sends all traffic to echo", "[controller]") {
  auto state = ParseDeployment(R"(
backends:
  echo: {}
endpoints:
  echo:
    backend: echo
)",
                               "test.yaml");
  REQUIRE(state.ok());
  REQUIRE(state->endpoints.count("echo") == 1);
  const sc::EndpointConfig& e = state->endpoints.at("echo");
  CHECK(e.name == "echo");
  CHECK(e.traffic == std::map<std::string, double>{{"echo", 1.0}});
  CHECK(e.shadow.empty());
  CHECK(e.timeout_ms == sc::kDefaultTimeoutMs);
  // Every backend key at its default; the handler defaults to the name.
  const sc::BackendConfig& b = state->backends.at("echo");
  CHECK(b.name == "echo");
  CHECK(b.handler == "echo");
  CHECK(b.num_replicas == 1);
  CHECK(b.max_batch_size == 1);
  CHECK(b.batch_wait_timeout_ms == 0);
  CHECK(b.max_concurrent_queries == 0);
  CHECK(b.max_queued_requests == sc::kDefaultMaxQueuedRequests);
  CHECK(b.retry_on_replica_failure == 1);
  CHECK(b.user_config.empty());
}

TEST_CASE("A file with every key parses to the right values", "[controller]") {
  auto state = ParseDeployment(R"(
backends:
  model_a:
    handler: echo
    num_replicas: 3
    max_batch_size: 8
    batch_wait_timeout_ms: 5
    max_concurrent_queries: 20
    max_queued_requests: 1000
    retry_on_replica_failure: 2
    user_config: {threshold: 0.5, labels: [cat, dog]}
  model_b:
    handler: sleep
    num_replicas: 0
    user_config: plain text
endpoints:
  classify:
    traffic: {model_a: 0.7, model_b: 0.3}
    shadow: {model_b: 0.1}
    timeout_ms: 2500
  slow:
    backend: model_b
)",
                               "test.yaml");
  REQUIRE(state.ok());
  REQUIRE(state->backends.size() == 2);
  REQUIRE(state->endpoints.size() == 2);

  const sc::BackendConfig& a = state->backends.at("model_a");
  CHECK(a.name == "model_a");
  CHECK(a.handler == "echo");
  CHECK(a.num_replicas == 3);
  CHECK(a.max_batch_size == 8);
  CHECK(a.batch_wait_timeout_ms == 5);
  CHECK(a.max_concurrent_queries == 20);
  CHECK(a.max_queued_requests == 1000);
  CHECK(a.retry_on_replica_failure == 2);
  // Structured user_config is handed on as YAML text that means the same.
  YAML::Node uc = YAML::Load(a.user_config);
  REQUIRE(uc.IsMap());
  CHECK(uc["threshold"].as<double>() == 0.5);
  CHECK(uc["labels"].as<std::vector<std::string>>() == std::vector<std::string>{"cat", "dog"});

  const sc::BackendConfig& b = state->backends.at("model_b");
  CHECK(b.handler == "sleep");
  CHECK(b.num_replicas == 0);
  CHECK(b.user_config == "plain text");

  const sc::EndpointConfig& c = state->endpoints.at("classify");
  CHECK(c.traffic == std::map<std::string, double>{{"model_a", 0.7}, {"model_b", 0.3}});
  CHECK(c.shadow == std::map<std::string, double>{{"model_b", 0.1}});
  CHECK(c.timeout_ms == 2500);
  CHECK(state->endpoints.at("slow").traffic == std::map<std::string, double>{{"model_b", 1.0}});
}

TEST_CASE("A document start marker before the file and an empty document after it are fine",
          "[controller]") {
  auto state = ParseDeployment(
      "---\nbackends:\n  a: {handler: echo}\nendpoints:\n  e: {backend: a}\n---\n", "test.yaml");
  REQUIRE(state.ok());
  CHECK(state->backends.size() == 1);
}

TEST_CASE("A user_config key with nothing after it is an empty user_config", "[controller]") {
  auto state = ParseDeployment(
      "backends:\n  a:\n    handler: echo\n    user_config:\nendpoints:\n  e: {backend: a}\n",
      "test.yaml");
  REQUIRE(state.ok());
  CHECK(state->backends.at("a").user_config.empty());
}

TEST_CASE("Bad deployment files are refused with a message that says why", "[controller]") {
  struct Case {
    const char* what;
    std::string yaml;
    std::vector<std::string> want;  // substrings of the message
  };
  const std::vector<Case> cases = {
      {"unknown backend key",
       R"(backends:
  echo:
    num_replica: 2
endpoints:
  echo:
    backend: echo
)",
       {"test.yaml:3", "unknown key 'num_replica'", "num_replicas"}},
      {"unknown endpoint key",
       R"(backends:
  echo: {}
endpoints:
  echo:
    backend: echo
    timeout: 5
)",
       {"test.yaml:6", "unknown key 'timeout'"}},
      {"unknown top-level key", "backend:\n  echo: {}\n", {"unknown key 'backend'"}},
      {"a key given twice in a backend",
       "backends:\n  a:\n    handler: echo\n    num_replicas: 1\n    num_replicas: 5\n"
       "endpoints:\n  e: {backend: a}\n",
       {"test.yaml:5", "key 'num_replicas' is given twice"}},
      {"a key given twice in an endpoint's traffic",
       "backends:\n  a: {handler: echo}\nendpoints:\n  e: {traffic: {a: 0.5, a: 0.5}}\n",
       {"key 'a' is given twice"}},
      {"a top-level section given twice",
       "backends:\n  a: {handler: echo}\nendpoints:\n  e: {backend: a}\nbackends:\n  b: {}\n",
       {"test.yaml:5", "key 'backends' is given twice"}},
      {"a second YAML document after empty ones",
       "backends:\n  a: {handler: echo}\nendpoints:\n  e: {backend: a}\n---\n---\n---\n---\n"
       "backends: {}\n",
       {"more than one YAML document"}},
      {"two YAML documents",
       "backends:\n  a: {handler: echo}\nendpoints:\n  e: {backend: a}\n---\nbackends: {}\n",
       {"more than one YAML document"}},
      {"weights not summing to 1",
       R"(backends:
  a: {handler: echo}
  b: {handler: echo}
endpoints:
  ep:
    traffic: {a: 0.7, b: 0.4}
)",
       {"test.yaml", "endpoint 'ep'", "sum to 1"}},
      {"traffic naming a missing backend",
       R"(backends:
  a: {handler: echo}
endpoints:
  ep:
    traffic: {a: 0.5, ghost: 0.5}
)",
       {"unknown backend 'ghost'"}},
      {"backend naming a missing backend",
       R"(backends:
  a: {handler: echo}
endpoints:
  ep:
    backend: ghost
)",
       {"unknown backend 'ghost'"}},
      {"both backend and traffic",
       R"(backends:
  a: {handler: echo}
endpoints:
  ep:
    backend: a
    traffic: {a: 1}
)",
       {"both 'backend' and 'traffic'"}},
      {"neither backend nor traffic",
       R"(backends:
  a: {handler: echo}
endpoints:
  ep:
    timeout_ms: 100
)",
       {"needs 'backend' or 'traffic'"}},
      {"negative num_replicas",
       R"(backends:
  echo:
    num_replicas: -1
)",
       {"test.yaml:3", "num_replicas"}},
      {"num_replicas not a number",
       R"(backends:
  echo:
    num_replicas: two
)",
       {"num_replicas", "two"}},
      {"num_replicas out of range",
       R"(backends:
  echo:
    num_replicas: 5000
)",
       {"num_replicas"}},
      {"traffic weight not a number",
       R"(backends:
  a: {handler: echo}
endpoints:
  ep:
    traffic: {a: lots}
)",
       {"values must be numbers"}},
      {"invalid backend name",
       R"(backends:
  "bad name": {handler: echo}
)",
       {"bad name"}},
      {"backends not a mapping", "backends: [echo]\n", {"'backends' must be a mapping"}},
      {"invalid YAML", "backends: {echo: [\n", {"test.yaml", "not valid YAML"}},
      {"empty file", "", {"test.yaml", "empty"}},
      {"only a comment", "# nothing here\n", {"empty"}},
  };
  for (const Case& c : cases) {
    INFO("case: " << c.what);
    auto state = ParseDeployment(c.yaml, "test.yaml");
    REQUIRE_FALSE(state.ok());
    CHECK(state.status().code() == StatusCode::kBadRequest);
    for (const std::string& w : c.want) CHECK_THAT(state.status().message(), Contains(w));
  }
}

TEST_CASE("LoadDeploymentFile of a missing path is NOT_FOUND", "[controller]") {
  const std::string path = kSourceDir + "/examples/no-such-file.yaml";
  auto state = LoadDeploymentFile(path);
  REQUIRE_FALSE(state.ok());
  CHECK(state.status().code() == StatusCode::kNotFound);
  CHECK_THAT(state.status().message(), Contains(path));
}

TEST_CASE("LoadDeploymentFile of a directory says it is one", "[controller]") {
  const std::string path = kSourceDir + "/examples";
  auto state = LoadDeploymentFile(path);
  REQUIRE_FALSE(state.ok());
  CHECK(state.status().code() == StatusCode::kBadRequest);
  CHECK_THAT(state.status().message(), Contains(path) && Contains("is a directory"));
}

TEST_CASE("The shipped example deployments load", "[controller]") {
  SECTION("examples/deployment.yaml") {
    auto state = LoadDeploymentFile(kSourceDir + "/examples/deployment.yaml");
    INFO(state.status().ToString());
    REQUIRE(state.ok());
    CHECK(state->backends.at("echo").num_replicas == 2);
    CHECK(state->backends.at("sleep").max_concurrent_queries == 1);
    CHECK(state->endpoints.at("echo").traffic == std::map<std::string, double>{{"echo", 1.0}});
    CHECK(state->endpoints.at("sleep").timeout_ms == 60000);
  }
  SECTION("examples/traffic_split.yaml") {
    auto state = LoadDeploymentFile(kSourceDir + "/examples/traffic_split.yaml");
    INFO(state.status().ToString());
    REQUIRE(state.ok());
    CHECK(state->endpoints.at("classify").traffic ==
          std::map<std::string, double>{{"model_a", 0.7}, {"model_b", 0.3}});
  }
}

TEST_CASE("ConfigStore commits a valid state as the next version", "[controller]") {
  auto parsed =
      ParseDeployment("backends:\n  echo: {}\nendpoints:\n  echo: {backend: echo}\n", "test.yaml");
  REQUIRE(parsed.ok());
  const sc::ConfigState state = *parsed;

  auto opened = ConfigStore::Open(":memory:");
  REQUIRE(opened.ok());
  ConfigStore& store = **opened;
  CHECK(store.version() == 0);

  auto first = store.Replace(state);
  REQUIRE(first.ok());
  CHECK(*first);
  CHECK(store.version() == 1);
  CHECK(store.state() == state);

  auto same = store.Replace(state);
  REQUIRE(same.ok());
  CHECK_FALSE(*same);
  CHECK(store.version() == 1);

  sc::ConfigState invalid = state;
  invalid.endpoints["echo"].traffic = {{"ghost", 1.0}};
  auto refused = store.Replace(invalid);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == StatusCode::kBadRequest);
  CHECK_THAT(refused.status().message(), Contains("ghost"));
  CHECK(store.version() == 1);
  CHECK(store.state() == state);

  sc::ConfigState changed = state;
  changed.backends["echo"].num_replicas = 4;
  auto next = store.Replace(changed);
  REQUIRE(next.ok());
  CHECK(*next);
  CHECK(store.version() == 2);
  CHECK(store.state() == changed);
}

TEST_CASE("Endpoints take route and methods keys", "[controller]") {
  auto state = ParseDeployment(R"(backends:
  echo: {}
endpoints:
  echo: {backend: echo, route: /echo}
  put: {backend: echo, route: /v1/put, methods: [put, PATCH]}
  one: {backend: echo, route: /one, methods: GET}
  none: {backend: echo}
)",
                               "test.yaml");
  REQUIRE(state.ok());
  CHECK(state->endpoints.at("echo").route == "/echo");
  CHECK(state->endpoints.at("echo").methods == std::vector<std::string>{"GET", "POST"});
  CHECK(state->endpoints.at("put").methods == std::vector<std::string>{"PUT", "PATCH"});
  CHECK(state->endpoints.at("one").methods == std::vector<std::string>{"GET"});
  CHECK(state->endpoints.at("none").route.empty());
}

TEST_CASE("Bad routes and methods in a deployment file say which endpoint", "[controller]") {
  struct Case {
    std::string endpoints;
    std::string want;
  };
  const Case cases[] = {
      {"  a: {backend: echo, route: a}\n", "endpoint 'a': route 'a' must start with '/'"},
      {"  a: {backend: echo, route: /-/routes}\n", "under '/-/'"},
      {"  a: {backend: echo, route: /x}\n  b: {backend: echo, route: /x}\n",
       "endpoint 'b': route '/x' is already the route of endpoint 'a'"},
      {"  a: {backend: echo, route: /x, methods: [GET, FETCH]}\n",
       "endpoint 'a': method 'FETCH' is not one of"},
      {"  a: {backend: echo, route: /x, methods: {GET: 1}}\n", "'methods' must be a list"},
      {"  a: {backend: echo, route: [x]}\n", "'route' must be a string"},
  };
  for (const Case& c : cases) {
    INFO(c.endpoints);
    auto state = ParseDeployment("backends:\n  echo: {}\nendpoints:\n" + c.endpoints, "test.yaml");
    REQUIRE_FALSE(state.ok());
    CHECK(state.status().code() == StatusCode::kBadRequest);
    CHECK_THAT(state.status().message(), Contains(c.want));
  }
}

TEST_CASE("The default deployment routes /echo to the echo endpoint", "[controller]") {
  auto state = LoadDeploymentFile(kSourceDir + "/examples/deployment.yaml");
  REQUIRE(state.ok());
  CHECK(state->endpoints.at("echo").route == "/echo");
}

TEST_CASE("Aliases that stand for a billion nodes load quickly and stay aliases", "[controller]") {
  auto state = ParseDeployment(
      "backends:\n  b:\n    handler: echo\n    user_config:\n"
      "      a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
      "      a1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]\n"
      "      a2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]\n"
      "      a3: &a3 [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]\n"
      "      a4: &a4 [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]\n"
      "      a5: &a5 [*a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4]\n"
      "      a6: &a6 [*a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5]\n"
      "      a7: &a7 [*a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6]\n"
      "      a8: &a8 [*a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7]\n"
      "endpoints:\n  e: {backend: b}\n",
      "test.yaml");
  REQUIRE(state.ok());
  // Handed on as YAML text with its anchors and aliases, not expanded.
  CHECK(state->backends.at("b").user_config.size() < 2000);
  INFO(state->backends.at("b").user_config);
  CHECK(state->backends.at("b").user_config.find("*") != std::string::npos);
}

TEST_CASE("A block-style user_config is passed on as one line of flow-style YAML", "[controller]") {
  auto state = ParseDeployment(
      "backends:\n  a:\n    handler: echo\n    user_config:\n      threshold: 0.7\n"
      "      labels:\n        - pos\n        - neg\n"
      "  b:\n    handler: echo\n    user_config:\n      - x\n      - y: 1\n        z: [2, 3]\n"
      "  c:\n    handler: echo\n    user_config:\n      note: |\n        two\n        lines\n"
      "endpoints:\n  e: {backend: a}\n",
      "test.yaml");
  REQUIRE(state.ok());
  CHECK(state->backends.at("a").user_config == "{threshold: 0.7, labels: [pos, neg]}");
  CHECK(state->backends.at("b").user_config == "[x, {y: 1, z: [2, 3]}]");
  const std::string& c = state->backends.at("c").user_config;
  INFO(c);
  CHECK(c.find('\n') == std::string::npos);
  CHECK(YAML::Load(c)["note"].as<std::string>() == "two\nlines\n");
}

namespace {

// The user_config of backend `a` in a file that gives it as `user_config`.
std::string UserConfigOf(const std::string& user_config) {
  auto state =
      ParseDeployment("backends:\n  a:\n    handler: echo\n    user_config: " + user_config +
                          "\nendpoints:\n  e: {backend: a}\n",
                      "test.yaml");
  REQUIRE(state.ok());
  return state->backends.at("a").user_config;
}

// Each scalar of `node` (keys included) with whether it was quoted, in order.
void Scalars(const YAML::Node& node, std::vector<std::pair<std::string, bool>>* out) {
  if (node.IsScalar()) {
    out->emplace_back(node.Scalar(), node.Tag() == "!");
  } else if (node.IsMap()) {
    for (const auto& kv : node) {
      Scalars(kv.first, out);
      Scalars(kv.second, out);
    }
  } else if (node.IsSequence()) {
    for (const auto& item : node) Scalars(item, out);
  }
}

}  // namespace

TEST_CASE("A quoted scalar in a user_config stays a quoted string", "[controller]") {
  CHECK(UserConfigOf(R"({a: "true", b: "1", c: "0x10", d: "~", e: "007", v: "1.10"})") ==
        R"({a: "true", b: "1", c: "0x10", d: "~", e: "007", v: "1.10"})");
  // Plain scalars stay plain: numbers, booleans, null and words.
  CHECK(UserConfigOf("{a: true, b: 1, c: 0x10, d: ~, e: 007, v: 1.10, w: word}") ==
        "{a: true, b: 1, c: 0x10, d: ~, e: 007, v: 1.10, w: word}");
  // Keys too, and single quotes.
  CHECK(UserConfigOf(R"({"1": one, 2: two, 'false': "no"})") ==
        R"({"1": one, 2: two, "false": "no"})");
  CHECK(UserConfigOf(R"(["1", 1, [null, "null"]])") == R"(["1", 1, [~, "null"]])");
}

TEST_CASE("Quoted scalars in nested user_config collections stay quoted in block and flow style",
          "[controller]") {
  const std::string want = R"({outer: {x: "2", y: [3, "4", {z: "false"}]}, "s": ["null", n]})";
  CHECK(UserConfigOf(R"({outer: {x: "2", y: [3, "4", {z: 'false'}]}, "s": ["null", n]})") == want);
  CHECK(UserConfigOf("\n      outer:\n        x: \"2\"\n        y:\n          - 3\n"
                     "          - \"4\"\n          - z: 'false'\n      \"s\":\n"
                     "        - \"null\"\n        - n") == want);
  // A quoted scalar reached through an alias is still one quoted scalar.
  CHECK(UserConfigOf(R"({a: &x "1", b: *x})") == R"({a: &1 "1", b: *1})");
}

TEST_CASE("Quoted user_config strings that need escapes read back the same", "[controller]") {
  const std::string file =
      R"({"say \"hi\"": "back\\slash", nl: "two\nlines", tab: "a\tb", u: "caf\u00e9 \u2603",)"
      R"( s: 'it''s', lit: 'x: y', hash: "a #b", empty: "",)"
      " plain: caf\u00e9}";
  const std::string got = UserConfigOf(file);
  INFO(got);
  CHECK(got.find('\n') == std::string::npos);
  std::vector<std::pair<std::string, bool>> want, back;
  Scalars(YAML::Load(file), &want);
  Scalars(YAML::Load(got), &back);
  CHECK(back == want);
  CHECK(want.at(0) == std::pair<std::string, bool>{"say \"hi\"", true});
  CHECK(want.at(7) == std::pair<std::string, bool>{"caf\u00e9 \u2603", true});
}

TEST_CASE("Whole numbers with leading zeros are decimal", "[controller]") {
  auto state = ParseDeployment(
      "backends:\n  a:\n    handler: echo\n    num_replicas: 010\n    max_batch_size: 08\n"
      "endpoints:\n  e:\n    backend: a\n    timeout_ms: 0100\n",
      "test.yaml");
  REQUIRE(state.ok());
  CHECK(state->backends.at("a").num_replicas == 10);
  CHECK(state->backends.at("a").max_batch_size == 8);
  CHECK(state->endpoints.at("e").timeout_ms == 100);
}

TEST_CASE("Whole numbers in other forms than decimal digits are refused", "[controller]") {
  const std::string value = GENERATE("0x10", "0o10", "1e3", "1.5", "12abc", "1_000", "+", "[1]");
  auto state = ParseDeployment("backends:\n  a:\n    handler: echo\n    num_replicas: " + value +
                                   "\nendpoints:\n  e: {backend: a}\n",
                               "test.yaml");
  INFO(value);
  REQUIRE_FALSE(state.ok());
  CHECK_THAT(state.status().message(), Contains("test.yaml:4"));
  CHECK_THAT(state.status().message(), Contains("'num_replicas' must be a whole number"));
}

TEST_CASE("A negative or huge whole number says which it is", "[controller]") {
  // Both said "must be a whole number >= 0", which 5000000000 is.
  struct Case {
    std::string value;
    std::string want;
  };
  const Case c = GENERATE(Case{"-3", "'num_replicas' must be >= 0, got '-3'"},
                          Case{"5000000000", "'num_replicas' is 5000000000, too large"},
                          Case{"99999999999999999999999", "is 99999999999999999999999, too large"},
                          Case{"-99999999999999999999999", "must be >= 0, got '-9999999"});
  auto state = ParseDeployment("backends:\n  a:\n    handler: echo\n    num_replicas: " + c.value +
                                   "\nendpoints:\n  e: {backend: a}\n",
                               "test.yaml");
  INFO(c.value);
  REQUIRE_FALSE(state.ok());
  CHECK_THAT(state.status().message(), Contains("test.yaml:4") && Contains(c.want));
}

TEST_CASE("A null or non-scalar key where a name belongs is refused", "[controller]") {
  struct Case {
    std::string yaml;
    std::string want;
  };
  const Case c = GENERATE(
      Case{"backends:\n  ~:\n    handler: echo\n", "test.yaml:2"},
      Case{"backends:\n  :\n    handler: echo\n", "test.yaml:2"},
      Case{"backends:\n  [a, b]:\n    handler: echo\n", "test.yaml:2"},
      Case{"backends:\n  a: {handler: echo}\nendpoints:\n  null: {backend: a}\n", "test.yaml:4"},
      Case{"backends:\n  a: {handler: echo}\nendpoints:\n  e: {traffic: {~: 1}}\n", "test.yaml:4"},
      Case{"backends:\n  a: {handler: echo, ~: 1}\n", "test.yaml:2"});
  INFO(c.yaml);
  auto state = ParseDeployment(c.yaml, "test.yaml");
  REQUIRE_FALSE(state.ok());
  CHECK(state.status().code() == StatusCode::kBadRequest);
  CHECK_THAT(state.status().message(), Contains(c.want));
  CHECK_THAT(state.status().message(), Contains("must be a name"));
}
