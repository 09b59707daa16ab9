// The configuration state's validation rules (schemas/config.h).
#include "schemas/config.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "zserve/status.h"

namespace {

using Catch::Matchers::Contains;
using zserve::StatusCode;
namespace sc = zserve::schemas;

sc::BackendConfig Backend(const std::string& name) {
  sc::BackendConfig b;
  b.name = name;
  b.handler = "echo";
  return b;
}

// Two backends and one endpoint split 70/30 over them: valid.
sc::ConfigState ValidState() {
  sc::ConfigState s;
  s.backends["a"] = Backend("a");
  s.backends["b"] = Backend("b");
  sc::EndpointConfig e;
  e.name = "ep";
  e.traffic = {{"a", 0.7}, {"b", 0.3}};
  s.endpoints["ep"] = e;
  return s;
}

}  // namespace

TEST_CASE("ValidateName accepts letters and digits and _.-", "[schemas]") {
  CHECK(sc::ValidateName("endpoint", "a-b_c.1").ok());
  CHECK(sc::ValidateName("endpoint", "A").ok());
  CHECK(sc::ValidateName("endpoint", std::string(128, 'z')).ok());
}

TEST_CASE("ValidateName refuses empty and too long names and foreign characters", "[schemas]") {
  struct Case {
    std::string name;
    std::string want;
  };
  const Case cases[] = {
      {"", "1 to 128"},
      {std::string(129, 'a'), "1 to 128"},
      {"a b", "outside [A-Za-z0-9_.-]"},
      {"\xc3\xa9", "outside [A-Za-z0-9_.-]"},  // "é" in UTF-8
      {"a/b", "outside [A-Za-z0-9_.-]"},
  };
  for (const Case& c : cases) {
    INFO("name '" << c.name << "' (" << c.name.size() << " bytes)");
    zserve::Status s = sc::ValidateName("endpoint", c.name);
    CHECK_FALSE(s.ok());
    CHECK(s.code() == StatusCode::kBadRequest);
    CHECK_THAT(s.message(), Contains("endpoint") && Contains(c.want));
  }
}

TEST_CASE("ValidateWeights accepts weights >= 0 summing to 1", "[schemas]") {
  CHECK(sc::ValidateWeights({{"a", 0.7}, {"b", 0.3}}).ok());
  CHECK(sc::ValidateWeights({{"a", 1.0}}).ok());
  CHECK(sc::ValidateWeights({{"a", 1.0}, {"b", 0.0}}).ok());
  CHECK(sc::ValidateWeights({{"a", 0.1}, {"b", 0.2}, {"c", 0.3}, {"d", 0.4}}).ok());
}

