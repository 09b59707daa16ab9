// The client library (include/zserve/client.h) against a fake broker: the
// test binds a ROUTER, the client connects its DEALER to it, and the test
// speaks ZSP/1 (schemas/PROTOCOL.md, section 4.1) through schemas/codec.h.
// Blocking calls (Call, BrokerStatus) are served from a second thread; async
// calls are interleaved on the test thread. Every wait is a bounded zmq::poll;
// nothing sleeps.
#include "zserve/client.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>
#include <zmq.hpp>

#include "common/payloads.h"
#include "common/zmq_util.h"
#include "schemas/codec.h"
#include "tests/common/fake_router.h"
#include "zserve/status.h"

namespace {

using Catch::Matchers::Contains;
using std::chrono::milliseconds;
using zserve::Clock;
using zserve::Frames;
using zserve::Status;
using zserve::StatusCode;
using zserve::StatusOr;
namespace sc = zserve::schemas;

constexpr milliseconds kWait{5000};  // the most any expected message may take

// The broker, played by the test.
class FakeBroker : public zserve::testing::FakeRouter {
 public:
  using FakeRouter::FakeRouter;
  Status Reply(uint64_t request_id, StatusCode code, const std::string& message,
               const std::string& payload) {
    return Send({sc::EncodeReply({request_id, code, message}), payload});
  }
};

std::unique_ptr<zserve::Client> MakeClient(const zserve::ClientOptions& o) {
  auto c = zserve::Client::Create(o);
  REQUIRE(c.ok());
  return std::move(c).value();
}

// What a broker thread saw and did: asserted on the test thread after join
// (Catch2 assertions are for the test thread only).
struct Served {
  bool received = false;
  Frames frames;
  bool replied = false;
};

// Serves one message on its own thread: receives it, then sends what
// `reply` makes of it (nothing if it returns no frames).
class OneShotBroker {
 public:
  OneShotBroker(FakeBroker& broker, std::function<std::vector<std::string>(const Frames&)> reply)
      : thread_([this, &broker, reply = std::move(reply)] {
          served_.received = broker.Recv(&served_.frames);
          if (!served_.received) return;
          std::vector<std::string> out = reply(served_.frames);
          if (!out.empty()) served_.replied = broker.Send(out).ok();
        }) {}
  ~OneShotBroker() {
    if (thread_.joinable()) thread_.join();
  }
  OneShotBroker(const OneShotBroker&) = delete;
  OneShotBroker& operator=(const OneShotBroker&) = delete;

  const Served& Join() {
    thread_.join();
    return served_;
  }

