#include "common/payloads.h"

#include <string>

#ifdef __SANITIZE_THREAD__
#include <sanitizer/tsan_interface.h>
#endif

namespace zserve {
namespace {

// ZeroMQ hands a message to its I/O thread, which later calls the message's
// free function, through its own queues. Debian's libzmq is not built with
// ThreadSanitizer, so TSan cannot see that hand-over; these tell it.
inline void HandOverToZmq([[maybe_unused]] void* hint) {
#ifdef __SANITIZE_THREAD__
  __tsan_release(hint);
#endif
}
inline void TakenBackFromZmq([[maybe_unused]] void* hint) {
#ifdef __SANITIZE_THREAD__
  __tsan_acquire(hint);
#endif
}

}  // namespace

Status LocatePayloads(std::span<const uint64_t> sizes, std::span<const zmq::message_t> frames,
                      std::vector<PayloadRef>* out) {
  out->resize(sizes.size());
  size_t f = 0;
  size_t at = 0;  // bytes of frames[f] already laid out
  // Past the frames already full (and any empty ones).
  auto skip_full = [&] {
    while (f < frames.size() && at == frames[f].size()) {
      ++f;
      at = 0;
    }
  };
  for (size_t i = 0; i < sizes.size(); ++i) {
    const uint64_t n = sizes[i];
    if (n == 0) {
      (*out)[i] = {frames.size(), 0, 0};  // in no frame
      continue;
    }
    skip_full();
    if (f == frames.size()) {
      return BadRequest("payload_sizes add up to more bytes than the payload frames hold");
    }
    if (n > frames[f].size() - at) {
      return BadRequest("payload " + std::to_string(i) + " of " + std::to_string(n) +
                        " bytes crosses the end of payload frame " + std::to_string(f));
    }
    (*out)[i] = {f, at, static_cast<size_t>(n)};
    at += n;
  }
  skip_full();
  if (f != frames.size()) {
    return BadRequest("payload frames hold more bytes than payload_sizes add up to");
  }
  return Status::Ok();
}

Payload Payload::Own(zmq::message_t frame) {
  Payload p;
  p.own = std::move(frame);
  return p;
}

Payload Payload::Slice(SharedFrame frame, size_t offset, size_t size) {
  Payload p;
  p.shared = std::move(frame);
  p.offset = offset;
  p.size = size;
  return p;
}

std::string_view Payload::view() const {
  if (!shared) return View(own);
  return std::string_view(static_cast<const char*>(shared->data()) + offset, size);
}

Payload Payload::Share() const {
  Payload p;
  if (shared) {
    p.shared = shared;
    p.offset = offset;
    p.size = size;
  } else {
    p.own.copy(const_cast<zmq::message_t&>(own));  // shares the buffer, no data copy
  }
  return p;
}

zmq::message_t Payload::Message() const {
  if (shared) return SliceMessage(shared, offset, size);
  zmq::message_t m;
  m.copy(const_cast<zmq::message_t&>(own));  // shares the buffer, no data copy
  return m;
}

zmq::message_t SliceMessage(const SharedFrame& frame, size_t offset, size_t size) {
  if (offset == 0 && size == frame->size()) {
    zmq::message_t whole;
    whole.copy(const_cast<zmq::message_t&>(*frame));  // shares the buffer
    return whole;
  }
  // The slice keeps the frame alive until ZeroMQ is done with it, possibly
  // on its I/O thread: shared_ptr's count is atomic.
  auto* keep = new SharedFrame(frame);
  char* data = static_cast<char*>(const_cast<void*>(frame->data())) + offset;
  HandOverToZmq(keep);
  return zmq::message_t(
      data, size,
      [](void*, void* hint) {
        TakenBackFromZmq(hint);
        delete static_cast<SharedFrame*>(hint);
      },
      keep);
}

Status ReceivedPayloads::Lay(std::span<const uint64_t> sizes, Frames& frames, size_t first) {
  frames_ = &frames;
  first_ = first;
  packed_ = !sizes.empty();
  shared_.clear();
  if (!packed_) return Status::Ok();
  std::span<const zmq::message_t> payload_frames(frames.data() + first, frames.size() - first);
  if (Status s = LocatePayloads(sizes, payload_frames, &refs_); !s.ok()) return s;
  for (size_t f = first; f < frames.size(); ++f) {
    shared_.push_back(std::make_shared<const zmq::message_t>(std::move(frames[f])));
  }
  return Status::Ok();
}

Payload ReceivedPayloads::Take(size_t i) {
  if (!packed_) return Payload::Own(std::move((*frames_)[first_ + i]));
  const PayloadRef& at = refs_[i];
  if (at.size == 0) return {};
  return Payload::Slice(shared_[at.frame], at.offset, at.size);
}

void PackedFrames::Add(const Payload& p) {
  const size_t n = p.bytes();
  sizes_.push_back(n);
  if (n == 0) return;  // takes no byte of any frame
  if (p.shared && run_.shared == p.shared && run_.offset + run_.size == p.offset) {
    run_.size += n;  // next to the run: the same slice grows
    return;
  }
  Finish();
  if (p.shared) {
    run_ = Payload::Slice(p.shared, p.offset, n);
  } else {
    out_->push_back(p.Message());
  }
}

void PackedFrames::Finish() {
  if (!run_.shared) return;
  out_->push_back(SliceMessage(run_.shared, run_.offset, run_.size));
  run_ = {};
}

}  // namespace zserve
