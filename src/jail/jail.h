/*
 * jail — runs one bash script in a fresh sandbox: the security boundary of sqlfs.
 *
 * What the script gets: new user, mount, pid, ipc, uts and cgroup namespaces, and a network
 * namespace with only lo: the plan's (the sandbox's kept one) or a new one; uid/gid 1000
 * (`user`) mapped to SANDBOX_HOST_UID and nothing else mapped; root = an overlayfs whose lower
 * layers are the sandbox checkout over a skeleton of mount points and whose upper/work dirs are
 * the caller's fresh directories for this exec; read-only nosuid nodev binds of the rootfs /usr
 * (+ merged-/usr links), a curated /etc and /opt/sqlfs/bin; a fresh /proc with the host
 * information container runtimes hide masked (kcore, keys, timer_list, cmdline, interrupts, ...:
 * /dev/null over files, an empty read-only directory over directories) and /proc/sys,
 * sysrq-trigger, irq, bus and fs read-only; a minimal read-only /dev (a template made at start,
 * with null zero full random urandom tty bound from the host, devpts with its own ptmx, tmpfs
 * /dev/shm); an empty /sys; only a loopback interface; a session
 * of its own (no controlling terminal). No capabilities (bounding, ambient, inheritable sets
 * cleared), no_new_privs, the seccomp allowlist of seccomp.h, rlimits, and a per-exec cgroup
 * with memory/pids/CPU limits where the host has the controllers. The environment is built
 * from scratch: nothing of the server's environment reaches the script.
 *
 * Trust: the plan's paths (lower/upper/work) and exec id come from the server; the script, cwd
 * and env are hostile and only ever interpreted inside the jail. The overlay is created by the
 * server (host root) with the new mount API before the child exists, so overlayfs uses
 * trusted.* xattrs and 0/0 character-device whiteouts in the upper dir, and the sandbox can
 * never remount it.
 *
 * Process model. The server is multi-threaded, so the child is created like posix_spawn's: one
 * clone() with CLONE_VM (the server's address space is shared, not copied: no page-table copy,
 * no copy-on-write faults in the server's threads afterwards), CLONE_PIDFD and all namespaces at
 * once, on a stack of its own. Until it executes the init it only runs async-signal-safe system
 * calls over a plan (struct child_plan in jail_internal.h; the child is jail_child.c) that the
 * parent prepared completely: every path, argv, envp, the BPF program, the fd numbers. No malloc,
 * no stdio, no locks, no write to the server's data. The server is non-dumpable
 * (jail_runtime_init), since the child's uid change would otherwise set the shared address space's
 * dumpable flag from fs.suid_dumpable. An out-of-memory kill must not hit the child while it shares
 * the server's memory, so the exec's memory limit is set only once the init runs. The child:
 *   1. waits for the parent to write its uid/gid maps and move it into the exec cgroup;
 *   2. keeps only its descriptor slots, starts a new session, binds the host's parts (/usr,
 *      /etc, /opt/sqlfs/bin, the /dev template) into the overlay root while it still has the
 *      host-root uid, drops groups/gid/uid, enters a cgroup namespace, names the host, brings
 *      `lo` up when its network namespace is new, mounts /proc (with its masks) and /dev's
 *      nodes, devpts and /dev/shm, pivots into the new root, sets rlimits, drops all
 *      capabilities, enters cwd, sets no_new_privs and loads the seccomp filter;
 *   3. executes the jail init (init/jail_init.c: a static program embedded in the server, run
 *      from a sealed memfd) as pid 1 of the new pid namespace: it forks bash, reaps every zombie,
 *      and when bash exits reports bash's wait status over the report pipe and exits.
 *      pid-namespace semantics then SIGKILL every remaining process (background jobs die with
 *      the script).
 * Setup failures travel to the parent as a fixed-size record over a CLOEXEC pipe (the libuv
 * process.c pattern); jail_spawn returns only once bash is started or setup failed.
 * The parent keeps a pidfd for the namespace init: killing it (jail_kill) kills the namespace.
 * The child asks for PR_SET_PDEATHSIG(SIGKILL): the thread that called jail_spawn must live
 * until jail_wait (the exec route runs both on one connection thread).
 *
 * Exit status: exit_code as bash reports it; when bash died by a signal, exit_signal = N and
 * exit_code = 128 + N. When the namespace is killed from outside (timeout, cancel, OOM of init)
 * exit_signal is SIGKILL and exit_code 137.
 *
 * Thread-safety: a jail_runtime is immutable after jail_runtime_init and shared by all threads.
 * A jail_proc belongs to one thread at a time. SIGCHLD must not be SIG_IGN in the server.
 */