 private:
  Served served_;
  std::thread thread_;
};

// The calls of a REQUEST or a REQUESTS, with their payloads.
std::vector<std::pair<sc::RequestHeader, std::string>> DecodedCalls(const Frames& frames) {
  REQUIRE(frames.size() >= 2);
  std::vector<std::pair<sc::RequestHeader, std::string>> out;
  if (frames.size() == 2) {
    if (auto one = sc::DecodeRequest(zserve::View(frames[0])); one.ok()) {
      out.emplace_back(*one, std::string(zserve::View(frames[1])));
      return out;
    }
  }
  std::vector<uint64_t> sizes;
  auto calls = sc::DecodeRequests(zserve::View(frames[0]), &sizes);
  REQUIRE(calls.ok());
  // The client library packs a REQUESTS's payloads (PROTOCOL.md 3.1).
  REQUIRE(sizes.size() == calls->size());
  std::vector<zserve::PayloadRef> at;
  REQUIRE(zserve::LocatePayloads(sizes, std::span(frames).subspan(1), &at).ok());
  for (size_t i = 0; i < calls->size(); ++i) {
    out.emplace_back(
        (*calls)[i],
        at[i].size == 0
            ? std::string()
            : std::string(zserve::View(frames[at[i].frame + 1]).substr(at[i].offset, at[i].size)));
  }
  return out;
}

sc::RequestHeader DecodedRequest(const Frames& frames) {
  REQUIRE(frames.size() == 2);
  auto command = sc::PeekCommand(zserve::View(frames[0]));
  REQUIRE(command.ok());
  REQUIRE(*command == sc::Command::kRequest);
  auto h = sc::DecodeRequest(zserve::View(frames[0]));
  REQUIRE(h.ok());
  return *h;
}

// The request id of a received REQUEST, without Catch2 (for broker threads).
uint64_t IdOf(const Frames& frames) {
  auto h = sc::DecodeRequest(zserve::View(frames[0]));
  return h.ok() ? h->request_id : 0;
}

// Polls until nothing is pending (bounded); the number of callbacks run.
size_t PollUntilIdle(zserve::Client& client) {
  size_t ran = 0;
  const auto end = Clock::now() + kWait;
  while (client.pending() > 0 && Clock::now() < end) ran += client.Poll(milliseconds(100));
  REQUIRE(client.pending() == 0);
  return ran;
}

// A client connected to `broker`: a call goes out only once the connection
// is up, so one round trip first makes the calls of a test go out at the
// next Poll, as they do on a client that has been running.
std::unique_ptr<zserve::Client> ConnectedClient(FakeBroker& broker, zserve::ClientOptions o = {}) {
  o.broker_address = broker.address();
  o.grace = milliseconds(50);
  auto client = MakeClient(o);
  bool answered = false;
  client->CallAsync("warmup", "", {}, [&answered](StatusOr<std::string> r) { answered = r.ok(); });
  Frames f;
  const auto end = Clock::now() + kWait;
  bool received = false;
  while (!received && Clock::now() < end) {
    client->Poll(milliseconds(1));
    received = broker.Recv(&f, milliseconds(1));
  }
  REQUIRE(received);
  REQUIRE(broker.Reply(sc::DecodeRequest(zserve::View(f[0]))->request_id, StatusCode::kOk, "", "")
              .ok());
  PollUntilIdle(*client);
  REQUIRE(answered);
  return client;
}

// ---------------------------------------------------------------------------

TEST_CASE("Call sends a REQUEST with its options and returns the OK payload", "[client]") {
  FakeBroker broker;
  auto client = ConnectedClient(broker);

  SECTION("options given") {
    OneShotBroker serve(broker, [](const Frames& f) -> std::vector<std::string> {
      return {sc::EncodeReply({IdOf(f), StatusCode::kOk, ""}), "world"};
    });
    zserve::CallOptions o;
    o.method = "predict";
    o.timeout = milliseconds(1234);
    o.shard_key = "user-7";
    o.priority = 3;
    StatusOr<std::string> r = client->Call("classify", "hello", o);
    const Served& s = serve.Join();
    REQUIRE(s.received);
    CHECK(s.replied);
    sc::RequestHeader h = DecodedRequest(s.frames);
    CHECK(h.endpoint == "classify");
    CHECK(h.method == "predict");
    CHECK(h.timeout_ms == 1234);
    CHECK(h.shard_key == "user-7");
    CHECK(h.priority == 3);
    CHECK(zserve::View(s.frames[1]) == "hello");
    REQUIRE(r.ok());
    CHECK(*r == "world");
  }
  SECTION("defaults") {
    OneShotBroker serve(broker, [](const Frames& f) -> std::vector<std::string> {
      return {sc::EncodeReply({IdOf(f), StatusCode::kOk, ""}), "default reply"};
    });
    StatusOr<std::string> r = client->Call("echo", "");
    const Served& s = serve.Join();
    REQUIRE(s.received);
    sc::RequestHeader h = DecodedRequest(s.frames);
    CHECK(h.endpoint == "echo");
    CHECK(h.method == "__call__");
    CHECK(h.timeout_ms == 0);  // none named: the endpoint's timeout_ms
    CHECK(h.shard_key.empty());
    CHECK(h.priority == 0);
    CHECK(zserve::View(s.frames[1]).empty());
    REQUIRE(r.ok());
    CHECK(*r == "default reply");
  }
}

TEST_CASE("an error REPLY becomes a Status with its code and message", "[client]") {
  FakeBroker broker;
  auto client = ConnectedClient(broker);
  auto code = GENERATE(StatusCode::kNotFound, StatusCode::kOverloaded, StatusCode::kHandlerError,
                       StatusCode::kReplicaFailed);
  OneShotBroker serve(broker, [code](const Frames& f) -> std::vector<std::string> {
    return {sc::EncodeReply({IdOf(f), code, "no endpoint named 'nope'"}), ""};
  });
  StatusOr<std::string> r = client->Call("nope", "x");
  const Served& s = serve.Join();
  REQUIRE(s.received);
  CHECK(s.replied);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == code);
  CHECK(r.status().message() == "no endpoint named 'nope'");
}

