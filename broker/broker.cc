#include "broker/broker.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>

#include "broker/mdp.h"
#include "schemas/codec.h"
#include "schemas/config.h"

namespace zserve::broker {

namespace sc = zserve::schemas;

namespace {

// Messages read from one socket per loop turn, so no socket starves another.
constexpr int kReadBurst = 256;
// The most frames of a client message: a REQUESTS of the most calls
// (docs/security.md).
constexpr size_t kMaxClientFrames = sc::kMaxCallsPerMessage + 2;
// A worker's RESULTS: identity, header, one payload per batch item.
constexpr size_t kMaxWorkerFrames = sc::kMaxBatchItems + 2;
// Payload bytes after which a BATCH is cut (it always carries one item).
constexpr int64_t kMaxBatchPayloadBytes = 4 << 20;

zmq::message_t ToMessage(const std::string& s) { return zmq::message_t(s.data(), s.size()); }

zmq::message_t Copy(const zmq::message_t& m) {
  zmq::message_t out;
  out.copy(const_cast<zmq::message_t&>(m));  // shares the buffer, no data copy
  return out;
}

// An MDP worker names no tag: "mdp-" and its connection id in hex, for
// logs (the id itself is binary) and sticky keys.
std::string MdpReplicaTag(std::string_view replica) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string tag = "mdp-";
  for (unsigned char c : replica) {
    tag += kHex[c >> 4];
    tag += kHex[c & 15];
  }
  return tag;
}

}  // namespace

uint64_t Broker::FirstToken() {
  std::random_device rd;
  const uint64_t r = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return (r >> 2) + 1;  // 1 .. 2^62: room for 2^62 calls before a wrap
}

Broker::Broker(const BrokerOptions& options)
    : options_(options),
      log_(options.logger),
      clients_(*options.context, zmq::socket_type::router),
      workers_(*options.context, zmq::socket_type::router),
      router_(options.router),
      liveness_(options.heartbeat) {}

Broker::~Broker() = default;

StatusOr<std::unique_ptr<Broker>> Broker::Create(const BrokerOptions& options) {
  if (options.context == nullptr || options.logger == nullptr) {
    return Internal("BrokerOptions needs a context and a logger");
  }
  std::unique_ptr<Broker> b(new Broker(options));
  b->metrics_ = std::make_unique<BrokerMetrics>(options.metrics);
  if (options.max_message_bytes < 1 || options.max_inflight_per_client < 1) {
    return BadRequest("--max-message-bytes and --max-inflight-per-client must be at least 1");
  }
  StatusOr<std::unique_ptr<ZapHandler>> zap =
      ZapHandler::ForServer("broker", options.curve_key, options.curve_allow_file, *options.context,
                            b->log_, options.metrics);
  if (!zap.ok()) return zap.status();
  b->zap_ = std::move(zap).value();
  if (Status s = SecureServer(b->clients_.socket(), options.curve_key, kDomainClient); !s.ok())
    return s;
  if (Status s = SecureServer(b->workers_.socket(), options.curve_key, kDomainWorker); !s.ok())
    return s;
  try {
    ConfigureRouter(b->clients_.socket());
    ConfigureRouter(b->workers_.socket());
    // A frame over the limit closes its connection inside ZeroMQ, before
    // zserve sees it; smaller frames adding up to more are answered.
    b->clients_.socket().set(zmq::sockopt::maxmsgsize, options.max_message_bytes);
    b->workers_.socket().set(zmq::sockopt::maxmsgsize, options.max_message_bytes);
  } catch (const zmq::error_t& e) {
    return Internal(std::string("broker cannot set up its sockets: ") + e.what());
  }
  if (Status s = Bind(b->clients_.socket(), options.client_bind, "broker cannot bind clients");
      !s.ok()) {
    return s;
  }
  if (Status s = Bind(b->workers_.socket(), options.worker_bind, "broker cannot bind workers");
      !s.ok()) {
    return s;
  }
  StatusOr<std::unique_ptr<sc::ConfigSubscriber>> config = sc::ConfigSubscriber::Create(
      {options.controller_snapshot, options.controller_updates, options.context, options.logger,
       options.snapshot_retry, options.curve_key, options.curve_controller_key});
  if (!config.ok()) return config.status();
  b->config_ = std::move(config).value();
  b->log_->info("broker listening: clients {} workers {}, controller {}",
                LoopbackAddress(b->client_port()), LoopbackAddress(b->worker_port()),
                options.controller_snapshot);
  return b;
}

