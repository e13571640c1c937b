/*
 * cgroup — per-exec resource limits (memory, pids, CPU) for jailed processes.
 *
 * At start cgroup_probe() finds the hierarchies: cgroup v2 when its mount has the memory, pids
 * and cpu controllers available and they can be enabled below the server's own cgroup;
 * otherwise cgroup v1 with whichever of the memory, pids and cpu hierarchies are mounted. Every
 * exec cgroup lives below "<server's own cgroup>/sqlfs-<instance>/" in each hierarchy, so
 * host-level limits on the server still bound all sandboxes together, and several servers (with
 * different data directories) on one host never touch each other's execs. Leftovers of a
 * previous run of the same instance (a crash) are killed and removed by the probe.
 *
 * Per exec: cgroup_exec_acquire() takes an exec cgroup "x<N>" from the instance's pool (making
 * one the first time: mkdir and the pids and CPU limits), cgroup_exec_attach() moves the (not
 * yet running) jail child into it, cgroup_exec_limit_memory() sets the memory limit once the
 * child runs in its own address space, and cgroup_exec_release() lifts the memory limit and
 * puts the cgroup back once every process in it is dead. Pooling matters because an exec is
 * short: making and removing a cgroup in three v1 hierarchies (and the kernel's deferred
 * teardown of each) costs more than the writes a reused one needs. A reused
 * cgroup carries nothing an exec could observe: no processes (the jail's pid namespace is gone
 * when its init is reaped), the same limits; memory charged to it by the previous exec (page
 * cache) stays reclaimable and counts against the limit like any other cache. The out-of-memory
 * verdict compares the kill counter with its value when the exec began.
 *
 * Ownership: struct cgroup_rt owns its directory fds and the pool (cgroup_rt_release). It is
 * read-only after the probe but for the pool, which has its own lock, so it may be shared by
 * threads; a struct cgroup_exec belongs to one exec.
 */
#ifndef SQLFS_JAIL_CGROUP_H
#define SQLFS_JAIL_CGROUP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum cgroup_mode { CGROUP_NONE = 0, CGROUP_V1, CGROUP_V2 };
enum { CGROUP_MEMORY = 0, CGROUP_PIDS, CGROUP_CPU, CGROUP_NCTL };

struct cgroup_rt {
    enum cgroup_mode mode;
    int base_fd[CGROUP_NCTL];   /* dir fd of ".../sqlfs" per controller (v2: all the same), or -1 */
    bool enforced[CGROUP_NCTL]; /* which limits the host lets us enforce */
    int parent_fd[CGROUP_NCTL]; /* dir fd of the server's own cgroup per controller, or -1 */
    char base_name[48];         /* "sqlfs-<instance>" */
    bool memsw;                 /* v1: memory.memsw.limit_in_bytes exists (swap is capped too) */
    char message[160];          /* why something is missing; "" when all is well */
    struct cgroup_pool *pool;   /* exec cgroups waiting for reuse (cgroup.c) */
};

struct cgroup_limits {
    int64_t memory_bytes; /* 0 = no limit */
    int64_t pids_max;     /* 0 = no limit */
    int64_t cpu_percent;  /* of one core; 0 = no limit */
};

struct cgroup_exec {
    const struct cgroup_rt *rt;
    unsigned slot; /* the pooled cgroup: name "x<slot>" below each base */
    char name[24];
    bool created[CGROUP_NCTL];    /* exists in this hierarchy */
    struct cgroup_limits written; /* pids and CPU limits in place */
    bool memory_limited;          /* a memory limit was set by this exec (lifted on release) */
    int64_t oom_kills;            /* the kill counter when the exec began */
    int64_t oom_kills_now;        /* its value at cgroup_exec_oom, or -1 before */
};

/* Probes the hierarchies and prepares the "sqlfs-<instance>" base directories; `instance` is a
 * short name of this server ([A-Za-z0-9_-], e.g. a hash of its data directory). Never fails
 * hard: a host without usable cgroups gives mode CGROUP_NONE and a message. */
void cgroup_probe(const char *instance, struct cgroup_rt *ret);
/* Closes the base directories and removes them when empty. */
void cgroup_rt_release(struct cgroup_rt *rt);

/* Takes an exec cgroup from the pool, or makes one, with the pids and CPU limits of `lim` and
 * no memory limit (its memory_bytes is ignored: see cgroup_exec_limit_memory). With mode
 * CGROUP_NONE it succeeds and does nothing. Negative errno on failure (nothing left behind). */
__attribute__((warn_unused_result)) int cgroup_exec_acquire(const struct cgroup_rt *rt,
                                                            const struct cgroup_limits *lim,
                                                            struct cgroup_exec *ret);
/* Sets (or tightens) the memory limit of an existing exec cgroup, where it is enforced. */
__attribute__((warn_unused_result)) int cgroup_exec_limit_memory(struct cgroup_exec *cg,
                                                                 int64_t memory_bytes);
/* Moves process `pid` into the exec cgroup in every hierarchy. */
__attribute__((warn_unused_result)) int cgroup_exec_attach(const struct cgroup_exec *cg, pid_t pid);
/* Opens the exec cgroup's cgroup.procs in every hierarchy, write-only, into fds[]: a process
 * that writes "0" to each joins the exec cgroup (the file was opened by the server, whose
 * credentials the kernel checks). The count, or -errno (nothing left open). */
__attribute__((warn_unused_result)) int cgroup_exec_open_procs(const struct cgroup_exec *cg,
                                                               int fds[CGROUP_NCTL]);
/* Gives the cgroup back. `empty`: the caller knows every process in it has ended (the jail's
 * init was reaped), and the cgroup returns to the pool with its memory limit lifted; otherwise
 * whatever is still inside is killed and the cgroup removed. Idempotent. */
void cgroup_exec_release(struct cgroup_exec *cg, bool empty);
/* True if the memory limit was hit (an OOM kill happened) in this exec cgroup since it was
 * acquired. */
bool cgroup_exec_oom(struct cgroup_exec *cg);

#endif
