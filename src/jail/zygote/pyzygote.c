/*
 * sqlfs-pyzygote — the warm Python interpreter that `py-exec` children are forked from
 * (docs/JAIL.md, "Warm Python"; the protocol is jail/zygote_proto.h).
 *
 * One per server, started by it (jail/zygote.c) as host root, as `python3` with no argument
 * (what /proc/<pid>/cmdline of every warm child shows), with the control socket on fd 3 and
 * pipes the server reads as stdout and stderr; its settings come in the first message. It is the
 * rootfs's CPython (libpython, the standard library and site directories of the jail's /usr)
 * embedded in this program, and runs:
 *
 *   1. set-up: a mount namespace of its own with nothing but what every jail sees of the host
 *      (/usr, the jail's /etc and locales, /dev's null, zero, random and urandom, an empty /tmp
 *      on a read-only tmpfs root), its own network (no interface), ipc and uts namespaces
 *      (hostname "sandbox"), no supplementary groups, the jail's rlimits; it keeps only
 *      CAP_SYS_ADMIN and CAP_SYS_CHROOT (to enter a jail's namespaces) and sets no_new_privs;
 *   2. start-up: CPython initialised as `python3` would be in a jail (same environment, same
 *      sys.path), the commonly used modules of the standard library imported (CONF_PRELOAD), the
 *      child's set-up code (child_setup.py) compiled, the heap frozen for the garbage collector;
 *   3. the loop: for each SPAWN of the server it forks a monitor. It never reads a byte of any
 *      sandbox: it only passes the descriptors the server gave it, so nothing of one call can
 *      reach the memory the next call is forked from.
 *
 * The monitor (a fork of the zygote, running only the C below):
 *   wipes the zygote's bookkeeping of other calls, keeps only the connection, the jail's pidfd
 *   and the exec cgroup's cgroup.procs descriptors (every other descriptor, the control socket
 *   and stderr included, is closed), enters every namespace of the jail's init at once
 *   (setns(pidfd): user, mount, pid, network, ipc, uts, cgroup), becomes uid/gid 1000 there with
 *   no group, drops every capability, sets no_new_privs and loads the jail's seccomp filter,
 *   then forks the child — the first process of this call in the jail's pid namespace — and
 *   waits for it: its wait status goes to py-exec (EXIT); if py-exec goes away first the child
 *   is killed. The monitor itself stays outside the jail's pid namespace (a process cannot move
 *   into one), where nothing of the jail can see or signal it.
 *
 * The child (a fork of the monitor: already in the jail, unprivileged and filtered):
 *   moves itself into the exec's cgroup (memory, pids, CPU), starts a session of its own, lets
 *   CPython's fork handlers run (random reseeds, locks are reset), greets py-exec (HELLO), reads
 *   its request (bounded; 10 s), installs the caller's descriptors, working directory, umask,
 *   nice value, limits, signal mask and environment, asks child_setup.py to make the
 *   interpreter the caller's python3 (or to refuse: COLD), sends STARTED with a pidfd of
 *   itself, and runs the program as CPython's main would, then finalises and exits the same way.
 */
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/prctl.h>
#include <linux/seccomp.h>
#include <locale.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "jail/ids.h"
#include "jail/zygote_proto.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define CTL_FD 3
#define CAP_SYS_CHROOT_ 18
#define CAP_SYS_ADMIN_ 21
#define CAP_VERSION_3_ 0x20080522
#define MAX_LIVE 4096 /* monitors at once; the server's own bound (PY_EXEC_MAX) is lower */
#define REQUEST_TIMEOUT_S 10

/* CPython's main (Modules/main.c) uses these to end as the program ended; libpython exports
 * them without a public header. */
PyAPI_DATA(int) _Py_UnhandledKeyboardInterrupt;
PyAPI_FUNC(int) _Py_HandleSystemExit(int *exitcode_p);

/* The child's set-up code (child_setup.py), embedded at build time. */
extern const char child_setup_source[], child_setup_source_end[];

struct cap_header_ {
    uint32_t version;
    int pid;
};
struct cap_data_ {
    uint32_t effective, permitted, inheritable;
};

/* Kept from start-up for every call. */
static struct sock_fprog jail_filter;
/* The server's settings (CONFIG): paths, the jail's limits, the modules to preload. */
enum { CONF_USR, CONF_ETC, CONF_LOCALE, CONF_ROOT, CONF_NOFILE, CONF_FSIZE, CONF_PRELOAD, CONF_N };
static char *conf[CONF_N];
/* cgroup.procs of the zygote's own cgroup (CONFIG), where a monitor goes back to once the child
 * is forked in the exec's: none when the host has no cgroups for it. */
static int home_procs[PYX_MAX_PROCS];
static int nhome;

static char zygote_ctype[64];
static PyObject *child_prepare;  /* child_setup.prepare */
static PyObject *zygote_modules; /* frozenset: the modules the zygote imported */
static PyObject *zy_module;      /* set_flags, get_importer */

/* The zygote's bookkeeping: monitor pid -> spawn id. Wiped in every monitor. */
static struct {
    pid_t pid;
    uint64_t id;
} live[MAX_LIVE];
static int nlive;

/* A monitor forked ahead of its call, waiting for it: the fork is then not on the call's
 * path. It is the zygote's own code, with the zygote's privileges, until its SPAWN arrives. */
static struct {
    pid_t pid;
    int sock;
} spare = {0, -1};

__attribute__((noreturn)) static void fatal(const char *what)
{
    int e = errno;
    char text[256];
    int n = snprintf(text, sizeof(text), "%s: %s", what, strerror(e));
    struct pyx_ctl msg = {PYX_MAGIC, PYX_CTL_FAILED, 0, 0, (uint32_t)(n > 0 ? n : 0)};
    char buf[sizeof(msg) + sizeof(text)];
    memcpy(buf, &msg, sizeof(msg));
    memcpy(buf + sizeof(msg), text, msg.len);
    (void)send(CTL_FD, buf, sizeof(msg) + msg.len, MSG_NOSIGNAL);
    _exit(1);
}

static char ctl_buf[PYX_CTL_MAX]; /* the zygote's messages to the server */

static void ctl_send(uint32_t kind, uint64_t id, const char *text)
{
    struct pyx_ctl msg = {PYX_MAGIC, kind, id, 0, text ? (uint32_t)strlen(text) : 0};
    if (msg.len > PYX_CTL_MAX - sizeof(msg))
        msg.len = PYX_CTL_MAX - sizeof(msg);
    memcpy(ctl_buf, &msg, sizeof(msg));
    if (msg.len)
        memcpy(ctl_buf + sizeof(msg), text, msg.len);
    if (send(CTL_FD, ctl_buf, sizeof(msg) + msg.len, MSG_NOSIGNAL) < 0)
        _exit(0); /* the server is gone */
}

