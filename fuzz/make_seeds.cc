// Writes the seed corpus of every fuzz target, from the real encoders:
//   fuzz_make_seeds <repo>   (writes <repo>/fuzz/corpus/<target>/<name>,
//                            reads the example deployment files of <repo>)
// The seeds are checked in; run this again when the protocol changes.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "broker/mdp.h"
#include "fuzz/admin_state.h"
#include "fuzz/broker_fuzzer.h"
#include "fuzz/fuzz_input.h"
#include "schemas/codec.h"

namespace zserve::fuzz {
namespace {

namespace fs = std::filesystem;
namespace sc = zserve::schemas;

fs::path corpus_dir;

void Write(const std::string& target, const std::string& name, const std::string& bytes) {
  fs::create_directories(corpus_dir / target);
  std::ofstream(corpus_dir / target / name, std::ios::binary) << bytes;
}

sc::AdminRequest Admin(sc::Command command, std::string name) {
  sc::AdminRequest r;
  r.command = command;
  r.request_id = 42;
  r.name = std::move(name);
  return r;
}

std::vector<std::pair<std::string, sc::AdminRequest>> AdminRequests() {
  std::vector<std::pair<std::string, sc::AdminRequest>> out;
  sc::AdminRequest r = Admin(sc::Command::kCreateBackend, "big");
  r.backend.handler = "echo";
  r.backend.max_batch_size = 16;
  r.backend.user_config = "{k: v}";
  out.emplace_back("create_backend", r);
  r = Admin(sc::Command::kUpdateBackend, "mlp");
  r.backend.num_replicas = 3;
  r.backend.retry_on_replica_failure = 2;
  out.emplace_back("update_backend", r);
  r = Admin(sc::Command::kCreateEndpoint, "big");
  r.endpoint.traffic = {{"big", 1.0}};
  r.endpoint.shadow = {{"sleep", 0.1}};
  r.endpoint.route = "/big";
  r.endpoint.methods = {"POST", "PUT"};
  out.emplace_back("create_endpoint", r);
  r = Admin(sc::Command::kUpdateEndpoint, "echo");
  r.endpoint.timeout_ms = 100;
  r.endpoint.route = "";
  out.emplace_back("update_endpoint", r);
  r = Admin(sc::Command::kSetTraffic, "mlp");
  r.weights = {{"mlp", 0.5}, {"echo", 0.5}};
  out.emplace_back("set_traffic", r);
  r = Admin(sc::Command::kSetShadow, "echo");
  r.weights = {{"sleep", 1.0}};
  out.emplace_back("set_shadow", r);
  out.emplace_back("delete_endpoint", Admin(sc::Command::kDeleteEndpoint, "mlp"));
  out.emplace_back("delete_backend", Admin(sc::Command::kDeleteBackend, "sleep"));
  out.emplace_back("get_state", Admin(sc::Command::kGetState, ""));
  r = Admin(sc::Command::kApply, "");
  r.state = AdminBaseState();
  r.state.endpoints.erase("mlp");
  out.emplace_back("apply", r);
  return out;
}

void CodecSeeds() {
  const std::string t = "fuzz_codec";
  Write(t, "request", sc::EncodeRequest({7, "echo", "__call__", 250, "user-1", 1}));
  Write(t, "reply", sc::EncodeReply({7, StatusCode::kOk, ""}));
  Write(t, "reply_error", sc::EncodeReply({8, StatusCode::kOverloaded, "queue full"}));
  Write(t, "requests",
        sc::EncodeRequests({{7, "echo", "__call__", 250, "user-1", 1}, {8, "b", "m", 0, "", 0}}));
  Write(t, "replies",
        sc::EncodeReplies({{7, StatusCode::kOk, ""}, {8, StatusCode::kNotFound, "nope"}}));
  const std::vector<uint64_t> packed = {5, 0};
  Write(t, "requests_packed",
        sc::EncodeRequests({{7, "echo", "__call__", 250, "", 0}, {8, "b", "m", 0, "", 0}}, packed));
  Write(t, "replies_packed",
        sc::EncodeReplies({{7, StatusCode::kOk, ""}, {8, StatusCode::kNotFound, "nope"}}, packed));
  Write(t, "batch_packed", sc::EncodeBatch({{1, "__call__", 100}, {2, "predict", 0}}, {}, packed));
  Write(t, "results_packed",
        sc::EncodeResults({{1, StatusCode::kOk, ""}, {2, StatusCode::kHandlerError, "boom"}},
                          packed));
  Write(t, "ready_packed", sc::EncodeReady({"echo", "host-1", 4, true}));
  Write(t, "ready_heartbeat", sc::EncodeReady({"echo", "host-1", 4, true, 250}));
  Write(t, "status", sc::EncodeStatusRequest(9));
  Write(t, "ready", sc::EncodeReady({"echo", "host-1", 4}));
  Write(t, "batch", sc::EncodeBatch({{1, "__call__", 100}, {2, "predict", 0}}));
  Write(t, "batch_sizes",
        sc::EncodeBatch({{1, "__call__", 100}, {2, "__call__", 0}, {3, "m", 5}},
                        std::vector<uint32_t>{1, 2}));
  Write(t, "results",
        sc::EncodeResults({{1, StatusCode::kOk, ""}, {2, StatusCode::kHandlerError, "boom"}}));
  Write(t, "disconnect", sc::EncodeSimple(sc::Command::kDisconnect));
  Write(t, "heartbeat", sc::EncodeSimple(sc::Command::kHeartbeat));
  Write(t, "snapshot_request", sc::EncodeSimple(sc::Command::kSnapshotRequest));
  Write(t, "snapshot", sc::EncodeSnapshot(sc::Command::kSnapshot, {3, AdminBaseState()}));
  Write(t, "update", sc::EncodeSnapshot(sc::Command::kUpdate, broker::BrokerFuzzer::OtherConfig()));
  Write(t, "controller_heartbeat", sc::EncodeControllerHeartbeat(3));
  Write(t, "error", sc::EncodeError(BadRequest("unknown command 99")));
  for (const auto& [name, r] : AdminRequests()) Write(t, name, sc::EncodeAdminRequest(r));
  sc::AdminReply reply{
      42, StatusCode::kOk, "", 4, {"+ backend big: handler=echo"}, AdminBaseState()};
  Write(t, "admin_reply", sc::EncodeAdminReply(reply));
}

void AdminSeeds() {
  const std::string t = "fuzz_admin";
  FuzzWriter all;
  for (const auto& [name, r] : AdminRequests()) {
    Write(t, name, FuzzWriter().Frame(sc::EncodeAdminRequest(r)).bytes());
    all.Frame(sc::EncodeAdminRequest(r));
  }
  Write(t, "sequence", all.bytes());
}

void DeploymentSeeds(const fs::path& repo) {
  const std::string t = "fuzz_deployment";
  for (const char* file : {"examples/deployment.yaml", "examples/traffic_split.yaml"}) {
    std::ifstream in(repo / file);
    std::stringstream ss;
    ss << in.rdbuf();
    if (ss.str().empty()) {
      std::cerr << "cannot read " << (repo / file) << "\n";
      std::exit(1);
    }
    Write(t, fs::path(file).stem().string(), ss.str());
  }
  Write(t, "every_key", R"(backends:
  mlp:
    handler: sleep
    num_replicas: 2
    max_batch_size: 8
    batch_wait_timeout_ms: 5
    max_concurrent_queries: 16
    max_queued_requests: 1000
    retry_on_replica_failure: 2
    user_config: {layers: [1, 2], name: "x"}
  echo: {}
endpoints:
  mlp:
    traffic: {mlp: 0.75, echo: 0.25}
    shadow: {echo: 0.5}
    timeout_ms: 5000
    route: /v1/mlp
    methods: [post, GET]
  echo:
    backend: echo
    methods: PUT
)");
}

// Broker inputs (format: broker_fuzzer.h).
class Ops {
 public:
  // kind 0 (with the loop tail) or 2 (a burst), to the target's own side.
  Ops& Own(const std::vector<std::string>& frames, bool burst = false) {
    return Message(burst ? 2 : 0, frames);
  }
  Ops& Other(const std::vector<std::string>& frames) { return Message(3, frames); }
  Ops& Answer(uint8_t arg = 0) { return Op(4, arg); }
  Ops& Advance(uint16_t ms) {
    Op(5, 0);
    w_.U16(ms);
    return *this;
  }
  Ops& Config(uint8_t which) { return Op(6, which); }
  Ops& ConfigFrame(const std::string& snapshot) {
    Op(6, 2);
    w_.Frame(snapshot);
    return *this;
  }
  Ops& Status() { return Op(7, 0); }
  const std::string& bytes() const { return w_.bytes(); }

