#include "broker/router.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

namespace zserve::broker {

Router::Router(const RouterOptions& options)
    : options_(options), rng_(options.seed != 0 ? options.seed : std::random_device{}()) {}

Router::Backend& Router::GetBackend(const std::string& name) {
  auto [it, inserted] = backends_.try_emplace(name);
  if (inserted) it->second.config.name = name;
  return it->second;
}

void Router::ApplyConfig(const schemas::ConfigState& state) {
  endpoints_.clear();
  for (const auto& [name, e] : state.endpoints) {
    StatusOr<TrafficPolicy> policy = TrafficPolicy::Create(e.traffic);
    // The controller validated the state; a bad policy here is skipped, not fatal.
    if (!policy.ok()) continue;
    Endpoint ep{std::move(policy).value(), {}, e.timeout_ms};
    for (const auto& [backend, fraction] : e.shadow) {
      if (fraction > 0) ep.shadow.emplace_back(backend, fraction);
    }
    endpoints_.emplace(name, std::move(ep));
  }
  // A backend that leaves the config keeps its last settings while it
  // serves what it holds (its replicas drain under the same capacity).
  for (auto& [name, b] : backends_) b.configured = false;
  for (const auto& [name, config] : state.backends) {
    Backend& b = GetBackend(name);
    b.config = config;
    b.configured = true;
    b.ever_configured = true;
  }
  // Capacities and batch windows may have changed.
  for (auto& [name, b] : backends_) MarkDirty(b);
  has_config_ = true;
}

Status Router::Admit(uint64_t token, std::string_view endpoint, std::string_view shard_key,
                     uint32_t timeout_ms, TimePoint now, std::string* backend_out, int32_t priority,
                     std::vector<std::string>* shadows) {
  auto ep = endpoints_.find(endpoint);
  if (ep == endpoints_.end()) {
    return NotFound("no endpoint named '" + std::string(endpoint) + "'");
  }
  const std::string& backend_name = shard_key.empty() ? ep->second.policy.Pick(uniform_(rng_))
                                                      : ep->second.policy.PickByKey(shard_key);
  Backend& b = GetBackend(backend_name);
  // Shadow copies queued are not counted: they never take a call's room.
  if (b.queued - b.shadow_queued >= b.config.max_queued_requests) {
    return Overloaded("backend '" + backend_name + "' has " +
                      std::to_string(b.queued - b.shadow_queued) + " requests queued, its bound");
  }
  if (total_queued_ - total_shadow_queued_ >= options_.max_total_queued) {
    return Overloaded("the broker has " + std::to_string(total_queued_ - total_shadow_queued_) +
                      " requests queued, its bound");
  }
  uint32_t timeout = timeout_ms != 0 ? timeout_ms : ep->second.timeout_ms;
  Entry e{&b,
          now + std::chrono::milliseconds(timeout),
          now,
          State::kQueued,
          priority > 0 ? Level::kHigh : Level::kNormal,
          {},
          std::string(shard_key),
          0};
  if (Status s = Enqueue(token, b, std::move(e), /*front=*/false); !s.ok()) return s;
  if (backend_out != nullptr) *backend_out = backend_name;
  if (shadows != nullptr) {
    for (const auto& [shadow, fraction] : ep->second.shadow) {
      if (uniform_(rng_) < fraction) shadows->push_back(shadow);
    }
  }
  return Status::Ok();
}

Status Router::AdmitShadow(uint64_t token, const std::string& backend, TimePoint deadline,
                           TimePoint now) {
  Backend& b = GetBackend(backend);
  if (b.queued >= b.config.max_queued_requests || total_queued_ >= options_.max_total_queued) {
    return Overloaded("shadow backend '" + backend + "' is full");
  }
  return Enqueue(token, b, Entry{&b, deadline, now, State::kQueued, Level::kShadow, {}, {}, 0},
                 /*front=*/false);
}

Status Router::Enqueue(uint64_t token, Backend& b, Entry entry, bool front) {
  auto [it, inserted] = entries_.try_emplace(token, std::move(entry));
  if (!inserted) return BadRequest("token " + std::to_string(token) + " is already in use");
  it->second.deadline_at = deadlines_.Add(it->second.deadline, token);
  CountQueued(b, it->second, +1);
  Queue(token, it->second, front);
  MarkDirty(b);
  return Status::Ok();
}

void Router::CountQueued(Backend& b, const Entry& e, int delta) {
  b.queued += delta;
  total_queued_ += delta;
  if (e.level == Level::kShadow) {
    b.shadow_queued += delta;
    total_shadow_queued_ += delta;
  }
}

void Router::Queue(uint64_t token, Entry& e, bool front) {
  Backend& b = *e.backend;
  e.replica.clear();
  if (!e.shard_key.empty()) {
    if (const std::string* id = StickyReplica(b, e.shard_key)) {
      Replica& r = replicas_.find(*id)->second;
      e.replica = *id;
      front ? r.pinned.push_front(token) : r.pinned.push_back(token);
      ++r.pinned_queued;
      return;
    }
  }
  auto& q = b.queues[static_cast<int>(e.level)];
  front ? q.push_front(token) : q.push_back(token);
  ++b.shared_queued;
}

// Rendezvous hashing: the live replica with the highest hash of (key,
// replica tag). Losing a replica moves only its keys; a new one takes ~1/N;
// one that comes back under its tag (reconnected, restarted by `up`, or
// registered again with a restarted broker) gets its keys back. Two with
// one tag tie: the newer wins (a restarted worker, beside its old
// registration not yet found lost).
const std::string* Router::StickyReplica(const Backend& b, std::string_view key) const {
  const std::string* best = nullptr;
  uint64_t best_score = 0, best_seq = 0;
  uint64_t key_hash = HashKey(key);
  for (const std::string& id : b.replicas) {
    const Replica& r = replicas_.find(id)->second;
    if (r.draining) continue;
    uint64_t score = HashKey(r.tag, key_hash);
    if (best == nullptr || score > best_score || (score == best_score && r.seq > best_seq)) {
      best = &id;
      best_score = score;
      best_seq = r.seq;
    }
  }
  return best;
}

void Router::MarkDirty(Backend& b) {
  if (b.dirty) return;
  b.dirty = true;
  dirty_.push_back(&b);
}

uint32_t Router::FreeSlots(const Replica& r, const Backend& b) const {
  if (r.draining) return 0;
  uint32_t cap = b.config.EffectiveMaxConcurrentQueries();
  if (r.capacity != 0) cap = std::min(cap, r.capacity);
  return r.in_flight >= cap ? 0 : cap - r.in_flight;
}

bool Router::IsQueuedIn(uint64_t token, const Backend& b) const {
  auto it = entries_.find(token);
  return it != entries_.end() && it->second.state == State::kQueued && it->second.backend == &b;
}

// The next request for replica r: from its own sticky queue or the
// backend's shared ones, by level (high, then normal, then shadow copies)
// and, within a level, by arrival; while high and normal both wait, out of
// every kHighBurst + 1 taken kHighBurst are high, sticky or not. (Sticky
// requests went first whatever their level: a stream of keyed calls starved
// the unkeyed ones, high priority included.) Stale tokens at the heads are
// dropped on the way.
bool Router::PopNext(Backend& b, Replica& r, const std::string& id, uint64_t* token) {
  auto shared_live = [this, &b](uint64_t t) {
    return IsQueuedIn(t, b) && entries_.find(t)->second.replica.empty();
  };
  for (auto& q : b.queues) {
    while (!q.empty() && !shared_live(q.front())) q.pop_front();
  }
  const Entry* pinned = nullptr;
  while (!r.pinned.empty()) {
    auto it = entries_.find(r.pinned.front());
    if (it != entries_.end() && it->second.state == State::kQueued && it->second.replica == id) {
      pinned = &it->second;
      break;
    }
    r.pinned.pop_front();
  }
  // The earliest of the pinned head and the shared queue of `level`: true
  // for the pinned one, false for the shared one; nullopt if neither waits.
  auto head = [&](Level level) -> std::optional<bool> {
    const auto& q = b.queues[static_cast<int>(level)];
    const bool in_pinned = pinned != nullptr && pinned->level == level;
    if (q.empty()) return in_pinned ? std::optional<bool>(true) : std::nullopt;
    if (!in_pinned) return false;
    return pinned->enqueued < entries_.find(q.front())->second.enqueued;
  };
  std::optional<bool> high = head(Level::kHigh), normal = head(Level::kNormal);
  std::optional<bool> from;
  Level level;
  if (high && (!normal || b.high_streak < kHighBurst)) {
    from = high;
    level = Level::kHigh;
    b.high_streak = normal ? b.high_streak + 1 : 0;
  } else if (normal) {
    from = normal;
    level = Level::kNormal;
    b.high_streak = 0;
  } else {
    from = head(Level::kShadow);  // only when no primary request waits
    level = Level::kShadow;
  }
  if (!from) return false;
  if (*from) {
    *token = r.pinned.front();
    r.pinned.pop_front();
    --r.pinned_queued;
  } else {
    auto& q = b.queues[static_cast<int>(level)];
    *token = q.front();
    q.pop_front();
    --b.shared_queued;
  }
  return true;
}

void Router::Take(uint64_t token, const std::string& replica_id, Replica& r, Dispatch* d) {
  Entry& e = entries_.find(token)->second;
  e.state = State::kInFlight;
  e.replica = replica_id;
  ++e.attempts;
  CountQueued(*e.backend, e, -1);
  SetInFlight(r, r.in_flight + 1);
  d->tokens.push_back(token);
}

void Router::Undelivered(uint64_t token) {
  auto it = entries_.find(token);
  if (it != entries_.end() && it->second.attempts > 0) --it->second.attempts;
}

void Router::SetInFlight(Replica& r, uint32_t in_flight) {
  if (r.draining) {
    r.in_flight = in_flight;
    return;
  }
  // The same node, re-keyed: no allocation per dispatch or completion.
  auto& by_load = r.owner->by_load;
  auto node = by_load.extract({r.in_flight, r.seq, &r});
  if (node.empty()) std::abort();  // by_load and the replica out of step
  r.in_flight = in_flight;
  std::get<0>(node.value()) = in_flight;
  by_load.insert(std::move(node));
}

Router::Replica* Router::LeastLoaded(Backend& b) {
  if (b.shared_queued > 0) {
    // Every replica with room has something to take: the first in load
    // order with room. Past the first few only when capacities differ.
    for (const auto& [load, seq, r] : b.by_load) {
      if (FreeSlots(*r, b) > 0) return r;
    }
    return nullptr;
  }
  // Only sticky requests wait: those replicas whose own queue has some.
  Replica* best = nullptr;
  for (const auto& [load, seq, r] : b.by_load) {
    if (r->pinned_queued > 0 && FreeSlots(*r, b) > 0) {
      best = r;
      break;
    }
  }
  return best;
}

// When a partial batch may go: its oldest request's enqueue time plus the
// window. nullopt: now (no window, or the batch is full).
std::optional<TimePoint> Router::BatchRelease(Backend& b) {
  const schemas::BackendConfig& c = b.config;
  if (c.max_batch_size <= 1 || c.batch_wait_timeout_ms == 0 || b.queued >= c.max_batch_size) {
    return std::nullopt;
  }
  std::optional<TimePoint> oldest;
  auto consider = [this, &oldest](std::deque<uint64_t>& q, auto live) {
    while (!q.empty() && !live(q.front())) q.pop_front();
    if (q.empty()) return;
    TimePoint t = entries_.find(q.front())->second.enqueued;
    if (!oldest || t < *oldest) oldest = t;
  };
  for (auto& q : b.queues) {
    consider(q, [this, &b](uint64_t t) {
      return IsQueuedIn(t, b) && entries_.find(t)->second.replica.empty();
    });
  }
  for (const std::string& id : b.replicas) {
    consider(replicas_.find(id)->second.pinned, [this, &b, &id](uint64_t t) {
      return IsQueuedIn(t, b) && entries_.find(t)->second.replica == id;
    });
  }
  if (!oldest) return std::nullopt;
  return *oldest + std::chrono::milliseconds(c.batch_wait_timeout_ms);
}

// The counts the one-batch-at-a-time rule of FillBackend would give each
// replica from the shared queue, into runs_ in the order replicas are first
// chosen. Touches only the replicas that get something, plus those without
// room ahead of them in by_load (as LeastLoaded does).
void Router::PlanRuns(Backend& b) {
  runs_.clear();
  plan_.clear();
  struct Less {
    bool operator()(const Planned& x, const Planned& y) const {
      return std::tie(x.load, x.seq) > std::tie(y.load, y.seq);  // a min-heap
    }
  };
  const uint32_t batch = std::max<uint32_t>(b.config.max_batch_size, 1);
  size_t left = b.shared_queued;
  auto next = b.by_load.begin();
  while (left > 0) {
    while (next != b.by_load.end() && FreeSlots(*std::get<2>(*next), b) == 0) ++next;
    Planned p;
    if (!plan_.empty() &&
        (next == b.by_load.end() || std::tie(plan_.front().load, plan_.front().seq) <
                                        std::tie(std::get<0>(*next), std::get<1>(*next)))) {
      std::pop_heap(plan_.begin(), plan_.end(), Less{});
      p = plan_.back();
      plan_.pop_back();
    } else if (next != b.by_load.end()) {
      auto [load, seq, r] = *next++;
      p = {load, seq, runs_.size(), FreeSlots(*r, b)};
      runs_.emplace_back(r, 0);
    } else {
      break;  // no replica has room
    }
    uint32_t take = static_cast<uint32_t>(std::min<size_t>({p.free, batch, left}));
    runs_[p.run].second += take;
    p.load += take;
    p.free -= take;
    left -= take;
    if (p.free > 0) {
      plan_.push_back(p);
      std::push_heap(plan_.begin(), plan_.end(), Less{});
    }
  }
}

// One handler batch for `r`: at most `room` and max_batch_size tokens, its
// pinned ones first. False when nothing goes now: a partial batch is held
// for its window, or there is nothing to take.
bool Router::DispatchBatch(Backend& b, TimePoint now, Replica& r, uint32_t room,
                           std::vector<Dispatch>* out) {
  if (std::optional<TimePoint> release = BatchRelease(b); release && now < *release) {
    // Held until its window ends; sooner if the window moved earlier (a
    // retry went back to the queue's front, or the config shortened it).
    // The later entry then finds held_until moved and does nothing.
    if (!b.held || *release < b.held_until) {
      b.held = true;
      b.held_until = *release;
      held_.emplace_back(*release, &b);
    }
    return false;
  }
  const std::string& id = *r.id;
  Dispatch d{id, {}};
  if (!spare_tokens_.empty()) {
    d.tokens = std::move(spare_tokens_.back());
    spare_tokens_.pop_back();
  }
  uint32_t take = std::min(room, b.config.max_batch_size);
  uint64_t token;
  while (d.tokens.size() < take && PopNext(b, r, id, &token)) {
    Take(token, id, r, &d);
  }
  if (d.tokens.empty()) return false;
  out->push_back(std::move(d));
  return true;
}

void Router::FillBackend(Backend& b, TimePoint now, std::vector<Dispatch>* out) {
  while (b.queued > 0) {
    if (b.queued == b.shared_queued) {
      // Only shared tokens wait: each replica gets what the rule below would
      // give it, but in one run, so that requests that arrived together (one
      // client message) leave together (one slice of its payload frame,
      // PROTOCOL.md 3.1) instead of alternating between replicas.
      PlanRuns(b);
      if (runs_.empty()) return;
      for (auto& [r, count] : runs_) {
        while (count > 0) {
          if (!DispatchBatch(b, now, *r, count, out)) return;
          count -= static_cast<uint32_t>(out->back().tokens.size());
        }
      }
      continue;
    }
    // The least-loaded replica with room and something to take: no replica
    // hoards work that an idle one could run.
    Replica* best = LeastLoaded(b);
    if (best == nullptr) return;
    if (!DispatchBatch(b, now, *best, FreeSlots(*best, b), out)) return;
  }
}

std::vector<Dispatch> Router::TakeDispatches(TimePoint now) {
  std::erase_if(held_, [this, now](const std::pair<TimePoint, Backend*>& h) {
    if (h.first > now) return false;
    if (h.second->held && h.second->held_until == h.first) {
      h.second->held = false;
      MarkDirty(*h.second);
    }
    return true;
  });
  std::vector<Dispatch> out;
  for (Backend* b : dirty_) {
    b->dirty = false;
    FillBackend(*b, now, &out);
  }
  dirty_.clear();
  return out;
}

void Router::Recycle(std::vector<Dispatch>&& dispatches) {
  constexpr size_t kMaxSpare = 4096;
  for (Dispatch& d : dispatches) {
    if (spare_tokens_.size() == kMaxSpare) break;
    d.tokens.clear();
    spare_tokens_.push_back(std::move(d.tokens));
  }
  dispatches.clear();
}

void Router::Forget(const Entry& e) {
  if (e.state != State::kExpiredInFlight) deadlines_.Remove(e.deadline_at);
}

Completion Router::Complete(std::string_view replica, uint64_t token) {
  auto it = entries_.find(token);
  if (it == entries_.end() || it->second.state == State::kQueued || it->second.replica != replica) {
    return Completion::kUnknown;
  }
  Entry& e = it->second;
  Completion result = e.state == State::kInFlight ? Completion::kDeliver : Completion::kLate;
  auto r = replicas_.find(e.replica);
  if (r != replicas_.end()) SetInFlight(r->second, r->second.in_flight - 1);
  MarkDirty(*e.backend);
  Forget(e);
  entries_.erase(it);
  return result;
}

void Router::CompactIfSparse(Backend& b) {
  size_t slots = 0;
  for (const auto& q : b.queues) slots += q.size();
  for (const std::string& id : b.replicas) slots += replicas_.find(id)->second.pinned.size();
  if (slots <= 2 * b.queued + 64) return;
  for (auto& q : b.queues) {
    std::erase_if(q, [this, &b](uint64_t t) {
      return !IsQueuedIn(t, b) || !entries_.find(t)->second.replica.empty();
    });
  }
  for (const std::string& id : b.replicas) {
    std::erase_if(replicas_.find(id)->second.pinned, [this, &b, &id](uint64_t t) {
      return !IsQueuedIn(t, b) || entries_.find(t)->second.replica != id;
    });
  }
}

void Router::Unqueue(std::pmr::unordered_map<uint64_t, Entry>::iterator it) {
  Entry& e = it->second;
  Backend& b = *e.backend;
  CountQueued(b, e, -1);
  if (e.replica.empty()) {
    --b.shared_queued;
  } else {
    --replicas_.find(e.replica)->second.pinned_queued;
  }
  entries_.erase(it);  // its stale queue slot is skipped later...
  CompactIfSparse(b);  // ...or dropped, so that an undrained queue stays bounded
}

std::vector<Stranded> Router::TakeStranded() {
  std::vector<Stranded> out;
  for (auto& [name, b] : backends_) {
    if (b.configured || b.queued == 0) continue;
    if (std::any_of(b.replicas.begin(), b.replicas.end(), [this](const std::string& id) {
          return !replicas_.find(id)->second.draining;
        })) {
      continue;
    }
    // A scan: a backend leaving with calls queued is rare, requests are not.
    for (const auto& [token, e] : entries_) {
      if (e.backend == &b && e.state == State::kQueued) {
        out.push_back({token, name, e.attempts > 0});
      }
    }
  }
  for (const Stranded& s : out) {
    auto it = entries_.find(s.token);
    Forget(it->second);
    Unqueue(it);
  }
  // Backends out of the config with nothing left: forgotten.
  std::vector<std::string> idle;
  for (const auto& [name, b] : backends_) {
    if (!b.configured && b.replicas.empty() && b.queued == 0) idle.push_back(name);
  }
  for (const std::string& name : idle) ForgetIfIdle(name);
  return out;
}

std::vector<uint64_t> Router::Expire(TimePoint now) {
  std::vector<uint64_t> out;
  uint64_t token;
  while (deadlines_.PopDue(now, &token)) {
    auto it = entries_.find(token);
    if (it == entries_.end()) std::abort();  // deadlines_ and entries_ out of step
    Entry& e = it->second;
    if (e.state == State::kQueued) {
      Unqueue(it);
    } else {
      e.state = State::kExpiredInFlight;  // keeps its slot until the replica answers
    }
    out.push_back(token);
  }
  return out;
}

std::optional<TimePoint> Router::NextDeadline() const { return deadlines_.Earliest(); }

std::optional<TimePoint> Router::NextTimer() const {
  std::optional<TimePoint> next = NextDeadline();
  for (const auto& [release, b] : held_) {
    if (!next || release < *next) next = release;
  }
  return next;
}

std::optional<TimePoint> Router::Deadline(uint64_t token) const {
  auto it = entries_.find(token);
  if (it == entries_.end()) return std::nullopt;
  return it->second.deadline;
}

Status Router::AddReplica(const std::string& replica, const std::string& backend, uint32_t capacity,
                          std::string_view tag) {
  if (replicas_.contains(replica)) {
    return BadRequest("this connection is already registered as a replica");
  }
  Replica r;
  r.backend = backend;
  r.capacity = capacity;
  r.seq = next_replica_seq_++;
  r.tag = tag.empty() ? replica : std::string(tag);
  auto [it, added] = replicas_.emplace(replica, std::move(r));
  it->second.id = &it->first;
  Backend& b = GetBackend(backend);
  b.replicas.push_back(replica);
  it->second.owner = &b;
  b.by_load.emplace(it->second.in_flight, it->second.seq, &it->second);
  if (b.shared_queued > 0) RepinKeyed(b);
  MarkDirty(b);
  return Status::Ok();
}

// Calls with a shard key queued while the backend had no replica to pin
// them to wait in the shared queue; with a replica now, each goes to its
// key's replica, in order, as if it had come now.
void Router::RepinKeyed(Backend& b) {
  std::vector<uint64_t> keyed;
  for (auto& q : b.queues) {
    std::deque<uint64_t> rest;
    for (uint64_t token : q) {
      if (!IsQueuedIn(token, b)) continue;  // a stale slot
      const Entry& e = entries_.find(token)->second;
      if (!e.replica.empty()) continue;  // pinned already: a stale slot
      if (e.shard_key.empty()) {
        rest.push_back(token);
      } else {
        keyed.push_back(token);
      }
    }
    q = std::move(rest);
  }
  // A key's calls in the order they would have had with a replica there all
  // along: retries first (they go to the front), then by arrival (tokens
  // grow), whatever their priority.
  std::stable_sort(keyed.begin(), keyed.end(), [this](uint64_t x, uint64_t y) {
    bool retry_x = entries_.find(x)->second.attempts > 0;
    bool retry_y = entries_.find(y)->second.attempts > 0;
    return retry_x != retry_y ? retry_x : x < y;
  });
  for (uint64_t token : keyed) {
    --b.shared_queued;
    Queue(token, entries_.find(token)->second, /*front=*/false);
  }
}

bool Router::HasReplica(std::string_view replica) const { return replicas_.contains(replica); }

std::string Router::DescribeReplica(std::string_view replica) const {
  auto it = replicas_.find(replica);
  if (it == replicas_.end()) return "an unknown replica";
  return "replica '" + it->second.tag + "' of backend '" + it->second.backend + "'";
}

bool Router::IsReplicaOf(std::string_view replica, std::string_view backend,
                         uint32_t capacity) const {
  auto it = replicas_.find(replica);
  return it != replicas_.end() && !it->second.draining && it->second.backend == backend &&
         it->second.capacity == capacity;
}

bool Router::EndpointServed(std::string_view endpoint) const {
  auto ep = endpoints_.find(endpoint);
  if (ep == endpoints_.end()) return false;
  for (const std::string& name : ep->second.policy.backends()) {
    auto b = backends_.find(name);
    if (b == backends_.end()) continue;
    for (const std::string& id : b->second.replicas) {
      if (!replicas_.find(id)->second.draining) return true;
    }
  }
  return false;
}

bool Router::StartDrain(std::string_view replica) {
  auto it = replicas_.find(replica);
  if (it == replicas_.end()) return false;
  Replica& r = it->second;
  if (!r.draining) r.owner->by_load.erase({r.in_flight, r.seq, &r});
  r.draining = true;
  // Its sticky requests that have not started go to another replica.
  std::deque<uint64_t> pinned = std::move(r.pinned);
  r.pinned.clear();
  r.pinned_queued = 0;
  Backend& b = GetBackend(r.backend);
  for (uint64_t t : pinned) {
    auto e = entries_.find(t);
    if (e != entries_.end() && e->second.state == State::kQueued &&
        e->second.replica == it->first) {
      Queue(t, e->second, /*front=*/false);
    }
  }
  MarkDirty(b);
  return r.in_flight == 0;
}

bool Router::Draining(std::string_view replica) const {
  auto it = replicas_.find(replica);
  return it != replicas_.end() && it->second.draining;
}

bool Router::Drained(std::string_view replica) const {
  auto it = replicas_.find(replica);
  return it != replicas_.end() && it->second.draining && it->second.in_flight == 0;
}

Orphans Router::RemoveReplica(std::string_view replica_id) {
  Orphans out;
  auto rit = replicas_.find(replica_id);
  if (rit == replicas_.end()) return out;
  const std::string id = rit->first;
  const std::string backend = rit->second.backend;
  Backend& b = GetBackend(backend);
  std::deque<uint64_t> pinned = std::move(rit->second.pinned);
  b.by_load.erase({rit->second.in_flight, rit->second.seq, &rit->second});
  std::erase(b.replicas, id);
  replicas_.erase(rit);
  // Its waiting sticky requests go to the replica their key now maps to.
  for (uint64_t t : pinned) {
    auto e = entries_.find(t);
    if (e != entries_.end() && e->second.state == State::kQueued && e->second.replica == id) {
      Queue(t, e->second, /*front=*/false);
    }
  }
  // Tokens in flight on it. A scan: replica loss is rare, requests are not.
  std::vector<uint64_t> held;
  for (const auto& [token, e] : entries_) {
    if (e.state != State::kQueued && e.replica == id) held.push_back(token);
  }
  std::sort(held.begin(), held.end());  // oldest first: tokens grow with time
  for (auto tok = held.rbegin(); tok != held.rend(); ++tok) {
    Entry& e = entries_.at(*tok);
    if (e.state == State::kExpiredInFlight) {  // already answered
      entries_.erase(*tok);
      continue;
    }
    if (e.attempts <= b.config.retry_on_replica_failure) {
      e.state = State::kQueued;
      CountQueued(b, e, +1);
      Queue(*tok, e, /*front=*/true);  // retries go first
      out.requeued.push_back(*tok);
    } else {
      Forget(e);
      entries_.erase(*tok);
      out.failed.push_back(*tok);
    }
  }
  if (!b.ever_configured && ForgetIfIdle(backend)) return out;
  MarkDirty(b);
  return out;
}

bool Router::ForgetIfIdle(const std::string& name) {
  auto it = backends_.find(name);
  if (it == backends_.end()) return false;
  Backend& b = it->second;
  if (b.configured || !b.replicas.empty() || b.queued > 0) return false;
  // Out of the config and empty (no token points at it): forgotten, so that
  // it leaves `zserve status` and READYs with ever new names cannot grow
  // the broker's state.
  std::erase(dirty_, &b);
  std::erase_if(held_, [&b](const std::pair<TimePoint, Backend*>& h) { return h.second == &b; });
  backends_.erase(it);
  return true;
}

size_t Router::queue_slots() const {
  size_t n = 0;
  for (const auto& [name, b] : backends_) {
    for (const auto& q : b.queues) n += q.size();
  }
  for (const auto& [id, r] : replicas_) n += r.pinned.size();
  return n;
}

std::vector<BackendStatus> Router::Backends() const {
  std::vector<BackendStatus> out;
  for (const auto& [name, b] : backends_) {
    BackendStatus s;
    s.name = name;
    s.replicas = b.replicas.size();
    s.queued = b.queued;
    s.max_concurrent_queries = b.config.EffectiveMaxConcurrentQueries();
    s.desired_replicas = b.configured ? b.config.num_replicas : 0;
    s.configured = b.configured;
    for (const std::string& id : b.replicas) s.in_flight += replicas_.find(id)->second.in_flight;
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(),
            [](const BackendStatus& a, const BackendStatus& c) { return a.name < c.name; });
  return out;
}

}  // namespace zserve::broker
