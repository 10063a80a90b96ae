/*
 * The agent listener's check that every certificate a TLS client sends belongs
 * to the chain of its leaf, done inside OpenSSL's own handshake.
 *
 * Why native: Node offers no hook into the handshake messages. Counting the
 * certificates from JavaScript inside the handshake means putting a
 * JavaScript stream between TCP and TLS for the connection's whole life
 * (server/tls-client-flight.ts), which costs ~2x the CPU of every TLS message.
 * Here the check costs a function call per received TLS message, and a parse
 * of the Certificate message once per connection that sends more than one.
 * (After the handshake, server/peer-identity.ts counts every certificate sent
 * as well, through the socket's X509Certificate, which links them all; Node's
 * getPeerCertificate(true) would show only those chaining to the leaf.)
 *
 * How: OpenSSL calls an ex_data "new" hook for every SSL object created after
 * the hook is registered; the hook sets a message callback on it. That
 * callback sees each handshake message in the clear, after decryption and
 * before OpenSSL processes it. On a server SSL whose session carries the
 * agent listener's session-id context (Node's `sessionIdContext` option, so
 * other listeners and clients in the process are left alone), the client's
 * Certificate message is parsed: if any certificate in it is not linked into
 * the chain from the leaf (issuer by issuer, the same walk Node does), the
 * SSL's verify callback is replaced by one that fails, so OpenSSL ends the
 * handshake with a fatal alert before it returns to Node.
 *
 * Only public OpenSSL API, resolved against the OpenSSL inside the node
 * binary (the addon links nothing else). Everything here runs on the thread
 * that drives the SSL object: the agent listener thread that owns the
 * connection (server/agent-listener-threads.ts). The main thread installs the
 * guard before any other listener thread starts; the counters are atomic.
 */
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <string.h>
#include "napi-exports.h"

#define MAX_MARKER 32
/* A client certificate message with more entries is refused without parsing. */
#define MAX_CERTIFICATES 16

static unsigned char marker[MAX_MARKER];
static size_t marker_length = 0;
static int installed = 0;
/* Counted from every thread that does handshakes (the agent listener's threads). */
static unsigned long checked = 0, refused = 0;

static int refuse_chain(int ok, X509_STORE_CTX *ctx) {
  (void)ok;
  X509_STORE_CTX_set_error(ctx, X509_V_ERR_CERT_REJECTED);
  return 0;
}

static int is_agent_listener(SSL *ssl) {
  if (!SSL_is_server(ssl) || marker_length == 0) return 0;
  SSL_SESSION *session = SSL_get_session(ssl);
  if (session == NULL) return 0;
  unsigned int length = 0;
  const unsigned char *context = SSL_SESSION_get0_id_context(session, &length);
  return length == marker_length && memcmp(context, marker, length) == 0;
}

static size_t be24(const unsigned char *p) { return ((size_t)p[0] << 16) | ((size_t)p[1] << 8) | p[2]; }

/*
 * The entries of a TLS 1.3 Certificate message body: their DER and count.
 * 0 when the framing does not hold (lengths past the end or short of it) or
 * there are more than MAX_CERTIFICATES.
 */
typedef struct {
  const unsigned char *der[MAX_CERTIFICATES];
  size_t length[MAX_CERTIFICATES];
  int n;
} entries;

static int frame(const unsigned char *p, size_t len, entries *out) {
  out->n = 0;
  if (len < 1 || (size_t)p[0] + 4 > len) return 0;
  size_t at = 1 + p[0];
  size_t list = be24(p + at);
  at += 3;
  if (at + list != len) return 0;
  while (at < len) {
    if (out->n == MAX_CERTIFICATES || at + 3 > len) return 0;
    size_t cert_length = be24(p + at);
    at += 3;
    if (at + cert_length + 2 > len) return 0;
    out->der[out->n] = p + at;
    out->length[out->n] = cert_length;
    out->n++;
    at += cert_length;
    size_t extensions = ((size_t)p[at] << 8) | p[at + 1];
    at += 2 + extensions;
    if (at > len) return 0;
  }
  return 1;
}

/*
 * 1 when every certificate of a TLS 1.3 Certificate message body is linked
 * from the leaf, 0 when one is not or the message does not parse.
 *
 * A single certificate (every agent's case) is linked by definition and is
 * not parsed here: OpenSSL parses it right after this and fails the
 * handshake itself if it is not a certificate. Parsing it twice cost ~6% of
 * the main thread during a connect storm (perf, 10,000 agents).
 */