 private:
  Ops& Op(uint8_t kind, uint8_t arg) {
    w_.U8(static_cast<uint8_t>(kind | (arg << 3)));
    return *this;
  }
  Ops& Message(uint8_t kind, const std::vector<std::string>& frames) {
    Op(kind, static_cast<uint8_t>(frames.size() - 1));
    w_.Frames(frames);
    return *this;
  }
  FuzzWriter w_;
};

std::string Req(uint64_t id, const std::string& endpoint, const std::string& shard = "",
                int32_t priority = 0, uint32_t timeout_ms = 0) {
  return sc::EncodeRequest({id, endpoint, "__call__", timeout_ms, shard, priority});
}

std::string Byte(broker::mdp::WorkerCommand c) { return std::string(1, static_cast<char>(c)); }

void BrokerClientSeeds() {
  const std::string t = "fuzz_broker_client";
  Write(t, "request", Ops().Own({"c1", Req(1, "ep"), "hello"}).Answer().bytes());
  Write(t, "batch",
        Ops()
            .Own({"c1", Req(1, "batched"), "a"}, true)
            .Own({"c1", Req(2, "batched"), "b"}, true)
            .Own({"c1", Req(3, "batched", "", 0, 50), "c"})
            .Advance(6)
            .Answer()
            .bytes());
  Write(t, "status", Ops().Own({"c1", sc::EncodeStatusRequest(5)}).Status().bytes());
  Write(t, "requests",
        Ops()
            .Own({"c1",
                  sc::EncodeRequests({{1, "ep", "__call__", 0, "", 0},
                                      {2, "nope", "__call__", 0, "", 0},
                                      {3, "ep", "__call__", 0, "k", 1}}),
                  "a", "b", "c"})
            .Own({"c1", sc::EncodeRequests({{4, "ep", "__call__", 0, "", 0}}), "x", "y"})
            .Answer()
            .bytes());
  // Packed payloads (PROTOCOL.md 3.1): in one frame, over two, and sizes
  // that do not lay out.
  const std::vector<sc::RequestHeader> three = {{1, "ep", "__call__", 0, "", 0},
                                                {2, "nope", "__call__", 0, "", 0},
                                                {3, "ep", "__call__", 0, "k", 1}};
  Write(t, "requests_packed",
        Ops()
            .Own({"c1", sc::EncodeRequests(three, std::vector<uint64_t>{1, 0, 2}), "abc"})
            .Own({"c1", sc::EncodeRequests(three, std::vector<uint64_t>{2, 1, 1}), "ab", "cd"})
            .Own({"c1", sc::EncodeRequests(three, std::vector<uint64_t>{2, 2, 2}), "abc", "def"})
            .Answer()
            .bytes());
  Write(t, "mdp",
        Ops()
            .Own({"c1", "", "MDPC01", "ep", "body"})
            .Own({"c1", "", "MDPC01", "mmi.service", "ep"})
            .Own({"c1", "", "MDPC01", "mmi.other"})
            .Answer(4)
            .bytes());
  Write(t, "expire", Ops().Own({"c1", Req(1, "stuck"), "x"}).Advance(200).bytes());
  Write(t, "malformed",
        Ops()
            .Own({"c1", Req(1, "nope"), "x"})
            .Own({"c1", Req(2, "ep"), "x", "y"})
            .Own({"c1", Req(3, "ep")})
            .Own({"c1", "\x93\x01\x01\x05"})
            .Own({"c1"})
            .bytes());
  Write(t, "sticky_priority",
        Ops()
            .Own({"c1", Req(1, "ep", "user-1"), "x"})
            .Own({"c1", Req(2, "ep", "user-1", 5), "x"})
            .Own({"c1", Req(3, "ep", "", -1), "x"})
            .Answer(2)
            .Answer(1)
            .bytes());
  Ops overload;
  for (int i = 0; i < 30; ++i) overload.Own({"c1", Req(i, "ep"), "x"}, true);
  Write(t, "overload", overload.Answer().bytes());
  sc::Snapshot other = broker::BrokerFuzzer::OtherConfig();
  other.version = 3;
  Write(t, "config",
        Ops()
            .Own({"c1", Req(1, "ep"), "x"})
            .Config(1)
            .Own({"c1", Req(2, "new"), "x"})
            .ConfigFrame(sc::EncodeSnapshot(sc::Command::kSnapshot, other))
            .Answer()
            .Config(0)
            .bytes());
  Write(t, "lost_replicas",
        Ops()
            .Own({"c1", Req(1, "ep"), "x"})
            .Own({"c1", Req(2, "ep"), "x"})
            .Advance(5000)
            .Other({"w1", sc::EncodeSimple(sc::Command::kDisconnect)})
            .bytes());
}

void BrokerWorkerSeeds() {
  const std::string t = "fuzz_broker_worker";
  auto results = [](std::initializer_list<uint64_t> tokens) {
    std::vector<sc::ResultItem> items;
    for (uint64_t token : tokens) items.push_back({token, StatusCode::kOk, ""});
    return sc::EncodeResults(items);
  };
  const std::string reply = Byte(broker::mdp::WorkerCommand::kReply);
  // In flight after the prologue: 1 and 9 on w1, 2 on m1, 11 to 13 on w2
  // (ZSERVE_FUZZ_TRACE=1 shows it).
  Write(t, "results", Ops().Own({"w1", results({1}), "r"}).Own({"w1", results({9}), "r"}).bytes());
  Write(t, "results_batch", Ops().Own({"w2", results({11, 12, 13}), "a", "b", "c"}).bytes());
  std::vector<sc::ResultItem> three;
  for (uint64_t token : {11, 12, 13}) three.push_back({token, StatusCode::kOk, ""});
  Write(t, "results_packed",
        Ops()
            .Own({"w2", sc::EncodeResults(three, std::vector<uint64_t>{1, 2, 0}), "a", "bc"})
            .Own({"w1", sc::EncodeResults({{1, StatusCode::kOk, ""}}, std::vector<uint64_t>{3}),
                  "ab"})
            .bytes());
  Write(t, "results_mismatch", Ops().Own({"w1", results({1, 9}), "only one"}).bytes());
  Write(t, "results_error",
        Ops().Own({"w1", sc::EncodeResults({{1, StatusCode::kHandlerError, "boom"}}), ""}).bytes());
  Write(t, "mdp_reply", Ops().Own({"m1", "", "MDPW01", reply, "2", "", "r"}).bytes());
  Write(t, "ready",
        Ops()
            .Own({"w9", sc::EncodeReady({"batch", "w9", 1})})
            .Own({"w9", sc::EncodeReady({"batch", "w9", 1})})
            .Own({"m9", "", "MDPW01", Byte(broker::mdp::WorkerCommand::kReady), "a"})
            .bytes());
  Write(t, "ready_unknown_backend",
        Ops()
            .Own({"w9", sc::EncodeReady({"zz", "w9", 1})})
            .Own({"m9", "", "MDPW01", Byte(broker::mdp::WorkerCommand::kReady), "yy"})
            .Own({"w9", sc::EncodeSimple(sc::Command::kDisconnect)})
            .Own({"m9", "", "MDPW01", Byte(broker::mdp::WorkerCommand::kDisconnect)})
            .bytes());
  Write(t, "disconnect",
        Ops()
            .Own({"w1", sc::EncodeSimple(sc::Command::kDisconnect)})
            .Answer()
            .Own({"m1", "", "MDPW01", Byte(broker::mdp::WorkerCommand::kDisconnect)})
            .bytes());
  Write(t, "heartbeat",
        Ops()
            .Own({"w1", sc::EncodeSimple(sc::Command::kHeartbeat)})
            .Own({"zz", sc::EncodeSimple(sc::Command::kHeartbeat)})
            .Own({"m1", "", "MDPW01", Byte(broker::mdp::WorkerCommand::kHeartbeat)})
            .Advance(2000)
            .bytes());
  Write(t, "wrong_commands",
        Ops()
            .Own({"w1", sc::EncodeBatch({{1, "__call__", 5}}), "x"})
            .Own({"m1", "", "MDPW01", Byte(broker::mdp::WorkerCommand::kRequest), "1", "", "x"})
            .Own({"w1", "\x92\x02\x12"})
            .bytes());
  Write(t, "late", Ops().Advance(1500).Own({"w1", results({1}), "late"}).Answer().bytes());
  Write(t, "client_side", Ops().Other({"c1", Req(77, "ep"), "x"}).Answer(1).bytes());
}

}  // namespace
}  // namespace zserve::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fuzz_make_seeds <repo>\n";
    return 2;
  }
  namespace fs = std::filesystem;
  const fs::path repo = argv[1];
  zserve::fuzz::corpus_dir = repo / "fuzz" / "corpus";
  zserve::fuzz::CodecSeeds();
  zserve::fuzz::AdminSeeds();
  zserve::fuzz::DeploymentSeeds(repo);
  zserve::fuzz::BrokerClientSeeds();
  zserve::fuzz::BrokerWorkerSeeds();
  std::cout << "seeds written under " << zserve::fuzz::corpus_dir << "\n";
  return 0;
}
