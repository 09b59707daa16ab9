// Serving semantics end to end (docs/semantics.md): batching, deadlines,
// backpressure, shadow and sticky traffic, methods and priorities, through
// `zserve up` with real processes on free loopback ports.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "tests/e2e/stack.h"
#include "tests/e2e/test_client.h"
#include "zserve/client.h"

namespace zserve::testing {
namespace {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

int64_t MsSince(SteadyClock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(SteadyClock::now() - t).count();
}

TEST_CASE("Batches never exceed max_batch_size and are full under load", "[e2e][semantics]") {
  Stack stack(R"(
backends:
  sizes: {handler: batch_size, num_replicas: 1, max_batch_size: 16, batch_wait_timeout_ms: 50}
endpoints:
  sizes: {backend: sizes}
)");
  REQUIRE(stack.ready());
  auto client = Connect(stack);
  std::map<int, int> requests_in_batch_of;  // batch size -> requests
  int total = 0;
  for (int round = 0; round < 10; ++round) {
    for (int i = 0; i < 64; ++i) {
      client->CallAsync("sizes", "x", {}, [&](StatusOr<std::string> r) {
        REQUIRE(r.ok());
        ++requests_in_batch_of[std::stoi(*r)];
        ++total;
      });
    }
    client->Wait();
  }
  REQUIRE(total == 640);
  int largest = requests_in_batch_of.rbegin()->first;
  CHECK(largest <= 16);
  INFO("requests by batch size: " << nlohmann::json(requests_in_batch_of).dump());
  CHECK(requests_in_batch_of[16] >= total / 2);  // most batches are full
}

TEST_CASE("A lone request goes after batch_wait_timeout and not before", "[e2e][semantics]") {
  Stack stack(R"(
backends:
  sizes: {handler: batch_size, max_batch_size: 8, batch_wait_timeout_ms: 20}
endpoints:
  sizes: {backend: sizes}
)");
  REQUIRE(stack.ready());
  auto client = Connect(stack);
  for (int i = 0; i < 5; ++i) {
    auto start = SteadyClock::now();
    StatusOr<std::string> r = client->Call("sizes", "x");
    int64_t took = MsSince(start);
    REQUIRE(r.ok());
    CHECK(*r == "1");
    CHECK(took >= 20);
    CHECK(took < 500);
  }
}

constexpr const char* kSleepy = R"(
backends:
  slow: {handler: sleep, max_concurrent_queries: 1, max_queued_requests: 10}
endpoints:
  slow: {backend: slow}
)";

TEST_CASE("A request queued behind a slow handler expires on time and never runs",
          "[e2e][semantics]") {
  Stack stack(kSleepy);
  REQUIRE(stack.ready());
  auto client = Connect(stack);
  auto start = SteadyClock::now();
  StatusOr<std::string> slow = Internal("unset"), doomed = Internal("unset"),
                        after = Internal("unset");
  int64_t doomed_at = -1, after_at = -1;
  CallOptions short_deadline;
  short_deadline.timeout = milliseconds(30);
  client->CallAsync("slow", "300", {}, [&](StatusOr<std::string> r) { slow = std::move(r); });
  client->CallAsync("slow", "300", short_deadline, [&](StatusOr<std::string> r) {
    doomed = std::move(r);
    doomed_at = MsSince(start);
  });
  client->CallAsync("slow", "0", {}, [&](StatusOr<std::string> r) {
    after = std::move(r);
    after_at = MsSince(start);
  });
  client->Wait();
  CHECK(doomed.status().code() == StatusCode::kDeadlineExceeded);
  INFO("answered DEADLINE_EXCEEDED after " << doomed_at << " ms for a 30 ms deadline");
  CHECK(doomed_at >= 30);
  CHECK(doomed_at < 80);  // 40 ms on a quiet machine; CI machines are shared
  REQUIRE(slow.ok());
  REQUIRE(after.ok());
  // Had the expired request run, the third would end after 600 ms.
  INFO("the request after it finished at " << after_at << " ms");
  CHECK(after_at < 550);
}

TEST_CASE("A flood past max_queued_requests is OVERLOADED at once and loses nothing",
          "[e2e][semantics]") {
  Stack stack(kSleepy);
  REQUIRE(stack.ready());
  auto client = Connect(stack);
  int ok = 0, overloaded = 0, other = 0;
  int64_t last_overloaded_at = 0, first_ok_at = -1;
  auto start = SteadyClock::now();
  for (int i = 0; i < 100; ++i) {
    client->CallAsync("slow", "20", {}, [&](StatusOr<std::string> r) {
      if (r.ok()) {
        ++ok;
        if (first_ok_at < 0) first_ok_at = MsSince(start);
      } else if (r.status().code() == StatusCode::kOverloaded) {
        ++overloaded;
        last_overloaded_at = MsSince(start);
      } else {
        ++other;
      }
    });
  }
  client->Wait();
  CHECK(ok + overloaded + other == 100);
  CHECK(other == 0);
  // Ten queued (one of them may already run) are accepted; the rest are
  // refused at once.
  CHECK(ok >= 10);
  CHECK(ok <= 12);
  CHECK(overloaded == 100 - ok);
  CHECK(last_overloaded_at < first_ok_at);
}

TEST_CASE("Shadow traffic takes its fraction and never touches the primary reply",
          "[e2e][semantics]") {
  Stack stack(R"(
backends:
  main: {handler: echo, num_replicas: 2}
  broken: {handler: fail, num_replicas: 1}
  slow: {handler: sleep, num_replicas: 1, max_concurrent_queries: 1}
endpoints:
  shadowed: {backend: main, shadow: {broken: 0.3}}
  slow_shadow: {backend: main, shadow: {slow: 1.0}}
)");
  REQUIRE(stack.ready());
  auto client = Connect(stack);
  constexpr int kCalls = 10'000;
  int ok = 0;
  for (int i = 0; i < kCalls; ++i) {
    // The shadow backend throws on this payload; the primary echoes it.
    client->CallAsync("shadowed", "throw:shadow only", {},
                      [&](StatusOr<std::string> r) { ok += r.ok() && *r == "throw:shadow only"; });
    if (client->pending() >= 500) client->Poll(milliseconds(100));
  }
  client->Wait();
  CHECK(ok == kCalls);
  nlohmann::json counters = BrokerStatus(*client)["counters"];
  double fraction = counters["shadow_requests"].get<double>() / kCalls;
  INFO("shadow fraction " << fraction << ", counters " << counters.dump());
  CHECK(fraction > 0.27);
  CHECK(fraction < 0.33);

  // A shadow that sleeps 300 ms does not slow the primary.
  for (int i = 0; i < 5; ++i) {
    auto start = SteadyClock::now();
    StatusOr<std::string> r = client->Call("slow_shadow", "300");
    REQUIRE(r.ok());
    CHECK(MsSince(start) < 150);
  }
}

TEST_CASE("The same shard key reaches the same backend and replica", "[e2e][semantics]") {
  Stack stack(R"(
backends:
  a: {handler: whoami, num_replicas: 2}
  b: {handler: whoami, num_replicas: 2}
endpoints:
  who: {traffic: {a: 0.5, b: 0.5}}
)");
  REQUIRE(stack.ready());
  auto client = Connect(stack);
  std::map<std::string, std::set<std::string>> seen;
  for (int i = 0; i < 1000; ++i) {
    CallOptions o;
    o.shard_key = "key-" + std::to_string(i % 10);
    client->CallAsync("who", "", o, [&seen, key = o.shard_key](StatusOr<std::string> r) {
      REQUIRE(r.ok());
      seen[key].insert(*r);
    });
  }
  client->Wait();
  REQUIRE(seen.size() == 10);
  INFO("replicas by key: " << nlohmann::json(seen).dump() << " status "
                           << BrokerStatus(*client).dump());
  std::set<std::string> replicas;
  for (const auto& [key, who] : seen) {
    CHECK(who.size() == 1);
    replicas.insert(*who.begin());
  }
  CHECK(replicas.size() >= 2);  // ten keys do not all land on one replica
}

// One sleep replica that takes one call at a time, behind endpoint "one".
constexpr const char* kOneSlot = R"(
backends:
  one: {handler: sleep, max_concurrent_queries: 1}
endpoints:
  one: {backend: one}
)";

