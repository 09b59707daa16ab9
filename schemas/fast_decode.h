// The fast path of the decoders of the per-call headers: REQUEST, REPLY,
// REQUESTS, REPLIES, BATCH and RESULTS (schemas/codec.h).
//
// These headers are decoded once per call or per message on the hot path
// of every process (bench/broker_profile.md: MessagePack's object model,
// its zone and unpack stack, were about 8 % of the broker's CPU and 6 % of
// the client's). A fast decoder walks the bytes once and fills the result,
// with no object tree, but only for the layout our encoders write: the
// element counts they use, each field of the one type they give it. On
// anything else (another count, another type, a value out of range, bytes
// that are not MessagePack) it gives up, returns false, and the full
// decoder decides and words the error. Whatever a fast decoder accepts, the
// full decoder accepts with the same result (tests/schemas/codec_test.cc
// and fuzz/fuzz_codec.cc check it on mutated headers).
#ifndef ZSERVE_SCHEMAS_FAST_DECODE_H_
#define ZSERVE_SCHEMAS_FAST_DECODE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "schemas/codec.h"

namespace zserve::schemas {

// True and `out` (and the sizes) filled, or false with them unspecified.
bool FastDecodeRequest(std::string_view header, RequestHeader* out);
bool FastDecodeReply(std::string_view header, ReplyHeader* out);
bool FastDecodeRequests(std::string_view header, std::vector<RequestHeader>* out,
                        std::vector<uint64_t>* payload_sizes);
bool FastDecodeReplies(std::string_view header, std::vector<ReplyHeader>* out,
                       std::vector<uint64_t>* payload_sizes);
bool FastDecodeBatch(std::string_view header, std::vector<BatchItem>* out,
                     std::vector<uint32_t>* sizes, std::vector<uint64_t>* payload_sizes);
bool FastDecodeResults(std::string_view header, std::vector<ResultItem>* out,
                       std::vector<uint64_t>* payload_sizes);

// Runs every fast decoder on `header` and, for each one that accepts it,
// the full decoder: `mismatch` says where they disagree (empty: nowhere),
// `accepted` counts the fast decoders that accepted.
struct FastPathCheck {
  int accepted = 0;
  std::string mismatch;
};
FastPathCheck CheckFastPath(std::string_view header);

// The full decoders alone, without the fast path: what the fast path must
// agree with (for tests and the fuzzer).
namespace full {
StatusOr<RequestHeader> DecodeRequest(std::string_view header);
StatusOr<ReplyHeader> DecodeReply(std::string_view header);
StatusOr<std::vector<RequestHeader>> DecodeRequests(std::string_view header,
                                                    std::vector<uint64_t>* payload_sizes,
                                                    CallErrors* call_errors = nullptr);
StatusOr<std::vector<ReplyHeader>> DecodeReplies(std::string_view header,
                                                 std::vector<uint64_t>* payload_sizes);
StatusOr<std::vector<BatchItem>> DecodeBatch(std::string_view header, std::vector<uint32_t>* sizes,
                                             std::vector<uint64_t>* payload_sizes);
StatusOr<std::vector<ResultItem>> DecodeResults(std::string_view header,
                                                std::vector<uint64_t>* payload_sizes);
}  // namespace full

}  // namespace zserve::schemas

#endif  // ZSERVE_SCHEMAS_FAST_DECODE_H_
