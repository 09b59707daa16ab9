// The serving semantics of the Router (docs/semantics.md): batching windows,
// priorities, shadow copies and sticky shard keys. Time is a TimePoint
// advanced by hand; nothing sleeps.
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "broker/router.h"
#include "schemas/config.h"

namespace {

using std::chrono::milliseconds;
using zserve::StatusCode;
using zserve::TimePoint;
using zserve::broker::Dispatch;
using zserve::broker::Router;
using zserve::broker::RouterOptions;
namespace sc = zserve::schemas;

RouterOptions Seeded() {
  RouterOptions o;
  o.seed = 7;
  return o;
}

sc::BackendConfig Backend(const std::string& name, uint32_t batch, uint32_t wait_ms,
                          uint32_t max_cq = 0) {
  sc::BackendConfig b;
  b.name = name;
  b.handler = "echo";
  b.max_batch_size = batch;
  b.batch_wait_timeout_ms = wait_ms;
  b.max_concurrent_queries = max_cq;
  return b;
}

sc::ConfigState State(std::vector<sc::BackendConfig> backends,
                      std::map<std::string, double> traffic,
                      std::map<std::string, double> shadow = {}) {
  sc::ConfigState s;
  for (auto& b : backends) s.backends[b.name] = b;
  sc::EndpointConfig e;
  e.name = "ep";
  e.traffic = std::move(traffic);
  e.shadow = std::move(shadow);
  e.timeout_ms = 10'000;
  s.endpoints["ep"] = e;
  REQUIRE(sc::Validate(s).ok());
  return s;
}

std::vector<uint64_t> Tokens(const std::vector<Dispatch>& ds) {
  std::vector<uint64_t> out;
  for (const Dispatch& d : ds) out.insert(out.end(), d.tokens.begin(), d.tokens.end());
  return out;
}

}  // namespace

TEST_CASE("A partial batch waits for batch_wait_timeout and a full one goes at once", "[broker]") {
  Router r(Seeded());
  r.ApplyConfig(State({Backend("be", 4, 20)}, {{"be", 1.0}}));
  REQUIRE(r.AddReplica("w", "be", 0).ok());
  const TimePoint t0 = zserve::Clock::now();
  REQUIRE(r.Admit(1, "ep", "", 0, t0).ok());
  CHECK(r.TakeDispatches(t0).empty());
  CHECK(r.TakeDispatches(t0 + milliseconds(19)).empty());
  // The window is the next timer, so the loop wakes for it.
  REQUIRE(r.NextTimer().has_value());
  CHECK(*r.NextTimer() == t0 + milliseconds(20));
  std::vector<Dispatch> ds = r.TakeDispatches(t0 + milliseconds(20));
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].tokens == std::vector<uint64_t>{1});

  // Four queued make a full batch: no waiting.
  const TimePoint t1 = t0 + milliseconds(100);
  for (uint64_t t = 10; t < 14; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t1).ok());
  ds = r.TakeDispatches(t1);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].tokens == std::vector<uint64_t>{10, 11, 12, 13});
}

TEST_CASE("Batches never exceed max_batch_size and fill the replica's capacity", "[broker]") {
  Router r(Seeded());
  r.ApplyConfig(State({Backend("be", 16, 5)}, {{"be", 1.0}}));  // default cap 32
  REQUIRE(r.AddReplica("w", "be", 0).ok());
  const TimePoint t0 = zserve::Clock::now();
  for (uint64_t t = 1; t <= 64; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0).ok());
  std::vector<Dispatch> ds = r.TakeDispatches(t0);
  REQUIRE(ds.size() == 2);  // 2 x 16 = the cap of 32
  for (const Dispatch& d : ds) CHECK(d.tokens.size() == 16);
  // One batch answered: the next full batch goes.
  for (uint64_t t : ds[0].tokens)
    REQUIRE(r.Complete("w", t) == zserve::broker::Completion::kDeliver);
  ds = r.TakeDispatches(t0);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].tokens.size() == 16);
}

