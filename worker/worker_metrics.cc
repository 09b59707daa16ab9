#include "worker/worker_metrics.h"

#include "common/metrics_server.h"

namespace zserve::worker {

namespace pm = prometheus;

WorkerMetrics::WorkerMetrics(pm::Registry& registry, const std::string& backend,
                             const std::string& replica, uint64_t start_count)
    : processing_duration_(RegisterFamily(pm::BuildHistogram(), registry,
                                          "zserve_replica_processing_duration_seconds",
                                          "Duration of one handler call, by batch size")),
      labels_{{"backend", backend}, {"replica", replica}},
      requests_(RegisterFamily(pm::BuildCounter(), registry, "zserve_replica_requests_total",
                               "Requests this replica answered")
                    .Add(labels_)),
      errors_(RegisterFamily(pm::BuildCounter(), registry, "zserve_replica_errors_total",
                             "Requests this replica answered with an error")
                  .Add(labels_)),
      starts_(RegisterFamily(pm::BuildCounter(), registry, "zserve_replica_starts_total",
                             "Times the supervisor started this replica, this run included")
                  .Add(labels_)),
      queuing_duration_(
          RegisterFamily(pm::BuildHistogram(), registry, "zserve_replica_queuing_duration_seconds",
                         "From a request's arrival at the replica to its handler call")
              .Add(labels_, LatencyBuckets())),
      queued_(RegisterFamily(pm::BuildGauge(), registry, "zserve_replica_queued_requests",
                             "Requests received and waiting for a handler thread")
                  .Add(labels_)),
      processing_(RegisterFamily(pm::BuildGauge(), registry, "zserve_replica_processing_requests",
                                 "Requests in a handler call right now")
                      .Add(labels_)) {
  starts_.Increment(static_cast<double>(start_count));
}

void WorkerMetrics::Received(size_t n) { queued_.Increment(static_cast<double>(n)); }

void WorkerMetrics::Started(size_t n) {
  queued_.Decrement(static_cast<double>(n));
  processing_.Increment(static_cast<double>(n));
}

void WorkerMetrics::Waited(Clock::duration waited) { queuing_duration_.Observe(Seconds(waited)); }

void WorkerMetrics::HandlerCall(size_t batch_size, Clock::duration took) {
  pm::Histogram* h;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (by_batch_size_.size() <= batch_size) by_batch_size_.resize(batch_size + 1, nullptr);
    h = by_batch_size_[batch_size];
    if (h == nullptr) {
      pm::Labels l = labels_;
      l["batch_size"] = std::to_string(batch_size);
      h = by_batch_size_[batch_size] = &processing_duration_.Add(l, LatencyBuckets());
    }
  }
  h->Observe(Seconds(took));
}

void WorkerMetrics::Answered(size_t n, size_t errors) {
  processing_.Decrement(static_cast<double>(n));
  requests_.Increment(static_cast<double>(n));
  if (errors > 0) errors_.Increment(static_cast<double>(errors));
}

}  // namespace zserve::worker
