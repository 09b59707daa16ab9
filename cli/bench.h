// `zserve bench`: the load generator against a running zserve broker
// (bench/load_generator.h does the loop; this file plugs in the client
// library). Closed and open loop, swept; throughput, latency quantiles,
// errors by type and the broker's CPU time per request.
#ifndef ZSERVE_CLI_BENCH_H_
#define ZSERVE_CLI_BENCH_H_

#include <CLI/CLI.hpp>
#include <functional>

namespace zserve::cli {

// Adds the `bench` subcommand to `app`. The returned function runs it once
// the command line is parsed (returns the exit code); call it only when the
// subcommand was parsed.
std::function<int()> AddBenchCommand(CLI::App& app);

}  // namespace zserve::cli

#endif  // ZSERVE_CLI_BENCH_H_
