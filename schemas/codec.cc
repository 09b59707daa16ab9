#include "schemas/codec.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <msgpack.hpp>
#include <type_traits>

#include "common/liveness.h"
#include "schemas/fast_decode.h"
#include "schemas/msgpack_cursor.h"

namespace zserve::schemas {
namespace {

// The packer writes straight into the header's string: no buffer to copy
// from afterwards.
struct StringSink {
  std::string* out;
  void write(const char* bytes, size_t n) { out->append(bytes, n); }
};
using Packer = msgpack::packer<StringSink>;

void PackPrefix(Packer& p, Command command, uint32_t extra) {
  p.pack_array(2 + extra);
  p.pack(kProtocolVersion);
  p.pack(static_cast<uint64_t>(command));
}

std::string ShortName(std::string_view field) { return std::string(field); }

// Reads typed elements of one MessagePack array, turning every mismatch into
// a BAD_REQUEST that names the field.
class ArrayReader {
 public:
  ArrayReader(const msgpack::object& array, Command command) : a_(array), command_(command) {}

  Status Need(uint32_t count) const {
    if (a_.via.array.size < count) {
      return BadRequest(std::string(CommandName(command_)) + " header has " +
                        std::to_string(a_.via.array.size) + " elements, needs " +
                        std::to_string(count));
    }
    return Status::Ok();
  }

  const msgpack::object& At(uint32_t i) const { return a_.via.array.ptr[i]; }

  Status Uint(uint32_t i, std::string_view field, uint64_t max, uint64_t* out) const {
    return ReadUint(At(i), field, max, out);
  }

  Status Int(uint32_t i, std::string_view field, int64_t min, int64_t max, int64_t* out) const {
    const msgpack::object& o = At(i);
    int64_t v = 0;
    if (o.type == msgpack::type::POSITIVE_INTEGER) {
      if (o.via.u64 > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Range(field);
      }
      v = static_cast<int64_t>(o.via.u64);
    } else if (o.type == msgpack::type::NEGATIVE_INTEGER) {
      v = o.via.i64;
    } else {
      return Type(field, "an integer");
    }
    if (v < min || v > max) return Range(field);
    *out = v;
    return Status::Ok();
  }

  Status Str(uint32_t i, std::string_view field, size_t max, std::string* out) const {
    return ReadStr(At(i), field, max, out);
  }

  Status Code(uint32_t i, std::string_view field, StatusCode* out) const {
    uint64_t v = 0;
    if (Status s = Uint(i, field, 255, &v); !s.ok()) return s;
    if (!StatusCodeFromInt(static_cast<int64_t>(v), out)) {
      return BadRequest("field '" + ShortName(field) +
                        "' is not a status code: " + std::to_string(v));
    }
    return Status::Ok();
  }

  static Status ReadUint(const msgpack::object& o, std::string_view field, uint64_t max,
                         uint64_t* out) {
    if (o.type != msgpack::type::POSITIVE_INTEGER) return Type(field, "an unsigned integer");
    if (o.via.u64 > max) return Range(field);
    *out = o.via.u64;
    return Status::Ok();
  }

  static Status ReadStr(const msgpack::object& o, std::string_view field, size_t max,
                        std::string* out) {
    if (o.type != msgpack::type::STR) return Type(field, "a string");
    if (o.via.str.size > max) {
      return BadRequest("field '" + ShortName(field) + "' is " + std::to_string(o.via.str.size) +
                        " bytes, more than " + std::to_string(max));
    }
    out->assign(o.via.str.ptr, o.via.str.size);
    return Status::Ok();
  }

  static Status Type(std::string_view field, std::string_view want) {
    return BadRequest("field '" + ShortName(field) + "' must be " + std::string(want));
  }
  static Status Range(std::string_view field) {
    return BadRequest("field '" + ShortName(field) + "' is out of range");
  }

