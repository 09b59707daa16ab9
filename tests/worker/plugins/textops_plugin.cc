// A well-behaved handler plugin for the tests (include/zserve/plugin.h): a
// C++ class behind the C table.
//
// create(arg) "loads the model" (a byte table for upper-casing) and takes
// `arg` as the prefix of `upper` replies; an arg "fail:REASON" makes create()
// fail with REASON. Methods:
//   upper  the payload in upper case, after the prefix; an empty payload is
//          a BAD_REQUEST error of that request only.
//   len    the payload's length in bytes, as decimal text.
// reconfigure(user_config) replaces the prefix (an empty one restores the
// arg's); a user_config starting with "reject" is refused. Some payloads misbehave on purpose, to
// test how zserve copes: "noreply" is left unanswered, "twice" answered twice (first wins),
// "code:N" answered with error code N, "failbatch" makes handle_batch return
// non-zero after answering the others, "throw" makes it throw.
// Requests are answered last to first, to show order does not matter.
#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>

#include "zserve/plugin.h"

namespace {

void WriteError(const std::string& text, char* error, size_t size) {
  if (size == 0) return;
  size_t n = std::min(text.size(), size - 1);
  std::memcpy(error, text.data(), n);
  error[n] = '\0';
}

class TextOps {
 public:
  explicit TextOps(std::string prefix) : arg_prefix_(prefix), prefix_(std::move(prefix)) {
    for (size_t c = 0; c < upper_.size(); ++c) {
      upper_[c] = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
  }

  int HandleBatch(const zserve_request* requests, size_t n, zserve_reply_fn reply, void* ctx) {
    std::string prefix;
    {
      std::lock_guard<std::mutex> lock(mu_);
      prefix = prefix_;
    }
    bool fail_batch = false;
    for (size_t i = n; i-- > 0;) {
      std::string_view method(requests[i].method, requests[i].method_len);
      std::string_view payload(requests[i].payload, requests[i].payload_len);
      if (payload == "noreply") continue;
      if (payload == "throw") throw std::runtime_error("textops was asked to throw");
      if (payload == "failbatch") {
        fail_batch = true;
        continue;
      }
      if (payload.starts_with("code:")) {
        int code = std::stoi(std::string(payload.substr(5)));
        Reply(reply, ctx, i, code, "odd code");
        continue;
      }
      if (payload == "twice") {
        Reply(reply, ctx, i, ZSERVE_STATUS_OK, "first");
        Reply(reply, ctx, i, ZSERVE_STATUS_OK, "second");
        continue;
      }
      if (method == "len") {
        Reply(reply, ctx, i, ZSERVE_STATUS_OK, std::to_string(payload.size()));
      } else if (method == "upper") {
        if (payload.empty()) {
          Reply(reply, ctx, i, ZSERVE_STATUS_BAD_REQUEST, "upper: empty payload");
          continue;
        }
        std::string out = prefix;
        for (char c : payload) out += upper_[static_cast<unsigned char>(c)];
        Reply(reply, ctx, i, ZSERVE_STATUS_OK, out);
      } else {
        Reply(reply, ctx, i, ZSERVE_STATUS_HANDLER_ERROR, "no method " + std::string(method));
      }
    }
    return fail_batch ? 7 : 0;
  }

  int Reconfigure(std::string_view user_config, char* error, size_t size) {
    if (user_config.starts_with("reject")) {
      WriteError("textops does not take '" + std::string(user_config) + "'", error, size);
      return 1;
    }
    std::lock_guard<std::mutex> lock(mu_);
    prefix_ = user_config.empty() ? arg_prefix_ : std::string(user_config);
    return 0;
  }

 private:
  static void Reply(zserve_reply_fn reply, void* ctx, size_t i, int code, const std::string& s) {
    reply(ctx, i, code, s.data(), s.size());
  }

  std::array<char, 256> upper_;  // the "model", read-only after construction
  const std::string arg_prefix_;
  std::mutex mu_;
  std::string prefix_;  // guarded by mu_
};

void* Create(const char* arg, char* error, size_t error_size) {
  try {
    std::string_view a(arg);
    if (a.starts_with("fail:")) {
      WriteError(std::string(a.substr(5)), error, error_size);
      return nullptr;
    }
    return new TextOps(std::string(a));
  } catch (const std::exception& e) {
    WriteError(e.what(), error, error_size);
    return nullptr;
  }
}

void Destroy(void* instance) { delete static_cast<TextOps*>(instance); }

// Lets "throw" out on purpose (see above); a real plugin catches here.
int HandleBatch(void* instance, const zserve_request* requests, size_t n, zserve_reply_fn reply,
                void* ctx) {
  return static_cast<TextOps*>(instance)->HandleBatch(requests, n, reply, ctx);
}

int Reconfigure(void* instance, const char* user_config, size_t len, char* error,
                size_t error_size) {
  try {
    return static_cast<TextOps*>(instance)->Reconfigure(std::string_view(user_config, len), error,
                                                        error_size);
  } catch (const std::exception& e) {
    WriteError(e.what(), error, error_size);
    return 1;
  }
}

const char* const kMethods[] = {"upper", "len", nullptr};

}  // namespace

extern "C" ZSERVE_PLUGIN_EXPORT const zserve_plugin* zserve_plugin_v1(void) {
  static const zserve_plugin table = {
      .abi_version = ZSERVE_PLUGIN_ABI_VERSION,
      .name = "textops",
      .create = Create,
      .destroy = Destroy,
      .handle_batch = HandleBatch,
      .reconfigure = Reconfigure,
      .methods = kMethods,
  };
  return &table;
}
