// Handler plugins (include/zserve/plugin.h, worker/plugin_handler.h): the
// test plugins built beside this test (tests/worker/plugins/) loaded through
// LoadPluginHandler, then used as a zserve::Handler; and each way a plugin is
// refused, with its message.
#include "zserve/plugin.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "worker/plugin_handler.h"
#include "zserve/handler.h"
#include "zserve/status.h"

namespace {

using Catch::Matchers::Contains;
using zserve::Request;
using zserve::Result;
using zserve::StatusCode;
using zserve::worker::LoadPluginHandler;

std::unique_ptr<zserve::Handler> Load(const std::string& path, const std::string& arg = "") {
  zserve::StatusOr<std::unique_ptr<zserve::Handler>> h = LoadPluginHandler(path, arg);
  INFO(h.status().ToString());
  REQUIRE(h.ok());
  return std::move(h).value();
}

std::vector<Result> Run(zserve::Handler& h, const std::string& method,
                        const std::vector<std::string>& payloads) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::vector<Request> batch;
  for (const std::string& p : payloads) batch.push_back({method, p, deadline});
  std::vector<Result> out = h.HandleBatch(batch);
  REQUIRE(out.size() == payloads.size());
  return out;
}

zserve::Status Refusal(const std::string& path, const std::string& arg = "") {
  zserve::StatusOr<std::unique_ptr<zserve::Handler>> h = LoadPluginHandler(path, arg);
  REQUIRE_FALSE(h.ok());
  return h.status();
}

TEST_CASE("a plugin serves its methods as a handler", "[worker][plugin]") {
  auto h = Load(PLUGIN_TEXTOPS, "> ");
  CHECK(h->Methods() == std::vector<std::string>{"upper", "len"});

  std::vector<Result> up = Run(*h, "upper", {"hello", "", "MiXed 1"});
  REQUIRE(up[0].ok());
  CHECK(*up[0] == "> HELLO");
  REQUIRE_FALSE(up[1].ok());
  CHECK(up[1].status().code() == StatusCode::kBadRequest);
  CHECK(up[1].status().message() == "upper: empty payload");
  REQUIRE(up[2].ok());
  CHECK(*up[2] == "> MIXED 1");

  std::string binary("a\0b\xff", 4);
  std::vector<Result> len = Run(*h, "len", {"hello", "", binary});
  REQUIRE(len[0].ok());
  CHECK(*len[0] == "5");
  REQUIRE(len[1].ok());
  CHECK(*len[1] == "0");
  REQUIRE(len[2].ok());
  CHECK(*len[2] == "4");
}

TEST_CASE("a plugin takes user_config through reconfigure and may refuse it", "[worker][plugin]") {
  auto h = Load(PLUGIN_TEXTOPS, "arg: ");
  CHECK(*Run(*h, "upper", {"a"})[0] == "arg: A");
  REQUIRE(h->Reconfigure("v2: ").ok());
  CHECK(*Run(*h, "upper", {"a"})[0] == "v2: A");
  zserve::Status refused = h->Reconfigure("reject this");
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(refused.message(), Contains("plugin 'textops' refused user_config"));
  CHECK_THAT(refused.message(), Contains("textops does not take 'reject this'"));
  CHECK(*Run(*h, "upper", {"a"})[0] == "v2: A");  // the previous configuration stays
  REQUIRE(h->Reconfigure("").ok());
  CHECK(*Run(*h, "upper", {"a"})[0] == "arg: A");
}

TEST_CASE("a minimal C plugin serves every method and ignores user_config", "[worker][plugin]") {
  auto h = Load(PLUGIN_MINIMAL);
  CHECK(h->Methods().empty());
  CHECK(h->Reconfigure("anything").ok());
  std::vector<Result> out = Run(*h, "whatever", {"a", "bc"});
  REQUIRE(out[0].ok());
  CHECK(*out[0] == "a");
  REQUIRE(out[1].ok());
  CHECK(*out[1] == "bc");
}

TEST_CASE("plugin answers are kept per request and the gaps fail", "[worker][plugin]") {
  auto h = Load(PLUGIN_TEXTOPS);
  std::vector<Result> out = Run(*h, "upper", {"noreply", "twice", "code:6", "code:99", "ok"});
  REQUIRE_FALSE(out[0].ok());
  CHECK(out[0].status().code() == StatusCode::kHandlerError);
  CHECK(out[0].status().message() == "plugin 'textops' gave no result");
  REQUIRE(out[1].ok());
  CHECK(*out[1] == "first");  // the second answer is ignored
  REQUIRE_FALSE(out[2].ok());
  CHECK(out[2].status().code() == StatusCode::kBadRequest);
  CHECK(out[2].status().message() == "odd code");
  REQUIRE_FALSE(out[3].ok());  // not a status code: a handler error
  CHECK(out[3].status().code() == StatusCode::kHandlerError);
  CHECK(out[3].status().message() == "odd code");
  REQUIRE(out[4].ok());
  CHECK(*out[4] == "OK");
}

