/* Handler plugins in C for the tests (which also keeps include/zserve/plugin.h
 * valid C): one source, built once per variant by tests/worker/CMakeLists.txt.
 *   (none)                 minimal: echoes every request of every method; no
 *                          state, no reconfigure, no method list
 *   PLUGIN_WRONG_ABI       its table says ABI version 2
 *   PLUGIN_MISSING_FUNCTION  its table lacks handle_batch
 *   PLUGIN_CREATE_FAILS    create() cannot load its model and says why
 *   PLUGIN_SLOW_CREATE     create() stands for a slow model load: it makes
 *                          the file ARG.loading, then waits (at most 60 s)
 *                          until the file ARG exists */
#include <stdio.h>
#if defined(PLUGIN_SLOW_CREATE)
#include <time.h>
#include <unistd.h>
#endif

#include "zserve/plugin.h"

static void* Create(const char* arg, char* error, size_t error_size) {
  (void)arg;
#if defined(PLUGIN_SLOW_CREATE)
  char loading[4096];
  snprintf(loading, sizeof loading, "%s.loading", arg);
  FILE* f = fopen(loading, "w");
  if (f != NULL) fclose(f);
  for (int i = 0; i < 6000 && access(arg, F_OK) != 0; ++i) {
    struct timespec pause = {0, 10 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
#endif
#if defined(PLUGIN_CREATE_FAILS)
  snprintf(error, error_size, "cannot open model file /nonexistent/model.bin");
  return NULL;
#else
  (void)error;
  (void)error_size;
  static int instance; /* no state; any non-NULL pointer will do */
  return &instance;
#endif
}

static void Destroy(void* instance) { (void)instance; }

#if !defined(PLUGIN_MISSING_FUNCTION)
static int HandleBatch(void* instance, const struct zserve_request* requests, size_t n,
                       zserve_reply_fn reply, void* reply_ctx) {
  (void)instance;
  for (size_t i = 0; i < n; ++i) {
    reply(reply_ctx, i, ZSERVE_STATUS_OK, requests[i].payload, requests[i].payload_len);
  }
  return 0;
}
#endif

ZSERVE_PLUGIN_EXPORT const struct zserve_plugin* zserve_plugin_v1(void) {
  static const struct zserve_plugin table = {
#if defined(PLUGIN_WRONG_ABI)
    .abi_version = ZSERVE_PLUGIN_ABI_VERSION + 1,
#else
    .abi_version = ZSERVE_PLUGIN_ABI_VERSION,
#endif
    .name = "minimal",
    .create = Create,
    .destroy = Destroy,
#if !defined(PLUGIN_MISSING_FUNCTION)
    .handle_batch = HandleBatch,
#endif
  };
  return &table;
}
