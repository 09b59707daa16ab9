#include "gateway/http_mapping.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "schemas/config.h"

namespace zserve::gateway {
namespace {

constexpr uint32_t kMaxTimeoutMs = 3'600'000;
constexpr size_t kMaxShardKeyBytes = 128;  // the REQUEST header's bound (PROTOCOL.md)

template <typename Int>
bool ParseInt(std::string_view text, Int* out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *out);
  return ec == std::errc() && ptr == end && !text.empty();
}

// A value without its leading and trailing spaces and tabs (RFC 9110 5.5:
// optional whitespace around a field value).
std::string_view TrimOws(std::string_view v) {
  const size_t first = v.find_first_not_of(" \t");
  if (first == std::string_view::npos) return {};
  return v.substr(first, v.find_last_not_of(" \t") - first + 1);
}

bool SameName(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string Shown(std::string_view value) {
  return std::string(value.substr(0, 64)) + (value.size() > 64 ? "..." : "");
}

HttpResponse BadHeader(const char* name, std::string_view value, const std::string& want) {
  return ErrorResponse(
      400, "BAD_REQUEST",
      std::string("header ") + name + " must be " + want + ", got '" + Shown(value) + "'");
}

// The X-Zserve-* headers into `o`; a response when one is malformed. A
// value's leading and trailing spaces and tabs are not part of it.
std::optional<HttpResponse> ReadCallHeaders(const HeaderLookup& lookup, const Route& route,
                                            CallOptions* o) {
  auto header = [&lookup](const char* name) {
    std::optional<std::string_view> v = lookup(name);
    if (v) *v = TrimOws(*v);
    return v;
  };
  o->timeout = std::chrono::milliseconds(route.timeout_ms);
  if (std::optional<std::string_view> v = header(kTimeoutHeader)) {
    uint32_t ms = 0;
    if (!ParseInt(*v, &ms) || ms < 1 || ms > kMaxTimeoutMs) {
      return BadHeader(kTimeoutHeader, *v, "a whole number of milliseconds in 1..3600000");
    }
    o->timeout = std::chrono::milliseconds(ms);
  }
  if (std::optional<std::string_view> v = header(kMethodHeader)) {
    if (Status s = schemas::ValidateMethod(*v); !s.ok()) {
      return BadHeader(kMethodHeader, *v, "1 to 128 printable ASCII characters other than space");
    }
    o->method = std::string(*v);
  }
  if (std::optional<std::string_view> v = header(kShardKeyHeader)) {
    if (v->size() > kMaxShardKeyBytes) {
      return BadHeader(kShardKeyHeader, *v, "at most 128 bytes");
    }
    o->shard_key = std::string(*v);
  }
  if (std::optional<std::string_view> v = header(kPriorityHeader)) {
    int32_t priority = 0;
    if (!ParseInt(*v, &priority)) return BadHeader(kPriorityHeader, *v, "a 32-bit integer");
    o->priority = priority;
  }
  return std::nullopt;
}

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& i : items) out += (out.empty() ? "" : ", ") + i;
  return out;
}

}  // namespace

int HttpStatusOf(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kOverloaded:
      return 503;
    case StatusCode::kDeadlineExceeded:
      return 504;
    case StatusCode::kReplicaFailed:
      return 502;
    case StatusCode::kHandlerError:
      return 500;
    case StatusCode::kBadRequest:
      return 400;
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kInternal:
      return 500;
    case StatusCode::kPermissionDenied:
      return 403;
  }
  return 500;
}

HttpResponse ResultResponse(std::string result) {
  HttpResponse r;
  r.body = std::move(result);
  return r;
}

HttpResponse ErrorResponse(int http_status, std::string_view type, std::string_view message) {
  HttpResponse r;
  r.status = http_status;
  r.content_type = "application/json";
  // Handler messages are arbitrary bytes: replace what is not UTF-8.
  r.body = nlohmann::json{{"error", type}, {"message", message}}.dump(
               -1, ' ', false, nlohmann::json::error_handler_t::replace) +
           "\n";
  if (http_status == 503) r.headers.emplace_back("Retry-After", "1");
  return r;
}

HttpResponse ErrorResponse(const Status& status) {
  return ErrorResponse(HttpStatusOf(status.code()), StatusCodeName(status.code()),
                       status.message());
}

