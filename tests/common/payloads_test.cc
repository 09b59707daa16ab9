// Packed payloads (common/payloads.h): laying payload sizes over received
// frames, and building the frames of a packed message without copying.
#include "common/payloads.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "common/zmq_util.h"
#include "zserve/status.h"

namespace zserve {
namespace {

using Catch::Matchers::Contains;

// Frames with these contents.
Frames MakeFrames(const std::vector<std::string>& contents) {
  Frames frames;
  for (const std::string& c : contents) frames.emplace_back(c.data(), c.size());
  return frames;
}

// A received frame of `contents`, shared. Long enough (more than ZeroMQ's
// 33-byte inline messages) that its bytes live in a buffer of their own,
// which copies of the message share.
SharedFrame MakeShared(const std::string& contents) {
  return std::make_shared<const zmq::message_t>(contents.data(), contents.size());
}

const char* Data(const SharedFrame& f) { return static_cast<const char*>(f->data()); }
const char* Data(const zmq::message_t& m) { return static_cast<const char*>(m.data()); }

// 64 distinct bytes: "0123456789abcdef..." twice over.
const std::string kBytes =
    std::string("0123456789abcdefghijklmnopqrstuv") + "0123456789abcdefghijklmnopqrstuv";

bool SameRef(const PayloadRef& a, const PayloadRef& b) {
  return a.frame == b.frame && a.offset == b.offset && a.size == b.size;
}

std::string Describe(const std::vector<PayloadRef>& refs) {
  std::string out;
  for (const PayloadRef& r : refs) {
    out += "{" + std::to_string(r.frame) + "," + std::to_string(r.offset) + "," +
           std::to_string(r.size) + "} ";
  }
  return out;
}

void CheckRefs(const std::vector<PayloadRef>& got, const std::vector<PayloadRef>& want) {
  INFO("got " << Describe(got) << "want " << Describe(want));
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(SameRef(got[i], want[i]));
}

// --- LocatePayloads ---------------------------------------------------------

TEST_CASE("LocatePayloads lays several payloads over one frame", "[common]") {
  Frames frames = MakeFrames({"helloworld!"});
  std::vector<uint64_t> sizes = {5, 5, 1};
  std::vector<PayloadRef> refs;
  REQUIRE(LocatePayloads(sizes, frames, &refs).ok());
  CheckRefs(refs, {{0, 0, 5}, {0, 5, 5}, {0, 10, 1}});
}

TEST_CASE("LocatePayloads lays payloads over several frames in order", "[common]") {
  Frames frames = MakeFrames({"abc", "defgh", "i"});
  std::vector<uint64_t> sizes = {1, 2, 5, 1};
  std::vector<PayloadRef> refs;
  REQUIRE(LocatePayloads(sizes, frames, &refs).ok());
  CheckRefs(refs, {{0, 0, 1}, {0, 1, 2}, {1, 0, 5}, {2, 0, 1}});
  // One payload per frame: the unpacked form.
  sizes = {3, 5, 1};
  REQUIRE(LocatePayloads(sizes, frames, &refs).ok());
  CheckRefs(refs, {{0, 0, 3}, {1, 0, 5}, {2, 0, 1}});
}

TEST_CASE("LocatePayloads puts empty payloads in no frame", "[common]") {
  std::vector<PayloadRef> refs;
  SECTION("among others") {
    Frames frames = MakeFrames({"abcd", "ef"});
    std::vector<uint64_t> sizes = {0, 2, 0, 2, 0, 2, 0};
    REQUIRE(LocatePayloads(sizes, frames, &refs).ok());
    CheckRefs(refs, {{2, 0, 0}, {0, 0, 2}, {2, 0, 0}, {0, 2, 2}, {2, 0, 0}, {1, 0, 2}, {2, 0, 0}});
  }
  SECTION("all of them with zero frames") {
    Frames frames;
    std::vector<uint64_t> sizes = {0, 0, 0};
    REQUIRE(LocatePayloads(sizes, frames, &refs).ok());
    CheckRefs(refs, {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}});
  }
  SECTION("none at all with zero frames") {
    Frames frames;
    refs.resize(4);  // made to fit
    REQUIRE(LocatePayloads({}, frames, &refs).ok());
    CHECK(refs.empty());
  }
}

TEST_CASE("LocatePayloads skips empty frames in between", "[common]") {
  Frames frames = MakeFrames({"", "ab", "", "", "cde", ""});
  std::vector<uint64_t> sizes = {2, 0, 1, 2};
  std::vector<PayloadRef> refs;
  REQUIRE(LocatePayloads(sizes, frames, &refs).ok());
  CheckRefs(refs, {{1, 0, 2}, {6, 0, 0}, {4, 0, 1}, {4, 1, 2}});
}

TEST_CASE("LocatePayloads refuses a payload that crosses the end of a frame", "[common]") {
  Frames frames = MakeFrames({"abc", "def"});
  std::vector<PayloadRef> refs;
  for (std::vector<uint64_t> sizes :
       {std::vector<uint64_t>{4, 2}, std::vector<uint64_t>{2, 2, 2}, std::vector<uint64_t>{6}}) {
    Status s = LocatePayloads(sizes, frames, &refs);
    CHECK(s.code() == StatusCode::kBadRequest);
    CHECK_THAT(s.message(), Contains("crosses the end of payload frame"));
  }
  // A size that overflows anything added to it.
  std::vector<uint64_t> huge = {1, UINT64_MAX};
  Status s = LocatePayloads(huge, frames, &refs);
  CHECK(s.code() == StatusCode::kBadRequest);
  CHECK_THAT(s.message(), Contains("crosses the end"));
}

TEST_CASE("LocatePayloads refuses sizes adding up to more than the frames hold", "[common]") {
  std::vector<PayloadRef> refs;
  SECTION("one payload too many") {
    Frames frames = MakeFrames({"abc", "def"});
    std::vector<uint64_t> sizes = {3, 3, 1};
    Status s = LocatePayloads(sizes, frames, &refs);
    CHECK(s.code() == StatusCode::kBadRequest);
    CHECK_THAT(s.message(), Contains("more bytes than the payload frames hold"));
  }
  SECTION("bytes with zero frames") {
    Frames frames;
    std::vector<uint64_t> sizes = {0, 1};
    Status s = LocatePayloads(sizes, frames, &refs);
    CHECK(s.code() == StatusCode::kBadRequest);
    CHECK_THAT(s.message(), Contains("more bytes than the payload frames hold"));
  }
  SECTION("bytes with only empty frames") {
    Frames frames = MakeFrames({"", ""});
    std::vector<uint64_t> sizes = {1};
    Status s = LocatePayloads(sizes, frames, &refs);
    CHECK(s.code() == StatusCode::kBadRequest);
    CHECK_THAT(s.message(), Contains("more bytes than the payload frames hold"));
  }
}

TEST_CASE("LocatePayloads refuses frames holding more bytes than the sizes", "[common]") {
  std::vector<PayloadRef> refs;
  SECTION("bytes left at the end of the last frame") {
    Frames frames = MakeFrames({"abc", "def"});
    std::vector<uint64_t> sizes = {3, 2};
    Status s = LocatePayloads(sizes, frames, &refs);
    CHECK(s.code() == StatusCode::kBadRequest);
    CHECK_THAT(s.message(), Contains("payload frames hold more bytes than payload_sizes"));
  }
  SECTION("a whole frame left over") {
    Frames frames = MakeFrames({"abc", "", "def"});
    std::vector<uint64_t> sizes = {3};
    Status s = LocatePayloads(sizes, frames, &refs);
    CHECK(s.code() == StatusCode::kBadRequest);
    CHECK_THAT(s.message(), Contains("payload frames hold more bytes than payload_sizes"));
  }
  SECTION("frames but only empty payloads") {
    Frames frames = MakeFrames({"a"});
    std::vector<uint64_t> sizes = {0, 0};
    Status s = LocatePayloads(sizes, frames, &refs);
    CHECK(s.code() == StatusCode::kBadRequest);
    CHECK_THAT(s.message(), Contains("payload frames hold more bytes than payload_sizes"));
  }
  SECTION("frames and no payloads") {
    Frames frames = MakeFrames({"a"});
    Status s = LocatePayloads({}, frames, &refs);
    CHECK(s.code() == StatusCode::kBadRequest);
    CHECK_THAT(s.message(), Contains("payload frames hold more bytes than payload_sizes"));
  }
}

// --- Payload and SliceMessage -----------------------------------------------

TEST_CASE("A payload views its bytes and shares them without a copy", "[common]") {
  SharedFrame frame = MakeShared(kBytes);
  Payload slice = Payload::Slice(frame, 10, 6);
  CHECK(slice.view() == kBytes.substr(10, 6));
  CHECK(slice.bytes() == 6);
  Payload again = slice.Share();
  CHECK(again.view().data() == slice.view().data());
  CHECK(frame.use_count() == 3);

  Payload own = Payload::Own(zmq::message_t(kBytes.data(), kBytes.size()));
  CHECK(own.view() == kBytes);
  CHECK(own.bytes() == kBytes.size());
  Payload own_again = own.Share();
  CHECK(own_again.view() == kBytes);
  CHECK(own_again.view().data() == own.view().data());
  zmq::message_t m = own.Message();
  CHECK(Data(m) == own.view().data());
}

// --- PackedFrames -----------------------------------------------------------

TEST_CASE("PackedFrames sends adjacent slices of one frame as one slice of it", "[common]") {
  SharedFrame frame = MakeShared(kBytes);
  Frames out;
  PackedFrames packed(&out);
  packed.Add(Payload::Slice(frame, 4, 3));
  packed.Add(Payload::Slice(frame, 7, 10));
  packed.Add(Payload::Slice(frame, 17, 1));
  packed.Finish();
  REQUIRE(out.size() == 1);
  CHECK(out[0].size() == 14);
  CHECK(View(out[0]) == kBytes.substr(4, 14));
  CHECK(Data(out[0]) == Data(frame) + 4);  // points into the frame: no copy
  CHECK(std::vector<uint64_t>(packed.sizes().begin(), packed.sizes().end()) ==
        std::vector<uint64_t>{3, 10, 1});
  // Finishing again sends nothing more.
  packed.Finish();
  CHECK(out.size() == 1);
}

TEST_CASE("PackedFrames sends a payload covering a whole frame as that frame", "[common]") {
  SharedFrame frame = MakeShared(kBytes);
  Frames out;
  PackedFrames packed(&out);
  SECTION("one payload") { packed.Add(Payload::Slice(frame, 0, kBytes.size())); }
  SECTION("adjacent payloads adding up to the whole frame") {
    packed.Add(Payload::Slice(frame, 0, 10));
    packed.Add(Payload::Slice(frame, 10, kBytes.size() - 10));
  }
  packed.Finish();
  REQUIRE(out.size() == 1);
  CHECK(View(out[0]) == kBytes);
  CHECK(Data(out[0]) == Data(frame));  // the same buffer
}

TEST_CASE("PackedFrames breaks the run at slices that are not adjacent", "[common]") {
  SharedFrame frame = MakeShared(kBytes);
  Frames out;
  PackedFrames packed(&out);
  packed.Add(Payload::Slice(frame, 0, 5));
  packed.Add(Payload::Slice(frame, 10, 5));  // a gap before it
  packed.Add(Payload::Slice(frame, 15, 5));  // adjacent again
  packed.Add(Payload::Slice(frame, 0, 5));   // going back
  packed.Finish();
  REQUIRE(out.size() == 3);
  CHECK(View(out[0]) == kBytes.substr(0, 5));
  CHECK(View(out[1]) == kBytes.substr(10, 10));
  CHECK(View(out[2]) == kBytes.substr(0, 5));
  CHECK(Data(out[0]) == Data(frame));
  CHECK(Data(out[1]) == Data(frame) + 10);
  CHECK(Data(out[2]) == Data(frame));
  CHECK(packed.sizes().size() == 4);
}

TEST_CASE("PackedFrames breaks the run between two frames", "[common]") {
  SharedFrame a = MakeShared(kBytes);
  SharedFrame b = MakeShared(kBytes);
  Frames out;
  PackedFrames packed(&out);
  // At the offsets where b's slice would be adjacent if it were in a.
  packed.Add(Payload::Slice(a, 0, 8));
  packed.Add(Payload::Slice(b, 8, 8));
  packed.Add(Payload::Slice(b, 16, 8));
  packed.Finish();
  REQUIRE(out.size() == 2);
  CHECK(Data(out[0]) == Data(a));
  CHECK(View(out[0]) == kBytes.substr(0, 8));
  CHECK(Data(out[1]) == Data(b) + 8);
  CHECK(View(out[1]) == kBytes.substr(8, 16));
}

TEST_CASE("PackedFrames sends an own-frame payload in its own frame and breaks the run",
          "[common]") {
  SharedFrame frame = MakeShared(kBytes);
  const std::string mine(40, 'm');
  Payload own = Payload::Own(zmq::message_t(mine.data(), mine.size()));
  Frames out;
  PackedFrames packed(&out);
  packed.Add(Payload::Slice(frame, 0, 5));
  packed.Add(own);
  packed.Add(Payload::Slice(frame, 5, 5));  // adjacent to the first, but after own
  packed.Add(own);
  packed.Add(own);  // two own-frame payloads are never merged
  packed.Finish();
  REQUIRE(out.size() == 5);
  CHECK(View(out[0]) == kBytes.substr(0, 5));
  CHECK(View(out[1]) == mine);
  CHECK(Data(out[1]) == own.view().data());  // the own frame's buffer, shared
  CHECK(View(out[2]) == kBytes.substr(5, 5));
  CHECK(Data(out[2]) == Data(frame) + 5);
  CHECK(View(out[3]) == mine);
  CHECK(View(out[4]) == mine);
  CHECK(std::vector<uint64_t>(packed.sizes().begin(), packed.sizes().end()) ==
        std::vector<uint64_t>{5, 40, 5, 40, 40});
  CHECK(own.view() == mine);  // still there: Add takes no bytes from it
}

TEST_CASE("PackedFrames counts empty payloads in sizes but sends no frame for them", "[common]") {
  SharedFrame frame = MakeShared(kBytes);
  Frames out;
  PackedFrames packed(&out);
  SECTION("only empty payloads") {
    packed.Add(Payload::Own(zmq::message_t()));
    packed.Add(Payload::Slice(frame, 3, 0));
    packed.Finish();
    CHECK(out.empty());
    CHECK(std::vector<uint64_t>(packed.sizes().begin(), packed.sizes().end()) ==
          std::vector<uint64_t>{0, 0});
  }
  SECTION("empty payloads inside a run do not break it") {
    packed.Add(Payload::Own(zmq::message_t()));
    packed.Add(Payload::Slice(frame, 0, 5));
    packed.Add(Payload::Own(zmq::message_t()));
    packed.Add(Payload::Slice(frame, 40, 0));
    packed.Add(Payload::Slice(frame, 5, 5));
    packed.Add(Payload::Own(zmq::message_t()));
    packed.Finish();
    REQUIRE(out.size() == 1);
    CHECK(View(out[0]) == kBytes.substr(0, 10));
    CHECK(Data(out[0]) == Data(frame));
    CHECK(std::vector<uint64_t>(packed.sizes().begin(), packed.sizes().end()) ==
          std::vector<uint64_t>{0, 5, 0, 0, 5, 0});
  }
}

TEST_CASE("PackedFrames output is laid out again by LocatePayloads", "[common]") {
  SharedFrame a = MakeShared(kBytes);
  SharedFrame b = MakeShared(kBytes + kBytes);
  const std::string mine = "an own frame";
  std::vector<Payload> payloads;
  payloads.push_back(Payload::Slice(a, 2, 3));
  payloads.push_back(Payload::Slice(a, 5, 0));
  payloads.push_back(Payload::Slice(a, 5, 20));
  payloads.push_back(Payload::Own(zmq::message_t(mine.data(), mine.size())));
  payloads.push_back(Payload::Slice(b, 0, 64));
  payloads.push_back(Payload::Slice(b, 64, 64));
  payloads.push_back(Payload::Slice(a, 30, 1));
  payloads.push_back(Payload::Own(zmq::message_t()));
  Frames out;
  PackedFrames packed(&out);
  for (const Payload& p : payloads) packed.Add(p);
  packed.Finish();
  CHECK(out.size() == 4);  // a[2..25), own, all of b, a[30]
  std::vector<PayloadRef> refs;
  REQUIRE(LocatePayloads(packed.sizes(), out, &refs).ok());
  REQUIRE(refs.size() == payloads.size());
  for (size_t i = 0; i < payloads.size(); ++i) {
    INFO("payload " << i);
    std::string_view got = refs[i].size == 0
                               ? std::string_view()
                               : View(out[refs[i].frame]).substr(refs[i].offset, refs[i].size);
    CHECK(got == payloads[i].view());
  }
}

TEST_CASE("PackedFrames Clear starts a new message", "[common]") {
  SharedFrame frame = MakeShared(kBytes);
  Frames out;
  PackedFrames packed(&out);
  packed.Add(Payload::Slice(frame, 0, 5));
  packed.Finish();
  REQUIRE(out.size() == 1);
  // As the broker does between messages: the frames sent, a new one begun.
  out.clear();
  packed.Clear();
  CHECK(packed.sizes().empty());
  // Adjacent to the last run of the message before, but not joined to it.
  packed.Add(Payload::Slice(frame, 5, 5));
  packed.Finish();
  REQUIRE(out.size() == 1);
  CHECK(View(out[0]) == kBytes.substr(5, 5));
  CHECK(Data(out[0]) == Data(frame) + 5);
  CHECK(std::vector<uint64_t>(packed.sizes().begin(), packed.sizes().end()) ==
        std::vector<uint64_t>{5});
  // A run not yet finished is dropped by Clear.
  out.clear();
  packed.Add(Payload::Slice(frame, 10, 5));
  packed.Clear();
  packed.Finish();
  CHECK(out.empty());
}

TEST_CASE("A slice message outlives every other reference to its frame", "[common]") {
  std::weak_ptr<const zmq::message_t> watch;
  zmq::message_t kept;
  {
    SharedFrame frame = MakeShared(kBytes);
    watch = frame;
    Frames out;
    {
      Payload first = Payload::Slice(frame, 8, 4);
      Payload second = Payload::Slice(frame, 12, 6);
      PackedFrames packed(&out);
      packed.Add(first);
      packed.Add(second);
      packed.Finish();
    }
    REQUIRE(out.size() == 1);
    kept.move(out[0]);
  }
  // The frame, the payloads and the builder are gone: the message holds it.
  CHECK_FALSE(watch.expired());
  CHECK(View(kept) == kBytes.substr(8, 10));
  CHECK(std::string(View(kept)) == "89abcdefgh");
  // And lets it go with its last reference.
  kept.rebuild();
  CHECK(watch.expired());
}

TEST_CASE("A whole-frame message outlives every other reference to its frame", "[common]") {
  std::weak_ptr<const zmq::message_t> watch;
  zmq::message_t kept;
  {
    SharedFrame frame = MakeShared(kBytes);
    watch = frame;
    kept = SliceMessage(frame, 0, kBytes.size());
    CHECK(Data(kept) == Data(frame));
  }
  // The frame object is gone; its buffer lives on with ZeroMQ's own count.
  CHECK(watch.expired());
  CHECK(View(kept) == kBytes);
}

TEST_CASE("SliceMessage of a part of a frame points into it", "[common]") {
  SharedFrame frame = MakeShared(kBytes);
  zmq::message_t m = SliceMessage(frame, 20, 7);
  CHECK(Data(m) == Data(frame) + 20);
  CHECK(View(m) == kBytes.substr(20, 7));
  CHECK(frame.use_count() == 2);  // the message holds a reference
  m.rebuild();
  CHECK(frame.use_count() == 1);
}

}  // namespace
}  // namespace zserve
