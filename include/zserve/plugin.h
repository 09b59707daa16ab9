/* The C ABI between `zserve worker --plugin PATH` and a handler built as a
 * shared library, so that the stock zserve binary (and its container image)
 * serves user handlers without linking them. Pure C: usable from C and C++,
 * no C++ type crosses it. A plugin needs this header only, no zserve library.
 *
 * The plugin exports one function, ZSERVE_PLUGIN_ENTRY (`zserve_plugin_v1`),
 * returning a pointer to a static table (struct zserve_plugin) that stays
 * valid while the library is loaded. zserve dlopens the library
 * (RTLD_NOW | RTLD_LOCAL), calls the entry once, checks the table, calls
 * create() once, and refuses the plugin with a message naming the file when
 * anything is wrong: no such file, a dlopen error (unresolved symbols...), no
 * entry symbol, a NULL table, an abi_version other than its own, a missing
 * required function, create() failing or throwing. `zserve worker` then exits
 * non-zero before registering with the broker.
 *
 * Versioning: a plugin sets abi_version to the ZSERVE_PLUGIN_ABI_VERSION of
 * the header it was built with. This zserve accepts exactly its own version;
 * any change to a struct or a signature below comes with a new version.
 *
 * Threads (the same contract as zserve::Handler, include/zserve/handler.h):
 * - create() and destroy() run once each, on the main thread, with no other
 *   call in progress.
 * - handle_batch() runs on the worker's pool threads, possibly several at
 *   once on the same instance; a plugin with mutable state guards it itself.
 * - reconfigure() runs on the worker's I/O thread, possibly while
 *   handle_batch() runs on pool threads.
 *
 * Errors: functions return or report errors, they never throw. A C++ plugin
 * catches its exceptions inside each function. If one escapes anyway, zserve
 * catches what it can: an exception out of create() refuses the plugin at
 * load, one out of handle_batch() fails every request of that batch with
 * HANDLER_ERROR (as for a zserve::Handler that throws; the worker lives on),
 * one out of reconfigure() refuses that configuration. Unwinding through C
 * frames is undefined behaviour: do not rely on any of this.
 *
 * Memory: every pointer zserve passes is borrowed for the duration of the
 * call; every pointer the plugin passes back (reply data, error text) stays
 * the plugin's: zserve copies the bytes before the call returns.
 */
#ifndef ZSERVE_PLUGIN_H_
#define ZSERVE_PLUGIN_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZSERVE_PLUGIN_ABI_VERSION 1

/* The name of the exported entry point, as a string for dlsym. */
#define ZSERVE_PLUGIN_ENTRY "zserve_plugin_v1"

/* Marks the entry point as exported even when the plugin is built with
 * -fvisibility=hidden. */
#if defined(__GNUC__) || defined(__clang__)
#define ZSERVE_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define ZSERVE_PLUGIN_EXPORT
#endif

/* Status codes for reply(): the values of zserve::StatusCode
 * (include/zserve/status.h), which never change. 0 is success; any other
 * value fails that request only, and the caller sees HANDLER_ERROR with the
 * message the plugin gave (as for a zserve::Handler's per-request error).
 * The code says what kind of error it was in the handler's own terms; use
 * ZSERVE_STATUS_BAD_REQUEST for input the handler cannot take and
 * ZSERVE_STATUS_HANDLER_ERROR for everything else. A value that is not a
 * status code reads as ZSERVE_STATUS_HANDLER_ERROR. */
#define ZSERVE_STATUS_OK 0
#define ZSERVE_STATUS_NOT_FOUND 1
#define ZSERVE_STATUS_OVERLOADED 2
#define ZSERVE_STATUS_DEADLINE_EXCEEDED 3
#define ZSERVE_STATUS_REPLICA_FAILED 4
#define ZSERVE_STATUS_HANDLER_ERROR 5
#define ZSERVE_STATUS_BAD_REQUEST 6
#define ZSERVE_STATUS_UNAVAILABLE 7
#define ZSERVE_STATUS_INTERNAL 8

