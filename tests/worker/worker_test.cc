// The worker library (include/zserve/worker.h) against a fake broker: the test
// binds a ROUTER, the worker connects its DEALER to it, and the test speaks
// ZSP/1 (schemas/PROTOCOL.md, section 4.2) through schemas/codec.h. Every wait
// is a zmq::poll or a condition with a bound; nothing sleeps.
#include "zserve/worker.h"

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>
#include <zmq.hpp>

#include "common/zmq_util.h"
#include "schemas/codec.h"
#include "tests/common/fake_router.h"
#include "worker/builtin_handlers.h"
#include "zserve/handler.h"
#include "zserve/status.h"

namespace {

using Catch::Matchers::Contains;
using std::chrono::milliseconds;
using zserve::Clock;
using zserve::Frames;
using zserve::Request;
using zserve::Result;
using zserve::Status;
using zserve::StatusCode;
namespace sc = zserve::schemas;

constexpr milliseconds kWait{5000};  // the most any expected message may take

// The broker, played by the test.
class FakeBroker : public zserve::testing::FakeRouter {
 public:
  Status SendBatch(const std::vector<sc::BatchItem>& items,
                   const std::vector<std::string>& payloads,
                   const std::vector<uint32_t>& sizes = {}) {
    std::vector<std::string> frames{sc::EncodeBatch(items, sizes)};
    frames.insert(frames.end(), payloads.begin(), payloads.end());
    return Send(frames);
  }

  Status SendSimple(sc::Command command) { return Send({sc::EncodeSimple(command)}); }
};

sc::Command CommandOf(const Frames& frames) {
  REQUIRE_FALSE(frames.empty());
  zserve::StatusOr<sc::Command> c = sc::PeekCommand(zserve::View(frames[0]));
  REQUIRE(c.ok());
  return *c;
}

zserve::WorkerOptions Options(const std::string& address) {
  zserve::WorkerOptions o;
  o.broker_address = address;
  o.backend = "b";
  o.replica_tag = "replica-1";
  o.threads = 2;
  o.drain_timeout = milliseconds(3000);  // a broken test never hangs long
  o.log_level = "error";
  return o;
}

// One answer as the broker sees it in RESULTS.
struct Answer {
  StatusCode code = StatusCode::kOk;
  std::string message;
  std::string payload;
};

// A worker running on its own thread against a FakeBroker.
class Harness {
 public:
  explicit Harness(std::unique_ptr<zserve::Handler> handler) : Harness(std::move(handler), {}) {}

  Harness(std::unique_ptr<zserve::Handler> handler,
          const std::function<void(zserve::WorkerOptions&)>& tweak) {
    zserve::WorkerOptions o = Options(broker.address());
    if (tweak) tweak(o);
    auto w = zserve::Worker::Create(o, std::move(handler));
    REQUIRE(w.ok());
    worker = std::move(w).value();
    thread_ = std::thread([this] {
      run_status_ = worker->Run();
      returned_.store(true);
    });
  }

  ~Harness() {
    if (!thread_.joinable()) return;
    // A test that failed half-way: stop the worker as well as we can, by
    // confirming any drain, so that Run returns before its drain_timeout.
    worker->Drain();
    try {
      const auto end = Clock::now() + kWait;
      while (!returned() && Clock::now() < end) {
        Frames f;
        if (!broker.Recv(&f, milliseconds(100)) || !f.empty()) {
          (void)broker.SendSimple(sc::Command::kDisconnect);
        }
      }
    } catch (...) {
    }
    thread_.join();  // Run gives up after drain_timeout at worst
  }

  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  bool returned() const { return returned_.load(); }
  std::thread::id run_thread() const { return thread_.get_id(); }  // the I/O thread

  sc::ReadyHeader ExpectReady() {
    Frames f;
    REQUIRE(broker.Recv(&f));
    REQUIRE(CommandOf(f) == sc::Command::kReady);
    REQUIRE(f.size() == 1);
    auto ready = sc::DecodeReady(zserve::View(f[0]));
    REQUIRE(ready.ok());
    return *ready;
  }

  // RESULTS until every token of `tokens` is answered; each exactly once and
  // no other token. Heartbeats are let pass.
  std::map<uint64_t, Answer> Collect(const std::set<uint64_t>& tokens) {
    std::map<uint64_t, Answer> answers;
    const auto end = Clock::now() + kWait;
    while (answers.size() < tokens.size()) {
      auto left = std::chrono::ceil<milliseconds>(end - Clock::now());
      Frames f;
      INFO("answered " << answers.size() << " of " << tokens.size());
      REQUIRE(left.count() > 0);
      REQUIRE(broker.Recv(&f, left));
      if (CommandOf(f) == sc::Command::kHeartbeat) continue;  // the worker's, when quiet
      REQUIRE(CommandOf(f) == sc::Command::kResults);
      auto items = sc::DecodeResults(zserve::View(f[0]));
      REQUIRE(items.ok());
      REQUIRE(f.size() == items->size() + 1);
      for (size_t i = 0; i < items->size(); ++i) {
        const sc::ResultItem& r = (*items)[i];
        INFO("token " << r.token);
        REQUIRE(tokens.count(r.token) == 1);
        REQUIRE(answers.count(r.token) == 0);
        answers[r.token] = Answer{r.code, r.message, std::string(zserve::View(f[i + 1]))};
      }
    }
    return answers;
  }