Status Broker::Run(int wake_fd, const std::function<bool()>& should_stop) {
  Frames frames;
  std::vector<PollItem> items;
  while (true) {
    TimePoint now = Clock::now();
    // The poll timeout is the next timer: a deadline, a batch window or a
    // snapshot retry.
    std::chrono::milliseconds timeout(1000);
    if (auto next = router_.NextTimer()) {
      auto until = std::chrono::ceil<std::chrono::milliseconds>(*next - now);
      timeout = std::clamp(until, std::chrono::milliseconds(0), timeout);
    }
    {
      auto until = std::chrono::ceil<std::chrono::milliseconds>(liveness_.NextCheck() - now);
      timeout = std::clamp(until, std::chrono::milliseconds(0), timeout);
    }
    if (auto next = config_->NextTimer()) {
      auto until = std::chrono::ceil<std::chrono::milliseconds>(*next - now);
      timeout = std::clamp(until, std::chrono::milliseconds(0), timeout);
    }
    if (dispatch_pending_) timeout = std::chrono::milliseconds(0);  // SendDispatches stopped early
    // Until the first config, client messages are held (up to max_queued)
    // and answered once it comes; past that bound they wait in the socket.
    bool read_clients =
        router_.has_config() || unconfigured_.size() < options_.router.max_total_queued;
    // The wake fd first, then workers, then the controller; clients last.
    items.clear();
    items.push_back({.fd = wake_fd});
    items.push_back({.socket = &workers_});
    config_->AddPollItems(&items);
    if (read_clients) items.push_back({.socket = &clients_});
    try {
      Poll(items, timeout);
    } catch (const zmq::error_t& e) {
      return Internal(std::string("poll failed: ") + e.what());
    }
    if (items[0].ready && should_stop()) break;
    now = Clock::now();
    if (std::optional<sc::Snapshot> snapshot = config_->Read(now)) ApplyConfig(*snapshot);
    for (int i = 0; i < kReadBurst && workers_.Recv(&frames); ++i) {
      HandleWorker(frames, now);
    }
    CheckLiveness(now);
    if (router_.has_config()) {
      // What came before the config, in arrival order, at its arrival time
      // (their deadlines count from then).
      for (auto& [arrival, held] : unconfigured_) HandleClient(held, arrival);
      unconfigured_.clear();
      for (int i = 0; i < kReadBurst && clients_.Recv(&frames); ++i) {
        HandleClient(frames, now);
      }
    } else if (read_clients) {
      for (int i = 0; i < kReadBurst && unconfigured_.size() < options_.router.max_total_queued &&
                      clients_.Recv(&frames);
           ++i) {
        HoldUntilConfigured(frames, now);
      }
    }
    for (uint64_t token : router_.Expire(now)) {
      Finish(token, DeadlineExceeded("deadline passed before a result"));
    }
    SendDispatches(now);
    if (membership_changed_) {  // after SendDispatches, which may lose a replica too
      for (const Stranded& s : router_.TakeStranded()) {
        Finish(s.token, Unavailable("backend '" + s.backend +
                                    "' left the configuration with no replica to run this call, "
                                    "which waited in its queue" +
                                    (s.tried ? " (it may have run on a replica lost since)"
                                             : " and did not run")));
      }
    }
    FlushReplies();
    // Readiness follows replica and config changes at once; gauges otherwise
    // refresh on their own period.
    metrics_->Refresh(router_, now, /*force=*/membership_changed_);
    membership_changed_ = false;
  }
  log_->info("broker stopping with {} requests held", slots_.size());
  return Status::Ok();
}

void Broker::HandleClient(Frames& frames, TimePoint now) {
  if (frames.size() < 2) {
    metrics_->Dropped(Drop::kMalformedClient);
    log_->warn("client message with {} frames dropped", frames.size());
    return;
  }
  if (Status limit = CheckClientLimits(frames); !limit.ok()) {
    uint64_t request_id;
    StatusOr<std::vector<sc::RequestHeader>> calls = BadRequest("not a REQUESTS");
    if (sc::PeekRequestId(View(frames[1]), &request_id)) {
      Reply(frames[0], request_id, limit);
    } else if (sc::PeekCommandFast(View(frames[1])) == sc::Command::kRequests &&
               (calls = sc::DecodeRequests(View(frames[1]))).ok()) {
      for (const sc::RequestHeader& c : *calls) {
        CountRefused(c.endpoint, limit, now);
        Reply(frames[0], c.request_id, limit, {}, true);
      }
    } else if (StatusOr<mdp::ClientRequest> m = mdp::DecodeClientRequest(frames); m.ok()) {
      CountRefused(m->service, limit, now);
      ReplyMdp(frames[0], m->service, limit);
    } else {
      metrics_->Dropped(Drop::kOverLimit);
      log_->warn("client message dropped: {}", limit.message());
    }
    return;
  }
  if (mdp::IsMdp(frames)) {
    HandleMdpClient(frames, now);
    return;
  }
  const zmq::message_t& client = frames[0];
  std::string_view header = View(frames[1]);
  if (sc::PeekCommandFast(header) == sc::Command::kRequests) {
    HandleRequests(frames, header, now);
    return;
  }
  StatusOr<sc::RequestHeader> req = sc::DecodeRequest(header);
  if (!req.ok()) {
    if (StatusOr<uint64_t> status_id = sc::DecodeStatusRequest(header); status_id.ok()) {
      if (frames.size() != 2) {
        Reply(
            client, *status_id,
            BadRequest("STATUS takes no payload frame, got " + std::to_string(frames.size() - 2)));
      } else {
        HandleStatus(client, *status_id);
      }
      return;
    }
    uint64_t request_id;
    if (sc::PeekRequestId(header, &request_id)) {
      Reply(client, request_id, req.status());
    } else {
      metrics_->Dropped(Drop::kMalformedClient);
      log_->warn("unanswerable client message dropped: {}", req.status().message());
    }
    return;
  }
  if (frames.size() != 3) {
    Status bad = BadRequest("REQUEST needs exactly one payload frame, got " +
                            std::to_string(frames.size() - 2));
    CountRefused(req->endpoint, bad, now);
    Reply(client, req->request_id, bad);
    return;
  }
  Accept({.client = std::move(frames[0]),
          .request_id = req->request_id,
          .endpoint = req->endpoint,
          .method = std::move(req->method),
          .shard_key = req->shard_key,
          .timeout_ms = req->timeout_ms,
          .priority = req->priority,
          .payload = Payload::Own(std::move(frames[2]))},
         now);
}

