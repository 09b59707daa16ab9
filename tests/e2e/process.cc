#include "tests/e2e/process.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
// TestEventListenerBase, for the listener below, outside Catch's own file.
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <catch2/catch.hpp>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <mutex>

#include "common/signals.h"

namespace zserve::testing {

using Clock = std::chrono::steady_clock;

Process::Process(const std::string& binary, const std::vector<std::string>& args,
                 const std::string& stderr_path) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) std::abort();
  // Made before fork(): the test may have other threads, one of which may
  // hold the allocator's lock at the fork; the child only makes
  // async-signal-safe calls until its exec.
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(binary.c_str()));
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  pid_ = ForkForExec();
  if (pid_ == 0) {
    // Dies with the test, also when the test dies without running its
    // destructors (a crash, a sanitizer's halt), instead of outliving it.
    if (!DieWithParent(parent, SIGKILL)) _exit(1);
    setpgid(0, 0);  // for SignalGroup
    dup2(fds[1], STDOUT_FILENO);
    if (!stderr_path.empty()) {
      int err = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (err >= 0) dup2(err, STDERR_FILENO);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  setpgid(pid_, pid_);  // as the child does: whichever runs first (no race with SignalGroup)
  close(fds[1]);
  out_fd_ = fds[0];
  pid_fd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
  if (pid_fd_ < 0) std::abort();
}

Process::~Process() {
  if (!exit_code_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (out_fd_ >= 0) close(out_fd_);
  if (pid_fd_ >= 0) close(pid_fd_);
}

bool Process::ReadSome(int timeout_ms) {
  if (eof_) return false;
  pollfd p{out_fd_, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) <= 0) return false;
  char buf[4096];
  ssize_t n = read(out_fd_, buf, sizeof buf);
  if (n <= 0) {
    eof_ = true;
    return false;
  }
  out_.append(buf, static_cast<size_t>(n));
  return true;
}

bool Process::WaitForLine(const std::string& needle, std::chrono::milliseconds limit) {
  auto end = Clock::now() + limit;
  while (out_.find(needle) == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
    if (left.count() <= 0) return false;
    if (!ReadSome(static_cast<int>(left.count())) && (eof_ || Wait(std::chrono::milliseconds(0)))) {
      return out_.find(needle) != std::string::npos;  // stdout closed or exited
    }
  }
  return true;
}

void Process::Signal(int signo) {
  if (!exit_code_ && pid_ > 0) kill(pid_, signo);
}

void Process::SignalGroup(int signo) {
  if (!exit_code_ && pid_ > 0) kill(-pid_, signo);
}

std::optional<int> Process::Wait(std::chrono::milliseconds limit) {
  if (!exit_code_) {
    // A pidfd turns readable when the process exits. Meanwhile stdout is
    // read, so that a chatty child never blocks on a full pipe.
    auto end = Clock::now() + limit;
    while (true) {
      pollfd p[2] = {{pid_fd_, POLLIN, 0}, {out_fd_, POLLIN, 0}};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
      int n = poll(p, eof_ ? 1 : 2, static_cast<int>(std::max<int64_t>(left.count(), 0)));
      if (n <= 0) return std::nullopt;
      if (p[0].revents != 0) break;
      ReadSome(0);
    }
    int status = 0;
    if (waitpid(pid_, &status, 0) != pid_) return std::nullopt;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  while (ReadSome(0)) {
  }
  return exit_code_;
}

namespace {

// The directories MakeTempDir made in this process.
struct TempDirs {
  std::mutex mu;
  std::vector<std::string> paths;
};
TempDirs& Made() {
  static TempDirs dirs;
  return dirs;
}

// At the end of a test run: its directories go when every test passed, and
// stay (named on stderr) for a look when one failed, or when
// ZSERVE_KEEP_TEST_DIRS is set.
class TempDirCleaner : public Catch::TestEventListenerBase {
 public:
  using TestEventListenerBase::TestEventListenerBase;
  void testRunEnded(const Catch::TestRunStats& stats) override {
    TempDirs& dirs = Made();
    std::lock_guard lock(dirs.mu);
    const bool keep = stats.totals.assertions.failed > 0 || stats.totals.testCases.failed > 0 ||
                      std::getenv("ZSERVE_KEEP_TEST_DIRS") != nullptr;
    for (const std::string& path : dirs.paths) {
      if (keep) {
        std::cerr << "test directory kept: " << path << "\n";
      } else {
        std::error_code ignored;  // a process of the test may still be leaving
        std::filesystem::remove_all(path, ignored);
      }
    }
    dirs.paths.clear();
  }
};
CATCH_REGISTER_LISTENER(TempDirCleaner)

}  // namespace

std::string MakeTempDir() {
  std::string tmpl = "/tmp/zserve-test-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  TempDirs& dirs = Made();
  std::lock_guard lock(dirs.mu);
  dirs.paths.push_back(tmpl);
  return tmpl;
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace zserve::testing