static void reply(int conn, uint32_t kind, int32_t value, int fd)
{
    struct pyx_reply rep = {PYX_MAGIC, kind, value, 0};
    struct iovec iov = {&rep, sizeof(rep)};
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        mh.msg_control = cbuf;
        mh.msg_controllen = sizeof(cbuf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    (void)sendmsg(conn, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* ---- set-up ----------------------------------------------------------------------------- */

static void bind_ro(const char *src, const char *dst, bool recursive)
{
    if (mount(src, dst, NULL, MS_BIND | (recursive ? MS_REC : 0), NULL) < 0)
        fatal(dst);
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
    if (mount_setattr(AT_FDCWD, dst, recursive ? AT_RECURSIVE : 0, &attr, sizeof(attr)) < 0)
        fatal(dst);
}

static void touch(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        fatal(path);
    close(fd);
}

/* What every jail sees of the host, and nothing else: /usr, the jail's /etc, the locale
 * directory ("" = the rootfs's own), on a tmpfs mounted on an empty directory of the server's. */
static void setup_filesystem(void)
{
    if (unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS) < 0)
        fatal("unshare");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        fatal("make mounts private");
    if (mount("tmpfs", conf[CONF_ROOT], "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") < 0)
        fatal("mount the root");
    if (chdir(conf[CONF_ROOT]) < 0)
        fatal("enter the root");
    static const char *const dirs[] = {"usr", "etc", "dev", "tmp", "home", "opt"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
        if (mkdir(dirs[i], 0755) < 0)
            fatal(dirs[i]);
    static const char *const links[][2] = {
        {"usr/bin", "bin"}, {"usr/sbin", "sbin"}, {"usr/lib", "lib"}, {"usr/lib64", "lib64"}};
    for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++)
        if (symlink(links[i][0], links[i][1]) < 0)
            fatal(links[i][1]);
    bind_ro(conf[CONF_USR], "usr", true);
    if (conf[CONF_LOCALE][0])
        bind_ro(conf[CONF_LOCALE], "usr/lib/locale", false);
    bind_ro(conf[CONF_ETC], "etc", false);
    static const char *const nodes[] = {"null", "zero", "random", "urandom"};
    for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
        char src[32], dst[32];
        snprintf(src, sizeof(src), "/dev/%s", nodes[i]);
        snprintf(dst, sizeof(dst), "dev/%s", nodes[i]);
        touch(dst);
        if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
            fatal(dst);
    }
    if (mount("tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=1m") < 0)
        fatal("mount /tmp");
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        fatal("pivot_root");
    if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        fatal("detach the old root");
    struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
    if (mount_setattr(AT_FDCWD, "/", 0, &ro, sizeof(ro)) < 0)
        fatal("make the root read-only");
    if (sethostname("sandbox", 7) < 0)
        fatal("hostname");
    /* This program runs the server host's libpython; the standard library and site directories
     * are the rootfs's. Warm children are the jail's python3 only when both are one CPython
     * release line: the rootfs's /usr/bin/python3 must be python3.<this minor>. */
    char real[PATH_MAX], want[32];
    snprintf(want, sizeof(want), "/usr/bin/python%d.%d", PY_MAJOR_VERSION, PY_MINOR_VERSION);
    if (!realpath("/usr/bin/python3", real) || strcmp(real, want) != 0) {
        char what[96];
        snprintf(what, sizeof(what), "the rootfs's python3 is not %s (the server's libpython)",
                 want + 9);
        errno = ENOENT;
        fatal(what);
    }
}

/* The jail's RLIMIT_NOFILE and RLIMIT_FSIZE (0 = unlimited), no core dumps. */
static void setup_privileges(void)
{
    rlim_t nf = strtoull(conf[CONF_NOFILE], NULL, 10);
    struct rlimit nofile = {nf, nf};
    rlim_t fs = strtoull(conf[CONF_FSIZE], NULL, 10);
    struct rlimit fsize = {fs ? fs : RLIM_INFINITY, fs ? fs : RLIM_INFINITY};
    struct rlimit core = {0, 0};
    if (setgroups(0, NULL) < 0)
        fatal("drop groups");
    if (setrlimit(RLIMIT_NOFILE, &nofile) < 0 || setrlimit(RLIMIT_FSIZE, &fsize) < 0 ||
        setrlimit(RLIMIT_CORE, &core) < 0)
        fatal("rlimits");
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        fatal("dumpable");
    for (int c = 0; c < 64; c++)
        if (c != CAP_SYS_ADMIN_ && c != CAP_SYS_CHROOT_ && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 &&
            errno != EINVAL)
            fatal("drop the bounding set");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        fatal("clear ambient capabilities");
    struct cap_header_ hdr = {CAP_VERSION_3_, 0};
    uint32_t keep = (1u << CAP_SYS_ADMIN_) | (1u << CAP_SYS_CHROOT_);
    struct cap_data_ data[2] = {{keep, keep, 0}, {0, 0, 0}};
    if (syscall(SYS_capset, &hdr, data) < 0)
        fatal("drop capabilities");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        fatal("no_new_privs");
}

/* The server's CONFIG: the jail's seccomp program, then its settings, NUL-terminated. */

static void read_config(void)
{
    static char buf[PYX_CTL_MAX];
    char cbuf[CMSG_SPACE(sizeof(int) * PYX_MAX_PROCS)];
    struct iovec iov = {buf, sizeof(buf)};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    ssize_t n = recvmsg(CTL_FD, &mh, MSG_CMSG_CLOEXEC);
    if (n > 0)
        nhome = pyx_take_fds(&mh, home_procs, PYX_MAX_PROCS);
    struct pyx_ctl h;
    if (n < (ssize_t)sizeof(h))
        fatal("read the configuration");
    memcpy(&h, buf, sizeof(h));
    if (h.magic != PYX_MAGIC || h.kind != PYX_CTL_CONFIG || h.len == 0 ||
        h.len % sizeof(struct sock_filter) || (size_t)n <= sizeof(h) + h.len ||
        h.len / sizeof(struct sock_filter) > USHRT_MAX || buf[n - 1] != '\0') {
        errno = EPROTO;
        fatal("read the configuration");
    }
    jail_filter.len = (unsigned short)(h.len / sizeof(struct sock_filter));
    jail_filter.filter = malloc(h.len);
    if (!jail_filter.filter)
        fatal("configuration");
    memcpy(jail_filter.filter, buf + sizeof(h), h.len);
    char *p = buf + sizeof(h) + h.len, *end = buf + n;
    for (int i = 0; i < CONF_N; i++) {
        if (p >= end || !(conf[i] = strdup(p))) {
            errno = EPROTO;
            fatal("read the configuration");
        }
        p += strlen(p) + 1;
    }
    explicit_bzero(buf, sizeof(buf));
}

/* What a monitor wipes before it enters a jail: the zygote's record of other calls and the
 * server's messages (their ids count every call of the server; the configuration names host
 * paths). */
static void wipe_zygote_state(void)
{
    explicit_bzero(live, sizeof(live));
    nlive = 0;
    explicit_bzero(ctl_buf, sizeof(ctl_buf));
    for (int i = 0; i < CONF_N; i++)
        if (conf[i] && i != CONF_PRELOAD)
            explicit_bzero((char *)conf[i], strlen(conf[i]));
}

/* ---- the interpreter -------------------------------------------------------------------- */

/* zy.set_flags(dict): sys.flags with these fields changed (the type cannot be instantiated from
 * Python). */
static PyObject *zy_set_flags(PyObject *self, PyObject *changes)
{
    (void)self;
    PyObject *flags = PySys_GetObject("flags"); /* borrowed */
    if (!flags || !PyDict_Check(changes))
        return PyErr_Format(PyExc_TypeError, "set_flags needs sys.flags and a dict");
    PyTypeObject *type = Py_TYPE(flags);
    PyObject *names = PyObject_GetAttrString((PyObject *)type, "__match_args__");
    if (!names)
        return NULL;
    PyObject *copy = PyStructSequence_New(type);
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    for (Py_ssize_t i = 0; copy && i < PyTuple_GET_SIZE(flags); i++) {
        PyObject *v = i < n ? PyDict_GetItemWithError(changes, PyTuple_GET_ITEM(names, i)) : NULL;
        if (!v && PyErr_Occurred()) {
            Py_CLEAR(copy);
            break;
        }
        PyObject *orig = PyStructSequence_GetItem(flags, i);
        if (!v)
            v = orig;
        if (v != orig && PyBool_Check(orig)) /* safe_path and dev_mode are bools */
            v = PyObject_IsTrue(v) ? Py_True : Py_False;
        Py_INCREF(v);
        PyStructSequence_SetItem(copy, i, v);
    }
    Py_DECREF(names);
    if (!copy)
        return NULL;
    int r = PySys_SetObject("flags", copy);
    Py_DECREF(copy);
    if (r < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* zy.get_importer(path): whether a path entry hook takes it (a directory or a zip file, run as
 * a package's __main__), as CPython's main asks. */
static PyObject *zy_get_importer(PyObject *self, PyObject *path)
{
    (void)self;
    PyObject *imp = PyImport_GetImporter(path);
    if (!imp)
        return NULL;
    int found = imp != Py_None;
    Py_DECREF(imp);
    return PyBool_FromLong(found);
}

/* sys.modules[name] if imported (new reference), else NULL with no error set. */
static PyObject *imported(const char *name)
{
    PyObject *n = PyUnicode_FromString(name);
    PyObject *m = n ? PyImport_GetModule(n) : NULL;
    Py_XDECREF(n);
    if (!m)
        PyErr_Clear();
    return m;
}

static PyMethodDef zy_methods[] = {
    {"set_flags", zy_set_flags, METH_O, NULL},
    {"get_importer", zy_get_importer, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};
static struct PyModuleDef zy_def = {
    PyModuleDef_HEAD_INIT, "_sqlfs_zygote", NULL, -1, zy_methods, NULL, NULL, NULL, NULL};

/* CPython as `python3` starts in a jail; then the preloads and the child's set-up code. The
 * text of the modules imported goes to the server. */
static void start_python(const char *preload)
{
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.parse_argv = 0;
    PyStatus st = PyConfig_SetString(&config, &config.program_name, L"python3");
    if (!PyStatus_Exception(st))
        st = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(st)) {
        errno = EINVAL;
        fatal(st.err_msg ? st.err_msg : "initialise Python");
    }
    const char *ctype = setlocale(LC_CTYPE, NULL);
    snprintf(zygote_ctype, sizeof(zygote_ctype), "%s", ctype ? ctype : "");

    char done[4096] = "";
    size_t used = 0;
    char *list = strdup(preload);
    for (char *save = NULL, *m = list ? strtok_r(list, ",", &save) : NULL; m;
         m = strtok_r(NULL, ",", &save)) {
        PyObject *mod = PyImport_ImportModule(m);
        if (!mod) {
            PyErr_Clear(); /* not in this rootfs */
            continue;
        }
        Py_DECREF(mod);
        int n = snprintf(done + used, sizeof(done) - used, "%s%s", used ? "," : "", m);
        if (n > 0 && (size_t)n < sizeof(done) - used)
            used += (size_t)n;
    }
    free(list);

    zy_module = PyModule_Create(&zy_def);
    size_t len = (size_t)(child_setup_source_end - child_setup_source);
    char *src = strndup(child_setup_source, len);
    PyObject *globals = PyDict_New();
    PyObject *code = src ? Py_CompileString(src, "<sqlfs py-exec>", Py_file_input) : NULL;
    free(src);
    PyObject *res = NULL;
    if (globals && code && zy_module &&
        PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins()) == 0 &&
        PyDict_SetItemString(globals, "__name__", PyUnicode_FromString("_sqlfs_py_exec")) == 0)
        res = PyEval_EvalCode(code, globals, globals);
    if (res)
        child_prepare = PyDict_GetItemString(globals, "prepare");
    if (!res || !child_prepare) {
        PyErr_Print();
        errno = EINVAL;
        fatal("compile the child's set-up");
    }
    Py_INCREF(child_prepare);
    Py_DECREF(res);
    Py_DECREF(code);
    Py_DECREF(globals);
    /* Everything so far lives as long as the zygote: out of the collector's sight, so that no
     * child's collection writes to (and copies) the pages it shares with the zygote. */
    PyObject *gc = PyImport_ImportModule("gc");
    PyObject *r1 = gc ? PyObject_CallMethod(gc, "collect", NULL) : NULL;
    PyObject *r2 = r1 ? PyObject_CallMethod(gc, "freeze", NULL) : NULL;
    if (!r2)
        PyErr_Clear();
    Py_XDECREF(r1);
    Py_XDECREF(r2);
    Py_XDECREF(gc);
    PyObject *mods = PySys_GetObject("modules"); /* borrowed */
    zygote_modules = mods ? PyFrozenSet_New(mods) : NULL;
    if (!zygote_modules) {
        PyErr_Print();
        errno = EINVAL;
        fatal("list the preloaded modules");
    }
    ctl_send(PYX_CTL_READY, 0, done);
}

/* ---- the child -------------------------------------------------------------------------- */

struct request {
    struct pyx_request h;
    int fds[PYX_MAX_FDS];
    int nfds;
    char *strings;
    char **argv, **envp;
};

/* The whole request must arrive by then (CLOCK_MONOTONIC, ms): a caller that sends it slowly
 * holds a warm slot no longer than REQUEST_TIMEOUT_S. */
static int64_t request_deadline_ms;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int recv_msg(int conn, void *buf, size_t len, int *fds, int maxfds, int *nfds)
{
    for (;;) {
        int64_t left = request_deadline_ms - mono_ms();
        struct pollfd pf = {conn, POLLIN, 0};
        int r = left > 0 ? poll(&pf, 1, (int)left) : 0;
        if (r > 0)
            break;
        if (r == 0 || errno != EINTR)
            return -1;
    }
    char cbuf[CMSG_SPACE(sizeof(int) * PYX_FDS_PER_MSG)];
    struct iovec iov = {buf, len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fds) {
        mh.msg_control = cbuf;
        mh.msg_controllen = sizeof(cbuf);
    }
    ssize_t n;
    do
        n = recvmsg(conn, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return -1;
    if (fds) {
        *nfds = pyx_take_fds(&mh, fds, maxfds);
        if (mh.msg_flags & MSG_CTRUNC)
            return -1;
    }
    return (int)n;
}

/* Reads and checks the request: -1 on anything that does not add up. */
static int read_request(int conn, struct request *rq)
{
    request_deadline_ms = mono_ms() + REQUEST_TIMEOUT_S * 1000;
    int n = recv_msg(conn, &rq->h, sizeof(rq->h), NULL, 0, NULL);
    size_t head = offsetof(struct pyx_request, fd_target);
    if (n < (int)head || rq->h.magic != PYX_MAGIC || rq->h.nfds < 1 || rq->h.nfds > PYX_MAX_FDS ||
        (size_t)n != head + sizeof(int32_t) * rq->h.nfds || rq->h.strings_len > PYX_MAX_STRINGS ||
        rq->h.argc > rq->h.strings_len || rq->h.envc > rq->h.strings_len)
        return -1;
    while (rq->nfds < (int)rq->h.nfds) {
        char byte;
        int got = 0;
        if (recv_msg(conn, &byte, 1, rq->fds + rq->nfds, (int)rq->h.nfds - rq->nfds, &got) != 1 ||
            got == 0)
            return -1;
        rq->nfds += got;
    }
    if (!(rq->strings = malloc(rq->h.strings_len + 1)))
        return -1;
    for (uint32_t off = 0; off < rq->h.strings_len;) {
        int k = recv_msg(conn, rq->strings + off, rq->h.strings_len - off, NULL, 0, NULL);
        if (k <= 0)
            return -1;
        off += (uint32_t)k;
    }
    rq->strings[rq->h.strings_len] = '\0';
    size_t count = rq->h.argc + rq->h.envc;
    if (!(rq->argv = calloc(count + 2, sizeof(char *))))
        return -1;
    char *p = rq->strings, *end = rq->strings + rq->h.strings_len;
    for (size_t i = 0; i < count; i++) {
        char *nul = memchr(p, '\0', (size_t)(end - p));
        if (!nul)
            return -1;
        rq->argv[i < rq->h.argc ? i : i + 1] = p;
        p = nul + 1;
    }
    if (p != end)
        return -1;
    rq->envp = rq->argv + rq->h.argc + 1;
    return 0;
}

/* The caller's descriptors at their numbers, its working directory; *conn moves above them.
 * -1 when they cannot be placed as they were (python3 then starts cold, where they are). */
static int install_fds(struct request *rq, int *conn)
{
    int top = STDERR_FILENO;
    for (int i = 1; i < rq->nfds; i++) {
        if (rq->h.fd_target[i] < 0 || rq->h.fd_target[i] >= PYX_MAX_FDS * 4)
            return -1;
        if (rq->h.fd_target[i] > top)
            top = rq->h.fd_target[i];
    }
    int c = fcntl(*conn, F_DUPFD_CLOEXEC, top + 1);
    if (c < 0)
        return -1;
    close(*conn);
    *conn = c;
    for (int i = 0; i < rq->nfds; i++) {
        int hi = fcntl(rq->fds[i], F_DUPFD_CLOEXEC, top + 1);
        if (hi < 0)
            return -1;
        close(rq->fds[i]);
        rq->fds[i] = hi;
    }
    /* Below top + 1 nothing of ours is left open: each target is free for its descriptor. */
    for (int i = 1; i < rq->nfds; i++) {
        if (dup2(rq->fds[i], rq->h.fd_target[i]) < 0)
            return -1;
        close(rq->fds[i]);
    }
    int r = fchdir(rq->fds[0]);
    close(rq->fds[0]);
    return r;
}

/* /proc/self/cmdline and /proc/self/environ (ps, pgrep -f, psutil) show what python3 started
 * by py-exec would show: "python3 ARGS" and the caller's environment, not the zygote's. The
 * kernel takes the new bounds from PR_SET_MM_MAP (no capability needed without an exe change);
 * the other fields are the current ones (/proc/self/stat). The blocks must outlive the process:
 * they are never freed. Best effort: a kernel without checkpoint/restore keeps the zygote's. */
static void set_cmdline_environ(const struct request *rq)
{
    size_t alen = 0;
    for (uint32_t i = 0; i < rq->h.argc; i++)
        alen += strlen(rq->argv[i]) + 1;
    char *args = malloc(sizeof("python3") + alen);
    if (!args)
        return;
    char *p = stpcpy(args, "python3") + 1;
    for (uint32_t i = 0; i < rq->h.argc; i++)
        p = stpcpy(p, rq->argv[i]) + 1;
    const char *env = rq->envp[0] ? rq->envp[0] : rq->strings + rq->h.strings_len;
    const char *env_end = rq->strings + rq->h.strings_len;
    char stat[2048];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, stat, sizeof(stat) - 1);
    if (fd >= 0)
        close(fd);
    const char *f = n > 0 ? (stat[n] = '\0', strrchr(stat, ')')) : NULL;
    unsigned long long v[52] = {0};
    for (int field = 3; f && field <= 51; field++) { /* field 3 follows ") " */
        f = strchr(f, ' ');
        if (f)
            v[field] = strtoull(++f, NULL, 10);
    }
    if (!f)
        return;
    struct prctl_mm_map map = {
        .start_code = v[26],
        .end_code = v[27],
        .start_data = v[45],
        .end_data = v[46],
        .start_brk = v[47],
        .brk = (uintptr_t)sbrk(0),
        .start_stack = v[28],
        .arg_start = (uintptr_t)args,
        .arg_end = (uintptr_t)p,
        .env_start = (uintptr_t)env,
        .env_end = (uintptr_t)env_end,
        .auxv = NULL,
        .auxv_size = 0,
        .exe_fd = (uint32_t)-1,
    };
    (void)prctl(PR_SET_MM, PR_SET_MM_MAP, &map, sizeof(map), 0);
}

/* umask, nice value, limits and signal mask as py-exec had them. */
static int install_attributes(const struct request *rq)
{
    umask((mode_t)rq->h.umask & 07777);
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, 0);
    if (errno == 0 && nice != rq->h.nice && setpriority(PRIO_PROCESS, 0, rq->h.nice) < 0)
        return -1;
    for (int i = 0; i < PYX_RLIMITS; i++) {
        struct rlimit rl = {(rlim_t)rq->h.rlim[i][0], (rlim_t)rq->h.rlim[i][1]};
        struct rlimit now;
        if (getrlimit(i, &now) < 0 || (now.rlim_cur == rl.rlim_cur && now.rlim_max == rl.rlim_max))
            continue;
        if (setrlimit(i, &rl) < 0)
            return -1;
    }
    sigset_t set;
    sigemptyset(&set);
    for (int s = 1; s <= 64; s++)
        if (rq->h.sigmask & (1ull << (s - 1)))
            sigaddset(&set, s);
    return sigprocmask(SIG_SETMASK, &set, NULL);
}

static int install_environment(const struct request *rq)
{
    if (clearenv() != 0)
        return -1;
    for (char **e = rq->envp; *e; e++)
        if (strchr(*e, '=') && putenv(*e) != 0)
            return -1;
    /* CPython took its encodings from LC_CTYPE at start: a caller whose locale names another
     * one needs a start of its own. */
    const char *ctype = setlocale(LC_CTYPE, "");
    return ctype && strcmp(ctype, zygote_ctype) == 0 ? 0 : -1;
}

static PyObject *bytes_list(char **v, size_t n)
{
    PyObject *l = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; l && i < n; i++) {
        PyObject *b = PyBytes_FromString(v[i]);
        if (!b) {
            Py_CLEAR(l);
            break;
        }
        PyList_SET_ITEM(l, (Py_ssize_t)i, b);
    }
    return l;
}

/* What python3 would be when py-exec runs `python3`: the first executable file of that name
 * on the caller's PATH (execvp's search). Only /usr/bin/python3 is the zygote's interpreter (a
 * venv's python3, say, is not). */
static bool python3_is_ours(void)
{
    const char *path = getenv("PATH");
    if (!path)
        path = "/bin:/usr/bin";
    for (const char *p = path;; p++) {
        const char *end = strchrnul(p, ':');
        char cand[4096];
        int n = end == p ? snprintf(cand, sizeof(cand), "python3")
                         : snprintf(cand, sizeof(cand), "%.*s/python3", (int)(end - p), p);
        struct stat st;
        if (n > 0 && (size_t)n < sizeof(cand) && stat(cand, &st) == 0 && S_ISREG(st.st_mode) &&
            access(cand, X_OK) == 0)
            return strcmp(cand, "/usr/bin/python3") == 0;
        if (!*end)
            return false;
        p = end;
    }
}

/* The PYTHON* variables with a value: what child_setup.py must look at. */
static PyObject *python_vars(const struct request *rq)
{
    PyObject *l = PyList_New(0);
    for (char **e = rq->envp; l && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (strncmp(*e, "PYTHON", 6) != 0 || !eq || !eq[1])
            continue;
        PyObject *k = PyUnicode_DecodeFSDefaultAndSize(*e, eq - *e);
        if (!k || PyList_Append(l, k) < 0)
            Py_CLEAR(l);
        Py_XDECREF(k);
    }
    return l;
}

/* Each standard descriptor's kind for child_setup.py's _stdio: 0 closed, 1 a pipe or a socket,
 * 2 anything else. */
static PyObject *stdio_kinds(void)
{
    int kind[3];
    for (int fd = 0; fd < 3; fd++) {
        struct stat st;
        kind[fd] = fstat(fd, &st) < 0 ? 0 : S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) ? 1 : 2;
    }
    return Py_BuildValue("(iii)", kind[0], kind[1], kind[2]);
}

