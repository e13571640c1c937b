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
 * Per exec: cgroup_exec_create() makes "sqlfs/<id>" and writes the limits, cgroup_exec_attach()
 * moves the (not yet running) jail child into it, cgroup_exec_destroy() removes it once every
 * process in it is dead.
 *
 * Ownership: struct cgroup_rt owns its paths and directory fds (cgroup_rt_release). It is
 * read-only after the probe and may be shared by threads; a struct cgroup_exec belongs to one
 * exec.
 */
#ifndef SQLFS_EXEC_CGROUP_H
#define SQLFS_EXEC_CGROUP_H

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
};

struct cgroup_limits {
    int64_t memory_bytes; /* 0 = no limit */
    int64_t pids_max;     /* 0 = no limit */
    int64_t cpu_percent;  /* of one core; 0 = no limit */
};

struct cgroup_exec {
    const struct cgroup_rt *rt;
    char name[72]; /* "<id>" below each base */
    bool created[CGROUP_NCTL];
};

/* Probes the hierarchies and prepares the "sqlfs-<instance>" base directories; `instance` is a
 * short name of this server ([A-Za-z0-9_-], e.g. a hash of its data directory). Never fails
 * hard: a host without usable cgroups gives mode CGROUP_NONE and a message. */
void cgroup_probe(const char *instance, struct cgroup_rt *ret);
/* Closes the base directories and removes them when empty. */
void cgroup_rt_release(struct cgroup_rt *rt);

/* Creates the exec cgroup `id` ([A-Za-z0-9_-], at most 64 bytes) with the limits. With mode
 * CGROUP_NONE it succeeds and does nothing. Negative errno on failure (nothing left behind). */
__attribute__((warn_unused_result)) int cgroup_exec_create(const struct cgroup_rt *rt,
                                                           const char *id,
                                                           const struct cgroup_limits *lim,
                                                           struct cgroup_exec *ret);
/* Sets (or tightens) the memory limit of an existing exec cgroup, where it is enforced. */
__attribute__((warn_unused_result)) int cgroup_exec_limit_memory(const struct cgroup_exec *cg,
                                                                 int64_t memory_bytes);
/* Moves process `pid` into the exec cgroup in every hierarchy. */
__attribute__((warn_unused_result)) int cgroup_exec_attach(const struct cgroup_exec *cg, pid_t pid);
/* Kills whatever is still inside (should be nothing) and removes the cgroup. Idempotent. */
void cgroup_exec_destroy(struct cgroup_exec *cg);
/* True if the memory limit was hit (an OOM kill happened) in this exec cgroup. */
bool cgroup_exec_oom(const struct cgroup_exec *cg);

#endif
