/*
 * A listening TCP socket with SO_REUSEPORT, for the agent listener's threads.
 * TLS handshakes are the agent listener's bottleneck and Node runs each
 * thread's on one core; several threads can share one port only if each has
 * its own listening socket in one SO_REUSEPORT group (the kernel then spreads
 * new connections over them by their addresses and ports). Node 20 cannot
 * ask for SO_REUSEPORT (net.Server's reusePort came in Node 22.12), but it
 * listens on a socket it is given: net.Server.listen({ fd }). This makes that
 * socket and nothing else; Node owns and closes it from then on.
 */
#include <node_api.h>
#include <errno.h>
#include <stdbool.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK(call) \
  if ((call) != napi_ok) return NULL

static napi_value fail(napi_env env, const char *what, const char *reason) {
  char message[512];
  snprintf(message, sizeof message, "%.255s: %.200s", what, reason);
  napi_throw_error(env, NULL, message);
  return NULL;
}

/*
 * One socket for one resolved address; -errno on failure (fd closed). With
 * probe, a plain bind without SO_REUSEPORT, closed at once: it fails while
 * anybody listens on the port, including another server's SO_REUSEPORT
 * sockets, which would otherwise let a second server started on the same
 * port (by the same user) join this one's group and take half its agents.
 */
static int open_one(const struct addrinfo *ai, int backlog, int probe) {
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0) return -errno;
  int one = 1, zero = 0;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      (!probe && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
      /* "::" takes IPv4 too, as Node's own listen on every interface does. */
      (ai->ai_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) < 0) ||
      bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || (!probe && listen(fd, backlog) < 0)) {
    int e = errno;
    close(fd);
    return -e;
  }
  if (probe) {
    close(fd);
    return 0;
  }
  return fd;
}

/*
 * open(host: string, port: number, backlog: number, probe: boolean): { fd, port }.
 * host "" is every interface (IPv6 and IPv4 when the machine has IPv6). With
 * probe (for the first socket on a given port), fails if the port is taken.
 * Throws "<host:port>: <reason>" (EADDRINUSE's reason reads "Address in use").
 */
static napi_value open_socket(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) return fail(env, "open", "want host, port, backlog, probe");
  bool probe = false;
  char host[256];
  size_t host_len = 0;
  int32_t port = 0, backlog = 0;
  if (napi_get_value_string_utf8(env, argv[0], host, sizeof host, &host_len) != napi_ok ||
      napi_get_value_int32(env, argv[1], &port) != napi_ok || napi_get_value_int32(env, argv[2], &backlog) != napi_ok ||
      napi_get_value_bool(env, argv[3], &probe) != napi_ok ||
      port < 0 || port > 65535) {
    return fail(env, "open", "want host (string), port (0-65535), backlog (number), probe (boolean)");
  }
  char service[8];
  snprintf(service, sizeof service, "%d", port);
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  hints.ai_family = host_len == 0 ? AF_INET6 : AF_UNSPEC;
  int gai = getaddrinfo(host_len == 0 ? NULL : host, service, &hints, &res);
  if (gai != 0 && host_len == 0) {
    /* No IPv6 on this machine: every IPv4 interface. */
    hints.ai_family = AF_INET;
    gai = getaddrinfo(NULL, service, &hints, &res);
  }
  if (gai != 0) return fail(env, host_len ? host : "*", gai_strerror(gai));
  int fd = -EADDRNOTAVAIL;
  if (probe && port != 0) {
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) fd = open_one(ai, backlog, 1);
    if (fd < 0) {
      freeaddrinfo(res);
      return fail(env, host_len ? host : "*", strerror(-fd));
    }
    fd = -EADDRNOTAVAIL;
  }
  for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) fd = open_one(ai, backlog, 0);
  freeaddrinfo(res);
  if (fd < 0) return fail(env, host_len ? host : "*", strerror(-fd));

  struct sockaddr_storage bound;
  socklen_t bound_len = sizeof bound;
  int bound_port = port;
  if (getsockname(fd, (struct sockaddr *)&bound, &bound_len) == 0) {
    if (bound.ss_family == AF_INET) bound_port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    if (bound.ss_family == AF_INET6) bound_port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
  }
  napi_value result, v;
  CHECK(napi_create_object(env, &result));
  CHECK(napi_create_int32(env, fd, &v));
  CHECK(napi_set_named_property(env, result, "fd", v));
  CHECK(napi_create_int32(env, bound_port, &v));
  CHECK(napi_set_named_property(env, result, "port", v));
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  CHECK(napi_create_function(env, "open", NAPI_AUTO_LENGTH, open_socket, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "open", fn));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