#ifndef SQLFS_JAIL_JAIL_H
#define SQLFS_JAIL_JAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "jail/cgroup.h"

struct jail_runtime;
struct jail_proc;

struct jail_limits {
    int64_t memory_bytes; /* cgroup memory limit; 0 = none */
    int64_t pids_max;     /* cgroup pids limit; 0 = none */
    int64_t cpu_percent;  /* cgroup CPU quota in % of one core; 0 = none */
    int64_t fsize_bytes;  /* RLIMIT_FSIZE; 0 = unlimited */
    int64_t nofile;       /* RLIMIT_NOFILE; 0 = JAIL_DEFAULT_NOFILE (this and fsize are capped
                           * at the server's hard limits) */
};

#define JAIL_DEFAULT_NOFILE 4096
/* Scripts up to this size go to `bash -c`; larger ones are read by bash from a memfd. */
#define JAIL_SCRIPT_ARG_MAX (96 * 1024)

struct jail_plan {
    const char *exec_id; /* names the exec cgroup: [A-Za-z0-9_-], 1..64 bytes */
    const char *lower;   /* checkout directory (read-only lower layer); absolute */
    const char *upper;   /* fresh empty overlay upper dir; absolute, same fs as work */
    const char *work;    /* fresh empty overlay work dir; absolute */
    const char *cwd;     /* start directory inside the jail (absolute); NULL = SANDBOX_HOME */
    char *const *envp;   /* "K=V" entries overlaid on the defaults (later wins); may be NULL */
    const char *script;  /* bash script; binary-safe with script_len */
    size_t script_len;
    bool debug;      /* run with `set -x` (bash -x) */
    int stdin_fd;    /* fd the script reads as stdin (dup'd, not taken), -1 = /dev/null */
    int report_fd;   /* becomes fd 3 of bash (dup'd, not taken): a write end the caller
                      * reads (final cwd, batch markers); -1 (or 0..2) = none */
    int overlay_fd;  /* > 2: a detached overlay from jail_overlay_open to use (cloned, not
                      * taken) instead of mounting lower/upper/work afresh; 0..2 = none */
    int netns_fd;    /* > 2: the sandbox's kept network namespace (netns_take) to run in, joined
                      * not taken; 0..2: a new one with only lo up, gone with the exec */
    bool python;     /* python3/python/py-exec available */
    bool javascript; /* node/js-exec available */
    struct jail_limits limits;
};

struct jail_status {
    int exit_code;   /* bash's exit code, or 128 + exit_signal */
    int exit_signal; /* signal that killed bash (or the jail), 0 if it exited */
    bool oom;        /* the memory limit was hit during the exec */
};

struct jail_info {
    enum cgroup_mode cgroup_mode;
    bool memory_limit; /* limits enforced on this host */
    bool pids_limit;
    bool cpu_limit;
    const char *cgroup_message; /* "" or why some cgroup limit is missing */
};

/* Prepares everything execs share: generates <data_dir>/jail (see rootfs.h), compiles the
 * seccomp filter, probes cgroups and removes leftovers of a previous run (stale exec cgroups
 * with their processes, and everything under <data_dir>/uppers/). Call it once at start,
 * before any exec runs. `rootfs` NULL = the host's "/". Jail mounts only ever exist inside the
 * per-exec mount namespaces, so no host mount can be left behind by a crash.
 * -errno / -ERR_JAIL_UNAVAILABLE with err_set(). */