/* Whether the user site directory of the caller's HOME exists (PYTHONUSERBASE is left to
 * child_setup.py). */
static bool user_site_dir(void)
{
    const char *home = getenv("HOME");
    char dir[4096];
    struct stat st;
    int n = snprintf(dir, sizeof(dir), "%s/.local/lib/python%d.%d/site-packages", home ? home : "",
                     PY_MAJOR_VERSION, PY_MINOR_VERSION);
    return home && n > 0 && (size_t)n < sizeof(dir) && stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
}

/* os.environ (and os.environb): the caller's environment. Their mapping is posix.environ,
 * bytes to bytes, which CPython filled from the zygote's environment at start. */
static int set_os_environ(const struct request *rq)
{
    PyObject *posix = imported("posix");
    PyObject *env = posix ? PyObject_GetAttrString(posix, "environ") : NULL;
    Py_XDECREF(posix);
    if (!env || !PyDict_Check(env)) {
        Py_XDECREF(env);
        return -1;
    }
    PyDict_Clear(env);
    int r = 0;
    for (char **e = rq->envp; r == 0 && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq || eq == *e)
            continue;
        PyObject *k = PyBytes_FromStringAndSize(*e, eq - *e);
        PyObject *v = PyBytes_FromString(eq + 1);
        r = k && v ? PyDict_SetItem(env, k, v) : -1;
        Py_XDECREF(k);
        Py_XDECREF(v);
    }
    Py_DECREF(env);
    return r;
}

