#include "schemas/config.h"

#include <algorithm>
#include <cmath>
#include <tuple>

namespace zserve::schemas {

uint32_t BackendConfig::EffectiveMaxConcurrentQueries() const {
  if (max_concurrent_queries > 0) return max_concurrent_queries;
  return max_batch_size > 1 ? 2 * max_batch_size : 8;
}

std::vector<std::string> DefaultHttpMethods() { return {"GET", "POST"}; }

namespace {
template <typename T>
void Take(const std::optional<T>& from, T* to) {
  if (from) *to = *from;
}
}  // namespace

void MergeFields(const BackendFields& f, BackendConfig* b) {
  Take(f.handler, &b->handler);
  Take(f.num_replicas, &b->num_replicas);
  Take(f.max_batch_size, &b->max_batch_size);
  Take(f.batch_wait_timeout_ms, &b->batch_wait_timeout_ms);
  Take(f.max_concurrent_queries, &b->max_concurrent_queries);
  Take(f.max_queued_requests, &b->max_queued_requests);
  Take(f.retry_on_replica_failure, &b->retry_on_replica_failure);
  Take(f.user_config, &b->user_config);
}

void MergeFields(const EndpointFields& f, EndpointConfig* e) {
  Take(f.traffic, &e->traffic);
  Take(f.shadow, &e->shadow);
  Take(f.timeout_ms, &e->timeout_ms);
  Take(f.route, &e->route);
  Take(f.methods, &e->methods);
}

BackendFields AllFields(const BackendConfig& b) {
  return {b.handler,
          b.num_replicas,
          b.max_batch_size,
          b.batch_wait_timeout_ms,
          b.max_concurrent_queries,
          b.max_queued_requests,
          b.retry_on_replica_failure,
          b.user_config};
}

Status ValidateName(std::string_view kind, std::string_view name) {
  if (name.empty() || name.size() > 128) {
    return BadRequest(std::string(kind) + " name must be 1 to 128 characters, got " +
                      std::to_string(name.size()));
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    if (!ok) {
      return BadRequest(std::string(kind) + " name '" + std::string(name) +
                        "' has a character outside [A-Za-z0-9_.-]");
    }
  }
  return Status::Ok();
}

Status ValidateMethod(std::string_view method) {
  if (method.empty() || method.size() > 128) {
    return BadRequest("method must be 1 to 128 characters, got " + std::to_string(method.size()));
  }
  for (char c : method) {
    if (c < 0x21 || c > 0x7e) {
      return BadRequest("method has a character that is not printable ASCII other than space");
    }
  }
  return Status::Ok();
}

Status ValidateWeights(const std::map<std::string, double>& weights) {
  if (weights.empty()) return BadRequest("traffic policy names no backend");
  double sum = 0;
  for (const auto& [backend, weight] : weights) {
    if (!std::isfinite(weight) || weight < 0) {
      return BadRequest("traffic weight of backend '" + backend + "' must be >= 0, got " +
                        std::to_string(weight));
    }
    sum += weight;
  }
  if (std::fabs(sum - 1.0) > 1e-6) {
    return BadRequest("traffic weights must sum to 1, they sum to " + std::to_string(sum));
  }
  return Status::Ok();
}

Status ValidateRoute(std::string_view route) {
  if (route.empty()) return Status::Ok();
  const std::string quoted = "route '" + std::string(route.substr(0, 64)) + "'";
  if (route.size() > kMaxRouteBytes) {
    return BadRequest("route must be at most " + std::to_string(kMaxRouteBytes) +
                      " characters, got " + std::to_string(route.size()));
  }
  if (route.front() != '/' || route.size() < 2) {
    return BadRequest(quoted + " must start with '/' and name a path (e.g. '/echo')");
  }
  if (route == "/-" || route.starts_with("/-/")) {
    return BadRequest(quoted + " is under '/-/', which the gateway keeps for its own paths");
  }
  if (route.find("//") != std::string_view::npos) {
    return BadRequest(quoted + " has an empty segment ('//')");
  }
  for (char c : route) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-' || c == '~' || c == '/';
    if (!ok) return BadRequest(quoted + " has a character outside [A-Za-z0-9_.~/-]");
  }
  return Status::Ok();
}

