// Observability end to end (docs/metrics.md): a real Prometheus server
// scrapes a `zserve up` stack and its query API must show exactly the
// requests sent; the broker's /readyz follows the last replica of an
// endpoint; the queue gauges come back to zero after load. Real processes on
// free loopback ports; HTTP through curl; every wait is bounded and polls a
// condition (Prometheus cannot tell us when it has scraped).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/loopback_tcp.h"
#include "tests/e2e/stack.h"
#include "tests/e2e/test_client.h"
#include "zserve/client.h"

namespace {

using namespace zserve;
using namespace zserve::testing;
using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

constexpr const char* kCurl = "/usr/bin/curl";
constexpr const char* kPrometheus = "/usr/bin/prometheus";
// One echo replica behind one endpoint.
constexpr const char* kOneEcho = R"(
backends:
  echo: {handler: echo}
endpoints:
  echo: {backend: echo}
)";

struct HttpReply {
  int code = 0;  // 0: no answer
  std::string body;
};

HttpReply Get(const std::string& url, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args = {"-s", "--max-time", "5", "-w", "\n%{http_code}"};
  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back(url);
  Process curl(kCurl, args);
  curl.WaitForLine("\n\n", milliseconds(10'000));  // reads until EOF (no such line)
  REQUIRE(curl.Wait(milliseconds(10'000)).has_value());
  const std::string& out = curl.output();
  size_t nl = out.rfind('\n');
  if (nl == std::string::npos) return {};
  return {std::atoi(out.c_str() + nl + 1), out.substr(0, nl)};
}

// The `metrics  NAME  http://ADDR/metrics` lines `zserve up` prints: NAME -> ADDR.
std::map<std::string, std::string> MetricsAddresses(const std::string& up_output) {
  std::map<std::string, std::string> out;
  std::istringstream in(up_output);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string first, name, url;
    if (!(words >> first >> name >> url) || first != "metrics") continue;
    const std::string prefix = "http://", suffix = "/metrics";
    if (url.rfind(prefix, 0) != 0 || url.size() < prefix.size() + suffix.size()) continue;
    out[name] = url.substr(prefix.size(), url.size() - prefix.size() - suffix.size());
  }
  return out;
}

// One sample of a scraped text page: the value of `series` (name and labels
// exactly as the page prints them).
std::optional<double> Sample(const std::string& page, const std::string& series) {
  std::istringstream in(page);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return std::nullopt;
}

class PrometheusServer {
 public:
  // Scrapes `targets` (HOST:PORT) every 500 ms; data in `dir`.
  PrometheusServer(const std::string& dir, const std::map<std::string, std::string>& targets)
      : port_(FreePort()) {
    std::ostringstream config;
    config << "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\n"
           << "scrape_configs:\n  - job_name: zserve\n    static_configs:\n";
    for (const auto& [name, address] : targets) {
      config << "      - targets: ['" << address << "']\n        labels: {process: '" << name
             << "'}\n";
    }
    WriteFile(dir + "/prometheus.yml", config.str());
    process_ = std::make_unique<Process>(
        kPrometheus,
        std::vector<std::string>{"--config.file=" + dir + "/prometheus.yml",
                                 "--storage.tsdb.path=" + dir + "/prometheus-data",
                                 "--web.listen-address=127.0.0.1:" + std::to_string(port_),
                                 "--log.level=warn"},
        dir + "/prometheus.log");
  }
  ~PrometheusServer() {
    process_->Signal(SIGTERM);
    if (!process_->Wait(milliseconds(20'000))) process_->Signal(SIGKILL);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  bool WaitReady() {
    return Eventually([this] { return Get(url() + "/-/ready").code == 200; }, milliseconds(30'000));
  }
  // The result of an instant query: its series, each {labels, value}.
  nlohmann::json Query(const std::string& promql) {
    HttpReply r = Get(url() + "/api/v1/query", {"-G", "--data-urlencode", "query=" + promql});
    if (r.code != 200) return nlohmann::json::array();
    nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_discarded() || j.value("status", "") != "success") return nlohmann::json::array();
    return j["data"]["result"];
  }
  // A query that yields one number (e.g. sum(...)); nullopt when empty.
  std::optional<double> Number(const std::string& promql) {
    nlohmann::json result = Query(promql);
    if (!result.is_array() || result.size() != 1) return std::nullopt;
    return std::stod(result[0]["value"][1].get<std::string>());
  }

 private:
  int port_;
  std::unique_ptr<Process> process_;
};

TEST_CASE("Prometheus scrapes every process and its counts match the requests sent",
          "[e2e][metrics]") {
  Stack stack(R"(
backends:
  echo:
    handler: echo
    num_replicas: 2
  flaky:
    handler: fail
    num_replicas: 1
endpoints:
  echo:
    backend: echo
  flaky:
    backend: flaky
)");
  REQUIRE(stack.ready());
  std::map<std::string, std::string> targets = MetricsAddresses(stack.up().output());
  REQUIRE(targets.size() == 5);  // controller, broker, echo-1, echo-2, flaky-1
  REQUIRE(targets.contains("broker"));

  // Known traffic: 20 OK on echo; on flaky 5 handler errors and 3 OK; 3 for
  // an endpoint that does not exist.
  auto client = Connect(stack);
  for (int i = 0; i < 20; ++i) REQUIRE(client->Call("echo", "hi").ok());
  for (int i = 0; i < 5; ++i) {
    CHECK(client->Call("flaky", "error:boom").status().code() == StatusCode::kHandlerError);
  }
  for (int i = 0; i < 3; ++i) REQUIRE(client->Call("flaky", "fine").ok());
  for (int i = 0; i < 3; ++i) {
    CHECK(client->Call("nope", "x").status().code() == StatusCode::kNotFound);
  }

  std::string dir = stack.dir();
  PrometheusServer prometheus(dir, targets);
  REQUIRE(prometheus.WaitReady());
  // Every process is scraped...
  CHECK(Eventually([&] { return prometheus.Number("sum(up{job=\"zserve\"})") == 5.0; },
                   milliseconds(30'000)));
  // ...and once the replicas' counters are in, every count is what we sent.
  REQUIRE(Eventually(
      [&] {
        return prometheus.Number("sum(zserve_replica_requests_total)") == 28.0 &&
               prometheus.Number("sum(zserve_broker_requests_total)") == 28.0;
      },
      milliseconds(30'000)));
  auto number = [&](const std::string& q) { return prometheus.Number(q).value_or(-1); };
  CHECK(number("zserve_broker_requests_total{endpoint=\"echo\"}") == 20);
  CHECK(number("zserve_broker_requests_total{endpoint=\"flaky\"}") == 8);
  CHECK(number("zserve_broker_endpoint_errors_total{endpoint=\"flaky\",type=\"HANDLER_ERROR\"}") ==
        5);
  CHECK(number("sum(zserve_broker_endpoint_errors_total{endpoint=\"echo\"})") == 0);
  CHECK(number("zserve_broker_backend_errors_total{backend=\"flaky\",type=\"HANDLER_ERROR\"}") ==
        5);
  CHECK(number("zserve_broker_unknown_endpoint_requests_total") == 3);
  CHECK(number("sum(zserve_replica_requests_total{backend=\"echo\"})") == 20);
  CHECK(number("sum(zserve_replica_errors_total{backend=\"flaky\"})") == 5);
  CHECK(number("sum(zserve_replica_errors_total{backend=\"echo\"})") == 0);
  CHECK(number("zserve_replica_starts_total{replica=\"flaky-1\"}") == 1);
  CHECK(number("zserve_controller_config_version") == 1);
  CHECK(number("zserve_broker_config_version") == 1);
  {
    // A call sent to the controller by mistake (a header and a payload
    // frame) is dropped and counted as malformed.
    auto astray = Connect(stack.admin_address());
    CallOptions o;
    o.timeout = milliseconds(300);
    CHECK(astray->Call("echo", "hi", o).status().code() == StatusCode::kDeadlineExceeded);
    std::optional<double> malformed =
        Sample(Get("http://" + targets.at("controller") + "/metrics").body,
               "zserve_controller_malformed_messages_total");
    CHECK(malformed == 1.0);
  }
  CHECK(number("zserve_broker_ready") == 1);
  CHECK(number("zserve_broker_live_replicas{backend=\"echo\"}") == 2);
  CHECK(number("zserve_broker_desired_replicas{backend=\"echo\"}") == 2);
  // Histograms are populated: one observation per request, with the
  // documented labels, in seconds.
  for (const char* h :
       {"zserve_broker_request_duration_seconds", "zserve_broker_queue_duration_seconds",
        "zserve_broker_dispatch_duration_seconds"}) {
    INFO(h);
    CHECK(number(std::string(h) + "_count{endpoint=\"echo\",backend=\"echo\"}") == 20);
    CHECK(number(std::string(h) + "_count{endpoint=\"flaky\",backend=\"flaky\"}") == 8);
    double sum = number(std::string(h) + "_sum{endpoint=\"echo\",backend=\"echo\"}");
    CHECK(sum >= 0);
    CHECK(sum < 20 * 10.0);
    CHECK(number(std::string(h) + "_bucket{endpoint=\"echo\",backend=\"echo\",le=\"+Inf\"}") == 20);
  }
  CHECK(number("sum(zserve_replica_queuing_duration_seconds_count{backend=\"echo\"})") == 20);
  // max_batch_size 1: every handler call had one request.
  CHECK(number("sum(zserve_replica_processing_duration_seconds_count{backend=\"echo\","
               "batch_size=\"1\"})") == 20);
  // 16 bounds and +Inf for each replica that served (either may have taken all).
  double buckets = number(
      "count(zserve_replica_processing_duration_seconds_bucket{backend=\"echo\","
      "batch_size=\"1\"})");
  CHECK((buckets == 17 || buckets == 34));
  // Labels as documented.
  nlohmann::json series = prometheus.Query("zserve_replica_requests_total");
  REQUIRE(series.size() == 3);
  for (const auto& s : series) {
    CHECK(s["metric"].contains("backend"));
    CHECK(s["metric"].contains("replica"));
  }
  series = prometheus.Query("zserve_broker_request_duration_seconds_count");
  for (const auto& s : series) {
    CHECK(s["metric"].contains("endpoint"));
    CHECK(s["metric"].contains("backend"));
  }
}

TEST_CASE("the broker's readyz follows the last replica of an endpoint", "[e2e][metrics]") {
  Stack stack(R"(
backends:
  echo:
    handler: echo
    num_replicas: 1
endpoints:
  echo:
    backend: echo
)");
  REQUIRE(stack.ready());
  std::string broker = MetricsAddresses(stack.up().output()).at("broker");
  HttpReply ready = Get("http://" + broker + "/readyz");
  CHECK(ready.code == 200);
  CHECK(ready.body == "ready\n");
  CHECK(Get("http://" + broker + "/healthz").code == 200);
  auto ctl = [&](const std::string& replicas) {
    Process p(kBinary, {"ctl", "--controller", stack.admin_address(), "update-backend", "echo",
                        "--num-replicas", replicas});
    REQUIRE(p.Wait(milliseconds(10'000)) == 0);
  };
  // `up` drains the only worker: the endpoint has no live replica.
  ctl("0");
  REQUIRE(Eventually([&] { return Get("http://" + broker + "/readyz").code == 503; },
                     milliseconds(20'000)));
  CHECK_THAT(Get("http://" + broker + "/readyz").body,
             Catch::Matchers::Contains("endpoint 'echo' has no live replica"));
  CHECK(Get("http://" + broker + "/healthz").code == 200);  // alive all the same
  auto client = Connect(stack);
  StatusOr<std::string> status = client->BrokerStatus(milliseconds(2000));
  REQUIRE(status.ok());
  nlohmann::json j = nlohmann::json::parse(*status);
  CHECK(j["ready"] == false);
  CHECK(j["not_ready_reason"] == "endpoint 'echo' has no live replica");
  // A replica again: ready again.
  ctl("1");
  CHECK(Eventually([&] { return Get("http://" + broker + "/readyz").code == 200; },
                   milliseconds(20'000)));
}

TEST_CASE("Idle connections to the broker's metrics port do not hold up /healthz",
          "[e2e][metrics]") {
  Stack stack(kOneEcho);
  REQUIRE(stack.ready());
  const std::string broker = MetricsAddresses(stack.up().output()).at("broker");
  std::vector<int> idle;
  for (int i = 0; i < 4; ++i) {
    idle.push_back(ConnectLoopback(std::stoi(broker.substr(broker.rfind(':') + 1))));
    REQUIRE(idle.back() >= 0);
  }
  // A probe with a 2 s budget is answered while they are open.
  const auto start = SteadyClock::now();
  HttpReply health = Get("http://" + broker + "/healthz", {"--max-time", "2"});
  CHECK(health.code == 200);
  CHECK(SteadyClock::now() - start < milliseconds(2000));
  // And the server closes a connection that sends nothing (after 5 s).
  pollfd p{idle[0], POLLIN, 0};
  REQUIRE(poll(&p, 1, 10'000) == 1);
  char byte;
  CHECK(read(idle[0], &byte, 1) <= 0);
  for (int fd : idle) close(fd);
}

TEST_CASE("up gives a worker the next metrics port when another program holds its own",
          "[e2e][metrics]") {
  // BASE for the controller, BASE + 1 the broker, BASE + 2 the first worker:
  // another program listens there, so the worker gets BASE + 3 (it used to
  // exit on the taken port, restarted again and again).
  // --metrics-port takes 0..64535 (room for the workers' ports above it).
  int base = FreePort();
  for (int tries = 0; tries < 100 && base > 64535; ++tries) base = FreePort();
  REQUIRE(base > 0);
  REQUIRE(base <= 64535);
  int taken = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(taken >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(base + 2));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(taken, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(listen(taken, 1) == 0);
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/deployment.yaml",
            "backends:\n  echo: {handler: echo}\nendpoints:\n  echo: {backend: echo}\n");
  Process up(kBinary,
             {"up", dir + "/deployment.yaml", "--client-port", "0", "--worker-port", "0",
              "--admin-port", "0", "--pub-port", "0", "--http-port", "-1", "--metrics-port",
              std::to_string(base), "--state-dir", dir + "/state"},
             dir + "/stack.log");
  const bool ready = up.WaitForLine("Ctrl-C stops everything.", milliseconds(30'000));
  INFO(ReadFile(dir + "/stack.log"));
  REQUIRE(ready);
  std::map<std::string, std::string> metrics = MetricsAddresses(up.output());
  CHECK(metrics["echo-1"] == "127.0.0.1:" + std::to_string(base + 3));
  CHECK(Get("http://" + metrics["echo-1"] + "/metrics").code == 200);
  CHECK_THAT(ReadFile(dir + "/stack.log"), !Catch::Contains("exited unexpectedly"));
  up.Signal(SIGTERM);
  CHECK(up.Wait(milliseconds(20'000)) == 0);
  // A process told to serve metrics on the taken port exits and says why.
  Process broker(kBinary,
                 {"broker", "--metrics-bind", "127.0.0.1:" + std::to_string(base + 2),
                  "--client-bind", "tcp://127.0.0.1:0", "--worker-bind", "tcp://127.0.0.1:0"},
                 dir + "/broker.err");
  CHECK(broker.Wait(milliseconds(10'000)) == 1);
  CHECK_THAT(ReadFile(dir + "/broker.err"),
             Catch::Contains("cannot serve metrics on 127.0.0.1:" + std::to_string(base + 2) +
                             ": Address already in use"));
  close(taken);
}

TEST_CASE("A worker up restarts keeps its metrics port with free ports", "[e2e][metrics]") {
  // --metrics-port 0: every port is a free one. The replacement of a crashed
  // worker takes its tag, and its port with it, so a scrape config written
  // from up's table goes on finding it (it used to get a new port each time).
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/deployment.yaml",
            "backends:\n  echo: {handler: echo}\nendpoints:\n  echo: {backend: echo}\n");
  Process up(kBinary,
             {"up", dir + "/deployment.yaml", "--client-port", "0", "--worker-port", "0",
              "--admin-port", "0", "--pub-port", "0", "--http-port", "-1", "--metrics-port", "0",
              "--state-dir", dir + "/state"},
             dir + "/stack.log");
  const bool ready = up.WaitForLine("Ctrl-C stops everything.", milliseconds(30'000));
  INFO(ReadFile(dir + "/stack.log"));
  REQUIRE(ready);
  const std::string address = MetricsAddresses(up.output())["echo-1"];
  REQUIRE_FALSE(address.empty());
  std::smatch m;
  std::string log = ReadFile(dir + "/stack.log");
  REQUIRE(std::regex_search(log, m, std::regex("started echo-1 \\(pid ([0-9]+)\\)")));
  REQUIRE(kill(std::stoi(m[1]), SIGKILL) == 0);
  // Restarted (after its 100 ms backoff) and serving again on the same port.
  const std::string line = "echo-1 serves metrics on http://" + address + "/metrics";
  CHECK(Eventually([&] {
    const std::string now = ReadFile(dir + "/stack.log");
    const size_t first = now.find(line);
    return first != std::string::npos && now.find(line, first + 1) != std::string::npos &&
           Get("http://" + address + "/metrics").code == 200;
  }));
  up.Signal(SIGTERM);
  CHECK(up.Wait(milliseconds(20'000)) == 0);
}

TEST_CASE("The metrics endpoints answer HEAD and refuse other methods with 405", "[e2e][metrics]") {
  Stack stack(kOneEcho);
  REQUIRE(stack.ready());
  const std::string broker = MetricsAddresses(stack.up().output()).at("broker");
  for (const char* path : {"/metrics", "/healthz", "/readyz"}) {
    INFO(path);
    const std::string url = "http://" + broker + path;
    HttpReply get = Get(url);
    REQUIRE(get.code == 200);
    HttpReply head = Get(url, {"-I"});  // the header only, as the reply's text
    CHECK(head.code == 200);
    CHECK_THAT(head.body, Catch::Contains("Content-Length: "));
    for (const char* method : {"POST", "PUT", "DELETE"}) {
      INFO(method);
      HttpReply other = Get(url, {"-i", "-X", method, "-d", "x"});
      CHECK(other.code == 405);
      CHECK_THAT(other.body, Catch::Contains("Allow: GET, HEAD") &&
                                 Catch::Contains("only GET and HEAD are served here"));
    }
  }
}

TEST_CASE("A stack that has just served HTTP stops in well under a second", "[e2e][metrics]") {
  // civetweb's listening thread reads its stop flag when its poll(2) times
  // out, 2 s after the last connection: every process serving HTTP (the
  // gateway, and the metrics of each of the others) took up to that long
  // to stop, one stage after the other, and Ctrl-C on an idle `up` took
  // about 8 s. A request to each just before the stop makes every one of
  // them wait its whole 2 s unless the stop wakes it.
  Stack stack(kOneEcho);
  REQUIRE(stack.ready());
  const std::map<std::string, std::string> targets = MetricsAddresses(stack.up().output());
  REQUIRE(targets.size() == 3);  // controller, broker, echo-1
  for (const auto& [name, address] : targets) {
    INFO(name);
    REQUIRE(Get("http://" + address + "/metrics").code == 200);
  }
  REQUIRE(Get(stack.http_url() + "/-/healthz").code == 200);
  const SteadyClock::time_point start = SteadyClock::now();
  stack.up().Signal(SIGINT);
  REQUIRE(stack.up().Wait(milliseconds(20'000)) == 0);
  const auto took = std::chrono::duration_cast<milliseconds>(SteadyClock::now() - start);
  INFO(stack.log());
  CHECK(took < milliseconds(1'500));
}

TEST_CASE("ZSERVE_METRICS_BIND set empty turns the metrics server off", "[e2e][metrics]") {
  // As --metrics-bind "" does. CLI11 skips a variable set empty, so the
  // default port was served instead.
  const std::string dir = MakeTempDir();
  auto address = [] { return "tcp://127.0.0.1:" + std::to_string(FreePort()); };
  Process broker(
      "/usr/bin/env",
      {"ZSERVE_METRICS_BIND=", kBinary, "broker", "--client-bind", address(), "--worker-bind",
       address(), "--controller", address(), "--controller-pub", address()},
      dir + "/broker.log");
  REQUIRE(Eventually(
      [&] { return ReadFile(dir + "/broker.log").find("listening") != std::string::npos; }));
  broker.Signal(SIGTERM);
  // It ran, and stopped cleanly: a default port taken would have failed it.
  REQUIRE(broker.Wait(milliseconds(10'000)) == std::optional<int>(0));
  INFO(ReadFile(dir + "/broker.log"));
  CHECK(ReadFile(dir + "/broker.log").find("metrics on") == std::string::npos);
}

TEST_CASE("queue and in-flight gauges go back to zero after load", "[e2e][metrics]") {
  Stack stack(R"(
backends:
  sleep:
    handler: sleep
    num_replicas: 2
    max_concurrent_queries: 2
endpoints:
  sleep:
    backend: sleep
)");
  REQUIRE(stack.ready());
  std::map<std::string, std::string> targets = MetricsAddresses(stack.up().output());
  auto client = Connect(stack);
  int answered = 0;
  for (int i = 0; i < 40; ++i) {
    client->CallAsync("sleep", "20", {}, [&answered](StatusOr<std::string> r) {
      CHECK(r.ok());
      ++answered;
    });
  }
  // Under load the broker queues (2 replicas x 2 slots for 40 requests).
  CHECK(Eventually(
      [&] {
        client->Poll(milliseconds(0));
        return Sample(Get("http://" + targets.at("broker") + "/metrics").body,
                      "zserve_broker_queued_requests{backend=\"sleep\"}") > 0.0;
      },
      milliseconds(10'000)));
  client->Wait();
  REQUIRE(answered == 40);
  // The broker refreshes its gauges at least once a second.
  CHECK(Eventually(
      [&] {
        std::string page = Get("http://" + targets.at("broker") + "/metrics").body;
        return Sample(page, "zserve_broker_queued_requests{backend=\"sleep\"}") == 0.0 &&
               Sample(page, "zserve_broker_in_flight_requests{backend=\"sleep\"}") == 0.0;
      },
      milliseconds(10'000)));
  double processed = 0;
  for (const char* replica : {"sleep-1", "sleep-2"}) {
    std::string page = Get("http://" + targets.at(replica) + "/metrics").body;
    std::string labels = std::string("{backend=\"sleep\",replica=\"") + replica + "\"}";
    CHECK(Sample(page, "zserve_replica_queued_requests" + labels) == 0.0);
    CHECK(Sample(page, "zserve_replica_processing_requests" + labels) == 0.0);
    processed += Sample(page, "zserve_replica_requests_total" + labels).value_or(0);
  }
  CHECK(processed == 40);
}

}  // namespace
