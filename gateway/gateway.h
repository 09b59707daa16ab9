// The HTTP gateway (`zserve http`, docs/http.md): serves each endpoint that
// has a route over HTTP/1.1. A POST or GET on the route calls the endpoint
// through the broker with the body as payload and answers its result or its
// typed error as an HTTP status; /-/routes and /-/healthz are its own.
//
// Threads:
// - civetweb's request threads (GatewayOptions::threads; a keep-alive
//   connection holds one) decide what to do (http_mapping.h), queue a call
//   and wait for its result on the call's own condition variable, bounded by
//   the call's deadline plus a margin;
// - one I/O thread owns the zserve::Client, so every call is in flight on one
//   ZeroMQ socket: it takes queued calls when an eventfd wakes it and hands
//   each result back to its request thread;
// - the thread that calls Run() owns the config subscriber (the controller's
//   Clone pattern) and swaps in a new route table for each new version.
//
// Create() starts serving HTTP at once; until a first configuration arrives
// every route answers 503. Destroying the gateway first answers the requests
// it holds (each within its call's deadline) while it refuses new ones with
// 503, then stops the HTTP server, then the I/O thread.
#ifndef ZSERVE_GATEWAY_GATEWAY_H_
#define ZSERVE_GATEWAY_GATEWAY_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "common/logging.h"
#include "gateway/http_mapping.h"
#include "gateway/route_table.h"
#include "schemas/config_subscriber.h"
#include "zserve/client.h"
#include "zserve/status.h"

struct mg_context;
struct mg_connection;

namespace zserve::gateway {

// The largest --max-body-bytes: a body is held whole in memory.
inline constexpr size_t kMaxBodyLimit = size_t{1} << 30;

struct GatewayOptions {
  std::string listen = "127.0.0.1:8000";                    // HOST:PORT; port 0: a free port
  std::string broker_address = "tcp://127.0.0.1:5555";      // its client port
  std::string controller_address = "tcp://127.0.0.1:5557";  // admin/snapshot ROUTER
  std::string controller_updates_address = "tcp://127.0.0.1:5558";  // PUB
  zmq::context_t* context = nullptr;  // required, borrowed: the config subscriber's
  Logger logger;                      // required
  int threads = 64;                   // HTTP requests (connections) served at once
  // Keep it within the broker's --max-message-bytes (64 MiB by default): a
  // larger body makes the broker drop the gateway's connection, failing
  // its other calls. At most kMaxBodyLimit.
  size_t max_body_bytes = 16 * 1024 * 1024;
  std::chrono::milliseconds keep_alive_timeout{5000};  // an idle connection is closed after
  // CURVE (docs/security.md): the gateway's key pair (a client key for the
  // broker, any listed key for the controller) and the servers' public keys.
  KeyPair curve_key;
  std::string curve_broker_key;
  std::string curve_controller_key;
};

class Gateway {
 public:
  static StatusOr<std::unique_ptr<Gateway>> Create(const GatewayOptions& options);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  int port() const { return port_; }
  std::string address() const;  // "HOST:PORT"

  // Follows the controller's configuration on the calling thread until
  // `should_stop` returns true after `wake_fd` turned readable.
  Status Run(int wake_fd, const std::function<bool()>& should_stop);

 private:
  struct Call;
  explicit Gateway(const GatewayOptions& options);
  Status StartIo();
  Status StartHttp();
  void IoLoop();
  std::shared_ptr<const RouteTable> routes() const;
  void SetRoutes(std::shared_ptr<const RouteTable> routes);
  // Queues a call to the I/O thread and waits for its result.
  HttpResponse CallAndWait(CallPlan plan, std::string payload);
  static int HandleRequest(mg_connection* conn, void* self);
  int Handle(mg_connection* conn);  // Serve, and a 500 if it throws
  int Serve(mg_connection* conn);

  GatewayOptions options_;
  Logger log_;
  std::string host_;
  int port_ = 0;
  std::unique_ptr<schemas::ConfigSubscriber> config_;  // Run()'s thread

  mutable std::mutex routes_mu_;
  std::shared_ptr<const RouteTable> routes_;  // guarded by routes_mu_; nullptr: no config yet

  int wake_fd_ = -1;  // eventfd: calls queued, or stop
  std::mutex queue_mu_;
  std::vector<std::shared_ptr<Call>> queue_;  // guarded by queue_mu_
  std::atomic<bool> stop_io_{false};
  std::thread io_thread_;  // owns the Client

  mg_context* server_ = nullptr;  // civetweb; stopped before the I/O thread

  // Requests being handled; on stop, new ones are refused and these answered
  // before civetweb stops (which would drop their replies).
  std::mutex active_mu_;
  std::condition_variable active_cv_;
  int active_ = 0;         // guarded by active_mu_
  bool stopping_ = false;  // guarded by active_mu_
};

// True when the gateway on `host`:`port` answers GET /-/routes with 200
// within `timeout`, i.e. it serves and holds a configuration. How `zserve up`
// waits for its own gateway. Blocks the calling thread.
bool ServesRoutes(const std::string& host, int port, std::chrono::milliseconds timeout);

}  // namespace zserve::gateway

#endif  // ZSERVE_GATEWAY_GATEWAY_H_