TEST_CASE("A held batch goes when its window ends even if the window moved earlier", "[broker]") {
  Router r(Seeded());
  r.ApplyConfig(State({Backend("be", 3, 100)}, {{"be", 1.0}}));
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  const TimePoint t0 = zserve::Clock::now();
  TimePoint window_end;
  SECTION("a retry of an older call goes back to the queue's front") {
    for (uint64_t t = 1; t <= 3; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0).ok());
    REQUIRE(Tokens(r.TakeDispatches(t0)) == std::vector<uint64_t>{1, 2, 3});  // full: at once
    REQUIRE(r.Admit(4, "ep", "", 0, t0 + milliseconds(10)).ok());
    CHECK(r.TakeDispatches(t0 + milliseconds(10)).empty());  // held until t0 + 110
    REQUIRE(r.Complete("w1", 2) == zserve::broker::Completion::kDeliver);
    REQUIRE(r.Complete("w1", 3) == zserve::broker::Completion::kDeliver);
    REQUIRE(r.AddReplica("w2", "be", 0).ok());
    // w1 is lost holding call 1 (queued at t0): its retry goes first, and
    // the batch's window is now call 1's.
    REQUIRE(r.RemoveReplica("w1").requeued == std::vector<uint64_t>{1});
    window_end = t0 + milliseconds(100);
  }
  SECTION("a config change shortens the window") {
    REQUIRE(r.Admit(1, "ep", "", 0, t0).ok());
    CHECK(r.TakeDispatches(t0).empty());  // held until t0 + 100
    r.ApplyConfig(State({Backend("be", 3, 50)}, {{"be", 1.0}}));
    REQUIRE(r.Admit(4, "ep", "", 0, t0 + milliseconds(10)).ok());
    window_end = t0 + milliseconds(50);
  }
  CHECK(r.TakeDispatches(t0 + milliseconds(20)).empty());
  // The loop wakes when the window ends, and the batch goes then.
  REQUIRE(r.NextTimer().has_value());
  CHECK(*r.NextTimer() == window_end);
  CHECK(r.TakeDispatches(window_end - milliseconds(1)).empty());
  CHECK(Tokens(r.TakeDispatches(window_end)) == std::vector<uint64_t>{1, 4});
}

TEST_CASE("A call whose send failed is retried without counting a try", "[broker]") {
  Router r(Seeded());
  sc::BackendConfig config = Backend("be", 1, 0);
  config.retry_on_replica_failure = 0;
  r.ApplyConfig(State({config}, {{"be", 1.0}}));
  REQUIRE(r.AddReplica("gone", "be", 0).ok());  // the older: ties go to it
  REQUIRE(r.AddReplica("w", "be", 0).ok());
  const TimePoint t0 = zserve::Clock::now();
  REQUIRE(r.Admit(1, "ep", "", 0, t0).ok());
  std::vector<Dispatch> ds = r.TakeDispatches(t0);
  REQUIRE(ds.size() == 1);
  REQUIRE(ds[0].replica == "gone");
  // The send to it failed: the call never reached it.
  r.Undelivered(1);
  zserve::broker::Orphans orphans = r.RemoveReplica("gone");
  CHECK(orphans.requeued == std::vector<uint64_t>{1});
  CHECK(orphans.failed.empty());
  ds = r.TakeDispatches(t0);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].replica == "w");
  CHECK(ds[0].tokens == std::vector<uint64_t>{1});
  // Lost by a replica it did reach, with no retry left: failed.
  orphans = r.RemoveReplica("w");
  CHECK(orphans.requeued.empty());
  CHECK(orphans.failed == std::vector<uint64_t>{1});
}

TEST_CASE("With batch_wait_timeout 0 a batch takes whatever is waiting", "[broker]") {
  Router r(Seeded());
  r.ApplyConfig(State({Backend("be", 8, 0)}, {{"be", 1.0}}));
  REQUIRE(r.AddReplica("w", "be", 0).ok());
  const TimePoint t0 = zserve::Clock::now();
  for (uint64_t t = 1; t <= 3; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0).ok());
  std::vector<Dispatch> ds = r.TakeDispatches(t0);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].tokens.size() == 3);
}

