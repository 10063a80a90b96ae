/*
 * malloc_trim(0) for a long-running server: glibc keeps memory that was
 * malloc'd and freed in its arenas (every thread has one) instead of giving
 * it back to the OS. PGlite's WebAssembly compilation and PostgreSQL's work
 * in the worker thread, and the TLS handshakes of a reconnect storm, free far
 * more than they keep: measured on the embedded database, 377 -> 260 MiB of
 * RSS after a trim. Node offers no way to ask for it; this is that way.
 * Elsewhere than glibc it does nothing and says so.
 */
#include <node_api.h>
#include <stdbool.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#define CHECK(call) \
  if ((call) != napi_ok) return NULL

/* trim(): true when memory was given back, false when none was (or not glibc). */
static napi_value trim(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
#if defined(__GLIBC__)
  bool released = malloc_trim(0) == 1;
#else
  bool released = false;
#endif
  CHECK(napi_get_boolean(env, released, &result));
  return result;
}

/* supported: whether trim() can do anything on this C library. */
static napi_value init(napi_env env, napi_value exports) {
  napi_value fn, supported;
  CHECK(napi_create_function(env, "trim", NAPI_AUTO_LENGTH, trim, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "trim", fn));
#if defined(__GLIBC__)
  CHECK(napi_get_boolean(env, true, &supported));
#else
  CHECK(napi_get_boolean(env, false, &supported));
#endif
  CHECK(napi_set_named_property(env, exports, "supported", supported));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
