#include "fuzz/broker_fuzzer.h"

#include <spdlog/sinks/null_sink.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string_view>

#include "broker/mdp.h"
#include "fuzz/fuzz_input.h"
#include "schemas/config.h"

namespace zserve::broker {

namespace sc = zserve::schemas;

namespace {

[[noreturn]] void Fail(const std::string& why) {
  std::fprintf(stderr, "broker fuzzer: %s\n", why.c_str());
  std::abort();
}

// The payloads of a received message (header first): one frame each, or
// packed by `packed` (PROTOCOL.md 3.1). Fails if they do not lay out.
std::vector<std::string_view> Payloads(const Frames& m, size_t items,
                                       const std::vector<uint64_t>& packed) {
  std::span<const zmq::message_t> frames(m.data() + 1, m.size() - 1);
  std::vector<std::string_view> out;
  if (packed.empty()) {
    if (frames.size() != items) Fail("a message whose items and payload frames differ in number");
    for (const zmq::message_t& f : frames) out.push_back(View(f));
    return out;
  }
  std::vector<PayloadRef> at;
  if (Status s = LocatePayloads(packed, frames, &at); !s.ok()) {
    Fail("the broker sent packed payloads that do not lay out: " + s.ToString());
  }
  for (const PayloadRef& r : at) {
    out.push_back(r.size == 0 ? std::string_view()
                              : View(frames[r.frame]).substr(r.offset, r.size));
  }
  return out;
}

zmq::message_t Msg(std::string_view s) { return zmq::message_t(s.data(), s.size()); }

Frames Message(std::initializer_list<std::string_view> parts) {
  Frames out;
  for (std::string_view p : parts) out.push_back(Msg(p));
  return out;
}

sc::BackendConfig Backend(const std::string& name, uint32_t batch, uint32_t wait_ms,
                          uint32_t max_concurrent, uint32_t max_queued, uint32_t retries) {
  sc::BackendConfig b;
  b.name = name;
  b.handler = "echo";
  b.max_batch_size = batch;
  b.batch_wait_timeout_ms = wait_ms;
  b.max_concurrent_queries = max_concurrent;
  b.max_queued_requests = max_queued;
  b.retry_on_replica_failure = retries;
  return b;
}

sc::EndpointConfig Endpoint(const std::string& name, std::map<std::string, double> traffic,
                            std::map<std::string, double> shadow, uint32_t timeout_ms) {
  sc::EndpointConfig e;
  e.name = name;
  e.traffic = std::move(traffic);
  e.shadow = std::move(shadow);
  e.timeout_ms = timeout_ms;
  return e;
}

void Add(sc::ConfigState* s, sc::BackendConfig b) { s->backends.emplace(b.name, std::move(b)); }
void Add(sc::ConfigState* s, sc::EndpointConfig e) { s->endpoints.emplace(e.name, std::move(e)); }

bool IsMdpFrames(const Frames& m) { return !m.empty() && m[0].size() == 0; }

// A counter per process, so that a second harness would bind other names.
// The ":<n>" suffix keeps BoundPort() (logged by Broker::Create) parsing.
std::string Address(const std::string& what) {
  static int generation = 0;
  return "inproc://zserve-fuzz-" + what + ":" + std::to_string(++generation);
}

}  // namespace

const sc::Snapshot& BrokerFuzzer::BaseConfig() {
  static const sc::Snapshot config = [] {
    sc::Snapshot s;
    s.version = 1;
    Add(&s.state, Backend("a", 1, 0, 2, 8, 1));
    Add(&s.state, Backend("b", 1, 0, 1, 4, 0));
    Add(&s.state, Backend("batch", 4, 5, 8, 16, 2));
    Add(&s.state, Backend("idle", 1, 0, 0, 4, 0));
    // Two backends and a shadow.
    Add(&s.state, Endpoint("ep", {{"a", 0.75}, {"batch", 0.25}}, {{"b", 1.0}}, 1000));
    Add(&s.state, Endpoint("batched", {{"batch", 1.0}}, {}, sc::kDefaultTimeoutMs));
    Add(&s.state, Endpoint("stuck", {{"idle", 1.0}}, {{"b", 0.5}}, 100));
    if (!sc::Validate(s.state).ok()) Fail("the base config is invalid");
    return s;
  }();
  return config;
}

const sc::Snapshot& BrokerFuzzer::OtherConfig() {
  // Backend a leaves the config (its replicas keep what they hold), b batches.
  static const sc::Snapshot config = [] {
    sc::Snapshot s;
    s.version = 2;
    Add(&s.state, Backend("b", 2, 1, 0, 4, 1));
    Add(&s.state, Backend("batch", 3, 0, 3, 4, 0));
    Add(&s.state, Endpoint("ep", {{"b", 0.5}, {"batch", 0.5}}, {{"batch", 0.25}}, 50));
    Add(&s.state, Endpoint("new", {{"b", 1.0}}, {}, 10));
    if (!sc::Validate(s.state).ok()) Fail("the other config is invalid");
    return s;
  }();
  return config;
}

BrokerFuzzer::BrokerFuzzer(FuzzSide side) : side_(side) {
  // Borrowed by the broker and the peers for the life of the process.
  static zmq::context_t* context = new zmq::context_t();  // never terminated: sockets stay open
  auto logger =
      std::make_shared<spdlog::logger>("broker", std::make_shared<spdlog::sinks::null_sink_st>());
  logger->set_level(spdlog::level::trace);  // formats every line, writes none

  BrokerOptions o;
  o.client_bind = Address("clients");
  o.worker_bind = Address("workers");
  o.controller_snapshot = Address("no-controller");  // never bound
  o.controller_updates = Address("no-updates");
  o.context = context;
  o.logger = logger;
  o.router.seed = 1;
  o.router.max_total_queued = 24;  // reachable broker-wide bound
  o.snapshot_retry = std::chrono::hours(1);
  StatusOr<std::unique_ptr<Broker>> b = Broker::Create(o);
  if (!b.ok()) Fail("Broker::Create: " + b.status().ToString());
  broker_ = std::move(b).value();

  auto connect = [&](const std::string& id, const std::string& address) {
    auto s = std::make_unique<zmq::socket_t>(*context, zmq::socket_type::dealer);
    s->set(zmq::sockopt::routing_id, id);
    s->set(zmq::sockopt::linger, 0);
    s->connect(address);
    return s;
  };
  client_.id = "c1";
  client_.socket = connect("c1", o.client_bind);
  for (const char* id : {"w1", "w2", "m1"}) {  // m1 registers as an MDP worker
    Peer p;
    p.id = id;
    p.socket = connect(id, o.worker_bind);
    workers_.push_back(std::move(p));
  }
  t0_ = Clock::now();
}

BrokerFuzzer::~BrokerFuzzer() = default;

void BrokerFuzzer::Run(const uint8_t* data, size_t size) {
  Reset();
  if (side_ == FuzzSide::kWorker) Prologue();
  fuzz::FuzzReader in(data, size);
  while (!in.Empty()) {
    const uint8_t op = in.U8();
    const uint8_t kind = op & 7;
    const uint8_t arg = op >> 3;
    switch (kind) {
      case 0:
      case 1:
      case 2:
      case 3: {
        Frames frames;
        for (int i = 0; i <= arg; ++i) frames.push_back(Msg(in.Frame()));
        const bool own = kind != 3;
        if ((side_ == FuzzSide::kClient) == own) {
          ClientMessage(std::move(frames));
        } else {
          WorkerMessage(std::move(frames));
        }
        if (kind != 2) Tail();
        break;
      }
      case 4:
        Answer(arg);
        Tail();
        break;
      case 5:
        now_ += std::chrono::milliseconds(in.U16());
        broker_->CheckLiveness(now_);
        Tail();
        break;
      case 6:
        if (arg % 3 == 0) {
          broker_->ApplyConfig(BaseConfig());
        } else if (arg % 3 == 1) {
          broker_->ApplyConfig(OtherConfig());
        } else {
          StatusOr<sc::Snapshot> s = sc::DecodeSnapshot(in.Frame());
          if (s.ok() && sc::Validate(s->state).ok()) {
            broker_->ApplyConfig(*s);
            for (const auto& [name, backend] : s->state.backends) configured_.insert(name);
            fresh_metrics_ = true;
          }
        }
        Tail();
        break;
      case 7:
        broker_->metrics_->Refresh(broker_->router_, now_, /*force=*/true);
        (void)broker_->ready();
        (void)broker_->not_ready_reason();
        break;
    }
  }
  Teardown();
}

void BrokerFuzzer::Reset() {
  Broker& b = *broker_;
  b.slots_.clear();
  b.client_inflight_.clear();
  b.reply_batch_count_ = 0;
  b.reply_batch_index_.clear();
  // Router is neither copied nor moved (its token maps live in its own
  // pool): a new one in its place.
  std::destroy_at(&b.router_);
  std::construct_at(&b.router_, b.options_.router);
  b.liveness_ = Liveness(b.options_.heartbeat);
  b.mdp_replicas_.clear();
  b.next_token_ = 1;
  // The metrics do not steer the broker; they are kept (cheaper) unless a
  // fuzzed config gave them label children of its own names.
  if (fresh_metrics_) {
    b.metrics_ = std::make_unique<BrokerMetrics>(nullptr);
    fresh_metrics_ = false;
  }
  b.membership_changed_ = false;
  Collect();
  client_.received.clear();
  for (Peer& p : workers_) p.received.clear();
  seen_.clear();
  configured_.clear();
  now_ = t0_;

  b.ApplyConfig(BaseConfig());
  WorkerMessage(Message({"w1", sc::EncodeReady({"a", "w1", 2, /*packed=*/true})}));
  WorkerMessage(Message({"w2", sc::EncodeReady({"batch", "w2", 0})}));
  WorkerMessage(Message({"w3", sc::EncodeReady({"a", "w3", 1})}));  // no connection
  const char ready = static_cast<char>(mdp::WorkerCommand::kReady);
  WorkerMessage(Message({"m1", "", mdp::kWorkerProtocol, std::string_view(&ready, 1), "b"}));
  Tail();
  for (const char* id : {"w1", "w2", "w3", "m1"}) {
    if (!b.router_.HasReplica(id)) Fail(std::string("replica ") + id + " did not register");
  }
}

void BrokerFuzzer::Prologue() {
  // Requests of every kind in flight or queued: tokens 1.. in this order.
  uint64_t id = 100;
  auto request = [&](std::string_view endpoint, std::string_view shard, int32_t priority) {
    ClientMessage(Message({"c1",
                           sc::EncodeRequest({++id, std::string(endpoint), "__call__", 0,
                                              std::string(shard), priority}),
                           "payload"}));
  };
  for (int i = 0; i < 3; ++i) request("ep", "", 0);
  request("ep", "key", 0);
  request("ep", "", 1);
  for (int i = 0; i < 3; ++i) request("batched", "", 0);
  request("stuck", "", 0);
  ClientMessage(Message({"c1", "", "MDPC01", "ep", "mdp payload"}));
  Tail();
  now_ += std::chrono::milliseconds(6);  // past the batch window
  Tail();
}

void BrokerFuzzer::Teardown() {
  Broker& b = *broker_;
  Collect();
  Answer(0);
  Tail();
  // Far past every deadline (timeouts are at most 2^32 ms) and heartbeat.
  now_ += std::chrono::hours(24 * 100);
  b.CheckLiveness(now_);
  for (const std::string& id : seen_) {
    if (b.router_.HasReplica(id)) b.LoseReplica(id, "fuzz teardown");
  }
  Tail();
  // With every replica gone, the router keeps only backends a config named:
  // one that only a READY named is forgotten with its last replica.
  for (const BackendStatus& backend : b.router_.Backends()) {
    if (!BaseConfig().state.backends.contains(backend.name) &&
        !OtherConfig().state.backends.contains(backend.name) &&
        !configured_.contains(backend.name)) {
      Fail("backend '" + backend.name + "', named only by a READY, outlived its replicas");
    }
  }
  if (!b.client_inflight_.empty()) {
    Fail("every request answered, yet " + std::to_string(b.client_inflight_.size()) +
         " client connections still count unanswered calls");
  }
  if (!b.slots_.empty() || b.router_.live_tokens() != 0) {
    Fail("after every deadline and every replica passed, the broker still holds " +
         std::to_string(b.slots_.size()) + " requests and the router " +
         std::to_string(b.router_.live_tokens()) + " tokens");
  }
  Collect();
}

void BrokerFuzzer::ClientMessage(Frames frames) { broker_->HandleClient(frames, now_); }

void BrokerFuzzer::WorkerMessage(Frames frames) {
  if (!frames.empty()) seen_.insert(std::string(View(frames[0])));
  broker_->HandleWorker(frames, now_);
}

void BrokerFuzzer::Tail() {
  // What Broker::Run does after reading a burst.
  Broker& b = *broker_;
  for (uint64_t token : b.router_.Expire(now_)) {
    b.Finish(token, DeadlineExceeded("deadline passed before a result"));
  }
  b.SendDispatches(now_);
  b.FlushReplies();
  b.metrics_->Refresh(b.router_, now_, b.membership_changed_);
  b.membership_changed_ = false;
  Collect();
}

void BrokerFuzzer::Answer(uint8_t arg) {
  const StatusCode code = (arg & 1) ? StatusCode::kHandlerError : StatusCode::kOk;
  for (Peer& p : workers_) {
    std::vector<Frames> received = std::move(p.received);
    p.received.clear();
    for (Frames& m : received) {
      if (IsMdpFrames(m)) {
        // ["", "MDPW01", REQUEST, address, "", body]
        if (m.size() < 6 || View(m[2]) != std::string_view("\x02", 1)) continue;
        const char reply = static_cast<char>(mdp::WorkerCommand::kReply);
        Frames out = Message({p.id, "", mdp::kWorkerProtocol, std::string_view(&reply, 1),
                              View(m[3]), "", View(m[5])});
        if (arg & 4) out.push_back(Msg("second body"));
        WorkerMessage(std::move(out));
        continue;
      }
      std::vector<uint32_t> sizes;
      std::vector<uint64_t> packed;
      StatusOr<std::vector<sc::BatchItem>> batch = sc::DecodeBatch(View(m[0]), &sizes, &packed);
      if (!batch.ok()) continue;  // HEARTBEAT, DISCONNECT
      std::vector<std::string_view> in = Payloads(m, batch->size(), packed);
      std::vector<sc::ResultItem> results;
      std::vector<uint64_t> out_sizes;
      std::string out_bytes;
      Frames payloads;
      for (size_t i = 0; i < batch->size(); ++i) {
        if ((arg & 2) && i > 0) break;  // the rest stays in flight
        results.push_back(
            {(*batch)[i].token, code, code == StatusCode::kOk ? "" : "handler failed"});
        std::string_view result = code == StatusCode::kOk ? in[i] : std::string_view();
        payloads.push_back(Msg(result));
        out_sizes.push_back(result.size());
        out_bytes += result;
      }
      // Packed RESULTS to a packed BATCH (one frame), as zserve's worker does.
      Frames out =
          Message({p.id, sc::EncodeResults(
                             results, packed.empty() ? std::span<const uint64_t>() : out_sizes)});
      if (!packed.empty()) {
        out.push_back(Msg(out_bytes));
      } else {
        for (zmq::message_t& payload : payloads) out.push_back(std::move(payload));
      }
      WorkerMessage(std::move(out));
    }
  }
}

namespace {

// ZSERVE_FUZZ_TRACE=1: what each peer receives, to see what an input does.
void Trace(const std::string& peer, const Frames& m) {
  static const bool on = std::getenv("ZSERVE_FUZZ_TRACE") != nullptr;
  if (!on) return;
  std::string line = "to " + peer + ":";
  if (StatusOr<sc::Command> c = sc::PeekCommand(View(m[0])); c.ok()) {
    line += " " + std::string(sc::CommandName(*c));
    if (StatusOr<sc::ReplyHeader> r = sc::DecodeReply(View(m[0])); r.ok()) {
      line += " " + std::to_string(r->request_id) + " " + Status(r->code, r->message).ToString();
    }
    if (StatusOr<std::vector<sc::BatchItem>> b = sc::DecodeBatch(View(m[0])); b.ok()) {
      for (const sc::BatchItem& item : *b) line += " " + std::to_string(item.token);
    }
  } else {
    for (const zmq::message_t& f : m) line += " '" + std::string(View(f).substr(0, 40)) + "'";
  }
  std::fprintf(stderr, "%s\n", line.c_str());
}

}  // namespace

void BrokerFuzzer::Collect() {
  Frames m;
  while (RecvFrames(*client_.socket, &m)) {
    Trace(client_.id, m);
    CheckToClient(m);
    // Replies are checked and dropped: nothing answers a reply.
  }
  for (Peer& p : workers_) {
    while (RecvFrames(*p.socket, &m)) {
      Trace(p.id, m);
      CheckToWorker(m);
      p.received.push_back(std::move(m));
      m = Frames();
    }
  }
}

void BrokerFuzzer::CheckToClient(const Frames& m) const {
  if (IsMdpFrames(m)) {
    // ["", "MDPC01", service, body...]: one body frame, or an error's two.
    if (m.size() < 4 || m.size() > 5 || View(m[1]) != mdp::kClientProtocol) {
      Fail("malformed MDP reply to a client: " + std::to_string(m.size()) + " frames");
    }
    return;
  }
  // A REPLY, or REPLIES with one payload frame per reply or packed payloads.
  std::vector<sc::ReplyHeader> replies;
  std::vector<std::string_view> payloads;
  if (sc::PeekCommandFast(View(m[0])) == sc::Command::kReplies) {
    std::vector<uint64_t> packed;
    StatusOr<std::vector<sc::ReplyHeader>> r = sc::DecodeReplies(View(m[0]), &packed);
    if (!r.ok()) Fail("the broker sent REPLIES it cannot decode: " + r.status().ToString());
    replies = std::move(r).value();
    payloads = Payloads(m, replies.size(), packed);
  } else {
    if (m.size() != 2) Fail("a REPLY with " + std::to_string(m.size()) + " frames");
    StatusOr<sc::ReplyHeader> r = sc::DecodeReply(View(m[0]));
    if (!r.ok()) Fail("the broker sent a REPLY it cannot decode: " + r.status().ToString());
    replies.push_back(std::move(r).value());
    payloads.push_back(View(m[1]));
  }
  // PROTOCOL.md 4.1: the payload is empty unless the status is OK, even when
  // a worker's RESULTS carries one with an error item (found here first).
  for (size_t i = 0; i < replies.size(); ++i) {
    if (replies[i].code != StatusCode::kOk && !payloads[i].empty()) {
      Fail("an error REPLY with a payload");
    }
  }
}

void BrokerFuzzer::CheckToWorker(const Frames& m) const {
  if (IsMdpFrames(m)) {
    // ["", "MDPW01", command, ...]: REQUEST with address, "", one body.
    if (m.size() < 3 || View(m[1]) != mdp::kWorkerProtocol || m[2].size() != 1) {
      Fail("malformed MDP message to a worker");
    }
    const auto command = static_cast<mdp::WorkerCommand>(*static_cast<const uint8_t*>(m[2].data()));
    if (command == mdp::WorkerCommand::kRequest) {
      uint64_t token = 0;
      if (m.size() != 6 || m[4].size() != 0 || !mdp::ParseTokenAddress(View(m[3]), &token)) {
        Fail("malformed MDP REQUEST to a worker");
      }
    } else if (command != mdp::WorkerCommand::kHeartbeat &&
               command != mdp::WorkerCommand::kDisconnect) {
      Fail("MDP command " + std::to_string(static_cast<int>(command)) + " sent to a worker");
    } else if (m.size() != 3) {
      Fail("MDP HEARTBEAT or DISCONNECT with extra frames");
    }
    return;
  }
  std::vector<uint32_t> sizes;
  std::vector<uint64_t> packed;
  StatusOr<std::vector<sc::BatchItem>> batch = sc::DecodeBatch(View(m[0]), &sizes, &packed);
  if (batch.ok()) {
    (void)Payloads(m, batch->size(), packed);  // fails unless they lay out
    return;
  }
  StatusOr<sc::Command> command = sc::PeekCommand(View(m[0]));
  if (!command.ok()) Fail("the broker sent a worker a bad header: " + command.status().ToString());
  switch (*command) {
    case sc::Command::kBatch:
      Fail("the broker sent a BATCH it cannot decode: " + batch.status().ToString());
    case sc::Command::kHeartbeat:
    case sc::Command::kDisconnect:
      if (m.size() != 1) Fail("HEARTBEAT or DISCONNECT with payload frames");
      return;
    default:
      Fail("the broker sent a worker " + std::string(sc::CommandName(*command)));
  }
}

}  // namespace zserve::broker
