// Hostile input (issue #9) against real processes: the controller, the broker
// and one `zserve worker` (echo) run as `zserve` processes, and the test
// speaks to the broker's client and worker ports from raw ZeroMQ DEALER
// sockets. Each table row is a message built with the real encoders of
// schemas/codec.h and then corrupted (or written byte by byte), and the
// outcome a user or an operator sees: an error REPLY with a status code and a
// message, or no reply and a STATUS counter (schemas/PROTOCOL.md §4.1, §6).
// After every row a normal call must still succeed and the broker still run.
//
// "No reply" is checked without waiting for silence: the ROUTER keeps each
// connection's messages in order, so a probe sent after the hostile message
// on the same socket is answered after it. On the client port the probe is a
// STATUS (its reply must be the next message, and shows the counters); on
// the worker port it is a HEARTBEAT from a connection the broker does not
// know, answered DISCONNECT (§4.2).
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <msgpack.hpp>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "schemas/codec.h"
#include "tests/e2e/process.h"
#include "tests/e2e/raw_socket.h"
#include "tests/e2e/roles.h"
#include "tests/e2e/stack.h"
#include "tests/e2e/test_client.h"
#include "zserve/client.h"

namespace zserve::testing {
namespace {

namespace sc = zserve::schemas;
using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;
using Counters = std::map<std::string, uint64_t>;
using Packer = msgpack::packer<msgpack::sbuffer>;

// The bound on any one answer the test waits for.
constexpr milliseconds kWait(5000);
// A normal call during or right after a flood is answered within this.
constexpr milliseconds kResponsive(2000);
constexpr uint64_t kHostileId = 42;
const std::string kMiB(1 << 20, 'x');

const char* kYaml = R"(
backends:
  echo: {handler: echo}
  raw: {handler: echo}
  twin: {handler: echo}
  flood: {handler: echo}
  mdp: {handler: echo}
endpoints:
  echo: {backend: echo}
  raw: {backend: raw}
  twin: {backend: twin}
)";

// Controller, broker and one echo worker as separate processes (Roles); the
// backends other than echo are served by the test's raw sockets, which send
// no heartbeats: the broker's heartbeats are at their default (1 s) so that
// they stay registered through a row.
RolesOptions HostileOptions(int metrics_port) {
  RolesOptions o;
  o.heartbeat = milliseconds(1000);
  o.broker_metrics_bind = "127.0.0.1:" + std::to_string(metrics_port);
  return o;
}

class HostileStack {
 public:
  HostileStack() : metrics_port_(FreePort()), roles_(kYaml, HostileOptions(metrics_port_)) {
    roles_.StartWorker("echo", "echo");
    client_lib_ = Connect(roles_.client_address());
    WaitForReplicas(*client_lib_, "echo", 1);
  }

  const std::string& client_address() const { return roles_.client_address(); }
  const std::string& worker_address() const { return roles_.worker_address(); }
  std::string log() const { return roles_.log(); }
  Client& client() { return *client_lib_; }

