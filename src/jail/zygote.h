/*
 * zygote — the server's side of the warm Python (docs/JAIL.md, "Warm Python"; the protocol is
 * jail/zygote_proto.h): starts the zygote program and keeps it running, and brokers each
 * `py-exec` of a jail to it.
 *
 * The zygote is started once (and again after it ends, with a growing pause: 1 s doubling to
 * 60 s, back to 1 s after it ran a minute) from the embedded program, as host root with the
 * jail's paths, seccomp program and limits; it keeps two capabilities (to enter a jail) and
 * holds nothing of the server: it is executed, not forked from the server, with the jails'
 * environment.
 *
 * A session is one exec's link to it: a listener (an abstract SOCK_SEQPACKET socket named
 * PYX_SOCKET_NAME in the exec's network namespace, made before the jail starts, so that nothing
 * in the jail can take the name) and the jail it serves. The broker thread accepts each
 * connection and sends it to the zygote together with the jail's pidfd and the exec cgroup's
 * cgroup.procs descriptors: the zygote's child enters exactly that jail. A connection is
 * answered UNAVAILABLE without the zygote when it is off or not running (py-exec then starts
 * python3 cold and says so), or when the exec has `per_exec` warm children running or the
 * server `max` (py-exec then starts cold silently). The broker never reads a connection.
 *
 * Thread-safe. zygote_session_close must be called after the exec's jail has been reaped and
 * before its cgroup is reused (the caller's jail_wait does both in order).
 */
#ifndef SQLFS_JAIL_ZYGOTE_H
#define SQLFS_JAIL_ZYGOTE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "jail/jail.h"

struct zygote;
struct zygote_session;

struct zygote_config {
    bool enabled;        /* PY_EXEC_WARM */
    int64_t per_exec;    /* PY_EXEC_PER_EXEC: warm children of one exec at once */
    int64_t max;         /* PY_EXEC_MAX: warm children of the whole server at once */
    int64_t rate;        /* PY_EXEC_RATE: warm children one exec may start per second */
    int64_t recycle;     /* PY_EXEC_RECYCLE: calls after which a fresh zygote replaces it */
    const char *preload; /* comma-separated modules imported before the first fork */
    int64_t fsize_bytes; /* EXEC_FILE_SIZE_BYTES: the jail's RLIMIT_FSIZE (0 = unlimited), the
                          * hard limit of every warm child */
};

/* The standard library's commonly used modules, not those that map large libraries (hashlib:
 * libcrypto) or are slow and rarer (typing, decimal, argparse), nor logging (its atexit hook
 * would run at the end of every call): every module preloaded makes each fork and exit cost a
 * little more (docs/BENCHMARKS.md). */
#define ZYGOTE_DEFAULT_PRELOAD                                                                     \
    "base64,collections,copy,datetime,fnmatch,functools,glob,io,itertools,json,math,os,pathlib,"   \
    "random,re,shutil,string,struct,subprocess,tempfile,textwrap,time,urllib.parse"

enum zygote_state { ZYGOTE_OFF = 0, ZYGOTE_STARTING, ZYGOTE_READY, ZYGOTE_UNAVAILABLE };

struct zygote_info {
    enum zygote_state state;
    char message[200];   /* why it is unavailable ("" otherwise) */
    pid_t pid;           /* host pid of the running zygote, 0 if none */
    int64_t rss_bytes;   /* its resident memory, 0 if none */
    char preloaded[600]; /* the modules it imported */
    uint64_t spawned;    /* connections handed to it since start */
    uint64_t refused;    /* connections answered without it (off, down, at a limit) */
    uint64_t restarts;   /* times it was started again after it ended */
    uint64_t recycled;   /* times a fresh one replaced it (calls or age) */
    int64_t running;     /* warm children now */
};

/* Starts the broker (and, when enabled, the zygote) for the jails of `rt`. -errno with
 * err_set(). */
__attribute__((warn_unused_result)) int
zygote_new(const struct jail_runtime *rt, const struct zygote_config *cfg, struct zygote **ret);
/* Stops the zygote and the broker; every session must be closed. NULL-safe. */
void zygote_free(struct zygote *z);

/* Serves the jail `p` through `listen_fd` (taken, closed in every case). `p` must outlive the
 * session. -errno. */
__attribute__((warn_unused_result)) int zygote_session_open(struct zygote *z, int listen_fd,
                                                            const struct jail_proc *p,
                                                            struct zygote_session **ret);
/* Stops accepting; warm children still running are the jail's, gone with it. NULL-safe. */
void zygote_session_close(struct zygote_session *s);

void zygote_info(struct zygote *z, struct zygote_info *ret);
const char *zygote_state_name(enum zygote_state s);

#endif
