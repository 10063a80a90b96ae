/*
 * Ed25519 public keys in certificates decoded the way OpenSSL 1.1 did, not
 * through OpenSSL 3.0's provider decoders.
 *
 * Why: every agent handshake makes OpenSSL parse the client's certificate,
 * and in OpenSSL 3.0 (the one inside Node 20) parsing a certificate's public
 * key builds an OSSL_DECODER context from scratch: it walks every key manager
 * and decoder of the library context, by name, under locks, and caches none
 * of it (openssl/openssl#17950, #19119; 3.1 added a cache). With perf, while
 * 10,000 agents connected to the empty-handler ceiling, that walk was ~10% of
 * the server's CPU; a certificate parse took 146-184 us instead of 16-21 us.
 *
 * How: OpenSSL 3.0 still decodes a public key with the legacy (1.1) method
 * when an ENGINE offers a key method for its algorithm
 * (crypto/x509/x_pubkey.c: x509_pubkey_decode). So this registers one ENGINE
 * whose only content is OpenSSL's own built-in Ed25519 key method
 * (EVP_PKEY_meth_find): the same code signs and verifies, nothing of ours
 * touches a key or a signature. What changes is the dispatch: certificate
 * keys are decoded by the legacy method, and Ed25519 operations in this
 * process go through the built-in legacy method instead of the provider's
 * (both are OpenSSL's ed25519 code). No other algorithm is affected.
 *
 * Process-wide and once per process: the ENGINE tables are global, and the
 * agent listener's threads share them. The server turns it off with
 * `--tls-ed25519-decoder provider` (server/ed25519-key-decode.ts).
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/engine.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <pthread.h>
#include <string.h>
#include "napi-exports.h"

#define ENGINE_ID "bmaas-ed25519-legacy-decode"

static const EVP_PKEY_METHOD *builtin = NULL;
static const int nids[] = {NID_ED25519};
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int installed = 0;

/* The ENGINE's key methods: asked for its list (pmeth NULL), or for one. */
static int key_methods(ENGINE *e, EVP_PKEY_METHOD **pmeth, const int **out_nids, int nid) {
  (void)e;
  if (pmeth == NULL) {
    *out_nids = nids;
    return 1;
  }
  /* OpenSSL frees a method at cleanup only if it is flagged dynamic: the built-in one is not. */
  *pmeth = nid == NID_ED25519 ? (EVP_PKEY_METHOD *)builtin : NULL;
  return *pmeth != NULL;
}

/* NULL when installed (now or before), else why not. */
static const char *install_once(void) {
  const char *error = NULL;
  pthread_mutex_lock(&lock);
  if (!installed) {
    builtin = EVP_PKEY_meth_find(NID_ED25519);
    ENGINE *e = builtin ? ENGINE_new() : NULL;
    if (e == NULL) {
      error = "OpenSSL has no built-in Ed25519 key method";
    } else if (!ENGINE_set_id(e, ENGINE_ID) || !ENGINE_set_name(e, "Ed25519 keys decoded by the legacy method") ||
               !ENGINE_set_pkey_meths(e, key_methods) || !ENGINE_add(e) || !ENGINE_register_pkey_meths(e)) {
      error = "OpenSSL refused the Ed25519 decoding engine";
    } else {
      installed = 1;
    }
    /* ENGINE_add holds its own reference (kept until OpenSSL's cleanup at exit). */
    if (e != NULL) ENGINE_free(e);
  }
  pthread_mutex_unlock(&lock);
  return error;
}

/* Whether OpenSSL now picks this module's ENGINE for Ed25519 keys. */
static int active(void) {
  ENGINE *e = ENGINE_get_pkey_meth_engine(NID_ED25519);
  if (e == NULL) return 0;
  int ours = strcmp(ENGINE_get_id(e), ENGINE_ID) == 0;
  ENGINE_finish(e);
  return ours;
}

/* install(): true, or throws why not. Idempotent, from any thread. */
static napi_value install(napi_env env, napi_callback_info info) {
  (void)info;
  const char *error = install_once();
  if (error != NULL) {
    napi_throw_error(env, NULL, error);
    return NULL;
  }
  return boolean_value(env, true);
}

/* active(): whether certificate Ed25519 keys are decoded by the legacy method now. */
static napi_value active_js(napi_env env, napi_callback_info info) {
  (void)info;
  return boolean_value(env, active());
}

static napi_value init(napi_env env, napi_value exports) {
  CHECK(export_function(env, exports, "install", install));
  CHECK(export_function(env, exports, "active", active_js));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
