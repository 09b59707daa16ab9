#include "controller/config_change.h"

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <utility>

namespace zserve::controller {
namespace {

namespace sc = zserve::schemas;
using Fields = std::vector<std::pair<std::string, std::string>>;

// The shortest text that reads back as `v`: two weights that differ never
// print the same, so a change is always seen.
std::string Number(double v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

std::string Weights(const std::map<std::string, double>& m) {
  std::string out = "{";
  for (const auto& [k, v] : m) out += (out.size() > 1 ? ", " : "") + k + ": " + Number(v);
  return out + "}";
}

// A text cut to its first 60 bytes, with its size and a digest of the whole
// (FNV-1a), so that two long texts that differ only further on still print
// differently and a change of one shows.
std::string Quoted(const std::string& s) {
  constexpr size_t kShown = 60;
  // Appended piece by piece: GCC 12's -Wrestrict misfires on "'" + s.substr(...).
  std::string out = "'";
  out.append(s, 0, kShown);
  if (s.size() <= kShown) return out + "'";
  uint32_t digest = 2166136261u;
  for (unsigned char c : s) digest = (digest ^ c) * 16777619u;
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", digest);
  return out + "...' (" + std::to_string(s.size()) + " bytes, digest " + hex + ")";
}

// The fields of a config as (name, printed value), in a fixed order.
Fields Describe(const sc::BackendConfig& b) {
  return {{"handler", b.handler},
          {"num_replicas", std::to_string(b.num_replicas)},
          {"max_batch_size", std::to_string(b.max_batch_size)},
          {"batch_wait_timeout_ms", std::to_string(b.batch_wait_timeout_ms)},
          {"max_concurrent_queries", std::to_string(b.max_concurrent_queries)},
          {"max_queued_requests", std::to_string(b.max_queued_requests)},
          {"retry_on_replica_failure", std::to_string(b.retry_on_replica_failure)},
          {"user_config", Quoted(b.user_config)}};
}

std::string Methods(const std::vector<std::string>& methods) {
  std::string out;
  for (const std::string& m : methods) out += (out.empty() ? "" : ",") + m;
  return out;
}

Fields Describe(const sc::EndpointConfig& e) {
  return {{"traffic", Weights(e.traffic)},
          {"shadow", Weights(e.shadow)},
          {"timeout_ms", std::to_string(e.timeout_ms)},
          {"route", Quoted(e.route)},
          {"methods", Methods(e.methods)}};
}

// "name=value ..." of a new config; "name a -> b, ..." of a changed one.
std::string Created(const Fields& now) {
  std::string out;
  for (const auto& [k, v] : now) out += (out.empty() ? "" : " ") + k + "=" + v;
  return out;
}

std::string Changed(const Fields& was, const Fields& now) {
  std::string out;
  for (size_t i = 0; i < now.size(); ++i) {
    if (was[i].second == now[i].second) continue;
    out += (out.empty() ? "" : ", ") + now[i].first + " " + was[i].second + " -> " + now[i].second;
  }
  return out;
}

template <typename Config>
void DiffMaps(const std::string& kind, const std::map<std::string, Config>& from,
              const std::map<std::string, Config>& to, bool deletions,
              std::vector<std::string>* lines) {
  if (deletions) {
    for (const auto& [name, c] : from) {
      if (!to.contains(name)) lines->push_back("- " + kind + " " + name);
    }
    return;
  }
  for (const auto& [name, c] : to) {
    auto was = from.find(name);
    if (was == from.end()) {
      lines->push_back("+ " + kind + " " + name + ": " + Created(Describe(c)));
    } else if (!(was->second == c)) {
      lines->push_back("~ " + kind + " " + name + ": " +
                       Changed(Describe(was->second), Describe(c)));
    }
  }
}

Status NoSuch(const std::string& kind, const std::string& name) {
  return NotFound("no " + kind + " named '" + name + "'");
}

}  // namespace

StatusOr<sc::ConfigState> ApplyAdminRequest(const sc::ConfigState& current,
                                            const sc::AdminRequest& r) {
  sc::ConfigState next = current;
  auto backend = next.backends.find(r.name);
  auto endpoint = next.endpoints.find(r.name);
  switch (r.command) {
    case sc::Command::kGetState:
      return current;
    case sc::Command::kApply:
      next = r.state;
      break;
    case sc::Command::kCreateBackend: {
      if (Status s = sc::ValidateName("backend", r.name); !s.ok()) return s;
      if (backend != next.backends.end()) {
        return BadRequest("backend '" + r.name + "' already exists (update-backend changes it)");
      }
      sc::BackendConfig b;
      b.name = r.name;
      b.handler = r.name;
      sc::MergeFields(r.backend, &b);
      next.backends.emplace(r.name, std::move(b));
      break;
    }
    case sc::Command::kUpdateBackend:
      if (backend == next.backends.end()) return NoSuch("backend", r.name);
      sc::MergeFields(r.backend, &backend->second);
      break;
    case sc::Command::kDeleteBackend:
      if (backend == next.backends.end()) return NoSuch("backend", r.name);
      for (const auto& [name, e] : next.endpoints) {
        for (const auto* policy : {&e.traffic, &e.shadow}) {
          if (policy->contains(r.name)) {
            return BadRequest("backend '" + r.name + "' is still in the " +
                              (policy == &e.traffic ? "traffic" : "shadow") +
                              " policy of endpoint '" + name + "'; change that first");
          }
        }
      }
      next.backends.erase(backend);
      break;
    case sc::Command::kCreateEndpoint: {
      if (Status s = sc::ValidateName("endpoint", r.name); !s.ok()) return s;
      if (endpoint != next.endpoints.end()) {
        return BadRequest("endpoint '" + r.name +
                          "' already exists (update-endpoint and set-traffic change it)");
      }
      if (!r.endpoint.traffic)
        return BadRequest("endpoint '" + r.name + "' needs a traffic policy");
      sc::EndpointConfig e;
      e.name = r.name;
      sc::MergeFields(r.endpoint, &e);
      next.endpoints.emplace(r.name, std::move(e));
      break;
    }
    case sc::Command::kUpdateEndpoint:
      if (endpoint == next.endpoints.end()) return NoSuch("endpoint", r.name);
      sc::MergeFields(r.endpoint, &endpoint->second);
      break;
    case sc::Command::kDeleteEndpoint:
      if (endpoint == next.endpoints.end()) return NoSuch("endpoint", r.name);
      next.endpoints.erase(endpoint);
      break;
    case sc::Command::kSetTraffic:
    case sc::Command::kSetShadow:
      if (endpoint == next.endpoints.end()) return NoSuch("endpoint", r.name);
      (r.command == sc::Command::kSetTraffic ? endpoint->second.traffic : endpoint->second.shadow) =
          r.weights;
      break;
    default:
      return BadRequest(std::string(sc::CommandName(r.command)) + " is not an admin command");
  }
  if (Status s = sc::Validate(next); !s.ok()) return s;
  return next;
}

std::vector<std::string> DiffStates(const sc::ConfigState& from, const sc::ConfigState& to) {
  std::vector<std::string> lines;
  // Creations and changes first, deletions last: the order a person would
  // make them in one at a time.
  DiffMaps("backend", from.backends, to.backends, false, &lines);
  DiffMaps("endpoint", from.endpoints, to.endpoints, false, &lines);
  DiffMaps("endpoint", from.endpoints, to.endpoints, true, &lines);
  DiffMaps("backend", from.backends, to.backends, true, &lines);
  return lines;
}

}  // namespace zserve::controller
