// A worker binary of your own: serves SentimentHandler as a replica of one
// backend. Start as many as you want replicas, on any host that reaches the
// broker; SIGTERM drains (finishes what it holds, then exits 0).
//
//   sentiment_worker --model model.txt --backend sentiment \
//       [--broker tcp://127.0.0.1:5556] \
//       [--controller tcp://127.0.0.1:5557 --controller-pub tcp://127.0.0.1:5558]
//
// With the controller's addresses the handler follows the backend's
// user_config (zserve ctl update-backend sentiment --user-config '{"threshold":0.5}').
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <string>

#include "sentiment_handler.h"
#include "zserve/worker.h"

namespace {

zserve::Worker* g_worker = nullptr;  // for the signal handler; Drain() is signal-safe

void OnSignal(int) {
  if (g_worker != nullptr) g_worker->Drain();
}

int Usage(const char* why) {
  std::fprintf(stderr,
               "sentiment_worker: %s\nusage: sentiment_worker --model FILE --backend NAME "
               "[--broker ADDR] [--controller ADDR --controller-pub ADDR] [--replica-tag TAG]\n",
               why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  zserve::WorkerOptions options;
  std::string model_path;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc) return Usage(("missing value for " + flag).c_str());
    std::string value = argv[++i];
    if (flag == "--model") {
      model_path = value;
    } else if (flag == "--backend") {
      options.backend = value;
    } else if (flag == "--broker") {
      options.broker_address = value;
    } else if (flag == "--controller") {
      options.controller_address = value;
    } else if (flag == "--controller-pub") {
      options.controller_updates_address = value;
    } else if (flag == "--replica-tag") {
      options.replica_tag = value;
    } else {
      return Usage(("unknown flag " + flag).c_str());
    }
  }
  if (model_path.empty() || options.backend.empty()) return Usage("--model and --backend needed");

  std::unique_ptr<SentimentHandler> handler;
  try {
    handler = std::make_unique<SentimentHandler>(model_path);  // loads the model
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sentiment_worker: %s\n", e.what());
    return 1;
  }
  auto worker = zserve::Worker::Create(options, std::move(handler));
  if (!worker.ok()) {
    std::fprintf(stderr, "sentiment_worker: %s\n", worker.status().ToString().c_str());
    return 1;
  }
  g_worker = worker->get();
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  zserve::Status s = (*worker)->Run();
  g_worker = nullptr;
  if (!s.ok()) {
    std::fprintf(stderr, "sentiment_worker: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
