// Signals of a process. SignalPipe turns SIGINT, SIGTERM and SIGHUP into
// bytes on a pipe, so that a poll loop can wait on its sockets and on
// signals at once (the self-pipe trick); DieWithParent ties a forked child
// to its parent.
//
// SignalPipe is process-wide by nature: install once, from the main thread,
// before other threads start. Take() is called by the thread that polls fd().
#ifndef ZSERVE_COMMON_SIGNALS_H_
#define ZSERVE_COMMON_SIGNALS_H_

#include <sys/types.h>

#include <vector>

namespace zserve {

class SignalPipe {
 public:
  // Installs handlers for SIGINT, SIGTERM and SIGHUP; ignores SIGPIPE.
  static SignalPipe& Install();

  int fd() const { return read_fd_; }
  // The signals received since the last call, in order; never blocks.
  std::vector<int> Take();
  // Has the handler of SIGINT and SIGTERM also call `fn` (nullptr: none),
  // before it writes to the pipe: for what must not wait for the thread
  // that reads the pipe (a worker's drain, while that thread is in a
  // handler call). `fn` may make async-signal-safe calls only.
  void OnStopSignal(void (*fn)());

 private:
  SignalPipe();
  int read_fd_ = -1;
};

// fork() for a child that goes on to exec. Signals are blocked across the
// fork, and the child puts the handlers SignalPipe installs back to their
// defaults before it unblocks them: a signal sent to the child before its
// exec then acts on the child alone, instead of running this process's
// handler in it (which writes to this process's signal pipe, so that a
// SIGTERM meant for a new worker stopped the whole of `zserve up`). Returns
// as fork() does; the child should make only async-signal-safe calls until
// its exec.
pid_t ForkForExec();

// Called in a child just forked from `parent`: the child gets `signo` when
// the parent dies, even on its kill -9 (PR_SET_PDEATHSIG). False when the
// parent is gone already; the child should then leave.
bool DieWithParent(pid_t parent, int signo);

}  // namespace zserve

#endif  // ZSERVE_COMMON_SIGNALS_H_
