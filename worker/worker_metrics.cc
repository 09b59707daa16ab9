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

pm::Histogram& WorkerMetrics::ProcessingDuration(size_t batch_size) {
  std::lock_guard<std::mutex> lock(mu_);
  if (by_batch_size_.size() <= batch_size) by_batch_size_.resize(batch_size + 1, nullptr);
  pm::Histogram*& h = by_batch_size_[batch_size];
  if (h == nullptr) {
    pm::Labels l = labels_;
    l["batch_size"] = std::to_string(batch_size);
    h = &processing_duration_.Add(l, LatencyBuckets());
  }
  return *h;
}

void WorkerMetrics::Answered(size_t n, size_t errors) {
  processing_.Decrement(static_cast<double>(n));
  requests_.Increment(static_cast<double>(n));
  if (errors > 0) errors_.Increment(static_cast<double>(errors));
}

WorkerMetrics::Tally::Tally(WorkerMetrics& metrics)
    : metrics_(metrics), waited_(metrics.queuing_duration_, LatencyBuckets()) {}

void WorkerMetrics::Tally::Waited(Clock::duration waited) { waited_.Observe(Seconds(waited)); }

void WorkerMetrics::Tally::HandlerCall(size_t batch_size, Clock::duration took) {
  if (by_batch_size_.size() <= batch_size) by_batch_size_.resize(batch_size + 1);
  std::optional<BufferedHistogram>& h = by_batch_size_[batch_size];
  if (!h) h.emplace(metrics_.ProcessingDuration(batch_size), LatencyBuckets());
  h->Observe(Seconds(took));
}

void WorkerMetrics::Tally::Flush() {
  waited_.Flush();
  for (std::optional<BufferedHistogram>& h : by_batch_size_) {
    if (h) h->Flush();
  }
}

}  // namespace zserve::worker
