/*
 * What every addon in native/ repeats of Node-API, written once: giving up on
 * a failed call, a boolean as a JavaScript value, and the module's exports.
 */
#ifndef BMAAS_NAPI_EXPORTS_H
#define BMAAS_NAPI_EXPORTS_H

#include <node_api.h>
#include <stdbool.h>

/* In a function returning napi_value: a failed Node-API call returns NULL (undefined, or the exception it left pending). */
#define CHECK(call) \
  if ((call) != napi_ok) return NULL

/* The JavaScript boolean for value; NULL when Node-API failed. */
static inline napi_value boolean_value(napi_env env, bool value) {
  napi_value result;
  return napi_get_boolean(env, value, &result) == napi_ok ? result : NULL;
}

/* exports[name] = a JavaScript function that calls cb. */
static inline napi_status export_function(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  napi_status status = napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn);
  return status != napi_ok ? status : napi_set_named_property(env, exports, name, fn);
}

/* exports[name] = value, a boolean. */
static inline napi_status export_boolean(napi_env env, napi_value exports, const char *name, bool value) {
  napi_value v = boolean_value(env, value);
  return v == NULL ? napi_generic_failure : napi_set_named_property(env, exports, name, v);
}

#endif
