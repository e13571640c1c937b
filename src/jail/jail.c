/*
 * jail.c — see jail.h for the model. The parent side: jail_runtime_init, jail_spawn,
 * jail_wait, ...; it runs in server threads and may allocate. It prepares everything the child
 * needs in a struct child_plan (jail_internal.h) before the clone(); the child side, which runs
 * between the clone() and the execve() of the init, is jail_child.c.
 * Trusted: everything in struct child_plan (built here from the server's own paths).
 * Untrusted: the script, cwd and env strings, which the child only passes to chdir/execve.
 */
#include "jail/jail.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jail/ids.h"
#include "jail/jail_internal.h"
#include "jail/jail_proto.h"
#include "jail/rootfs.h"
#include "jail/seccomp.h"
#include "util/err.h"
#include "util/fd.h"
#include "util/home.h"
#include "util/log.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

const char *const jail_default_env[] = {
    "HOME=" SANDBOX_HOME,
    "USER=user",
    "LOGNAME=user",
    "SHELL=/bin/bash",
    "PATH=/opt/sqlfs/bin:/usr/local/bin:/usr/bin:/bin",
    "LANG=C.UTF-8",
    "TZ=UTC",
    "TERM=dumb",
    /* The jail's /usr is read-only: pip can only install into the sandbox user's own site
     * (~/.local), which is the sandbox's to manage, so Debian's guard against changing the
     * system's packages (PEP 668) only stands in the way of `pip install`. */
    "PIP_BREAK_SYSTEM_PACKAGES=1",
    NULL,
};

/* The embedded init program (init/jail_init_image.S). */
extern const unsigned char jail_init_image[], jail_init_image_end[];

/* The setup child's stack: it only runs the few frames of jail_child_main (sanitizer builds
 * make them larger). */
#define CHILD_STACK_SIZE (256 * 1024)

static const char *const dev_nodes[DEV_NODES] = {"null",   "zero",    "full",
                                                 "random", "urandom", "tty"};
static const char *const dev_links[][2] = {{"/proc/self/fd", "fd"},
                                           {"/proc/self/fd/0", "stdin"},
                                           {"/proc/self/fd/1", "stdout"},
                                           {"/proc/self/fd/2", "stderr"},
                                           {"pts/ptmx", "ptmx"}};
#define DEV_LINKS (sizeof(dev_links) / sizeof(dev_links[0]))

/* /proc entries covered in every jail, as container runtimes do (runc's and Docker's defaults):
 * read-only, and masked — a file by /dev/null, a directory by an empty read-only one. Only
 * those the kernel has are covered (proc_probe, at start). */
static const char *const proc_readonly[] = {"sys", "sysrq-trigger", "irq", "bus", "fs"};
static const char *const proc_masked[] = {"kcore",   "keys",          "timer_list",  "sched_debug",
                                          "cmdline", "latency_stats", "timer_stats", "interrupts",
                                          "acpi",    "scsi",          "asound"};
_Static_assert(sizeof(proc_readonly) / sizeof(proc_readonly[0]) == PROC_READONLY,
               "PROC_READONLY counts proc_readonly");
_Static_assert(sizeof(proc_masked) / sizeof(proc_masked[0]) == PROC_MASKED,
               "PROC_MASKED counts proc_masked");

/* Relative to the new root (the child's working directory while it assembles it). */
static const char *const p_suffix[P_COUNT] = {
    "usr", "usr/lib/locale", "etc", "opt/sqlfs/bin", "proc", "sys", "dev", "dev/pts", "dev/shm"};

struct jail_proc {
    pid_t pid;
    int pidfd;
    int shell_fd; /* pidfd of the init's child, the shell (jail_pin_shell); -1 = none */
    int stdout_fd, stderr_fd;
    int report_fd;
    struct cgroup_exec cg;
    bool cg_suspect; /* set-up failed: remove the cgroup rather than pool it (it may be what
                      * failed, e.g. removed from outside, and would fail every later exec) */
    bool waited;
    struct jail_status status;
};

static void runtime_free_paths(struct jail_runtime *rt)
{
    for (int i = 0; i < P_COUNT; i++)
        free(rt->p[i]);
    for (int i = 0; i < DEV_NODES; i++) {
        free(rt->dev_src[i]);
        free(rt->dev_dst[i]);
    }
    free(rt->dev_tmpl);
    for (int i = 0; i < rt->n_proc_ro; i++)
        free(rt->proc_ro[i]);
    for (int i = 0; i < rt->n_mask_file; i++)
        free(rt->mask_file[i]);
    for (int i = 0; i < rt->n_mask_dir; i++)
        free(rt->mask_dir[i]);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < ROOTFS_MAX_STUBS; i++)
            free(rt->stub_dst[k][i]);
}

