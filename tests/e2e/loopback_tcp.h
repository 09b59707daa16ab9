// Test support: a plain TCP connection to a loopback port, for tests that
// speak HTTP by hand or hold a connection open without sending.
#ifndef ZSERVE_TESTS_E2E_LOOPBACK_TCP_H_
#define ZSERVE_TESTS_E2E_LOOPBACK_TCP_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>

namespace zserve::testing {

// A connected socket to 127.0.0.1:`port`; -1 if it fails.
inline int ConnectLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace zserve::testing

#endif  // ZSERVE_TESTS_E2E_LOOPBACK_TCP_H_
