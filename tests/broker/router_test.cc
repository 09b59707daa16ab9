// The broker's routing logic without sockets (broker/router.h). Time is a
// TimePoint advanced by hand; nothing sleeps.
#include "broker/router.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "schemas/config.h"
#include "zserve/status.h"

namespace {

using Catch::Matchers::Contains;
using std::chrono::milliseconds;
using zserve::StatusCode;
using zserve::broker::BackendStatus;
using zserve::broker::Completion;
using zserve::broker::Dispatch;
using zserve::broker::Orphans;
using zserve::broker::Router;
using zserve::broker::RouterOptions;
namespace sc = zserve::schemas;

struct BackendOpts {
  uint32_t max_batch_size = 1;
  uint32_t max_concurrent_queries = 0;
  uint32_t max_queued_requests = sc::kDefaultMaxQueuedRequests;
  uint32_t retry_on_replica_failure = 1;
};

sc::BackendConfig MakeBackend(const std::string& name, const BackendOpts& o) {
  sc::BackendConfig b;
  b.name = name;
  b.handler = "echo";
  b.max_batch_size = o.max_batch_size;
  b.max_concurrent_queries = o.max_concurrent_queries;
  b.max_queued_requests = o.max_queued_requests;
  b.retry_on_replica_failure = o.retry_on_replica_failure;
  return b;
}

// Backend "be" behind endpoint "ep" (all traffic, 1 s default timeout).
sc::ConfigState OneBackend(const BackendOpts& o) {
  sc::ConfigState s;
  s.backends["be"] = MakeBackend("be", o);
  sc::EndpointConfig e;
  e.name = "ep";
  e.traffic = {{"be", 1.0}};
  e.timeout_ms = 1000;
  s.endpoints["ep"] = e;
  REQUIRE(sc::Validate(s).ok());
  return s;
}

RouterOptions Seeded() {
  RouterOptions o;
  o.seed = 42;
  return o;
}

// Every token of the dispatches, in order.
std::vector<uint64_t> Tokens(const std::vector<Dispatch>& ds) {
  std::vector<uint64_t> out;
  for (const Dispatch& d : ds) out.insert(out.end(), d.tokens.begin(), d.tokens.end());
  return out;
}

// Tokens sent to one replica.
std::vector<uint64_t> TokensTo(const std::vector<Dispatch>& ds, const std::string& replica) {
  std::vector<uint64_t> out;
  for (const Dispatch& d : ds) {
    if (d.replica == replica) out.insert(out.end(), d.tokens.begin(), d.tokens.end());
  }
  return out;
}

BackendStatus StatusOf(const Router& r, const std::string& backend) {
  for (const BackendStatus& b : r.Backends()) {
    if (b.name == backend) return b;
  }
  FAIL("no backend " << backend << " in Backends()");
  return {};
}

using Ids = std::vector<uint64_t>;

}  // namespace

TEST_CASE("Admit to an unknown endpoint is NOT_FOUND", "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  CHECK_FALSE(r.has_config());
  zserve::Status before = r.Admit(1, "ep", "", 0, t0);
  CHECK(before.code() == StatusCode::kNotFound);

  r.ApplyConfig(OneBackend({}));
  CHECK(r.has_config());
  zserve::Status s = r.Admit(2, "nope", "", 0, t0);
  CHECK(s.code() == StatusCode::kNotFound);
  CHECK_THAT(s.message(), Contains("nope"));
  CHECK(r.live_tokens() == 0);
  CHECK(r.Admit(3, "ep", "", 0, t0).ok());
  CHECK(r.live_tokens() == 1);
}

TEST_CASE("Admit reports the chosen backend and refuses a token in use", "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({}));
  std::string backend;
  REQUIRE(r.Admit(1, "ep", "", 0, t0, &backend).ok());
  CHECK(backend == "be");
  zserve::Status again = r.Admit(1, "ep", "", 0, t0);
  CHECK(again.code() == StatusCode::kBadRequest);
  CHECK(StatusOf(r, "be").queued == 1);
}

TEST_CASE("Nothing is dispatched without a replica and then the queue goes out in FIFO order",
          "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({}));
  for (uint64_t t = 1; t <= 5; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0).ok());
  CHECK(r.TakeDispatches(t0).empty());
  CHECK(StatusOf(r, "be").queued == 5);

  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  CHECK(r.HasReplica("w1"));
  std::vector<Dispatch> ds = r.TakeDispatches(t0);
  CHECK(Tokens(ds) == Ids{1, 2, 3, 4, 5});
  for (const Dispatch& d : ds) CHECK(d.replica == "w1");
  CHECK(StatusOf(r, "be").queued == 0);
  CHECK(StatusOf(r, "be").in_flight == 5);
  CHECK(r.TakeDispatches(t0).empty());
}

TEST_CASE("A replica registered twice is refused", "[broker]") {
  Router r(Seeded());
  r.ApplyConfig(OneBackend({}));
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  CHECK(r.AddReplica("w1", "be", 0).code() == StatusCode::kBadRequest);
  CHECK(StatusOf(r, "be").replicas == 1);
}