  // What CollectWithHeartbeats saw.
  struct Watched {
    std::map<uint64_t, Answer> answers;
    bool heartbeat = false;        // the worker sent one
    bool heartbeat_first = false;  // ... before the first RESULTS
  };
  // RESULTS until every token of `tokens` is answered (each exactly once, no
  // other token) and the worker has sent a heartbeat, or kWait passes. Plays
  // the broker's side of heartbeating meanwhile, as the broker does: a
  // heartbeat whenever it has sent the worker nothing for 50 ms, however
  // much it hears (a worker streaming results hears from it all the same).
  Watched CollectWithHeartbeats(const std::set<uint64_t>& tokens) {
    Watched w;
    const auto end = Clock::now() + kWait;
    auto last_sent = Clock::now();
    while ((w.answers.size() < tokens.size() || !w.heartbeat) && Clock::now() < end) {
      if (Clock::now() - last_sent >= milliseconds(50)) {
        Status sent = broker.SendSimple(sc::Command::kHeartbeat);
        INFO(sent.message());
        REQUIRE(sent.ok());
        last_sent = Clock::now();
      }
      Frames f;
      auto until_due = std::chrono::ceil<milliseconds>(last_sent + milliseconds(50) - Clock::now());
      if (!broker.Recv(&f, std::max(until_due, milliseconds(0)))) continue;
      if (CommandOf(f) == sc::Command::kHeartbeat) {
        w.heartbeat = true;
        w.heartbeat_first = w.heartbeat_first || w.answers.empty();
        continue;
      }
      REQUIRE(CommandOf(f) == sc::Command::kResults);
      auto items = sc::DecodeResults(zserve::View(f[0]));
      REQUIRE(items.ok());
      for (size_t i = 0; i < items->size(); ++i) {
        const sc::ResultItem& r = (*items)[i];
        INFO("token " << r.token);
        REQUIRE(tokens.count(r.token) == 1);
        REQUIRE(w.answers.count(r.token) == 0);
        w.answers[r.token] = Answer{r.code, r.message, std::string(zserve::View(f[i + 1]))};
      }
    }
    return w;
  }

  // Drain() and the DISCONNECT handshake; Run()'s result.
  Status Stop() {
    worker->Drain();
    Frames f;
    REQUIRE(broker.Recv(&f));
    REQUIRE(CommandOf(f) == sc::Command::kDisconnect);
    REQUIRE(broker.SendSimple(sc::Command::kDisconnect).ok());
    return Join();
  }

  Status Join() {
    thread_.join();
    return run_status_;
  }

  FakeBroker broker;
  std::unique_ptr<zserve::Worker> worker;

