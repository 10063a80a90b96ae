/*
 * Sockets with SO_REUSEPORT, for the agent listener's threads. TLS
 * handshakes bound the agent listener and Node runs each thread's on one
 * core; several threads can share one port only if each has its own
 * listening socket in one SO_REUSEPORT group (the kernel then spreads new
 * connections over them by their addresses and ports). Node 20 cannot ask
 * for SO_REUSEPORT (net.Server's reusePort came in Node 22.12), but it
 * listens on a socket it is given: net.Server.listen({ fd }). This makes
 * such a socket, bound and not yet listening: Node's listen() is what opens
 * it to connections, each on the thread that will accept them, and Node
 * owns and closes it from then on.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "napi-exports.h"

/* Errors are "errno <name>: <reason>" or "resolve: <reason>", for reuseport.ts. */
static napi_value fail(napi_env env, const char *code, const char *reason) {
  char message[512];
  snprintf(message, sizeof message, "%.40s: %.400s", code, reason);
  napi_throw_error(env, code, message);
  return NULL;
}

/*
 * Binds one socket to one resolved address; the fd, or -errno (fd closed).
 * With probe, a plain bind without SO_REUSEPORT, closed at once (0 when it
 * succeeded): it fails while anybody listens on the port, including another
 * server's SO_REUSEPORT sockets, which would otherwise let a second server
 * started on the same port (by the same user) join this one's group and take
 * part of its agents.
 */
static int bind_one(const struct addrinfo *ai, bool probe) {
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0) return -errno;
  int one = 1, zero = 0;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      (!probe && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
      /* "::" takes IPv4 too, as Node's own listen on every interface does. */
      (ai->ai_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) < 0) ||
      bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
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

/* The first address of res that binds (probed first when asked); fd or -errno. */
static int bind_first(const struct addrinfo *res, bool probe) {
  int fd = -EADDRNOTAVAIL;
  for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
    if (probe) {
      int p = bind_one(ai, true);
      if (p < 0) {
        fd = p;
        continue;
      }
    }
    fd = bind_one(ai, false);
    if (fd >= 0) return fd;
  }
  return fd;
}

static int resolve(const char *host, const char *service, int family, struct addrinfo **res) {
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  hints.ai_family = family;
  return getaddrinfo(host, service, &hints, res);
}

/*
 * open(host: string, port: number, probe: boolean): { fd, port }: a bound
 * SO_REUSEPORT socket. host "" is every interface ("::" taking IPv4 too, or
 * 0.0.0.0 where the kernel has no IPv6). With probe, fails if the port is
 * taken (for the first socket on a given port).
 */
static napi_value open_socket(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  char host[256];
  size_t host_len = 0;
  int32_t port = 0;
  bool probe = false;
  if (argc < 3 || napi_get_value_string_utf8(env, argv[0], host, sizeof host, &host_len) != napi_ok ||
      napi_get_value_int32(env, argv[1], &port) != napi_ok || napi_get_value_bool(env, argv[2], &probe) != napi_ok || port < 0 ||
      port > 65535) {
    return fail(env, "EINVAL", "want open(host: string, port: 0-65535, probe: boolean)");
  }
  char service[8];
  snprintf(service, sizeof service, "%d", port);
  struct addrinfo *res = NULL;
  int gai = resolve(host_len == 0 ? NULL : host, service, host_len == 0 ? AF_INET6 : AF_UNSPEC, &res);
  if (gai != 0) return fail(env, "resolve", gai_strerror(gai));
  int fd = bind_first(res, probe && port != 0);
  freeaddrinfo(res);
  if (fd == -EAFNOSUPPORT && host_len == 0) {
    /* A kernel without IPv6: every IPv4 interface. */
    gai = resolve(NULL, service, AF_INET, &res);
    if (gai != 0) return fail(env, "resolve", gai_strerror(gai));
    fd = bind_first(res, probe && port != 0);
    freeaddrinfo(res);
  }
  if (fd < 0) return fail(env, fd == -EADDRINUSE ? "EADDRINUSE" : fd == -EACCES ? "EACCES" : "errno", strerror(-fd));

  struct sockaddr_storage bound;
  socklen_t bound_len = sizeof bound;
  int bound_port = port;
  if (getsockname(fd, (struct sockaddr *)&bound, &bound_len) == 0) {
    if (bound.ss_family == AF_INET) bound_port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    if (bound.ss_family == AF_INET6) bound_port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
  }
  napi_value result, v;
  if (napi_create_object(env, &result) != napi_ok || napi_create_int32(env, fd, &v) != napi_ok ||
      napi_set_named_property(env, result, "fd", v) != napi_ok || napi_create_int32(env, bound_port, &v) != napi_ok ||
      napi_set_named_property(env, result, "port", v) != napi_ok) {
    close(fd);
    return NULL;
  }
  return result;
}

/*
 * dup(fd: number): number: a new descriptor (close-on-exec) of the stream
 * socket fd, e.g. an inherited listening socket that several listener
 * threads accept from, each closing its own descriptor when it stops.
 */
static napi_value dup_socket(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) return fail(env, "EINVAL", "want dup(fd: number)");
  int type = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
    int e = errno;
    return fail(env, e == EBADF ? "EBADF" : e == ENOTSOCK ? "ENOTSOCK" : "errno", strerror(e));
  }
  if (type != SOCK_STREAM) return fail(env, "EINVAL", "not a stream socket");
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) return fail(env, "errno", strerror(errno));
  napi_value result;
  if (napi_create_int32(env, copy, &result) != napi_ok) {
    close(copy);
    return NULL;
  }
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  CHECK(export_function(env, exports, "open", open_socket));
  CHECK(export_function(env, exports, "dup", dup_socket));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
