#include "exec/seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <unistd.h>

#include "util/err.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

/* Syscalls denied outright with EPERM. Names unknown to this libseccomp are skipped. */
static const char *const denied[] = {
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "open_tree",
    "mount_setattr",
    "unshare",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    "open_by_handle_at",
    "name_to_handle_at",
    "swapon",
    "swapoff",
    "reboot",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "acct",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "syslog",
    "vhangup",
    "iopl",
    "ioperm",
    "nfsservctl",
    "uselib",
    "kcmp",
    "pidfd_getfd",
    "fanotify_init",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "sysfs",
    "_sysctl",
    "ustat",
    "vm86",
    "vm86old",
    "lsm_set_self_attr",
};

/* Namespace flags a plain clone() may not carry. */
static const unsigned long ns_flags[] = {CLONE_NEWNS,     CLONE_NEWUSER, CLONE_NEWPID,
                                         CLONE_NEWNET,    CLONE_NEWIPC,  CLONE_NEWUTS,
                                         CLONE_NEWCGROUP, CLONE_NEWTIME};

static int add_rules(scmp_filter_ctx ctx)
{
    int r;
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
        int nr = seccomp_syscall_resolve_name(denied[i]);
        if (nr == __NR_SCMP_ERROR)
            continue;
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
        if (r < 0 && r != -EDOM) /* -EDOM: not a syscall on this arch (pseudo) */
            return r;
    }
    for (size_t i = 0; i < sizeof(ns_flags) / sizeof(ns_flags[0]); i++) {
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
        if (r < 0)
            return r;
    }
    /* clone3 passes its flags in memory BPF cannot read: ENOSYS makes libc fall back to
     * clone(), whose flags are checked above. */
    r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    if (r < 0)
        return r;
    /* personality: only PER_LINUX / PER_LINUX32 with harmless modifiers, and the 0xffffffff
     * query. libseccomp allows one comparison per argument and rule, so this is a union of
     * single masked comparisons: (1) bit 31 set but some other bit clear (not the query);
     * (2) bit 31 clear and a dangerous modifier or execution-domain bit set. */
    for (int i = 0; i < 31; i++) {
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, (1UL << i) | (1UL << 31), 1UL << 31));
        if (r < 0)
            return r;
    }
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
    for (size_t i = 0; i < sizeof(bad_bits) / sizeof(bad_bits[0]); i++) {
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, bad_bits[i] | (1UL << 31), bad_bits[i]));
        if (r < 0)
            return r;
    }
    return r;
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
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        return err_set(-ENOMEM, "seccomp: cannot initialise filter");
    /* Only the native ABI: a syscall from another ABI (x32, ia32) kills the process. */
    int r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (r >= 0)
        r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0); /* the child sets it itself */
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
