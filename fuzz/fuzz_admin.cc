// libFuzzer target: the controller's admin command path, as the controller
// runs it on each command: schemas DecodeAdminRequest, then
// controller/config_change.h ApplyAdminRequest and DiffStates.
//
// Input: frames (fuzz_input.h), each one admin command header, applied in
// turn starting from AdminBaseState(); a command that is refused leaves the
// state as it was. Aborts when an accepted command gives a state that does
// not validate, does not survive SNAPSHOT and ADMIN_REPLY encoding, or whose
// diff disagrees with equality, and when a refusal is neither NOT_FOUND nor
// BAD_REQUEST (the contract of ApplyAdminRequest).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "controller/config_change.h"
#include "fuzz/admin_state.h"
#include "fuzz/fuzz_input.h"
#include "schemas/codec.h"
#include "schemas/config.h"

namespace zserve::fuzz {
namespace {

namespace sc = zserve::schemas;

[[noreturn]] void Fail(const std::string& why) {
  std::fprintf(stderr, "fuzz_admin: %s\n", why.c_str());
  std::abort();
}

void Check(const sc::ConfigState& from, const sc::AdminRequest& request,
           const StatusOr<sc::ConfigState>& next) {
  if (!next.ok()) {
    StatusCode code = next.status().code();
    if (code != StatusCode::kNotFound && code != StatusCode::kBadRequest) {
      Fail("refused with " + next.status().ToString());
    }
    return;
  }
  if (Status s = sc::Validate(*next); !s.ok()) Fail("accepted an invalid state: " + s.ToString());
  if (request.command == sc::Command::kGetState && !(*next == from)) {
    Fail("GET_STATE changed the state");
  }
  std::vector<std::string> diff = controller::DiffStates(from, *next);
  if (diff.empty() != (from == *next)) Fail("DiffStates disagrees with equality");
  // The controller publishes the new state and answers with it.
  StatusOr<sc::Snapshot> published =
      sc::DecodeSnapshot(sc::EncodeSnapshot(sc::Command::kUpdate, {7, *next}));
  if (!published.ok()) {
    Fail("a valid state does not survive UPDATE: " + published.status().ToString());
  }
  if (!(published->state == *next)) Fail("UPDATE changed a valid state");
  sc::AdminReply reply{request.request_id, StatusCode::kOk, "", 7, diff, *next};
  StatusOr<sc::AdminReply> answered = sc::DecodeAdminReply(sc::EncodeAdminReply(reply));
  if (!answered.ok()) Fail("ADMIN_REPLY does not decode: " + answered.status().ToString());
  if (!(answered->state == *next)) Fail("ADMIN_REPLY changed a valid state");
  // APPLY of the result reproduces it from anywhere.
  sc::AdminRequest apply;
  apply.command = sc::Command::kApply;
  apply.state = *next;
  StatusOr<sc::ConfigState> again = controller::ApplyAdminRequest(sc::ConfigState(), apply);
  if (!again.ok() || !(*again == *next)) Fail("APPLY of a valid state is refused or differs");
}

}  // namespace
}  // namespace zserve::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace zserve;
  static const schemas::ConfigState kBase = fuzz::AdminBaseState();
  schemas::ConfigState state = kBase;
  fuzz::FuzzReader in(data, size);
  while (!in.Empty()) {
    StatusOr<schemas::AdminRequest> request = schemas::DecodeAdminRequest(in.Frame());
    if (!request.ok()) continue;
    StatusOr<schemas::ConfigState> next = controller::ApplyAdminRequest(state, *request);
    fuzz::Check(state, *request, next);
    if (next.ok()) state = std::move(next).value();
  }
  return 0;
}