/* child_setup.prepare(): 1 ready (*mode, *target set; new references), 0 cold, -1 failed. */
static int prepare(const struct request *rq, PyObject **mode, PyObject **target, bool *unbuffered)
{
    if (!python3_is_ours())
        return 0;
    PyObject *args = bytes_list(rq->argv, rq->h.argc);
    PyObject *pyvars = python_vars(rq);
    PyObject *stdio = stdio_kinds();
    PyObject *ign = PyList_New(0);
    for (int s = 1; ign && s <= 64; s++) {
        if (!(rq->h.sigignored & (1ull << (s - 1))) || s == SIGKILL || s == SIGSTOP)
            continue;
        PyObject *v = PyLong_FromLong(s);
        if (!v || PyList_Append(ign, v) < 0)
            Py_CLEAR(ign);
        Py_XDECREF(v);
    }
    PyObject *res =
        args && ign && pyvars && stdio && set_os_environ(rq) == 0
            ? PyObject_CallFunctionObjArgs(child_prepare, args, ign, zy_module, pyvars, stdio,
                                           user_site_dir() ? Py_True : Py_False, NULL)
            : NULL;
    Py_XDECREF(args);
    Py_XDECREF(ign);
    Py_XDECREF(pyvars);
    Py_XDECREF(stdio);
    if (!res)
        return -1;
    if (res == Py_None) {
        Py_DECREF(res);
        return 0;
    }
    if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != 3) {
        Py_DECREF(res);
        return -1;
    }
    *mode = Py_NewRef(PyTuple_GET_ITEM(res, 0));
    *target = Py_NewRef(PyTuple_GET_ITEM(res, 1));
    *unbuffered = PyObject_IsTrue(PyTuple_GET_ITEM(res, 2)) == 1;
    Py_DECREF(res);
    return 1;
}

