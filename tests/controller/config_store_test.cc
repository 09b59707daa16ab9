// The SQLite store (controller/config_store.h): what is committed is there
// after reopening, with its version; a missing file starts empty; a file that
// is not a zserve store is refused and left untouched; one controller per
// store.
#include "controller/config_store.h"

#include <sqlite3.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "schemas/codec.h"
#include "tests/e2e/process.h"

namespace {

using Catch::Matchers::Contains;
using zserve::StatusCode;
using zserve::controller::ConfigStore;
namespace sc = zserve::schemas;

// Removed after a run that passes (tests/e2e/process.h).
std::string TempDir() { return zserve::testing::MakeTempDir(); }

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

sc::ConfigState State(uint32_t replicas, double weight_a) {
  sc::ConfigState s;
  for (const char* name : {"a", "b"}) {
    sc::BackendConfig b;
    b.name = name;
    b.handler = "echo";
    b.num_replicas = replicas;
    b.user_config = std::string("{\"for\": \"") + name + "\"}";
    s.backends[name] = b;
  }
  sc::EndpointConfig e;
  e.name = "ep";
  e.traffic = {{"a", weight_a}, {"b", 1.0 - weight_a}};
  e.shadow = {{"b", 0.1}};
  e.timeout_ms = 1234;
  s.endpoints["ep"] = e;
  return s;
}

// A SQLite database at `path` that `sql` was run on.
std::string SqliteFile(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  return path;
}

// Backends with large user_configs until the state takes `bytes` encoded.
sc::ConfigState StateOfBytes(size_t bytes) {
  sc::ConfigState s;
  size_t each = 0;  // what one backend adds (their names are of one length)
  for (int i = 0; each == 0 || sc::EncodedStateBytes({}) + s.backends.size() * each < bytes; ++i) {
    sc::BackendConfig b;
    b.name = "b" + std::to_string(1000 + i);
    b.handler = "echo";
    b.user_config = std::string(60'000, 'q');
    s.backends[b.name] = b;
    if (each == 0) each = sc::EncodedStateBytes(s) - sc::EncodedStateBytes({});
  }
  // The last one's user_config takes off what is too much (its string
  // header stays 3 bytes: it keeps more than 255).
  std::string& last = s.backends.rbegin()->second.user_config;
  last.resize(last.size() - (sc::EncodedStateBytes(s) - bytes));
  return s;
}

}  // namespace

TEST_CASE("A missing store starts empty at version 0 and creates the file", "[controller]") {
  std::string path = TempDir() + "/c.db";
  auto store = ConfigStore::Open(path);
  REQUIRE(store.ok());
  CHECK((*store)->version() == 0);
  CHECK((*store)->state() == sc::ConfigState{});
  CHECK(access(path.c_str(), F_OK) == 0);
}

TEST_CASE("Committed states and versions survive reopening the store", "[controller]") {
  std::string path = TempDir() + "/c.db";
  sc::ConfigState last;
  {
    auto store = ConfigStore::Open(path);
    REQUIRE(store.ok());
    for (uint32_t i = 1; i <= 20; ++i) {
      last = State(i % 4, 0.05 * i);
      auto r = (*store)->Replace(last);
      REQUIRE(r.ok());
      CHECK(*r);
    }
    // Deleting an endpoint and a backend is stored too.
    last.endpoints.clear();
    last.backends.erase("b");
    REQUIRE((*store)->Replace(last).ok());
    CHECK((*store)->version() == 21);
  }
  auto again = ConfigStore::Open(path);
  REQUIRE(again.ok());
  CHECK((*again)->version() == 21);
  CHECK((*again)->state() == last);
}

TEST_CASE("Weights read back exactly", "[controller]") {
  std::string path = TempDir() + "/c.db";
  sc::ConfigState s = State(1, 0.1);
  s.endpoints.at("ep").traffic = {{"a", 1.0 / 3}, {"b", 2.0 / 3}};
  {
    auto store = ConfigStore::Open(path);
    REQUIRE(store.ok());
    REQUIRE((*store)->Replace(s).ok());
  }
  auto again = ConfigStore::Open(path);
  REQUIRE(again.ok());
  CHECK((*again)->state() == s);
}

TEST_CASE("A refused state changes neither memory nor disk", "[controller]") {
  std::string path = TempDir() + "/c.db";
  sc::ConfigState good = State(1, 0.5);
  {
    auto store = ConfigStore::Open(path);
    REQUIRE(store.ok());
    REQUIRE((*store)->Replace(good).ok());
    sc::ConfigState bad = good;
    bad.backends.at("a").max_batch_size = 0;
    auto r = (*store)->Replace(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::kBadRequest);
    CHECK((*store)->version() == 1);
    CHECK((*store)->state() == good);
  }
  auto again = ConfigStore::Open(path);
  REQUIRE(again.ok());
  CHECK((*again)->version() == 1);
  CHECK((*again)->state() == good);
}

TEST_CASE("A file that is not a database is refused and left as it is", "[controller]") {
  std::string path = TempDir() + "/garbage.db";
  std::ofstream(path) << "this is not SQLite, it is someone's notes\n";
  const std::string before = Slurp(path);
  auto store = ConfigStore::Open(path);
  REQUIRE_FALSE(store.ok());
  CHECK_THAT(store.status().message(), Contains(path));
  CHECK_THAT(store.status().message(), Contains("refused"));
  CHECK(Slurp(path) == before);
}

TEST_CASE("A SQLite database of another program is refused and left as it is", "[controller]") {
  // With a table; or with none but a user_version, so not the empty file of
  // a first start that was killed (below).
  const char* sql =
      GENERATE("CREATE TABLE t (x); INSERT INTO t VALUES (1);", "PRAGMA user_version=7");
  std::string path = SqliteFile(TempDir() + "/other.db", sql);
  const std::string before = Slurp(path);
  auto store = ConfigStore::Open(path);
  REQUIRE_FALSE(store.ok());
  CHECK_THAT(store.status().message(), Contains("not a zserve store"));
  CHECK(Slurp(path) == before);
}

TEST_CASE("A store killed before its first commit opens as new", "[controller]") {
  // What a controller killed during its first start leaves: switching to
  // WAL wrote page 1, the schema was never committed (application_id 0).
  std::string path = SqliteFile(TempDir() + "/c.db", "PRAGMA journal_mode=WAL");
  REQUIRE(Slurp(path).size() > 0);
  {
    auto store = ConfigStore::Open(path);
    REQUIRE(store.ok());
    CHECK((*store)->version() == 0);
    REQUIRE((*store)->Replace(State(1, 0.5)).ok());
  }
  auto again = ConfigStore::Open(path);
  REQUIRE(again.ok());
  CHECK((*again)->version() == 1);
  CHECK((*again)->state() == State(1, 0.5));
}

TEST_CASE("A corrupted store is refused, not replaced", "[controller]") {
  std::string path = TempDir() + "/c.db";
  {
    auto store = ConfigStore::Open(path);
    REQUIRE(store.ok());
    for (uint32_t i = 1; i <= 5; ++i) REQUIRE((*store)->Replace(State(i, 0.5)).ok());
  }
  // Overwrite every page after the header with garbage.
  std::string bytes = Slurp(path);
  REQUIRE(bytes.size() > 4096);
  for (size_t i = 100; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 7);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  auto store = ConfigStore::Open(path);
  REQUIRE_FALSE(store.ok());
  CHECK_THAT(store.status().message(), Contains("refused"));
  CHECK(Slurp(path) == bytes);
}

TEST_CASE("A second store on the same file is refused while the first is open", "[controller]") {
  std::string path = TempDir() + "/c.db";
  auto first = ConfigStore::Open(path);
  REQUIRE(first.ok());
  auto second = ConfigStore::Open(path);
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().code() == StatusCode::kUnavailable);
  CHECK_THAT(second.status().message(), Contains("in use"));
}