TEST_CASE("A backend only READY named is forgotten with its last replica", "[broker]") {
  Router r(Seeded());
  r.ApplyConfig(OneBackend({}));
  auto names = [&r] {
    std::vector<std::string> out;
    for (const BackendStatus& b : r.Backends()) out.push_back(b.name);
    return out;
  };
  REQUIRE(r.AddReplica("g1", "ghost", 0).ok());
  REQUIRE(r.AddReplica("g2", "ghost", 0).ok());
  CHECK(names() == std::vector<std::string>{"be", "ghost"});
  (void)r.RemoveReplica("g1");
  CHECK(StatusOf(r, "ghost").replicas == 1);
  (void)r.RemoveReplica("g2");
  CHECK(names() == std::vector<std::string>{"be"});
  // A configured backend stays without replicas.
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  (void)r.RemoveReplica("w1");
  CHECK(names() == std::vector<std::string>{"be"});
  // The name can come back.
  REQUIRE(r.AddReplica("g3", "ghost", 0).ok());
  CHECK(StatusOf(r, "ghost").replicas == 1);
}

TEST_CASE("A replica never holds more than max_concurrent_queries", "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({.max_concurrent_queries = 2}));
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  for (uint64_t t = 1; t <= 5; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0).ok());

  CHECK(Tokens(r.TakeDispatches(t0)) == Ids{1, 2});
  CHECK(StatusOf(r, "be").in_flight == 2);
  CHECK(StatusOf(r, "be").queued == 3);
  CHECK(r.TakeDispatches(t0).empty());

  CHECK(r.Complete("w1", 1) == Completion::kDeliver);
  CHECK(Tokens(r.TakeDispatches(t0)) == Ids{3});
  CHECK(StatusOf(r, "be").in_flight == 2);
  CHECK(StatusOf(r, "be").queued == 2);
  CHECK(r.TakeDispatches(t0).empty());
}

TEST_CASE("The worker's own capacity caps a replica below max_concurrent_queries", "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({.max_concurrent_queries = 5}));
  REQUIRE(r.AddReplica("w1", "be", 1).ok());
  for (uint64_t t = 1; t <= 3; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0).ok());
  CHECK(Tokens(r.TakeDispatches(t0)) == Ids{1});
  CHECK(r.Complete("w1", 1) == Completion::kDeliver);
  CHECK(Tokens(r.TakeDispatches(t0)) == Ids{2});
}

TEST_CASE("max_batch_size 4 packs up to 4 tokens in one Dispatch", "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  // Default max_concurrent_queries for batch 4: 8.
  r.ApplyConfig(OneBackend({.max_batch_size = 4}));
  for (uint64_t t = 1; t <= 10; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0).ok());
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  std::vector<Dispatch> ds = r.TakeDispatches(t0);
  REQUIRE(ds.size() == 2);
  CHECK(ds[0].tokens == Ids{1, 2, 3, 4});
  CHECK(ds[1].tokens == Ids{5, 6, 7, 8});
  CHECK(StatusOf(r, "be").queued == 2);

  // A partial batch goes out as soon as there is room: no waiting to fill it.
  CHECK(r.Complete("w1", 1) == Completion::kDeliver);
  CHECK(r.Complete("w1", 2) == Completion::kDeliver);
  CHECK(r.Complete("w1", 3) == Completion::kDeliver);
  ds = r.TakeDispatches(t0);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].tokens == Ids{9, 10});
}

TEST_CASE("Work goes to the least-loaded replica", "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({.max_concurrent_queries = 4}));
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  for (uint64_t t = 1; t <= 3; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0).ok());
  CHECK(TokensTo(r.TakeDispatches(t0), "w1") == Ids{1, 2, 3});

  // w1 holds 3 (with room for 1 more); an idle w2 arrives.
  REQUIRE(r.AddReplica("w2", "be", 0).ok());
  for (uint64_t t = 4; t <= 6; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0).ok());
  std::vector<Dispatch> ds = r.TakeDispatches(t0);
  CHECK(TokensTo(ds, "w2") == Ids{4, 5, 6});
  CHECK(TokensTo(ds, "w1").empty());

  // Now 3 and 3: the next two go one to each.
  REQUIRE(r.Admit(7, "ep", "", 0, t0).ok());
  REQUIRE(r.Admit(8, "ep", "", 0, t0).ok());
  ds = r.TakeDispatches(t0);
  CHECK(TokensTo(ds, "w1").size() == 1);
  CHECK(TokensTo(ds, "w2").size() == 1);
  CHECK(StatusOf(r, "be").in_flight == 8);
}

