// zmq_echo_server: the raw ZeroMQ limit — a ROUTER that sends every message
// straight back to its sender, no broker. Binds the given address (default
// tcp://127.0.0.1:*), prints "listening on tcp://127.0.0.1:PORT" once bound,
// runs until SIGINT/SIGTERM.
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <zmq.hpp>

#include "common/signals.h"
#include "common/zmq_util.h"

int main(int argc, char** argv) {
  using namespace zserve;
  CLI::App app{"ROUTER echo server: the raw ZeroMQ limit for zserve's benchmarks"};
  std::string bind = "tcp://127.0.0.1:*";
  app.add_option("--bind", bind, "Address to bind")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  SignalPipe& signals = SignalPipe::Install();
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
  zmq::pollitem_t items[] = {{router.handle(), 0, ZMQ_POLLIN, 0},
                             {nullptr, signals.fd(), ZMQ_POLLIN, 0}};
  while (true) {
    try {
      zmq::poll(items, 2, std::chrono::milliseconds(-1));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    if (items[1].revents & ZMQ_POLLIN) {
      bool stop = false;
      for (int s : signals.Take()) stop = stop || s == SIGINT || s == SIGTERM;
      if (stop) break;
    }
    // Frames (routing id first) go back as they came: no copy.
    while (RecvFrames(router, &frames)) {
      if (!SendFrames(router, frames).ok()) ++dropped;
    }
  }
  if (dropped > 0)
    std::fprintf(stderr, "zmq_echo_server: %llu replies not sent\n",
                 static_cast<unsigned long long>(dropped));
  return 0;
}