 private:
  std::thread thread_;
  Status run_status_;
  std::atomic<bool> returned_{false};
};

std::vector<sc::BatchItem> Items(const std::vector<uint64_t>& tokens, const std::string& method,
                                 uint32_t timeout_ms = 5000) {
  std::vector<sc::BatchItem> items;
  for (uint64_t t : tokens) items.push_back({t, method, timeout_ms});
  return items;
}

std::unique_ptr<zserve::Handler> Echo() {
  return zserve::MakeHandler([](const Request& r) -> Result { return std::string(r.payload); });
}

// A one-shot gate a handler can wait on (bounded) and the test can open.
class Gate {
 public:
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = false;
  }
  bool WaitOpen(milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// ---------------------------------------------------------------------------

TEST_CASE("READY is the first message with backend tag capacity and heartbeat interval",
          "[worker]") {
  Harness h(Echo(), [](zserve::WorkerOptions& o) {
    o.replica_tag = "tag-7";
    o.capacity = 13;
    o.heartbeat_interval = std::chrono::milliseconds(250);
  });
  sc::ReadyHeader ready = h.ExpectReady();
  CHECK(ready.backend == "b");
  CHECK(ready.replica_tag == "tag-7");
  CHECK(ready.capacity == 13);
  CHECK(ready.heartbeat_ms == 250);  // the broker judges it by this
  CHECK(h.Stop().ok());
}

TEST_CASE("a BATCH of three items is answered once per token with echoed payloads", "[worker]") {
  Harness h(Echo());
  h.ExpectReady();
  REQUIRE(h.broker.SendBatch(Items({11, 12, 13}, "__call__"), {"alpha", "beta", ""}).ok());
  auto answers = h.Collect({11, 12, 13});
  for (uint64_t t : {11, 12, 13}) {
    INFO("token " << t);
    CHECK(answers[t].code == StatusCode::kOk);
  }
  CHECK(answers[11].payload == "alpha");
  CHECK(answers[12].payload == "beta");
  CHECK(answers[13].payload.empty());
  // Nothing more: each token was answered exactly once.
  Frames extra;
  CHECK_FALSE(h.broker.Recv(&extra, milliseconds(50)));
  CHECK(h.Stop().ok());
}

TEST_CASE("a BATCH of mixed methods is split so each handler call sees one method", "[worker]") {
  std::mutex mu;
  std::vector<std::vector<std::string>> calls;  // the methods of each call
  auto handler = zserve::MakeBatchHandler([&](std::span<const Request> batch) {
    std::vector<std::string> methods;
    std::vector<Result> out;
    for (const Request& r : batch) {
      methods.emplace_back(r.method);
      out.emplace_back(std::string(r.payload) + "/" + std::string(r.method));
    }
    std::lock_guard<std::mutex> lock(mu);
    calls.push_back(std::move(methods));
    return out;
  });
  Harness h(std::move(handler));
  h.ExpectReady();
  std::vector<sc::BatchItem> items = {
      {1, "a", 5000}, {2, "b", 5000}, {3, "a", 5000},
      {4, "c", 5000}, {5, "b", 5000}, {6, "a", 5000},
  };
  REQUIRE(h.broker.SendBatch(items, {"p1", "p2", "p3", "p4", "p5", "p6"}).ok());
  auto answers = h.Collect({1, 2, 3, 4, 5, 6});
  for (const sc::BatchItem& item : items) {
    INFO("token " << item.token);
    CHECK(answers[item.token].code == StatusCode::kOk);
    CHECK(answers[item.token].payload == "p" + std::to_string(item.token) + "/" + item.method);
  }
  CHECK(h.Stop().ok());

  std::lock_guard<std::mutex> lock(mu);
  std::map<std::string, size_t> per_method;
  for (const auto& methods : calls) {
    REQUIRE_FALSE(methods.empty());
    CHECK(std::all_of(methods.begin(), methods.end(),
                      [&](const std::string& m) { return m == methods.front(); }));
    for (const std::string& m : methods) ++per_method[m];
  }
  CHECK(per_method == std::map<std::string, size_t>{{"a", 3}, {"b", 2}, {"c", 1}});
}

TEST_CASE("each handler batch of a BATCH is its own handler call", "[worker]") {
  std::mutex mu;
  std::multiset<size_t> call_sizes;
  auto handler = zserve::MakeBatchHandler([&](std::span<const Request> batch) {
    std::vector<Result> out;
    for (const Request& r : batch) out.emplace_back(std::string(r.payload));
    std::lock_guard<std::mutex> lock(mu);
    call_sizes.insert(batch.size());
    return out;
  });
  Harness h(std::move(handler));
  h.ExpectReady();
  std::vector<sc::BatchItem> items;
  std::vector<std::string> payloads;
  for (uint64_t t = 1; t <= 6; ++t) {
    items.push_back({t, "__call__", 5000});
    payloads.push_back("p" + std::to_string(t));
  }
  // Six items in one message: batches of 1, 3 and 2 (max_batch_size 3).
  REQUIRE(h.broker.SendBatch(items, payloads, {1, 3, 2}).ok());
  auto answers = h.Collect({1, 2, 3, 4, 5, 6});
  for (uint64_t t = 1; t <= 6; ++t) {
    INFO("token " << t);
    CHECK(answers[t].code == StatusCode::kOk);
    CHECK(answers[t].payload == "p" + std::to_string(t));
  }
  CHECK(h.Stop().ok());
  std::lock_guard<std::mutex> lock(mu);
  CHECK(call_sizes == std::multiset<size_t>{1, 2, 3});
}

// A handler whose calls return only once four of them are inside it together
// (in arrival order: calls 1-4, 5-8, ...), or fail after `bound`; a call
// with the payload "last" returns at once and is not counted.
std::unique_ptr<zserve::Handler> FoursHandler(std::chrono::milliseconds bound) {
  struct Groups {
    std::mutex mu;
    std::condition_variable cv;
    int arrived = 0;
  };
  auto g = std::make_shared<Groups>();
  return zserve::MakeHandler([g, bound](const Request& r) -> Result {
    if (r.payload == "last") return std::string("last");
    std::unique_lock<std::mutex> lock(g->mu);
    int group_end = (++g->arrived + 3) / 4 * 4;
    g->cv.notify_all();
    if (!g->cv.wait_for(lock, bound, [&] { return g->arrived >= group_end; })) {
      return zserve::Internal("ran without the rest of its group");
    }
    return std::string(r.payload);
  });
}

// Sends the calls in one BATCH, each its own handler batch, and checks that
// every one is answered OK.
void SendEachAloneAllOk(Harness& h, const std::vector<uint64_t>& tokens,
                        const std::vector<std::string>& payloads) {
  REQUIRE(
      h.broker
          .SendBatch(Items(tokens, "__call__"), payloads, std::vector<uint32_t>(tokens.size(), 1))
          .ok());
  auto answers = h.Collect(std::set<uint64_t>(tokens.begin(), tokens.end()));
  for (uint64_t t : tokens) {
    INFO("token " << t);
    CHECK(answers[t].code == StatusCode::kOk);
    CHECK(answers[t].message == "");
  }
}

TEST_CASE("slow handler batches run on every pool thread at once, also once timed", "[worker]") {
  // Each call returns only once all four calls of its group are inside the
  // handler together (bounded): batches run one after another would fail.
  // The second and third rounds come after the pool has timed its batches.
  Harness h(FoursHandler(std::chrono::seconds(10)),
            [](zserve::WorkerOptions& o) { o.threads = 4; });
  h.ExpectReady();
  uint64_t token = 0;
  for (size_t items : {4, 4, 8}) {
    std::vector<uint64_t> tokens;
    std::vector<std::string> payloads;
    for (size_t i = 0; i < items; ++i) {
      tokens.push_back(++token);
      payloads.push_back("p" + std::to_string(token));
    }
    SendEachAloneAllOk(h, tokens, payloads);
  }
  CHECK(h.Stop().ok());
}

TEST_CASE("five slow handler batches keep all four pool threads busy, none behind another",
          "[worker]") {
  // A "wait" call returns only once four "wait" calls are inside the handler
  // together (bounded): a thread given two of them in one share, or a thread
  // left asleep, fails it.
  Harness h(FoursHandler(std::chrono::seconds(3)), [](zserve::WorkerOptions& o) { o.threads = 4; });
  h.ExpectReady();
  uint64_t token = 0;
  // Each round has one batch more than there are threads: the first on a
  // worker that has timed nothing yet, the second once it has.
  for (int round = 0; round < 2; ++round) {
    std::vector<uint64_t> tokens;
    std::vector<std::string> payloads;
    for (size_t i = 0; i < 4; ++i) {
      tokens.push_back(++token);
      payloads.push_back("wait");
    }
    tokens.push_back(++token);
    payloads.push_back("last");
    SendEachAloneAllOk(h, tokens, payloads);
  }
  CHECK(h.Stop().ok());
}

// A handler that notes the thread of each call and the most calls at once; it
// blocks on a gate when its payload is "block", "linger" waits (bounded) for
// a third call to run at the same time, and "pause" takes 2 ms.
class ThreadNoting : public zserve::Handler {
 public:
  std::vector<Result> HandleBatch(std::span<const Request> batch) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      max_running_ = std::max(max_running_, ++running_);
      cv_.notify_all();
    }
    std::vector<Result> out;
    for (const Request& r : batch) {
      if (r.payload == "linger") {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, milliseconds(300), [this] { return running_ >= 3; });
      }
      if (r.payload == "pause") {  // 2 ms of work, as a wait that nothing ends
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, milliseconds(2), [] { return false; });
      }
      if (r.payload == "block") {
        {
          std::lock_guard<std::mutex> lock(mu_);
          blocked_.push_back(std::this_thread::get_id());
          cv_.notify_all();
        }
        if (!gate.WaitOpen(std::chrono::seconds(10))) {
          out.emplace_back(zserve::Internal("the gate never opened"));
          continue;
        }
      }
      out.emplace_back(std::string(r.payload));
    }
    std::lock_guard<std::mutex> lock(mu_);
    last_ = std::this_thread::get_id();
    --running_;
    return out;
  }
  size_t max_running() {
    std::lock_guard<std::mutex> lock(mu_);
    return max_running_;
  }
  std::thread::id last() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_;
  }
  // The thread of the n-th (from 1) "block" call, once it is blocked (bounded).
  std::optional<std::thread::id> BlockedThread(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, kWait, [&] { return blocked_.size() >= n; })) return std::nullopt;
    return blocked_[n - 1];
  }
  Gate gate;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread::id last_;
  std::vector<std::thread::id> blocked_;
  size_t running_ = 0;
  size_t max_running_ = 0;
};