TEST_CASE("a non-zero handle_batch fails the unanswered requests only", "[worker][plugin]") {
  auto h = Load(PLUGIN_TEXTOPS);
  std::vector<Result> out = Run(*h, "len", {"abc", "failbatch", "de"});
  REQUIRE(out[0].ok());
  CHECK(*out[0] == "3");
  REQUIRE_FALSE(out[1].ok());
  CHECK(out[1].status().code() == StatusCode::kHandlerError);
  CHECK(out[1].status().message() == "plugin 'textops' failed the batch (handle_batch returned 7)");
  REQUIRE(out[2].ok());
  CHECK(*out[2] == "2");
}

TEST_CASE("an exception out of handle_batch reaches the worker as from any handler",
          "[worker][plugin]") {
  auto h = Load(PLUGIN_TEXTOPS);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::vector<Request> batch{{"upper", "a", deadline}, {"upper", "throw", deadline}};
  CHECK_THROWS_WITH(h->HandleBatch(batch), "textops was asked to throw");
  CHECK(*Run(*h, "upper", {"still"})[0] == "STILL");
}

TEST_CASE("a plugin is called from several threads at once", "[worker][plugin]") {
  auto h = Load(PLUGIN_TEXTOPS);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      for (int i = 0; i < 200; ++i) {
        std::string p = "t" + std::to_string(t) + "-" + std::to_string(i);
        std::string pp = p + p;  // Request holds views: the strings outlive it
        std::vector<Request> len{{"len", p, deadline}, {"len", pp, deadline}};
        std::vector<Result> out = h->HandleBatch(len);
        if (out.size() != 2 || !out[0].ok() || *out[0] != std::to_string(p.size()) ||
            !out[1].ok() || *out[1] != std::to_string(2 * p.size())) {
          ++wrong;
        }
        std::vector<Request> upper{{"upper", p, deadline}};
        out = h->HandleBatch(upper);
        if (out.size() != 1 || !out[0].ok() || *out[0] != "T" + p.substr(1)) ++wrong;
        if (t == 0 && i % 50 == 0 && !h->Reconfigure("").ok()) ++wrong;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(wrong == 0);
}

TEST_CASE("the plugin argument reaches create", "[worker][plugin]") {
  auto h = Load(PLUGIN_TEXTOPS, "arg:");
  CHECK(*Run(*h, "upper", {"x"})[0] == "arg:X");
  zserve::Status s = Refusal(PLUGIN_TEXTOPS, "fail:no GPU here");
  CHECK(s.code() == StatusCode::kBadRequest);
  CHECK(s.message() ==
        std::string("plugin '") + PLUGIN_TEXTOPS + "' refused: create() failed: no GPU here");
}

TEST_CASE("a missing plugin file is refused", "[worker][plugin]") {
  zserve::Status s = Refusal("/nonexistent/libnothing.so");
  CHECK(s.code() == StatusCode::kNotFound);
  CHECK(s.message() == "plugin '/nonexistent/libnothing.so' refused: no such file");
  // A bare name is a file in the current directory, not a library search.
  s = Refusal("libc.so.6");
  CHECK(s.message() == "plugin 'libc.so.6' refused: no such file");
}

TEST_CASE("a file that is not a shared library is refused with dlopen's reason",
          "[worker][plugin]") {
  zserve::Status s = Refusal(__FILE__);  // a C++ source file
  CHECK(s.code() == StatusCode::kBadRequest);
  CHECK_THAT(s.message(),
             Contains(std::string("plugin '") + __FILE__ + "' refused: cannot load it: "));
}

TEST_CASE("a library without the entry symbol is refused", "[worker][plugin]") {
  zserve::Status s = Refusal(PLUGIN_NO_SYMBOL);
  CHECK(s.code() == StatusCode::kBadRequest);
  CHECK_THAT(s.message(), Contains(std::string("plugin '") + PLUGIN_NO_SYMBOL +
                                   "' refused: it has no symbol 'zserve_plugin_v1'"));
}

TEST_CASE("a plugin of another ABI version is refused", "[worker][plugin]") {
  zserve::Status s = Refusal(PLUGIN_WRONG_ABI);
  CHECK(s.code() == StatusCode::kBadRequest);
  CHECK(s.message() == std::string("plugin '") + PLUGIN_WRONG_ABI +
                           "' refused: plugin ABI version 2, this zserve speaks 1");
}

TEST_CASE("a plugin table without a required function is refused", "[worker][plugin]") {
  zserve::Status s = Refusal(PLUGIN_MISSING_FUNCTION);
  CHECK(s.message() == std::string("plugin '") + PLUGIN_MISSING_FUNCTION +
                           "' refused: its table lacks required functions: handle_batch");
}

TEST_CASE("a plugin whose create fails is refused with its reason", "[worker][plugin]") {
  zserve::Status s = Refusal(PLUGIN_CREATE_FAILS);
  CHECK(s.message() == std::string("plugin '") + PLUGIN_CREATE_FAILS +
                           "' refused: create() failed: cannot open model file "
                           "/nonexistent/model.bin");
}

TEST_CASE("a plugin whose create throws is refused", "[worker][plugin]") {
  zserve::Status s = Refusal(PLUGIN_CREATE_THROWS);
  CHECK(s.code() == StatusCode::kBadRequest);
  CHECK(s.message() == std::string("plugin '") + PLUGIN_CREATE_THROWS +
                           "' refused: create() threw: model weights are corrupt (a plugin must "
                           "not throw across the C ABI)");
}

}  // namespace