TEST_CASE("Routes and methods survive reopening the store", "[controller]") {
  std::string path = TempDir() + "/c.db";
  sc::ConfigState s = State(1, 0.5);
  s.endpoints.at("ep").route = "/v1/ep";
  s.endpoints.at("ep").methods = {"PUT", "GET", "PATCH"};
  {
    auto store = ConfigStore::Open(path);
    REQUIRE(store.ok());
    REQUIRE((*store)->Replace(s).ok());
  }
  auto again = ConfigStore::Open(path);
  REQUIRE(again.ok());
  CHECK((*again)->state() == s);
}

TEST_CASE("A store of schema version 1 is migrated: no routes and default methods",
          "[controller]") {
  // A store as the controller wrote it before the HTTP gateway.
  std::string path = TempDir() + "/v1.db";
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    const char* v1 = R"sql(
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE backends (
  name TEXT PRIMARY KEY, handler TEXT NOT NULL, num_replicas INTEGER NOT NULL,
  max_batch_size INTEGER NOT NULL, batch_wait_timeout_ms INTEGER NOT NULL,
  max_concurrent_queries INTEGER NOT NULL, max_queued_requests INTEGER NOT NULL,
  retry_on_replica_failure INTEGER NOT NULL, user_config TEXT NOT NULL);
CREATE TABLE endpoints (name TEXT PRIMARY KEY, timeout_ms INTEGER NOT NULL);
CREATE TABLE policies (
  endpoint TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('traffic', 'shadow')),
  backend TEXT NOT NULL, weight REAL NOT NULL, PRIMARY KEY (endpoint, kind, backend));