/* Modules/main.c's pymain_run_module. */
static int run_module(PyObject *name, bool set_argv0)
{
    PyObject *runpy = PyImport_ImportModule("runpy");
    PyObject *fn = runpy ? PyObject_GetAttrString(runpy, "_run_module_as_main") : NULL;
    PyObject *res = NULL;
    if (fn && PySys_Audit("cpython.run_module", "O", name) == 0)
        res = PyObject_CallFunctionObjArgs(fn, name, set_argv0 ? Py_True : Py_False, NULL);
    Py_XDECREF(fn);
    Py_XDECREF(runpy);
    if (res) {
        Py_DECREF(res);
        return 0;
    }
    if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
        _Py_UnhandledKeyboardInterrupt = 1;
    int code = 1;
    if (!_Py_HandleSystemExit(&code))
        PyErr_Print();
    return code;
}

/* Modules/main.c's pymain_run_file_obj. */
static int run_file(PyObject *filename)
{
    if (PySys_Audit("cpython.run_file", "O", filename) < 0) {
        PyErr_Print();
        return 1;
    }
    PyObject *fs = PyUnicode_EncodeFSDefault(filename);
    if (!fs) {
        PyErr_Print();
        return 1;
    }
    FILE *fp = fopen(PyBytes_AS_STRING(fs), "rbe");
    if (!fp) {
        int e = errno;
        PySys_FormatStderr("python3: can't open file %R: [Errno %d] %s\n", filename, e,
                           strerror(e));
        Py_DECREF(fs);
        return 2;
    }
    struct stat st;
    if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
        PySys_FormatStderr("python3: %R is a directory, cannot continue\n", filename);
        fclose(fp);
        Py_DECREF(fs);
        return 1;
    }
    if (Py_MakePendingCalls() == -1) {
        fclose(fp);
        Py_DECREF(fs);
        PyErr_Print();
        return 1;
    }
    PyCompilerFlags cf = _PyCompilerFlags_INIT;
    int r = PyRun_AnyFileExFlags(fp, PyBytes_AS_STRING(fs), 1, &cf);
    Py_DECREF(fs);
    return r != 0;
}

