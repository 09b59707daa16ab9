#include "worker/builtin_handlers.h"

#include <charconv>
#include <stdexcept>
#include <thread>

namespace zserve::worker {

std::vector<std::string> BuiltinHandlerNames() { return {"echo", "sleep", "fail"}; }

StatusOr<std::unique_ptr<Handler>> MakeBuiltinHandler(const std::string& name,
                                                      const BuiltinOptions& options) {
  if (name == "echo") {
    return MakeHandler([](const Request& r) -> Result { return std::string(r.payload); });
  }
  if (name == "sleep") {
    uint32_t fallback = options.sleep_ms;
    return MakeHandler([fallback](const Request& r) -> Result {
      uint32_t ms = fallback;
      const char* end = r.payload.data() + r.payload.size();
      uint32_t parsed;
      auto [ptr, ec] = std::from_chars(r.payload.data(), end, parsed);
      if (ec == std::errc() && ptr == end && !r.payload.empty()) ms = parsed;
      // The sleep is the handler's work, not synchronisation.
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      return std::string(r.payload);
    });
  }
  if (name == "fail") {
    return MakeHandler([](const Request& r) -> Result {
      if (r.payload.starts_with("throw:")) {
        throw std::runtime_error(std::string(r.payload.substr(6)));
      }
      if (r.payload.starts_with("error:")) return HandlerError(std::string(r.payload.substr(6)));
      return std::string(r.payload);
    });
  }
  std::string known;
  for (const std::string& n : BuiltinHandlerNames()) known += (known.empty() ? "" : ", ") + n;
  return BadRequest("unknown handler '" + name + "' (built-in handlers: " + known + ")");
}

}  // namespace zserve::worker
