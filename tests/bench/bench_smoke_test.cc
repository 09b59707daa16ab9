// The benchmark comparison in smoke mode: bench/run.sh starts zserve, NATS
// (when built), the raw ZeroMQ echo server and the raw ZeroMQ forwarder
// itself, runs each for half a
// second closed and open loop, and every run must have produced one JSON line
// with replies and no errors. No speed is asserted.
#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "tests/e2e/process.h"

namespace zserve::testing {
namespace {

std::vector<nlohmann::json> ReadResults(const std::string& path) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line, nullptr, false));
  return lines;
}

TEST_CASE("smoke of the comparison runs every system without errors", "[bench]") {
  std::string dir = MakeTempDir();
  Process run("/bin/bash",
              {BENCH_RUN_SCRIPT, "--smoke", "--build-dir", BENCH_BUILD_DIR, "--out", dir},
              dir + "/run.log");
  std::optional<int> code = run.Wait(std::chrono::seconds(120));
  INFO("run.sh stderr:\n" << ReadFile(dir + "/run.log"));
  REQUIRE(code.has_value());
  REQUIRE(*code == 0);

  std::map<std::string, int> runs;  // "system mode" -> count
  for (const nlohmann::json& j : ReadResults(dir + "/results.jsonl")) {
    INFO(j.dump());
    REQUIRE(j.is_object());
    for (const char* key : {"throughput_rps", "p50_us", "p90_us", "p99_us", "p999_us"}) {
      REQUIRE(j[key].is_number());
    }
    REQUIRE(j["errors"].is_object());
    CHECK(j["errors"].empty());
    CHECK(j["throughput_rps"].get<double>() > 0);
    CHECK(j["requests"].get<uint64_t>() > 0);
    CHECK(j.contains("broker_cpu_us_per_request"));
    std::string system = j["system"];
    if (system != "zmq") CHECK(j["broker_cpu_us_per_request"].is_number());
    ++runs[system + " " + j["mode"].get<std::string>()];
  }
  // Closed loop at 1 and 100 in flight, one open-loop rate.
  CHECK(runs["zserve closed"] == 2);
  CHECK(runs["zserve open"] == 1);
  CHECK(runs["zmq closed"] == 2);
  CHECK(runs["zmq open"] == 1);
  CHECK(runs["zmq-forwarder closed"] == 2);
  CHECK(runs["zmq-forwarder open"] == 1);
#ifdef BENCH_HAVE_NATS
  CHECK(runs["nats closed"] == 2);
  CHECK(runs["nats open"] == 1);
#endif
}

TEST_CASE("run.sh refuses a --halt-poll-ns that is not a number before it starts anything",
          "[bench]") {
  std::string dir = MakeTempDir();
  int n = 0;
  for (std::string value : {"", "5x", "-1", "1e5", "010"}) {
    std::string out = dir + "/out-" + std::to_string(++n);
    Process run("/bin/bash",
                {BENCH_RUN_SCRIPT, "--smoke", "--build-dir", BENCH_BUILD_DIR, "--out", out,
                 "--halt-poll-ns", value},
                out + ".log");
    std::optional<int> code = run.Wait(std::chrono::seconds(30));
    std::string err = ReadFile(out + ".log");
    INFO("value '" << value << "', stderr: " << err);
    CHECK(code == std::optional<int>(2));
    CHECK(err.find("--halt-poll-ns needs a number of nanoseconds, not '" + value + "'") !=
          std::string::npos);
    CHECK_FALSE(std::ifstream(out + "/results.jsonl").good());  // no run started
  }
}

// One open-loop run of the raw ZeroMQ load client against its echo server;
// returns the run's JSON line.
nlohmann::json OpenLoopRun(const std::string& server, const std::string& send_every_us) {
  Process client(std::string(BENCH_BUILD_DIR) + "/bench/zmq_bench_client",
                 {"--server", server, "--rate", "2000", "--duration", "1", "--warmup", "0.2",
                  "--send-every", send_every_us, "--json"});
  std::optional<int> code = client.Wait(std::chrono::seconds(30));
  INFO(client.output());
  REQUIRE(code == std::optional<int>(0));
  nlohmann::json j = nlohmann::json::parse(client.output(), nullptr, false);
  REQUIRE(j.is_object());
  return j;
}

TEST_CASE("open loop --send-every gathers arrivals and counts latency from each arrival",
          "[bench]") {
  std::string dir = MakeTempDir();
  Process server(std::string(BENCH_BUILD_DIR) + "/bench/zmq_echo_server", {}, dir + "/server.log");
  REQUIRE(server.WaitForLine("listening on ", std::chrono::seconds(10)));
  std::string out = server.output();
  std::string address = out.substr(out.find("tcp://"));
  address = address.substr(0, address.find('\n'));

  // Sent as each arrives, an echo on loopback answers well within 10 ms.
  nlohmann::json asap = OpenLoopRun(address, "0");
  CHECK(asap["errors"].empty());
  CHECK(asap["send_every_us"].get<double>() == 0);
  CHECK(asap["p50_us"].get<double>() < 10'000);
  // Sent every 40 ms, an arrival waits 20 ms for its send on average, and
  // that wait is in its latency (no coordinated omission): the median is
  // well past 10 ms, and still below one interval.
  nlohmann::json gathered = OpenLoopRun(address, "40000");
  CHECK(gathered["errors"].empty());
  CHECK(gathered["send_every_us"].get<double>() == 40'000);
  CHECK(gathered["requests"].get<uint64_t>() > 1000);
  CHECK(gathered["p50_us"].get<double>() > 10'000);
  CHECK(gathered["p50_us"].get<double>() < 40'000);
}

}  // namespace
}  // namespace zserve::testing
