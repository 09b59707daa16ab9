// The scale benchmark in smoke mode: bench/scale.sh starts a controller, a
// broker and the simulated replicas itself, loads 1 and 10 replicas and 1 and
// 100 endpoints for a second each, queues 2000 requests at a backend with
// no replica and times the router alone at 1 and 10 replicas. Every run must
// report replies and no errors, the queue run a positive memory cost per
// request and the router runs a time per request. No speed is asserted.
#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>

#include "tests/e2e/process.h"

namespace zserve::testing {
namespace {

TEST_CASE("smoke of the scale benchmark reports every run without errors", "[bench]") {
  std::string dir = MakeTempDir();
  Process run("/bin/bash",
              {SCALE_RUN_SCRIPT, "--smoke", "--build-dir", SCALE_BUILD_DIR, "--out", dir},
              dir + "/run.log");
  std::optional<int> code = run.Wait(std::chrono::seconds(120));
  std::ifstream log(dir + "/run.log");
  std::string log_text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  INFO("scale.sh stderr:\n" << log_text << "\nstdout:\n" << run.output());
  REQUIRE(code.has_value());
  REQUIRE(*code == 0);

  std::set<std::string> replicas, endpoints;
  std::set<int> router_replicas;
  int queue_runs = 0;
  std::ifstream in(dir + "/scale.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    INFO(line);
    REQUIRE(j.is_object());
    if (j.value("kind", "") == "queue_memory") {
      ++queue_runs;
      CHECK(j["queued"].get<int64_t>() == 2000);
      CHECK(j["bytes_per_queued_request"].get<double>() > 0);
      continue;
    }
    if (j.value("kind", "") == "router") {
      router_replicas.insert(j["replicas"].get<int>());
      CHECK(j["requests"].get<uint64_t>() == 100'000);
      CHECK(j["dispatches"].get<uint64_t>() > 0);
      CHECK(j["ns_per_request"].get<double>() > 0);
      continue;
    }
    CHECK(j["throughput_rps"].get<double>() > 0);
    CHECK(j["requests"].get<uint64_t>() > 0);
    CHECK(j["errors"].empty());
    CHECK(j["error_count"].get<uint64_t>() == 0);
    CHECK(j["broker_cpu_us_per_request"].is_number());
    CHECK(j["broker_rss_kb"].get<int64_t>() > 0);
    std::string kind = j["tags"]["run"];
    if (kind == "replicas") replicas.insert(j["tags"]["replicas"].get<std::string>());
    if (kind == "endpoints") endpoints.insert(j["tags"]["endpoints"].get<std::string>());
  }
  CHECK(replicas == std::set<std::string>{"1", "10"});
  CHECK(endpoints == std::set<std::string>{"1", "100"});
  CHECK(queue_runs == 1);
  CHECK(router_replicas == std::set<int>{1, 10});
  // The table a user reads.
  CHECK(run.output().find("| 1 (1000) |") != std::string::npos);
  CHECK(run.output().find("| 10 (100) |") != std::string::npos);
  CHECK(run.output().find("bytes per queued request") != std::string::npos);
  CHECK(run.output().find("| router ns per request |") != std::string::npos);
}

}  // namespace
}  // namespace zserve::testing