TEST_CASE("a hundred async calls answered in reverse order each complete once", "[client]") {
  FakeBroker broker;
  auto client = ConnectedClient(broker);
  constexpr int kCalls = 100;
  std::map<int, int> runs;                   // call index -> callbacks run
  std::map<int, StatusOr<std::string>> got;  // call index -> what its callback got
  for (int i = 0; i < kCalls; ++i) {
    client->CallAsync("echo", "p" + std::to_string(i), {},
                      [i, &runs, &got](StatusOr<std::string> r) {
                        ++runs[i];
                        got.insert_or_assign(i, std::move(r));
                      });
  }
  CHECK(client->pending() == kCalls);
  CHECK(client->Poll(milliseconds(0)) == 0);  // sends them

  // The broker takes all of them (calls made before a Poll travel together,
  // as REQUESTS), then answers the last first: half in one REPLIES, half one
  // REPLY each.
  std::vector<std::pair<uint64_t, std::string>> requests;  // id, payload
  std::set<uint64_t> ids;
  int messages = 0;
  while (requests.size() < kCalls) {
    Frames f;
    INFO("after " << requests.size() << " requests");
    REQUIRE(broker.Recv(&f));
    ++messages;
    for (auto& [h, payload] : DecodedCalls(f)) {
      ids.insert(h.request_id);
      requests.emplace_back(h.request_id, payload);
    }
  }
  CHECK(messages == 1);
  CHECK(ids.size() == kCalls);  // request ids are unique
  std::vector<sc::ReplyHeader> batch;
  std::vector<std::string> batch_frames;
  for (auto it = requests.rbegin(); it != requests.rend(); ++it) {
    if (batch.size() < kCalls / 2) {
      batch.push_back({it->first, StatusCode::kOk, ""});
      batch_frames.push_back("r-" + it->second);
      continue;
    }
    REQUIRE(broker.Reply(it->first, StatusCode::kOk, "", "r-" + it->second).ok());
  }
  batch_frames.insert(batch_frames.begin(), sc::EncodeReplies(batch));
  REQUIRE(broker.Send(batch_frames).ok());

  CHECK(PollUntilIdle(*client) == kCalls);
  CHECK(client->Poll(milliseconds(0)) == 0);
  REQUIRE(runs.size() == kCalls);
  for (int i = 0; i < kCalls; ++i) {
    INFO("call " << i);
    CHECK(runs[i] == 1);
    REQUIRE(got.count(i) == 1);
    REQUIRE(got.at(i).ok());
    CHECK(*got.at(i) == "r-p" + std::to_string(i));
  }
}

TEST_CASE("a call the broker would refuse fails at once with BAD_REQUEST and its neighbours go",
          "[client]") {
  FakeBroker broker;
  auto client = ConnectedClient(broker);
  zserve::CallOptions good;
  struct Bad {
    std::string endpoint;
    zserve::CallOptions options;
    std::string says;
  };
  std::vector<Bad> bad(6, {"echo", good, ""});
  bad[0] = {"my model", good, "character outside"};
  bad[1] = {"", good, "endpoint name must be 1 to 128"};
  bad[2].options.method = "";
  bad[2].says = "method must be 1 to 128";
  bad[3].options.method = std::string(129, 'm');
  bad[3].says = "method must be 1 to 128";
  bad[4].options.shard_key = std::string(129, 'k');
  bad[4].says = "shard key of 129 bytes";
  bad[5].options.timeout = milliseconds(-1);
  bad[5].says = "timeout of -1 ms";
  std::map<std::string, StatusOr<std::string>> got;
  client->CallAsync("echo", "first", good,
                    [&got](StatusOr<std::string> r) { got.emplace("first", std::move(r)); });
  for (size_t i = 0; i < bad.size(); ++i) {
    client->CallAsync(bad[i].endpoint, "bad", bad[i].options, [&got, i](StatusOr<std::string> r) {
      got.emplace("bad " + std::to_string(i), std::move(r));
    });
  }
  client->CallAsync("echo", "last", good,
                    [&got](StatusOr<std::string> r) { got.emplace("last", std::move(r)); });
  CHECK(client->Poll(milliseconds(0)) == bad.size());  // the bad ones, at once
  for (size_t i = 0; i < bad.size(); ++i) {
    INFO("bad call " << i);
    REQUIRE(got.count("bad " + std::to_string(i)) == 1);
    const StatusOr<std::string>& r = got.at("bad " + std::to_string(i));
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::kBadRequest);
    CHECK_THAT(r.status().message(), Contains(bad[i].says));
  }
  // The two good calls reach the broker, together, and nothing else does.
  Frames f;
  REQUIRE(broker.Recv(&f));
  auto calls = DecodedCalls(f);
  REQUIRE(calls.size() == 2);
  for (auto& [h, payload] : calls) {
    REQUIRE(broker.Reply(h.request_id, StatusCode::kOk, "", "re " + payload).ok());
  }
  CHECK(PollUntilIdle(*client) == 2);
  REQUIRE(got.count("first") == 1);
  REQUIRE(got.at("first").ok());
  CHECK(*got.at("first") == "re first");
  REQUIRE(got.count("last") == 1);
  REQUIRE(got.at("last").ok());
  CHECK(*got.at("last") == "re last");
}

