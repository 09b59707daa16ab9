// The broker's Prometheus metrics (docs/metrics.md lists each one), its
// readiness, and the recent error rates `zserve status` shows.
//
// Label children are looked up once and cached: per endpoint, per backend
// and per (endpoint, backend) route, created when a config names them (or on
// first use), never removed, so the pointers a request carries stay valid.
// A request's hot path is a hash lookup by endpoint name plus atomic adds;
// its durations are buffered and reach Prometheus once per loop turn.
// Labels come only from the configuration (bounded); a request for an
// unknown endpoint is counted without its name.
//
// Owned and called by the broker's I/O thread; ready() and the metric values
// may be read from any thread (the metrics server's).
#ifndef ZSERVE_BROKER_BROKER_METRICS_H_
#define ZSERVE_BROKER_BROKER_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "broker/router.h"
#include "common/metrics_server.h"
#include "common/zmq_util.h"
#include "schemas/config.h"
#include "zserve/status.h"

namespace zserve::broker {

// Messages dropped without an answer; the names are STATUS's "counters".
enum class Drop : uint8_t {
  kMalformedClient,
  kMalformedWorker,
  kUnknownResult,
  kLateResult,
  kUndeliverableReply,
  kOverLimit,  // over a limit of docs/security.md, and no request id to answer
};

inline constexpr size_t kStatusCodes = static_cast<size_t>(kLastStatusCode) + 1;

// Requests and errors over the last minute, in one-second buckets.
class RecentWindow {
 public:
  void Add(TimePoint now, bool error);
  // {requests, errors} finished in the last 60 seconds.
  std::pair<uint64_t, uint64_t> Totals(TimePoint now) const;

 private:
  struct Bucket {
    int64_t second = -1;
    uint64_t requests = 0;
    uint64_t errors = 0;
  };
  std::array<Bucket, 60> buckets_;
};

struct BackendMetrics {
  std::array<prometheus::Counter*, kStatusCodes> errors{};  // by StatusCode; [0] unused
  prometheus::Gauge* queued = nullptr;
  prometheus::Gauge* in_flight = nullptr;
  prometheus::Gauge* replicas = nullptr;
  prometheus::Gauge* desired_replicas = nullptr;
  prometheus::Counter* shadow_requests = nullptr;
  prometheus::Counter* shadow_errors = nullptr;
  prometheus::Counter* shadow_dropped = nullptr;
};

struct EndpointMetrics;

struct RouteMetrics {
  EndpointMetrics* endpoint = nullptr;
  BackendMetrics* backend = nullptr;
  // Flushed to Prometheus once per loop turn (BrokerMetrics::Refresh).
  std::optional<BufferedHistogram> request_duration;   // read to reply
  std::optional<BufferedHistogram> queue_duration;     // read to dispatch
  std::optional<BufferedHistogram> dispatch_duration;  // dispatch to reply
};

struct EndpointMetrics {
  std::string name;
  prometheus::Counter* requests = nullptr;
  std::array<prometheus::Counter*, kStatusCodes> errors{};  // [0] unused
  RecentWindow recent;
  StringMap<std::unique_ptr<RouteMetrics>> routes;  // by backend
};

// What the broker keeps with each request it holds, for its metrics.
struct RequestTiming {
  RouteMetrics* route = nullptr;  // null: not counted (refused at the door)
  TimePoint received{};
  TimePoint dispatched{};
  bool shadow = false;  // a shadow copy: counted by the shadow series only
};

class BrokerMetrics {
 public:
  // `registry` is borrowed; null: a private registry (STATUS still shows the
  // counters, nothing is exported).
  explicit BrokerMetrics(prometheus::Registry* registry);
  BrokerMetrics(const BrokerMetrics&) = delete;
  BrokerMetrics& operator=(const BrokerMetrics&) = delete;

  // A new configuration at `version`: label children for its endpoints and
  // backends, and the rule readiness checks (refreshed on the next Refresh).
  void ApplyConfig(const schemas::ConfigState& state, uint64_t version);

