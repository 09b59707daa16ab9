// sim_replicas: N echo replicas of one backend in one process, for the scale
// benchmark (bench/scale.sh). Each replica is its own DEALER connection to the
// broker's worker socket and speaks the worker side of schemas/PROTOCOL.md
// §4.2: READY with a distinct tag, a HEARTBEAT whenever it has sent nothing
// for half a second, one RESULTS (code OK, payloads echoed) per BATCH, and
// READY again on the broker's DISCONNECT. No handler, no thread pool: the
// replies go back from the thread that read the batch.
//
// One thread serves every connection through epoll on the sockets' ZMQ_FD
// (ZeroMQ's edge-style notification: a socket is read until it has nothing
// left, and after every send, since a send may take the signal), so the
// cost per message does not grow with N.
//
// Prints "ready N" once every READY is sent and every replica has heard the
// broker's first HEARTBEAT; runs until SIGINT/SIGTERM.
#include <sys/epoll.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/signals.h"
#include "common/zmq_util.h"
#include "schemas/codec.h"

namespace {

namespace sc = zserve::schemas;
using zserve::Clock;
using zserve::Frames;
using zserve::TimePoint;

constexpr auto kHeartbeatEvery = std::chrono::milliseconds(500);  // broker: dead after 3 s
constexpr auto kSweepEvery = std::chrono::milliseconds(100);
// Items per RESULTS, within the header budget the worker keeps too.
constexpr size_t kResultsPerMessage =
    std::min(sc::kMaxBatchItems, sc::kHeaderBudget / sc::kResultItemBytes);

zmq::message_t ToMessage(const std::string& s) { return zmq::message_t(s.data(), s.size()); }

struct Replica {
  zmq::socket_t socket;
  std::string tag;
  bool heard = false;  // the broker answered READY
  TimePoint last_sent;
};

struct Counts {
  uint64_t batches = 0, items = 0, send_failures = 0, malformed = 0, readies = 0;
};

class Simulator {
 public:
  Simulator(zmq::context_t& context, const std::string& broker, const std::string& backend,
            int replicas, uint32_t capacity)
      : backend_(backend), capacity_(capacity) {
    replicas_.reserve(replicas);
    for (int i = 0; i < replicas; ++i) {
      Replica r{zmq::socket_t(context, zmq::socket_type::dealer),
                backend + "-sim-" + std::to_string(i + 1), false, Clock::now()};
      r.socket.set(zmq::sockopt::linger, 0);
      r.socket.set(zmq::sockopt::sndhwm, 100'000);
      r.socket.set(zmq::sockopt::rcvhwm, 100'000);
      r.socket.connect(broker);
      replicas_.push_back(std::move(r));
    }
  }

  int Run(zserve::SignalPipe& signals) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
      std::perror("sim_replicas: epoll_create1");
      return 1;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = UINT64_MAX;  // the signal pipe
    epoll_ctl(ep, EPOLL_CTL_ADD, signals.fd(), &ev);
    for (size_t i = 0; i < replicas_.size(); ++i) {
      ev.data.u64 = i;
      int fd = replicas_[i].socket.get(zmq::sockopt::fd);
      if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        std::perror("sim_replicas: epoll_ctl");
        close(ep);
        return 1;
      }
    }
    for (size_t i = 0; i < replicas_.size(); ++i) SendReady(i);
    for (size_t i = 0; i < replicas_.size(); ++i) Drain(i);

    std::vector<epoll_event> events(256);
    TimePoint next_sweep = Clock::now() + kSweepEvery;
    bool stop = false;
    while (!stop) {
      auto wait = std::chrono::ceil<std::chrono::milliseconds>(next_sweep - Clock::now());
      int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()),
                         static_cast<int>(std::max<int64_t>(0, wait.count())));
      if (n < 0 && errno != EINTR) {
        std::perror("sim_replicas: epoll_wait");
        break;
      }
      for (int k = 0; k < n; ++k) {
        if (events[k].data.u64 == UINT64_MAX) {
          for (int s : signals.Take()) stop = stop || s == SIGINT || s == SIGTERM;
        } else {
          Drain(events[k].data.u64);
        }
      }
      TimePoint now = Clock::now();
      if (now >= next_sweep) {
        // Heartbeats, and a read of every socket in case a notification was
        // taken by a send.
        for (size_t i = 0; i < replicas_.size(); ++i) {
          if (now - replicas_[i].last_sent >= kHeartbeatEvery) Send(i, sc::Command::kHeartbeat);
          Drain(i);
        }
        next_sweep = now + kSweepEvery;
      }
    }
    close(ep);
    std::fprintf(stderr,
                 "sim_replicas: %zu replicas answered %llu batches, %llu items; %llu READYs, "
                 "%llu sends failed, %llu malformed messages\n",
                 replicas_.size(), static_cast<unsigned long long>(counts_.batches),
                 static_cast<unsigned long long>(counts_.items),
                 static_cast<unsigned long long>(counts_.readies),
                 static_cast<unsigned long long>(counts_.send_failures),
                 static_cast<unsigned long long>(counts_.malformed));
    return 0;
  }

 private:
  void SendReady(size_t i) {
    zmq::message_t m =
        ToMessage(sc::EncodeReady({backend_, replicas_[i].tag, capacity_, /*packed=*/true}));
    SendOn(i, std::span(&m, 1));
    ++counts_.readies;
  }

  void Send(size_t i, sc::Command command) {
    zmq::message_t m = ToMessage(sc::EncodeSimple(command));
    SendOn(i, std::span(&m, 1));
  }

  void SendOn(size_t i, std::span<zmq::message_t> frames) {
    if (!zserve::SendFrames(replicas_[i].socket, frames).ok()) ++counts_.send_failures;
    replicas_[i].last_sent = Clock::now();
  }

  // Reads socket i until it has nothing left.
  void Drain(size_t i) {
    while (zserve::RecvFrames(replicas_[i].socket, &frames_)) Handle(i);
  }

  void Handle(size_t i) {
    Replica& r = replicas_[i];
    if (!r.heard) {
      r.heard = true;
      if (++heard_ == replicas_.size()) {
        std::printf("ready %zu\n", replicas_.size());
        std::fflush(stdout);
      }
    }
    std::string_view header = zserve::View(frames_[0]);
    std::optional<sc::Command> command = sc::PeekCommandFast(header);
    if (!command) {
      ++counts_.malformed;
      return;
    }
    switch (*command) {
      case sc::Command::kHeartbeat:
        return;
      case sc::Command::kDisconnect:
        SendReady(i);  // the broker does not know this connection
        return;
      case sc::Command::kBatch:
        Echo(i);
        return;
      default:
        ++counts_.malformed;
    }
  }

  // One RESULTS per BATCH (more only past the header budget), payloads
  // echoed: the frames are moved, not copied.
  void Echo(size_t i) {
    std::vector<uint64_t> packed;
    zserve::StatusOr<std::vector<sc::BatchItem>> batch =
        sc::DecodeBatch(zserve::View(frames_[0]), nullptr, &packed);
    if (!batch.ok() || (packed.empty() && batch->size() != frames_.size() - 1)) {
      ++counts_.malformed;
      return;
    }
    ++counts_.batches;
    counts_.items += batch->size();
    if (!packed.empty()) {
      // Packed (PROTOCOL.md 3.1): the echoes lie exactly as the payloads
      // did, so the same frames go back with the same sizes, in one RESULTS
      // (a BATCH's 4096 items fit in one header).
      std::vector<sc::ResultItem> items;
      items.reserve(batch->size());
      for (const sc::BatchItem& b : *batch) items.push_back({b.token, zserve::StatusCode::kOk, {}});
      frames_[0] = ToMessage(sc::EncodeResults(items, packed));
      SendOn(i, frames_);
      return;
    }
    for (size_t start = 0; start < batch->size(); start += kResultsPerMessage) {
      size_t end = std::min(batch->size(), start + kResultsPerMessage);
      std::vector<sc::ResultItem> items;
      items.reserve(end - start);
      Frames out;
      out.reserve(end - start + 1);
      out.emplace_back();
      for (size_t k = start; k < end; ++k) {
        items.push_back({(*batch)[k].token, zserve::StatusCode::kOk, {}});
        out.push_back(std::move(frames_[k + 1]));
      }
      out[0] = ToMessage(sc::EncodeResults(items));
      SendOn(i, out);
    }
  }

  std::string backend_;
  uint32_t capacity_;
  std::vector<Replica> replicas_;
  size_t heard_ = 0;
  Frames frames_;
  Counts counts_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"N simulated echo replicas of one backend, for the scale benchmark"};
  std::string broker = "tcp://127.0.0.1:5556";
  std::string backend = "echo";
  int replicas = 1;
  uint32_t capacity = 0;
  app.add_option("--broker", broker, "Broker worker address")->capture_default_str();
  app.add_option("--backend", backend, "Backend the replicas serve")->capture_default_str();
  app.add_option("--replicas", replicas, "Replicas (one connection each)")
      ->check(CLI::Range(1, 100'000))
      ->capture_default_str();
  app.add_option("--capacity", capacity, "Each replica's READY capacity (0: no limit of its own)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  zserve::SignalPipe& signals = zserve::SignalPipe::Install();
  zmq::context_t context(1);
  context.set(zmq::ctxopt::max_sockets, replicas + 64);
  try {
    Simulator sim(context, broker, backend, replicas, capacity);
    return sim.Run(signals);
  } catch (const zmq::error_t& e) {
    std::fprintf(stderr, "sim_replicas: %s\n", e.what());
    return 1;
  }
}