TEST_CASE("async calls with big payloads do not wait to share a message", "[client]") {
  FakeBroker broker;
  auto client = ConnectedClient(broker);
  const std::string big(3 << 20, 'z');  // 3 MiB: two of them would pass 4 MiB
  int answered = 0;
  for (int i = 0; i < 3; ++i) {
    client->CallAsync("echo", big, {},
                      [&answered](StatusOr<std::string> r) { answered += r.ok(); });
  }
  CHECK(client->Poll(milliseconds(0)) == 0);  // sends the last
  int messages = 0;
  for (int calls = 0; calls < 3; ++messages) {
    Frames f;
    REQUIRE(broker.Recv(&f));
    for (auto& [h, payload] : DecodedCalls(f)) {
      CHECK(payload.size() == big.size());
      REQUIRE(broker.Reply(h.request_id, StatusCode::kOk, "", "ok").ok());
      ++calls;
    }
  }
  CHECK(messages == 3);
  CHECK(PollUntilIdle(*client) == 3);
  CHECK(answered == 3);
}

TEST_CASE("a silent broker gives DEADLINE_EXCEEDED and a late reply is dropped", "[client]") {
  FakeBroker broker;
  auto client = ConnectedClient(broker);  // grace 50 ms
  zserve::CallOptions o;
  o.timeout = milliseconds(100);

  const auto start = Clock::now();
  StatusOr<std::string> r = client->Call("slow", "x", o);
  const auto elapsed = Clock::now() - start;
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kDeadlineExceeded);
  CHECK(elapsed >= milliseconds(100));
  CHECK(elapsed < milliseconds(2000));
  CHECK(client->pending() == 0);

  // The broker answers after all.
  Frames f;
  REQUIRE(broker.Recv(&f));
  sc::RequestHeader late = DecodedRequest(f);
  CHECK(late.timeout_ms == 100);
  REQUIRE(broker.Reply(late.request_id, StatusCode::kOk, "", "too late").ok());

  // The next call works, and only its own callback runs.
  int runs = 0;
  std::optional<StatusOr<std::string>> next;
  client->CallAsync("slow", "y", {}, [&](StatusOr<std::string> result) {
    ++runs;
    next = std::move(result);
  });
  CHECK(client->Poll(milliseconds(0)) == 0);  // sends it
  REQUIRE(broker.Recv(&f));
  sc::RequestHeader h = DecodedRequest(f);
  CHECK(h.request_id != late.request_id);
  REQUIRE(broker.Reply(h.request_id, StatusCode::kOk, "", "in time").ok());
  CHECK(PollUntilIdle(*client) == 1);
  CHECK(client->Poll(milliseconds(0)) == 0);
  CHECK(runs == 1);
  REQUIRE(next.has_value());
  REQUIRE(next->ok());
  CHECK(**next == "in time");
}

