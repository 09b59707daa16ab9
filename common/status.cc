#include "zserve/status.h"

namespace zserve {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "OK";
    case StatusCode::kNotFound:
      return "NOT_FOUND";
    case StatusCode::kOverloaded:
      return "OVERLOADED";
    case StatusCode::kDeadlineExceeded:
      return "DEADLINE_EXCEEDED";
    case StatusCode::kReplicaFailed:
      return "REPLICA_FAILED";
    case StatusCode::kHandlerError:
      return "HANDLER_ERROR";
    case StatusCode::kBadRequest:
      return "BAD_REQUEST";
    case StatusCode::kUnavailable:
      return "UNAVAILABLE";
    case StatusCode::kInternal:
      return "INTERNAL";
    case StatusCode::kPermissionDenied:
      return "PERMISSION_DENIED";
  }
  return "UNKNOWN";
}

bool StatusCodeFromInt(int64_t value, StatusCode* code) {
  if (value < 0 || value > static_cast<int64_t>(kLastStatusCode)) return false;
  *code = static_cast<StatusCode>(value);
  return true;
}

std::string Status::ToString() const {
  std::string out(StatusCodeName(code_));
  if (!message_.empty()) {
    out += ": ";
    out += message_;
  }
  return out;
}

}  // namespace zserve
