// The broker's routing logic without sockets: endpoint -> traffic policy ->
// backend queue -> replica with free capacity, plus batching windows,
// priorities, shadow copies, sticky shard keys, deadlines and capacity
// accounting. The event loop (broker.h) feeds it events and carries out the
// dispatches it returns; it never sees payloads, only tokens (the broker's
// name for one request). docs/semantics.md states the rules it implements.
//
// Lifecycle of a token: Admit -> queued -> (TakeDispatches) in flight ->
// Complete. Expire answers a queued or in-flight token whose deadline passed;
// an in-flight one keeps its replica slot until the replica answers (the late
// result is then discarded). RemoveReplica requeues what a lost replica held
// while the retry budget allows.
//
// Not thread-safe: owned by the broker's single I/O thread. Time comes in as
// arguments, so tests drive it with any clock.
#ifndef ZSERVE_BROKER_ROUTER_H_
#define ZSERVE_BROKER_ROUTER_H_

#include <cstdint>
#include <deque>
#include <memory_resource>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "broker/traffic_policy.h"
#include "common/deadline_queue.h"
#include "common/zmq_util.h"
#include "schemas/config.h"
#include "zserve/status.h"

namespace zserve::broker {

struct RouterOptions {
  size_t max_total_queued = 1'000'000;  // broker-wide bound across backends
  uint64_t seed = 0;                    // 0: seeded from std::random_device
};

// One BATCH message to send: these tokens, in order, to this replica.
struct Dispatch {
  std::string replica;
  std::vector<uint64_t> tokens;
};

enum class Completion {
  kDeliver,  // the token was in flight on that replica: send its reply
  kLate,     // it had already been answered (deadline): drop the result
  kUnknown,  // not a token of that replica: drop and count
};

// What a lost replica leaves behind.
// A token TakeStranded took out: its backend, and whether it was sent to a
// replica before (lost since, the token queued again).
struct Stranded {
  uint64_t token;
  std::string backend;
  bool tried;
  bool operator==(const Stranded&) const = default;
};

struct Orphans {
  std::vector<uint64_t> requeued;  // retried on another replica
  std::vector<uint64_t> failed;    // no retry left: answer REPLICA_FAILED
};

struct BackendStatus {
  std::string name;
  size_t replicas = 0;
  size_t queued = 0;
  size_t in_flight = 0;
  uint32_t max_concurrent_queries = 0;
  uint32_t desired_replicas = 0;  // num_replicas of its config
  bool configured = false;
};

// Lets string_view keys find std::string entries without a temporary string.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

// Dispatch levels within a backend (docs/semantics.md, "Priorities").
enum class Level : uint8_t { kHigh = 0, kNormal = 1, kShadow = 2 };
inline constexpr int kLevels = 3;
// While both wait, out of every kHighBurst + 1 dispatches kHighBurst are high.
inline constexpr uint32_t kHighBurst = 3;

class Router {
 public:
  explicit Router(const RouterOptions& options);

  // Takes a new configuration. Queues, replicas and tokens are kept; a
  // backend that leaves the config keeps serving what it holds with its last
  // settings, and is forgotten once it holds nothing (TakeStranded).
  void ApplyConfig(const schemas::ConfigState& state);
  bool has_config() const { return has_config_; }

  // Routes a new request. OK: queued (the chosen backend is in *backend, and
  // the shadow backends drawn for this request, if any, in *shadows).
  // NOT_FOUND: no such endpoint. OVERLOADED: a queue bound is reached.
  // BAD_REQUEST: the token is already in use. priority > 0 is high.
  Status Admit(uint64_t token, std::string_view endpoint, std::string_view shard_key,
               uint32_t timeout_ms, TimePoint now, std::string* backend = nullptr,
               int32_t priority = 0, std::vector<std::string>* shadows = nullptr);

  // Queues a shadow copy on `backend`, below every primary request there.
  // OVERLOADED when that backend's queue is full (the copy is then dropped).
  Status AdmitShadow(uint64_t token, const std::string& backend, TimePoint deadline, TimePoint now);

