// zmq_echo_server: the raw ZeroMQ limit — a ROUTER that sends every message
// straight back to its sender, no broker. Binds the given address (default
// tcp://127.0.0.1:*), prints "listening on tcp://127.0.0.1:PORT" once bound,
// runs until SIGINT/SIGTERM.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <zmq.hpp>

#include "bench/peer_loop.h"
#include "common/zmq_util.h"

int main(int argc, char** argv) {
  using namespace zserve;
  CLI::App app{"ROUTER echo server: the raw ZeroMQ limit for zserve's benchmarks"};
  std::string bind = "tcp://127.0.0.1:*";
  app.add_option("--bind", bind, "Address to bind")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  SignalPipe::Install();
  zmq::context_t context(1);
  zmq::socket_t router(context, zmq::socket_type::router);
  ConfigureRouter(router);
  try {
    router.bind(bind);
  } catch (const zmq::error_t& e) {
    std::fprintf(stderr, "zmq_echo_server: cannot bind %s: %s\n", bind.c_str(), e.what());
    return 1;
  }
  std::printf("listening on %s\n", router.get(zmq::sockopt::last_endpoint).c_str());
  std::fflush(stdout);

  Frames frames;
  uint64_t dropped = 0;
  bench::ServeUntilStopped({&router}, [&] {
    // Frames (routing id first) go back as they came: no copy.
    dropped += bench::PassOn(router, router, frames);
  });
  bench::ReportDropped("zmq_echo_server", dropped);
  return 0;
}
