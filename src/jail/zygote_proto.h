/*
 * zygote_proto — what the four parties of a warm `py-exec` agree on (docs/JAIL.md, "Warm
 * Python"): the server (jail/zygote.c), the zygote program and its children
 * (zygote/pyzygote.c), and the `py-exec` program in the jail (zygote/py_exec.c).
 *
 *   py-exec ──connect──▶ the exec's listener (an abstract unix socket in the jail's network
 *                        namespace, made by the server before the jail starts)
 *   server  ──SPAWN + [connection, jail pidfd, cgroup.procs fds]──▶ zygote (control socket)
 *   zygote  ──fork──▶ monitor: joins the jail's namespaces, drops every privilege, forks the
 *                     child into the jail's pid namespace, waits for it, reports its status
 *   child   ──HELLO──▶ py-exec ──request (argv, env, fds, process attributes)──▶ child
 *   child   ──STARTED + its pidfd / COLD / UNAVAILABLE──▶ py-exec
 *   monitor ──EXIT (wait status)──▶ py-exec, which ends the same way
 *
 * All sockets are SOCK_SEQPACKET: one message per send, descriptors travel with the message
 * they belong to. Everything a jail sends is read only by the child, inside the jail.
 */
#ifndef SQLFS_JAIL_ZYGOTE_PROTO_H
#define SQLFS_JAIL_ZYGOTE_PROTO_H

#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The listener's abstract name in every jail with python on (no leading NUL here). */
#define PYX_SOCKET_NAME "sqlfs/py-exec"
#define PYX_MAGIC 0x70797831u /* "pyx1" */

/* ---- py-exec <-> child / monitor / server ------------------------------------------------ */

enum pyx_reply_kind {
    PYX_HELLO = 1,   /* the child is in the jail and reads the request */
    PYX_STARTED,     /* the program runs; an SCM_RIGHTS pidfd of the child comes with it */
    PYX_COLD,        /* run python3 cold, silently: the request needs what a warm start lacks */
    PYX_UNAVAILABLE, /* no warm interpreter for this call: value = enum pyx_why; run cold and
                      * say so */
    PYX_EXIT         /* the child ended: value = its wait status */
};

enum pyx_why {
    PYX_WHY_OFF = 1,  /* turned off (PY_EXEC_WARM=off) */
    PYX_WHY_DOWN,     /* the zygote is not running (starting, restarting, failed) */
    PYX_WHY_BUSY,     /* too many warm children at once */
    PYX_WHY_SPAWN,    /* the zygote could not make the child */
    PYX_WHY_PROTOCOL, /* the request was not understood */
    PYX_WHY_SETUP     /* the child could not set up the interpreter */
};

struct pyx_reply {
    uint32_t magic;
    uint32_t kind;
    int32_t value;
    uint32_t pad;
};

/* The request's first message; then the descriptors (messages of one byte, at most
 * PYX_FDS_PER_MSG descriptors each), then the strings (argv then env, each NUL-terminated, in
 * messages of at most PYX_CHUNK bytes). fd_target[0] is -1: the first descriptor is the caller's
 * working directory; the others are installed at the numbers they had in py-exec. */
#define PYX_MAX_FDS 1024
#define PYX_FDS_PER_MSG 200
#define PYX_CHUNK (32 * 1024)
#define PYX_MAX_STRINGS (4 * 1024 * 1024) /* argv + env, the most execve itself would take */
#define PYX_RLIMITS 16

struct pyx_request {
    uint32_t magic;
    uint32_t argc; /* argv without argv[0] ("py-exec") */
    uint32_t envc;
    uint32_t strings_len;
    uint32_t nfds; /* including the working directory */
    uint32_t umask;
    int32_t nice;
    uint32_t stdin_tty;            /* fd 0 is a terminal */
    uint64_t sigmask;              /* blocked signals: bit n-1 for signal n */
    uint64_t sigignored;           /* ignored signals */
    uint64_t rlim[PYX_RLIMITS][2]; /* RLIMIT_* soft, hard (RLIM_INFINITY as is) */
    int32_t fd_target[PYX_MAX_FDS];
};

/* ---- server <-> zygote ------------------------------------------------------------------- */

enum pyx_ctl_kind {
    PYX_CTL_CONFIG = 1, /* server: the seccomp program follows the header in the message */
    PYX_CTL_READY,      /* zygote: preloaded, serving; text = the preloaded modules */
    PYX_CTL_FAILED,     /* zygote: could not start; text = why */
    PYX_CTL_SPAWN,      /* server: SCM_RIGHTS connection, jail pidfd, n cgroup.procs fds */
    PYX_CTL_DONE        /* zygote: the monitor of spawn `id` has ended */
};

struct pyx_ctl {
    uint32_t magic;
    uint32_t kind;
    uint64_t id;      /* SPAWN, DONE */
    uint32_t n_procs; /* SPAWN: cgroup.procs descriptors after the two */
    uint32_t len;     /* CONFIG: bytes of BPF program after the header; READY/FAILED: text */
};

#define PYX_CTL_MAX (64 * 1024)
#define PYX_MAX_PROCS 3

/* The descriptors a received message brought (SCM_RIGHTS): the first `max` into fds[], any
 * others closed. Returns how many were kept. */
static inline int pyx_take_fds(struct msghdr *mh, int *fds, int max)
{
    int n = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (n < max)
                fds[n++] = fd;
            else
                close(fd);
        }
    }
    return n;
}

#endif
