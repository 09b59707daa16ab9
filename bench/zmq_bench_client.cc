// zmq_bench_client: the load generator against zmq_echo_server, a DEALER
// talking straight to the ROUTER with no broker in between, or through
// zmq_forwarder (`--system zmq-forwarder` names those results). Each request
// is two frames, the 8-byte tag and the payload; the reply is the same.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <deque>
#include <zmq.hpp>

#include "bench/load_generator.h"
#include "common/zmq_util.h"

namespace zserve::bench {
namespace {

class ZmqTarget : public LoadTarget {
 public:
  explicit ZmqTarget(const std::string& address)
      : context_(1), socket_(context_, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::sndhwm, 100'000);
    socket_.set(zmq::sockopt::rcvhwm, 100'000);
    socket_.connect(address);
  }

  void Send(uint64_t tag, std::string_view payload) override {
    zmq::message_t frames[2] = {zmq::message_t(&tag, sizeof tag),
                                zmq::message_t(payload.data(), payload.size())};
    if (!SendFrames(socket_, frames).ok()) failed_.push_back(tag);
  }

  void Poll(std::chrono::milliseconds timeout, CompletionSink& sink) override {
    for (uint64_t tag : failed_) sink.Done(tag, "SEND_FAILED");
    failed_.clear();
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    try {
      zmq::poll(&item, 1, timeout);
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    while (RecvFrames(socket_, &frames_)) {
      if (frames_.size() != 2 || frames_[0].size() != sizeof(uint64_t)) continue;
      uint64_t tag;
      std::memcpy(&tag, frames_[0].data(), sizeof tag);
      sink.Done(tag, {});
    }
  }

 private:
  zmq::context_t context_;
  zmq::socket_t socket_;
  Frames frames_;
  std::vector<uint64_t> failed_;
};

}  // namespace
}  // namespace zserve::bench

int main(int argc, char** argv) {
  using namespace zserve::bench;
  CLI::App app{"DEALER load client for zmq_echo_server: the raw ZeroMQ limit"};
  std::string address, system = "zmq";
  LoadOptions load;
  app.add_option("--server", address, "Echo server (or zmq_forwarder) address")->required();
  app.add_option("--system", system, "System name in the results")->capture_default_str();
  AddLoadFlags(app, load);
  CLI11_PARSE(app, argc, argv);
  ZmqTarget target(address);
  LoadGenerator generator(system, target, load);
  return generator.Run();
}
