// nats_responder: the NATS peer of a zserve echo worker — a member of a queue
// group on a subject that publishes every request's payload back to its reply
// subject. Run N of them for N replicas. Runs until SIGINT/SIGTERM; prints
// "ready" once subscribed and flushed to the server.
#include <nats/nats.h>
#include <poll.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>

#include "common/signals.h"

namespace {

void OnRequest(natsConnection* nc, natsSubscription*, natsMsg* msg, void*) {
  const char* reply = natsMsg_GetReply(msg);
  if (reply != nullptr) {
    (void)natsConnection_Publish(nc, reply, natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
  }
  natsMsg_Destroy(msg);
}

int Fail(const char* what, natsStatus s) {
  std::fprintf(stderr, "nats_responder: %s: %s\n", what, natsStatus_GetText(s));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"NATS queue-group echo responder for zserve's benchmarks"};
  std::string url, subject = "echo", queue = "echo";
  bool send_asap = false;
  app.add_option("--url", url, "nats://127.0.0.1:PORT")->required();
  app.add_option("--subject", subject, "Subject")->capture_default_str();
  app.add_option("--queue", queue, "Queue group")->capture_default_str();
  app.add_flag("--send-asap", send_asap, "Write each reply at once instead of buffering");
  CLI11_PARSE(app, argc, argv);

  zserve::SignalPipe& signals = zserve::SignalPipe::Install();
  natsOptions* opts = nullptr;
  natsConnection* nc = nullptr;
  natsSubscription* sub = nullptr;
  natsStatus s = natsOptions_Create(&opts);
  if (s == NATS_OK) s = natsOptions_SetURL(opts, url.c_str());
  if (s == NATS_OK) s = natsOptions_SetSendAsap(opts, send_asap);
  if (s == NATS_OK) s = natsConnection_Connect(&nc, opts);
  if (s != NATS_OK) return Fail("connect", s);
  s = natsConnection_QueueSubscribe(&sub, nc, subject.c_str(), queue.c_str(), OnRequest, nullptr);
  if (s == NATS_OK) s = natsSubscription_SetPendingLimits(sub, -1, -1);
  if (s == NATS_OK) s = natsConnection_Flush(nc);
  if (s != NATS_OK) return Fail("subscribe", s);
  std::printf("ready\n");
  std::fflush(stdout);

  bool stop = false;
  while (!stop) {
    pollfd p{signals.fd(), POLLIN, 0};
    poll(&p, 1, -1);
    for (int sig : signals.Take()) stop = stop || sig == SIGINT || sig == SIGTERM;
  }
  natsSubscription_Destroy(sub);
  natsConnection_Destroy(nc);
  natsOptions_Destroy(opts);
  nats_Close();
  return 0;
}