TEST_CASE("Requests queued together reach each replica as one run of consecutive requests",
          "[broker]") {
  // Each replica gets as many as one batch at a time to the least loaded
  // would give it, but consecutive ones: requests that came in one client
  // message then leave in one slice of its payload frame.
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({.max_concurrent_queries = 100}));
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  REQUIRE(r.AddReplica("w2", "be", 0).ok());
  for (uint64_t t = 1; t <= 10; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0).ok());
  std::vector<Dispatch> ds = r.TakeDispatches(t0);
  CHECK(ds.size() == 10);  // max_batch_size 1: one handler batch per request
  CHECK(TokensTo(ds, "w1") == Ids{1, 2, 3, 4, 5});
  CHECK(TokensTo(ds, "w2") == Ids{6, 7, 8, 9, 10});

  // Uneven loads: w1 holds 5 more than w2 after w2 finishes its 5. The
  // less loaded catches up first, then the rest is shared.
  for (uint64_t t = 6; t <= 10; ++t) REQUIRE(r.Complete("w2", t) == Completion::kDeliver);
  for (uint64_t t = 11; t <= 17; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0).ok());
  ds = r.TakeDispatches(t0);
  CHECK(TokensTo(ds, "w2") == Ids{11, 12, 13, 14, 15, 16});
  CHECK(TokensTo(ds, "w1") == Ids{17});
  CHECK(StatusOf(r, "be").in_flight == 12);
}

TEST_CASE("Runs keep max_batch_size and each replica's room", "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  // max_concurrent_queries 8 each; 18 queued: 4 to w1, 4 to w2, 4 to w1,
  // 4 to w2, two left for lack of room.
  r.ApplyConfig(OneBackend({.max_batch_size = 4, .max_concurrent_queries = 8}));
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  REQUIRE(r.AddReplica("w2", "be", 0).ok());
  for (uint64_t t = 1; t <= 18; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0).ok());
  std::vector<Dispatch> ds = r.TakeDispatches(t0);
  REQUIRE(ds.size() == 4);
  CHECK(ds[0].replica == "w1");
  CHECK(ds[0].tokens == Ids{1, 2, 3, 4});
  CHECK(ds[1].replica == "w1");
  CHECK(ds[1].tokens == Ids{5, 6, 7, 8});
  CHECK(ds[2].replica == "w2");
  CHECK(ds[2].tokens == Ids{9, 10, 11, 12});
  CHECK(ds[3].replica == "w2");
  CHECK(ds[3].tokens == Ids{13, 14, 15, 16});
  CHECK(StatusOf(r, "be").queued == 2);
  CHECK(StatusOf(r, "be").in_flight == 16);
}

TEST_CASE("Among many replicas work spreads evenly and follows completions and drains",
          "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({.max_concurrent_queries = 2}));
  for (int i = 0; i < 100; ++i) REQUIRE(r.AddReplica("w" + std::to_string(i), "be", 0).ok());
  // 150 calls on 100 replicas of room 2: each gets one before any gets two.
  for (uint64_t t = 1; t <= 150; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0).ok());
  std::map<std::string, std::vector<uint64_t>> held;
  for (const Dispatch& d : r.TakeDispatches(t0)) {
    for (uint64_t t : d.tokens) held[d.replica].push_back(t);
  }
  REQUIRE(held.size() == 100);
  size_t twos = 0;
  for (const auto& [id, tokens] : held) {
    CHECK(tokens.size() <= 2);
    twos += tokens.size() == 2;
  }
  CHECK(twos == 50);
  // A replica holding two finishes both: it is now the least loaded.
  auto full =
      std::find_if(held.begin(), held.end(), [](const auto& h) { return h.second.size() == 2; });
  REQUIRE(full != held.end());
  const std::string emptied = full->first;
  for (uint64_t t : full->second) CHECK(r.Complete(emptied, t) == Completion::kDeliver);
  REQUIRE(r.Admit(1000, "ep", "", 0, t0).ok());
  CHECK(TokensTo(r.TakeDispatches(t0), emptied) == Ids{1000});
  // Draining, it gets nothing more; the others take the rest until full.
  r.StartDrain(emptied);
  for (uint64_t t = 1001; t <= 1100; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0).ok());
  std::vector<Dispatch> ds = r.TakeDispatches(t0);
  CHECK(TokensTo(ds, emptied).empty());
  CHECK(Tokens(ds).size() == 50);  // the 50 replicas that held one
  CHECK(StatusOf(r, "be").in_flight == 150 - 2 + 1 + 50);
}

TEST_CASE("max_queued_requests bounds the queue: OVERLOADED and the queue does not grow",
          "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({.max_concurrent_queries = 1, .max_queued_requests = 3}));
  for (uint64_t t = 1; t <= 3; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0).ok());
  zserve::Status s = r.Admit(4, "ep", "", 0, t0);
  CHECK(s.code() == StatusCode::kOverloaded);
  CHECK_THAT(s.message(), Contains("be"));
  CHECK(StatusOf(r, "be").queued == 3);
  CHECK(r.live_tokens() == 3);
  CHECK_FALSE(r.Deadline(4).has_value());

  // Once one leaves the queue there is room for one more.
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  CHECK(Tokens(r.TakeDispatches(t0)) == Ids{1});
  CHECK(r.Admit(5, "ep", "", 0, t0).ok());
  CHECK(r.Admit(6, "ep", "", 0, t0).code() == StatusCode::kOverloaded);
  CHECK(StatusOf(r, "be").queued == 3);
}

