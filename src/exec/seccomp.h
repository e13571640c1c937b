/*
 * seccomp — the syscall filter of the jail, compiled once to classic BPF.
 *
 * seccomp_build() runs libseccomp (which allocates) in the server process at start and exports
 * the program to plain memory; the jail child only installs that memory with prctl(), which is
 * async-signal-safe. The filter denies (EPERM, so tools fail cleanly) everything that could change
 * the jail's mounts, namespaces or the host: mount family, namespace creation/joining, keyrings,
 * bpf, perf, module/kexec, ptrace and cross-process memory access, io_uring, userfaultfd,
 * handle-based opens, swap, reboot, clock setting, acct, quotactl, syslog, vhangup, personality
 * other than the default; other architectures (x32, 32-bit compat) are killed.
 *
 * Ownership: struct seccomp_prog owns `filter`; seccomp_prog_release frees it. Immutable after
 * build, so any number of threads may read it.
 */
#ifndef SQLFS_EXEC_SECCOMP_H
#define SQLFS_EXEC_SECCOMP_H

#include <linux/filter.h>
#include <stddef.h>

struct seccomp_prog {
    struct sock_filter *filter; /* BPF instructions (malloc'd) */
    unsigned short len;         /* number of instructions */
};

/* Compiles the jail filter. -ENOSYS/-EINVAL from libseccomp, -ENOMEM. */
__attribute__((warn_unused_result)) int seccomp_build(struct seccomp_prog *ret);
void seccomp_prog_release(struct seccomp_prog *p);

#endif
