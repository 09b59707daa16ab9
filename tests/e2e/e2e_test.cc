// End to end, with real processes: `zserve up` (or each role started by
// hand) on free loopback ports, called through the client library and the
// `zserve call` command.
#include <catch2/catch.hpp>
#include <csignal>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "schemas/codec.h"
#include "tests/e2e/raw_socket.h"
#include "tests/e2e/stack.h"
#include "tests/e2e/test_client.h"
#include "zserve/client.h"

namespace zserve::testing {
namespace {

using std::chrono::milliseconds;

constexpr const char* kDeployment = R"(
backends:
  echo:
    handler: echo
    num_replicas: 2
  sleep:
    handler: sleep
    num_replicas: 1
    max_concurrent_queries: 1
  fail:
    handler: fail
    num_replicas: 1
endpoints:
  echo:
    backend: echo
  sleep:
    backend: sleep
  fail:
    backend: fail
)";

TEST_CASE("up serves a call through the client library", "[e2e]") {
  Stack stack(kDeployment);
  REQUIRE(stack.ready());
  auto client = Connect(stack.client_address());
  StatusOr<std::string> r = client->Call("echo", "hello");
  REQUIRE(r.ok());
  CHECK(*r == "hello");
  // Binary payloads travel as they are.
  std::string binary("\0\x01\xff zserve", 10);
  r = client->Call("echo", binary);
  REQUIRE(r.ok());
  CHECK(*r == binary);
}

TEST_CASE("the hello_client example calls through the library", "[e2e]") {
  Stack stack(kDeployment);
  REQUIRE(stack.ready());
  Process example(HELLO_CLIENT, {stack.client_address()});
  REQUIRE(example.Wait(milliseconds(10'000)) == 0);
  CHECK(example.output() == "hello\n100 of 100 async calls answered OK\n");
}

TEST_CASE("zserve call prints the result or the error type and exits non-zero", "[e2e]") {
  Stack stack(kDeployment);
  REQUIRE(stack.ready());
  Process ok(kBinary, {"call", "echo", "hello", "--broker", stack.client_address()});
  REQUIRE(ok.Wait(milliseconds(10'000)) == 0);
  CHECK(ok.output() == "hello\n");

  std::string err_path = stack.dir() + "/call.err";
  Process missing(kBinary, {"call", "nope", "x", "--broker", stack.client_address()}, err_path);
  REQUIRE(missing.Wait(milliseconds(10'000)) == 1);
  CHECK(missing.output().empty());
  Process cat(kBinary, {"call", "fail", "error:bad input", "--broker", stack.client_address()},
              err_path);
  REQUIRE(cat.Wait(milliseconds(10'000)) == 1);
  std::ifstream in(err_path);
  std::string err((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK_THAT(err, Catch::Contains("NOT_FOUND: no endpoint named 'nope'"));
  CHECK_THAT(err, Catch::Contains("HANDLER_ERROR: bad input"));
}

TEST_CASE("A client given the broker's worker port fails at once saying so", "[e2e]") {
  // It used to wait out its deadline (an hour for a call that names none):
  // the broker dropped a client's commands on the worker port unanswered.
  Stack stack(kDeployment);
  REQUIRE(stack.ready());
  const std::string err_path = stack.dir() + "/call.err";
  Process call(kBinary, {"call", "echo", "x", "--broker", stack.worker_address()}, err_path);
  REQUIRE(call.Wait(milliseconds(10'000)) == 1);
  CHECK_THAT(ReadFile(err_path),
             Catch::Contains("BAD_REQUEST: this is the broker's worker port; clients connect to "
                             "its client port"));
  // Several calls in one REQUESTS, and STATUS, are answered alike.
  auto client = Connect(stack.worker_address());
  std::vector<Status> got;
  for (int i = 0; i < 3; ++i) {
    client->CallAsync("echo", "x", {}, [&](StatusOr<std::string> r) { got.push_back(r.status()); });
  }
  client->Wait();
  REQUIRE(got.size() == 3);
  for (const Status& s : got) CHECK(s.code() == StatusCode::kBadRequest);
  StatusOr<std::string> status = client->BrokerStatus(milliseconds(5'000));
  CHECK(status.status().code() == StatusCode::kBadRequest);
  // The broker serves its clients as before.
  CHECK(Connect(stack.client_address())->Call("echo", "still").value() == "still");
}

TEST_CASE("A command reads its own ZSERVE_ variables only and numbers in decimal", "[e2e]") {
  Stack stack(kDeployment);
  REQUIRE(stack.ready());
  const std::string broker = stack.client_address();
  const std::string err = stack.dir() + "/cmd.err";
  // Variables meant for a worker (and a level `status` has no flag for)
  // do not stop `zserve status`: they failed every command.
  Process status("/usr/bin/env",
                 {"ZSERVE_THREADS=abc", "ZSERVE_LOG_LEVEL=WARN", kBinary, "status", "--broker",
                  broker, "--json"},
                 err);
  REQUIRE(status.Wait(milliseconds(10'000)) == 0);
  CHECK(status.output().find("\"endpoints\"") != std::string::npos);
  // The worker they are meant for refuses them, as bad usage.
  Process worker("/usr/bin/env",
                 {"ZSERVE_THREADS=abc", kBinary, "worker", "--backend", "echo", "--handler", "echo",
                  "--broker", stack.worker_address()},
                 err);
  REQUIRE(worker.Wait(milliseconds(10'000)) == 2);
  CHECK_THAT(ReadFile(err),
             Catch::Contains("--threads: must be a whole number in decimal, got 'abc'"));
  // 0100 is 100 ms, enough for a sleep of 70 (strtoll's octal made it 64);
  // 0x10 is refused.
  Process zeros(kBinary, {"call", "sleep", "70", "--timeout", "0100", "--broker", broker}, err);
  REQUIRE(zeros.Wait(milliseconds(10'000)) == 0);
  CHECK(zeros.output() == "70\n");
  Process hex(kBinary, {"call", "sleep", "70", "--timeout", "0x10", "--broker", broker}, err);
  REQUIRE(hex.Wait(milliseconds(10'000)) == 2);
  CHECK_THAT(ReadFile(err),
             Catch::Contains("--timeout: must be a whole number in decimal, got '0x10'"));
}

TEST_CASE("an unknown endpoint is NOT_FOUND at once", "[e2e]") {
  Stack stack(kDeployment);
  REQUIRE(stack.ready());
  auto client = Connect(stack.client_address());
  CallOptions o;
  o.timeout = milliseconds(5000);
  StatusOr<std::string> r = client->Call("no_such_endpoint", "x", o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kNotFound);
  CHECK_THAT(r.status().message(), Catch::Contains("no_such_endpoint"));
}

TEST_CASE("a throwing handler gives HANDLER_ERROR and the worker keeps serving", "[e2e]") {
  Stack stack(kDeployment);
  REQUIRE(stack.ready());
  auto client = Connect(stack.client_address());
  for (int i = 0; i < 3; ++i) {
    StatusOr<std::string> thrown = client->Call("fail", "throw:boom " + std::to_string(i));
    REQUIRE_FALSE(thrown.ok());
    CHECK(thrown.status().code() == StatusCode::kHandlerError);
    CHECK_THAT(thrown.status().message(), Catch::Contains("boom " + std::to_string(i)));
    StatusOr<std::string> item = client->Call("fail", "error:only this one");
    REQUIRE_FALSE(item.ok());
    CHECK(item.status().code() == StatusCode::kHandlerError);
    CHECK(item.status().message() == "only this one");
    StatusOr<std::string> fine = client->Call("fail", "still here");
    REQUIRE(fine.ok());
    CHECK(*fine == "still here");
  }
}

TEST_CASE("a handler that fails every call does not flood the worker's log", "[e2e]") {
  Stack stack(kDeployment);
  REQUIRE(stack.ready());
  auto client = Connect(stack.client_address());
  const std::string big(100'000, 'y');
  for (int i = 0; i < 20; ++i) {
    StatusOr<std::string> thrown = client->Call("fail", "throw:" + big);
    REQUIRE(thrown.status().code() == StatusCode::kHandlerError);
  }
  REQUIRE(client->Call("fail", "still here").ok());
  // 20 failures within a few seconds: a few warn lines, none of them 100 kB.
  std::string log = stack.log();
  size_t lines = 0, longest = 0, at = 0;
  while ((at = log.find("handler threw", at)) != std::string::npos) {
    size_t end = log.find('\n', at);
    longest = std::max(longest, (end == std::string::npos ? log.size() : end) - at);
    ++lines;
    ++at;
  }
  CHECK(lines >= 1);
  CHECK(lines <= 10);
  CHECK(longest < 1000);
}

TEST_CASE("1000 async calls in flight are each answered exactly once", "[e2e]") {
  Stack stack(kDeployment);
  REQUIRE(stack.ready());
  auto client = Connect(stack.client_address());
  constexpr int kCalls = 1000;
  std::map<int, int> answers;
  std::map<int, std::string> payloads;
  int failures = 0;
  for (int i = 0; i < kCalls; ++i) {
    std::string payload = "request-" + std::to_string(i);
    client->CallAsync("echo", payload, {}, [&, i, payload](StatusOr<std::string> r) {
      ++answers[i];
      if (!r.ok() || *r != payload) ++failures;
    });
  }
  CHECK(client->pending() == kCalls);
  client->Wait();
  CHECK(client->pending() == 0);
  CHECK(answers.size() == kCalls);
  CHECK(failures == 0);
  int twice = 0;
  for (const auto& [id, n] : answers) twice += n != 1;
  CHECK(twice == 0);
  // Both replicas took part.
  StatusOr<std::string> status = client->BrokerStatus(milliseconds(2000));
  REQUIRE(status.ok());
  auto j = nlohmann::json::parse(*status);
  CHECK(j["backends"]["echo"]["replicas"] == 2);
  CHECK(j["held_requests"] == 0);
}

TEST_CASE("a callback may make calls of its own, synchronous and async", "[e2e]") {
  Stack stack(kDeployment);
  REQUIRE(stack.ready());
  auto client = Connect(stack.client_address());
  constexpr int kCalls = 50;
  std::map<std::string, int> answers;  // payload -> callbacks run with it
  std::optional<StatusOr<std::string>> nested;
  int failures = 0;
  for (int i = 0; i < kCalls; ++i) {
    std::string payload = "request-" + std::to_string(i);
    client->CallAsync("echo", payload, {}, [&, i, payload](StatusOr<std::string> r) {
      if (!r.ok() || *r != payload) ++failures;
      ++answers[payload];
      if (i != 0) return;
      // From inside a callback, while the replies to the others are being
      // handled: a synchronous call, and an async one.
      nested = client->Call("echo", "nested");
      client->CallAsync("echo", "nested async", {}, [&](StatusOr<std::string> n) {
        if (!n.ok() || *n != "nested async") ++failures;
        ++answers["nested async"];
      });
    });
  }
  client->Wait();
  CHECK(client->pending() == 0);
  REQUIRE(nested.has_value());
  REQUIRE(nested->ok());
  CHECK(**nested == "nested");
  CHECK(failures == 0);
  CHECK(answers.size() == kCalls + 1);
  for (const auto& [payload, n] : answers) {
    INFO(payload);
    CHECK(n == 1);
  }
}

TEST_CASE("several calls in one REQUESTS message are answered in REPLIES", "[e2e]") {
  namespace sc = zserve::schemas;
  Stack stack(kDeployment);
  REQUIRE(stack.ready());
  zmq::context_t ctx(1);
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.connect(stack.client_address());
  // Three calls, one to an unknown endpoint, one failing in its handler.
  std::vector<sc::RequestHeader> calls = {{11, "echo", "__call__", 5000, "", 0},
                                          {12, "nowhere", "__call__", 5000, "", 0},
                                          {13, "fail", "__call__", 5000, "", 0}};
  SendStrings(s, {sc::EncodeRequests(calls), "a", "b", "throw:boom"});
  std::map<uint64_t, std::pair<sc::ReplyHeader, std::string>> got;
  while (got.size() < calls.size()) {
    std::optional<Strings> m = RecvStrings(s, milliseconds(10'000));
    REQUIRE(m);
    REQUIRE(m->size() >= 2);
    StatusOr<std::vector<sc::ReplyHeader>> replies = sc::DecodeReplies((*m)[0]);
    REQUIRE(replies.ok());
    REQUIRE(replies->size() == m->size() - 1);
    for (size_t i = 0; i < replies->size(); ++i) {
      const sc::ReplyHeader& r = (*replies)[i];
      CHECK(got.count(r.request_id) == 0);  // each answered once
      got[r.request_id] = {r, (*m)[i + 1]};
    }
  }
  CHECK(got[11].first.code == StatusCode::kOk);
  CHECK(got[11].second == "a");
  CHECK(got[12].first.code == StatusCode::kNotFound);
  CHECK(got[13].first.code == StatusCode::kHandlerError);

  // Many long error messages: the broker splits its REPLIES so that each
  // header stays within the 64 KiB the client reads.
  std::vector<sc::RequestHeader> failing;
  Strings frames{""};
  for (uint64_t id = 100; id < 132; ++id) {
    failing.push_back({id, "fail", "__call__", 5000, "", 0});
    frames.push_back("error:" + std::string(4000, 'e'));
  }
  frames[0] = sc::EncodeRequests(failing);
  SendStrings(s, frames);
  std::set<uint64_t> failed;
  while (failed.size() < failing.size()) {
    std::optional<Strings> m = RecvStrings(s, milliseconds(10'000));
    INFO("long errors answered so far: " << failed.size());
    REQUIRE(m);
    REQUIRE((*m)[0].size() <= sc::kMaxHeaderBytes);
    StatusOr<std::vector<sc::ReplyHeader>> replies = sc::DecodeReplies((*m)[0]);
    REQUIRE(replies.ok());
    for (const sc::ReplyHeader& r : *replies) {
      CHECK(r.code == StatusCode::kHandlerError);
      CHECK(r.message.size() >= 4000);
      CHECK(failed.insert(r.request_id).second);
    }
  }

  // Calls and payload frames that do not match: each call is refused.
  SendStrings(s, {sc::EncodeRequests(calls), "only one"});
  std::optional<Strings> m = RecvStrings(s, milliseconds(10'000));
  REQUIRE(m);
  StatusOr<std::vector<sc::ReplyHeader>> refused = sc::DecodeReplies((*m)[0]);
  REQUIRE(refused.ok());
  REQUIRE(refused->size() == 3);
  for (const sc::ReplyHeader& r : *refused) {
    CHECK(r.code == StatusCode::kBadRequest);
    CHECK_THAT(r.message, Catch::Contains("3 calls but 1 payload frames"));
  }
}

namespace sc = zserve::schemas;

// The payloads of a packed message (PROTOCOL.md 4.1): `sizes` laid over the
// payload frames (those of `m` after the header) in order, each payload whole
// inside one frame and every byte used; nullopt if they do not lay out so.
std::optional<Strings> SplitPacked(const std::vector<uint64_t>& sizes, const Strings& m) {
  Strings out;
  size_t f = 1;   // the frame being read
  size_t at = 0;  // its bytes already taken
  for (uint64_t n : sizes) {
    if (n == 0) {
      out.emplace_back();
      continue;
    }
    while (f < m.size() && at == m[f].size()) {
      ++f;
      at = 0;
    }
    if (f == m.size() || n > m[f].size() - at) return std::nullopt;
    out.push_back(m[f].substr(at, n));
    at += n;
  }
  while (f < m.size() && at == m[f].size()) {
    ++f;
    at = 0;
  }
  if (f != m.size()) return std::nullopt;
  return out;
}

struct Answer {
  sc::ReplyHeader header;
  std::string payload;
};

// Reads REPLIES on `s` until `count` requests are answered, each exactly once:
// packed (with payload_sizes that lay out over the payload frames) or not
// (one payload frame per reply), as `packed` says.
std::map<uint64_t, Answer> ReadReplies(zmq::socket_t& s, size_t count, bool packed) {
  std::map<uint64_t, Answer> got;
  while (got.size() < count) {
    std::optional<Strings> m = RecvStrings(s, milliseconds(10'000));
    INFO("answered so far: " << got.size() << " of " << count);
    REQUIRE(m);
    REQUIRE(!m->empty());
    std::vector<uint64_t> sizes;
    StatusOr<std::vector<sc::ReplyHeader>> replies = sc::DecodeReplies((*m)[0], &sizes);
    REQUIRE(replies.ok());
    Strings payloads;
    if (packed) {
      REQUIRE(sizes.size() == replies->size());
      std::optional<Strings> split = SplitPacked(sizes, *m);
      REQUIRE(split);
      payloads = std::move(*split);
    } else {
      CHECK(sizes.empty());
      REQUIRE(replies->size() + 1 == m->size());
      payloads.assign(m->begin() + 1, m->end());
    }
    for (size_t i = 0; i < replies->size(); ++i) {
      const sc::ReplyHeader& r = (*replies)[i];
      INFO("request " << r.request_id);
      CHECK(got.count(r.request_id) == 0);                        // each answered once
      if (r.code != StatusCode::kOk) CHECK(payloads[i].empty());  // errors carry no payload
      got[r.request_id] = {r, payloads[i]};
    }
  }
  return got;
}

TEST_CASE("packed REQUESTS are answered with packed REPLIES and bad layouts are BAD_REQUEST",
          "[e2e]") {
  Stack stack(kDeployment);
  REQUIRE(stack.ready());
  zmq::context_t ctx(1);
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.connect(stack.client_address());

  // Payloads of different sizes, one empty, one binary; a call to an unknown
  // endpoint and one failing in its handler.
  std::string binary(3000, '\0');
  for (size_t i = 0; i < binary.size(); ++i) binary[i] = static_cast<char>(i * 7 % 256);
  const Strings payloads = {"alpha", "", "to nowhere", "throw:boom", binary, "z"};
  const std::vector<uint64_t> sizes = {5, 0, 10, 10, 3000, 1};
  for (size_t i = 0; i < payloads.size(); ++i) REQUIRE(payloads[i].size() == sizes[i]);
  auto calls_from = [](uint64_t first) {
    return std::vector<sc::RequestHeader>{{first, "echo", "__call__", 5000, "", 0},
                                          {first + 1, "echo", "__call__", 5000, "", 0},
                                          {first + 2, "nowhere", "__call__", 5000, "", 0},
                                          {first + 3, "fail", "__call__", 5000, "", 0},
                                          {first + 4, "echo", "__call__", 5000, "", 0},
                                          {first + 5, "echo", "__call__", 5000, "", 0}};
  };
  auto check_answers = [&](const std::map<uint64_t, Answer>& got, uint64_t first) {
    REQUIRE(got.size() == payloads.size());
    for (uint64_t i : {0, 1, 4, 5}) {
      INFO("call " << i);
      CHECK(got.at(first + i).header.code == StatusCode::kOk);
      CHECK(got.at(first + i).payload == payloads[i]);
    }
    CHECK(got.at(first + 2).header.code == StatusCode::kNotFound);
    CHECK_THAT(got.at(first + 2).header.message, Catch::Contains("nowhere"));
    CHECK(got.at(first + 3).header.code == StatusCode::kHandlerError);
    CHECK_THAT(got.at(first + 3).header.message, Catch::Contains("boom"));
  };
  std::string all;
  for (const std::string& p : payloads) all += p;

  SendStrings(s, {sc::EncodeRequests(calls_from(10), sizes), all});
  check_answers(ReadReplies(s, payloads.size(), /*packed=*/true), 10);

  // Split between two frames at a payload boundary: the first three payloads
  // (one of them empty) and the other three.
  const size_t cut = payloads[0].size() + payloads[1].size() + payloads[2].size();
  SendStrings(s, {sc::EncodeRequests(calls_from(20), sizes), all.substr(0, cut), all.substr(cut)});
  check_answers(ReadReplies(s, payloads.size(), /*packed=*/true), 20);

  // Unpacked on the same connection: unpacked REPLIES, one frame per reply.
  Strings unpacked{sc::EncodeRequests(calls_from(30))};
  unpacked.insert(unpacked.end(), payloads.begin(), payloads.end());
  SendStrings(s, unpacked);
  check_answers(ReadReplies(s, payloads.size(), /*packed=*/false), 30);

  // Sizes that do not lay out over the frames: BAD_REQUEST for every call.
  struct Bad {
    const char* name;
    Strings frames;
    const char* text;
  };
  const std::vector<Bad> bad = {
      {"a payload crossing a frame boundary",
       {"abcd", "efghi"},
       "crosses the end of payload frame"},
      {"sizes adding up to more bytes than the frames", {"abcdef"}, "add up to more bytes"},
      {"sizes adding up to fewer bytes than the frames", {"abcdefghij"}, "hold more bytes"},
      {"sizes and no payload frame", {}, "add up to more bytes"},
  };
  uint64_t id = 100;
  for (const Bad& b : bad) {
    INFO(b.name);
    std::vector<sc::RequestHeader> calls;
    for (int i = 0; i < 3; ++i) calls.push_back({id++, "echo", "__call__", 5000, "", 0});
    Strings frames{sc::EncodeRequests(calls, std::vector<uint64_t>{3, 3, 3})};
    frames.insert(frames.end(), b.frames.begin(), b.frames.end());
    SendStrings(s, frames);
    std::map<uint64_t, Answer> got = ReadReplies(s, calls.size(), /*packed=*/true);
    for (const sc::RequestHeader& c : calls) {
      REQUIRE(got.count(c.request_id) == 1);
      CHECK(got[c.request_id].header.code == StatusCode::kBadRequest);
      CHECK_THAT(got[c.request_id].header.message, Catch::Contains(b.text));
    }
  }

  // Nothing more was answered: the next message is the STATUS reply.
  SendStrings(s, {sc::EncodeStatusRequest(999)});
  std::optional<Strings> m = RecvStrings(s, milliseconds(10'000));
  REQUIRE(m);
  REQUIRE(m->size() == 2);
  StatusOr<sc::ReplyHeader> status = sc::DecodeReply((*m)[0]);
  REQUIRE(status.ok());
  CHECK(status->request_id == 999);
  CHECK(status->code == StatusCode::kOk);
  CHECK(nlohmann::json::parse((*m)[1])["held_requests"] == 0);
}

TEST_CASE("a request past its deadline is DEADLINE_EXCEEDED promptly", "[e2e]") {
  Stack stack(kDeployment);
  REQUIRE(stack.ready());
  auto client = Connect(stack.client_address());
  CallOptions o;
  o.timeout = milliseconds(200);
  auto start = std::chrono::steady_clock::now();
  // The sleep backend runs one request at a time: the first holds the
  // replica, the second waits in the queue; both expire.
  StatusOr<std::string> first = Internal("no answer"), second = Internal("no answer");
  client->CallAsync("sleep", "1500", o, [&](StatusOr<std::string> r) { first = std::move(r); });
  client->CallAsync("sleep", "1500", o, [&](StatusOr<std::string> r) { second = std::move(r); });
  client->Wait();
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(first.status().code() == StatusCode::kDeadlineExceeded);
  CHECK(second.status().code() == StatusCode::kDeadlineExceeded);
  // Answered by the broker's timer, not after the 1.5 s handler.
  CHECK(took < milliseconds(1000));
}

TEST_CASE("zserve bench --count ends when every call fails and reports the errors", "[e2e]") {
  Stack stack(kDeployment);
  REQUIRE(stack.ready());
  Process bench(kBinary, {"bench", "--broker", stack.client_address(), "--endpoint", "nope",
                          "--count", "200", "--inflight", "1", "--warmup", "0", "--json"});
  // It measured nothing, and its exit code says so (it was 0).
  REQUIRE(bench.Wait(milliseconds(20'000)) == std::optional<int>(1));
  INFO(bench.output());
  nlohmann::json j = nlohmann::json::parse(bench.output(), nullptr, /*allow_exceptions=*/false);
  REQUIRE(j.is_object());
  CHECK(j["errors"]["NOT_FOUND"].get<uint64_t>() >= 200);
  CHECK(j["throughput_rps"].get<double>() == 0);
}

TEST_CASE("zserve bench at a low open-loop rate waits between arrivals instead of spinning",
          "[e2e]") {
  // The client's Poll returns at once when no call is pending, and the
  // generator waited for its next arrival in it: 20 calls a second cost
  // about 40 ms of CPU each.
  Stack stack(kDeployment);
  REQUIRE(stack.ready());
  Process bench(kBinary, {"bench", "--broker", stack.client_address(), "--endpoint", "echo",
                          "--rate", "20", "--duration", "2", "--warmup", "0", "--json"});
  REQUIRE(bench.Wait(milliseconds(20'000)) == 0);
  INFO(bench.output());
  nlohmann::json j = nlohmann::json::parse(bench.output(), nullptr, /*allow_exceptions=*/false);
  REQUIRE(j.is_object());
  CHECK(j["throughput_rps"].get<double>() > 10);
  CHECK(j["client_cpu_us_per_request"].get<double>() < 5'000);
}

TEST_CASE("A call that names no timeout gets its endpoint's timeout_ms", "[e2e]") {
  Stack stack(R"(
backends:
  sleep: {handler: sleep, max_concurrent_queries: 4}
endpoints:
  short: {backend: sleep, timeout_ms: 300}
  long: {backend: sleep, timeout_ms: 60000}
)");
  REQUIRE(stack.ready());
  auto client = Connect(stack.client_address());
  auto start = std::chrono::steady_clock::now();
  StatusOr<std::string> cut = client->Call("short", "3000");
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(cut.status().code() == StatusCode::kDeadlineExceeded);
  CHECK(took < milliseconds(2500));  // the endpoint's 300 ms, not a client default
  // The CLI without --timeout too; and a longer endpoint timeout is not cut
  // short by the client.
  Process call(kBinary, {"call", "--broker", stack.client_address(), "short", "3000"});
  REQUIRE(call.Wait(milliseconds(10'000)) == std::optional<int>(1));
  StatusOr<std::string> whole = client->Call("long", "400");
  REQUIRE(whole.ok());
  CHECK(*whole == "400");
}

TEST_CASE("zserve bench refuses a flag of the other loop mode instead of ignoring it", "[e2e]") {
  std::string dir = MakeTempDir();
  // No broker is needed: the flags are refused before anything connects.
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--rate", "1000", "--inflight", "50"}, "--inflight excludes --rate"},
      {{"--inflight", "50", "--send-every", "100"}, "--send-every requires --rate"},
      {{"--max-outstanding", "10"}, "--max-outstanding requires --rate"},
  };
  int n = 0;
  for (const auto& [flags, message] : cases) {
    std::vector<std::string> args = {"bench",      "--broker", "tcp://127.0.0.1:1",
                                     "--endpoint", "echo",     "--duration",
                                     "1",          "--warmup", "0"};
    args.insert(args.end(), flags.begin(), flags.end());
    std::string err_path = dir + "/err-" + std::to_string(++n);
    Process bench(kBinary, args, err_path);
    std::optional<int> code = bench.Wait(milliseconds(10'000));
    std::string err = ReadFile(err_path);
    INFO(err);
    REQUIRE(code.has_value());
    CHECK(*code == 2);  // a usage error
    CHECK(err.find(message) != std::string::npos);
    CHECK(bench.output().empty());  // no run
  }
}

TEST_CASE(
    "A broker with no configuration yet answers STATUS and serves earlier calls once it comes",
    "[e2e]") {
  std::string dir = MakeTempDir();
  auto address = [] { return "tcp://127.0.0.1:" + std::to_string(FreePort()); };
  const std::string clients = address(), workers = address(), admin = address(), pub = address();
  // Its controller is not there yet.
  Process broker(kBinary,
                 {"broker", "--client-bind", clients, "--worker-bind", workers, "--controller",
                  admin, "--controller-pub", pub, "--metrics-bind", ""},
                 dir + "/broker.log");
  REQUIRE(Eventually(
      [&] { return ReadFile(dir + "/broker.log").find("listening") != std::string::npos; }));
  // STATUS is answered, and says why it is not ready (it was not read at all).
  Process status(kBinary, {"status", "--ready", "--broker", clients, "--timeout", "5000"},
                 dir + "/status.err");
  REQUIRE(status.Wait(milliseconds(10'000)) == 1);
  CHECK(status.output() == "not ready: no configuration yet\n");
  // Calls made now wait for the configuration; their deadlines count from
  // their arrival, not from when it comes.
  auto client = Connect(clients);
  REQUIRE(client->BrokerStatus(milliseconds(5'000)).ok());  // connected
  CallOptions o;
  o.timeout = milliseconds(20'000);
  StatusOr<std::string> early = Internal("no answer");
  client->CallAsync("echo", "early", o, [&](StatusOr<std::string> r) { early = std::move(r); });
  CallOptions brief;
  brief.timeout = milliseconds(1'000);
  std::optional<StatusOr<std::string>> expired;
  client->CallAsync("echo", "brief", brief, [&](StatusOr<std::string> r) { expired = r; });
  const auto until = std::chrono::steady_clock::now() + milliseconds(10'000);
  while (!expired && std::chrono::steady_clock::now() < until) client->Poll(milliseconds(100));
  REQUIRE(expired.has_value());  // the client gave up on it
  CHECK(expired->status().code() == StatusCode::kDeadlineExceeded);
  WriteFile(dir + "/deployment.yaml", kDeployment);
  Process controller(
      kBinary,
      {"controller", "--store", dir + "/controller.db", "--config", dir + "/deployment.yaml",
       "--admin-bind", admin, "--pub-bind", pub, "--metrics-bind", "127.0.0.1:0"},
      dir + "/controller.log");
  Process worker(kBinary, {"worker", "--backend", "echo", "--handler", "echo", "--broker", workers},
                 dir + "/worker.log");
  client->Wait();
  REQUIRE(early.ok());
  CHECK(*early == "early");
  // The brief call expired in the broker, unrun; given a fresh deadline
  // when the configuration came it would have run, its result dropped.
  nlohmann::json j = BrokerStatus(*client);
  CHECK(j["endpoints"]["echo"]["requests_last_minute"] == 2);
  CHECK(j["endpoints"]["echo"]["errors_last_minute"] == 1);
}

TEST_CASE("SIGTERM stops the whole stack cleanly", "[e2e]") {
  Stack stack(kDeployment);
  REQUIRE(stack.ready());
  stack.up().Signal(SIGTERM);
  REQUIRE(stack.up().Wait(milliseconds(20'000)) == 0);
  std::string log = stack.log();
  CHECK_THAT(log, Catch::Contains("drained: every result sent"));
  CHECK_THAT(log, Catch::Contains("controller stopping"));
  CHECK_THAT(log, !Catch::Contains("did not stop in time"));
}

TEST_CASE("Ctrl-C in up's terminal answers the call in flight before the broker stops", "[e2e]") {
  // A terminal sends SIGINT to its foreground process group: up, and any
  // child in up's group. up's children have groups of their own, so up
  // alone stops them, in order.
  Stack stack(kDeployment);
  REQUIRE(stack.ready());
  auto client = Connect(stack.client_address());
  CallOptions o;
  o.timeout = milliseconds(20'000);
  StatusOr<std::string> answer = Internal("no answer");
  client->CallAsync("sleep", "1500", o, [&](StatusOr<std::string> r) { answer = std::move(r); });
  auto admin = Connect(stack.client_address());
  // Sent once the client's connection is up, at one of its polls.
  REQUIRE(Eventually([&] {
    client->Poll(milliseconds(0));
    return BrokerStatus(*admin)["backends"]["sleep"]["in_flight"] == 1;
  }));
  stack.up().SignalGroup(SIGINT);
  client->Wait();
  REQUIRE(answer.ok());
  CHECK(*answer == "1500");
  REQUIRE(stack.up().Wait(milliseconds(20'000)) == 0);
  CHECK_THAT(stack.log(), !Catch::Contains("did not stop in time"));
}

TEST_CASE("each role runs as its own process and the broker follows a controller reload", "[e2e]") {
  std::string dir = MakeTempDir();
  std::string file = dir + "/deployment.yaml";
  WriteFile(file, "backends:\n  echo: {handler: echo}\nendpoints:\n  echo: {backend: echo}\n");
  std::string client_addr = "tcp://127.0.0.1:" + std::to_string(FreePort());
  std::string worker_addr = "tcp://127.0.0.1:" + std::to_string(FreePort());
  std::string admin_addr = "tcp://127.0.0.1:" + std::to_string(FreePort());
  std::string pub_addr = "tcp://127.0.0.1:" + std::to_string(FreePort());
  std::string log = dir + "/roles.log";
  Process controller(
      kBinary,
      {"controller", "--store", dir + "/controller.db", "--config", file, "--admin-bind",
       admin_addr, "--pub-bind", pub_addr, "--metrics-bind", "127.0.0.1:0"},
      log);
  Process broker(
      kBinary,
      {"broker", "--client-bind", client_addr, "--worker-bind", worker_addr, "--controller",
       admin_addr, "--controller-pub", pub_addr, "--metrics-bind", "127.0.0.1:0"},
      log);
  Process worker(
      kBinary, {"worker", "--backend", "echo", "--handler", "echo", "--broker", worker_addr}, log);
  auto client = Connect(client_addr);
  CallOptions o;
  o.timeout = milliseconds(10'000);
  // The first call waits in the broker until config and a replica are there.
  StatusOr<std::string> r = client->Call("echo", "first", o);
  REQUIRE(r.ok());
  CHECK(*r == "first");
  CHECK(client->Call("alias", "x", o).status().code() == StatusCode::kNotFound);

  // A new endpoint in the file, SIGHUP: the controller publishes version 2.
  WriteFile(file,
            "backends:\n  echo: {handler: echo}\n"
            "endpoints:\n  echo: {backend: echo}\n  alias: {backend: echo}\n");
  controller.Signal(SIGHUP);
  bool served = false;
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!served && std::chrono::steady_clock::now() < end) {
    // Each NOT_FOUND is an answered round trip: the broker has not applied
    // version 2 yet.
    StatusOr<std::string> a = client->Call("alias", "via alias", o);
    served = a.ok() && *a == "via alias";
    if (!a.ok()) REQUIRE(a.status().code() == StatusCode::kNotFound);
  }
  CHECK(served);
  StatusOr<std::string> status = client->BrokerStatus(milliseconds(2000));
  REQUIRE(status.ok());
  CHECK(nlohmann::json::parse(*status)["config_version"] == 2);

  // An invalid file is refused; the old config keeps serving.
  WriteFile(file, "endpoints:\n  echo: {backend: missing}\n");
  controller.Signal(SIGHUP);
  r = client->Call("alias", "still", o);
  REQUIRE(r.ok());

  worker.Signal(SIGTERM);
  CHECK(worker.Wait(milliseconds(10'000)) == 0);
  broker.Signal(SIGTERM);
  CHECK(broker.Wait(milliseconds(10'000)) == 0);
  controller.Signal(SIGTERM);
  CHECK(controller.Wait(milliseconds(10'000)) == 0);
}

TEST_CASE("up refuses a bad deployment file with a clear message", "[e2e]") {
  std::string dir = MakeTempDir();
  WriteFile(dir + "/bad.yaml",
            "backends:\n  a: {handler: echo, num_replica: 2}\nendpoints:\n  e: {backend: a}\n");
  Process up(kBinary, {"up", dir + "/bad.yaml", "--client-port", "0"}, dir + "/err.log");
  REQUIRE(up.Wait(milliseconds(10'000)) == 1);
  std::ifstream in(dir + "/err.log");
  std::string err((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK_THAT(err, Catch::Contains("unknown key 'num_replica'"));
  // A port that cannot be is refused before anything starts.
  WriteFile(dir + "/good.yaml", "backends:\n  a: {handler: echo}\nendpoints:\n  e: {backend: a}\n");
  Process port(kBinary, {"up", dir + "/good.yaml", "--admin-port", "70000"}, dir + "/port.log");
  std::optional<int> rc = port.Wait(milliseconds(10'000));
  REQUIRE(rc.has_value());
  CHECK(*rc != 0);
  CHECK_THAT(ReadFile(dir + "/port.log"),
             Catch::Contains("--admin-port: Value 70000 not in range"));
}

TEST_CASE("A second up on ports in use is refused and leaves the first stack alone", "[e2e]") {
  Stack first(R"(
backends:
  a: {handler: echo}
endpoints:
  e: {backend: a}
)");
  REQUIRE(first.ready());
  const std::string port = first.client_address().substr(first.client_address().rfind(':') + 1);
  std::string dir = MakeTempDir();
  WriteFile(dir + "/d.yaml", "backends:\n  a: {handler: echo}\nendpoints:\n  e: {backend: a}\n");
  // Before, it said "zserve is up" on the first stack's broker, and its own
  // workers registered there while its broker failed to bind, over and over.
  Process second(kBinary,
                 {"up", dir + "/d.yaml", "--client-port", port, "--state-dir", dir + "/state",
                  "--http-port", "-1", "--metrics-port", "0"},
                 dir + "/err.log");
  REQUIRE(second.Wait(milliseconds(10'000)) == 1);
  CHECK_THAT(ReadFile(dir + "/err.log"),
             Catch::Contains("port " + port + " (--client-port) is in use on 127.0.0.1"));
  CHECK(second.output().find("zserve is up") == std::string::npos);
  // One port for two roles is refused the same way.
  Process twice(kBinary,
                {"up", dir + "/d.yaml", "--client-port", "47001", "--worker-port", "47001",
                 "--state-dir", dir + "/state2", "--http-port", "-1", "--metrics-port", "0"},
                dir + "/twice.log");
  REQUIRE(twice.Wait(milliseconds(10'000)) == 1);
  CHECK_THAT(ReadFile(dir + "/twice.log"),
             Catch::Contains("port 47001 is given twice: --client-port and --worker-port"));
  auto client = Connect(first.client_address());
  nlohmann::json j = BrokerStatus(*client);
  CHECK(j["backends"]["a"]["replicas"] == 1);
  StatusOr<std::string> r = client->Call("e", "first");
  REQUIRE(r.ok());
  CHECK(*r == "first");
}

}  // namespace
}  // namespace zserve::testing