// Sends one-item BATCHes, one at a time, until a call runs on the worker's
// I/O thread (bounded); returns the tokens used.
uint64_t WarmUntilCalledHere(Harness& h, ThreadNoting& handler, uint64_t token) {
  for (int i = 0; i < 200; ++i) {
    ++token;
    REQUIRE(h.broker.SendBatch(Items({token}, "__call__"), {"warm"}).ok());
    REQUIRE(h.Collect({token})[token].payload == "warm");
    if (handler.last() == h.run_thread()) return token;
  }
  FAIL("no call ran on the worker's I/O thread in 200 BATCHes");
  return token;
}

// Sends a BATCH of one-call handler batches: "block", then `others`, until
// "block" blocks the worker's I/O thread (the pool may take it while the
// average is high: then it is answered and tried again, bounded). Returns the
// token before the BATCH's: "block" is token + 1, the others follow.
uint64_t BlockIoThread(Harness& h, ThreadNoting& handler, const std::vector<std::string>& others) {
  uint64_t token = 0;
  for (size_t attempt = 1;; ++attempt) {
    REQUIRE(attempt <= 5);
    token = WarmUntilCalledHere(h, handler, token);
    std::vector<uint64_t> tokens;
    std::vector<std::string> payloads{"block"};
    payloads.insert(payloads.end(), others.begin(), others.end());
    for (size_t i = 1; i <= payloads.size(); ++i) tokens.push_back(token + i);
    REQUIRE(h.broker
                .SendBatch(Items(tokens, "__call__"), payloads,
                           std::vector<uint32_t>(payloads.size(), 1))
                .ok());
    std::optional<std::thread::id> thread = handler.BlockedThread(attempt);
    REQUIRE(thread.has_value());
    if (*thread == h.run_thread()) return token;
    handler.gate.Open();  // the pool took it: answer them all, try again
    h.Collect(std::set<uint64_t>(tokens.begin(), tokens.end()));
    handler.gate.Close();
    token = tokens.back();
  }
}

TEST_CASE("short handler calls run on the worker's own thread once timed", "[worker]") {
  auto owned = std::make_unique<ThreadNoting>();
  ThreadNoting& handler = *owned;
  Harness h(std::move(owned));
  h.ExpectReady();
  // Not timed yet: the first call goes to a pool thread.
  REQUIRE(h.broker.SendBatch(Items({1}, "__call__"), {"first"}).ok());
  CHECK(h.Collect({1})[1].payload == "first");
  CHECK(handler.last() != h.run_thread());
  WarmUntilCalledHere(h, handler, 1);
  CHECK(h.Stop().ok());
}

TEST_CASE("a call that blocks on the worker's own thread holds up neither its BATCH nor heartbeats",
          "[worker]") {
  // Heartbeats every 200 ms. A call that blocks on the I/O thread: the other
  // calls of its BATCH are answered and the worker still sends heartbeats
  // while it blocks; then it is answered too, each token once.
  // (With 3 threads the pool would do the same, so the test retries until the
  // call blocks the I/O thread: the case to test.)
  auto owned = std::make_unique<ThreadNoting>();
  ThreadNoting& handler = *owned;
  Harness h(std::move(owned), [](zserve::WorkerOptions& o) {
    o.heartbeat_interval = milliseconds(200);
    o.threads = 3;
  });
  h.ExpectReady();
  const uint64_t token = BlockIoThread(h, handler, {"a", "b"});
  const uint64_t blocked = token + 1;
  Harness::Watched w = h.CollectWithHeartbeats({token + 2, token + 3});
  CHECK(w.heartbeat);
  REQUIRE(w.answers.size() == 2);
  CHECK(w.answers[token + 2].payload == "a");
  CHECK(w.answers[token + 3].payload == "b");
  CHECK(handler.last() != h.run_thread());  // the pool ran them
  handler.gate.Open();
  auto last = h.Collect({blocked});
  CHECK(last[blocked].code == StatusCode::kOk);
  CHECK(last[blocked].payload == "block");
  CHECK(h.Stop().ok());
}