bool KeepsAlive(std::optional<std::string_view> connection, std::string_view http_version) {
  if (!connection) return http_version == "1.1";
  std::string_view rest = *connection;
  while (true) {
    const size_t comma = rest.find(',');
    if (SameName(TrimOws(rest.substr(0, comma)), "keep-alive")) return true;
    if (comma == std::string_view::npos) return false;
    rest.remove_prefix(comma + 1);
  }
}

std::optional<HttpResponse> CheckHeaderFields(std::span<const HeaderField> fields,
                                              std::string_view http_version) {
  const HeaderField* length = nullptr;
  bool chunked_or_other_coding = false;
  bool host = false;
  for (size_t i = 0; i < fields.size(); ++i) {
    const HeaderField& f = fields[i];
    for (const char* once : {"Content-Length", kTimeoutHeader, kMethodHeader, kShardKeyHeader,
                             kPriorityHeader, "Expect", "Host"}) {
      if (!SameName(f.name, once)) continue;
      for (size_t j = 0; j < i; ++j) {
        if (SameName(fields[j].name, once)) {
          return ErrorResponse(400, "BAD_REQUEST",
                               std::string("header ") + once + " is given more than once");
        }
      }
    }
    if (SameName(f.name, "Content-Length")) length = &f;
    if (SameName(f.name, "Transfer-Encoding")) chunked_or_other_coding = true;
    if (SameName(f.name, "Host")) host = true;
    if (SameName(f.name, "Expect") && !SameName(TrimOws(f.value), "100-continue")) {
      return ErrorResponse(
          417, "BAD_REQUEST",
          "the gateway takes only Expect: 100-continue, got '" + Shown(f.value) + "'");
    }
  }
  if (!host && http_version == "1.1") {
    return ErrorResponse(400, "BAD_REQUEST", "an HTTP/1.1 request must have a Host header");
  }
  if (length != nullptr) {
    std::string_view v = TrimOws(length->value);
    uint64_t n = 0;
    if (!ParseInt(v, &n) || n > static_cast<uint64_t>(INT64_MAX)) {
      return BadHeader("Content-Length", length->value, "a whole number of bytes");
    }
    if (chunked_or_other_coding) {
      return ErrorResponse(400, "BAD_REQUEST",
                           "a request has Content-Length or Transfer-Encoding, not both");
    }
  }
  return std::nullopt;
}

Decision Decide(const RouteTable* routes, std::string_view method, std::string_view path,
                const HeaderLookup& header, int64_t content_length, size_t max_body_bytes) {
  if (path == kHealthzPath) {
    HttpResponse r;
    r.content_type = "text/plain; charset=utf-8";
    r.body = "ok\n";
    return r;
  }
  if (path == kRoutesPath) {
    if (routes == nullptr) {
      return ErrorResponse(503, "UNAVAILABLE", "no configuration from the controller yet");
    }
    HttpResponse r;
    r.content_type = "application/json";
    r.body = routes->ToJson() + "\n";
    return r;
  }
  if (routes == nullptr) {
    return ErrorResponse(503, "UNAVAILABLE", "no configuration from the controller yet");
  }
  RouteMatch match = routes->Find(path, method);
  if (match.kind == MatchKind::kNoRoute) {
    return ErrorResponse(
        404, "NOT_FOUND",
        "no route '" + Shown(path) + "' (GET " + std::string(kRoutesPath) + " lists the routes)");
  }
  if (match.kind == MatchKind::kMethodNotAllowed) {
    HttpResponse r = ErrorResponse(405, "METHOD_NOT_ALLOWED",
                                   "route '" + match.route->path + "' allows " +
                                       Join(match.route->methods) + ", not " + Shown(method));
    r.headers.emplace_back("Allow", Join(match.route->methods));
    return r;
  }
  if (content_length > 0 && static_cast<uint64_t>(content_length) > max_body_bytes) {
    return ErrorResponse(413, "BAD_REQUEST",
                         "the body is " + std::to_string(content_length) +
                             " bytes, more than the gateway's limit of " +
                             std::to_string(max_body_bytes));
  }
  CallPlan plan;
  plan.endpoint = match.route->endpoint;
  if (std::optional<HttpResponse> bad = ReadCallHeaders(header, *match.route, &plan.options)) {
    return *std::move(bad);
  }
  return plan;
}

}  // namespace zserve::gateway