TEST_CASE("High priority goes first but normal priority is not starved", "[broker]") {
  Router r(Seeded());
  r.ApplyConfig(State({Backend("be", 1, 0, 1)}, {{"be", 1.0}}));  // one at a time
  REQUIRE(r.AddReplica("w", "be", 0).ok());
  const TimePoint t0 = zserve::Clock::now();
  // Occupy the replica, then queue 4 normal and 8 high.
  REQUIRE(r.Admit(100, "ep", "", 0, t0).ok());
  REQUIRE(Tokens(r.TakeDispatches(t0)) == std::vector<uint64_t>{100});
  for (uint64_t t = 1; t <= 4; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0, nullptr, 0).ok());
  for (uint64_t t = 11; t <= 18; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0, nullptr, 5).ok());
  std::vector<uint64_t> order;
  uint64_t running = 100;
  for (int i = 0; i < 12; ++i) {
    REQUIRE(r.Complete("w", running) == zserve::broker::Completion::kDeliver);
    std::vector<uint64_t> next = Tokens(r.TakeDispatches(t0));
    REQUIRE(next.size() == 1);
    running = next[0];
    order.push_back(running);
  }
  // Three high, then one normal, while both wait; FIFO within a level.
  CHECK(order == std::vector<uint64_t>{11, 12, 13, 1, 14, 15, 16, 2, 17, 18, 3, 4});
}

// The replica each of 200 keys goes to: one call per key, dispatched and
// completed.
std::map<std::string, std::string> KeyOwners(Router& r) {
  const TimePoint t0 = zserve::Clock::now();
  std::map<std::string, std::string> owner;
  for (uint64_t t = 1; t <= 200; ++t) {
    REQUIRE(r.Admit(t, "ep", "key-" + std::to_string(t), 0, t0).ok());
  }
  for (const Dispatch& d : r.TakeDispatches(t0)) {
    for (uint64_t t : d.tokens) {
      owner["key-" + std::to_string(t)] = d.replica;
      REQUIRE(r.Complete(d.replica, t) == zserve::broker::Completion::kDeliver);
    }
  }
  REQUIRE(owner.size() == 200);
  return owner;
}

TEST_CASE("Sticky keys follow the replica's tag across connections", "[broker]") {
  // They were hashed on the ZeroMQ connection id, new on every reconnect:
  // a broker restart moved about a third of the keys between replicas that
  // never died.
  auto config = State({Backend("be", 1, 0, 1000)}, {{"be", 1.0}});
  Router before(Seeded());
  before.ApplyConfig(config);
  REQUIRE(before.AddReplica("conn-1", "be", 0, "be-1").ok());
  REQUIRE(before.AddReplica("conn-2", "be", 0, "be-2").ok());
  REQUIRE(before.AddReplica("conn-3", "be", 0, "be-3").ok());
  std::map<std::string, std::string> owners = KeyOwners(before);
  // The same workers register with a new broker, on new connections, in
  // another order.
  Router after(Seeded());
  after.ApplyConfig(config);
  REQUIRE(after.AddReplica("conn-9", "be", 0, "be-3").ok());
  REQUIRE(after.AddReplica("conn-7", "be", 0, "be-1").ok());
  REQUIRE(after.AddReplica("conn-8", "be", 0, "be-2").ok());
  const std::map<std::string, std::string> renamed = {
      {"conn-1", "conn-7"}, {"conn-2", "conn-8"}, {"conn-3", "conn-9"}};
  std::map<std::string, std::string> now = KeyOwners(after);
  int moved = 0;
  for (const auto& [key, conn] : owners) moved += now[key] != renamed.at(conn) ? 1 : 0;
  CHECK(moved == 0);
  // be-1 restarted (its old registration not yet found lost): the new one
  // takes its keys, and no other key moves.
  REQUIRE(after.AddReplica("conn-10", "be", 0, "be-1").ok());
  std::map<std::string, std::string> restarted = KeyOwners(after);
  for (const auto& [key, conn] : now) {
    INFO(key);
    CHECK(restarted[key] == (conn == "conn-7" ? "conn-10" : conn));
  }
}

