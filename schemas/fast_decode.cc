#include "schemas/fast_decode.h"

#include "schemas/config.h"
#include "schemas/msgpack_cursor.h"

namespace zserve::schemas {
namespace {

// The header's array, of `min` to `max` elements (`*count`), and its
// version and command.
bool Open(Cursor& c, std::string_view header, Command command, uint32_t min, uint32_t max,
          uint32_t* count) {
  uint64_t version, got;
  if (header.empty() || header.size() > kMaxHeaderBytes || !c.Array(count) || *count < min ||
      *count > max) {
    return false;
  }
  return c.Uint(UINT64_MAX, &version) && version == kProtocolVersion && c.Uint(UINT64_MAX, &got) &&
         got == static_cast<uint64_t>(command);
}

bool Name(Cursor& c, std::string* out) {
  std::string_view s;
  if (!c.Str(kMaxNameBytes, &s) || !ValidateName("endpoint", s).ok()) return false;
  out->assign(s);
  return true;
}

bool Method(Cursor& c, std::string* out) {
  std::string_view s;
  if (!c.Str(kMaxNameBytes, &s) || !ValidateMethod(s).ok()) return false;
  out->assign(s);
  return true;
}

bool Text(Cursor& c, size_t max, std::string* out) {
  std::string_view s;
  if (!c.Str(max, &s)) return false;
  out->assign(s);
  return true;
}

bool Code(Cursor& c, StatusCode* code) {
  uint64_t v;
  return c.Uint(255, &v) && StatusCodeFromInt(static_cast<int64_t>(v), code);
}

bool RequestFields(Cursor& c, RequestHeader* h) {
  uint64_t timeout;
  int64_t priority;
  if (!c.Uint(UINT64_MAX, &h->request_id) || !Name(c, &h->endpoint) || !Method(c, &h->method) ||
      !c.Uint(UINT32_MAX, &timeout) || !Text(c, kMaxNameBytes, &h->shard_key) ||
      !c.Int(INT32_MIN, INT32_MAX, &priority)) {
    return false;
  }
  h->timeout_ms = static_cast<uint32_t>(timeout);
  h->priority = static_cast<int32_t>(priority);
  return true;
}

bool ReplyFields(Cursor& c, ReplyHeader* h) {
  return c.Uint(UINT64_MAX, &h->request_id) && Code(c, &h->code) &&
         Text(c, kMaxMessageBytes, &h->message);
}

bool ResultFields(Cursor& c, ResultItem* item) {
  return c.Uint(UINT64_MAX, &item->token) && Code(c, &item->code) &&
         Text(c, kMaxMessageBytes, &item->message);
}

bool BatchFields(Cursor& c, BatchItem* item) {
  uint64_t timeout;
  if (!c.Uint(UINT64_MAX, &item->token) || !Method(c, &item->method) ||
      !c.Uint(UINT32_MAX, &timeout)) {
    return false;
  }
  item->timeout_ms = static_cast<uint32_t>(timeout);
  return true;
}

// An array of 1 to `max` items of `fields` elements each, read by `read`.
template <typename T, typename Read>
bool Items(Cursor& c, size_t max, uint32_t fields, Read read, std::vector<T>* out) {
  uint32_t n, f;
  if (!c.Array(&n) || n == 0 || n > max) return false;
  out->resize(n);
  for (T& item : *out) {
    if (!c.Array(&f) || f != fields || !read(c, &item)) return false;
  }
  return true;
}

// `payload_sizes`: one unsigned integer per item.
bool PayloadSizes(Cursor& c, size_t items, std::vector<uint64_t>* out) {
  uint32_t n;
  if (!c.Array(&n) || n != items) return false;
  std::vector<uint64_t> scratch;
  if (out == nullptr) out = &scratch;
  out->resize(n);
  for (uint64_t& size : *out) {
    if (!c.Uint(UINT64_MAX, &size)) return false;
  }
  return true;
}

// REQUESTS, REPLIES and RESULTS: [version, command, items, payload_sizes?].
template <typename T, typename Read>
bool Calls(std::string_view header, Command command, size_t max, uint32_t fields, Read read,
           std::vector<T>* out, std::vector<uint64_t>* payload_sizes) {
  Cursor c(header);
  uint32_t n;
  if (!Open(c, header, command, 3, 4, &n) || !Items(c, max, fields, read, out)) return false;
  if (n == 4) {
    if (!PayloadSizes(c, out->size(), payload_sizes)) return false;
  } else if (payload_sizes != nullptr) {
    payload_sizes->clear();
  }
  return c.AtEnd();
}

}  // namespace

bool FastDecodeRequest(std::string_view header, RequestHeader* out) {
  Cursor c(header);
  uint32_t n;
  return Open(c, header, Command::kRequest, 8, 8, &n) && RequestFields(c, out) && c.AtEnd();
}

bool FastDecodeReply(std::string_view header, ReplyHeader* out) {
  Cursor c(header);
  uint32_t n;
  return Open(c, header, Command::kReply, 5, 5, &n) && ReplyFields(c, out) && c.AtEnd();
}

bool FastDecodeRequests(std::string_view header, std::vector<RequestHeader>* out,
                        std::vector<uint64_t>* payload_sizes) {
  return Calls(header, Command::kRequests, kMaxCallsPerMessage, 6, RequestFields, out,
               payload_sizes);
}

bool FastDecodeReplies(std::string_view header, std::vector<ReplyHeader>* out,
                       std::vector<uint64_t>* payload_sizes) {
  return Calls(header, Command::kReplies, kMaxCallsPerMessage, 3, ReplyFields, out, payload_sizes);
}

bool FastDecodeResults(std::string_view header, std::vector<ResultItem>* out,
                       std::vector<uint64_t>* payload_sizes) {
  return Calls(header, Command::kResults, kMaxBatchItems, 3, ResultFields, out, payload_sizes);
}

// BATCH: [version, command, items, sizes?, payload_sizes?], where
// payload_sizes comes only after sizes.
bool FastDecodeBatch(std::string_view header, std::vector<BatchItem>* out,
                     std::vector<uint32_t>* sizes, std::vector<uint64_t>* payload_sizes) {
  Cursor c(header);
  uint32_t n;
  if (!Open(c, header, Command::kBatch, 3, 5, &n) || !Items(c, kMaxBatchItems, 3, BatchFields, out))
    return false;
  std::vector<uint32_t> scratch;
  if (sizes == nullptr) sizes = &scratch;
  sizes->clear();
  if (n == 3) {
    sizes->push_back(static_cast<uint32_t>(out->size()));
  } else {
    uint32_t count;
    if (!c.Array(&count) || count == 0 || count > out->size()) return false;
    uint64_t total = 0;
    for (uint32_t i = 0; i < count; ++i) {
      uint64_t size;
      if (!c.Uint(kMaxBatchItems, &size) || size == 0) return false;
      total += size;
      sizes->push_back(static_cast<uint32_t>(size));
    }
    if (total != out->size()) return false;
  }
  if (n == 5) {
    if (!PayloadSizes(c, out->size(), payload_sizes)) return false;
  } else if (payload_sizes != nullptr) {
    payload_sizes->clear();
  }
  return c.AtEnd();
}

namespace {

// Decoder `fast` against `full` on one header: what they decoded, the
// handler batch sizes and the payload sizes must be the same.
template <typename T, typename Fast, typename Full>
void Agree(std::string_view what, std::string_view header, Fast fast, Full full,
           FastPathCheck* check) {
  T got;
  std::vector<uint32_t> sizes, want_sizes;
  std::vector<uint64_t> packed, want_packed;
  if (!fast(header, &got, &sizes, &packed)) return;
  ++check->accepted;
  StatusOr<T> want = full(header, &want_sizes, &want_packed);
  if (!want.ok()) {
    check->mismatch += std::string(what) + ": the full decoder refuses what the fast path took (" +
                       want.status().message() + "); ";
  } else if (!(got == *want) || sizes != want_sizes || packed != want_packed) {
    check->mismatch += std::string(what) + ": the fast path decoded something else; ";
  }
}

}  // namespace

FastPathCheck CheckFastPath(std::string_view header) {
  using Sizes = std::vector<uint32_t>*;
  using Packed = std::vector<uint64_t>*;
  FastPathCheck check;
  Agree<RequestHeader>(
      "REQUEST", header,
      [](std::string_view h, RequestHeader* out, Sizes, Packed) {
        return FastDecodeRequest(h, out);
      },
      [](std::string_view h, Sizes, Packed) { return full::DecodeRequest(h); }, &check);
  Agree<ReplyHeader>(
      "REPLY", header,
      [](std::string_view h, ReplyHeader* out, Sizes, Packed) { return FastDecodeReply(h, out); },
      [](std::string_view h, Sizes, Packed) { return full::DecodeReply(h); }, &check);
  Agree<std::vector<RequestHeader>>(
      "REQUESTS", header,
      [](std::string_view h, std::vector<RequestHeader>* out, Sizes, Packed p) {
        return FastDecodeRequests(h, out, p);
      },
      [](std::string_view h, Sizes, Packed p) { return full::DecodeRequests(h, p); }, &check);
  Agree<std::vector<ReplyHeader>>(
      "REPLIES", header,
      [](std::string_view h, std::vector<ReplyHeader>* out, Sizes, Packed p) {
        return FastDecodeReplies(h, out, p);
      },
      [](std::string_view h, Sizes, Packed p) { return full::DecodeReplies(h, p); }, &check);
  Agree<std::vector<BatchItem>>("BATCH", header, FastDecodeBatch, full::DecodeBatch, &check);
  Agree<std::vector<ResultItem>>(
      "RESULTS", header,
      [](std::string_view h, std::vector<ResultItem>* out, Sizes, Packed p) {
        return FastDecodeResults(h, out, p);
      },
      [](std::string_view h, Sizes, Packed p) { return full::DecodeResults(h, p); }, &check);
  return check;
}

}  // namespace zserve::schemas
