// The HTTP gateway's routes: which endpoint a request path calls and with
// which HTTP methods, built from the controller's configuration (each
// endpoint's `route` and `methods`, docs/http.md). A path matches a route
// exactly (no prefixes, no patterns); the query string is not part of it.
//
// An immutable value once built: share it across threads as
// std::shared_ptr<const RouteTable>.
#ifndef ZSERVE_GATEWAY_ROUTE_TABLE_H_
#define ZSERVE_GATEWAY_ROUTE_TABLE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "schemas/config.h"

namespace zserve::gateway {

struct Route {
  std::string path;  // "/echo"
  std::string endpoint;
  std::vector<std::string> methods;                  // allowed HTTP methods
  uint32_t timeout_ms = schemas::kDefaultTimeoutMs;  // the endpoint's default deadline
};

enum class MatchKind {
  kFound,
  kNoRoute,           // 404
  kMethodNotAllowed,  // 405; `route` says which methods are
};

struct RouteMatch {
  MatchKind kind = MatchKind::kNoRoute;
  const Route* route = nullptr;  // kFound and kMethodNotAllowed; points into the table
};

class RouteTable {
 public:
  RouteTable() = default;  // no routes
  // The routes of every endpoint with a non-empty route, at config `version`.
  RouteTable(const schemas::ConfigState& state, uint64_t version);

  RouteMatch Find(std::string_view path, std::string_view method) const;

  uint64_t version() const { return version_; }
  size_t size() const { return routes_.size(); }
  // The /-/routes document: {"config_version": N, "routes": [{"route",
  // "endpoint", "methods", "timeout_ms"}, ...]}, sorted by route.
  std::string ToJson() const;

 private:
  uint64_t version_ = 0;
  std::map<std::string, Route, std::less<>> routes_;  // by path
};

}  // namespace zserve::gateway

#endif  // ZSERVE_GATEWAY_ROUTE_TABLE_H_