Status Broker::CheckClientLimits(const Frames& frames) const {
  if (frames.size() > kMaxClientFrames) {
    return BadRequest("message of " + std::to_string(frames.size()) + " frames; at most " +
                      std::to_string(kMaxClientFrames));
  }
  // The payloads, all the calls' together: what the client library checks
  // against its max_payload_bytes (the header is bounded apart, below).
  int64_t bytes = 0;
  for (size_t i = 2; i < frames.size(); ++i) bytes += static_cast<int64_t>(frames[i].size());
  if (bytes > options_.max_message_bytes) {
    return BadRequest("payloads of " + std::to_string(bytes) +
                      " bytes in one message; the broker takes at most " +
                      std::to_string(options_.max_message_bytes) + " (--max-message-bytes)");
  }
  if (frames[1].size() > sc::kMaxHeaderBytes) {
    return BadRequest("header of " + std::to_string(frames[1].size()) + " bytes; at most " +
                      std::to_string(sc::kMaxHeaderBytes));
  }
  return Status::Ok();
}

void Broker::CountRefused(std::string_view endpoint, const Status& status, TimePoint now) {
  if (endpoints_.contains(std::string(endpoint)))
    (void)metrics_->Admitted(endpoint, "", status, now);
}

void Broker::Accept(Incoming call, TimePoint now) {
  // One connection may not hold the broker's capacity alone.
  std::string connection(View(call.client));
  uint32_t& held = client_inflight_[connection];
  if (held >= options_.max_inflight_per_client) {
    Status over = Overloaded(
        "this connection has " + std::to_string(held) + " calls unanswered; the broker allows " +
        std::to_string(options_.max_inflight_per_client) + " (--max-inflight-per-client)");
    CountRefused(call.endpoint, over, now);
    if (call.mdp) {
      ReplyMdp(call.client, call.endpoint, over);
    } else {
      Reply(call.client, call.request_id, over, {}, call.batched, call.packed);
    }
    return;
  }
  uint64_t token = next_token_++;
  shadows_.clear();
  Status admitted = router_.Admit(token, call.endpoint, call.shard_key, call.timeout_ms, now,
                                  &admitted_backend_, call.priority, &shadows_);
  RequestTiming timing = metrics_->Admitted(call.endpoint, admitted_backend_, admitted, now);
  if (admitted.ok()) ++held;
  if (held == 0) client_inflight_.erase(connection);
  if (!admitted.ok()) {
    if (call.mdp) {
      ReplyMdp(call.client, call.endpoint, admitted);
    } else {
      Reply(call.client, call.request_id, admitted, {}, call.batched, call.packed);
    }
    return;
  }
  for (const std::string& backend : shadows_) {
    // A copy for the shadow backend: same payload buffer, its reply dropped.
    uint64_t shadow = next_token_++;
    if (!router_.AdmitShadow(shadow, backend, *router_.Deadline(token), now).ok()) {
      (void)metrics_->Shadow(timing, backend, /*queued=*/false, now);
      continue;
    }
    slots_.emplace(shadow, Slot{.method = call.method,
                                .payload = call.payload.Share(),
                                .shadow = true,
                                .timing = metrics_->Shadow(timing, backend, /*queued=*/true, now)});
  }
  slots_.emplace(token, Slot{.client = std::move(call.client),
                             .request_id = call.request_id,
                             .method = std::move(call.method),
                             .payload = std::move(call.payload),
                             .timing = timing,
                             .mdp = call.mdp,
                             .batched = call.batched,
                             .packed = call.packed,
                             .service = call.mdp ? std::string(call.endpoint) : std::string()});
}

void Broker::HandleRequests(Frames& frames, std::string_view header, TimePoint now) {
  StatusOr<std::vector<sc::RequestHeader>> calls =
      sc::DecodeRequests(header, &payload_sizes_, &call_errors_);
  if (!calls.ok()) {
    // Which part is broken is unknown, so no call of it can be answered.
    metrics_->Dropped(Drop::kMalformedClient);
    log_->warn("malformed REQUESTS dropped: {}", calls.status().message());
    return;
  }
  const bool packed = !payload_sizes_.empty();
  Status bad = !packed && calls->size() != frames.size() - 2
                   ? BadRequest("REQUESTS has " + std::to_string(calls->size()) + " calls but " +
                                std::to_string(frames.size() - 2) + " payload frames")
                   : received_.Lay(payload_sizes_, frames, 2);
  if (!bad.ok()) {
    for (const sc::RequestHeader& c : *calls) {
      CountRefused(c.endpoint, bad, now);
      Reply(frames[0], c.request_id, bad, {}, true, packed);
    }
    return;
  }
  auto bad_call = call_errors_.begin();
  for (size_t i = 0; i < calls->size(); ++i) {
    sc::RequestHeader& c = (*calls)[i];
    if (bad_call != call_errors_.end() && bad_call->first == i) {
      // A bad call is answered alone (as a bad REQUEST is); the others of
      // the message go on.
      Reply(frames[0], c.request_id, bad_call->second, {}, true, packed);
      ++bad_call;
      continue;
    }
    Accept({.client = Copy(frames[0]),
            .request_id = c.request_id,
            .endpoint = c.endpoint,
            .method = std::move(c.method),
            .shard_key = c.shard_key,
            .timeout_ms = c.timeout_ms,
            .priority = c.priority,
            .payload = received_.Take(i),
            .batched = true,
            .packed = packed},
           now);
  }
  received_.Clear();
}

void Broker::HandleMdpClient(Frames& frames, TimePoint now) {
  StatusOr<mdp::ClientRequest> req = mdp::DecodeClientRequest(frames);
  if (!req.ok()) {
    // Without "MDPC01" and a service frame there is no MDP reply to build.
    metrics_->Dropped(Drop::kMalformedClient);
    log_->warn("unanswerable MDP client message dropped: {}", req.status().message());
    return;
  }
  std::string_view service = req->service;
  if (service.starts_with(mdp::kMmiPrefix)) {
    HandleMmi(frames, service, req->body_frames);
    return;
  }
  if (req->body_frames != 1) {
    // ZSP carries one payload per request; joining frames would hand the
    // handler bytes the client never sent as one.
    Status bad = BadRequest("an MDP request to zserve carries exactly one body frame, got " +
                            std::to_string(req->body_frames));
    CountRefused(service, bad, now);
    ReplyMdp(frames[0], service, bad);
    return;
  }
  // The endpoint's default deadline and the only method MDP can express.
  Accept({.client = std::move(frames[0]),
          .endpoint = service,
          .method = std::string(mdp::kMethod),
          .payload = Payload::Own(std::move(frames[req->first_body])),
          .mdp = true},
         now);
}