TEST_CASE("a BATCH whose sizes do not add up is dropped and the worker keeps serving", "[worker]") {
  Harness h(zserve::MakeHandler([](const Request& r) -> Result { return std::string(r.payload); }));
  h.ExpectReady();
  REQUIRE(
      h.broker.SendBatch({{1, "__call__", 5000}, {2, "__call__", 5000}}, {"a", "b"}, {1, 2}).ok());
  REQUIRE(h.broker.SendBatch({{3, "__call__", 5000}}, {"c"}).ok());
  auto answers = h.Collect({3});
  CHECK(answers[3].payload == "c");
  CHECK(h.Stop().ok());
}

TEST_CASE("an item whose time ran out is DEADLINE_EXCEEDED without a handler call", "[worker]") {
  std::atomic<int> calls{0};
  std::atomic<int> expired_seen{0};
  Harness h(zserve::MakeHandler([&](const Request& r) -> Result {
    ++calls;
    if (r.payload == "expired") ++expired_seen;
    return std::string(r.payload);
  }));
  h.ExpectReady();

  REQUIRE(h.broker.SendBatch(Items({1}, "__call__", 0), {"expired"}).ok());
  auto answers = h.Collect({1});
  CHECK(answers[1].code == StatusCode::kDeadlineExceeded);
  CHECK(answers[1].payload.empty());
  CHECK(calls.load() == 0);

  // Mixed with a live item: only the live one reaches the handler.
  std::vector<sc::BatchItem> mixed = {{2, "__call__", 0}, {3, "__call__", 5000}};
  REQUIRE(h.broker.SendBatch(mixed, {"expired", "live"}).ok());
  answers = h.Collect({2, 3});
  CHECK(answers[2].code == StatusCode::kDeadlineExceeded);
  CHECK(answers[3].code == StatusCode::kOk);
  CHECK(answers[3].payload == "live");
  CHECK(calls.load() == 1);
  CHECK(expired_seen.load() == 0);
  CHECK(h.Stop().ok());
}

TEST_CASE("a handler that throws fails its call with HANDLER_ERROR and the worker lives on",
          "[worker]") {
  Harness h(zserve::MakeBatchHandler([](std::span<const Request> batch) {
    std::vector<Result> out;
    for (const Request& r : batch) {
      if (r.payload == "throw") throw std::runtime_error("boom");
      out.emplace_back(std::string(r.payload));
    }
    return out;
  }));
  h.ExpectReady();
  REQUIRE(h.broker.SendBatch(Items({1, 2, 3}, "m"), {"x", "throw", "y"}).ok());
  auto answers = h.Collect({1, 2, 3});
  for (uint64_t t : {1, 2, 3}) {
    INFO("token " << t);
    CHECK(answers[t].code == StatusCode::kHandlerError);
    CHECK_THAT(answers[t].message, Contains("boom"));
    CHECK(answers[t].payload.empty());
  }

  REQUIRE(h.broker.SendBatch(Items({4, 5}, "m"), {"after", "throwing"}).ok());
  answers = h.Collect({4, 5});
  CHECK(answers[4].code == StatusCode::kOk);
  CHECK(answers[4].payload == "after");
  CHECK(answers[5].code == StatusCode::kOk);
  CHECK(answers[5].payload == "throwing");
  CHECK(h.Stop().ok());
}

TEST_CASE("a handler returning the wrong number of results fails those items", "[worker]") {
  Harness h(zserve::MakeBatchHandler([](std::span<const Request> batch) {
    // Too few for "short", one too many otherwise.
    std::vector<Result> out;
    if (batch.front().method == "short") {
      out.emplace_back(std::string("only one"));
    } else {
      for (size_t i = 0; i <= batch.size(); ++i) out.emplace_back(std::string("r"));
    }
    return out;
  }));
  h.ExpectReady();

  SECTION("too few") {
    REQUIRE(h.broker.SendBatch(Items({1, 2, 3}, "short"), {"a", "b", "c"}).ok());
    auto answers = h.Collect({1, 2, 3});
    for (uint64_t t : {1, 2, 3}) {
      INFO("token " << t);
      CHECK(answers[t].code == StatusCode::kHandlerError);
      CHECK_THAT(answers[t].message, Contains("1") && Contains("3") && Contains("result"));
      CHECK(answers[t].payload.empty());
    }
  }
  SECTION("too many") {
    REQUIRE(h.broker.SendBatch(Items({4, 5}, "long"), {"a", "b"}).ok());
    auto answers = h.Collect({4, 5});
    for (uint64_t t : {4, 5}) {
      INFO("token " << t);
      CHECK(answers[t].code == StatusCode::kHandlerError);
      CHECK_THAT(answers[t].message, Contains("3") && Contains("2") && Contains("result"));
      CHECK(answers[t].payload.empty());
    }
  }
  CHECK(h.Stop().ok());
}