Status ValidateHttpMethods(const std::vector<std::string>& methods) {
  if (methods.empty()) return BadRequest("methods must name at least one HTTP method");
  std::string known;
  for (std::string_view m : kHttpMethods) known += (known.empty() ? "" : ", ") + std::string(m);
  for (size_t i = 0; i < methods.size(); ++i) {
    const std::string& m = methods[i];
    if (std::find(std::begin(kHttpMethods), std::end(kHttpMethods), m) == std::end(kHttpMethods)) {
      return BadRequest("method '" + m.substr(0, 64) + "' is not one of " + known);
    }
    if (std::find(methods.begin(), methods.begin() + static_cast<ptrdiff_t>(i), m) !=
        methods.begin() + static_cast<ptrdiff_t>(i)) {
      return BadRequest("method '" + m + "' is given twice");
    }
  }
  return Status::Ok();
}

namespace {

Status ValidateBackend(const BackendConfig& b) {
  if (Status s = ValidateName("backend", b.name); !s.ok()) return s;
  const std::string where = "backend '" + b.name + "': ";
  if (b.handler.empty() || b.handler.size() > 128) {
    return BadRequest(where + "handler must be 1 to 128 characters");
  }
  if (b.user_config.size() > kMaxUserConfigBytes) {
    return BadRequest(where + "user_config is " + std::to_string(b.user_config.size()) +
                      " bytes, more than " + std::to_string(kMaxUserConfigBytes));
  }
  for (const auto& [value, range, note] :
       {std::tuple{b.num_replicas, kNumReplicasRange, ""},
        std::tuple{b.max_batch_size, kMaxBatchSizeRange, ""},
        std::tuple{b.batch_wait_timeout_ms, kBatchWaitTimeoutRange, ""},
        std::tuple{b.max_concurrent_queries, kMaxConcurrentQueriesRange, " (0: default)"},
        std::tuple{b.max_queued_requests, kMaxQueuedRequestsRange, ""},
        std::tuple{b.retry_on_replica_failure, kRetryOnReplicaFailureRange, ""}}) {
    if (value < range.min || value > range.max) {
      return BadRequest(where + RangeText(range) + note);
    }
  }
  return Status::Ok();
}

}  // namespace

std::string RangeText(const FieldRange& r) {
  return std::string(r.name) + " must be " + std::to_string(r.min) + ".." + std::to_string(r.max);
}

Status Validate(const ConfigState& state) {
  if (state.backends.size() > kMaxStateEntries || state.endpoints.size() > kMaxStateEntries) {
    return BadRequest("at most " + std::to_string(kMaxStateEntries) +
                      " backends and as many endpoints");
  }
  for (const auto& [name, b] : state.backends) {
    if (name != b.name) return Internal("backend key '" + name + "' differs from its name");
    if (Status s = ValidateBackend(b); !s.ok()) return s;
  }
  std::map<std::string_view, std::string_view> routes;  // route -> endpoint
  for (const auto& [name, e] : state.endpoints) {
    if (name != e.name) return Internal("endpoint key '" + name + "' differs from its name");
    if (Status s = ValidateName("endpoint", e.name); !s.ok()) return s;
    const std::string where = "endpoint '" + e.name + "': ";
    if (Status s = ValidateWeights(e.traffic); !s.ok()) return BadRequest(where + s.message());
    for (const auto& [backend, weight] : e.traffic) {
      if (!state.backends.contains(backend)) {
        return BadRequest(where + "traffic names unknown backend '" + backend + "'");
      }
    }
    for (const auto& [backend, fraction] : e.shadow) {
      if (!state.backends.contains(backend)) {
        return BadRequest(where + "shadow names unknown backend '" + backend + "'");
      }
      if (!std::isfinite(fraction) || fraction < 0 || fraction > 1) {
        return BadRequest(where + "shadow fraction of '" + backend + "' must be in [0, 1]");
      }
    }
    if (e.timeout_ms < kTimeoutMsRange.min || e.timeout_ms > kTimeoutMsRange.max) {
      return BadRequest(where + RangeText(kTimeoutMsRange));
    }
    if (Status s = ValidateRoute(e.route); !s.ok()) return BadRequest(where + s.message());
    if (Status s = ValidateHttpMethods(e.methods); !s.ok()) return BadRequest(where + s.message());
    if (!e.route.empty()) {
      auto [other, added] = routes.emplace(e.route, e.name);
      if (!added) {
        return BadRequest(where + "route '" + e.route + "' is already the route of endpoint '" +
                          std::string(other->second) + "'");
      }
    }
  }
  return Status::Ok();
}

}  // namespace zserve::schemas
