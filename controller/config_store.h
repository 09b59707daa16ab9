// The controller's durable, versioned configuration: a SQLite database in WAL
// mode. Every accepted change is validated and committed in one transaction
// as version + 1 before Replace() returns; a change that changes nothing
// keeps the version. The whole state is also held in memory for reading.
//
// Durability: synchronous=FULL, so a commit is on disk (the WAL fsynced) when
// Replace() returns; neither `kill -9` nor a power cut loses it. The database
// is opened with an exclusive lock: a second controller on the same file is
// refused. A missing file starts empty (version 0), and so does an empty
// SQLite database (no table, application_id and user_version 0: a first
// start killed before its schema committed); a file that is not a
// zserve store, or fails SQLite's integrity check, is refused and left as it
// is.
//
// Not thread-safe: owned by the controller's I/O thread.
#ifndef ZSERVE_CONTROLLER_CONFIG_STORE_H_
#define ZSERVE_CONTROLLER_CONFIG_STORE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "schemas/config.h"
#include "zserve/status.h"

struct sqlite3;

namespace zserve::controller {

class ConfigStore {
 public:
  // Opens or creates the store at `path`; ":memory:" is a store that lives
  // only as long as the object (for tests).
  static StatusOr<std::unique_ptr<ConfigStore>> Open(const std::string& path);
  ~ConfigStore();
  ConfigStore(const ConfigStore&) = delete;
  ConfigStore& operator=(const ConfigStore&) = delete;

  const std::string& path() const { return path_; }
  uint64_t version() const { return version_; }
  const schemas::ConfigState& state() const { return state_; }

  // Validates and commits `next`. True if it changed the state (version + 1),
  // false if it was the same; an invalid state, one past kMaxStateBytes
  // encoded (what one SNAPSHOT carries), or a failed write, is refused and
  // nothing changes.
  StatusOr<bool> Replace(schemas::ConfigState next);

 private:
  ConfigStore(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}
  Status Init(bool create);
  Status Load();
  Status Write(const schemas::ConfigState& next, uint64_t version);

  std::string path_;
  sqlite3* db_;
  uint64_t version_ = 0;
  schemas::ConfigState state_;
};

}  // namespace zserve::controller

#endif  // ZSERVE_CONTROLLER_CONFIG_STORE_H_
