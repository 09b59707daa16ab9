// The subscriber side of the controller's Clone pattern (schemas/PROTOCOL.md
// §4.3), shared by every process that follows the configuration: a SUB to the
// controller's PUB and a DEALER for snapshots. Subscribe first, then ask for a
// snapshot; apply only higher versions; ask again when a heartbeat shows a
// version we missed, and every `snapshot_retry` until a snapshot arrives.
//
// Owned by one thread (its sockets'), which polls the two sockets from
// AddPollItems and then calls Read(). Never blocks.
#ifndef ZSERVE_SCHEMAS_CONFIG_SUBSCRIBER_H_
#define ZSERVE_SCHEMAS_CONFIG_SUBSCRIBER_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/logging.h"
#include "common/polled_socket.h"
#include "common/zmq_util.h"
#include "schemas/codec.h"
#include "zserve/curve.h"

namespace zserve::schemas {

struct ConfigSubscriberOptions {
  std::string snapshot_address = "tcp://127.0.0.1:5557";  // controller ROUTER
  std::string updates_address = "tcp://127.0.0.1:5558";   // controller PUB
  zmq::context_t* context = nullptr;                      // required, borrowed
  Logger logger;                                          // required
  std::chrono::milliseconds snapshot_retry{1000};
  // CURVE (docs/security.md): this process's key pair and the controller's
  // public key; empty: plain ZeroMQ.
  KeyPair curve_key;
  std::string curve_server_key;
};

class ConfigSubscriber {
 public:
  // Connects and sends the first SNAPSHOT_REQUEST.
  static StatusOr<std::unique_ptr<ConfigSubscriber>> Create(const ConfigSubscriberOptions& o);

  // Appends the two sockets to a poll set.
  void AddPollItems(std::vector<PollItem>* items);
  // When the caller must call Read() even without input (a snapshot retry).
  std::optional<TimePoint> NextTimer() const;

  // Reads what waits on both sockets and runs the timers. Returns the newest
  // state with a version higher than the one held, which it then holds.
  std::optional<Snapshot> Read(TimePoint now);

  uint64_t version() const { return version_; }
  bool has_config() const { return version_ > 0; }
  uint64_t malformed() const { return malformed_; }

 private:
  explicit ConfigSubscriber(const ConfigSubscriberOptions& o);
  void RequestSnapshot(TimePoint now);
  void Handle(Frames& frames, bool from_pub, TimePoint now, std::optional<Snapshot>* newest);

  ConfigSubscriberOptions options_;
  Logger log_;
  PolledSocket updates_;    // SUB
  PolledSocket snapshots_;  // DEALER
  uint64_t version_ = 0;
  bool snapshot_pending_ = false;
  TimePoint snapshot_requested_at_{};
  uint64_t malformed_ = 0;
  Frames frames_;
};

}  // namespace zserve::schemas

#endif  // ZSERVE_SCHEMAS_CONFIG_SUBSCRIBER_H_
