// Test support: a whole zserve stack (`zserve up`) on free loopback ports,
// from a deployment file written by the test, with the controller's store in
// the test's own directory. Ready when `up` says so (every endpoint is
// served) and, beyond that, every backend has all its replicas registered, so
// that a test starts from the whole deployment and not from whichever
// replicas came up first.
#ifndef ZSERVE_TESTS_E2E_STACK_H_
#define ZSERVE_TESTS_E2E_STACK_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "tests/e2e/process.h"

namespace zserve::testing {

inline constexpr const char* kBinary = ZSERVE_BINARY;

// Polls the broker's STATUS until every backend has as many replicas
// registered as it wants; false after `limit`.
bool AllReplicasRegistered(const std::string& broker_address, std::chrono::milliseconds limit);

class Stack {
 public:
  // `extra_args` are added to `zserve up`'s command line.
  explicit Stack(const std::string& deployment_yaml,
                 const std::vector<std::string>& extra_args = {});
  ~Stack();  // SIGTERM, bounded wait, then SIGKILL

  bool ready() const { return ready_; }
  std::string client_address() const;
  std::string worker_address() const;
  std::string admin_address() const;    // the controller's ROUTER
  std::string updates_address() const;  // the controller's PUB
  // The HTTP gateway's base URL, "http://127.0.0.1:PORT", as `up` printed it
  // (up runs with --http-port 0); empty if it printed none.
  std::string http_url() const;
  Process& up() { return *up_; }
  const std::string& dir() const { return dir_; }
  std::string log() const;  // everything the stack wrote to stderr

 private:
  std::string dir_;
  int client_port_ = 0, worker_port_ = 0, admin_port_ = 0, pub_port_ = 0;
  std::unique_ptr<Process> up_;
  bool ready_ = false;
};

}  // namespace zserve::testing

#endif  // ZSERVE_TESTS_E2E_STACK_H_