static int runtime_paths(struct jail_runtime *rt)
{
    for (int i = 0; i < P_COUNT; i++)
        if (!(rt->p[i] = strdup(p_suffix[i])))
            return -ENOMEM;
    for (int i = 0; i < DEV_NODES; i++) {
        if (asprintf(&rt->dev_src[i], "/dev/%s", dev_nodes[i]) < 0 ||
            asprintf(&rt->dev_dst[i], "dev/%s", dev_nodes[i]) < 0)
            return -ENOMEM;
    }
    if (asprintf(&rt->dev_tmpl, "%s/dev", rt->rf.jail_dir) < 0)
        return -ENOMEM;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < rt->rf.ntargets[k]; i++)
            if (!(rt->stub_dst[k][i] = strdup(rt->rf.targets[k][i] + 1)))
                return -ENOMEM;
    return 0;
}

/* The jail's /dev, made once: empty files for the host's device nodes to be bound on, the
 * links, and the directories devpts and /dev/shm are mounted on. Every jail binds it
 * read-only, so none creates any of it again, and none can change it. */
static int dev_template(const struct jail_runtime *rt)
{
    if (mkdir(rt->dev_tmpl, 0755) < 0 || chmod(rt->dev_tmpl, 0755) < 0)
        return -errno;
    int dfd = open(rt->dev_tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    int r = 0;
    for (int i = 0; r == 0 && i < DEV_NODES; i++)
        if (mknodat(dfd, dev_nodes[i], S_IFREG | 0644, 0) < 0 ||
            fchmodat(dfd, dev_nodes[i], 0644, 0) < 0) /* whatever the umask */
            r = -errno;
    for (size_t i = 0; r == 0 && i < DEV_LINKS; i++)
        if (symlinkat(dev_links[i][0], dfd, dev_links[i][1]) < 0)
            r = -errno;
    if (r == 0 && (mkdirat(dfd, "pts", 0755) < 0 || mkdirat(dfd, "shm", 0755) < 0 ||
                   fchmodat(dfd, "pts", 0755, 0) < 0 || fchmodat(dfd, "shm", 0755, 0) < 0))
        r = -errno;
    close(dfd);
    return r;
}

/* Appends "proc/<name>" to list[*n]. */
static int proc_path_add(char **list, int *n, const char *name)
{
    if (asprintf(&list[*n], "proc/%s", name) < 0)
        return -ENOMEM;
    (*n)++;
    return 0;
}

/* Picks the entries of proc_readonly and proc_masked this kernel has, looking into a procfs as
 * a jail mounts it: a new instance (the server's own /proc may be mounted with subset=pid or
 * have entries covered by a container runtime), or /proc if none can be made. */
static int proc_probe(struct jail_runtime *rt)
{
    int dfd = -1;
    int fs = fsopen("proc", FSOPEN_CLOEXEC);
    if (fs >= 0) {
        if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
            dfd = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
        close(fs);
    }
    if (dfd < 0 && (dfd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
        return -errno;
    int r = 0;
    struct stat st;
    /* Only a missing entry is skipped: one that cannot be looked at may still be there. */
    for (size_t i = 0; r == 0 && i < PROC_READONLY; i++) {
        if (fstatat(dfd, proc_readonly[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
            r = errno == ENOENT ? 0 : -errno;
        else
            r = proc_path_add(rt->proc_ro, &rt->n_proc_ro, proc_readonly[i]);
    }
    for (size_t i = 0; r == 0 && i < PROC_MASKED; i++) {
        if (fstatat(dfd, proc_masked[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
            r = errno == ENOENT ? 0 : -errno;
        else if (S_ISDIR(st.st_mode))
            r = proc_path_add(rt->mask_dir, &rt->n_mask_dir, proc_masked[i]);
        else
            r = proc_path_add(rt->mask_file, &rt->n_mask_file, proc_masked[i]);
    }
    close(dfd);
    return r;
}

/* Removes <data>/uppers/<*> left by a previous run (no exec is running yet). */
static int clean_uppers(const char *data_dir)
{
    char *dir = NULL;
    if (asprintf(&dir, "%s/uppers", data_dir) < 0)
        return -ENOMEM;
    int r = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        DIR *d = fdopendir(fd);
        if (!d) {
            r = -errno;
            close(fd);
        } else {
            struct dirent *e;
            while (r == 0 && (e = readdir(d))) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                    continue;
                char *path = NULL;
                if (asprintf(&path, "%s/%s", dir, e->d_name) < 0) {
                    r = -ENOMEM;
                    break;
                }
                r = rootfs_rm_rf(path);
                free(path);
            }
            closedir(d);
        }
    }
    free(dir);
    return r;
}

/* The init program in a sealed memfd: executed by every jail from its descriptor, so it needs
 * no path inside the jail and cannot be changed by anyone once sealed. */
static int load_init_image(struct jail_runtime *rt)
{
    int fd = memfd_from_bytes(JAIL_INIT_NAME, jail_init_image,
                              (size_t)(jail_init_image_end - jail_init_image),
                              MEMFD_SEALED | MEMFD_EXECUTABLE);
    if (fd < 0)
        return fd;
    rt->init_fd = fd;
    return 0;
}

/* Exec cgroups are grouped per data directory (FNV-1a of its real path: a name, not a secret),
 * so servers with different data directories on one host leave each other's execs alone. */
static void cgroup_probe_instance(struct jail_runtime *rt)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *c = rt->rf.jail_dir; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ULL;
    char instance[24];
    snprintf(instance, sizeof(instance), "%016llx", (unsigned long long)h);
    cgroup_probe(instance, &rt->cg);
}

int jail_runtime_init(const char *data_dir, const char *rootfs, struct jail_runtime **ret)
{
    struct jail_runtime *rt = calloc(1, sizeof(*rt));
    if (!rt)
        return -ENOMEM;
    for (int i = 0; i < CGROUP_NCTL; i++)
        rt->cg.base_fd[i] = rt->cg.parent_fd[i] = -1; /* freed before the probe ran */
    rt->init_fd = -1;
    struct rlimit rl;
    rt->nofile_max = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_max : RLIM_INFINITY;
    rt->fsize_max = getrlimit(RLIMIT_FSIZE, &rl) == 0 ? rl.rlim_max : RLIM_INFINITY;
    rt->host_net_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (rt->host_net_fd < 0) {
        free(rt);
        return err_set(-errno, "cannot open the server's network namespace");
    }
    int r = rootfs_build(data_dir, rootfs, &rt->rf);
    if (r < 0)
        goto fail;
    cgroup_probe_instance(rt);
    if (!rt->rf.has_bash) {
        r = err_set(-ERR_JAIL_UNAVAILABLE, "the rootfs has no /usr/bin/bash");
        goto fail;
    }
    r = runtime_paths(rt);
    if (r < 0)
        goto fail;
    r = proc_probe(rt);
    if (r < 0) {
        err_set(r, "cannot look into /proc");
        goto fail;
    }
    r = dev_template(rt);
    if (r < 0) {
        err_set(r, "cannot generate the jail's /dev");
        goto fail;
    }
    r = seccomp_build(&rt->prog);
    if (r < 0)
        goto fail;
    r = load_init_image(rt);
    if (r < 0) {
        err_set(r, "cannot load the jail init program");
        goto fail;
    }
    /* Every jail's setup child shares the server's address space until it executes the init, and
     * its uid change resets that space's dumpable flag from fs.suid_dumpable: make the server
     * non-dumpable from the start, so its state does not depend on the first exec or the sysctl
     * (no core dumps; /proc/<pid> owned by root; ptrace needs CAP_SYS_PTRACE). */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
        r = err_set(-errno, "cannot make the server non-dumpable");
        goto fail;
    }
    r = clean_uppers(data_dir);
    if (r < 0) {
        err_set(r, "cannot remove stale overlay upper directories");
        goto fail;
    }
    *ret = rt;
    return 0;
fail:
    jail_runtime_free(rt);
    return r;
}

void jail_runtime_free(struct jail_runtime *rt)
{
    if (!rt)
        return;
    runtime_free_paths(rt);
    rootfs_release(&rt->rf);
    seccomp_prog_release(&rt->prog);
    cgroup_rt_release(&rt->cg);
    if (rt->init_fd >= 0)
        close(rt->init_fd);
    if (rt->host_net_fd >= 0)
        close(rt->host_net_fd);
    free(rt);
}

void jail_runtime_info(const struct jail_runtime *rt, struct jail_info *ret)
{
    ret->cgroup_mode = rt->cg.mode;
    ret->memory_limit = rt->cg.enforced[CGROUP_MEMORY];
    ret->pids_limit = rt->cg.enforced[CGROUP_PIDS];
    ret->cpu_limit = rt->cg.enforced[CGROUP_CPU];
    ret->cgroup_message = rt->cg.message;
}

const struct rootfs *jail_runtime_rootfs(const struct jail_runtime *rt)
{
    return &rt->rf;
}

bool jail_has_sys_admin(void)
{
    struct cap_header hdr = {CAP_VERSION_3, 0};
    struct cap_data data[2];
    memset(data, 0, sizeof(data));
    return syscall(SYS_capget, &hdr, data) == 0 && (data[0].effective & (1u << 21));
}

int jail_proc_stdout_fd(const struct jail_proc *p)
{
    return p->stdout_fd;
}
int jail_proc_stderr_fd(const struct jail_proc *p)
{
    return p->stderr_fd;
}
int jail_proc_pidfd(const struct jail_proc *p)
{
    return p->pidfd;
}
pid_t jail_proc_pid(const struct jail_proc *p)
{
    return p->pid;
}
int jail_proc_open_procs(const struct jail_proc *p, int fds[CGROUP_NCTL])
{
    return cgroup_exec_open_procs(&p->cg, fds);
}

/* A volatile overlay leaves work/work/incompat/volatile/dirty behind, and overlayfs refuses
 * (EINVAL) to mount that work dir again. When a caller reuses its upper/work pair (the
 * previous exec's overlay is gone once jail_wait returned), the marker is stale: drop it. */
static void clear_volatile_marker(const char *work)
{
    static const char *const rel[] = {"work/incompat/volatile/dirty", "work/incompat/volatile",
                                      "work/incompat"};
    for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", work, rel[i]);
        if ((i == 0 ? unlink(path) : rmdir(path)) < 0 && errno == ENOENT && i == 0)
            return; /* a fresh work dir: nothing to clear */
    }
}

/* The overlay root, created with host-root credentials as a detached mount. */
int jail_overlay_open(const struct jail_runtime *rt, const char *lower, const char *upper,
                      const char *work)
{
    clear_volatile_marker(work);
    int fs = fsopen("overlay", FSOPEN_CLOEXEC);
    if (fs < 0)
        return -errno;
    int r = 0;
    if (fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir+", lower, 0) < 0) {
        /* Kernels before 6.8 only know the ':'-separated list (each fsconfig string is at
         * most 256 bytes; ':' and ',' in the paths would need escaping: refuse those). */
        char list[256];
        int n = snprintf(list, sizeof(list), "%s:%s", lower, rt->rf.skel);
        if (errno != EINVAL || n < 0 || (size_t)n >= sizeof(list) || strpbrk(lower, ":,\\") ||
            strpbrk(rt->rf.skel, ":,\\") ||
            fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir", list, 0) < 0)
            r = -errno;
    } else if (fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir+", rt->rf.skel, 0) < 0) {
        r = -errno;
    }
    if (r < 0) {
        close(fs);
        return r;
    }
    if (fsconfig(fs, FSCONFIG_SET_STRING, "upperdir", upper, 0) < 0 ||
        fsconfig(fs, FSCONFIG_SET_STRING, "workdir", work, 0) < 0 ||
        /* The upper dir is thrown away after a crash anyway: skip the syncfs() of the whole
         * host filesystem that unmounting would otherwise do. */
        fsconfig(fs, FSCONFIG_SET_FLAG, "volatile", NULL, 0) < 0 ||
        fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        r = -errno;
    int mfd = r < 0 ? -1 : fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
    if (r == 0 && mfd < 0)
        r = -errno;
    close(fs);
    return r < 0 ? r : mfd;
}

static bool valid_path(const char *s)
{
    return s && s[0] == '/' && strlen(s) < 4096;
}

static bool env_key_eq(const char *a, const char *b)
{
    size_t la = strcspn(a, "="), lb = strcspn(b, "=");
    return la == lb && memcmp(a, b, la) == 0;
}

/* defaults, then the caller's entries (later wins), then PWD. Pointers borrow from the inputs
 * except *pwd, which the caller frees. */
static int build_env(const struct jail_plan *plan, const char *cwd, char ***ret, char **pwd)
{
    size_t nuser = 0;
    while (plan->envp && plan->envp[nuser])
        nuser++;
    size_t ndef = sizeof(jail_default_env) / sizeof(jail_default_env[0]) - 1;
    char **env = calloc(ndef + nuser + 2, sizeof(char *));
    if (!env)
        return -ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < ndef + nuser; i++) {
        const char *e = i < ndef ? jail_default_env[i] : plan->envp[i - ndef];
        const char *eq = strchr(e, '=');
        if (!eq || eq == e) {
            free(env);
            return err_set(-EINVAL, "invalid environment entry");
        }
        if (strncmp(e, "PWD=", 4) == 0)
            continue;
        size_t j = 0;
        while (j < n && !env_key_eq(env[j], e))
            j++;
        env[j] = (char *)e;
        if (j == n)
            n++;
    }
    if (asprintf(pwd, "PWD=%s", cwd) < 0) {
        free(env);
        return -ENOMEM;
    }
    env[n++] = *pwd;
    env[n] = NULL;
    *ret = env;
    return 0;
}

/* argv for the init, which runs bash with argv + 2 (jail_proto.h); *script_fd gets a memfd
 * holding the script when it is too big for -c. */
#define INIT_ARGV_MAX 8
static int build_argv(const struct rootfs *rf, const struct jail_plan *plan,
                      char *argv[INIT_ARGV_MAX], char **copy, int *script_fd)
{
    int n = 0;
    argv[n++] = JAIL_INIT_NAME;
    /* Below /usr/bin: the sandbox tree may shadow the /bin link. */
    argv[n++] = (char *)rf->shell;
    argv[n++] = "bash";
    if (plan->debug)
        argv[n++] = "-x";
    bool big = plan->script_len > JAIL_SCRIPT_ARG_MAX ||
               memchr(plan->script, '\0', plan->script_len) != NULL;
    if (!big) {
        if (!(*copy = strndup(plan->script, plan->script_len)))
            return -ENOMEM;
        argv[n++] = "-c";
        argv[n++] = *copy;
    } else {
        int fd = memfd_from_bytes("script", plan->script, plan->script_len, 0);
        if (fd < 0)
            return fd;
        *script_fd = fd;
        argv[n++] = "/dev/fd/4";
    }
    argv[n] = NULL;
    return 0;
}

static int write_proc_file(pid_t pid, const char *name, const char *text)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = write_all(fd, text, strlen(text));
    close(fd);
    return r;
}

/* One record: 1, 0 at the end of the pipe (no record), -EIO for a partial one, -errno. */
static int read_report(int fd, struct jail_report *rec)
{
    ssize_t n = read_all(fd, rec, sizeof(*rec));
    if (n < 0)
        return (int)n;
    return n == (ssize_t)sizeof(*rec) ? 1 : n == 0 ? 0 : -EIO;
}

/* Everything jail_spawn allocates before the clone, released in one place. */
struct spawn_ctx {
    int out[2], err[2], rep[2], sync[2];
    int in_fd, ovl_fd, script_fd;
    char *script_copy, *pwd;
    char **envp;
};

static void spawn_ctx_release(struct spawn_ctx *c)
{
    int *fds[] = {&c->out[0],  &c->out[1],  &c->err[0], &c->err[1], &c->rep[0],   &c->rep[1],
                  &c->sync[0], &c->sync[1], &c->in_fd,  &c->ovl_fd, &c->script_fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        closep(fds[i]);
    free(c->script_copy);
    free(c->pwd);
    free(c->envp);
}

static int spawn_prepare(const struct jail_runtime *rt, const struct jail_plan *plan,
                         struct spawn_ctx *c, struct child_plan *cp, char *argv[INIT_ARGV_MAX])
{
    const char *cwd = plan->cwd ? plan->cwd : SANDBOX_HOME;
    if (!valid_path(plan->lower) || !valid_path(plan->upper) || !valid_path(plan->work) ||
        !plan->exec_id || (!plan->script && plan->script_len))
        return err_set(-EINVAL, "invalid exec plan");
    if (!valid_path(cwd))
        return err_set(-EINVAL, "cwd must be an absolute path");
    if (pipe2(c->out, O_CLOEXEC) < 0 || pipe2(c->err, O_CLOEXEC) < 0 ||
        pipe2(c->rep, O_CLOEXEC) < 0 || pipe2(c->sync, O_CLOEXEC) < 0)
        return -errno;
    if (fcntl(c->out[0], F_SETFL, O_NONBLOCK) < 0 || fcntl(c->err[0], F_SETFL, O_NONBLOCK) < 0)
        return -errno;
    c->in_fd = plan->stdin_fd >= 0 ? fcntl(plan->stdin_fd, F_DUPFD_CLOEXEC, 3)
                                   : open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (c->in_fd < 0)
        return -errno;
    int r = build_argv(&rt->rf, plan, argv, &c->script_copy, &c->script_fd);
    if (r < 0)
        return r;
    r = build_env(plan, cwd, &c->envp, &c->pwd);
    if (r < 0)
        return r;
    /* A clone shares the caller's overlay instance: no new superblock, no work-dir checks. */
    c->ovl_fd = plan->overlay_fd > STDERR_FILENO
                    ? (int)syscall(SYS_open_tree, plan->overlay_fd, "",
                                   OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH)
                    : jail_overlay_open(rt, plan->lower, plan->upper, plan->work);
    if (c->ovl_fd < 0)
        return err_set(plan->overlay_fd > STDERR_FILENO ? -errno : c->ovl_fd,
                       "cannot mount the sandbox overlay");

    memset(cp, 0, sizeof(*cp));
    cp->rt = rt;
    cp->src_fd[JAIL_SLOT_STDIN] = c->in_fd;
    cp->src_fd[JAIL_SLOT_STDOUT] = c->out[1];
    cp->src_fd[JAIL_SLOT_STDERR] = c->err[1];
    /* 0..2 are never a report pipe: a plan that left the field zeroed gets no fd 3 */
    cp->src_fd[JAIL_SLOT_USER] = plan->report_fd > STDERR_FILENO ? plan->report_fd : -1;
    cp->src_fd[JAIL_SLOT_SCRIPT] = c->script_fd;
    cp->src_fd[JAIL_SLOT_REPORT] = c->rep[1];
    cp->src_fd[JAIL_SLOT_OVL] = c->ovl_fd;
    cp->src_fd[JAIL_SLOT_INIT] = rt->init_fd;
    cp->sync_fd = c->sync[0];
    cp->python = plan->python;
    cp->javascript = plan->javascript;
    cp->new_net = plan->netns_fd <= 2;
    cp->bin = rt->rf.bin[(plan->python ? 1 : 0) | (plan->javascript ? 2 : 0)];
    cp->cwd = cwd;
    cp->argv = argv;
    cp->envp = c->envp;
    rlim_t nofile = plan->limits.nofile > 0 ? (rlim_t)plan->limits.nofile : JAIL_DEFAULT_NOFILE;
    if (nofile > rt->nofile_max)
        nofile = rt->nofile_max;
    cp->nofile = (struct rlimit){nofile, nofile};
    rlim_t fsize = plan->limits.fsize_bytes > 0 ? (rlim_t)plan->limits.fsize_bytes : RLIM_INFINITY;
    if (fsize > rt->fsize_max)
        fsize = rt->fsize_max;
    cp->fsize = (struct rlimit){fsize, fsize};
    cp->core = (struct rlimit){0, 0};
    return 0;
}

/* After the clone(): maps, cgroup, go, then wait for READY or a setup error. */
static int spawn_start(struct spawn_ctx *c, struct jail_proc *p, const char *cwd)
{
    char map[64];
    snprintf(map, sizeof(map), "%d %d 1\n", SANDBOX_UID, SANDBOX_HOST_UID);
    int r = write_proc_file(p->pid, "uid_map", map);
    if (r == 0)
        r = write_proc_file(p->pid, "gid_map", map);
    if (r < 0)
        return err_set(r, "cannot set the sandbox uid map");
    r = cgroup_exec_attach(&p->cg, p->pid);
    if (r < 0)
        return err_set(r, "cannot move the sandbox into its cgroup");
    if (write(c->sync[1], "g", 1) != 1)
        return err_set(-EIO, "cannot start the sandbox");
    closep(&c->sync[1]);
    struct jail_report rec;
    r = read_report(p->report_fd, &rec);
    if (r < 0)
        return err_set(r, "sandbox setup failed");
    if (r == 0)
        return err_set(-ERR_JAIL_UNAVAILABLE, "sandbox setup failed");
    if (rec.kind == JAIL_REPORT_READY)
        return 0;
    if (rec.kind == JAIL_REPORT_CWD_ERR) {
        if (rec.err == ENOTDIR)
            return err_set(-ERR_CWD_MISSING, "cwd is not a directory: %s", cwd);
        if (rec.err == EACCES)
            return err_set(-ERR_CWD_MISSING, "cwd is not accessible: %s", cwd);
        return err_set(-ERR_CWD_MISSING, "cwd does not exist: %s", cwd);
    }
    rec.step[sizeof(rec.step) - 1] = '\0';
    return err_set(-ERR_JAIL_UNAVAILABLE, "sandbox setup failed at %s: %s", rec.step,
                   strerror(rec.err));
}

int jail_spawn(const struct jail_runtime *rt, const struct jail_plan *plan, struct jail_proc **ret)
{
    struct spawn_ctx c = {.out = {-1, -1},
                          .err = {-1, -1},
                          .rep = {-1, -1},
                          .sync = {-1, -1},
                          .in_fd = -1,
                          .ovl_fd = -1,
                          .script_fd = -1};
    struct child_plan cp;
    char *argv[INIT_ARGV_MAX];
    void *stack = NULL;
    sigset_t all, saved;
    bool masked = false;
    struct jail_proc *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->pid = -1;
    p->pidfd = p->shell_fd = p->stdout_fd = p->stderr_fd = p->report_fd = -1;
    int r = spawn_prepare(rt, plan, &c, &cp, argv);
    if (r < 0)
        goto fail;
    /* No memory limit yet: until the init's execve the child shares the server's address space,
     * and an out-of-memory kill in the exec cgroup would pick it and with it kill the server.
     * The limit is set once the init runs in a space of its own (READY). */
    struct cgroup_limits lim = {0, plan->limits.pids_max, plan->limits.cpu_percent};
    r = cgroup_exec_acquire(&rt->cg, &lim, &p->cg);
    if (r < 0) {
        err_set(r, "cannot set up the exec cgroup");
        goto fail;
    }
    /* Heap memory rather than a mapping of its own: freed like any allocation, so sanitizer
     * builds keep an exact picture of it. */
    if (!(stack = malloc(CHILD_STACK_SIZE))) {
        r = -ENOMEM;
        goto fail;
    }
    /* No server signal handler may run on the child's stack: the child starts with every
     * signal blocked and unblocks once its handlers are the defaults. This thread keeps them
     * blocked until the child is done with the shared memory (see jail_child_main). */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    masked = true;
    int pidfd = -1;
    /* The sandbox's kept network namespace belongs to the host's user namespace, which the
     * child (in a user namespace of its own) could not join: this thread joins it for the
     * clone, whose child inherits it, and comes back at once. */
    if (!cp.new_net && setns(plan->netns_fd, CLONE_NEWNET) < 0) {
        r = err_set(-errno, "cannot enter the sandbox's network namespace");
        goto fail;
    }
    /* CLONE_VM: no copy of the server's page tables, and no copy-on-write faults in the
     * server's threads afterwards; the child leaves this address space at the init's execve. */
    int pid = clone(jail_child_main, (char *)stack + CHILD_STACK_SIZE,
                    CLONE_VM | CLONE_PIDFD | CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID |
                        (cp.new_net ? CLONE_NEWNET : 0) | CLONE_NEWIPC | CLONE_NEWUTS | SIGCHLD,
                    &cp, &pidfd);
    int clone_errno = errno;
    if (!cp.new_net && setns(rt->host_net_fd, CLONE_NEWNET) < 0) {
        /* A server thread left in a sandbox's network namespace cannot be trusted with any
         * later connection: stop rather than go on. (Saved at once: the child shares this
         * thread's errno until it executes the init.) */
        int setns_errno = errno;
        log_msg("error", "exec: cannot return to the server's network namespace: %s",
                strerror(setns_errno));
        abort();
    }
    if (pid < 0) {
        r = err_set(-clone_errno, "cannot create the sandbox process");
        goto fail;
    }
    p->pid = (pid_t)pid;
    p->pidfd = pidfd;
    p->stdout_fd = c.out[0];
    p->stderr_fd = c.err[0];
    p->report_fd = c.rep[0];
    c.out[0] = c.err[0] = c.rep[0] = -1;
    /* The child has its own descriptor table (no CLONE_FILES): our copies of its ends go, so
     * that a child dying without a record reads as EOF. */
    int *child_ends[] = {&c.out[1], &c.err[1], &c.rep[1],   &c.sync[0],
                         &c.in_fd,  &c.ovl_fd, &c.script_fd};
    for (size_t i = 0; i < sizeof(child_ends) / sizeof(child_ends[0]); i++)
        closep(child_ends[i]);
    r = spawn_start(&c, p, cp.cwd);
    if (r == 0 && (r = cgroup_exec_limit_memory(&p->cg, plan->limits.memory_bytes)) < 0)
        err_set(r, "cannot set the exec's memory limit");
    if (r < 0)
        goto fail;
    /* READY comes from the init: the child has executed it and no longer uses the stack. */
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    free(stack);
    spawn_ctx_release(&c);
    *ret = p;
    return 0;
fail:
    /* Reaps the child (killing it first) before its stack and plan go away. */
    p->cg_suspect = true;
    jail_proc_free(p);
    if (masked)
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
    free(stack);
    spawn_ctx_release(&c);
    return r;
}

void jail_kill(struct jail_proc *p)
{
    if (!p || p->waited || p->pidfd < 0)
        return;
    (void)syscall(SYS_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0);
}

/* Reads a small /proc file of a host pid into buf (NUL-terminated). Returns its length or
 * -errno. */
static ssize_t read_proc(pid_t pid, const char *rel, char *buf, size_t size)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t len = read_all(fd, buf, size - 1);
    close(fd);
    if (len < 0)
        return len;
    buf[len] = '\0';
    return len;
}

/*
 * Privileged: the server (host root) opens a pidfd to a process inside a jail and later signals
 * it. What it trusts: the init's pid, which stays ours until jail_wait reaps it (the init is the
 * server's child: its pid cannot be reused while unreaped), and the kernel's /proc. What it does
 * not: anything the jail controls. The init's children are read from /proc; the init forks the
 * shell once and nothing else, and before the caller hands the shell a script no other process
 * of the jail can have been reparented to it, so exactly one child is the shell. That pid could
 * end and be reused by any host process between the read and pidfd_open, so the identity is
 * checked after the pidfd pins it: the pinned process's parent must be the init, and it must
 * still be alive after that check (a live process keeps its pid, so the /proc read was about
 * it). From then on the pidfd names that process only: once it ends, signalling fails (ESRCH)
 * rather than reaching whatever reuses the pid.
 */
int jail_pin_shell(struct jail_proc *p)
{
    if (!p || p->pid <= 0 || p->waited)
        return -ESRCH;
    if (p->shell_fd >= 0)
        return 0;
    char buf[1024]; /* the start of /proc/<pid>/status holds PPid */
    char rel[48];
    snprintf(rel, sizeof(rel), "task/%d/children", (int)p->pid);
    ssize_t n = read_proc(p->pid, rel, buf, sizeof(buf));
    if (n < 0)
        return (int)n;
    char *end = NULL;
    errno = 0;
    long child = strtol(buf, &end, 10);
    if (errno || end == buf || child <= 0 || child > INT_MAX)
        return n == 0 ? -ESRCH : -ECHILD;
    while (*end == ' ' || *end == '\n')
        end++;
    if (*end) /* more than one child */
        return -ECHILD;
    int fd = (int)syscall(SYS_pidfd_open, (pid_t)child, 0); /* always close-on-exec */
    if (fd < 0)
        return -errno;
    char want[32];
    snprintf(want, sizeof(want), "\nPPid:\t%d\n", (int)p->pid);
    n = read_proc((pid_t)child, "status", buf, sizeof(buf));
    int r = n < 0 ? (int)n : strstr(buf, want) ? 0 : -ESRCH;
    if (r == 0 && syscall(SYS_pidfd_send_signal, fd, 0, NULL, 0) < 0)
        r = -errno;
    if (r < 0) {
        close(fd);
        return r == -ENOENT ? -ESRCH : r;
    }
    p->shell_fd = fd;
    return 0;
}

int jail_signal_shell(struct jail_proc *p, int sig)
{
    if (!p || p->shell_fd < 0)
        return -EBADF;
    if (p->waited)
        return -ESRCH;
    if (syscall(SYS_pidfd_send_signal, p->shell_fd, sig, NULL, 0) < 0)
        return -errno;
    return 0;
}

int jail_wait(struct jail_proc *p, struct jail_status *ret)
{
    if (p->waited) {
        *ret = p->status;
        return 0;
    }
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    int r;
    do
        r = waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    /* Default: the init itself ended (killed from outside, or setup died). */
    struct jail_status st = {0};
    if (si.si_code == CLD_EXITED) {
        st.exit_code = si.si_status;
    } else {
        st.exit_signal = si.si_status;
        st.exit_code = 128 + si.si_status;
    }
    /* bash's own status, if the init lived to report it. */
    struct jail_report rec;
    while (read_report(p->report_fd, &rec) > 0) {
        if (rec.kind != JAIL_REPORT_STATUS)
            continue;
        if (WIFEXITED(rec.status)) {
            st.exit_code = WEXITSTATUS(rec.status);
            st.exit_signal = 0;
        } else if (WIFSIGNALED(rec.status)) {
            st.exit_signal = WTERMSIG(rec.status);
            st.exit_code = 128 + st.exit_signal;
        }
    }
    st.oom = cgroup_exec_oom(&p->cg);
    /* The init was pid 1 of the jail's pid namespace: with it reaped, nothing of the jail runs. */
    cgroup_exec_release(&p->cg, !p->cg_suspect);
    p->status = st;
    p->waited = true;
    *ret = st;
    return 0;
}

void jail_proc_free(struct jail_proc *p)
{
    if (!p)
        return;
    if (p->pid > 0 && !p->waited) {
        jail_kill(p);
        struct jail_status st;
        if (jail_wait(p, &st) < 0)
            (void)st; /* nothing more to do: the fds are closed below */
    }
    /* Still held only when the child was never created (nothing can be inside: back to the
     * pool) or never reaped (whatever is inside is killed, the cgroup removed). */
    cgroup_exec_release(&p->cg, p->pid <= 0);
    closep(&p->pidfd);
    closep(&p->shell_fd);
    closep(&p->stdout_fd);
    closep(&p->stderr_fd);
    closep(&p->report_fd);
    free(p);
}