static int all_linked(const unsigned char *p, size_t len) {
  entries e;
  if (!frame(p, len, &e)) return 0;
  /* No certificate at all is the listener's to refuse, with a gRPC answer. */
  if (e.n <= 1) return 1;
  X509 *certs[MAX_CERTIFICATES];
  int n = 0, ok = 0;
  for (; n < e.n; n++) {
    const unsigned char *der = e.der[n];
    certs[n] = d2i_X509(NULL, &der, (long)e.length[n]);
    if (certs[n] == NULL) goto done;
    if (der != e.der[n] + e.length[n]) {
      n++;
      goto done;
    }
  }
  /* Walk from the leaf: each step takes one remaining certificate that issued the current one. */
  int remaining = n - 1, current = 0;
  char used[MAX_CERTIFICATES] = {0};
  used[0] = 1;
  for (;;) {
    int found = -1;
    for (int i = 1; i < n; i++) {
      if (!used[i] && X509_check_issued(certs[i], certs[current]) == X509_V_OK) {
        found = i;
        break;
      }
    }
    if (found < 0) break;
    used[found] = 1;
    remaining--;
    current = found;
  }
  ok = remaining == 0;
done:
  for (int i = 0; i < n; i++) X509_free(certs[i]);
  return ok;
}

static void on_message(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl, void *arg) {
  (void)version;
  (void)arg;
  const unsigned char *p = buf;
  if (write_p || content_type != SSL3_RT_HANDSHAKE || len < 4 || p[0] != SSL3_MT_CERTIFICATE) return;
  if (!is_agent_listener(ssl)) return;
  /*
   * No NewSessionTicket messages. The listener does not resume sessions
   * (SSL_OP_NO_TICKET and no session cache), yet TLS 1.3 in OpenSSL still
   * sends two stateful tickets after every handshake: a copy of the session,
   * fresh random IDs, two encrypted records and their writes, for tickets no
   * one can use. Every agent sends a Certificate message (the listener
   * requests one), and tickets go out only after its Finished, so this is in
   * time.
   */
  SSL_set_num_tickets(ssl, 0);
  __atomic_fetch_add(&checked, 1, __ATOMIC_RELAXED);
  if (SSL_version(ssl) != TLS1_3_VERSION || !all_linked(p + 4, len - 4)) {
    __atomic_fetch_add(&refused, 1, __ATOMIC_RELAXED);
    SSL_set_verify(ssl, SSL_get_verify_mode(ssl), refuse_chain);
  }
}

static void on_new_ssl(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
  (void)ptr;
  (void)ad;
  (void)idx;
  (void)argl;
  (void)argp;
  if (parent != NULL) SSL_set_msg_callback((SSL *)parent, on_message);
}

/*
 * install(marker: Buffer): true once installed. The marker is the session-id
 * context of the listener to guard; one per process.
 */
static napi_value install(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *data = NULL;
  size_t length = 0;
  if (argc < 1 || napi_get_buffer_info(env, argv[0], &data, &length) != napi_ok || length == 0 || length > MAX_MARKER) {
    napi_throw_type_error(env, NULL, "install(marker: Buffer of 1-32 bytes)");
    return NULL;
  }
  if (installed && (length != marker_length || memcmp(data, marker, length) != 0)) {
    napi_throw_error(env, NULL, "the TLS certificate guard is already installed with another marker");
    return NULL;
  }
  if (!installed) {
    /* Written once, before any handshake can read it; later installs (from
     * the agent listener's other threads) only check that it is the same. */
    memcpy(marker, data, length);
    marker_length = length;
    if (CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL, 0, NULL, on_new_ssl, NULL, NULL) < 0) {
      napi_throw_error(env, NULL, "OpenSSL refused a new SSL ex_data index");
      return NULL;
    }
    installed = 1;
  }
  return boolean_value(env, true);
}

/* stats(): { checked, refused } client Certificate messages on the agent listener. */
static napi_value stats(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result, value;
  CHECK(napi_create_object(env, &result));
  CHECK(napi_create_double(env, (double)__atomic_load_n(&checked, __ATOMIC_RELAXED), &value));
  CHECK(napi_set_named_property(env, result, "checked", value));
  CHECK(napi_create_double(env, (double)__atomic_load_n(&refused, __ATOMIC_RELAXED), &value));
  CHECK(napi_set_named_property(env, result, "refused", value));
  return result;
}

/*
 * allLinked(body: Buffer): boolean, the check itself on a TLS 1.3 Certificate
 * message body (without its 4-byte header), for tests and fuzzing.
 */
static napi_value all_linked_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *data = NULL;
  size_t length = 0;
  if (argc < 1 || napi_get_buffer_info(env, argv[0], &data, &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "allLinked(body: Buffer)");
    return NULL;
  }
  return boolean_value(env, all_linked(data, length));
}

static napi_value init(napi_env env, napi_value exports) {
  CHECK(export_function(env, exports, "allLinked", all_linked_js));
  CHECK(export_function(env, exports, "install", install));
  CHECK(export_function(env, exports, "stats", stats));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
