// What the gateway answers (gateway/http_mapping.h), without sockets: typed
// errors as HTTP statuses with JSON bodies, the X-Zserve-* headers, the
// gateway's own paths, unknown routes and wrong methods.
#include "gateway/http_mapping.h"

#include <catch2/catch.hpp>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

namespace {

using Catch::Matchers::Contains;
using zserve::StatusCode;
namespace gw = zserve::gateway;
namespace sc = zserve::schemas;

sc::ConfigState State() {
  sc::ConfigState s;
  sc::BackendConfig b;
  b.name = "b";
  b.handler = "echo";
  s.backends["b"] = b;
  sc::EndpointConfig e;
  e.name = "echo";
  e.traffic = {{"b", 1.0}};
  e.route = "/echo";
  e.timeout_ms = 700;
  s.endpoints["echo"] = e;
  return s;
}

// Decide() with the given request headers (names as the gateway asks).
gw::Decision DecideWith(const gw::RouteTable* routes, const std::string& method,
                        const std::string& path, std::map<std::string, std::string> headers = {},
                        int64_t length = 0) {
  gw::HeaderLookup lookup = [&headers](const char* name) -> std::optional<std::string_view> {
    auto it = headers.find(name);
    if (it == headers.end()) return std::nullopt;
    return std::string_view(it->second);
  };
  return gw::Decide(routes, method, path, lookup, length, 1024);
}

gw::HttpResponse Response(const gw::Decision& d) {
  REQUIRE(std::holds_alternative<gw::HttpResponse>(d));
  return std::get<gw::HttpResponse>(d);
}

std::string Header(const gw::HttpResponse& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "";
}

}  // namespace

TEST_CASE("Each typed error maps to its HTTP status", "[gateway]") {
  CHECK(gw::HttpStatusOf(StatusCode::kOk) == 200);
  CHECK(gw::HttpStatusOf(StatusCode::kNotFound) == 404);
  CHECK(gw::HttpStatusOf(StatusCode::kOverloaded) == 503);
  CHECK(gw::HttpStatusOf(StatusCode::kDeadlineExceeded) == 504);
  CHECK(gw::HttpStatusOf(StatusCode::kReplicaFailed) == 502);
  CHECK(gw::HttpStatusOf(StatusCode::kHandlerError) == 500);
  CHECK(gw::HttpStatusOf(StatusCode::kBadRequest) == 400);
  CHECK(gw::HttpStatusOf(StatusCode::kUnavailable) == 503);
  CHECK(gw::HttpStatusOf(StatusCode::kInternal) == 500);
  CHECK(gw::HttpStatusOf(StatusCode::kPermissionDenied) == 403);
}

TEST_CASE("An error body is JSON with the error type and message", "[gateway]") {
  gw::HttpResponse r = gw::ErrorResponse(zserve::DeadlineExceeded("too slow"));
  CHECK(r.status == 504);
  CHECK(r.content_type == "application/json");
  auto j = nlohmann::json::parse(r.body);
  CHECK(j["error"] == "DEADLINE_EXCEEDED");
  CHECK(j["message"] == "too slow");
  CHECK(Header(r, "Retry-After").empty());
  // A handler's message need not be UTF-8; the body stays valid JSON.
  gw::HttpResponse bytes = gw::ErrorResponse(zserve::HandlerError("bad \xff byte"));
  CHECK(bytes.status == 500);
  CHECK(nlohmann::json::parse(bytes.body)["error"] == "HANDLER_ERROR");
}

TEST_CASE("OVERLOADED is 503 with Retry-After", "[gateway]") {
  gw::HttpResponse r = gw::ErrorResponse(zserve::Overloaded("queue full"));
  CHECK(r.status == 503);
  CHECK(Header(r, "Retry-After") == "1");
  CHECK(nlohmann::json::parse(r.body)["error"] == "OVERLOADED");
}

TEST_CASE("A result is 200 with the bytes as they are", "[gateway]") {
  gw::HttpResponse r = gw::ResultResponse(std::string("a\0b", 3));
  CHECK(r.status == 200);
  CHECK(r.content_type == "application/octet-stream");
  CHECK(r.body == std::string("a\0b", 3));
}

