// zserve::Status and zserve::StatusOr<T>: the result of every operation that
// can fail in an expected way. Error codes are the typed errors of the request
// contract (see schemas/PROTOCOL.md, "Status codes"); their numeric values go
// on the wire and never change.
//
// Plain values: copyable, movable, no shared state, safe to use from any
// thread.
#ifndef ZSERVE_STATUS_H_
#define ZSERVE_STATUS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace zserve {

enum class StatusCode : uint8_t {
  kOk = 0,
  kNotFound = 1,          // no such endpoint
  kOverloaded = 2,        // a queue bound was reached; answered at once
  kDeadlineExceeded = 3,  // the deadline passed before a result
  kReplicaFailed = 4,     // the replica died and no retry was left
  kHandlerError = 5,      // the handler threw or returned an error
  kBadRequest = 6,        // malformed request or input
  kUnavailable = 7,       // cannot reach a peer (broker, controller)
  kInternal = 8,          // a bug or an unexpected library failure
  kPermissionDenied = 9,  // the peer's CURVE key lacks the role (docs/security.md)
};
// The highest value: codes are 0..kLastStatusCode.
inline constexpr StatusCode kLastStatusCode = StatusCode::kPermissionDenied;

// "OK", "NOT_FOUND", ... as printed by the CLI and written in PROTOCOL.md.
std::string_view StatusCodeName(StatusCode code);
// Inverse of the wire value; returns false for a value that is not a code.
bool StatusCodeFromInt(int64_t value, StatusCode* code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "NOT_FOUND: no endpoint named 'x'".
  std::string ToString() const;

  bool operator==(const Status& other) const = default;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status Overloaded(std::string m) { return {StatusCode::kOverloaded, std::move(m)}; }
inline Status DeadlineExceeded(std::string m) {
  return {StatusCode::kDeadlineExceeded, std::move(m)};
}
inline Status ReplicaFailed(std::string m) { return {StatusCode::kReplicaFailed, std::move(m)}; }
inline Status HandlerError(std::string m) { return {StatusCode::kHandlerError, std::move(m)}; }
inline Status BadRequest(std::string m) { return {StatusCode::kBadRequest, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status PermissionDenied(std::string m) {
  return {StatusCode::kPermissionDenied, std::move(m)};
}

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  StatusOr(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    if (std::get<Status>(v_).ok()) v_ = Internal("StatusOr built from an OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace zserve

#endif  // ZSERVE_STATUS_H_
