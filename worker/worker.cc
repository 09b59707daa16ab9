#include "zserve/worker.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <zmq.hpp>

#include "common/curve.h"
#include "common/liveness.h"
#include "common/logging.h"
#include "common/payloads.h"
#include "common/polled_socket.h"
#include "common/zmq_util.h"
#include "schemas/codec.h"
#include "schemas/config_subscriber.h"
#include "worker/worker_metrics.h"

namespace zserve {

namespace sc = zserve::schemas;

namespace {

std::string DefaultTag() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  return std::string(host) + "-" + std::to_string(getpid());
}

zmq::message_t ToMessage(const std::string& s) { return zmq::message_t(s.data(), s.size()); }

// The most handler threads a replica starts (WorkerOptions::threads).
constexpr uint32_t kMaxThreads = 1024;

// Result bytes after which a RESULTS is cut (it always carries one item).
constexpr size_t kMaxResultsPayloadBytes = 4 << 20;

struct Item {
  uint64_t token;
  std::string method;
  TimePoint deadline;
  Payload payload;     // its own frame, or a slice of a shared one
  TimePoint received;  // arrival at this worker
};

using Job = std::vector<Item>;

}  // namespace

class Worker::Impl {
 public:
  Impl(const WorkerOptions& options, std::unique_ptr<Handler> handler)
      : options_(options),
        handler_(std::move(handler)),
        log_(MakeLogger("worker", options.log_level)),
        context_(1),
        broker_(context_, zmq::socket_type::dealer) {}

  ~Impl() { StopPool(); }

  Status Init() {
    if (options_.replica_tag.empty()) options_.replica_tag = DefaultTag();
    // Several replicas often share one terminal (`zserve up`): each line
    // names its own.
    log_ = MakeLogger("worker " + options_.replica_tag, options_.log_level);
    if (options_.metrics != nullptr) {
      metrics_ = std::make_unique<worker::WorkerMetrics>(
          *options_.metrics, options_.backend, options_.replica_tag, options_.start_count);
      here_tally_.emplace(*metrics_);
    }
    if (options_.threads == 0 || options_.threads > kMaxThreads) {
      return BadRequest("threads must be 1.." + std::to_string(kMaxThreads) + ", got " +
                        std::to_string(options_.threads));
    }
    if (options_.max_result_bytes == 0) return BadRequest("max_result_bytes must be at least 1");
    if (options_.heartbeat_interval < kMinHeartbeatInterval ||
        options_.heartbeat_interval > kMaxHeartbeatInterval) {
      return BadRequest("heartbeat_interval must be " +
                        std::to_string(kMinHeartbeatInterval.count()) + ".." +
                        std::to_string(kMaxHeartbeatInterval.count()) + " ms, got " +
                        std::to_string(options_.heartbeat_interval.count()));
    }
    if (options_.heartbeat_liveness == 0)
      return BadRequest("heartbeat_liveness must be at least 1");
    drain_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (drain_fd_ < 0) return Internal("eventfd failed");
    done_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (done_fd_ < 0) return Internal("eventfd failed");
    if (Status s = Connect(); !s.ok()) return s;
    reconnect_backoff_ = options_.heartbeat_interval;
    if (!options_.controller_address.empty()) {
      StatusOr<std::unique_ptr<sc::ConfigSubscriber>> config = sc::ConfigSubscriber::Create(
          {options_.controller_address, options_.controller_updates_address, &context_, log_,
           std::chrono::milliseconds(1000), options_.curve_key, options_.curve_controller_key});
      if (!config.ok()) return config.status();
      config_ = std::move(config).value();
    }
    for (const std::string& m : handler_->Methods()) methods_.insert(m);
    try {
      for (uint32_t i = 0; i < options_.threads; ++i) pool_.emplace_back([this] { PoolLoop(); });
      keeper_ = std::thread([this] { KeeperLoop(); });
    } catch (const std::system_error& e) {
      return Internal("cannot start " + std::to_string(options_.threads) +
                      " handler threads (started " + std::to_string(pool_.size()) +
                      "): " + e.what());
    }
    return Status::Ok();
  }

  const std::string& replica_tag() const { return options_.replica_tag; }

  void Drain() {
    drain_requested_.store(true);
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(drain_fd_, &one, sizeof one);  // async-signal-safe
  }