TEST_CASE("a per-item error fails only that item", "[worker]") {
  Harness h(zserve::MakeHandler([](const Request& r) -> Result {
    if (r.payload == "bad") return zserve::HandlerError("bad");
    return std::string(r.payload);
  }));
  h.ExpectReady();
  REQUIRE(h.broker.SendBatch(Items({1, 2, 3}, "__call__"), {"one", "bad", "three"}).ok());
  auto answers = h.Collect({1, 2, 3});
  CHECK(answers[1].code == StatusCode::kOk);
  CHECK(answers[1].payload == "one");
  CHECK(answers[2].code == StatusCode::kHandlerError);
  CHECK(answers[2].message == "bad");
  CHECK(answers[2].payload.empty());
  CHECK(answers[3].code == StatusCode::kOk);
  CHECK(answers[3].payload == "three");
  CHECK(h.Stop().ok());
}

TEST_CASE("a result over max_result_bytes fails its call and the others are sent", "[worker]") {
  Harness h(zserve::MakeHandler([](const Request& r) -> Result {
              return std::string(std::stoul(std::string(r.payload)), 'x');
            }),
            [](zserve::WorkerOptions& o) { o.max_result_bytes = 1000; });
  h.ExpectReady();
  REQUIRE(h.broker.SendBatch(Items({1, 2, 3}, "__call__"), {"1000", "1001", "5"}).ok());
  auto answers = h.Collect({1, 2, 3});
  CHECK(answers[1].code == StatusCode::kOk);
  CHECK(answers[1].payload == std::string(1000, 'x'));
  CHECK(answers[2].code == StatusCode::kHandlerError);
  CHECK(answers[2].message ==
        "the handler's result of 1001 bytes is more than the worker's limit of 1000 "
        "(--max-result-bytes)");
  CHECK(answers[2].payload.empty());
  CHECK(answers[3].payload == "xxxxx");
  CHECK(h.Stop().ok());
}

TEST_CASE("a BATCH whose payload frames do not match its items is BAD_REQUEST per token",
          "[worker]") {
  std::atomic<int> calls{0};
  Harness h(zserve::MakeHandler([&](const Request& r) -> Result {
    ++calls;
    return std::string(r.payload);
  }));
  h.ExpectReady();
  SECTION("too few payload frames") {
    REQUIRE(h.broker.SendBatch(Items({1, 2, 3}, "__call__"), {"a", "b"}).ok());
    auto answers = h.Collect({1, 2, 3});
    for (uint64_t t : {1, 2, 3}) {
      INFO("token " << t);
      CHECK(answers[t].code == StatusCode::kBadRequest);
      CHECK(answers[t].payload.empty());
    }
  }
  SECTION("too many payload frames") {
    REQUIRE(h.broker.SendBatch(Items({4, 5}, "__call__"), {"a", "b", "c"}).ok());
    auto answers = h.Collect({4, 5});
    for (uint64_t t : {4, 5}) {
      INFO("token " << t);
      CHECK(answers[t].code == StatusCode::kBadRequest);
      CHECK(answers[t].payload.empty());
    }
  }
  CHECK(calls.load() == 0);
  CHECK(h.Stop().ok());
}

TEST_CASE("garbage from the broker is dropped and the worker keeps serving", "[worker]") {
  Harness h(Echo());
  h.ExpectReady();
  REQUIRE(h.broker.Send({"not msgpack"}).ok());
  REQUIRE(h.broker.Send({"not msgpack", "with a payload"}).ok());
  REQUIRE(h.broker.Send({""}).ok());
  // Well-formed headers a worker does not take, or with a broken body.
  REQUIRE(h.broker.Send({sc::EncodeReady({"b", "t", 1})}).ok());
  REQUIRE(h.broker.Send({sc::EncodeStatusRequest(9)}).ok());
  REQUIRE(h.broker.SendSimple(sc::Command::kHeartbeat).ok());
  REQUIRE(h.broker.SendBatch({}, {}).ok());  // a BATCH of no items
  REQUIRE(h.broker.SendBatch(Items({42}, "__call__"), {"still here"}).ok());
  auto answers = h.Collect({42});
  CHECK(answers[42].code == StatusCode::kOk);
  CHECK(answers[42].payload == "still here");
  CHECK(h.Stop().ok());
}

TEST_CASE("an unprompted DISCONNECT makes the worker register again", "[worker]") {
  Harness h(Echo());
  h.ExpectReady();
  REQUIRE(h.broker.SendSimple(sc::Command::kDisconnect).ok());
  sc::ReadyHeader again = h.ExpectReady();
  CHECK(again.backend == "b");
  CHECK(again.replica_tag == "replica-1");
  REQUIRE(h.broker.SendBatch(Items({1}, "__call__"), {"after"}).ok());
  auto answers = h.Collect({1});
  CHECK(answers[1].code == StatusCode::kOk);
  CHECK(answers[1].payload == "after");
  CHECK_FALSE(h.returned());
  CHECK(h.Stop().ok());
}

TEST_CASE("Run returns OK only after the broker confirms the drain", "[worker]") {
  Harness h(Echo());
  h.ExpectReady();
  REQUIRE(h.broker.SendBatch(Items({1}, "__call__"), {"x"}).ok());
  auto answers = h.Collect({1});
  CHECK(answers[1].code == StatusCode::kOk);

  h.worker->Drain();
  Frames f;
  REQUIRE(h.broker.Recv(&f));
  REQUIRE(CommandOf(f) == sc::Command::kDisconnect);
  REQUIRE(f.size() == 1);
  // The worker waits for the broker: nothing else is sent and Run goes on.
  CHECK_FALSE(h.broker.Recv(&f, milliseconds(300)));
  CHECK_FALSE(h.returned());
  REQUIRE(h.broker.SendSimple(sc::Command::kDisconnect).ok());
  Status s = h.Join();
  CHECK(s.ok());
  CHECK(s.message().empty());
}

