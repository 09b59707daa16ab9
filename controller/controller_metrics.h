// The controller's Prometheus metrics (docs/metrics.md): the config version
// it holds, admin commands served and refused (by command), snapshots
// served, and messages it could not decode. Label values come from the fixed
// set of command names.
//
// Called from the controller's I/O thread; the registry is borrowed and must
// outlive this object.
#ifndef ZSERVE_CONTROLLER_CONTROLLER_METRICS_H_
#define ZSERVE_CONTROLLER_CONTROLLER_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <string_view>

namespace zserve::controller {

class ControllerMetrics {
 public:
  explicit ControllerMetrics(prometheus::Registry& registry);
  ControllerMetrics(const ControllerMetrics&) = delete;
  ControllerMetrics& operator=(const ControllerMetrics&) = delete;

  void SetVersion(uint64_t version);
  // An admin command (by name, e.g. "SET_TRAFFIC") was answered; refused:
  // not OK (nothing changed).
  void Admin(std::string_view command, bool refused);
  void SnapshotServed();
  void Malformed();

 private:
  prometheus::Family<prometheus::Counter>& admin_;
  prometheus::Family<prometheus::Counter>& refusals_;
  prometheus::Gauge& version_;
  prometheus::Counter& snapshots_;
  prometheus::Counter& malformed_;
};

}  // namespace zserve::controller

#endif  // ZSERVE_CONTROLLER_CONTROLLER_METRICS_H_