  Status Run(int wake_fd, const std::function<void()>& on_wake) {
    // This thread uses the socket; it lends it to the keeper only while it
    // runs a handler itself (RunHere).
    std::lock_guard<std::mutex> socket(socket_mu_);
    last_heard_ = Clock::now();
    SendReady();
    log_->info("replica '{}' of backend '{}' serving, broker {}", options_.replica_tag,
               options_.backend, options_.broker_address);
    Frames frames;
    bool draining = false;
    bool confirmed = false;  // the broker answered our DISCONNECT
    TimePoint drain_started{};
    std::vector<PollItem> items;
    while (true) {
      TimePoint now = Clock::now();
      items = {{.fd = done_fd_}, {.fd = drain_fd_}, {.fd = wake_fd}};
      if (wake_fd < 0) items.pop_back();
      if (connected_) items.push_back({.socket = &broker_});
      if (connected_ && monitor_) items.push_back({.socket = &monitor_});
      if (config_) config_->AddPollItems(&items);
      // The next timer: a heartbeat to send, the broker's silence, a
      // reconnection, a snapshot retry, or the drain's end.
      TimePoint next = connected_ ? std::min(last_sent_ + options_.heartbeat_interval,
                                             last_heard_ + BrokerTimeout())
                                  : reconnect_at_;
      if (config_) {
        if (auto t = config_->NextTimer()) next = std::min(next, *t);
      }
      if (draining) next = std::min(next, drain_started + options_.drain_timeout);
      auto timeout = std::max(std::chrono::ceil<std::chrono::milliseconds>(next - now),
                              std::chrono::milliseconds(0));
      try {
        Poll(items, timeout);
      } catch (const zmq::error_t& e) {
        return Internal(std::string("poll failed: ") + e.what());
      }
      now = Clock::now();
      if (wake_fd >= 0 && items[2].ready && on_wake) on_wake();
      if (config_) {
        if (std::optional<sc::Snapshot> snapshot = config_->Read(now)) ApplyConfig(*snapshot);
      }
      if (items[0].ready) SendDone(now);
      while (connected_ && monitor_ && monitor_.Recv(&frames)) HandleHandshakeEvent(frames);
      while (connected_ && broker_.Recv(&frames)) {
        last_heard_ = now;
        reconnect_backoff_ = options_.heartbeat_interval;
        confirmed |= HandleBroker(frames, draining);
        if (ran_here_) {
          now = Clock::now();  // the handler took this thread's time
          ran_here_ = false;
        }
      }
      // The broker confirmed the drain; leave once every result is sent. With
      // no broker to confirm, leave once nothing is in hand.
      if ((confirmed || (draining && !connected_)) && in_flight_ == 0) {
        log_->info("drained: every result sent, leaving");
        return Status::Ok();
      }
      if (items[1].ready) {
        uint64_t v;
        [[maybe_unused]] ssize_t n = read(drain_fd_, &v, sizeof v);
      }
      if (drain_requested_.load() && !draining) {
        draining = true;
        // The keeper may have begun it, while this thread was in a handler.
        drain_started = disconnect_sent_ ? disconnect_sent_at_ : now;
        log_->info("draining: {} requests in hand", in_flight_);
        if (connected_ && !disconnect_sent_) {
          disconnect_sent_ = true;
          SendSimple(sc::Command::kDisconnect);
        }
      }
      if (draining && now - drain_started > options_.drain_timeout) {
        // The broker confirms once the replica holds nothing: with calls
        // in hand, they are what the drain waits for.
        std::string why = in_flight_ > 0 || confirmed || !connected_
                              ? std::to_string(in_flight_) + " requests still in the handler"
                              : "the broker did not confirm it";
        log_->warn("drain timed out after {} ms: {}", options_.drain_timeout.count(), why);
        // What finished since the poll goes first: after the second
        // DISCONNECT the broker no longer takes it, and would run it again.
        SendDone(now);
        if (connected_ && !confirmed) GiveUpDrain();
        return Unavailable("drain timed out: " + why);
      }
      if (Status s = KeepAlive(now, draining); !s.ok()) return s;
    }
  }

 private:
  std::chrono::milliseconds BrokerTimeout() const {
    return options_.heartbeat_interval * options_.heartbeat_liveness;
  }

  bool SendToBroker(std::span<zmq::message_t> frames, TimePoint now) {
    if (!broker_.Send(frames).ok()) return false;
    last_sent_ = now;
    return true;
  }

  // A second DISCONNECT: the broker takes the replica out at once and
  // retries or fails the calls it still holds, where it would wait for
  // missed heartbeats. Waits (briefly) for its answer: the process leaves
  // right after, and a message still queued in ZeroMQ would be lost.
  void GiveUpDrain() {
    SendSimple(sc::Command::kDisconnect);
    const TimePoint until =
        Clock::now() + std::min(BrokerTimeout(), std::chrono::milliseconds(1000));
    Frames frames;
    std::vector<PollItem> items;
    for (TimePoint now = Clock::now(); now < until; now = Clock::now()) {
      items = {{.socket = &broker_}};
      try {
        Poll(items, std::chrono::ceil<std::chrono::milliseconds>(until - now));
      } catch (const zmq::error_t&) {
        break;
      }
      while (broker_.Recv(&frames)) {
        StatusOr<sc::Command> command = sc::PeekCommand(View(frames[0]));
        if (command.ok() && *command == sc::Command::kDisconnect) {
          log_->info("the broker took this replica out; its calls are retried or failed");
          return;
        }
      }
    }
    log_->warn("the broker did not answer the end of the drain; it notices missed heartbeats");
  }

  // Paranoid Pirate, worker side: a heartbeat when we have been quiet; a new
  // connection, after a backoff that doubles up to reconnect_max, when the
  // broker has been silent for heartbeat_liveness intervals.
  Status KeepAlive(TimePoint now, bool draining) {
    if (connected_) {
      if (now - last_heard_ >= BrokerTimeout()) {
        log_->warn("broker silent for {} ms: reconnecting in {} ms",
                   std::chrono::duration_cast<std::chrono::milliseconds>(now - last_heard_).count(),
                   reconnect_backoff_.count());
        broker_.close();
        connected_ = false;
        reconnect_at_ = now + reconnect_backoff_;
        reconnect_backoff_ = std::min(reconnect_backoff_ * 2, options_.reconnect_max);
      } else if (now - last_sent_ >= options_.heartbeat_interval) {
        SendSimple(sc::Command::kHeartbeat);
      }
      return Status::Ok();
    }
    if (now < reconnect_at_ || draining) return Status::Ok();
    if (Status s = Connect(); !s.ok()) return s;
    last_heard_ = now;
    SendReady();
    log_->info("reconnected to broker {}", options_.broker_address);
    return Status::Ok();
  }

