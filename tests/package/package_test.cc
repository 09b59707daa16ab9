// Users' own worker binaries: zserve installed into a temporary prefix with
// `cmake --install`, examples/custom_worker configured and built against it
// with find_package(zserve), its worker started against a running stack and
// called through its own client and through ours.
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/e2e/stack.h"
#include "tests/e2e/test_client.h"
#include "zserve/client.h"

namespace zserve::testing {
namespace {

using std::chrono::milliseconds;

// Runs a command to its end; its exit code (nullopt if it outlived `limit`).
std::optional<int> Run(const std::string& binary, const std::vector<std::string>& args,
                       const std::string& log, milliseconds limit = milliseconds(240'000)) {
  Process p(binary, args, log);
  std::optional<int> code = p.Wait(limit);
  INFO(binary << " printed: " << p.output());
  CHECK(code == 0);
  return code;
}

// Builds examples/custom_worker against zserve installed into `dir`/prefix;
// returns the example's build directory.
std::string BuildExample(const std::string& dir) {
  const std::string prefix = dir + "/prefix", build = dir + "/example";
  REQUIRE(Run(ZSERVE_CMAKE, {"--install", ZSERVE_BUILD_DIR, "--prefix", prefix}, dir + "/log") ==
          0);
  REQUIRE(Run(ZSERVE_CMAKE,
              {"-S", ZSERVE_SOURCE_DIR "/examples/custom_worker", "-B", build,
               "-DCMAKE_PREFIX_PATH=" + prefix, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
               "-DCMAKE_CXX_FLAGS=" ZSERVE_EXAMPLE_FLAGS,
               "-DCMAKE_EXE_LINKER_FLAGS=" ZSERVE_EXAMPLE_FLAGS},
              dir + "/log") == 0);
  REQUIRE(Run(ZSERVE_CMAKE, {"--build", build, "-j2"}, dir + "/log") == 0);
  return build;
}

std::string Reply(Client& client, const std::string& method, const std::string& text) {
  CallOptions o;
  o.method = method;
  StatusOr<std::string> r = client.Call("sentiment", text, o);
  INFO(method << " '" << text << "': " << r.status().ToString());
  REQUIRE(r.ok());
  return *r;
}

TEST_CASE("A worker built against the installed package serves its methods and follows user_config",
          "[package]") {
  const std::string dir = MakeTempDir();
  const std::string build = BuildExample(dir);

  Stack stack(R"(
backends:
  sentiment: {num_replicas: 0, max_batch_size: 8, batch_wait_timeout_ms: 2}
endpoints:
  sentiment: {backend: sentiment}
)");
  REQUIRE(stack.ready());
  Process worker(
      build + "/sentiment_worker",
      {"--model", ZSERVE_SOURCE_DIR "/examples/custom_worker/model.txt", "--backend", "sentiment",
       "--broker", stack.worker_address(), "--controller", stack.admin_address(),
       "--controller-pub", stack.updates_address(), "--replica-tag", "custom-1"},
      dir + "/worker.log");
  auto client = Connect(stack);
  WaitForStatus(
      *client, [](const nlohmann::json& j) { return j["backends"]["sentiment"]["replicas"] == 1; });

  // The model was loaded in the handler's constructor; three methods.
  CHECK(Reply(*client, "score", "Good, GREAT!") == "2.500");
  CHECK(Reply(*client, "classify", "awful and slow") == "negative");
  CHECK(Reply(*client, "info", "") == "words=10 threshold=0.000");
  // A bad item fails alone; a method it doesn't serve is NOT_FOUND.
  CallOptions score;
  score.method = "score";
  StatusOr<std::string> empty = client->Call("sentiment", "", score);
  CHECK(empty.status().code() == StatusCode::kHandlerError);
  CHECK_THAT(empty.status().message(), Catch::Contains("empty text"));
  CallOptions other;
  other.method = "translate";
  CHECK(client->Call("sentiment", "hello", other).status().code() == StatusCode::kNotFound);

  // Batches: many calls at once, each answered with its own result.
  int right = 0;
  CallOptions classify;
  classify.method = "classify";
  for (int i = 0; i < 200; ++i) {
    std::string text = i % 2 == 0 ? "love it" : "hate it";
    client->CallAsync("sentiment", text, classify, [&right, i](StatusOr<std::string> r) {
      right += r.ok() && *r == (i % 2 == 0 ? "positive" : "negative");
    });
  }
  client->Wait();
  CHECK(right == 200);

  // A user_config change reaches the handler's Reconfigure, no restart.
  Process ctl(kBinary,
              {"ctl", "--controller", stack.admin_address(), "update-backend", "sentiment",
               "--user-config", R"({"threshold": 3})"},
              dir + "/ctl.log");
  REQUIRE(ctl.Wait(milliseconds(10'000)) == 0);
  CHECK(Eventually([&] { return Reply(*client, "info", "") == "words=10 threshold=3.000"; }));
  CHECK(Reply(*client, "classify", "good great") == "negative");

  // The example's own client, built against zserve::client.
  Process call(build + "/sentiment_client",
               {"--broker", stack.client_address(), "excellent great love", "slow"},
               dir + "/client.log");
  REQUIRE(call.Wait(milliseconds(10'000)) == 0);
  CHECK(call.output() == "excellent great love\tpositive\nslow\tnegative\n");

  // SIGTERM drains it; it exits 0.
  worker.Signal(SIGTERM);
  CHECK(worker.Wait(milliseconds(10'000)) == 0);
}

}  // namespace
}  // namespace zserve::testing
