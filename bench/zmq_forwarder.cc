// zmq_forwarder: a baseline for zserve's path — client → broker → worker →
// broker → client — in raw ZeroMQ: the ZeroMQ guide's request-reply broker in
// its shortest form. A ROUTER for clients and a DEALER connected to one or
// more zmq_echo_server processes (the replicas, in turn); every message is
// passed on as it came, with no header read, no routing choice, no
// accounting, no bound: a message it cannot pass on at once (a pipe at its
// high-water mark) is dropped and counted, and the count printed at exit.
// Binds the given address (default tcp://127.0.0.1:*), prints
// "listening on tcp://127.0.0.1:PORT" once bound, runs until SIGINT/SIGTERM.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "bench/peer_loop.h"
#include "common/zmq_util.h"

int main(int argc, char** argv) {
  using namespace zserve;
  CLI::App app{"ROUTER-to-DEALER forwarder: zserve's path through a broker, in raw ZeroMQ"};
  std::string bind = "tcp://127.0.0.1:*";
  std::vector<std::string> backends;
  app.add_option("--bind", bind, "Address for clients")->capture_default_str();
  app.add_option("--backend", backends, "zmq_echo_server address (repeat: one per replica)")
      ->required();
  CLI11_PARSE(app, argc, argv);

  SignalPipe::Install();
  zmq::context_t context(1);
  zmq::socket_t front(context, zmq::socket_type::router);
  zmq::socket_t back(context, zmq::socket_type::dealer);
  ConfigureRouter(front);
  back.set(zmq::sockopt::linger, 0);
  back.set(zmq::sockopt::sndhwm, 100'000);
  back.set(zmq::sockopt::rcvhwm, 100'000);
  try {
    for (const std::string& b : backends) back.connect(b);
    front.bind(bind);
  } catch (const zmq::error_t& e) {
    std::fprintf(stderr, "zmq_forwarder: %s\n", e.what());
    return 1;
  }
  std::printf("listening on %s\n", front.get(zmq::sockopt::last_endpoint).c_str());
  std::fflush(stdout);

  Frames frames;
  uint64_t dropped = 0;
  bench::ServeUntilStopped({&front, &back}, [&] {
    // Client frames (routing id first) go to the next echo server, which
    // sends them back; the DEALER gets them without its own id, the routing
    // id first again, and the ROUTER sends the rest to that client.
    dropped += bench::PassOn(front, back, frames);
    dropped += bench::PassOn(back, front, frames);
  });
  bench::ReportDropped("zmq_forwarder", dropped);
  return 0;
}