__attribute__((warn_unused_result)) int jail_runtime_init(const char *data_dir, const char *rootfs,
                                                          struct jail_runtime **ret);
void jail_runtime_free(struct jail_runtime *rt);
/* True when this process has CAP_SYS_ADMIN in its effective set (with uid 0: what the jail
 * needs of the server; see exec_engine_new). */
bool jail_has_sys_admin(void);
void jail_runtime_info(const struct jail_runtime *rt, struct jail_info *ret);
/* The generated static tree (rootfs.h), for probes and tests. */
const struct rootfs *jail_runtime_rootfs(const struct jail_runtime *rt);

/* Mounts the overlay lower/upper/work (host-root credentials, new mount API) as a detached
 * mount and returns its fd (O_CLOEXEC), for jail_plan.overlay_fd: every jail started with it gets
 * its own clone of the mount over the same overlay instance, so a caller can keep an unchanged
 * upper for the next exec of the same tree without paying the overlay's mount-time work again.
 * One jail at a time per fd. -errno. */
__attribute__((warn_unused_result)) int jail_overlay_open(const struct jail_runtime *rt,
                                                          const char *lower, const char *upper,
                                                          const char *work);

/* Starts the script. On success *ret owns the process; its stdout/stderr pipes are
 * non-blocking read ends. Errors: -ERR_CWD_MISSING with err_set("cwd does not exist: ...") when
 * the start directory is missing (or not a directory, or not accessible) inside the jail: the
 * only failure the script's sandbox can cause. Every other failure is the server's: -EINVAL
 * (bad plan), other -errno / -ERR_JAIL_UNAVAILABLE on setup failure. Nothing is left running on
 * failure. */
__attribute__((warn_unused_result)) int
jail_spawn(const struct jail_runtime *rt, const struct jail_plan *plan, struct jail_proc **ret);
int jail_proc_stdout_fd(const struct jail_proc *p);
int jail_proc_stderr_fd(const struct jail_proc *p);
int jail_proc_pidfd(const struct jail_proc *p); /* readable (POLLIN) when the jail has ended */
pid_t jail_proc_pid(const struct jail_proc *p); /* host pid of the namespace init */
/* The exec cgroup's cgroup.procs files (cgroup_exec_open_procs): how a process the server did
 * not start (a warm py-exec child, jail/zygote.h) joins the jail's cgroup. Count or -errno. */
__attribute__((warn_unused_result)) int jail_proc_open_procs(const struct jail_proc *p,
                                                             int fds[CGROUP_NCTL]);
/* SIGKILLs the whole jail. Safe to call repeatedly and after it ended. */
void jail_kill(struct jail_proc *p);
/* The jail's shell (the bash the init started, its only child) as a signal target for the
 * caller, e.g. a driver script that traps a signal. jail_pin_shell opens a pidfd to it; call it
 * right after jail_spawn, before the shell has been given anything untrusted to run: it fails
 * with -ECHILD unless the init has exactly one child, and with -ESRCH when the shell has ended.
 * Nothing is pinned on failure. jail_signal_shell sends `sig` to the pinned shell only (never
 * to the host, never to any other process of the jail, even after the shell has ended and its
 * pid was reused): 0, -EBADF when nothing is pinned, -ESRCH when the shell has ended. */
__attribute__((warn_unused_result)) int jail_pin_shell(struct jail_proc *p);
__attribute__((warn_unused_result)) int jail_signal_shell(struct jail_proc *p, int sig);
/* Waits for the jail to end (blocking), reaps it, removes its cgroup, fills *ret. Idempotent:
 * later calls return the same status. 0 or -errno. */
__attribute__((warn_unused_result)) int jail_wait(struct jail_proc *p, struct jail_status *ret);
/* Kills (if still running), waits, closes everything. NULL-safe. */
void jail_proc_free(struct jail_proc *p);

/* Env defaults every exec starts from (NULL-terminated "K=V"; PWD is added per exec). */
extern const char *const jail_default_env[];

#endif
