#include "controller/controller_metrics.h"

#include <string>

#include "common/metrics_server.h"

namespace zserve::controller {

namespace pm = prometheus;

ControllerMetrics::ControllerMetrics(pm::Registry& registry)
    : admin_(RegisterFamily(pm::BuildCounter(), registry, "zserve_controller_admin_requests_total",
                            "Admin commands answered, by command")),
      refusals_(RegisterFamily(pm::BuildCounter(), registry,
                               "zserve_controller_admin_refusals_total",
                               "Admin commands refused (nothing changed), by command")),
      version_(RegisterFamily(pm::BuildGauge(), registry, "zserve_controller_config_version",
                              "Version of the committed configuration")
                   .Add({})),
      snapshots_(RegisterFamily(pm::BuildCounter(), registry, "zserve_controller_snapshots_total",
                                "SNAPSHOTs served to subscribers")
                     .Add({})),
      malformed_(RegisterFamily(pm::BuildCounter(), registry,
                                "zserve_controller_malformed_messages_total",
                                "Messages the controller could not decode (answered ERROR)")
                     .Add({})) {}

void ControllerMetrics::SetVersion(uint64_t version) { version_.Set(static_cast<double>(version)); }

void ControllerMetrics::Admin(std::string_view command, bool refused) {
  // A family's Add finds the existing child: a map lookup, once per command.
  pm::Labels l{{"command", std::string(command)}};
  admin_.Add(l).Increment();
  if (refused) refusals_.Add(l).Increment();
}

void ControllerMetrics::SnapshotServed() { snapshots_.Increment(); }

void ControllerMetrics::Malformed() { malformed_.Increment(); }

}  // namespace zserve::controller