INSERT INTO meta VALUES ('version', 7);
INSERT INTO backends VALUES ('a', 'echo', 1, 1, 0, 0, 100000, 1, '');
INSERT INTO endpoints VALUES ('ep', 1234);
INSERT INTO policies VALUES ('ep', 'traffic', 'a', 1.0);
PRAGMA application_id=2054386294;
PRAGMA user_version=1;
)sql";
    REQUIRE(sqlite3_exec(db, v1, nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  sc::ConfigState want;
  {
    auto store = ConfigStore::Open(path);
    REQUIRE(store.ok());
    CHECK((*store)->version() == 7);
    const sc::EndpointConfig& e = (*store)->state().endpoints.at("ep");
    CHECK(e.timeout_ms == 1234);
    CHECK(e.route.empty());
    CHECK(e.methods == std::vector<std::string>{"GET", "POST"});
    want = (*store)->state();
    want.endpoints.at("ep").route = "/ep";
    auto r = (*store)->Replace(want);
    REQUIRE(r.ok());
    CHECK(*r);
  }
  auto again = ConfigStore::Open(path);
  REQUIRE(again.ok());
  CHECK((*again)->version() == 8);
  CHECK((*again)->state() == want);
}

TEST_CASE("A state over what one SNAPSHOT carries is refused and nothing is committed",
          "[controller]") {
  std::string path = TempDir() + "/c.db";
  sc::ConfigState most = StateOfBytes(sc::kMaxStateBytes);
  REQUIRE(sc::EncodedStateBytes(most) == sc::kMaxStateBytes);
  sc::ConfigState over = StateOfBytes(sc::kMaxStateBytes + 1);
  REQUIRE(sc::EncodedStateBytes(over) == sc::kMaxStateBytes + 1);
  {
    auto store = ConfigStore::Open(path);
    REQUIRE(store.ok());
    REQUIRE((*store)->Replace(most).ok());
    REQUIRE((*store)->version() == 1);
    auto r = (*store)->Replace(over);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::kBadRequest);
    CHECK_THAT(r.status().message(), Contains(std::to_string(sc::kMaxStateBytes + 1) + " bytes"));
    CHECK_THAT(r.status().message(), Contains(std::to_string(sc::kMaxStateBytes)));
    CHECK((*store)->version() == 1);
    CHECK((*store)->state() == most);
  }
  auto again = ConfigStore::Open(path);
  REQUIRE(again.ok());
  CHECK((*again)->version() == 1);
}

TEST_CASE("Every header carrying the largest state fits and decodes", "[controller]") {
  sc::ConfigState most = StateOfBytes(sc::kMaxStateBytes);
  std::string update = sc::EncodeSnapshot(sc::Command::kUpdate, {9, most});
  CHECK(update.size() <= sc::kMaxStateHeaderBytes);
  auto snapshot = sc::DecodeSnapshot(update);
  REQUIRE(snapshot.ok());
  CHECK(snapshot->state == most);
  // An ADMIN_REPLY (GET_STATE's, or a change's) with the longest message and
  // more change lines, and longer, than it can carry.
  sc::AdminReply reply;
  reply.code = StatusCode::kBadRequest;
  reply.message = std::string(sc::kMaxMessageBytes + 10, 'm');
  reply.changes.assign(2 * sc::kMaxChangeLines, std::string(sc::kMaxMessageBytes + 10, 'c'));
  reply.state = most;
  std::string header = sc::EncodeAdminReply(reply);
  CHECK(header.size() <= sc::kMaxStateHeaderBytes);
  auto got = sc::DecodeAdminReply(header);
  REQUIRE(got.ok());
  CHECK(got->state == most);
  REQUIRE_FALSE(got->changes.empty());
  CHECK(got->changes.back() ==
        "... and " + std::to_string(2 * sc::kMaxChangeLines - got->changes.size() + 1) +
            " more changes");
  sc::AdminRequest apply;
  apply.command = sc::Command::kApply;
  apply.state = most;
  auto request = sc::DecodeAdminRequest(sc::EncodeAdminRequest(apply));
  REQUIRE(request.ok());
  CHECK(request->state == most);
}
