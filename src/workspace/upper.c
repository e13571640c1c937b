/*
 * upper — exec uppers: made, mounted, kept idle, prewarmed, discarded (see upper.h).
 *
 * Trust: an upper holds what a sandbox's processes wrote (any names, symlinks pointing
 * anywhere). It is only looked at here with lstat-like calls and *at() calls below directory
 * fds that never follow a symlink; the skeleton is made before the overlay is mounted, when no
 * process of the sandbox can see the upper yet.
 */
#include "workspace/upper.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/array.h"
#include "util/err.h"
#include "util/fd.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/rand.h"
#include "workspace/checkout.h"

#define PREWARM_QUEUE 16 /* pending prewarm jobs; more are dropped */

struct idle_upper {
    char *sandbox_id;
    struct upper u;
};

struct prewarm_job {
    char *sandbox_id;
    char *lower;
    char *cwd; /* the sandbox's cwd: its directories go into the upper (upper_skeleton) */
    int64_t version;
    uint64_t drops; /* uppers.drops when queued: any drop since voids the job */
};

struct uppers {
    struct uppers_config cfg;
    char *dir;          /* cfg.dir, copied */
    pthread_mutex_t mu; /* guards the idle uppers, drops and stopping */
    /* Unchanged uppers kept for the next exec, at most one per sandbox and cfg.warm_max in
     * all, oldest first. Pointers: evicting the oldest moves only those. */
    struct idle_upper **idle;
    size_t nidle, capidle;
    uint64_t drops; /* count of uppers_drop calls */
    bool stopping;  /* uppers_stop: nothing is kept idle any more */
    /* Prewarming: a background thread makes the next upper of a sandbox whose exec committed
     * files, off the request's path. */
    pthread_t prewarm_thread;
    bool prewarm_running;
    pthread_mutex_t pw_mu;
    pthread_cond_t pw_cond;
    bool pw_stop;
    struct prewarm_job *pw_jobs; /* bounded queue, guarded by pw_mu */
    size_t pw_n;
    const struct prewarm_job *pw_busy; /* the job being made, or NULL (guarded by pw_mu) */
    pthread_cond_t pw_done;            /* broadcast when a job ends (CLOCK_MONOTONIC) */
};

/* Each exec's upper is created and removed again: on ext4 without a journal, allocating an
 * inode skips (by reading each one) every inode of its block group freed in the last minute,
 * so the churn of uppers in one group makes each new file there cost more and more (the copy-up
 * of an overwritten file, a new file, the upper's own directories). Marking the
 * uppers directory as the top of a hierarchy (FS_TOPDIR_FL) makes ext4 place each upper in a
 * block group of its own choosing, spreading that churn over the whole filesystem. Other
 * filesystems ignore or refuse the flag; either way nothing else depends on it. */
static void uppers_spread(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    int flags = 0;
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 && !(flags & FS_TOPDIR_FL)) {
        flags |= FS_TOPDIR_FL;
        (void)ioctl(fd, FS_IOC_SETFLAGS, &flags);
    }
    close(fd);
}

/* ---- making and discarding ---- */

void upper_release(struct uppers *ups, struct upper *u)
{
    int ovl_fd = u->ovl_fd;
    u->ovl_fd = -1;
    if (u->base) {
        int dfd = open(ups->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            /* removing takes one unlink per node and closing the overlay unmounts it: move the
             * dirs aside at once and let the checkouts' reaper do both after the reply */
            if (checkout_discard(ups->cfg.checkouts, dfd, u->dir, ovl_fd) < 0 &&
                rm_rf_at(dfd, u->dir, NULL) < 0)
                log_msg("warn", "could not remove exec upper %s", u->dir);
            ovl_fd = -1; /* consumed */
            close(dfd);
        }
    }
    safe_close(ovl_fd);
    free(u->skel);
    free(u->base);
    free(u->upper);
    free(u->work);
    memset(u, 0, sizeof(*u));
    u->ovl_fd = -1;
}

/* A fresh random id for u (each use of an upper gets one). */
static int new_exec_id(struct upper *u)
{
    uint8_t rnd[16];
    int r = rand_bytes(rnd, sizeof(rnd));
    if (r == 0)
        hex_encode(rnd, sizeof(rnd), u->id);
    return r;
}

