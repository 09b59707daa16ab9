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
    endpoints_.emplace(name, Endpoint{std::move(policy).value(), e.timeout_ms});
  }
  for (auto& [name, b] : backends_) {
    b.configured = false;
    b.config = schemas::BackendConfig{};
    b.config.name = name;
  }
  for (const auto& [name, config] : state.backends) {
    Backend& b = GetBackend(name);
    b.config = config;
    b.configured = true;
  }
  // Capacities may have grown.
  for (auto& [name, b] : backends_) MarkDirty(b);
  has_config_ = true;
}

Status Router::Admit(uint64_t token, std::string_view endpoint, std::string_view shard_key,
                     uint32_t timeout_ms, TimePoint now, std::string* backend_out) {
  auto ep = endpoints_.find(endpoint);
  if (ep == endpoints_.end()) {
    return NotFound("no endpoint named '" + std::string(endpoint) + "'");
  }
  const std::string& backend_name = shard_key.empty() ? ep->second.policy.Pick(uniform_(rng_))
                                                      : ep->second.policy.PickByKey(shard_key);
  Backend& b = GetBackend(backend_name);
  if (b.queued >= b.config.max_queued_requests) {
    return Overloaded("backend '" + backend_name + "' has " + std::to_string(b.queued) +
                      " requests queued, its bound");
  }
  if (total_queued_ >= options_.max_total_queued) {
    return Overloaded("the broker has " + std::to_string(total_queued_) +
                      " requests queued, its bound");
  }
  uint32_t timeout = timeout_ms != 0 ? timeout_ms : ep->second.timeout_ms;
  TimePoint deadline = now + std::chrono::milliseconds(timeout);
  auto [it, inserted] = entries_.try_emplace(token, Entry{&b, deadline, State::kQueued, {}, 0});
  if (!inserted) return BadRequest("token " + std::to_string(token) + " is already in use");
  deadlines_.emplace(deadline, token);
  b.queue.push_back(token);
  ++b.queued;
  ++total_queued_;
  MarkDirty(b);
  if (backend_out != nullptr) *backend_out = backend_name;
  return Status::Ok();
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

void Router::Compact(Backend& b) {
  std::erase_if(b.queue, [this, &b](uint64_t token) { return !IsQueuedIn(token, b); });
}

void Router::MarkDirty(Backend& b) {
  if (b.dirty) return;
  b.dirty = true;
  dirty_.push_back(&b);
}

void Router::FillBackend(Backend& b, std::vector<Dispatch>* out) {
  while (b.queued > 0) {
    // The least-loaded replica with room: no replica hoards work that an idle
    // one could run.
    Replica* best = nullptr;
    const std::string* best_id = nullptr;
    uint32_t best_free = 0;
    for (const std::string& id : b.replicas) {
      Replica& r = replicas_.at(id);
      uint32_t free = FreeSlots(r, b);
      if (free > 0 && (best == nullptr || r.in_flight < best->in_flight)) {
        best = &r;
        best_id = &id;
        best_free = free;
      }
    }
    if (best == nullptr) return;
    Dispatch d{*best_id, {}};
    uint32_t take = std::min(best_free, b.config.max_batch_size);
    while (d.tokens.size() < take && !b.queue.empty()) {
      uint64_t token = b.queue.front();
      b.queue.pop_front();
      auto it = entries_.find(token);
      if (it == entries_.end() || it->second.state != State::kQueued || it->second.backend != &b) {
        continue;  // answered or moved since it was queued
      }
      it->second.state = State::kInFlight;
      it->second.replica = *best_id;
      ++it->second.attempts;
      --b.queued;
      --total_queued_;
      ++best->in_flight;
      d.tokens.push_back(token);
    }
    if (d.tokens.empty()) return;
    out->push_back(std::move(d));
  }
}

std::vector<Dispatch> Router::TakeDispatches() {
  std::vector<Dispatch> out;
  for (Backend* b : dirty_) {
    b->dirty = false;
    FillBackend(*b, &out);
  }
  dirty_.clear();
  return out;
}

void Router::Forget(uint64_t token, const Entry& e) {
  if (e.state != State::kExpiredInFlight) deadlines_.erase({e.deadline, token});
}

Completion Router::Complete(std::string_view replica, uint64_t token) {
  auto it = entries_.find(token);
  if (it == entries_.end() || it->second.state == State::kQueued || it->second.replica != replica) {
    return Completion::kUnknown;
  }
  Entry& e = it->second;
  Completion result = e.state == State::kInFlight ? Completion::kDeliver : Completion::kLate;
  auto r = replicas_.find(e.replica);
  if (r != replicas_.end()) --r->second.in_flight;
  MarkDirty(*e.backend);
  Forget(token, e);
  entries_.erase(it);
  return result;
}

std::vector<uint64_t> Router::Expire(TimePoint now) {
  std::vector<uint64_t> out;
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    uint64_t token = deadlines_.begin()->second;
    deadlines_.erase(deadlines_.begin());
    auto it = entries_.find(token);
    if (it == entries_.end()) std::abort();  // deadlines_ and entries_ out of step
    Entry& e = it->second;
    if (e.state == State::kQueued) {
      Backend& b = *e.backend;
      --b.queued;
      --total_queued_;
      entries_.erase(it);  // its stale queue slot is skipped later...
      // ...or dropped here, so that a queue nobody drains stays bounded.
      if (b.queue.size() > 2 * b.queued + 64) Compact(b);
    } else {
      e.state = State::kExpiredInFlight;  // keeps its slot until the replica answers
    }
    out.push_back(token);
  }
  return out;
}

