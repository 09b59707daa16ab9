// What the HTTP gateway answers, as plain values (docs/http.md): for each
// request, either a response at once (the gateway's own paths, unknown
// routes, wrong methods, bad headers) or a call to make; and the response
// for a call's result or typed error. No sockets, no threads: tested on its
// own, and the server only moves bytes.
//
// Pure functions; safe from any thread.
#ifndef ZSERVE_GATEWAY_HTTP_MAPPING_H_
#define ZSERVE_GATEWAY_HTTP_MAPPING_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "gateway/route_table.h"
#include "zserve/client.h"
#include "zserve/status.h"

namespace zserve::gateway {

// Request headers the gateway reads (case-insensitive, as HTTP says).
inline constexpr const char* kTimeoutHeader = "X-Zserve-Timeout-Ms";  // 1..3600000
inline constexpr const char* kMethodHeader = "X-Zserve-Method";       // default __call__
inline constexpr const char* kShardKeyHeader = "X-Zserve-Shard-Key";  // sticky routing
inline constexpr const char* kPriorityHeader = "X-Zserve-Priority";   // int32
// The gateway's own paths.
inline constexpr std::string_view kHealthzPath = "/-/healthz";
inline constexpr std::string_view kRoutesPath = "/-/routes";

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/octet-stream";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // Retry-After, Allow
};

// A call's result: 200, the bytes as they are.
HttpResponse ResultResponse(std::string result);
// A typed error (not OK): its HTTP status and the JSON body
// {"error": "DEADLINE_EXCEEDED", "message": "..."}; OVERLOADED and
// UNAVAILABLE are 503 with Retry-After.
HttpResponse ErrorResponse(const Status& status);
HttpResponse ErrorResponse(int http_status, std::string_view type, std::string_view message);
// The HTTP status of a call's outcome.
int HttpStatusOf(StatusCode code);

// One header line of a request, as the server parsed it.
struct HeaderField {
  std::string_view name;
  std::string_view value;
};

// The checks on a request's header lines that come before its route: `400`
// for a Content-Length that is repeated, is not a whole number, or comes
// with Transfer-Encoding (the body's end would be in doubt, and what
// follows it could be read as another request), and for a repeated
// X-Zserve-* header; `417` for an Expect other than 100-continue. And, as
// RFC 9112 3.2 asks, `400` for a Host given twice, or none in a request of
// `http_version` "1.1".
std::optional<HttpResponse> CheckHeaderFields(std::span<const HeaderField> fields,
                                              std::string_view http_version);

// Whether a connection stays open after the response, as civetweb decides
// it: by the request's Connection header (a "keep-alive" token, any case),
// else by its version ("1.1").
bool KeepsAlive(std::optional<std::string_view> connection, std::string_view http_version);

// A request header's value by name, if the request has it.
using HeaderLookup = std::function<std::optional<std::string_view>(const char* name)>;

struct CallPlan {
  std::string endpoint;
  CallOptions options;  // timeout always set: the header's, else the endpoint's
};

// What to do with a request of `method` on `path` (the query string cut
// off) with `content_length` bytes of body (-1: unknown). `routes` is
// nullptr until the gateway holds a configuration.
using Decision = std::variant<HttpResponse, CallPlan>;
Decision Decide(const RouteTable* routes, std::string_view method, std::string_view path,
                const HeaderLookup& header, int64_t content_length, size_t max_body_bytes);

}  // namespace zserve::gateway

#endif  // ZSERVE_GATEWAY_HTTP_MAPPING_H_