TEST_CASE("A routed request becomes a call with the endpoint's timeout", "[gateway]") {
  gw::RouteTable t(State(), 1);
  gw::Decision d = DecideWith(&t, "POST", "/echo");
  REQUIRE(std::holds_alternative<gw::CallPlan>(d));
  const gw::CallPlan& plan = std::get<gw::CallPlan>(d);
  CHECK(plan.endpoint == "echo");
  CHECK(plan.options.timeout == std::chrono::milliseconds(700));
  CHECK(plan.options.method == "__call__");
  CHECK(plan.options.shard_key.empty());
}

TEST_CASE("X-Zserve headers set deadline method shard key and priority", "[gateway]") {
  gw::RouteTable t(State(), 1);
  gw::Decision d = DecideWith(&t, "GET", "/echo",
                              {{gw::kTimeoutHeader, "50"},
                               {gw::kMethodHeader, "predict"},
                               {gw::kShardKeyHeader, "user-7"},
                               {gw::kPriorityHeader, "-2"}});
  REQUIRE(std::holds_alternative<gw::CallPlan>(d));
  const gw::CallPlan& plan = std::get<gw::CallPlan>(d);
  CHECK(plan.options.timeout == std::chrono::milliseconds(50));
  CHECK(plan.options.method == "predict");
  CHECK(plan.options.shard_key == "user-7");
  CHECK(plan.options.priority == -2);
}

TEST_CASE("Spaces and tabs around an X-Zserve header value are not part of it", "[gateway]") {
  gw::RouteTable t(State(), 1);
  gw::Decision d = DecideWith(&t, "GET", "/echo",
                              {{gw::kTimeoutHeader, " 50 "},
                               {gw::kMethodHeader, "\tpredict "},
                               {gw::kShardKeyHeader, " user 7\t"},
                               {gw::kPriorityHeader, "3  "}});
  REQUIRE(std::holds_alternative<gw::CallPlan>(d));
  const gw::CallPlan& plan = std::get<gw::CallPlan>(d);
  CHECK(plan.options.timeout == std::chrono::milliseconds(50));
  CHECK(plan.options.method == "predict");
  CHECK(plan.options.shard_key == "user 7");  // inner spaces are its own
  CHECK(plan.options.priority == 3);
  // Nothing but spaces is an empty value.
  CHECK(Response(DecideWith(&t, "POST", "/echo", {{gw::kTimeoutHeader, "  "}})).status == 400);
}

TEST_CASE("Malformed X-Zserve headers are 400 and name the header", "[gateway]") {
  gw::RouteTable t(State(), 1);
  const std::pair<std::string, std::string> cases[] = {
      {gw::kTimeoutHeader, "soon"},
      {gw::kTimeoutHeader, "0"},
      {gw::kTimeoutHeader, "3600001"},
      {gw::kTimeoutHeader, "-5"},
      {gw::kTimeoutHeader, "10ms"},
      {gw::kTimeoutHeader, ""},
      {gw::kMethodHeader, ""},
      {gw::kMethodHeader, "a b"},
      {gw::kShardKeyHeader, std::string(129, 'k')},
      {gw::kPriorityHeader, "high"},
      {gw::kPriorityHeader, "99999999999"},
  };
  for (const auto& [name, value] : cases) {
    INFO(name << ": '" << value << "'");
    gw::HttpResponse r = Response(DecideWith(&t, "POST", "/echo", {{name, value}}));
    CHECK(r.status == 400);
    auto j = nlohmann::json::parse(r.body);
    CHECK(j["error"] == "BAD_REQUEST");
    CHECK_THAT(j["message"].get<std::string>(), Contains(name));
  }
}

TEST_CASE("Unknown routes are 404 and other methods 405 with Allow", "[gateway]") {
  gw::RouteTable t(State(), 1);
  gw::HttpResponse missing = Response(DecideWith(&t, "GET", "/nope"));
  CHECK(missing.status == 404);
  CHECK(nlohmann::json::parse(missing.body)["error"] == "NOT_FOUND");
  CHECK_THAT(missing.body, Contains("/nope"));
  gw::HttpResponse wrong = Response(DecideWith(&t, "DELETE", "/echo"));
  CHECK(wrong.status == 405);
  CHECK(Header(wrong, "Allow") == "GET, POST");
  CHECK(nlohmann::json::parse(wrong.body)["error"] == "METHOD_NOT_ALLOWED");
}

