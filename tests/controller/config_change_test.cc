// Admin commands as pure state changes (controller/config_change.h): each
// command does what PROTOCOL.md §4.4 says, and each bad change is refused
// with a clear message and leaves the state as it was.
#include "controller/config_change.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace {

using Catch::Matchers::Contains;
using zserve::StatusCode;
using zserve::controller::ApplyAdminRequest;
using zserve::controller::DiffStates;
namespace sc = zserve::schemas;
using sc::Command;

// Two backends, one endpoint splitting between them, a shadow on b.
sc::ConfigState Base() {
  sc::ConfigState s;
  for (const char* name : {"a", "b", "spare"}) {
    sc::BackendConfig b;
    b.name = name;
    b.handler = "echo";
    s.backends[name] = b;
  }
  sc::EndpointConfig e;
  e.name = "ep";
  e.traffic = {{"a", 0.5}, {"b", 0.5}};
  e.shadow = {{"b", 0.25}};
  s.endpoints["ep"] = e;
  return s;
}

sc::AdminRequest Req(Command command, std::string name = "") {
  sc::AdminRequest r;
  r.command = command;
  r.name = std::move(name);
  return r;
}

}  // namespace

TEST_CASE("create-backend takes defaults for the fields not given", "[controller]") {
  sc::AdminRequest r = Req(Command::kCreateBackend, "mlp");
  r.backend.num_replicas = 2;
  r.backend.max_batch_size = 8;
  auto next = ApplyAdminRequest(Base(), r);
  REQUIRE(next.ok());
  const sc::BackendConfig& b = next->backends.at("mlp");
  CHECK(b.handler == "mlp");
  CHECK(b.num_replicas == 2);
  CHECK(b.max_batch_size == 8);
  CHECK(b.max_queued_requests == sc::kDefaultMaxQueuedRequests);
  CHECK(DiffStates(Base(), *next) ==
        std::vector<std::string>{"+ backend mlp: handler=mlp num_replicas=2 max_batch_size=8 "
                                 "batch_wait_timeout_ms=0 max_concurrent_queries=0 "
                                 "max_queued_requests=100000 retry_on_replica_failure=1 "
                                 "user_config=''"});
}

TEST_CASE("update-backend merges only the fields given", "[controller]") {
  sc::AdminRequest r = Req(Command::kUpdateBackend, "a");
  r.backend.max_concurrent_queries = 32;
  r.backend.user_config = R"({"threshold":0.7})";
  auto next = ApplyAdminRequest(Base(), r);
  REQUIRE(next.ok());
  sc::BackendConfig want = Base().backends.at("a");
  want.max_concurrent_queries = 32;
  want.user_config = R"({"threshold":0.7})";
  CHECK(next->backends.at("a") == want);
  CHECK(
      DiffStates(Base(), *next) ==
      std::vector<std::string>{
          R"(~ backend a: max_concurrent_queries 0 -> 32, user_config '' -> '{"threshold":0.7}')"});
}

TEST_CASE("delete-backend removes an unreferenced backend", "[controller]") {
  auto next = ApplyAdminRequest(Base(), Req(Command::kDeleteBackend, "spare"));
  REQUIRE(next.ok());
  CHECK_FALSE(next->backends.contains("spare"));
  CHECK(DiffStates(Base(), *next) == std::vector<std::string>{"- backend spare"});
}

TEST_CASE("create-endpoint and delete-endpoint", "[controller]") {
  sc::AdminRequest r = Req(Command::kCreateEndpoint, "new");
  r.endpoint.traffic = {{"spare", 1.0}};
  r.endpoint.timeout_ms = 500;
  auto next = ApplyAdminRequest(Base(), r);
  REQUIRE(next.ok());
  const sc::EndpointConfig& e = next->endpoints.at("new");
  CHECK(e.traffic == std::map<std::string, double>{{"spare", 1.0}});
  CHECK(e.shadow.empty());
  CHECK(e.timeout_ms == 500);
  auto gone = ApplyAdminRequest(*next, Req(Command::kDeleteEndpoint, "new"));
  REQUIRE(gone.ok());
  CHECK(*gone == Base());
}

