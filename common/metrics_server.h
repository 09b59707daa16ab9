// The HTTP side of a process's metrics: serves the Prometheus text format of
// one registry at /metrics, plus any extra plain-text paths the process adds
// (the broker's /healthz and /readyz). One per process, on its own port.
//
// Built on civetweb, the server prometheus-cpp's Exposer embeds: the Exposer
// cannot serve paths other than collectables, so we drive civetweb directly.
// The registry is borrowed and must outlive the server. Requests are served
// on civetweb's own threads: a Handler must be thread-safe (read atomics).
// Destroying the server stops it (blocks until in-flight requests finish).
#ifndef ZSERVE_COMMON_METRICS_SERVER_H_
#define ZSERVE_COMMON_METRICS_SERVER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/zmq_util.h"
#include "zserve/status.h"

class CivetServer;
class CivetHandler;

#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <utility>
#include <vector>

namespace zserve {

// The histogram buckets of every zserve duration, in seconds: they resolve
// 100 µs at the low end and 10 s at the high end.
const std::vector<double>& LatencyBuckets();

// A metric family in `registry`, from prometheus::BuildCounter(), BuildGauge()
// or BuildHistogram().
template <typename Builder>
auto& RegisterFamily(Builder builder, prometheus::Registry& registry, const std::string& name,
                     const std::string& help) {
  return builder.Name(name).Help(help).Register(registry);
}

// A duration as a histogram observation.
inline double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// A histogram for one thread's hot path: observations go to plain numbers
// and reach Prometheus in one call per Flush(), where Observe() on the
// prometheus::Histogram takes a lock and two atomic adds each time.
class BufferedHistogram {
 public:
  BufferedHistogram(prometheus::Histogram& target, const std::vector<double>& bounds)
      : target_(&target), bounds_(&bounds), counts_(bounds.size() + 1) {}
  // True for the first observation since the last Flush().
  bool Observe(double value) {
    // The bucket prometheus::Histogram::Observe would count it in.
    size_t i = std::lower_bound(bounds_->begin(), bounds_->end(), value) - bounds_->begin();
    counts_[i] += 1;
    sum_ += value;
    return !std::exchange(pending_, true);
  }
  void Flush();

 private:
  prometheus::Histogram* target_;
  const std::vector<double>* bounds_;
  std::vector<double> counts_;  // per bucket, since the last Flush
  double sum_ = 0;
  bool pending_ = false;
};

// What an extra path answers: an HTTP status and a plain-text body.
struct HttpAnswer {
  int code = 200;
  std::string body;
};

struct MetricsServerOptions {
  // "HOST:PORT", e.g. "127.0.0.1:9101"; port 0 picks a free port.
  std::string bind;
  prometheus::Registry* registry = nullptr;  // required, borrowed
  // Extra paths (e.g. "/readyz"), served to GET and HEAD like /metrics;
  // called on a server thread.
  std::map<std::string, std::function<HttpAnswer()>> handlers;
};

class MetricsServer {
 public:
  static StatusOr<std::unique_ptr<MetricsServer>> Create(const MetricsServerOptions& options);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const { return port_; }
  // "127.0.0.1:PORT" (the host of the bind address).
  std::string address() const;

 private:
  MetricsServer() = default;
  std::string host_;
  int port_ = 0;
  std::vector<std::unique_ptr<CivetHandler>> handlers_;  // outlive server_
  std::unique_ptr<CivetServer> server_;
};

}  // namespace zserve

#endif  // ZSERVE_COMMON_METRICS_SERVER_H_
