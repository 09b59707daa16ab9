// The harness of fuzz_broker_client and fuzz_broker_worker: one real Broker
// (broker/broker.h, befriended for this) on inproc:// sockets, driven through
// its own HandleClient / HandleWorker / SendDispatches / expiry code with a
// virtual clock, as its poll loop would.
//
// Peers: a client DEALER "c1", ZSP worker DEALERs "w1" (backend a, capacity
// 2) and "w2" (backend batch), an MDP worker DEALER "m1" (backend b), and a
// replica "w3" (backend a) with no connection, so that every send to it fails
// as for a vanished peer. Every message the broker sends them is checked to be
// well-formed ZSP or MDP (abort otherwise).
//
// Each input starts from the same state (config, router, registered
// replicas, token 1, clock) so that a crash replays from its input alone, and
// ends by answering, expiring and losing everything the broker holds, after
// which it must hold nothing, count no unanswered call of any client and
// know no backend that only a READY named (abort otherwise). The sockets and the metrics
// (which do not steer the broker) live across inputs; the metrics are made
// anew after an input that applied a fuzzed config, so they stay bounded.
// ZSERVE_FUZZ_TRACE=1 prints every message the peers receive.
//
// Input: a sequence of records, until the input ends.
//   op: u8; kind = op & 7, arg = op >> 3
//   kind 0, 1  a message to the target's own ROUTER (client's or worker's):
//              arg + 1 frames (fuzz_input.h framing), the first the routing
//              id; then the loop tail (expire, dispatch, metrics)
//   kind 2     the same without the loop tail (one burst of messages)
//   kind 3     a message to the other ROUTER, then the loop tail
//   kind 4     the worker peers answer what they received: arg bit 0 errors
//              instead of results, bit 1 only the first item of each batch,
//              bit 2 MDP replies with two body frames; then the loop tail
//   kind 5     the clock advances by a u16 of milliseconds; liveness check
//              and the loop tail
//   kind 6     a new config: arg % 3 == 0 the base one, 1 another fixed one,
//              2 a frame decoded as SNAPSHOT (applied if valid, as a
//              controller publishes only valid states)
//   kind 7     a forced metrics refresh (readiness)
// fuzz_broker_worker first sends a fixed set of client requests (tokens 1..),
// so that worker messages can answer them.
//
// Single-threaded; one instance per process.
#ifndef ZSERVE_FUZZ_BROKER_FUZZER_H_
#define ZSERVE_FUZZ_BROKER_FUZZER_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "broker/broker.h"
#include "schemas/codec.h"

namespace zserve::broker {

enum class FuzzSide { kClient, kWorker };

class BrokerFuzzer {
 public:
  explicit BrokerFuzzer(FuzzSide side);
  BrokerFuzzer(const BrokerFuzzer&) = delete;
  BrokerFuzzer& operator=(const BrokerFuzzer&) = delete;
  ~BrokerFuzzer();

  void Run(const uint8_t* data, size_t size);

  // The fixed configurations (for the seeds too).
  static const schemas::Snapshot& BaseConfig();
  static const schemas::Snapshot& OtherConfig();

 private:
  struct Peer {
    std::string id;
    std::unique_ptr<zmq::socket_t> socket;
    std::vector<Frames> received;  // checked, not yet answered
  };

  void Reset();
  void Prologue();
  void Teardown();
  void ClientMessage(Frames frames);
  void WorkerMessage(Frames frames);
  void Tail();
  void Answer(uint8_t arg);
  // Reads what the broker sent to the peers and checks each message.
  void Collect();
  void CheckToClient(const Frames& m) const;
  void CheckToWorker(const Frames& m) const;

  FuzzSide side_;
  std::unique_ptr<Broker> broker_;
  Peer client_;
  std::vector<Peer> workers_;
  TimePoint t0_;
  TimePoint now_;
  std::set<std::string> seen_;        // routing ids of worker messages this input
  std::set<std::string> configured_;  // backends of the fuzzed configs this input
  bool fresh_metrics_ = false;        // a new BrokerMetrics at the next Reset
};

}  // namespace zserve::broker

#endif  // ZSERVE_FUZZ_BROKER_FUZZER_H_
