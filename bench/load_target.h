// LoadTarget: what a load generator drives — one system under test (zserve
// through its client library, NATS request-reply, a raw ZeroMQ echo server).
// The generator sends requests tagged with a number of its choosing; the
// target reports each one exactly once, through the sink, from inside Poll().
//
// One thread owns a target and calls every method; nothing blocks except
// Poll(), for at most its timeout.
#ifndef ZSERVE_BENCH_LOAD_TARGET_H_
#define ZSERVE_BENCH_LOAD_TARGET_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "zserve/status.h"

namespace zserve::bench {

// One run of a sweep.
struct RunSpec {
  bool open_loop = false;
  int inflight = 0;          // closed loop: requests kept in flight
  double rate_rps = 0;       // open loop: target rate, Poisson arrivals
  size_t payload_size = 0;   // bytes
  double send_every_us = 0;  // open loop: arrivals due are sent together this often
};

class CompletionSink {
 public:
  virtual ~CompletionSink() = default;
  // `error` is empty for a good reply, else the error type ("OVERLOADED",
  // "BAD_REPLY", ...).
  virtual void Done(uint64_t tag, std::string_view error) = 0;
};

class LoadTarget {
 public:
  virtual ~LoadTarget() = default;
  // Called before each run of a sweep, with nothing in flight.
  virtual Status Prepare(const RunSpec& /*spec*/) { return Status::Ok(); }
  // How the target is set up for this run, for the report ("send_asap").
  virtual std::string Settings(const RunSpec& /*spec*/) const { return ""; }
  // Starts one request. A failure to send is reported at the next Poll().
  virtual void Send(uint64_t tag, std::string_view payload) = 0;
  // Reports the requests that completed, waiting at most `timeout` for the
  // first one (0: no wait).
  virtual void Poll(std::chrono::milliseconds timeout, CompletionSink& sink) = 0;
};

}  // namespace zserve::bench

#endif  // ZSERVE_BENCH_LOAD_TARGET_H_
