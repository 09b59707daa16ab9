// ZSP/1 header codec (schemas/codec.h, schemas/PROTOCOL.md): every
// Encode*/Decode* pair round-trips, and malformed headers are refused with a
// BAD_REQUEST that says what is wrong.
#include "schemas/codec.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <functional>
#include <limits>
#include <msgpack.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "schemas/config.h"
#include "tests/schemas/raw_msgpack.h"
#include "zserve/status.h"

namespace {

using Catch::Matchers::Contains;
using zserve::Status;
using zserve::StatusCode;
namespace sc = zserve::schemas;

using zserve::testing::Packer;
using zserve::testing::Raw;
using zserve::testing::Str;

// [1, 1, id, endpoint, method, timeout, shard_key, priority] with the
// endpoint element written by `endpoint`.
std::string RawRequest(uint64_t id, const std::function<void(Packer&)>& endpoint) {
  return Raw([&](Packer& p) {
    p.pack_array(8);
    p.pack(uint64_t{1});
    p.pack(uint64_t{1});
    p.pack(id);
    endpoint(p);
    Str(p, "__call__");
    p.pack(uint32_t{100});
    Str(p, "");
    p.pack(int32_t{0});
  });
}

// A STATUS header whose ignored extra element nests so that the whole header
// is `depth` levels deep (the header array itself is level 1).
std::string NestedStatus(int depth) {
  return Raw([depth](Packer& p) {
    p.pack_array(4);
    p.pack(uint64_t{1});
    p.pack(uint64_t{3});
    p.pack(uint64_t{7});
    for (int level = 2; level < depth; ++level) p.pack_array(1);
    p.pack_array(0);
  });
}

sc::RequestHeader SampleRequest() {
  sc::RequestHeader h;
  h.request_id = 42;
  h.endpoint = "classify";
  h.method = "predict";
  h.timeout_ms = 2500;
  h.shard_key = "user-17";
  h.priority = -3;
  return h;
}

sc::ConfigState SampleState() {
  sc::ConfigState state;
  sc::BackendConfig a;
  a.name = "model_a";
  a.handler = "echo";
  a.num_replicas = 3;
  a.max_batch_size = 16;
  a.batch_wait_timeout_ms = 5;
  a.max_concurrent_queries = 40;
  a.max_queued_requests = 500;
  a.retry_on_replica_failure = 2;
  a.user_config = "{threshold: 0.5}";
  sc::BackendConfig b;
  b.name = "model_b";
  b.handler = "sleep";
  b.num_replicas = 0;
  b.max_batch_size = 2;
  b.batch_wait_timeout_ms = 100;
  b.max_concurrent_queries = 1;
  b.max_queued_requests = 7;
  b.retry_on_replica_failure = 0;
  b.user_config = "";
  state.backends[a.name] = a;
  state.backends[b.name] = b;
  sc::EndpointConfig e;
  e.name = "classify";
  e.traffic = {{"model_a", 0.7}, {"model_b", 0.3}};
  e.shadow = {{"model_b", 0.25}};
  e.timeout_ms = 1234;
  state.endpoints[e.name] = e;
  return state;
}

}  // namespace

TEST_CASE("REQUEST round-trips every field", "[schemas]") {
  sc::RequestHeader h = SampleRequest();
  SECTION("ordinary values") {}
  SECTION("extreme values") {
    h.request_id = std::numeric_limits<uint64_t>::max();
    h.timeout_ms = std::numeric_limits<uint32_t>::max();
    h.priority = std::numeric_limits<int32_t>::min();
    h.shard_key = "";
    h.endpoint = std::string(sc::kMaxNameBytes, 'e');
  }
  std::string bytes = sc::EncodeRequest(h);
  auto cmd = sc::PeekCommand(bytes);
  REQUIRE(cmd.ok());
  CHECK(*cmd == sc::Command::kRequest);
  auto got = sc::DecodeRequest(bytes);
  REQUIRE(got.ok());
  CHECK(got->request_id == h.request_id);
  CHECK(got->endpoint == h.endpoint);
  CHECK(got->method == h.method);
  CHECK(got->timeout_ms == h.timeout_ms);
  CHECK(got->shard_key == h.shard_key);
  CHECK(got->priority == h.priority);
}

TEST_CASE("REPLY round-trips request id and status and message", "[schemas]") {
  sc::ReplyHeader h{77, StatusCode::kHandlerError, "division by zero"};
  auto got = sc::DecodeReply(sc::EncodeReply(h));
  REQUIRE(got.ok());
  CHECK(got->request_id == 77);
  CHECK(got->code == StatusCode::kHandlerError);
  CHECK(got->message == "division by zero");

  auto ok = sc::DecodeReply(sc::EncodeReply({1, StatusCode::kOk, ""}));
  REQUIRE(ok.ok());
  CHECK(ok->code == StatusCode::kOk);
  CHECK(ok->message.empty());
}

TEST_CASE("STATUS round-trips its request id", "[schemas]") {
  std::string bytes = sc::EncodeStatusRequest(123456789012345ull);
  auto cmd = sc::PeekCommand(bytes);
  REQUIRE(cmd.ok());
  CHECK(*cmd == sc::Command::kStatus);
  auto got = sc::DecodeStatusRequest(bytes);
  REQUIRE(got.ok());
  CHECK(*got == 123456789012345ull);
}

TEST_CASE("READY round-trips backend and tag and capacity", "[schemas]") {
  auto got = sc::DecodeReady(sc::EncodeReady({"model_a", "host-1/pid-99", 12}));
  REQUIRE(got.ok());
  CHECK(got->backend == "model_a");
  CHECK(got->replica_tag == "host-1/pid-99");
  CHECK(got->capacity == 12);
}

TEST_CASE("READY with an invalid backend name is refused", "[schemas]") {
  auto got = sc::DecodeReady(sc::EncodeReady({"bad name", "tag", 1}));
  REQUIRE_FALSE(got.ok());
  CHECK(got.status().code() == StatusCode::kBadRequest);
  CHECK_THAT(got.status().message(), Contains("bad name"));
}

