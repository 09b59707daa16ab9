// The Majordomo 0.1 codec (broker/mdp.h): frames as a ROUTER sees them, with
// the routing id first, checked against RFC 7's frame tables.
#include "broker/mdp.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "common/zmq_util.h"
#include "zserve/status.h"

namespace {

namespace mdp = zserve::broker::mdp;
using Catch::Matchers::Contains;
using zserve::Frames;
using zserve::StatusCode;
using zserve::View;

Frames Make(std::initializer_list<std::string_view> parts) {
  Frames out;
  for (std::string_view p : parts) out.emplace_back(p.data(), p.size());
  return out;
}

std::vector<std::string> Strings(const Frames& frames) {
  std::vector<std::string> out;
  for (const zmq::message_t& f : frames) out.emplace_back(View(f));
  return out;
}

const std::string kReady("\x01", 1);
const std::string kRequest("\x02", 1);
const std::string kReply("\x03", 1);
const std::string kHeartbeat("\x04", 1);
const std::string kDisconnect("\x05", 1);

}  // namespace

TEST_CASE("MDP is told from ZSP by the empty delimiter frame", "[broker][mdp]") {
  CHECK(mdp::IsMdp(Make({"id", "", "MDPC01", "echo", "hi"})));
  CHECK(mdp::IsMdp(Make({"id", "", "MDPW01", kHeartbeat})));
  // A ZSP header is a non-empty MessagePack array (0x9N...).
  CHECK_FALSE(mdp::IsMdp(Make({"id", "\x96\x01\x01", "payload"})));
  CHECK_FALSE(mdp::IsMdp(Make({"id"})));
  CHECK(mdp::Protocol(Make({"id", "", "MDPW01", kReady, "echo"})) == "MDPW01");
  CHECK(mdp::Protocol(Make({"id", ""})).empty());
}

TEST_CASE("An MDP client request names a service and its body frames", "[broker][mdp]") {
  Frames f = Make({"client", "", "MDPC01", "echo", "hello"});
  zserve::StatusOr<mdp::ClientRequest> r = mdp::DecodeClientRequest(f);
  REQUIRE(r.ok());
  CHECK(r->service == "echo");
  CHECK(r->first_body == 4);
  CHECK(r->body_frames == 1);
  CHECK(View(f[r->first_body]) == "hello");

  Frames two = Make({"client", "", "MDPC01", "echo", "a", "b"});
  REQUIRE(mdp::DecodeClientRequest(two).ok());
  CHECK(mdp::DecodeClientRequest(two)->body_frames == 2);
  Frames none = Make({"client", "", "MDPC01", "echo"});
  REQUIRE(mdp::DecodeClientRequest(none).ok());
  CHECK(mdp::DecodeClientRequest(none)->body_frames == 0);
}

TEST_CASE("A client message without MDPC01 or a service frame is refused", "[broker][mdp]") {
  for (const Frames& f :
       {Make({"c", "", "MDPC01"}), Make({"c", "", "MDPW01", kReady, "echo"}),
        Make({"c", "", "MDPC02", "echo", "x"}), Make({"c", ""}), Make({"c", "\x96", "x"})}) {
    zserve::StatusOr<mdp::ClientRequest> r = mdp::DecodeClientRequest(f);
    CHECK(r.status().code() == StatusCode::kBadRequest);
  }
}