void Broker::HandleMmi(Frames& frames, std::string_view service, size_t body_frames) {
  std::string_view answer = "501";  // RFC 8: any other mmi. service
  if (service == mdp::kMmiService) {
    if (body_frames != 1) {
      ReplyMdp(frames[0], service, BadRequest("mmi.service takes one body frame: a service name"));
      return;
    }
    answer = router_.EndpointServed(View(frames[4])) ? "200" : "404";
  }
  Frames reply =
      mdp::ClientReply(Copy(frames[0]), service, zmq::message_t(answer.data(), answer.size()));
  if (!clients_.Send(reply).ok()) metrics_->Dropped(Drop::kUndeliverableReply);
}

void Broker::HoldUntilConfigured(Frames& frames, TimePoint now) {
  // STATUS is answered at once: it says why the broker is not ready.
  if (frames.size() == 2 && !mdp::IsMdp(frames) && sc::DecodeStatusRequest(View(frames[1])).ok()) {
    HandleClient(frames, now);
    return;
  }
  unconfigured_.emplace_back(now, std::move(frames));
  frames.clear();
}

void Broker::HandleStatus(const zmq::message_t& client, uint64_t request_id) {
  std::string json = StatusJson();
  Reply(client, request_id, Status::Ok(), Payload::Own(ToMessage(json)));
}

std::string Broker::StatusJson() const {
  nlohmann::json j;
  j["config_version"] = config_->version();
  j["endpoints"] = nlohmann::json::object();
  j["backends"] = nlohmann::json::object();
  // Before the first configuration: the client messages held (a REQUESTS
  // counts once).
  j["held_requests"] = slots_.size() + unconfigured_.size();
  for (const BackendStatus& b : router_.Backends()) {
    j["backends"][b.name] = {{"replicas", b.replicas},
                             {"desired_replicas", b.desired_replicas},
                             {"queued", b.queued},
                             {"in_flight", b.in_flight},
                             {"max_concurrent_queries", b.max_concurrent_queries},
                             {"configured", b.configured}};
  }
  for (const auto& [name, e] : endpoints_) {
    j["endpoints"][name] = {{"traffic", e.traffic}, {"shadow", e.shadow}};
  }
  j["counters"] = {{"malformed_controller", config_->malformed()},
                   {"auth_refusals", zap_ ? zap_->refusals() : 0}};
  for (const auto& [name, value] : metrics_->Counters()) j["counters"][name] = value;
  j["ready"] = metrics_->ready();
  j["not_ready_reason"] = metrics_->not_ready_reason();
  for (auto& [name, e] : j["endpoints"].items()) {
    auto [requests, errors] = metrics_->Recent(name, Clock::now());
    e["requests_last_minute"] = requests;
    e["errors_last_minute"] = errors;
  }
  return j.dump();
}

void Broker::CheckLiveness(TimePoint now) {
  Liveness::Tick tick = liveness_.Check(now);
  for (const std::string& replica : tick.dead) {
    if (router_.HasReplica(replica)) LoseReplica(replica, "missed heartbeats");
  }
  for (const std::string& replica : tick.due) SendHeartbeat(replica);
}