TEST_CASE("set-traffic and set-shadow replace the policy whole", "[controller]") {
  sc::AdminRequest t = Req(Command::kSetTraffic, "ep");
  t.weights = {{"spare", 1.0}};
  auto next = ApplyAdminRequest(Base(), t);
  REQUIRE(next.ok());
  CHECK(next->endpoints.at("ep").traffic == t.weights);
  sc::AdminRequest s = Req(Command::kSetShadow, "ep");
  auto cleared = ApplyAdminRequest(*next, s);
  REQUIRE(cleared.ok());
  CHECK(cleared->endpoints.at("ep").shadow.empty());
  // Now b is named by no policy and can go.
  CHECK(ApplyAdminRequest(*cleared, Req(Command::kDeleteBackend, "b")).ok());
}

TEST_CASE("get-state and apply", "[controller]") {
  auto same = ApplyAdminRequest(Base(), Req(Command::kGetState));
  REQUIRE(same.ok());
  CHECK(*same == Base());
  sc::AdminRequest apply = Req(Command::kApply);
  apply.state = Base();
  apply.state.endpoints.clear();
  apply.state.backends.erase("b");
  auto next = ApplyAdminRequest(Base(), apply);
  REQUIRE(next.ok());
  CHECK(*next == apply.state);
  CHECK(DiffStates(Base(), *next) == std::vector<std::string>{"- endpoint ep", "- backend b"});
  CHECK(DiffStates(*next, *next).empty());
}

