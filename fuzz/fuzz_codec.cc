// libFuzzer target: every decoder of schemas/codec.h on the whole input,
// taken as one header frame.
//
// Decoders must not crash, leak or throw on any bytes. A header one of them
// accepts must survive decode -> encode -> decode unchanged (aborts
// otherwise), its re-encoding must be stable, and it must agree with
// PeekCommand (no decoder accepts another command's header) and with
// PeekRequestId (a best effort: when it reads an id, it is the right one).
// The fast path of the per-call decoders (schemas/fast_decode.h) must agree
// with their full decoders on every input.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "schemas/codec.h"
#include "schemas/config.h"
#include "schemas/fast_decode.h"

namespace zserve::schemas {
namespace {

[[noreturn]] void Fail(std::string_view what, const std::string& why) {
  std::fprintf(stderr, "fuzz_codec: %.*s: %s\n", static_cast<int>(what.size()), what.data(),
               why.c_str());
  std::abort();
}

bool HasNaN(const std::map<std::string, double>& m) {
  for (const auto& [k, v] : m) {
    if (std::isnan(v)) return true;
  }
  return false;
}

bool HasNaN(const ConfigState& s) {
  for (const auto& [name, e] : s.endpoints) {
    if (HasNaN(e.traffic) || HasNaN(e.shadow)) return true;
  }
  return false;
}

bool HasNaN(const AdminRequest& r) {
  return HasNaN(r.weights) || HasNaN(r.state) ||
         (r.endpoint.traffic && HasNaN(*r.endpoint.traffic)) ||
         (r.endpoint.shadow && HasNaN(*r.endpoint.shadow));
}

// Equality of decoded headers. NaN weights compare unequal, so a state with
// one is compared by its encoding only (the stability check below).
template <typename T>
bool Same(const T& a, const T& b) {
  return a == b;
}
bool Same(const ErrorHeader& a, const ErrorHeader& b) {
  return a.code == b.code && a.message == b.message;
}
bool Same(const Snapshot& a, const Snapshot& b) {
  return a.version == b.version && (HasNaN(a.state) || a.state == b.state);
}
bool Same(const AdminRequest& a, const AdminRequest& b) { return HasNaN(a) || a == b; }
bool Same(const AdminReply& a, const AdminReply& b) { return HasNaN(a.state) || a == b; }

// decode(encode(x)) == x, and encode(decode(encode(x))) == encode(x).
template <typename T, typename Decode, typename Encode>
void RoundTrip(std::string_view what, const StatusOr<T>& first, Decode decode, Encode encode) {
  if (!first.ok()) return;
  const std::string bytes = encode(*first);
  StatusOr<T> second = decode(bytes);
  if (!second.ok()) Fail(what, "its re-encoding does not decode: " + second.status().ToString());
  if (!Same(*first, *second)) Fail(what, "decode(encode(x)) differs from x");
  if (encode(*second) != bytes) Fail(what, "encode(decode(encode(x))) differs from encode(x)");
}

// The round trip of a header with optional payload sizes (REQUESTS,
// REPLIES, RESULTS): the sizes come back too, one per item when present.
template <typename T, typename Decode, typename Encode>
bool RoundTripPacked(std::string_view what, std::string_view h, Decode decode, Encode encode) {
  std::vector<uint64_t> sizes;
  StatusOr<std::vector<T>> r = decode(h, &sizes);
  std::vector<uint64_t> again;
  RoundTrip(
      what, r, [&](std::string_view b) { return decode(b, &again); },
      [&](const std::vector<T>& items) { return encode(items, sizes); });
  if (r.ok() && again != sizes) Fail(what, "payload sizes differ after a round trip");
  if (r.ok() && !sizes.empty() && sizes.size() != r->size()) {
    Fail(what, "payload sizes are not one per item");
  }
  return r.ok();
}

// The decoders, by number; each checks what it accepts.
constexpr int kDecoders = 13;

// Whether decoder `i` is the one for headers of `command`.
bool DecoderOf(int i, Command command) {
  switch (i) {
    case 0:
      return command == Command::kRequest;
    case 1:
      return command == Command::kReply;
    case 2:
      return command == Command::kStatus;
    case 3:
      return command == Command::kReady;
    case 4:
      return command == Command::kBatch;
    case 5:
      return command == Command::kResults;
    case 6:
      return command == Command::kSnapshot || command == Command::kUpdate;
    case 7:
      return command == Command::kControllerHeartbeat;
    case 8:
      return command == Command::kError;
    case 9:
      return IsAdminCommand(command);
    case 10:
      return command == Command::kAdminReply;
    case 11:
      return command == Command::kRequests;
    default:
      return command == Command::kReplies;
  }
}

// Runs decoder `i`; true if it accepted the header.
bool Decode(int i, std::string_view h, bool has_id, uint64_t peeked_id) {
  switch (i) {
    case 0: {
      StatusOr<RequestHeader> r = DecodeRequest(h);
      if (r.ok()) {
        if (has_id && peeked_id != r->request_id) Fail("REQUEST", "PeekRequestId disagrees");
        if (!ValidateName("endpoint", r->endpoint).ok() || !ValidateMethod(r->method).ok()) {
          Fail("REQUEST", "decoded an invalid endpoint or method");
        }
      }
      RoundTrip("REQUEST", r, DecodeRequest, EncodeRequest);
      return r.ok();
    }
    case 1: {
      StatusOr<ReplyHeader> r = DecodeReply(h);
      RoundTrip("REPLY", r, DecodeReply, EncodeReply);
      return r.ok();
    }
    case 2: {
      StatusOr<uint64_t> r = DecodeStatusRequest(h);
      if (r.ok() && has_id && peeked_id != *r) Fail("STATUS", "PeekRequestId disagrees");
      RoundTrip("STATUS", r, DecodeStatusRequest, EncodeStatusRequest);
      return r.ok();
    }
    case 3: {
      StatusOr<ReadyHeader> r = DecodeReady(h);
      if (r.ok() && !ValidateName("backend", r->backend).ok()) {
        Fail("READY", "decoded an invalid backend name");
      }
      RoundTrip("READY", r, DecodeReady, EncodeReady);
      return r.ok();
    }
    case 4: {
      std::vector<uint32_t> sizes;
      std::vector<uint64_t> packed;
      StatusOr<std::vector<BatchItem>> r = DecodeBatch(h, &sizes, &packed);
      if (r.ok() && (r->empty() || r->size() > kMaxBatchItems)) {
        Fail("BATCH", "decoded " + std::to_string(r->size()) + " items");
      }
      if (r.ok()) {
        uint64_t total = 0;
        for (uint32_t n : sizes) total += n;
        if (total != r->size()) Fail("BATCH", "handler batch sizes do not add up to the items");
      }
      // Round trip with the handler batches and payload sizes the header had.
      std::vector<uint32_t> again;
      std::vector<uint64_t> packed_again;
      RoundTrip(
          "BATCH", r, [&](std::string_view b) { return DecodeBatch(b, &again, &packed_again); },
          [&](const std::vector<BatchItem>& items) { return EncodeBatch(items, sizes, packed); });
      if (r.ok() && again != sizes) Fail("BATCH", "handler batch sizes differ after a round trip");
      if (r.ok() && packed_again != packed)
        Fail("BATCH", "payload sizes differ after a round trip");
      if (r.ok() && !packed.empty() && packed.size() != r->size()) {
        Fail("BATCH", "payload sizes are not one per item");
      }
      return r.ok();
    }
    case 5:
      return RoundTripPacked<ResultItem>("RESULTS", h, DecodeResults, EncodeResults);
    case 6: {
      StatusOr<Snapshot> r = DecodeSnapshot(h);
      if (!r.ok()) return false;
      const Command command = *PeekCommand(h);
      RoundTrip("SNAPSHOT", r, DecodeSnapshot,
                [command](const Snapshot& s) { return EncodeSnapshot(command, s); });
      (void)Validate(r->state);
      return true;
    }
    case 7: {
      StatusOr<uint64_t> r = DecodeControllerHeartbeat(h);
      RoundTrip("CONTROLLER_HEARTBEAT", r, DecodeControllerHeartbeat, EncodeControllerHeartbeat);
      return r.ok();
    }
    case 8: {
      StatusOr<ErrorHeader> r = DecodeError(h);
      if (r.ok() && r->code == StatusCode::kOk) Fail("ERROR", "decoded status OK");
      RoundTrip("ERROR", r, DecodeError,
                [](const ErrorHeader& e) { return EncodeError(Status(e.code, e.message)); });
      return r.ok();
    }
    case 9: {
      StatusOr<AdminRequest> r = DecodeAdminRequest(h);
      if (r.ok() && !IsAdminCommand(r->command)) Fail("admin", "not an admin command");
      RoundTrip("admin", r, DecodeAdminRequest, EncodeAdminRequest);
      return r.ok();
    }
    case 10: {
      StatusOr<AdminReply> r = DecodeAdminReply(h);
      RoundTrip("ADMIN_REPLY", r, DecodeAdminReply, EncodeAdminReply);
      return r.ok();
    }
    case 11: {
      StatusOr<std::vector<RequestHeader>> r = DecodeRequests(h);
      if (r.ok() && (r->empty() || r->size() > kMaxCallsPerMessage)) {
        Fail("REQUESTS", "accepted 0 or too many calls");
      }
      if (r.ok() && PeekCommandFast(h) != Command::kRequests) {
        Fail("REQUESTS", "PeekCommandFast disagrees");
      }
      // With call_errors: what decodes whole decodes the same with no call
      // listed; what does not decode whole lists at least one call.
      CallErrors errors;
      StatusOr<std::vector<RequestHeader>> lenient = DecodeRequests(h, nullptr, &errors);
      if (r.ok() && (!lenient.ok() || !errors.empty() || *lenient != *r)) {
        Fail("REQUESTS", "call_errors changed a message that decodes whole");
      }
      if (!r.ok() && lenient.ok() && errors.empty()) {
        Fail("REQUESTS", "call_errors took a bad message and listed no call");
      }
      for (size_t e = 0; lenient.ok() && e < errors.size(); ++e) {
        if (errors[e].first >= lenient->size() ||
            (e > 0 && errors[e].first <= errors[e - 1].first) || errors[e].second.ok()) {
          Fail("REQUESTS", "call_errors out of order, out of range or OK");
        }
      }
      return RoundTripPacked<RequestHeader>(
          "REQUESTS", h,
          [](std::string_view b, std::vector<uint64_t>* sizes) { return DecodeRequests(b, sizes); },
          EncodeRequests);
    }
    default:
      return RoundTripPacked<ReplyHeader>("REPLIES", h, DecodeReplies, EncodeReplies);
  }
}

// Each header goes to the decoder of the command PeekCommand reads, and to
// one more picked by its length (each decoder must refuse other commands;
// running all of them on every input would parse it thirteen times).
void Run(std::string_view h) {
  // The fast path of the per-call decoders agrees with the full decoders.
  if (FastPathCheck fast = CheckFastPath(h); !fast.mismatch.empty()) {
    Fail("fast path", fast.mismatch);
  }
  StatusOr<Command> peek = PeekCommand(h);
  if (peek.ok()) {
    (void)CommandName(*peek);
    (void)IsAdminCommand(*peek);
  }
  uint64_t peeked_id = 0;
  const bool has_id = PeekRequestId(h, &peeked_id);
  const int extra = static_cast<int>(h.size() % kDecoders);
  for (int i = 0; i < kDecoders; ++i) {
    const bool own = peek.ok() && DecoderOf(i, *peek);
    if (!own && i != extra) continue;
    const bool accepted = Decode(i, h, has_id, peeked_id);
    if (accepted && !own) {
      Fail("decoders",
           "decoder " + std::to_string(i) + " accepts a header PeekCommand reads as " +
               (peek.ok() ? std::string(CommandName(*peek)) : peek.status().ToString()));
    }
  }
}

}  // namespace
}  // namespace zserve::schemas

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  zserve::schemas::Run(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
