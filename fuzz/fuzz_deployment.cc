// libFuzzer target: the deployment file loader, controller/deployment_file.h
// ParseDeployment, on the whole input as YAML text.
//
// It must never crash or let an exception out. A state it accepts must
// validate and survive SNAPSHOT encoding unchanged (aborts otherwise).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "controller/config_change.h"
#include "controller/deployment_file.h"
#include "schemas/codec.h"
#include "schemas/config.h"

namespace {

[[noreturn]] void Fail(const std::string& why) {
  std::fprintf(stderr, "fuzz_deployment: %s\n", why.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace zserve;
  std::string yaml(reinterpret_cast<const char*>(data), size);
  StatusOr<schemas::ConfigState> state = controller::ParseDeployment(yaml, "fuzz.yaml");
  if (!state.ok()) {
    if (state.status().code() != StatusCode::kBadRequest) {
      Fail("refused with " + state.status().ToString());
    }
    return 0;
  }
  if (Status s = schemas::Validate(*state); !s.ok()) {
    Fail("accepted an invalid state: " + s.ToString());
  }
  StatusOr<schemas::Snapshot> snapshot =
      schemas::DecodeSnapshot(schemas::EncodeSnapshot(schemas::Command::kSnapshot, {1, *state}));
  if (!snapshot.ok()) Fail("the state does not survive SNAPSHOT: " + snapshot.status().ToString());
  if (!(snapshot->state == *state)) Fail("SNAPSHOT changed the state");
  const size_t created = controller::DiffStates(schemas::ConfigState(), *state).size();
  if (created != state->backends.size() + state->endpoints.size()) {
    Fail("DiffStates from nothing does not list every backend and endpoint");
  }
  return 0;
}