  // Fills free replica capacity from the backend queues, holding a partial
  // batch back until its oldest request has waited batch_wait_timeout.
  std::vector<Dispatch> TakeDispatches(TimePoint now);
  // Gives sent dispatches back, so that their token vectors serve again
  // (no allocation per dispatch once warm). Optional.
  void Recycle(std::vector<Dispatch>&& dispatches);

  // `token`, taken for a replica, never reached it (the send failed): that
  // try does not count against retry_on_replica_failure.
  void Undelivered(uint64_t token);

  // A replica answered `token`.
  Completion Complete(std::string_view replica, uint64_t token);

  // Tokens whose deadline is <= now, each returned once; answer them
  // DEADLINE_EXCEEDED.
  std::vector<uint64_t> Expire(TimePoint now);
  // The earliest deadline still pending, if any.
  std::optional<TimePoint> NextDeadline() const;
  // The earliest moment TakeDispatches or Expire has work without new input.
  std::optional<TimePoint> NextTimer() const;
  // The deadline of a live token (for the remaining time in a BATCH).
  std::optional<TimePoint> Deadline(uint64_t token) const;

  // A worker connection registered as a replica of `backend`. Sticky keys
  // go by `tag` (its READY's replica_tag; the connection id when empty), so
  // that a replica that reconnects, or a broker that restarts, keeps them.
  Status AddReplica(const std::string& replica, const std::string& backend, uint32_t capacity,
                    std::string_view tag = {});
  bool HasReplica(std::string_view replica) const;
  // "replica 'TAG' of backend 'NAME'", for logs; "an unknown replica" if
  // there is none.
  std::string DescribeReplica(std::string_view replica) const;
  // True when `replica` is registered, not draining, as a replica of
  // `backend` with `capacity`: what a READY saying so would make it.
  bool IsReplicaOf(std::string_view replica, std::string_view backend, uint32_t capacity) const;
  // True when `endpoint` exists and a backend its traffic reaches (weight >
  // 0) has a replica that takes work (registered, not draining).
  bool EndpointServed(std::string_view endpoint) const;
  // The replica asked to drain: no new work. True once it holds nothing.
  bool StartDrain(std::string_view replica);
  bool Draining(std::string_view replica) const;
  bool Drained(std::string_view replica) const;
  // The replica is gone; its in-flight tokens are requeued or failed.
  Orphans RemoveReplica(std::string_view replica);
  // The tokens queued on a backend that has left the configuration and has
  // no replica left that takes work (the last one drains or is gone): none
  // would ever run. Taken out; answer them.
  // Then forgets the backends out of the config with no replica and
  // nothing queued.
  std::vector<Stranded> TakeStranded();

  std::vector<BackendStatus> Backends() const;
  size_t live_tokens() const { return entries_.size(); }
  // Queue slots held, stale ones included: what the queues cost in memory.
  size_t queue_slots() const;

 private:
  enum class State { kQueued, kInFlight, kExpiredInFlight };
  struct Backend;
  struct Replica;
  struct Entry {
    Backend* backend;  // backends_ erases no backend a token points at; nodes don't move
    TimePoint deadline;
    TimePoint enqueued;
    State state = State::kQueued;
    Level level = Level::kNormal;
    std::string replica;    // in flight on, or pinned to (sticky), or empty
    std::string shard_key;  // empty: none
    uint32_t attempts = 0;
    DeadlineQueue::Handle deadline_at = 0;  // in deadlines_ unless kExpiredInFlight
  };
  struct Replica {
    std::string backend;
    uint32_t capacity = 0;   // 0: no limit of its own
    uint32_t in_flight = 0;  // change with SetInFlight (Backend::by_load)
    bool draining = false;
    uint64_t seq = 0;                 // registration order: ties go to the older
    std::string tag;                  // what sticky keys hash on (AddReplica)
    const std::string* id = nullptr;  // its key in replicas_ (nodes don't move)
    Backend* owner = nullptr;         // kept while it has a replica
    std::deque<uint64_t> pinned;      // sticky requests waiting for this replica
    size_t pinned_queued = 0;         // live tokens in `pinned`
  };
  struct Backend {
    schemas::BackendConfig config;
    bool configured = false;
    std::deque<uint64_t> queues[kLevels];  // may hold stale tokens (skipped)
    size_t queued = 0;                     // all live queued tokens, pinned ones too
    size_t shadow_queued = 0;              // of which shadow copies
    size_t shared_queued = 0;              // live tokens in `queues`
    uint32_t high_streak = 0;
    std::vector<std::string> replicas;
    // Its replicas that take work (not draining) by load, least first: the
    // dispatcher's choice costs O(log replicas), not a scan of them all.
    std::set<std::tuple<uint32_t, uint64_t, Replica*>> by_load;
    bool dirty = false;            // in dirty_
    bool held = false;             // a partial batch waits for its window (in held_)
    TimePoint held_until{};        // ... until then (older held_ entries are stale)
    bool ever_configured = false;  // else named by READY only: forgotten when empty
  };
  struct Endpoint {
    TrafficPolicy policy;
    std::vector<std::pair<std::string, double>> shadow;
    uint32_t timeout_ms;
  };