TEST_CASE("Keyed calls do not starve unkeyed ones of their level or above", "[broker]") {
  // A replica's sticky queue went first whatever waited in the shared one:
  // a stream of keyed normal calls held back even high priority ones.
  Router r(Seeded());
  r.ApplyConfig(State({Backend("be", 1, 0, 1)}, {{"be", 1.0}}));  // one at a time
  REQUIRE(r.AddReplica("w", "be", 0).ok());
  const TimePoint t0 = zserve::Clock::now();
  auto at = [&](int ms) { return t0 + std::chrono::milliseconds(ms); };
  REQUIRE(r.Admit(100, "ep", "", 0, t0).ok());
  REQUIRE(Tokens(r.TakeDispatches(t0)) == std::vector<uint64_t>{100});
  // Keyed normal 1, 2; unkeyed normal 3; keyed normal 4; then unkeyed high
  // 11 to 14, all while the replica is busy.
  REQUIRE(r.Admit(1, "ep", "k", 0, at(1), nullptr, 0).ok());
  REQUIRE(r.Admit(2, "ep", "k", 0, at(2), nullptr, 0).ok());
  REQUIRE(r.Admit(3, "ep", "", 0, at(3), nullptr, 0).ok());
  REQUIRE(r.Admit(4, "ep", "k", 0, at(4), nullptr, 0).ok());
  for (uint64_t t = 11; t <= 14; ++t) {
    REQUIRE(r.Admit(t, "ep", "", 0, at(static_cast<int>(t)), nullptr, 5).ok());
  }
  std::vector<uint64_t> order;
  uint64_t running = 100;
  for (int i = 0; i < 8; ++i) {
    REQUIRE(r.Complete("w", running) == zserve::broker::Completion::kDeliver);
    std::vector<uint64_t> next = Tokens(r.TakeDispatches(at(20)));
    REQUIRE(next.size() == 1);
    running = next[0];
    order.push_back(running);
  }
  // Three high, one normal, and so on; the normals in arrival order, keyed
  // or not.
  CHECK(order == std::vector<uint64_t>{11, 12, 13, 1, 14, 2, 3, 4});
}

TEST_CASE("Shadow copies are drawn by fraction and wait behind every primary request", "[broker]") {
  Router r(Seeded());
  r.ApplyConfig(State({Backend("main", 1, 0), Backend("shadow", 1, 0, 1)}, {{"main", 1.0}},
                      {{"shadow", 0.25}}));
  const TimePoint t0 = zserve::Clock::now();
  int drawn = 0;
  for (uint64_t t = 1; t <= 10'000; ++t) {
    std::vector<std::string> shadows;
    std::string backend;
    REQUIRE(r.Admit(t, "ep", "", 0, t0, &backend, 0, &shadows).ok());
    CHECK(backend == "main");
    drawn += static_cast<int>(shadows.size());
  }
  CHECK(drawn > 2200);
  CHECK(drawn < 2800);

  // On a backend that also takes primary traffic, shadows go last.
  Router r2(Seeded());
  r2.ApplyConfig(State({Backend("be", 1, 0, 1)}, {{"be", 1.0}}));
  REQUIRE(r2.AddReplica("w", "be", 0).ok());
  REQUIRE(r2.AdmitShadow(1, "be", t0 + milliseconds(1000), t0).ok());
  REQUIRE(r2.Admit(2, "ep", "", 0, t0).ok());
  REQUIRE(r2.Admit(3, "ep", "", 0, t0).ok());
  CHECK(Tokens(r2.TakeDispatches(t0)) == std::vector<uint64_t>{2});
  REQUIRE(r2.Complete("w", 2) == zserve::broker::Completion::kDeliver);
  CHECK(Tokens(r2.TakeDispatches(t0)) == std::vector<uint64_t>{3});
  REQUIRE(r2.Complete("w", 3) == zserve::broker::Completion::kDeliver);
  CHECK(Tokens(r2.TakeDispatches(t0)) == std::vector<uint64_t>{1});
}

TEST_CASE("A full shadow backend drops the copy and never the primary", "[broker]") {
  Router r(Seeded());
  sc::BackendConfig shadow = Backend("shadow", 1, 0);
  shadow.max_queued_requests = 1;
  r.ApplyConfig(State({Backend("main", 1, 0), shadow}, {{"main", 1.0}}, {{"shadow", 1.0}}));
  const TimePoint t0 = zserve::Clock::now();
  REQUIRE(r.AdmitShadow(100, "shadow", t0 + milliseconds(1000), t0).ok());
  zserve::Status full = r.AdmitShadow(101, "shadow", t0 + milliseconds(1000), t0);
  CHECK(full.code() == StatusCode::kOverloaded);
  std::vector<std::string> shadows;
  CHECK(r.Admit(1, "ep", "", 0, t0, nullptr, 0, &shadows).ok());
  CHECK(shadows == std::vector<std::string>{"shadow"});
}