TEST_CASE("max_total_queued bounds the broker across backends", "[broker]") {
  RouterOptions o = Seeded();
  o.max_total_queued = 2;
  Router r(o);
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({}));
  REQUIRE(r.Admit(1, "ep", "", 0, t0).ok());
  REQUIRE(r.Admit(2, "ep", "", 0, t0).ok());
  CHECK(r.Admit(3, "ep", "", 0, t0).code() == StatusCode::kOverloaded);
  CHECK(StatusOf(r, "be").queued == 2);
}

TEST_CASE("A queued token past its deadline is expired once and never dispatched", "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({}));
  REQUIRE(r.Admit(1, "ep", "", 100, t0).ok());
  REQUIRE(r.Admit(2, "ep", "", 500, t0).ok());

  CHECK(r.Expire(t0 + milliseconds(99)).empty());
  CHECK(r.Expire(t0 + milliseconds(100)) == Ids{1});
  CHECK(r.Expire(t0 + milliseconds(100)).empty());
  CHECK(r.Expire(t0 + milliseconds(499)).empty());
  CHECK(StatusOf(r, "be").queued == 1);
  CHECK_FALSE(r.Deadline(1).has_value());

  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  CHECK(Tokens(r.TakeDispatches(t0)) == Ids{2});
  CHECK(r.Complete("w1", 1) == Completion::kUnknown);
  CHECK(r.Complete("w1", 2) == Completion::kDeliver);
  CHECK(r.live_tokens() == 0);
}

TEST_CASE("An in-flight token past its deadline keeps its slot until the late reply", "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({.max_concurrent_queries = 1}));
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  REQUIRE(r.Admit(1, "ep", "", 100, t0).ok());
  REQUIRE(r.Admit(2, "ep", "", 5000, t0).ok());
  CHECK(Tokens(r.TakeDispatches(t0)) == Ids{1});

  CHECK(r.Expire(t0 + milliseconds(150)) == Ids{1});
  CHECK(r.Expire(t0 + milliseconds(200)).empty());
  // The replica is still working on 1: its slot stays taken.
  CHECK(r.TakeDispatches(t0).empty());
  CHECK(StatusOf(r, "be").in_flight == 1);

  CHECK(r.Complete("w1", 1) == Completion::kLate);
  CHECK(StatusOf(r, "be").in_flight == 0);  // the late reply freed the slot
  CHECK(Tokens(r.TakeDispatches(t0)) == Ids{2});
  CHECK(StatusOf(r, "be").in_flight == 1);
  CHECK(r.Complete("w1", 1) == Completion::kUnknown);
}

TEST_CASE("Complete with a wrong replica or an unknown token is kUnknown", "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({.max_concurrent_queries = 1}));
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  REQUIRE(r.AddReplica("w2", "be", 0).ok());
  REQUIRE(r.Admit(1, "ep", "", 0, t0).ok());
  std::vector<Dispatch> ds = r.TakeDispatches(t0);
  REQUIRE(ds.size() == 1);
  const std::string holder = ds[0].replica;
  const std::string other = holder == "w1" ? "w2" : "w1";
  REQUIRE(r.Admit(2, "ep", "", 0, t0).ok());
  REQUIRE(Tokens(r.TakeDispatches(t0)) == Ids{2});
  REQUIRE(r.Admit(3, "ep", "", 0, t0).ok());  // stays queued: both replicas full

  CHECK(r.Complete(other, 1) == Completion::kUnknown);
  CHECK(r.Complete(holder, 999) == Completion::kUnknown);
  CHECK(r.Complete("nobody", 1) == Completion::kUnknown);
  CHECK(r.Complete(holder, 3) == Completion::kUnknown);  // queued, not in flight
  // None of those freed a slot or lost the token.
  CHECK(StatusOf(r, "be").in_flight == 2);
  CHECK(r.TakeDispatches(t0).empty());
  CHECK(r.Complete(holder, 1) == Completion::kDeliver);
  CHECK(TokensTo(r.TakeDispatches(t0), holder) == Ids{3});
}

