#include "controller/config_store.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <variant>
#include <vector>

#include "schemas/codec.h"

namespace zserve::controller {
namespace {

namespace sc = zserve::schemas;

constexpr int kApplicationId = 0x7a737276;  // "zsrv"
// 1: the first; 2: endpoints' route and methods (docs/http.md). A store of
// version 1 is migrated when opened: its endpoints get no route and the
// default methods.
constexpr int kSchemaVersion = 2;

constexpr const char* kSchema = R"sql(
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE backends (
  name TEXT PRIMARY KEY, handler TEXT NOT NULL, num_replicas INTEGER NOT NULL,
  max_batch_size INTEGER NOT NULL, batch_wait_timeout_ms INTEGER NOT NULL,
  max_concurrent_queries INTEGER NOT NULL, max_queued_requests INTEGER NOT NULL,
  retry_on_replica_failure INTEGER NOT NULL, user_config TEXT NOT NULL);
CREATE TABLE endpoints (name TEXT PRIMARY KEY, timeout_ms INTEGER NOT NULL,
  route TEXT NOT NULL DEFAULT '', methods TEXT NOT NULL DEFAULT 'GET,POST');
CREATE TABLE policies (
  endpoint TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('traffic', 'shadow')),
  backend TEXT NOT NULL, weight REAL NOT NULL, PRIMARY KEY (endpoint, kind, backend));
INSERT INTO meta VALUES ('version', 0);
)sql";

using Value = std::variant<int64_t, double, std::string>;

// One prepared statement, finalized on scope exit.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
    prepared_ = rc_ == SQLITE_OK;
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Binds `values` (after a reset) and steps to the end: for writes.
  Status Run(const std::vector<Value>& values) {
    if (!prepared_) return Error();
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    for (size_t i = 0; i < values.size(); ++i) {
      int at = static_cast<int>(i) + 1;
      if (const auto* n = std::get_if<int64_t>(&values[i])) {
        sqlite3_bind_int64(stmt_, at, *n);
      } else if (const auto* d = std::get_if<double>(&values[i])) {
        sqlite3_bind_double(stmt_, at, *d);
      } else {
        const std::string& s = std::get<std::string>(values[i]);
        sqlite3_bind_text(stmt_, at, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
      }
    }
    while ((rc_ = sqlite3_step(stmt_)) == SQLITE_ROW) {
    }
    return rc_ == SQLITE_DONE ? Status::Ok() : Error();
  }

  // Steps once: true while there is a row; check status() after false.
  bool Next() {
    if (!prepared_ || (rc_ != SQLITE_OK && rc_ != SQLITE_ROW)) return false;
    rc_ = sqlite3_step(stmt_);
    return rc_ == SQLITE_ROW;
  }
  Status status() const {
    return rc_ == SQLITE_DONE || rc_ == SQLITE_ROW || rc_ == SQLITE_OK ? Status::Ok() : Error();
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  double Real(int col) const { return sqlite3_column_double(stmt_, col); }
  std::string Text(int col) const {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string();
  }

 private:
  Status Error() const { return Internal(sqlite3_errmsg(db_)); }
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
  bool prepared_;
};

Status Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) == SQLITE_OK) return Status::Ok();
  std::string message = err ? err : sqlite3_errmsg(db);
  sqlite3_free(err);
  return Internal(message);
}

// The single integer or text a PRAGMA returns.
StatusOr<std::string> Pragma(sqlite3* db, const std::string& sql) {
  Statement st(db, sql.c_str());
  std::string out = st.Next() ? st.Text(0) : "";
  if (Status s = st.status(); !s.ok()) return s;
  return out;
}

uint32_t U32(int64_t v) { return static_cast<uint32_t>(v); }

// An endpoint's HTTP methods as stored: "GET,POST".
std::string JoinMethods(const std::vector<std::string>& methods) {
  std::string out;
  for (const std::string& m : methods) out += (out.empty() ? "" : ",") + m;
  return out;
}

std::vector<std::string> SplitMethods(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    out.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// Schema 1 -> 2: the two endpoint columns, with their defaults.
constexpr const char* kMigrateTo2 = R"sql(
ALTER TABLE endpoints ADD COLUMN route TEXT NOT NULL DEFAULT '';
ALTER TABLE endpoints ADD COLUMN methods TEXT NOT NULL DEFAULT 'GET,POST';
PRAGMA user_version=2;
)sql";

}  // namespace

StatusOr<std::unique_ptr<ConfigStore>> ConfigStore::Open(const std::string& path) {
  bool in_memory = path == ":memory:";
  struct stat st {};
  bool exists = !in_memory && stat(path.c_str(), &st) == 0;
  if (exists && !S_ISREG(st.st_mode)) {
    return BadRequest("store '" + path + "' is not a regular file");
  }
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (exists ? 0 : SQLITE_OPEN_CREATE);
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  std::unique_ptr<ConfigStore> store(new ConfigStore(path, db));  // closes db on every path
  if (rc != SQLITE_OK) {
    return Unavailable("cannot open store '" + path +
                       "': " + (db ? sqlite3_errmsg(db) : "out of memory"));
  }
  Status s = store->Init(/*create=*/!exists || st.st_size == 0);  // or empty: Init()
  if (s.ok()) s = store->Load();
  if (!s.ok()) {
    return Status(s.code(), "store '" + path + "' refused (left as it is): " + s.message());
  }
  return store;
}