static int run_program(PyObject *mode, PyObject *target)
{
    const char *m = PyUnicode_AsUTF8(mode);
    PyCompilerFlags cf = _PyCompilerFlags_INIT;
    if (!m)
        return 1;
    if (strcmp(m, "c") == 0) {
        const char *cmd = PyUnicode_AsUTF8(target);
        if (!cmd || PySys_Audit("cpython.run_command", "O", target) < 0) {
            PyErr_Print();
            return 1;
        }
        cf.cf_flags |= PyCF_IGNORE_COOKIE;
        return PyRun_SimpleStringFlags(cmd, &cf) != 0;
    }
    if (strcmp(m, "m") == 0) {
        if (target == Py_None) { /* a directory or zip file with __main__ */
            PyObject *name = PyUnicode_FromString("__main__");
            int r = name ? run_module(name, false) : 1;
            Py_XDECREF(name);
            return r;
        }
        return run_module(target, true);
    }
    if (strcmp(m, "file") == 0)
        return run_file(target);
    if (Py_MakePendingCalls() == -1 || PySys_Audit("cpython.run_stdin", NULL) < 0) {
        PyErr_Print();
        return 1;
    }
    return PyRun_AnyFileExFlags(stdin, "<stdin>", 0, &cf) != 0;
}

/* threading.main_thread().native_id: the monitor's host thread id until set again (an
 * attribute set from C: no Python code runs for it). */
static void refresh_native_id(void)
{
    PyObject *threading = imported("threading");
    PyObject *main = threading ? PyObject_GetAttrString(threading, "_main_thread") : NULL;
    PyObject *tid = main ? PyLong_FromLong((long)gettid()) : NULL;
    if (!tid || PyObject_SetAttrString(main, "_native_id", tid) < 0)
        PyErr_Clear();
    Py_XDECREF(tid);
    Py_XDECREF(main);
    Py_XDECREF(threading);
}

/* Py_FinalizeEx's flush_std_files: -1 when stdout could not be flushed. */
static int flush_std_files(void)
{
    int status = 0;
    const char *names[2] = {"stdout", "stderr"};
    for (int i = 0; i < 2; i++) {
        PyObject *f = PySys_GetObject(names[i]); /* borrowed */
        if (!f || f == Py_None)
            continue;
        PyObject *closed = PyObject_GetAttrString(f, "closed");
        int is_closed = closed ? PyObject_IsTrue(closed) : -1;
        Py_XDECREF(closed);
        if (is_closed == 0) {
            PyObject *r = PyObject_CallMethod(f, "flush", NULL);
            if (!r) {
                if (i == 0) {
                    PyErr_WriteUnraisable(f);
                    status = -1;
                } else {
                    PyErr_Clear();
                }
            }
            Py_XDECREF(r);
        } else {
            PyErr_Clear();
        }
    }
    return status;
}

static void call_module(const char *module, const char *fn)
{
    PyObject *m = imported(module);
    PyObject *r = m ? PyObject_CallMethod(m, fn, NULL) : NULL;
    if (!r)
        PyErr_WriteUnraisable(m ? m : Py_None);
    Py_XDECREF(r);
    Py_XDECREF(m);
}

/* The end of the program, as Py_FinalizeEx ends it for everything the program made: its
 * non-daemon threads are waited for, the atexit functions run, the standard streams are flushed,
 * then __main__ and every module the program imported are cleared (newest first) and the garbage
 * collected, so that their objects' finalizers run (an unclosed file is flushed and closed).
 * What the zygote made (the standard library's modules and their state) is not torn down: that
 * would only write to memory this process shares with the zygote. Returns -1 when stdout could
 * not be flushed (exit status 120). */
static int finish_program(void)
{
    PyObject *threading = imported("threading");
    if (threading) {
        PyObject *r = PyObject_CallMethod(threading, "_shutdown", NULL);
        if (!r)
            PyErr_WriteUnraisable(threading);
        Py_XDECREF(r);
        Py_DECREF(threading);
    }
    if (Py_MakePendingCalls() < 0)
        PyErr_Clear();
    call_module("atexit", "_run_exitfuncs");
    int status = flush_std_files();
    /* Borrowed references only while looking: the zygote's own modules are not even touched
     * (a reference count written is a page copied). */
    PyObject *mods = PySys_GetObject("modules"); /* borrowed */
    PyObject *mine = PyList_New(0);
    Py_ssize_t pos = 0;
    PyObject *name, *mod;
    while (mine && mods && PyDict_Check(mods) && PyDict_Next(mods, &pos, &name, &mod)) {
        bool main =
            PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, "__main__") == 0;
        if ((main || PySet_Contains(zygote_modules, name) == 0) && PyModule_Check(mod) &&
            PyList_Append(mine, mod) < 0)
            Py_CLEAR(mine);
    }
    for (Py_ssize_t i = mine ? PyList_GET_SIZE(mine) - 1 : -1; i >= 0; i--)
        _PyModule_Clear(PyList_GET_ITEM(mine, i));
    Py_XDECREF(mine);
    PyErr_Clear();
    call_module("gc", "collect");
    if (flush_std_files() < 0)
        status = -1;
    fflush(NULL);
    return status;
}

