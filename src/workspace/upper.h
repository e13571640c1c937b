/*
 * upper — the writable layer of an exec: an overlay upper over the sandbox's checkout, made for
 * each exec, discarded after it in the background, or kept for the sandbox's next exec.
 *
 * Layout: <uppers>/<dir>/upper and <uppers>/<dir>/work, on the filesystem of the checkouts (a
 * commit moves the exec's files into the checkout by rename: checkout_apply_upper), removed
 * through the checkouts' trash (checkout_discard) so no caller waits for one unlink per node.
 * Once mounted, an upper holds a detached overlay (lower = the checkout tree) that every jail
 * started with it clones.
 *
 * Idle uppers. Making an upper costs three mkdirs, and mounting an overlay a new superblock
 * whose mount-time checks create and delete files in the work dir. After an exec that changed
 * nothing (a read-only exec, a grep, `true`) the upper is still exactly as made, so it is kept,
 * one per sandbox and at most uppers_config.warm_max in all (least recently kept dropped
 * first), and the sandbox's next exec at the same version over the same checkout directory
 * reuses its overlay. Any difference (a commit, a rebuilt or evicted checkout, an upper that is
 * not pristine) and it is discarded instead.
 *
 * Prewarming. An exec that wrote files leaves an upper that cannot be reused (its overlay saw
 * the old tree), so the sandbox's next exec would pay for a new one. uppers_prewarm queues a
 * job (bounded: when the queue is full the job is dropped and the next exec makes its own); a
 * background thread of the uppers makes the upper and its overlay over the new version and
 * leaves it idle. Everything an idle upper is checked for still applies when it is used.
 *
 * The overlay is mounted by the function given in struct uppers_config: this module knows
 * nothing of the jail (the exec engine passes jail_overlay_open).
 *
 * Ownership: a struct upper is a value owned by whoever holds it, used by one thread at a time;
 * upper_release frees its contents and discards its directories and overlay. An upper handed to
 * upper_keep belongs to the uppers from then on. Functions on struct uppers are thread-safe.
 */
#ifndef SQLFS_WORKSPACE_UPPER_H
#define SQLFS_WORKSPACE_UPPER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

struct checkouts;
struct uppers;

#define UPPER_SKEL_MAX 8

struct upper {
    char id[33];  /* random hex id, new for every use (the exec engine names its cgroup by it) */
    char dir[33]; /* <uppers>/<dir> holds upper/ and work/ */
    char *base;   /* <uppers>/<dir> */
    char *upper;  /* <base>/upper */
    char *work;   /* <base>/work */
    int ovl_fd;   /* detached overlay over `lower` (upper_mount), -1 until made */
    /* What the overlay was made over and how its upper looked then: reused only while all of
     * it still holds (the checkout directory's identity includes its birth time, so a checkout
     * rebuilt at the same path with a recycled inode number never matches). version -1: never
     * reused. */
    int64_t version;
    struct statx lower_id;
    struct statx root0;
    /* The directories of the sandbox's cwd copied into the upper before the mount, with the
     * lower's mode, owner and times (by prewarming): a write there then needs no copy-up, and
     * the diff skips them while unchanged. `skel` is their path ("home/user"), skel_st how each
     * looked after the mount; none when nskel is 0. */
    char *skel;
    int nskel;
    struct statx skel_st[UPPER_SKEL_MAX];
};

struct uppers_config {
    const char *dir;             /* <data>/uppers; created 0700 when missing */
    struct checkouts *checkouts; /* where discarded uppers go (same filesystem) */
    size_t warm_max;             /* idle uppers kept at most (EXEC_WARM_SANDBOXES) */
    /* Mounts the overlay lower/upper/work as a detached mount: its fd (O_CLOEXEC), or -errno
     * with err_set(). Called from exec threads and the prewarm thread. */
    int (*overlay_open)(void *ud, const char *lower, const char *upper, const char *work);
    void *overlay_ud;
};

/* Creates the uppers directory and starts the prewarm thread (without memory or a thread the
 * uppers still work: nothing is prewarmed). The config's pointers must outlive the uppers. */
__attribute__((warn_unused_result)) int uppers_new(const struct uppers_config *cfg,
                                                   struct uppers **ret);
/* Stops the prewarm thread and discards every idle upper. NULL-safe. */
void uppers_free(struct uppers *ups);
/* Shutdown: nothing is kept idle from now on. */
void uppers_stop(struct uppers *ups);
/* How many uppers are idle now. */
size_t uppers_idle_count(struct uppers *ups);

/* An upper for an exec of sandbox_id at `version` over the checkout tree `lower`: its idle
 * upper (mounted) when it still fits; else, when a prewarm of that version is queued or in the
 * making, that one once it is ready (waiting a few milliseconds at most); else a new, unmounted
 * upper (upper_make). */
__attribute__((warn_unused_result)) int upper_get(struct uppers *ups, const char *sandbox_id,
                                                  int64_t version, const char *lower,
                                                  struct upper *ret);
/* Makes a new, empty upper with its directories (the upper root 0755 and host root's: the
 * jail's `/` shows it). On failure *ret holds what to give to upper_release. */
__attribute__((warn_unused_result)) int upper_make(struct uppers *ups, struct upper *ret);
/* Mounts u's overlay over `lower` (a checkout at `version`) and records what it was made over,
 * for the upper's reuse. */
__attribute__((warn_unused_result)) int upper_mount(struct uppers *ups, struct upper *u,
                                                    const char *lower, int64_t version);
/* True when the upper is exactly as its overlay left it at mount time (same metadata, nothing
 * in it but its skeleton, unchanged): it holds no change and may be kept. */
bool upper_pristine(const struct upper *u);
/* Frees u's contents, discarding its directories and overlay in the background. */
void upper_release(struct uppers *ups, struct upper *u);
/* Keeps u (taken over: *u is emptied) as the sandbox's idle upper, made at u->version. A
 * sandbox keeps one: when it already has one, or the uppers are stopping, u is released. */
void upper_keep(struct uppers *ups, const char *sandbox_id, struct upper *u);

/* Discards the idle upper of sandbox_id (NULL: all of them), and voids the prewarms queued or
 * in the making at that moment: the sandbox's tree changed, was deleted or its checkout left. */
void uppers_drop(struct uppers *ups, const char *sandbox_id);
/* Queues the making of the sandbox's next upper over `lower` at `version` (the sandbox's cwd
 * `cwd`, may be NULL, goes into it as a skeleton), in the background. */
void uppers_prewarm(struct uppers *ups, const char *sandbox_id, const char *lower, const char *cwd,
                    int64_t version);

#endif
