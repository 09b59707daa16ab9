// queue_memory: the broker's memory per queued request, for the scale
// benchmark (bench/scale.sh). Against an endpoint whose backend has no
// replica (so every request waits in the broker's queue), it sends --count
// calls with a long deadline through the client library, waits (bounded)
// until the broker's STATUS shows them all queued, and compares the broker's
// VmRSS (/proc/PID/status) before and after. Prints one JSON line:
//
//   {"kind":"queue_memory","queued":Q,"size":B,"broker_rss_before_kb":..,
//    "broker_rss_after_kb":..,"bytes_per_queued_request":..}
//
// The calls are left pending when it exits: the broker keeps them until their
// deadline or until it is stopped.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "zserve/client.h"

namespace {

// VmRSS of `pid` in KiB; -1 if it cannot be read.
int64_t RssKb(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

// backends.<backend>.queued of the broker's STATUS; -1 if unknown.
int64_t Queued(zserve::Client& client, const std::string& backend) {
  zserve::StatusOr<std::string> status = client.BrokerStatus(std::chrono::milliseconds(5000));
  if (!status.ok()) return -1;
  nlohmann::json j = nlohmann::json::parse(*status, nullptr, false);
  if (j.is_discarded() || !j.contains("backends") || !j["backends"].contains(backend)) return -1;
  return j["backends"][backend].value("queued", int64_t{-1});
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The broker's memory per queued request (bench/scale.sh)"};
  std::string broker = "tcp://127.0.0.1:5555";
  std::string endpoint = "hold";
  std::string backend;
  int64_t count = 100'000;
  size_t size = 100;
  int broker_pid = 0;
  int64_t timeout_ms = 600'000;
  double wait_s = 60;
  app.add_option("--broker", broker, "Broker client address")->capture_default_str();
  app.add_option("--endpoint", endpoint, "Endpoint whose backend has no replica")
      ->capture_default_str();
  app.add_option("--backend", backend, "That backend (default: the endpoint's name)");
  app.add_option("--count", count, "Requests to queue")
      ->check(CLI::Range(int64_t{1}, int64_t{10'000'000}))
      ->capture_default_str();
  app.add_option("--size", size, "Payload bytes")->capture_default_str();
  app.add_option("--broker-pid", broker_pid, "The broker's PID (for /proc/PID/status)")->required();
  app.add_option("--timeout-ms", timeout_ms, "Deadline of each call")
      ->check(CLI::Range(int64_t{1000}, int64_t{UINT32_MAX}))
      ->capture_default_str();
  app.add_option("--wait", wait_s, "Most seconds to wait until all are queued")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (backend.empty()) backend = endpoint;

  zserve::ClientOptions options;
  options.broker_address = broker;
  zserve::StatusOr<std::unique_ptr<zserve::Client>> created = zserve::Client::Create(options);
  if (!created.ok()) {
    std::fprintf(stderr, "queue_memory: %s\n", created.status().ToString().c_str());
    return 1;
  }
  zserve::Client& client = **created;

  int64_t before_queued = Queued(client, backend);
  if (before_queued != 0) {
    std::fprintf(stderr,
                 "queue_memory: backend '%s' shows %lld queued before the run (-1: no "
                 "STATUS or no such backend)\n",
                 backend.c_str(), static_cast<long long>(before_queued));
    return 1;
  }
  int64_t rss_before = RssKb(broker_pid);
  if (rss_before < 0) {
    std::fprintf(stderr, "queue_memory: cannot read /proc/%d/status\n", broker_pid);
    return 1;
  }

  uint64_t errors = 0;
  std::string first_error;
  std::string payload(size, 'x');
  zserve::CallOptions call;
  call.timeout = std::chrono::milliseconds(timeout_ms);
  for (int64_t i = 0; i < count; ++i) {
    client.CallAsync(endpoint, payload, call, [&](zserve::StatusOr<std::string> r) {
      if (!r.ok() && errors++ == 0) first_error = r.status().ToString();
    });
    if (i % 256 == 255) client.Poll(std::chrono::milliseconds(0));  // sends them
  }
  client.Poll(std::chrono::milliseconds(0));

  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait_s);
  int64_t queued = 0;
  while (errors == 0) {
    queued = Queued(client, backend);
    if (queued >= count || std::chrono::steady_clock::now() > deadline) break;
    client.Poll(std::chrono::milliseconds(50));
  }
  if (errors > 0 || queued < count) {
    std::fprintf(stderr, "queue_memory: %lld of %lld queued after %.0f s; %llu calls failed%s%s\n",
                 static_cast<long long>(queued), static_cast<long long>(count), wait_s,
                 static_cast<unsigned long long>(errors), errors ? ", the first with " : "",
                 first_error.c_str());
    return 1;
  }
  int64_t rss_after = RssKb(broker_pid);

  nlohmann::json j;
  j["kind"] = "queue_memory";
  j["queued"] = queued;
  j["size"] = size;
  j["broker_rss_before_kb"] = rss_before;
  j["broker_rss_after_kb"] = rss_after;
  j["bytes_per_queued_request"] = static_cast<double>(rss_after - rss_before) * 1024.0 / queued;
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
  return 0;
}
