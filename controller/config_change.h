// What an admin command does to the configuration, as pure functions: the
// state a command would produce (validated; a refusal says why and changes
// nothing), and the difference between two states as lines for operators
// (`zserve ctl`, `zserve apply`).
//
// No I/O; safe from any thread.
#ifndef ZSERVE_CONTROLLER_CONFIG_CHANGE_H_
#define ZSERVE_CONTROLLER_CONFIG_CHANGE_H_

#include <string>
#include <vector>

#include "schemas/codec.h"
#include "schemas/config.h"
#include "zserve/status.h"

namespace zserve::controller {

// The state after `request` (any admin command; GET_STATE gives `current`).
// NOT_FOUND for a backend or endpoint that does not exist, BAD_REQUEST for
// any other refusal.
StatusOr<schemas::ConfigState> ApplyAdminRequest(const schemas::ConfigState& current,
                                                 const schemas::AdminRequest& request);

// One line per backend or endpoint created (+), changed (~) or deleted (-),
// naming the fields that changed: "~ backend mlp: num_replicas 1 -> 2".
// Empty when the states are equal.
std::vector<std::string> DiffStates(const schemas::ConfigState& from,
                                    const schemas::ConfigState& to);

}  // namespace zserve::controller

#endif  // ZSERVE_CONTROLLER_CONFIG_CHANGE_H_