// Two requests held by a handler until the test releases it, and a worker
// that has started to drain (its DISCONNECT received) with them in hand.
class HeldWork {
 public:
  HeldWork()
      : h(zserve::MakeHandler([this](const Request& r) -> Result {
          started_.Open();
          if (!release_.WaitOpen(kWait)) return zserve::Internal("the test never released it");
          return std::string(r.payload);
        })) {
    h.ExpectReady();
    REQUIRE(h.broker.SendBatch(Items({1, 2}, "__call__"), {"first", "second"}).ok());
    REQUIRE(started_.WaitOpen(kWait));  // the work is in the worker's hands
    h.worker->Drain();
    Frames f;
    REQUIRE(h.broker.Recv(&f));
    REQUIRE(CommandOf(f) == sc::Command::kDisconnect);
  }
  ~HeldWork() { Release(); }  // before h stops, even after a failed assertion
  HeldWork(const HeldWork&) = delete;
  HeldWork& operator=(const HeldWork&) = delete;

  void Release() { release_.Open(); }

  void ExpectBothAnswered() {
    auto answers = h.Collect({1, 2});
    CHECK(answers[1].code == StatusCode::kOk);
    CHECK(answers[1].payload == "first");
    CHECK(answers[2].code == StatusCode::kOk);
    CHECK(answers[2].payload == "second");
  }

 private:
  Gate started_;
  Gate release_;

 public:
  Harness h;
};

TEST_CASE("a draining worker answers its work before the broker confirms", "[worker]") {
  HeldWork w;
  w.Release();
  w.ExpectBothAnswered();
  CHECK_FALSE(w.h.returned());
  REQUIRE(w.h.broker.SendSimple(sc::Command::kDisconnect).ok());
  CHECK(w.h.Join().ok());
}

TEST_CASE("a draining worker still answers its work after the broker confirms", "[worker]") {
  // PROTOCOL.md 4.2: after the broker's DISCONNECT the worker exits once it
  // has sent every result.
  HeldWork w;
  REQUIRE(w.h.broker.SendSimple(sc::Command::kDisconnect).ok());
  // Time for the confirmation to reach the worker while the handler still
  // holds both requests: the worker sends nothing and keeps running.
  Frames early;
  CHECK_FALSE(w.h.broker.Recv(&early, milliseconds(300)));
  CHECK_FALSE(w.h.returned());
  w.Release();
  w.ExpectBothAnswered();
  CHECK(w.h.Join().ok());
}

TEST_CASE("Create refuses a bad backend name and a null handler", "[worker]") {
  zserve::WorkerOptions o = Options("tcp://127.0.0.1:1");
  SECTION("bad backend name") {
    o.backend = "bad name!";
    auto w = zserve::Worker::Create(o, Echo());
    REQUIRE_FALSE(w.ok());
    CHECK(w.status().code() == StatusCode::kBadRequest);
  }
  SECTION("empty backend name") {
    o.backend = "";
    auto w = zserve::Worker::Create(o, Echo());
    REQUIRE_FALSE(w.ok());
    CHECK(w.status().code() == StatusCode::kBadRequest);
  }
  SECTION("a broker address ZeroMQ cannot read") {
    o.broker_address = "127.0.0.1:5555";
    auto w = zserve::Worker::Create(o, Echo());
    REQUIRE_FALSE(w.ok());
    CHECK(w.status().code() == StatusCode::kBadRequest);
    CHECK_THAT(w.status().message(), Contains("'127.0.0.1:5555'"));
  }
  SECTION("no handler threads") {
    o.threads = 0;
    auto w = zserve::Worker::Create(o, Echo());
    REQUIRE_FALSE(w.ok());
    CHECK(w.status().code() == StatusCode::kBadRequest);
  }
  SECTION("more handler threads than a replica starts") {
    o.threads = 100'000;
    auto w = zserve::Worker::Create(o, Echo());
    REQUIRE_FALSE(w.ok());
    CHECK(w.status().code() == StatusCode::kBadRequest);
    CHECK_THAT(w.status().message(), Contains("threads must be 1..1024"));
  }
  SECTION("a broker port past 65535") {
    o.broker_address = "tcp://127.0.0.1:99999";
    auto w = zserve::Worker::Create(o, Echo());
    REQUIRE_FALSE(w.ok());
    CHECK(w.status().code() == StatusCode::kBadRequest);
    CHECK_THAT(w.status().message(), Contains("port 99999 is past 65535"));
  }
  SECTION("a heartbeat interval out of range") {
    o.heartbeat_interval = std::chrono::milliseconds(0);
    auto w = zserve::Worker::Create(o, Echo());
    REQUIRE_FALSE(w.ok());
    CHECK(w.status().code() == StatusCode::kBadRequest);
    CHECK_THAT(w.status().message(), Contains("heartbeat_interval must be 10..60000 ms, got 0"));
  }
  SECTION("null handler") {
    auto w = zserve::Worker::Create(o, nullptr);
    REQUIRE_FALSE(w.ok());
    CHECK(w.status().code() == StatusCode::kBadRequest);
  }
}

// ---------------------------------------------------------------------------
// Built-in handlers (worker/builtin_handlers.h), called directly.

std::vector<Result> CallBuiltin(const std::string& name, const std::vector<std::string>& payloads) {
  auto handler = zserve::worker::MakeBuiltinHandler(name, {});
  REQUIRE(handler.ok());
  std::vector<Request> batch;
  for (const std::string& p : payloads) {
    batch.push_back({"__call__", p, Clock::now() + std::chrono::seconds(5)});
  }
  return (*handler)->HandleBatch(batch);
}