TEST_CASE("A lost replica's tokens are retried elsewhere and then failed", "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({.max_concurrent_queries = 2, .retry_on_replica_failure = 1}));
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  REQUIRE(r.Admit(1, "ep", "", 0, t0).ok());
  REQUIRE(r.Admit(2, "ep", "", 0, t0).ok());
  REQUIRE(Tokens(r.TakeDispatches(t0)) == Ids{1, 2});
  REQUIRE(r.Admit(3, "ep", "", 0, t0).ok());  // queued behind them
  REQUIRE(r.TakeDispatches(t0).empty());

  Orphans first = r.RemoveReplica("w1");
  std::sort(first.requeued.begin(), first.requeued.end());
  CHECK(first.requeued == Ids{1, 2});
  CHECK(first.failed.empty());
  CHECK_FALSE(r.HasReplica("w1"));
  CHECK(StatusOf(r, "be").replicas == 0);
  CHECK(StatusOf(r, "be").queued == 3);
  CHECK(StatusOf(r, "be").in_flight == 0);
  CHECK(r.Complete("w1", 1) == Completion::kUnknown);  // a reply from the dead

  // The retries go first, oldest first.
  REQUIRE(r.AddReplica("w2", "be", 0).ok());
  CHECK(TokensTo(r.TakeDispatches(t0), "w2") == Ids{1, 2});

  // A second loss of the same tokens: no retry left.
  Orphans second = r.RemoveReplica("w2");
  std::sort(second.failed.begin(), second.failed.end());
  CHECK(second.requeued.empty());
  CHECK(second.failed == Ids{1, 2});
  CHECK_FALSE(r.Deadline(1).has_value());
  CHECK_FALSE(r.Deadline(2).has_value());
  CHECK(r.live_tokens() == 1);  // token 3, still queued

  // Token 3 never dispatched before: it gets its own retry.
  REQUIRE(r.AddReplica("w3", "be", 0).ok());
  CHECK(Tokens(r.TakeDispatches(t0)) == Ids{3});
  Orphans third = r.RemoveReplica("w3");
  CHECK(third.requeued == Ids{3});
}

TEST_CASE("Without a retry budget a lost replica's tokens fail at once", "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({.retry_on_replica_failure = 0}));
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  REQUIRE(r.Admit(1, "ep", "", 0, t0).ok());
  REQUIRE(Tokens(r.TakeDispatches(t0)) == Ids{1});
  Orphans o = r.RemoveReplica("w1");
  CHECK(o.requeued.empty());
  CHECK(o.failed == Ids{1});
  CHECK(r.live_tokens() == 0);
  CHECK_FALSE(r.NextDeadline().has_value());
}

TEST_CASE("A lost replica's already-expired tokens are neither retried nor failed", "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({}));
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  REQUIRE(r.Admit(1, "ep", "", 100, t0).ok());
  REQUIRE(Tokens(r.TakeDispatches(t0)) == Ids{1});
  REQUIRE(r.Expire(t0 + milliseconds(100)) == Ids{1});
  Orphans o = r.RemoveReplica("w1");
  CHECK(o.requeued.empty());
  CHECK(o.failed.empty());
  CHECK(r.live_tokens() == 0);
}

TEST_CASE("A draining replica gets no new work and is drained when it holds nothing", "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({.max_concurrent_queries = 4}));
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  REQUIRE(r.Admit(1, "ep", "", 0, t0).ok());
  REQUIRE(r.Admit(2, "ep", "", 0, t0).ok());
  REQUIRE(Tokens(r.TakeDispatches(t0)) == Ids{1, 2});

  CHECK_FALSE(r.Drained("w1"));
  CHECK_FALSE(r.StartDrain("w1"));
  CHECK_FALSE(r.Drained("w1"));
  REQUIRE(r.Admit(3, "ep", "", 0, t0).ok());
  CHECK(r.TakeDispatches(t0).empty());  // w1 has room, but is draining

  CHECK(r.Complete("w1", 1) == Completion::kDeliver);
  CHECK(r.TakeDispatches(t0).empty());
  CHECK_FALSE(r.Drained("w1"));
  CHECK(r.Complete("w1", 2) == Completion::kDeliver);
  CHECK(r.Drained("w1"));
  CHECK(r.TakeDispatches(t0).empty());

  REQUIRE(r.AddReplica("w2", "be", 0).ok());
  std::vector<Dispatch> ds = r.TakeDispatches(t0);
  CHECK(TokensTo(ds, "w2") == Ids{3});
  CHECK(TokensTo(ds, "w1").empty());
}

TEST_CASE("Calls queued on a backend that left the config are stranded once no replica takes work",
          "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  sc::ConfigState two = OneBackend({.max_concurrent_queries = 1});
  two.backends["other"] = MakeBackend("other", {});
  r.ApplyConfig(two);
  REQUIRE(r.AddReplica("w1", "be", 1).ok());  // its own capacity: one at a time
  for (uint64_t t = 1; t <= 4; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0).ok());
  REQUIRE(Tokens(r.TakeDispatches(t0)) == Ids{1});  // 2, 3, 4 wait
  CHECK(r.TakeStranded().empty());                  // configured: they wait for w1

  // The traffic moves to "other" and "be" is deleted: w1 still serves it.
  sc::ConfigState moved = two;
  moved.backends.erase("be");
  moved.endpoints["ep"].traffic = {{"other", 1.0}};
  REQUIRE(sc::Validate(moved).ok());
  r.ApplyConfig(moved);
  CHECK(r.TakeStranded().empty());
  CHECK(r.Complete("w1", 1) == Completion::kDeliver);
  REQUIRE(Tokens(r.TakeDispatches(t0)) == Ids{2});

  // w1 drains: nothing will take 3 and 4 any more.
  CHECK_FALSE(r.StartDrain("w1"));
  std::vector<zserve::broker::Stranded> stranded = r.TakeStranded();
  std::sort(stranded.begin(), stranded.end(),
            [](const auto& a, const auto& b) { return a.token < b.token; });
  CHECK(stranded == std::vector<zserve::broker::Stranded>{{3, "be", false}, {4, "be", false}});
  CHECK(r.TakeStranded().empty());  // each once
  CHECK(StatusOf(r, "be").queued == 0);
  CHECK(r.Complete("w1", 2) == Completion::kDeliver);  // in flight: still its own
  CHECK(r.Drained("w1"));
  CHECK(r.Expire(t0 + milliseconds(5000)).empty());  // 3 and 4 are not answered again
  CHECK(r.live_tokens() == 0);
}

