#include "gateway/gateway.h"

#include <civetweb.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <variant>

#include "common/zmq_util.h"

namespace zserve::gateway {
namespace {

// How long past a call's deadline a request thread waits for its result. The
// client answers DEADLINE_EXCEEDED itself at the deadline plus its grace; this
// only bounds the wait should that ever fail.
constexpr std::chrono::milliseconds kClientGrace{250};
constexpr std::chrono::milliseconds kWaitMargin{1000};

// The most of a body's Content-Length reserved before its bytes arrive.
constexpr size_t kReserveBytes = 1 << 20;

// civetweb parses the header lines in place (the name's and each line's
// ends overwritten with NULs, and the last byte of the header) and stops
// without a word at the 64th line or at a folded one (obs-fold), dropping
// the rest of the header, Content-Length included: the body would then be
// read as the next request. It also drops spaces between a name and its
// colon, which RFC 9112 says to refuse. The request's bytes still tell. The
// request line's end, up to the first name, says how lines end here: 2 bytes
// (CRLF) or 1 (a bare LF, which RFC 9112 lets a server take). After the last
// line parsed comes the empty line that ends the header: "\0\0\r" (its CR,
// then the NUL'd LF) or "\0\0"; anything else is a line civetweb did not
// take. Nothing past the header's own last byte is read, except the one
// byte after a CRLF header whose empty line is a bare LF ("\r\n\n"),
// which is then refused whatever that byte is, unless it is a CR.
std::optional<HttpResponse> CheckHeaderLines(const mg_request_info* info) {
  for (int i = 0; i < info->num_headers; ++i) {
    const char* name = info->http_headers[i].name;
    const char* value = info->http_headers[i].value;
    const size_t len = std::strlen(name);
    if (value > name + len + 1 && name[len + 1] == '\0') {  // "Name :" left two NULs
      return ErrorResponse(400, "BAD_REQUEST",
                           "a space before the colon of header '" + std::string(name) + "'");
    }
  }
  if (info->num_headers == 0) return std::nullopt;
  const HttpResponse unreadable = ErrorResponse(
      400, "BAD_REQUEST",
      "a header line the gateway cannot read (a folded line, or a line without a colon)");
  const char* version_end = info->http_version + std::strlen(info->http_version);
  const std::ptrdiff_t line_end = info->http_headers[0].name - version_end;
  if (line_end != 1 && line_end != 2) return unreadable;  // a first line folded
  const char* value = info->http_headers[info->num_headers - 1].value;
  const char* e = value + std::strlen(value);
  const bool ended = e[0] == '\0' && e[1] == '\0' && (line_end == 1 || e[2] == '\r');
  if (ended) return std::nullopt;
  if (info->num_headers == MG_MAX_HEADERS) {
    return ErrorResponse(431, "BAD_REQUEST",
                         "more than " + std::to_string(MG_MAX_HEADERS) + " header lines");
  }
  return unreadable;
}

// Makes civetweb close the connection once this request is answered: it
// reads the request's Connection header for that, and the request's header
// array is the connection's own (mg_get_request_info hands it out const).
void CloseAfterResponse(mg_connection* conn) {
  auto* info = const_cast<mg_request_info*>(mg_get_request_info(conn));
  for (int i = 0; i < info->num_headers; ++i) {
    if (mg_strcasecmp(info->http_headers[i].name, "Connection") == 0) {
      info->http_headers[i].value = "close";
      return;
    }
  }
  const int slot = std::min(info->num_headers, MG_MAX_HEADERS - 1);
  info->http_headers[slot] = {"Connection", "close"};
  info->num_headers = slot + 1;
}

// A response, written whole by the gateway: status line, headers, body.
// Not through civetweb's header calls, which refuse to start once anything
// was written (a 100 Continue), and whose Date comes from gmtime()'s one
// static buffer, raced on by request threads (ThreadSanitizer showed it).
// Whether civetweb keeps the connection open after this request: it goes by
// the request's Connection header, else by its version (keep-alive is on).
bool KeptAlive(mg_connection* conn) {
  const char* connection = mg_get_header(conn, "Connection");
  return KeepsAlive(
      connection != nullptr ? std::optional<std::string_view>(connection) : std::nullopt,
      mg_get_request_info(conn)->http_version);
}

void Send(mg_connection* conn, const HttpResponse& r, bool head) {
  char date[64];
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " +
                    mg_get_response_code_text(conn, r.status) +
                    "\r\nContent-Type: " + r.content_type +
                    "\r\nContent-Length: " + std::to_string(r.body.size()) + "\r\nDate: " + date +
                    "\r\nConnection: " + (KeptAlive(conn) ? "keep-alive" : "close") + "\r\n";
  for (const auto& [name, value] : r.headers) out += name + ": " + value + "\r\n";
  out += "\r\n";
  if (!head) out += r.body;
  mg_write(conn, out.data(), out.size());
}

// The request body, or the error response when it is longer than `max`
// (413), or ends before its Content-Length or breaks its chunked framing (400:
// a body cut short is never passed on as if it were whole).
std::variant<std::string, HttpResponse> ReadBody(mg_connection* conn, int64_t content_length,
                                                 size_t max) {
  std::string body;
  // Grown as the bytes come: the client's Content-Length is a claim.
  if (content_length > 0)
    body.reserve(std::min<size_t>(static_cast<size_t>(content_length), kReserveBytes));
  char buf[64 * 1024];
  while (true) {
    int n = mg_read(conn, buf, sizeof buf);
    if (n < 0) {
      return ErrorResponse(400, "BAD_REQUEST",
                           "the request body could not be read (broken chunked encoding or "
                           "connection)");
    }
    if (n == 0) break;
    if (body.size() + static_cast<size_t>(n) > max) {
      return ErrorResponse(
          413, "BAD_REQUEST",
          "the body is more than the gateway's limit of " + std::to_string(max) + " bytes");
    }
    body.append(buf, static_cast<size_t>(n));
  }
  if (content_length >= 0 && body.size() != static_cast<size_t>(content_length)) {
    return ErrorResponse(400, "BAD_REQUEST",
                         "the request body ended after " + std::to_string(body.size()) +
                             " of its Content-Length " + std::to_string(content_length) + " bytes");
  }
  return body;
}

}  // namespace

// One request in flight: what to call, and the slot its result lands in.
struct Gateway::Call {
  CallPlan plan;
  std::string payload;
  std::mutex mu;
  std::condition_variable done;
  std::optional<StatusOr<std::string>> result;  // guarded by mu
};

Gateway::Gateway(const GatewayOptions& options) : options_(options), log_(options.logger) {}

StatusOr<std::unique_ptr<Gateway>> Gateway::Create(const GatewayOptions& options) {
  if (options.context == nullptr || !options.logger) {
    return Internal("GatewayOptions needs a context and a logger");
  }
  if (options.threads < 1 || options.threads > 10'000) {
    return BadRequest("the gateway's threads must be 1..10000");
  }
  std::string host;
  int port = 0;
  if (Status bad = SplitHostPort(options.listen, "listen address", &host, &port); !bad.ok()) {
    return bad;
  }
  if (options.max_body_bytes < 1 || options.max_body_bytes > kMaxBodyLimit) {
    return BadRequest("the gateway's max_body_bytes must be 1.." + std::to_string(kMaxBodyLimit) +
                      ", got " + std::to_string(options.max_body_bytes));
  }
  std::unique_ptr<Gateway> g(new Gateway(options));
  g->host_ = host;
  schemas::ConfigSubscriberOptions sopts;
  sopts.snapshot_address = options.controller_address;
  sopts.updates_address = options.controller_updates_address;
  sopts.context = options.context;
  sopts.logger = options.logger;
  sopts.curve_key = options.curve_key;
  sopts.curve_server_key = options.curve_controller_key;
  StatusOr<std::unique_ptr<schemas::ConfigSubscriber>> config =
      schemas::ConfigSubscriber::Create(sopts);
  if (!config.ok()) return config.status();
  g->config_ = std::move(config).value();
  if (Status s = g->StartIo(); !s.ok()) return s;
  if (Status s = g->StartHttp(); !s.ok()) return s;
  return g;
}

Gateway::~Gateway() {
  {
    // Each active request is bounded by its call's deadline (CallAndWait).
    std::unique_lock<std::mutex> lock(active_mu_);
    if (server_ != nullptr) log_->info("http gateway stopping with {} requests held", active_);
    stopping_ = true;
    active_cv_.wait(lock, [this] { return active_ == 0; });
  }
  // Waits for the request threads.
  if (server_ != nullptr) StopWakingListener(host_, port_, [this] { mg_stop(server_); });
  if (io_thread_.joinable()) {
    stop_io_.store(true);
    uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
    io_thread_.join();
  }
  if (wake_fd_ >= 0) close(wake_fd_);
}

std::string Gateway::address() const { return host_ + ":" + std::to_string(port_); }

Status Gateway::StartIo() {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return Internal(std::string("eventfd: ") + std::strerror(errno));
  // The client is created on the I/O thread, which owns its sockets for life.
  std::promise<Status> started;
  std::future<Status> result = started.get_future();
  io_thread_ = std::thread([this, &started] {
    ClientOptions copts;
    copts.broker_address = options_.broker_address;
    copts.grace = kClientGrace;
    copts.curve_key = options_.curve_key;
    copts.curve_server_key = options_.curve_broker_key;
    copts.max_payload_bytes = options_.max_body_bytes;
    StatusOr<std::unique_ptr<Client>> client = Client::Create(copts);
    if (!client.ok()) {
      started.set_value(client.status());
      return;
    }
    std::unique_ptr<Client> owned = std::move(client).value();
    started.set_value(Status::Ok());
    std::vector<std::shared_ptr<Call>> batch;
    while (!stop_io_.load()) {
      owned->Poll(std::chrono::milliseconds(1000), wake_fd_);
      uint64_t count;
      (void)!read(wake_fd_, &count, sizeof count);  // EAGAIN when not woken
      {
        std::lock_guard<std::mutex> lock(queue_mu_);
        batch.swap(queue_);
      }
      for (std::shared_ptr<Call>& call : batch) {
        owned->CallAsync(call->plan.endpoint, call->payload, call->plan.options,
                         [call](StatusOr<std::string> r) {
                           std::lock_guard<std::mutex> lock(call->mu);
                           call->result = std::move(r);
                           call->done.notify_one();
                         });
      }
      batch.clear();
    }
  });
  Status s = result.get();
  if (!s.ok()) io_thread_.join();
  return s;
}

Status Gateway::StartHttp() {
  std::string threads = std::to_string(options_.threads);
  std::string keep_alive = std::to_string(options_.keep_alive_timeout.count());
  const char* config[] = {"listening_ports",
                          options_.listen.c_str(),
                          "num_threads",
                          threads.c_str(),
                          "enable_keep_alive",
                          "yes",
                          "keep_alive_timeout_ms",
                          keep_alive.c_str(),
                          "tcp_nodelay",
                          "1",
                          "decode_url",
                          "no",
                          "request_timeout_ms",
                          keep_alive.c_str(),  // a new connection that sends nothing, too
                          nullptr};
  mg_callbacks callbacks{};
  mg_init_data init{&callbacks, this, config};
  char error_text[256] = "";
  mg_error_data error{nullptr, error_text, sizeof error_text};
  server_ = mg_start2(&init, &error);
  if (server_ == nullptr) {
    std::string host;
    int wanted = 0;
    (void)SplitHostPort(options_.listen, "listen address", &host, &wanted);  // checked in Create
    std::string why = ListenProblem(host, wanted);
    return Unavailable("cannot serve HTTP on " + options_.listen + ": " +
                       (!why.empty()    ? why
                        : error_text[0] ? error_text
                                        : "civetweb failed to start"));
  }
  // Every path comes to Handle(): the gateway's own and the routes, which
  // change with the configuration without touching civetweb.
  mg_set_request_handler(server_, "**", &Gateway::HandleRequest, this);
  mg_server_port ports[4] = {};
  int n = mg_get_server_ports(server_, 4, ports);
  if (n < 1 || ports[0].port <= 0) {
    return Unavailable("HTTP server on " + options_.listen + " has no listening port");
  }
  port_ = ports[0].port;
  return Status::Ok();
}

std::shared_ptr<const RouteTable> Gateway::routes() const {
  std::lock_guard<std::mutex> lock(routes_mu_);
  return routes_;
}

void Gateway::SetRoutes(std::shared_ptr<const RouteTable> routes) {
  std::lock_guard<std::mutex> lock(routes_mu_);
  routes_ = std::move(routes);
}

Status Gateway::Run(int wake_fd, const std::function<bool()>& should_stop) {
  std::vector<PollItem> items;
  while (true) {
    TimePoint now = Clock::now();
    std::chrono::milliseconds timeout(1000);
    if (auto next = config_->NextTimer()) {
      auto until = std::chrono::ceil<std::chrono::milliseconds>(*next - now);
      timeout = std::clamp(until, std::chrono::milliseconds(0), timeout);
    }
    items.clear();
    items.push_back({.fd = wake_fd});
    config_->AddPollItems(&items);
    try {
      Poll(items, timeout);
    } catch (const zmq::error_t& e) {
      return Internal(std::string("poll: ") + e.what());
    }
    if (items[0].ready && should_stop()) return Status::Ok();
    if (std::optional<schemas::Snapshot> snapshot = config_->Read(Clock::now())) {
      auto table = std::make_shared<const RouteTable>(snapshot->state, snapshot->version);
      log_->info("config version {}: {} HTTP routes", table->version(), table->size());
      SetRoutes(std::move(table));
    }
  }
}

int Gateway::HandleRequest(mg_connection* conn, void* self) {
  return static_cast<Gateway*>(self)->Handle(conn);
}

int Gateway::Handle(mg_connection* conn) {
  try {
    return Serve(conn);
  } catch (const std::exception& e) {
    // Nothing a request sends may end the gateway. Its answer is the 500 (a
    // response is written whole, in one call, at the end), and the
    // connection is closed after it.
    log_->error("request failed: {}", e.what());
    HttpResponse r = ErrorResponse(500, "INTERNAL", std::string("the gateway failed: ") + e.what());
    CloseAfterResponse(conn);
    const char* method = mg_get_request_info(conn)->request_method;
    Send(conn, r, method != nullptr && std::string_view(method) == "HEAD");
    return r.status;
  }
}

int Gateway::Serve(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  std::string_view method = info->request_method != nullptr ? info->request_method : "";
  bool head = method == "HEAD";
  std::optional<HttpResponse> bad = CheckHeaderLines(info);
  if (!bad) {
    std::vector<HeaderField> fields;
    fields.reserve(static_cast<size_t>(info->num_headers));
    for (int i = 0; i < info->num_headers; ++i) {
      fields.push_back({info->http_headers[i].name, info->http_headers[i].value});
    }
    bad = CheckHeaderFields(fields, info->http_version != nullptr ? info->http_version : "");
  }
  if (bad) {
    // The body's end is in doubt: nothing more may be read on this
    // connection. civetweb keeps a connection open by the request's own
    // Connection header (its keep-alive test reads the request's headers),
    // so the request is made to ask for the close.
    CloseAfterResponse(conn);
    Send(conn, *bad, head);
    return bad->status;
  }
  HeaderLookup header = [conn](const char* name) -> std::optional<std::string_view> {
    const char* v = mg_get_header(conn, name);
    if (v == nullptr) return std::nullopt;
    return std::string_view(v);
  };
  // The path is decoded here, not by civetweb (decode_url no), which would
  // hand it over as a C string: a %00 would cut it short, and it would match
  // a route it does not name.
  // As sent: civetweb's local_uri has dot segments and doubled slashes
  // taken out, and "/x/../echo" is not the route "/echo".
  const char* uri = info->local_uri_raw != nullptr ? info->local_uri_raw : info->local_uri;
  const std::string raw_path = uri != nullptr ? uri : "";
  std::string decoded(raw_path.size() + 1, '\0');
  const int n = mg_url_decode(raw_path.data(), static_cast<int>(raw_path.size()), decoded.data(),
                              static_cast<int>(decoded.size()), 0);
  if (n < 0 || std::memchr(decoded.data(), 0, static_cast<size_t>(n)) != nullptr) {
    HttpResponse r = ErrorResponse(400, "BAD_REQUEST", "the request path contains %00");
    Send(conn, r, head);
    return r.status;
  }
  decoded.resize(static_cast<size_t>(n));
  const std::string_view path = decoded;
  std::shared_ptr<const RouteTable> table = routes();
  Decision d =
      Decide(table.get(), method, path, header, info->content_length, options_.max_body_bytes);
  const bool expect =
      mg_get_header(conn, "Expect") != nullptr && std::string_view(info->http_version) == "1.1";
  if (const HttpResponse* r = std::get_if<HttpResponse>(&d)) {
    // A client that waits for leave to send its body sends none now: the
    // connection closes, or civetweb would read the client's next request
    // as this one's body.
    if (expect) CloseAfterResponse(conn);
    Send(conn, *r, head);
    return r->status;
  }
  CallPlan plan = std::get<CallPlan>(std::move(d));
  // A client that waits for leave to send its body (curl does for bodies
  // over 1 MB) gets it now that the request is known to be served.
  if (expect) mg_printf(conn, "HTTP/1.1 100 Continue\r\n\r\n");
  std::variant<std::string, HttpResponse> body =
      ReadBody(conn, info->content_length, options_.max_body_bytes);
  if (HttpResponse* refused = std::get_if<HttpResponse>(&body)) {
    // Where the body ended is in doubt: nothing more is read here.
    CloseAfterResponse(conn);
    Send(conn, *refused, head);
    return refused->status;
  }
  // From here the request holds a call: a stop waits for its answer (bounded
  // by the call's deadline), or refuses it before it is made. A request
  // still sending its body is not waited for.
  {
    std::lock_guard<std::mutex> lock(active_mu_);
    if (stopping_) {
      HttpResponse r = ErrorResponse(Unavailable("the gateway is stopping"));
      Send(conn, r, head);
      return r.status;
    }
    ++active_;
  }
  struct Done {
    Gateway* g;
    ~Done() {
      std::lock_guard<std::mutex> lock(g->active_mu_);
      if (--g->active_ == 0) g->active_cv_.notify_all();
    }
  } done{this};
  HttpResponse response = CallAndWait(std::move(plan), std::get<std::string>(std::move(body)));
  Send(conn, response, head);
  return response.status;
}

bool ServesRoutes(const std::string& host, int port, std::chrono::milliseconds timeout) {
  static const unsigned kInit = mg_init_library(0);  // once, for the client functions
  (void)kInit;
  char error[256] = "";
  mg_connection* conn = mg_connect_client(host.c_str(), port, 0, error, sizeof error);
  if (conn == nullptr) return false;
  mg_printf(conn, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", std::string(kRoutesPath).c_str(),
            host.c_str());
  bool ok = mg_get_response(conn, error, sizeof error, static_cast<int>(timeout.count())) >= 0 &&
            mg_get_response_info(conn)->status_code == 200;
  mg_close_connection(conn);
  return ok;
}

HttpResponse Gateway::CallAndWait(CallPlan plan, std::string payload) {
  auto call = std::make_shared<Call>();
  TimePoint give_up = Clock::now() + plan.options.timeout + kClientGrace + kWaitMargin;
  call->plan = std::move(plan);
  call->payload = std::move(payload);
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    queue_.push_back(call);
  }
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
  std::unique_lock<std::mutex> lock(call->mu);
  if (!call->done.wait_until(lock, give_up, [&call] { return call->result.has_value(); })) {
    return ErrorResponse(DeadlineExceeded("no answer from the gateway's broker connection"));
  }
  if (!call->result->ok()) return ErrorResponse(call->result->status());
  return ResultResponse(std::move(call->result->value()));
}

}  // namespace zserve::gateway