/* One request of a batch. The bytes are not NUL-terminated. */
struct zserve_request {
  const char* method; /* "__call__" unless the caller named one */
  size_t method_len;
  const char* payload; /* the caller's bytes, as sent */
  size_t payload_len;
  /* Milliseconds left until the request's deadline when handle_batch() was
   * called (requests already past it are not handed over); past the
   * deadline, the caller no longer waits for the reply. */
  int64_t time_left_ms;
};

/* Answers request `index` (0 .. n-1) of the batch being handled: code
 * ZSERVE_STATUS_OK with the reply payload as `data`, or an error code with a
 * message as `data`. zserve copies `len` bytes of `data` before returning
 * (data may be NULL when len is 0). Call it once per request, from any thread,
 * before handle_batch() returns (reply_ctx is gone after that); a second
 * answer for an index and an index out of range are ignored. */
typedef void (*zserve_reply_fn)(void* reply_ctx, size_t index, int code, const char* data,
                                size_t len);

struct zserve_plugin {
  /* Must be ZSERVE_PLUGIN_ABI_VERSION. */
  uint32_t abi_version;

  /* For messages and logs. NULL: the library's file name. */
  const char* name;

  /* Required. Builds one handler instance: loads the model, allocates what
   * serving needs. `arg` is the text given to `zserve worker --plugin-arg`
   * ("" when none; e.g. a model path); the backend's user_config arrives
   * later, through reconfigure(). Returns the instance, or NULL after writing
   * a NUL-terminated reason of at most `error_size` bytes (including the NUL)
   * to `error`; zserve then refuses the plugin with that reason. */
  void* (*create)(const char* arg, char* error, size_t error_size);

  /* Required. Frees what create() built. Called once, when the worker
   * exits, after the last handle_batch() and reconfigure() returned. */
  void (*destroy)(void* instance);

  /* Required. Handles a batch of 1..max_batch_size requests of one method.
   * The plugin calls reply(reply_ctx, i, ...) once for each i, in any order,
   * before returning; a request left unanswered fails with HANDLER_ERROR
   * ("plugin gave no result"). Returns 0, or non-zero to fail every request
   * it has not answered with HANDLER_ERROR (answered ones keep their
   * answers). `requests` is valid only during the call. */
  int (*handle_batch)(void* instance, const struct zserve_request* requests, size_t n,
                      zserve_reply_fn reply, void* reply_ctx);

  /* Optional (NULL: user_config is ignored). Takes the backend's
   * user_config (`len` bytes, also NUL-terminated) without a restart: once
   * when the worker first hears from the controller, then at every change.
   * Returns 0, or non-zero after writing a NUL-terminated reason to `error`:
   * zserve logs it, and the plugin is to keep its previous configuration. */
  int (*reconfigure)(void* instance, const char* user_config, size_t len, char* error,
                     size_t error_size);

  /* Optional. The methods this plugin serves, a NULL-terminated array read
   * once at load; a request for another method is answered NOT_FOUND without
   * calling handle_batch(). NULL or empty: every method. */
  const char* const* methods;
};

/* The entry point every plugin defines, e.g.
 *
 *   ZSERVE_PLUGIN_EXPORT const struct zserve_plugin* zserve_plugin_v1(void) {
 *     static const struct zserve_plugin table = {ZSERVE_PLUGIN_ABI_VERSION, "mine",
 *                                                 my_create, my_destroy, my_handle_batch,
 *                                                 NULL, NULL};
 *     return &table;
 *   }
 *
 * It is called once, before create(). */
typedef const struct zserve_plugin* (*zserve_plugin_entry_fn)(void);
ZSERVE_PLUGIN_EXPORT const struct zserve_plugin* zserve_plugin_v1(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* ZSERVE_PLUGIN_H_ */