void Broker::HandleWorker(Frames& frames, TimePoint now) {
  if (frames.size() < 2) {
    metrics_->Dropped(Drop::kMalformedWorker);
    log_->warn("worker message with {} frames dropped", frames.size());
    return;
  }
  if (frames.size() > kMaxWorkerFrames) {
    metrics_->Dropped(Drop::kOverLimit);
    log_->warn("worker message of {} frames dropped; at most {}", frames.size(), kMaxWorkerFrames);
    return;
  }
  std::string replica(View(frames[0]));
  liveness_.Heard(replica, now);  // any traffic counts
  if (mdp::IsMdp(frames)) {
    HandleMdpWorker(replica, frames, now);
    return;
  }
  std::string_view header = View(frames[1]);
  // RESULTS from a registered replica, the hot path, is checked whole by
  // HandleResults's decoder: its first bytes are enough here (no MessagePack
  // parse of it twice). From an unknown replica it is checked first, so
  // that a malformed one is dropped as such, not answered DISCONNECT.
  if (sc::PeekCommandFast(header) == sc::Command::kResults && router_.HasReplica(replica)) {
    HandleResults(replica, frames, header);
    return;
  }
  StatusOr<sc::Command> command = sc::PeekCommand(header);
  if (!command.ok()) {
    metrics_->Dropped(Drop::kMalformedWorker);
    log_->warn("malformed worker message dropped: {}", command.status().message());
    return;
  }
  switch (*command) {
    case sc::Command::kResults:
      if (router_.HasReplica(replica)) {
        HandleResults(replica, frames, header);
        return;
      }
      // Not registered here (the broker restarted, or the replica was lost):
      // tell it to register again; its results are for requests we don't hold.
      metrics_->Dropped(Drop::kUnknownResult);
      SendToWorker(replica, sc::EncodeSimple(sc::Command::kDisconnect));
      return;
    case sc::Command::kReady: {
      StatusOr<sc::ReadyHeader> ready = sc::DecodeReady(header);
      if (ready.ok() && frames.size() == 2 &&
          router_.IsReplicaOf(replica, ready->backend, ready->capacity) &&
          packed_replicas_.contains(replica) == ready->packed) {
        // Its READY again, word for word but the tag: a worker answers each
        // DISCONNECT with READY, and a broker that just started may have
        // sent several before the first READY came. Answered, nothing
        // changes.
        SendToWorker(replica, sc::EncodeSimple(sc::Command::kHeartbeat));
        return;
      }
      Status s = !ready.ok()          ? ready.status()
                 : frames.size() != 2 ? BadRequest("READY takes no payload frame")
                                      : router_.AddReplica(replica, ready->backend, ready->capacity,
                                                           ready->replica_tag);
      if (!s.ok()) {
        metrics_->Dropped(Drop::kMalformedWorker);
        log_->warn("READY refused: {}", s.message());
        return;
      }
      if (ready->packed) packed_replicas_.insert(replica);
      // Judged, and heartbeated, at the pace it keeps (its READY names it).
      std::optional<std::chrono::milliseconds> pace;
      if (ready->heartbeat_ms != 0) pace = std::chrono::milliseconds(ready->heartbeat_ms);
      liveness_.Add(replica, now, pace);
      // Heard at once: a worker started before us counts our silence from
      // its own start, and must not give up on a broker that just came up.
      SendToWorker(replica, sc::EncodeSimple(sc::Command::kHeartbeat));
      membership_changed_ = true;
      log_->info("replica '{}' of backend '{}' registered (capacity {}, heartbeat {} ms)",
                 ready->replica_tag, ready->backend, ready->capacity,
                 pace.value_or(liveness_.options().interval).count());
      return;
    }
    case sc::Command::kDisconnect:
      if (!router_.HasReplica(replica)) {
        SendToWorker(replica, sc::EncodeSimple(sc::Command::kDisconnect));
        return;
      }
      if (router_.Draining(replica)) {
        // Its second: the worker gave up its drain and leaves with calls in
        // hand. They are retried or failed now, not after missed heartbeats.
        LoseReplica(replica, "it gave up its drain");
        SendToWorker(replica, sc::EncodeSimple(sc::Command::kDisconnect));
        return;
      }
      log_->info("{} draining", router_.DescribeReplica(replica));
      membership_changed_ = true;
      if (router_.StartDrain(replica)) RemoveDrained(replica);
      return;
    case sc::Command::kHeartbeat:
      // From a connection we do not know (we restarted, or declared it
      // dead): it registers again when told.
      if (!router_.HasReplica(replica)) {
        SendToWorker(replica, sc::EncodeSimple(sc::Command::kDisconnect));
      }
      return;
    case sc::Command::kRequest:
    case sc::Command::kRequests:
    case sc::Command::kStatus:
      // A client pointed at the worker port: answered, so that its calls
      // fail at once instead of waiting out their deadlines.
      metrics_->Dropped(Drop::kMalformedWorker);
      log_->warn("a client's {} came to the worker port; answered BAD_REQUEST",
                 sc::CommandName(*command));
      RefuseClientOnWorkerPort(frames[0], header);
      return;
    default:
      metrics_->Dropped(Drop::kMalformedWorker);
      log_->warn("worker sent {}, which workers may not send", sc::CommandName(*command));
  }
}

void Broker::HandleResults(const std::string& replica, Frames& frames, std::string_view header) {
  StatusOr<std::vector<sc::ResultItem>> results = sc::DecodeResults(header, &payload_sizes_);
  if (results.ok() && payload_sizes_.empty() && results->size() != frames.size() - 2) {
    results = BadRequest("RESULTS has " + std::to_string(results->size()) + " items but " +
                         std::to_string(frames.size() - 2) + " payload frames");
  }
  if (results.ok()) {
    if (Status s = received_.Lay(payload_sizes_, frames, 2); !s.ok()) results = s;
  }
  if (!results.ok()) {
    metrics_->Dropped(Drop::kMalformedWorker);
    log_->warn("malformed RESULTS dropped: {}", results.status().message());
    return;
  }
  for (size_t i = 0; i < results->size(); ++i) {
    const sc::ResultItem& item = (*results)[i];
    switch (router_.Complete(replica, item.token)) {
      case Completion::kDeliver: {
        // An error carries no payload (PROTOCOL.md 4.1), whatever the worker sent.
        Finish(item.token, Status(item.code, item.message),
               item.code == StatusCode::kOk ? received_.Take(i) : Payload());
        break;
      }
      case Completion::kLate:
        metrics_->Dropped(Drop::kLateResult);
        break;
      case Completion::kUnknown:
        metrics_->Dropped(Drop::kUnknownResult);
        log_->debug("result for unknown token {} dropped", item.token);
        break;
    }
  }
  received_.Clear();
  if (router_.Drained(replica)) RemoveDrained(replica);
}

