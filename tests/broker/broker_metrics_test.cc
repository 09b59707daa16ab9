// The broker's metrics driven through the pure Router (no sockets): the
// gauges go back to zero once the load is answered, readiness follows the
// last replica of an endpoint, and the counters STATUS shows are the
// Prometheus series. Time is a TimePoint advanced by hand.
#include "broker/broker_metrics.h"

#include <prometheus/registry.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "broker/router.h"
#include "schemas/config.h"

namespace {

using std::chrono::milliseconds;
using zserve::Status;
using zserve::StatusCode;
using zserve::TimePoint;
using zserve::broker::BrokerMetrics;
using zserve::broker::Completion;
using zserve::broker::Dispatch;
using zserve::broker::RequestTiming;
using zserve::broker::Router;
namespace pm = prometheus;
namespace sc = zserve::schemas;

// Backends "a" (weight 1) and "idle" (weight 0) behind endpoint "ep".
sc::ConfigState Config() {
  sc::ConfigState s;
  for (const char* name : {"a", "idle"}) {
    sc::BackendConfig b;
    b.name = name;
    b.handler = "echo";
    b.num_replicas = 2;
    s.backends[name] = b;
  }
  sc::EndpointConfig e;
  e.name = "ep";
  e.traffic = {{"a", 1.0}, {"idle", 0.0}};
  s.endpoints["ep"] = e;
  REQUIRE(sc::Validate(s).ok());
  return s;
}

// The value of the series `name` whose labels include all of `labels`.
std::optional<double> Value(pm::Registry& r, const std::string& name,
                            const std::map<std::string, std::string>& labels = {}) {
  for (const pm::MetricFamily& f : r.Collect()) {
    if (f.name != name) continue;
    for (const pm::ClientMetric& m : f.metric) {
      size_t matched = 0;
      for (const pm::ClientMetric::Label& l : m.label) {
        auto it = labels.find(l.name);
        if (it != labels.end() && it->second == l.value) ++matched;
      }
      if (matched != labels.size()) continue;
      switch (f.type) {
        case pm::MetricType::Counter:
          return m.counter.value;
        case pm::MetricType::Gauge:
          return m.gauge.value;
        case pm::MetricType::Histogram:
          return static_cast<double>(m.histogram.sample_count);
        default:
          return std::nullopt;
      }
    }
  }
  return std::nullopt;
}

struct Fixture {
  pm::Registry registry;
  BrokerMetrics metrics{&registry};
  Router router{{.max_total_queued = 1'000'000, .seed = 7}};
  TimePoint now = TimePoint{} + std::chrono::hours(1);  // any time but the epoch
  std::map<uint64_t, RequestTiming> timings;