TEST_CASE("ValidateWeights refuses bad sums and negative or NaN weights and none", "[schemas]") {
  struct Case {
    const char* what;
    std::map<std::string, double> weights;
    const char* want;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const Case cases[] = {
      {"sum 0.9", {{"a", 0.6}, {"b", 0.3}}, "sum to 1"},
      {"sum 1.1", {{"a", 0.8}, {"b", 0.3}}, "sum to 1"},
      {"negative weight", {{"a", 1.5}, {"b", -0.5}}, "'b' must be >= 0"},
      {"NaN weight", {{"a", nan}}, "'a' must be >= 0"},
      {"infinite weight", {{"a", inf}, {"b", 1.0}}, "'a' must be >= 0"},
      {"all zero", {{"a", 0.0}}, "sum to 1"},
      {"empty", {}, "no backend"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    zserve::Status s = sc::ValidateWeights(c.weights);
    CHECK_FALSE(s.ok());
    CHECK(s.code() == StatusCode::kBadRequest);
    CHECK_THAT(s.message(), Contains(c.want));
  }
}

TEST_CASE("Validate accepts a consistent state", "[schemas]") {
  CHECK(sc::Validate(ValidState()).ok());
  CHECK(sc::Validate(sc::ConfigState{}).ok());
}

TEST_CASE("Validate refuses an inconsistent state and names the culprit", "[schemas]") {
  sc::ConfigState s = ValidState();
  std::string want;
  SECTION("traffic to an unknown backend") {
    s.endpoints["ep"].traffic = {{"a", 0.5}, {"ghost", 0.5}};
    want = "unknown backend 'ghost'";
  }
  SECTION("shadow to an unknown backend") {
    s.endpoints["ep"].shadow = {{"ghost", 0.5}};
    want = "unknown backend 'ghost'";
  }
  SECTION("shadow fraction 1.5") {
    s.endpoints["ep"].shadow = {{"b", 1.5}};
    want = "shadow fraction";
  }
  SECTION("max_batch_size 0") {
    s.backends["a"].max_batch_size = 0;
    want = "max_batch_size";
  }
  SECTION("no handler") {
    s.backends["b"].handler = "";
    want = "handler";
  }
  SECTION("max_queued_requests 0") {
    s.backends["a"].max_queued_requests = 0;
    want = "max_queued_requests";
  }
  SECTION("endpoint timeout 0") {
    s.endpoints["ep"].timeout_ms = 0;
    want = "timeout_ms";
  }
  SECTION("weights that do not sum to 1") {
    s.endpoints["ep"].traffic = {{"a", 0.7}, {"b", 0.7}};
    want = "sum to 1";
  }
  SECTION("invalid endpoint name") {
    sc::EndpointConfig e = s.endpoints["ep"];
    e.name = "bad name";
    s.endpoints.erase("ep");
    s.endpoints[e.name] = e;
    want = "bad name";
  }
  zserve::Status status = sc::Validate(s);
  CHECK_FALSE(status.ok());
  CHECK(status.code() == StatusCode::kBadRequest);
  CHECK_THAT(status.message(), Contains(want));
}

TEST_CASE("EffectiveMaxConcurrentQueries defaults from the batch size", "[schemas]") {
  sc::BackendConfig b = Backend("a");
  b.max_batch_size = 1;
  CHECK(b.EffectiveMaxConcurrentQueries() == 8);
  b.max_batch_size = 4;
  CHECK(b.EffectiveMaxConcurrentQueries() == 8);
  b.max_batch_size = 16;
  CHECK(b.EffectiveMaxConcurrentQueries() == 32);
  b.max_concurrent_queries = 3;
  CHECK(b.EffectiveMaxConcurrentQueries() == 3);
  b.max_batch_size = 1;
  CHECK(b.EffectiveMaxConcurrentQueries() == 3);
}

TEST_CASE("Endpoints default to no route and GET and POST", "[schemas]") {
  sc::EndpointConfig e;
  CHECK(e.route.empty());
  CHECK(e.methods == std::vector<std::string>{"GET", "POST"});
  CHECK(sc::Validate(ValidState()).ok());
}

TEST_CASE("ValidateRoute accepts paths and refuses the gateway's own and odd ones", "[schemas]") {
  for (const char* ok : {"", "/echo", "/v1/models/mlp", "/a-b_c.d~e", "/x/"}) {
    INFO("route '" << ok << "'");
    CHECK(sc::ValidateRoute(ok).ok());
  }
  struct Case {
    std::string route;
    std::string want;
  };
  const Case cases[] = {
      {"echo", "must start with '/'"},      {"/", "must start with '/' and name a path"},
      {"/-/routes", "under '/-/'"},         {"/-", "under '/-/'"},
      {"/a//b", "empty segment"},           {"/a b", "outside [A-Za-z0-9_.~/-]"},
      {"/a?b", "outside [A-Za-z0-9_.~/-]"}, {"/" + std::string(256, 'a'), "at most 256"},
  };
  for (const Case& c : cases) {
    INFO("route '" << c.route << "'");
    zserve::Status s = sc::ValidateRoute(c.route);
    CHECK(s.code() == StatusCode::kBadRequest);
    CHECK_THAT(s.message(), Contains(c.want));
  }
}

TEST_CASE("ValidateHttpMethods takes known methods once each", "[schemas]") {
  CHECK(sc::ValidateHttpMethods({"GET"}).ok());
  CHECK(sc::ValidateHttpMethods({"POST", "GET", "PUT", "DELETE", "PATCH"}).ok());
  CHECK_THAT(sc::ValidateHttpMethods({}).message(), Contains("at least one"));
  CHECK_THAT(sc::ValidateHttpMethods({"get"}).message(),
             Contains("method 'get' is not one of GET, POST, PUT, DELETE, PATCH"));
  CHECK_THAT(sc::ValidateHttpMethods({"HEAD"}).message(), Contains("not one of"));
  CHECK_THAT(sc::ValidateHttpMethods({"GET", "GET"}).message(), Contains("given twice"));
}

TEST_CASE("Validate refuses a route two endpoints share and names both", "[schemas]") {
  sc::ConfigState s = ValidState();
  s.endpoints["ep"].route = "/x";
  sc::EndpointConfig other = s.endpoints["ep"];
  other.name = "other";
  s.endpoints["other"] = other;
  zserve::Status st = sc::Validate(s);
  CHECK(st.code() == StatusCode::kBadRequest);
  CHECK_THAT(st.message(), Contains("endpoint 'other': route '/x' is already the route of "
                                    "endpoint 'ep'"));
  s.endpoints["other"].route = "/y";
  CHECK(sc::Validate(s).ok());
  s.endpoints["other"].route = "";
  s.endpoints["ep"].route = "";
  CHECK(sc::Validate(s).ok());  // no route twice is fine
  s.endpoints["ep"].route = "/-/healthz";
  CHECK_THAT(sc::Validate(s).message(), Contains("endpoint 'ep': route '/-/healthz'"));
  s.endpoints["ep"].route = "/x";
  s.endpoints["ep"].methods = {"GET", "FETCH"};
  CHECK_THAT(sc::Validate(s).message(), Contains("endpoint 'ep': method 'FETCH'"));
}
