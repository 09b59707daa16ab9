// `zserve ctl ...` and `zserve apply FILE`: the operator's side of the
// controller's admin commands (schemas/PROTOCOL.md §4.4). Each invocation
// sends one command, prints what changed (or the state), and exits 0, or
// prints the refusal on stderr and exits 1.
//
// Main thread only.
#ifndef ZSERVE_CLI_CTL_H_
#define ZSERVE_CLI_CTL_H_

#include <CLI/CLI.hpp>
#include <memory>

namespace zserve::cli {

class CtlCommands {
 public:
  // Registers the `ctl` and `apply` subcommands on `app`.
  explicit CtlCommands(CLI::App* app);
  ~CtlCommands();

  // After parsing: whether one of them was given, and running it.
  bool parsed() const;
  int Run();

 private:
  struct Args;
  std::unique_ptr<Args> args_;
};

}  // namespace zserve::cli

#endif  // ZSERVE_CLI_CTL_H_
