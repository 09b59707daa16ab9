// Reads a deployment file (YAML) into a validated ConfigState. The format is
// documented in docs/deployment.md; examples/deployment.yaml is the default
// of `zserve up`.
//
// Pure functions; safe from any thread.
#ifndef ZSERVE_CONTROLLER_DEPLOYMENT_FILE_H_
#define ZSERVE_CONTROLLER_DEPLOYMENT_FILE_H_

#include <string>

#include "schemas/config.h"
#include "zserve/status.h"

namespace zserve::controller {

// From YAML text; `origin` names the source in error messages.
StatusOr<schemas::ConfigState> ParseDeployment(const std::string& yaml, const std::string& origin);
StatusOr<schemas::ConfigState> LoadDeploymentFile(const std::string& path);

}  // namespace zserve::controller

#endif  // ZSERVE_CONTROLLER_DEPLOYMENT_FILE_H_
