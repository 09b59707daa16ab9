#include "controller/config_store.h"

namespace zserve::controller {

StatusOr<bool> ConfigStore::Replace(schemas::ConfigState next) {
  if (Status s = schemas::Validate(next); !s.ok()) return s;
  if (version_ > 0 && next == state_) return false;
  state_ = std::move(next);
  ++version_;
  return true;
}

}  // namespace zserve::controller
