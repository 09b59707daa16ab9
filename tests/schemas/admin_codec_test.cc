// Admin commands of ZSP/1 (schemas/PROTOCOL.md §4.4): every command and the
// reply round-trip, and malformed ones are refused with BAD_REQUEST.
#include <catch2/catch.hpp>
#include <functional>
#include <msgpack.hpp>
#include <string>
#include <vector>

#include "schemas/codec.h"
#include "tests/schemas/raw_msgpack.h"

namespace {

using Catch::Matchers::Contains;
using zserve::StatusCode;
namespace sc = zserve::schemas;
using sc::Command;
using zserve::testing::Packer;
using zserve::testing::Raw;
using zserve::testing::Str;

// [1, command, 7, "a", {key: value}] with the value written by `value`.
std::string WithFields(Command command, const std::string& key,
                       const std::function<void(Packer&)>& value) {
  return Raw([&](Packer& p) {
    p.pack_array(5);
    p.pack(uint64_t{1});
    p.pack(static_cast<uint64_t>(command));
    p.pack(uint64_t{7});
    Str(p, "a");
    p.pack_map(1);
    Str(p, key);
    value(p);
  });
}

sc::ConfigState SomeState() {
  sc::ConfigState s;
  sc::BackendConfig b;
  b.name = "b";
  b.handler = "echo";
  b.num_replicas = 3;
  b.user_config = "{x: 1}";
  s.backends["b"] = b;
  sc::EndpointConfig e;
  e.name = "e";
  e.traffic = {{"b", 1.0}};
  e.shadow = {{"b", 0.5}};
  e.route = "/e";
  e.methods = {"PATCH"};
  s.endpoints["e"] = e;
  sc::EndpointConfig plain;  // no route, default methods
  plain.name = "plain";
  plain.traffic = {{"b", 1.0}};
  s.endpoints["plain"] = plain;
  return s;
}

}  // namespace

TEST_CASE("Every admin command round-trips", "[schemas]") {
  std::vector<sc::AdminRequest> requests;
  sc::AdminRequest r;
  r.request_id = 42;
  r.name = "mlp";
  r.command = Command::kCreateBackend;
  r.backend.handler = "echo";
  r.backend.num_replicas = 2;
  r.backend.max_batch_size = 8;
  r.backend.batch_wait_timeout_ms = 5;
  r.backend.max_concurrent_queries = 32;
  r.backend.max_queued_requests = 10;
  r.backend.retry_on_replica_failure = 0;
  r.backend.user_config = R"({"threshold":0.7})";
  requests.push_back(r);
  r.command = Command::kUpdateBackend;
  r.backend = {};
  r.backend.max_concurrent_queries = 4;  // only one field given
  requests.push_back(r);
  r.backend = {};
  r.command = Command::kDeleteBackend;
  requests.push_back(r);
  r.command = Command::kCreateEndpoint;
  r.endpoint.traffic = {{"a", 0.25}, {"b", 0.75}};
  r.endpoint.timeout_ms = 100;
  requests.push_back(r);
  r.endpoint.route = "/v1/mlp";
  r.endpoint.methods = std::vector<std::string>{"POST", "PUT"};
  requests.push_back(r);
  r.endpoint = {};
  r.command = Command::kUpdateEndpoint;
  r.endpoint.route = "";  // only the route: taken off HTTP
  requests.push_back(r);
  r.endpoint = {};
  r.endpoint.methods = std::vector<std::string>{"GET"};
  requests.push_back(r);
  r.endpoint = {};
  r.command = Command::kDeleteEndpoint;
  requests.push_back(r);
  r.command = Command::kSetTraffic;
  r.weights = {{"a", 0.9}, {"b", 0.1}};
  requests.push_back(r);
  r.command = Command::kSetShadow;
  r.weights = {};
  requests.push_back(r);
  sc::AdminRequest get;
  get.command = Command::kGetState;
  get.request_id = 9;
  requests.push_back(get);
  sc::AdminRequest apply;
  apply.command = Command::kApply;
  apply.request_id = 10;
  apply.state = SomeState();
  requests.push_back(apply);

  for (const sc::AdminRequest& want : requests) {
    INFO(sc::CommandName(want.command));
    std::string header = sc::EncodeAdminRequest(want);
    CHECK(sc::IsAdminCommand(*sc::PeekCommand(header)));
    auto got = sc::DecodeAdminRequest(header);
    REQUIRE(got.ok());
    CHECK(*got == want);
  }
}