TEST_CASE("A body over the limit is 413", "[gateway]") {
  gw::RouteTable t(State(), 1);
  CHECK(Response(DecideWith(&t, "POST", "/echo", {}, 1025)).status == 413);
  CHECK(std::holds_alternative<gw::CallPlan>(DecideWith(&t, "POST", "/echo", {}, 1024)));
  CHECK(std::holds_alternative<gw::CallPlan>(DecideWith(&t, "POST", "/echo", {}, -1)));
}

TEST_CASE("The gateway's own paths answer with and without a config", "[gateway]") {
  gw::RouteTable t(State(), 3);
  gw::HttpResponse health = Response(DecideWith(nullptr, "GET", "/-/healthz"));
  CHECK(health.status == 200);
  CHECK(health.body == "ok\n");
  gw::HttpResponse routes = Response(DecideWith(&t, "GET", "/-/routes"));
  CHECK(routes.status == 200);
  CHECK(routes.content_type == "application/json");
  CHECK(nlohmann::json::parse(routes.body)["config_version"] == 3);
  CHECK(Response(DecideWith(nullptr, "GET", "/-/routes")).status == 503);
  gw::HttpResponse early = Response(DecideWith(nullptr, "POST", "/echo"));
  CHECK(early.status == 503);
  CHECK(nlohmann::json::parse(early.body)["error"] == "UNAVAILABLE");
  CHECK(Response(DecideWith(&t, "GET", "/-/other")).status == 404);
}

TEST_CASE("Header fields that would leave the body's end in doubt or lack a Host are 400",
          "[gateway]") {
  using Fields = std::vector<gw::HeaderField>;
  auto check = [](const Fields& f) { return gw::CheckHeaderFields(f, "1.0"); };
  CHECK_FALSE(check({{"Host", "x"}, {"Content-Length", " 12 "}}).has_value());
  CHECK_FALSE(gw::CheckHeaderFields(Fields{{"host", "x"}}, "1.1").has_value());
  CHECK_FALSE(check({{"Transfer-Encoding", "chunked"}}).has_value());
  CHECK_FALSE(check({{"expect", "100-Continue"}}).has_value());
  struct Case {
    Fields fields;
    int status;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {{{"Content-Length", "3"}, {"content-length", "3"}},
            400,
            "header Content-Length is given more than once"},
           {{{"Content-Length", "+3"}}, 400, "must be a whole number of bytes, got '+3'"},
           {{{"Content-Length", "-1"}}, 400, "must be a whole number of bytes"},
           {{{"Content-Length", ""}}, 400, "must be a whole number of bytes"},
           {{{"Content-Length", "99999999999999999999"}}, 400, "must be a whole number of bytes"},
           {{{"Content-Length", "3"}, {"Transfer-Encoding", "chunked"}},
            400,
            "Content-Length or Transfer-Encoding, not both"},
           {{{"X-Zserve-Method", "a"}, {"x-zserve-method", "b"}},
            400,
            "header X-Zserve-Method is given more than once"},
           {{{"Expect", "100-continue"}, {"Expect", "100-continue"}},
            400,
            "header Expect is given more than once"},
           {{{"Expect", "200-ok"}}, 417, "the gateway takes only Expect: 100-continue"},
           {{{"Host", "a"}, {"host", "b"}}, 400, "header Host is given more than once"}}) {
    INFO(c.message);
    std::optional<gw::HttpResponse> r = check(c.fields);
    REQUIRE(r.has_value());
    CHECK(r->status == c.status);
    CHECK_THAT(r->body, Contains(c.message));
  }
  std::optional<gw::HttpResponse> no_host =
      gw::CheckHeaderFields(Fields{{"Content-Length", "2"}}, "1.1");
  REQUIRE(no_host.has_value());
  CHECK(no_host->status == 400);
  CHECK_THAT(no_host->body, Contains("an HTTP/1.1 request must have a Host header"));
}

TEST_CASE("A connection stays open by its Connection header else by its version", "[gateway]") {
  CHECK(gw::KeepsAlive(std::nullopt, "1.1"));
  CHECK_FALSE(gw::KeepsAlive(std::nullopt, "1.0"));
  CHECK(gw::KeepsAlive("Keep-Alive", "1.0"));
  CHECK(gw::KeepsAlive("Upgrade,  keep-alive ", "1.0"));
  CHECK_FALSE(gw::KeepsAlive("close", "1.1"));
  CHECK_FALSE(gw::KeepsAlive("keep-alived", "1.1"));
}