void Broker::HandleMdpWorker(const std::string& replica, Frames& frames, TimePoint now) {
  StatusOr<mdp::WorkerMessage> m = mdp::DecodeWorker(frames);
  if (!m.ok()) {
    // RFC 7: invalid messages are dropped.
    metrics_->Dropped(Drop::kMalformedWorker);
    log_->warn("malformed MDP worker message dropped: {}", m.status().message());
    return;
  }
  const bool registered = mdp_replicas_.contains(replica);
  if (!registered && router_.HasReplica(replica)) {
    metrics_->Dropped(Drop::kMalformedWorker);
    log_->warn("a ZSP replica sent MDP {}; dropped", mdp::WorkerCommandName(m->command));
    return;
  }
  switch (m->command) {
    case mdp::WorkerCommand::kReady: {
      Status s = Status::Ok();
      if (registered) {
        s = BadRequest("a second READY on one connection");
      } else if (m->service.starts_with(mdp::kMmiPrefix)) {
        s = BadRequest("services named mmi.* are the broker's own (RFC 8)");
      } else {
        s = sc::ValidateName("backend", m->service);
      }
      if (s.ok()) {
        s = router_.AddReplica(replica, std::string(m->service), /*capacity=*/1,
                               MdpReplicaTag(replica));
      }
      if (!s.ok()) {
        metrics_->Dropped(Drop::kMalformedWorker);
        log_->warn("MDP READY refused, worker disconnected: {}", s.message());
        SendDisconnect(replica, /*mdp=*/true);
        if (registered) RemoveReplica(replica, "second READY", /*lost=*/false);
        return;
      }
      mdp_replicas_.insert(replica);
      liveness_.Add(replica, now);
      SendHeartbeat(replica);  // as for ZSP: heard from us at once
      membership_changed_ = true;
      if (router_.has_config() && !configured_backends_.contains(std::string(m->service))) {
        log_->warn(
            "MDP worker registered for backend '{}', which the config does not name; it "
            "gets work once a config does",
            m->service);
      } else {
        log_->info("MDP worker registered as a replica of backend '{}' (capacity 1)", m->service);
      }
      return;
    }
    case mdp::WorkerCommand::kReply: {
      if (!registered) {
        metrics_->Dropped(Drop::kUnknownResult);
        SendDisconnect(replica, /*mdp=*/true);
        return;
      }
      uint64_t token = 0;
      if (!mdp::ParseTokenAddress(m->address, &token)) {
        metrics_->Dropped(Drop::kUnknownResult);
        log_->debug("MDP REPLY for an address that is no token of ours dropped");
        return;
      }
      HandleMdpReply(replica, frames, token, m->first_body, m->body_frames);
      return;
    }
    case mdp::WorkerCommand::kHeartbeat:
      // From a connection we do not know: it registers again when told.
      if (!registered) SendDisconnect(replica, /*mdp=*/true);
      return;
    case mdp::WorkerCommand::kDisconnect:
      // RFC 7: no further commands to it, DISCONNECT included.
      if (registered) RemoveReplica(replica, "MDP worker disconnected", /*lost=*/false);
      return;
    case mdp::WorkerCommand::kRequest:
      // Valid MDP, but not from a worker: RFC 7 says DISCONNECT.
      metrics_->Dropped(Drop::kMalformedWorker);
      log_->warn("MDP worker sent REQUEST, which workers may not send; disconnected");
      SendDisconnect(replica, /*mdp=*/true);
      if (registered) RemoveReplica(replica, "MDP worker sent REQUEST", /*lost=*/false);
      return;
  }
}

void Broker::HandleMdpReply(const std::string& replica, Frames& frames, uint64_t token,
                            size_t first_body, size_t body_frames) {
  switch (router_.Complete(replica, token)) {
    case Completion::kDeliver:
      if (body_frames == 1) {
        Finish(token, Status::Ok(), Payload::Own(std::move(frames[first_body])));
      } else {
        Finish(token, HandlerError("the MDP worker replied with " + std::to_string(body_frames) +
                                   " body frames; zserve carries exactly one"));
      }
      return;
    case Completion::kLate:
      metrics_->Dropped(Drop::kLateResult);
      return;
    case Completion::kUnknown:
      metrics_->Dropped(Drop::kUnknownResult);
      log_->debug("MDP REPLY for unknown token {} dropped", token);
      return;
  }
}

void Broker::RemoveDrained(const std::string& replica) {
  const std::string who = router_.DescribeReplica(replica);
  SendToWorker(replica, sc::EncodeSimple(sc::Command::kDisconnect));
  (void)router_.RemoveReplica(replica);  // holds nothing: no orphans
  liveness_.Remove(replica);
  mdp_replicas_.erase(replica);
  packed_replicas_.erase(replica);
  membership_changed_ = true;
  log_->info("{} drained and removed", who);
}

void Broker::ApplyConfig(const sc::Snapshot& snapshot) {
  membership_changed_ = true;
  router_.ApplyConfig(snapshot.state);
  metrics_->ApplyConfig(snapshot.state, snapshot.version);
  endpoints_ = snapshot.state.endpoints;
  configured_backends_.clear();
  for (const auto& [name, b] : snapshot.state.backends) configured_backends_.insert(name);
  log_->info("config version {}: {} endpoints, {} backends", snapshot.version,
             snapshot.state.endpoints.size(), snapshot.state.backends.size());
}

void Broker::SendDispatches(TimePoint now) {
  // A failed send loses its replica, whose tokens may be dispatched anew,
  // and a call an MDP replica cannot take frees its slot at once: another
  // round. After 8, the loop polls without waiting and comes back.
  dispatch_pending_ = true;
  for (int round = 0; round < 8; ++round) {
    std::vector<Dispatch> dispatches = router_.TakeDispatches(now);
    if (dispatches.empty()) {
      dispatch_pending_ = false;
      return;
    }
    // Every dispatch to one replica in this round goes in one BATCH (each
    // still its own handler batch): one message per replica, not per batch.
    group_of_.clear();
    for (std::vector<Dispatch*>& group : groups_) group.clear();
    size_t used = 0;
    for (Dispatch& d : dispatches) {
      auto [at, added] = group_of_.try_emplace(d.replica, used);
      if (added && ++used > groups_.size()) groups_.emplace_back();
      groups_[at->second].push_back(&d);
    }
    for (size_t g = 0; g < used; ++g) {
      const std::vector<Dispatch*>& group = groups_[g];
      const std::string& replica = group.front()->replica;
      if (!router_.HasReplica(replica)) continue;  // lost earlier in this round
      if (mdp_replicas_.contains(replica)) {
        SendMdpRequests(replica, group, now);
        continue;
      }
      SendBatches(replica, group, now);
    }
    router_.Recycle(std::move(dispatches));
  }
}

