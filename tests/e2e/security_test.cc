// CURVE security and the broker's limits with real processes
// (docs/security.md): keys from `zserve keygen --set`, a controller, broker
// and workers started with them, and clients with and without an allowed
// key. The wire check relays the client's TCP connection through this test
// and looks for the payload in the bytes.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "controller/admin_client.h"
#include "schemas/codec.h"
#include "tests/e2e/raw_socket.h"
#include "tests/e2e/roles.h"
#include "tests/e2e/stack.h"
#include "tests/e2e/test_client.h"
#include "zserve/client.h"
#include "zserve/curve.h"

namespace zserve::testing {
namespace {

using std::chrono::milliseconds;
namespace sc = zserve::schemas;

constexpr const char* kEchoYaml = R"(
backends:
  echo: {handler: echo}
endpoints:
  echo: {backend: echo}
)";

// A deployment's keys, written by `zserve keygen --set DIR`.
struct Keys {
  std::string dir = MakeTempDir() + "/keys";
  Keys() {
    Process keygen(kBinary, {"keygen", "--set", dir});
    REQUIRE(keygen.Wait(milliseconds(10'000)) == 0);
  }
  std::string file(const std::string& name) const { return dir + "/" + name + ".key"; }
  KeyPair pair(const std::string& name) const {
    StatusOr<KeyPair> k = LoadKeyPair(file(name));
    REQUIRE(k.ok());
    return *k;
  }
  std::string pub(const std::string& name) const { return pair(name).public_key; }

  // Roles with CURVE on in the controller and the broker.
  RolesOptions Options() const {
    RolesOptions o;
    o.controller_args = {"--curve-key", file("controller"), "--curve-allow", dir + "/allow"};
    o.broker_args = {"--curve-key",  file("broker"),           "--curve-allow",
                     dir + "/allow", "--curve-controller-key", file("controller") + ".pub"};
    return o;
  }
  // A worker's flags, with the key pair `name`.
  std::vector<std::string> Worker(const std::string& name = "worker") const {
    return {"--curve-key", file(name), "--curve-broker-key", file("broker") + ".pub"};
  }
};

std::unique_ptr<Client> SecureConnect(const std::string& address, const KeyPair& key,
                                      const std::string& broker_key) {
  ClientOptions o;
  o.broker_address = address;
  o.curve_key = key;
  o.curve_server_key = broker_key;
  StatusOr<std::unique_ptr<Client>> c = Client::Create(o);
  REQUIRE(c.ok());
  return std::move(c).value();
}

// A TCP relay on a free loopback port to `target_port`, keeping every byte
// that passes in either direction.
class Relay {
 public:
  explicit Relay(int target_port) : target_port_(target_port) {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(listen(listener_, 4) == 0);
    socklen_t len = sizeof a;
    REQUIRE(getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~Relay() {
    stop_ = true;
    thread_.join();
    close(listener_);
  }
  std::string address() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
  std::string bytes() {
    std::lock_guard lock(mu_);
    return bytes_;
  }

 private:
  void Serve() {
    std::vector<int> fds;  // pairs: accepted, upstream
    while (!stop_) {
      std::vector<pollfd> p{{listener_, POLLIN, 0}};
      for (int fd : fds) p.push_back({fd, POLLIN, 0});
      if (poll(p.data(), p.size(), 50) <= 0) continue;
      if (p[0].revents & POLLIN) {
        int in = accept(listener_, nullptr, nullptr);
        int out = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(static_cast<uint16_t>(target_port_));
        if (connect(out, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
          fds.push_back(in);
          fds.push_back(out);
        } else {
          close(in);
          close(out);
        }
      }
      for (size_t i = 1; i < p.size(); ++i) {
        if (!(p[i].revents & (POLLIN | POLLHUP))) continue;
        size_t k = i - 1, peer = k ^ 1;
        char buf[65536];
        ssize_t n = read(fds[k], buf, sizeof buf);
        if (n <= 0) continue;  // the peer's close is seen by ZeroMQ's own reconnect
        {
          std::lock_guard lock(mu_);
          bytes_.append(buf, static_cast<size_t>(n));
        }
        for (ssize_t done = 0; done < n;) {
          ssize_t w = write(fds[peer], buf + done, static_cast<size_t>(n - done));
          if (w <= 0) break;
          done += w;
        }
      }
    }
    for (int fd : fds) close(fd);
  }

  int target_port_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::string bytes_;
};

int PortOf(const std::string& address) { return std::stoi(address.substr(address.rfind(':') + 1)); }

TEST_CASE("keygen writes a secret only its owner reads and never replaces a key",
          "[e2e][security]") {
  const std::string dir = MakeTempDir();
  const std::string path = dir + "/alice";
  Process first(kBinary, {"keygen", path});
  REQUIRE(first.Wait(milliseconds(10'000)) == 0);
  struct stat st {};
  REQUIRE(stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  const std::string secret = ReadFile(path);
  StatusOr<KeyPair> pair = LoadKeyPair(path);
  REQUIRE(pair.ok());
  Process again(kBinary, {"keygen", path}, dir + "/again.err");
  REQUIRE(again.Wait(milliseconds(10'000)) == 1);
  CHECK_THAT(ReadFile(dir + "/again.err"), Catch::Contains("exists; keygen never replaces a key"));
  CHECK(ReadFile(path) == secret);
  Process role_only(kBinary, {"keygen", dir + "/bob", "--role", "client"}, dir + "/role.err");
  REQUIRE(role_only.Wait(milliseconds(10'000)) == 1);
  CHECK_THAT(ReadFile(dir + "/role.err"), Catch::Contains("--role needs --allow"));
  // A PATH given with --set was ignored without a word.
  Process both(kBinary, {"keygen", dir + "/carol", "--set", dir + "/set"}, dir + "/both.err");
  REQUIRE(both.Wait(milliseconds(10'000)) == 1);
  CHECK_THAT(ReadFile(dir + "/both.err"), Catch::Contains("give a PATH or --set DIR, not both"));
  struct stat none {};
  CHECK(stat((dir + "/set").c_str(), &none) != 0);  // nothing written
}

TEST_CASE("With CURVE on an allowed client calls and an unknown key is refused",
          "[e2e][security]") {
  Keys keys;
  Roles roles(kEchoYaml, keys.Options());
  roles.StartWorker("echo", "echo", keys.Worker());
  auto client = SecureConnect(roles.client_address(), keys.pair("client"), keys.pub("broker"));
  WaitForReplicas(*client, "echo", 1);
  StatusOr<std::string> r = client->Call("echo", "hello");
  REQUIRE(r.ok());
  CHECK(*r == "hello");
  // zserve bench takes the same flags as zserve call (it had none).
  std::vector<std::string> bench_args = {
      "bench", roles.client_address(), "--endpoint", "echo",     "--count",
      "50",    "--inflight",           "1",          "--warmup", "0",
      "--json"};
  bench_args.insert(bench_args.begin() + 1, "--broker");
  for (const std::string& flag : keys.Worker("client")) bench_args.push_back(flag);
  Process bench(kBinary, bench_args, roles.log());
  REQUIRE(bench.Wait(milliseconds(20'000)) == 0);
  INFO(bench.output());
  nlohmann::json run = nlohmann::json::parse(bench.output(), nullptr, false);
  REQUIRE(run.is_object());
  CHECK(run["errors"].empty());
  CHECK(run["throughput_rps"].get<double>() > 0);

  // A key the broker does not know: the handshake fails, the call too.
  StatusOr<KeyPair> stranger = GenerateKeyPair();
  REQUIRE(stranger.ok());
  auto outsider = SecureConnect(roles.client_address(), *stranger, keys.pub("broker"));
  CallOptions o;
  o.timeout = milliseconds(5000);
  StatusOr<std::string> refused = outsider->Call("echo", "let me in", o);
  CHECK(refused.status().code() == StatusCode::kPermissionDenied);
  // Its next calls too, at once: they waited out their deadlines (the
  // gateway, a long-lived client, answered 504 after 30 s instead of 403).
  const auto again = std::chrono::steady_clock::now();
  CHECK(outsider->Call("echo", "again", o).status().code() == StatusCode::kPermissionDenied);
  CHECK(std::chrono::steady_clock::now() - again < milliseconds(1000));
  // An operator's admin key is listed as a client too; a worker key is not.
  auto admin = SecureConnect(roles.client_address(), keys.pair("admin"), keys.pub("broker"));
  CHECK(admin->Call("echo", "ops").ok());
  auto worker_as_client =
      SecureConnect(roles.client_address(), keys.pair("worker"), keys.pub("broker"));
  CHECK(worker_as_client->Call("echo", "x", o).status().code() == StatusCode::kPermissionDenied);

  nlohmann::json j = BrokerStatus(*client);
  CHECK(j["counters"]["auth_refusals"] >= 2);
  // Logged once per key, however often it retries.
  std::string log = ReadFile(roles.log());
  size_t first = log.find("refused unknown key " + stranger->public_key);
  CHECK(first != std::string::npos);
  CHECK(log.find("refused unknown key " + stranger->public_key, first + 1) == std::string::npos);

  // A plain ZeroMQ client gets nothing from a CURVE broker.
  auto plain = Connect(roles.client_address());
  CHECK_FALSE(plain->Call("echo", "plain", o).ok());
}

TEST_CASE("With CURVE on a client key cannot register as a worker", "[e2e][security]") {
  Keys keys;
  Roles roles(kEchoYaml, keys.Options());
  roles.StartWorker("echo", "echo", keys.Worker("client"));
  auto client = SecureConnect(roles.client_address(), keys.pair("client"), keys.pub("broker"));
  // Refused at the handshake: counted, and never a replica (of a backend
  // the broker knows: STATUS is answered before its configuration too).
  WaitForStatus(*client, [](const nlohmann::json& j) {
    return j["counters"]["auth_refusals"] >= 1 && j["config_version"] >= 1;
  });
  CHECK(BrokerStatus(*client)["backends"]["echo"]["replicas"] == 0);
  CHECK_THAT(ReadFile(roles.log()),
             Catch::Contains("key " + keys.pub("client")) &&
                 Catch::Contains("on the worker socket (role not admitted)"));
  // The worker says so too.
  CHECK(Eventually([&] {
    return ReadFile(roles.log())
               .find("the broker refused this worker's CURVE key " + keys.pub("client")) !=
           std::string::npos;
  }));
  // A worker without CURVE says why it gets nowhere (it only reconnected,
  // "broker silent", over and over).
  roles.StartWorker("echo", "echo");
  CHECK(Eventually([&] {
    return ReadFile(roles.log())
               .find("the handshake with the broker at " + roles.worker_address() + " failed") !=
           std::string::npos;
  }));
  // The worker key does register.
  roles.StartWorker("echo", "echo", keys.Worker());
  WaitForReplicas(*client, "echo", 1);
  CHECK(client->Call("echo", "served").ok());
}

TEST_CASE("With CURVE on the admin API refuses a key without the admin role", "[e2e][security]") {
  Keys keys;
  Roles roles(kEchoYaml, keys.Options());
  sc::AdminRequest create;
  create.command = sc::Command::kCreateBackend;
  create.name = "extra";
  create.backend.handler = "echo";
  for (const char* who : {"worker", "client", "broker"}) {
    INFO(who);
    StatusOr<std::unique_ptr<controller::AdminClient>> c = controller::AdminClient::Create(
        roles.admin_address(), keys.pair(who), keys.pub("controller"));
    REQUIRE(c.ok());
    StatusOr<sc::AdminReply> reply = (*c)->Call(create, milliseconds(10'000));
    REQUIRE(reply.ok());
    CHECK(reply->code == StatusCode::kPermissionDenied);
    CHECK_THAT(reply->message, Catch::Contains("admin role"));
    CHECK(reply->version == 1);  // nothing changed
    CHECK_FALSE(reply->state.backends.contains("extra"));
  }
  StatusOr<std::unique_ptr<controller::AdminClient>> admin = controller::AdminClient::Create(
      roles.admin_address(), keys.pair("admin"), keys.pub("controller"));
  REQUIRE(admin.ok());
  StatusOr<sc::AdminReply> reply = (*admin)->CallOk(create, milliseconds(10'000));
  REQUIRE(reply.ok());
  CHECK(reply->version == 2);
  CHECK(reply->state.backends.contains("extra"));
  // `zserve ctl` with a worker key says why it failed.
  Process ctl(kBinary,
              {"ctl", "get", "--controller", roles.admin_address(), "--curve-key",
               keys.file("worker"), "--curve-controller-key", keys.file("controller") + ".pub"},
              roles.log());
  CHECK(ctl.Wait(milliseconds(10'000)) == 1);
  CHECK_THAT(ReadFile(roles.log()), Catch::Contains("zserve ctl: PERMISSION_DENIED"));
  // A key the controller does not know, and no CURVE at all: said at once,
  // not after the 5 s wait, which blamed a controller that is running.
  StatusOr<KeyPair> stranger = GenerateKeyPair();
  REQUIRE(stranger.ok());
  const KeyPair none;
  for (const KeyPair* key : {static_cast<const KeyPair*>(&*stranger), &none}) {
    StatusOr<std::unique_ptr<controller::AdminClient>> c = controller::AdminClient::Create(
        roles.admin_address(), *key, key->empty() ? "" : keys.pub("controller"));
    REQUIRE(c.ok());
    const auto start = std::chrono::steady_clock::now();
    StatusOr<sc::AdminReply> refused = (*c)->Call(create, milliseconds(5'000));
    CHECK(std::chrono::steady_clock::now() - start < milliseconds(3'000));
    if (key->empty()) {
      CHECK(refused.status().code() == StatusCode::kUnavailable);
      CHECK_THAT(refused.status().message(), Catch::Contains("the handshake with the controller"));
    } else {
      CHECK(refused.status().code() == StatusCode::kPermissionDenied);
      CHECK_THAT(refused.status().message(), Catch::Contains("refused this CURVE key"));
    }
  }
}

TEST_CASE("With CURVE on the payload is not plaintext on the wire", "[e2e][security]") {
  const std::string canary = "canary-7f3e1c-plaintext-payload";
  auto call_through_relay = [&](Roles& roles, Client* (*connect)(const std::string&, void*),
                                void* arg) {
    Relay relay(PortOf(roles.client_address()));
    std::unique_ptr<Client> client(connect(relay.address(), arg));
    WaitForReplicas(*client, "echo", 1);
    StatusOr<std::string> r = client->Call("echo", canary);
    REQUIRE(r.ok());
    CHECK(*r == canary);
    return relay.bytes();
  };
  SECTION("CURVE") {
    Keys keys;
    Roles roles(kEchoYaml, keys.Options());
    roles.StartWorker("echo", "echo", keys.Worker());
    std::string wire = call_through_relay(
        roles,
        [](const std::string& address, void* k) {
          const Keys& ks = *static_cast<Keys*>(k);
          return SecureConnect(address, ks.pair("client"), ks.pub("broker")).release();
        },
        &keys);
    CHECK(wire.size() > canary.size() * 2);  // the call and its answer passed here
    CHECK(wire.find(canary) == std::string::npos);
    CHECK(wire.find("echo") == std::string::npos);  // nor the endpoint's name
  }
  SECTION("plain, to show the relay sees the payload") {
    Roles roles(kEchoYaml);
    roles.StartWorker("echo", "echo");
    std::string wire = call_through_relay(
        roles, [](const std::string& address, void*) { return Connect(address).release(); },
        nullptr);
    CHECK(wire.find(canary) != std::string::npos);
  }
}

TEST_CASE("One client connection cannot hold more calls than the broker allows",
          "[e2e][security][limits]") {
  RolesOptions o;
  o.broker_args = {"--max-inflight-per-client", "4"};
  Roles roles(R"(
backends:
  slow: {handler: sleep, max_concurrent_queries: 10}
endpoints:
  slow: {backend: slow}
)",
              o);
  roles.StartWorker("slow", "sleep");
  auto client = Connect(roles.client_address());
  WaitForReplicas(*client, "slow", 1);
  std::vector<StatusOr<std::string>> results(10, Internal("no answer"));
  for (size_t i = 0; i < results.size(); ++i) {
    client->CallAsync("slow", "300", {},
                      [&results, i](StatusOr<std::string> r) { results[i] = std::move(r); });
  }
  client->Wait();
  int ok = 0, overloaded = 0;
  for (const auto& r : results) {
    if (r.ok()) ++ok;
    if (r.status().code() == StatusCode::kOverloaded) {
      ++overloaded;
      CHECK_THAT(r.status().message(), Catch::Contains("--max-inflight-per-client"));
    }
  }
  CHECK(ok == 4);
  CHECK(overloaded == 6);
  // Another connection is not held back by this one's calls.
  auto other = Connect(roles.client_address());
  CHECK(other->Call("slow", "1").ok());
  // Answered calls free their places.
  CHECK(client->Call("slow", "1").ok());
}

// A raw DEALER to the broker's client port; the reply's frames, or none.
Strings RawCall(const std::string& address, const Strings& parts,
                milliseconds limit = milliseconds(5000)) {
  zmq::context_t ctx(1);
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.connect(address);
  SendStrings(s, parts);
  return RecvStrings(s, limit).value_or(Strings());
}

TEST_CASE("The broker answers messages over its size limits with BAD_REQUEST",
          "[e2e][security][limits]") {
  RolesOptions o;
  o.broker_args = {"--max-message-bytes", "100000"};
  Roles roles(kEchoYaml, o);
  roles.StartWorker("echo", "echo");
  auto client = Connect(roles.client_address());
  WaitForReplicas(*client, "echo", 1);
  auto request = [](uint64_t id, const std::string& endpoint) {
    return sc::EncodeRequest({id, endpoint, "__call__", 5000, "", 0});
  };
  auto reply_of = [](const std::vector<std::string>& frames) {
    REQUIRE(frames.size() >= 1);
    StatusOr<sc::ReplyHeader> h = sc::DecodeReply(frames[0]);
    REQUIRE(h.ok());
    return *h;
  };
  SECTION("frames adding up to more than --max-message-bytes") {
    // Each frame under the limit, the message over it.
    std::vector<std::string> parts{request(7, "echo"), std::string(60'000, 'a'),
                                   std::string(60'000, 'b')};
    sc::ReplyHeader h = reply_of(RawCall(roles.client_address(), parts));
    CHECK(h.request_id == 7);
    CHECK(h.code == StatusCode::kBadRequest);
    CHECK_THAT(h.message, Catch::Contains("--max-message-bytes"));
  }
  SECTION("a REQUESTS over --max-message-bytes: each call answered") {
    std::vector<sc::RequestHeader> calls = {{21, "echo", "__call__", 5000, "", 0},
                                            {22, "echo", "__call__", 5000, "", 0}};
    Strings frames =
        RawCall(roles.client_address(),
                {sc::EncodeRequests(calls), std::string(60'000, 'a'), std::string(60'000, 'b')});
    REQUIRE(frames.size() == 3);
    StatusOr<std::vector<sc::ReplyHeader>> replies = sc::DecodeReplies(frames[0]);
    REQUIRE(replies.ok());
    REQUIRE(replies->size() == 2);
    CHECK((*replies)[0].request_id == 21);
    CHECK((*replies)[1].request_id == 22);
    for (const sc::ReplyHeader& r : *replies) {
      CHECK(r.code == StatusCode::kBadRequest);
      CHECK_THAT(r.message, Catch::Contains("--max-message-bytes"));
    }
  }
  SECTION("too many frames") {
    std::vector<std::string> parts{request(8, "echo")};
    parts.resize(300, "x");
    sc::ReplyHeader h = reply_of(RawCall(roles.client_address(), parts));
    CHECK(h.request_id == 8);
    CHECK(h.code == StatusCode::kBadRequest);
    CHECK_THAT(h.message, Catch::Contains("frames"));
  }
  SECTION("a header over 64 KiB still gets its request id answered") {
    std::vector<std::string> parts{request(9, std::string(70'000, 'e')), "payload"};
    sc::ReplyHeader h = reply_of(RawCall(roles.client_address(), parts));
    CHECK(h.request_id == 9);
    CHECK(h.code == StatusCode::kBadRequest);
    CHECK_THAT(h.message, Catch::Contains("header"));
  }
  SECTION("a single frame over the limit closes the connection, counted nowhere else") {
    std::vector<std::string> parts{request(10, "echo"), std::string(200'000, 'z')};
    CHECK(RawCall(roles.client_address(), parts, milliseconds(1000)).empty());
  }
  // A library client whose max_payload_bytes is `limit`.
  auto client_up_to = [&roles](size_t limit) {
    ClientOptions co;
    co.broker_address = roles.client_address();
    co.max_payload_bytes = limit;
    StatusOr<std::unique_ptr<Client>> c = Client::Create(co);
    REQUIRE(c.ok());
    return std::move(c).value();
  };
  SECTION("a payload of exactly --max-message-bytes is served (the header does not count)") {
    const std::string payload(100000, 'x');
    StatusOr<std::string> r = client_up_to(100000)->Call("echo", payload);
    REQUIRE(r.ok());
    CHECK(*r == payload);
  }
  SECTION("the client library refuses a payload over its own limit before sending") {
    StatusOr<std::string> r = client_up_to(1000)->Call("echo", std::string(1001, 'x'));
    CHECK(r.status().code() == StatusCode::kBadRequest);
    CHECK_THAT(r.status().message(), Catch::Contains("max_payload_bytes"));
  }
  // Whatever came before, the broker still serves.
  CHECK(client->Call("echo", "still here").ok());
}

}  // namespace
}  // namespace zserve::testing
