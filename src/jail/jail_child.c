/*
 * jail_child.c — the child side of jail_spawn (jail.h for the model, jail.c for the parent).
 * It runs between clone() and the execve() of the init in the server's own address space
 * (CLONE_VM, like posix_spawn's child) on a stack of its own: it only makes system calls, reads
 * the prepared struct child_plan (jail_internal.h) and writes fixed-size records. Everything in
 * this file is async-signal-safe: no malloc, no stdio, no locks, no libc call that touches
 * shared state. It never returns. The only server state it touches is its parent thread's errno
 * and glibc's per-thread cancellation word (shared thread pointer; harmless: see
 * jail_child_main, and the server never cancels threads) and the address space's dumpable flag
 * (kept off). glibc's internal signals 32/33 cannot be blocked through its API and stay
 * deliverable to the child until the init runs; nothing in a jail can send them.
 * Trusted: everything in struct child_plan (built by the parent from the server's own paths).
 * Untrusted: the script, cwd and env strings, which the child only passes to chdir/execve.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "jail/ids.h"
#include "jail/jail_internal.h"
#include "jail/jail_proto.h"
#include "jail/netns.h"
#include "util/fd.h"

static void child_report(int kind, int err, int status, const char *step)
{
    struct jail_report rec;
    jail_report_fill(&rec, kind, err, status, step);
    if (write_all(JAIL_SLOT_REPORT, &rec, sizeof(rec)) < 0)
        return; /* the parent then reads no record: a setup failure without its reason */
}

__attribute__((noreturn)) static void child_fail(const char *step)
{
    child_report(JAIL_REPORT_SETUP_ERR, errno, 0, step);
    _exit(126);
}

/* Moves the plan's fds into their slots and closes every other inherited fd (the server's
 * sockets and database files must not stay open in the jail). */
static void child_fds(const struct child_plan *cp)
{
    int tmp[JAIL_SLOT_COUNT];
    for (int i = 0; i < JAIL_SLOT_COUNT; i++) {
        tmp[i] = -1;
        /* Above every slot, so no dup2 below can clobber a descriptor still to be moved. */
        if (cp->src_fd[i] >= 0 &&
            (tmp[i] = fcntl(cp->src_fd[i], F_DUPFD_CLOEXEC, JAIL_SLOT_COUNT)) < 0)
            _exit(126);
    }
    for (int i = 0; i < JAIL_SLOT_COUNT; i++) {
        if (tmp[i] >= 0) {
            if (dup2(tmp[i], i) < 0)
                _exit(126);
        } else {
            close(i);
        }
    }
    if (syscall(SYS_close_range, JAIL_SLOT_COUNT, ~0U, 0) < 0)
        _exit(126);
    /* The init keeps the report slot; the overlay and the init image are gone at its exec. */
    for (int i = JAIL_SLOT_REPORT + 1; i < JAIL_SLOT_COUNT; i++)
        if (fcntl(i, F_SETFD, FD_CLOEXEC) < 0 && errno != EBADF)
            _exit(126);
}

static void bind_ro(const char *src, const char *dst, bool recursive, const char *step)
{
    if (mount(src, dst, NULL, MS_BIND | (recursive ? MS_REC : 0), NULL) < 0)
        child_fail(step);
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
    if (mount_setattr(AT_FDCWD, dst, recursive ? AT_RECURSIVE : 0, &attr, sizeof(attr)) < 0)
        child_fail(step);
}

/* /dev is the read-only template dev_template() made at start (bound in child_mounts_early):
 * the host's device nodes go onto its empty files, a devpts instance and a tmpfs onto its
 * directories. */
