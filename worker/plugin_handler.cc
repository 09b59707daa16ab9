#include "worker/plugin_handler.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "zserve/plugin.h"

namespace zserve::worker {

namespace {

// Room for the reasons a plugin writes; longer ones are cut.
constexpr size_t kErrorSize = 1024;

struct LibraryCloser {
  void operator()(void* handle) const { dlclose(handle); }
};
using Library = std::unique_ptr<void, LibraryCloser>;

// The NUL-terminated text a plugin wrote to an error buffer, even if it
// forgot the NUL.
std::string ErrorText(const char* error, size_t size) {
  std::string text(error, strnlen(error, size));
  return text.empty() ? "no reason given" : text;
}

std::string DlError() {
  const char* e = dlerror();
  return e != nullptr ? e : "unknown dlopen error";
}

int64_t MillisecondsLeft(std::chrono::steady_clock::time_point deadline,
                         std::chrono::steady_clock::time_point now) {
  if (deadline <= now) return 0;
  return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
}

// The reply_ctx of one handle_batch() call: collects one answer per request.
// reply() may come from threads of the plugin's own, hence the lock.
class Replies {
 public:
  explicit Replies(size_t n) : results_(n) {}

  static void Reply(void* ctx, size_t index, int code, const char* data, size_t len) noexcept {
    static_cast<Replies*>(ctx)->Take(index, code, data, len);
  }

  // One Result per request: the plugin's answer, or HANDLER_ERROR
  // `unanswered` for a request it left without one.
  std::vector<Result> Finish(const std::string& unanswered) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Result> out;
    out.reserve(results_.size());
    for (std::optional<Result>& r : results_) {
      out.push_back(r ? std::move(*r) : Result(HandlerError(unanswered)));
    }
    return out;
  }

 private:
  void Take(size_t index, int code, const char* data, size_t len) noexcept {
    try {
      std::string bytes = len > 0 ? std::string(data, len) : std::string();
      std::lock_guard<std::mutex> lock(mu_);
      if (index >= results_.size() || results_[index]) return;  // ignored, as plugin.h says
      StatusCode status;
      if (code == ZSERVE_STATUS_OK) {
        results_[index] = Result(std::move(bytes));
      } else if (StatusCodeFromInt(code, &status) && status != StatusCode::kOk) {
        results_[index] = Result(Status(status, std::move(bytes)));
      } else {
        results_[index] = Result(HandlerError(std::move(bytes)));
      }
    } catch (...) {
      // Out of memory copying the reply: the request stays unanswered and
      // fails; nothing may unwind into the plugin's frames.
    }
  }

  std::mutex mu_;
  std::vector<std::optional<Result>> results_;  // guarded by mu_
};

class PluginHandler final : public Handler {
 public:
  PluginHandler(Library library, const zserve_plugin* table, void* instance, std::string name,
                std::vector<std::string> methods)
      : library_(std::move(library)),
        table_(table),
        instance_(instance),
        name_(std::move(name)),
        methods_(std::move(methods)) {}

  // The instance goes first, then (library_, the first member) the code.
  ~PluginHandler() override {
    try {
      table_->destroy(instance_);
    } catch (...) {
      // Against plugin.h; nothing to do but not to let it out of a destructor.
    }
  }

  std::vector<Result> HandleBatch(std::span<const Request> batch) override {
    std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now();
    std::vector<zserve_request> requests(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      requests[i] = {batch[i].method.data(), batch[i].method.size(), batch[i].payload.data(),
                     batch[i].payload.size(), MillisecondsLeft(batch[i].deadline, now)};
    }
    Replies replies(batch.size());
    // An exception (against plugin.h) goes on to the worker, which fails the
    // whole batch as for any Handler that throws. A non-zero return fails
    // only what is unanswered.
    int rc = table_->handle_batch(instance_, requests.data(), requests.size(), &Replies::Reply,
                                  &replies);
    return replies.Finish(rc == 0
                              ? "plugin '" + name_ + "' gave no result"
                              : "plugin '" + name_ + "' failed the batch (handle_batch returned " +
                                    std::to_string(rc) + ")");
  }

  std::vector<std::string> Methods() const override { return methods_; }

