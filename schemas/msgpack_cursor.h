// A cursor over MessagePack bytes, for the decoders that read a header's
// bytes in place (schemas/codec.cc, schemas/fast_decode.cc). Internal to
// schemas/.
#ifndef ZSERVE_SCHEMAS_MSGPACK_CURSOR_H_
#define ZSERVE_SCHEMAS_MSGPACK_CURSOR_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace zserve::schemas {

// A cursor over MessagePack bytes that reads only the types of the
// per-call headers (schemas/fast_decode.cc) and of a header's first
// elements (PeekCommandFast, PeekRequestId). Every read returns false, and the cursor is then of no
// further use, when the next value is not of the type asked for or the
// bytes end.
class Cursor {
 public:
  explicit Cursor(std::string_view bytes) : b_(bytes) {}

  bool AtEnd() const { return at_ == b_.size(); }

  bool Array(uint32_t* count) {
    uint8_t m;
    if (!Byte(&m)) return false;
    if (m >= 0x90 && m <= 0x9f) {
      *count = m & 0x0f;
      return true;
    }
    uint64_t n;
    if (m == 0xdc && Big(2, &n)) {
      *count = static_cast<uint32_t>(n);
      return true;
    }
    if (m == 0xdd && Big(4, &n)) {
      *count = static_cast<uint32_t>(n);
      return true;
    }
    return false;
  }

  // An unsigned integer in an unsigned encoding (positive fixint, uint 8
  // to 64: what the encoders write) of at most `max`.
  bool Uint(uint64_t max, uint64_t* v) {
    const bool is_signed = at_ < b_.size() && static_cast<uint8_t>(b_[at_]) >= 0xd0 &&
                           static_cast<uint8_t>(b_[at_]) <= 0xd3;
    return !is_signed && NonNegative(v) && *v <= max;
  }

  // A non-negative integer in any of its encodings: also int 8 to 64 with
  // the sign bit clear, which MessagePack decoders read as unsigned too.
  bool NonNegative(uint64_t* v) {
    uint8_t m;
    if (!Byte(&m)) return false;
    if (m <= 0x7f) {
      *v = m;
      return true;
    }
    if (m >= 0xcc && m <= 0xcf) return Big(size_t{1} << (m - 0xcc), v);
    if (m < 0xd0 || m > 0xd3) return false;
    const size_t n = size_t{1} << (m - 0xd0);
    return Big(n, v) && (*v >> (8 * n - 1)) == 0;
  }

  // A signed integer in [min, max]: any integer encoding.
  bool Int(int64_t min, int64_t max, int64_t* v) {
    uint8_t m;
    if (!Byte(&m)) return false;
    uint64_t raw;
    if (m <= 0x7f) {
      *v = m;
    } else if (m >= 0xe0) {
      *v = static_cast<int8_t>(m);
    } else if (m >= 0xcc && m <= 0xcf) {
      if (!Big(size_t{1} << (m - 0xcc), &raw) || raw > static_cast<uint64_t>(INT64_MAX)) {
        return false;
      }
      *v = static_cast<int64_t>(raw);
    } else if (m >= 0xd0 && m <= 0xd3) {
      const size_t n = size_t{1} << (m - 0xd0);
      if (!Big(n, &raw)) return false;
      // Sign-extend the n-byte two's complement value.
      *v = n == 8 ? static_cast<int64_t>(raw)
                  : static_cast<int64_t>(raw << (64 - 8 * n)) >> (64 - 8 * n);
    } else {
      return false;
    }
    return *v >= min && *v <= max;
  }

  // A str of at most `max` bytes, viewed in place.
  bool Str(size_t max, std::string_view* s) {
    uint8_t m;
    if (!Byte(&m)) return false;
    uint64_t n;
    if (m >= 0xa0 && m <= 0xbf) {
      n = m & 0x1f;
    } else if (m < 0xd9 || m > 0xdb || !Big(size_t{1} << (m - 0xd9), &n)) {
      return false;
    }
    if (n > max || n > b_.size() - at_) return false;
    *s = b_.substr(at_, n);
    at_ += n;
    return true;
  }

 private:
  bool Byte(uint8_t* m) {
    if (at_ == b_.size()) return false;
    *m = static_cast<uint8_t>(b_[at_++]);
    return true;
  }
  // An n-byte big-endian number.
  bool Big(size_t n, uint64_t* v) {
    if (b_.size() - at_ < n) return false;
    *v = 0;
    for (size_t i = 0; i < n; ++i) *v = *v << 8 | static_cast<uint8_t>(b_[at_++]);
    return true;
  }

  std::string_view b_;
  size_t at_ = 0;
};

}  // namespace zserve::schemas

#endif  // ZSERVE_SCHEMAS_MSGPACK_CURSOR_H_
