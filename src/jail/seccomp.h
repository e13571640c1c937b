/*
 * seccomp — the syscall filter of the jail, compiled once to classic BPF.
 *
 * seccomp_build() runs libseccomp (which allocates) in the server process at start and exports
 * the program to plain memory; the jail child only installs that memory with prctl(), which is
 * async-signal-safe. The filter is an allowlist modelled on the container default profile
 * (moby's): the listed syscalls are allowed; every other syscall libseccomp knows gets EPERM
 * (so tools fail cleanly) — among them the mount family, namespace creation/joining, keyrings,
 * bpf, perf, module/kexec, ptrace and cross-process memory access, io_uring, userfaultfd,
 * handle-based opens, swap, reboot, clock setting, acct, quotactl, syslog, vhangup; a syscall
 * number it does not know (newer than this libseccomp, or unassigned) gets ENOSYS, as from a
 * kernel without it, so libc falls back. Argument rules: clone with a namespace flag EPERM,
 * clone3 ENOSYS (libc falls back to clone), personality only the default domains with harmless
 * modifiers, socket every family but AF_VSOCK. Other architectures (x32, 32-bit compat) are
 * killed.
 *
 * Ownership: struct seccomp_prog owns `filter`; seccomp_prog_release frees it. Immutable after
 * build, so any number of threads may read it.
 */
#ifndef SQLFS_JAIL_SECCOMP_H
#define SQLFS_JAIL_SECCOMP_H

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
