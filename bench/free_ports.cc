// free_ports N: prints N distinct TCP ports on 127.0.0.1 that were free a
// moment ago, one a line, for bench/run.sh to hand to the servers it starts.
#include <cstdio>
#include <cstdlib>
#include <set>

#include "common/zmq_util.h"

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 1;
  std::set<int> ports;
  for (int tries = 0; static_cast<int>(ports.size()) < n && tries < 100 * n; ++tries) {
    int port = zserve::PickFreeLoopbackPort();
    if (port > 0) ports.insert(port);
  }
  if (static_cast<int>(ports.size()) < n) return 1;
  for (int port : ports) std::printf("%d\n", port);
  return 0;
}