std::optional<TimePoint> Router::NextDeadline() const {
  if (deadlines_.empty()) return std::nullopt;
  return deadlines_.begin()->first;
}

std::optional<TimePoint> Router::Deadline(uint64_t token) const {
  auto it = entries_.find(token);
  if (it == entries_.end()) return std::nullopt;
  return it->second.deadline;
}

Status Router::AddReplica(const std::string& replica, const std::string& backend,
                          uint32_t capacity) {
  if (replicas_.contains(replica)) {
    return BadRequest("this connection is already registered as a replica");
  }
  replicas_.emplace(replica, Replica{backend, capacity, 0, false});
  Backend& b = GetBackend(backend);
  b.replicas.push_back(replica);
  MarkDirty(b);
  return Status::Ok();
}

bool Router::HasReplica(std::string_view replica) const { return replicas_.contains(replica); }

bool Router::StartDrain(std::string_view replica) {
  auto it = replicas_.find(replica);
  if (it == replicas_.end()) return false;
  it->second.draining = true;
  return it->second.in_flight == 0;
}

bool Router::Drained(std::string_view replica) const {
  auto it = replicas_.find(replica);
  return it != replicas_.end() && it->second.draining && it->second.in_flight == 0;
}

Orphans Router::RemoveReplica(std::string_view replica_id) {
  Orphans out;
  auto rit = replicas_.find(replica_id);
  if (rit == replicas_.end()) return out;
  const std::string backend_name = rit->second.backend;
  Backend& b = GetBackend(backend_name);
  std::erase(b.replicas, rit->first);
  replicas_.erase(rit);
  // Tokens in flight on it. A scan: replica loss is rare, requests are not.
  std::vector<uint64_t> held;
  for (const auto& [token, e] : entries_) {
    if (e.state != State::kQueued && e.replica == replica_id) held.push_back(token);
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
      e.replica.clear();
      b.queue.push_front(*tok);  // retries go first
      ++b.queued;
      ++total_queued_;
      out.requeued.push_back(*tok);
    } else {
      Forget(*tok, e);
      entries_.erase(*tok);
      out.failed.push_back(*tok);
    }
  }
  MarkDirty(b);
  return out;
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
    for (const std::string& id : b.replicas) s.in_flight += replicas_.at(id).in_flight;
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(),
            [](const BackendStatus& a, const BackendStatus& c) { return a.name < c.name; });
  return out;
}

}  // namespace zserve::broker