int upper_make(struct uppers *ups, struct upper *u)
{
    memset(u, 0, sizeof(*u));
    u->ovl_fd = -1;
    int r = new_exec_id(u);
    if (r < 0)
        return r;
    memcpy(u->dir, u->id, sizeof(u->dir));
    if (asprintf(&u->base, "%s/%s", ups->dir, u->dir) < 0 ||
        asprintf(&u->upper, "%s/upper", u->base) < 0 || asprintf(&u->work, "%s/work", u->base) < 0)
        return -ENOMEM;
    if (mkdir(u->base, 0700) < 0)
        return err_set(-errno, "cannot create an exec directory");
    if (mkdir(u->upper, 0755) < 0 || mkdir(u->work, 0700) < 0)
        return err_set(-errno, "cannot create an exec directory");
    /* The merged root takes the upper root's owner and mode: host root's (nobody in the jail),
     * 0755 whatever the umask, like the checkout root. The script cannot create, remove or
     * rename top-level entries; those the tree has stay its own to change. */
    if (chmod(u->upper, 0755) < 0)
        return err_set(-errno, "cannot prepare an exec directory");
    return 0;
}

/* ---- idle uppers ---- */

#define STATX_ID (STATX_INO | STATX_BTIME)

static bool same_time(struct statx_timestamp a, struct statx_timestamp b)
{
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

static int lower_identity(const char *lower, struct statx *ret)
{
    if (statx(AT_FDCWD, lower, AT_SYMLINK_NOFOLLOW, STATX_ID, ret) < 0)
        return -errno;
    /* without a birth time a recycled inode number could pass for the old directory */
    return (ret->stx_mask & STATX_ID) == STATX_ID ? 0 : -ENOTSUP;
}

static bool same_lower(const struct statx *a, const struct statx *b)
{
    return a->stx_dev_major == b->stx_dev_major && a->stx_dev_minor == b->stx_dev_minor &&
           a->stx_ino == b->stx_ino && same_time(a->stx_btime, b->stx_btime);
}

static bool same_node(const struct statx *now, const struct statx *then)
{
    return now->stx_ino == then->stx_ino && now->stx_mode == then->stx_mode &&
           now->stx_uid == then->stx_uid && now->stx_gid == then->stx_gid &&
           now->stx_nlink == then->stx_nlink && same_time(now->stx_mtime, then->stx_mtime) &&
           same_time(now->stx_ctime, then->stx_ctime);
}

/* True when directory `path` holds exactly the entry `only` (NULL: nothing). */
static bool dir_holds_only(const char *path, const char *only, size_t only_len)
{
    DIR *d = opendir(path);
    if (!d)
        return false;
    bool ok = true, seen = false;
    struct dirent *ent;
    while (ok && (ent = readdir(d))) {
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
            continue;
        ok = only && !seen && strlen(ent->d_name) == only_len &&
             memcmp(ent->d_name, only, only_len) == 0;
        seen = true;
    }
    closedir(d);
    return ok && seen == (only != NULL);
}

/* Segment i of the skeleton's path (not NUL-terminated: *len bytes); NULL past its end. */
static const char *skel_segment(const struct upper *u, int i, size_t *len)
{
    const char *seg = u->skel;
    for (int k = 0; seg && k < i; k++)
        seg = k + 1 < u->nskel ? strchr(seg, '/') + 1 : NULL;
    if (i >= u->nskel || !seg)
        return NULL;
    *len = strcspn(seg, "/");
    return seg;
}

/* The host path of the skeleton directory at `depth` (0: the upper root). */
static bool skel_path(const struct upper *u, int depth, char *buf, size_t cap)
{
    size_t len = 0, sl = 0;
    int n = snprintf(buf, cap, "%s", u->upper);
    for (int i = 0; n >= 0 && (size_t)n < cap - len && i < depth; i++) {
        len += (size_t)n;
        const char *seg = skel_segment(u, i, &sl);
        if (!seg)
            return false;
        n = snprintf(buf + len, cap - len, "/%.*s", (int)sl, seg);
    }
    return n >= 0 && (size_t)n < cap - len;
}

/* The upper as the overlay left it at mount time: same metadata, no entry but the skeleton
 * (upper_skeleton), each of its directories as it was. */
bool upper_pristine(const struct upper *u)
{
    char path[PATH_MAX];
    for (int depth = 0; depth <= u->nskel; depth++) {
        struct statx now;
        size_t next_len = 0;
        const char *next = skel_segment(u, depth, &next_len);
        if (!skel_path(u, depth, path, sizeof(path)) ||
            statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &now) < 0 ||
            !same_node(&now, depth ? &u->skel_st[depth - 1] : &u->root0) ||
            !dir_holds_only(path, next, next_len))
            return false;
    }
    return true;
}