  // A REQUEST for `endpoint` was read: admitted to `backend` (admitted OK),
  // or refused with `admitted`. The timing goes with the request's slot.
  RequestTiming Admitted(std::string_view endpoint, const std::string& backend,
                         const Status& admitted, TimePoint now);
  // A shadow copy of `primary`'s request for `backend`: queued, or dropped
  // because that backend was full.
  RequestTiming Shadow(const RequestTiming& primary, const std::string& backend, bool queued,
                       TimePoint now);
  void Dispatched(RequestTiming& timing, TimePoint now);
  // The request's final answer (for a shadow copy: its dropped reply).
  void Finished(const RequestTiming& timing, StatusCode code, bool shadow, TimePoint now);
  void Dropped(Drop why);
  // (An observation buffered in a route's histogram; Refresh flushes it.)
  void Observe(BufferedHistogram& h, Clock::duration d) {
    if (h.Observe(Seconds(d))) unflushed_.push_back(&h);
  }
  void ReplicaLost();

  // Adds the turn's duration observations to Prometheus; gauges (queued, in
  // flight, replicas) and readiness from the router, at most every 100 ms
  // unless forced. Called once per loop turn.
  void Refresh(const Router& router, TimePoint now, bool force = false);

  // Readiness: a config is held and every endpoint with traffic has a live
  // replica of a backend with weight > 0. Any thread.
  bool ready() const { return ready_.load(std::memory_order_relaxed); }
  // Why not ready ("" when ready). Any thread.
  std::string not_ready_reason() const;

  // STATUS: the dropped-message and shadow counters by name.
  std::vector<std::pair<std::string, uint64_t>> Counters() const;
  // STATUS: {requests, errors} of an endpoint in the last minute.
  std::pair<uint64_t, uint64_t> Recent(std::string_view endpoint, TimePoint now) const;

 private:
  EndpointMetrics& Endpoint(std::string_view name);
  BackendMetrics& Backend(std::string_view name);
  RouteMetrics& Route(EndpointMetrics& e, const std::string& backend);

  std::unique_ptr<prometheus::Registry> own_registry_;  // when none was given
  prometheus::Registry& registry_;

  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& endpoint_errors_;
  prometheus::Family<prometheus::Counter>& backend_errors_;
  prometheus::Family<prometheus::Counter>& rejected_;
  prometheus::Family<prometheus::Counter>& dropped_;
  prometheus::Family<prometheus::Counter>& shadow_requests_;
  prometheus::Family<prometheus::Counter>& shadow_errors_;
  prometheus::Family<prometheus::Counter>& shadow_dropped_;
  prometheus::Family<prometheus::Gauge>& queued_;
  prometheus::Family<prometheus::Gauge>& in_flight_;
  prometheus::Family<prometheus::Gauge>& replicas_;
  prometheus::Family<prometheus::Gauge>& desired_replicas_;
  prometheus::Family<prometheus::Histogram>& request_duration_;
  prometheus::Family<prometheus::Histogram>& queue_duration_;
  prometheus::Family<prometheus::Histogram>& dispatch_duration_;
  prometheus::Counter& unknown_endpoint_;  // NOT_FOUND: no such endpoint
  prometheus::Counter& replicas_lost_;
  prometheus::Gauge& ready_gauge_;
  prometheus::Gauge& config_version_;
  std::array<prometheus::Counter*, 6> drops_{};  // by Drop

  StringMap<std::unique_ptr<EndpointMetrics>> endpoints_;
  std::vector<BufferedHistogram*> unflushed_;  // observed since the last Refresh
  StringMap<std::unique_ptr<BackendMetrics>> backends_;
  // Readiness rule: per endpoint with traffic, its backends with weight > 0.
  std::vector<std::pair<std::string, std::vector<std::string>>> needs_;
  bool has_config_ = false;
  TimePoint next_refresh_{};
  std::atomic<bool> ready_{false};
  mutable std::mutex reason_mu_;
  std::string reason_ = "no configuration yet";  // guarded by reason_mu_
};

}  // namespace zserve::broker

#endif  // ZSERVE_BROKER_BROKER_METRICS_H_