TEST_CASE("builtin echo returns the payload", "[worker]") {
  auto out = CallBuiltin("echo", {"hello", ""});
  REQUIRE(out.size() == 2);
  REQUIRE(out[0].ok());
  CHECK(*out[0] == "hello");
  REQUIRE(out[1].ok());
  CHECK(out[1]->empty());
}

TEST_CASE("builtin sleep waits the given milliseconds and returns the payload", "[worker]") {
  const auto start = Clock::now();
  auto out = CallBuiltin("sleep", {"5"});
  const auto elapsed = Clock::now() - start;
  REQUIRE(out.size() == 1);
  REQUIRE(out[0].ok());
  CHECK(*out[0] == "5");
  CHECK(elapsed >= milliseconds(5));
  CHECK(elapsed < milliseconds(2000));
}

TEST_CASE("builtin batch returns every payload after one call's device time", "[worker]") {
  std::vector<std::string> payloads;
  for (int i = 0; i < 32; ++i) payloads.push_back("item " + std::to_string(i));
  const auto start = Clock::now();
  auto out = CallBuiltin("batch", payloads);
  const auto elapsed = Clock::now() - start;
  REQUIRE(out.size() == payloads.size());
  for (size_t i = 0; i < out.size(); ++i) {
    REQUIRE(out[i].ok());
    CHECK(*out[i] == payloads[i]);
  }
  // One wait for the whole batch: 1 ms plus 10 µs per request.
  CHECK(elapsed >= std::chrono::microseconds(zserve::worker::kBatchCallUs +
                                             32 * zserve::worker::kBatchItemUs));
}

TEST_CASE("builtin fail gives an error for error: and throws for throw:", "[worker]") {
  auto handler = zserve::worker::MakeBuiltinHandler("fail", {});
  REQUIRE(handler.ok());
  const auto deadline = Clock::now() + std::chrono::seconds(5);

  std::vector<Request> errors = {{"__call__", "error:x", deadline}, {"__call__", "ok", deadline}};
  auto out = (*handler)->HandleBatch(errors);
  REQUIRE(out.size() == 2);
  REQUIRE_FALSE(out[0].ok());
  CHECK(out[0].status().code() == StatusCode::kHandlerError);
  CHECK(out[0].status().message() == "x");
  REQUIRE(out[1].ok());
  CHECK(*out[1] == "ok");

  std::vector<Request> throws = {{"__call__", "throw:y", deadline}};
  CHECK_THROWS_WITH((*handler)->HandleBatch(throws), "y");
}

TEST_CASE("an unknown builtin is BAD_REQUEST listing the known names", "[worker]") {
  auto handler = zserve::worker::MakeBuiltinHandler("nope", {});
  REQUIRE_FALSE(handler.ok());
  CHECK(handler.status().code() == StatusCode::kBadRequest);
  CHECK_THAT(handler.status().message(),
             Contains("nope") && Contains("echo") && Contains("sleep") && Contains("fail"));
}

}  // namespace

TEST_CASE("the worker's own thread counts as one of its threads", "[worker]") {
  // 2 threads: while "block" holds the I/O thread, the pool runs one call at a
  // time, so the two "linger" calls never meet a third call.
  auto owned = std::make_unique<ThreadNoting>();
  ThreadNoting& handler = *owned;
  Harness h(std::move(owned), [](zserve::WorkerOptions& o) { o.threads = 2; });
  h.ExpectReady();
  const uint64_t token = BlockIoThread(h, handler, {"linger", "linger"});
  auto lingered = h.Collect({token + 2, token + 3});
  CHECK(lingered[token + 2].payload == "linger");
  CHECK(lingered[token + 3].payload == "linger");
  handler.gate.Open();
  CHECK(h.Collect({token + 1})[token + 1].payload == "block");
  CHECK(handler.max_running() == 2);
  CHECK(h.Stop().ok());
}

TEST_CASE("many calls that turned slow on the worker's own thread still let heartbeats out",
          "[worker]") {
  // 1 thread (the pool cannot help) and 100 ms heartbeats: after short calls,
  // a BATCH of 200 calls of 2 ms each runs on the I/O thread for about
  // 400 ms, no call lasting a keeper tick (5 ms); the keeper heartbeats
  // meanwhile. (A slow warm-up call can send the BATCH to the pool instead:
  // then the test tries again, bounded.)
  auto owned = std::make_unique<ThreadNoting>();
  ThreadNoting& handler = *owned;
  Harness h(std::move(owned), [](zserve::WorkerOptions& o) {
    o.heartbeat_interval = milliseconds(100);
    o.threads = 1;
  });
  h.ExpectReady();
  uint64_t token = 0;
  for (size_t attempt = 1;; ++attempt) {
    REQUIRE(attempt <= 5);
    token = WarmUntilCalledHere(h, handler, token);
    std::vector<uint64_t> tokens;
    for (uint64_t t = token + 1; t <= token + 200; ++t) tokens.push_back(t);
    token += 200;
    REQUIRE(h.broker
                .SendBatch(Items(tokens, "__call__"), std::vector<std::string>(200, "pause"),
                           std::vector<uint32_t>(200, 1))
                .ok());
    Harness::Watched w = h.CollectWithHeartbeats({tokens.begin(), tokens.end()});
    REQUIRE(w.answers.size() == tokens.size());
    if (handler.last() != h.run_thread()) continue;  // the pool ran them
    CHECK(w.heartbeat_first);                        // while the BATCH ran, before its results
    break;
  }
  CHECK(h.Stop().ok());
}