TEST_CASE("malformed replies and replies for unknown ids are ignored", "[client]") {
  FakeBroker broker;
  auto client = ConnectedClient(broker);
  int runs = 0;
  std::optional<StatusOr<std::string>> got;
  client->CallAsync("echo", "q", {}, [&](StatusOr<std::string> result) {
    ++runs;
    got = std::move(result);
  });
  CHECK(client->Poll(milliseconds(0)) == 0);  // sends it
  Frames f;
  REQUIRE(broker.Recv(&f));
  const uint64_t id = DecodedRequest(f).request_id;
  // REPLIES whose count and frames disagree.
  REQUIRE(broker
              .Send({sc::EncodeReplies({{id, StatusCode::kOk, ""}, {id, StatusCode::kOk, ""}}),
                     "only one"})
              .ok());

  REQUIRE(broker.Send({"not msgpack", "x"}).ok());
  REQUIRE(broker.Send({"not msgpack"}).ok());
  REQUIRE(broker.Send({sc::EncodeStatusRequest(id), "wrong command"}).ok());
  REQUIRE(broker.Send({sc::EncodeReply({id, StatusCode::kOk, ""})}).ok());  // no payload frame
  REQUIRE(broker.Send({sc::EncodeReply({id, StatusCode::kOk, ""}), "a", "b"}).ok());  // two
  REQUIRE(broker.Reply(id + 1000, StatusCode::kOk, "", "someone else's").ok());
  REQUIRE(broker.Reply(id, StatusCode::kOk, "", "the real one").ok());

  CHECK(PollUntilIdle(*client) == 1);
  CHECK(client->Poll(milliseconds(0)) == 0);
  CHECK(runs == 1);
  REQUIRE(got.has_value());
  REQUIRE(got->ok());
  CHECK(**got == "the real one");
}

TEST_CASE("BrokerStatus sends STATUS and returns the reply payload", "[client]") {
  FakeBroker broker;
  auto client = ConnectedClient(broker);
  const std::string doc = R"({"config_version": 3, "endpoints": {}, "backends": {}})";

  SECTION("answered") {
    OneShotBroker serve(broker, [&doc](const Frames& f) -> std::vector<std::string> {
      auto id = sc::DecodeStatusRequest(zserve::View(f[0]));
      if (!id.ok()) return {};
      return {sc::EncodeReply({*id, StatusCode::kOk, ""}), doc};
    });
    StatusOr<std::string> r = client->BrokerStatus(milliseconds(3000));
    const Served& s = serve.Join();
    REQUIRE(s.received);
    REQUIRE(s.frames.size() == 1);  // STATUS has no payload frame
    auto command = sc::PeekCommand(zserve::View(s.frames[0]));
    REQUIRE(command.ok());
    CHECK(*command == sc::Command::kStatus);
    CHECK(sc::DecodeStatusRequest(zserve::View(s.frames[0])).ok());
    CHECK(s.replied);
    REQUIRE(r.ok());
    CHECK(*r == doc);
  }
  SECTION("silent broker") {
    const auto start = Clock::now();
    StatusOr<std::string> r = client->BrokerStatus(milliseconds(100));
    const auto elapsed = Clock::now() - start;
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::kDeadlineExceeded);
    CHECK(elapsed >= milliseconds(100));
    CHECK(elapsed < milliseconds(2000));
  }
}

TEST_CASE("Client::Create refuses a connect_timeout of zero and a grace out of range", "[client]") {
  zserve::ClientOptions o;
  o.broker_address = "tcp://127.0.0.1:1";
  o.connect_timeout = milliseconds(0);
  auto c = zserve::Client::Create(o);
  REQUIRE_FALSE(c.ok());
  CHECK(c.status().code() == StatusCode::kBadRequest);
  CHECK_THAT(c.status().message(), Contains("connect_timeout"));
  o.connect_timeout = milliseconds(1000);
  o.grace = milliseconds(-1);
  c = zserve::Client::Create(o);
  REQUIRE_FALSE(c.ok());
  CHECK(c.status().code() == StatusCode::kBadRequest);
  CHECK_THAT(c.status().message(), Contains("grace"));
  o.grace = std::chrono::hours(2);
  c = zserve::Client::Create(o);
  REQUIRE_FALSE(c.ok());
  CHECK_THAT(c.status().message(), Contains("grace must be 0..3600000 ms"));
}