TEST_CASE("A backend that left the config drains under its last settings and is then forgotten",
          "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  sc::ConfigState two = OneBackend({.max_concurrent_queries = 2});
  two.backends["other"] = MakeBackend("other", {});
  r.ApplyConfig(two);
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  for (uint64_t t = 1; t <= 5; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0).ok());
  REQUIRE(Tokens(r.TakeDispatches(t0)) == Ids{1, 2});

  sc::ConfigState moved = two;
  moved.backends.erase("be");
  moved.endpoints["ep"].traffic = {{"other", 1.0}};
  REQUIRE(sc::Validate(moved).ok());
  r.ApplyConfig(moved);
  // Still two at a time (not the default 8), with its other settings.
  CHECK(StatusOf(r, "be").max_concurrent_queries == 2);
  CHECK_FALSE(StatusOf(r, "be").configured);
  CHECK(r.TakeDispatches(t0).empty());
  CHECK(r.Complete("w1", 1) == Completion::kDeliver);
  REQUIRE(Tokens(r.TakeDispatches(t0)) == Ids{3});
  for (uint64_t t : {2, 3}) CHECK(r.Complete("w1", t) == Completion::kDeliver);
  REQUIRE(Tokens(r.TakeDispatches(t0)) == Ids{4, 5});
  for (uint64_t t : {4, 5}) CHECK(r.Complete("w1", t) == Completion::kDeliver);
  CHECK(r.TakeStranded().empty());
  CHECK(StatusOf(r, "be").replicas == 1);  // its replica still there: listed

  // Its replica goes: nothing is left of it, and it leaves Backends().
  r.RemoveReplica("w1");
  CHECK(r.TakeStranded().empty());
  for (const BackendStatus& b : r.Backends()) CHECK(b.name != "be");
  CHECK(StatusOf(r, "other").configured);
}

TEST_CASE("Shadow copies never take the queue room of calls", "[broker]") {
  RouterOptions o = Seeded();
  o.max_total_queued = 5;
  Router r(o);
  const zserve::TimePoint t0 = zserve::Clock::now();
  sc::ConfigState s = OneBackend({});
  s.backends["sx"] = MakeBackend("sx", {.max_queued_requests = 3});
  s.endpoints["ep"].shadow = {{"sx", 1.0}};
  sc::EndpointConfig ex;
  ex.name = "ex";
  ex.traffic = {{"sx", 1.0}};
  ex.timeout_ms = 1000;
  s.endpoints["ex"] = ex;
  REQUIRE(sc::Validate(s).ok());
  r.ApplyConfig(s);
  // Neither backend has a replica: three calls to ep queue, each with its
  // shadow copy queued on sx (6 tokens, above both bounds).
  uint64_t token = 1;
  for (int i = 0; i < 3; ++i) {
    std::vector<std::string> shadows;
    REQUIRE(r.Admit(token++, "ep", "", 0, t0, nullptr, 0, &shadows).ok());
    REQUIRE(shadows == std::vector<std::string>{"sx"});
    if (i < 2) REQUIRE(r.AdmitShadow(token++, "sx", t0 + milliseconds(1000), t0).ok());
  }
  // A third copy finds the broker's 5 queued and is dropped, as copies are.
  CHECK(r.AdmitShadow(token++, "sx", t0 + milliseconds(1000), t0).code() ==
        StatusCode::kOverloaded);
  // Calls to sx itself still have its 3 places, and the broker its 5.
  for (int i = 0; i < 2; ++i) CHECK(r.Admit(token++, "ex", "", 0, t0).ok());
  zserve::Status full = r.Admit(token++, "ex", "", 0, t0);
  CHECK(full.code() == StatusCode::kOverloaded);
  CHECK_THAT(full.message(), Contains("the broker has 5 requests queued"));
  CHECK(StatusOf(r, "sx").queued == 4);  // 2 copies and 2 calls
}

TEST_CASE("StartDrain of an idle replica is drained at once but unknown replicas are not",
          "[broker]") {
  Router r(Seeded());
  r.ApplyConfig(OneBackend({}));
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  CHECK(r.StartDrain("w1"));
  CHECK(r.Drained("w1"));
  CHECK_FALSE(r.StartDrain("ghost"));
  CHECK_FALSE(r.Drained("ghost"));
}