  Backend& GetBackend(const std::string& name);
  // Erases the backend if it is out of the config, without replicas and
  // with nothing queued; true if it did.
  bool ForgetIfIdle(const std::string& name);
  uint32_t FreeSlots(const Replica& r, const Backend& b) const;
  Status Enqueue(uint64_t token, Backend& b, Entry entry, bool front);
  void Queue(uint64_t token, Entry& e, bool front);  // into a pinned or shared queue
  void RepinKeyed(Backend& b);  // shared-queue calls with a key, to their replicas
  // A token into (+1) or out of (-1) its backend's queued count.
  void CountQueued(Backend& b, const Entry& e, int delta);
  const std::string* StickyReplica(const Backend& b, std::string_view key) const;
  void FillBackend(Backend& b, TimePoint now, std::vector<Dispatch>* out);
  void PlanRuns(Backend& b);
  bool DispatchBatch(Backend& b, TimePoint now, Replica& r, uint32_t room,
                     std::vector<Dispatch>* out);
  std::optional<TimePoint> BatchRelease(Backend& b);
  bool PopNext(Backend& b, Replica& r, const std::string& id, uint64_t* token);
  void Take(uint64_t token, const std::string& replica_id, Replica& r, Dispatch* d);
  // Changes r.in_flight and keeps its backend's by_load in order.
  void SetInFlight(Replica& r, uint32_t in_flight);
  // The least-loaded replica of `b` with room and something to take.
  Replica* LeastLoaded(Backend& b);
  bool IsQueuedIn(uint64_t token, const Backend& b) const;
  void CompactIfSparse(Backend& b);
  void MarkDirty(Backend& b);
  void Forget(const Entry& e);
  // Erases a queued token and its counts (its queue slot is skipped later).
  void Unqueue(std::pmr::unordered_map<uint64_t, Entry>::iterator it);

  RouterOptions options_;
  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> uniform_{0.0, 1.0};
  bool has_config_ = false;
  size_t total_queued_ = 0;
  size_t total_shadow_queued_ = 0;  // of which shadow copies
  StringMap<Endpoint> endpoints_;
  StringMap<Backend> backends_;
  StringMap<Replica> replicas_;
  uint64_t next_replica_seq_ = 0;
  // One entry per live token, from a pool, and one deadline: after the
  // first peak, admitting and completing a call allocates nothing.
  std::pmr::unsynchronized_pool_resource token_pool_;
  std::pmr::unordered_map<uint64_t, Entry> entries_{&token_pool_};
  DeadlineQueue deadlines_;                           // of the tokens queued and in flight
  std::vector<Backend*> dirty_;                       // backends to fill
  std::vector<std::pair<TimePoint, Backend*>> held_;  // batch windows still open
  // PlanRuns's result and scratch, kept for their capacity.
  struct Planned {
    uint32_t load;
    uint64_t seq;
    size_t run;  // index in runs_
    uint32_t free;
  };
  std::vector<std::pair<Replica*, uint32_t>> runs_;  // replica, tokens it takes
  std::vector<Planned> plan_;                        // a heap: replicas that may take more
  std::vector<std::vector<uint64_t>> spare_tokens_;  // from Recycle, empty, with capacity
};

}  // namespace zserve::broker

#endif  // ZSERVE_BROKER_ROUTER_H_