ConfigStore::~ConfigStore() { sqlite3_close(db_); }

Status ConfigStore::Init(bool create) {
  sqlite3_extended_result_codes(db_, 1);
  // Exclusive: one controller per store. WAL: a commit appends to the log;
  // FULL: the log is fsynced at each commit, before Replace() returns.
  if (Status s = Exec(db_, "PRAGMA locking_mode=EXCLUSIVE"); !s.ok()) return s;
  StatusOr<std::string> app = Pragma(db_, "PRAGMA application_id");
  if (!app.ok()) {
    if ((sqlite3_errcode(db_) & 0xff) == SQLITE_BUSY) {
      return Unavailable("it is in use by another process (another controller?)");
    }
    return BadRequest("not a readable SQLite database: " + app.status().message());
  }
  if (!create && *app == "0") {
    // A controller killed during its first start leaves a file whose page 1
    // PRAGMA journal_mode wrote, without the schema: new, if it holds
    // nothing of anyone's (no table, view, index or trigger, no user_version).
    StatusOr<std::string> entries = Pragma(db_, "SELECT count(*) FROM sqlite_master");
    StatusOr<std::string> user_version = Pragma(db_, "PRAGMA user_version");
    create = entries.ok() && *entries == "0" && user_version.ok() && *user_version == "0";
  }
  if (!create && *app != std::to_string(kApplicationId)) {
    return BadRequest("not a zserve store (SQLite application_id " + *app + ")");
  }
  StatusOr<std::string> journal = Pragma(db_, "PRAGMA journal_mode=WAL");
  if (!journal.ok() || *journal != "wal") {
    if ((sqlite3_errcode(db_) & 0xff) == SQLITE_BUSY) {
      return Unavailable("it is in use by another process (another controller?)");
    }
    if (path_ != ":memory:") {
      return Internal("cannot switch to WAL mode: " +
                      (journal.ok() ? *journal : journal.status().message()));
    }
  }
  if (Status s = Exec(db_, "PRAGMA synchronous=FULL"); !s.ok()) return s;
  if (create) {
    std::string sql = std::string("BEGIN IMMEDIATE;") + kSchema +
                      "PRAGMA application_id=" + std::to_string(kApplicationId) +
                      "; PRAGMA user_version=" + std::to_string(kSchemaVersion) + "; COMMIT;";
    if (Status s = Exec(db_, sql.c_str()); !s.ok()) {
      (void)Exec(db_, "ROLLBACK");
      return Internal("cannot create the store: " + s.message());
    }
    return Status::Ok();
  }
  StatusOr<std::string> check = Pragma(db_, "PRAGMA quick_check");
  if (!check.ok() || *check != "ok") {
    return BadRequest("integrity check failed: " +
                      (check.ok() ? *check : check.status().message()));
  }
  StatusOr<std::string> schema = Pragma(db_, "PRAGMA user_version");
  if (schema.ok() && *schema == "1") {
    std::string sql = std::string("BEGIN IMMEDIATE;") + kMigrateTo2 + "COMMIT;";
    if (Status s = Exec(db_, sql.c_str()); !s.ok()) {
      (void)Exec(db_, "ROLLBACK");
      return Internal("cannot migrate the store from schema version 1: " + s.message());
    }
    schema = Pragma(db_, "PRAGMA user_version");
  }
  if (!schema.ok() || *schema != std::to_string(kSchemaVersion)) {
    return BadRequest("store schema version " + (schema.ok() ? *schema : "?") +
                      " is not the supported " + std::to_string(kSchemaVersion));
  }
  return Status::Ok();
}

Status ConfigStore::Load() {
  sc::ConfigState state;
  uint64_t version = 0;
  {
    Statement st(db_, "SELECT value FROM meta WHERE key = 'version'");
    if (!st.Next()) return BadRequest("no version in the store: " + st.status().message());
    version = static_cast<uint64_t>(st.Int(0));
  }
  Statement backends(db_,
                     "SELECT name, handler, num_replicas, max_batch_size, batch_wait_timeout_ms, "
                     "max_concurrent_queries, max_queued_requests, retry_on_replica_failure, "
                     "user_config FROM backends");
  while (backends.Next()) {
    sc::BackendConfig b{backends.Text(0),     backends.Text(1),     U32(backends.Int(2)),
                        U32(backends.Int(3)), U32(backends.Int(4)), U32(backends.Int(5)),
                        U32(backends.Int(6)), U32(backends.Int(7)), backends.Text(8)};
    state.backends[b.name] = std::move(b);
  }
  Statement endpoints(db_, "SELECT name, timeout_ms, route, methods FROM endpoints");
  while (endpoints.Next()) {
    sc::EndpointConfig e;
    e.name = endpoints.Text(0);
    e.timeout_ms = U32(endpoints.Int(1));
    e.route = endpoints.Text(2);
    e.methods = SplitMethods(endpoints.Text(3));
    state.endpoints[e.name] = std::move(e);
  }
  Statement policies(db_, "SELECT endpoint, kind, backend, weight FROM policies");
  while (policies.Next()) {
    auto e = state.endpoints.find(policies.Text(0));
    if (e == state.endpoints.end()) return BadRequest("a policy of an unknown endpoint");
    (policies.Text(1) == "traffic" ? e->second.traffic : e->second.shadow)[policies.Text(2)] =
        policies.Real(3);
  }
  for (const Statement* st : {&backends, &endpoints, &policies}) {
    if (Status s = st->status(); !s.ok()) return BadRequest("cannot read: " + s.message());
  }
  if (Status s = sc::Validate(state); !s.ok()) {
    return BadRequest("it holds an invalid configuration: " + s.message());
  }
  version_ = version;
  state_ = std::move(state);
  return Status::Ok();
}

