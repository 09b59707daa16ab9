// LoadGenerator: the load loop shared by `zserve bench` and the peer clients
// in bench/ (raw ZeroMQ, NATS), so every system is measured by the same code.
//
// Closed loop: N requests in flight; a reply is followed at once by the next
// request. Open loop: requests start at Poisson arrival times of a target
// rate whatever the replies do, and latency counts from the intended start
// (no coordinated omission). Each run is a warm-up, then a measured window
// (a duration or a count of replies), then a drain of what is in flight. A run
// prints one line: text, or one JSON object with --json.
//
// Runs on the calling thread; Run() blocks until the sweep is done.
#ifndef ZSERVE_BENCH_LOAD_GENERATOR_H_
#define ZSERVE_BENCH_LOAD_GENERATOR_H_

#include <sys/types.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "bench/latency_recorder.h"
#include "bench/load_target.h"

namespace zserve::bench {

struct LoadOptions {
  std::vector<int> inflight = {100};  // closed loop, swept
  std::vector<double> rates;          // open loop when given, swept
  std::vector<size_t> sizes = {100};  // payload bytes, swept
  double duration_s = 10;             // measured window per run
  uint64_t count = 0;                 // > 0: measure this many replies (errors too) instead
  double warmup_s = 1;
  double drain_s = 10;                 // most time to wait for replies after a run
  uint64_t max_outstanding = 100'000;  // open loop: past this, requests are not sent
  double send_every_us = 0;            // open loop: arrivals sent together this often
  pid_t broker_pid = 0;                // > 0: report its CPU time per request
  bool json = false;
  std::map<std::string, std::string> tags;  // copied into the JSON ("replicas": "2")
};

// The flags every load client shares: --inflight, --rate, --size, --duration,
// --count, --warmup, --broker-pid, --json, --tag.
void AddLoadFlags(CLI::App& app, LoadOptions& options);

struct RunResult {
  std::string system;
  std::string settings;
  RunSpec spec;
  double seconds = 0;  // measured window
  uint64_t ok = 0;
  std::map<std::string, uint64_t> errors;
  LatencyRecorder latency;                // good replies in the window
  double broker_cpu_us_per_request = -1;  // < 0: unknown
  double client_cpu_us_per_request = 0;
  std::map<std::string, std::string> tags;

  double throughput_rps() const { return seconds > 0 ? ok / seconds : 0; }
  uint64_t error_count() const;
  std::string ToJson() const;  // one line
  std::string ToText() const;  // one line
};

class LoadGenerator : private CompletionSink {
 public:
  LoadGenerator(std::string system, LoadTarget& target, LoadOptions options);
  // Runs the sweep (sizes x inflight, or sizes x rates), printing each result
  // on stdout; returns 0, or 1 when a run could not be set up or had no
  // call succeed.
  int Run();
  // One run, without printing.
  StatusOr<RunResult> RunOne(const RunSpec& spec);

 private:
  enum class Phase { kWarmup, kMeasure, kDrain };
  void Done(uint64_t tag, std::string_view error) override;
  void Progress(const RunSpec& spec, bool force);

  std::string system_;
  LoadTarget& target_;
  LoadOptions o_;

  // The current run.
  Phase phase_ = Phase::kWarmup;
  uint64_t run_ = 0;       // high 24 bits of a tag
  uint64_t next_seq_ = 0;  // low 40 bits
  bool open_loop_ = false;
  std::vector<int64_t> slot_start_;                    // closed loop: start (ns) per slot
  std::vector<uint64_t> free_slots_;                   // closed loop: slots to send on
  std::unordered_map<uint64_t, int64_t> open_starts_;  // open loop: tag -> intended start (ns)
  uint64_t outstanding_ = 0;
  RunResult* result_ = nullptr;
  int64_t started_ns_ = 0, last_progress_ns_ = 0;
};

}  // namespace zserve::bench

#endif  // ZSERVE_BENCH_LOAD_GENERATOR_H_