void Broker::SendBatches(const std::string& replica, const std::vector<Dispatch*>& group,
                         TimePoint now) {
  std::vector<sc::BatchItem> items;
  std::vector<uint32_t> sizes;
  Frames frames;
  // A replica that takes packed payloads gets those that lie together in
  // one received frame as one slice of it.
  const bool packed = packed_replicas_.contains(replica);
  PackedFrames packer(&frames);
  size_t header_bytes = 0;
  int64_t payload_bytes = 0;
  size_t delivered = 0;  // the group's first tokens, in order, that went out
  auto start = [&] {
    items.clear();
    sizes.clear();
    frames.clear();
    packer.Clear();
    frames.emplace_back(replica.data(), replica.size());
    frames.emplace_back();  // header, filled at send
    header_bytes = 0;
    payload_bytes = 0;
  };
  auto send = [&] {
    packer.Finish();
    frames[1] = ToMessage(sc::EncodeBatch(items, sizes, packer.sizes()));
    if (Status s = workers_.Send(frames); !s.ok()) {
      // Requeues what it held: this message's and the unsent items with
      // their try given back.
      LoseOnSend(replica, group, delivered, s.message());
      return false;
    }
    delivered += items.size();
    liveness_.Sent(replica, now);
    return true;
  };
  start();
  for (Dispatch* d : group) {
    sizes.push_back(0);
    for (uint64_t token : d->tokens) {
      Slot& slot = slots_.at(token);
      // A message stays within the receiver's limits: items, header bytes,
      // and (like the client's REQUESTS) a few MiB of payload. A handler
      // batch cut here continues, as its own batch, in the next message.
      size_t cost = sc::kBatchItemBytes + slot.method.size();
      if (!items.empty() &&
          (items.size() == sc::kMaxBatchItems || header_bytes + cost > sc::kHeaderBudget ||
           payload_bytes + static_cast<int64_t>(slot.payload.bytes()) > kMaxBatchPayloadBytes)) {
        if (sizes.back() == 0) sizes.pop_back();
        if (!send()) return;
        start();
        sizes.push_back(0);
      }
      metrics_->Dispatched(slot.timing, now);
      auto left = std::chrono::ceil<std::chrono::milliseconds>(*router_.Deadline(token) - now);
      items.push_back(
          {token, slot.method, static_cast<uint32_t>(std::max<int64_t>(left.count(), 0))});
      // The slot keeps its payload for a retry.
      if (packed) {
        packer.Add(slot.payload);
      } else {
        frames.push_back(slot.payload.Message());
      }
      header_bytes += cost;
      payload_bytes += static_cast<int64_t>(slot.payload.bytes());
      ++sizes.back();
    }
  }
  if (sizes.back() == 0) sizes.pop_back();
  if (!items.empty()) (void)send();
}

void Broker::SendMdpRequests(const std::string& replica, const std::vector<Dispatch*>& group,
                             TimePoint now) {
  size_t done = 0;  // the group's first tokens, in order, sent or answered here
  for (Dispatch* d : group) {
    for (uint64_t token : d->tokens) {
      Slot& slot = slots_.at(token);
      if (slot.method != mdp::kMethod) {
        // MDP has no method frame: the handler behind an MDP worker is its
        // __call__ (PROTOCOL.md 7.3). Answered here; the replica stays free.
        (void)router_.Complete(replica, token);
        Finish(token, BadRequest("method '" + slot.method +
                                 "' reached an MDP replica, which serves only __call__"));
        ++done;
        continue;
      }
      metrics_->Dispatched(slot.timing, now);
      Frames frames = mdp::WorkerRequest(replica, token, slot.payload.Message());  // kept for retry
      if (Status s = workers_.Send(frames); !s.ok()) {
        LoseOnSend(replica, group, done, s.message());  // requeues the rest too
        return;
      }
      ++done;
      liveness_.Sent(replica, now);
    }
  }
}

void Broker::LoseOnSend(const std::string& replica, const std::vector<Dispatch*>& group,
                        size_t delivered, std::string_view why) {
  for (const Dispatch* d : group) {
    for (uint64_t token : d->tokens) {
      if (delivered > 0) {
        --delivered;
      } else {
        router_.Undelivered(token);
      }
    }
  }
  LoseReplica(replica, why);
}

void Broker::LoseReplica(const std::string& replica, std::string_view why) {
  RemoveReplica(replica, why, /*lost=*/true);
}

void Broker::RemoveReplica(const std::string& replica, std::string_view why, bool lost) {
  if (lost) metrics_->ReplicaLost();
  const std::string who = router_.DescribeReplica(replica);
  Orphans orphans = router_.RemoveReplica(replica);
  liveness_.Remove(replica);
  mdp_replicas_.erase(replica);
  packed_replicas_.erase(replica);
  membership_changed_ = true;
  if (lost) {
    log_->warn("{} lost ({}): {} requests requeued, {} failed", who, why, orphans.requeued.size(),
               orphans.failed.size());
  } else {
    log_->info("{} removed ({}): {} requests requeued, {} failed", who, why,
               orphans.requeued.size(), orphans.failed.size());
  }
  for (uint64_t token : orphans.failed) {
    Finish(token, ReplicaFailed("the replica was lost and no retry was left"));
  }
}

