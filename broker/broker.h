// The broker process: one thread, one poll loop, owning the client ROUTER,
// the worker ROUTER, and the SUB + DEALER to the controller. It wires the
// Router (pure logic) to sockets: decodes headers, keeps each request's
// client identity and payload frame (never decoded or copied: payloads are
// reference-counted ZeroMQ messages), sends BATCHes and REPLYs. The same two
// ROUTERs also speak Majordomo 0.1 (broker/mdp.h): MDP clients call endpoints,
// MDP workers are replicas of capacity 1 (PROTOCOL.md section 7).
//
// Create() binds the sockets; Run() blocks the calling thread, which then
// owns every socket, until `should_stop` returns true after `wake_fd` turned
// readable. The context is borrowed and must outlive the Broker.
#ifndef ZSERVE_BROKER_BROKER_H_
#define ZSERVE_BROKER_BROKER_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <memory_resource>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <zmq.hpp>

#include "broker/broker_metrics.h"
#include "broker/router.h"
#include "common/curve.h"
#include "common/liveness.h"
#include "common/logging.h"
#include "common/payloads.h"
#include "common/polled_socket.h"
#include "common/zmq_util.h"
#include "schemas/config_subscriber.h"

namespace zserve::broker {

struct BrokerOptions {
  std::string client_bind = "tcp://127.0.0.1:5555";
  std::string worker_bind = "tcp://127.0.0.1:5556";
  std::string controller_snapshot = "tcp://127.0.0.1:5557";
  std::string controller_updates = "tcp://127.0.0.1:5558";
  zmq::context_t* context = nullptr;  // required, borrowed
  Logger logger;                      // required
  RouterOptions router;
  HeartbeatOptions heartbeat;               // with each worker (docs/operations.md)
  prometheus::Registry* metrics = nullptr;  // borrowed; null: kept, not exported (docs/metrics.md)
  std::chrono::milliseconds snapshot_retry{1000};
  // CURVE (docs/security.md): the broker's key pair, the allow-list of the
  // clients and workers it lets in, and the controller's public key. Empty
  // key: plain ZeroMQ.
  KeyPair curve_key;
  std::string curve_allow_file;
  std::string curve_controller_key;
  // Limits (docs/security.md). A client message whose payloads add up to
  // more than this is answered BAD_REQUEST (its header is bounded apart); a
  // single frame larger than this closes the connection (ZMQ_MAXMSGSIZE) and
  // cannot be answered.
  int64_t max_message_bytes = 64 << 20;
  // Calls one client connection may have unanswered; more are OVERLOADED.
  uint32_t max_inflight_per_client = 10'000;
};

class Broker {
  friend class BrokerFuzzer;  // fuzz/broker_fuzzer.h drives the private handlers
 public:
  static StatusOr<std::unique_ptr<Broker>> Create(const BrokerOptions& options);
  ~Broker();

  int client_port() const { return BoundPort(clients_.socket()); }
  int worker_port() const { return BoundPort(workers_.socket()); }

  Status Run(int wake_fd, const std::function<bool()>& should_stop);

  // Readiness (/readyz, docs/metrics.md); any thread.
  bool ready() const { return metrics_->ready(); }
  std::string not_ready_reason() const { return metrics_->not_ready_reason(); }

 private:
  // A request the broker holds: where to answer, and what to resend on retry.
  struct Slot {
    zmq::message_t client{};  // routing id of the client connection
    uint64_t request_id = 0;
    std::string method{};
    Payload payload{};       // shares the received buffer
    bool shadow = false;     // a shadow copy: no client to answer
    RequestTiming timing{};  // for its metrics
    bool mdp = false;        // from an MDP client: answered in MDP framing
    bool batched = false;    // from REQUESTS: answered in REPLIES
    bool packed = false;     // from a packed REQUESTS: answered in packed REPLIES
    std::string service{};   // MDP: the service (endpoint) the reply names
  };
  // A decoded call from a client, ZSP or MDP, before admission.
  struct Incoming {
    zmq::message_t client{};
    uint64_t request_id = 0;  // ZSP only
    std::string_view endpoint{};
    std::string method{};
    std::string_view shard_key{};
    uint32_t timeout_ms = 0;  // 0: the endpoint's default
    int32_t priority = 0;
    Payload payload{};
    bool mdp = false;
    bool batched = false;  // one of a REQUESTS
    bool packed = false;   // one of a packed REQUESTS
  };
  // The REPLIES of this loop turn to one client connection.
  struct ReplyBatch {
    zmq::message_t client;
    std::vector<schemas::ReplyHeader> headers;
    std::vector<Payload> payloads;
    bool packed = false;      // answers packed REQUESTS: payloads packed
    size_t header_bytes = 0;  // estimated, kept within schemas::kHeaderBudget
  };

