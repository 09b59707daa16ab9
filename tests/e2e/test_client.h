// Test support: a client library connection and the broker's STATUS, for
// the end-to-end tests. Include from Catch2 test files only.
#ifndef ZSERVE_TESTS_E2E_TEST_CLIENT_H_
#define ZSERVE_TESTS_E2E_TEST_CLIENT_H_

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "tests/e2e/stack.h"
#include "zserve/client.h"

namespace zserve::testing {

inline std::unique_ptr<Client> Connect(const std::string& broker_address) {
  ClientOptions o;
  o.broker_address = broker_address;
  StatusOr<std::unique_ptr<Client>> c = Client::Create(o);
  REQUIRE(c.ok());
  return std::move(c).value();
}

inline std::unique_ptr<Client> Connect(const Stack& stack) {
  return Connect(stack.client_address());
}

inline nlohmann::json BrokerStatus(Client& client) {
  StatusOr<std::string> s = client.BrokerStatus(std::chrono::milliseconds(2000));
  REQUIRE(s.ok());
  return nlohmann::json::parse(*s);
}

// Polls the broker's STATUS until `done` holds; fails after `limit`. A STATUS
// that goes unanswered (a broker restarting) is asked again, within the same
// limit. A broker with no config yet answers with no backends.
template <typename Pred>
void WaitForStatus(Client& client, Pred done,
                   std::chrono::milliseconds limit = std::chrono::milliseconds(10'000)) {
  auto until = std::chrono::steady_clock::now() + limit;
  std::string last = "no STATUS answered";
  while (true) {
    StatusOr<std::string> s = client.BrokerStatus(std::chrono::milliseconds(1000));
    if (s.ok()) {
      last = *s;
      if (done(nlohmann::json::parse(*s))) return;
    }
    INFO("last STATUS: " << last);
    REQUIRE(std::chrono::steady_clock::now() < until);
  }
}

// Polls the broker's STATUS until it counts `replicas` replicas of `backend`.
inline void WaitForReplicas(Client& client, const std::string& backend, int replicas) {
  WaitForStatus(client, [&backend, replicas](const nlohmann::json& j) {
    return j["backends"].contains(backend) && j["backends"][backend]["replicas"] == replicas;
  });
}

// Polls `done` until it holds or `limit` passes. Each check is a round trip
// to a process (a call, a status, an HTTP query), so the pause between checks
// only keeps the loop from spinning; it orders nothing.
template <typename Fn>
bool Eventually(Fn&& done, std::chrono::milliseconds limit = std::chrono::milliseconds(15'000),
                std::chrono::milliseconds pause = std::chrono::milliseconds(10)) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(pause);
  }
  return done();
}

}  // namespace zserve::testing

#endif  // ZSERVE_TESTS_E2E_TEST_CLIENT_H_
