// A bad plugin for the tests: create() lets a C++ exception out, against
// include/zserve/plugin.h; zserve must refuse it at load, not crash.
#include <stdexcept>

#include "zserve/plugin.h"

namespace {

void* Create(const char*, char*, size_t) { throw std::runtime_error("model weights are corrupt"); }

void Destroy(void*) {}

int HandleBatch(void*, const zserve_request*, size_t, zserve_reply_fn, void*) { return 0; }

}  // namespace

extern "C" ZSERVE_PLUGIN_EXPORT const zserve_plugin* zserve_plugin_v1(void) {
  static const zserve_plugin table = {
      ZSERVE_PLUGIN_ABI_VERSION, "create_throws", Create, Destroy, HandleBatch, nullptr, nullptr};
  return &table;
}
