#include "jail/sysprobe.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jail/jail.h"
#include "jail/rootfs.h"
#include "exec/capture.h"
#include "exec/runner.h"
#include "jail/seccomp.h"
#include "util/err.h"

static void set(struct sysprobe_check *c, bool ok, const char *msg)
{
    c->ok = ok;
    snprintf(c->message, sizeof(c->message), "%s", ok ? "ok" : msg);
}

static void probe_userns(struct sysprobe_check *c)
{
    /* A raw clone into every namespace the jail uses; the child exits at once. */
    long pid = syscall(SYS_clone,
                       CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |
                           CLONE_NEWUTS | SIGCHLD,
                       NULL, NULL, NULL, NULL);
    if (pid == 0)
        _exit(0);
    if (pid < 0) {
        set(c, false, "cannot create user/mount/pid/net namespaces");
        return;
    }
    int st;
    while (waitpid((pid_t)pid, &st, 0) < 0 && errno == EINTR)
        ;
    set(c, true, NULL);
}

static void probe_overlay(const struct rootfs *rf, struct sysprobe_check *c)
{
    char *dir = NULL;
    if (asprintf(&dir, "%s/probe", rf->jail_dir) < 0) {
        set(c, false, "out of memory");
        return;
    }
    (void)rootfs_rm_rf(dir);
    char up[4200], wk[4200];
    snprintf(up, sizeof(up), "%s/upper", dir);
    snprintf(wk, sizeof(wk), "%s/work", dir);
    bool ok = mkdir(dir, 0700) == 0 && mkdir(up, 0700) == 0 && mkdir(wk, 0700) == 0;
    int fs = ok ? fsopen("overlay", FSOPEN_CLOEXEC) : -1;
    ok = fs >= 0 && fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir+", rf->skel, 0) == 0 &&
         fsconfig(fs, FSCONFIG_SET_STRING, "upperdir", up, 0) == 0 &&
         fsconfig(fs, FSCONFIG_SET_STRING, "workdir", wk, 0) == 0 &&
         fsconfig(fs, FSCONFIG_SET_FLAG, "volatile", NULL, 0) == 0 &&
         fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0;
    int m = ok ? fsmount(fs, FSMOUNT_CLOEXEC, 0) : -1;
    ok = m >= 0;
    if (m >= 0)
        close(m);
    if (fs >= 0)
        close(fs);
    (void)rootfs_rm_rf(dir);
    free(dir);
    set(c, ok, "cannot mount overlayfs (needs root and overlay with lowerdir+/volatile)");
}

static void probe_seccomp(struct sysprobe_check *c)
{
    struct seccomp_prog prog;
    if (seccomp_build(&prog) < 0) {
        set(c, false, "cannot compile the seccomp filter (libseccomp)");
        return;
    }
    seccomp_prog_release(&prog);
    uint32_t action = SECCOMP_RET_ERRNO;
    bool ok = syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action) == 0;
    set(c, ok, "the kernel has no seccomp filter support");
}

static void probe_exec(const struct jail_runtime *rt, struct sysprobe_check *c)
{
    const struct rootfs *rf = jail_runtime_rootfs(rt);
    char dir[4200], up[4300], wk[4300], lo[4300];
    snprintf(dir, sizeof(dir), "%s/probe-exec", rf->jail_dir);
    snprintf(up, sizeof(up), "%s/upper", dir);
    snprintf(wk, sizeof(wk), "%s/work", dir);
    snprintf(lo, sizeof(lo), "%s/lower", dir);
    (void)rootfs_rm_rf(dir);
    /* the overlay's root shows the upper's mode: 0755 whatever the server's umask */
    if (mkdir(dir, 0700) < 0 || mkdir(up, 0755) < 0 || mkdir(wk, 0700) < 0 || mkdir(lo, 0755) < 0 ||
        chmod(up, 0755) < 0 || chmod(lo, 0755) < 0) {
        set(c, false, "cannot create probe directories");
        return;
    }
    static const char script[] = "echo ok";
    struct jail_plan plan = {.exec_id = "probe",
                             .lower = lo,
                             .upper = up,
                             .work = wk,
                             .script = script,
                             .script_len = sizeof(script) - 1,
                             .stdin_fd = -1,
                             .cwd = "/"};
    struct jail_proc *p = NULL;
    int r = jail_spawn(rt, &plan, &p);
    if (r < 0) {
        snprintf(c->message, sizeof(c->message), "exec failed: %s",
                 err_message() ? err_message() : "setup error");
        c->ok = false;
        (void)rootfs_rm_rf(dir);
        return;
    }
    struct capture_allowance cap = CAPTURE_ALLOWANCE_INIT(64);
    struct capture b;
    capture_init(&b, &cap, NULL);
    struct runner_opts o = {
        .timeout_ms = 10000, .cancel_fd = -1, .on_output = capture_on_output, .ud = &b};
    struct runner_result res;
    r = runner_run(p, &o, &res);
    jail_proc_free(p);
    set(c, r == 0 && res.exit_code == 0 && strcmp(buf_cstr(&b.out.data), "ok\n") == 0,
        "a test exec did not print its output");
    capture_release(&b);
    (void)rootfs_rm_rf(dir);
}

void sysprobe_run(const struct jail_runtime *rt, struct sysprobe *ret)
{
    memset(ret, 0, sizeof(*ret));
    probe_userns(&ret->userns);
    probe_seccomp(&ret->seccomp);
    if (!rt) {
        set(&ret->overlay, false, "sandbox runtime not initialised");
        set(&ret->cgroup, false, "sandbox runtime not initialised");
        set(&ret->rootfs, false, "sandbox runtime not initialised");
        set(&ret->exec, false, "sandbox runtime not initialised");
        return;
    }
    const struct rootfs *rf = jail_runtime_rootfs(rt);
    probe_overlay(rf, &ret->overlay);
    struct stat st;
    bool usr = stat(rf->usr, &st) == 0 && S_ISDIR(st.st_mode);
    set(&ret->rootfs, usr && rf->has_bash,
        usr ? "the rootfs has no /usr/bin/bash" : "the rootfs has no /usr directory");
    struct jail_info info;
    jail_runtime_info(rt, &info);
    ret->memory_limit = info.memory_limit;
    ret->pids_limit = info.pids_limit;
    ret->cpu_limit = info.cpu_limit;
    set(&ret->cgroup, info.memory_limit && info.pids_limit && info.cpu_limit, info.cgroup_message);
    if (ret->userns.ok && ret->overlay.ok && ret->seccomp.ok && ret->rootfs.ok)
        probe_exec(rt, &ret->exec);
    else
        set(&ret->exec, false, "skipped: a required feature is missing");
}

bool sysprobe_ok(const struct sysprobe *p)
{
    return p->userns.ok && p->overlay.ok && p->seccomp.ok && p->rootfs.ok && p->exec.ok;
}
