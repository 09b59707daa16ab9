#include "bench/load_generator.h"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

namespace zserve::bench {
namespace {

constexpr int kSeqBits = 40;
constexpr uint64_t kSeqMask = (uint64_t{1} << kSeqBits) - 1;

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

int64_t SecondsToNs(double s) { return static_cast<int64_t>(s * 1e9); }

// utime + stime of a process in microseconds, from /proc/PID/stat; -1 if gone.
int64_t ProcessCpuMicros(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return -1;
  // The command name (field 2) may hold spaces; fields 14 and 15 follow the
  // last ')'. After it, field 3 is the first token.
  size_t paren = line.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream rest(line.substr(paren + 1));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  static const long kTicks = sysconf(_SC_CLK_TCK);
  return static_cast<int64_t>((utime + stime) * 1'000'000 / static_cast<uint64_t>(kTicks));
}

int64_t SelfCpuMicros() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto us = [](const timeval& t) { return int64_t{t.tv_sec} * 1'000'000 + t.tv_usec; };
  return us(u.ru_utime) + us(u.ru_stime);
}

std::string Describe(const RunSpec& s) {
  char buf[96];
  if (s.open_loop) {
    std::snprintf(buf, sizeof buf, "open rate=%.0f size=%zu", s.rate_rps, s.payload_size);
  } else {
    std::snprintf(buf, sizeof buf, "closed inflight=%d size=%zu", s.inflight, s.payload_size);
  }
  return buf;
}

double Micros(uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

}  // namespace

void AddLoadFlags(CLI::App& app, LoadOptions& o) {
  CLI::Option* inflight =
      app.add_option("--inflight", o.inflight, "Closed loop: requests in flight (list: a sweep)")
          ->delimiter(',')
          ->check(CLI::Range(1, 1'000'000))
          ->capture_default_str();
  // An open loop sets its rate, not a number in flight: a flag of the other
  // mode is refused rather than silently ignored.
  CLI::Option* rate =
      app.add_option("--rate", o.rates,
                     "Open loop: target requests/s with Poisson arrivals (list: a sweep)")
          ->delimiter(',')
          ->check(CLI::PositiveNumber)
          ->excludes(inflight);
  app.add_option("--size", o.sizes, "Payload bytes (list: a sweep)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--duration", o.duration_s, "Seconds measured per run")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--count", o.count,
                 "Measure this many replies (errors count too) per run instead of a duration")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1'000'000'000'000}));
  app.add_option("--warmup", o.warmup_s, "Seconds of load before measuring")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--drain", o.drain_s, "Most seconds to wait for replies after a run")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--max-outstanding", o.max_outstanding,
                 "Open loop: requests not sent while this many are unanswered")
      ->capture_default_str()
      ->needs(rate);
  app.add_option("--send-every", o.send_every_us,
                 "Open loop: microseconds between sends; the arrivals due are sent together "
                 "(latency still counts from each arrival; 0: as each arrives)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str()
      ->needs(rate);
  app.add_option("--broker-pid", o.broker_pid, "Report this process's CPU time per request");
  app.add_flag("--json", o.json, "One JSON object per run");
  app.add_option_function<std::vector<std::string>>(
         "--tag",
         [&o](const std::vector<std::string>& tags) {
           for (const std::string& t : tags) {
             size_t eq = t.find('=');
             if (eq == std::string::npos || eq == 0) {
               throw CLI::ValidationError("--tag", "expected KEY=VALUE, got '" + t + "'");
             }
             o.tags[t.substr(0, eq)] = t.substr(eq + 1);
           }
         },
         "KEY=VALUE copied into each result (repeatable)")
      ->delimiter(',');
}

uint64_t RunResult::error_count() const {
  uint64_t n = 0;
  for (const auto& [type, count] : errors) n += count;
  return n;
}

std::string RunResult::ToJson() const {
  nlohmann::json j;
  j["system"] = system;
  j["settings"] = settings;
  j["mode"] = spec.open_loop ? "open" : "closed";
  j["inflight"] = spec.inflight;
  j["target_rate_rps"] = spec.rate_rps;
  j["send_every_us"] = spec.send_every_us;
  j["size"] = spec.payload_size;
  j["seconds"] = seconds;
  j["requests"] = ok;
  j["throughput_rps"] = throughput_rps();
  j["p50_us"] = Micros(latency.Quantile(0.50));
  j["p90_us"] = Micros(latency.Quantile(0.90));
  j["p99_us"] = Micros(latency.Quantile(0.99));
  j["p999_us"] = Micros(latency.Quantile(0.999));
  j["max_us"] = Micros(latency.max());
  j["mean_us"] = latency.mean() / 1000.0;
  j["errors"] = nlohmann::json::object();
  for (const auto& [type, count] : errors) j["errors"][type] = count;
  j["error_count"] = error_count();
  j["broker_cpu_us_per_request"] =
      broker_cpu_us_per_request < 0 ? nlohmann::json() : nlohmann::json(broker_cpu_us_per_request);
  j["client_cpu_us_per_request"] = client_cpu_us_per_request;
  j["tags"] = tags;
  return j.dump();
}

