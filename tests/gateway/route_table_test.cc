// The gateway's route table (gateway/route_table.h): built from the config,
// exact path matching, methods, and the /-/routes document.
#include "gateway/route_table.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

namespace {

using zserve::gateway::MatchKind;
using zserve::gateway::RouteTable;
namespace sc = zserve::schemas;

sc::ConfigState State() {
  sc::ConfigState s;
  sc::BackendConfig b;
  b.name = "b";
  b.handler = "echo";
  s.backends["b"] = b;
  auto add = [&s](const std::string& name, const std::string& route,
                  std::vector<std::string> methods) {
    sc::EndpointConfig e;
    e.name = name;
    e.traffic = {{"b", 1.0}};
    e.route = route;
    e.methods = std::move(methods);
    e.timeout_ms = 250;
    s.endpoints[name] = e;
  };
  add("echo", "/echo", {"GET", "POST"});
  add("put", "/v1/put", {"PUT"});
  add("hidden", "", {"GET", "POST"});
  return s;
}

}  // namespace

TEST_CASE("Only endpoints with a route are in the table", "[gateway]") {
  RouteTable t(State(), 5);
  CHECK(t.size() == 2);
  CHECK(t.version() == 5);
  CHECK(RouteTable().size() == 0);
}

TEST_CASE("A path matches its route exactly with an allowed method", "[gateway]") {
  RouteTable t(State(), 1);
  auto m = t.Find("/echo", "POST");
  REQUIRE(m.kind == MatchKind::kFound);
  CHECK(m.route->endpoint == "echo");
  CHECK(m.route->timeout_ms == 250);
  CHECK(t.Find("/echo", "GET").kind == MatchKind::kFound);
  CHECK(t.Find("/v1/put", "PUT").route->endpoint == "put");
}

TEST_CASE("Unknown paths are no route and other methods are not allowed", "[gateway]") {
  RouteTable t(State(), 1);
  for (const char* path : {"/", "/echo/", "/echoes", "/ech", "/v1", "/ECHO", "", "/hidden"}) {
    INFO("path '" << path << "'");
    CHECK(t.Find(path, "GET").kind == MatchKind::kNoRoute);
  }
  auto m = t.Find("/echo", "DELETE");
  CHECK(m.kind == MatchKind::kMethodNotAllowed);
  REQUIRE(m.route != nullptr);
  CHECK(m.route->methods == std::vector<std::string>{"GET", "POST"});
  CHECK(t.Find("/v1/put", "POST").kind == MatchKind::kMethodNotAllowed);
  CHECK(t.Find("/echo", "post").kind == MatchKind::kMethodNotAllowed);  // methods are exact
}

TEST_CASE("The routes document lists each route with its endpoint and methods", "[gateway]") {
  auto j = nlohmann::json::parse(RouteTable(State(), 9).ToJson());
  CHECK(j["config_version"] == 9);
  REQUIRE(j["routes"].size() == 2);
  CHECK(j["routes"][0]["route"] == "/echo");
  CHECK(j["routes"][0]["endpoint"] == "echo");
  CHECK(j["routes"][0]["methods"] == nlohmann::json({"GET", "POST"}));
  CHECK(j["routes"][0]["timeout_ms"] == 250);
  CHECK(j["routes"][1]["route"] == "/v1/put");
  CHECK(nlohmann::json::parse(RouteTable().ToJson())["routes"].empty());
}
