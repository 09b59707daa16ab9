// PickFreeLoopbackPort (common/zmq_util.h): the ports `zserve up --*-port 0`
// and the tests hand to servers they start.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <set>
#include <zmq.hpp>

#include "common/zmq_util.h"

namespace zserve {
namespace {

TEST_CASE("Picked ports are distinct and outside the ephemeral range", "[common]") {
  int low = 32768, high = 60999;
  if (FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    REQUIRE(std::fscanf(f, "%d %d", &low, &high) == 2);
    std::fclose(f);
  }
  // What the broker's metrics server does: bind port 0 and keep it. Such a
  // port must never be handed out as free.
  zmq::context_t context;
  std::set<int> taken;
  std::vector<zmq::socket_t> holders;
  for (int i = 0; i < 20; ++i) {
    holders.emplace_back(context, zmq::socket_type::router);
    holders.back().bind("tcp://127.0.0.1:*");
    taken.insert(BoundPort(holders.back()));
  }
  std::set<int> picked;
  for (int i = 0; i < 200; ++i) {
    int port = PickFreeLoopbackPort();
    REQUIRE(port > 0);
    CHECK((port < low || port > high));
    CHECK(taken.count(port) == 0);
    picked.insert(port);
  }
  CHECK(picked.size() == 200);
  // And each one binds.
  zmq::socket_t s(context, zmq::socket_type::router);
  s.bind(LoopbackAddress(*picked.begin()));
  CHECK(BoundPort(s) == *picked.begin());
}

TEST_CASE("An HTTP listen address is one IPv4 host or name and a port", "[common]") {
  std::string host;
  int port = -1;
  REQUIRE(SplitHostPort("127.0.0.1:0", "listen address", &host, &port).ok());
  CHECK(host == "127.0.0.1");
  CHECK(port == 0);
  REQUIRE(SplitHostPort("metrics-host.example:9100", "x", &host, &port).ok());
  CHECK(host == "metrics-host.example");
  CHECK(port == 9100);
  for (const char* bad : {"127.0.0.1", ":80", "127.0.0.1:", "127.0.0.1:0s", "127.0.0.1:70000",
                          "127.0.0.1:-1", "127.0.0.1:0,127.0.0.1:0", "[::1]:0", "a b:1"}) {
    INFO(bad);
    Status s = SplitHostPort(bad, "listen address", &host, &port);
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == StatusCode::kBadRequest);
    CHECK(s.message().find("listen address '" + std::string(bad) + "' is not HOST:PORT") == 0);
  }
}

TEST_CASE("ListenProblem says why an HTTP listener cannot listen", "[common]") {
  // civetweb's own words were "null context when constructing CivetServer".
  CHECK_THAT(ListenProblem("nosuchhost.invalid", 0),
             Catch::Matchers::Contains("cannot resolve 'nosuchhost.invalid'"));
  const int port = PickFreeLoopbackPort();
  REQUIRE(port > 0);
  CHECK(ListenProblem("127.0.0.1", port).empty());
  CHECK(ListenProblem("localhost", port).empty());
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(listen(fd, 1) == 0);
  CHECK(ListenProblem("127.0.0.1", port) == "Address already in use");
  close(fd);
}

}  // namespace
}  // namespace zserve