std::string RunResult::ToText() const {
  char buf[512];
  std::string broker = broker_cpu_us_per_request < 0
                           ? "-"
                           : std::to_string(broker_cpu_us_per_request).substr(0, 6) + " us";
  std::snprintf(buf, sizeof buf,
                "%s %s%s%s: %.0f req/s  p50 %.1f us  p90 %.1f us  p99 %.1f us  p99.9 %.1f us"
                "  errors %llu  broker cpu/req %s",
                system.c_str(), Describe(spec).c_str(), settings.empty() ? "" : " ",
                settings.c_str(), throughput_rps(), Micros(latency.Quantile(0.50)),
                Micros(latency.Quantile(0.90)), Micros(latency.Quantile(0.99)),
                Micros(latency.Quantile(0.999)), static_cast<unsigned long long>(error_count()),
                broker.c_str());
  std::string out = buf;
  for (const auto& [type, count] : errors) {
    out += "\n  " + type + ": " + std::to_string(count);
  }
  return out;
}

LoadGenerator::LoadGenerator(std::string system, LoadTarget& target, LoadOptions options)
    : system_(std::move(system)), target_(target), o_(std::move(options)) {
  // Open-loop arrivals sleep for tens of microseconds; the default 50 us of
  // timer slack would blur them.
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
}

int LoadGenerator::Run() {
  std::vector<RunSpec> specs;
  for (size_t size : o_.sizes) {
    if (!o_.rates.empty()) {
      for (double rate : o_.rates) specs.push_back({true, 0, rate, size, o_.send_every_us});
    } else {
      for (int n : o_.inflight) specs.push_back({false, n, 0, size});
    }
  }
  int exit_code = 0;
  for (const RunSpec& spec : specs) {
    StatusOr<RunResult> r = RunOne(spec);
    if (!r.ok()) {
      std::fprintf(stderr, "%s bench: %s: %s\n", system_.c_str(), Describe(spec).c_str(),
                   r.status().ToString().c_str());
      return 1;
    }
    std::printf("%s\n", o_.json ? r->ToJson().c_str() : r->ToText().c_str());
    std::fflush(stdout);
    // Measured nothing: a wrong endpoint, no broker, no replica. The sweep
    // goes on; the exit code says so.
    if (r->ok == 0) {
      std::fprintf(stderr, "%s bench: %s: no call succeeded (%llu errors)\n", system_.c_str(),
                   Describe(spec).c_str(), static_cast<unsigned long long>(r->error_count()));
      exit_code = 1;
    }
  }
  return exit_code;
}

void LoadGenerator::Done(uint64_t tag, std::string_view error) {
  if ((tag >> kSeqBits) != run_) return;  // a straggler of an earlier run
  int64_t now = NowNs();
  int64_t start;
  if (open_loop_) {
    auto it = open_starts_.find(tag);
    if (it == open_starts_.end()) return;
    start = it->second;
    open_starts_.erase(it);
  } else {
    uint64_t slot = tag & kSeqMask;
    start = slot_start_[slot];
    free_slots_.push_back(slot);
  }
  --outstanding_;
  if (phase_ == Phase::kWarmup) return;
  if (!error.empty()) {
    ++result_->errors[std::string(error)];  // errors count in the drain too
    return;
  }
  if (phase_ == Phase::kDrain) return;
  ++result_->ok;
  result_->latency.Record(static_cast<uint64_t>(std::max<int64_t>(now - start, 0)));
}