TEST_CASE("NextDeadline is the earliest pending deadline", "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({}));
  CHECK_FALSE(r.NextDeadline().has_value());
  REQUIRE(r.Admit(1, "ep", "", 500, t0).ok());
  REQUIRE(r.Admit(2, "ep", "", 100, t0 + milliseconds(50)).ok());
  REQUIRE(r.Admit(3, "ep", "", 300, t0).ok());
  REQUIRE(r.Admit(4, "ep", "", 0, t0).ok());  // the endpoint's 1000 ms

  CHECK(r.NextDeadline() == t0 + milliseconds(150));
  CHECK(r.Deadline(4) == t0 + milliseconds(1000));

  CHECK(r.Expire(t0 + milliseconds(150)) == Ids{2});
  CHECK(r.NextDeadline() == t0 + milliseconds(300));

  // A completed token's deadline is no longer pending.
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  REQUIRE(Tokens(r.TakeDispatches(t0)) == Ids{1, 3, 4});
  CHECK(r.Complete("w1", 3) == Completion::kDeliver);
  CHECK(r.NextDeadline() == t0 + milliseconds(500));

  // An expired in-flight token's deadline is no longer pending either.
  CHECK(r.Expire(t0 + milliseconds(500)) == Ids{1});
  CHECK(r.NextDeadline() == t0 + milliseconds(1000));
  CHECK(r.Complete("w1", 4) == Completion::kDeliver);
  CHECK_FALSE(r.NextDeadline().has_value());
}

TEST_CASE("Backends reports replicas and queued and in-flight per backend", "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  sc::ConfigState s;
  s.backends["a"] = MakeBackend("a", {.max_concurrent_queries = 2});
  s.backends["b"] = MakeBackend("b", {.max_batch_size = 16});
  sc::EndpointConfig ea;
  ea.name = "to_a";
  ea.traffic = {{"a", 1.0}};
  s.endpoints["to_a"] = ea;
  sc::EndpointConfig eb;
  eb.name = "to_b";
  eb.traffic = {{"b", 1.0}};
  s.endpoints["to_b"] = eb;
  REQUIRE(sc::Validate(s).ok());
  r.ApplyConfig(s);

  REQUIRE(r.AddReplica("a1", "a", 0).ok());
  REQUIRE(r.AddReplica("a2", "a", 0).ok());
  for (uint64_t t = 1; t <= 5; ++t) REQUIRE(r.Admit(t, "to_a", "", 0, t0).ok());
  for (uint64_t t = 6; t <= 8; ++t) REQUIRE(r.Admit(t, "to_b", "", 0, t0).ok());
  (void)r.TakeDispatches(t0);
  REQUIRE(r.AddReplica("x1", "unconfigured", 0).ok());

  std::vector<BackendStatus> all = r.Backends();
  REQUIRE(all.size() == 3);
  CHECK(all[0].name == "a");
  CHECK(all[0].replicas == 2);
  CHECK(all[0].in_flight == 4);
  CHECK(all[0].queued == 1);
  CHECK(all[0].max_concurrent_queries == 2);
  CHECK(all[0].configured);
  CHECK(all[1].name == "b");
  CHECK(all[1].replicas == 0);
  CHECK(all[1].in_flight == 0);
  CHECK(all[1].queued == 3);
  CHECK(all[1].max_concurrent_queries == 32);
  CHECK(all[1].configured);
  CHECK(all[2].name == "unconfigured");
  CHECK(all[2].replicas == 1);
  CHECK_FALSE(all[2].configured);
}

TEST_CASE("A shard key sends every request of that key to one backend", "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  sc::ConfigState s;
  s.backends["a"] = MakeBackend("a", {});
  s.backends["b"] = MakeBackend("b", {});
  sc::EndpointConfig e;
  e.name = "ep";
  e.traffic = {{"a", 0.5}, {"b", 0.5}};
  s.endpoints["ep"] = e;
  r.ApplyConfig(s);

  std::string first;
  REQUIRE(r.Admit(1, "ep", "user-7", 0, t0, &first).ok());
  for (uint64_t t = 2; t <= 50; ++t) {
    std::string backend;
    REQUIRE(r.Admit(t, "ep", "user-7", 0, t0, &backend).ok());
    REQUIRE(backend == first);
  }
  // Without a key both backends get some of 200 requests.
  std::vector<std::string> seen;
  for (uint64_t t = 100; t < 300; ++t) {
    std::string backend;
    REQUIRE(r.Admit(t, "ep", "", 0, t0, &backend).ok());
    seen.push_back(backend);
  }
  CHECK(std::count(seen.begin(), seen.end(), "a") > 0);
  CHECK(std::count(seen.begin(), seen.end(), "b") > 0);
}

