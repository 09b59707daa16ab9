#include "zserve/client.h"

#include <cstring>
#include <deque>
#include <memory_resource>
#include <optional>
#include <unordered_map>
#include <utility>
#include <zmq.hpp>

#include "common/curve.h"
#include "common/deadline_queue.h"
#include "common/payloads.h"
#include "common/polled_socket.h"
#include "common/zmq_util.h"
#include "schemas/codec.h"

namespace zserve {

namespace sc = zserve::schemas;

class Client::Impl {
 public:
  explicit Impl(const ClientOptions& options)
      : options_(options),
        context_(1),
        socket_(context_, zmq::socket_type::dealer),
        monitor_(context_, zmq::socket_type::pair) {}

  Status Init() {
    if (options_.default_timeout.count() <= 0) return BadRequest("default_timeout must be > 0");
    if (options_.grace.count() < 0) return BadRequest("grace must be >= 0");
    zmq::socket_t& socket = socket_.socket();
    if (Status s = SecureClient(socket, options_.curve_key, options_.curve_server_key); !s.ok()) {
      return s;
    }
    try {
      socket.set(zmq::sockopt::linger, 0);
      socket.set(zmq::sockopt::sndhwm, 100'000);
      socket.set(zmq::sockopt::rcvhwm, 100'000);
      if (Status s = Connect(socket, options_.broker_address, "cannot connect to the broker");
          !s.ok()) {
        return s;
      }
      // Tells us when the broker connection drops, so that pending calls
      // fail fast (or are sent again, if idempotent) instead of waiting for
      // their deadlines.
      std::string monitor = "inproc://zserve-client-monitor";
      if (zmq_socket_monitor(socket.handle(), monitor.c_str(),
                             ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) != 0) {
        return Internal("zmq_socket_monitor failed");
      }
      monitor_.socket().set(zmq::sockopt::linger, 0);
      monitor_.socket().connect(monitor);
    } catch (const zmq::error_t& e) {
      return Internal(std::string("cannot set up the broker connection: ") + e.what());
    }
    return Status::Ok();
  }

  void CallAsync(std::string_view endpoint, std::string_view payload, const CallOptions& o,
                 Callback done) {
    if (payload.size() > options_.max_payload_bytes) {
      Complete(std::move(done),
               BadRequest("payload of " + std::to_string(payload.size()) + " bytes; at most " +
                          std::to_string(options_.max_payload_bytes) +
                          " (ClientOptions::max_payload_bytes)"));
      return;
    }
    // What the broker would refuse is refused here, for this call alone: in
    // a REQUESTS it would also be answered alone, but only after the flush.
    Status bad = sc::ValidateName("endpoint", endpoint);
    if (bad.ok()) bad = sc::ValidateMethod(o.method);
    if (bad.ok() && o.timeout.count() < 0) {
      bad = BadRequest("timeout of " + std::to_string(o.timeout.count()) +
                       " ms; 0 means ClientOptions::default_timeout");
    }
    if (bad.ok() && o.shard_key.size() > sc::kMaxNameBytes) {
      bad = BadRequest("shard key of " + std::to_string(o.shard_key.size()) + " bytes; at most " +
                       std::to_string(sc::kMaxNameBytes));
    }
    if (!bad.ok()) {
      Complete(std::move(done), std::move(bad));
      return;
    }
    auto timeout = o.timeout.count() > 0 ? o.timeout : options_.default_timeout;
    if (timeout.count() > UINT32_MAX) timeout = std::chrono::milliseconds(UINT32_MAX);
    uint64_t id = next_id_++;
    sc::RequestHeader h{id,          std::string(endpoint),
                        o.method,    static_cast<uint32_t>(timeout.count()),
                        o.shard_key, o.priority};
    // An idempotent call keeps its frames, to send again after a lost connection.
    std::optional<Resend> resend;
    if (o.idempotent) resend = Resend{sc::EncodeRequest(h), std::string(payload)};
    DeadlineQueue::Handle guard = guards_.Add(Clock::now() + timeout + options_.grace, id);
    pending_.emplace(id, Pending{std::move(done), guard, std::move(resend)});
    // Big payloads do not wait for company: a message stays well under the
    // broker's --max-message-bytes unless one call alone is that big.
    if (queued_payload_bytes_ + payload.size() > kMaxQueuedPayloadBytes) Flush();
    queued_payload_bytes_ += payload.size();
    // Queued: calls made before the next Poll go out together (REQUESTS).
    queued_bytes_ += 32 + h.endpoint.size() + h.method.size() + h.shard_key.size();
    queued_.push_back(std::move(h));
    queued_payloads_.append(payload);
    queued_sizes_.push_back(payload.size());
    if (queued_.size() == sc::kMaxCallsPerMessage || queued_bytes_ > kMaxQueuedHeaderBytes) Flush();
  }

  // Sends the queued calls: one REQUEST, or one REQUESTS for several, their
  // payloads packed in one frame (PROTOCOL.md 3.1). If the broker cannot be
  // reached they fail at once with UNAVAILABLE.
  void Flush() {
    if (queued_.empty()) return;
    std::string header = queued_.size() == 1 ? sc::EncodeRequest(queued_[0])
                                             : sc::EncodeRequests(queued_, queued_sizes_);
    zmq::message_t frames[2] = {zmq::message_t(header.data(), header.size()),
                                zmq::message_t(queued_payloads_.data(), queued_payloads_.size())};
    Status sent = socket_.Send(frames);
    if (!sent.ok()) {
      for (const sc::RequestHeader& h : queued_) {
        auto it = pending_.find(h.request_id);
        if (it == pending_.end()) continue;
        Complete(std::move(it->second.done),
                 Unavailable("cannot send to the broker: " + sent.message()));
        guards_.Remove(it->second.guard);
        pending_.erase(it);
      }
    }
    queued_.clear();
    queued_payloads_.clear();
    queued_sizes_.clear();
    queued_bytes_ = 0;
    queued_payload_bytes_ = 0;
  }

  StatusOr<std::string> BrokerStatus(std::chrono::milliseconds timeout) {
    uint64_t id = next_id_++;
    std::string header = sc::EncodeStatusRequest(id);
    zmq::message_t frame(header.data(), header.size());
    std::optional<StatusOr<std::string>> result;
    Send(id, std::span(&frame, 1), timeout,
         [&result](StatusOr<std::string> r) { result = std::move(r); });
    while (!result) Poll(std::chrono::milliseconds(-1));
    return std::move(*result);
  }

  StatusOr<std::string> Call(std::string_view endpoint, std::string_view payload,
                             const CallOptions& o) {
    std::optional<StatusOr<std::string>> result;
    CallAsync(endpoint, payload, o, [&result](StatusOr<std::string> r) { result = std::move(r); });
    while (!result) Poll(std::chrono::milliseconds(-1));
    return std::move(*result);
  }

  // timeout < 0: until at least one callback ran (or nothing is pending,
  // or `wake_fd` >= 0 is readable).
  size_t Poll(std::chrono::milliseconds timeout, int wake_fd = -1) {
    Flush();
    size_t done = RunReady();
    if (done > 0 || (pending_.empty() && wake_fd < 0)) {
      Flush();  // what the callbacks called
      return done;
    }
    TimePoint end = timeout.count() < 0 ? TimePoint::max() : Clock::now() + timeout;
    while (done == 0) {
      TimePoint now = Clock::now();
      TimePoint wake = std::min(end, guards_.Earliest().value_or(end));
      auto wait = wake == TimePoint::max()
                      ? std::chrono::milliseconds(-1)
                      : std::max(std::chrono::ceil<std::chrono::milliseconds>(wake - now),
                                 std::chrono::milliseconds(0));
      Flush();
      PollItem items[3] = {{.socket = &socket_}, {.socket = &monitor_}, {.fd = wake_fd}};
      zserve::Poll(std::span(items, wake_fd >= 0 ? 3 : 2), wait);  // a broken context throws
      // Completions are queued and their callbacks run after, with frames_
      // and the reply scratch no longer in use: a callback may Call or Poll.
      while (socket_.Recv(&frames_)) HandleReply();
      while (monitor_.Recv(&frames_)) HandleMonitorEvent();
      ExpireGuards(Clock::now());
      done += RunReady();
      Flush();  // what the callbacks called
      if (wake_fd >= 0 && items[2].ready) break;
      if (Clock::now() >= end || (pending_.empty() && wake_fd < 0)) break;
    }
    return done;
  }

  size_t pending() const { return pending_.size() + ready_.size(); }

 private:
  struct Resend {
    std::string header;
    std::string payload;
  };
  struct Pending {
    Callback done;
    DeadlineQueue::Handle guard;   // in guards_
    std::optional<Resend> resend;  // idempotent calls only
  };

  // The broker connection dropped: what it held is lost. Idempotent calls
  // are sent again (ZeroMQ delivers them once it has reconnected); the others
  // fail now, since they may or may not have run. Or the broker refused our
  // CURVE key: every call fails, none ran.
  void HandleMonitorEvent() {
    uint16_t event = 0;
    if (!frames_.empty() && frames_[0].size() >= sizeof event) {
      std::memcpy(&event, frames_[0].data(), sizeof event);
    }
    const bool refused = event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    Flush();  // queued calls are treated as sent
    std::vector<uint64_t> failed;
    for (auto& [id, p] : pending_) {
      if (p.resend && !refused) {
        zmq::message_t frames[2] = {
            zmq::message_t(p.resend->header.data(), p.resend->header.size()),
            zmq::message_t(p.resend->payload.data(), p.resend->payload.size())};
        if (socket_.Send(frames).ok()) continue;
      }
      failed.push_back(id);
    }
    for (uint64_t id : failed) {
      auto it = pending_.find(id);
      Callback done = std::move(it->second.done);
      guards_.Remove(it->second.guard);
      pending_.erase(it);
      Complete(std::move(done),
               refused ? PermissionDenied("the broker refused this client's CURVE key (not in its "
                                          "allow-list as a client)")
                       : Unavailable("lost the connection to the broker; the call may or may not "
                                     "have run"));
    }
  }

  void Send(uint64_t id, std::span<zmq::message_t> frames, std::chrono::milliseconds timeout,
            Callback done, std::optional<Resend> resend = std::nullopt) {
    Status sent = socket_.Send(frames);
    if (!sent.ok()) {
      Complete(std::move(done), Unavailable("cannot send to the broker: " + sent.message()));
      return;
    }
    DeadlineQueue::Handle guard = guards_.Add(Clock::now() + timeout + options_.grace, id);
    pending_.emplace(id, Pending{std::move(done), guard, std::move(resend)});
  }

  // A REPLY, or REPLIES with one payload frame per reply or packed
  // payloads; anything else is not of this protocol and ignored.
  void HandleReply() {
    if (frames_.empty()) return;  // a packed REPLIES of errors only has no payload frame
    if (frames_.size() == 2) {
      StatusOr<sc::ReplyHeader> reply = sc::DecodeReply(View(frames_[0]));
      if (reply.ok()) return Deliver(*reply, View(frames_[1]));
    }
    StatusOr<std::vector<sc::ReplyHeader>> replies =
        sc::DecodeReplies(View(frames_[0]), &reply_sizes_);
    if (!replies.ok()) return;
    std::span<const zmq::message_t> payloads(frames_.data() + 1, frames_.size() - 1);
    if (reply_sizes_.empty()) {
      if (replies->size() != payloads.size()) return;
      for (size_t i = 0; i < replies->size(); ++i) Deliver((*replies)[i], View(payloads[i]));
      return;
    }
    if (!LocatePayloads(reply_sizes_, payloads, &reply_refs_).ok()) return;
    for (size_t i = 0; i < replies->size(); ++i) {
      const PayloadRef& at = reply_refs_[i];
      Deliver((*replies)[i], at.size == 0 ? std::string_view()
                                          : View(payloads[at.frame]).substr(at.offset, at.size));
    }
  }

  // Queues the call's completion for RunReady.
  void Complete(Callback done, StatusOr<std::string> result) {
    ready_.emplace_back(std::move(done), std::move(result));
  }

  void Deliver(sc::ReplyHeader& reply, std::string_view payload) {
    auto it = pending_.find(reply.request_id);
    if (it == pending_.end()) return;  // answered already (local deadline)
    Callback done = std::move(it->second.done);
    guards_.Remove(it->second.guard);
    pending_.erase(it);
    if (reply.code == StatusCode::kOk) {
      Complete(std::move(done), std::string(payload));
    } else {
      Complete(std::move(done), Status(reply.code, std::move(reply.message)));
    }
  }

  void ExpireGuards(TimePoint now) {
    uint64_t id;
    while (guards_.PopDue(now, &id)) {
      auto it = pending_.find(id);
      Callback done = std::move(it->second.done);
      pending_.erase(it);
      Complete(std::move(done), DeadlineExceeded("no reply from the broker before the deadline"));
    }
  }

  // Runs the queued completions, each taken off the queue before its
  // callback runs (which may Call or Poll, and so run the ones after it).
  size_t RunReady() {
    size_t n = 0;
    while (!ready_.empty()) {
      auto [done, result] = std::move(ready_.front());
      ready_.pop_front();
      done(std::move(result));
      ++n;
    }
    return n;
  }

  ClientOptions options_;
  zmq::context_t context_;
  PolledSocket socket_;
  PolledSocket monitor_;  // PAIR: the socket monitor's events
  uint64_t next_id_ = 1;
  // Calls made since the last Flush, not sent yet (their callbacks are in
  // pending_ already).
  static constexpr size_t kMaxQueuedHeaderBytes = 32 * 1024;
  static constexpr size_t kMaxQueuedPayloadBytes = 4 * 1024 * 1024;
  std::vector<sc::RequestHeader> queued_;
  std::string queued_payloads_;  // back to back, one frame at Flush
  std::vector<uint64_t> queued_sizes_;
  size_t queued_bytes_ = 0;  // of their headers, roughly
  size_t queued_payload_bytes_ = 0;
  Frames frames_;
  std::vector<uint64_t> reply_sizes_;  // scratch for packed REPLIES
  std::vector<PayloadRef> reply_refs_;
  // Nodes from a pool: after the first peak, a call allocates none for these.
  std::pmr::unsynchronized_pool_resource call_pool_;
  std::pmr::unordered_map<uint64_t, Pending> pending_{&call_pool_};
  DeadlineQueue guards_;  // each pending call's deadline
  // Completed calls whose callbacks have not run yet.
  std::deque<std::pair<Callback, StatusOr<std::string>>> ready_;
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

StatusOr<std::unique_ptr<Client>> Client::Create(const ClientOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  if (Status s = impl->Init(); !s.ok()) return s;
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

StatusOr<std::string> Client::Call(std::string_view endpoint, std::string_view payload,
                                   const CallOptions& options) {
  return impl_->Call(endpoint, payload, options);
}

void Client::CallAsync(std::string_view endpoint, std::string_view payload,
                       const CallOptions& options, Callback done) {
  impl_->CallAsync(endpoint, payload, options, std::move(done));
}

size_t Client::Poll(std::chrono::milliseconds timeout) { return impl_->Poll(timeout); }

size_t Client::Poll(std::chrono::milliseconds timeout, int wake_fd) {
  return impl_->Poll(timeout, wake_fd);
}

void Client::Wait() {
  while (impl_->pending() > 0) impl_->Poll(std::chrono::milliseconds(-1));
}

size_t Client::pending() const { return impl_->pending(); }

StatusOr<std::string> Client::BrokerStatus(std::chrono::milliseconds timeout) {
  return impl_->BrokerStatus(timeout);
}

}  // namespace zserve
