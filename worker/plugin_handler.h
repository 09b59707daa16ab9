// A zserve::Handler backed by a handler plugin: a shared library speaking
// the C ABI of include/zserve/plugin.h, for `zserve worker --plugin PATH`.
//
// LoadPluginHandler dlopens the library, checks its table and creates the
// plugin's instance, or refuses the plugin with a message naming the path
// and saying what is wrong. The returned handler owns the instance and the
// library: destroying it calls the plugin's destroy() and then dlcloses.
// Call it from the main thread, before the handler serves. The handler keeps
// the Handler contract (include/zserve/handler.h): HandleBatch from several
// threads at once, Reconfigure from the worker's I/O thread; what the plugin
// does concurrently is the plugin's business, as plugin.h says.
#ifndef ZSERVE_WORKER_PLUGIN_HANDLER_H_
#define ZSERVE_WORKER_PLUGIN_HANDLER_H_

#include <memory>
#include <string>

#include "zserve/handler.h"
#include "zserve/status.h"

namespace zserve::worker {

// `path`: the library (a name without '/' means the file in the current
// directory, not a search of the library path). `arg`: handed to the
// plugin's create() (`zserve worker --plugin-arg`).
StatusOr<std::unique_ptr<Handler>> LoadPluginHandler(const std::string& path,
                                                     const std::string& arg = "");

}  // namespace zserve::worker

#endif  // ZSERVE_WORKER_PLUGIN_HANDLER_H_
