#include "common/metrics_server.h"

#include <CivetServer.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/zmq_util.h"

namespace zserve {

namespace {

void Send(mg_connection* conn, int code, const char* content_type, const std::string& body,
          bool with_body, const char* extra_header = "") {
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
            "Connection: close\r\n\r\n",
            code, mg_get_response_code_text(conn, code), content_type, body.size(), extra_header);
  if (with_body) mg_write(conn, body.data(), body.size());
}

// A path that answers GET, and HEAD with the same header and no body; any
// other method is 405 naming the two.
class ReadOnlyHandler : public CivetHandler {
 public:
  bool handleGet(CivetServer*, mg_connection* conn) override { return Serve(conn, true); }
  bool handleHead(CivetServer*, mg_connection* conn) override { return Serve(conn, false); }
  bool handlePost(CivetServer*, mg_connection* conn) override { return Refuse(conn); }
  bool handlePut(CivetServer*, mg_connection* conn) override { return Refuse(conn); }
  bool handleDelete(CivetServer*, mg_connection* conn) override { return Refuse(conn); }
  bool handleOptions(CivetServer*, mg_connection* conn) override { return Refuse(conn); }
  bool handlePatch(CivetServer*, mg_connection* conn) override { return Refuse(conn); }

 protected:
  struct Page {
    int code = 200;
    const char* content_type = "text/plain; charset=utf-8";
    std::string body;
  };
  virtual Page Answer() = 0;

 private:
  bool Serve(mg_connection* conn, bool with_body) {
    Page p = Answer();
    Send(conn, p.code, p.content_type, p.body, with_body);
    return true;
  }
  static bool Refuse(mg_connection* conn) {
    Send(conn, 405, "text/plain; charset=utf-8", "only GET and HEAD are served here\n", true,
         "Allow: GET, HEAD\r\n");
    return true;
  }
};

class MetricsHandler : public ReadOnlyHandler {
 public:
  explicit MetricsHandler(prometheus::Registry* registry) : registry_(registry) {}

 private:
  Page Answer() override {
    return {200, "text/plain; version=0.0.4; charset=utf-8",
            prometheus::TextSerializer().Serialize(registry_->Collect())};
  }
  prometheus::Registry* registry_;
};

class TextHandler : public ReadOnlyHandler {
 public:
  explicit TextHandler(std::function<HttpAnswer()> answer) : answer_(std::move(answer)) {}

 private:
  Page Answer() override {
    HttpAnswer a = answer_();
    return {a.code, "text/plain; charset=utf-8", std::move(a.body)};
  }
  std::function<HttpAnswer()> answer_;
};

}  // namespace

const std::vector<double>& LatencyBuckets() {
  static const std::vector<double> kBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                               0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                               1,      2.5,     5,      10};
  return kBuckets;
}

void BufferedHistogram::Flush() {
  if (!std::exchange(pending_, false)) return;
  target_->ObserveMultiple(counts_, sum_);
  std::fill(counts_.begin(), counts_.end(), 0);
  sum_ = 0;
}

StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Create(
    const MetricsServerOptions& options) {
  if (options.registry == nullptr) return Internal("MetricsServerOptions needs a registry");
  std::string host;
  int port = 0;
  if (Status bad = SplitHostPort(options.bind, "metrics address", &host, &port); !bad.ok()) {
    return bad;
  }
  std::unique_ptr<MetricsServer> s(new MetricsServer());
  s->host_ = host;
  s->handlers_.push_back(std::make_unique<MetricsHandler>(options.registry));
  for (const auto& [path, answer] : options.handlers) {
    s->handlers_.push_back(std::make_unique<TextHandler>(answer));
  }
  try {
    // A connection holds a thread while open: enough threads that a few
    // idle connections cannot starve a probe, and a connection that sends
    // nothing for 5 s is closed (civetweb's default is 30 s).
    s->server_ = std::make_unique<CivetServer>(std::vector<std::string>{
        "listening_ports", options.bind, "num_threads", "8", "request_timeout_ms", "5000"});
  } catch (const CivetException& e) {
    std::string why = ListenProblem(s->host_, port);
    return Unavailable("cannot serve metrics on " + options.bind + ": " +
                       (why.empty() ? e.what() : why));
  }
  // Handlers are matched by exact path ("$" ends the pattern).
  s->server_->addHandler("/metrics$", s->handlers_[0].get());
  size_t i = 1;
  for (const auto& [path, answer] : options.handlers) {
    s->server_->addHandler(path + "$", s->handlers_[i++].get());
  }
  std::vector<int> ports = s->server_->getListeningPorts();
  if (ports.empty() || ports[0] <= 0) {
    return Unavailable("metrics server on " + options.bind + " has no listening port");
  }
  s->port_ = ports[0];
  return s;
}

MetricsServer::~MetricsServer() {
  // Stops serving before the handlers go.
  if (server_) StopWakingListener(host_, port_, [this] { server_->close(); });
}

std::string MetricsServer::address() const { return host_ + ":" + std::to_string(port_); }

}  // namespace zserve
