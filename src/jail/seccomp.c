#include "jail/seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <unistd.h>

#include "util/err.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

/* Allowed outright: the container default profile's list (moby profiles/seccomp/default.json)
 * without what needs a capability the jail never has, and without io_uring, ptrace,
 * process_vm_readv/writev, name_to_handle_at, adjtimex and clock_adjtime, which the jail
 * denies; plus mbind, get_mempolicy and set_mempolicy (that profile reserves them to
 * CAP_SYS_NICE, but they only place the caller's own memory; ps calls them through libnuma),
 * and the newer cachestat, fchmodat2, map_shadow_stack and futex_wake/wait/requeue. Names this
 * libseccomp does not know on the native architecture are skipped. */
static const char *const allowed[] = {
    "accept",
    "accept4",
    "access",
    "alarm",
    "arch_prctl",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "clock_getres",
    "clock_gettime",
    "clock_nanosleep",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchownat",
    "fcntl",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstatfs",
    "fsync",
    "ftruncate",
    "futex",
    "futex_requeue",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "get_mempolicy",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresuid",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "madvise",
    "map_shadow_stack",
    "mbind",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "modify_ldt",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedsend",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recvfrom",
    "recvmmsg",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "sendfile",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsuid",
    "setgid",
    "setgroups",
    "set_mempolicy",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setresgid",
    "setresuid",
    "setreuid",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "socketpair",
    "splice",
    "stat",
    "statfs",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_settime",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_settime",
    "times",
    "tkill",
    "truncate",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "write",
    "writev",
};

/* Syscalls with rules of their own (add_conditional_rules). */
static const char *const conditional[] = {"clone", "clone3", "personality", "socket"};

/* Syscall numbers scanned for names libseccomp knows: above every native number of the
 * architectures the jail runs on (x86_64 and aarch64 stay below 512). */
#define SYSCALL_SCAN_MAX 1024

static bool listed(const char *const *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0)
            return true;
    return false;
}

/* Namespace flags a plain clone() may not carry. */
static const unsigned long ns_flags[] = {CLONE_NEWNS,     CLONE_NEWUSER, CLONE_NEWPID,
                                         CLONE_NEWNET,    CLONE_NEWIPC,  CLONE_NEWUTS,
                                         CLONE_NEWCGROUP, CLONE_NEWTIME};

/* AF_VSOCK: vsock reaches the hypervisor and other guests and is not network-namespaced. */
#define FAMILY_VSOCK 40UL

/* clone, personality and socket. Each argument rule set is a disjoint union of single
 * masked comparisons (libseccomp allows one comparison per argument and rule, and an
 * unconditional rule would override the conditional ones), so every value has exactly one
 * action. The masks cover only the low 32 bits where the kernel reads an int or truncates: a
 * caller cannot slip past a rule by setting the high half of the register. */
static int add_conditional_rules(scmp_filter_ctx ctx)
{
    unsigned long all_ns = 0;
    int r;
    for (size_t i = 0; i < sizeof(ns_flags) / sizeof(ns_flags[0]); i++) {
        all_ns |= ns_flags[i];
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
        if (r < 0)
            return r;
    }
    /* clone3 passes its flags in memory BPF cannot read: it gets no rule, so the default
     * ENOSYS makes libc fall back to clone(), whose flags are checked here. */
    r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                         SCMP_A0(SCMP_CMP_MASKED_EQ, all_ns, 0));
    if (r < 0)
        return r;

    /* personality: the 0xffffffff query, and PER_LINUX / PER_LINUX32 with harmless modifiers
     * (UNAME26, ADDR_NO_RANDOMIZE). EPERM: bit 31 clear and a dangerous modifier or
     * execution-domain bit set. Any other value with bit 31 set is no persona at all and gets the
     * default, ENOSYS (a rule per other bit would cost the filter a sixth of its length). */
    static const unsigned long bad_bits[] = {READ_IMPLIES_EXEC,
                                             MMAP_PAGE_ZERO,
                                             ADDR_COMPAT_LAYOUT,
                                             ADDR_LIMIT_32BIT,
                                             ADDR_LIMIT_3GB,
                                             STICKY_TIMEOUTS,
                                             WHOLE_SECONDS,
                                             SHORT_INODE,
                                             FDPIC_FUNCPTRS,
                                             0x01,
                                             0x02,
                                             0x04,
                                             0x10,
                                             0x20,
                                             0x40,
                                             0x80 /* execution domains other than 0x08 */};
    unsigned long forbidden = 1UL << 31;
    for (size_t i = 0; i < sizeof(bad_bits) / sizeof(bad_bits[0]); i++) {
        forbidden |= bad_bits[i];
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, bad_bits[i] | (1UL << 31), bad_bits[i]));
        if (r < 0)
            return r;
    }
    r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(personality), 1,
                         SCMP_A0(SCMP_CMP_MASKED_EQ, forbidden, 0));
    if (r >= 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(personality), 1,
                             SCMP_A0(SCMP_CMP_EQ, 0xffffffffUL, 0));
    if (r < 0)
        return r;

    /* socket: every address family below 64 but AF_VSOCK (the kernel knows fewer than 64;
     * a larger number falls to the default, ENOSYS). */
    static const unsigned long family_ranges[][2] = {
        /* {mask, value}: 0-31, 32-39, 41, 42-43, 44-47, 48-63 */
        {0xffffffe0UL, 0},  {0xfffffff8UL, 32}, {0xffffffffUL, 41},
        {0xfffffffeUL, 42}, {0xfffffffcUL, 44}, {0xfffffff0UL, 48}};
    for (size_t i = 0; i < sizeof(family_ranges) / sizeof(family_ranges[0]); i++) {
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, family_ranges[i][0], family_ranges[i][1]));
        if (r < 0)
            return r;
    }
    return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 1,
                            SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffUL, FAMILY_VSOCK));
}