TEST_CASE("The same shard key goes to the same replica while it lives", "[broker]") {
  Router r(Seeded());
  r.ApplyConfig(State({Backend("be", 1, 0, 1000)}, {{"be", 1.0}}));
  for (const char* w : {"w1", "w2", "w3"}) REQUIRE(r.AddReplica(w, "be", 0).ok());
  const TimePoint t0 = zserve::Clock::now();
  std::map<std::string, std::set<std::string>> replicas_of_key;
  uint64_t token = 1;
  for (int round = 0; round < 10; ++round) {
    for (int k = 0; k < 30; ++k) {
      std::string key = "user-" + std::to_string(k);
      REQUIRE(r.Admit(token, "ep", key, 0, t0).ok());
      std::vector<Dispatch> ds = r.TakeDispatches(t0);
      REQUIRE(ds.size() == 1);
      replicas_of_key[key].insert(ds[0].replica);
      REQUIRE(r.Complete(ds[0].replica, token) == zserve::broker::Completion::kDeliver);
      ++token;
    }
  }
  std::set<std::string> used;
  for (const auto& [key, reps] : replicas_of_key) {
    CHECK(reps.size() == 1);
    used.insert(*reps.begin());
  }
  CHECK(used.size() == 3);  // keys spread over the replicas

  // Losing a replica moves only its keys.
  std::string lost = *replicas_of_key["user-0"].begin();
  (void)r.RemoveReplica(lost);
  for (const auto& [key, reps] : replicas_of_key) {
    REQUIRE(r.Admit(token, "ep", key, 0, t0).ok());
    std::vector<Dispatch> ds = r.TakeDispatches(t0);
    REQUIRE(ds.size() == 1);
    if (*reps.begin() != lost) CHECK(ds[0].replica == *reps.begin());
    CHECK(ds[0].replica != lost);
    REQUIRE(r.Complete(ds[0].replica, token) == zserve::broker::Completion::kDeliver);
    ++token;
  }
}

TEST_CASE("A sticky request waits for its busy replica while others serve the rest", "[broker]") {
  Router r(Seeded());
  r.ApplyConfig(State({Backend("be", 1, 0, 1)}, {{"be", 1.0}}));
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  REQUIRE(r.AddReplica("w2", "be", 0).ok());
  const TimePoint t0 = zserve::Clock::now();
  REQUIRE(r.Admit(1, "ep", "k", 0, t0).ok());
  std::vector<Dispatch> ds = r.TakeDispatches(t0);
  REQUIRE(ds.size() == 1);
  std::string home = ds[0].replica;
  std::string other = home == "w1" ? "w2" : "w1";
  REQUIRE(r.Admit(2, "ep", "k", 0, t0).ok());  // pinned to the busy home replica
  REQUIRE(r.Admit(3, "ep", "", 0, t0).ok());   // unkeyed: the idle one takes it
  ds = r.TakeDispatches(t0);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].replica == other);
  CHECK(ds[0].tokens == std::vector<uint64_t>{3});
  REQUIRE(r.Complete(home, 1) == zserve::broker::Completion::kDeliver);
  ds = r.TakeDispatches(t0);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].replica == home);
  CHECK(ds[0].tokens == std::vector<uint64_t>{2});
}

TEST_CASE("Expired requests leave no slots behind in a queue nobody drains", "[broker]") {
  Router r(Seeded());
  r.ApplyConfig(State({Backend("be", 1, 0)}, {{"be", 1.0}}));  // no replica at all
  TimePoint t = zserve::Clock::now();
  uint64_t token = 1;
  for (int round = 0; round < 100; ++round) {
    for (int i = 0; i < 100; ++i) REQUIRE(r.Admit(token++, "ep", "", 10, t).ok());
    t += milliseconds(20);
    CHECK(r.Expire(t).size() == 100);
  }
  CHECK(r.live_tokens() == 0);
  // What stays queued is bounded by the compaction rule, not by history.
  CHECK(r.queue_slots() <= 64);
}
