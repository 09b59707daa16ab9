#include "gateway/route_table.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace zserve::gateway {

RouteTable::RouteTable(const schemas::ConfigState& state, uint64_t version) : version_(version) {
  for (const auto& [name, e] : state.endpoints) {
    if (e.route.empty()) continue;
    routes_[e.route] = Route{e.route, name, e.methods, e.timeout_ms};
  }
}

RouteMatch RouteTable::Find(std::string_view path, std::string_view method) const {
  auto it = routes_.find(path);
  if (it == routes_.end()) return {MatchKind::kNoRoute, nullptr};
  const Route& route = it->second;
  bool allowed =
      std::find(route.methods.begin(), route.methods.end(), method) != route.methods.end();
  return {allowed ? MatchKind::kFound : MatchKind::kMethodNotAllowed, &route};
}

std::string RouteTable::ToJson() const {
  nlohmann::json routes = nlohmann::json::array();
  for (const auto& [path, r] : routes_) {
    routes.push_back({{"route", r.path},
                      {"endpoint", r.endpoint},
                      {"methods", r.methods},
                      {"timeout_ms", r.timeout_ms}});
  }
  return nlohmann::json{{"config_version", version_}, {"routes", routes}}.dump();
}

}  // namespace zserve::gateway