TEST_CASE("BATCH round-trips several items in order", "[schemas]") {
  std::vector<sc::BatchItem> items = {
      {1, "__call__", 1000}, {2, "predict", 0}, {0xFFFFFFFFFFFFFFFFull, "m", 4294967295u}};
  auto got = sc::DecodeBatch(sc::EncodeBatch(items));
  REQUIRE(got.ok());
  REQUIRE(got->size() == 3);
  for (size_t i = 0; i < items.size(); ++i) {
    INFO("item " << i);
    CHECK((*got)[i].token == items[i].token);
    CHECK((*got)[i].method == items[i].method);
    CHECK((*got)[i].timeout_ms == items[i].timeout_ms);
  }
}

TEST_CASE("BATCH carries how its items split into handler batches", "[schemas]") {
  std::vector<sc::BatchItem> items = {{1, "m", 10}, {2, "m", 10}, {3, "m", 10}, {4, "m", 10}};
  std::vector<uint32_t> sizes;
  auto got = sc::DecodeBatch(sc::EncodeBatch(items, std::vector<uint32_t>{1, 2, 1}), &sizes);
  REQUIRE(got.ok());
  CHECK(got->size() == 4);
  CHECK(sizes == std::vector<uint32_t>{1, 2, 1});
  // Without sizes (or with one) the whole message is one batch.
  got = sc::DecodeBatch(sc::EncodeBatch(items), &sizes);
  REQUIRE(got.ok());
  CHECK(sizes == std::vector<uint32_t>{4});
  got = sc::DecodeBatch(sc::EncodeBatch(items, std::vector<uint32_t>{4}), &sizes);
  REQUIRE(got.ok());
  CHECK(sizes == std::vector<uint32_t>{4});
}

TEST_CASE("BATCH sizes that do not add up to its items are refused", "[schemas]") {
  std::vector<sc::BatchItem> items = {{1, "m", 10}, {2, "m", 10}, {3, "m", 10}};
  struct Case {
    std::vector<uint32_t> sizes;
    std::string error;
  };
  for (const Case& c : std::vector<Case>{{{1, 1}, "adds up to 2, not the 3 items"},
                                         {{2, 2}, "adds up to 4, not the 3 items"},
                                         {{3, 0}, "empty batch"},
                                         {{1, 5000}, "out of range"}}) {
    INFO(c.error);
    auto got = sc::DecodeBatch(sc::EncodeBatch(items, c.sizes));
    REQUIRE_FALSE(got.ok());
    CHECK(got.status().code() == StatusCode::kBadRequest);
    CHECK_THAT(got.status().message(), Contains(c.error));
  }
}

TEST_CASE("RESULTS round-trips OK and error items", "[schemas]") {
  std::vector<sc::ResultItem> items = {{10, StatusCode::kOk, ""},
                                       {11, StatusCode::kHandlerError, "boom"},
                                       {12, StatusCode::kDeadlineExceeded, "too late"}};
  auto got = sc::DecodeResults(sc::EncodeResults(items));
  REQUIRE(got.ok());
  REQUIRE(got->size() == 3);
  for (size_t i = 0; i < items.size(); ++i) {
    INFO("item " << i);
    CHECK((*got)[i].token == items[i].token);
    CHECK((*got)[i].code == items[i].code);
    CHECK((*got)[i].message == items[i].message);
  }
}

