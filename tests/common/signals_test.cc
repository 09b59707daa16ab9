// ForkForExec (common/signals.h): a signal that reaches a child before its
// exec acts on the child alone, never through the parent's SignalPipe.
#include "common/signals.h"

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>

namespace zserve {
namespace {

TEST_CASE("A child signalled before its exec dies of it and leaves the parent's pipe alone",
          "[common]") {
  SignalPipe& pipe = SignalPipe::Install();
  pipe.Take();
  const pid_t child = ForkForExec();
  REQUIRE(child >= 0);
  if (child == 0) {
    raise(SIGTERM);  // as `up` stopping a worker it has just forked
    _exit(0);        // reached only if the parent's handler caught it here
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGTERM);
  // Before, the child ran the parent's handler, which wrote SIGTERM into the
  // pipe both share: `up` read it as its own and stopped the stack.
  for (int signo : pipe.Take()) CHECK(signo != SIGTERM);
}

}  // namespace
}  // namespace zserve