StatusOr<bool> ConfigStore::Replace(sc::ConfigState next) {
  if (Status s = sc::Validate(next); !s.ok()) return s;
  if (version_ > 0 && next == state_) return false;
  // Every change passes here: none may commit a state that a SNAPSHOT, an
  // UPDATE or an ADMIN_REPLY cannot carry.
  if (size_t bytes = sc::EncodedStateBytes(next); bytes > sc::kMaxStateBytes) {
    return BadRequest("the configuration would take " + std::to_string(bytes) +
                      " bytes encoded, more than the " + std::to_string(sc::kMaxStateBytes) +
                      " one SNAPSHOT carries (schemas/PROTOCOL.md §3): make user_configs "
                      "smaller or the deployment fewer");
  }
  if (Status s = Exec(db_, "BEGIN IMMEDIATE"); !s.ok()) {
    return Internal("store '" + path_ + "': cannot begin: " + s.message());
  }
  if (Status s = Write(next, version_ + 1); !s.ok()) {
    (void)Exec(db_, "ROLLBACK");
    return Internal("store '" + path_ + "': write failed, nothing changed: " + s.message());
  }
  if (Status s = Exec(db_, "COMMIT"); !s.ok()) {
    (void)Exec(db_, "ROLLBACK");
    return Internal("store '" + path_ + "': commit failed, nothing changed: " + s.message());
  }
  state_ = std::move(next);
  ++version_;
  return true;
}

// Writes only what differs from the state held.
Status ConfigStore::Write(const sc::ConfigState& next, uint64_t version) {
  Statement put_backend(db_, "INSERT OR REPLACE INTO backends VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  Statement del_backend(db_, "DELETE FROM backends WHERE name = ?");
  Statement put_endpoint(db_, "INSERT OR REPLACE INTO endpoints VALUES (?, ?, ?, ?)");
  Statement del_endpoint(db_, "DELETE FROM endpoints WHERE name = ?");
  Statement put_policy(db_, "INSERT INTO policies VALUES (?, ?, ?, ?)");
  Statement del_policies(db_, "DELETE FROM policies WHERE endpoint = ?");
  Statement set_version(db_, "UPDATE meta SET value = ? WHERE key = 'version'");
  Status s;
  for (const auto& [name, b] : state_.backends) {
    if (s.ok() && !next.backends.contains(name)) s = del_backend.Run({name});
  }
  for (const auto& [name, b] : next.backends) {
    auto was = state_.backends.find(name);
    if (!s.ok() || (was != state_.backends.end() && was->second == b)) continue;
    s = put_backend.Run({b.name, b.handler, int64_t{b.num_replicas}, int64_t{b.max_batch_size},
                         int64_t{b.batch_wait_timeout_ms}, int64_t{b.max_concurrent_queries},
                         int64_t{b.max_queued_requests}, int64_t{b.retry_on_replica_failure},
                         b.user_config});
  }
  for (const auto& [name, e] : state_.endpoints) {
    if (s.ok() && !next.endpoints.contains(name)) s = del_endpoint.Run({name});
    if (s.ok() && !next.endpoints.contains(name)) s = del_policies.Run({name});
  }
  for (const auto& [name, e] : next.endpoints) {
    auto was = state_.endpoints.find(name);
    if (!s.ok() || (was != state_.endpoints.end() && was->second == e)) continue;
    s = put_endpoint.Run({e.name, int64_t{e.timeout_ms}, e.route, JoinMethods(e.methods)});
    if (s.ok()) s = del_policies.Run({name});
    for (const auto& [backend, w] : e.traffic) {
      if (s.ok()) s = put_policy.Run({name, std::string("traffic"), backend, w});
    }
    for (const auto& [backend, f] : e.shadow) {
      if (s.ok()) s = put_policy.Run({name, std::string("shadow"), backend, f});
    }
  }
  if (s.ok()) s = set_version.Run({static_cast<int64_t>(version)});
  return s;
}

}  // namespace zserve::controller