TEST_CASE("REQUESTS and REPLIES round-trip several calls in order", "[schemas]") {
  std::vector<sc::RequestHeader> calls = {{1, "echo", "__call__", 100, "", 0},
                                          {2, "dense", "score", 0, "user-7", 1},
                                          {3, "echo", "upper", 4'000'000'000u, "k", -1}};
  auto got = sc::DecodeRequests(sc::EncodeRequests(calls));
  REQUIRE(got.ok());
  REQUIRE(got->size() == calls.size());
  for (size_t i = 0; i < calls.size(); ++i) {
    INFO("call " << i);
    CHECK((*got)[i].request_id == calls[i].request_id);
    CHECK((*got)[i].endpoint == calls[i].endpoint);
    CHECK((*got)[i].method == calls[i].method);
    CHECK((*got)[i].timeout_ms == calls[i].timeout_ms);
    CHECK((*got)[i].shard_key == calls[i].shard_key);
    CHECK((*got)[i].priority == calls[i].priority);
  }
  std::vector<sc::ReplyHeader> replies = {{1, StatusCode::kOk, ""},
                                          {2, StatusCode::kOverloaded, "full"}};
  auto back = sc::DecodeReplies(sc::EncodeReplies(replies));
  REQUIRE(back.ok());
  REQUIRE(back->size() == 2);
  CHECK((*back)[1].request_id == 2);
  CHECK((*back)[1].code == StatusCode::kOverloaded);
  CHECK((*back)[1].message == "full");
  CHECK(sc::PeekCommandFast(sc::EncodeRequests(calls)) == sc::Command::kRequests);
  CHECK(sc::PeekCommandFast(sc::EncodeRequest(calls[0])) == sc::Command::kRequest);
  CHECK(sc::PeekCommandFast("not a header") == std::nullopt);
}

TEST_CASE("REQUESTS refuses no calls, too many, and a bad call naming the field", "[schemas]") {
  CHECK_THAT(sc::DecodeRequests(sc::EncodeRequests({})).status().message(),
             Catch::Contains("no calls"));
  std::vector<sc::RequestHeader> many(sc::kMaxCallsPerMessage + 1,
                                      sc::RequestHeader{1, "echo", "__call__", 0, "", 0});
  CHECK_THAT(sc::DecodeRequests(sc::EncodeRequests(many)).status().message(),
             Catch::Contains("at most 256"));
  std::vector<sc::RequestHeader> bad = {{1, "echo", "__call__", 0, "", 0},
                                        {2, "no spaces allowed", "__call__", 0, "", 0}};
  auto got = sc::DecodeRequests(sc::EncodeRequests(bad));
  CHECK(got.status().code() == StatusCode::kBadRequest);
  CHECK_THAT(got.status().message(), Catch::Contains("endpoint"));
  // A REQUEST is not a REQUESTS, and the other way round.
  CHECK_FALSE(sc::DecodeRequests(sc::EncodeRequest(bad[0])).ok());
  CHECK_FALSE(sc::DecodeRequest(sc::EncodeRequests({bad[0]})).ok());
}

TEST_CASE("REQUESTS with call_errors lists a bad call alone and keeps the others", "[schemas]") {
  std::vector<sc::RequestHeader> calls = {{1, "echo", "__call__", 0, "", 0},
                                          {2, "no spaces allowed", "__call__", 0, "", 0},
                                          {3, "echo", "__call__", 7, "key", 0},
                                          {4, "echo", "", 0, "", 0}};
  sc::CallErrors errors = {{9, Status::Ok()}};  // cleared first
  auto got = sc::DecodeRequests(sc::EncodeRequests(calls), nullptr, &errors);
  REQUIRE(got.ok());
  REQUIRE(got->size() == 4);
  CHECK((*got)[0] == calls[0]);
  CHECK((*got)[2] == calls[2]);
  CHECK((*got)[1].request_id == 2);
  CHECK((*got)[3].request_id == 4);
  REQUIRE(errors.size() == 2);
  CHECK(errors[0].first == 1);
  CHECK(errors[0].second.code() == StatusCode::kBadRequest);
  CHECK_THAT(errors[0].second.message(), Catch::Contains("character outside"));
  CHECK(errors[1].first == 3);
  CHECK_THAT(errors[1].second.message(), Catch::Contains("method"));
  // A good message leaves the list empty, on the fast path too.
  CHECK(sc::DecodeRequests(sc::EncodeRequests({calls[0], calls[2]}), nullptr, &errors).ok());
  CHECK(errors.empty());
  // A call whose request_id cannot be read still fails the whole message.
  std::string no_id = Raw([](Packer& p) {
    p.pack_array(3);
    p.pack(uint64_t{1});
    p.pack(static_cast<uint64_t>(sc::Command::kRequests));
    p.pack_array(1);
    p.pack_array(6);
    Str(p, "not an id");
    Str(p, "echo");
    Str(p, "__call__");
    p.pack(uint32_t{0});
    Str(p, "");
    p.pack(int32_t{0});
  });
  CHECK_FALSE(sc::DecodeRequests(no_id, nullptr, &errors).ok());
}

TEST_CASE("RESULTS cuts an over-long message to the 4096-byte limit", "[schemas]") {
  std::string long_message(sc::kMaxMessageBytes + 500, 'x');
  auto got = sc::DecodeResults(sc::EncodeResults({{5, StatusCode::kHandlerError, long_message}}));
  REQUIRE(got.ok());
  REQUIRE(got->size() == 1);
  CHECK((*got)[0].message == long_message.substr(0, sc::kMaxMessageBytes));
}

TEST_CASE("Simple commands are recognised by PeekCommand", "[schemas]") {
  for (sc::Command c :
       {sc::Command::kDisconnect, sc::Command::kHeartbeat, sc::Command::kSnapshotRequest}) {
    INFO(sc::CommandName(c));
    std::string bytes = sc::EncodeSimple(c);
    auto got = sc::PeekCommand(bytes);
    REQUIRE(got.ok());
    CHECK(*got == c);
    // Exactly [1, command].
    CHECK(bytes == Raw([&](Packer& p) {
            p.pack_array(2);
            p.pack(uint64_t{1});
            p.pack(static_cast<uint64_t>(c));
          }));
  }
}

TEST_CASE("SNAPSHOT and UPDATE round-trip a non-trivial state", "[schemas]") {
  const sc::ConfigState state = SampleState();
  REQUIRE(sc::Validate(state).ok());
  for (sc::Command c : {sc::Command::kSnapshot, sc::Command::kUpdate}) {
    INFO(sc::CommandName(c));
    std::string bytes = sc::EncodeSnapshot(c, {9, state});
    auto cmd = sc::PeekCommand(bytes);
    REQUIRE(cmd.ok());
    CHECK(*cmd == c);
    auto got = sc::DecodeSnapshot(bytes);
    REQUIRE(got.ok());
    CHECK(got->version == 9);
    CHECK(got->state == state);
    // Field by field too, so that a failure says which one.
    const sc::BackendConfig& a = got->state.backends.at("model_a");
    CHECK(a.handler == "echo");
    CHECK(a.num_replicas == 3);
    CHECK(a.max_batch_size == 16);
    CHECK(a.batch_wait_timeout_ms == 5);
    CHECK(a.max_concurrent_queries == 40);
    CHECK(a.max_queued_requests == 500);
    CHECK(a.retry_on_replica_failure == 2);
    CHECK(a.user_config == "{threshold: 0.5}");
    const sc::EndpointConfig& e = got->state.endpoints.at("classify");
    CHECK(e.traffic.at("model_a") == 0.7);
    CHECK(e.traffic.at("model_b") == 0.3);
    CHECK(e.shadow.at("model_b") == 0.25);
    CHECK(e.timeout_ms == 1234);
  }
}

TEST_CASE("SNAPSHOT of an empty state round-trips", "[schemas]") {
  auto got = sc::DecodeSnapshot(sc::EncodeSnapshot(sc::Command::kSnapshot, {0, {}}));
  REQUIRE(got.ok());
  CHECK(got->version == 0);
  CHECK(got->state == sc::ConfigState{});
}

TEST_CASE("SNAPSHOT: missing state keys take their defaults and unknown keys are ignored",
          "[schemas]") {
  std::string bytes = Raw([](Packer& p) {
    p.pack_array(4);
    p.pack(uint64_t{1});
    p.pack(uint64_t{33});
    p.pack(uint64_t{3});
    p.pack_map(2);
    Str(p, "backends");
    p.pack_array(1);
    p.pack_map(2);  // no handler: it defaults to the backend's name
    Str(p, "name");
    Str(p, "echo");
    Str(p, "from_the_future");
    p.pack(uint64_t{5});
    Str(p, "endpoints");
    p.pack_array(1);
    p.pack_map(2);
    Str(p, "name");
    Str(p, "echo");
    Str(p, "traffic");
    p.pack_map(1);
    Str(p, "echo");
    p.pack(uint64_t{1});  // an integer weight is a number too
  });
  auto got = sc::DecodeSnapshot(bytes);
  REQUIRE(got.ok());
  const sc::BackendConfig& b = got->state.backends.at("echo");
  CHECK(b.handler == "echo");
  CHECK(b.num_replicas == 1);
  CHECK(b.max_batch_size == 1);
  CHECK(b.max_concurrent_queries == 0);
  CHECK(b.max_queued_requests == sc::kDefaultMaxQueuedRequests);
  CHECK(b.retry_on_replica_failure == 1);
  const sc::EndpointConfig& e = got->state.endpoints.at("echo");
  CHECK(e.traffic.at("echo") == 1.0);
  CHECK(e.shadow.empty());
  CHECK(e.timeout_ms == sc::kDefaultTimeoutMs);
}

TEST_CASE("CONTROLLER_HEARTBEAT round-trips its version", "[schemas]") {
  std::string bytes = sc::EncodeControllerHeartbeat(31);
  auto cmd = sc::PeekCommand(bytes);
  REQUIRE(cmd.ok());
  CHECK(*cmd == sc::Command::kControllerHeartbeat);
  auto got = sc::DecodeControllerHeartbeat(bytes);
  REQUIRE(got.ok());
  CHECK(*got == 31);
}

TEST_CASE("ERROR round-trips code and message and refuses OK", "[schemas]") {
  auto got = sc::DecodeError(sc::EncodeError(zserve::Unavailable("controller busy")));
  REQUIRE(got.ok());
  CHECK(got->code == StatusCode::kUnavailable);
  CHECK(got->message == "controller busy");

  auto ok = sc::DecodeError(sc::EncodeError(Status::Ok()));
  REQUIRE_FALSE(ok.ok());
  CHECK(ok.status().code() == StatusCode::kBadRequest);
}

TEST_CASE("Extra trailing elements are ignored", "[schemas]") {
  std::string bytes = Raw([](Packer& p) {
    p.pack_array(4);
    p.pack(uint64_t{1});
    p.pack(uint64_t{3});
    p.pack(uint64_t{8});
    Str(p, "added later in version 1");
  });
  auto got = sc::DecodeStatusRequest(bytes);
  REQUIRE(got.ok());
  CHECK(*got == 8);
}

TEST_CASE("Nesting up to the limit of 8 is accepted", "[schemas]") {
  auto got = sc::DecodeStatusRequest(NestedStatus(8));
  INFO(got.status().ToString());
  REQUIRE(got.ok());
  CHECK(*got == 7);
}

TEST_CASE("Malformed headers are refused with BAD_REQUEST saying what is wrong", "[schemas]") {
  using Decode = std::function<Status(std::string_view)>;
  const Decode request = [](std::string_view h) -> Status { return sc::DecodeRequest(h).status(); };
  const Decode batch = [](std::string_view h) -> Status { return sc::DecodeBatch(h).status(); };
  const Decode results = [](std::string_view h) -> Status { return sc::DecodeResults(h).status(); };
  const Decode status = [](std::string_view h) -> Status {
    return sc::DecodeStatusRequest(h).status();
  };
  const Decode peek = [](std::string_view h) -> Status { return sc::PeekCommand(h).status(); };

  const std::string valid_request = sc::EncodeRequest(SampleRequest());

  struct Case {
    std::string name;
    std::string header;
    Decode decode;
    std::string want;  // a substring of the message
  };
  const std::vector<Case> cases = {
      {"empty header", "", request, "empty"},
      {"not MessagePack", std::string("\xc1", 1), request, "not valid MessagePack"},
      {"a map instead of an array", Raw([](Packer& p) {
         p.pack_map(1);
         p.pack(uint64_t{1});
         p.pack(uint64_t{1});
       }),
       request, "not a MessagePack array"},
      {"an array of 1 element", Raw([](Packer& p) {
         p.pack_array(1);
         p.pack(uint64_t{1});
       }),
       request, "fewer than 2 elements"},
      {"protocol version 2", Raw([](Packer& p) {
         p.pack_array(3);
         p.pack(uint64_t{2});
         p.pack(uint64_t{3});
         p.pack(uint64_t{1});
       }),
       status, "version"},
      {"unknown command 99", Raw([](Packer& p) {
         p.pack_array(2);
         p.pack(uint64_t{1});
         p.pack(uint64_t{99});
       }),
       peek, "unknown command 99"},
      {"command 257 (wraps to REQUEST in 8 bits)", Raw([](Packer& p) {
         p.pack_array(2);
         p.pack(uint64_t{1});
         p.pack(uint64_t{257});
       }),
       peek, "unknown command 257"},
      {"REQUEST cut in half", valid_request.substr(0, valid_request.size() / 2), request,
       "not valid MessagePack"},
      {"REQUEST with 5 elements", Raw([](Packer& p) {
         p.pack_array(5);
         p.pack(uint64_t{1});
         p.pack(uint64_t{1});
         p.pack(uint64_t{7});
         Str(p, "echo");
         Str(p, "__call__");
       }),
       request, "needs 8"},
      {"request_id as a string", Raw([](Packer& p) {
         p.pack_array(8);
         p.pack(uint64_t{1});
         p.pack(uint64_t{1});
         Str(p, "7");
         Str(p, "echo");
         Str(p, "__call__");
         p.pack(uint32_t{0});
         Str(p, "");
         p.pack(int32_t{0});
       }),
       request, "request_id"},
      {"endpoint as an integer", RawRequest(7, [](Packer& p) { p.pack(uint64_t{5}); }), request,
       "'endpoint' must be a string"},
      {"empty endpoint", RawRequest(7, [](Packer& p) { Str(p, ""); }), request,
       "'endpoint' is empty"},
      {"endpoint of 129 bytes",
       RawRequest(7, [](Packer& p) { Str(p, std::string(sc::kMaxNameBytes + 1, 'a')); }), request,
       "more than 128"},
      {"header larger than 64 KiB", Raw([](Packer& p) {
         // A STATUS whose (ignored) extra element makes the frame too big.
         p.pack_array(4);
         p.pack(uint64_t{1});
         p.pack(uint64_t{3});
         p.pack(uint64_t{7});
         Str(p, std::string(sc::kMaxHeaderBytes, 'x'));
       }),
       status, "more than 65536"},
      {"nesting deeper than 8", NestedStatus(9), status, "not valid MessagePack"},
      {"trailing bytes after a valid header", sc::EncodeStatusRequest(7) + std::string(1, '\0'),
       status, "trailing bytes"},
      {"BATCH with zero items", sc::EncodeBatch({}), batch, "no items"},
      {"BATCH with more than 4096 items", Raw([](Packer& p) {
         p.pack_array(3);
         p.pack(uint64_t{1});
         p.pack(uint64_t{17});
         p.pack_array(sc::kMaxBatchItems + 1);
         for (size_t i = 0; i <= sc::kMaxBatchItems; ++i) {
           p.pack_array(3);
           p.pack(uint64_t{i});
           Str(p, "m");
           p.pack(uint32_t{1});
         }
       }),
       batch, "too many items"},
      {"BATCH item that is not a 3-array", Raw([](Packer& p) {
         p.pack_array(3);
         p.pack(uint64_t{1});
         p.pack(uint64_t{17});
         p.pack_array(2);
         p.pack_array(3);
         p.pack(uint64_t{1});
         Str(p, "m");
         p.pack(uint32_t{1});
         p.pack_array(2);
         p.pack(uint64_t{2});
         Str(p, "m");
       }),
       batch, "array of 3 elements"},
      {"RESULTS with status 200", Raw([](Packer& p) {
         p.pack_array(3);
         p.pack(uint64_t{1});
         p.pack(uint64_t{18});
         p.pack_array(1);
         p.pack_array(3);
         p.pack(uint64_t{1});
         p.pack(uint64_t{200});
         Str(p, "");
       }),
       results, "not a status code"},
      {"a REPLY decoded as a REQUEST", sc::EncodeReply({1, StatusCode::kOk, ""}), request,
       "expected REQUEST, got REPLY"},
      {"a REQUEST decoded as a BATCH", valid_request, batch, "expected BATCH, got REQUEST"},
  };
  for (const Case& c : cases) {
    INFO("case: " << c.name);
    Status s = c.decode(c.header);
    CHECK_FALSE(s.ok());
    CHECK(s.code() == StatusCode::kBadRequest);
    CHECK_THAT(s.message(), Contains(c.want));
  }
}

TEST_CASE("A header claiming a huge array is refused at once without allocating it", "[schemas]") {
  // array32 of 2^32 - 1 elements: 96 GiB of msgpack::object if believed.
  const std::string bare("\xdd\xff\xff\xff\xff", 5);
  // The same claim inside a plausible BATCH header.
  const std::string in_batch("\x93\x01\x11\xdd\xff\xff\xff\xff", 8);
  // map32 of 2^32 - 1 pairs where a SNAPSHOT expects its state.
  const std::string map_claim("\x94\x01\x21\x01\xdf\xff\xff\xff\xff", 9);
  for (const std::string& header : {bare, in_batch, map_claim}) {
    auto peek = sc::PeekCommand(header);
    const Status got = header == map_claim ? sc::DecodeSnapshot(header).status()
                                           : sc::DecodeBatch(header).status();
    REQUIRE_FALSE(peek.ok());
    REQUIRE_FALSE(got.ok());
    CHECK(got.code() == StatusCode::kBadRequest);
    CHECK_THAT(got.message(), Contains("not valid MessagePack"));
    // Refused by a parser limit before any allocation, not by a failed one.
    CHECK_THAT(got.message(), !Contains("bad_alloc"));
    CHECK_THAT(peek.status().message(), !Contains("bad_alloc"));
  }
}

TEST_CASE("PeekRequestId reads the id of a REQUEST whose other fields are invalid", "[schemas]") {
  uint64_t id = 0;
  const std::string empty_endpoint = RawRequest(4242, [](Packer& p) { Str(p, ""); });
  REQUIRE_FALSE(sc::DecodeRequest(empty_endpoint).ok());
  CHECK(sc::PeekRequestId(empty_endpoint, &id));
  CHECK(id == 4242);

  id = 0;
  const std::string int_endpoint = RawRequest(99, [](Packer& p) { p.pack(uint64_t{3}); });
  REQUIRE_FALSE(sc::DecodeRequest(int_endpoint).ok());
  CHECK(sc::PeekRequestId(int_endpoint, &id));
  CHECK(id == 99);

  id = 0;
  sc::RequestHeader bad_name = SampleRequest();
  bad_name.request_id = 31337;
  bad_name.endpoint = "no spaces allowed";
  const std::string bad_name_bytes = sc::EncodeRequest(bad_name);
  REQUIRE_FALSE(sc::DecodeRequest(bad_name_bytes).ok());
  CHECK(sc::PeekRequestId(bad_name_bytes, &id));
  CHECK(id == 31337);

  id = 0;
  CHECK(sc::PeekRequestId(sc::EncodeStatusRequest(5), &id));
  CHECK(id == 5);

  // Non-negative signed encodings, which the decoder accepts (fuzz_codec):
  // STATUS as [int8 1, int8 3, int16 300].
  id = 0;
  CHECK(sc::PeekRequestId(std::string("\x93\xd0\x01\xd0\x03\xd1\x01\x2c", 8), &id));
  CHECK(id == 300);
  id = 0;
  CHECK_FALSE(sc::PeekRequestId(std::string("\x93\xd0\x01\xd0\x03\xd0\xff", 7), &id));
}

TEST_CASE("PeekRequestId gives up on headers without a readable id", "[schemas]") {
  uint64_t id = 17;
  CHECK_FALSE(sc::PeekRequestId("", &id));
  CHECK_FALSE(sc::PeekRequestId(std::string("\xc1", 1), &id));
  CHECK_FALSE(sc::PeekRequestId(sc::EncodeReply({3, StatusCode::kOk, ""}), &id));
  CHECK_FALSE(sc::PeekRequestId(Raw([](Packer& p) {
                                  p.pack_array(3);
                                  p.pack(uint64_t{1});
                                  p.pack(uint64_t{1});
                                  Str(p, "not an id");
                                }),
                                &id));
  CHECK(id == 17);
}

// PROTOCOL.md §3: "Names (endpoints, backends) are 1 to 128 characters of
// [A-Za-z0-9_.-]; methods are 1 to 128 printable ASCII characters." DecodeReady
// enforces this for the backend; DecodeRequest should for endpoint and method.
TEST_CASE("REQUEST with an endpoint that is not a valid name is refused", "[schemas]") {
  sc::RequestHeader h = SampleRequest();
  h.endpoint = "bad endpoint";
  auto got = sc::DecodeRequest(sc::EncodeRequest(h));
  CHECK_FALSE(got.ok());
  CHECK(got.status().code() == StatusCode::kBadRequest);
  CHECK_THAT(got.status().message(), Contains("endpoint"));
}

TEST_CASE("REQUEST with a method that is not printable ASCII is refused", "[schemas]") {
  sc::RequestHeader h = SampleRequest();
  h.method = std::string("pre\ndict");
  auto got = sc::DecodeRequest(sc::EncodeRequest(h));
  CHECK_FALSE(got.ok());
  CHECK(got.status().code() == StatusCode::kBadRequest);
  CHECK_THAT(got.status().message(), Contains("method"));
}

// What the controller accepts, every broker must be able to read: a state that
// Validate() passes round-trips through SNAPSHOT (or Validate must refuse it).
TEST_CASE("Every state that Validate accepts can be decoded from a SNAPSHOT", "[schemas]") {
  sc::ConfigState state;
  std::string what;
  SECTION("5000 backends") {
    what = "5000 backends";
    for (int i = 0; i < 5000; ++i) {
      sc::BackendConfig b;
      b.name = "backend-" + std::to_string(i);
      b.handler = "echo";
      state.backends[b.name] = b;
    }
  }
  SECTION("5000 endpoints") {
    what = "5000 endpoints";
    sc::BackendConfig b;
    b.name = "echo";
    b.handler = "echo";
    state.backends[b.name] = b;
    for (int i = 0; i < 5000; ++i) {
      sc::EndpointConfig e;
      e.name = "endpoint-" + std::to_string(i);
      e.traffic = {{"echo", 1.0}};
      state.endpoints[e.name] = e;
    }
  }
  SECTION("a handler name of 200 bytes") {
    what = "a handler name of 200 bytes";
    sc::BackendConfig b;
    b.name = "custom";
    b.handler = std::string(200, 'h');
    state.backends[b.name] = b;
  }
  if (!sc::Validate(state).ok()) {
    SUCCEED("Validate refuses it: " << sc::Validate(state).message());
    return;
  }
  auto got = sc::DecodeSnapshot(sc::EncodeSnapshot(sc::Command::kSnapshot, {1, state}));
  INFO(what << ": " << got.status().ToString());
  REQUIRE(got.ok());
  CHECK(got->state == state);
}

// Packed payloads (PROTOCOL.md 3.1): `payload_sizes`, one per item, as an
// optional trailing element of REQUESTS, REPLIES, BATCH and RESULTS.
namespace {

// `header` (an encoder's) with one more trailing element, written by `extra`.
std::string WithExtra(const std::string& header, const std::function<void(Packer&)>& extra) {
  msgpack::object_handle handle = msgpack::unpack(header.data(), header.size());
  const msgpack::object& top = handle.get();
  return Raw([&](Packer& p) {
    p.pack_array(top.via.array.size + 1);
    for (uint32_t i = 0; i < top.via.array.size; ++i) p.pack(top.via.array.ptr[i]);
    extra(p);
  });
}

// The number of elements of `header`'s top-level array.
uint32_t TopSize(const std::string& header) {
  msgpack::object_handle handle = msgpack::unpack(header.data(), header.size());
  return handle.get().via.array.size;
}

std::vector<sc::RequestHeader> ThreeCalls() {
  return {{1, "echo", "__call__", 100, "", 0},
          {2, "dense", "score", 0, "user-7", 1},
          {3, "echo", "upper", 7, "k", -1}};
}
std::vector<sc::ReplyHeader> ThreeReplies() {
  return {{1, StatusCode::kOk, ""}, {2, StatusCode::kOverloaded, "full"}, {3, StatusCode::kOk, ""}};
}
std::vector<sc::BatchItem> ThreeBatchItems() { return {{1, "m", 10}, {2, "m", 10}, {3, "n", 20}}; }
std::vector<sc::ResultItem> ThreeResults() {
  return {{10, StatusCode::kOk, ""},
          {11, StatusCode::kHandlerError, "boom"},
          {12, StatusCode::kOk, ""}};
}

// Payload sizes with zero, small and the largest values.
const std::vector<uint64_t> kPayloadSizes = {0, 17, std::numeric_limits<uint64_t>::max()};

}  // namespace

TEST_CASE("REQUESTS and REPLIES round-trip payload_sizes", "[schemas]") {
  const std::vector<sc::RequestHeader> calls = ThreeCalls();
  std::vector<uint64_t> got_sizes = {99};
  auto got = sc::DecodeRequests(sc::EncodeRequests(calls, kPayloadSizes), &got_sizes);
  REQUIRE(got.ok());
  REQUIRE(got->size() == 3);
  CHECK((*got)[1].request_id == 2);
  CHECK((*got)[1].shard_key == "user-7");
  CHECK(got_sizes == kPayloadSizes);
  CHECK(TopSize(sc::EncodeRequests(calls, kPayloadSizes)) == 4);

  got_sizes = {99};
  auto back = sc::DecodeReplies(sc::EncodeReplies(ThreeReplies(), kPayloadSizes), &got_sizes);
  REQUIRE(back.ok());
  REQUIRE(back->size() == 3);
  CHECK((*back)[1].code == StatusCode::kOverloaded);
  CHECK((*back)[1].message == "full");
  CHECK(got_sizes == kPayloadSizes);
  CHECK(TopSize(sc::EncodeReplies(ThreeReplies(), kPayloadSizes)) == 4);

  // Without a place to put them, they are checked and dropped.
  CHECK(sc::DecodeRequests(sc::EncodeRequests(calls, kPayloadSizes)).ok());
  CHECK(sc::DecodeReplies(sc::EncodeReplies(ThreeReplies(), kPayloadSizes)).ok());
}

TEST_CASE("BATCH round-trips payload_sizes with and without a split", "[schemas]") {
  const std::vector<sc::BatchItem> items = ThreeBatchItems();
  std::vector<uint32_t> sizes;
  std::vector<uint64_t> got_sizes = {99};
  SECTION("one handler batch: sizes is written as one element before payload_sizes") {
    const std::string bytes = sc::EncodeBatch(items, {}, kPayloadSizes);
    CHECK(TopSize(bytes) == 5);
    auto got = sc::DecodeBatch(bytes, &sizes, &got_sizes);
    REQUIRE(got.ok());
    REQUIRE(got->size() == 3);
    CHECK((*got)[2].token == 3);
    CHECK((*got)[2].method == "n");
    CHECK((*got)[2].timeout_ms == 20);
    CHECK(sizes == std::vector<uint32_t>{3});
    CHECK(got_sizes == kPayloadSizes);
  }
  SECTION("one handler batch given as one size") {
    auto got = sc::DecodeBatch(sc::EncodeBatch(items, std::vector<uint32_t>{3}, kPayloadSizes),
                               &sizes, &got_sizes);
    REQUIRE(got.ok());
    CHECK(sizes == std::vector<uint32_t>{3});
    CHECK(got_sizes == kPayloadSizes);
  }
  SECTION("split into handler batches") {
    auto got = sc::DecodeBatch(sc::EncodeBatch(items, std::vector<uint32_t>{2, 1}, kPayloadSizes),
                               &sizes, &got_sizes);
    REQUIRE(got.ok());
    CHECK(got->size() == 3);
    CHECK(sizes == std::vector<uint32_t>{2, 1});
    CHECK(got_sizes == kPayloadSizes);
  }
  SECTION("payload_sizes without sizes to receive the split") {
    auto got = sc::DecodeBatch(sc::EncodeBatch(items, std::vector<uint32_t>{1, 2}, kPayloadSizes),
                               nullptr, &got_sizes);
    REQUIRE(got.ok());
    CHECK(got_sizes == kPayloadSizes);
  }
}

TEST_CASE("RESULTS round-trips payload_sizes", "[schemas]") {
  std::vector<uint64_t> got_sizes = {99};
  const std::string bytes = sc::EncodeResults(ThreeResults(), kPayloadSizes);
  CHECK(TopSize(bytes) == 4);
  auto got = sc::DecodeResults(bytes, &got_sizes);
  REQUIRE(got.ok());
  REQUIRE(got->size() == 3);
  CHECK((*got)[1].token == 11);
  CHECK((*got)[1].code == StatusCode::kHandlerError);
  CHECK((*got)[1].message == "boom");
  CHECK(got_sizes == kPayloadSizes);
}

TEST_CASE("Headers without payload_sizes keep their old form and decode to no sizes", "[schemas]") {
  // A stale vector is cleared, not left as it was.
  std::vector<uint64_t> got_sizes = {1, 2, 3};
  const std::string requests = sc::EncodeRequests(ThreeCalls());
  CHECK(TopSize(requests) == 3);
  REQUIRE(sc::DecodeRequests(requests, &got_sizes).ok());
  CHECK(got_sizes.empty());

  got_sizes = {1, 2, 3};
  const std::string replies = sc::EncodeReplies(ThreeReplies());
  CHECK(TopSize(replies) == 3);
  REQUIRE(sc::DecodeReplies(replies, &got_sizes).ok());
  CHECK(got_sizes.empty());

  got_sizes = {1, 2, 3};
  std::vector<uint32_t> sizes;
  const std::string batch = sc::EncodeBatch(ThreeBatchItems());
  CHECK(TopSize(batch) == 3);
  REQUIRE(sc::DecodeBatch(batch, &sizes, &got_sizes).ok());
  CHECK(sizes == std::vector<uint32_t>{3});
  CHECK(got_sizes.empty());

  got_sizes = {1, 2, 3};
  const std::string split = sc::EncodeBatch(ThreeBatchItems(), std::vector<uint32_t>{1, 2});
  CHECK(TopSize(split) == 4);
  REQUIRE(sc::DecodeBatch(split, &sizes, &got_sizes).ok());
  CHECK(sizes == std::vector<uint32_t>{1, 2});
  CHECK(got_sizes.empty());

  got_sizes = {1, 2, 3};
  const std::string results = sc::EncodeResults(ThreeResults());
  CHECK(TopSize(results) == 3);
  REQUIRE(sc::DecodeResults(results, &got_sizes).ok());
  CHECK(got_sizes.empty());

  // Exactly the bytes of a header built by hand in the old form.
  CHECK(sc::EncodeResults({{5, StatusCode::kOk, ""}}) == Raw([](Packer& p) {
          p.pack_array(3);
          p.pack(uint64_t{1});
          p.pack(uint64_t{18});
          p.pack_array(1);
          p.pack_array(3);
          p.pack(uint64_t{5});
          p.pack(uint64_t{0});
          Str(p, "");
        }));
}

TEST_CASE("Malformed payload_sizes are refused with BAD_REQUEST naming payload_sizes",
          "[schemas]") {
  using Decode = std::function<Status(std::string_view)>;
  struct Kind {
    std::string name;
    std::string header;  // valid, of 3 items, with everything before payload_sizes
    Decode decode;
  };
  const std::vector<Kind> kinds = {
      {"REQUESTS", sc::EncodeRequests(ThreeCalls()),
       [](std::string_view h) -> Status { return sc::DecodeRequests(h).status(); }},
      {"REPLIES", sc::EncodeReplies(ThreeReplies()),
       [](std::string_view h) -> Status { return sc::DecodeReplies(h).status(); }},
      {"BATCH", sc::EncodeBatch(ThreeBatchItems(), std::vector<uint32_t>{2, 1}),
       [](std::string_view h) -> Status { return sc::DecodeBatch(h).status(); }},
      {"RESULTS", sc::EncodeResults(ThreeResults()),
       [](std::string_view h) -> Status { return sc::DecodeResults(h).status(); }},
  };
  struct Bad {
    std::string name;
    std::function<void(Packer&)> payload_sizes;
  };
  const std::vector<Bad> bads = {
      {"two sizes for three items",
       [](Packer& p) {
         p.pack_array(2);
         p.pack(uint64_t{1});
         p.pack(uint64_t{2});
       }},
      {"four sizes for three items",
       [](Packer& p) {
         p.pack_array(4);
         for (uint64_t n = 0; n < 4; ++n) p.pack(n);
       }},
      {"no sizes for three items", [](Packer& p) { p.pack_array(0); }},
      {"an integer instead of an array", [](Packer& p) { p.pack(uint64_t{3}); }},
      {"a map instead of an array",
       [](Packer& p) {
         p.pack_map(1);
         p.pack(uint64_t{0});
         p.pack(uint64_t{1});
       }},
      {"nil instead of an array", [](Packer& p) { p.pack_nil(); }},
      {"a string element",
       [](Packer& p) {
         p.pack_array(3);
         p.pack(uint64_t{1});
         Str(p, "2");
         p.pack(uint64_t{3});
       }},
      {"a negative element",
       [](Packer& p) {
         p.pack_array(3);
         p.pack(uint64_t{1});
         p.pack(int64_t{-2});
         p.pack(uint64_t{3});
       }},
      {"a float element",
       [](Packer& p) {
         p.pack_array(3);
         p.pack(uint64_t{1});
         p.pack(uint64_t{2});
         p.pack(2.5);
       }},
      {"a nested array element",
       [](Packer& p) {
         p.pack_array(3);
         p.pack_array(1);
         p.pack(uint64_t{1});
         p.pack(uint64_t{2});
         p.pack(uint64_t{3});
       }},
  };
  for (const Kind& k : kinds) {
    REQUIRE(k.decode(k.header).ok());
    // The same with well-formed payload_sizes is accepted.
    REQUIRE(k.decode(WithExtra(k.header, [](Packer& p) {
               p.pack_array(3);
               for (uint64_t n : {0, 1, 2}) p.pack(n);
             })).ok());
    for (const Bad& b : bads) {
      INFO(k.name << ": " << b.name);
      Status s = k.decode(WithExtra(k.header, b.payload_sizes));
      CHECK_FALSE(s.ok());
      CHECK(s.code() == StatusCode::kBadRequest);
      CHECK_THAT(s.message(), Contains("payload_sizes"));
    }
  }
  // Through the encoders too: a count that does not match the items.
  const std::vector<uint64_t> two = {1, 2};
  CHECK_THAT(sc::DecodeRequests(sc::EncodeRequests(ThreeCalls(), two)).status().message(),
             Contains("payload_sizes"));
  CHECK_THAT(sc::DecodeReplies(sc::EncodeReplies(ThreeReplies(), two)).status().message(),
             Contains("payload_sizes"));
  CHECK_THAT(sc::DecodeBatch(sc::EncodeBatch(ThreeBatchItems(), {}, two)).status().message(),
             Contains("payload_sizes"));
  CHECK_THAT(sc::DecodeResults(sc::EncodeResults(ThreeResults(), two)).status().message(),
             Contains("payload_sizes"));
}

TEST_CASE("READY round-trips packed and writes it only when true", "[schemas]") {
  sc::ReadyHeader h{"model_a", "host-1/pid-99", 12, true};
  const std::string bytes = sc::EncodeReady(h);
  CHECK(TopSize(bytes) == 6);
  auto got = sc::DecodeReady(bytes);
  REQUIRE(got.ok());
  CHECK(got->backend == "model_a");
  CHECK(got->replica_tag == "host-1/pid-99");
  CHECK(got->capacity == 12);
  CHECK(got->packed);

  h.packed = false;
  const std::string old_form = sc::EncodeReady(h);
  CHECK(TopSize(old_form) == 5);
  got = sc::DecodeReady(old_form);
  REQUIRE(got.ok());
  CHECK_FALSE(got->packed);

  // An explicit false is read as false.
  got = sc::DecodeReady(WithExtra(old_form, [](Packer& p) { p.pack(false); }));
  REQUIRE(got.ok());
  CHECK_FALSE(got->packed);
}

TEST_CASE("READY carries the worker's heartbeat interval when it names one", "[schemas]") {
  sc::ReadyHeader h{"model_a", "tag", 1, false, 250};
  std::string bytes = sc::EncodeReady(h);
  CHECK(TopSize(bytes) == 7);  // packed written as false to reach it
  auto got = sc::DecodeReady(bytes);
  REQUIRE(got.ok());
  CHECK(*got == h);
  CHECK(sc::DecodeReady(sc::EncodeReady({"model_a", "tag", 1, true})).value().heartbeat_ms == 0);

  for (uint32_t bad : {1u, 9u, 60'001u}) {
    INFO(bad);
    h.heartbeat_ms = bad;
    auto refused = sc::DecodeReady(sc::EncodeReady(h));
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.status().code() == StatusCode::kBadRequest);
    CHECK_THAT(refused.status().message(), Contains("heartbeat_ms must be 10..60000"));
  }
  const std::string with_packed = sc::EncodeReady({"model_a", "tag", 1, true});
  auto not_uint = sc::DecodeReady(WithExtra(with_packed, [](Packer& p) { Str(p, "100"); }));
  REQUIRE_FALSE(not_uint.ok());
  CHECK_THAT(not_uint.status().message(), Contains("heartbeat_ms"));
}

TEST_CASE("READY whose packed element is not a boolean is refused", "[schemas]") {
  const std::string old_form = sc::EncodeReady({"model_a", "tag", 1});
  struct Case {
    std::string name;
    std::function<void(Packer&)> packed;
  };
  for (const Case& c : std::vector<Case>{{"the integer 1", [](Packer& p) { p.pack(uint64_t{1}); }},
                                         {"the integer 0", [](Packer& p) { p.pack(uint64_t{0}); }},
                                         {"the string true", [](Packer& p) { Str(p, "true"); }},
                                         {"nil", [](Packer& p) { p.pack_nil(); }},
                                         {"an array", [](Packer& p) {
                                            p.pack_array(1);
                                            p.pack(true);
                                          }}}) {
    INFO(c.name);
    auto got = sc::DecodeReady(WithExtra(old_form, c.packed));
    REQUIRE_FALSE(got.ok());
    CHECK(got.status().code() == StatusCode::kBadRequest);
    CHECK_THAT(got.status().message(), Contains("packed"));
  }
}
