// nats_bench_client: the load generator against NATS request-reply. Requests
// are published with a reply subject under one wildcard inbox subscription
// (what the C client's own request API does), so many are in flight on one
// connection. The send setting is the client's fastest for each mode:
// send-as-soon-as-possible for one request in flight (latency), buffered
// writes flushed by the library's flusher thread for several in flight and
// for the open loop (throughput); --send-mode forces one.
#include <nats/nats.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/load_generator.h"

namespace zserve::bench {
namespace {

class NatsTarget : public LoadTarget {
 public:
  NatsTarget(std::string url, std::string subject, std::string send_mode)
      : url_(std::move(url)), subject_(std::move(subject)), send_mode_(std::move(send_mode)) {}

  ~NatsTarget() override { Disconnect(); }

  Status Prepare(const RunSpec& spec) override {
    bool asap = SendAsap(spec);
    if (nc_ != nullptr && asap == asap_) return Status::Ok();
    Disconnect();
    asap_ = asap;
    natsOptions* opts = nullptr;
    natsStatus s = natsOptions_Create(&opts);
    if (s == NATS_OK) s = natsOptions_SetURL(opts, url_.c_str());
    if (s == NATS_OK) s = natsOptions_SetSendAsap(opts, asap_);
    if (s == NATS_OK) s = natsConnection_Connect(&nc_, opts);
    natsOptions_Destroy(opts);
    natsInbox* inbox = nullptr;
    if (s == NATS_OK) s = natsInbox_Create(&inbox);
    if (s == NATS_OK) {
      prefix_ = std::string(inbox) + ".";
      natsInbox_Destroy(inbox);
      s = natsConnection_SubscribeSync(&sub_, nc_, (prefix_ + "*").c_str());
    }
    if (s == NATS_OK) s = natsSubscription_SetPendingLimits(sub_, -1, -1);
    if (s == NATS_OK) s = natsConnection_Flush(nc_);
    if (s != NATS_OK) {
      return Unavailable("cannot reach NATS at " + url_ + ": " + natsStatus_GetText(s));
    }
    return Status::Ok();
  }

  std::string Settings(const RunSpec& spec) const override {
    return SendAsap(spec) ? "send_asap" : "buffered";
  }

  void Send(uint64_t tag, std::string_view payload) override {
    reply_.resize(prefix_.size());
    reply_.replace(0, prefix_.size(), prefix_);
    reply_ += std::to_string(tag);
    natsStatus s = natsConnection_PublishRequest(nc_, subject_.c_str(), reply_.c_str(),
                                                 payload.data(), static_cast<int>(payload.size()));
    if (s != NATS_OK) failed_.push_back({tag, natsStatus_GetText(s)});
  }

  void Poll(std::chrono::milliseconds timeout, CompletionSink& sink) override {
    for (auto& [tag, error] : failed_) sink.Done(tag, error);
    failed_.clear();
    int64_t wait = timeout.count();
    natsMsg* msg = nullptr;
    // The first message may be waited for; the rest are taken while pending.
    while (natsSubscription_NextMsg(&msg, sub_, wait) == NATS_OK) {
      wait = 0;
      const char* subject = natsMsg_GetSubject(msg);
      uint64_t tag = std::strtoull(subject + prefix_.size(), nullptr, 10);
      sink.Done(tag, {});
      natsMsg_Destroy(msg);
    }
  }

 private:
  bool SendAsap(const RunSpec& spec) const {
    if (send_mode_ == "asap") return true;
    if (send_mode_ == "buffered") return false;
    return !spec.open_loop && spec.inflight <= 1;
  }

  void Disconnect() {
    if (sub_ != nullptr) natsSubscription_Destroy(sub_);
    if (nc_ != nullptr) natsConnection_Destroy(nc_);
    sub_ = nullptr;
    nc_ = nullptr;
  }

  std::string url_, subject_, send_mode_;
  bool asap_ = false;
  natsConnection* nc_ = nullptr;
  natsSubscription* sub_ = nullptr;
  std::string prefix_, reply_;
  std::vector<std::pair<uint64_t, std::string>> failed_;
};

}  // namespace
}  // namespace zserve::bench

int main(int argc, char** argv) {
  using namespace zserve::bench;
  CLI::App app{"NATS request-reply load client for zserve's benchmarks"};
  std::string url, subject = "echo", send_mode = "auto";
  LoadOptions load;
  app.add_option("--url", url, "nats://127.0.0.1:PORT")->required();
  app.add_option("--subject", subject, "Request subject")->capture_default_str();
  app.add_option("--send-mode", send_mode,
                 "auto (asap for 1 in flight, else buffered), asap, buffered")
      ->check(CLI::IsMember({"auto", "asap", "buffered"}))
      ->capture_default_str();
  AddLoadFlags(app, load);
  CLI11_PARSE(app, argc, argv);
  int rc;
  {
    NatsTarget target(url, subject, send_mode);
    LoadGenerator generator("nats", target, load);
    rc = generator.Run();
  }
  nats_Close();
  return rc;
}