  Status Connect() {
    try {
      broker_ = PolledSocket(context_, zmq::socket_type::dealer);
      zmq::socket_t& broker = broker_.socket();
      if (Status s = SecureClient(broker, options_.curve_key, options_.curve_broker_key); !s.ok()) {
        return s;
      }
      broker.set(zmq::sockopt::linger, 0);
      broker.set(zmq::sockopt::sndhwm, 100'000);
      broker.set(zmq::sockopt::rcvhwm, 100'000);
      if (Status s = zserve::Connect(broker, options_.broker_address,
                                     "worker cannot connect to the broker");
          !s.ok()) {
        return s;
      }
      {
        // Tells us when the broker refuses our key, or the handshake fails
        // (CURVE at one end only, another broker key): the broker's log
        // may say so too, but ours is where this worker's operator looks.
        // Else the worker only reconnects, "broker silent", again and again.
        std::string address = "inproc://zserve-worker-monitor-" + std::to_string(++monitors_);
        if (zmq_socket_monitor(broker.handle(), address.c_str(),
                               ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                                   ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                   ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0) {
          return Internal("zmq_socket_monitor failed");
        }
        monitor_ = PolledSocket(context_, zmq::socket_type::pair);
        monitor_.socket().set(zmq::sockopt::linger, 0);
        monitor_.socket().connect(address);
      }
    } catch (const zmq::error_t& e) {
      return Unavailable(std::string("worker cannot connect: ") + e.what());
    }
    connected_ = true;
    broker_packs_ = false;  // a new connection: perhaps another broker
    return Status::Ok();
  }

  // A handshake event of broker_'s monitor: a refusal or a failure is
  // logged once (until a handshake succeeds).
  void HandleHandshakeEvent(const Frames& frames) {
    uint16_t event = 0;
    uint32_t value = 0;
    if (!ReadMonitorEvent(frames, &event, &value)) return;
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
      handshake_failures_ = 0;
      refusal_logged_ = false;
      failure_logged_ = false;
      return;
    }
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
      if (!refusal_logged_) {
        log_->error(
            "the broker refused this worker's CURVE key {}: it must be in the broker's "
            "allow-list with role worker (docs/security.md); retrying",
            options_.curve_key.public_key);
        refusal_logged_ = true;
      }
      return;
    }
    if (HandshakeFailed(event, &handshake_failures_) && !failure_logged_) {
      failure_logged_ = true;
      log_->error(
          "the handshake with the broker at {} failed: no zserve broker's worker port there, "
          "or CURVE on at one end only ({}), or another broker key; retrying",
          options_.broker_address,
          options_.curve_key.empty() ? "this worker has no --curve-key"
                                     : "this worker has --curve-key");
    }
  }

  // Hands this backend's user_config to the handler: the first time, and
  // whenever it changes.
  void ApplyConfig(const sc::Snapshot& snapshot) {
    auto it = snapshot.state.backends.find(options_.backend);
    if (it == snapshot.state.backends.end()) return;
    const std::string& user_config = it->second.user_config;
    if (user_config_ && *user_config_ == user_config) return;
    if (Status s = handler_->Reconfigure(user_config); !s.ok()) {
      log_->error("handler refused user_config of version {}: {}", snapshot.version, s.ToString());
      return;
    }
    user_config_ = user_config;
    log_->info("handler reconfigured with user_config of version {}", snapshot.version);
  }

  void SendReady() {
    zmq::message_t m = ToMessage(sc::EncodeReady(
        {options_.backend, options_.replica_tag, options_.capacity,
         /*packed=*/true, static_cast<uint32_t>(options_.heartbeat_interval.count())}));
    if (!SendToBroker(std::span(&m, 1), Clock::now())) log_->warn("READY not sent");
  }

  void SendSimple(sc::Command command) {
    zmq::message_t m = ToMessage(sc::EncodeSimple(command));
    (void)SendToBroker(std::span(&m, 1), Clock::now());
  }

  // Returns true when the broker confirms a drain (it sends no more work).
  bool HandleBroker(Frames& frames, bool draining) {
    std::string_view header = View(frames[0]);
    // A BATCH, the hot path, is checked whole by DecodeBatch below: its
    // first bytes are enough here (no MessagePack parse of it twice).
    const bool batch_prefix = sc::PeekCommandFast(header) == sc::Command::kBatch;
    StatusOr<sc::Command> command =
        batch_prefix ? StatusOr<sc::Command>(sc::Command::kBatch) : sc::PeekCommand(header);
    if (!command.ok()) {
      log_->warn("malformed message from broker dropped: {}", command.status().message());
      return false;
    }
    if (*command == sc::Command::kDisconnect) {
      if (draining) return true;
      log_->info("broker does not know this replica: registering again");
      SendReady();
      return false;
    }
    if (*command == sc::Command::kHeartbeat) return false;
    if (*command != sc::Command::kBatch) {
      log_->warn("broker sent {}, which a worker does not take", sc::CommandName(*command));
      return false;
    }
    std::vector<uint32_t> sizes;
    std::vector<uint64_t> payload_sizes;
    StatusOr<std::vector<sc::BatchItem>> batch = sc::DecodeBatch(header, &sizes, &payload_sizes);
    if (!batch.ok()) {
      log_->warn("malformed BATCH dropped: {}", batch.status().message());
      return false;
    }
    const bool packed = !payload_sizes.empty();
    Status laid_out = !packed && batch->size() != frames.size() - 1
                          ? BadRequest("BATCH frame count mismatch")
                          : received_.Lay(payload_sizes, frames, 1);
    if (!laid_out.ok()) {
      // The tokens are known: answer each so nothing waits for its deadline.
      log_->warn("malformed BATCH answered BAD_REQUEST: {}", laid_out.message());
      std::vector<sc::ResultItem> results;
      for (const sc::BatchItem& b : *batch) {
        results.push_back({b.token, StatusCode::kBadRequest, laid_out.message()});
      }
      Frames out;
      out.push_back(ToMessage(sc::EncodeResults(results)));
      for (size_t i = 0; i < results.size(); ++i) out.emplace_back();
      (void)SendToBroker(out, Clock::now());
      return false;
    }
    if (packed) broker_packs_ = true;
    // Each handler batch of the message is a job of its own, in a vector a
    // pool thread gave back (no allocation per job once warm).
    TimePoint now = Clock::now();
    incoming_.clear();
    size_t next = 0;
    for (uint32_t size : sizes) {
      incoming_.emplace_back();
      if (!spare_jobs_io_.empty()) {
        incoming_.back() = std::move(spare_jobs_io_.back());
        spare_jobs_io_.pop_back();
      }
      Job& job = incoming_.back();
      job.reserve(size);
      for (uint32_t k = 0; k < size; ++k, ++next) {
        sc::BatchItem& b = (*batch)[next];
        job.push_back(Item{b.token, std::move(b.method),
                           now + std::chrono::milliseconds(b.timeout_ms), received_.Take(next),
                           now});
      }
    }
    received_.Clear();  // the items hold the frames now; none is freed here
    in_flight_ += batch->size();
    if (metrics_) metrics_->Received(batch->size());
    size_t wake;
    bool here;
    {
      std::lock_guard<std::mutex> lock(mu_);
      // Short handler batches on an idle pool run here: waking a pool thread
      // and being woken for its results would cost more than the calls. Past
      // kHereBudgetNs of them, pool threads help (at most `threads` calls at
      // once in all).
      here = busy_ == 0 && jobs_.empty() && batch_ns_ > 0 && batch_ns_ < kShareNs;
      if (here) {
        wake =
            static_cast<size_t>(batch_ns_ * static_cast<double>(incoming_.size()) / kHereBudgetNs);
      }
      for (Job& job : incoming_) jobs_.push_back(std::move(job));
      if (spare_jobs_io_.empty()) spare_jobs_io_.swap(spare_jobs_);
      here_busy_ = here;
      if (!here) {
        const size_t share = ShareSize();
        wake = (jobs_.size() + share - 1) / share;
      }
    }
    if (here) {
      for (size_t i = 0; i < std::min<size_t>(wake, options_.threads - 1); ++i) cv_.notify_one();
      RunHere();
      return false;
    }
    // As many threads as there are shares, no more: the others stay asleep.
    for (size_t i = 0; i < std::min<size_t>(wake, options_.threads); ++i) cv_.notify_one();
    return false;
  }

  // I/O thread: runs the waiting jobs itself, one at a time, and sends their
  // results. The socket is lent to the keeper meanwhile: when one call runs
  // long, it wakes the pool for the jobs not yet started, sends what the pool
  // finished, and the heartbeats (KeeperLoop). So a call that blocks, even
  // on another call, costs neither the replica's registration nor the rest
  // of the BATCH.
  void RunHere() {
    std::vector<sc::ResultItem>& results = here_results_;
    std::vector<std::string>& payloads = here_payloads_;
    results.clear();
    payloads.clear();
    const TimePoint started = Clock::now();
    size_t ran = 0;
    Job job;
    // Lends the socket for the loop, and takes it back however the loop ends
    // (a handler's exceptions are caught in Process, but an allocation may
    // throw): the pool is then no longer held to threads - 1 either.
    struct Lent {
      Impl& w;
      explicit Lent(Impl& worker) : w(worker) {
        w.socket_mu_.unlock();
        w.here_running_.store(true);
      }
      ~Lent() {
        {
          std::lock_guard<std::mutex> lock(w.mu_);
          w.here_busy_ = false;
        }
        w.here_running_.store(false);
        w.socket_mu_.lock();
      }
      Lent(const Lent&) = delete;
      Lent& operator=(const Lent&) = delete;
    };
    std::optional<Lent> lent(std::in_place, *this);
    while (true) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!job.empty() || ran > 0) {
          job.clear();
          if (spare_jobs_io_.size() < kMaxSpareJobs) spare_jobs_io_.push_back(std::move(job));
        }
        if (jobs_.empty()) {
          if (ran > 0) NoteBatchTime(Clock::now() - started, ran);
          break;
        }
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      here_calls_.fetch_add(1);
      Process(job, &results, &payloads, here_tally_ ? &*here_tally_ : nullptr);
      ++ran;
    }
    if (here_tally_) here_tally_->Flush();
    lent.reset();
    ran_here_ = true;
    sending_items_.swap(results);
    Pack(payloads, &sending_bytes_, &sending_sizes_);
    SendResults(Clock::now());
  }

  // The keeper: a thread asleep but for a tick (every kKeeperTick while the
  // I/O thread runs handlers, else every half heartbeat interval). When the
  // I/O thread is still in the call it was in at the last tick, the keeper
  // wakes pool threads for the jobs that wait (all but one: at most
  // `threads` calls at once). While the I/O thread runs handlers it does its
  // sending: the results the pool finished, and a heartbeat when nothing
  // else went out for an interval.
  void KeeperLoop() {
    std::unique_lock<std::mutex> lock(keeper_mu_);
    uint64_t calls = here_calls_.load();
    while (true) {
      const bool active = here_running_.load() || here_calls_.load() != calls;
      calls = here_calls_.load();
      const Clock::duration tick =
          active ? kKeeperTick
                 : std::max<Clock::duration>(kKeeperTick, options_.heartbeat_interval / 2);
      if (keeper_cv_.wait_for(lock, tick, [this] { return keeper_stop_; })) return;
      if (!here_running_.load()) continue;
      if (here_calls_.load() == calls) {
        // The same call since the last tick: the pool takes what waits.
        size_t waiting;
        {
          std::lock_guard<std::mutex> jobs_lock(mu_);
          waiting = jobs_.size();
        }
        for (size_t i = 0; i + 1 < std::min<size_t>(waiting + 1, options_.threads); ++i) {
          cv_.notify_one();
        }
      }
      // Calls go on on the I/O thread (one long one, or many that turned
      // slower than their average): send for it.
      std::unique_lock<std::mutex> socket(socket_mu_, std::try_to_lock);
      // Still running: the I/O thread clears here_running_ before it takes
      // the socket back, so it is in RunHere until this lock is let go.
      if (!socket.owns_lock() || !here_running_.load()) continue;
      const TimePoint now = Clock::now();
      if (drain_requested_.load() && connected_ && !disconnect_sent_) {
        // Told to stop while the I/O thread is in a handler: the broker
        // sends no more work from now, and the drain's time runs from now.
        disconnect_sent_ = true;
        disconnect_sent_at_ = now;
        log_->info("draining (a call runs on the worker's own thread): told the broker");
        SendSimple(sc::Command::kDisconnect);
      }
      SendDone(now);
      if (connected_ && now - last_sent_ >= options_.heartbeat_interval) {
        SendSimple(sc::Command::kHeartbeat);
      }
    }
  }

  // Records how long batches took (a pool thread's share, or RunHere's), for
  // ShareSize and the choice of running here. With mu_ held.
  void NoteBatchTime(Clock::duration took, size_t batches) {
    double ns = std::chrono::duration<double, std::nano>(took).count() / batches;
    batch_ns_ = batch_ns_ == 0 ? ns : 0.8 * batch_ns_ + 0.2 * ns;
  }

  // How many waiting batches one pool thread takes at once: an equal part
  // each, or more when batches are short (echo: microseconds), so that a
  // thread is woken for at least kShareNs of work, not for less than the
  // wake-up costs. With mu_ held.
  size_t ShareSize() const {
    // Slow batches one at a time (and any before the first is timed): each
    // result goes out as it is done, and a thread that finishes takes the
    // next, so none waits behind another in one thread's share while a
    // thread sleeps.
    if (batch_ns_ == 0 || batch_ns_ >= kShareNs) return 1;  // or not timed yet
    size_t fair = (jobs_.size() + options_.threads - 1) / options_.threads;
    size_t by_time = batch_ns_ > 0 ? static_cast<size_t>(kShareNs / batch_ns_) : 1;
    return std::max<size_t>({fair, by_time, 1});
  }

  void PoolLoop() {
    std::optional<worker::WorkerMetrics::Tally> tally;
    if (metrics_) tally.emplace(*metrics_);
    Clock::duration took{};
    std::vector<Job> share;
    std::vector<sc::ResultItem> results;
    std::vector<std::string> payloads;
    while (true) {
      {
        // This thread's share of what waits (at least one batch): one lock
        // and one hand-over per share, not per batch, while the other
        // threads take theirs.
        std::unique_lock<std::mutex> lock(mu_);
        if (!share.empty()) {
          NoteBatchTime(took, share.size());
          --busy_;
          // The emptied jobs (their frames freed above) serve the I/O thread again.
          for (Job& job : share) {
            if (spare_jobs_.size() == kMaxSpareJobs) break;
            spare_jobs_.push_back(std::move(job));
          }
          share.clear();
        }
        // At most `threads` calls at once, RunHere's included.
        cv_.wait(lock, [this] {
          return stop_ || (!jobs_.empty() && busy_ + (here_busy_ ? 1 : 0) < options_.threads);
        });
        if (jobs_.empty()) return;  // stop_ and nothing left
        size_t n = std::min(jobs_.size(), ShareSize());
        ++busy_;
        for (size_t i = 0; i < n; ++i) {
          share.push_back(std::move(jobs_.front()));
          jobs_.pop_front();
        }
        // The I/O thread woke as many threads as it counted shares, but each
        // share is counted again as the queue shrinks: what is left and has
        // room wakes one more.
        if (!jobs_.empty() && jobs_.size() >= ShareSize() &&
            busy_ + (here_busy_ ? 1 : 0) < options_.threads) {
          cv_.notify_one();
        }
      }
      TimePoint started = Clock::now();
      for (Job& job : share) {
        Process(job, &results, &payloads, tally ? &*tally : nullptr);
        job.clear();  // frees its frames here, not under the lock
      }
      took = Clock::now() - started;
      if (tally) tally->Flush();
      HandOver(results, payloads);
    }
  }

  // Runs one received batch: skip expired items and unknown methods, call the
  // handler once per method; appends a result and a payload per item to the
  // out vectors. `tally` (null without metrics) counts the waits and calls.
  void Process(Job& job, std::vector<sc::ResultItem>* results_out,
               std::vector<std::string>* payloads_out, worker::WorkerMetrics::Tally* tally) {
    const size_t base = results_out->size();
    results_out->resize(base + job.size());
    payloads_out->resize(base + job.size());
    sc::ResultItem* results = results_out->data() + base;
    std::string* payloads = payloads_out->data() + base;
    TimePoint now = Clock::now();
    if (metrics_) {
      metrics_->Started(job.size());
      for (const Item& item : job) tally->Waited(now - item.received);
    }
    // Scratch kept by each pool thread: no allocation per job once warm.
    thread_local std::vector<size_t> callable;
    thread_local std::vector<Request> requests;
    callable.clear();
    bool one_method = true;
    for (size_t i = 0; i < job.size(); ++i) {
      results[i].token = job[i].token;
      if (job[i].deadline <= now) {
        results[i].code = StatusCode::kDeadlineExceeded;
        results[i].message = "deadline passed before the handler started";
      } else if (!methods_.empty() && !methods_.contains(job[i].method)) {
        results[i].code = StatusCode::kNotFound;
        results[i].message = "backend '" + options_.backend + "' has no method '" + job[i].method +
                             "' (it serves: " + MethodList() + ")";
      } else {
        one_method = one_method && (callable.empty() || job[i].method == job[callable[0]].method);
        callable.push_back(i);
      }
    }
    auto call = [&](std::string_view method, const std::vector<size_t>& indexes) {
      requests.clear();
      for (size_t i : indexes) requests.push_back({method, job[i].payload.view(), job[i].deadline});
      std::vector<Result> out;
      std::string failure;
      TimePoint call_started = Clock::now();
      try {
        out = handler_->HandleBatch(requests);
        if (out.size() != requests.size()) {
          failure = "handler returned " + std::to_string(out.size()) + " results for " +
                    std::to_string(requests.size()) + " requests";
        }
      } catch (const std::exception& e) {
        failure = std::string("handler threw: ") + e.what();
      } catch (...) {
        failure = "handler threw a non-standard exception";
      }
      if (tally) tally->HandlerCall(requests.size(), Clock::now() - call_started);
      std::string too_big;  // the first result over the limit: logged, like a failure
      for (size_t k = 0; k < indexes.size(); ++k) {
        sc::ResultItem& r = results[indexes[k]];
        if (!failure.empty()) {
          r.code = StatusCode::kHandlerError;
          r.message = failure;
        } else if (out[k].ok() && out[k]->size() > options_.max_result_bytes) {
          r.code = StatusCode::kHandlerError;
          r.message = "the handler's result of " + std::to_string(out[k]->size()) +
                      " bytes is more than the worker's limit of " +
                      std::to_string(options_.max_result_bytes) + " (--max-result-bytes)";
          if (too_big.empty()) too_big = r.message;
        } else if (out[k].ok()) {
          payloads[indexes[k]] = std::move(out[k]).value();
        } else {
          r.code = StatusCode::kHandlerError;
          r.message = out[k].status().message();
        }
      }
      if (!failure.empty()) LogHandlerFailure(failure);
      if (!too_big.empty()) LogHandlerFailure(too_big);
    };
    if (one_method) {
      // Always so at max_batch_size 1, and the usual case: no grouping.
      if (!callable.empty()) call(job[callable[0]].method, callable);
    } else {
      std::map<std::string_view, std::vector<size_t>> by_method;
      for (size_t i : callable) by_method[job[i].method].push_back(i);
      for (const auto& [method, indexes] : by_method) call(method, indexes);
    }
    if (metrics_) {
      size_t errors = 0;
      for (size_t i = 0; i < job.size(); ++i) errors += results[i].code != StatusCode::kOk;
      metrics_->Answered(job.size(), errors);
    }
  }

  // Gives finished results to the I/O thread, which sends everything done
  // since its last turn in one RESULTS; it is woken only when there was none.
  // The payloads are copied back to back here, so that the handler's strings
  // are freed by the thread that made them (malloc's fast path) and the I/O
  // thread gets one buffer.
  void HandOver(std::vector<sc::ResultItem>& results, std::vector<std::string>& payloads) {
    thread_local std::string packed;
    thread_local std::vector<size_t> sizes;
    Pack(payloads, &packed, &sizes);
    bool was_empty;
    {
      std::lock_guard<std::mutex> lock(done_mu_);
      was_empty = done_items_.empty();
      std::move(results.begin(), results.end(), std::back_inserter(done_items_));
      if (done_bytes_.empty()) {
        done_bytes_.swap(packed);  // the usual case: the I/O thread took the last ones
      } else {
        done_bytes_.append(packed);
      }
      done_sizes_.insert(done_sizes_.end(), sizes.begin(), sizes.end());
    }
    results.clear();
    payloads.clear();
    if (was_empty) {
      uint64_t one = 1;
      [[maybe_unused]] ssize_t n = write(done_fd_, &one, sizeof one);
    }
  }

  // The payloads back to back, and their sizes.
  static void Pack(const std::vector<std::string>& payloads, std::string* bytes,
                   std::vector<size_t>* sizes) {
    bytes->clear();
    sizes->clear();
    for (const std::string& p : payloads) {
      bytes->append(p);
      sizes->push_back(p.size());
    }
  }

  // Sends the results the pool finished; with socket_mu_ held (the I/O
  // thread, or the keeper).
  void SendDone(TimePoint now) {
    uint64_t v;
    [[maybe_unused]] ssize_t n = read(done_fd_, &v, sizeof v);  // before taking: no lost wake-up
    // Swapped with the pool's lists, which so get back emptied buffers with
    // their capacity.
    std::vector<sc::ResultItem>& items = sending_items_;
    std::string& bytes = sending_bytes_;
    std::vector<size_t>& sizes = sending_sizes_;
    items.clear();
    bytes.clear();
    sizes.clear();
    {
      std::lock_guard<std::mutex> lock(done_mu_);
      items.swap(done_items_);
      bytes.swap(done_bytes_);
      sizes.swap(done_sizes_);
    }
    SendResults(now);
  }

  // Sends sending_items_ (payloads in sending_bytes_, sized by
  // sending_sizes_) in as few RESULTS as the limits allow; with socket_mu_
  // held.
  void SendResults(TimePoint now) {
    std::vector<sc::ResultItem>& items = sending_items_;
    const std::string& bytes = sending_bytes_;
    const std::vector<size_t>& sizes = sending_sizes_;
    if (items.empty()) return;
    in_flight_ -= items.size();
    if (!connected_) {
      // The broker has given these requests to another replica by now.
      log_->warn("{} results dropped: no broker connection", items.size());
      return;
    }
    // To a broker that packs, the chunk's payloads go back to back in one
    // frame (PROTOCOL.md 3.1); else one frame each.
    std::vector<sc::ResultItem> chunk;
    std::vector<uint64_t> payload_sizes;
    size_t first = 0;       // the chunk's first item
    size_t first_byte = 0;  // and where its payload starts in `bytes`
    size_t header_bytes = 0;
    size_t payload_bytes = 0;
    Frames frames;
    auto send = [&](size_t end) {
      frames.clear();
      frames.emplace_back();
      if (broker_packs_) {
        frames.emplace_back(bytes.data() + first_byte, payload_bytes);
      } else {
        size_t at = first_byte;
        for (size_t i = first; i < end; ++i) {
          frames.emplace_back(bytes.data() + at, sizes[i]);
          at += sizes[i];
        }
      }
      frames[0] = ToMessage(sc::EncodeResults(chunk, payload_sizes));
      if (!SendToBroker(frames, now)) {
        log_->warn("{} results not sent: broker unreachable", chunk.size());
      }
      chunk.clear();
      payload_sizes.clear();
      first = end;
      first_byte += payload_bytes;
      header_bytes = 0;
      payload_bytes = 0;
    };
    for (size_t i = 0; i < items.size(); ++i) {
      size_t cost = sc::kResultItemBytes + std::min(items[i].message.size(), sc::kMaxMessageBytes);
      if (!chunk.empty() &&
          (chunk.size() == sc::kMaxBatchItems || header_bytes + cost > sc::kHeaderBudget ||
           payload_bytes + sizes[i] > kMaxResultsPayloadBytes)) {
        send(i);
      }
      chunk.push_back(std::move(items[i]));
      if (broker_packs_) payload_sizes.push_back(sizes[i]);
      header_bytes += cost;
      payload_bytes += sizes[i];
    }
    send(items.size());
  }

  std::string MethodList() const {
    std::string out;
    for (const std::string& m : methods_) out += (out.empty() ? "" : ", ") + m;
    return out;
  }

  void StopPool() {
    {
      std::lock_guard<std::mutex> lock(keeper_mu_);
      keeper_stop_ = true;
    }
    keeper_cv_.notify_all();
    if (keeper_.joinable()) keeper_.join();
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : pool_) t.join();
    pool_.clear();
    if (drain_fd_ >= 0) close(drain_fd_);
    drain_fd_ = -1;
    if (done_fd_ >= 0) close(done_fd_);
    done_fd_ = -1;
  }

  WorkerOptions options_;
  std::unique_ptr<Handler> handler_;
  Logger log_;
  zmq::context_t context_;
  PolledSocket broker_;    // with socket_mu_ held (the I/O thread, or the keeper)
  PolledSocket monitor_;   // PAIR: broker_'s handshake events
  uint64_t monitors_ = 0;  // monitor endpoints made, for unique names
  bool refusal_logged_ = false;
  int handshake_failures_ = 0;   // in a row (HandshakeFailed)
  bool failure_logged_ = false;  // since the last handshake that succeeded
  int drain_fd_ = -1;
  std::atomic<bool> drain_requested_{false};
  // DISCONNECT sent (by Run, or by the keeper while Run is in a handler),
  // and when; with socket_mu_ held.
  bool disconnect_sent_ = false;
  TimePoint disconnect_sent_at_{};
  size_t in_flight_ = 0;  // with socket_mu_ held
  // The broker sent a packed BATCH on this connection, so it takes packed
  // RESULTS (PROTOCOL.md 3.1); with socket_mu_ held.
  bool broker_packs_ = false;
  ReceivedPayloads received_;  // scratch: the payloads of the BATCH in hand; I/O thread only
  // Liveness of the broker connection; with socket_mu_ held.
  bool connected_ = false;
  TimePoint last_heard_ = Clock::now();
  TimePoint last_sent_ = Clock::now();
  TimePoint reconnect_at_{};
  std::chrono::milliseconds reconnect_backoff_{1000};
  std::set<std::string, std::less<>> methods_;      // empty: any; read-only after Init
  std::unique_ptr<sc::ConfigSubscriber> config_;    // I/O thread only; null: not following
  std::unique_ptr<worker::WorkerMetrics> metrics_;  // null: no metrics; any thread
  std::optional<std::string> user_config_;          // last one the handler took

  // Results the pool finished, for the I/O thread (SendDone); done_fd_ is
  // written when they go from none to some.
  std::mutex done_mu_;
  std::vector<sc::ResultItem> done_items_;  // guarded by done_mu_
  std::string done_bytes_;                  // guarded by done_mu_: their payloads, back to back
  std::vector<size_t> done_sizes_;          // guarded by done_mu_: one per item
  int done_fd_ = -1;
  std::vector<sc::ResultItem> sending_items_;  // with socket_mu_ held: SendResults's turn
  std::string sending_bytes_;                  // with socket_mu_ held
  std::vector<size_t> sending_sizes_;          // with socket_mu_ held

  // A failing handler call is logged at warn at most once a second, cut to
  // 300 bytes, with the count of those not logged since: the caller has the
  // message, zserve_replica_errors_total the count, and a handler that
  // fails every call must not flood the log (debug has each one).
  void LogHandlerFailure(const std::string& failure) {
    constexpr size_t kLogged = 300;
    std::string shown = failure.size() > kLogged ? failure.substr(0, kLogged) + "... (" +
                                                       std::to_string(failure.size()) + " bytes)"
                                                 : failure;
    TimePoint now = Clock::now();
    uint64_t skipped = 0;
    {
      std::lock_guard<std::mutex> lock(failure_log_mu_);
      if (now - last_failure_log_ < std::chrono::seconds(1)) {
        ++failures_not_logged_;
        log_->debug("{}", shown);
        return;
      }
      last_failure_log_ = now;
      skipped = failures_not_logged_;
      failures_not_logged_ = 0;
    }
    if (skipped == 0) {
      log_->warn("{}", shown);
    } else {
      log_->warn("{} ({} more failed handler calls not logged since)", shown, skipped);
    }
  }
  std::mutex failure_log_mu_;
  TimePoint last_failure_log_{};
  uint64_t failures_not_logged_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;  // guarded by mu_
  // Emptied jobs, kept for their capacity: the pool gives them back under
  // mu_, the I/O thread takes them all at once into spare_jobs_io_.
  static constexpr size_t kMaxSpareJobs = 4096;
  std::vector<Job> spare_jobs_;     // guarded by mu_
  std::vector<Job> spare_jobs_io_;  // I/O thread only
  std::vector<Job> incoming_;       // I/O thread only: the BATCH in hand's jobs
  static constexpr double kShareNs = 50'000;
  double batch_ns_ = 0;     // recent time per batch, in the pool or here; guarded by mu_
  size_t busy_ = 0;         // pool threads with a share in hand; guarded by mu_
  bool here_busy_ = false;  // RunHere is taking jobs; guarded by mu_
  bool stop_ = false;       // guarded by mu_
  std::vector<std::thread> pool_;

  // Running short batches on the I/O thread (RunHere), with pool threads
  // helping past kHereBudgetNs of them, and the keeper that stands in for it.
  static constexpr double kHereBudgetNs = 1'000'000;
  static constexpr std::chrono::milliseconds kKeeperTick{5};
  // Held by the I/O thread while it uses broker_ and the state that goes with
  // it (connected_, last_sent_, in_flight_, sending_*): always, but while
  // RunHere calls handlers, when the keeper may take it.
  std::mutex socket_mu_;
  bool ran_here_ = false;                     // I/O thread only: RunHere ran this turn
  std::vector<sc::ResultItem> here_results_;  // I/O thread only: RunHere's scratch
  std::vector<std::string> here_payloads_;    // I/O thread only
  std::optional<worker::WorkerMetrics::Tally> here_tally_;  // I/O thread only; with metrics_
  std::atomic<bool> here_running_{false};                   // RunHere is calling handlers
  std::atomic<uint64_t> here_calls_{0};                     // jobs RunHere started
  std::mutex keeper_mu_;
  std::condition_variable keeper_cv_;
  bool keeper_stop_ = false;  // guarded by keeper_mu_
  std::thread keeper_;
};

Worker::Worker(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Worker::~Worker() = default;

StatusOr<std::unique_ptr<Worker>> Worker::Create(const WorkerOptions& options,
                                                 std::unique_ptr<Handler> handler) {
  if (handler == nullptr) return BadRequest("a worker needs a handler");
  if (Status s = schemas::ValidateName("backend", options.backend); !s.ok()) return s;
  if (Status s = ValidateLogLevel(options.log_level); !s.ok()) return s;
  if (options.controller_address.empty() != options.controller_updates_address.empty()) {
    return BadRequest("give both controller addresses (admin and updates), or neither");
  }
  auto impl = std::make_unique<Impl>(options, std::move(handler));
  if (Status s = impl->Init(); !s.ok()) return s;
  return std::unique_ptr<Worker>(new Worker(std::move(impl)));
}

Status Worker::Run(int wake_fd, const std::function<void()>& on_wake) {
  return impl_->Run(wake_fd, on_wake);
}

void Worker::Drain() { impl_->Drain(); }

const std::string& Worker::replica_tag() const { return impl_->replica_tag(); }

}  // namespace zserve
