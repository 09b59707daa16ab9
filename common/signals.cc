#include "common/signals.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>

namespace zserve {
namespace {

int g_write_fd = -1;
std::atomic<void (*)()> g_on_stop{nullptr};

// The signals SignalPipe turns into bytes.
constexpr int kPipedSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGCHLD};

void OnSignal(int signo) {
  int saved = errno;
  if (signo == SIGINT || signo == SIGTERM) {
    if (void (*fn)() = g_on_stop.load()) fn();
  }
  unsigned char b = static_cast<unsigned char>(signo);
  [[maybe_unused]] ssize_t n = write(g_write_fd, &b, 1);  // async-signal-safe
  errno = saved;
}

}  // namespace

SignalPipe::SignalPipe() {
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) std::abort();
  read_fd_ = fds[0];
  g_write_fd = fds[1];
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : kPipedSignals) sigaction(sig, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

SignalPipe& SignalPipe::Install() {
  static SignalPipe* pipe = new SignalPipe();  // lives as long as the process
  return *pipe;
}

void SignalPipe::OnStopSignal(void (*fn)()) { g_on_stop.store(fn); }

std::vector<int> SignalPipe::Take() {
  std::vector<int> out;
  unsigned char buf[64];
  ssize_t n;
  while ((n = read(read_fd_, buf, sizeof buf)) > 0) out.insert(out.end(), buf, buf + n);
  return out;
}

pid_t ForkForExec() {
  sigset_t all, before;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &before);
  const pid_t pid = fork();
  if (pid != 0) {
    pthread_sigmask(SIG_SETMASK, &before, nullptr);
    return pid;
  }
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig : kPipedSignals) sigaction(sig, &dfl, nullptr);
  sigaction(SIGPIPE, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  return 0;
}

bool DieWithParent(pid_t parent, int signo) {
  prctl(PR_SET_PDEATHSIG, signo);
  return getppid() == parent;
}

}  // namespace zserve