__attribute__((noreturn)) static void child_main(int conn)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || setsid() < 0 ||
        prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0 || prctl(PR_SET_NAME, "python3", 0, 0, 0) < 0) {
        reply(conn, PYX_UNAVAILABLE, PYX_WHY_SPAWN, -1);
        _exit(1);
    }
    /* The monitor ran CPython's after-fork work (it is the zygote's child; this process is
     * its only fork): only the thread's native id is this process's own. */
    refresh_native_id();
    reply(conn, PYX_HELLO, 0, -1);
    static struct request rq;
    if (read_request(conn, &rq) < 0) {
        reply(conn, PYX_UNAVAILABLE, PYX_WHY_PROTOCOL, -1);
        _exit(1);
    }
    if (rq.h.stdin_tty || install_fds(&rq, &conn) < 0 || install_attributes(&rq) < 0 ||
        install_environment(&rq) < 0) {
        reply(conn, PYX_COLD, 0, -1);
        _exit(0);
    }
    set_cmdline_environ(&rq);
    PyObject *mode = NULL, *target = NULL;
    bool unbuffered = false;
    int r = prepare(&rq, &mode, &target, &unbuffered);
    if (r <= 0) {
        PyErr_Clear();
        reply(conn, r == 0 ? PYX_COLD : PYX_UNAVAILABLE, r == 0 ? 0 : PYX_WHY_SETUP, -1);
        _exit(r == 0 ? 0 : 1);
    }
    if (unbuffered) {
        setvbuf(stdin, NULL, _IONBF, BUFSIZ);
        setvbuf(stdout, NULL, _IONBF, BUFSIZ);
        setvbuf(stderr, NULL, _IONBF, BUFSIZ);
    }
    int self = (int)syscall(SYS_pidfd_open, getpid(), 0);
    reply(conn, PYX_STARTED, 0, self);
    if (self >= 0)
        close(self);
    close(conn);
    int code = run_program(mode, target);
    Py_DECREF(mode);
    Py_DECREF(target);
    if (finish_program() < 0)
        code = 120;
    if (_Py_UnhandledKeyboardInterrupt) {
        /* As CPython's main: die by SIGINT, so the caller sees how the program ended. */
        signal(SIGINT, SIG_DFL);
        kill(getpid(), SIGINT);
    }
    _exit(code);
}

/* ---- the monitor ------------------------------------------------------------------------ */

/* Every namespace of the jail's init at once, then the jail's identity and restrictions:
 * uid/gid 1000 with no group, no capability in any set, no_new_privs, the seccomp filter. */
static int enter_jail(int jail_pidfd)
{
    if (setns(jail_pidfd, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |
                              CLONE_NEWUTS | CLONE_NEWCGROUP) < 0)
        return -1;
    close(jail_pidfd);
    if (chdir("/") < 0 || syscall(SYS_setgroups, 0, NULL) < 0 ||
        syscall(SYS_setresgid, SANDBOX_UID, SANDBOX_UID, SANDBOX_UID) < 0 ||
        syscall(SYS_setresuid, SANDBOX_UID, SANDBOX_UID, SANDBOX_UID) < 0)
        return -1;
    for (int c = 0; c < 64; c++)
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
            return -1;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return -1;
    struct cap_header_ hdr = {CAP_VERSION_3_, 0};
    struct cap_data_ none[2] = {{0, 0, 0}, {0, 0, 0}};
    if (syscall(SYS_capset, &hdr, none) < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &jail_filter, 0, 0) < 0)
        return -1;
    return 0;
}

/* Descriptors of one SPAWN at fixed numbers: the connection, the jail's pidfd, the
 * cgroup.procs files. */
enum { M_CONN = 0, M_JAIL, M_PROCS };

/* Zeroes the stack below the caller's frame: what the zygote's earlier calls left there
 * (message headers, descriptor numbers) is not for the jail. */
__attribute__((noinline)) static void scrub_stack(void)
{
    volatile char area[64 * 1024];
    explicit_bzero((char *)area, sizeof(area));
}

__attribute__((noreturn)) static void monitor_main(int *fds, int nprocs)
{
    wipe_zygote_state();
    scrub_stack();
    /* This call's descriptors at fixed numbers (the connection, the jail, the exec's
     * cgroup.procs, the zygote's), then nothing else open. */
    int all[M_PROCS + 2 * PYX_MAX_PROCS];
    int total = M_PROCS + nprocs;
    for (int i = 0; i < total; i++)
        all[i] = fds[i];
    int home = total;
    for (int i = 0; i < nhome; i++)
        all[total++] = home_procs[i];
    int hi[M_PROCS + 2 * PYX_MAX_PROCS];
    for (int i = 0; i < total; i++)
        if ((hi[i] = fcntl(all[i], F_DUPFD, 64)) < 0)
            _exit(2);
    for (int i = 0; i < total; i++)
        if (dup2(hi[i], i) < 0)
            _exit(2);
    if (syscall(SYS_close_range, total, ~0U, 0) < 0)
        _exit(2);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* The monitor's own failure before the child exists: py-exec hears UNAVAILABLE. */
    pid_t zygote = getppid();
    if (enter_jail(M_JAIL) < 0) {
        reply(M_CONN, PYX_UNAVAILABLE, PYX_WHY_SPAWN, -1);
        _exit(2);
    }
    /* It ends with the zygote (its children with it: their parent-death signal), so that the
     * server's count of warm children stays true across a restart. Set after the uid change,
     * which clears it; a zygote already gone is seen by the pid check. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != zygote)
        _exit(2);
    /* The child is forked inside the exec's cgroup, so that the fork counts against its pid
     * limit (a move into a cgroup is not checked against pids.max) and its memory is the
     * exec's from the start; the monitor then goes back to the zygote's. */
    for (int i = M_PROCS; i < home; i++)
        if (write(i, "0", 1) != 1) {
            reply(M_CONN, PYX_UNAVAILABLE, PYX_WHY_SPAWN, -1);
            _exit(2);
        }
    pid_t pid = fork();
    if (pid == 0) {
        (void)syscall(SYS_close_range, M_PROCS, ~0U, 0);
        child_main(M_CONN);
    }
    /* If it cannot go back, it stays in the exec's cgroup, which it leaves with its exit. */
    int back = 0;
    for (int i = home; i < total; i++)
        back += write(i, "0", 1) == 1;
    (void)back;
    (void)syscall(SYS_close_range, M_PROCS, ~0U, 0);
    if (pid < 0) {
        /* The exec is at its pid limit (or ending): python3 starts cold in py-exec's place. */
        reply(M_CONN, PYX_UNAVAILABLE, errno == EAGAIN ? PYX_WHY_BUSY : PYX_WHY_SPAWN, -1);
        _exit(2);
    }
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    struct pollfd pf[2] = {{pidfd, POLLIN, 0}, {M_CONN, POLLRDHUP, 0}};
    bool killed = false;
    for (;;) {
        int n = poll(pf, pidfd >= 0 ? 2 : 1, -1);
        if (n < 0 && errno != EINTR)
            break;
        if (pidfd < 0 || (pf[0].revents & POLLIN))
            break;
        if (!killed && (pf[1].revents & (POLLRDHUP | POLLHUP | POLLERR))) {
            /* py-exec is gone: so is the program it stood for */
            (void)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
            killed = true;
            pf[1].fd = -1;
        }
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    reply(M_CONN, PYX_EXIT, status, -1);
    _exit(0);
}

/* ---- the loop --------------------------------------------------------------------------- */

static void drop_spare(void);

static void reap(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == spare.pid)
            drop_spare();
        for (int i = 0; i < nlive; i++) {
            if (live[i].pid != pid)
                continue;
            uint64_t id = live[i].id;
            live[i] = live[--nlive];
            ctl_send(PYX_CTL_DONE, id, NULL);
            break;
        }
    }
}