TEST_CASE("CREATE_BACKEND and UPDATE_BACKEND carry the largest user_config", "[schemas]") {
  // docs/deployment.md: user_config is up to 64 KiB; with the name and the
  // other fields the header is past 64 KiB, as zserve ctl sends it.
  const Command command = GENERATE(Command::kCreateBackend, Command::kUpdateBackend);
  sc::AdminRequest r;
  r.command = command;
  r.request_id = 3;
  r.name = "a";
  r.backend.handler = "echo";
  r.backend.user_config = std::string(sc::kMaxUserConfigBytes, 'q');
  std::string header = sc::EncodeAdminRequest(r);
  REQUIRE(header.size() > sc::kMaxHeaderBytes);
  auto got = sc::DecodeAdminRequest(header);
  REQUIRE(got.ok());
  CHECK(*got == r);
}

TEST_CASE("ADMIN_REPLY round-trips and cuts long change lists", "[schemas]") {
  sc::AdminReply reply;
  reply.request_id = 5;
  reply.code = StatusCode::kNotFound;
  reply.message = "no backend named 'x'";
  reply.version = 77;
  reply.changes = {"+ backend a", "- endpoint b"};
  reply.state = SomeState();
  auto got = sc::DecodeAdminReply(sc::EncodeAdminReply(reply));
  REQUIRE(got.ok());
  CHECK(*got == reply);

  reply.changes.assign(sc::kMaxChangeLines + 5, "~ backend a: num_replicas 1 -> 2");
  got = sc::DecodeAdminReply(sc::EncodeAdminReply(reply));
  REQUIRE(got.ok());
  REQUIRE(got->changes.size() == sc::kMaxChangeLines);
  CHECK(got->changes.back() == "... and 6 more changes");
}

TEST_CASE("Malformed admin commands are refused with BAD_REQUEST", "[schemas]") {
  struct Bad {
    const char* what;
    std::string header;
    const char* message;
  };
  std::vector<Bad> table = {
      {"an unknown backend field",
       WithFields(Command::kUpdateBackend, "num_replica", [](Packer& p) { p.pack(2); }),
       "unknown backend field 'num_replica'"},
      {"an unknown endpoint field",
       WithFields(Command::kCreateEndpoint, "trafic", [](Packer& p) { p.pack_map(0); }),
       "unknown endpoint field 'trafic'"},
      {"a negative number",
       WithFields(Command::kUpdateBackend, "num_replicas", [](Packer& p) { p.pack(-1); }),
       "'num_replicas' must be an unsigned integer"},
      {"a number past uint32",
       WithFields(Command::kUpdateBackend, "max_batch_size",
                  [](Packer& p) { p.pack(uint64_t{1} << 32); }),
       "'max_batch_size' is out of range"},
      {"a string where a number goes",
       WithFields(Command::kUpdateBackend, "num_replicas", [](Packer& p) { Str(p, "2"); }),
       "must be an unsigned integer"},
      {"a number where a string goes",
       WithFields(Command::kUpdateBackend, "handler", [](Packer& p) { p.pack(1); }),
       "'handler' must be a string"},
      {"traffic that is not a map",
       WithFields(Command::kCreateEndpoint, "traffic", [](Packer& p) { p.pack(1); }),
       "must be a map"},
      {"fields that are not a map", Raw([](Packer& p) {
         p.pack_array(5);
         p.pack(1);
         p.pack(48);
         p.pack(1);
         Str(p, "a");
         p.pack_array(0);
       }),
       "must be a map"},
      {"a missing name", Raw([](Packer& p) {
         p.pack_array(3);
         p.pack(1);
         p.pack(50);
         p.pack(1);
       }),
       "DELETE_BACKEND header has 3 elements, needs 4"},
      {"a name past 128 bytes", Raw([](Packer& p) {
         p.pack_array(4);
         p.pack(1);
         p.pack(52);
         p.pack(1);
         Str(p, std::string(129, 'a'));
       }),
       "more than 128"},
      {"a request id that is not a number", Raw([](Packer& p) {
         p.pack_array(3);
         p.pack(1);
         p.pack(55);
         Str(p, "id");
       }),
       "'request_id' must be an unsigned integer"},
      {"not an admin command", sc::EncodeSimple(Command::kSnapshotRequest),
       "expected an admin command"},
      {"an APPLY naming a backend twice", Raw([](Packer& p) {
         p.pack_array(4);
         p.pack(1);
         p.pack(56);
         p.pack(1);
         p.pack_map(1);
         Str(p, "backends");
         p.pack_array(2);
         for (int i = 0; i < 2; ++i) {
           p.pack_map(1);
           Str(p, "name");
           Str(p, "twice");
         }
       }),
       "names backend 'twice' twice"},
      {"a big header of a command that carries no state or user_config", Raw([](Packer& p) {
         p.pack_array(5);
         p.pack(1);
         p.pack(51);
         p.pack(1);
         Str(p, "a");
         p.pack_map(1);
         Str(p, "route");
         Str(p, std::string(70 * 1024, 'x'));
       }),
       "more than 65536"},
  };
  for (const Bad& bad : table) {
    INFO(bad.what);
    auto r = sc::DecodeAdminRequest(bad.header);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::kBadRequest);
    CHECK_THAT(r.status().message(), Contains(bad.message));
  }
}

