/*
 * jail_internal — what the two sides of a jail spawn share; not for other modules.
 *
 *   jail.c        the parent side: the runtime (paths, /dev template, /proc probe, seccomp
 *                 program, init image), the plan of one jail, the clone(), the wait;
 *   jail_child.c  the child side, from the clone() to the execve() of the init:
 *                 async-signal-safe system calls only, over a struct child_plan the parent
 *                 prepared completely.
 *
 * Everything the child reads is in the two structs below, written by the parent before the
 * clone() and never changed while a child runs (struct jail_runtime is read-only after
 * jail_runtime_init).
 */
#ifndef SQLFS_JAIL_JAIL_INTERNAL_H
#define SQLFS_JAIL_JAIL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>

#include "jail/cgroup.h"
#include "jail/jail.h"
#include "jail/jail_proto.h"
#include "jail/rootfs.h"
#include "jail/seccomp.h"

#define DEV_NODES 6     /* host device nodes bound into /dev (jail.c dev_nodes) */
#define PROC_READONLY 5 /* /proc entries made read-only (jail.c proc_readonly) */
#define PROC_MASKED 11  /* /proc entries masked (jail.c proc_masked) */

/* Paths below the new root that every exec uses, computed once. */
enum { P_USR, P_LOCALE, P_ETC, P_BIN, P_PROC, P_SYS, P_DEV, P_PTS, P_SHM, P_COUNT };

struct jail_runtime {
    struct rootfs rf;
    struct seccomp_prog prog;
    struct cgroup_rt cg;
    char *p[P_COUNT]; /* p_suffix (relative to the new root) */
    char *dev_src[DEV_NODES], *dev_dst[DEV_NODES];
    char *dev_tmpl; /* <data>/jail/dev (dev_template) */
    /* The /proc entries of proc_readonly / proc_masked this kernel has, relative to the new
     * root ("proc/sys"); masked ones split into files and directories. */
    char *proc_ro[PROC_READONLY], *mask_file[PROC_MASKED], *mask_dir[PROC_MASKED];
    int n_proc_ro, n_mask_file, n_mask_dir;
    char *stub_dst[2][ROOTFS_MAX_STUBS]; /* rootfs target, relative to the new root */
    int init_fd;                         /* sealed memfd holding the jail init program */
    int host_net_fd; /* the server's own network namespace, to come back to after a clone */
    /* The server's hard limits at start: a jail (no capability over the host's user
     * namespace) cannot set a hard limit above them, so its limits are capped there. */
    rlim_t nofile_max, fsize_max;
};

/* Everything the child needs, prepared by the parent; read-only in the child. */
struct child_plan {
    const struct jail_runtime *rt;
    int src_fd[JAIL_SLOT_COUNT]; /* parent fds to move into the slots (-1 = leave it closed) */
    int sync_fd;                 /* the parent writes one byte once maps and cgroup are set */
    bool python, javascript;
    bool new_net;    /* cloned into a new network namespace: bring its lo up */
    const char *bin; /* bind source for /opt/sqlfs/bin */
    const char *cwd;
    char **argv; /* the init's (jail_proto.h) */
    char **envp;
    struct rlimit nofile, fsize, core;
};

/* capget/capset's arguments (linux/capability.h, version 3: two 32-bit words per set). */
#define CAP_VERSION_3 0x20080522
struct cap_header {
    uint32_t version;
    int pid;
};
struct cap_data {
    uint32_t effective, permitted, inheritable;
};

/* The clone() entry point of the child (jail_child.c); arg is the struct child_plan. Never
 * returns: it executes the init or exits 126 after a report. */
int jail_child_main(void *arg);

#endif
