#include "cli/bench.h"

#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench/load_generator.h"
#include "cli/curve_flags.h"
#include "zserve/client.h"

namespace zserve::cli {
namespace {

struct BenchArgs {
  std::string broker = "tcp://127.0.0.1:5555";
  std::string endpoint = "echo";
  std::string method = "__call__";
  int64_t timeout_ms = 10'000;
  bool check_echo = true;
  bench::LoadOptions load;
  CurveFlags curve;  // a broker with CURVE on (docs/security.md)
};

// zserve through its client library: one Client, many calls in flight.
class ZserveTarget : public bench::LoadTarget {
 public:
  ZserveTarget(std::unique_ptr<Client> client, const BenchArgs& args)
      : client_(std::move(client)), check_echo_(args.check_echo) {
    endpoint_ = args.endpoint;
    options_.method = args.method;
    options_.timeout = std::chrono::milliseconds(args.timeout_ms);
  }

  void Send(uint64_t tag, std::string_view payload) override {
    // One payload size per run (a straggler of an earlier run, checked
    // against the new size, is ignored by the generator). The callback
    // captures 16 bytes, which std::function holds without allocating.
    size_ = payload.size();
    client_->CallAsync(endpoint_, payload, options_, [this, tag](StatusOr<std::string> r) {
      if (!r.ok()) {
        done_.push_back({tag, std::string(StatusCodeName(r.status().code()))});
      } else if (check_echo_ && r->size() != size_) {
        done_.push_back({tag, "BAD_REPLY"});
      } else {
        done_.push_back({tag, {}});
      }
    });
  }

  void Poll(std::chrono::milliseconds timeout, bench::CompletionSink& sink) override {
    // The generator waits here for its next arrival: with no call pending
    // the client returns at once, so the wait is a sleep (an open loop at a
    // low rate spun a core).
    if (client_->pending() == 0) {
      std::this_thread::sleep_for(timeout);
      return;
    }
    client_->Poll(timeout);
    // Callbacks only collect; the sink runs after the client returns, so the
    // generator's next sends never happen inside the client's reply loop.
    for (auto& [tag, error] : done_) sink.Done(tag, error);
    done_.clear();
  }

 private:
  std::unique_ptr<Client> client_;
  bool check_echo_;
  size_t size_ = 0;  // of the payloads sent
  std::string endpoint_;
  CallOptions options_;
  std::vector<std::pair<uint64_t, std::string>> done_;
};

int RunBench(const BenchArgs& args) {
  StatusOr<CurveKeys> keys = LoadCurveKeys(args.curve);
  if (!keys.ok()) {
    std::fprintf(stderr, "zserve bench: %s\n", keys.status().ToString().c_str());
    return 1;
  }
  ClientOptions copts;
  copts.broker_address = args.broker;
  copts.curve_key = keys->key;
  copts.curve_server_key = keys->broker_key;
  StatusOr<std::unique_ptr<Client>> client = Client::Create(copts);
  if (!client.ok()) {
    std::fprintf(stderr, "zserve bench: %s\n", client.status().ToString().c_str());
    return 1;
  }
  ZserveTarget target(std::move(client).value(), args);
  bench::LoadGenerator generator("zserve", target, args.load);
  return generator.Run();
}

}  // namespace

std::function<int()> AddBenchCommand(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand(
      "bench", "Load an endpoint: closed or open loop; throughput, latency, broker CPU");
  cmd->add_option("--broker", args->broker, "Broker client address")
      ->envname("ZSERVE_BROKER")
      ->capture_default_str();
  cmd->add_option("--endpoint", args->endpoint, "Endpoint to call")->capture_default_str();
  cmd->add_option("--method", args->method, "Method")->capture_default_str();
  cmd->add_option("--timeout", args->timeout_ms, "Deadline of each call in ms")
      ->check(CLI::Range(int64_t{1}, int64_t{UINT32_MAX}))
      ->capture_default_str();
  cmd->add_flag("!--no-check", args->check_echo,
                "Don't count a reply of another size than the payload as BAD_REPLY");
  args->curve.Add(cmd, kCurveBroker);
  bench::AddLoadFlags(*cmd, args->load);
  return [args] { return RunBench(*args); };
}

}  // namespace zserve::cli