TEST_CASE("A state without route and methods keys reads as their defaults", "[schemas]") {
  // An endpoint as states were written before the HTTP gateway (§4.3).
  std::string header = Raw([](Packer& p) {
    p.pack_array(4);
    p.pack(uint64_t{1});
    p.pack(static_cast<uint64_t>(Command::kSnapshot));
    p.pack(uint64_t{3});
    p.pack_map(2);
    Str(p, "backends");
    p.pack_array(0);
    Str(p, "endpoints");
    p.pack_array(1);
    p.pack_map(4);
    Str(p, "name");
    Str(p, "old");
    Str(p, "traffic");
    p.pack_map(0);
    Str(p, "shadow");
    p.pack_map(0);
    Str(p, "timeout_ms");
    p.pack(uint64_t{100});
  });
  auto snapshot = sc::DecodeSnapshot(header);
  REQUIRE(snapshot.ok());
  const sc::EndpointConfig& e = snapshot->state.endpoints.at("old");
  CHECK(e.route.empty());
  CHECK(e.methods == std::vector<std::string>{"GET", "POST"});
  CHECK(e.timeout_ms == 100);
}

TEST_CASE("Malformed route and methods fields are refused", "[schemas]") {
  auto route_number = sc::DecodeAdminRequest(
      WithFields(Command::kUpdateEndpoint, "route", [](Packer& p) { p.pack(uint64_t{1}); }));
  CHECK(route_number.status().code() == StatusCode::kBadRequest);
  auto methods_string = sc::DecodeAdminRequest(
      WithFields(Command::kUpdateEndpoint, "methods", [](Packer& p) { Str(p, "GET"); }));
  CHECK(methods_string.status().code() == StatusCode::kBadRequest);
  CHECK_THAT(methods_string.status().message(), Contains("methods"));
  auto methods_numbers =
      sc::DecodeAdminRequest(WithFields(Command::kCreateEndpoint, "methods", [](Packer& p) {
        p.pack_array(1);
        p.pack(uint64_t{1});
      }));
  CHECK(methods_numbers.status().code() == StatusCode::kBadRequest);
  auto typo = sc::DecodeAdminRequest(
      WithFields(Command::kUpdateEndpoint, "routes", [](Packer& p) { Str(p, "/x"); }));
  CHECK_THAT(typo.status().message(), Contains("unknown endpoint field 'routes'"));
}
