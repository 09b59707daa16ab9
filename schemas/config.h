// The configuration state that the controller owns and publishes: backends,
// endpoints and their traffic policies (schemas/PROTOCOL.md §4.3,
// docs/deployment.md).
//
// Plain values and pure functions; safe from any thread.
#ifndef ZSERVE_SCHEMAS_CONFIG_H_
#define ZSERVE_SCHEMAS_CONFIG_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "zserve/status.h"

namespace zserve::schemas {

inline constexpr uint32_t kDefaultTimeoutMs = 30'000;
inline constexpr uint32_t kDefaultMaxQueuedRequests = 100'000;
// The range of a numeric field: Validate refuses a value outside it as
// "NAME must be MIN..MAX", and zserve ctl's flags name it.
struct FieldRange {
  const char* name;
  uint32_t min;
  uint32_t max;
};
inline constexpr FieldRange kNumReplicasRange{"num_replicas", 0, 1024};
inline constexpr FieldRange kMaxBatchSizeRange{"max_batch_size", 1, 4096};
inline constexpr FieldRange kBatchWaitTimeoutRange{"batch_wait_timeout_ms", 0, 60'000};
inline constexpr FieldRange kMaxConcurrentQueriesRange{"max_concurrent_queries", 0, 100'000};
inline constexpr FieldRange kMaxQueuedRequestsRange{"max_queued_requests", 1, 10'000'000};
inline constexpr FieldRange kRetryOnReplicaFailureRange{"retry_on_replica_failure", 0, 10};
inline constexpr FieldRange kTimeoutMsRange{"timeout_ms", 1, 3'600'000};
// "NAME must be MIN..MAX".
std::string RangeText(const FieldRange& r);

// Bounds of a state. They do not keep every valid state within one SNAPSHOT
// (250 backends of 64 KiB user_config are more): ConfigStore also refuses a
// state past schemas/codec.h's kMaxStateBytes encoded.
inline constexpr size_t kMaxStateEntries = 10'000;  // backends, and endpoints
inline constexpr size_t kMaxUserConfigBytes = 64 * 1024;
inline constexpr size_t kMaxRouteBytes = 256;
// The HTTP methods an endpoint's route may allow (docs/http.md).
inline constexpr std::string_view kHttpMethods[] = {"GET", "POST", "PUT", "DELETE", "PATCH"};

// The methods of an endpoint that names none.
std::vector<std::string> DefaultHttpMethods();

struct BackendConfig {
  std::string name;
  std::string handler;  // built-in handler of the generic worker ("echo", "sleep", ...)
  uint32_t num_replicas = 1;
  uint32_t max_batch_size = 1;
  uint32_t batch_wait_timeout_ms = 0;
  uint32_t max_concurrent_queries = 0;  // 0: 2 x max_batch_size when batching, else 8
  uint32_t max_queued_requests = kDefaultMaxQueuedRequests;
  uint32_t retry_on_replica_failure = 1;
  std::string user_config;  // opaque to zserve, given to the handler

  // The in-flight cap per replica, with the default applied.
  uint32_t EffectiveMaxConcurrentQueries() const;
  bool operator==(const BackendConfig&) const = default;
};

struct EndpointConfig {
  std::string name;
  std::map<std::string, double> traffic;  // backend -> weight, summing to 1
  std::map<std::string, double> shadow;   // backend -> fraction in [0, 1]
  uint32_t timeout_ms = kDefaultTimeoutMs;
  // The HTTP gateway's path for this endpoint ("/echo"); empty: none.
  std::string route;
  std::vector<std::string> methods = DefaultHttpMethods();  // allowed on `route`
  bool operator==(const EndpointConfig&) const = default;
};

struct ConfigState {
  std::map<std::string, BackendConfig> backends;
  std::map<std::string, EndpointConfig> endpoints;
  bool operator==(const ConfigState&) const = default;
};

// Fields of a backend or an endpoint as given in an admin command: the ones
// present replace a config's, the others are left as they are.
struct BackendFields {
  std::optional<std::string> handler;
  std::optional<uint32_t> num_replicas;
  std::optional<uint32_t> max_batch_size;
  std::optional<uint32_t> batch_wait_timeout_ms;
  std::optional<uint32_t> max_concurrent_queries;
  std::optional<uint32_t> max_queued_requests;
  std::optional<uint32_t> retry_on_replica_failure;
  std::optional<std::string> user_config;
  bool operator==(const BackendFields&) const = default;
};

struct EndpointFields {
  std::optional<std::map<std::string, double>> traffic;
  std::optional<std::map<std::string, double>> shadow;
  std::optional<uint32_t> timeout_ms;
  std::optional<std::string> route;
  std::optional<std::vector<std::string>> methods;
  bool operator==(const EndpointFields&) const = default;
};

void MergeFields(const BackendFields& fields, BackendConfig* backend);
void MergeFields(const EndpointFields& fields, EndpointConfig* endpoint);
// Every field of `backend` (all present).
BackendFields AllFields(const BackendConfig& backend);

// Names of endpoints and backends: 1..128 of [A-Za-z0-9_.-].
Status ValidateName(std::string_view kind, std::string_view name);
// Methods: 1..128 printable ASCII characters (0x21..0x7e).
Status ValidateMethod(std::string_view method);
// Traffic weights: >= 0, summing to 1 within 1e-6, at least one backend.
Status ValidateWeights(const std::map<std::string, double>& weights);
// HTTP routes: "" (none), or 2..256 characters starting with "/", of
// [A-Za-z0-9_.~/-], not under "/-/" (the gateway's own paths), no "//".
Status ValidateRoute(std::string_view route);
// HTTP methods of a route: 1..5 of kHttpMethods, each at most once.
Status ValidateHttpMethods(const std::vector<std::string>& methods);
// The whole state: names, numeric ranges, weights, references to backends,
// routes (each used by one endpoint at most).
Status Validate(const ConfigState& state);

}  // namespace zserve::schemas

#endif  // ZSERVE_SCHEMAS_CONFIG_H_