  void Configure() {
    sc::ConfigState state = Config();
    router.ApplyConfig(state);
    metrics.ApplyConfig(state, 1);
    metrics.Refresh(router, now);
  }
  void Admit(uint64_t token) {
    std::string backend;
    Status s = router.Admit(token, "ep", "", 10'000, now, &backend);
    REQUIRE(s.ok());
    timings[token] = metrics.Admitted("ep", backend, s, now);
  }
  std::vector<Dispatch> TakeDispatches() {
    std::vector<Dispatch> out = router.TakeDispatches(now);
    for (const auto& d : out) {
      for (uint64_t t : d.tokens) metrics.Dispatched(timings[t], now);
    }
    return out;
  }
  void Answer(const Dispatch& d, StatusCode code) {
    for (uint64_t t : d.tokens) {
      REQUIRE(router.Complete(d.replica, t) == Completion::kDeliver);
      metrics.Finished(timings[t], code, /*shadow=*/false, now);
    }
  }
  double Gauge(const std::string& name, const std::string& backend) {
    metrics.Refresh(router, now, /*force=*/true);
    return Value(registry, name, {{"backend", backend}}).value_or(-1);
  }
};

TEST_CASE("broker gauges go back to zero once the load is answered", "[broker][metrics]") {
  Fixture f;
  f.Configure();
  REQUIRE(f.router.AddReplica("r1", "a", 2).ok());
  for (uint64_t t = 1; t <= 10; ++t) f.Admit(t);
  CHECK(f.Gauge("zserve_broker_queued_requests", "a") == 10);
  std::vector<Dispatch> first = f.TakeDispatches();  // the replica takes 2
  CHECK(f.Gauge("zserve_broker_queued_requests", "a") == 8);
  CHECK(f.Gauge("zserve_broker_in_flight_requests", "a") == 2);
  CHECK(f.Gauge("zserve_broker_live_replicas", "a") == 1);
  CHECK(f.Gauge("zserve_broker_desired_replicas", "a") == 2);
  // Answer everything, two at a time, one of them an error.
  f.now += milliseconds(5);
  for (const Dispatch& d : first) f.Answer(d, StatusCode::kHandlerError);
  for (int round = 0; round < 10; ++round) {
    f.now += milliseconds(5);
    for (const Dispatch& d : f.TakeDispatches()) f.Answer(d, StatusCode::kOk);
  }
  CHECK(f.Gauge("zserve_broker_queued_requests", "a") == 0);
  CHECK(f.Gauge("zserve_broker_in_flight_requests", "a") == 0);
  CHECK(Value(f.registry, "zserve_broker_requests_total", {{"endpoint", "ep"}}) == 10);
  CHECK(Value(f.registry, "zserve_broker_endpoint_errors_total",
              {{"endpoint", "ep"}, {"type", "HANDLER_ERROR"}}) == 2);
  CHECK(Value(f.registry, "zserve_broker_backend_errors_total",
              {{"backend", "a"}, {"type", "HANDLER_ERROR"}}) == 2);
  CHECK(Value(f.registry, "zserve_broker_request_duration_seconds",
              {{"endpoint", "ep"}, {"backend", "a"}}) == 10);
  CHECK(Value(f.registry, "zserve_broker_queue_duration_seconds",
              {{"endpoint", "ep"}, {"backend", "a"}}) == 10);
  CHECK(Value(f.registry, "zserve_broker_dispatch_duration_seconds",
              {{"endpoint", "ep"}, {"backend", "a"}}) == 10);
  auto [requests, errors] = f.metrics.Recent("ep", f.now);
  CHECK(requests == 10);
  CHECK(errors == 2);
  CHECK(f.metrics.Recent("ep", f.now + std::chrono::seconds(61)).first == 0);
}

TEST_CASE("a deleted backend's gauges go to zero when the broker forgets it", "[broker][metrics]") {
  Fixture f;
  f.Configure();
  for (uint64_t t = 1; t <= 5; ++t) f.Admit(t);  // no replica: they wait on "a"
  CHECK(f.Gauge("zserve_broker_queued_requests", "a") == 5);
  // "a" leaves the configuration: its calls are stranded, it is forgotten.
  sc::ConfigState moved = Config();
  moved.endpoints["ep"].traffic = {{"idle", 1.0}};
  moved.backends.erase("a");
  REQUIRE(sc::Validate(moved).ok());
  f.router.ApplyConfig(moved);
  f.metrics.ApplyConfig(moved, 2);
  CHECK(f.router.TakeStranded().size() == 5);
  CHECK(f.Gauge("zserve_broker_queued_requests", "a") == 0);
  CHECK(f.Gauge("zserve_broker_desired_replicas", "a") == 0);
}

TEST_CASE("a shadow copy is counted by the shadow series only", "[broker][metrics]") {
  Fixture f;
  f.Configure();
  f.Admit(1);
  RequestTiming copy = f.metrics.Shadow(f.timings[1], "idle", /*queued=*/true, f.now);
  f.now += milliseconds(5);
  f.metrics.Dispatched(copy, f.now);
  f.metrics.Finished(copy, StatusCode::kHandlerError, /*shadow=*/true, f.now);
  f.metrics.Refresh(f.router, f.now, /*force=*/true);  // flushes the histograms
  CHECK(Value(f.registry, "zserve_broker_shadow_requests_total", {{"backend", "idle"}}) == 1);
  CHECK(Value(f.registry, "zserve_broker_shadow_errors_total", {{"backend", "idle"}}) == 1);
  // None of the request histograms of the endpoint counts it.
  for (const char* h :
       {"zserve_broker_queue_duration_seconds", "zserve_broker_request_duration_seconds",
        "zserve_broker_dispatch_duration_seconds"}) {
    INFO(h);
    CHECK(Value(f.registry, h, {{"endpoint", "ep"}, {"backend", "idle"}}).value_or(0) == 0);
  }
  CHECK(Value(f.registry, "zserve_broker_backend_errors_total",
              {{"backend", "idle"}, {"type", "HANDLER_ERROR"}})
            .value_or(0) == 0);
}

TEST_CASE("readiness flips when the last replica of an endpoint goes away", "[broker][metrics]") {
  Fixture f;
  f.metrics.Refresh(f.router, f.now, /*force=*/true);
  CHECK_FALSE(f.metrics.ready());
  CHECK(f.metrics.not_ready_reason() == "no configuration yet");
  f.Configure();
  CHECK_FALSE(f.metrics.ready());  // no replica yet
  // A replica of a weight-0 backend does not serve the endpoint.
  REQUIRE(f.router.AddReplica("i1", "idle", 0).ok());
  f.metrics.Refresh(f.router, f.now, /*force=*/true);
  CHECK_FALSE(f.metrics.ready());
  CHECK(f.metrics.not_ready_reason() == "endpoint 'ep' has no live replica");
  REQUIRE(f.router.AddReplica("r1", "a", 0).ok());
  REQUIRE(f.router.AddReplica("r2", "a", 0).ok());
  f.metrics.Refresh(f.router, f.now, /*force=*/true);
  CHECK(f.metrics.ready());
  CHECK(Value(f.registry, "zserve_broker_ready") == 1);
  // One drains away: still ready. The last one goes: not ready.
  REQUIRE(f.router.StartDrain("r1"));
  (void)f.router.RemoveReplica("r1");
  f.metrics.Refresh(f.router, f.now, /*force=*/true);
  CHECK(f.metrics.ready());
  (void)f.router.RemoveReplica("r2");
  f.metrics.Refresh(f.router, f.now, /*force=*/true);
  CHECK_FALSE(f.metrics.ready());
  CHECK(Value(f.registry, "zserve_broker_ready") == 0);
  CHECK(f.Gauge("zserve_broker_live_replicas", "a") == 0);
  // Refresh without force waits its turn; a new replica shows on the next.
  REQUIRE(f.router.AddReplica("r3", "a", 0).ok());
  f.now += milliseconds(100);
  f.metrics.Refresh(f.router, f.now);
  CHECK(f.metrics.ready());
}

TEST_CASE("requests for unknown endpoints are counted without their name", "[broker][metrics]") {
  Fixture f;
  f.Configure();
  RequestTiming t = f.metrics.Admitted("nope", "", zserve::NotFound("no endpoint"), f.now);
  CHECK(t.route == nullptr);
  CHECK(Value(f.registry, "zserve_broker_unknown_endpoint_requests_total") == 1);
  CHECK_FALSE(Value(f.registry, "zserve_broker_requests_total", {{"endpoint", "nope"}}));
  // An OVERLOADED refusal counts for its endpoint.
  (void)f.metrics.Admitted("ep", "", zserve::Overloaded("full"), f.now);
  CHECK(Value(f.registry, "zserve_broker_endpoint_errors_total",
              {{"endpoint", "ep"}, {"type", "OVERLOADED"}}) == 1);
  bool found = false;
  for (const auto& [name, value] : f.metrics.Counters()) {
    if (name == "unknown_endpoint_requests") found = value == 1;
  }
  CHECK(found);
}

}  // namespace