// Calls "one" to sleep `ms` and waits (bounded) until that call holds the
// only slot, so that the calls made next queue behind it.
void HoldTheSlot(Client& client, const std::string& ms) {
  client.CallAsync("one", ms, {}, [](StatusOr<std::string> r) { REQUIRE(r.ok()); });
  REQUIRE(Eventually([&] { return BrokerStatus(client)["backends"]["one"]["in_flight"] == 1; }));
}

TEST_CASE("High priority is dispatched first under contention", "[e2e][semantics]") {
  Stack stack(kOneSlot);
  REQUIRE(stack.ready());
  auto client = Connect(stack);
  std::vector<std::string> order;
  HoldTheSlot(*client, "200");
  for (int i = 0; i < 4; ++i) {
    CallOptions normal, high;
    high.priority = 1;
    client->CallAsync("one", "5", normal, [&, i](StatusOr<std::string> r) {
      REQUIRE(r.ok());
      order.push_back("n" + std::to_string(i));
    });
    client->CallAsync("one", "5", high, [&, i](StatusOr<std::string> r) {
      REQUIRE(r.ok());
      order.push_back("h" + std::to_string(i));
    });
  }
  client->Wait();
  REQUIRE(order.size() == 8);
  // Three high, one normal, the last high, then the normals (docs/semantics.md).
  CHECK(order == std::vector<std::string>{"h0", "h1", "h2", "n0", "h3", "n1", "n2", "n3"});
}

