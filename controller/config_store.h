// The controller's versioned configuration. Every accepted change is
// validated and committed as version + 1; a change that changes nothing keeps
// the version.
//
// In memory for now: durability in SQLite replaces this class's storage
// behind the same interface (the control-plane issue). Not thread-safe: owned
// by the controller's I/O thread.
#ifndef ZSERVE_CONTROLLER_CONFIG_STORE_H_
#define ZSERVE_CONTROLLER_CONFIG_STORE_H_

#include <cstdint>

#include "schemas/config.h"
#include "zserve/status.h"

namespace zserve::controller {

class ConfigStore {
 public:
  uint64_t version() const { return version_; }
  const schemas::ConfigState& state() const { return state_; }

  // Validates and commits `next`. True if it changed the state (version + 1),
  // false if it was the same; an invalid state is refused, nothing changed.
  StatusOr<bool> Replace(schemas::ConfigState next);

 private:
  uint64_t version_ = 0;
  schemas::ConfigState state_;
};

}  // namespace zserve::controller

#endif  // ZSERVE_CONTROLLER_CONFIG_STORE_H_
