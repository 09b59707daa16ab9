// Test support: real child processes of the zserve binary, started with
// fork/exec, their stdout read through a pipe, stopped by PID with a bounded
// wait. Waits are on conditions (a line on stdout, an exit), never sleeps.
#ifndef ZSERVE_TESTS_E2E_PROCESS_H_
#define ZSERVE_TESTS_E2E_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/zmq_util.h"

namespace zserve::testing {

class Process {
 public:
  // Starts `binary args...`; stdout is captured, stderr goes to `stderr_path`
  // (or is inherited when empty).
  Process(const std::string& binary, const std::vector<std::string>& args,
          const std::string& stderr_path = "");
  ~Process();  // SIGKILL if still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // Reads stdout until a line contains `needle`, or the time runs out.
  bool WaitForLine(const std::string& needle, std::chrono::milliseconds limit);
  // Everything read from stdout so far (after ReadAll: all of it).
  const std::string& output() const { return out_; }
  void Signal(int signo);
  // To its process group, as a terminal's Ctrl-C reaches a foreground job:
  // the process and any child that stayed in its group. Each Process leads
  // a group of its own.
  void SignalGroup(int signo);
  // Waits for the exit; returns the exit code (or 128 + signal), or nullopt
  // if it still runs after `limit`.
  std::optional<int> Wait(std::chrono::milliseconds limit);

 private:
  bool ReadSome(int timeout_ms);
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int pid_fd_ = -1;
  bool eof_ = false;
  std::string out_;
  std::optional<int> exit_code_;
};

// A free TCP port on 127.0.0.1 outside the ephemeral range (PickFreeLoopbackPort).
inline int FreePort() { return PickFreeLoopbackPort(); }

// A fresh directory under the system temp dir. It is removed at the end of
// the test run if every test passed (kept, and named, if one failed or
// ZSERVE_KEEP_TEST_DIRS is set).
std::string MakeTempDir();
void WriteFile(const std::string& path, const std::string& text);
// The whole file; empty if it cannot be read.
std::string ReadFile(const std::string& path);

}  // namespace zserve::testing

#endif  // ZSERVE_TESTS_E2E_PROCESS_H_
