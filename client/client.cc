#include "zserve/client.h"

#include <algorithm>
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

  // Each call's callback runs exactly once: a call still pending when the
  // client goes fails here.
  ~Impl() {
    std::vector<uint64_t> ids;
    for (const auto& [id, p] : pending_) ids.push_back(id);
    std::sort(ids.begin(), ids.end());
    for (uint64_t id : ids) {
      FailPending(id, Unavailable(Sent(id, pending_.find(id)->second)
                                      ? "the client was destroyed with the call pending; it may "
                                        "or may not have run"
                                      : "the client was destroyed before the call was sent"));
    }
    try {
      RunReady();
    } catch (...) {
      // A callback's exception does not leave a destructor.
    }
  }

  Status Init() {
    if (options_.connect_timeout.count() <= 0) return BadRequest("connect_timeout must be > 0");
    if (options_.grace.count() < 0 || options_.grace > kLongestTimeout) {
      return BadRequest("grace must be 0.." + std::to_string(kLongestTimeout.count()) + " ms");
    }
    zmq::socket_t& socket = socket_.socket();
    if (Status s = SecureClient(socket, options_.curve_key, options_.curve_server_key); !s.ok()) {
      return s;
    }
    try {
      socket.set(zmq::sockopt::linger, 0);
      socket.set(zmq::sockopt::sndhwm, 100'000);
      socket.set(zmq::sockopt::rcvhwm, 100'000);
      // A call goes out only on a connection that is up (handshake done);
      // until then the client holds it, and it can still expire unsent. A
      // dropped connection takes what was queued for it along.
      socket.set(zmq::sockopt::immediate, 1);
      socket.set(zmq::sockopt::reconnect_ivl, static_cast<int>(kReconnectIvl.count()));
      // A broker that stops answering (stopped, or its host gone without a
      // reset) ends the connection, so its calls fail instead of waiting.
      socket.set(zmq::sockopt::heartbeat_ivl, 2'000);
      socket.set(zmq::sockopt::heartbeat_timeout, 10'000);
      // The monitor tells when the connection is up, when it drops (pending
      // calls fail fast, or are sent again if idempotent) and when the
      // broker refuses the handshake. Set up before connecting: no event is
      // missed.
      std::string monitor = "inproc://zserve-client-monitor";
      if (zmq_socket_monitor(socket.handle(), monitor.c_str(),
                             ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                                 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                                 ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                 ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0) {
        return Internal("zmq_socket_monitor failed");
      }
      monitor_.socket().set(zmq::sockopt::linger, 0);
      monitor_.socket().connect(monitor);
      if (Status s = Connect(socket, options_.broker_address, "cannot connect to the broker");
          !s.ok()) {
        return s;
      }
    } catch (const zmq::error_t& e) {
      return Internal(std::string("cannot set up the broker connection: ") + e.what());
    }
    last_monitor_check_ = Clock::now();
    return Status::Ok();
  }

  void CallAsync(std::string_view endpoint, std::string_view payload, const CallOptions& o,
                 Callback done) {
    if (!done) done = [](StatusOr<std::string>) {};  // no one to tell: the result is dropped
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
                       " ms; 0 means the endpoint's timeout_ms");
    }
    if (bad.ok() && o.shard_key.size() > sc::kMaxNameBytes) {
      bad = BadRequest("shard key of " + std::to_string(o.shard_key.size()) + " bytes; at most " +
                       std::to_string(sc::kMaxNameBytes));
    }
    // A broker that refused this client's handshake: ZeroMQ does not try
    // again after a refused key, so the call would wait out its deadline.
    // (A new handshake that succeeds clears it.)
    if (bad.ok() && !connected_) {
      if (Clock::now() - last_monitor_check_ > kReconnectIvl / 2) DrainMonitor();
      if (handshake_failure_ && !connected_) bad = *handshake_failure_;
    }
    if (!bad.ok()) {
      Complete(std::move(done), std::move(bad));
      return;
    }
    // Big payloads do not wait for company: a message stays well under the
    // broker's --max-message-bytes unless one call alone is that big. Sent
    // before this call takes its id: ids are queued in increasing order.
    TimePoint now = Clock::now();
    now_ = now;
    if (queued_payloads_.size() + payload.size() > kMaxQueuedPayloadBytes) Flush();
    // A call that names no timeout sends 0: the broker gives it the
    // endpoint's timeout_ms. Until it is sent, connect_timeout bounds it.
    const bool named = o.timeout.count() > 0;
    auto timeout = std::min(o.timeout, std::chrono::milliseconds(UINT32_MAX));
    TimePoint deadline = named ? now + timeout : TimePoint::max();
    uint64_t id = next_id_++;
    sc::RequestHeader h{id,          std::string(endpoint),
                        o.method,    static_cast<uint32_t>(named ? timeout.count() : 0),
                        o.shard_key, o.priority};
    // An idempotent call keeps its header and payload, to send again after
    // a lost connection.
    std::unique_ptr<Resend> resend;
    if (o.idempotent) resend.reset(new Resend{h, std::string(payload), deadline});
    // Due at the deadline: unsent, the call fails then; sent, it waits the
    // grace for the broker's own answer (ExpireGuards).
    DeadlineQueue::Handle guard =
        guards_.Add(named ? deadline : SaturatingAdd(now, options_.connect_timeout), id);
    pending_.emplace(id, Pending{std::move(done), guard, std::move(resend), named});
    Enqueue(std::move(h), payload, deadline);
  }

  // Sends the queued calls: one REQUEST, or one REQUESTS for several, their
  // payloads packed in one frame (PROTOCOL.md 3.1). While the broker
  // connection is not up they stay queued (held).
  void Flush() {
    if (queued_.empty()) return;
    // The monitor's events are read every Poll turn. A client idle for a
    // while reads them before it sends: an old connection's DISCONNECTED
    // must not fail a call sent on the new one (a new connection comes no
    // sooner than kReconnectIvl after the old one dropped).
    if (connected_ && now_ - last_monitor_check_ > kReconnectIvl / 2) DrainMonitor();
    if (!connected_) {
      // Held: their timeouts are what is left when they go. Those answered
      // meanwhile (expired) are dropped now and then, so that a long outage
      // does not keep their payloads.
      held_ = true;
      if (dead_queued_ > 64 && dead_queued_ * 2 > queued_.size()) Refresh();
      return;
    }
    // Calls made a while before this Poll (the caller did other work in
    // between) go with the time they have left, as held ones do: their
    // deadlines run from when they were made.
    if (now_ - first_queued_ > kStaleQueue) held_ = true;
    if (held_ || dead_queued_ > 0) Refresh();
    if (queued_.empty()) {
      ClearQueue();
      return;
    }
    if (queued_.size() <= sc::kMaxCallsPerMessage && queued_bytes_ <= kMaxQueuedHeaderBytes &&
        (queued_.size() == 1 || queued_payloads_.size() <= kMaxQueuedPayloadBytes)) {
      // All in one message, as calls made between two polls are.
      std::string header = queued_.size() == 1 ? sc::EncodeRequest(queued_[0])
                                               : sc::EncodeRequests(queued_, queued_sizes_);
      zmq::message_t frames[2] = {zmq::message_t(header.data(), header.size()),
                                  zmq::message_t(queued_payloads_.data(), queued_payloads_.size())};
      if (AfterSend(socket_.Send(frames))) ClearQueue();
      return;
    }
    size_t begin = 0;
    while (begin < queued_.size()) {
      // At most kMaxCallsPerMessage calls and about the usual bytes per
      // message: more queue up while the connection is down.
      size_t end = begin, header_bytes = 0, payload_bytes = 0;
      while (end < queued_.size() && end - begin < sc::kMaxCallsPerMessage &&
             (end == begin || (header_bytes <= kMaxQueuedHeaderBytes &&
                               payload_bytes + queued_sizes_[end] <= kMaxQueuedPayloadBytes))) {
        header_bytes += HeaderBytes(queued_[end]);
        payload_bytes += queued_sizes_[end];
        ++end;
      }
      std::span<const sc::RequestHeader> calls(queued_.data() + begin, end - begin);
      std::span<const uint64_t> sizes = std::span(queued_sizes_).subspan(begin, end - begin);
      std::string header;
      if (calls.size() == 1) {
        header = sc::EncodeRequest(calls[0]);
      } else if (calls.size() == queued_.size()) {
        header = sc::EncodeRequests(queued_, sizes);
      } else {  // part of calls held: a copy for the message
        header = sc::EncodeRequests({calls.begin(), calls.end()}, sizes);
      }
      zmq::message_t frames[2] = {
          zmq::message_t(header.data(), header.size()),
          zmq::message_t(queued_payloads_.data() + payload_sent_, payload_bytes)};
      if (!AfterSend(socket_.Send(frames), begin, end)) break;
      payload_sent_ += payload_bytes;
      begin = end;
    }
    if (begin == queued_.size()) {
      ClearQueue();
      return;
    }
    queued_.erase(queued_.begin(), queued_.begin() + begin);
    queued_sizes_.erase(queued_sizes_.begin(), queued_sizes_.begin() + begin);
    queued_deadlines_.erase(queued_deadlines_.begin(), queued_deadlines_.begin() + begin);
    queued_payloads_.erase(0, payload_sent_);
    payload_sent_ = 0;
    queued_bytes_ = 0;
    for (const sc::RequestHeader& h : queued_) queued_bytes_ += HeaderBytes(h);
  }

  // After sending queued_[begin, end): false if the calls stay queued.
  // No connection after all (it dropped, or the new one is not attached
  // yet) or a full pipe holds them, to be tried again shortly; another
  // failure fails them.
  bool AfterSend(const Status& sent, size_t begin = 0, size_t end = SIZE_MAX) {
    if (sent.ok()) return true;
    if (sent.code() == StatusCode::kUnavailable) {
      held_ = true;
      return false;
    }
    end = std::min(end, queued_.size());
    for (size_t i = begin; i < end; ++i) {
      uint64_t id = queued_[i].request_id;
      if (pending_.contains(id)) {
        FailPending(id, Unavailable("cannot send to the broker: " + sent.message()));
      }
    }
    return true;
  }

  void ClearQueue() {
    queued_.clear();
    queued_payloads_.clear();
    queued_sizes_.clear();
    queued_deadlines_.clear();
    queued_bytes_ = 0;
    payload_sent_ = 0;
    held_ = false;
    dead_queued_ = 0;
  }

  StatusOr<std::string> BrokerStatus(std::chrono::milliseconds timeout) {
    if (timeout.count() < 0) {
      return BadRequest("timeout of " + std::to_string(timeout.count()) + " ms; it is >= 0");
    }
    TimePoint deadline = SaturatingAdd(Clock::now(), timeout);
    uint64_t id = next_id_++;
    std::string header = sc::EncodeStatusRequest(id);
    while (true) {
      if (Clock::now() - last_monitor_check_ > kReconnectIvl / 2) DrainMonitor();
      if (handshake_failure_) return *handshake_failure_;
      if (connected_) {
        zmq::message_t frame(header.data(), header.size());
        Status sent = socket_.Send(std::span(&frame, 1));
        if (sent.ok()) break;
        if (sent.code() != StatusCode::kUnavailable) return sent;
      }
      TimePoint now = Clock::now();
      if (now >= deadline) {
        return DeadlineExceeded("no connection to the broker at " + options_.broker_address +
                                " before the deadline (is it running there?)");
      }
      // Wait for the connection (a monitor event), or a moment when it is
      // up but not attached yet.
      auto wait = connected_ ? std::chrono::milliseconds(1)
                             : std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
      PollItem item{.socket = &monitor_};
      zserve::Poll(std::span(&item, 1), wait);
      DrainMonitor();
    }
    std::optional<StatusOr<std::string>> result;
    DeadlineQueue::Handle guard = guards_.Add(SaturatingAdd(deadline, options_.grace), id);
    Pending p{[&result](StatusOr<std::string> r) { result = std::move(r); }, guard, nullptr,
              /*named=*/true};
    p.direct = true;
    p.graced = true;  // its guard is at deadline + grace already
    pending_.emplace(id, std::move(p));
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
    now_ = Clock::now();
    Flush();
    size_t done = RunReady();
    if (done > 0 || (pending_.empty() && wake_fd < 0)) {
      Flush();  // what the callbacks called
      return done;
    }
    TimePoint end = timeout.count() < 0 ? TimePoint::max() : SaturatingAdd(Clock::now(), timeout);
    while (done == 0) {
      TimePoint now = Clock::now();
      TimePoint wake = std::min(end, guards_.Earliest().value_or(end));
      // Held calls on a connection that is up: tried again shortly.
      if (held_ && connected_) wake = std::min(wake, now + std::chrono::milliseconds(1));
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
      now = Clock::now();
      now_ = now;
      last_monitor_check_ = now;
      while (monitor_.Recv(&frames_)) HandleMonitorEvent();
      ExpireGuards(now);
      done += RunReady();
      Flush();  // what the callbacks called, and the held calls
      if (wake_fd >= 0 && items[2].ready) break;
      if (Clock::now() >= end || (pending_.empty() && wake_fd < 0)) break;
    }
    return done;
  }

  size_t pending() const { return pending_.size() + ready_.size(); }

 private:
  struct Resend {
    sc::RequestHeader header;
    std::string payload;
    TimePoint deadline;  // max(): the endpoint's timeout
  };
  struct Pending {
    Callback done;
    DeadlineQueue::Handle guard;     // in guards_
    std::unique_ptr<Resend> resend;  // idempotent calls only
    bool named = true;               // the caller named its timeout
    bool direct = false;             // sent at once, not through the queue (STATUS)
    bool graced = false;             // past its deadline, waiting the grace
    uint8_t resends = 0;             // times sent again after a lost connection
  };

  // An idempotent call is sent again after at most this many lost
  // connections; the next one fails it (a call whose message makes the
  // broker drop the connection must not loop).
  static constexpr uint8_t kMaxResends = 3;
  static constexpr std::chrono::milliseconds kReconnectIvl{100};
  // Queued longer than this before the flush, calls are sent with the time
  // they have left (Refresh), not their whole timeout; within it, the
  // broker's deadline is at most this late, and a busy loop turn (hundreds
  // of callbacks making calls) pays no lookup per call for it.
  static constexpr std::chrono::milliseconds kStaleQueue{10};
  // A call that names no timeout gets the endpoint's, at most this long.
  static constexpr std::chrono::milliseconds kLongestTimeout{sc::kTimeoutMsRange.max};

  static size_t HeaderBytes(const sc::RequestHeader& h) {
    return 32 + h.endpoint.size() + h.method.size() + h.shard_key.size();
  }

  // Queued calls are in id order, and the queue holds exactly the pending
  // calls not sent yet: a call is sent once its id is below the first
  // queued one (a call sent again gets a new id at the back).
  bool Sent(uint64_t id, const Pending& p) const {
    return p.direct || id < (queued_.empty() ? next_id_ : queued_.front().request_id);
  }

  void Enqueue(sc::RequestHeader h, std::string_view payload, TimePoint deadline) {
    // Queued: calls made before the next Poll go out together (REQUESTS).
    if (queued_.empty()) first_queued_ = now_;
    queued_bytes_ += HeaderBytes(h);
    queued_.push_back(std::move(h));
    queued_payloads_.append(payload);
    queued_sizes_.push_back(payload.size());
    queued_deadlines_.push_back(deadline);
    if (queued_.size() >= sc::kMaxCallsPerMessage || queued_bytes_ > kMaxQueuedHeaderBytes) {
      Flush();
    }
  }

  // Before sending calls that waited: drops those answered meanwhile
  // (expired, failed) and gives the others the time they have left.
  void Refresh() {
    TimePoint now = Clock::now();
    size_t keep = 0, in = 0, out = 0;
    for (size_t i = 0; i < queued_.size(); ++i) {
      size_t size = queued_sizes_[i];
      auto it = pending_.find(queued_[i].request_id);
      if (it != pending_.end() && queued_deadlines_[i] <= now) {
        // Its deadline passed while held (its guard may not have fired
        // yet): it fails here, not sent.
        Callback done = std::move(it->second.done);
        const bool sent_before = it->second.resends > 0;
        guards_.Remove(it->second.guard);
        pending_.erase(it);
        Complete(std::move(done), NotSentBeforeDeadline(sent_before));
      } else if (it != pending_.end()) {
        if (queued_deadlines_[i] != TimePoint::max()) {
          auto left = std::chrono::ceil<std::chrono::milliseconds>(queued_deadlines_[i] - now);
          queued_[i].timeout_ms = static_cast<uint32_t>(left.count());
        }
        if (keep != i) {
          queued_[keep] = std::move(queued_[i]);
          queued_sizes_[keep] = size;
          queued_deadlines_[keep] = queued_deadlines_[i];
          std::memmove(queued_payloads_.data() + out, queued_payloads_.data() + in, size);
        }
        ++keep;
        out += size;
      }
      in += size;
    }
    queued_.resize(keep);
    queued_sizes_.resize(keep);
    queued_deadlines_.resize(keep);
    queued_payloads_.resize(out);
    queued_bytes_ = 0;
    for (const sc::RequestHeader& h : queued_) queued_bytes_ += HeaderBytes(h);
    dead_queued_ = 0;
  }

  void DrainMonitor() {
    PollItem item{.socket = &monitor_};
    zserve::Poll(std::span(&item, 1), std::chrono::milliseconds(0));
    last_monitor_check_ = Clock::now();
    while (monitor_.Recv(&frames_)) HandleMonitorEvent();
  }

  // The connection is up; or it dropped: what the broker held is lost.
  // Idempotent calls are sent again (on the next connection); the others
  // fail now, since they may or may not have run. Or the broker refused our
  // CURVE key (every call fails, none ran), or the handshake failed (the
  // calls not sent yet fail: the peer is no zserve broker, or the CURVE
  // settings differ).
  void HandleMonitorEvent() {
    uint16_t event = 0;
    uint32_t value = 0;
    (void)ReadMonitorEvent(frames_, &event, &value);
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
      connected_ = true;
      handshake_failure_.reset();
      handshake_failures_ = 0;
      return;
    }
    std::vector<uint64_t> ids;
    for (const auto& [id, p] : pending_) ids.push_back(id);
    std::sort(ids.begin(), ids.end());  // the calls sent again keep their order
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
      handshake_failure_ = PermissionDenied(
          "the broker refused this client's CURVE key (not in its allow-list as a client)");
      for (uint64_t id : ids) FailPending(id, *handshake_failure_);
      return;
    }
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
        event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
      // The peer closed the connection or broke the protocol in the
      // handshake: no zserve broker there, or CURVE on at one end only, or
      // the wrong broker key. Retrying would not mend it.
      // One close alone may be a broker going away mid-handshake: the
      // calls wait for the next try (ZeroMQ's, kReconnectIvl later).
      if (!HandshakeFailed(event, &handshake_failures_)) return;
      std::string why = event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                            ? "ZeroMQ protocol error " + std::to_string(value)
                            : std::string(std::strerror(static_cast<int>(value)));
      handshake_failure_ = Unavailable(
          "the handshake with the broker at " + options_.broker_address + " failed (" + why +
          "): no zserve broker's client port there, or CURVE on at one end only, or another "
          "broker key; not sent");
      for (uint64_t id : ids) {
        if (!Sent(id, pending_.find(id)->second)) FailPending(id, *handshake_failure_);
      }
      return;
    }
    if (event != ZMQ_EVENT_DISCONNECTED) return;
    connected_ = false;
    std::vector<uint64_t> again;
    for (uint64_t id : ids) {
      Pending& p = pending_.find(id)->second;
      if (!Sent(id, p)) continue;  // still queued: goes on the next connection
      if (p.resend && p.resends < kMaxResends) {
        again.push_back(id);
        continue;
      }
      FailPending(id, Unavailable(p.resend ? "lost the connection to the broker " +
                                                 std::to_string(kMaxResends + 1) +
                                                 " times while the call was pending; it may or "
                                                 "may not have run"
                                           : "lost the connection to the broker; the call may "
                                             "or may not have run"));
    }
    for (uint64_t id : again) {
      // Queued again under a new id, so the queue stays in id order.
      auto node = pending_.extract(id);
      Pending& p = node.mapped();
      uint64_t new_id = next_id_++;
      guards_.Remove(p.guard);
      p.guard = guards_.Add(
          p.named ? p.resend->deadline : SaturatingAdd(Clock::now(), options_.connect_timeout),
          new_id);
      ++p.resends;
      p.graced = false;
      node.key() = new_id;
      sc::RequestHeader h = p.resend->header;
      h.request_id = new_id;
      std::string_view payload = p.resend->payload;
      TimePoint deadline = p.resend->deadline;
      pending_.insert(std::move(node));
      held_ = true;  // its timeout is what is left
      queued_bytes_ += HeaderBytes(h);
      queued_.push_back(std::move(h));
      queued_payloads_.append(payload);
      queued_sizes_.push_back(payload.size());
      queued_deadlines_.push_back(deadline);
    }
  }

  // A pending call ends with `status`; a queued one is skipped at the flush.
  void FailPending(uint64_t id, Status status) {
    auto it = pending_.find(id);
    if (!Sent(id, it->second)) ++dead_queued_;
    Callback done = std::move(it->second.done);
    guards_.Remove(it->second.guard);
    pending_.erase(it);
    Complete(std::move(done), std::move(status));
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
      Pending& p = it->second;
      const bool sent = Sent(id, p);
      if (!p.named && sent) {
        // Sent with the endpoint's timeout, which the client does not know:
        // the broker answers by then. This guard is for a broker that
        // never does.
        p.guard = guards_.Add(now + kLongestTimeout + options_.grace, id);
        continue;
      }
      if (p.named && sent && !p.graced) {
        // Its deadline: the broker's DEADLINE_EXCEEDED (or a result just in
        // time) is on its way, and gets `grace` to arrive.
        p.graced = true;
        p.guard = guards_.Add(now + options_.grace, id);
        continue;
      }
      const bool named = p.named;
      const bool sent_before = p.resends > 0;
      Callback done = std::move(p.done);
      pending_.erase(it);
      if (!sent) ++dead_queued_;
      Complete(std::move(done),
               sent ? DeadlineExceeded("no reply from the broker before the deadline")
               : named
                   ? NotSentBeforeDeadline(sent_before)
                   : Unavailable("no connection to the broker at " + options_.broker_address +
                                 " within " + std::to_string(options_.connect_timeout.count()) +
                                 " ms (ClientOptions::connect_timeout); the call was not sent"));
    }
  }

  // `sent_before`: an idempotent call waiting to be sent again after a lost
  // connection, which may have run on it.
  Status NotSentBeforeDeadline(bool sent_before) const {
    return DeadlineExceeded("no connection to the broker at " + options_.broker_address +
                            " before the deadline; the call was not sent" +
                            (sent_before ? " again (it was sent before the connection dropped, "
                                           "and may or may not have run)"
                                         : ""));
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
  bool connected_ = false;  // a connection is up (by the monitor's events)
  // The last handshake failed (until one succeeds): why.
  std::optional<Status> handshake_failure_;
  int handshake_failures_ = 0;  // in a row
  TimePoint last_monitor_check_{};
  // The time when a call was last made or the sockets last polled: Flush
  // takes it from there rather than reading the clock.
  TimePoint now_{};
  // Calls not sent yet, in id order (their callbacks are in pending_
  // already): those made since the last Flush, and those held while the
  // connection is down.
  static constexpr size_t kMaxQueuedHeaderBytes = 32 * 1024;
  static constexpr size_t kMaxQueuedPayloadBytes = 4 * 1024 * 1024;
  std::vector<sc::RequestHeader> queued_;
  std::string queued_payloads_;  // back to back
  std::vector<uint64_t> queued_sizes_;
  std::vector<TimePoint> queued_deadlines_;  // max(): the endpoint's timeout
  size_t queued_bytes_ = 0;                  // of their headers, roughly
  size_t payload_sent_ = 0;                  // Flush's scratch
  bool held_ = false;         // some waited: their timeouts are refreshed before sending
  size_t dead_queued_ = 0;    // queued calls answered already (not to be sent)
  TimePoint first_queued_{};  // when the oldest call in the queue was made
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