void Broker::Finish(uint64_t token, const Status& status, Payload payload) {
  auto it = slots_.find(token);
  if (it == slots_.end()) std::abort();  // router and slots out of step
  metrics_->Finished(it->second.timing, status.code(), it->second.shadow, Clock::now());
  if (!it->second.shadow) {
    auto held = client_inflight_.find(std::string(View(it->second.client)));
    if (held != client_inflight_.end() && --held->second == 0) client_inflight_.erase(held);
  }
  if (it->second.mdp) {
    ReplyMdp(it->second.client, it->second.service, status, std::move(payload));
  } else if (!it->second.shadow) {  // a shadow's reply goes nowhere
    Reply(it->second.client, it->second.request_id, status, std::move(payload), it->second.batched,
          it->second.packed);
  }
  slots_.erase(it);
}

void Broker::Reply(const zmq::message_t& client, uint64_t request_id, const Status& status,
                   Payload payload, bool batched, bool packed) {
  if (batched) {
    auto [at, added] =
        reply_batch_index_.try_emplace(std::string(View(client)), reply_batch_count_);
    if (added) {
      if (reply_batches_.size() == reply_batch_count_) reply_batches_.emplace_back();
      reply_batches_[reply_batch_count_++].client = Copy(client);
    }
    ReplyBatch& b = reply_batches_[at->second];
    if (b.packed != packed) {
      SendReplies(b);  // one REPLIES is packed or not, all through
      b.packed = packed;
    }
    size_t cost = sc::kResultItemBytes + std::min(status.message().size(), sc::kMaxMessageBytes);
    if (b.header_bytes + cost > sc::kHeaderBudget) SendReplies(b);
    b.headers.push_back({request_id, status.code(), status.message()});
    b.payloads.push_back(std::move(payload));
    b.header_bytes += cost;
    if (b.headers.size() == sc::kMaxCallsPerMessage) SendReplies(b);
    return;
  }
  zmq::message_t frames[3] = {
      Copy(client), ToMessage(sc::EncodeReply({request_id, status.code(), status.message()})),
      payload.Message()};
  if (!clients_.Send(frames).ok()) {
    metrics_->Dropped(Drop::kUndeliverableReply);
    log_->debug("reply to request {} undeliverable: client gone", request_id);
  }
}

void Broker::SendReplies(ReplyBatch& b) {
  if (b.headers.empty()) return;
  Frames frames;
  frames.reserve(b.packed ? 3 : b.payloads.size() + 2);
  frames.push_back(Copy(b.client));
  frames.emplace_back();  // the header, once the payloads are laid out
  std::span<const uint64_t> payload_sizes;
  PackedFrames packer(&frames);
  if (b.packed) {
    for (const Payload& p : b.payloads) packer.Add(p);
    packer.Finish();
    payload_sizes = packer.sizes();
  } else {
    for (const Payload& p : b.payloads) frames.push_back(p.Message());
  }
  frames[1] = ToMessage(sc::EncodeReplies(b.headers, payload_sizes));
  if (!clients_.Send(frames).ok()) {
    for (size_t i = 0; i < b.headers.size(); ++i) metrics_->Dropped(Drop::kUndeliverableReply);
    log_->debug("{} replies undeliverable: client gone", b.headers.size());
  }
  b.headers.clear();
  b.payloads.clear();
  b.header_bytes = 0;
}

void Broker::FlushReplies() {
  for (size_t i = 0; i < reply_batch_count_; ++i) SendReplies(reply_batches_[i]);
  reply_batch_count_ = 0;
  reply_batch_index_.clear();
}

void Broker::RefuseClientOnWorkerPort(const zmq::message_t& peer, std::string_view header) {
  const Status wrong = BadRequest(
      "this is the broker's worker port; clients connect to its client port (zserve up prints "
      "both)");
  std::vector<uint64_t> ids;
  uint64_t id;
  if (sc::PeekRequestId(header, &id)) {  // a REQUEST or STATUS
    ids.push_back(id);
  } else if (StatusOr<std::vector<sc::RequestHeader>> calls = sc::DecodeRequests(header);
             calls.ok()) {
    for (const sc::RequestHeader& c : *calls) ids.push_back(c.request_id);
  }
  for (uint64_t request_id : ids) {
    zmq::message_t frames[3] = {
        Copy(peer), ToMessage(sc::EncodeReply({request_id, wrong.code(), wrong.message()})),
        zmq::message_t()};
    (void)workers_.Send(frames);
  }
}

void Broker::SendToWorker(const std::string& replica, std::string header) {
  zmq::message_t frames[2] = {zmq::message_t(replica.data(), replica.size()), ToMessage(header)};
  (void)workers_.Send(frames);
}

void Broker::ReplyMdp(const zmq::message_t& client, std::string_view service, const Status& status,
                      Payload payload) {
  Frames frames = status.ok() ? mdp::ClientReply(Copy(client), service, payload.Message())
                              : mdp::ClientError(Copy(client), service, status);
  if (!clients_.Send(frames).ok()) {
    metrics_->Dropped(Drop::kUndeliverableReply);
    log_->debug("MDP reply undeliverable: client gone");
  }
}

void Broker::SendHeartbeat(const std::string& replica) {
  if (mdp_replicas_.contains(replica)) {
    Frames frames = mdp::WorkerSimple(replica, mdp::WorkerCommand::kHeartbeat);
    (void)workers_.Send(frames);
  } else {
    SendToWorker(replica, sc::EncodeSimple(sc::Command::kHeartbeat));
  }
}

void Broker::SendDisconnect(const std::string& replica, bool mdp) {
  if (mdp) {
    Frames frames = mdp::WorkerSimple(replica, mdp::WorkerCommand::kDisconnect);
    (void)workers_.Send(frames);
  } else {
    SendToWorker(replica, sc::EncodeSimple(sc::Command::kDisconnect));
  }
}

}  // namespace zserve::broker