TEST_CASE("Client::Create refuses a broker address ZeroMQ cannot read and names it", "[client]") {
  // No transport, an unknown one, no port: no retry would mend these.
  for (const char* address : {"127.0.0.1:5555", "http://127.0.0.1:5555", "tcp://127.0.0.1"}) {
    INFO(address);
    zserve::ClientOptions o;
    o.broker_address = address;
    auto c = zserve::Client::Create(o);
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == StatusCode::kBadRequest);
    CHECK_THAT(c.status().message(),
               Contains(std::string("'") + address + "'") && Contains("tcp://HOST:PORT"));
  }
  // A well-formed address with nothing behind it is no error yet: the
  // client connects when the broker comes.
  zserve::ClientOptions o;
  o.broker_address = "tcp://127.0.0.1:1";
  CHECK(zserve::Client::Create(o).ok());
}

TEST_CASE("a client destroyed with calls pending runs each callback once", "[client]") {
  FakeBroker broker;
  std::vector<StatusOr<std::string>> sent, unsent;
  {
    auto client = ConnectedClient(broker);
    client->CallAsync("sleep", "500", {},
                      [&sent](StatusOr<std::string> r) { sent.push_back(std::move(r)); });
    client->Poll(milliseconds(0));
    Frames f;
    REQUIRE(broker.Recv(&f));  // the broker has it, and never answers
    // And a client that never reached a broker.
    zserve::ClientOptions o;
    o.broker_address = "tcp://127.0.0.1:1";
    auto lonely = MakeClient(o);
    lonely->CallAsync("echo", "x", {},
                      [&unsent](StatusOr<std::string> r) { unsent.push_back(std::move(r)); });
    lonely->Poll(milliseconds(0));
  }
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].status().code() == StatusCode::kUnavailable);
  CHECK_THAT(sent[0].status().message(), Contains("may or may not have run"));
  REQUIRE(unsent.size() == 1);
  CHECK(unsent[0].status().code() == StatusCode::kUnavailable);
  CHECK_THAT(unsent[0].status().message(), Contains("before the call was sent"));
}

TEST_CASE("a call with no broker to send it to fails unsent after its deadline or connect_timeout",
          "[client]") {
  zserve::ClientOptions o;
  o.broker_address = "tcp://127.0.0.1:1";
  o.connect_timeout = milliseconds(200);
  o.grace = milliseconds(50);
  auto client = MakeClient(o);
  zserve::CallOptions named;
  named.timeout = milliseconds(100);
  StatusOr<std::string> a = client->Call("echo", "x", named);
  CHECK(a.status().code() == StatusCode::kDeadlineExceeded);
  CHECK_THAT(a.status().message(), Contains("the call was not sent"));
  auto start = Clock::now();
  StatusOr<std::string> b = client->Call("echo", "x");  // no timeout named
  CHECK(Clock::now() - start >= milliseconds(200));
  CHECK(b.status().code() == StatusCode::kUnavailable);
  CHECK_THAT(b.status().message(), Contains("connect_timeout") && Contains("not sent"));
  // A STATUS with a negative timeout is bad input, not a broker that is away.
  StatusOr<std::string> s = client->BrokerStatus(milliseconds(-300));
  CHECK(s.status().code() == StatusCode::kBadRequest);
}

