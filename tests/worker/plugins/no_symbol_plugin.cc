// A bad plugin for the tests: a shared library without the entry point
// (include/zserve/plugin.h), e.g. a plugin that forgot extern "C" or the
// wrong library altogether.
#include "zserve/plugin.h"

extern "C" ZSERVE_PLUGIN_EXPORT int not_a_zserve_plugin(void) { return 1; }
