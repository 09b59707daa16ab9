// The HTTP gateway end to end (docs/http.md): `zserve up` starts it, and
// curl and wrk talk to it as any HTTP client would — bodies in and out,
// status codes of the typed errors, the gateway's own paths, routes changed
// live with `zserve ctl`, keep-alive, and a short load run. Every wait is
// bounded and polls a condition.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/e2e/loopback_tcp.h"
#include "tests/e2e/process.h"
#include "tests/e2e/stack.h"
#include "tests/e2e/test_client.h"

namespace zserve::testing {
namespace {

using std::chrono::milliseconds;

constexpr const char* kCurl = "/usr/bin/curl";
constexpr const char* kWrk = "/usr/bin/wrk";

constexpr const char* kDeployment = R"(
backends:
  echo: {handler: echo, num_replicas: 2}
  sleep: {handler: sleep, max_concurrent_queries: 1}
  fail: {handler: fail}
  slow: {handler: sleep, max_concurrent_queries: 1, max_queued_requests: 1}
endpoints:
  echo: {backend: echo, route: /echo}
  sleep: {backend: sleep, route: /sleep, methods: [POST]}
  fail: {backend: fail, route: /v1/fail}
  slow: {backend: slow, route: /slow}
  plain: {backend: echo}
)";

struct HttpReply {
  int code = 0;                                // 0: no answer
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

// Reads a finished or finishing curl's stdout to the end.
std::string CurlOutput(Process& curl) {
  curl.WaitForLine("\n\n", milliseconds(20'000));  // reads until EOF (no such line)
  REQUIRE(curl.Wait(milliseconds(20'000)).has_value());
  return curl.output();
}

// `curl -i ... -w "\n%{http_code}"` output: headers, body, status code.
HttpReply Parse(const std::string& out) {
  HttpReply r;
  size_t nl = out.rfind('\n');
  if (nl == std::string::npos) return r;
  r.code = std::atoi(out.c_str() + nl + 1);
  std::string response = out.substr(0, nl);
  // An interim 100 Continue comes first when curl asked for one.
  while (response.starts_with("HTTP/1.1 100 ")) {
    size_t interim_end = response.find("\r\n\r\n");
    if (interim_end == std::string::npos) return r;
    response.erase(0, interim_end + 4);
  }
  size_t end = response.find("\r\n\r\n");
  if (end == std::string::npos) return r;
  r.body = response.substr(end + 4);
  std::istringstream lines(response.substr(0, end));
  std::string line;
  std::getline(lines, line);  // status line
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    size_t v = line.find_first_not_of(' ', colon + 1);
    r.headers[name] = v == std::string::npos ? "" : line.substr(v);
  }
  return r;
}

std::unique_ptr<Process> StartCurl(const std::string& url, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"-s", "-i", "--max-time", "15", "-w", "\n%{http_code}"};
  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back(url);
  return std::make_unique<Process>(kCurl, args);
}

HttpReply Curl(const std::string& url, std::vector<std::string> extra = {}) {
  auto curl = StartCurl(url, std::move(extra));
  return Parse(CurlOutput(*curl));
}

nlohmann::json Json(const HttpReply& r) {
  INFO("body: " << r.body);
  nlohmann::json j = nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  REQUIRE_FALSE(j.is_discarded());
  return j;
}

// Sends `request` as it is on a new connection, closes the sending side and
// returns everything the server answered before it closed (or 15 s).
std::string RawHttp(const std::string& url, const std::string& request) {
  int fd = ConnectLoopback(std::stoi(url.substr(url.rfind(':') + 1)));
  REQUIRE(fd >= 0);
  REQUIRE(send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size()));
  shutdown(fd, SHUT_WR);
  std::string answer;
  const auto end = std::chrono::steady_clock::now() + milliseconds(15'000);
  char buf[4096];
  while (std::chrono::steady_clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    answer.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return answer;
}

struct HttpStack {
  HttpStack() : stack(kDeployment), url(stack.http_url()) {
    REQUIRE(stack.ready());
    REQUIRE(url.starts_with("http://127.0.0.1:"));
  }
  Stack stack;
  std::string url;
};

TEST_CASE("POST and GET on a route call the endpoint with the body", "[e2e][http]") {
  HttpStack s;
  HttpReply post = Curl(s.url + "/echo", {"-d", "hello"});
  CHECK(post.code == 200);
  CHECK(post.body == "hello");
  CHECK(post.headers["content-type"] == "application/octet-stream");
  HttpReply get = Curl(s.url + "/echo", {"-X", "GET", "--data-binary", "from a GET"});
  CHECK(get.code == 200);
  CHECK(get.body == "from a GET");
  HttpReply empty = Curl(s.url + "/echo?query=ignored");
  CHECK(empty.code == 200);
  CHECK(empty.body.empty());
  // Bytes as they are, a zero byte included.
  std::string file = s.stack.dir() + "/binary";
  WriteFile(file, std::string("a\0b\xff\n", 5));
  HttpReply binary = Curl(s.url + "/echo", {"--data-binary", "@" + file});
  CHECK(binary.code == 200);
  CHECK(binary.body == std::string("a\0b\xff\n", 5));
}

TEST_CASE("Unknown routes are 404 and other methods 405 with JSON bodies", "[e2e][http]") {
  HttpStack s;
  HttpReply missing = Curl(s.url + "/nope", {"-d", "x"});
  CHECK(missing.code == 404);
  CHECK(Json(missing)["error"] == "NOT_FOUND");
  CHECK(missing.headers["content-type"] == "application/json");
  // An endpoint without a route is not on HTTP.
  CHECK(Curl(s.url + "/plain", {"-d", "x"}).code == 404);
  HttpReply wrong = Curl(s.url + "/echo", {"-X", "DELETE"});
  CHECK(wrong.code == 405);
  CHECK(wrong.headers["allow"] == "GET, POST");
  CHECK(Json(wrong)["error"] == "METHOD_NOT_ALLOWED");
  HttpReply get_sleep = Curl(s.url + "/sleep");  // POST only
  CHECK(get_sleep.code == 405);
  CHECK(get_sleep.headers["allow"] == "POST");
}

TEST_CASE("The gateway lists its routes and answers its health check", "[e2e][http]") {
  HttpStack s;
  HttpReply health = Curl(s.url + "/-/healthz");
  CHECK(health.code == 200);
  CHECK(health.body == "ok\n");
  HttpReply routes = Curl(s.url + "/-/routes");
  REQUIRE(routes.code == 200);
  nlohmann::json j = Json(routes);
  CHECK(j["config_version"].get<int>() >= 1);
  std::map<std::string, std::string> endpoint_of;
  for (const auto& r : j["routes"]) endpoint_of[r["route"]] = r["endpoint"];
  CHECK(endpoint_of ==
        std::map<std::string, std::string>{
            {"/echo", "echo"}, {"/sleep", "sleep"}, {"/slow", "slow"}, {"/v1/fail", "fail"}});
  CHECK(j["routes"][1]["methods"] == nlohmann::json({"POST"}));  // /sleep, sorted by route
}

TEST_CASE("The timeout header gives the deadline and a late call is 504", "[e2e][http]") {
  HttpStack s;
  auto start = std::chrono::steady_clock::now();
  HttpReply late = Curl(s.url + "/sleep", {"-d", "3000", "-H", "X-Zserve-Timeout-Ms: 100"});
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(late.code == 504);
  CHECK(Json(late)["error"] == "DEADLINE_EXCEEDED");
  CHECK(took < milliseconds(2500));  // answered at the deadline, not after the sleep
  HttpReply bad = Curl(s.url + "/sleep", {"-d", "1", "-H", "X-Zserve-Timeout-Ms: soon"});
  CHECK(bad.code == 400);
  CHECK(Json(bad)["error"] == "BAD_REQUEST");
  HttpReply in_time = Curl(s.url + "/sleep", {"-d", "10", "-H", "X-Zserve-Timeout-Ms: 10000"});
  CHECK(in_time.code == 200);
  CHECK(in_time.body == "10");
}

TEST_CASE("A body cut short, a broken chunked body or an encoded NUL in the path is 400",
          "[e2e][http]") {
  HttpStack s;
  auto status_line = [](const std::string& answer) { return answer.substr(0, answer.find('\r')); };
  // Content-Length 100, 5 bytes sent, then the sending side closed.
  std::string cut =
      RawHttp(s.url, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhello");
  CHECK(status_line(cut) == "HTTP/1.1 400 Bad Request");
  CHECK(cut.find("BAD_REQUEST") != std::string::npos);
  std::string chunked = RawHttp(s.url,
                                "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                "\r\nzz\r\nhello\r\n0\r\n\r\n");
  CHECK(status_line(chunked) == "HTTP/1.1 400 Bad Request");
  CHECK(chunked.find("BAD_REQUEST") != std::string::npos);
  // Where either body ended is in doubt: the connection is not kept.
  CHECK(cut.find("Connection: close\r\n") != std::string::npos);
  CHECK(chunked.find("Connection: close\r\n") != std::string::npos);
  // A whole body, chunked, still goes through.
  std::string whole = RawHttp(s.url,
                              "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                              "Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
  CHECK(status_line(whole) == "HTTP/1.1 200 OK");
  CHECK(whole.ends_with("\r\n\r\nhello"));
  HttpReply nul = Curl(s.url + "/echo%00junk", {"-d", "x"});
  CHECK(nul.code == 400);
  CHECK(Json(nul)["message"] == "the request path contains %00");
}

TEST_CASE("A request whose framing is in doubt is refused and its connection closed",
          "[e2e][http]") {
  // Each carries a second request where its body would end by another
  // reading of its header; it must never be run.
  HttpStack s;
  const std::string smuggled =
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\nSMUGGLED";
  struct Case {
    std::string name, head, status, message;
  };
  std::string many;
  for (int i = 0; i < 70; ++i) many += "X-H" + std::to_string(i) + ": v\r\n";
  for (const Case& c : std::vector<Case>{
           {"two Content-Lengths", "Content-Length: 3\r\nContent-Length: 60\r\n", "400 Bad Request",
            "header Content-Length is given more than once"},
           {"a folded line", "X-A: b\r\n c\r\nContent-Length: 60\r\n", "400 Bad Request",
            "a header line the gateway cannot read"},
           {"70 header lines", many + "Content-Length: 60\r\n",
            "431 Request Header Fields Too Large", "more than 64 header lines"},
           {"a space before the colon", "Content-Length : 60\r\n", "400 Bad Request",
            "a space before the colon of header 'Content-Length'"},
           {"a Content-Length of 3x", "Content-Length: 3x\r\n", "400 Bad Request",
            "header Content-Length must be a whole number of bytes, got '3x'"},
           {"Content-Length with chunked", "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
            "400 Bad Request", "Content-Length or Transfer-Encoding, not both"},
           {"two timeout headers", "X-Zserve-Timeout-Ms: 5000\r\nX-Zserve-Timeout-Ms: abc\r\n",
            "400 Bad Request", "header X-Zserve-Timeout-Ms is given more than once"},
           {"a folded first line", " X-A: 1\r\nContent-Length: 60\r\n", "400 Bad Request",
            "a header line the gateway cannot read"},
           {"a second Host", "Host: y\r\nContent-Length: 3\r\n", "400 Bad Request",
            "header Host is given more than once"}}) {
    INFO(c.name);
    std::string answer =
        RawHttp(s.url, "POST /echo HTTP/1.1\r\nHost: x\r\n" + c.head + "\r\nabc" + smuggled);
    INFO(answer);
    CHECK(answer.starts_with("HTTP/1.1 " + c.status + "\r\n"));
    CHECK(answer.find(c.message) != std::string::npos);
    CHECK(answer.find("Connection: close\r\n") != std::string::npos);
    // One answer, then the connection closed: the second request never ran.
    CHECK(answer.find("HTTP/1.1", 1) == std::string::npos);
    CHECK(answer.find("SMUGGLED") == std::string::npos);
  }
  // HTTP/1.1 without a Host (RFC 9112 3.2); HTTP/1.0 needs none.
  std::string no_host = RawHttp(s.url, "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
  CHECK(no_host.starts_with("HTTP/1.1 400 Bad Request\r\n"));
  CHECK(no_host.find("an HTTP/1.1 request must have a Host header") != std::string::npos);
  CHECK(RawHttp(s.url, "POST /echo HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc")
            .starts_with("HTTP/1.1 200 OK\r\n"));
  // The gateway still serves.
  HttpReply after = Curl(s.url + "/echo", {"-d", "still here"});
  CHECK(after.code == 200);
  CHECK(after.body == "still here");
  // Lines that end in a bare LF are taken (RFC 9112 lets a server), also
  // after a request whose longer lines left other bytes in the buffer.
  std::string lf = RawHttp(s.url,
                           "GET /echo HTTP/1.1\r\nHost: a-longer-host\r\n\r\n"
                           "POST /echo HTTP/1.1\nHost: x\nContent-Length: 5\n\nhello");
  INFO(lf);
  CHECK(lf.starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(lf.find("HTTP/1.1 200 OK\r\n", 1) != std::string::npos);
  CHECK(lf.ends_with("\r\n\r\nhello"));
}

TEST_CASE("Each response says whether its connection stays open", "[e2e][http]") {
  HttpStack s;
  struct Case {
    std::string request, connection;
  };
  for (const Case& c : std::vector<Case>{
           {"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", "keep-alive"},
           {"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "close"},
           {"GET /echo HTTP/1.0\r\nHost: x\r\n\r\n", "close"},
           {"GET /echo HTTP/1.0\r\nHost: x\r\nConnection: Keep-Alive\r\n\r\n", "keep-alive"}}) {
    INFO(c.request);
    std::string answer = RawHttp(s.url, c.request);
    INFO(answer);
    CHECK(answer.starts_with("HTTP/1.1 200 OK\r\n"));
    CHECK(answer.find("\r\nConnection: " + c.connection + "\r\n") != std::string::npos);
  }
}

TEST_CASE("Expect 100-continue is answered before the body and paths match as sent",
          "[e2e][http]") {
  HttpStack s;
  int fd = ConnectLoopback(std::stoi(s.url.substr(s.url.rfind(':') + 1)));
  REQUIRE(fd >= 0);
  // Reads until `done` holds of what came, or 10 s pass.
  std::string got;
  auto read_until = [&](auto done) {
    const auto end = std::chrono::steady_clock::now() + milliseconds(10'000);
    char buf[4096];
    while (!done() && std::chrono::steady_clock::now() < end) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
  };
  const std::string head =
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
  REQUIRE(send(fd, head.data(), head.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(head.size()));
  // The client waits for leave to send its body.
  read_until([&] { return got.find("\r\n\r\n") != std::string::npos; });
  CHECK(got == "HTTP/1.1 100 Continue\r\n\r\n");
  got.clear();
  REQUIRE(send(fd, "hello", 5, MSG_NOSIGNAL) == 5);
  read_until([&] { return got.ends_with("\r\n\r\nhello"); });
  INFO(got);
  CHECK(got.starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(got.ends_with("\r\n\r\nhello"));
  close(fd);
  // Refused before its body, such a request closes its connection: its
  // client sends no body, and civetweb would read the next request as one.
  fd = ConnectLoopback(std::stoi(s.url.substr(s.url.rfind(':') + 1)));
  REQUIRE(fd >= 0);
  got.clear();
  const std::string refused =
      "POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nExpect: 100-continue\r\n\r\n";
  REQUIRE(send(fd, refused.data(), refused.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(refused.size()));
  // Everything until the gateway closes the connection (10 s at most).
  bool eof = false;
  const auto end = std::chrono::steady_clock::now() + milliseconds(10'000);
  while (!eof && std::chrono::steady_clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    eof = n == 0;
  }
  INFO(got);
  CHECK(got.starts_with("HTTP/1.1 404 Not Found\r\n"));
  CHECK(got.find("Connection: close\r\n") != std::string::npos);
  CHECK(eof);
  close(fd);
  // curl sends Expect: 100-continue for bodies over 1 MB.
  std::string file = s.stack.dir() + "/big";
  WriteFile(file, std::string(2'000'000, 'b'));
  HttpReply big = Curl(s.url + "/echo", {"--data-binary", "@" + file});
  CHECK(big.code == 200);
  CHECK(big.body.size() == 2'000'000);
  HttpReply other = Curl(s.url + "/echo", {"-H", "Expect: something-else", "-d", "x"});
  CHECK(other.code == 417);
  CHECK(Json(other)["message"] ==
        "the gateway takes only Expect: 100-continue, got 'something-else'");
  // A path is the route only as sent: no dot segments or doubled slashes
  // taken out.
  for (const char* path : {"//echo", "/./echo", "/x/../echo", "/echo/."}) {
    INFO(path);
    HttpReply r = Curl(s.url + path, {"--path-as-is", "-d", "x"});
    CHECK(r.code == 404);
  }
}

TEST_CASE("A gateway told to stop answers the requests it holds first", "[e2e][http]") {
  HttpStack s;
  std::smatch m;
  std::string log = s.stack.log();
  REQUIRE(std::regex_search(log, m, std::regex("started http \\(pid ([0-9]+)\\)")));
  const pid_t gateway = std::stoi(m[1]);
  auto held = StartCurl(s.url + "/sleep", {"-d", "1500"});
  auto client = Connect(s.stack.client_address());
  WaitForStatus(*client,
                [](const nlohmann::json& j) { return j["backends"]["sleep"]["in_flight"] == 1; });
  REQUIRE(kill(gateway, SIGTERM) == 0);
  HttpReply r = Parse(CurlOutput(*held));
  CHECK(r.code == 200);
  CHECK(r.body == "1500");
}

TEST_CASE("A handler error is 500 with the error type and message", "[e2e][http]") {
  HttpStack s;
  HttpReply failed = Curl(s.url + "/v1/fail", {"-d", "error:the model is sad"});
  CHECK(failed.code == 500);
  nlohmann::json j = Json(failed);
  CHECK(j["error"] == "HANDLER_ERROR");
  CHECK(j["message"].get<std::string>().find("the model is sad") != std::string::npos);
  CHECK(Curl(s.url + "/v1/fail", {"-d", "fine"}).body == "fine");
}

TEST_CASE("A full queue is 503 with Retry-After", "[e2e][http]") {
  HttpStack s;
  // slow: one request in flight and one queued; the others are OVERLOADED
  // at once, while those two take 2 s each.
  std::vector<std::unique_ptr<Process>> curls;
  for (int i = 0; i < 6; ++i) curls.push_back(StartCurl(s.url + "/slow", {"-d", "2000"}));
  int ok = 0, overloaded = 0;
  for (auto& curl : curls) {
    HttpReply r = Parse(CurlOutput(*curl));
    if (r.code == 200) ++ok;
    if (r.code == 503) {
      ++overloaded;
      CHECK(r.headers["retry-after"] == "1");
      CHECK(Json(r)["error"] == "OVERLOADED");
    }
  }
  CHECK(ok >= 1);
  CHECK(ok <= 2);
  CHECK(overloaded >= 4);
}

TEST_CASE("A route added and changed with zserve ctl works without a restart", "[e2e][http]") {
  HttpStack s;
  // A ctl command's exit code, its stderr in `err`.
  auto ctl_exit = [&](std::vector<std::string> args, const std::string& err) {
    args.insert(args.begin(), {"ctl", "--controller", s.stack.admin_address()});
    Process p(kBinary, args, err);
    return p.Wait(milliseconds(10'000));
  };
  auto ctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"ctl", "--controller", s.stack.admin_address()});
    auto p = std::make_unique<Process>(kBinary, args, s.stack.dir() + "/ctl.err");
    REQUIRE(p->Wait(milliseconds(10'000)) == 0);
    return p->output();
  };
  CHECK(Curl(s.url + "/late", {"-d", "x"}).code == 404);
  std::string created =
      ctl({"create-endpoint", "late", "--backend", "echo", "--route", "/late", "--methods", "PUT"});
  CHECK(created.find("route='/late' methods=PUT") != std::string::npos);
  CHECK(Eventually([&] { return Curl(s.url + "/late", {"-X", "PUT", "-d", "x"}).code == 200; }));
  CHECK(Curl(s.url + "/late", {"-d", "x"}).code == 405);  // POST is not in its methods
  // Moved to another path, and its methods widened.
  std::string updated =
      ctl({"update-endpoint", "late", "--route", "/v2/late", "--methods", "get,post"});
  CHECK(updated.find("~ endpoint late: route '/late' -> '/v2/late', methods PUT -> GET,POST") !=
        std::string::npos);
  CHECK(Eventually([&] { return Curl(s.url + "/v2/late", {"-d", "moved"}).body == "moved"; }));
  CHECK(Curl(s.url + "/late", {"-X", "PUT", "-d", "x"}).code == 404);
  std::string table = ctl({"get"});
  CHECK(table.find("/v2/late") != std::string::npos);
  // A route another endpoint has is refused, and says whose it is.
  CHECK(ctl_exit({"update-endpoint", "late", "--route", "/echo"}, s.stack.dir() + "/clash.err") ==
        1);
  // An empty item in --methods is refused, not skipped: a typo would pass.
  CHECK(ctl_exit({"update-endpoint", "late", "--methods", "GET,,PUT"},
                 s.stack.dir() + "/typo.err") == 1);
  CHECK_THAT(ReadFile(s.stack.dir() + "/typo.err"),
             Catch::Contains("--methods 'GET,,PUT' has an empty item"));
  CHECK(ctl({"get"}).find("GET,POST") != std::string::npos);
}

TEST_CASE("Keep-alive serves several requests on one connection", "[e2e][http]") {
  HttpStack s;
  std::string err = s.stack.dir() + "/curl.err";
  Process curl(kCurl,
               {"-s", "-v", "--max-time", "15", "-d", "again", s.url + "/echo", s.url + "/echo"},
               err);
  CurlOutput(curl);
  CHECK(curl.output() == "againagain");
  std::ifstream in(err);
  std::stringstream log;
  log << in.rdbuf();
  INFO(log.str());
  CHECK(log.str().find("Re-using existing connection") != std::string::npos);
}

TEST_CASE("A connection that sends nothing is closed after 5 s", "[e2e][http]") {
  // Else --threads of them would hold every request thread (civetweb's own
  // default is 30 s).
  HttpStack s;
  int fd = ConnectLoopback(std::stoi(s.url.substr(s.url.rfind(':') + 1)));
  REQUIRE(fd >= 0);
  const auto start = std::chrono::steady_clock::now();
  pollfd p{fd, POLLIN, 0};
  REQUIRE(poll(&p, 1, 10'000) == 1);
  char byte;
  CHECK(read(fd, &byte, 1) <= 0);  // closed, nothing said
  CHECK(std::chrono::steady_clock::now() - start >= milliseconds(4'000));
  close(fd);
}

TEST_CASE("A short wrk run with 32 connections gets only 2xx answers", "[e2e][http]") {
  HttpStack s;
  std::string script = s.stack.dir() + "/post.lua";
  WriteFile(script, "wrk.method = \"POST\"\nwrk.body = \"hello\"\n");
  Process wrk(kWrk, {"-t2", "-c32", "-d2s", "-s", script, s.url + "/echo"});
  wrk.WaitForLine("\n\n", milliseconds(30'000));  // reads until EOF
  REQUIRE(wrk.Wait(milliseconds(30'000)) == 0);
  const std::string& out = wrk.output();
  INFO(out);
  CHECK(out.find("Non-2xx") == std::string::npos);
  CHECK(out.find("Socket errors") == std::string::npos);
  size_t at = out.find(" requests in ");
  REQUIRE(at != std::string::npos);
  size_t start = out.rfind(' ', at - 1);
  long requests = std::atol(out.c_str() + start + 1);
  CHECK(requests > 100);
}

}  // namespace
}  // namespace zserve::testing