TEST_CASE("zserve call --priority 1 goes ahead of the normal calls queued before it",
          "[e2e][semantics]") {
  Stack stack(kOneSlot);
  REQUIRE(stack.ready());
  auto client = Connect(stack);
  // A blocker holds the only slot while 3 normal calls of 1 s each queue
  // behind it, then the command's call. The blocker lasts long enough for
  // the command to start (slowly, under a sanitizer) and queue its call.
  int normal_done = 0;
  HoldTheSlot(*client, "3000");
  for (int i = 0; i < 3; ++i) {
    client->CallAsync("one", "1000", {}, [&](StatusOr<std::string> r) {
      REQUIRE(r.ok());
      ++normal_done;
    });
  }
  REQUIRE(Eventually([&] { return BrokerStatus(*client)["backends"]["one"]["queued"] == 3; }));
  Process call(kBinary, {"call", "--broker", stack.client_address(), "--priority", "1", "one", "5"},
               stack.dir() + "/call.err");
  REQUIRE(Eventually([&] { return BrokerStatus(*client)["backends"]["one"]["queued"] == 4; }));
  REQUIRE(BrokerStatus(*client)["backends"]["one"]["in_flight"] == 1);  // the blocker still
  // Served right after the blocker, before any of the normal calls: as a
  // normal call it would wait for all three (3 s more).
  REQUIRE(call.Wait(milliseconds(10'000)) == 0);
  client->Poll(milliseconds(0));
  CHECK(normal_done == 0);
  client->Wait();
  CHECK(normal_done == 3);
}

TEST_CASE("An unknown method is NOT_FOUND and a known one is served", "[e2e][semantics]") {
  Stack stack(R"(
backends:
  dense: {handler: dense, max_batch_size: 8}
endpoints:
  dense: {backend: dense}
)");
  REQUIRE(stack.ready());
  auto client = Connect(stack);
  std::vector<float> x(64, 1.0f);
  std::string payload(reinterpret_cast<const char*>(x.data()), x.size() * sizeof(float));
  StatusOr<std::string> r = client->Call("dense", payload);
  REQUIRE(r.ok());
  CHECK(r->size() == 16 * sizeof(float));
  CallOptions o;
  o.method = "predict";
  StatusOr<std::string> missing = client->Call("dense", payload, o);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == StatusCode::kNotFound);
  CHECK_THAT(missing.status().message(), Catch::Contains("no method 'predict'"));
  StatusOr<std::string> wrong = client->Call("dense", "short");
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.status().code() == StatusCode::kHandlerError);
  CHECK_THAT(wrong.status().message(), Catch::Contains("256 bytes"));
}

}  // namespace
}  // namespace zserve::testing