void LoadGenerator::Progress(const RunSpec& spec, bool force) {
  int64_t now = NowNs();
  if (!force && now - last_progress_ns_ < 1'000'000'000) return;
  last_progress_ns_ = now;
  double elapsed = static_cast<double>(now - started_ns_) / 1e9;
  std::fprintf(stderr, "[%s bench] %s: %.1f s%s, %llu replies, %llu errors\n", system_.c_str(),
               Describe(spec).c_str(), elapsed, phase_ == Phase::kWarmup ? " (warm-up)" : "",
               static_cast<unsigned long long>(result_->ok),
               static_cast<unsigned long long>(result_->error_count()));
}

StatusOr<RunResult> LoadGenerator::RunOne(const RunSpec& spec) {
  if (Status s = target_.Prepare(spec); !s.ok()) return s;
  RunResult result;
  result.system = system_;
  result.settings = target_.Settings(spec);
  result.spec = spec;
  result.tags = o_.tags;
  result_ = &result;

  ++run_;
  next_seq_ = 0;
  outstanding_ = 0;
  open_loop_ = spec.open_loop;
  phase_ = Phase::kWarmup;
  slot_start_.assign(open_loop_ ? 0 : static_cast<size_t>(spec.inflight), 0);
  free_slots_.clear();
  if (!open_loop_) {
    for (int i = spec.inflight - 1; i >= 0; --i) free_slots_.push_back(static_cast<uint64_t>(i));
  }
  open_starts_.clear();
  const std::string payload(spec.payload_size, 'x');
  std::mt19937_64 rng(42 + run_);
  std::exponential_distribution<double> gap_s(open_loop_ ? spec.rate_rps : 1.0);

  const bool show_progress = o_.count > 0 || o_.warmup_s + o_.duration_s > 3;
  started_ns_ = NowNs();
  last_progress_ns_ = started_ns_;
  const int64_t measure_start = started_ns_ + SecondsToNs(o_.warmup_s);
  const int64_t measure_end = o_.count > 0 ? INT64_MAX : measure_start + SecondsToNs(o_.duration_s);
  int64_t window_start = 0, window_end = 0;
  int64_t broker_cpu0 = 0, client_cpu0 = 0;
  int64_t next_arrival = started_ns_;
  int64_t wake = started_ns_, next_send = started_ns_;
  const int64_t send_every_ns = static_cast<int64_t>(spec.send_every_us * 1000);

  auto begin_measure = [&](int64_t now) {
    phase_ = Phase::kMeasure;
    window_start = now;
    broker_cpu0 = o_.broker_pid > 0 ? ProcessCpuMicros(o_.broker_pid) : -1;
    client_cpu0 = SelfCpuMicros();
  };
  auto end_measure = [&](int64_t now) {
    phase_ = Phase::kDrain;
    window_end = now;
    uint64_t served = result.ok + result.error_count();
    int64_t broker_cpu1 = o_.broker_pid > 0 ? ProcessCpuMicros(o_.broker_pid) : -1;
    if (broker_cpu0 >= 0 && broker_cpu1 >= 0 && served > 0) {
      result.broker_cpu_us_per_request = static_cast<double>(broker_cpu1 - broker_cpu0) / served;
    }
    if (served > 0) {
      result.client_cpu_us_per_request =
          static_cast<double>(SelfCpuMicros() - client_cpu0) / served;
    }
  };

  while (phase_ != Phase::kDrain) {
    int64_t now = NowNs();
    if (phase_ == Phase::kWarmup && now >= measure_start) begin_measure(now);
    // --count counts replies, errors too: a run whose calls all fail ends.
    if (phase_ == Phase::kMeasure &&
        (now >= measure_end || (o_.count > 0 && result.ok + result.error_count() >= o_.count))) {
      end_measure(now);
      break;
    }
    int64_t wait_ns;
    if (open_loop_) {
      // Arrivals due are sent together, at most once per --send-every.
      if (now >= next_send && next_arrival <= now) {
        while (next_arrival <= now) {
          uint64_t tag = (run_ << kSeqBits) | (next_seq_++ & kSeqMask);
          if (outstanding_ >= o_.max_outstanding) {
            if (phase_ == Phase::kMeasure) ++result.errors["CLIENT_BACKLOG"];
          } else {
            open_starts_.emplace(tag, next_arrival);  // latency from the intended start
            ++outstanding_;
            target_.Send(tag, payload);
          }
          next_arrival += std::max<int64_t>(1, SecondsToNs(gap_s(rng)));
        }
        next_send = now + send_every_ns;
      }
      wake = std::max(next_arrival, next_send);
      wait_ns = wake - NowNs();
    } else {
      while (!free_slots_.empty()) {
        uint64_t slot = free_slots_.back();
        free_slots_.pop_back();
        slot_start_[slot] = NowNs();
        ++outstanding_;
        target_.Send((run_ << kSeqBits) | slot, payload);
      }
      wait_ns = (phase_ == Phase::kWarmup ? measure_start : measure_end) - now;
    }
    if (show_progress) {
      Progress(spec, false);
      wait_ns = std::min<int64_t>(wait_ns, 1'000'000'000);
    }
    if (wait_ns >= 1'000'000) {
      target_.Poll(std::chrono::milliseconds(wait_ns / 1'000'000), *this);
    } else {
      target_.Poll(std::chrono::milliseconds(0), *this);
      // Poll waits in whole milliseconds: sleep out a shorter gap to the next
      // send in slices, so a reply waits at most a slice (or the send
      // interval, when longer) to be seen.
      int64_t left = wake - NowNs();
      if (open_loop_ && left > 0) {
        constexpr int64_t kSliceNs = 50'000;
        const int64_t slice = std::max(kSliceNs, send_every_ns);
        timespec ts{0, static_cast<long>(std::min(left, slice))};
        nanosleep(&ts, nullptr);
      }
    }
  }
  if (show_progress) Progress(spec, true);

  // Drain what is still in flight; what never comes back is LOST.
  const int64_t drain_end = NowNs() + SecondsToNs(o_.drain_s);
  while (outstanding_ > 0 && NowNs() < drain_end) {
    target_.Poll(
        std::chrono::milliseconds(std::clamp<int64_t>((drain_end - NowNs()) / 1'000'000, 1, 100)),
        *this);
  }
  if (outstanding_ > 0) result.errors["LOST"] += outstanding_;
  result.seconds = static_cast<double>(window_end - window_start) / 1e9;
  result_ = nullptr;
  return result;
}

}  // namespace zserve::bench