 private:
  const msgpack::object& a_;
  Command command_;
};

bool KnownCommand(uint64_t c) {
  switch (static_cast<Command>(c)) {
    case Command::kRequest:
    case Command::kReply:
    case Command::kStatus:
    case Command::kRequests:
    case Command::kReplies:
    case Command::kReady:
    case Command::kBatch:
    case Command::kResults:
    case Command::kDisconnect:
    case Command::kHeartbeat:
    case Command::kSnapshotRequest:
    case Command::kSnapshot:
    case Command::kUpdate:
    case Command::kControllerHeartbeat:
    case Command::kError:
    case Command::kCreateBackend:
    case Command::kUpdateBackend:
    case Command::kDeleteBackend:
    case Command::kCreateEndpoint:
    case Command::kDeleteEndpoint:
    case Command::kSetTraffic:
    case Command::kSetShadow:
    case Command::kGetState:
    case Command::kApply:
    case Command::kAdminReply:
    case Command::kUpdateEndpoint:
      return c <= 255;
  }
  return false;
}

// Parses a header into `handle` and checks version and command. Never throws.
Status Parse(std::string_view header, size_t max_bytes, msgpack::object_handle* handle,
             Command* command) {
  if (header.empty()) return BadRequest("empty header frame");
  if (header.size() > max_bytes) {
    return BadRequest("header is " + std::to_string(header.size()) + " bytes, more than " +
                      std::to_string(max_bytes));
  }
  try {
    // Bounds keep a few hostile bytes from making the parser allocate much.
    // The parser allocates a container's elements when it reads its count,
    // so no count may exceed what the bytes can hold (an element takes at
    // least one byte, a map entry two): "\xdf\x00\x01\x86\xa0" would
    // otherwise cost megabytes per nesting level (found by fuzz_codec).
    const size_t max_items = max_bytes > kMaxHeaderBytes ? kMaxStateEntries : kMaxBatchItems + 8;
    const size_t max_array = std::min(header.size(), max_items);
    const size_t max_map = std::min<size_t>(header.size() / 2, 100'000);
    const msgpack::unpack_limit limits(/*array=*/max_array, /*map=*/max_map,
                                       /*str=*/max_bytes, /*bin=*/max_bytes, /*ext=*/0,
                                       /*depth=*/8);
    size_t offset = 0;
    *handle = msgpack::unpack(header.data(), header.size(), offset, nullptr, nullptr, limits);
    if (offset != header.size()) return BadRequest("trailing bytes after the header");
  } catch (const std::exception& e) {
    return BadRequest(std::string("header is not valid MessagePack: ") + e.what());
  }
  const msgpack::object& o = handle->get();
  if (o.type != msgpack::type::ARRAY) return BadRequest("header is not a MessagePack array");
  if (o.via.array.size < 2) return BadRequest("header has fewer than 2 elements");
  uint64_t version = 0, cmd = 0;
  if (Status s = ArrayReader::ReadUint(o.via.array.ptr[0], "version", UINT64_MAX, &version);
      !s.ok()) {
    return s;
  }
  if (version != kProtocolVersion) {
    return BadRequest("unsupported protocol version " + std::to_string(version) +
                      " (this peer speaks " + std::to_string(kProtocolVersion) + ")");
  }
  if (Status s = ArrayReader::ReadUint(o.via.array.ptr[1], "command", UINT64_MAX, &cmd); !s.ok()) {
    return s;
  }
  if (!KnownCommand(cmd)) return BadRequest("unknown command " + std::to_string(cmd));
  *command = static_cast<Command>(cmd);
  return Status::Ok();
}

// Headers that carry a whole state may be large, and so may those that
// carry a backend's user_config (up to kMaxUserConfigBytes by itself).
size_t MaxHeaderBytes(Command command) {
  switch (command) {
    case Command::kSnapshot:
    case Command::kUpdate:
    case Command::kApply:
    case Command::kAdminReply:
    case Command::kCreateBackend:
    case Command::kUpdateBackend:
      return kMaxStateHeaderBytes;
    default:
      return kMaxHeaderBytes;
  }
}

// Parse + check that the header is `want` (or `also`) with `count` elements.
Status Open(std::string_view header, Command want, uint32_t count, msgpack::object_handle* handle,
            Command also = Command::kError) {
  Command got;
  if (Status s = Parse(header, MaxHeaderBytes(want), handle, &got); !s.ok()) return s;
  if (got != want && !(also != Command::kError && got == also)) {
    return BadRequest("expected " + std::string(CommandName(want)) + ", got " +
                      std::string(CommandName(got)));
  }
  return ArrayReader(handle->get(), got).Need(count);
}

void PackString(Packer& p, std::string_view s) {
  p.pack_str(static_cast<uint32_t>(s.size()));
  p.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

// Messages past the limit are cut, so that the receiver never refuses them.
void PackCodeAndMessage(Packer& p, StatusCode code, std::string_view message) {
  p.pack(static_cast<uint8_t>(code));
  PackString(p, message.substr(0, kMaxMessageBytes));
}

// A header: the version and command prefix, `extra` more elements from `body`.
template <typename Fn>
std::string Build(Command command, uint32_t extra, size_t reserve, Fn&& body) {
  std::string out;
  out.reserve(reserve);
  StringSink sink{&out};
  Packer p(sink);
  PackPrefix(p, command, extra);
  body(p);
  return out;
}

// A float64, as PROTOCOL.md says. Not pack_double: it writes whole values as
// integers, and casts 2^64 to uint64_t, which is undefined (fuzz_codec).
void PackFloat64(Packer& p, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  char buf[9] = {static_cast<char>(0xcb)};
  for (int i = 0; i < 8; ++i) buf[1 + i] = static_cast<char>(bits >> (56 - 8 * i));
  p.pack_bin_body(buf, sizeof buf);  // appends the bytes as they are
}

void PackWeights(Packer& p, const std::map<std::string, double>& m) {
  p.pack_map(static_cast<uint32_t>(m.size()));
  for (const auto& [k, v] : m) {
    PackString(p, k);
    PackFloat64(p, v);
  }
}

void PackStrings(Packer& p, const std::vector<std::string>& v) {
  p.pack_array(static_cast<uint32_t>(v.size()));
  for (const std::string& s : v) PackString(p, s);
}

template <typename T>
void PackField(Packer& p, std::string_view key, const std::optional<T>& value) {
  if (!value) return;
  PackString(p, key);
  if constexpr (std::is_same_v<T, std::string>) {
    PackString(p, *value);
  } else if constexpr (std::is_same_v<T, uint32_t>) {
    p.pack(*value);
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    PackStrings(p, *value);
  } else {
    PackWeights(p, *value);
  }
}

// A backend of a state (with its name) or backend_fields (without).
void PackBackend(Packer& p, const std::string* name, const BackendFields& f) {
  uint32_t n = (name != nullptr) + f.handler.has_value() + f.num_replicas.has_value() +
               f.max_batch_size.has_value() + f.batch_wait_timeout_ms.has_value() +
               f.max_concurrent_queries.has_value() + f.max_queued_requests.has_value() +
               f.retry_on_replica_failure.has_value() + f.user_config.has_value();
  p.pack_map(n);
  if (name != nullptr) PackField(p, "name", std::optional<std::string>(*name));
  PackField(p, "handler", f.handler);
  PackField(p, "num_replicas", f.num_replicas);
  PackField(p, "max_batch_size", f.max_batch_size);
  PackField(p, "batch_wait_timeout_ms", f.batch_wait_timeout_ms);
  PackField(p, "max_concurrent_queries", f.max_concurrent_queries);
  PackField(p, "max_queued_requests", f.max_queued_requests);
  PackField(p, "retry_on_replica_failure", f.retry_on_replica_failure);
  PackField(p, "user_config", f.user_config);
}

void PackEndpointFields(Packer& p, const EndpointFields& f) {
  p.pack_map(f.traffic.has_value() + f.shadow.has_value() + f.timeout_ms.has_value() +
             f.route.has_value() + f.methods.has_value());
  PackField(p, "traffic", f.traffic);
  PackField(p, "shadow", f.shadow);
  PackField(p, "timeout_ms", f.timeout_ms);
  PackField(p, "route", f.route);
  PackField(p, "methods", f.methods);
}

void PackState(Packer& p, const ConfigState& state) {
  p.pack_map(2);
  PackString(p, "backends");
  p.pack_array(static_cast<uint32_t>(state.backends.size()));
  for (const auto& [name, b] : state.backends) PackBackend(p, &b.name, AllFields(b));
  PackString(p, "endpoints");
  p.pack_array(static_cast<uint32_t>(state.endpoints.size()));
  for (const auto& [name, e] : state.endpoints) {
    p.pack_map(6);
    PackString(p, "name");
    PackString(p, e.name);
    PackString(p, "traffic");
    PackWeights(p, e.traffic);
    PackString(p, "shadow");
    PackWeights(p, e.shadow);
    PackString(p, "timeout_ms");
    p.pack(e.timeout_ms);
    PackString(p, "route");
    PackString(p, e.route);
    PackString(p, "methods");
    PackStrings(p, e.methods);
  }
}

Status ReadU32(const msgpack::object& o, std::string_view field, uint32_t* out) {
  uint64_t v = 0;
  if (Status s = ArrayReader::ReadUint(o, field, UINT32_MAX, &v); !s.ok()) return s;
  *out = static_cast<uint32_t>(v);
  return Status::Ok();
}

Status ReadWeights(const msgpack::object& o, std::string_view field,
                   std::map<std::string, double>* out) {
  if (o.type != msgpack::type::MAP) return ArrayReader::Type(field, "a map");
  for (uint32_t i = 0; i < o.via.map.size; ++i) {
    std::string key;
    if (Status s = ArrayReader::ReadStr(o.via.map.ptr[i].key, field, kMaxNameBytes, &key);
        !s.ok()) {
      return s;
    }
    const msgpack::object& v = o.via.map.ptr[i].val;
    double d = 0;
    if (v.type == msgpack::type::FLOAT64 || v.type == msgpack::type::FLOAT32) {
      d = v.via.f64;
    } else if (v.type == msgpack::type::POSITIVE_INTEGER) {
      d = static_cast<double>(v.via.u64);
    } else if (v.type == msgpack::type::NEGATIVE_INTEGER) {
      // As an older encoder (msgpack-c's pack_double) writes -1.0.
      d = static_cast<double>(v.via.i64);
    } else {
      return ArrayReader::Type(field, "a map of numbers");
    }
    (*out)[key] = d;
  }
  return Status::Ok();
}

// Visits the string keys of a map, calling fn(key, value) -> Status.
template <typename Fn>
Status ForEachField(const msgpack::object& o, std::string_view what, Fn fn) {
  if (o.type != msgpack::type::MAP) return ArrayReader::Type(what, "a map");
  for (uint32_t i = 0; i < o.via.map.size; ++i) {
    const msgpack::object& k = o.via.map.ptr[i].key;
    if (k.type != msgpack::type::STR) return ArrayReader::Type(what, "a map with string keys");
    if (Status s = fn(std::string_view(k.via.str.ptr, k.via.str.size), o.via.map.ptr[i].val);
        !s.ok()) {
      return s;
    }
  }
  return Status::Ok();
}

// An array of at most 16 short strings (HTTP methods).
Status ReadStrings(const msgpack::object& o, std::string_view field,
                   std::vector<std::string>* out) {
  if (o.type != msgpack::type::ARRAY) return ArrayReader::Type(field, "an array of strings");
  if (o.via.array.size > 16) return BadRequest("field '" + std::string(field) + "' is too long");
  out->clear();
  for (uint32_t i = 0; i < o.via.array.size; ++i) {
    std::string item;
    if (Status s = ArrayReader::ReadStr(o.via.array.ptr[i], field, kMaxNameBytes, &item); !s.ok()) {
      return s;
    }
    out->push_back(std::move(item));
  }
  return Status::Ok();
}

template <typename T>
Status ReadOptional(const msgpack::object& v, std::string_view key, std::optional<T>* out) {
  T value{};
  Status s;
  if constexpr (std::is_same_v<T, std::string>) {
    size_t max = key == "user_config" ? kMaxStateHeaderBytes
                 : key == "route"     ? kMaxRouteBytes
                                      : kMaxNameBytes;
    s = ArrayReader::ReadStr(v, key, max, &value);
  } else if constexpr (std::is_same_v<T, uint32_t>) {
    s = ReadU32(v, key, &value);
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    s = ReadStrings(v, key, &value);
  } else {
    s = ReadWeights(v, key, &value);
  }
  if (s.ok()) *out = std::move(value);
  return s;
}

// backend_fields; an unknown key is refused when `strict`, else ignored.
Status ReadBackendFields(const msgpack::object& o, bool strict, BackendFields* f,
                         std::string* name = nullptr) {
  return ForEachField(o, "backend", [=](std::string_view key, const msgpack::object& v) {
    if (key == "name" && name != nullptr) return ArrayReader::ReadStr(v, key, kMaxNameBytes, name);
    if (key == "handler") return ReadOptional(v, key, &f->handler);
    if (key == "num_replicas") return ReadOptional(v, key, &f->num_replicas);
    if (key == "max_batch_size") return ReadOptional(v, key, &f->max_batch_size);
    if (key == "batch_wait_timeout_ms") return ReadOptional(v, key, &f->batch_wait_timeout_ms);
    if (key == "max_concurrent_queries") return ReadOptional(v, key, &f->max_concurrent_queries);
    if (key == "max_queued_requests") return ReadOptional(v, key, &f->max_queued_requests);
    if (key == "retry_on_replica_failure") {
      return ReadOptional(v, key, &f->retry_on_replica_failure);
    }
    if (key == "user_config") return ReadOptional(v, key, &f->user_config);
    if (strict) return BadRequest("unknown backend field '" + std::string(key) + "'");
    return Status::Ok();
  });
}

Status ReadBackend(const msgpack::object& o, BackendConfig* b) {
  BackendFields f;
  if (Status s = ReadBackendFields(o, /*strict=*/false, &f, &b->name); !s.ok()) return s;
  if (!f.handler) b->handler = b->name;  // its default (docs/deployment.md)
  MergeFields(f, b);
  return Status::Ok();
}

Status ReadEndpointFields(const msgpack::object& o, bool strict, EndpointFields* f,
                          std::string* name = nullptr) {
  return ForEachField(o, "endpoint", [=](std::string_view key, const msgpack::object& v) {
    if (key == "name" && name != nullptr) return ArrayReader::ReadStr(v, key, kMaxNameBytes, name);
    if (key == "traffic") return ReadOptional(v, key, &f->traffic);
    if (key == "shadow") return ReadOptional(v, key, &f->shadow);
    if (key == "timeout_ms") return ReadOptional(v, key, &f->timeout_ms);
    if (key == "route") return ReadOptional(v, key, &f->route);
    if (key == "methods") return ReadOptional(v, key, &f->methods);
    if (strict) return BadRequest("unknown endpoint field '" + std::string(key) + "'");
    return Status::Ok();
  });
}

Status ReadEndpoint(const msgpack::object& o, EndpointConfig* e) {
  EndpointFields f;
  if (Status s = ReadEndpointFields(o, /*strict=*/false, &f, &e->name); !s.ok()) return s;
  MergeFields(f, e);
  return Status::Ok();
}

Status ReadState(const msgpack::object& o, ConfigState* state) {
  return ForEachField(o, "state", [state](std::string_view key, const msgpack::object& v) {
    if (key == "backends" || key == "endpoints") {
      if (v.type != msgpack::type::ARRAY) return ArrayReader::Type(key, "an array");
      for (uint32_t i = 0; i < v.via.array.size; ++i) {
        if (key == "backends") {
          BackendConfig b;
          if (Status s = ReadBackend(v.via.array.ptr[i], &b); !s.ok()) return s;
          std::string name = b.name;
          if (!state->backends.emplace(name, std::move(b)).second) {
            return BadRequest("the state names backend '" + name + "' twice");
          }
        } else {
          EndpointConfig e;
          if (Status s = ReadEndpoint(v.via.array.ptr[i], &e); !s.ok()) return s;
          std::string name = e.name;
          if (!state->endpoints.emplace(name, std::move(e)).second) {
            return BadRequest("the state names endpoint '" + name + "' twice");
          }
        }
      }
    }
    return Status::Ok();
  });
}

// Headers of one uint64 after the prefix: STATUS, CONTROLLER_HEARTBEAT.
StatusOr<uint64_t> DecodeOneUint(std::string_view header, Command command, std::string_view field) {
  msgpack::object_handle handle;
  if (Status s = Open(header, command, 3, &handle); !s.ok()) return s;
  uint64_t value = 0;
  if (Status s = ArrayReader(handle.get(), command).Uint(2, field, UINT64_MAX, &value); !s.ok()) {
    return s;
  }
  return value;
}

}  // namespace

std::string_view CommandName(Command command) {
  switch (command) {
    case Command::kRequest:
      return "REQUEST";
    case Command::kReply:
      return "REPLY";
    case Command::kStatus:
      return "STATUS";
    case Command::kRequests:
      return "REQUESTS";
    case Command::kReplies:
      return "REPLIES";
    case Command::kReady:
      return "READY";
    case Command::kBatch:
      return "BATCH";
    case Command::kResults:
      return "RESULTS";
    case Command::kDisconnect:
      return "DISCONNECT";
    case Command::kHeartbeat:
      return "HEARTBEAT";
    case Command::kSnapshotRequest:
      return "SNAPSHOT_REQUEST";
    case Command::kSnapshot:
      return "SNAPSHOT";
    case Command::kUpdate:
      return "UPDATE";
    case Command::kControllerHeartbeat:
      return "CONTROLLER_HEARTBEAT";
    case Command::kError:
      return "ERROR";
    case Command::kCreateBackend:
      return "CREATE_BACKEND";
    case Command::kUpdateBackend:
      return "UPDATE_BACKEND";
    case Command::kDeleteBackend:
      return "DELETE_BACKEND";
    case Command::kCreateEndpoint:
      return "CREATE_ENDPOINT";
    case Command::kDeleteEndpoint:
      return "DELETE_ENDPOINT";
    case Command::kSetTraffic:
      return "SET_TRAFFIC";
    case Command::kSetShadow:
      return "SET_SHADOW";
    case Command::kGetState:
      return "GET_STATE";
    case Command::kApply:
      return "APPLY";
    case Command::kAdminReply:
      return "ADMIN_REPLY";
    case Command::kUpdateEndpoint:
      return "UPDATE_ENDPOINT";
  }
  return "UNKNOWN";
}

StatusOr<Command> PeekCommand(std::string_view header) {
  msgpack::object_handle handle;
  Command command;
  if (Status s = Parse(header, kMaxStateHeaderBytes, &handle, &command); !s.ok()) return s;
  return command;
}

namespace {

// The fields of a REQUEST after its command, also one call of REQUESTS.
void PackRequestFields(Packer& p, const RequestHeader& h) {
  p.pack(h.request_id);
  PackString(p, h.endpoint);
  PackString(p, h.method);
  p.pack(h.timeout_ms);
  PackString(p, h.shard_key);
  p.pack(h.priority);
}

void PackReplyFields(Packer& p, const ReplyHeader& h) {
  p.pack(h.request_id);
  PackCodeAndMessage(p, h.code, h.message);
}

// The optional `payload_sizes` element: present only when not empty.
void PackPayloadSizes(Packer& p, std::span<const uint64_t> sizes) {
  if (sizes.empty()) return;
  p.pack_array(static_cast<uint32_t>(sizes.size()));
  for (uint64_t n : sizes) p.pack(n);
}

}  // namespace

std::string EncodeRequest(const RequestHeader& h) {
  return Build(Command::kRequest, 6, 64 + h.endpoint.size() + h.method.size() + h.shard_key.size(),
               [&h](Packer& p) { PackRequestFields(p, h); });
}

std::string EncodeReply(const ReplyHeader& h) {
  return Build(Command::kReply, 3, 32 + h.message.size(),
               [&h](Packer& p) { PackReplyFields(p, h); });
}

std::string EncodeRequests(const std::vector<RequestHeader>& calls,
                           std::span<const uint64_t> payload_sizes) {
  return Build(Command::kRequests, payload_sizes.empty() ? 1 : 2, 16 + 56 * calls.size(),
               [&calls, payload_sizes](Packer& p) {
                 p.pack_array(static_cast<uint32_t>(calls.size()));
                 for (const RequestHeader& h : calls) {
                   p.pack_array(6);
                   PackRequestFields(p, h);
                 }
                 PackPayloadSizes(p, payload_sizes);
               });
}

std::string EncodeReplies(const std::vector<ReplyHeader>& replies,
                          std::span<const uint64_t> payload_sizes) {
  return Build(Command::kReplies, payload_sizes.empty() ? 1 : 2, 16 + 24 * replies.size(),
               [&replies, payload_sizes](Packer& p) {
                 p.pack_array(static_cast<uint32_t>(replies.size()));
                 for (const ReplyHeader& h : replies) {
                   p.pack_array(3);
                   PackReplyFields(p, h);
                 }
                 PackPayloadSizes(p, payload_sizes);
               });
}

std::string EncodeStatusRequest(uint64_t request_id) {
  return Build(Command::kStatus, 1, 16, [request_id](Packer& p) { p.pack(request_id); });
}

std::string EncodeReady(const ReadyHeader& h) {
  return Build(Command::kReady,
               h.heartbeat_ms != 0 ? 5
               : h.packed          ? 4
                                   : 3,
               64, [&h](Packer& p) {
                 PackString(p, h.backend);
                 PackString(p, h.replica_tag);
                 p.pack(h.capacity);
                 if (h.packed || h.heartbeat_ms != 0) p.pack(h.packed);
                 if (h.heartbeat_ms != 0) p.pack(h.heartbeat_ms);
               });
}

std::string EncodeBatch(const std::vector<BatchItem>& items, std::span<const uint32_t> sizes,
                        std::span<const uint64_t> payload_sizes) {
  // `sizes` is written when it splits the items, or to make room for
  // `payload_sizes` after it.
  const uint32_t whole = static_cast<uint32_t>(items.size());
  if (sizes.empty() && !payload_sizes.empty()) sizes = std::span(&whole, 1);
  bool split = sizes.size() > 1 || !payload_sizes.empty();
  return Build(Command::kBatch, payload_sizes.empty() ? (split ? 2 : 1) : 3,
               16 + 40 * items.size() + 5 * sizes.size(),
               [&items, &sizes, split, payload_sizes](Packer& p) {
                 p.pack_array(static_cast<uint32_t>(items.size()));
                 for (const BatchItem& item : items) {
                   p.pack_array(3);
                   p.pack(item.token);
                   PackString(p, item.method);
                   p.pack(item.timeout_ms);
                 }
                 if (!split) return;
                 p.pack_array(static_cast<uint32_t>(sizes.size()));
                 for (uint32_t n : sizes) p.pack(n);
                 PackPayloadSizes(p, payload_sizes);
               });
}

std::string EncodeResults(const std::vector<ResultItem>& items,
                          std::span<const uint64_t> payload_sizes) {
  return Build(Command::kResults, payload_sizes.empty() ? 1 : 2, 16 + 24 * items.size(),
               [&items, payload_sizes](Packer& p) {
                 p.pack_array(static_cast<uint32_t>(items.size()));
                 for (const ResultItem& item : items) {
                   p.pack_array(3);
                   p.pack(item.token);
                   PackCodeAndMessage(p, item.code, item.message);
                 }
                 PackPayloadSizes(p, payload_sizes);
               });
}

std::string EncodeSimple(Command command) {
  return Build(command, 0, 8, [](Packer&) {});
}

std::string EncodeSnapshot(Command command, const Snapshot& s) {
  return Build(command, 2, 1024, [&s](Packer& p) {
    p.pack(s.version);
    PackState(p, s.state);
  });
}

size_t EncodedStateBytes(const ConfigState& state) {
  std::string out;
  StringSink sink{&out};
  Packer p(sink);
  PackState(p, state);
  return out.size();
}

std::string EncodeControllerHeartbeat(uint64_t version) {
  return Build(Command::kControllerHeartbeat, 1, 16, [version](Packer& p) { p.pack(version); });
}

std::string EncodeError(const Status& status) {
  return Build(Command::kError, 2, 32 + status.message().size(),
               [&status](Packer& p) { PackCodeAndMessage(p, status.code(), status.message()); });
}

namespace {

// The request fields from element `at` on: REQUEST's from 2, a REQUESTS
// call's from 0.
Status ReadRequestFields(const ArrayReader& r, uint32_t at, RequestHeader* h) {
  uint64_t timeout = 0;
  int64_t priority = 0;
  Status s = r.Uint(at, "request_id", UINT64_MAX, &h->request_id);
  if (s.ok()) s = r.Str(at + 1, "endpoint", kMaxNameBytes, &h->endpoint);
  if (s.ok()) s = r.Str(at + 2, "method", kMaxNameBytes, &h->method);
  if (s.ok()) s = r.Uint(at + 3, "timeout_ms", UINT32_MAX, &timeout);
  if (s.ok()) s = r.Str(at + 4, "shard_key", kMaxNameBytes, &h->shard_key);
  if (s.ok()) s = r.Int(at + 5, "priority", INT32_MIN, INT32_MAX, &priority);
  if (!s.ok()) return s;
  if (h->endpoint.empty()) return BadRequest("field 'endpoint' is empty");
  if (h->method.empty()) return BadRequest("field 'method' is empty");
  if (Status v = ValidateName("endpoint", h->endpoint); !v.ok()) return v;
  if (Status v = ValidateMethod(h->method); !v.ok()) return v;
  h->timeout_ms = static_cast<uint32_t>(timeout);
  h->priority = static_cast<int32_t>(priority);
  return Status::Ok();
}

Status ReadReplyFields(const ArrayReader& r, uint32_t at, ReplyHeader* h) {
  Status s = r.Uint(at, "request_id", UINT64_MAX, &h->request_id);
  if (s.ok()) s = r.Code(at + 1, "status", &h->code);
  if (s.ok()) s = r.Str(at + 2, "message", kMaxMessageBytes, &h->message);
  return s;
}

// The optional `payload_sizes` at element `at` of `top`: absent, or one
// size per item (PROTOCOL.md 3.1). `out` (if given) gets them, or nothing
// when absent.
Status ReadPayloadSizes(const msgpack::object& top, uint32_t at, size_t items,
                        std::vector<uint64_t>* out) {
  if (out != nullptr) out->clear();
  if (top.via.array.size <= at) return Status::Ok();
  const msgpack::object& a = top.via.array.ptr[at];
  if (a.type != msgpack::type::ARRAY) return ArrayReader::Type("payload_sizes", "an array");
  if (a.via.array.size != items) {
    return BadRequest("field 'payload_sizes' has " + std::to_string(a.via.array.size) +
                      " sizes for " + std::to_string(items) + " items");
  }
  if (out != nullptr) out->resize(items);
  for (uint32_t i = 0; i < a.via.array.size; ++i) {
    uint64_t n = 0;
    if (Status s = ArrayReader::ReadUint(a.via.array.ptr[i], "payload_sizes", UINT64_MAX, &n);
        !s.ok()) {
      return s;
    }
    if (out != nullptr) (*out)[i] = n;
  }
  return Status::Ok();
}

// The calls of REQUESTS or REPLIES: each an array of `fields` elements.
template <typename T, typename Read>
StatusOr<std::vector<T>> DecodeCalls(std::string_view header, Command command, uint32_t fields,
                                     Read read, std::vector<uint64_t>* payload_sizes) {
  msgpack::object_handle handle;
  if (Status s = Open(header, command, 3, &handle); !s.ok()) return s;
  const msgpack::object& calls = handle.get().via.array.ptr[2];
  if (calls.type != msgpack::type::ARRAY) return ArrayReader::Type("calls", "an array");
  if (calls.via.array.size == 0) return BadRequest("no calls");
  if (calls.via.array.size > kMaxCallsPerMessage) {
    return BadRequest(std::to_string(calls.via.array.size) + " calls in one message; at most " +
                      std::to_string(kMaxCallsPerMessage));
  }
  std::vector<T> out(calls.via.array.size);
  for (uint32_t i = 0; i < calls.via.array.size; ++i) {
    const msgpack::object& call = calls.via.array.ptr[i];
    if (call.type != msgpack::type::ARRAY) return ArrayReader::Type("call", "an array");
    ArrayReader r(call, command);
    if (Status s = r.Need(fields); !s.ok()) return s;
    if (Status s = read(r, i, &out[i]); !s.ok()) return s;
  }
  if (Status s = ReadPayloadSizes(handle.get(), 3, out.size(), payload_sizes); !s.ok()) return s;
  return out;
}

}  // namespace

StatusOr<RequestHeader> full::DecodeRequest(std::string_view header) {
  msgpack::object_handle handle;
  if (Status s = Open(header, Command::kRequest, 8, &handle); !s.ok()) return s;
  RequestHeader h;
  if (Status s = ReadRequestFields(ArrayReader(handle.get(), Command::kRequest), 2, &h); !s.ok()) {
    return s;
  }
  return h;
}

StatusOr<ReplyHeader> full::DecodeReply(std::string_view header) {
  msgpack::object_handle handle;
  if (Status s = Open(header, Command::kReply, 5, &handle); !s.ok()) return s;
  ReplyHeader h;
  if (Status s = ReadReplyFields(ArrayReader(handle.get(), Command::kReply), 2, &h); !s.ok()) {
    return s;
  }
  return h;
}

StatusOr<std::vector<RequestHeader>> full::DecodeRequests(std::string_view header,
                                                          std::vector<uint64_t>* payload_sizes,
                                                          CallErrors* call_errors) {
  if (call_errors != nullptr) call_errors->clear();
  return DecodeCalls<RequestHeader>(
      header, Command::kRequests, 6,
      [call_errors](const ArrayReader& r, size_t i, RequestHeader* h) {
        Status s = ReadRequestFields(r, 0, h);
        if (s.ok() || call_errors == nullptr ||
            !r.Uint(0, "request_id", UINT64_MAX, &h->request_id).ok()) {
          return s;
        }
        call_errors->emplace_back(i, std::move(s));  // answerable alone
        return Status::Ok();
      },
      payload_sizes);
}

StatusOr<std::vector<ReplyHeader>> full::DecodeReplies(std::string_view header,
                                                       std::vector<uint64_t>* payload_sizes) {
  return DecodeCalls<ReplyHeader>(
      header, Command::kReplies, 3,
      [](const ArrayReader& r, size_t, ReplyHeader* h) { return ReadReplyFields(r, 0, h); },
      payload_sizes);
}

StatusOr<uint64_t> DecodeStatusRequest(std::string_view header) {
  return DecodeOneUint(header, Command::kStatus, "request_id");
}

StatusOr<ReadyHeader> DecodeReady(std::string_view header) {
  msgpack::object_handle handle;
  if (Status s = Open(header, Command::kReady, 5, &handle); !s.ok()) return s;
  ArrayReader r(handle.get(), Command::kReady);
  ReadyHeader h;
  uint64_t capacity = 0;
  Status s = r.Str(2, "backend", kMaxNameBytes, &h.backend);
  if (s.ok()) s = r.Str(3, "replica_tag", kMaxNameBytes, &h.replica_tag);
  if (s.ok()) s = r.Uint(4, "capacity", UINT32_MAX, &capacity);
  if (!s.ok()) return s;
  if (handle.get().via.array.size > 5) {
    const msgpack::object& packed = handle.get().via.array.ptr[5];
    if (packed.type != msgpack::type::BOOLEAN) return ArrayReader::Type("packed", "a boolean");
    h.packed = packed.via.boolean;
  }
  if (handle.get().via.array.size > 6) {
    uint64_t ms = 0;
    if (Status v = r.Uint(6, "heartbeat_ms", UINT32_MAX, &ms); !v.ok()) return v;
    if (ms < static_cast<uint64_t>(kMinHeartbeatInterval.count()) ||
        ms > static_cast<uint64_t>(kMaxHeartbeatInterval.count())) {
      return BadRequest("heartbeat_ms must be " + std::to_string(kMinHeartbeatInterval.count()) +
                        ".." + std::to_string(kMaxHeartbeatInterval.count()) + ", got " +
                        std::to_string(ms));
    }
    h.heartbeat_ms = static_cast<uint32_t>(ms);
  }
  if (Status v = ValidateName("backend", h.backend); !v.ok()) return v;
  h.capacity = static_cast<uint32_t>(capacity);
  return h;
}

namespace {

// The list of [token, x, y] triples of BATCH and RESULTS.
Status OpenItems(std::string_view header, Command command, msgpack::object_handle* handle,
                 const msgpack::object** list) {
  if (Status s = Open(header, command, 3, handle); !s.ok()) return s;
  const msgpack::object& items = handle->get().via.array.ptr[2];
  if (items.type != msgpack::type::ARRAY) return ArrayReader::Type("items", "an array");
  if (items.via.array.size == 0) return BadRequest("no items");
  if (items.via.array.size > kMaxBatchItems) return BadRequest("too many items");
  for (uint32_t i = 0; i < items.via.array.size; ++i) {
    const msgpack::object& item = items.via.array.ptr[i];
    if (item.type != msgpack::type::ARRAY || item.via.array.size < 3) {
      return ArrayReader::Type("item", "an array of 3 elements");
    }
  }
  *list = &items;
  return Status::Ok();
}

}  // namespace

StatusOr<std::vector<BatchItem>> full::DecodeBatch(std::string_view header,
                                                   std::vector<uint32_t>* sizes,
                                                   std::vector<uint64_t>* payload_sizes) {
  msgpack::object_handle handle;
  const msgpack::object* list;
  if (Status s = OpenItems(header, Command::kBatch, &handle, &list); !s.ok()) return s;
  std::vector<BatchItem> out(list->via.array.size);
  for (uint32_t i = 0; i < list->via.array.size; ++i) {
    ArrayReader r(list->via.array.ptr[i], Command::kBatch);
    uint64_t timeout = 0;
    Status s = r.Uint(0, "token", UINT64_MAX, &out[i].token);
    if (s.ok()) s = r.Str(1, "method", kMaxNameBytes, &out[i].method);
    if (s.ok()) s = ValidateMethod(out[i].method);
    if (s.ok()) s = r.Uint(2, "timeout_ms", UINT32_MAX, &timeout);
    if (!s.ok()) return s;
    out[i].timeout_ms = static_cast<uint32_t>(timeout);
  }
  // Optional: how the items split into handler batches (PROTOCOL.md 4.2).
  std::vector<uint32_t> split;
  const msgpack::object& top = handle.get();
  if (top.via.array.size > 3) {
    const msgpack::object& a = top.via.array.ptr[3];
    if (a.type != msgpack::type::ARRAY || a.via.array.size == 0) {
      return ArrayReader::Type("sizes", "a non-empty array");
    }
    uint64_t total = 0;
    for (uint32_t i = 0; i < a.via.array.size; ++i) {
      uint64_t n = 0;
      if (Status s = ArrayReader::ReadUint(a.via.array.ptr[i], "sizes", kMaxBatchItems, &n);
          !s.ok()) {
        return s;
      }
      if (n == 0) return BadRequest("field 'sizes' holds an empty batch");
      total += n;
      split.push_back(static_cast<uint32_t>(n));
    }
    if (total != out.size()) {
      return BadRequest("field 'sizes' adds up to " + std::to_string(total) + ", not the " +
                        std::to_string(out.size()) + " items");
    }
  } else {
    split.push_back(static_cast<uint32_t>(out.size()));
  }
  if (Status s = ReadPayloadSizes(top, 4, out.size(), payload_sizes); !s.ok()) return s;
  if (sizes != nullptr) *sizes = std::move(split);
  return out;
}

StatusOr<std::vector<ResultItem>> full::DecodeResults(std::string_view header,
                                                      std::vector<uint64_t>* payload_sizes) {
  msgpack::object_handle handle;
  const msgpack::object* list;
  if (Status s = OpenItems(header, Command::kResults, &handle, &list); !s.ok()) return s;
  std::vector<ResultItem> out(list->via.array.size);
  for (uint32_t i = 0; i < list->via.array.size; ++i) {
    ArrayReader r(list->via.array.ptr[i], Command::kResults);
    Status s = r.Uint(0, "token", UINT64_MAX, &out[i].token);
    if (s.ok()) s = r.Code(1, "status", &out[i].code);
    if (s.ok()) s = r.Str(2, "message", kMaxMessageBytes, &out[i].message);
    if (!s.ok()) return s;
  }
  if (Status s = ReadPayloadSizes(handle.get(), 3, out.size(), payload_sizes); !s.ok()) return s;
  return out;
}

// The per-call headers: the fast path (schemas/fast_decode.h), else the
// full decoder.
StatusOr<RequestHeader> DecodeRequest(std::string_view header) {
  RequestHeader h;
  if (FastDecodeRequest(header, &h)) return h;
  return full::DecodeRequest(header);
}

StatusOr<ReplyHeader> DecodeReply(std::string_view header) {
  ReplyHeader h;
  if (FastDecodeReply(header, &h)) return h;
  return full::DecodeReply(header);
}

StatusOr<std::vector<RequestHeader>> DecodeRequests(std::string_view header,
                                                    std::vector<uint64_t>* payload_sizes,
                                                    CallErrors* call_errors) {
  std::vector<RequestHeader> out;
  if (FastDecodeRequests(header, &out, payload_sizes)) {
    if (call_errors != nullptr) call_errors->clear();
    return out;
  }
  return full::DecodeRequests(header, payload_sizes, call_errors);
}

StatusOr<std::vector<ReplyHeader>> DecodeReplies(std::string_view header,
                                                 std::vector<uint64_t>* payload_sizes) {
  std::vector<ReplyHeader> out;
  if (FastDecodeReplies(header, &out, payload_sizes)) return out;
  return full::DecodeReplies(header, payload_sizes);
}

StatusOr<std::vector<BatchItem>> DecodeBatch(std::string_view header, std::vector<uint32_t>* sizes,
                                             std::vector<uint64_t>* payload_sizes) {
  std::vector<BatchItem> out;
  if (FastDecodeBatch(header, &out, sizes, payload_sizes)) return out;
  return full::DecodeBatch(header, sizes, payload_sizes);
}

StatusOr<std::vector<ResultItem>> DecodeResults(std::string_view header,
                                                std::vector<uint64_t>* payload_sizes) {
  std::vector<ResultItem> out;
  if (FastDecodeResults(header, &out, payload_sizes)) return out;
  return full::DecodeResults(header, payload_sizes);
}

StatusOr<Snapshot> DecodeSnapshot(std::string_view header) {
  msgpack::object_handle handle;
  if (Status s = Open(header, Command::kSnapshot, 4, &handle, Command::kUpdate); !s.ok()) {
    return s;
  }
  ArrayReader r(handle.get(), Command::kSnapshot);
  Snapshot snap;
  if (Status s = r.Uint(2, "version", UINT64_MAX, &snap.version); !s.ok()) return s;
  if (Status s = ReadState(r.At(3), &snap.state); !s.ok()) return s;
  return snap;
}

StatusOr<uint64_t> DecodeControllerHeartbeat(std::string_view header) {
  return DecodeOneUint(header, Command::kControllerHeartbeat, "version");
}

StatusOr<ErrorHeader> DecodeError(std::string_view header) {
  msgpack::object_handle handle;
  if (Status s = Open(header, Command::kError, 4, &handle); !s.ok()) return s;
  ArrayReader r(handle.get(), Command::kError);
  ErrorHeader h;
  Status s = r.Code(2, "status", &h.code);
  if (s.ok()) s = r.Str(3, "message", kMaxMessageBytes, &h.message);
  if (!s.ok()) return s;
  if (h.code == StatusCode::kOk) return BadRequest("ERROR carries status OK");
  return h;
}

bool IsAdminCommand(Command command) {
  return (command >= Command::kCreateBackend && command <= Command::kApply) ||
         command == Command::kUpdateEndpoint;
}

namespace {
// Elements after the prefix of each admin command.
uint32_t AdminElements(Command command) {
  switch (command) {
    case Command::kGetState:
      return 1;
    case Command::kDeleteBackend:
    case Command::kDeleteEndpoint:
    case Command::kApply:
      return 2;
    default:
      return 3;
  }
}
}  // namespace

std::string EncodeAdminRequest(const AdminRequest& r) {
  size_t reserve = r.command == Command::kApply ? 4096 : 256;
  return Build(r.command, AdminElements(r.command), reserve, [&r](Packer& p) {
    p.pack(r.request_id);
    switch (r.command) {
      case Command::kGetState:
        return;
      case Command::kApply:
        PackState(p, r.state);
        return;
      default:
        break;
    }
    PackString(p, r.name);
    switch (r.command) {
      case Command::kCreateBackend:
      case Command::kUpdateBackend:
        PackBackend(p, nullptr, r.backend);
        break;
      case Command::kCreateEndpoint:
      case Command::kUpdateEndpoint:
        PackEndpointFields(p, r.endpoint);
        break;
      case Command::kSetTraffic:
      case Command::kSetShadow:
        PackWeights(p, r.weights);
        break;
      default:
        break;
    }
  });
}

StatusOr<AdminRequest> DecodeAdminRequest(std::string_view header) {
  msgpack::object_handle handle;
  AdminRequest r;
  if (Status s = Parse(header, kMaxStateHeaderBytes, &handle, &r.command); !s.ok()) return s;
  if (!IsAdminCommand(r.command)) {
    return BadRequest("expected an admin command, got " + std::string(CommandName(r.command)));
  }
  if (header.size() > MaxHeaderBytes(r.command)) {
    return BadRequest(std::string(CommandName(r.command)) + " header is " +
                      std::to_string(header.size()) + " bytes, more than " +
                      std::to_string(MaxHeaderBytes(r.command)));
  }
  ArrayReader a(handle.get(), r.command);
  Status s = a.Need(2 + AdminElements(r.command));
  if (s.ok()) s = a.Uint(2, "request_id", UINT64_MAX, &r.request_id);
  if (!s.ok()) return s;
  switch (r.command) {
    case Command::kGetState:
      return r;
    case Command::kApply:
      if (s = ReadState(a.At(3), &r.state); !s.ok()) return s;
      return r;
    default:
      break;
  }
  if (s = a.Str(3, "name", kMaxNameBytes, &r.name); !s.ok()) return s;
  switch (r.command) {
    case Command::kCreateBackend:
    case Command::kUpdateBackend:
      s = ReadBackendFields(a.At(4), /*strict=*/true, &r.backend);
      break;
    case Command::kCreateEndpoint:
    case Command::kUpdateEndpoint:
      s = ReadEndpointFields(a.At(4), /*strict=*/true, &r.endpoint);
      break;
    case Command::kSetTraffic:
    case Command::kSetShadow:
      s = ReadWeights(a.At(4), "weights", &r.weights);
      break;
    default:
      break;
  }
  if (!s.ok()) return s;
  return r;
}

std::string EncodeAdminReply(const AdminReply& r) {
  return Build(Command::kAdminReply, 6, 4096, [&r](Packer& p) {
    p.pack(r.request_id);
    PackCodeAndMessage(p, r.code, r.message);
    p.pack(r.version);
    // The lines that fit, each counted with the most its string header
    // takes; past them, one line says how many more there were.
    constexpr size_t kCountLine = 64;  // "... and N more changes"
    size_t lines = 0, bytes = 0;
    while (lines < r.changes.size() && lines < kMaxChangeLines) {
      size_t line = std::min(r.changes[lines].size(), kMaxMessageBytes) + 5;
      if (bytes + line > kMaxChangeBytes - kCountLine) break;
      bytes += line;
      ++lines;
    }
    const bool cut = lines < r.changes.size();
    if (cut && lines == kMaxChangeLines) --lines;
    p.pack_array(static_cast<uint32_t>(lines + cut));
    for (size_t i = 0; i < lines; ++i) PackString(p, r.changes[i].substr(0, kMaxMessageBytes));
    if (cut) PackString(p, "... and " + std::to_string(r.changes.size() - lines) + " more changes");
    PackState(p, r.state);
  });
}

StatusOr<AdminReply> DecodeAdminReply(std::string_view header) {
  msgpack::object_handle handle;
  if (Status s = Open(header, Command::kAdminReply, 8, &handle); !s.ok()) return s;
  ArrayReader a(handle.get(), Command::kAdminReply);
  AdminReply r;
  Status s = a.Uint(2, "request_id", UINT64_MAX, &r.request_id);
  if (s.ok()) s = a.Code(3, "status", &r.code);
  if (s.ok()) s = a.Str(4, "message", kMaxMessageBytes, &r.message);
  if (s.ok()) s = a.Uint(5, "version", UINT64_MAX, &r.version);
  if (!s.ok()) return s;
  const msgpack::object& changes = a.At(6);
  if (changes.type != msgpack::type::ARRAY) return ArrayReader::Type("changes", "an array");
  if (changes.via.array.size > kMaxChangeLines) return BadRequest("too many change lines");
  r.changes.resize(changes.via.array.size);
  for (uint32_t i = 0; i < changes.via.array.size; ++i) {
    s = ArrayReader::ReadStr(changes.via.array.ptr[i], "changes", kMaxMessageBytes, &r.changes[i]);
    if (!s.ok()) return s;
  }
  if (s = ReadState(a.At(7), &r.state); !s.ok()) return s;
  return r;
}

namespace {

// Reads only the first bytes of a header, [version, command, first, ...: an
// array header and unsigned integers, so that a header too large or too
// broken to decode as a whole still tells its command (and request id).
// `first` may be null.
bool ReadPrefix(std::string_view header, uint64_t* command, uint64_t* first) {
  Cursor c(header);
  uint32_t count;
  uint64_t version;
  return c.Array(&count) && count >= (first ? 3u : 2u) && c.NonNegative(&version) &&
         version == kProtocolVersion && c.NonNegative(command) && KnownCommand(*command) &&
         (first == nullptr || c.NonNegative(first));
}

}  // namespace

std::optional<Command> PeekCommandFast(std::string_view header) {
  uint64_t command;
  if (!ReadPrefix(header, &command, nullptr)) return std::nullopt;
  return static_cast<Command>(command);
}

bool PeekRequestId(std::string_view header, uint64_t* request_id) {
  uint64_t command, id;
  if (!ReadPrefix(header, &command, &id)) return false;
  if (command != static_cast<uint64_t>(Command::kRequest) &&
      command != static_cast<uint64_t>(Command::kStatus)) {
    return false;
  }
  *request_id = id;
  return true;
}

}  // namespace zserve::schemas