TEST_CASE("Every bad change is refused with a clear message and changes nothing", "[controller]") {
  struct Bad {
    const char* what;
    sc::AdminRequest request;
    StatusCode code;
    const char* message;
  };
  auto with = [](sc::AdminRequest r, auto&& edit) {
    edit(r);
    return r;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<Bad> table = {
      {"duplicate backend", Req(Command::kCreateBackend, "a"), StatusCode::kBadRequest,
       "backend 'a' already exists"},
      {"duplicate endpoint",
       with(Req(Command::kCreateEndpoint, "ep"),
            [](auto& r) {
              r.endpoint.traffic = {{"a", 1}};
            }),
       StatusCode::kBadRequest, "endpoint 'ep' already exists"},
      {"backend name with a space", Req(Command::kCreateBackend, "bad name"),
       StatusCode::kBadRequest, "outside [A-Za-z0-9_.-]"},
      {"empty endpoint name",
       with(Req(Command::kCreateEndpoint, ""),
            [](auto& r) {
              r.endpoint.traffic = {{"a", 1}};
            }),
       StatusCode::kBadRequest, "1 to 128 characters"},
      {"endpoint without traffic", Req(Command::kCreateEndpoint, "x"), StatusCode::kBadRequest,
       "needs a traffic policy"},
      {"endpoint to an unknown backend",
       with(Req(Command::kCreateEndpoint, "x"),
            [](auto& r) {
              r.endpoint.traffic = {{"ghost", 1}};
            }),
       StatusCode::kBadRequest, "unknown backend 'ghost'"},
      {"update of an unknown backend", Req(Command::kUpdateBackend, "ghost"), StatusCode::kNotFound,
       "no backend named 'ghost'"},
      {"delete of an unknown backend", Req(Command::kDeleteBackend, "ghost"), StatusCode::kNotFound,
       "no backend named 'ghost'"},
      {"delete of an unknown endpoint", Req(Command::kDeleteEndpoint, "ghost"),
       StatusCode::kNotFound, "no endpoint named 'ghost'"},
      {"traffic of an unknown endpoint", Req(Command::kSetTraffic, "ghost"), StatusCode::kNotFound,
       "no endpoint named 'ghost'"},
      {"delete of a backend in traffic", Req(Command::kDeleteBackend, "a"), StatusCode::kBadRequest,
       "still in the traffic policy of endpoint 'ep'"},
      {"delete of a backend in a shadow", Req(Command::kDeleteBackend, "b"),
       StatusCode::kBadRequest, "still in the traffic policy of endpoint 'ep'"},
      {"weights summing to 0.9",
       with(Req(Command::kSetTraffic, "ep"),
            [](auto& r) {
              r.weights = {{"a", 0.5}, {"b", 0.4}};
            }),
       StatusCode::kBadRequest, "must sum to 1"},
      {"weights off by 1e-5",
       with(Req(Command::kSetTraffic, "ep"),
            [](auto& r) {
              r.weights = {{"a", 1.00001}};
            }),
       StatusCode::kBadRequest, "must sum to 1"},
      {"negative weight",
       with(Req(Command::kSetTraffic, "ep"),
            [](auto& r) {
              r.weights = {{"a", 1.5}, {"b", -0.5}};
            }),
       StatusCode::kBadRequest, "must be >= 0"},
      {"NaN weight",
       with(Req(Command::kSetTraffic, "ep"),
            [nan](auto& r) {
              r.weights = {{"a", nan}};
            }),
       StatusCode::kBadRequest, "must be >= 0"},
      {"no traffic at all", Req(Command::kSetTraffic, "ep"), StatusCode::kBadRequest,
       "names no backend"},
      {"traffic to an unknown backend",
       with(Req(Command::kSetTraffic, "ep"),
            [](auto& r) {
              r.weights = {{"ghost", 1}};
            }),
       StatusCode::kBadRequest, "unknown backend 'ghost'"},
      {"shadow fraction above 1",
       with(Req(Command::kSetShadow, "ep"),
            [](auto& r) {
              r.weights = {{"a", 1.5}};
            }),
       StatusCode::kBadRequest, "must be in [0, 1]"},
      {"shadow fraction below 0",
       with(Req(Command::kSetShadow, "ep"),
            [](auto& r) {
              r.weights = {{"a", -0.1}};
            }),
       StatusCode::kBadRequest, "must be in [0, 1]"},
      {"shadow to an unknown backend",
       with(Req(Command::kSetShadow, "ep"),
            [](auto& r) {
              r.weights = {{"ghost", 0.1}};
            }),
       StatusCode::kBadRequest, "shadow names unknown backend 'ghost'"},
      {"num_replicas 1025",
       with(Req(Command::kUpdateBackend, "a"), [](auto& r) { r.backend.num_replicas = 1025; }),
       StatusCode::kBadRequest, "num_replicas must be 0..1024"},
      {"max_batch_size 0",
       with(Req(Command::kUpdateBackend, "a"), [](auto& r) { r.backend.max_batch_size = 0; }),
       StatusCode::kBadRequest, "max_batch_size must be 1..4096"},
      {"batch_wait_timeout_ms 60001",
       with(Req(Command::kUpdateBackend, "a"),
            [](auto& r) { r.backend.batch_wait_timeout_ms = 60'001; }),
       StatusCode::kBadRequest, "batch_wait_timeout_ms must be 0..60000"},
      {"max_concurrent_queries 100001",
       with(Req(Command::kUpdateBackend, "a"),
            [](auto& r) { r.backend.max_concurrent_queries = 100'001; }),
       StatusCode::kBadRequest, "max_concurrent_queries must be 0..100000"},
      {"max_queued_requests 0",
       with(Req(Command::kUpdateBackend, "a"), [](auto& r) { r.backend.max_queued_requests = 0; }),
       StatusCode::kBadRequest, "max_queued_requests must be 1..10000000"},
      {"retry_on_replica_failure 11",
       with(Req(Command::kUpdateBackend, "a"),
            [](auto& r) { r.backend.retry_on_replica_failure = 11; }),
       StatusCode::kBadRequest, "retry_on_replica_failure must be 0..10"},
      {"empty handler",
       with(Req(Command::kUpdateBackend, "a"), [](auto& r) { r.backend.handler = ""; }),
       StatusCode::kBadRequest, "handler must be 1 to 128 characters"},
      {"user_config over 64 KiB",
       with(Req(Command::kUpdateBackend, "a"),
            [](auto& r) { r.backend.user_config = std::string(64 * 1024 + 1, 'x'); }),
       StatusCode::kBadRequest, "user_config is 65537 bytes"},
      {"timeout_ms 0",
       with(Req(Command::kCreateEndpoint, "x"),
            [](auto& r) {
              r.endpoint.traffic = {{"a", 1}};
              r.endpoint.timeout_ms = 0;
            }),
       StatusCode::kBadRequest, "timeout_ms must be 1..3600000"},
      {"apply of a dangling reference",
       with(Req(Command::kApply),
            [](auto& r) {
              r.state = Base();
              r.state.backends.erase("a");
            }),
       StatusCode::kBadRequest, "unknown backend 'a'"},
      {"a reply is not an admin command", Req(Command::kAdminReply), StatusCode::kBadRequest,
       "not an admin command"},
  };
  // The shadow row above hits traffic first; one more where only a shadow names it.
  sc::ConfigState shadow_only = Base();
  shadow_only.endpoints.at("ep").traffic = {{"a", 1.0}};
  for (const Bad& bad : table) {
    INFO(bad.what);
    const sc::ConfigState before = Base();
    auto next = ApplyAdminRequest(before, bad.request);
    REQUIRE_FALSE(next.ok());
    CHECK(next.status().code() == bad.code);
    CHECK_THAT(next.status().message(), Contains(bad.message));
    CHECK(before == Base());
  }
  auto refused = ApplyAdminRequest(shadow_only, Req(Command::kDeleteBackend, "b"));
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(refused.status().message(), Contains("still in the shadow policy of endpoint 'ep'"));
}

TEST_CASE("update-endpoint sets route and methods and the diff shows them", "[controller]") {
  sc::AdminRequest r = Req(Command::kUpdateEndpoint, "ep");
  r.endpoint.route = "/ep";
  auto next = ApplyAdminRequest(Base(), r);
  REQUIRE(next.ok());
  CHECK(next->endpoints.at("ep").route == "/ep");
  CHECK(next->endpoints.at("ep").methods == std::vector<std::string>{"GET", "POST"});
  CHECK(next->endpoints.at("ep").traffic == Base().endpoints.at("ep").traffic);  // untouched
  CHECK(DiffStates(Base(), *next) == std::vector<std::string>{"~ endpoint ep: route '' -> '/ep'"});
  sc::AdminRequest m = Req(Command::kUpdateEndpoint, "ep");
  m.endpoint.methods = std::vector<std::string>{"POST"};
  m.endpoint.timeout_ms = 10;
  auto again = ApplyAdminRequest(*next, m);
  REQUIRE(again.ok());
  CHECK(
      DiffStates(*next, *again) ==
      std::vector<std::string>{"~ endpoint ep: timeout_ms 30000 -> 10, methods GET,POST -> POST"});
}

TEST_CASE("create-endpoint takes a route and refuses one in use", "[controller]") {
  sc::AdminRequest r = Req(Command::kCreateEndpoint, "new");
  r.endpoint.traffic = {{"spare", 1.0}};
  r.endpoint.route = "/new";
  r.endpoint.methods = std::vector<std::string>{"PUT"};
  auto next = ApplyAdminRequest(Base(), r);
  REQUIRE(next.ok());
  CHECK(DiffStates(Base(), *next) ==
        std::vector<std::string>{"+ endpoint new: traffic={spare: 1} shadow={} timeout_ms=30000 "
                                 "route='/new' methods=PUT"});
  sc::AdminRequest clash = Req(Command::kUpdateEndpoint, "ep");
  clash.endpoint.route = "/new";
  auto refused = ApplyAdminRequest(*next, clash);
  CHECK(refused.status().code() == StatusCode::kBadRequest);
  CHECK_THAT(refused.status().message(), Contains("route '/new' is already the route of endpoint"));
  sc::AdminRequest bad = Req(Command::kUpdateEndpoint, "ep");
  bad.endpoint.route = "ep";
  CHECK_THAT(ApplyAdminRequest(Base(), bad).status().message(),
             Contains("endpoint 'ep': route 'ep' must start with '/'"));
  bad.endpoint = {};
  bad.endpoint.methods = std::vector<std::string>{};
  CHECK_THAT(ApplyAdminRequest(Base(), bad).status().message(),
             Contains("methods must name at least one HTTP method"));
  auto missing = ApplyAdminRequest(Base(), Req(Command::kUpdateEndpoint, "nope"));
  CHECK(missing.status().code() == StatusCode::kNotFound);
}

TEST_CASE("A user_config that changes past the part shown still shows a change", "[controller]") {
  sc::ConfigState from = Base();
  sc::ConfigState to = Base();
  const std::string head(69, 'a');
  from.backends.begin()->second.user_config = head + "a";
  to.backends.begin()->second.user_config = head + "b";
  std::vector<std::string> lines = DiffStates(from, to);
  REQUIRE(lines.size() == 1);
  INFO(lines[0]);
  // Both cut to the same 60 bytes; the digests of the whole texts differ.
  CHECK(lines[0].find("user_config '" + std::string(60, 'a') + "...' (70 bytes, digest ") !=
        std::string::npos);
  const size_t arrow = lines[0].find(" -> ");
  REQUIRE(arrow != std::string::npos);
  CHECK(lines[0].substr(lines[0].find("user_config ") + 12,
                        arrow - lines[0].find("user_config ") - 12) != lines[0].substr(arrow + 4));
}

TEST_CASE("A weight that changes in its 11th digit shows in the change line", "[controller]") {
  sc::ConfigState from = Base();
  sc::ConfigState to = Base();
  to.endpoints.at("ep").traffic = {{"a", 0.50000000001}, {"b", 0.49999999999}};
  CHECK(DiffStates(from, to) ==
        std::vector<std::string>{
            "~ endpoint ep: traffic {a: 0.5, b: 0.5} -> {a: 0.50000000001, b: 0.49999999999}"});
}