/* Copies the directories of the sandbox path `cwd` that are real directories in `lower` into
 * the (not yet mounted) upper, with the lower's mode, owner and times. The overlay then merges
 * them like directories it copied up itself, so a write in the cwd — the usual case — skips
 * the copy-up of each of its directories in the jail, and the diff skips
 * them while their mode and mtime still equal the lower's. Best effort: on any failure the
 * upper is left empty, as without it. */
static void upper_skeleton(struct upper *u, const char *lower, const char *cwd)
{
    if (!cwd || cwd[0] != '/')
        return;
    /* fd[i] / name[i]: the parent and name of level i; fd[0] is the root of each layer */
    int lfd[UPPER_SKEL_MAX + 1], ufd[UPPER_SKEL_MAX + 1];
    char name[UPPER_SKEL_MAX][NAME_MAX + 1];
    struct stat st[UPPER_SKEL_MAX];
    int n = 0;
    lfd[0] = open(lower, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    ufd[0] = open(u->upper, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    bool ok = lfd[0] >= 0 && ufd[0] >= 0;
    for (const char *p = cwd; ok && n < UPPER_SKEL_MAX;) {
        while (*p == '/')
            p++;
        size_t len = strcspn(p, "/");
        if (len == 0 || len > NAME_MAX || (p[0] == '.' && (len == 1 || (len == 2 && p[1] == '.'))))
            break; /* the end; "." and ".." never occur in a stored (normalised) cwd */
        memcpy(name[n], p, len);
        name[n][len] = '\0';
        p += len;
        if (fstatat(lfd[n], name[n], &st[n], AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st[n].st_mode))
            break; /* not (or not yet) a directory of the tree: the skeleton ends above it */
        if (mkdirat(ufd[n], name[n], 0700) < 0) {
            ok = false;
            break;
        }
        lfd[n + 1] = openat(lfd[n], name[n], O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        ufd[n + 1] = openat(ufd[n], name[n], O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        n++;
        ok = lfd[n] >= 0 && ufd[n] >= 0;
    }
    /* Deepest first: making a child changed its parent's mtime. The owner before the mode
     * (chown clears set-id bits). */
    for (int i = n; ok && i-- > 0;) {
        struct timespec times[2] = {st[i].st_atim, st[i].st_mtim};
        ok = fchownat(ufd[i], name[i], st[i].st_uid, st[i].st_gid, AT_SYMLINK_NOFOLLOW) == 0 &&
             fchmodat(ufd[i], name[i], st[i].st_mode & 07777, 0) == 0 &&
             utimensat(ufd[i], name[i], times, AT_SYMLINK_NOFOLLOW) == 0;
    }
    size_t rlen = 0;
    char rel[PATH_MAX];
    for (int i = 0; ok && i < n; i++)
        rlen += (size_t)snprintf(rel + rlen, sizeof(rel) - rlen, "%s%s", i ? "/" : "", name[i]);
    if (ok && n > 0 && !(u->skel = strdup(rel)))
        ok = false;
    if (ok)
        u->nskel = n;
    for (int i = n; !ok && i-- > 0;) /* a skeleton unlike the lower would be persisted */
        (void)unlinkat(ufd[i], name[i], AT_REMOVEDIR);
    for (int i = 0; i <= n; i++) {
        safe_close(lfd[i]);
        safe_close(ufd[i]);
    }
}

/* Under ups->mu: takes entry i out, keeping the oldest-first order idle_put evicts by. */
static struct idle_upper *idle_remove_locked(struct uppers *ups, size_t i)
{
    struct idle_upper *it = ups->idle[i];
    memmove(&ups->idle[i], &ups->idle[i + 1], (ups->nidle - i - 1) * sizeof(ups->idle[0]));
    ups->nidle--;
    return it;
}

/* Under ups->mu: the index of the sandbox's idle upper, or -1. */
static ssize_t idle_find_locked(const struct uppers *ups, const char *sandbox_id)
{
    for (size_t i = 0; i < ups->nidle; i++)
        if (strcmp(ups->idle[i]->sandbox_id, sandbox_id) == 0)
            return (ssize_t)i;
    return -1;
}

static void idle_upper_free(struct uppers *ups, struct idle_upper *it)
{
    if (!it)
        return;
    upper_release(ups, &it->u);
    free(it->sandbox_id);
    free(it);
}

/* Takes the sandbox's idle upper if it still fits `lower` at `version`. */
static bool idle_take(struct uppers *ups, const char *sandbox_id, int64_t version,
                      const char *lower, struct upper *ret)
{
    pthread_mutex_lock(&ups->mu);
    ssize_t i = idle_find_locked(ups, sandbox_id);
    struct idle_upper *it = i >= 0 ? idle_remove_locked(ups, (size_t)i) : NULL;
    pthread_mutex_unlock(&ups->mu);
    if (!it)
        return false;
    *ret = it->u;
    free(it->sandbox_id);
    free(it);
    struct statx id;
    if (ret->version != version || lower_identity(lower, &id) < 0 ||
        !same_lower(&id, &ret->lower_id) || new_exec_id(ret) < 0) {
        upper_release(ups, ret);
        return false;
    }
    return true;
}

/* Keeps u (taken over) as the sandbox's idle upper; the oldest goes when there are warm_max.
 * A sandbox keeps one: when parallel read-only execs of it end, the first one's stays. A
 * prewarmed upper passes the drops count of when it was asked for: if a sandbox was committed
 * to or deleted since, it may be over a tree that no longer exists, and is not kept. */
static void idle_put(struct uppers *ups, const char *sandbox_id, struct upper *u,
                     const uint64_t *drops_then)
{
    struct idle_upper *it = calloc(1, sizeof(*it));
    struct idle_upper *drop = NULL;
    if (it && !(it->sandbox_id = strdup(sandbox_id))) {
        free(it);
        it = NULL;
    }
    bool taken = it != NULL;
    if (taken) {
        it->u = *u;
        memset(u, 0, sizeof(*u));
        u->ovl_fd = -1;
    }
    size_t max = ups->cfg.warm_max;
    pthread_mutex_lock(&ups->mu);
    bool keep = it && !ups->stopping && (!drops_then || *drops_then == ups->drops) &&
                idle_find_locked(ups, sandbox_id) < 0;
    if (keep && ups->nidle >= max && ups->nidle > 0)
        drop = idle_remove_locked(ups, 0);
    if (keep && ups->nidle < max && ARRAY_GROW(ups->idle, ups->nidle + 1, ups->capidle) == 0) {
        ups->idle[ups->nidle++] = it;
        it = NULL;
    }
    pthread_mutex_unlock(&ups->mu);
    if (!taken) /* no memory for the entry */
        upper_release(ups, u);
    idle_upper_free(ups, it); /* taken over but not kept */
    idle_upper_free(ups, drop);
}

void upper_keep(struct uppers *ups, const char *sandbox_id, struct upper *u)
{
    idle_put(ups, sandbox_id, u, NULL);
}

void uppers_drop(struct uppers *ups, const char *sandbox_id)
{
    for (;;) {
        struct idle_upper *it = NULL;
        pthread_mutex_lock(&ups->mu);
        ups->drops++;
        ssize_t i = sandbox_id ? idle_find_locked(ups, sandbox_id) : ups->nidle > 0 ? 0 : -1;
        if (i >= 0)
            it = idle_remove_locked(ups, (size_t)i);
        pthread_mutex_unlock(&ups->mu);
        if (!it)
            return;
        idle_upper_free(ups, it);
    }
}

/* The identity of the lower is taken before the mount: a checkout replaced in between then
 * never matches (safe either way). */
int upper_mount(struct uppers *ups, struct upper *u, const char *lower, int64_t version)
{
    /* no identity (e.g. no birth time on this file system): the upper works, but is never
     * reused */
    bool known = lower_identity(lower, &u->lower_id) == 0;
    int fd = ups->cfg.overlay_open(ups->cfg.overlay_ud, lower, u->upper, u->work);
    if (fd < 0)
        return err_set(fd, "cannot mount the sandbox overlay");
    u->ovl_fd = fd;
    u->version = version;
    if (u->nskel > 0) {
        /* The overlay records the origin of a merged directory that lacks it (an xattr, a new
         * ctime) at its first lookup: walk the skeleton once now, not in the exec, so that it
         * looks afterwards as it will after any exec that only reads. */
        int sfd = openat(fd, u->skel, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sfd < 0)
            u->version = -1;
        else
            close(sfd);
    }
    if (!known || statx(AT_FDCWD, u->upper, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &u->root0) < 0)
        u->version = -1;
    /* how the skeleton looks now, for upper_pristine */
    char path[PATH_MAX];
    for (int i = 0; i < u->nskel && u->version >= 0; i++)
        if (!skel_path(u, i + 1, path, sizeof(path)) ||
            statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &u->skel_st[i]) < 0)
            u->version = -1;
    return 0;
}

/* ---- prewarming ---- */

static void prewarm_job_free(struct prewarm_job *j)
{
    free(j->sandbox_id);
    free(j->lower);
    free(j->cwd);
}

static void *prewarm_main(void *arg)
{
    struct uppers *ups = arg;
    pthread_mutex_lock(&ups->pw_mu);
    for (;;) {
        while (!ups->pw_stop && ups->pw_n == 0)
            pthread_cond_wait(&ups->pw_cond, &ups->pw_mu);
        if (ups->pw_stop)
            break;
        struct prewarm_job job = ups->pw_jobs[0];
        memmove(&ups->pw_jobs[0], &ups->pw_jobs[1], (ups->pw_n - 1) * sizeof(job));
        ups->pw_n--;
        ups->pw_busy = &job;
        pthread_mutex_unlock(&ups->pw_mu);
        struct upper u;
        int r = upper_make(ups, &u);
        if (r == 0) {
            upper_skeleton(&u, job.lower, job.cwd);
            r = upper_mount(ups, &u, job.lower, job.version);
        }
        if (r == 0 && u.version >= 0)
            idle_put(ups, job.sandbox_id, &u, &job.drops);
        else
            upper_release(ups, &u);
        err_clear();
        pthread_mutex_lock(&ups->pw_mu);
        ups->pw_busy = NULL;
        pthread_cond_broadcast(&ups->pw_done);
        pthread_mutex_unlock(&ups->pw_mu);
        prewarm_job_free(&job);
        pthread_mutex_lock(&ups->pw_mu);
    }
    pthread_mutex_unlock(&ups->pw_mu);
    return NULL;
}

void uppers_prewarm(struct uppers *ups, const char *sandbox_id, const char *lower, const char *cwd,
                    int64_t version)
{
    struct prewarm_job job = {strdup(sandbox_id), strdup(lower), cwd ? strdup(cwd) : NULL, version,
                              0};
    pthread_mutex_lock(&ups->mu);
    job.drops = ups->drops;
    pthread_mutex_unlock(&ups->mu);
    pthread_mutex_lock(&ups->pw_mu);
    /* pw_stop is set (under pw_mu) before the thread is joined: checked here, not the flag the
     * joiner clears afterwards */
    bool queued = job.sandbox_id && job.lower && (!cwd || job.cwd) && ups->pw_jobs &&
                  !ups->pw_stop && ups->pw_n < PREWARM_QUEUE;
    if (queued) {
        ups->pw_jobs[ups->pw_n++] = job;
        pthread_cond_signal(&ups->pw_cond);
    }
    pthread_mutex_unlock(&ups->pw_mu);
    if (!queued)
        prewarm_job_free(&job);
}

static bool prewarm_job_is(const struct prewarm_job *j, const char *sandbox_id, int64_t version)
{
    return j->version == version && strcmp(j->sandbox_id, sandbox_id) == 0;
}

/* Waits (at most PREWARM_WAIT_MS) while the sandbox's next upper for `version` is queued or in
 * the making. Back to back — the next command sent as soon as the last answered — an exec that
 * made an upper of its own would repeat that work while the background one competes with it for
 * the CPU. True when such a job ended meanwhile (its upper is then idle, unless dropped). */
#define PREWARM_WAIT_MS 20
static bool prewarm_wait(struct uppers *ups, const char *sandbox_id, int64_t version)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_nsec += (long)PREWARM_WAIT_MS * 1000000L;
    deadline.tv_sec += deadline.tv_nsec / 1000000000L;
    deadline.tv_nsec %= 1000000000L;
    bool waited = false;
    pthread_mutex_lock(&ups->pw_mu);
    for (;;) {
        bool pending = ups->pw_busy && prewarm_job_is(ups->pw_busy, sandbox_id, version);
        for (size_t i = 0; !pending && i < ups->pw_n; i++)
            pending = prewarm_job_is(&ups->pw_jobs[i], sandbox_id, version);
        if (!pending || ups->pw_stop)
            break;
        waited = true;
        if (pthread_cond_timedwait(&ups->pw_done, &ups->pw_mu, &deadline) == ETIMEDOUT) {
            waited = false;
            break;
        }
    }
    pthread_mutex_unlock(&ups->pw_mu);
    return waited;
}

static void prewarm_stop(struct uppers *ups)
{
    if (!ups->prewarm_running)
        return;
    pthread_mutex_lock(&ups->pw_mu);
    ups->pw_stop = true;
    pthread_cond_signal(&ups->pw_cond);
    pthread_cond_broadcast(&ups->pw_done);
    pthread_mutex_unlock(&ups->pw_mu);
    pthread_join(ups->prewarm_thread, NULL);
    ups->prewarm_running = false;
    for (size_t i = 0; i < ups->pw_n; i++)
        prewarm_job_free(&ups->pw_jobs[i]);
    ups->pw_n = 0;
}

/* ---- the uppers ---- */

int upper_get(struct uppers *ups, const char *sandbox_id, int64_t version, const char *lower,
              struct upper *ret)
{
    if (idle_take(ups, sandbox_id, version, lower, ret) ||
        (prewarm_wait(ups, sandbox_id, version) && idle_take(ups, sandbox_id, version, lower, ret)))
        return 0;
    return upper_make(ups, ret);
}

int uppers_new(const struct uppers_config *cfg, struct uppers **ret)
{
    *ret = NULL;
    struct uppers *ups = calloc(1, sizeof(*ups));
    if (!ups)
        return -ENOMEM;
    ups->cfg = *cfg;
    pthread_mutex_init(&ups->mu, NULL);
    pthread_mutex_init(&ups->pw_mu, NULL);
    pthread_cond_init(&ups->pw_cond, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ups->pw_done, &ca);
    pthread_condattr_destroy(&ca);
    int r = (ups->dir = strdup(cfg->dir)) ? 0 : -ENOMEM;
    if (r == 0 && mkdir(ups->dir, 0700) < 0 && errno != EEXIST)
        r = err_set(-errno, "cannot create the uppers directory");
    if (r < 0) {
        uppers_free(ups);
        return r;
    }
    ups->cfg.dir = ups->dir;
    uppers_spread(ups->dir);
    ups->pw_jobs = calloc(PREWARM_QUEUE, sizeof(*ups->pw_jobs));
    /* without the thread (no memory, no thread) every exec makes its own upper */
    ups->prewarm_running =
        ups->pw_jobs && pthread_create(&ups->prewarm_thread, NULL, prewarm_main, ups) == 0;
    if (!ups->prewarm_running)
        ups->pw_stop = true; /* no thread: queue nothing */
    *ret = ups;
    return 0;
}

void uppers_free(struct uppers *ups)
{
    if (!ups)
        return;
    prewarm_stop(ups);
    free(ups->pw_jobs);
    uppers_drop(ups, NULL);
    free(ups->idle);
    pthread_mutex_destroy(&ups->mu);
    pthread_cond_destroy(&ups->pw_cond);
    pthread_cond_destroy(&ups->pw_done);
    pthread_mutex_destroy(&ups->pw_mu);
    free(ups->dir);
    free(ups);
}

void uppers_stop(struct uppers *ups)
{
    pthread_mutex_lock(&ups->mu);
    ups->stopping = true;
    pthread_mutex_unlock(&ups->mu);
}

size_t uppers_idle_count(struct uppers *ups)
{
    pthread_mutex_lock(&ups->mu);
    size_t n = ups->nidle;
    pthread_mutex_unlock(&ups->mu);
    return n;
}