/* Every native syscall libseccomp knows gets a rule: ALLOW when listed, else EPERM. Numbers it
 * does not know (unassigned, or added to Linux after this libseccomp) keep the filter's default
 * action, ENOSYS. */
static int add_rules(scmp_filter_ctx ctx)
{
    for (int nr = 0; nr < SYSCALL_SCAN_MAX; nr++) {
        char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
        if (!name)
            continue;
        int r = 0;
        if (!listed(conditional, sizeof(conditional) / sizeof(conditional[0]), name)) {
            bool allow = listed(allowed, sizeof(allowed) / sizeof(allowed[0]), name);
            r = seccomp_rule_add(ctx, allow ? SCMP_ACT_ALLOW : SCMP_ACT_ERRNO(EPERM), nr, 0);
        }
        free(name);
        if (r < 0 && r != -EDOM) /* -EDOM: not a syscall on this arch (pseudo) */
            return r;
    }
    return add_conditional_rules(ctx);
}

/* Exports the compiled filter through a memfd into malloc'd memory. */
static int export_bpf(scmp_filter_ctx ctx, struct seccomp_prog *ret)
{
    int fd = memfd_create("sqlfs-seccomp", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = seccomp_export_bpf(ctx, fd);
    if (r < 0)
        goto out;
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0 || size % sizeof(struct sock_filter) != 0 ||
        size / sizeof(struct sock_filter) > BPF_MAXINSNS) {
        r = -EINVAL;
        goto out;
    }
    struct sock_filter *f = malloc((size_t)size);
    if (!f) {
        r = -ENOMEM;
        goto out;
    }
    if (pread(fd, f, (size_t)size, 0) != size) {
        free(f);
        r = -EIO;
        goto out;
    }
    ret->filter = f;
    ret->len = (unsigned short)(size / sizeof(struct sock_filter));
    r = 0;
out:
    close(fd);
    return r;
}

int seccomp_build(struct seccomp_prog *ret)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(ENOSYS));
    if (!ctx)
        return err_set(-ENOMEM, "seccomp: cannot initialise filter");
    /* Only the native ABI: a syscall from another ABI (x32, ia32) kills the process. */
    int r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (r >= 0)
        r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0); /* the child sets it itself */
    /* A binary search over the syscall numbers instead of one comparison per rule in a row. A
     * libseccomp without it builds the row: slower to run, same verdicts. */
    if (r >= 0 && seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2) < 0)
        r = 0;
    if (r >= 0)
        r = add_rules(ctx);
    if (r >= 0)
        r = export_bpf(ctx, ret);
    seccomp_release(ctx);
    if (r < 0)
        return err_set(r, "seccomp: cannot build the filter");
    return 0;
}

void seccomp_prog_release(struct seccomp_prog *p)
{
    free(p->filter);
    p->filter = NULL;
    p->len = 0;
}
