// A replica's Prometheus metrics (docs/metrics.md), labelled with its backend
// and replica tag: requests answered, errors, starts, the time a request
// waits in the worker before its handler call, the handler call's duration
// by batch size, and the requests queued and processing right now.
//
// Thread-safe: the I/O thread counts what arrives, the pool threads what
// they run. The registry is borrowed and must outlive this object.
#ifndef ZSERVE_WORKER_WORKER_METRICS_H_
#define ZSERVE_WORKER_WORKER_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/metrics_server.h"
#include "common/zmq_util.h"

namespace zserve::worker {

class WorkerMetrics {
 public:
  // `start_count`: how many times the supervisor has started this replica,
  // this run included (WorkerOptions::start_count).
  WorkerMetrics(prometheus::Registry& registry, const std::string& backend,
                const std::string& replica, uint64_t start_count);
  WorkerMetrics(const WorkerMetrics&) = delete;
  WorkerMetrics& operator=(const WorkerMetrics&) = delete;

  // `n` requests arrived in a BATCH: queued.
  void Received(size_t n);
  // `n` requests leave the queue for a handler thread; Tally::Waited() for
  // each.
  void Started(size_t n);
  // `n` requests are answered, `errors` of them not OK.
  void Answered(size_t n, size_t errors);

  // One thread's histogram observations, counted in plain numbers and handed
  // to Prometheus in one call per histogram by Flush(), once per share of
  // work: observed one by one, each would take the histogram's lock (and
  // the handler call its batch size's lookup) per request. The gauges and
  // counters above move at once. For one thread; flush before the results
  // it counted are sent.
  class Tally {
   public:
    explicit Tally(WorkerMetrics& metrics);
    // From a request's arrival to its handler call.
    void Waited(Clock::duration waited);
    // One handler call over `batch_size` requests took `took`.
    void HandlerCall(size_t batch_size, Clock::duration took);
    void Flush();

   private:
    WorkerMetrics& metrics_;
    BufferedHistogram waited_;
    std::vector<std::optional<BufferedHistogram>> by_batch_size_;  // index: batch size
  };

 private:
  prometheus::Family<prometheus::Histogram>& processing_duration_;
  prometheus::Labels labels_;  // backend, replica
  prometheus::Counter& requests_;
  prometheus::Counter& errors_;
  prometheus::Counter& starts_;
  prometheus::Histogram& queuing_duration_;
  prometheus::Gauge& queued_;
  prometheus::Gauge& processing_;
  // The handler call histogram of one batch size, made on first use.
  prometheus::Histogram& ProcessingDuration(size_t batch_size);

  std::mutex mu_;
  std::vector<prometheus::Histogram*> by_batch_size_;  // guarded by mu_; index: batch size
};

}  // namespace zserve::worker

#endif  // ZSERVE_WORKER_WORKER_METRICS_H_
