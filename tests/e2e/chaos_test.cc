// The chaos test: a `zserve up` stack with 2 backends x 3 replicas under
// load from several clients while workers are killed with kill -9 every few
// hundred milliseconds, another is sent SIGTERM, and the broker and the
// controller are each killed with kill -9 once (up starts them again). At the
// end every request sent must have exactly one final reply, none later than
// its deadline plus a small bound. Counts are printed.
//
// ZSERVE_CHAOS_SECONDS sets the length (default 6; `make soak` runs 60).
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/stack.h"
#include "tests/e2e/test_client.h"

namespace zserve::testing {
namespace {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

struct Tally {
  uint64_t sent = 0;
  uint64_t answered = 0;
  uint64_t duplicates = 0;
  uint64_t late = 0;  // answered later than deadline + bound
  std::map<std::string, uint64_t> by_type;
};

// One client thread: keeps `inflight` calls going until `stop`, then waits
// for every answer. Each call is tracked by its own id.
void RunClient(const std::string& address, int inflight, std::atomic<bool>& stop, Tally* out) {
  auto client = Connect(address);
  std::vector<int> answers;
  std::vector<SteadyClock::time_point> deadlines;
  const milliseconds timeout(2000), bound(1000);
  std::function<void()> send_one;
  send_one = [&] {
    size_t id = answers.size();
    answers.push_back(0);
    deadlines.push_back(SteadyClock::now() + timeout);
    CallOptions o;
    o.timeout = timeout;
    std::string endpoint = id % 2 ? "alpha" : "beta";
    ++out->sent;
    client->CallAsync(endpoint, "x", o, [&, id](StatusOr<std::string> r) {
      if (++answers[id] > 1) ++out->duplicates;
      ++out->answered;
      if (SteadyClock::now() > deadlines[id] + bound) ++out->late;
      ++out->by_type[std::string(StatusCodeName(r.status().code()))];
      if (!stop.load()) send_one();
    });
  };
  for (int i = 0; i < inflight; ++i) send_one();
  client->Wait();
}

std::map<std::string, pid_t> LatestPids(const std::string& log) {
  std::map<std::string, pid_t> pids;
  std::regex started("started ([a-z0-9-]+) \\(pid ([0-9]+)\\)");
  for (auto it = std::sregex_iterator(log.begin(), log.end(), started);
       it != std::sregex_iterator(); ++it) {
    pids[(*it)[1]] = std::stoi((*it)[2]);
  }
  return pids;
}

TEST_CASE("Chaos: every request gets exactly one reply while processes die", "[e2e][chaos]") {
  int seconds = 6;
  if (const char* s = std::getenv("ZSERVE_CHAOS_SECONDS")) seconds = std::max(1, std::atoi(s));
  Stack stack(R"(
backends:
  alpha: {handler: echo, num_replicas: 3}
  beta: {handler: sleep, num_replicas: 3, max_concurrent_queries: 4}
endpoints:
  alpha: {backend: alpha}
  beta: {backend: beta}
)",
              {"--heartbeat-ms", "100"});
  REQUIRE(stack.ready());
  std::atomic<bool> stop{false};
  std::vector<Tally> tallies(3);
  std::vector<std::thread> clients;
  for (int i = 0; i < 3; ++i) {
    clients.emplace_back(RunClient, stack.client_address(), 20, std::ref(stop), &tallies[i]);
  }
  std::mt19937 rng(12345);
  int kills = 0, terms = 0;
  bool broker_killed = false, controller_killed = false;
  auto start = SteadyClock::now();
  auto end = start + std::chrono::seconds(seconds);
  auto next = start;
  while (SteadyClock::now() < end) {
    // A few hundred milliseconds between blows; the wait is the chaos
    // schedule itself, not synchronisation.
    next += milliseconds(300);
    std::this_thread::sleep_until(next);
    std::map<std::string, pid_t> pids = LatestPids(stack.log());
    std::vector<std::string> workers;
    for (const auto& [name, pid] : pids) {
      if (name != "broker" && name != "controller") workers.push_back(name);
    }
    double progress = std::chrono::duration<double>(SteadyClock::now() - start) /
                      std::chrono::duration<double>(end - start);
    if (!broker_killed && progress > 0.3) {
      kill(pids["broker"], SIGKILL);
      broker_killed = true;
    } else if (!controller_killed && progress > 0.6) {
      kill(pids["controller"], SIGKILL);
      controller_killed = true;
    } else if (terms == 0 && progress > 0.5) {
      kill(pids[workers[rng() % workers.size()]], SIGTERM);
      ++terms;
    } else if (!workers.empty()) {
      kill(pids[workers[rng() % workers.size()]], SIGKILL);
      ++kills;
    }
  }
  stop = true;
  for (std::thread& t : clients) t.join();

  Tally total;
  for (const Tally& t : tallies) {
    total.sent += t.sent;
    total.answered += t.answered;
    total.duplicates += t.duplicates;
    total.late += t.late;
    for (const auto& [type, n] : t.by_type) total.by_type[type] += n;
  }
  std::string counts = "sent " + std::to_string(total.sent) + ", answered " +
                       std::to_string(total.answered) + ", lost " +
                       std::to_string(total.sent - total.answered) + ", duplicates " +
                       std::to_string(total.duplicates) + ", late " + std::to_string(total.late);
  for (const auto& [type, n] : total.by_type) counts += ", " + type + " " + std::to_string(n);
  counts += " (" + std::to_string(kills) + " workers killed with kill -9, " +
            std::to_string(terms) + " sent SIGTERM, broker killed " +
            std::to_string(broker_killed) + "x, controller killed " +
            std::to_string(controller_killed) + "x, " + std::to_string(seconds) + " s)";
  WARN("chaos: " << counts);
  CHECK(total.sent > 0);
  CHECK(total.answered == total.sent);
  CHECK(total.duplicates == 0);
  CHECK(total.late == 0);
  CHECK(total.by_type["OK"] > total.sent / 2);
  CHECK(broker_killed);
  CHECK(controller_killed);
  CHECK(terms == 1);
  // The stack is whole again and serving.
  auto client = Connect(stack);
  WaitForStatus(*client, [](const nlohmann::json& j) {
    return j["backends"]["alpha"]["replicas"] == 3 && j["backends"]["beta"]["replicas"] == 3;
  }, milliseconds(30'000));
  CHECK(client->Call("alpha", "after the storm").ok());
}

}  // namespace
}  // namespace zserve::testing
