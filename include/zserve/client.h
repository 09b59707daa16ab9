// The zserve client library: calls to named endpoints through a broker.
//
//   auto client = zserve::Client::Create({}).value();
//   zserve::StatusOr<std::string> r = client->Call("echo", "hello");
//
// Synchronous Call blocks until its reply or deadline. CallAsync queues a call
// and keeps many calls in flight on one socket: the calls made before the
// next Poll(), Wait() or Call() (or 256 of them) go to the broker together, in
// one message (schemas/PROTOCOL.md, REQUESTS), and their answers come back
// together as they are ready. Each callback runs exactly
// once, from inside Poll(), Wait() or Call() on the thread that owns the
// client, and may itself call Call(), CallAsync() or Poll() (or, when it
// runs from the destructor, which fails the calls still pending with
// UNAVAILABLE, nothing of this client). Errors are typed Status codes
// (NOT_FOUND, DEADLINE_EXCEEDED, HANDLER_ERROR, ...), never exceptions.
//
// Calls go out only while a connection to the broker is up; until then the
// client holds them, and a held call that reaches its deadline (or
// connect_timeout, when it names no deadline) fails without being sent.
// When the connection drops, the calls sent on it fail at once with
// UNAVAILABLE (they may or may not have run), except those marked
// idempotent, which are sent again on the next connection (at most 3 times).
//
// A Client is not thread-safe: one thread owns it (ZeroMQ sockets belong to
// one thread). Use one Client per thread.
#ifndef ZSERVE_CLIENT_H_
#define ZSERVE_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "zserve/curve.h"
#include "zserve/status.h"

namespace zserve {

struct ClientOptions {
  std::string broker_address = "tcp://127.0.0.1:5555";  // the broker's client port
  // How long a call that names no timeout waits for a connection to the
  // broker: then it fails with UNAVAILABLE, not sent. (Once sent it has the
  // endpoint's timeout_ms.) A call that names one waits until its deadline.
  // milliseconds::max(): no limit.
  std::chrono::milliseconds connect_timeout{30'000};
  // How long past a sent call's deadline the client waits for the broker's
  // own answer before it answers DEADLINE_EXCEEDED itself (the broker may be
  // gone); 0..3600000 ms. A call not sent by its deadline fails at it.
  std::chrono::milliseconds grace{250};
  // CURVE (docs/security.md): this client's key pair and the broker's public
  // key. Empty: plain ZeroMQ. A broker that refuses the key fails the calls
  // with PERMISSION_DENIED.
  KeyPair curve_key;
  std::string curve_server_key;
  // A payload larger than this is refused here with BAD_REQUEST (the broker's
  // --max-message-bytes, whose default this is, would refuse it too).
  size_t max_payload_bytes = 64 << 20;
};

struct CallOptions {
  std::string method = "__call__";
  std::chrono::milliseconds timeout{0};  // 0: the endpoint's timeout_ms
  std::string shard_key;                 // same key, same backend (sticky)
  int32_t priority = 0;                  // > 0: high priority (docs/semantics.md)
  // Safe to run twice: if the broker connection drops, the call is sent again
  // instead of failing with UNAVAILABLE.
  bool idempotent = false;
};

class Client {
 public:
  using Callback = std::function<void(StatusOr<std::string>)>;

  // BAD_REQUEST for bad options, among them a broker_address ZeroMQ cannot
  // read (it is tcp://HOST:PORT or ipc://PATH). A well-formed address with
  // no broker behind it is no error: the client connects when it comes.
  static StatusOr<std::unique_ptr<Client>> Create(const ClientOptions& options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  StatusOr<std::string> Call(std::string_view endpoint, std::string_view payload,
                             const CallOptions& options = {});

  // A call the broker would refuse (an endpoint name outside 1 to 128 of
  // [A-Za-z0-9_.-], a method outside 1 to 128 printable ASCII characters other than space, a
  // shard key over 128 bytes, a negative timeout, a payload over
  // max_payload_bytes) fails with BAD_REQUEST at the next Poll, without
  // being sent; the calls made with it are not held up. An empty `done`
  // makes a call whose result nobody is told.
  void CallAsync(std::string_view endpoint, std::string_view payload, const CallOptions& options,
                 Callback done);

  // Handles replies and expired calls for at most `timeout` (negative or
  // milliseconds::max(): until a callback ran); returns the number of
  // callbacks run. Returns at once when no call is pending.
  size_t Poll(std::chrono::milliseconds timeout);
  // Poll for a thread that owns the client and also takes work from other
  // threads: returns as well (0 callbacks run) as soon as `wake_fd` — a pipe
  // or eventfd those threads write to — is readable, and waits even when no
  // call is pending. The caller reads `wake_fd` empty.
  size_t Poll(std::chrono::milliseconds timeout, int wake_fd);
  // Polls until no call is pending.
  void Wait();
  size_t pending() const;

  // The broker's STATUS document (JSON), see schemas/PROTOCOL.md.
  StatusOr<std::string> BrokerStatus(std::chrono::milliseconds timeout);

  class Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace zserve

#endif  // ZSERVE_CLIENT_H_
