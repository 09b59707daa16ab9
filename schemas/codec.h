// Encoding and decoding of ZSP/1 headers (schemas/PROTOCOL.md).
//
// Pure functions over bytes: no sockets, no shared state, safe from any
// thread. Decoders never throw: any malformed input gives a BAD_REQUEST
// Status that says what is wrong. Payload frames are not touched here; the
// caller forwards them as they are.
#ifndef ZSERVE_SCHEMAS_CODEC_H_
#define ZSERVE_SCHEMAS_CODEC_H_

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "schemas/config.h"
#include "zserve/status.h"

namespace zserve::schemas {

inline constexpr uint64_t kProtocolVersion = 1;
inline constexpr size_t kMaxHeaderBytes = 64 * 1024;
inline constexpr size_t kMaxStateHeaderBytes = 16 * 1024 * 1024;
// The most bytes a state may take encoded (as in a SNAPSHOT): every header
// that carries one (SNAPSHOT, UPDATE, APPLY, ADMIN_REPLY) keeps
// kMaxHeaderBytes for its other elements, so it fits kMaxStateHeaderBytes.
inline constexpr size_t kMaxStateBytes = kMaxStateHeaderBytes - kMaxHeaderBytes;
inline constexpr size_t kMaxNameBytes = 128;
inline constexpr size_t kMaxMessageBytes = 4096;
inline constexpr size_t kMaxBatchItems = 4096;
// Senders that put many items in one header keep it within this budget,
// counting each item as its fixed cost plus its strings (method, message).
inline constexpr size_t kHeaderBudget = 60 * 1024;
inline constexpr size_t kBatchItemBytes = 24;   // a BATCH item but its method
inline constexpr size_t kResultItemBytes = 24;  // a RESULTS or REPLIES item but its message
// The most calls in one REQUESTS or REPLIES message.
inline constexpr size_t kMaxCallsPerMessage = 256;
inline constexpr std::string_view kConfigTopic = "zserve.config";
inline constexpr std::string_view kDefaultMethod = "__call__";

enum class Command : uint8_t {
  kRequest = 1,
  kReply = 2,
  kStatus = 3,
  kRequests = 4,  // several REQUESTs in one message (PROTOCOL.md 4.1)
  kReplies = 5,   // several REPLYs in one message
  kReady = 16,
  kBatch = 17,
  kResults = 18,
  kDisconnect = 19,
  kHeartbeat = 20,
  kSnapshotRequest = 32,
  kSnapshot = 33,
  kUpdate = 34,
  kControllerHeartbeat = 35,
  kError = 47,
  kCreateBackend = 48,
  kUpdateBackend = 49,
  kDeleteBackend = 50,
  kCreateEndpoint = 51,
  kDeleteEndpoint = 52,
  kSetTraffic = 53,
  kSetShadow = 54,
  kGetState = 55,
  kApply = 56,
  kAdminReply = 57,
  kUpdateEndpoint = 58,
};

// The most lines of `changes` in one ADMIN_REPLY, and the most bytes they
// take encoded: with the message, within kMaxHeaderBytes, so that a reply
// carrying a state of kMaxStateBytes fits.
inline constexpr size_t kMaxChangeLines = 1000;
inline constexpr size_t kMaxChangeBytes = 56 * 1024;

std::string_view CommandName(Command command);

struct RequestHeader {
  uint64_t request_id = 0;
  std::string endpoint;
  std::string method;
  uint32_t timeout_ms = 0;  // 0: the endpoint's default
  std::string shard_key;
  int32_t priority = 0;
  bool operator==(const RequestHeader&) const = default;
};

struct ReplyHeader {
  uint64_t request_id = 0;
  StatusCode code = StatusCode::kOk;
  std::string message;
  bool operator==(const ReplyHeader&) const = default;
};

struct ReadyHeader {
  std::string backend;
  std::string replica_tag;
  uint32_t capacity = 0;  // 0: no limit of the worker's own
  bool packed = false;    // takes BATCHes with packed payloads (PROTOCOL.md 3.1)
  // The worker's heartbeat interval, by which the broker judges it and
  // heartbeats it; 0: not named (the broker's own).
  uint32_t heartbeat_ms = 0;
  bool operator==(const ReadyHeader&) const = default;
};

struct BatchItem {
  uint64_t token = 0;
  std::string method;
  uint32_t timeout_ms = 0;  // what remains of the deadline at dispatch
  bool operator==(const BatchItem&) const = default;
};

struct ResultItem {
  uint64_t token = 0;
  StatusCode code = StatusCode::kOk;
  std::string message;
  bool operator==(const ResultItem&) const = default;
};

struct Snapshot {
  uint64_t version = 0;
  ConfigState state;
};

// Admin commands (PROTOCOL.md §4.4).
// One admin command; which members count depends on `command`.
struct AdminRequest {
  Command command = Command::kGetState;
  uint64_t request_id = 0;
  std::string name;                       // all but GET_STATE and APPLY
  BackendFields backend;                  // CREATE_BACKEND, UPDATE_BACKEND
  EndpointFields endpoint;                // CREATE_ENDPOINT, UPDATE_ENDPOINT
  std::map<std::string, double> weights;  // SET_TRAFFIC, SET_SHADOW
  ConfigState state;                      // APPLY
  bool operator==(const AdminRequest&) const = default;
};

struct AdminReply {
  uint64_t request_id = 0;
  StatusCode code = StatusCode::kOk;
  std::string message;
  uint64_t version = 0;
  // Cut by the encoder to kMaxChangeLines and kMaxChangeBytes.
  std::vector<std::string> changes;
  ConfigState state;
  bool operator==(const AdminReply&) const = default;
};

bool IsAdminCommand(Command command);  // CREATE_BACKEND .. APPLY, UPDATE_ENDPOINT

// Checks version and command of any header; the first step of every receiver.
StatusOr<Command> PeekCommand(std::string_view header);

std::string EncodeRequest(const RequestHeader& h);
std::string EncodeReply(const ReplyHeader& h);
// REQUESTS / REPLIES: 1..kMaxCallsPerMessage calls, one payload frame each,
// or, with `payload_sizes` (one per call), packed payloads (PROTOCOL.md 3.1).
// The same `payload_sizes` for BATCH and RESULTS; decoders give them back,
// empty when the header has none.
std::string EncodeRequests(const std::vector<RequestHeader>& calls,
                           std::span<const uint64_t> payload_sizes = {});
std::string EncodeReplies(const std::vector<ReplyHeader>& replies,
                          std::span<const uint64_t> payload_sizes = {});
std::string EncodeStatusRequest(uint64_t request_id);
std::string EncodeReady(const ReadyHeader& h);
// `sizes`: how the items split into handler batches, in order (PROTOCOL.md
// 4.2); empty or one element: all of them are one batch.
std::string EncodeBatch(const std::vector<BatchItem>& items, std::span<const uint32_t> sizes = {},
                        std::span<const uint64_t> payload_sizes = {});
std::string EncodeResults(const std::vector<ResultItem>& items,
                          std::span<const uint64_t> payload_sizes = {});
std::string EncodeSimple(Command command);  // DISCONNECT, HEARTBEAT, SNAPSHOT_REQUEST
std::string EncodeSnapshot(Command command, const Snapshot& s);  // SNAPSHOT or UPDATE
// The bytes `state` takes encoded; at most kMaxStateBytes for a state to be
// sent (ConfigStore commits no other).
size_t EncodedStateBytes(const ConfigState& state);
std::string EncodeControllerHeartbeat(uint64_t version);
std::string EncodeError(const Status& status);
std::string EncodeAdminRequest(const AdminRequest& r);
std::string EncodeAdminReply(const AdminReply& r);

// Each decoder checks that the header is of its command.
StatusOr<RequestHeader> DecodeRequest(std::string_view header);
StatusOr<ReplyHeader> DecodeReply(std::string_view header);
// A call of a REQUESTS at fault alone: its index, and why.
using CallErrors = std::vector<std::pair<size_t, Status>>;
// With `call_errors`, a call at fault alone (a bad name, a field of the wrong
// type or size) whose request_id can be read does not fail the message: it
// is listed there (cleared first), and its fields other than request_id are
// unspecified. Without it, such a call fails the whole message.
StatusOr<std::vector<RequestHeader>> DecodeRequests(std::string_view header,
                                                    std::vector<uint64_t>* payload_sizes = nullptr,
                                                    CallErrors* call_errors = nullptr);
StatusOr<std::vector<ReplyHeader>> DecodeReplies(std::string_view header,
                                                 std::vector<uint64_t>* payload_sizes = nullptr);
StatusOr<uint64_t> DecodeStatusRequest(std::string_view header);
StatusOr<ReadyHeader> DecodeReady(std::string_view header);
// `sizes` (if given) gets the handler batches' sizes: one element when the
// header has none.
StatusOr<std::vector<BatchItem>> DecodeBatch(std::string_view header,
                                             std::vector<uint32_t>* sizes = nullptr,
                                             std::vector<uint64_t>* payload_sizes = nullptr);
StatusOr<std::vector<ResultItem>> DecodeResults(std::string_view header,
                                                std::vector<uint64_t>* payload_sizes = nullptr);
StatusOr<Snapshot> DecodeSnapshot(std::string_view header);  // SNAPSHOT or UPDATE
StatusOr<uint64_t> DecodeControllerHeartbeat(std::string_view header);
// The carried error; its code is never OK.
struct ErrorHeader {
  StatusCode code = StatusCode::kInternal;
  std::string message;
};
StatusOr<ErrorHeader> DecodeError(std::string_view header);
// Any admin command (IsAdminCommand).
StatusOr<AdminRequest> DecodeAdminRequest(std::string_view header);
StatusOr<AdminReply> DecodeAdminReply(std::string_view header);

// Best effort for error replies: the request_id of a REQUEST or STATUS header
// that is otherwise malformed or too large, if its first bytes give one.
bool PeekRequestId(std::string_view header, uint64_t* request_id);

// The command of a header from its first bytes only, without decoding it;
// nullopt if they are not a header's. For dispatch; the decoder checks the
// rest.
std::optional<Command> PeekCommandFast(std::string_view header);

}  // namespace zserve::schemas

#endif  // ZSERVE_SCHEMAS_CODEC_H_