  explicit Broker(const BrokerOptions& options);
  void HandleClient(Frames& frames, TimePoint now);
  // BAD_REQUEST if a client message breaks a limit of docs/security.md.
  Status CheckClientLimits(const Frames& frames) const;
  // A client message read before the first configuration: STATUS is
  // answered, anything else held in unconfigured_.
  void HoldUntilConfigured(Frames& frames, TimePoint now);
  void HandleStatus(const zmq::message_t& client, uint64_t request_id);
  // A REQUESTS: each call admitted as a REQUEST would be, answered in REPLIES.
  void HandleRequests(Frames& frames, std::string_view header, TimePoint now);
  // Sends the REPLIES queued by Reply(batched) in this loop turn.
  void FlushReplies();
  void SendReplies(ReplyBatch& batch);
  // Admits a call, or answers it at once (NOT_FOUND, OVERLOADED).
  void Accept(Incoming call, TimePoint now);
  // A call answered with an error before it was admitted: counted for its
  // endpoint when that is a configured one (docs/metrics.md).
  void CountRefused(std::string_view endpoint, const Status& status, TimePoint now);
  void HandleMdpClient(Frames& frames, TimePoint now);
  void HandleMmi(Frames& frames, std::string_view service, size_t body_frames);
  void HandleMdpWorker(const std::string& replica, Frames& frames, TimePoint now);
  void HandleMdpReply(const std::string& replica, Frames& frames, uint64_t token, size_t first_body,
                      size_t body_frames);
  // The round's dispatches to one MDP replica: one REQUEST per token (an
  // MDP replica holds one at a time).
  void SendMdpRequests(const std::string& replica, const std::vector<Dispatch*>& group,
                       TimePoint now);
  void HandleWorker(Frames& frames, TimePoint now);
  void CheckLiveness(TimePoint now);
  void RemoveDrained(const std::string& replica);
  // A RESULTS from a registered replica (HandleWorker checks): decoded and
  // checked whole here.
  void HandleResults(const std::string& replica, Frames& frames, std::string_view header);
  void ApplyConfig(const schemas::Snapshot& snapshot);
  void SendDispatches(TimePoint now);
  // The round's dispatches to one ZSP replica, in as few BATCHes as the
  // limits allow.
  void SendBatches(const std::string& replica, const std::vector<Dispatch*>& group, TimePoint now);
  void LoseReplica(const std::string& replica, std::string_view why);
  // A send to `replica` failed (it is gone): the group's tokens after its
  // first `delivered` (in order) never reached it, so their try is given
  // back (Router::Undelivered); then the replica is lost, which requeues
  // them.
  void LoseOnSend(const std::string& replica, const std::vector<Dispatch*>& group, size_t delivered,
                  std::string_view why);
  // Forgets a replica; what it held is requeued or failed as for a lost one.
  void RemoveReplica(const std::string& replica, std::string_view why, bool lost);
  // The final answer for a token: to its client, or (a shadow) counted only.
  void Finish(uint64_t token, const Status& status, Payload payload = {});
  // `batched`: queued for this turn's REPLIES to the client, else sent now;
  // `packed`: in a REPLIES with packed payloads.
  void Reply(const zmq::message_t& client, uint64_t request_id, const Status& status,
             Payload payload = {}, bool batched = false, bool packed = false);
  // Answers each call of a client's REQUEST, REQUESTS or STATUS that came
  // to the worker port BAD_REQUEST, saying so.
  void RefuseClientOnWorkerPort(const zmq::message_t& peer, std::string_view header);
  void SendToWorker(const std::string& replica, std::string header);
  // HEARTBEAT or DISCONNECT in the replica's protocol.
  void SendHeartbeat(const std::string& replica);
  void SendDisconnect(const std::string& replica, bool mdp);
  void ReplyMdp(const zmq::message_t& client, std::string_view service, const Status& status,
                Payload payload = {});
  std::string StatusJson() const;

  BrokerOptions options_;
  Logger log_;
  PolledSocket clients_;
  PolledSocket workers_;
  std::unique_ptr<schemas::ConfigSubscriber> config_;
  Router router_;
  Liveness liveness_;                // of registered replicas
  bool membership_changed_ = false;  // replicas or config changed: refresh readiness now
  bool dispatch_pending_ = false;    // SendDispatches ended with work perhaps left
  // Request numbers start where no broker before this one on the same
  // workers' connections left off (a random point in 2^62): a result a
  // worker finishes for a broker that was killed and replaced is then an
  // unknown token to the new one, never a new call's answer.
  uint64_t next_token_ = FirstToken();
  static uint64_t FirstToken();
  std::pmr::unsynchronized_pool_resource slot_pool_;  // slots_'s nodes, reused: no malloc per call
  std::pmr::unordered_map<uint64_t, Slot> slots_{&slot_pool_};
  std::map<std::string, schemas::EndpointConfig> endpoints_;  // for STATUS
  // Client messages read before the first configuration, with their
  // arrival; handled once it comes.
  std::deque<std::pair<TimePoint, Frames>> unconfigured_;
  std::unordered_set<std::string> configured_backends_;  // for a log line
  std::unordered_set<std::string> mdp_replicas_;         // registered MDP workers
  std::unordered_set<std::string> packed_replicas_;      // ZSP workers that take packed BATCHes
  std::vector<std::string> shadows_;                     // scratch for Admit
  std::string admitted_backend_;                         // scratch for Admit
  std::unique_ptr<BrokerMetrics> metrics_;               // also STATUS's counters
  std::unordered_map<std::string, uint32_t> client_inflight_;  // unanswered calls by connection
  std::unique_ptr<ZapHandler> zap_;                            // with CURVE only
  std::vector<ReplyBatch> reply_batches_;  // [0, reply_batch_count_) in use this turn
  size_t reply_batch_count_ = 0;
  std::unordered_map<std::string, size_t> reply_batch_index_;  // connection -> batch
  schemas::CallErrors call_errors_;                            // scratch: REQUESTS' bad calls
  std::vector<uint64_t> payload_sizes_;                        // scratch for packed messages
  ReceivedPayloads received_;  // scratch: the payloads of the message in hand
  // SendDispatches's grouping by replica, kept for its capacity.
  std::unordered_map<std::string_view, size_t> group_of_;
  std::vector<std::vector<Dispatch*>> groups_;
};

}  // namespace zserve::broker

#endif  // ZSERVE_BROKER_BROKER_H_
