/*
 * netns — each sandbox's own network namespace, kept between its execs.
 *
 * A network namespace holding only `lo` (up) is made at a sandbox's first exec and kept,
 * referenced by a descriptor, for the sandbox's next ones: creating one and tearing it down (a
 * kernel worker, an expedited RCU grace period that interrupts every CPU) would cost CPU on
 * every exec (docs/BENCHMARKS.md). One exec at a time runs in it, and only execs of that
 * sandbox; nothing of it survives an exec but what the kernel keeps on its own after a socket
 * closes, such as a TCP connection's TIME_WAIT state. The namespace belongs to the host's user
 * namespace, so the sandbox user, who holds no capability there, can change nothing in it
 * (interfaces, addresses, routes, sysctls).
 *
 * At most `max` namespaces are kept; the least recently used one goes first. A sandbox's goes
 * when it is deleted (netns_drop) and all go with the cache.
 *
 * Thread-safe.
 */
#ifndef SQLFS_JAIL_NETNS_H
#define SQLFS_JAIL_NETNS_H

#include <stddef.h>
#include <stdint.h>

struct netns_cache;

__attribute__((warn_unused_result)) int netns_cache_new(size_t max, struct netns_cache **ret);
/* Closes every kept namespace (each is freed once no process uses it). NULL-safe. */
void netns_cache_free(struct netns_cache *c);

/* For one exec: a descriptor (the caller's to close) of the sandbox's kept network namespace,
 * made now (with `lo` up) when none is kept; the caller gives it back with netns_give_back once
 * the exec's processes are gone. 0 when another exec of the sandbox runs in it (concurrent
 * read-only execs) or every kept namespace is in use: the caller then runs in a new namespace
 * of its own, so that concurrent execs never share ports or sockets.
 * -errno with err_set() on failure. */
__attribute__((warn_unused_result)) int netns_take(struct netns_cache *c, const char *sandbox_id);
void netns_give_back(struct netns_cache *c, const char *sandbox_id);

/* Forgets the sandbox's namespace (a deleted sandbox). */
void netns_drop(struct netns_cache *c, const char *sandbox_id);

/* How many namespaces are kept now. */
size_t netns_count(struct netns_cache *c);

/* Brings `lo` up in the calling thread's network namespace. 0 or -errno. */
int netns_loopback_up(void);

/* A network namespace of its own with `lo` up, kept by nobody: a descriptor (O_CLOEXEC) the
 * caller closes; the namespace goes once no process uses it. -errno with err_set(). */
__attribute__((warn_unused_result)) int netns_new(void);

/* A listening TCP socket (non-blocking, O_CLOEXEC) on 127.0.0.1:port inside the namespace
 * netns_fd, for a service of the server's that processes in it reach (the egress proxy). The
 * socket is made by the server, root of the host's user namespace that owns the namespace, so
 * a port below 1024 is allowed, which the sandbox user can never bind. -errno with err_set(). */
__attribute__((warn_unused_result)) int netns_listen(int netns_fd, uint16_t port);

/* A listening SOCK_SEQPACKET unix socket (non-blocking, O_CLOEXEC) under the abstract `name`
 * in the namespace netns_fd (abstract names are per network namespace): only processes in it
 * reach the socket, and none can take the name while the server holds it. -errno with
 * err_set(). */
__attribute__((warn_unused_result)) int netns_listen_abstract(int netns_fd, const char *name);

#endif