  // What the broker's /metrics says of one series; nullopt if it is absent.
  std::optional<double> Metric(const std::string& series) {
    Process curl("/usr/bin/curl",
                 {"-s", "--max-time", "5",
                  "http://127.0.0.1:" + std::to_string(metrics_port_) + "/metrics"});
    REQUIRE(curl.Wait(milliseconds(10'000)).has_value());
    const std::string& out = curl.output();
    REQUIRE(out.find("\nzserve_broker_ready ") != std::string::npos);  // scraped
    size_t at = out.find("\n" + series + " ");
    if (at == std::string::npos) return std::nullopt;
    return std::stod(out.substr(at + series.size() + 2));
  }

  // What a user sees after any hostile row: the broker runs and serves.
  void CheckHealthy() {
    INFO("broker log: " << log());
    REQUIRE_FALSE(roles_.broker().Wait(milliseconds(0)).has_value());
    CallOptions o;
    o.timeout = kWait;
    StatusOr<std::string> r = client_lib_->Call("echo", "still serving", o);
    REQUIRE(r.ok());
    CHECK(*r == "still serving");
  }

 private:
  int metrics_port_;
  Roles roles_;
  std::unique_ptr<Client> client_lib_;
};

// For failure messages: each frame, cut short, with bytes outside ASCII in hex.
std::string Show(const std::optional<Strings>& frames) {
  if (!frames) return "(nothing)";
  std::string out = "[";
  for (const std::string& f : *frames) {
    out += " \"";
    for (size_t i = 0; i < f.size() && i < 64; ++i) {
      auto c = static_cast<unsigned char>(f[i]);
      if (c >= 0x20 && c < 0x7f) {
        out += static_cast<char>(c);
      } else {
        static const char* kHex = "0123456789abcdef";
        out += std::string("\\x") + kHex[c >> 4] + kHex[c & 15];
      }
    }
    out += f.size() > 64 ? "...\"" : "\"";
  }
  return out + " ]";
}

zmq::socket_t Dealer(zmq::context_t& ctx, const std::string& address) {
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.connect(address);
  return s;
}

// MessagePack written by hand, for headers the encoders never make.
std::string Pack(const std::function<void(Packer&)>& fill) {
  msgpack::sbuffer buf;
  Packer p(buf);
  fill(p);
  return std::string(buf.data(), buf.size());
}

void Str(Packer& p, std::string_view s) {
  p.pack_str(static_cast<uint32_t>(s.size()));
  p.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

std::string Request(uint64_t id, const std::string& endpoint = "echo",
                    const std::string& method = "__call__") {
  return sc::EncodeRequest({id, endpoint, method, 0, "", 0});
}

// An encoded header with byte `at` replaced: the version (1) or the command
// (2) of a header of up to 15 elements, which sit in positive fixints.
std::string Patch(std::string header, size_t at, uint8_t byte) {
  REQUIRE(header.size() > at);
  REQUIRE(static_cast<uint8_t>(header[at]) < 0x80);
  header[at] = static_cast<char>(byte);
  return header;
}

std::string Ready(const std::string& backend, const std::string& tag, uint32_t capacity = 1,
                  bool packed = false) {
  return sc::EncodeReady({backend, tag, capacity, packed});
}

std::string Results(const std::vector<sc::ResultItem>& items) { return sc::EncodeResults(items); }

const std::string kHeartbeat = sc::EncodeSimple(sc::Command::kHeartbeat);
const std::string kDisconnect = sc::EncodeSimple(sc::Command::kDisconnect);
const Strings kMdpDisconnect{"", "MDPW01", std::string("\x05", 1)};

// A raw DEALER on the client port, with STATUS as the probe.
class RawClient {
 public:
  RawClient(zmq::context_t& ctx, const std::string& address) : s_(Dealer(ctx, address)) {}

  void SendStrings(const Strings& frames) { testing::SendStrings(s_, frames); }
  std::optional<Strings> RecvStrings(milliseconds limit = kWait) {
    return testing::RecvStrings(s_, limit);
  }

  // Asks STATUS. Its reply must be the next message on this connection, so
  // that nothing was answered to what was sent before it: each message that
  // comes first fails the row (and is skipped).
  nlohmann::json Status() {
    const uint64_t id = next_id_++;
    SendStrings({sc::EncodeStatusRequest(id)});
    while (true) {
      std::optional<Strings> m = RecvStrings();
      INFO("waiting for the STATUS reply, got " << Show(m));
      REQUIRE(m);
      StatusOr<sc::ReplyHeader> reply =
          m->size() == 2 ? sc::DecodeReply((*m)[0]) : BadRequest("not a REPLY");
      if (reply.ok() && reply->request_id == id) {
        REQUIRE(reply->code == StatusCode::kOk);
        return nlohmann::json::parse((*m)[1]);
      }
      FAIL_CHECK("a message came before the STATUS reply");
    }
  }

  Counters GetCounters() {
    Counters out;
    const nlohmann::json status = Status();
    for (const auto& [name, value] : status["counters"].items()) {
      out[name] = value.get<uint64_t>();
    }
    return out;
  }

 private:
  zmq::socket_t s_;
  uint64_t next_id_ = 1'000'000;
};

// Every counter as before, but `counter` (if any) grown by `count`.
void CheckCounters(const Counters& before, const Counters& after, const std::string& counter,
                   uint64_t count) {
  if (!counter.empty()) REQUIRE(before.contains(counter));
  for (const auto& [name, value] : before) {
    INFO("counter " << name);
    CHECK(after.at(name) == value + (name == counter ? count : 0));
  }
}

// A worker written against PROTOCOL.md §4.2 with a raw DEALER: it skips the
// broker's HEARTBEATs and sends its own while it waits, so that the broker
// keeps it (3 silent seconds at the default interval).
class RawWorker {
 public:
  RawWorker(zmq::context_t& ctx, const std::string& address) : s_(Dealer(ctx, address)) {}

  void SendStrings(const Strings& frames) {
    testing::SendStrings(s_, frames);
    last_sent_ = SteadyClock::now();
  }

  // READY (saying it takes packed payloads if `packed`), answered at once
  // with a HEARTBEAT.
  void Register(const std::string& backend, const std::string& tag, uint32_t capacity = 1,
                bool packed = false) {
    SendStrings({Ready(backend, tag, capacity, packed)});
    std::optional<Strings> m = testing::RecvStrings(s_, kWait);
    INFO("READY answered with " << Show(m));
    REQUIRE(m);
    REQUIRE(*m == Strings{kHeartbeat});
  }

  // The next message other than a HEARTBEAT, within `limit`.
  std::optional<Strings> Next(milliseconds limit = kWait) {
    auto end = SteadyClock::now() + limit;
    while (true) {
      if (SteadyClock::now() - last_sent_ > milliseconds(300)) SendStrings({kHeartbeat});
      auto left = std::chrono::duration_cast<milliseconds>(end - SteadyClock::now());
      if (left.count() <= 0) return std::nullopt;
      std::optional<Strings> m = testing::RecvStrings(s_, std::min(left, milliseconds(50)));
      if (m && *m != Strings{kHeartbeat}) return m;
    }
  }

  // The tokens of a BATCH within `limit`; empty if none came.
  std::vector<uint64_t> NextBatch(milliseconds limit) {
    std::optional<Strings> m = Next(limit);
    if (!m) return {};
    INFO("expected a BATCH, got " << Show(m));
    REQUIRE(!m->empty());
    StatusOr<std::vector<sc::BatchItem>> batch = sc::DecodeBatch((*m)[0]);
    REQUIRE(batch.ok());
    REQUIRE(batch->size() + 1 == m->size());
    std::vector<uint64_t> tokens;
    for (const sc::BatchItem& item : *batch) tokens.push_back(item.token);
    return tokens;
  }

  // Answers one token OK with `payload`.
  void Answer(uint64_t token, const std::string& payload) {
    SendStrings({Results({{token, StatusCode::kOk, ""}}), payload});
  }

 private:
  zmq::socket_t s_;
  SteadyClock::time_point last_sent_ = SteadyClock::now();
};

// The outcome of a row as a user or operator sees it.
struct Expect {
  // An error reply (ZSP REPLY, or an MDP error for an MDP request) with this
  // code and a message containing `text`; nullopt: no reply.
  std::optional<StatusCode> code;
  std::string text;
  // The STATUS counter that grows, and by how much; empty: none.
  std::string counter;
  uint64_t count = 1;
};

Expect Refused(StatusCode code, std::string text, std::string counter = "") {
  return {code, std::move(text), std::move(counter), 1};
}
Expect Dropped(std::string counter, uint64_t count = 1) {
  return {std::nullopt, "", std::move(counter), count};
}

struct ClientRow {
  const char* name;
  Strings frames;  // as the DEALER sends them
  Expect expect;
};

// Failures here fail the row; the table goes on.
void CheckErrorReply(const ClientRow& row, const std::optional<Strings>& m) {
  INFO("reply: " << Show(m));
  if (!m) {
    FAIL_CHECK("no reply");
    return;
  }
  if (!row.frames.empty() && row.frames[0].empty()) {
    // MDP: "", "MDPC01", service, "ERROR <CODE>: <message>", "<CODE>".
    if (m->size() != 5) {
      FAIL_CHECK("not an MDP error reply");
      return;
    }
    CHECK((*m)[0].empty());
    CHECK((*m)[1] == "MDPC01");
    CHECK((*m)[2] == row.frames[2]);
    CHECK((*m)[4] == StatusCodeName(*row.expect.code));
    CHECK_THAT((*m)[3],
               Catch::StartsWith("ERROR " + std::string(StatusCodeName(*row.expect.code))));
    CHECK_THAT((*m)[3], Catch::Contains(row.expect.text));
    return;
  }
  StatusOr<sc::ReplyHeader> reply =
      m->size() == 2 ? sc::DecodeReply((*m)[0]) : BadRequest("not a REPLY");
  if (!reply.ok()) {
    FAIL_CHECK("not a REPLY");
    return;
  }
  CHECK(reply->request_id == kHostileId);
  CHECK(reply->code == *row.expect.code);
  CHECK_THAT(reply->message, Catch::Contains(row.expect.text));
  CHECK((*m)[1].empty());
}

void RunClientRow(HostileStack& roles, RawClient& raw, const ClientRow& row) {
  INFO("row: " << row.name);
  Counters before = raw.GetCounters();
  raw.SendStrings(row.frames);
  if (row.expect.code) CheckErrorReply(row, raw.RecvStrings());
  Counters after = raw.GetCounters();  // also: nothing else was answered
  CheckCounters(before, after, row.expect.counter, row.expect.count);
  roles.CheckHealthy();
}

std::vector<ClientRow> ClientRows() {
  const std::string payload = "payload";
  const std::string request = Request(kHostileId);
  std::string big_endpoint = Request(kHostileId, kMiB);
  std::string big_method = Request(kHostileId, "echo", kMiB);
  auto request_with = [](const std::function<void(Packer&)>& fields) {
    return Pack([&](Packer& p) {
      p.pack_array(8);
      p.pack(uint64_t{1});
      p.pack(uint64_t{1});
      fields(p);
    });
  };
  return {
      // Frame shapes.
      {"one frame that is a bare payload", {"hello"}, Dropped("malformed_client")},
      {"empty header frame then a payload", {"", payload}, Dropped("malformed_client")},
      {"one empty frame", {""}, Dropped("malformed_client")},
      {"header that is not MessagePack",
       {std::string("\xc1", 1), payload},
       Dropped("malformed_client")},
      {"header that is a MessagePack map",
       {Pack([](Packer& p) { p.pack_map(0); }), payload},
       Dropped("malformed_client")},
      {"header that is a MessagePack string",
       {Pack([](Packer& p) { Str(p, "REQUEST"); }), payload},
       Dropped("malformed_client")},
      {"header array of one element",
       {Pack([](Packer& p) {
          p.pack_array(1);
          p.pack(uint64_t{1});
        }),
        payload},
       Dropped("malformed_client")},
      {"REQUEST header of 2 elements: no request id",
       {Pack([](Packer& p) {
          p.pack_array(2);
          p.pack(uint64_t{1});
          p.pack(uint64_t{1});
        }),
        payload},
       Dropped("malformed_client")},
      {"REQUEST header of 3 elements",
       {Pack([](Packer& p) {
          p.pack_array(3);
          p.pack(uint64_t{1});
          p.pack(uint64_t{1});
          p.pack(kHostileId);
        }),
        payload},
       Refused(StatusCode::kBadRequest, "REQUEST header has 3 elements, needs 8")},
      {"REQUEST with a string request id",
       {request_with([](Packer& p) {
          Str(p, "42");
          Str(p, "echo");
          Str(p, "__call__");
          p.pack(uint32_t{0});
          Str(p, "");
          p.pack(int32_t{0});
        }),
        payload},
       Dropped("malformed_client")},
      {"REQUEST with an integer endpoint",
       {request_with([](Packer& p) {
          p.pack(kHostileId);
          p.pack(uint64_t{7});
          Str(p, "__call__");
          p.pack(uint32_t{0});
          Str(p, "");
          p.pack(int32_t{0});
        }),
        payload},
       Refused(StatusCode::kBadRequest, "field 'endpoint' must be a string")},
      {"REQUEST with a negative timeout",
       {request_with([](Packer& p) {
          p.pack(kHostileId);
          Str(p, "echo");
          Str(p, "__call__");
          p.pack(int32_t{-5});
          Str(p, "");
          p.pack(int32_t{0});
        }),
        payload},
       Refused(StatusCode::kBadRequest, "field 'timeout_ms' must be an unsigned integer")},
      {"REQUEST with a priority beyond int32",
       {request_with([](Packer& p) {
          p.pack(kHostileId);
          Str(p, "echo");
          Str(p, "__call__");
          p.pack(uint32_t{0});
          Str(p, "");
          p.pack(uint64_t{1} << 40);
        }),
        payload},
       Refused(StatusCode::kBadRequest, "field 'priority' is out of range")},
      {"REQUEST with trailing bytes after the header",
       {request + std::string(1, '\0'), payload},
       Refused(StatusCode::kBadRequest, "trailing bytes")},
      {"REQUEST header cut short",
       {request.substr(0, request.size() - 4), payload},
       Refused(StatusCode::kBadRequest, "not valid MessagePack")},
      // Version and command.
      {"REQUEST of protocol version 2",
       {Patch(request, 1, 2), payload},
       Dropped("malformed_client")},
      {"REQUEST of protocol version 0",
       {Patch(request, 1, 0), payload},
       Dropped("malformed_client")},
      {"unknown command 99", {Patch(request, 2, 99), payload}, Dropped("malformed_client")},
      {"READY sent by a client", {Ready("echo", "client-1")}, Dropped("malformed_client")},
      {"RESULTS sent by a client",
       {Results({{kHostileId, StatusCode::kOk, ""}}), payload},
       Dropped("malformed_client")},
      {"HEARTBEAT sent by a client", {kHeartbeat}, Dropped("malformed_client")},
      {"REPLY sent by a client",
       {sc::EncodeReply({kHostileId, StatusCode::kOk, ""}), payload},
       Dropped("malformed_client")},
      // Payload frames.
      {"REQUEST with no payload frame",
       {request},
       Refused(StatusCode::kBadRequest, "exactly one payload frame, got 0")},
      {"REQUEST with two payload frames",
       {request, payload, payload},
       Refused(StatusCode::kBadRequest, "exactly one payload frame, got 2")},
      {"STATUS with a payload frame",
       {sc::EncodeStatusRequest(kHostileId), payload},
       Refused(StatusCode::kBadRequest, "payload")},
      // Names and sizes.
      {"REQUEST with an empty endpoint",
       {Request(kHostileId, ""), payload},
       Refused(StatusCode::kBadRequest, "field 'endpoint' is empty")},
      {"REQUEST with an empty method",
       {Request(kHostileId, "echo", ""), payload},
       Refused(StatusCode::kBadRequest, "field 'method' is empty")},
      {"REQUEST with a space in the endpoint",
       {Request(kHostileId, "ec ho"), payload},
       Refused(StatusCode::kBadRequest, "endpoint")},
      {"REQUEST with a 200 byte endpoint",
       {Request(kHostileId, std::string(200, 'e')), payload},
       Refused(StatusCode::kBadRequest, "field 'endpoint' is 200 bytes, more than 128")},
      {"REQUEST with a 1 MiB endpoint",
       {big_endpoint, payload},
       Refused(StatusCode::kBadRequest, "65536")},  // the header limit (PROTOCOL.md §3)
      {"REQUEST with a 1 MiB method",
       {big_method, payload},
       Refused(StatusCode::kBadRequest, "65536")},
      {"REQUEST for an endpoint that does not exist",
       {Request(kHostileId, "nope"), payload},
       Refused(StatusCode::kNotFound, "no endpoint named 'nope'", "unknown_endpoint_requests")},
      // Majordomo (PROTOCOL.md §7.2) on the client port.
      {"MDP client message without a service frame", {"", "MDPC01"}, Dropped("malformed_client")},
      {"MDP worker protocol on the client port",
       {"", "MDPW01", "echo", payload},
       Dropped("malformed_client")},
      {"MDP with an unknown protocol frame",
       {"", "MDPC02", "echo", payload},
       Dropped("malformed_client")},
      {"MDP request with no body frame",
       {"", "MDPC01", "echo"},
       Refused(StatusCode::kBadRequest, "exactly one body frame, got 0")},
      {"MDP request with two body frames",
       {"", "MDPC01", "echo", payload, payload},
       Refused(StatusCode::kBadRequest, "exactly one body frame, got 2")},
      {"MDP request for a service that does not exist",
       {"", "MDPC01", "nope", payload},
       Refused(StatusCode::kNotFound, "no endpoint named 'nope'", "unknown_endpoint_requests")},
      {"MDP request for a 1 MiB service name",
       {"", "MDPC01", kMiB, payload},
       Refused(StatusCode::kNotFound, "no endpoint named", "unknown_endpoint_requests")},
      {"MDP mmi.service with no body frame",
       {"", "MDPC01", "mmi.service"},
       Refused(StatusCode::kBadRequest, "mmi.service takes one body frame")},
  };
}

TEST_CASE("Hostile client messages are refused with BAD_REQUEST or dropped and counted",
          "[e2e][hostile]") {
  HostileStack roles;
  zmq::context_t ctx;
  RawClient raw(ctx, roles.client_address());
  for (const ClientRow& row : ClientRows()) RunClientRow(roles, raw, row);
  // The operator's view in Prometheus matches STATUS.
  Counters counters = raw.GetCounters();
  CHECK(roles.Metric("zserve_broker_dropped_messages_total{reason=\"malformed_client\"}") ==
        static_cast<double>(counters.at("malformed_client")));
  CHECK(counters.at("malformed_client") > 10);
}

TEST_CASE("Requests refused for a configured endpoint count in its metrics", "[e2e][hostile]") {
  // docs/metrics.md: requests_total counts them, refused ones included, and
  // endpoint_errors_total those refused at once. These were in neither.
  HostileStack roles;
  zmq::context_t ctx;
  RawClient raw(ctx, roles.client_address());
  const std::string requests = "zserve_broker_requests_total{endpoint=\"echo\"}";
  const std::string refused =
      "zserve_broker_endpoint_errors_total{endpoint=\"echo\",type=\"BAD_REQUEST\"}";
  const double requests_before = roles.Metric(requests).value_or(0);
  const double refused_before = roles.Metric(refused).value_or(0);
  int rows = 0;
  for (const ClientRow& row : ClientRows()) {
    const std::string name = row.name;
    if (name == "REQUEST with two payload frames" || name == "MDP request with two body frames") {
      RunClientRow(roles, raw, row);  // and a good call to echo after it
      ++rows;
    }
  }
  REQUIRE(rows == 2);
  CHECK(roles.Metric(refused).value_or(0) - refused_before == 2);
  CHECK(roles.Metric(requests).value_or(0) - requests_before == 4);  // 2 refused, 2 served
}

// `w` as the one replica of backend "raw", registered once STATUS shows it.
void RegisterRaw(HostileStack& roles, RawWorker& w, uint32_t capacity, bool packed = false) {
  w.Register("raw", "raw-a", capacity, packed);
  WaitForReplicas(roles.client(), "raw", 1);
}

TEST_CASE("A request id reused while the first is in flight is answered once for each request",
          "[e2e][hostile]") {
  // PROTOCOL.md §4.1: request ids MUST be unique among a client's requests in
  // flight. The broker does not hold the client to it: it names each request
  // by its own token, so both are served and each gets exactly one REPLY,
  // both carrying the reused id.
  HostileStack roles;
  zmq::context_t ctx;
  RawWorker a(ctx, roles.worker_address());
  RegisterRaw(roles, a, 2);
  RawClient raw(ctx, roles.client_address());
  Counters before = raw.GetCounters();
  raw.SendStrings({Request(7, "raw"), "first"});
  std::vector<uint64_t> first = a.NextBatch(kWait);
  REQUIRE(first.size() == 1);
  raw.SendStrings({Request(7, "raw"), "second"});
  std::vector<uint64_t> second = a.NextBatch(kWait);
  REQUIRE(second.size() == 1);
  CHECK(first[0] != second[0]);
  a.Answer(second[0], "answer to second");
  a.Answer(first[0], "answer to first");
  Strings payloads;
  for (int i = 0; i < 2; ++i) {
    std::optional<Strings> m = raw.RecvStrings();
    INFO("reply " << i << ": " << Show(m));
    REQUIRE(m);
    REQUIRE(m->size() == 2);
    StatusOr<sc::ReplyHeader> reply = sc::DecodeReply((*m)[0]);
    REQUIRE(reply.ok());
    CHECK(reply->request_id == 7);
    CHECK(reply->code == StatusCode::kOk);
    payloads.push_back((*m)[1]);
  }
  CHECK(payloads == Strings{"answer to second", "answer to first"});
  CheckCounters(before, raw.GetCounters(), "", 0);  // and no third reply came
  roles.CheckHealthy();
}

// Answers every item of `batch` (the BATCH `m`) OK in one RESULTS, each with
// "answer to " and its payload.
void AnswerAll(RawWorker& w, const Strings& m, const std::vector<sc::BatchItem>& batch) {
  std::vector<sc::ResultItem> results;
  Strings answer{""};
  for (size_t i = 0; i < batch.size(); ++i) {
    results.push_back({batch[i].token, StatusCode::kOk, ""});
    answer.push_back("answer to " + m[i + 1]);
  }
  answer[0] = sc::EncodeResults(results);
  w.SendStrings(answer);
}

// The REPLIES `raw` gets until `n` calls are answered: header and payload by
// request id, each id once.
std::map<uint64_t, std::pair<sc::ReplyHeader, std::string>> Replies(RawClient& raw, size_t n) {
  std::map<uint64_t, std::pair<sc::ReplyHeader, std::string>> got;
  while (got.size() < n) {
    std::optional<Strings> r = raw.RecvStrings();
    INFO("replies so far " << got.size() << ", then " << Show(r));
    REQUIRE(r);
    StatusOr<std::vector<sc::ReplyHeader>> replies = sc::DecodeReplies((*r)[0]);
    REQUIRE(replies.ok());
    REQUIRE(replies->size() + 1 == r->size());
    for (size_t i = 0; i < replies->size(); ++i) {
      CHECK(got.count((*replies)[i].request_id) == 0);
      got[(*replies)[i].request_id] = {(*replies)[i], (*r)[i + 1]};
    }
  }
  return got;
}

TEST_CASE("Calls dispatched to one replica in one turn share a BATCH of handler batches",
          "[e2e][hostile]") {
  // PROTOCOL.md §4.2: the broker puts what it dispatches to one replica in a
  // loop turn in one BATCH, split into handler batches by `sizes`; the raw
  // backend's max_batch_size is 1, so five calls are five batches of one.
  HostileStack roles;
  zmq::context_t ctx;
  RawWorker a(ctx, roles.worker_address());
  RegisterRaw(roles, a, 5);
  RawClient raw(ctx, roles.client_address());
  std::vector<sc::RequestHeader> calls;
  Strings frames{""};
  for (uint64_t id = 1; id <= 5; ++id) {
    calls.push_back({id, "raw", "__call__", 5000, "", 0});
    frames.push_back("call " + std::to_string(id));
  }
  frames[0] = sc::EncodeRequests(calls);
  raw.SendStrings(frames);
  std::optional<Strings> m = a.Next();
  INFO("expected one BATCH, got " << Show(m));
  REQUIRE(m);
  std::vector<uint32_t> sizes;
  StatusOr<std::vector<sc::BatchItem>> batch = sc::DecodeBatch((*m)[0], &sizes);
  REQUIRE(batch.ok());
  REQUIRE(batch->size() == 5);
  CHECK(sizes == std::vector<uint32_t>{1, 1, 1, 1, 1});
  Strings payloads(m->begin() + 1, m->end());
  std::sort(payloads.begin(), payloads.end());
  CHECK(payloads == Strings(frames.begin() + 1, frames.end()));
  // All five answered in one RESULTS reach the client, each once.
  AnswerAll(a, *m, *batch);
  auto got = Replies(raw, 5);
  for (uint64_t id = 1; id <= 5; ++id) {
    CHECK(got[id].first.code == StatusCode::kOk);
    CHECK(got[id].second == "answer to call " + std::to_string(id));
  }
  roles.CheckHealthy();
}

TEST_CASE("A bad call in a REQUESTS is answered BAD_REQUEST alone and the others are served",
          "[e2e][hostile]") {
  HostileStack roles;
  zmq::context_t ctx;
  RawWorker a(ctx, roles.worker_address());
  RegisterRaw(roles, a, 5);
  RawClient raw(ctx, roles.client_address());
  std::vector<sc::RequestHeader> calls = {{1, "raw", "__call__", 5000, "", 0},
                                          {2, "no spaces allowed", "__call__", 5000, "", 0},
                                          {3, "raw", "", 5000, "", 0},
                                          {4, "raw", "__call__", 5000, std::string(129, 'k'), 0},
                                          {5, "raw", "__call__", 5000, "", 0}};
  raw.SendStrings({sc::EncodeRequests(calls), "one", "two", "three", "four", "five"});
  std::optional<Strings> m = a.Next();
  INFO("expected one BATCH, got " << Show(m));
  REQUIRE(m);
  StatusOr<std::vector<sc::BatchItem>> batch = sc::DecodeBatch((*m)[0]);
  REQUIRE(batch.ok());
  REQUIRE(batch->size() == 2);
  Strings payloads(m->begin() + 1, m->end());
  std::sort(payloads.begin(), payloads.end());
  CHECK(payloads == Strings{"five", "one"});
  AnswerAll(a, *m, *batch);
  auto got = Replies(raw, 5);
  CHECK(got[1].first.code == StatusCode::kOk);
  CHECK(got[1].second == "answer to one");
  CHECK(got[5].first.code == StatusCode::kOk);
  CHECK(got[5].second == "answer to five");
  CHECK(got[2].first.code == StatusCode::kBadRequest);
  CHECK_THAT(got[2].first.message, Catch::Contains("character outside"));
  CHECK(got[3].first.code == StatusCode::kBadRequest);
  CHECK_THAT(got[3].first.message, Catch::Contains("method"));
  CHECK(got[4].first.code == StatusCode::kBadRequest);
  CHECK_THAT(got[4].first.message, Catch::Contains("shard_key"));
  roles.CheckHealthy();
}

// Packed payloads (PROTOCOL.md 4.1, 4.2): several payloads back to back in
// one frame, their sizes in the header's `payload_sizes`.

// The payloads of a packed message: `sizes` laid over the payload frames (the
// frames of `m` after its header) in order, each payload whole inside one
// frame and every byte used; nullopt if they do not lay out so.
std::optional<Strings> SplitPacked(const std::vector<uint64_t>& sizes, const Strings& m) {
  Strings out;
  size_t f = 1;   // the frame being read
  size_t at = 0;  // its bytes already taken
  auto skip_full = [&] {
    while (f < m.size() && at == m[f].size()) {
      ++f;
      at = 0;
    }
  };
  for (uint64_t n : sizes) {
    if (n == 0) {
      out.emplace_back();
      continue;
    }
    skip_full();
    if (f == m.size() || n > m[f].size() - at) return std::nullopt;
    out.push_back(m[f].substr(at, n));
    at += n;
  }
  skip_full();
  if (f != m.size()) return std::nullopt;
  return out;
}

// Calls 1..payloads.size() to the raw endpoint as one packed REQUESTS, the
// payloads back to back in one frame, or in two if `cut` (at a payload
// boundary, in bytes).
Strings PackedRequests(const Strings& payloads, size_t cut = 0) {
  std::vector<sc::RequestHeader> calls;
  std::vector<uint64_t> sizes;
  std::string all;
  for (size_t i = 0; i < payloads.size(); ++i) {
    calls.push_back({i + 1, "raw", "__call__", 5000, "", 0});
    sizes.push_back(payloads[i].size());
    all += payloads[i];
  }
  if (cut == 0) return {sc::EncodeRequests(calls, sizes), all};
  return {sc::EncodeRequests(calls, sizes), all.substr(0, cut), all.substr(cut)};
}

// What the raw worker received of the calls: each item with its payload.
// The same strings in order, to compare what arrived with what was sent
// whatever the order.
Strings Sorted(Strings s) {
  std::sort(s.begin(), s.end());
  return s;
}

struct Received {
  std::vector<sc::BatchItem> items;
  Strings payloads;
  size_t messages = 0;
  size_t payload_frames = 0;
};

// BATCHes on `w` until `count` items came, packed or not as `packed` says.
Received ReceiveItems(RawWorker& w, size_t count, bool packed) {
  Received got;
  while (got.items.size() < count) {
    std::optional<Strings> m = w.Next();
    INFO("items so far " << got.items.size() << ", then " << Show(m));
    REQUIRE(m);
    std::vector<uint32_t> sizes;
    std::vector<uint64_t> payload_sizes;
    StatusOr<std::vector<sc::BatchItem>> batch = sc::DecodeBatch((*m)[0], &sizes, &payload_sizes);
    REQUIRE(batch.ok());
    if (packed) {
      REQUIRE(payload_sizes.size() == batch->size());
      std::optional<Strings> split = SplitPacked(payload_sizes, *m);
      REQUIRE(split);
      got.payloads.insert(got.payloads.end(), split->begin(), split->end());
    } else {
      CHECK(payload_sizes.empty());
      REQUIRE(batch->size() + 1 == m->size());
      got.payloads.insert(got.payloads.end(), m->begin() + 1, m->end());
    }
    got.items.insert(got.items.end(), batch->begin(), batch->end());
    ++got.messages;
    got.payload_frames += m->size() - 1;
  }
  CHECK(got.items.size() == count);
  return got;
}

// The client's answers to `count` requests, each exactly once, all in packed
// REPLIES: id -> (status, payload).
std::map<uint64_t, std::pair<sc::ReplyHeader, std::string>> ReceivePackedReplies(RawClient& raw,
                                                                                 size_t count) {
  std::map<uint64_t, std::pair<sc::ReplyHeader, std::string>> got;
  while (got.size() < count) {
    std::optional<Strings> m = raw.RecvStrings();
    INFO("replies so far " << got.size() << ", then " << Show(m));
    REQUIRE(m);
    std::vector<uint64_t> payload_sizes;
    StatusOr<std::vector<sc::ReplyHeader>> replies = sc::DecodeReplies((*m)[0], &payload_sizes);
    REQUIRE(replies.ok());
    REQUIRE(payload_sizes.size() == replies->size());
    std::optional<Strings> payloads = SplitPacked(payload_sizes, *m);
    REQUIRE(payloads);
    for (size_t i = 0; i < replies->size(); ++i) {
      CHECK(got.count((*replies)[i].request_id) == 0);
      got[(*replies)[i].request_id] = {(*replies)[i], (*payloads)[i]};
    }
  }
  return got;
}

std::string Reversed(std::string s) {
  std::reverse(s.begin(), s.end());
  return s;
}

TEST_CASE("A packed worker gets a packed REQUESTS in packed BATCHes and its packed RESULTS arrive",
          "[e2e][hostile]") {
  HostileStack roles;
  zmq::context_t ctx;
  RawWorker a(ctx, roles.worker_address());
  RegisterRaw(roles, a, 6, /*packed=*/true);
  RawClient raw(ctx, roles.client_address());
  Counters before = raw.GetCounters();
  const Strings sent = {"first call", "", "3", std::string(2000, 'q') + "end", "fail me", "six"};
  raw.SendStrings(PackedRequests(sent));
  // The payloads lie together in the client's frame: they come as slices
  // of it, fewer frames than items, with the same bytes.
  Received got = ReceiveItems(a, sent.size(), /*packed=*/true);
  INFO("BATCH messages: " << got.messages << ", payload frames: " << got.payload_frames);
  CHECK(got.payload_frames < got.items.size());
  CHECK(Sorted(got.payloads) == Sorted(sent));

  // One RESULTS, every result in one frame: each payload reversed behind
  // "re:", and "fail me" failed (no payload).
  std::vector<sc::ResultItem> results;
  std::vector<uint64_t> sizes;
  std::string all;
  for (size_t i = 0; i < got.items.size(); ++i) {
    if (got.payloads[i] == "fail me") {
      results.push_back({got.items[i].token, StatusCode::kHandlerError, "failed on purpose"});
      sizes.push_back(0);
      continue;
    }
    std::string answer = "re:" + Reversed(got.payloads[i]);
    results.push_back({got.items[i].token, StatusCode::kOk, ""});
    sizes.push_back(answer.size());
    all += answer;
  }
  a.SendStrings({sc::EncodeResults(results, sizes), all});

  auto replies = ReceivePackedReplies(raw, sent.size());
  for (uint64_t id = 1; id <= sent.size(); ++id) {
    const std::string& p = sent[id - 1];
    INFO("request " << id << " of payload " << p.substr(0, 20));
    REQUIRE(replies.count(id) == 1);
    if (p == "fail me") {
      CHECK(replies[id].first.code == StatusCode::kHandlerError);
      CHECK(replies[id].first.message == "failed on purpose");
      CHECK(replies[id].second.empty());
    } else {
      CHECK(replies[id].first.code == StatusCode::kOk);
      CHECK(replies[id].second == "re:" + Reversed(p));
    }
  }
  // Nothing dropped, and no other reply came before the STATUS reply.
  CheckCounters(before, raw.GetCounters(), "", 0);
  roles.CheckHealthy();
}

TEST_CASE("A worker without the packed flag gets one payload frame per item of a packed REQUESTS",
          "[e2e][hostile]") {
  HostileStack roles;
  zmq::context_t ctx;
  RawWorker a(ctx, roles.worker_address());
  RegisterRaw(roles, a, 6);
  RawClient raw(ctx, roles.client_address());
  Counters before = raw.GetCounters();
  const Strings sent = {"first call", "", "3", std::string(2000, 'q') + "end", "five", "six"};
  // Over two frames, cut after the third payload.
  raw.SendStrings(PackedRequests(sent, sent[0].size() + sent[1].size() + sent[2].size()));
  Received got = ReceiveItems(a, sent.size(), /*packed=*/false);
  CHECK(got.payload_frames == got.items.size());
  CHECK(Sorted(got.payloads) == Sorted(sent));

  // Unpacked RESULTS, one frame each: the client still gets packed REPLIES.
  std::vector<sc::ResultItem> results;
  Strings answer{""};
  for (size_t i = 0; i < got.items.size(); ++i) {
    results.push_back({got.items[i].token, StatusCode::kOk, ""});
    answer.push_back("re:" + Reversed(got.payloads[i]));
  }
  answer[0] = sc::EncodeResults(results);
  a.SendStrings(answer);
  auto replies = ReceivePackedReplies(raw, sent.size());
  for (uint64_t id = 1; id <= sent.size(); ++id) {
    INFO("request " << id);
    REQUIRE(replies.count(id) == 1);
    CHECK(replies[id].first.code == StatusCode::kOk);
    CHECK(replies[id].second == "re:" + Reversed(sent[id - 1]));
  }
  CheckCounters(before, raw.GetCounters(), "", 0);
  roles.CheckHealthy();
}

TEST_CASE("Packed RESULTS whose sizes do not match their frames are dropped and calls stay held",
          "[e2e][hostile]") {
  HostileStack roles;
  zmq::context_t ctx;
  RawWorker a(ctx, roles.worker_address());
  RegisterRaw(roles, a, 3, /*packed=*/true);
  RawClient raw(ctx, roles.client_address());
  const Strings sent = {"a", "bb", "ccc"};
  raw.SendStrings(PackedRequests(sent));
  Received got = ReceiveItems(a, sent.size(), /*packed=*/true);
  std::map<std::string, uint64_t> token_of;
  for (size_t i = 0; i < got.items.size(); ++i) token_of[got.payloads[i]] = got.items[i].token;
  REQUIRE(token_of.size() == sent.size());
  // The answer to a call is its payload upper-cased: "A", "BB", "CCC".
  std::vector<sc::ResultItem> results;
  for (const std::string& p : sent) results.push_back({token_of.at(p), StatusCode::kOk, ""});
  const std::vector<uint64_t> sizes = {1, 2, 3};
  const std::string all = "ABBCCC";
  const std::string header = sc::EncodeResults(results, sizes);
  struct Row {
    const char* name;
    Strings frames;
  };
  const std::vector<Row> rows = {
      {"sizes adding up to more bytes than the frame", {header, "ABB"}},
      {"sizes adding up to fewer bytes than the frame", {header, "ABBCCCx"}},
      {"a payload crossing a frame boundary", {header, "AB", "BCCC"}},
      {"sizes and no payload frame", {header}},
      {"fewer sizes than items",
       {sc::EncodeResults(results, std::vector<uint64_t>(sizes.begin(), sizes.end() - 1)), all}},
  };
  for (const Row& row : rows) {
    INFO("row: " << row.name);
    Counters before = raw.GetCounters();
    a.SendStrings(row.frames);
    // Once the counter shows it read, each STATUS reply being the next
    // message means no call was answered.
    Counters after;
    REQUIRE(Eventually([&] {
      after = raw.GetCounters();
      return after.at("malformed_worker") >= before.at("malformed_worker") + 1;
    }));
    CheckCounters(before, after, "malformed_worker", 1);
    nlohmann::json status = raw.Status();
    CHECK(status["backends"]["raw"]["replicas"] == 1);
    CHECK(status["backends"]["raw"]["in_flight"] == sent.size());
  }
  // A RESULTS that lays out (over two frames) answers each call once.
  a.SendStrings({header, "ABB", "CCC"});
  auto replies = ReceivePackedReplies(raw, sent.size());
  CHECK(replies[1].second == "A");
  CHECK(replies[2].second == "BB");
  CHECK(replies[3].second == "CCC");
  for (const auto& [id, reply] : replies) CHECK(reply.first.code == StatusCode::kOk);
  nlohmann::json status = raw.Status();  // and no other reply came first
  CHECK(status["backends"]["raw"]["in_flight"] == 0);
  roles.CheckHealthy();
}

struct WorkerRow {
  const char* name;
  Strings frames;
  // The broker's first message back, if it answers at all.
  std::optional<Strings> answer;
  std::string counter;  // empty: none grows
  uint64_t count = 1;
};

// A row from a connection the broker does not know as a replica.
void RunWorkerRow(HostileStack& roles, zmq::context_t& ctx, RawClient& raw, const WorkerRow& row) {
  INFO("row: " << row.name);
  Counters before = raw.GetCounters();
  zmq::socket_t w = Dealer(ctx, roles.worker_address());
  SendStrings(w, row.frames);
  if (row.answer) {
    std::optional<Strings> m = RecvStrings(w, kWait);
    INFO("answer: " << Show(m));
    CHECK(m == row.answer);
  }
  // The probe: still not a replica, and nothing else was answered.
  SendStrings(w, {kHeartbeat});
  std::optional<Strings> m = RecvStrings(w, kWait);
  INFO("answer to the HEARTBEAT probe: " << Show(m));
  CHECK(m == Strings{kDisconnect});
  CheckCounters(before, raw.GetCounters(), row.counter, row.count);
  roles.CheckHealthy();
}

std::vector<WorkerRow> WorkerRows() {
  const std::string ready = Ready("raw", "raw-x");
  const std::string one_result = Results({{1, StatusCode::kOk, ""}});
  const std::string mdp_ready("\x01", 1);
  const Strings wrong_port = {
      sc::EncodeReply({kHostileId, StatusCode::kBadRequest,
                       "this is the broker's worker port; clients connect to its client port "
                       "(zserve up prints both)"}),
      ""};
  return {
      {"one frame that is a bare payload", {"hello"}, {}, "malformed_worker"},
      {"empty header frame then a payload", {"", "payload"}, {}, "malformed_worker"},
      {"header that is not MessagePack", {std::string("\xc1", 1)}, {}, "malformed_worker"},
      {"header that is a MessagePack map",
       {Pack([](Packer& p) { p.pack_map(0); })},
       {},
       "malformed_worker"},
      {"READY header of 3 elements",
       {Pack([](Packer& p) {
         p.pack_array(3);
         p.pack(uint64_t{1});
         p.pack(uint64_t{16});
         Str(p, "raw");
       })},
       {},
       "malformed_worker"},
      {"READY with an integer backend",
       {Pack([](Packer& p) {
         p.pack_array(5);
         p.pack(uint64_t{1});
         p.pack(uint64_t{16});
         p.pack(uint64_t{3});
         Str(p, "raw-x");
         p.pack(uint32_t{1});
       })},
       {},
       "malformed_worker"},
      {"READY with a negative capacity",
       {Pack([](Packer& p) {
         p.pack_array(5);
         p.pack(uint64_t{1});
         p.pack(uint64_t{16});
         Str(p, "raw");
         Str(p, "raw-x");
         p.pack(int32_t{-1});
       })},
       {},
       "malformed_worker"},
      {"READY of protocol version 2", {Patch(ready, 1, 2)}, {}, "malformed_worker"},
      {"unknown command 99", {Patch(ready, 2, 99)}, {}, "malformed_worker"},
      {"READY with a trailing payload frame", {ready, "payload"}, {}, "malformed_worker"},
      {"READY for a backend that is not a name",
       {Ready("no spaces", "raw-x")},
       {},
       "malformed_worker"},
      {"READY with a 1 MiB backend name", {Ready(kMiB, "raw-x")}, {}, "malformed_worker"},
      {"READY with a 1 MiB replica tag", {Ready("raw", kMiB)}, {}, "malformed_worker"},
      // A client on the worker port: answered on it, BAD_REQUEST, so that it
      // fails at once; nothing runs.
      {"REQUEST sent by a worker",
       {Request(kHostileId), "payload"},
       wrong_port,
       "malformed_worker"},
      {"STATUS sent by a worker",
       {sc::EncodeStatusRequest(kHostileId)},
       wrong_port,
       "malformed_worker"},
      {"BATCH sent by a worker",
       {sc::EncodeBatch({{1, "__call__", 100}}), "payload"},
       {},
       "malformed_worker"},
      {"RESULTS before READY", {one_result, "payload"}, Strings{kDisconnect}, "unknown_results"},
      {"malformed RESULTS before READY", {one_result}, Strings{kDisconnect}, "unknown_results"},
      {"DISCONNECT before READY", {kDisconnect}, Strings{kDisconnect}, ""},
      // Majordomo (PROTOCOL.md §7.3) on the worker port.
      {"MDP worker message without a command", {"", "MDPW01"}, {}, "malformed_worker"},
      {"MDP worker command byte 0x09", {"", "MDPW01", "\x09"}, {}, "malformed_worker"},
      {"MDP command of two bytes", {"", "MDPW01", "\x01\x01", "raw"}, {}, "malformed_worker"},
      {"MDP READY without a service frame", {"", "MDPW01", mdp_ready}, {}, "malformed_worker"},
      {"MDP READY with two service frames",
       {"", "MDPW01", mdp_ready, "raw", "raw"},
       {},
       "malformed_worker"},
      {"MDP client protocol on the worker port",
       {"", "MDPC01", mdp_ready, "raw"},
       {},
       "malformed_worker"},
      {"MDP READY for an mmi service",
       {"", "MDPW01", mdp_ready, "mmi.service"},
       kMdpDisconnect,
       "malformed_worker"},
      {"MDP READY for a service that is not a name",
       {"", "MDPW01", mdp_ready, "no spaces"},
       kMdpDisconnect,
       "malformed_worker"},
      {"MDP READY for a 1 MiB service name",
       {"", "MDPW01", mdp_ready, kMiB},
       kMdpDisconnect,
       "malformed_worker"},
      {"MDP REPLY before READY",
       {"", "MDPW01", "\x03", "1", "", "payload"},
       kMdpDisconnect,
       "unknown_results"},
      {"MDP REPLY without the empty frame",
       {"", "MDPW01", "\x03", "1", "payload"},
       {},
       "malformed_worker"},
      {"MDP REQUEST sent by a worker",
       {"", "MDPW01", "\x02", "1", "", "payload"},
       kMdpDisconnect,
       "malformed_worker"},
      {"MDP HEARTBEAT with a trailing frame",
       {"", "MDPW01", "\x04", "payload"},
       {},
       "malformed_worker"},
      {"MDP HEARTBEAT before READY", {"", "MDPW01", "\x04"}, kMdpDisconnect, ""},
  };
}

TEST_CASE("Hostile messages from unregistered workers are dropped and counted", "[e2e][hostile]") {
  HostileStack roles;
  zmq::context_t ctx;
  RawClient raw(ctx, roles.client_address());
  for (const WorkerRow& row : WorkerRows()) RunWorkerRow(roles, ctx, raw, row);
  Counters counters = raw.GetCounters();
  CHECK(roles.Metric("zserve_broker_dropped_messages_total{reason=\"malformed_worker\"}") ==
        static_cast<double>(counters.at("malformed_worker")));
  CHECK(roles.Metric("zserve_broker_dropped_messages_total{reason=\"unknown_result\"}") ==
        static_cast<double>(counters.at("unknown_results")));
  // None of them became a replica.
  nlohmann::json j = raw.Status();
  CHECK(j["backends"]["raw"]["replicas"] == 0);
  CHECK(j["backends"]["mdp"]["replicas"] == 0);
}

// Rows about a call in flight on one of two registered replicas: the
// `owner`, which the broker sent it to, and the `other`.
enum class From { kOwner, kOther };

struct InFlightRow {
  const char* name;
  From from;
  // The messages sent, given the token of the call in flight.
  std::function<std::vector<Strings>(uint64_t token)> messages;
  std::string counter;
  uint64_t count = 1;
  // True: the messages answer the call with payload "owner"; else the owner
  // answers it afterwards, properly.
  bool answers = false;
};

std::vector<InFlightRow> InFlightRows() {
  using Msgs = std::vector<Strings>;
  auto ok = [](uint64_t t) { return sc::ResultItem{t, StatusCode::kOk, ""}; };
  return {
      {"RESULTS from a worker the call was not sent to", From::kOther,
       [ok](uint64_t t) {
         return Msgs{{Results({ok(t)}), "hijacked"}};
       },
       "unknown_results"},
      {"RESULTS for a token never dispatched", From::kOther,
       [ok](uint64_t t) {
         return Msgs{{Results({ok(t + 1'000'000)}), "made up"}};
       },
       "unknown_results"},
      {"RESULTS with one item and no payload frame", From::kOwner,
       [ok](uint64_t t) { return Msgs{{Results({ok(t)})}}; }, "malformed_worker"},
      {"RESULTS with one item and two payload frames", From::kOwner,
       [ok](uint64_t t) {
         return Msgs{{Results({ok(t)}), "owner", "extra"}};
       },
       "malformed_worker"},
      {"RESULTS with two items and one payload frame", From::kOwner,
       [ok](uint64_t t) {
         return Msgs{{Results({ok(t), ok(t + 1'000'000)}), "owner"}};
       },
       "malformed_worker"},
      {"RESULTS with no items", From::kOwner,
       [](uint64_t) {
         return Msgs{{Pack([](Packer& p) {
           p.pack_array(3);
           p.pack(uint64_t{1});
           p.pack(uint64_t{18});
           p.pack_array(0);
         })}};
       },
       "malformed_worker"},
      {"RESULTS with a status that is no status code", From::kOwner,
       [](uint64_t t) {
         return Msgs{{Pack([t](Packer& p) {
                        p.pack_array(3);
                        p.pack(uint64_t{1});
                        p.pack(uint64_t{18});
                        p.pack_array(1);
                        p.pack_array(3);
                        p.pack(t);
                        p.pack(uint64_t{200});
                        Str(p, "");
                      }),
                      "owner"}};
       },
       "malformed_worker"},
      {"RESULTS of protocol version 2", From::kOwner,
       [ok](uint64_t t) {
         return Msgs{{Patch(Results({ok(t)}), 1, 2), "owner"}};
       },
       "malformed_worker"},
      {"a second READY from the owner, with another capacity", From::kOwner,
       [](uint64_t) { return Msgs{{Ready("raw", "raw-again", 2)}}; }, "malformed_worker"},
      {"MDP REPLY from a ZSP replica", From::kOwner,
       [](uint64_t t) {
         return Msgs{{"", "MDPW01", "\x03", std::to_string(t), "", "owner"}};
       },
       "malformed_worker"},
      {"RESULTS answering one token twice in one message", From::kOwner,
       [ok](uint64_t t) {
         return Msgs{{Results({ok(t), ok(t)}), "owner", "again"}};
       },
       "unknown_results", 1, /*answers=*/true},
      {"RESULTS answering one token twice in two messages", From::kOwner,
       [ok](uint64_t t) {
         return Msgs{{Results({ok(t)}), "owner"}, {Results({ok(t)}), "again"}};
       },
       "unknown_results", 1, /*answers=*/true},
  };
}

// The client's one REPLY for request `id`: OK with `payload`.
void CheckOneAnswer(RawClient& raw, uint64_t id, const std::string& payload) {
  std::optional<Strings> m = raw.RecvStrings();
  INFO("reply: " << Show(m));
  REQUIRE(m);
  REQUIRE(m->size() == 2);
  StatusOr<sc::ReplyHeader> reply = sc::DecodeReply((*m)[0]);
  REQUIRE(reply.ok());
  CHECK(reply->request_id == id);
  CHECK(reply->code == StatusCode::kOk);
  CHECK((*m)[1] == payload);
}

void RunInFlightRow(HostileStack& roles, RawClient& raw, RawWorker& a, RawWorker& b, uint64_t id,
                    const InFlightRow& row) {
  INFO("row: " << row.name);
  raw.SendStrings({Request(id, "raw"), "call"});
  // Whichever replica the broker picks is the owner.
  RawWorker* owner = nullptr;
  std::vector<uint64_t> tokens;
  REQUIRE(Eventually(
      [&] {
        for (RawWorker* w : {&a, &b}) {
          tokens = w->NextBatch(milliseconds(20));
          if (!tokens.empty()) {
            owner = w;
            return true;
          }
        }
        return false;
      },
      kWait, milliseconds(0)));
  REQUIRE(tokens.size() == 1);
  RawWorker* other = owner == &a ? &b : &a;
  Counters before = raw.GetCounters();
  for (const Strings& m : row.messages(tokens[0]))
    (row.from == From::kOwner ? owner : other)->SendStrings(m);
  if (row.answers) CheckOneAnswer(raw, id, "owner");
  // Once the counter shows every message read, each STATUS reply being the
  // next message means no (other) answer was sent.
  Counters after;
  REQUIRE(Eventually([&] {
    after = raw.GetCounters();
    return after.at(row.counter) >= before.at(row.counter) + row.count;
  }));
  CheckCounters(before, after, row.counter, row.count);
  if (!row.answers) {
    owner->Answer(tokens[0], "owner");
    CheckOneAnswer(raw, id, "owner");
    CheckCounters(after, raw.GetCounters(), "", 0);
  }
  // Both are still replicas.
  CHECK(raw.Status()["backends"]["raw"]["replicas"] == 2);
  roles.CheckHealthy();
}

TEST_CASE("Results for calls in flight from the wrong worker or malformed are dropped and counted",
          "[e2e][hostile]") {
  HostileStack roles;
  zmq::context_t ctx;
  RawWorker a(ctx, roles.worker_address());
  RawWorker b(ctx, roles.worker_address());
  a.Register("raw", "raw-a");
  b.Register("raw", "raw-b");
  RawClient raw(ctx, roles.client_address());
  WaitForReplicas(roles.client(), "raw", 2);
  uint64_t id = 100;
  for (const InFlightRow& row : InFlightRows()) RunInFlightRow(roles, raw, a, b, ++id, row);
}

TEST_CASE("A READY repeated word for word is answered and changes nothing but another is refused",
          "[e2e][hostile]") {
  // A worker answers each DISCONNECT with READY: a broker that restarted may
  // send it several before the first READY comes, and gets as many READYs.
  HostileStack roles;
  zmq::context_t ctx;
  RawClient raw(ctx, roles.client_address());
  RawWorker w(ctx, roles.worker_address());
  w.Register("raw", "raw-a");
  WaitForReplicas(roles.client(), "raw", 1);
  Counters before = raw.GetCounters();
  w.Register("raw", "raw-a");  // answered with a HEARTBEAT, as the first
  w.Register("raw", "raw-a");
  Counters after = raw.GetCounters();
  CheckCounters(before, after, "", 0);
  CHECK(raw.Status()["backends"]["raw"]["replicas"] == 1);
  // Still one replica of capacity 1, whose calls are answered once.
  raw.SendStrings({Request(41, "raw"), "call"});
  std::vector<uint64_t> tokens = w.NextBatch(kWait);
  REQUIRE(tokens.size() == 1);
  w.Answer(tokens[0], "owner");
  CheckOneAnswer(raw, 41, "owner");
  // A READY that differs (here the capacity) is refused and counted.
  before = raw.GetCounters();
  w.SendStrings({Ready("raw", "raw-a", 2)});
  REQUIRE(Eventually([&] {
    after = raw.GetCounters();
    return after.at("malformed_worker") > before.at("malformed_worker");
  }));
  CheckCounters(before, after, "malformed_worker", 1);
  CHECK(raw.Status()["backends"]["raw"]["replicas"] == 1);
  roles.CheckHealthy();
}

TEST_CASE("Bad REPLYs of a registered MDP worker are dropped and a second READY removes it",
          "[e2e][hostile]") {
  HostileStack roles;
  zmq::context_t ctx;
  RawClient raw(ctx, roles.client_address());
  zmq::socket_t m = Dealer(ctx, roles.worker_address());
  const std::string ready("\x01", 1), reply("\x03", 1), heartbeat("\x04", 1);
  SendStrings(m, {"", "MDPW01", ready, "mdp"});
  std::optional<Strings> got = RecvStrings(m, kWait);
  REQUIRE(got);
  REQUIRE(*got == Strings{"", "MDPW01", heartbeat});
  WaitForReplicas(roles.client(), "mdp", 1);
  struct Row {
    const char* name;
    Strings frames;
    std::string counter;
  };
  const std::vector<Row> rows = {
      {"MDP REPLY for an address that is no token",
       {"", "MDPW01", reply, "abc", "", "x"},
       "unknown_results"},
      {"MDP REPLY for a token with a leading zero",
       {"", "MDPW01", reply, "007", "", "x"},
       "unknown_results"},
      {"MDP REPLY for a token beyond uint64",
       {"", "MDPW01", reply, "99999999999999999999", "", "x"},
       "unknown_results"},
      {"MDP REPLY for a token never dispatched",
       {"", "MDPW01", reply, "123456789", "", "x"},
       "unknown_results"},
      {"ZSP RESULTS from an MDP replica for a token never dispatched",
       {Results({{123456789, StatusCode::kOk, ""}}), "x"},
       "unknown_results"},
  };
  for (const Row& row : rows) {
    INFO("row: " << row.name);
    Counters before = raw.GetCounters();
    SendStrings(m, row.frames);
    Counters after;
    REQUIRE(Eventually([&] {
      after = raw.GetCounters();
      return after.at(row.counter) > before.at(row.counter);
    }));
    CheckCounters(before, after, row.counter, 1);
    CHECK(raw.Status()["backends"]["mdp"]["replicas"] == 1);
    roles.CheckHealthy();
  }
  // RFC 7: a second READY is refused with DISCONNECT and the replica removed.
  Counters before = raw.GetCounters();
  SendStrings(m, {"", "MDPW01", ready, "mdp"});
  got = RecvStrings(m, kWait);
  while (got && *got == Strings{"", "MDPW01", heartbeat}) got = RecvStrings(m, kWait);
  INFO("answer to the second READY: " << Show(got));
  REQUIRE(got);
  CHECK(*got == kMdpDisconnect);
  nlohmann::json j = raw.Status();
  CHECK(j["backends"]["mdp"]["replicas"] == 0);
  Counters after = raw.GetCounters();
  CheckCounters(before, after, "malformed_worker", 1);
  roles.CheckHealthy();
}

TEST_CASE("Two workers READY with one replica tag are two replicas and both serve",
          "[e2e][hostile]") {
  // The tag names a replica in logs and worker metrics only; the broker knows
  // a replica by its connection (PROTOCOL.md §4.2).
  HostileStack roles;
  zmq::context_t ctx;
  RawWorker c(ctx, roles.worker_address());
  RawWorker d(ctx, roles.worker_address());
  c.Register("twin", "same-tag");
  d.Register("twin", "same-tag");  // accepted: a HEARTBEAT at once
  RawClient raw(ctx, roles.client_address());
  CHECK(raw.Status()["backends"]["twin"]["replicas"] == 2);
  // Capacity 1 each: two calls in flight take one replica each.
  raw.SendStrings({Request(1, "twin"), "one"});
  raw.SendStrings({Request(2, "twin"), "two"});
  std::vector<uint64_t> from_c = c.NextBatch(kWait);
  std::vector<uint64_t> from_d = d.NextBatch(kWait);
  REQUIRE(from_c.size() == 1);
  REQUIRE(from_d.size() == 1);
  c.Answer(from_c[0], "c");
  d.Answer(from_d[0], "d");
  std::set<std::string> answers;
  for (int i = 0; i < 2; ++i) {
    std::optional<Strings> m = raw.RecvStrings();
    REQUIRE(m);
    REQUIRE(m->size() == 2);
    answers.insert((*m)[1]);
  }
  CHECK(answers == std::set<std::string>{"c", "d"});
  roles.CheckHealthy();
}

constexpr int kFlood = 10'000;

// The n-th READY of a flood on one connection: the first registers (capacity
// 0); after it, odd ones differ (capacity 1: refused and counted), even ones
// repeat it (answered with a HEARTBEAT, not counted).
std::string FloodReady(const std::string& backend, const std::string& tag, int n) {
  return Ready(backend, tag, n % 2 == 1 ? 1 : 0);
}

// Reads `s` until `want` HEARTBEATs came, or kWait passes; how many came.
int CountHeartbeats(zmq::socket_t& s, int want) {
  int got = 0;
  const auto end = SteadyClock::now() + kWait;
  while (got < want && SteadyClock::now() < end) {
    std::optional<Strings> m = RecvStrings(s, milliseconds(100));
    if (m && *m == Strings{kHeartbeat}) ++got;
  }
  return got;
}

// A normal call, timed.
milliseconds TimedCall(HostileStack& roles) {
  auto start = SteadyClock::now();
  roles.CheckHealthy();
  return std::chrono::duration_cast<milliseconds>(SteadyClock::now() - start);
}

TEST_CASE(
    "A flood of READY on one connection registers one replica and the broker stays responsive",
    "[e2e][hostile]") {
  HostileStack roles;
  zmq::context_t ctx;
  RawClient raw(ctx, roles.client_address());
  Counters before = raw.GetCounters();
  zmq::socket_t f = Dealer(ctx, roles.worker_address());
  for (int n = 0; n < kFlood; ++n) SendStrings(f, {FloodReady("flood", "flood-1", n)});
  CHECK(TimedCall(roles) < kResponsive);
  // The first READY registers; the repeats are answered, the others refused
  // and counted.
  CHECK(CountHeartbeats(f, kFlood / 2) == kFlood / 2);
  Counters after;
  REQUIRE(Eventually([&] {
    after = raw.GetCounters();
    return after.at("malformed_worker") >= before.at("malformed_worker") + kFlood / 2;
  }));
  CheckCounters(before, after, "malformed_worker", kFlood / 2);
  nlohmann::json j = raw.Status();
  CHECK(j["backends"]["flood"]["replicas"] == 1);
  CHECK(TimedCall(roles) < kResponsive);
}

constexpr int kConnections = 100;

// kConnections connections send kFlood READY between them, for the backend
// that `backend(i)` names, and then leave with DISCONNECT.
void FloodFromMany(HostileStack& roles, zmq::context_t& ctx, RawClient& raw,
                   const std::function<std::string(int)>& backend) {
  Counters before = raw.GetCounters();
  std::vector<zmq::socket_t> sockets;
  for (int i = 0; i < kConnections; ++i) sockets.push_back(Dealer(ctx, roles.worker_address()));
  for (int n = 0; n < kFlood / kConnections; ++n) {
    for (int i = 0; i < kConnections; ++i) {
      SendStrings(sockets[i], {FloodReady(backend(i), "many-" + std::to_string(i), n)});
    }
  }
  CHECK(TimedCall(roles) < kResponsive);
  // One replica per connection, however many READY it sent.
  for (zmq::socket_t& s : sockets) {
    CHECK(CountHeartbeats(s, kFlood / kConnections / 2) == kFlood / kConnections / 2);
  }
  REQUIRE(Eventually([&] {
    return raw.GetCounters().at("malformed_worker") >= before.at("malformed_worker") + kFlood / 2;
  }));
  nlohmann::json j = raw.Status();
  size_t replicas = 0;
  for (const auto& [name, b] : j["backends"].items()) {
    if (name != "echo") replicas += b["replicas"].get<size_t>();
  }
  CHECK(replicas == kConnections);
  CheckCounters(before, raw.GetCounters(), "malformed_worker", kFlood / 2);
  // Each leaves: drained at once (it holds nothing) and removed.
  for (zmq::socket_t& s : sockets) SendStrings(s, {kDisconnect});
  for (zmq::socket_t& s : sockets) {
    std::optional<Strings> m;
    do {
      m = RecvStrings(s, kWait);
    } while (m && *m == Strings{kHeartbeat});
    REQUIRE(m);
    CHECK(*m == Strings{kDisconnect});
  }
  CHECK(TimedCall(roles) < kResponsive);
}

TEST_CASE("A flood of READY from many connections keeps one replica per connection",
          "[e2e][hostile]") {
  HostileStack roles;
  zmq::context_t ctx;
  RawClient raw(ctx, roles.client_address());
  FloodFromMany(roles, ctx, raw, [](int) { return std::string("flood"); });
  nlohmann::json j = raw.Status();
  CHECK(j["backends"]["flood"]["replicas"] == 0);
  CHECK(j["backends"].size() == 5);  // the configured ones
}

TEST_CASE("Backends that only hostile READYs named leave STATUS with their last replica",
          "[e2e][hostile]") {
  // Workers may register for a backend the config does not name (PROTOCOL.md
  // §7.3); once the last of them is gone, such a backend is forgotten, so that
  // READYs with ever new names cannot grow the broker's state or its metric
  // series (docs/metrics.md: label values come from the configuration).
  HostileStack roles;
  zmq::context_t ctx;
  RawClient raw(ctx, roles.client_address());
  FloodFromMany(roles, ctx, raw, [](int i) { return "ghost-" + std::to_string(i); });
  nlohmann::json j = raw.Status();
  CHECK(j["backends"].size() == 5);  // the configured ones
  CHECK_FALSE(roles.Metric("zserve_broker_live_replicas{backend=\"ghost-0\"}").has_value());
}

}  // namespace
}  // namespace zserve::testing
