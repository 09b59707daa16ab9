// getpid() for zserve's executables, from a cache instead of a system call.
//
// libzmq asks getpid() on every mailbox operation (signaler.cpp: a send, a
// wait, a receive), to notice that it runs in a forked child. glibc stopped
// caching the pid in 2.25, so each of those is a system call, about eleven
// per ZeroMQ message in each process, and a system call costs 1.1 µs on the
// VMs zserve is benchmarked on (docs/benchmarks.md, "Where the broker's time
// goes"). Linked into an executable, this definition is the one libzmq's
// calls resolve to (an executable's symbols come first).
//
// The cache follows fork(): a pthread_atfork child handler resets it, so a
// forked child answers its own pid. A child made by vfork() or
// posix_spawn() runs no atfork handler, but until its exec it reads (never
// writes, since the cache is filled at start-up) the parent's value; zserve
// forks with fork() and calls getpid() in no such child.
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

namespace {

std::atomic<pid_t> cached_pid{0};

pid_t Fetch() {
  pid_t pid = static_cast<pid_t>(syscall(SYS_getpid));
  cached_pid.store(pid, std::memory_order_relaxed);
  return pid;
}

// Filled before main, and again in every child fork() makes.
[[maybe_unused]] const bool registered = [] {
  Fetch();
  pthread_atfork(nullptr, nullptr, [] { Fetch(); });
  return true;
}();

}  // namespace

extern "C" pid_t getpid() noexcept {
  pid_t pid = cached_pid.load(std::memory_order_relaxed);
  return pid != 0 ? pid : Fetch();
}
