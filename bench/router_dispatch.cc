// router_dispatch: the broker's routing alone (broker/router.h: admit a
// request, choose a replica, complete it), without sockets or messages,
// against the number of replicas. It keeps --inflight requests in flight over
// R replicas of one backend, each replica with max(1, inflight / R) slots as
// bench/scale.sh does end to end; each round completes the oldest --chunk
// requests in flight (as their replicas would answer), admits as many new
// ones and takes the dispatches (max_batch_size 1: one per request). Prints,
// per R, the router's nanoseconds per request.
//
//   router_dispatch [--replicas 1,10,100,1000,10000] [--inflight 1000]
//                   [--chunk 100] [--requests 2000000] [--json]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "broker/router.h"

namespace {

using zserve::broker::Completion;
using zserve::broker::Dispatch;
using zserve::broker::Router;

constexpr uint32_t kTimeoutMs = 3'600'000;  // nothing expires during a run

struct Row {
  int replicas = 0;
  uint32_t slots_per_replica = 0;
  uint64_t requests = 0;
  uint64_t dispatches = 0;
  double seconds = 0;
  double ns_per_request() const { return seconds * 1e9 / static_cast<double>(requests); }
};

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "router_dispatch: %s\n", what.c_str());
  std::exit(1);
}

Row Measure(int replicas, int inflight, int chunk, uint64_t requests) {
  Row row;
  row.replicas = replicas;
  row.slots_per_replica = static_cast<uint32_t>(std::max(1, inflight / replicas));

  Router router({.seed = 1});
  zserve::schemas::ConfigState state;
  zserve::schemas::BackendConfig& b = state.backends["echo"];
  b.name = "echo";
  b.handler = "echo";
  b.num_replicas = static_cast<uint32_t>(replicas);
  b.max_concurrent_queries = row.slots_per_replica;
  zserve::schemas::EndpointConfig& e = state.endpoints["echo"];
  e.name = "echo";
  e.traffic = {{"echo", 1.0}};
  e.timeout_ms = kTimeoutMs;
  router.ApplyConfig(state);
  std::vector<std::string> names;
  for (int i = 0; i < replicas; ++i) {
    names.push_back("replica-" + std::to_string(i));
    if (zserve::Status s = router.AddReplica(names.back(), "echo", 0); !s.ok()) Fail(s.ToString());
  }

  // The router takes time as an argument: one instant serves the whole run.
  const zserve::TimePoint now = zserve::Clock::now();
  uint64_t next_token = 1;
  std::deque<std::pair<uint32_t, uint64_t>> flying;  // replica index, token; oldest first
  auto admit = [&](int n) {
    for (int i = 0; i < n; ++i) {
      zserve::Status s = router.Admit(next_token++, "echo", "", kTimeoutMs, now);
      if (!s.ok()) Fail("Admit: " + s.ToString());
    }
  };
  auto take = [&]() -> uint64_t {
    std::vector<Dispatch> dispatches = router.TakeDispatches(now);
    for (const Dispatch& d : dispatches) {
      uint32_t index = 0;
      const char* digits = d.replica.data() + sizeof("replica-") - 1;
      std::from_chars(digits, d.replica.data() + d.replica.size(), index);
      for (uint64_t token : d.tokens) flying.emplace_back(index, token);
    }
    uint64_t n = dispatches.size();
    router.Recycle(std::move(dispatches));
    return n;
  };
  auto round = [&]() -> uint64_t {
    for (int i = 0; i < chunk; ++i) {
      auto [index, token] = flying.front();
      flying.pop_front();
      if (router.Complete(names[index], token) != Completion::kDeliver)
        Fail("Complete: not in flight");
    }
    admit(chunk);
    return take();
  };

  admit(inflight);
  take();
  if (flying.size() != static_cast<size_t>(inflight))
    Fail("the replicas did not take every request");
  for (uint64_t done = 0; done < requests / 10; done += chunk) round();  // warm-up

  const auto start = std::chrono::steady_clock::now();
  while (row.requests < requests) {
    row.dispatches += round();
    row.requests += static_cast<uint64_t>(chunk);
  }
  row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (flying.size() != static_cast<size_t>(inflight)) Fail("requests were lost in flight");
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> replicas = {1, 10, 100, 1000, 10000};
  int inflight = 1000;
  int chunk = 100;
  uint64_t requests = 2'000'000;
  bool json = false;
  CLI::App app{"The broker's routing alone against the number of replicas (no sockets)"};
  app.add_option("--replicas", replicas, "Replica counts (list)")
      ->delimiter(',')
      ->check(CLI::Range(1, 1'000'000))
      ->capture_default_str();
  app.add_option("--inflight", inflight, "Requests kept in flight")
      ->check(CLI::Range(1, 10'000'000))
      ->capture_default_str();
  app.add_option("--chunk", chunk, "Requests completed and admitted per round")
      ->check(CLI::Range(1, 10'000'000))
      ->capture_default_str();
  app.add_option("--requests", requests, "Requests measured per replica count")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1'000'000'000}))
      ->capture_default_str();
  app.add_flag("--json", json, "One JSON object per replica count instead of a table");
  CLI11_PARSE(app, argc, argv);
  if (chunk > inflight) {
    std::fprintf(stderr, "router_dispatch: --chunk (%d) must not exceed --inflight (%d)\n", chunk,
                 inflight);
    return 2;
  }

  if (!json) {
    std::printf("| replicas (slots each) | ns per request | × the first row |\n|---|---|---|\n");
  }
  double first = 0;
  for (int r : replicas) {
    Row row = Measure(r, inflight, chunk, requests);
    if (first == 0) first = row.ns_per_request();
    if (json) {
      nlohmann::json j = {{"kind", "router"},
                          {"replicas", row.replicas},
                          {"slots_per_replica", row.slots_per_replica},
                          {"inflight", inflight},
                          {"requests", row.requests},
                          {"dispatches", row.dispatches},
                          {"seconds", row.seconds},
                          {"ns_per_request", row.ns_per_request()}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("| %d (%u) | %.0f | %.2f |\n", row.replicas, row.slots_per_replica,
                  row.ns_per_request(), row.ns_per_request() / first);
    }
    std::fflush(stdout);
  }
  return 0;
}
