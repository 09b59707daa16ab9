// Majordomo 0.1 interop (PROTOCOL.md section 7) with real processes: the
// controller and the broker run as `zserve` processes, next to an MDP client
// and an MDP worker written here from ZeroMQ RFC 7 and RFC 8 with raw cppzmq
// (REQ, DEALER), not with zserve's client or worker libraries. Heartbeats are
// 100 ms and a peer is dead after 3 silent ones, so failures show quickly.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "tests/e2e/raw_socket.h"
#include "tests/e2e/roles.h"
#include "tests/e2e/stack.h"
#include "tests/e2e/test_client.h"
#include "zserve/client.h"

namespace zserve::testing {
namespace {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

constexpr milliseconds kHeartbeat(100);  // as the Roles processes' (RolesOptions)

const std::string kReady("\x01", 1);
const std::string kRequest("\x02", 1);
const std::string kReply("\x03", 1);
const std::string kHeartbeatCmd("\x04", 1);
const std::string kDisconnect("\x05", 1);

// An MDP/Client call on a REQ socket (which adds and strips frame 0): the
// reply's frames 1.. ("MDPC01", service, body...), or nullopt on no reply.
std::optional<Strings> MdpCall(zmq::context_t& ctx, const std::string& broker,
                               const std::string& service, const Strings& body,
                               milliseconds limit = milliseconds(10'000)) {
  zmq::socket_t req(ctx, zmq::socket_type::req);
  req.set(zmq::sockopt::linger, 0);
  req.connect(broker);
  Strings parts{"MDPC01", service};
  parts.insert(parts.end(), body.begin(), body.end());
  SendStrings(req, parts);
  return RecvStrings(req, limit);
}

// An MDP/Worker (RFC 7) on a DEALER socket in a thread of its own, which owns
// the socket. It registers for one service, answers every REQUEST with
// "mdp:" + body, heartbeats every 100 ms and, on DISCONNECT, reconnects on a
// new socket and sends READY again, as the RFC says. Modes let a test make it
// freeze or vanish once it holds a request.
class MdpWorker {
 public:
  enum class OnRequest {
    kAnswer,  // answer at once
    kFreeze,  // keep the request, stop sending anything (a hung process)
    kVanish,  // close the socket without DISCONNECT (a killed process)
  };

  MdpWorker(zmq::context_t& ctx, std::string broker, std::string service,
            OnRequest mode = OnRequest::kAnswer)
      : ctx_(ctx), broker_(std::move(broker)), service_(std::move(service)), mode_(mode) {
    thread_ = std::thread([this] { Run(); });
  }
  ~MdpWorker() {
    stop_ = true;
    thread_.join();
  }

  // Sends DISCONNECT and stops (on the worker's thread).
  void Disconnect() { disconnect_ = true; }
  int requests() const { return requests_; }
  int replies() const { return replies_; }

 private:
  void Run() {
    auto socket = Connect();
    auto last_sent = SteadyClock::now();
    bool silent = false;
    while (!stop_) {
      if (disconnect_) {
        SendStrings(*socket, {"", "MDPW01", kDisconnect});
        return;
      }
      std::optional<Strings> m = RecvStrings(*socket, milliseconds(20));
      if (m && !silent) {
        // ["", "MDPW01", command, ...]
        if (m->size() >= 3 && (*m)[0].empty() && (*m)[1] == "MDPW01") {
          const std::string& cmd = (*m)[2];
          if (cmd == kRequest && m->size() >= 6 && (*m)[4].empty()) {
            ++requests_;
            if (mode_ == OnRequest::kFreeze) {
              silent = true;
              continue;
            }
            if (mode_ == OnRequest::kVanish) {
              socket.reset();  // linger 0: gone, no DISCONNECT
              return;
            }
            Strings reply{"", "MDPW01", kReply, (*m)[3], ""};
            for (size_t i = 5; i < m->size(); ++i) reply.push_back("mdp:" + (*m)[i]);
            ++replies_;  // before the send: the caller may check as soon as it has the reply
            SendStrings(*socket, reply);
            last_sent = SteadyClock::now();
          } else if (cmd == kDisconnect) {
            socket = Connect();  // a new socket, then READY again
            last_sent = SteadyClock::now();
          }
        }
      }
      if (!silent && SteadyClock::now() - last_sent >= kHeartbeat) {
        SendStrings(*socket, {"", "MDPW01", kHeartbeatCmd});
        last_sent = SteadyClock::now();
      }
    }
  }

  std::unique_ptr<zmq::socket_t> Connect() {
    auto s = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::dealer);
    s->set(zmq::sockopt::linger, 0);
    s->connect(broker_);
    SendStrings(*s, {"", "MDPW01", kReady, service_});
    return s;
  }

  zmq::context_t& ctx_;
  const std::string broker_, service_;
  const OnRequest mode_;
  std::atomic<bool> stop_{false}, disconnect_{false};
  std::atomic<int> requests_{0}, replies_{0};
  std::thread thread_;
};

int Replicas(const nlohmann::json& j, const std::string& backend) {
  if (!j["backends"].contains(backend)) return 0;
  return j["backends"][backend]["replicas"].get<int>();
}

const char* kEchoYaml = R"(
backends:
  echo: {handler: echo, max_batch_size: 4, retry_on_replica_failure: 1}
  idle: {handler: echo}
endpoints:
  echo: {backend: echo}
  idle: {backend: idle}
)";

TEST_CASE("An MDP worker serves an MDP client and a native client", "[e2e][mdp]") {
  Roles roles(kEchoYaml);
  zmq::context_t ctx;
  MdpWorker worker(ctx, roles.worker_address(), "echo");
  auto client = Connect(roles.client_address());
  WaitForStatus(*client, [](const nlohmann::json& j) { return Replicas(j, "echo") == 1; });

  std::optional<Strings> r = MdpCall(ctx, roles.client_address(), "echo", {"hello"});
  REQUIRE(r);
  CHECK(*r == Strings{"MDPC01", "echo", "mdp:hello"});

  StatusOr<std::string> native = client->Call("echo", "hi");
  REQUIRE(native.ok());
  CHECK(*native == "mdp:hi");
  CHECK(worker.replies() == 2);
}

TEST_CASE("A DEALER MDP client adds frame 0 itself and may have several requests in flight",
          "[e2e][mdp]") {
  Roles roles(kEchoYaml);
  zmq::context_t ctx;
  MdpWorker worker(ctx, roles.worker_address(), "echo");
  auto client = Connect(roles.client_address());
  WaitForStatus(*client, [](const nlohmann::json& j) { return Replicas(j, "echo") == 1; });

  zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.connect(roles.client_address());
  for (int i = 0; i < 5; ++i) SendStrings(dealer, {"", "MDPC01", "echo", std::to_string(i)});
  std::vector<std::string> bodies;
  for (int i = 0; i < 5; ++i) {
    std::optional<Strings> m = RecvStrings(dealer, milliseconds(10'000));
    REQUIRE(m);
    REQUIRE(m->size() == 4);
    CHECK((*m)[0].empty());
    CHECK((*m)[1] == "MDPC01");
    CHECK((*m)[2] == "echo");
    bodies.push_back((*m)[3]);
  }
  std::sort(bodies.begin(), bodies.end());
  CHECK(bodies == Strings{"mdp:0", "mdp:1", "mdp:2", "mdp:3", "mdp:4"});
}

TEST_CASE("A backend of a native replica and an MDP replica uses both", "[e2e][mdp]") {
  Roles roles(kEchoYaml);
  zmq::context_t ctx;
  roles.StartWorker("echo", "echo");
  MdpWorker worker(ctx, roles.worker_address(), "echo");
  auto client = Connect(roles.client_address());
  WaitForStatus(*client, [](const nlohmann::json& j) { return Replicas(j, "echo") == 2; });

  int from_mdp = 0, from_native = 0;
  std::vector<Status> failures;
  for (int i = 0; i < 200; ++i) {
    std::string payload = "n" + std::to_string(i);
    client->CallAsync("echo", payload, {}, [&, payload](StatusOr<std::string> r) {
      if (!r.ok()) {
        failures.push_back(r.status());
      } else if (*r == "mdp:" + payload) {
        ++from_mdp;
      } else if (*r == payload) {
        ++from_native;
      } else {
        failures.push_back(Internal("unexpected result " + *r));
      }
    });
  }
  // MDP clients on the same endpoint, meanwhile.
  std::vector<std::string> mdp_bodies;
  for (int i = 0; i < 10; ++i) {
    std::optional<Strings> r = MdpCall(ctx, roles.client_address(), "echo", {"m"});
    REQUIRE(r);
    REQUIRE(r->size() == 3);
    CHECK(((*r)[2] == "m" || (*r)[2] == "mdp:m"));
    mdp_bodies.push_back((*r)[2]);
  }
  client->Wait();
  CHECK(failures.empty());
  CHECK(from_mdp + from_native == 200);
  CHECK(from_mdp > 0);
  CHECK(from_native > 0);
  // Every reply the MDP worker sent reached a client, one per request.
  CHECK(worker.replies() == from_mdp + std::count(mdp_bodies.begin(), mdp_bodies.end(), "mdp:m"));
}

TEST_CASE("mmi.service answers 200 or 404 and other mmi services 501", "[e2e][mdp]") {
  Roles roles(kEchoYaml);
  zmq::context_t ctx;
  auto client = Connect(roles.client_address());
  WaitForStatus(*client, [](const nlohmann::json& j) { return j["endpoints"].contains("echo"); });
  // The endpoint exists but nothing serves it yet.
  std::optional<Strings> r = MdpCall(ctx, roles.client_address(), "mmi.service", {"echo"});
  REQUIRE(r);
  CHECK(*r == Strings{"MDPC01", "mmi.service", "404"});

  MdpWorker worker(ctx, roles.worker_address(), "echo");
  WaitForStatus(*client, [](const nlohmann::json& j) { return Replicas(j, "echo") == 1; });
  r = MdpCall(ctx, roles.client_address(), "mmi.service", {"echo"});
  REQUIRE(r);
  CHECK(*r == Strings{"MDPC01", "mmi.service", "200"});
  for (std::string absent : {"idle", "nope"}) {
    r = MdpCall(ctx, roles.client_address(), "mmi.service", {absent});
    REQUIRE(r);
    CHECK(*r == Strings{"MDPC01", "mmi.service", "404"});
  }
  r = MdpCall(ctx, roles.client_address(), "mmi.other", {"echo"});
  REQUIRE(r);
  CHECK(*r == Strings{"MDPC01", "mmi.other", "501"});
}

TEST_CASE("Errors reach an MDP client as ERROR body frames", "[e2e][mdp]") {
  Roles roles(kEchoYaml);
  zmq::context_t ctx;
  MdpWorker worker(ctx, roles.worker_address(), "echo");
  auto client = Connect(roles.client_address());
  WaitForStatus(*client, [](const nlohmann::json& j) { return Replicas(j, "echo") == 1; });

  std::optional<Strings> r = MdpCall(ctx, roles.client_address(), "nope", {"x"});
  REQUIRE(r);
  REQUIRE(r->size() == 4);
  CHECK((*r)[1] == "nope");
  CHECK_THAT((*r)[2], Catch::StartsWith("ERROR NOT_FOUND: "));
  CHECK((*r)[3] == "NOT_FOUND");

  r = MdpCall(ctx, roles.client_address(), "echo", {"a", "b"});
  REQUIRE(r);
  REQUIRE(r->size() == 4);
  CHECK_THAT((*r)[2], Catch::StartsWith("ERROR BAD_REQUEST: "));
  CHECK((*r)[3] == "BAD_REQUEST");

  // A method MDP cannot carry, sent by a native client to an MDP replica.
  CallOptions o;
  o.method = "other";
  StatusOr<std::string> native = client->Call("echo", "x", o);
  CHECK(native.status().code() == StatusCode::kBadRequest);
  CHECK_THAT(native.status().message(), Catch::Contains("MDP"));
  CHECK(worker.requests() == 0);
}

TEST_CASE("Many calls an MDP replica cannot take are answered at once and do not hold up the rest",
          "[e2e][mdp]") {
  Roles roles(kEchoYaml);
  zmq::context_t ctx;
  MdpWorker worker(ctx, roles.worker_address(), "idle");
  auto client = Connect(roles.client_address());
  WaitForStatus(*client, [](const nlohmann::json& j) { return Replicas(j, "idle") == 1; });
  // 140 calls with a method MDP cannot carry, then one it can: all in one
  // REQUESTS, each answered long before the 3 s deadline.
  CallOptions other, plain;
  other.method = "other";
  other.timeout = plain.timeout = milliseconds(3000);
  int bad = 0, wrong = 0;
  std::optional<StatusOr<std::string>> good;
  const auto start = SteadyClock::now();
  for (int i = 0; i < 140; ++i) {
    client->CallAsync("idle", "x", other, [&](StatusOr<std::string> r) {
      (r.status().code() == StatusCode::kBadRequest ? bad : wrong)++;
    });
  }
  client->CallAsync("idle", "last", plain, [&](StatusOr<std::string> r) { good = std::move(r); });
  client->Wait();
  const auto took = std::chrono::duration_cast<milliseconds>(SteadyClock::now() - start);
  CHECK(took.count() < 250);  // it took 518 ms when each loop turn answered 8 of them
  CHECK(bad == 140);
  CHECK(wrong == 0);
  REQUIRE(good.has_value());
  REQUIRE(good->ok());
  CHECK(**good == "mdp:last");
}

TEST_CASE("A frozen MDP worker is declared dead and its request runs on another replica",
          "[e2e][mdp]") {
  Roles roles(kEchoYaml);
  zmq::context_t ctx;
  MdpWorker worker(ctx, roles.worker_address(), "echo", MdpWorker::OnRequest::kFreeze);
  auto client = Connect(roles.client_address());
  WaitForStatus(*client, [](const nlohmann::json& j) { return Replicas(j, "echo") == 1; });

  StatusOr<std::string> result = Internal("no answer");
  CallOptions o;
  o.timeout = milliseconds(20'000);
  client->CallAsync("echo", "retry me", o, [&](StatusOr<std::string> r) { result = std::move(r); });
  // The MDP worker holds it and goes silent; a native replica joins.
  REQUIRE(Eventually([&] {
    client->Poll(milliseconds(0));
    return worker.requests() == 1;
  }));
  roles.StartWorker("echo", "echo");
  client->Wait();
  REQUIRE(result.ok());
  CHECK(*result == "retry me");  // served by the native replica, not "mdp:"
  nlohmann::json j = BrokerStatus(*client);
  CHECK(j["counters"]["lost_replicas"] == 1);
  CHECK(Replicas(j, "echo") == 1);
}

TEST_CASE("An MDP worker that vanishes without DISCONNECT is declared dead and its request retried",
          "[e2e][mdp]") {
  Roles roles(kEchoYaml);
  zmq::context_t ctx;
  roles.StartWorker("echo", "echo");
  auto client = Connect(roles.client_address());
  WaitForStatus(*client, [](const nlohmann::json& j) { return Replicas(j, "echo") == 1; });
  MdpWorker worker(ctx, roles.worker_address(), "echo", MdpWorker::OnRequest::kVanish);
  WaitForStatus(*client, [](const nlohmann::json& j) { return Replicas(j, "echo") == 2; });

  // Enough calls that the MDP worker takes one, then vanishes holding it.
  int ok = 0;
  std::vector<Status> failures;
  for (int i = 0; i < 50; ++i) {
    CallOptions o;
    o.timeout = milliseconds(20'000);
    client->CallAsync("echo", "v", o, [&](StatusOr<std::string> r) {
      if (r.ok() && *r == "v") {
        ++ok;
      } else {
        failures.push_back(r.ok() ? Internal("unexpected " + *r) : r.status());
      }
    });
  }
  client->Wait();
  CHECK(worker.requests() == 1);
  CHECK(failures.empty());
  CHECK(ok == 50);
  WaitForStatus(*client, [](const nlohmann::json& j) {
    return Replicas(j, "echo") == 1 && j["counters"]["lost_replicas"] == 1;
  });
}

TEST_CASE("DISCONNECT from an MDP worker removes its replica", "[e2e][mdp]") {
  Roles roles(kEchoYaml);
  zmq::context_t ctx;
  MdpWorker worker(ctx, roles.worker_address(), "echo");
  auto client = Connect(roles.client_address());
  WaitForStatus(*client, [](const nlohmann::json& j) { return Replicas(j, "echo") == 1; });
  worker.Disconnect();
  WaitForStatus(*client, [](const nlohmann::json& j) { return Replicas(j, "echo") == 0; });
  nlohmann::json j = BrokerStatus(*client);
  CHECK(j["counters"]["lost_replicas"] == 0);  // a clean leave, not a loss
  // The log names it by its routing id in hex (it printed the binary id,
  // a NUL byte and all, and grep took the log for a binary file).
  const std::string log = ReadFile(roles.log());
  CHECK(std::regex_search(
      log, std::regex("replica 'mdp-[0-9a-f]+' of backend 'echo' removed \\(MDP worker")));
  CHECK(log.find('\0') == std::string::npos);
}

TEST_CASE("The broker sends DISCONNECT to an unregistered MDP worker and refuses mmi services",
          "[e2e][mdp]") {
  Roles roles(kEchoYaml);
  zmq::context_t ctx;
  auto client = Connect(roles.client_address());
  WaitForStatus(*client, [](const nlohmann::json& j) { return j["endpoints"].contains("echo"); });

  zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.connect(roles.worker_address());
  // A HEARTBEAT before any READY: valid but unexpected.
  SendStrings(dealer, {"", "MDPW01", kHeartbeatCmd});
  std::optional<Strings> m = RecvStrings(dealer, milliseconds(10'000));
  REQUIRE(m);
  CHECK(*m == Strings{"", "MDPW01", kDisconnect});

  // RFC 8: the mmi. namespace is the broker's; such a READY is disconnected.
  zmq::socket_t other(ctx, zmq::socket_type::dealer);
  other.set(zmq::sockopt::linger, 0);
  other.connect(roles.worker_address());
  SendStrings(other, {"", "MDPW01", kReady, "mmi.service"});
  m = RecvStrings(other, milliseconds(10'000));
  REQUIRE(m);
  CHECK(*m == Strings{"", "MDPW01", kDisconnect});
  CHECK(Replicas(BrokerStatus(*client), "mmi.service") == 0);
}

}  // namespace
}  // namespace zserve::testing
