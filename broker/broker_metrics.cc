#include "broker/broker_metrics.h"

#include "common/metrics_server.h"

namespace zserve::broker {

namespace pm = prometheus;

namespace {

constexpr std::chrono::milliseconds kRefreshEvery{100};

int64_t Second(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

// Error counters for every error code, so that each series exists from 0.
template <typename Labels>
void MakeErrors(pm::Family<pm::Counter>& family, const Labels& labels,
                std::array<pm::Counter*, kStatusCodes>* out) {
  for (size_t c = 1; c < kStatusCodes; ++c) {
    pm::Labels l = labels;
    l["type"] = std::string(StatusCodeName(static_cast<StatusCode>(c)));
    (*out)[c] = &family.Add(l);
  }
}

}  // namespace

void RecentWindow::Add(TimePoint now, bool error) {
  int64_t s = Second(now);
  Bucket& b = buckets_[static_cast<size_t>(s % 60)];
  if (b.second != s) b = Bucket{s, 0, 0};
  ++b.requests;
  if (error) ++b.errors;
}

std::pair<uint64_t, uint64_t> RecentWindow::Totals(TimePoint now) const {
  int64_t s = Second(now);
  std::pair<uint64_t, uint64_t> out{0, 0};
  for (const Bucket& b : buckets_) {
    if (b.second > s - 60 && b.second <= s) {
      out.first += b.requests;
      out.second += b.errors;
    }
  }
  return out;
}

BrokerMetrics::BrokerMetrics(pm::Registry* registry)
    : own_registry_(registry == nullptr ? std::make_unique<pm::Registry>() : nullptr),
      registry_(registry != nullptr ? *registry : *own_registry_),
      requests_(RegisterFamily(pm::BuildCounter(), registry_, "zserve_broker_requests_total",
                               "Requests read for a configured endpoint")),
      endpoint_errors_(RegisterFamily(pm::BuildCounter(), registry_,
                                      "zserve_broker_endpoint_errors_total",
                                      "Requests of an endpoint answered with an error")),
      backend_errors_(RegisterFamily(pm::BuildCounter(), registry_,
                                     "zserve_broker_backend_errors_total",
                                     "Requests routed to a backend answered with an error")),
      rejected_(RegisterFamily(pm::BuildCounter(), registry_,
                               "zserve_broker_unknown_endpoint_requests_total",
                               "Requests for an endpoint that does not exist (NOT_FOUND)")),
      dropped_(RegisterFamily(pm::BuildCounter(), registry_, "zserve_broker_dropped_messages_total",
                              "Messages dropped without an answer, by reason")),
      shadow_requests_(RegisterFamily(pm::BuildCounter(), registry_,
                                      "zserve_broker_shadow_requests_total",
                                      "Shadow copies queued")),
      shadow_errors_(RegisterFamily(pm::BuildCounter(), registry_,
                                    "zserve_broker_shadow_errors_total",
                                    "Shadow copies that failed (their replies go nowhere)")),
      shadow_dropped_(RegisterFamily(pm::BuildCounter(), registry_,
                                     "zserve_broker_shadow_dropped_total",
                                     "Shadow copies not queued: the shadow backend was full")),
      queued_(RegisterFamily(pm::BuildGauge(), registry_, "zserve_broker_queued_requests",
                             "Requests waiting for a replica")),
      in_flight_(RegisterFamily(pm::BuildGauge(), registry_, "zserve_broker_in_flight_requests",
                                "Requests sent to a replica and not answered yet")),
      replicas_(RegisterFamily(pm::BuildGauge(), registry_, "zserve_broker_live_replicas",
                               "Replicas registered with the broker")),
      desired_replicas_(RegisterFamily(pm::BuildGauge(), registry_,
                                       "zserve_broker_desired_replicas",
                                       "num_replicas of the backend's config")),
      request_duration_(RegisterFamily(pm::BuildHistogram(), registry_,
                                       "zserve_broker_request_duration_seconds",
                                       "From reading a request to its reply")),
      queue_duration_(RegisterFamily(pm::BuildHistogram(), registry_,
                                     "zserve_broker_queue_duration_seconds",
                                     "From reading a request to its dispatch to a replica")),
      dispatch_duration_(RegisterFamily(pm::BuildHistogram(), registry_,
                                        "zserve_broker_dispatch_duration_seconds",
                                        "From dispatch to a replica to its result")),
      unknown_endpoint_(rejected_.Add({})),
      replicas_lost_(RegisterFamily(pm::BuildCounter(), registry_,
                                    "zserve_broker_replicas_lost_total",
                                    "Replicas lost without draining")
                         .Add({})),
      ready_gauge_(RegisterFamily(pm::BuildGauge(), registry_, "zserve_broker_ready",
                                  "1 when the broker is ready (/readyz)")
                       .Add({})),
      config_version_(RegisterFamily(pm::BuildGauge(), registry_, "zserve_broker_config_version",
                                     "Version of the configuration the broker holds")
                          .Add({})) {
  const char* reasons[] = {"malformed_client", "malformed_worker",    "unknown_result",
                           "late_result",      "undeliverable_reply", "over_limit"};
  for (size_t i = 0; i < drops_.size(); ++i) drops_[i] = &dropped_.Add({{"reason", reasons[i]}});
}

EndpointMetrics& BrokerMetrics::Endpoint(std::string_view name) {
  auto it = endpoints_.find(name);
  if (it != endpoints_.end()) return *it->second;
  auto e = std::make_unique<EndpointMetrics>();
  e->name = std::string(name);
  e->requests = &requests_.Add({{"endpoint", e->name}});
  MakeErrors(endpoint_errors_, pm::Labels{{"endpoint", e->name}}, &e->errors);
  return *endpoints_.emplace(e->name, std::move(e)).first->second;
}

BackendMetrics& BrokerMetrics::Backend(std::string_view name) {
  auto it = backends_.find(name);
  if (it != backends_.end()) return *it->second;
  auto b = std::make_unique<BackendMetrics>();
  pm::Labels l{{"backend", std::string(name)}};
  MakeErrors(backend_errors_, l, &b->errors);
  b->queued = &queued_.Add(l);
  b->in_flight = &in_flight_.Add(l);
  b->replicas = &replicas_.Add(l);
  b->desired_replicas = &desired_replicas_.Add(l);
  b->shadow_requests = &shadow_requests_.Add(l);
  b->shadow_errors = &shadow_errors_.Add(l);
  b->shadow_dropped = &shadow_dropped_.Add(l);
  return *backends_.emplace(std::string(name), std::move(b)).first->second;
}

RouteMetrics& BrokerMetrics::Route(EndpointMetrics& e, const std::string& backend) {
  auto it = e.routes.find(backend);
  if (it != e.routes.end()) return *it->second;
  auto r = std::make_unique<RouteMetrics>();
  r->endpoint = &e;
  r->backend = &Backend(backend);
  pm::Labels l{{"endpoint", e.name}, {"backend", backend}};
  r->request_duration.emplace(request_duration_.Add(l, LatencyBuckets()), LatencyBuckets());
  r->queue_duration.emplace(queue_duration_.Add(l, LatencyBuckets()), LatencyBuckets());
  r->dispatch_duration.emplace(dispatch_duration_.Add(l, LatencyBuckets()), LatencyBuckets());
  return *e.routes.emplace(backend, std::move(r)).first->second;
}

void BrokerMetrics::ApplyConfig(const schemas::ConfigState& state, uint64_t version) {
  config_version_.Set(static_cast<double>(version));
  next_refresh_ = TimePoint{};  // readiness follows at once
  needs_.clear();
  for (const auto& [name, b] : state.backends) Backend(name);
  for (const auto& [name, e] : state.endpoints) {
    EndpointMetrics& em = Endpoint(name);
    std::vector<std::string> weighted;
    for (const auto& [backend, weight] : e.traffic) {
      Route(em, backend);
      if (weight > 0) weighted.push_back(backend);
    }
    for (const auto& [backend, fraction] : e.shadow) Route(em, backend);
    if (!weighted.empty()) needs_.emplace_back(name, std::move(weighted));
  }
  has_config_ = true;
}

RequestTiming BrokerMetrics::Admitted(std::string_view endpoint, const std::string& backend,
                                      const Status& admitted, TimePoint now) {
  if (admitted.code() == StatusCode::kNotFound) {  // no such endpoint: no label to give
    unknown_endpoint_.Increment();
    return {};
  }
  EndpointMetrics& e = Endpoint(endpoint);
  e.requests->Increment();
  if (!admitted.ok()) {  // refused at the door (OVERLOADED): its backend is not known
    e.errors[static_cast<size_t>(admitted.code())]->Increment();
    e.recent.Add(now, true);
    return {};
  }
  return {&Route(e, backend), now, {}};
}

RequestTiming BrokerMetrics::Shadow(const RequestTiming& primary, const std::string& backend,
                                    bool queued, TimePoint now) {
  if (primary.route == nullptr) return {};
  RouteMetrics& r = Route(*primary.route->endpoint, backend);
  (queued ? r.backend->shadow_requests : r.backend->shadow_dropped)->Increment();
  return {&r, now, {}, /*shadow=*/true};
}

void BrokerMetrics::Dispatched(RequestTiming& timing, TimePoint now) {
  timing.dispatched = now;
  if (timing.route != nullptr && !timing.shadow) {
    Observe(*timing.route->queue_duration, now - timing.received);
  }
}

void BrokerMetrics::Finished(const RequestTiming& timing, StatusCode code, bool shadow,
                             TimePoint now) {
  RouteMetrics* r = timing.route;
  if (r == nullptr) return;
  bool error = code != StatusCode::kOk;
  if (shadow) {
    if (error) r->backend->shadow_errors->Increment();
    return;
  }
  if (error) {
    r->endpoint->errors[static_cast<size_t>(code)]->Increment();
    r->backend->errors[static_cast<size_t>(code)]->Increment();
  }
  r->endpoint->recent.Add(now, error);
  Observe(*r->request_duration, now - timing.received);
  if (timing.dispatched != TimePoint{}) Observe(*r->dispatch_duration, now - timing.dispatched);
}

void BrokerMetrics::Dropped(Drop why) { drops_[static_cast<size_t>(why)]->Increment(); }

void BrokerMetrics::ReplicaLost() { replicas_lost_.Increment(); }

void BrokerMetrics::Refresh(const Router& router, TimePoint now, bool force) {
  for (BufferedHistogram* h : unflushed_) h->Flush();
  unflushed_.clear();
  if (!force && now < next_refresh_) return;
  next_refresh_ = now + kRefreshEvery;
  StringMap<size_t> live;
  for (const BackendStatus& s : router.Backends()) {
    live[s.name] = s.replicas;
    // Label values come from the configuration: a backend that only READY
    // named has no series (STATUS shows it).
    if (!s.configured && !backends_.contains(s.name)) continue;
    BackendMetrics& b = Backend(s.name);
    b.queued->Set(static_cast<double>(s.queued));
    b.in_flight->Set(static_cast<double>(s.in_flight));
    b.replicas->Set(static_cast<double>(s.replicas));
    b.desired_replicas->Set(static_cast<double>(s.desired_replicas));
  }
  // A backend the router has forgotten (deleted, then drained) holds
  // nothing: its series say so rather than keep their last values.
  for (auto& [name, b] : backends_) {
    if (live.contains(name)) continue;
    b->queued->Set(0);
    b->in_flight->Set(0);
    b->replicas->Set(0);
    b->desired_replicas->Set(0);
  }
  std::string reason;
  if (!has_config_) reason = "no configuration yet";
  for (const auto& [endpoint, backends] : needs_) {
    if (!reason.empty()) break;
    bool served = false;
    for (const std::string& b : backends) {
      auto it = live.find(b);
      served |= it != live.end() && it->second > 0;
    }
    if (!served) reason = "endpoint '" + endpoint + "' has no live replica";
  }
  ready_.store(reason.empty(), std::memory_order_relaxed);
  ready_gauge_.Set(reason.empty() ? 1 : 0);
  std::lock_guard<std::mutex> lock(reason_mu_);
  reason_ = std::move(reason);
}

std::string BrokerMetrics::not_ready_reason() const {
  std::lock_guard<std::mutex> lock(reason_mu_);
  return reason_;
}

std::vector<std::pair<std::string, uint64_t>> BrokerMetrics::Counters() const {
  auto value = [](const pm::Counter* c) { return static_cast<uint64_t>(c->Value()); };
  uint64_t shadow_requests = 0, shadow_errors = 0, shadow_dropped = 0;
  for (const auto& [name, b] : backends_) {
    shadow_requests += value(b->shadow_requests);
    shadow_errors += value(b->shadow_errors);
    shadow_dropped += value(b->shadow_dropped);
  }
  return {{"malformed_client", value(drops_[0])},
          {"malformed_worker", value(drops_[1])},
          {"unknown_results", value(drops_[2])},
          {"late_results", value(drops_[3])},
          {"undeliverable_replies", value(drops_[4])},
          {"over_limit_messages", value(drops_[5])},
          {"lost_replicas", value(&replicas_lost_)},
          {"unknown_endpoint_requests", value(&unknown_endpoint_)},
          {"shadow_requests", shadow_requests},
          {"shadow_errors", shadow_errors},
          {"shadow_dropped", shadow_dropped}};
}

std::pair<uint64_t, uint64_t> BrokerMetrics::Recent(std::string_view endpoint,
                                                    TimePoint now) const {
  auto it = endpoints_.find(endpoint);
  if (it == endpoints_.end()) return {0, 0};
  return it->second->recent.Totals(now);
}

}  // namespace zserve::broker
