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

void sysprobe_run(const struct jail_runtime *rt, struct sysprobe *ret)
{
    memset(ret, 0, sizeof(*ret));
    probe_userns(&ret->userns);
    probe_seccomp(&ret->seccomp);
    if (!rt) {
        set(&ret->overlay, false, "sandbox runtime not initialised");
        set(&ret->cgroup, false, "sandbox runtime not initialised");
        set(&ret->rootfs, false, "sandbox runtime not initialised");
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
}

bool sysprobe_ok(const struct sysprobe *p)
{
    return p->userns.ok && p->overlay.ok && p->seccomp.ok && p->rootfs.ok;
}
