// Packed payloads (schemas/PROTOCOL.md 3.1): several payloads back to back
// in one payload frame, their sizes in the header.
//
// ZeroMQ's cost is per frame (a pipe write, an encoder and decoder step and
// an allocation at each end), not per byte, so one frame for many small
// payloads is most of what a request costs to carry. The broker still never
// copies a payload: a received frame is shared by the payloads it holds, and
// the payloads that go on together leave as one slice of it.
#ifndef ZSERVE_COMMON_PAYLOADS_H_
#define ZSERVE_COMMON_PAYLOADS_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "common/zmq_util.h"
#include "zserve/status.h"

namespace zserve {

// Where one payload lies: `size` bytes from `offset` in frames[frame]; an
// empty payload lies in no frame (frame == the number of frames).
struct PayloadRef {
  size_t frame = 0;
  size_t offset = 0;
  size_t size = 0;
};

// Lays payloads of `sizes` over `frames` in order: each payload whole in one
// frame, every byte of the frames used by exactly one payload. BAD_REQUEST,
// saying what is wrong, otherwise.
Status LocatePayloads(std::span<const uint64_t> sizes, std::span<const zmq::message_t> frames,
                      std::vector<PayloadRef>* out);

// A received frame, kept as long as a payload in it is.
using SharedFrame = std::shared_ptr<const zmq::message_t>;

// A payload held on its way: a frame of its own (one payload per frame), or
// `size` bytes at `offset` of a shared frame.
struct Payload {
  zmq::message_t own{};
  SharedFrame shared{};
  size_t offset = 0;
  size_t size = 0;

  static Payload Own(zmq::message_t frame);
  static Payload Slice(SharedFrame frame, size_t offset, size_t size);
  std::string_view view() const;
  size_t bytes() const { return shared ? size : own.size(); }
  Payload Share() const;           // another reference to the same bytes, no copy
  zmq::message_t Message() const;  // a frame of these bytes, sharing them
};

// A frame of `size` bytes at `offset` of `frame`, sharing its buffer: the
// frame itself when that is all of it (ZeroMQ copies a frame of 33 bytes or
// less, which it keeps inline, rather than share it).
zmq::message_t SliceMessage(const SharedFrame& frame, size_t offset, size_t size);

// The payloads of a received message, its frames from `first` on: one
// frame each, or packed by `sizes` (non-empty) over them. Lay() checks a
// packed layout and takes the frames; Take(i) then gives payload i, once
// each, without copying. Reusable from one message to the next.
class ReceivedPayloads {
 public:
  // BAD_REQUEST if packed payloads do not lay out over the frames. With no
  // sizes, the caller has checked that there is one frame per item.
  Status Lay(std::span<const uint64_t> sizes, Frames& frames, size_t first);
  Payload Take(size_t i);
  void Clear() { shared_.clear(); }  // drops this holder's references

 private:
  Frames* frames_ = nullptr;
  size_t first_ = 0;
  bool packed_ = false;
  std::vector<PayloadRef> refs_;
  std::vector<SharedFrame> shared_;
};

// Builds the payload frames of a packed message: payloads that lie next to
// each other in one shared frame leave as one slice of it, and a payload
// with a frame of its own leaves in that frame. Appends the frames to `out`
// and each payload's size to sizes().
class PackedFrames {
 public:
  explicit PackedFrames(Frames* out) : out_(out) {}
  void Add(const Payload& p);
  void Finish();  // sends on the last run; call before using the frames
  std::span<const uint64_t> sizes() const { return sizes_; }
  void Clear() {
    sizes_.clear();
    run_ = {};
  }

 private:
  Frames* out_;
  std::vector<uint64_t> sizes_;
  Payload run_{};  // the run being gathered: a slice of one shared frame
};

}  // namespace zserve

#endif  // ZSERVE_COMMON_PAYLOADS_H_