TEST_CASE("a call not sent by its deadline fails at it and not a grace later", "[client]") {
  // The grace is for the broker's answer to a call it has; a call it never
  // got has nothing to wait for (it failed 2 s late here).
  zserve::ClientOptions o;
  o.broker_address = "tcp://127.0.0.1:1";
  o.grace = milliseconds(2'000);
  auto client = MakeClient(o);
  zserve::CallOptions named;
  named.timeout = milliseconds(100);
  const auto start = Clock::now();
  StatusOr<std::string> r = client->Call("echo", "x", named);
  const auto took = Clock::now() - start;
  CHECK(r.status().code() == StatusCode::kDeadlineExceeded);
  CHECK_THAT(r.status().message(), Contains("the call was not sent"));
  CHECK(took >= milliseconds(100));
  CHECK(took < milliseconds(1'000));
}

TEST_CASE("a call made with an empty callback is sent and its answer dropped", "[client]") {
  // The empty std::function threw bad_function_call out of Poll.
  FakeBroker broker;
  auto client = ConnectedClient(broker);
  client->CallAsync("echo", "x", {}, nullptr);
  CHECK(client->Poll(milliseconds(0)) == 0);  // sends it
  Frames f;
  REQUIRE(broker.Recv(&f));
  REQUIRE(broker.Reply(DecodedRequest(f).request_id, StatusCode::kOk, "", "x").ok());
  const auto end = Clock::now() + kWait;
  while (client->pending() > 0 && Clock::now() < end) client->Poll(milliseconds(10));
  CHECK(client->pending() == 0);
}

TEST_CASE("timeouts of milliseconds::max() mean no limit", "[client]") {
  // now + max() overflowed: the call failed at once as not connected in
  // time, and Poll returned at once.
  FakeBroker broker;
  zserve::ClientOptions o;
  o.broker_address = broker.address();
  o.connect_timeout = milliseconds::max();
  auto client = MakeClient(o);
  OneShotBroker answer(broker, [](const Frames& f) -> std::vector<std::string> {
    // On the broker's thread: no assertions here.
    StatusOr<sc::RequestHeader> h = sc::DecodeRequest(zserve::View(f[0]));
    if (f.size() != 2 || !h.ok()) return {};
    return {sc::EncodeReply({h->request_id, StatusCode::kOk, ""}), "in time"};
  });
  std::optional<StatusOr<std::string>> got;
  client->CallAsync("echo", "x", {}, [&](StatusOr<std::string> r) { got = std::move(r); });
  CHECK(client->Poll(milliseconds::max()) == 1);  // waits for the answer
  const Served& served = answer.Join();
  CHECK(served.replied);
  REQUIRE(got.has_value());
  REQUIRE(got->ok());
  CHECK(**got == "in time");
}

// Answers every call `broker` receives within `limit`, polling `client`
// meanwhile, until `done`; returns the calls received.
std::vector<sc::RequestHeader> Serve(FakeBroker& broker, zserve::Client& client,
                                     const std::function<bool()>& done) {
  std::vector<sc::RequestHeader> got;
  const auto end = Clock::now() + kWait;
  while (!done() && Clock::now() < end) {
    client.Poll(milliseconds(1));
    Frames f;
    while (broker.Recv(&f, milliseconds(1))) {
      for (auto& [h, payload] : DecodedCalls(f)) {
        got.push_back(h);
        REQUIRE(broker.Reply(h.request_id, StatusCode::kOk, "", payload).ok());
      }
    }
  }
  return got;
}

// A client whose broker (at *address) has gone, and which has seen it go:
// a STATUS that cannot be answered.
std::unique_ptr<zserve::Client> ClientOfGoneBroker(std::string* address) {
  auto broker = std::make_unique<FakeBroker>();
  *address = broker->address();
  auto client = ConnectedClient(*broker);
  broker.reset();
  REQUIRE_FALSE(client->BrokerStatus(milliseconds(100)).ok());
  return client;
}

TEST_CASE("a call made before the broker restarts goes once on the new connection", "[client]") {
  for (bool idempotent : {false, true}) {
    INFO("idempotent " << idempotent);
    auto old_broker = std::make_unique<FakeBroker>();
    const std::string address = old_broker->address();
    auto client = ConnectedClient(*old_broker);
    zserve::CallOptions o;
    o.timeout = milliseconds(5000);
    o.idempotent = idempotent;
    std::optional<StatusOr<std::string>> result;
    client->CallAsync("echo", "made before", o,
                      [&result](StatusOr<std::string> r) { result = std::move(r); });
    // The application does other things (no Poll) while its broker restarts
    // and its connection comes back.
    old_broker.reset();
    FakeBroker broker(address);
    REQUIRE(broker.WaitForPeer());
    std::vector<sc::RequestHeader> got = Serve(broker, *client, [&] { return result.has_value(); });
    REQUIRE(result.has_value());
    REQUIRE(result->ok());
    CHECK(**result == "made before");
    CHECK(got.size() == 1);  // sent once
  }
}

TEST_CASE("a call held while no broker is up is sent with the time it has left", "[client]") {
  std::string address;
  auto client = ClientOfGoneBroker(&address);
  zserve::CallOptions o;
  o.timeout = milliseconds(3000);
  std::optional<StatusOr<std::string>> result;
  client->CallAsync("echo", "held", o,
                    [&result](StatusOr<std::string> r) { result = std::move(r); });
  const auto made = Clock::now();
  // Held for 800 ms: the client polls, and nothing answers.
  CHECK(client->Poll(milliseconds(800)) == 0);
  FakeBroker broker(address);
  std::vector<sc::RequestHeader> got = Serve(broker, *client, [&] { return result.has_value(); });
  REQUIRE(got.size() == 1);
  const auto left =
      milliseconds(3000) - std::chrono::duration_cast<milliseconds>(Clock::now() - made);
  CHECK(got[0].timeout_ms <= 2200);  // not its whole 3000 ms
  CHECK(got[0].timeout_ms >= static_cast<uint32_t>(left.count()));
  REQUIRE(result.has_value());
  CHECK(result->ok());
}

TEST_CASE("a call made long before the next Poll is sent with the time it has left", "[client]") {
  // The caller makes a call, then does other work for 300 ms before it
  // polls: the broker must not get the whole timeout, which would put its
  // deadline 300 ms after the client's.
  FakeBroker broker;
  auto client = ConnectedClient(broker);
  zserve::CallOptions o;
  o.timeout = milliseconds(3000);
  client->CallAsync("echo", "x", o, [](StatusOr<std::string>) {});
  const auto made = Clock::now();
  std::this_thread::sleep_for(milliseconds(300));  // the caller's other work, not a wait on us
  CHECK(client->Poll(milliseconds(0)) == 0);       // sends it
  Frames f;
  REQUIRE(broker.Recv(&f));
  const auto left =
      milliseconds(3000) - std::chrono::duration_cast<milliseconds>(Clock::now() - made);
  const sc::RequestHeader h = DecodedRequest(f);
  CHECK(h.timeout_ms <= 2700);
  CHECK(h.timeout_ms >= static_cast<uint32_t>(left.count()));
}

TEST_CASE("calls that expired while held leave nothing to send when the broker comes", "[client]") {
  std::string address;
  auto client = ClientOfGoneBroker(&address);
  zserve::CallOptions o;
  o.timeout = milliseconds(50);
  StatusOr<std::string> r = client->Call("echo", "too late", o);
  CHECK(r.status().code() == StatusCode::kDeadlineExceeded);
  CHECK_THAT(r.status().message(), Contains("not sent"));
  FakeBroker broker(address);
  REQUIRE(broker.WaitForPeer());
  // An event loop polls with nothing pending: the client sees its
  // connection come back, and sends nothing (not an empty REQUESTS).
  int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  REQUIRE(wake >= 0);
  CHECK(client->Poll(milliseconds(200), wake) == 0);
  close(wake);
  Frames f;
  CHECK_FALSE(broker.Recv(&f, milliseconds(200)));
}

}  // namespace

TEST_CASE("Poll with a wake fd returns when another thread writes it", "[client]") {
  FakeBroker broker;
  auto client = ConnectedClient(broker);
  int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  REQUIRE(wake >= 0);
  // Nothing pending: without the fd, Poll returns at once; with it, Poll
  // waits for the fd (a thread that also takes work from others).
  uint64_t one = 1;
  std::thread writer([&] { (void)!write(wake, &one, sizeof one); });
  auto start = Clock::now();
  CHECK(client->Poll(milliseconds(10'000), wake) == 0);
  CHECK(Clock::now() - start < kWait);
  writer.join();
  uint64_t count = 0;
  CHECK(read(wake, &count, sizeof count) == sizeof count);
  CHECK(count == 1);
  // A reply still runs its callback through the same Poll.
  std::optional<StatusOr<std::string>> got;
  client->CallAsync("echo", "x", {}, [&got](StatusOr<std::string> r) { got = std::move(r); });
  CHECK(client->Poll(milliseconds(0), wake) == 0);  // sends it
  Frames f;
  REQUIRE(broker.Recv(&f));
  REQUIRE(broker.Reply(DecodedRequest(f).request_id, StatusCode::kOk, "", "y").ok());
  const auto end = Clock::now() + kWait;
  while (!got && Clock::now() < end) client->Poll(milliseconds(100), wake);
  REQUIRE(got.has_value());
  CHECK(**got == "y");
  close(wake);
}
