// Reliability with real processes killed for real: heartbeats declare a
// kill -9'd replica dead and its requests are retried or failed, `zserve up`
// restarts a crashed worker, a handler call longer than the liveness keeps
// its replica, and workers register again with a restarted
// broker. Short heartbeats (100 ms) keep it quick.
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "tests/e2e/roles.h"
#include "tests/e2e/stack.h"
#include "tests/e2e/test_client.h"
#include "zserve/client.h"

namespace zserve::testing {
namespace {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

// One backend `echo` behind endpoint `echo`; the tests start its workers.
constexpr const char* kEchoDeployment = R"(
backends:
  echo: {handler: echo}
endpoints:
  echo: {backend: echo}
)";

TEST_CASE("A replica killed with kill -9 is declared dead and its request runs elsewhere",
          "[e2e][reliability]") {
  Roles roles(R"(
backends:
  slow: {handler: sleep, max_concurrent_queries: 1, retry_on_replica_failure: 1}
endpoints:
  slow: {backend: slow}
)");
  Process& a = roles.StartWorker("slow", "sleep");
  roles.StartWorker("slow", "sleep");
  auto client = Connect(roles.client_address());
  WaitForReplicas(*client, "slow", 2);
  int ok = 0;
  std::vector<Status> failures;
  for (int i = 0; i < 2; ++i) {
    client->CallAsync("slow", "400", {}, [&](StatusOr<std::string> r) {
      if (r.ok()) {
        ++ok;
      } else {
        failures.push_back(r.status());
      }
    });
  }
  // Both replicas hold one request each; then one of them dies.
  WaitForStatus(*client,
                [](const nlohmann::json& j) { return j["backends"]["slow"]["in_flight"] == 2; });
  auto killed_at = SteadyClock::now();
  a.Signal(SIGKILL);
  client->Wait();
  CHECK(ok == 2);
  CHECK(failures.empty());
  // Noticed by heartbeats (300-350 ms), retried after the other's 400 ms.
  CHECK(SteadyClock::now() - killed_at < milliseconds(3000));
  nlohmann::json j = BrokerStatus(*client);
  CHECK(j["counters"]["lost_replicas"] == 1);
  CHECK(j["backends"]["slow"]["replicas"] == 1);
}

TEST_CASE("With no retry left a dead replica's request is REPLICA_FAILED promptly",
          "[e2e][reliability]") {
  Roles roles(R"(
backends:
  slow: {handler: sleep, max_concurrent_queries: 1, retry_on_replica_failure: 0}
endpoints:
  slow: {backend: slow}
)");
  Process& a = roles.StartWorker("slow", "sleep");
  auto client = Connect(roles.client_address());
  WaitForReplicas(*client, "slow", 1);
  StatusOr<std::string> result = Internal("no answer");
  client->CallAsync("slow", "5000", {}, [&](StatusOr<std::string> r) { result = std::move(r); });
  WaitForStatus(*client,
                [](const nlohmann::json& j) { return j["backends"]["slow"]["in_flight"] == 1; });
  auto killed_at = SteadyClock::now();
  a.Signal(SIGKILL);
  client->Wait();
  CHECK(result.status().code() == StatusCode::kReplicaFailed);
  CHECK(SteadyClock::now() - killed_at < milliseconds(2000));
}

TEST_CASE("A call sent to a replica already gone runs on another even with no retry",
          "[e2e][reliability]") {
  // Heartbeats of 60 s: the broker learns that the killed replica is gone
  // only when its send to it fails (EHOSTUNREACH). The call never reached
  // it, so that try does not count: it runs on the other replica.
  RolesOptions options;
  options.heartbeat = milliseconds(60'000);
  Roles roles(R"(
backends:
  b: {handler: echo, retry_on_replica_failure: 0}
endpoints:
  b: {backend: b}
)",
              options);
  Process& a = roles.StartWorker("b", "echo");
  auto client = Connect(roles.client_address());
  WaitForReplicas(*client, "b", 1);
  roles.StartWorker("b", "echo");
  WaitForReplicas(*client, "b", 2);
  a.Signal(SIGKILL);
  REQUIRE(a.Wait(milliseconds(5000)).has_value());
  // Its connection closed as it exited. Two STATUS round trips pass through
  // the broker's ZeroMQ I/O thread after that close, which in the meantime
  // ends the connection's pipe (a few turns of that thread): only then does
  // a send to it fail rather than vanish into the closing connection.
  for (int i = 0; i < 2; ++i) BrokerStatus(*client);
  // Both idle: the call goes to the older replica, the killed one.
  CallOptions o;
  o.timeout = milliseconds(5000);
  StatusOr<std::string> r = client->Call("b", "x", o);
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  CHECK(*r == "x");
  nlohmann::json j = BrokerStatus(*client);
  CHECK(j["counters"]["lost_replicas"] == 1);  // by the failed send
  CHECK(j["backends"]["b"]["replicas"] == 1);
}

TEST_CASE("A handler call longer than the heartbeat liveness keeps its replica",
          "[e2e][reliability]") {
  // Short calls first, so that the worker runs calls on its I/O thread
  // (docs/semantics.md, "Where a worker runs its handler"); then one call of
  // 1 s, over three times the broker's 300 ms liveness. The worker's keeper
  // heartbeats meanwhile: the call is answered and the replica never lost.
  Roles roles(R"(
backends:
  slow: {handler: sleep, retry_on_replica_failure: 0}
endpoints:
  slow: {backend: slow}
)");
  roles.StartWorker("slow", "sleep");
  auto client = Connect(roles.client_address());
  WaitForReplicas(*client, "slow", 1);
  for (int i = 0; i < 20; ++i) {
    StatusOr<std::string> quick = client->Call("slow", "0");
    REQUIRE(quick.ok());
  }
  StatusOr<std::string> slow = client->Call("slow", "1000");
  REQUIRE(slow.ok());
  CHECK(*slow == "1000");
  nlohmann::json j = BrokerStatus(*client);
  CHECK(j["counters"]["lost_replicas"] == 0);
  CHECK(j["backends"]["slow"]["replicas"] == 1);
}

TEST_CASE("Workers register again with a restarted broker on their own", "[e2e][reliability]") {
  Roles roles(kEchoDeployment);
  roles.StartWorker("echo", "echo");
  {
    auto client = Connect(roles.client_address());
    CallOptions o;
    o.timeout = milliseconds(10'000);
    REQUIRE(client->Call("echo", "before", o).ok());
  }
  REQUIRE(roles.KillBroker());
  roles.StartBroker();
  auto client = Connect(roles.client_address());
  // The new broker knows no replica until the worker registers again.
  WaitForReplicas(*client, "echo", 1);
  StatusOr<std::string> r = client->Call("echo", "after");
  REQUIRE(r.ok());
  CHECK(*r == "after");
}

TEST_CASE("up restarts a worker that crashed", "[e2e][reliability]") {
  Stack stack(R"(
backends:
  echo: {handler: echo, num_replicas: 2}
endpoints:
  echo: {backend: echo}
)",
              {"--heartbeat-ms", "100"});
  REQUIRE(stack.ready());
  std::smatch m;
  std::string log = stack.log();
  REQUIRE(std::regex_search(log, m, std::regex("started echo-1 \\(pid ([0-9]+)\\)")));
  pid_t pid = std::stoi(m[1]);
  REQUIRE(kill(pid, SIGKILL) == 0);
  auto client = Connect(stack.client_address());
  // The broker notices (heartbeats), up restarts it, the new one registers.
  WaitForStatus(*client, [](const nlohmann::json& j) {
    return j["backends"]["echo"]["replicas"] == 2 && j["counters"]["lost_replicas"] == 1;
  });
  log = stack.log();
  CHECK_THAT(log, Catch::Contains("echo-1 (pid " + std::to_string(pid) +
                                  ") exited unexpectedly (signal 9); restarting in"));
  // The replacement keeps the crashed worker's tag (and its metrics series).
  CHECK(std::regex_search(log, std::regex("started echo-1 \\(pid [0-9]+\\)[^]*started echo-1")));
  CHECK(log.find("started echo-3") == std::string::npos);
  StatusOr<std::string> r = client->Call("echo", "still serving");
  REQUIRE(r.ok());
}

TEST_CASE("Pending calls fail fast when the broker dies and idempotent ones are sent again",
          "[e2e][reliability]") {
  Roles roles(R"(
backends:
  slow: {handler: sleep, max_concurrent_queries: 4}
endpoints:
  slow: {backend: slow}
)");
  roles.StartWorker("slow", "sleep");
  auto client = Connect(roles.client_address());
  WaitForReplicas(*client, "slow", 1);
  CallOptions plain, idempotent;
  plain.timeout = idempotent.timeout = milliseconds(20'000);
  idempotent.idempotent = true;
  StatusOr<std::string> lost = Internal("no answer"), retried = Internal("no answer");
  client->CallAsync("slow", "1000", plain, [&](StatusOr<std::string> r) { lost = std::move(r); });
  client->CallAsync("slow", "1000", idempotent,
                    [&](StatusOr<std::string> r) { retried = std::move(r); });
  WaitForStatus(*client,
                [](const nlohmann::json& j) { return j["backends"]["slow"]["in_flight"] == 2; });
  auto killed_at = SteadyClock::now();
  REQUIRE(roles.KillBroker());
  // The plain call fails at once, long before its 20 s deadline.
  while (lost.status().code() == StatusCode::kInternal) {
    client->Poll(milliseconds(100));
    REQUIRE(SteadyClock::now() - killed_at < milliseconds(5000));
  }
  CHECK(lost.status().code() == StatusCode::kUnavailable);
  roles.StartBroker();
  client->Wait();
  REQUIRE(retried.ok());
  CHECK(*retried == "1000");
}

// The calls the broker took for `endpoint` in the last minute (its STATUS).
uint64_t RequestsSeen(Client& client, const std::string& endpoint) {
  return BrokerStatus(client)["endpoints"][endpoint].value("requests_last_minute", uint64_t{0});
}

TEST_CASE("A client idle while the broker restarts serves its next calls once each",
          "[e2e][reliability]") {
  Roles roles(kEchoDeployment);
  roles.StartWorker("echo", "echo");
  auto client = Connect(roles.client_address());
  WaitForReplicas(*client, "echo", 1);
  REQUIRE(client->Call("echo", "before").ok());
  REQUIRE(roles.KillBroker());
  roles.StartBroker();
  // Another client waits for the new broker; this one stays idle meanwhile,
  // its old connection's end not read yet.
  auto watcher = Connect(roles.client_address());
  WaitForReplicas(*watcher, "echo", 1);
  for (const char* payload : {"one", "two", "three"}) {
    StatusOr<std::string> r = client->Call("echo", payload);
    INFO(payload << ": " << r.status().ToString());
    REQUIRE(r.ok());
    CHECK(*r == payload);
  }
  CallOptions idempotent;
  idempotent.idempotent = true;
  REQUIRE(client->Call("echo", "four", idempotent).ok());
  // Each ran once on the new broker: none was sent twice.
  CHECK(RequestsSeen(*watcher, "echo") == 4);
}

TEST_CASE("Calls that expire while no broker is up are never sent", "[e2e][reliability]") {
  Roles roles(kEchoDeployment);
  roles.StartWorker("echo", "echo");
  auto client = Connect(roles.client_address());
  WaitForReplicas(*client, "echo", 1);
  REQUIRE(roles.KillBroker());
  // Once the client has seen the connection go (a call sent in the instant
  // it closes may have gone with it, docs/operations.md)...
  REQUIRE(Eventually([&] { return !client->BrokerStatus(milliseconds(300)).ok(); }));
  CallOptions o;
  o.timeout = milliseconds(300);
  std::vector<StatusOr<std::string>> answers;
  for (int i = 0; i < 5; ++i) {
    client->CallAsync("echo", "late", o,
                      [&answers](StatusOr<std::string> r) { answers.push_back(std::move(r)); });
  }
  client->Wait();
  REQUIRE(answers.size() == 5);
  for (const StatusOr<std::string>& r : answers) {
    CHECK(r.status().code() == StatusCode::kDeadlineExceeded);
    CHECK_THAT(r.status().message(), Catch::Contains("the call was not sent"));
  }
  roles.StartBroker();
  auto watcher = Connect(roles.client_address());
  WaitForReplicas(*watcher, "echo", 1);
  // The same client, connected again: its next call is the only one the
  // new broker ever sees.
  o.timeout = milliseconds(10'000);
  REQUIRE(client->Call("echo", "now", o).ok());
  CHECK(RequestsSeen(*watcher, "echo") == 1);
}

// Calls `backend` (a sleep handler) to sleep `ms`, its answer into *answer
// once it comes, and waits until the broker has the call in flight.
void StartLongCall(Client& client, const std::string& backend, const std::string& ms,
                   StatusOr<std::string>* answer) {
  CallOptions o;
  o.timeout = milliseconds(60'000);
  client.CallAsync(backend, ms, o, [answer](StatusOr<std::string> r) { *answer = std::move(r); });
  WaitForStatus(client, [&backend](const nlohmann::json& j) {
    return j["backends"][backend]["in_flight"] == 1;
  });
}

TEST_CASE("A worker whose drain times out exits without waiting for the call it runs",
          "[e2e][reliability]") {
  Roles roles(R"(
backends:
  slow: {handler: sleep, max_concurrent_queries: 2, retry_on_replica_failure: 0}
endpoints:
  slow: {backend: slow}
)");
  // Heartbeats of 5 s: missed ones would tell the broker only 15 s after
  // the worker has gone.
  Process& worker =
      roles.StartWorker("slow", "sleep", {"--drain-timeout-ms", "500", "--heartbeat-ms", "5000"});
  auto client = Connect(roles.client_address());
  WaitForReplicas(*client, "slow", 1);
  StatusOr<std::string> answer = Internal("no answer");
  StartLongCall(*client, "slow", "30000", &answer);
  auto signalled = SteadyClock::now();
  worker.Signal(SIGTERM);
  // Half a second of drain, then it leaves (exit 1), long before the 30 s call ends.
  REQUIRE(worker.Wait(milliseconds(10'000)) == std::optional<int>(1));
  CHECK(SteadyClock::now() - signalled < milliseconds(10'000));
  // Its log says what the drain waited for: the call (it blamed the broker).
  CHECK_THAT(ReadFile(roles.log()),
             Catch::Contains("drain timed out after 500 ms: 1 requests still in the handler"));
  // The worker tells the broker it gives up: the call fails then (no
  // retry), not at its deadline nor after the missed heartbeats.
  client->Wait();
  CHECK(answer.status().code() == StatusCode::kReplicaFailed);
  CHECK(SteadyClock::now() - signalled < milliseconds(5'000));
  CHECK_THAT(ReadFile(roles.log()), Catch::Contains("lost (it gave up its drain)") &&
                                        Catch::Contains("the broker took this replica out"));
  // The broker's log names the replica it lost, and the one that drained.
  std::smatch tag;
  const std::string log = ReadFile(roles.log());
  REQUIRE(
      std::regex_search(log, tag, std::regex("replica '([^']+)' of backend 'slow' registered")));
  CHECK_THAT(log, Catch::Contains("replica '" + tag[1].str() + "' of backend 'slow' draining") &&
                      Catch::Contains("replica '" + tag[1].str() + "' of backend 'slow' lost ("));
}

TEST_CASE("A result over --max-result-bytes fails its call and the worker's log names the replica",
          "[e2e][reliability]") {
  Roles roles(kEchoDeployment);
  roles.StartWorker("echo", "echo", {"--max-result-bytes", "10"});
  auto client = Connect(roles.client_address());
  WaitForReplicas(*client, "echo", 1);
  StatusOr<std::string> r = client->Call("echo", std::string(100, 'x'));
  CHECK(r.status().code() == StatusCode::kHandlerError);
  CHECK_THAT(r.status().message(), Catch::Contains("more than the worker's limit of 10"));
  REQUIRE(client->Call("echo", "short").ok());
  // The operator reading the worker's log sees it too (it said nothing),
  // on a line that names the replica (every worker's lines said [worker]).
  CHECK(Eventually(
      [&] {
        return ReadFile(roles.log())
                   .find(
                       "[worker echo-1] the handler's result of 100 bytes is more than the "
                       "worker's "
                       "limit of 10") != std::string::npos;
      },
      milliseconds(5'000)));
  CHECK_THAT(ReadFile(roles.log()), Catch::Contains("[worker echo-1] metrics on http://"));
}

TEST_CASE("SIGTERM while a call runs on the worker's own thread takes the replica out at once",
          "[e2e][reliability]") {
  // Short calls run on the worker's I/O thread; a SIGTERM that came while
  // one ran long was seen only when it returned, and the broker went on
  // sending the replica work meanwhile.
  Roles roles(R"(
backends:
  man: {handler: sleep, max_concurrent_queries: 4}
endpoints:
  man: {backend: man}
)");
  Process& worker = roles.StartWorker("man", "sleep", {"--threads", "4"});
  auto client = Connect(roles.client_address());
  WaitForReplicas(*client, "man", 1);
  for (int i = 0; i < 30; ++i) REQUIRE(client->Call("man", "0").ok());  // timed as short
  StatusOr<std::string> answer = Internal("no answer");
  StartLongCall(*client, "man", "4000", &answer);
  const auto signalled = SteadyClock::now();
  worker.Signal(SIGTERM);
  // The broker hears of the drain long before the 4 s call ends.
  REQUIRE(Eventually(
      [&] { return ReadFile(roles.log()).find("of backend 'man' draining") != std::string::npos; },
      milliseconds(10'000)));
  // (Where the call runs depends on how fast the warm-up calls were: under a
  // sanitizer they are not short, the call goes to the pool, and the I/O
  // thread hears the SIGTERM itself. Either way the broker hears it now.)
  CHECK(SteadyClock::now() - signalled < milliseconds(2'000));
  // The call still ends well, and then the worker leaves.
  client->Wait();
  CHECK(answer.ok());
  CHECK(worker.Wait(milliseconds(10'000)) == std::optional<int>(0));
}

TEST_CASE("A restarted broker never answers a call with a result meant for the broker before it",
          "[e2e][reliability]") {
  Roles roles(R"(
backends:
  slow: {handler: sleep, max_concurrent_queries: 8}
endpoints:
  slow: {backend: slow}
)");
  roles.StartWorker("slow", "sleep");
  CallOptions o;
  o.timeout = milliseconds(20'000);
  {
    // Four calls the old broker gives the worker; their results come after
    // it is gone.
    auto old_client = Connect(roles.client_address());
    WaitForReplicas(*old_client, "slow", 1);
    for (const char* payload : {"1500", "01500", "001500", "0001500"}) {
      old_client->CallAsync("slow", payload, o, [](StatusOr<std::string>) {});
    }
    WaitForStatus(*old_client,
                  [](const nlohmann::json& j) { return j["backends"]["slow"]["in_flight"] == 4; });
    REQUIRE(roles.KillBroker());
  }
  roles.StartBroker();
  auto client = Connect(roles.client_address());
  WaitForReplicas(*client, "slow", 1);
  // New calls, queued in the worker behind the old ones.
  std::map<std::string, StatusOr<std::string>> replies;
  for (const char* payload : {"10", "010", "0010", "00010"}) {
    client->CallAsync("slow", payload, o, [&replies, payload](StatusOr<std::string> r) {
      replies.emplace(payload, std::move(r));
    });
  }
  client->Wait();
  REQUIRE(replies.size() == 4);
  for (const auto& [payload, reply] : replies) {
    INFO("call " << payload);
    REQUIRE(reply.ok());
    CHECK(*reply == payload);
  }
}

TEST_CASE("Workers whose heartbeat interval differs from the broker's keep their replicas",
          "[e2e][reliability]") {
  // The broker heartbeats every 100 ms; one worker every second, one every
  // 20 ms. Each names its interval in READY, and the broker judges and
  // heartbeats it at that pace. Before, the broker declared the slow one
  // dead after 300 ms of its silence, and the fast one found the broker
  // silent after 60 ms and reconnected, over and over.
  Roles roles(kEchoDeployment);
  roles.StartWorker("echo", "echo", {"--heartbeat-ms", "1000"});
  roles.StartWorker("echo", "echo", {"--heartbeat-ms", "20"});
  auto client = Connect(roles.client_address());
  WaitForReplicas(*client, "echo", 2);
  // Only what comes after both registered counts: the 20 ms worker may find
  // a broker still starting (slow under ASan) silent once before that.
  const size_t registered = ReadFile(roles.log()).size();
  nlohmann::json last;
  auto flapped = [&] {
    last = BrokerStatus(*client);
    return last["counters"]["lost_replicas"] != 0 || last["backends"]["echo"]["replicas"] != 2 ||
           ReadFile(roles.log()).find("reconnecting", registered) != std::string::npos;
  };
  // Quiet for more than twice the slow worker's liveness of 3 s at the
  // broker's old pace (300 ms): nothing may flap meanwhile.
  CHECK_FALSE(Eventually(flapped, milliseconds(2500), milliseconds(100)));
  INFO(last.dump());
  std::string log = ReadFile(roles.log());
  CHECK_THAT(log, Catch::Contains("(capacity 0, heartbeat 1000 ms)"));
  CHECK_THAT(log, Catch::Contains("(capacity 0, heartbeat 20 ms)"));
  StatusOr<std::string> r = client->Call("echo", "steady");
  REQUIRE(r.ok());
  CHECK(*r == "steady");
}

}  // namespace
}  // namespace zserve::testing
