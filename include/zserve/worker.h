// A replica of one backend: connects to the broker, registers, receives
// batches, runs the handler on a pool of threads (short calls on its I/O
// thread, docs/semantics.md) and returns one reply per request. Users build their own worker binary
// around their model with this library; `zserve worker` is the same library with built-in handlers.
//
// Run() blocks the calling thread, which becomes the worker's I/O thread and
// owns its sockets. Drain() may be called from any thread, and from a signal
// handler: the worker stops taking work, finishes what it holds, tells the
// broker, and Run() returns.
#ifndef ZSERVE_WORKER_H_
#define ZSERVE_WORKER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "zserve/curve.h"
#include "zserve/handler.h"
#include "zserve/status.h"

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace zserve {

struct WorkerOptions {
  std::string broker_address = "tcp://127.0.0.1:5556";  // the broker's worker port
  std::string backend;                                  // required
  std::string replica_tag;                              // for logs; default "<hostname>-<pid>"
  uint32_t capacity = 0;  // most requests held at once; 0: the backend's setting
  uint32_t threads = 4;   // handler pool size, 1..1024
  // A result larger than this fails its call with HANDLER_ERROR instead of
  // being sent: the broker closes a connection that sends a frame over its
  // --max-message-bytes (default the same), which would lose the replica.
  size_t max_result_bytes = 64 << 20;
  // Drain() gives up after this: Run returns UNAVAILABLE. A handler call
  // still running then is not interrupted, and the Worker's destructor waits
  // for it (the zserve binary exits without waiting).
  std::chrono::milliseconds drain_timeout{30'000};
  // Heartbeats with the broker (docs/operations.md): one every interval when
  // quiet; after `liveness` silent intervals the worker reconnects, waiting
  // interval, then twice that, ... up to reconnect_max.
  std::chrono::milliseconds heartbeat_interval{1000};
  uint32_t heartbeat_liveness = 3;
  std::chrono::milliseconds reconnect_max{4'000};
  // The controller, for this backend's user_config (Handler::Reconfigure).
  // Empty: the worker does not follow the controller.
  std::string controller_address;          // its ROUTER, e.g. tcp://127.0.0.1:5557
  std::string controller_updates_address;  // its PUB, e.g. tcp://127.0.0.1:5558
  std::string log_level = "info";
  // Prometheus metrics of this replica (docs/metrics.md), registered here;
  // borrowed, must outlive the Worker. Null: no metrics. Serve the registry
  // yourself (the zserve binary does it with --metrics-bind).
  prometheus::Registry* metrics = nullptr;
  // How many times this replica has been started by its supervisor, this run
  // included: zserve_replica_starts_total starts there (`zserve up` passes
  // it as --start-count).
  uint64_t start_count = 1;
  // CURVE (docs/security.md): this replica's key pair, the broker's public
  // key and (with controller_address) the controller's. Empty key: plain
  // ZeroMQ. A broker that refuses the key never registers the replica; the
  // worker logs it.
  KeyPair curve_key;
  std::string curve_broker_key;
  std::string curve_controller_key;
};

class Worker {
 public:
  // BAD_REQUEST for bad options, among them a broker or controller address
  // ZeroMQ cannot read (tcp://HOST:PORT or ipc://PATH).
  static StatusOr<std::unique_ptr<Worker>> Create(const WorkerOptions& options,
                                                  std::unique_ptr<Handler> handler);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Serves until drained. `on_wake` runs on the I/O thread whenever `wake_fd`
  // (if >= 0) turns readable; the zserve binary passes its signal pipe there.
  Status Run(int wake_fd = -1, const std::function<void()>& on_wake = {});

  // Async-signal-safe and thread-safe.
  void Drain();

  // Its replica tag: WorkerOptions::replica_tag, or the HOST-PID made when
  // that was empty.
  const std::string& replica_tag() const;

  class Impl;

 private:
  explicit Worker(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace zserve

#endif  // ZSERVE_WORKER_H_
