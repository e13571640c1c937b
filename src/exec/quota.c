/*
 * quota — the disk an exec may fill, bounded while it runs.
 *
 * A sandbox's quota (SANDBOX_QUOTA_BYTES) bounds its stored tree, checked at each commit. An
 * exec writes into its overlay upper on the data filesystem first, and only its commit meets
 * that check: without a bound while it runs, one exec could fill the disk for every sandbox
 * before being refused. So an exec's upper may hold at most what the quota has left (the quota
 * minus the stored tree's size) plus the disk of the stored files it replaces or deletes (their
 * space returns at the commit). The data filesystems sqlfs runs on have no per-directory quota
 * it could rely on (project quotas need a filesystem made and mounted for them), so this is
 * accounting with a kill, everywhere:
 *   - the exec's own thread checks while the script runs (runner_opts.watch, the batch loop),
 *     every QUOTA_WATCH_MS, and sooner as the upper nears the limit (the next check is due
 *     before the upper, growing as fast as since the last one, could use half of what is left,
 *     but not sooner than QUOTA_WATCH_MIN_MS): it walks the upper and sums its disk blocks
 *     (diff_upper_usage); only when that passes the limit does it also stat what the upper
 *     replaces in the lower;
 *   - an upper too big to walk every time (more than QUOTA_WALK_ALWAYS nodes) is walked again
 *     only once the data filesystem as a whole has grown by what the limit still allows since
 *     the last walk (statfs: the upper cannot have grown more than the filesystem), or after
 *     QUOTA_WALK_MAX_GAP_MS;
 *   - past the limit the whole jail is killed: the request answers 413 EQUOTA and nothing of the
 *     exec is kept (a server-side refusal, like a failed commit), and its upper is removed;
 *   - the commit checks the same walk once more before it stores any content.
 * The bound is therefore the quota plus what the exec's processes write in one watch interval
 * (the slack, measured by `make bench-hostile`).
 */
#include <errno.h>
#include <string.h>
#include <sys/statfs.h>

#include "workspace/diff.h"
#include "exec/engine_internal.h"
#include "util/err.h"
#include "util/timeutil.h"

/* Uppers with at most this many nodes are walked at every check (a walk of this size costs
 * well under a millisecond). */
#define QUOTA_WALK_ALWAYS 2000
#define QUOTA_WALK_MAX_GAP_MS 1000
#define QUOTA_WATCH_MIN_MS 2

/* Bytes in use on the filesystem holding path, or -1. */
static int64_t fs_used_bytes(const char *path)
{
    struct statfs sf;
    if (statfs(path, &sf) < 0)
        return -1;
    return ((int64_t)sf.f_blocks - (int64_t)sf.f_bfree) * (int64_t)sf.f_bsize;
}

void quota_watch_init(struct quota_watch *w, const struct exec_session *s)
{
    memset(w, 0, sizeof(*w));
    w->limit = -1;
    int64_t quota = sandboxes_quota_bytes(s->e->sandboxes);
    if (quota <= 0 || !s->u.upper)
        return;
    w->upper = s->u.upper;
    w->lower = s->lower;
    w->limit = quota > s->rec->size_bytes ? quota - s->rec->size_bytes : 0;
    w->quota = quota;
}

/* Walks the upper: 1 when it holds more than the limit, 0 when not, -errno. */
static int quota_walk(struct quota_watch *w)
{
    struct upper_usage u;
    int r = diff_upper_usage(w->upper, NULL, &u);
    if (r < 0)
        return r;
    w->entries = u.entries;
    w->used = u.bytes;
    if (u.bytes > w->limit) {
        /* only now what it replaces: one stat in the lower per file */
        r = diff_upper_usage(w->upper, w->lower, &u);
        if (r < 0)
            return r;
        w->used = u.bytes - u.replaced;
    }
    return w->used > w->limit;
}

/* The delay until the next check: QUOTA_WATCH_MS, or less when the upper, growing as it did
 * since the check before, would use half of what it has left before then. */
static int64_t next_delay(const struct quota_watch *w, int64_t grown, int64_t elapsed_ms)
{
    int64_t left = w->limit - w->used;
    if (grown <= 0 || elapsed_ms <= 0)
        return QUOTA_WATCH_MS;
    int64_t ms = left / 2 / (grown / elapsed_ms + 1);
    return ms < QUOTA_WATCH_MIN_MS ? QUOTA_WATCH_MIN_MS : ms > QUOTA_WATCH_MS ? QUOTA_WATCH_MS : ms;
}

bool quota_watch_check(void *ud, int64_t *next_ms)
{
    struct quota_watch *w = ud;
    *next_ms = QUOTA_WATCH_MS;
    if (w->limit < 0 || w->exceeded)
        return w->exceeded;
    int64_t now = time_mono_ms();
    int64_t fs_used = -1;
    if (w->entries > QUOTA_WALK_ALWAYS) {
        fs_used = fs_used_bytes(w->upper);
        if (fs_used >= 0 && fs_used - w->fs_used < w->limit - w->used &&
            now - w->walked_ms < QUOTA_WALK_MAX_GAP_MS)
            return false;
    }
    if (fs_used < 0)
        fs_used = fs_used_bytes(w->upper);
    int64_t before = w->used, since = now - w->walked_ms;
    int r = quota_walk(w);
    w->fs_used = fs_used;
    w->walked_ms = now;
    *next_ms = next_delay(w, w->used - before, since);
    /* a walk that fails (the upper is being torn down) decides nothing: the commit walks again */
    w->exceeded = r > 0;
    return w->exceeded;
}

int quota_check_final(struct quota_watch *w)
{
    if (w->limit < 0)
        return 0;
    int r = quota_walk(w);
    if (r < 0)
        return r;
    w->exceeded = r > 0;
    return w->exceeded ? quota_error(w) : 0;
}

int quota_error(const struct quota_watch *w)
{
    int r = err_set(-ERR_QUOTA,
                    "the exec wrote %lld bytes more than the sandbox's quota has left (%lld "
                    "bytes); it was stopped and nothing it wrote was kept",
                    (long long)(w->used - w->limit), (long long)w->limit);
    err_detail("SANDBOX_QUOTA_BYTES=%lld", (long long)w->quota);
    return r;
}
