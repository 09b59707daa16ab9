// The fast path of the per-call decoders (schemas/fast_decode.h): it takes
// every header our encoders write, and on headers changed byte by byte it
// never accepts what the full decoder refuses, nor decodes anything else.
#include "schemas/fast_decode.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "schemas/codec.h"
#include "tests/schemas/raw_msgpack.h"
#include "zserve/status.h"

namespace {

namespace sc = zserve::schemas;
using zserve::StatusCode;

sc::RequestHeader Request(uint64_t id, std::string endpoint, int32_t priority) {
  return {id, std::move(endpoint), "predict", 250, "user-7", priority};
}

// One header of each layout the encoders write, with values that take
// every integer and string width the fast path reads.
std::vector<std::string> Headers() {
  const std::string long_name(100, 'n');     // str 8
  const std::string long_message(300, 'm');  // str 16
  std::vector<sc::RequestHeader> calls = {
      Request(1, "echo", 0), Request(300, long_name, -5), Request(70'000, "a.b-c_d", -200),
      Request(UINT64_MAX, "e", INT32_MIN), Request(5'000'000'000, "x", INT32_MAX)};
  std::vector<sc::ReplyHeader> replies = {{1, StatusCode::kOk, ""},
                                          {UINT64_MAX, StatusCode::kDeadlineExceeded, "late"},
                                          {7, StatusCode::kInternal, long_message}};
  std::vector<sc::BatchItem> items = {
      {1, "__call__", 0}, {65'536, "predict", 4'000'000'000}, {9, long_name, 1}};
  std::vector<sc::ResultItem> results = {{1, StatusCode::kOk, ""},
                                         {UINT64_MAX, StatusCode::kBadRequest, long_message}};
  std::vector<uint64_t> sizes3 = {0, 100, 1ull << 40};
  std::vector<uint64_t> sizes5 = {1, 2, 3, 4, 5};
  std::vector<uint64_t> sizes2 = {4096, 0};
  std::vector<uint32_t> split = {2, 1};
  std::vector<std::string> headers = {
      sc::EncodeRequest(calls[1]),
      sc::EncodeRequest(calls[3]),
      sc::EncodeReply(replies[1]),
      sc::EncodeReply(replies[2]),
      sc::EncodeRequests(calls),
      sc::EncodeRequests(calls, sizes5),
      sc::EncodeReplies(replies),
      sc::EncodeReplies(replies, sizes3),
      sc::EncodeBatch(items),
      sc::EncodeBatch(items, split),
      sc::EncodeBatch(items, {}, sizes3),
      sc::EncodeBatch(items, split, sizes3),
      sc::EncodeResults(results),
      sc::EncodeResults(results, sizes2),
  };
  return headers;
}

TEST_CASE("The fast path takes every per-call header the encoders write, as the full decoder",
          "[schemas]") {
  for (const std::string& h : Headers()) {
    INFO("header of " << h.size() << " bytes, command " << static_cast<int>(*sc::PeekCommand(h)));
    sc::FastPathCheck check = sc::CheckFastPath(h);
    CHECK(check.accepted == 1);  // its own decoder, no other
    CHECK(check.mismatch.empty());
  }
  // And the public decoders give the same as the full ones.
  std::vector<sc::RequestHeader> calls = {Request(3, "echo", -1), Request(4, "echo", 2)};
  std::vector<uint64_t> sizes = {10, 20}, got_sizes;
  auto got = sc::DecodeRequests(sc::EncodeRequests(calls, sizes), &got_sizes);
  REQUIRE(got.ok());
  CHECK(*got == calls);
  CHECK(got_sizes == sizes);
}

TEST_CASE("The fast path gives up on layouts it does not read, and the full decoder decides",
          "[schemas]") {
  using zserve::testing::Packer;
  using zserve::testing::Raw;
  using zserve::testing::Str;
  // A REQUEST with one element more than the encoder writes: valid (extra
  // elements are ignored), but not the fast path's.
  std::string extra = Raw([](Packer& p) {
    p.pack_array(9);
    p.pack(1);
    p.pack(1);
    p.pack(uint64_t{42});
    Str(p, "echo");
    Str(p, "__call__");
    p.pack(100);
    Str(p, "");
    p.pack(0);
    p.pack(true);
  });
  sc::RequestHeader h;
  CHECK_FALSE(sc::FastDecodeRequest(extra, &h));
  auto full = sc::DecodeRequest(extra);
  REQUIRE(full.ok());
  CHECK(full->request_id == 42);
  // A request id written as a signed integer: also valid, also not the fast
  // path's.
  std::string signed_id = Raw([](Packer& p) {
                            p.pack_array(5);
                            p.pack(1);
                            p.pack(2);
                          }) +
                          std::string("\xd3\0\0\0\0\0\0\0\x07", 9) +  // int 64: 7
                          Raw([](Packer& p) {
                            p.pack(0);
                            Str(p, "ok");
                          });
  sc::ReplyHeader r;
  CHECK_FALSE(sc::FastDecodeReply(signed_id, &r));
  auto reply = sc::DecodeReply(signed_id);
  REQUIRE(reply.ok());
  CHECK(reply->request_id == 7);
  CHECK(reply->message == "ok");
  // Malformed: refused with the full decoder's words.
  std::string header = sc::EncodeRequest(Request(9, "echo", 0));
  auto cut = sc::DecodeRequest(header.substr(0, header.size() - 1));
  REQUIRE_FALSE(cut.ok());
  CHECK(cut.status().code() == StatusCode::kBadRequest);
  CHECK(cut.status().message().find("not valid MessagePack") != std::string::npos);
}

TEST_CASE("On mutated headers the fast path accepts only what the full decoder accepts, the same",
          "[schemas]") {
  std::mt19937_64 rng(20261127);
  const std::vector<std::string> headers = Headers();
  int accepted = 0, refused = 0;
  for (int round = 0; round < 40'000; ++round) {
    std::string h = headers[rng() % headers.size()];
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !h.empty(); ++e) {
      const size_t at = rng() % h.size();
      switch (rng() % 5) {
        case 0:  // one byte to anything
          h[at] = static_cast<char>(rng());
          break;
        case 1:  // one bit
          h[at] = static_cast<char>(h[at] ^ (1 << (rng() % 8)));
          break;
        case 2:  // cut
          h.resize(at);
          break;
        case 3:  // a byte in
          h.insert(at, 1, static_cast<char>(rng()));
          break;
        default:  // a byte out
          h.erase(at, 1);
          break;
      }
    }
    sc::FastPathCheck check = sc::CheckFastPath(h);
    if (!check.mismatch.empty()) FAIL("round " << round << ": " << check.mismatch);
    (check.accepted > 0 ? accepted : refused) += 1;
  }
  // Both outcomes were exercised, or the check above proved little.
  CHECK(accepted > 1000);

  CHECK(refused > 1000);
}

}  // namespace