TEST_CASE("Keyed calls queued before any replica keep to one replica once replicas come",
          "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({.max_concurrent_queries = 100}));
  // No replica yet: 8 calls with one key and 8 without wait.
  for (uint64_t t = 1; t <= 16; ++t) {
    REQUIRE(r.Admit(t, "ep", t % 2 == 1 ? "k5" : "", 0, t0).ok());
  }
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  REQUIRE(r.AddReplica("w2", "be", 0).ok());
  std::vector<Dispatch> ds = r.TakeDispatches(t0);
  REQUIRE(Tokens(ds).size() == 16);
  // Every keyed call on one replica, in order; the others anywhere.
  const Ids keyed = {1, 3, 5, 7, 9, 11, 13, 15};
  auto only_keyed = [&keyed](Ids got) {
    std::erase_if(got, [&keyed](uint64_t t) {
      return std::find(keyed.begin(), keyed.end(), t) == keyed.end();
    });
    return got;
  };
  Ids on_w1 = only_keyed(TokensTo(ds, "w1")), on_w2 = only_keyed(TokensTo(ds, "w2"));
  CHECK(((on_w1 == keyed && on_w2.empty()) || (on_w2 == keyed && on_w1.empty())));
}

TEST_CASE("Keyed calls queued before any replica keep their arrival order across priorities",
          "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({.max_concurrent_queries = 1}));
  // normal, high, normal, high: all of one key, before any replica.
  for (uint64_t t = 1; t <= 4; ++t) {
    REQUIRE(r.Admit(t, "ep", "k", 0, t0, nullptr, t % 2 == 0 ? 1 : 0).ok());
  }
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  Ids order;
  for (int i = 0; i < 4; ++i) {
    Ids one = Tokens(r.TakeDispatches(t0));
    REQUIRE(one.size() == 1);
    order.push_back(one[0]);
    CHECK(r.Complete("w1", one[0]) == Completion::kDeliver);
  }
  CHECK(order == Ids{1, 2, 3, 4});  // as with the replica there all along
}

TEST_CASE("A new config raises capacity for what is already queued", "[broker]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({.max_concurrent_queries = 1}));
  REQUIRE(r.AddReplica("w1", "be", 0).ok());
  for (uint64_t t = 1; t <= 3; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0).ok());
  REQUIRE(Tokens(r.TakeDispatches(t0)) == Ids{1});
  r.ApplyConfig(OneBackend({.max_concurrent_queries = 3}));
  CHECK(Tokens(r.TakeDispatches(t0)) == Ids{2, 3});
  CHECK(StatusOf(r, "be").max_concurrent_queries == 3);
}

TEST_CASE("A replica of capacity 1 gets batches of one even when max_batch_size is larger",
          "[broker][mdp]") {
  // An MDP worker is registered with capacity 1: one REQUEST at a time.
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({.max_batch_size = 4}));
  REQUIRE(r.AddReplica("mdp", "be", 1).ok());
  for (uint64_t t = 1; t <= 6; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0).ok());
  for (uint64_t t = 1; t <= 6; ++t) {
    std::vector<Dispatch> ds = r.TakeDispatches(t0);
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].replica == "mdp");
    CHECK(ds[0].tokens == Ids{t});
    CHECK(r.TakeDispatches(t0).empty());
    CHECK(r.Complete("mdp", t) == Completion::kDeliver);
  }
}

TEST_CASE("A capacity-1 replica beside a batching one takes one and the other takes batches",
          "[broker][mdp]") {
  Router r(Seeded());
  const zserve::TimePoint t0 = zserve::Clock::now();
  r.ApplyConfig(OneBackend({.max_batch_size = 4}));
  REQUIRE(r.AddReplica("native", "be", 0).ok());
  REQUIRE(r.AddReplica("mdp", "be", 1).ok());
  for (uint64_t t = 1; t <= 12; ++t) REQUIRE(r.Admit(t, "ep", "", 0, t0).ok());
  std::vector<Dispatch> ds = r.TakeDispatches(t0);
  CHECK(TokensTo(ds, "mdp").size() == 1);
  for (const Dispatch& d : ds) {
    if (d.replica == "native") CHECK(d.tokens.size() <= 4);
  }
  CHECK(StatusOf(r, "be").in_flight == 9);  // 8 (2 x batch 4) + 1
}

TEST_CASE("EndpointServed needs the endpoint and a live replica behind its traffic",
          "[broker][mdp]") {
  Router r(Seeded());
  CHECK_FALSE(r.EndpointServed("ep"));
  r.ApplyConfig(OneBackend({}));
  CHECK_FALSE(r.EndpointServed("ep"));  // no replica yet
  CHECK_FALSE(r.EndpointServed("be"));  // a backend is not an endpoint
  REQUIRE(r.AddReplica("w1", "be", 1).ok());
  CHECK(r.EndpointServed("ep"));
  CHECK_FALSE(r.EndpointServed("nope"));
  CHECK(r.StartDrain("w1"));
  CHECK_FALSE(r.EndpointServed("ep"));  // draining takes no work
  (void)r.RemoveReplica("w1");
  REQUIRE(r.AddReplica("other", "elsewhere", 1).ok());
  CHECK_FALSE(r.EndpointServed("ep"));  // a replica of a backend the traffic does not reach
}
