/*
 * malloc_trim(0) for a long-running server: glibc keeps memory that was
 * malloc'd and freed in its arenas (every thread has one) instead of giving
 * it back to the OS. PGlite's WebAssembly compilation and PostgreSQL's work
 * in the worker thread, and the TLS handshakes of a reconnect storm, free far
 * more than they keep: measured on the embedded database, 377 -> 260 MiB of
 * RSS after a trim. Node offers no way to ask for it; this is that way.
 * Elsewhere than glibc it does nothing and says so.
 */
#include <stdbool.h>
#include "napi-exports.h"
#if defined(__GLIBC__)
#include <malloc.h>
#endif

/* trim(): true when memory was given back, false when none was (or not glibc). */
static napi_value trim(napi_env env, napi_callback_info info) {
  (void)info;
#if defined(__GLIBC__)
  bool released = malloc_trim(0) == 1;
#else
  bool released = false;
#endif
  return boolean_value(env, released);
}

/* supported: whether trim() can do anything on this C library. */
static napi_value init(napi_env env, napi_value exports) {
  CHECK(export_function(env, exports, "trim", trim));
#if defined(__GLIBC__)
  CHECK(export_boolean(env, exports, "supported", true));
#else
  CHECK(export_boolean(env, exports, "supported", false));
#endif
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
