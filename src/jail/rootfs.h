/*
 * rootfs — the static parts of every jail, generated once at start under "<data>/jail/":
 *
 *   etc/      the curated read-only /etc (passwd/group with `user`, hosts, hostname,
 *             nsswitch.conf, the dynamic linker cache and config, alternatives, CA certificates,
 *             shell start files, timezone UTC, ...). Never shadow, gshadow, ssh keys,
 *             machine-id or anything else secret from the host.
 *   skel/     the lowest overlay layer: empty mount points (usr, etc, proc, dev, opt/sqlfs/bin)
 *             and the merged-/usr links (bin → usr/bin, ...), an empty read-only sys, plus
 *             home/user and tmp, so that mounting over them never writes into the sandbox's upper
 *             layer. Checkouts never hold these reserved paths (store/reserved.h), so the
 *             skeleton's always show through.
 *   stub/     "python"/"javascript" stubs: exit 127 with a one-line hint on stderr.
 *   bin/N/    /opt/sqlfs/bin for each combination of the runtime flags (N = python | js << 1):
 *             py-exec and js-exec, real or stubs.
 *   root/     the empty directory a jail assembles its new root on (in its own mount namespace).
 *   dev/      the jail's /dev template, made by jail.c (jail_runtime_init) after this.
 *   locale/   over the host's /usr only, when the host has no locale archive: its compiled
 *             locales (C.utf8, ...) and one archive holding them all, mounted on the jail's
 *             /usr/lib/locale so that a program's start maps one file instead of 13.
 *
 * It also resolves which files of the rootfs are the python and node interpreters, so that a
 * jail without the runtime can bind the stub over each.
 *
 * Ownership: struct rootfs owns its strings (rootfs_release). Read-only after rootfs_build, safe
 * to share between threads. The rootfs directory itself is trusted (the host's own /usr or an
 * image chosen by the operator).
 */
#ifndef SQLFS_JAIL_ROOTFS_H
#define SQLFS_JAIL_ROOTFS_H

#include <stdbool.h>
#include <stddef.h>

#define ROOTFS_MAX_STUBS 16

struct rootfs {
    char *rootfs;   /* the system image root ("/" by default), without trailing slash */
    char *usr;      /* <rootfs>/usr */
    char *jail_dir; /* <data>/jail */
    char *etc;      /* <data>/jail/etc */
    char *skel;     /* <data>/jail/skel */
    char *newroot;  /* <data>/jail/root */
    char *bin[4];   /* <data>/jail/bin/<python | js << 1> */
    char *stub[2];  /* <data>/jail/stub/{python,javascript} */
    char *locale;   /* <data>/jail/locale, or NULL: the jail sees the rootfs's /usr/lib/locale */
    /* Paths inside the jail (no symlinks, below /usr) to cover with stub[i] when runtime i is
     * off (0 = python, 1 = javascript). */
    char *targets[2][ROOTFS_MAX_STUBS];
    int ntargets[2];
    bool has_bash; /* <rootfs>/usr/bin/bash exists */
    /* The bash binary a jail runs: "/usr/bin/bash-static" when the rootfs has it (the same GNU
     * bash, statically linked: no dynamic loader to run at every exec's start; see
     * docs/BENCHMARKS.md), else "/usr/bin/bash". Scripts still see $BASH = /usr/bin/bash
     * (argv[0] is "bash"). */
    const char *shell;
};

/* Generates <data_dir>/jail from scratch (removing any previous one). `rootfs` NULL means "/".
 * -errno with err_set() on failure. */
__attribute__((warn_unused_result)) int rootfs_build(const char *data_dir, const char *rootfs,
                                                     struct rootfs *ret);
void rootfs_release(struct rootfs *r);

/* Removes a directory tree without following symlinks or crossing mounts. 0 or -errno. */
int rootfs_rm_rf(const char *path);

#endif
