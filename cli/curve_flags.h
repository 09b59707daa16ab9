// The CURVE flags of the zserve subcommands (docs/security.md), each also
// read from a ZSERVE_CURVE_* environment variable, and `zserve keygen`.
#ifndef ZSERVE_CLI_CURVE_FLAGS_H_
#define ZSERVE_CLI_CURVE_FLAGS_H_

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

#include "zserve/curve.h"
#include "zserve/status.h"

namespace zserve::cli {

// Which server keys a subcommand connects with, and whether it is a server
// itself (then it takes an allow-list).
enum CurveFlagSet : unsigned {
  kCurveAllow = 1,       // --curve-allow
  kCurveBroker = 2,      // --curve-broker-key
  kCurveController = 4,  // --curve-controller-key
};

struct CurveFlags {
  unsigned which = 0;
  std::string key;             // own key pair: file or secret key
  std::string allow;           // allow-list file
  std::string broker_key;      // file or public key
  std::string controller_key;  // file or public key

  void Add(CLI::App* cmd, unsigned flag_set);
};

// The keys the flags name, loaded and checked: none at all (plain ZeroMQ),
// or the key pair with every server key this subcommand connects with.
struct CurveKeys {
  KeyPair key;
  std::string allow_file;
  std::string broker_key;
  std::string controller_key;
};
StatusOr<CurveKeys> LoadCurveKeys(const CurveFlags& flags);

// Registers `zserve keygen`; the returned function runs it once parsed.
std::function<int()> AddKeygenCommand(CLI::App& app);

}  // namespace zserve::cli

#endif  // ZSERVE_CLI_CURVE_FLAGS_H_
