// Reading fuzz input as bytes, numbers and frames, and writing it (for the
// seed generator, fuzz/make_seeds.cc), so that multi-frame messages are
// reachable from a flat byte string.
//
// A frame is a length, then that many bytes. The length takes one byte when
// it is below 128, else two: (b0 & 0x7f) | (b1 << 7), at most 32767. A
// length past the end of the input is cut to what remains; reading past the
// end gives zeros and empty frames (Empty() then tells the caller to stop).
//
// Plain values; any thread.
#ifndef ZSERVE_FUZZ_FUZZ_INPUT_H_
#define ZSERVE_FUZZ_FUZZ_INPUT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace zserve::fuzz {

inline constexpr size_t kMaxFrameBytes = 0x7fff;

class FuzzReader {
 public:
  FuzzReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  bool Empty() const { return pos_ >= size_; }
  size_t remaining() const { return size_ - pos_; }

  uint8_t U8() { return Empty() ? 0 : data_[pos_++]; }
  uint16_t U16() {
    uint16_t lo = U8();
    return static_cast<uint16_t>(lo | (U8() << 8));
  }

  std::string_view Frame() {
    size_t len = U8();
    if (len & 0x80) len = (len & 0x7f) | (static_cast<size_t>(U8()) << 7);
    if (len > remaining()) len = remaining();
    std::string_view out(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return out;
  }

  // The rest of the input as one frame.
  std::string_view Rest() {
    std::string_view out(reinterpret_cast<const char*>(data_ + pos_), remaining());
    pos_ = size_;
    return out;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

class FuzzWriter {
 public:
  FuzzWriter& U8(uint8_t v) {
    out_.push_back(static_cast<char>(v));
    return *this;
  }
  FuzzWriter& U16(uint16_t v) {
    return U8(static_cast<uint8_t>(v)).U8(static_cast<uint8_t>(v >> 8));
  }
  FuzzWriter& Frame(std::string_view bytes) {
    size_t len = bytes.size() > kMaxFrameBytes ? kMaxFrameBytes : bytes.size();
    if (len < 0x80) {
      U8(static_cast<uint8_t>(len));
    } else {
      U8(static_cast<uint8_t>(0x80 | (len & 0x7f))).U8(static_cast<uint8_t>(len >> 7));
    }
    out_.append(bytes.substr(0, len));
    return *this;
  }
  FuzzWriter& Frames(const std::vector<std::string>& frames) {
    for (const std::string& f : frames) Frame(f);
    return *this;
  }
  const std::string& bytes() const { return out_; }

 private:
  std::string out_;
};

}  // namespace zserve::fuzz

#endif  // ZSERVE_FUZZ_FUZZ_INPUT_H_