  Status Reconfigure(std::string_view user_config) override {
    if (table_->reconfigure == nullptr) return Status::Ok();
    std::string config(user_config);  // NUL-terminated, as plugin.h promises
    char error[kErrorSize] = {};
    try {
      if (table_->reconfigure(instance_, config.c_str(), config.size(), error, sizeof error) == 0) {
        return Status::Ok();
      }
      return BadRequest("plugin '" + name_ +
                        "' refused user_config: " + ErrorText(error, sizeof error));
    } catch (const std::exception& e) {
      return HandlerError("plugin '" + name_ + "' threw in reconfigure: " + e.what());
    } catch (...) {
      return HandlerError("plugin '" + name_ + "' threw a non-standard exception in reconfigure");
    }
  }

 private:
  Library library_;
  const zserve_plugin* table_;  // in library_
  void* instance_;              // the plugin's; destroyed by table_->destroy
  std::string name_;
  std::vector<std::string> methods_;
};

}  // namespace

StatusOr<std::unique_ptr<Handler>> LoadPluginHandler(const std::string& path,
                                                     const std::string& arg) {
  const std::string refused = "plugin '" + path + "' refused: ";
  if (path.empty()) return BadRequest("plugin path is empty");
  // dlopen searches the library path for a bare name; a user naming a file
  // means that file.
  const std::string file = path.find('/') == std::string::npos ? "./" + path : path;
  struct stat st;
  if (stat(file.c_str(), &st) != 0) {
    int err = errno;
    return err == ENOENT ? NotFound(refused + "no such file")
                         : BadRequest(refused + std::strerror(err));
  }
  if (S_ISDIR(st.st_mode)) return BadRequest(refused + "it is a directory");

  dlerror();  // clears a stale error
  Library library(dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL));
  if (!library) return BadRequest(refused + "cannot load it: " + DlError());

  dlerror();
  void* symbol = dlsym(library.get(), ZSERVE_PLUGIN_ENTRY);
  if (symbol == nullptr) {
    return BadRequest(refused + "it has no symbol '" ZSERVE_PLUGIN_ENTRY
                                "' (not a zserve plugin, or not exported with "
                                "ZSERVE_PLUGIN_EXPORT; see include/zserve/plugin.h)");
  }
  auto entry = reinterpret_cast<zserve_plugin_entry_fn>(symbol);
  const zserve_plugin* table = nullptr;
  try {
    table = entry();
  } catch (...) {
    return BadRequest(refused + ZSERVE_PLUGIN_ENTRY "() threw");
  }
  if (table == nullptr) return BadRequest(refused + ZSERVE_PLUGIN_ENTRY "() returned NULL");
  // abi_version is the first field in every version; nothing else is read
  // before it matches.
  if (table->abi_version != ZSERVE_PLUGIN_ABI_VERSION) {
    return BadRequest(refused + "plugin ABI version " + std::to_string(table->abi_version) +
                      ", this zserve speaks " + std::to_string(ZSERVE_PLUGIN_ABI_VERSION));
  }
  std::string missing;
  auto require = [&missing](bool present, const char* what) {
    if (!present) missing += (missing.empty() ? "" : ", ") + std::string(what);
  };
  require(table->create != nullptr, "create");
  require(table->destroy != nullptr, "destroy");
  require(table->handle_batch != nullptr, "handle_batch");
  if (!missing.empty()) {
    return BadRequest(refused + "its table lacks required functions: " + missing);
  }
  std::string name = table->name != nullptr && table->name[0] != '\0'
                         ? table->name
                         : path.substr(path.find_last_of('/') + 1);
  std::vector<std::string> methods;
  for (const char* const* m = table->methods; m != nullptr && *m != nullptr; ++m) {
    if (**m == '\0') return BadRequest(refused + "its method list has an empty name");
    methods.emplace_back(*m);
  }

  char error[kErrorSize] = {};
  void* instance = nullptr;
  try {
    instance = table->create(arg.c_str(), error, sizeof error);
  } catch (const std::exception& e) {
    return BadRequest(refused + "create() threw: " + e.what() +
                      " (a plugin must not throw across the C ABI)");
  } catch (...) {
    return BadRequest(refused + "create() threw a non-standard exception");
  }
  if (instance == nullptr) {
    return BadRequest(refused + "create() failed: " + ErrorText(error, sizeof error));
  }
  return std::unique_ptr<Handler>(std::make_unique<PluginHandler>(
      std::move(library), table, instance, std::move(name), std::move(methods)));
}

}  // namespace zserve::worker