static void close_all(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* One SPAWN (header and descriptors) from `fd`: 1, 0 at its end, -1 for anything else (its
 * descriptors closed). */
static int recv_spawn(int fd, struct pyx_ctl *h, int *fds)
{
    int nfds = 0;
    char cbuf[CMSG_SPACE(sizeof(int) * (M_PROCS + PYX_MAX_PROCS))];
    struct iovec iov = {h, sizeof(*h)};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    ssize_t n;
    do
        n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n == 0)
        return 0;
    if (n < 0)
        return -1;
    nfds = pyx_take_fds(&mh, fds, M_PROCS + PYX_MAX_PROCS);
    if (n != (ssize_t)sizeof(*h) || h->magic != PYX_MAGIC || h->kind != PYX_CTL_SPAWN ||
        h->n_procs > PYX_MAX_PROCS || nfds != M_PROCS + (int)h->n_procs ||
        (mh.msg_flags & MSG_CTRUNC)) {
        close_all(fds, nfds);
        return -1;
    }
    return 1;
}

__attribute__((noreturn)) static void spare_main(int sock)
{
    /* CPython's own after-fork work (locks, thread states, the fork handlers: random reseeds)
     * happens here, ahead of the call: the child this monitor forks inherits it. */
    PyOS_AfterFork_Child();
    wipe_zygote_state();
    /* Only its socket (0) and the zygote's cgroup.procs (1..) stay open. */
    int hi = fcntl(sock, F_DUPFD, 64);
    if (hi < 0 || dup2(hi, 0) < 0)
        _exit(2);
    for (int i = 0; i < nhome; i++) {
        int h = fcntl(home_procs[i], F_DUPFD, 64 + 1 + i);
        if (h < 0 || dup2(h, 1 + i) < 0)
            _exit(2);
        home_procs[i] = 1 + i;
    }
    if (syscall(SYS_close_range, 1 + nhome, ~0U, 0) < 0)
        _exit(2);
    struct pyx_ctl h;
    int fds[M_PROCS + PYX_MAX_PROCS];
    if (recv_spawn(0, &h, fds) != 1)
        _exit(0); /* the zygote is gone */
    int nprocs = (int)h.n_procs;
    explicit_bzero(&h, sizeof(h));
    monitor_main(fds, nprocs);
}

static void make_spare(void)
{
    int sv[2];
    if (spare.pid || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return;
    PyOS_BeforeFork();
    pid_t pid = fork();
    if (pid == 0)
        spare_main(sv[1]);
    PyOS_AfterFork_Parent();
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        return;
    }
    spare.pid = pid;
    spare.sock = sv[0];
}

static void drop_spare(void)
{
    if (spare.sock >= 0)
        close(spare.sock);
    spare.pid = 0;
    spare.sock = -1;
}

/* Hands the call to the spare monitor: 0, or -1 when there is none (or it is gone). */
static int use_spare(const struct pyx_ctl *h, const int *fds, int nfds)
{
    if (!spare.pid)
        return -1;
    char cbuf[CMSG_SPACE(sizeof(int) * (M_PROCS + PYX_MAX_PROCS))];
    memset(cbuf, 0, sizeof(cbuf));
    struct iovec iov = {(void *)h, sizeof(*h)};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = cbuf,
                        .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    pid_t pid = spare.pid;
    bool sent = sendmsg(spare.sock, &mh, MSG_NOSIGNAL) == (ssize_t)sizeof(*h);
    drop_spare();
    if (!sent) {
        kill(pid, SIGKILL); /* reaped with the others; not counted */
        return -1;
    }
    live[nlive].pid = pid;
    live[nlive++].id = h->id;
    return 0;
}

static void spawn(void)
{
    struct pyx_ctl h = {0};
    int fds[M_PROCS + PYX_MAX_PROCS];
    int r = recv_spawn(CTL_FD, &h, fds);
    if (r == 0)
        _exit(0); /* the server is gone */
    if (r < 0)
        return;
    int nfds = M_PROCS + (int)h.n_procs;
    if (nlive >= MAX_LIVE) {
        reply(fds[M_CONN], PYX_UNAVAILABLE, PYX_WHY_BUSY, -1);
        close_all(fds, nfds);
        ctl_send(PYX_CTL_DONE, h.id, NULL);
        return;
    }
    if (use_spare(&h, fds, nfds) < 0) {
        PyOS_BeforeFork();
        pid_t pid = fork();
        if (pid == 0) {
            PyOS_AfterFork_Child();
            int nprocs = (int)h.n_procs;
            explicit_bzero(&h, sizeof(h));
            monitor_main(fds, nprocs);
        }
        PyOS_AfterFork_Parent();
        if (pid < 0) {
            reply(fds[M_CONN], PYX_UNAVAILABLE, PYX_WHY_SPAWN, -1);
            ctl_send(PYX_CTL_DONE, h.id, NULL);
        } else {
            live[nlive].pid = pid;
            live[nlive++].id = h.id;
        }
    }
    close_all(fds, nfds);
    make_spare();
}

int main(int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "sqlfs-pyzygote is started by the sqlfs server\n");
        return 2;
    }
    /* fd 4 was this program's image: nothing but 0..3 stays open */
    if (syscall(SYS_close_range, 4, ~0U, 0) < 0)
        fatal("close descriptors");
    read_config();
    setup_filesystem();
    setup_privileges();
    /* Monitors are reaped through a signalfd; the monitor and the child set their own mask. */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0)
        fatal("signalfd");
    start_python(conf[CONF_PRELOAD]);
    make_spare();
    struct pollfd pf[2] = {{CTL_FD, POLLIN, 0}, {sfd, POLLIN, 0}};
    for (;;) {
        if (poll(pf, 2, -1) < 0 && errno != EINTR)
            fatal("poll");
        if (pf[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                ;
            reap();
        }
        if (pf[0].revents & (POLLIN | POLLHUP | POLLERR))
            spawn();
    }
}
