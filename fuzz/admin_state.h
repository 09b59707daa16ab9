// The configuration fuzz_admin starts every input from (and make_seeds
// writes commands against): three backends, two endpoints, a shadow, a route.
#ifndef ZSERVE_FUZZ_ADMIN_STATE_H_
#define ZSERVE_FUZZ_ADMIN_STATE_H_

#include "schemas/config.h"

namespace zserve::fuzz {

inline schemas::ConfigState AdminBaseState() {
  schemas::ConfigState s;
  for (const char* name : {"echo", "mlp", "sleep"}) {
    schemas::BackendConfig b;
    b.name = name;
    b.handler = name;
    s.backends.emplace(name, b);
  }
  s.backends["mlp"].max_batch_size = 8;
  s.backends["mlp"].batch_wait_timeout_ms = 5;
  s.backends["mlp"].user_config = "{layers: 3}";
  schemas::EndpointConfig echo;
  echo.name = "echo";
  echo.traffic = {{"echo", 1.0}};
  echo.route = "/echo";
  s.endpoints.emplace("echo", echo);
  schemas::EndpointConfig mlp;
  mlp.name = "mlp";
  mlp.traffic = {{"mlp", 0.9}, {"echo", 0.1}};
  mlp.shadow = {{"sleep", 0.5}};
  mlp.timeout_ms = 5000;
  mlp.methods = {"POST"};
  s.endpoints.emplace("mlp", mlp);
  return s;
}

}  // namespace zserve::fuzz

#endif  // ZSERVE_FUZZ_ADMIN_STATE_H_