static void child_dev(const struct jail_runtime *rt)
{
    for (int i = 0; i < DEV_NODES; i++)
        if (mount(rt->dev_src[i], rt->dev_dst[i], NULL, MS_BIND, NULL) < 0)
            child_fail("bind /dev node");
    if (mount("devpts", rt->p[P_PTS], "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620") < 0)
        child_fail("mount /dev/pts");
    if (mount("tmpfs", rt->p[P_SHM], "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
        child_fail("mount /dev/shm");
}

/* Mounts that need to reach into the server's data directory (often mode 0700, owned by host
 * root): done while the child still has the host-root uid it was cloned with (unmapped in its
 * namespace, but the owner of those directories), before it becomes the sandbox user. Every
 * target is relative to the new root, which becomes the working directory. */
static void child_mounts_early(const struct child_plan *cp)
{
    const struct jail_runtime *rt = cp->rt;
    /* Nothing we mount may propagate back to the host. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        child_fail("make mounts private");
    if (move_mount(JAIL_SLOT_OVL, "", AT_FDCWD, rt->rf.newroot, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        child_fail("attach overlay root");
    close(JAIL_SLOT_OVL);
    if (chdir(rt->rf.newroot) < 0)
        child_fail("enter new root");
    /* The sandbox tree could hold a symlink (or file) where a system directory goes; mounting
     * would follow it. Nothing else writes the tree during setup, so checking first is enough. */
    static const char *const mount_points[] = {"usr",           "etc",  "opt", "opt/sqlfs",
                                               "opt/sqlfs/bin", "proc", "dev"};
    for (size_t i = 0; i < sizeof(mount_points) / sizeof(mount_points[0]); i++) {
        struct stat st;
        if (lstat(mount_points[i], &st) < 0 || !S_ISDIR(st.st_mode)) {
            errno = ENOTDIR;
            child_fail("a system directory is shadowed by the sandbox tree");
        }
    }
    bind_ro(rt->rf.usr, rt->p[P_USR], true, "bind /usr");
    if (rt->rf.locale)
        bind_ro(rt->rf.locale, rt->p[P_LOCALE], false, "bind the locale archive");
    bind_ro(rt->rf.etc, rt->p[P_ETC], false, "bind /etc");
    bind_ro(cp->bin, rt->p[P_BIN], false, "bind /opt/sqlfs/bin");
    bind_ro(rt->dev_tmpl, rt->p[P_DEV], false, "bind /dev");
    for (int k = 0; k < 2; k++) {
        if (k == 0 ? cp->python : cp->javascript)
            continue;
        for (int i = 0; i < rt->rf.ntargets[k]; i++)
            bind_ro(rt->rf.stub[k], rt->stub_dst[k][i], false, "bind runtime stub");
    }
}

/* Mounts that create files (they need the mapped sandbox uid), then the switch of root. */
static void child_mounts_late(const struct child_plan *cp)
{
    const struct jail_runtime *rt = cp->rt;
    if (mount("proc", rt->p[P_PROC], "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        child_fail("mount /proc");
    /* Each covered entry gets one bind: a read-only entry of itself, a masked file of /dev/null,
     * a masked directory of the skeleton's empty /sys (root's, 0555). One recursive
     * mount_setattr then makes them all read-only, and a second gives /proc itself back its
     * write access: two calls in all instead of one per entry. */
    for (int i = 0; i < rt->n_proc_ro; i++)
        if (mount(rt->proc_ro[i], rt->proc_ro[i], NULL, MS_BIND, NULL) < 0)
            child_fail("protect /proc");
    for (int i = 0; i < rt->n_mask_file; i++)
        if (mount(rt->dev_src[0], rt->mask_file[i], NULL, MS_BIND, NULL) < 0)
            child_fail("mask /proc");
    for (int i = 0; i < rt->n_mask_dir; i++)
        if (mount(rt->p[P_SYS], rt->mask_dir[i], NULL, MS_BIND, NULL) < 0)
            child_fail("mask /proc");
    if (rt->n_proc_ro + rt->n_mask_file + rt->n_mask_dir > 0) {
        struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
        struct mount_attr rw = {.attr_clr = MOUNT_ATTR_RDONLY};
        if (mount_setattr(AT_FDCWD, rt->p[P_PROC], AT_RECURSIVE, &ro, sizeof(ro)) < 0 ||
            mount_setattr(AT_FDCWD, rt->p[P_PROC], 0, &rw, sizeof(rw)) < 0)
            child_fail("protect /proc");
    }
    child_dev(rt);
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        child_fail("pivot_root");
    /* The old root is stacked under the new one: detach it. */
    if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        child_fail("detach old root");
}

static void child_net(void)
{
    int r = netns_loopback_up();
    if (r < 0) {
        errno = -r;
        child_fail("loopback up");
    }
}

static void child_drop_privileges(const struct child_plan *cp)
{
    if (setrlimit(RLIMIT_NOFILE, &cp->nofile) < 0 || setrlimit(RLIMIT_FSIZE, &cp->fsize) < 0 ||
        setrlimit(RLIMIT_CORE, &cp->core) < 0)
        child_fail("rlimits");
    for (int c = 0; c < 64; c++)
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
            child_fail("drop bounding set");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        child_fail("clear ambient capabilities");
    struct cap_header hdr = {CAP_VERSION_3, 0};
    struct cap_data data[2];
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capset, &hdr, data) < 0)
        child_fail("drop capabilities");
}

static void child_sandbox(void)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        child_fail("no_new_privs");
}

/* The clone() entry point. Until the parent writes "go" it only waits, so the two never
 * race on errno (which they share: same address space, same thread pointer); from "go" until
 * the init's READY record the parent only blocks in read() with every signal blocked. */
int jail_child_main(void *arg)
{
    const struct child_plan *cp = arg;
    /* Die with the spawning thread from the start, not only once the uid change is done (it
     * resets this; set again below): a server killed while this child assembles the jail must
     * not leave it to start the script unsupervised. If it died before this line, the read
     * below sees EOF. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        _exit(126);
    /* Wait until the parent has written our uid/gid maps and placed us in the cgroup. */
    char go;
    if (read(cp->sync_fd, &go, 1) != 1)
        _exit(126);
    /* The handlers are the server's (a copy of its table): default them before unblocking. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            (void)sigaction(s, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* The script's umask, and that of the nodes made below: the usual 022, not the server's
     * own (this task has its own fs_struct: no CLONE_FS). */
    umask(022);
    child_fds(cp);
    /* A session of its own, without a controlling terminal: a server started from a terminal
     * would otherwise share it with the script (/dev/tty, and TIOCSTI input injection). */
    if (setsid() < 0)
        child_fail("new session");
    child_mounts_early(cp);
    /* Host groups of the server must not follow the sandbox. */
    /* Raw system calls, not the libc wrappers: glibc's set*id() broadcast the change to every
     * thread of the process (nptl "setxid"), and this task shares the server's memory and
     * thread list without being one of its threads. The kernel calls change only this task. */
    if (syscall(SYS_setgroups, 0, NULL) < 0 ||
        syscall(SYS_setresgid, SANDBOX_UID, SANDBOX_UID, SANDBOX_UID) < 0 ||
        syscall(SYS_setresuid, SANDBOX_UID, SANDBOX_UID, SANDBOX_UID) < 0)
        child_fail("set uid/gid");
    /* The uid change set the dumpable flag of the address space this task shares with the
     * server from fs.suid_dumpable: keep it off (jail_runtime_init turned it off for good). */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        child_fail("dumpable");
    /* Credential changes reset the parent-death signal: set it afterwards. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        child_fail("pdeathsig");
    if (unshare(CLONE_NEWCGROUP) < 0)
        child_fail("cgroup namespace");
    if (sethostname("sandbox", 7) < 0)
        child_fail("hostname");
    if (cp->new_net)
        child_net();
    child_mounts_late(cp);
    child_drop_privileges(cp);
    if (chdir(cp->cwd) < 0) {
        child_report(JAIL_REPORT_CWD_ERR, errno, 0, "cwd");
        _exit(126);
    }
    child_sandbox();
    struct sock_fprog prog = {.len = cp->rt->prog.len, .filter = cp->rt->prog.filter};
    /* The init runs under the filter too. */
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
        child_fail("seccomp");
    /* From here on the jail has its own address space: the init (jail_proto.h) starts bash. */
    syscall(SYS_execveat, JAIL_SLOT_INIT, "", cp->argv, cp->envp, AT_EMPTY_PATH);
    child_fail("execute the jail init");
}
