// Turns SIGINT, SIGTERM and SIGHUP into bytes on a pipe, so that a poll loop
// can wait on its sockets and on signals at once (the self-pipe trick).
//
// Process-wide by nature: install once, from the main thread, before other
// threads start. Take() is called by the thread that polls fd().
#ifndef ZSERVE_COMMON_SIGNALS_H_
#define ZSERVE_COMMON_SIGNALS_H_

#include <vector>

namespace zserve {

class SignalPipe {
 public:
  // Installs handlers for SIGINT, SIGTERM and SIGHUP; ignores SIGPIPE.
  static SignalPipe& Install();

  int fd() const { return read_fd_; }
  // The signals received since the last call, in order; never blocks.
  std::vector<int> Take();

 private:
  SignalPipe();
  int read_fd_ = -1;
};

}  // namespace zserve

#endif  // ZSERVE_COMMON_SIGNALS_H_
