/*
 * sysprobe — what the host lets the jail do, checked once at start (and for /readyz).
 *
 * Each check runs the real mechanism, not a version test: a user namespace is created, a test
 * overlay is mounted (detached, never visible), the seccomp filter is compiled and the kernel
 * asked for filter support, cgroup limits come from the probe of cgroup.h, and the rootfs is
 * looked at (usr, bash). The end-to-end check, one real jailed exec of `echo ok`, needs the
 * runner and so lives above the jail (exec/health.c); it runs once these pass.
 *
 * The result is plain data: one struct sysprobe_check per feature (ok + a message naming what
 * is missing, never a host path) and which limits are enforced. Not thread-safe while
 * sysprobe_run fills it; read-only afterwards.
 */
#ifndef SQLFS_JAIL_SYSPROBE_H
#define SQLFS_JAIL_SYSPROBE_H

#include <stdbool.h>

struct jail_runtime;

struct sysprobe_check {
    bool ok;
    char message[160]; /* "ok" or what is missing */
};

struct sysprobe {
    struct sysprobe_check userns;  /* user (+ mount, pid, net, ...) namespaces can be created */
    struct sysprobe_check overlay; /* overlayfs mounts with an upper dir */
    struct sysprobe_check seccomp; /* seccomp filters load */
    struct sysprobe_check cgroup;  /* memory, pids and cpu limits all enforced */
    struct sysprobe_check rootfs;  /* rootfs /usr and /usr/bin/bash present */
    bool memory_limit;             /* which limits execs get on this host */
    bool pids_limit;
    bool cpu_limit;
};

/* Runs every check. `rt` may be NULL (jail_runtime_init failed): the checks that need it fail
 * with a message. Uses "<data>/jail" of the runtime for its scratch directories. */
void sysprobe_run(const struct jail_runtime *rt, struct sysprobe *ret);
/* True when the mechanisms execs need are there (everything but cgroup limits, which are
 * reported separately). */
bool sysprobe_ok(const struct sysprobe *p);

#endif