TEST_CASE("MDP worker commands decode with exactly their frames", "[broker][mdp]") {
  SECTION("READY") {
    Frames f = Make({"w", "", "MDPW01", kReady, "echo"});  // m views into it
    zserve::StatusOr<mdp::WorkerMessage> m = mdp::DecodeWorker(f);
    REQUIRE(m.ok());
    CHECK(m->command == mdp::WorkerCommand::kReady);
    CHECK(m->service == "echo");
    CHECK_FALSE(mdp::DecodeWorker(Make({"w", "", "MDPW01", kReady})).ok());
    CHECK_FALSE(mdp::DecodeWorker(Make({"w", "", "MDPW01", kReady, "a", "b"})).ok());
  }
  SECTION("REPLY") {
    Frames f = Make({"w", "", "MDPW01", kReply, "17", "", "result"});
    zserve::StatusOr<mdp::WorkerMessage> m = mdp::DecodeWorker(f);
    REQUIRE(m.ok());
    CHECK(m->command == mdp::WorkerCommand::kReply);
    CHECK(m->address == "17");
    CHECK(m->first_body == 6);
    CHECK(m->body_frames == 1);
    CHECK(View(f[m->first_body]) == "result");
    // One address frame, then an empty one (RFC 7).
    zserve::StatusOr<mdp::WorkerMessage> bad =
        mdp::DecodeWorker(Make({"w", "", "MDPW01", kReply, "17", "x", "result"}));
    CHECK(bad.status().code() == StatusCode::kBadRequest);
    CHECK_THAT(bad.status().message(), Contains("address"));
    CHECK_FALSE(mdp::DecodeWorker(Make({"w", "", "MDPW01", kReply, "17"})).ok());
  }
  SECTION("REQUEST is decoded too (the broker refuses it from a worker)") {
    zserve::StatusOr<mdp::WorkerMessage> m =
        mdp::DecodeWorker(Make({"w", "", "MDPW01", kRequest, "c", "", "x"}));
    REQUIRE(m.ok());
    CHECK(m->command == mdp::WorkerCommand::kRequest);
  }
  SECTION("HEARTBEAT and DISCONNECT take nothing after the command") {
    REQUIRE(mdp::DecodeWorker(Make({"w", "", "MDPW01", kHeartbeat})).ok());
    CHECK(mdp::DecodeWorker(Make({"w", "", "MDPW01", kHeartbeat}))->command ==
          mdp::WorkerCommand::kHeartbeat);
    REQUIRE(mdp::DecodeWorker(Make({"w", "", "MDPW01", kDisconnect})).ok());
    CHECK(mdp::DecodeWorker(Make({"w", "", "MDPW01", kDisconnect}))->command ==
          mdp::WorkerCommand::kDisconnect);
    CHECK_FALSE(mdp::DecodeWorker(Make({"w", "", "MDPW01", kHeartbeat, "x"})).ok());
  }
}

TEST_CASE("Worker messages with a bad header or command byte are refused", "[broker][mdp]") {
  for (const Frames& f :
       {Make({"w", "", "MDPC01", kReady, "echo"}), Make({"w", "", "MDPW01"}),
        Make({"w", "", "MDPW01", std::string("\x06", 1)}),
        Make({"w", "", "MDPW01", std::string("\x00", 1)}), Make({"w", "", "MDPW01", "READY"}),
        Make({"w", "", "MDPW02", kHeartbeat}), Make({"w", "\x96\x01"})}) {
    CHECK(mdp::DecodeWorker(f).status().code() == StatusCode::kBadRequest);
  }
}

TEST_CASE("A token round-trips through the REQUEST address and nothing else parses",
          "[broker][mdp]") {
  uint64_t t = 0;
  for (uint64_t token : {uint64_t{1}, uint64_t{42}, std::numeric_limits<uint64_t>::max()}) {
    REQUIRE(mdp::ParseTokenAddress(mdp::TokenAddress(token), &t));
    CHECK(t == token);
  }
  for (std::string_view bad :
       {"", "-1", "12a", "a12", " 12", "012", "18446744073709551616", "1.5", "0x10"}) {
    CAPTURE(bad);
    CHECK_FALSE(mdp::ParseTokenAddress(bad, &t));
  }
  CHECK(mdp::ParseTokenAddress("0", &t));
}

TEST_CASE("The broker's MDP messages have RFC 7's frames", "[broker][mdp]") {
  CHECK(Strings(mdp::ClientReply(zmq::message_t(std::string_view("c")), "echo",
                                 zmq::message_t(std::string_view("out")))) ==
        std::vector<std::string>{"c", "", "MDPC01", "echo", "out"});
  CHECK(Strings(mdp::WorkerRequest("w", 9, zmq::message_t(std::string_view("in")))) ==
        std::vector<std::string>{"w", "", "MDPW01", kRequest, "9", "", "in"});
  CHECK(Strings(mdp::WorkerSimple("w", mdp::WorkerCommand::kHeartbeat)) ==
        std::vector<std::string>{"w", "", "MDPW01", kHeartbeat});
  CHECK(Strings(mdp::WorkerSimple("w", mdp::WorkerCommand::kDisconnect)) ==
        std::vector<std::string>{"w", "", "MDPW01", kDisconnect});
}

TEST_CASE("An error to an MDP client is two body frames with the code", "[broker][mdp]") {
  Frames f = mdp::ClientError(zmq::message_t(std::string_view("c")), "nope",
                              zserve::NotFound("no endpoint named 'nope'"));
  CHECK(Strings(f) == std::vector<std::string>{"c", "", "MDPC01", "nope",
                                               "ERROR NOT_FOUND: no endpoint named 'nope'",
                                               "NOT_FOUND"});
}
