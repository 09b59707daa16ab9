// The broker process: one thread, one poll loop, owning the client ROUTER,
// the worker ROUTER, and the SUB + DEALER to the controller. It wires the
// Router (pure logic) to sockets: decodes headers, keeps each request's
// client identity and payload frame (never decoded or copied: payloads are
// reference-counted ZeroMQ messages), sends BATCHes and REPLYs.
//
// Create() binds the sockets; Run() blocks the calling thread, which then
// owns every socket, until `should_stop` returns true after `wake_fd` turned
// readable. The context is borrowed and must outlive the Broker.
#ifndef ZSERVE_BROKER_BROKER_H_
#define ZSERVE_BROKER_BROKER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <zmq.hpp>

#include "broker/router.h"
#include "common/logging.h"
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
  std::chrono::milliseconds snapshot_retry{1000};
};

// Messages that could not be served, by reason; reported by STATUS. (The
// Prometheus metrics of the observability work will take these over.)
struct BrokerCounters {
  uint64_t malformed_client = 0;
  uint64_t malformed_worker = 0;
  uint64_t unknown_results = 0;
  uint64_t late_results = 0;
  uint64_t undeliverable_replies = 0;
  uint64_t lost_replicas = 0;
  uint64_t shadow_requests = 0;  // shadow copies queued
  uint64_t shadow_errors = 0;    // shadow copies that failed (their replies go nowhere)
  uint64_t shadow_dropped = 0;   // shadow copies not queued: the shadow backend was full
};

class Broker {
 public:
  static StatusOr<std::unique_ptr<Broker>> Create(const BrokerOptions& options);
  ~Broker();

  int client_port() const { return BoundPort(clients_); }
  int worker_port() const { return BoundPort(workers_); }

  Status Run(int wake_fd, const std::function<bool()>& should_stop);

 private:
  // A request the broker holds: where to answer, and what to resend on retry.
  struct Slot {
    zmq::message_t client;  // routing id of the client connection
    uint64_t request_id = 0;
    std::string method;
    zmq::message_t payload;  // shares the received buffer
    bool shadow = false;     // a shadow copy: no client to answer
  };

  explicit Broker(const BrokerOptions& options);
  void HandleClient(Frames& frames, TimePoint now);
  void HandleStatus(const zmq::message_t& client, uint64_t request_id);
  void HandleWorker(Frames& frames);
  void HandleResults(const std::string& replica, Frames& frames, std::string_view header);
  void ApplyConfig(const schemas::Snapshot& snapshot);
  void SendDispatches(TimePoint now);
  void LoseReplica(const std::string& replica, std::string_view why);
  // The final answer for a token: to its client, or (a shadow) counted only.
  void Finish(uint64_t token, const Status& status, zmq::message_t payload = zmq::message_t());
  void Reply(const zmq::message_t& client, uint64_t request_id, const Status& status,
             zmq::message_t payload = zmq::message_t());
  void SendToWorker(const std::string& replica, std::string header);
  std::string StatusJson() const;

  BrokerOptions options_;
  Logger log_;
  zmq::socket_t clients_;
  zmq::socket_t workers_;
  std::unique_ptr<schemas::ConfigSubscriber> config_;
  Router router_;
  uint64_t next_token_ = 1;
  std::unordered_map<uint64_t, Slot> slots_;
  std::map<std::string, schemas::EndpointConfig> endpoints_;  // for STATUS
  std::vector<std::string> shadows_;  // scratch for Admit
  BrokerCounters counters_;
};

}  // namespace zserve::broker

#endif  // ZSERVE_BROKER_BROKER_H_
