#include "archive/ingest.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "store/reserved.h"
#include "util/array.h"
#include "util/b64.h"
#include "util/buf.h"
#include "util/cleanup.h"
#include "util/err.h"
#include "util/fd.h"
#include "util/path.h"
#include "util/timeutil.h"

/* ---- entries: a vector of metadata plus a path index ---------------------------------------- */

/* One node the archive will create; `dead` when a later entry with the same path replaced it. */
struct item {
    struct file_meta meta;
    bool dead;
};

/* Open-addressing hash table from path to item index (+1; 0 marks a free slot). Items are only
 * ever appended, and a replaced path points at its newest item, so no deletion is needed. */
struct entries {
    struct item *v;
    size_t n, cap;
    size_t *slots;
    size_t nslots; /* power of two, at least twice n */
    int64_t file_count;
    int64_t file_bytes;
};

static uint64_t hash_path(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Slot of `path[0..len)`: either the one holding it or the free one where it would go. */
static size_t *entries_slot(struct entries *es, const char *path, size_t len)
{
    size_t mask = es->nslots - 1;
    for (size_t i = hash_path(path, len) & mask;; i = (i + 1) & mask) {
        size_t *s = &es->slots[i];
        if (*s == 0)
            return s;
        const char *p = es->v[*s - 1].meta.path;
        if (strncmp(p, path, len) == 0 && p[len] == '\0')
            return s;
    }
}

/* The live item at path[0..len), or NULL. */
static struct item *entries_find(struct entries *es, const char *path, size_t len)
{
    if (es->nslots == 0)
        return NULL;
    size_t *s = entries_slot(es, path, len);
    return *s ? &es->v[*s - 1] : NULL;
}

static int entries_rehash(struct entries *es)
{
    size_t nslots = es->nslots ? es->nslots * 2 : 1024;
    size_t *slots = calloc(nslots, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    free(es->slots);
    es->slots = slots;
    es->nslots = nslots;
    for (size_t i = 0; i < es->n; i++) {
        if (es->v[i].dead)
            continue;
        const char *p = es->v[i].meta.path;
        *entries_slot(es, p, strlen(p)) = i + 1;
    }
    return 0;
}

/* Takes ownership of meta's strings (also on failure). A previous item at the same path is
 * marked dead: the last entry wins. */
static int entries_add(struct entries *es, struct file_meta *meta)
{
    int r = ARRAY_GROW(es->v, es->n + 1, es->cap);
    if (r < 0)
        goto fail;
    if ((es->n + 1) * 2 > es->nslots && (r = entries_rehash(es)) < 0)
        goto fail;
    size_t *slot = entries_slot(es, meta->path, strlen(meta->path));
    if (*slot) {
        struct item *old = &es->v[*slot - 1];
        old->dead = true;
        if (old->meta.kind == FILE_KIND_FILE) {
            es->file_count--;
            es->file_bytes -= old->meta.size;
        }
    }
    es->v[es->n].meta = *meta;
    es->v[es->n].dead = false;
    es->n++;
    *slot = es->n;
    if (meta->kind == FILE_KIND_FILE) {
        es->file_count++;
        es->file_bytes += meta->size;
    }
    return 0;
fail:
    file_meta_release(meta);
    return r;
}

static void entries_release(struct entries *es)
{
    for (size_t i = 0; i < es->n; i++)
        file_meta_release(&es->v[i].meta);
    free(es->v);
    free(es->slots);
    memset(es, 0, sizeof(*es));
}

/* The live symlink that `path` (below `base`) goes through, or NULL. Only ancestors strictly
 * between base and path are looked at: replacing a symlink by a later entry is fine. */
static const struct item *entries_symlink_ancestor(struct entries *es, const char *base,
                                                   const char *path)
{
    size_t start = strcmp(base, "/") == 0 ? 1 : strlen(base) + 1;
    for (size_t i = start; path[i]; i++) {
        if (path[i] != '/')
            continue;
        const struct item *it = entries_find(es, path, i);
        if (it && it->meta.kind == FILE_KIND_SYMLINK)
            return it;
    }
    return NULL;
}

/* Moves the live items into cs (their strings are not copied: the archive's metadata is held
 * once); es can then only be released. On failure cs and es are as they were. */
static int entries_to_changeset(struct entries *es, struct changeset *cs)
{
    size_t live = 0;
    for (size_t i = 0; i < es->n; i++)
        live += !es->v[i].dead;
    int r = changeset_reserve(cs, live);
    if (r < 0)
        return r;
    for (size_t i = 0; i < es->n; i++)
        if (!es->v[i].dead && (r = changeset_put_take(cs, &es->v[i].meta)) < 0)
            return r; /* cannot happen: the room is reserved */
    cs->create_parents = true;
    return 0;
}

/* Copies a client-supplied name for a message: printable ASCII kept, other bytes as \xNN, cut
 * at 160 bytes (marked "...") so a detail stays readable. */
static const char *clean_name(const char *name, char out[200])
{
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)name;
    for (; *p && o < 160; p++) {
        if (*p >= 0x20 && *p < 0x7f && *p != '\\')
            out[o++] = (char)*p;
        else
            o += (size_t)snprintf(out + o, 200 - o, "\\x%02x", *p);
    }
    if (*p)
        o += (size_t)snprintf(out + o, 200 - o, "...");
    out[o] = '\0';
    return out;
}

static void detail_entry(const char *name)
{
    char clean[200];
    err_detail("entry: %s", clean_name(name, clean));
}

/* ---- bounded queues between threads ------------------------------------------------------ */

/* One writing thread, one reading thread (libarchive's read callback), INGEST_QUEUE_BYTES. */
struct queue {
    pthread_mutex_t mu;
    pthread_cond_t can_read;  /* data, eof or abort for the reader */
    pthread_cond_t can_write; /* room, or the reader done, for the writer */
    uint8_t *ring;
    uint64_t wr; /* bytes ever written into the ring */
    uint64_t rd; /* bytes ever released by the reader */
    size_t held; /* bytes lent to libarchive by the last read callback */
    bool eof;    /* the writer has no more data */
    bool failed; /* ... because it failed: reads fail */
    bool abort;  /* the reader must stop now */
    bool done;   /* the reader has finished: writes are dropped */
};

static int queue_init(struct queue *q)
{
    memset(q, 0, sizeof(*q));
    q->ring = malloc(INGEST_QUEUE_BYTES);
    if (!q->ring)
        return -ENOMEM;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->can_read, NULL);
    pthread_cond_init(&q->can_write, NULL);
    return 0;
}

static void queue_destroy(struct queue *q)
{
    if (!q->ring)
        return;
    free(q->ring);
    q->ring = NULL;
    pthread_cond_destroy(&q->can_read);
    pthread_cond_destroy(&q->can_write);
    pthread_mutex_destroy(&q->mu);
}

/* Releases what the previous call lent out, waits for data, and lends the next contiguous
 * piece of the ring: its length, 0 at the end of the data, -ECANCELED when aborted or, once the
 * data is drained, when the writer failed. */
static ssize_t queue_take(struct queue *q, const void **ret_buf)
{
    pthread_mutex_lock(&q->mu);
    if (q->held) {
        q->rd += q->held;
        q->held = 0;
        pthread_cond_signal(&q->can_write);
    }
    while (q->wr == q->rd && !q->eof && !q->abort)
        pthread_cond_wait(&q->can_read, &q->mu);
    /* What the writer put before it failed is still handed out: the reader may not need more
     * (a tar ends before a damaged tail of its compressed stream). */
    if (q->abort || (q->failed && q->wr == q->rd)) {
        pthread_mutex_unlock(&q->mu);
        return -ECANCELED;
    }
    size_t avail = (size_t)(q->wr - q->rd);
    size_t pos = (size_t)(q->rd % INGEST_QUEUE_BYTES);
    size_t n = avail < INGEST_QUEUE_BYTES - pos ? avail : INGEST_QUEUE_BYTES - pos;
    q->held = n;
    pthread_mutex_unlock(&q->mu);
    *ret_buf = q->ring + pos;
    return (ssize_t)n;
}

/* Copies up to `want` first unread bytes without consuming them (fewer at the end of the data). */
static int queue_peek(struct queue *q, uint8_t *out, size_t want, size_t *ret_n)
{
    pthread_mutex_lock(&q->mu);
    while (q->wr - q->rd < want && !q->eof && !q->abort)
        pthread_cond_wait(&q->can_read, &q->mu);
    if (q->abort || q->failed) {
        pthread_mutex_unlock(&q->mu);
        return -ECANCELED;
    }
    size_t n = (size_t)(q->wr - q->rd);
    if (n > want)
        n = want;
    for (size_t i = 0; i < n; i++)
        out[i] = q->ring[(q->rd + i) % INGEST_QUEUE_BYTES];
    pthread_mutex_unlock(&q->mu);
    *ret_n = n;
    return 0;
}

/* Copies len bytes in, waiting for room. Returns true when the reader has finished (the rest is
 * dropped). */
static bool queue_put(struct queue *q, const void *data, size_t len)
{
    const uint8_t *p = data;
    pthread_mutex_lock(&q->mu);
    while (len > 0 && !q->done) {
        size_t used = (size_t)(q->wr - q->rd);
        if (used == INGEST_QUEUE_BYTES) {
            pthread_cond_wait(&q->can_write, &q->mu);
            continue;
        }
        size_t pos = (size_t)(q->wr % INGEST_QUEUE_BYTES);
        size_t n = INGEST_QUEUE_BYTES - used;
        if (n > INGEST_QUEUE_BYTES - pos)
            n = INGEST_QUEUE_BYTES - pos;
        if (n > len)
            n = len;
        /* The reader never touches [wr, wr + n): copying without the lock is safe. */
        pthread_mutex_unlock(&q->mu);
        memcpy(q->ring + pos, p, n);
        pthread_mutex_lock(&q->mu);
        q->wr += n;
        p += n;
        len -= n;
        pthread_cond_signal(&q->can_read);
    }
    bool done = q->done;
    pthread_mutex_unlock(&q->mu);
    return done;
}

/* The writer's end: no more data (failed: because of an error), or abort: the reader must stop
 * now. */
static void queue_close(struct queue *q, bool failed, bool abort)
{
    pthread_mutex_lock(&q->mu);
    q->eof = true;
    q->failed = q->failed || failed;
    q->abort = q->abort || abort;
    pthread_cond_broadcast(&q->can_read);
    pthread_mutex_unlock(&q->mu);
}

/* The reader's end: the writer stops waiting for room. */
static void queue_reader_done(struct queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->done = true;
    pthread_cond_broadcast(&q->can_write);
    pthread_mutex_unlock(&q->mu);
}

static la_ssize_t read_cb(struct archive *a, void *userdata, const void **ret_buf)
{
    ssize_t n = queue_take(userdata, ret_buf);
    if (n < 0) {
        archive_set_error(a, ECANCELED, "ingest aborted");
        return -1;
    }
    return (la_ssize_t)n;
}

/* ---- errors carried from one thread to another ----------------------------------------------
 */

struct saved_err {
    int rc;
    char *msg;      /* err_message(), malloc'd, or NULL */
    char **details; /* its details */
    int n_details;
};

/* Records rc with this thread's message and details. */
static void saved_err_take(struct saved_err *se, int rc)
{
    se->rc = rc;
    if (rc >= 0)
        return;
    const char *m = err_message();
    se->msg = m ? strdup(m) : NULL;
    int cnt = err_detail_count();
    se->details = cnt ? calloc((size_t)cnt, sizeof(*se->details)) : NULL;
    for (int i = 0; se->details && i < cnt; i++)
        if ((se->details[i] = strdup(err_detail_at(i))))
            se->n_details++;
}

/* Raises the saved error on this thread; returns its rc. */
static int saved_err_raise(const struct saved_err *se)
{
    if (se->rc < 0) {
        err_set(se->rc, "%s", se->msg ? se->msg : err_info(se->rc)->message);
        for (int i = 0; i < se->n_details; i++)
            err_detail("%s", se->details[i]);
    }
    return se->rc;
}

static void saved_err_release(struct saved_err *se)
{
    for (int i = 0; i < se->n_details; i++)
        free(se->details[i]);
    free(se->details);
    free(se->msg);
    memset(se, 0, sizeof(*se));
}

struct ingest {
    struct store *st;
    char *base;               /* normalised basePath */
    struct ingest_limits lim; /* lim.tmp_dir points at tmp_dir */
    char *tmp_dir;            /* copy of the caller's, or NULL */
    struct queue in;          /* the body, from ingest_feed() to the worker */
    pthread_t thread;

    /* written by the worker only; read after in.done (under in.mu) or after join */
    struct saved_err err;
    struct entries es;
    int64_t n_entries;  /* entries seen (the max_files count) */
    int64_t bytes;      /* uncompressed file bytes read (the max_bytes count) */
    int64_t path_bytes; /* bytes of entry paths and symlink targets (the max_path_bytes count) */
    struct content_batch *batch; /* contents finished but maybe not yet stored (see
                                  * store_content_finish_in): flushed before the worker ends */
};

int ingest_feed(struct ingest *ing, const void *data, size_t len)
{
    if (!queue_put(&ing->in, data, len))
        return 0;
    /* The worker has finished (seen under in.mu, after it saved its error): err is final. */
    int rc = saved_err_raise(&ing->err);
    return rc < 0 ? rc : 0;
}

/* ---- the worker ------------------------------------------------------------------------------ */

static int limit_bytes(struct ingest *ing, int64_t more)
{
    int64_t quota = ing->lim.quota_bytes;
    if (quota > 0 && more > quota - ing->bytes &&
        (ing->lim.max_bytes <= 0 || quota < ing->lim.max_bytes)) {
        int r = err_set(-ERR_QUOTA,
                        "the archive's files hold more than the sandbox's quota (%lld bytes)",
                        (long long)quota);
        err_detail("SANDBOX_QUOTA_BYTES=%lld", (long long)quota);
        return r;
    }
    if (ing->lim.max_bytes > 0 && more > ing->lim.max_bytes - ing->bytes) {
        int r = err_set(-ERR_PAYLOAD_TOO_LARGE, "archive expands to more than %lld bytes",
                        (long long)ing->lim.max_bytes);
        err_detail("MAX_INGEST_BYTES=%lld", (long long)ing->lim.max_bytes);
        return r;
    }
    ing->bytes += more;
    return 0;
}

/* Counts `len` more bytes of metadata (a path or a symlink target) kept until the end. */
static int limit_path_bytes(struct ingest *ing, size_t len, const char *name)
{
    ing->path_bytes += (int64_t)len;
    if (ing->lim.max_path_bytes <= 0 || ing->path_bytes <= ing->lim.max_path_bytes)
        return 0;
    int r = err_set(-ERR_PAYLOAD_TOO_LARGE,
                    "archive entry paths (and symlink targets) add up to more than %lld bytes; "
                    "ingest the tree in parts or with shorter paths",
                    (long long)ing->lim.max_path_bytes);
    err_detail("MAX_INGEST_PATH_BYTES=%lld", (long long)ing->lim.max_path_bytes);
    detail_entry(name);
    return r;
}

static int archive_fail(struct archive *a, const char *what)
{
    const char *m = archive_error_string(a);
    char clean[200];
    size_t o = 0;
    for (const char *p = m ? m : "unknown error"; *p && o + 1 < sizeof(clean); p++)
        clean[o++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
    clean[o] = '\0';
    if (archive_errno(a) == ECANCELED)
        return err_set(-ECANCELED, "ingest aborted");
    return err_set(-ERR_INVALID_INPUT, "%s: %s", what, clean);
}

static const uint8_t zeros[64 * 1024];

static int write_zeros(struct ingest *ing, struct content_writer *w, int64_t n)
{
    while (n > 0) {
        size_t k = n < (int64_t)sizeof(zeros) ? (size_t)n : sizeof(zeros);
        int r = limit_bytes(ing, (int64_t)k);
        if (r < 0)
            return r;
        r = store_content_write(ing->st, w, zeros, k);
        if (r < 0)
            return r;
        n -= (int64_t)k;
    }
    return 0;
}

/* Streams the current entry's data into a new content; sparse holes become zeros. */
static int read_content(struct ingest *ing, struct archive *a, struct archive_entry *e,
                        const char *name, struct file_meta *meta)
{
    int64_t declared = archive_entry_size_is_set(e) ? archive_entry_size(e) : -1;
    if (declared > 0 &&
        ((ing->lim.max_bytes > 0 && declared > ing->lim.max_bytes - ing->bytes) ||
         (ing->lim.quota_bytes > 0 && declared > ing->lim.quota_bytes - ing->bytes))) {
        int r = limit_bytes(ing, declared);
        detail_entry(name);
        return r;
    }
    struct content_writer *w = NULL;
    int r = store_content_begin(ing->st, &w);
    if (r < 0)
        return r;
    int64_t off = 0;
    for (;;) {
        const void *buf;
        size_t size;
        la_int64_t offset;
        int ar = archive_read_data_block(a, &buf, &size, &offset);
        if (ar == ARCHIVE_EOF)
            break;
        if (ar < ARCHIVE_WARN) {
            r = archive_fail(a, "cannot read archive data");
            detail_entry(name);
            goto fail;
        }
        if (offset < off) {
            r = err_set(-ERR_INVALID_INPUT, "archive data blocks out of order");
            detail_entry(name);
            goto fail;
        }
        if (offset > off && (r = write_zeros(ing, w, offset - off)) < 0)
            goto fail;
        if ((r = limit_bytes(ing, (int64_t)size)) < 0)
            goto fail;
        if (size > 0 && (r = store_content_write(ing->st, w, buf, size)) < 0)
            goto fail;
        off = offset + (int64_t)size;
    }
    if (declared > off && (r = write_zeros(ing, w, declared - off)) < 0)
        goto fail;
    int64_t got = 0;
    r = store_content_finish_in(ing->st, ing->batch, w, meta->content, &got);
    if (r < 0)
        return r;
    meta->size = got;
    meta->has_content = got > 0;
    return 0;
fail:
    store_content_abort(ing->st, w);
    return r;
}

/* Hardlink: a regular file sharing the content of an earlier regular file of the archive. */
static int read_hardlink(struct ingest *ing, const char *name, const char *link,
                         struct file_meta *meta)
{
    char *tpath = NULL;
    int r = path_join_strict(ing->base, link, &tpath);
    const struct item *t = NULL;
    if (r == 0) {
        t = entries_find(&ing->es, tpath, strlen(tpath));
        free(tpath);
    }
    if (!t || t->meta.kind != FILE_KIND_FILE) {
        r = err_set(-ERR_INVALID_INPUT,
                    "archive hardlink must point to a regular file earlier in the archive");
        detail_entry(name);
        return r;
    }
    meta->kind = FILE_KIND_FILE;
    meta->mode = t->meta.mode;
    meta->size = t->meta.size;
    meta->has_content = t->meta.has_content;
    memcpy(meta->content, t->meta.content, CONTENT_ID_LEN);
    return 0;
}

static int refuse(const char *msg, const char *name)
{
    int r = err_set(-ERR_INVALID_INPUT, "%s", msg);
    detail_entry(name);
    return r;
}

static const char *entry_name(struct archive_entry *e)
{
    const char *n = archive_entry_pathname_utf8(e);
    return n ? n : archive_entry_pathname(e);
}

/* path_join_strict() answers in a PATH_MAX_LEN buffer: keep only the bytes needed, since
 * every entry's path stays in memory until the change set is built. */
static int join_compact(const char *base, const char *rel, char **ret)
{
    char *p = NULL;
    int r = path_join_strict(base, rel, &p);
    if (r < 0)
        return r;
    *ret = strdup(p);
    free(p);
    return *ret ? 0 : -ENOMEM;
}

static int process_entry(struct ingest *ing, struct archive *a, struct archive_entry *e)
{
    const char *name = entry_name(e);
    if (!name || !*name)
        return err_set(-ERR_INVALID_INPUT, "archive entry without a usable name");
    if (strcmp(name, ".") == 0 || strcmp(name, "./") == 0)
        return 0; /* basePath itself */
    if (ing->lim.max_files > 0 && ++ing->n_entries > ing->lim.max_files) {
        int r = err_set(-ERR_TOO_MANY_ENTRIES, "archive has more than %lld entries",
                        (long long)ing->lim.max_files);
        err_detail("MAX_INGEST_FILES=%lld", (long long)ing->lim.max_files);
        return r;
    }
    struct file_meta meta = {0};
    int r = join_compact(ing->base, name, &meta.path);
    if (r == -ENAMETOOLONG)
        return refuse("archive entry path too long", name);
    if (r == -EINVAL)
        return refuse("archive entry escapes basePath (absolute path, '..', '.' or empty segment)",
                      name);
    if (r == 0)
        r = limit_path_bytes(ing, strlen(meta.path), name);
    if (r < 0)
        goto out;
    const char *reserved = reserved_root(meta.path, archive_entry_filetype(e) == AE_IFDIR);
    if (reserved) {
        r = reserved_error(meta.path, reserved);
        detail_entry(name);
        goto out;
    }
    if (entries_symlink_ancestor(&ing->es, ing->base, meta.path)) {
        r = refuse("archive entry goes through a symlink created by the archive", name);
        goto out;
    }
    meta.mode = archive_entry_perm(e) & 01777;
    meta.mtime_ns = archive_entry_mtime_is_set(e)
                        ? (int64_t)archive_entry_mtime(e) * 1000000000 + archive_entry_mtime_nsec(e)
                        : time_now_ns();
    const char *link = archive_entry_hardlink_utf8(e);
    if (!link)
        link = archive_entry_hardlink(e);
    if (link) {
        r = read_hardlink(ing, name, link, &meta);
    } else {
        switch (archive_entry_filetype(e)) {
        case AE_IFREG:
            meta.kind = FILE_KIND_FILE;
            r = read_content(ing, a, e, name, &meta);
            break;
        case AE_IFDIR:
            meta.kind = FILE_KIND_DIR;
            break;
        case AE_IFLNK: {
            const char *t = archive_entry_symlink_utf8(e);
            if (!t)
                t = archive_entry_symlink(e);
            if (!t || !*t || strlen(t) > PATH_MAX_LEN) {
                r = refuse("archive symlink has an empty or invalid target", name);
                break;
            }
            if ((r = limit_path_bytes(ing, strlen(t), name)) < 0)
                break;
            meta.kind = FILE_KIND_SYMLINK;
            meta.mode = 0777;
            meta.target = strdup(t);
            meta.size = (int64_t)strlen(t);
            if (!meta.target)
                r = -ENOMEM;
            break;
        }
        default:
            r = refuse("archive entry is a device, fifo or socket: not allowed", name);
            break;
        }
    }
    if (r < 0)
        goto out;
    return entries_add(&ing->es, &meta);
out:
    file_meta_release(&meta);
    return r;
}

/* Zip keeps modes and symlinks only in its central directory, at the end of the file: reading
 * it as a stream would lose them (and cannot read stored entries with data descriptors). So a
 * zip body is spooled to an unlinked temporary file, bounded by spool_max(), and read seekably. */
static int spool_open(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
        return fd >= 0 ? fd : -errno;
    struct buf name = BUF_INIT(PATH_MAX_LEN);
    int r = buf_addf(&name, "%s/sqlfs-ingest-XXXXXX", dir);
    if (r < 0) {
        buf_release(&name);
        return r;
    }
    fd = mkostemp(name.data, O_CLOEXEC);
    r = fd < 0 ? -errno : fd;
    if (fd >= 0)
        unlink(name.data);
    buf_release(&name);
    return r;
}

static int64_t spool_max(const struct ingest *ing)
{
    if (ing->lim.max_bytes <= 0)
        return INT64_MAX;
    /* deflate can grow data a little, and each entry costs headers in two places */
    return ing->lim.max_bytes + ing->lim.max_bytes / 8 + (64 << 20);
}

static int spool(struct ingest *ing, int fd)
{
    int64_t total = 0, max = spool_max(ing);
    for (;;) {
        const void *p;
        ssize_t n = queue_take(&ing->in, &p);
        if (n < 0)
            return err_set((int)n, "ingest aborted");
        if (n == 0)
            return 0;
        total += n;
        if (total > max) {
            int r = err_set(-ERR_PAYLOAD_TOO_LARGE, "zip archive larger than the ingest limit");
            err_detail("MAX_INGEST_BYTES=%lld", (long long)ing->lim.max_bytes);
            return r;
        }
        int r = write_all(fd, p, (size_t)n);
        if (r < 0)
            return err_set(r == -ENOSPC ? -ENOSPC : -EIO, "cannot spool the zip archive");
    }
}

static bool is_zip(const uint8_t *m, size_t n)
{
    return n >= 4 && m[0] == 'P' && m[1] == 'K' &&
           ((m[2] == 3 && m[3] == 4) || (m[2] == 5 && m[3] == 6) || (m[2] == 7 && m[3] == 8));
}

/* gzip, bzip2, xz or zstd (lzma has no reliable signature: it stays on the worker). */
static bool is_compressed(const uint8_t *m, size_t n)
{
    return (n >= 2 && m[0] == 0x1f && m[1] == 0x8b) || (n >= 3 && memcmp(m, "BZh", 3) == 0) ||
           (n >= 6 && memcmp(m,
                             "\xfd"
                             "7zXZ\0",
                             6) == 0) ||
           (n >= 4 && memcmp(m, "\x28\xb5\x2f\xfd", 4) == 0);
}

/* An explicit list: no filter that would spawn an external program. */
static void support_filters(struct archive *a)
{
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_bzip2(a);
    archive_read_support_filter_xz(a);
    archive_read_support_filter_lzma(a);
    archive_read_support_filter_zstd(a);
}

/* ---- the inflater: decompression on its own thread ------------------------------------------
 * Decompression runs beside the worker so that it overlaps with parsing, hashing and storing:
 * the inflater reads the body (libarchive's raw format behind the same filters) and hands the
 * tar stream to the worker through a second queue. */

struct inflater {
    struct queue *in; /* the body */
    struct queue out; /* the decompressed stream, read by the worker */
    pthread_t thread;
    struct saved_err err; /* final after join */
};

static int run_inflate(struct inflater *inf)
{
    struct archive *a = archive_read_new();
    if (!a)
        return -ENOMEM;
    support_filters(a);
    archive_read_support_format_raw(a);
    int r = 0;
    struct archive_entry *e;
    int ar = archive_read_open(a, inf->in, NULL, read_cb, NULL);
    if (ar == ARCHIVE_OK)
        ar = archive_read_next_header(a, &e);
    while (ar == ARCHIVE_OK || ar == ARCHIVE_WARN) {
        const void *buf;
        size_t size;
        la_int64_t offset;
        ar = archive_read_data_block(a, &buf, &size, &offset);
        if ((ar == ARCHIVE_OK || ar == ARCHIVE_WARN) && size > 0 && queue_put(&inf->out, buf, size))
            break; /* the worker is done: the rest is not needed */
    }
    if (ar < ARCHIVE_WARN)
        r = archive_fail(a, "corrupt or unsupported archive");
    archive_read_free(a);
    return r;
}

static void *inflate_main(void *arg)
{
    struct inflater *inf = arg;
    err_clear();
    int r = run_inflate(inf);
    saved_err_take(&inf->err, r);
    queue_close(&inf->out, r < 0, false);
    return NULL;
}

/* NULL when the inflater cannot run (the worker then decompresses itself). */
static struct inflater *inflater_start(struct queue *in)
{
    struct inflater *inf = calloc(1, sizeof(*inf));
    if (!inf)
        return NULL;
    inf->in = in;
    if (queue_init(&inf->out) < 0) {
        free(inf);
        return NULL;
    }
    if (pthread_create(&inf->thread, NULL, inflate_main, inf) != 0) {
        queue_destroy(&inf->out);
        free(inf);
        return NULL;
    }
    return inf;
}

/* Stops and frees the inflater; returns the worker's result r, or the inflater's error when the
 * worker failed because the inflater did (a corrupt or truncated stream). */
static int inflater_stop(struct inflater *inf, int r)
{
    queue_reader_done(&inf->out);
    pthread_join(inf->thread, NULL);
    if (r < 0 && inf->err.rc < 0 && inf->err.rc != -ECANCELED)
        r = saved_err_raise(&inf->err);
    saved_err_release(&inf->err);
    queue_destroy(&inf->out);
    free(inf);
    return r;
}

static int run_archive(struct ingest *ing)
{
    uint8_t magic[6];
    size_t nmagic = 0;
    int r = queue_peek(&ing->in, magic, sizeof(magic), &nmagic);
    if (r < 0)
        return err_set(r, "ingest aborted");
    _cleanup_close_ int fd = -1;
    struct inflater *inf = NULL;
    if (is_zip(magic, nmagic)) {
        const char *dir = ing->lim.tmp_dir ? ing->lim.tmp_dir : getenv("TMPDIR");
        fd = spool_open(dir && *dir ? dir : "/tmp");
        if (fd < 0) /* a server-side problem, whatever errno says (ENOENT must not be a 404) */
            return err_set(fd == -ENOSPC ? -ENOSPC : -EIO,
                           "cannot create a temporary file for the zip archive");
        if ((r = spool(ing, fd)) < 0 || lseek(fd, 0, SEEK_SET) != 0)
            return r < 0 ? r : -EIO;
    } else if (is_compressed(magic, nmagic)) {
        inf = inflater_start(&ing->in);
    }
    struct archive *a = archive_read_new();
    if (!a) {
        r = -ENOMEM;
        goto out;
    }
    int ar;
    if (fd >= 0) {
        archive_read_support_format_zip_seekable(a);
        ar = archive_read_open_fd(a, fd, 64 * 1024);
    } else {
        support_filters(a);
        archive_read_support_format_tar(a);
        archive_read_support_format_gnutar(a);
        ar = archive_read_open(a, inf ? &inf->out : &ing->in, NULL, read_cb, NULL);
    }
    if (ar != ARCHIVE_OK) {
        r = archive_fail(a, "not a supported archive");
        goto out;
    }
    for (;;) {
        struct archive_entry *e;
        ar = archive_read_next_header(a, &e);
        if (ar == ARCHIVE_EOF)
            break;
        if (ar < ARCHIVE_WARN) {
            r = archive_fail(a, "corrupt or unsupported archive");
            goto out;
        }
        if ((r = process_entry(ing, a, e)) < 0)
            goto out;
    }
out:
    archive_read_free(a);
    if (inf)
        r = inflater_stop(inf, r);
    return r;
}

static void *worker_main(void *arg)
{
    struct ingest *ing = arg;
    err_clear();
    /* Per-file transactions would cost more than the bytes of most files of a source tree. */
    int rc = store_content_batch_new(ing->st, &ing->batch);
    if (rc >= 0)
        rc = run_archive(ing);
    if (rc >= 0)
        rc = store_content_batch_flush(ing->st, ing->batch);
    store_content_batch_free(ing->st, ing->batch);
    ing->batch = NULL;
    saved_err_take(&ing->err, rc);
    queue_reader_done(&ing->in);
    return NULL;
}

/* ---- lifecycle --------------------------------------------------------------------------------
 */

void ingest_result_release(struct ingest_result *r)
{
    if (!r)
        return;
    free(r->base_path);
    r->base_path = NULL;
}

static void ingest_free(struct ingest *ing)
{
    entries_release(&ing->es);
    saved_err_release(&ing->err);
    queue_destroy(&ing->in);
    free(ing->base);
    free(ing->tmp_dir);
    free(ing);
}

int ingest_new(struct store *st, const char *base_path, const struct ingest_limits *lim,
               struct ingest **ret)
{
    if (!base_path || base_path[0] != '/')
        return err_set(-EINVAL, "basePath must be an absolute path");
    struct ingest *ing = calloc(1, sizeof(*ing));
    if (!ing)
        return -ENOMEM;
    ing->st = st;
    ing->lim = *lim;
    ing->lim.tmp_dir = NULL;
    if (lim->tmp_dir && !(ing->tmp_dir = strdup(lim->tmp_dir))) {
        free(ing);
        return -ENOMEM;
    }
    ing->lim.tmp_dir = ing->tmp_dir;
    int r = path_normalize(base_path, strlen(base_path), &ing->base);
    if (r < 0) {
        ingest_free(ing);
        return err_set(r, "invalid basePath");
    }
    if (queue_init(&ing->in) < 0) {
        ingest_free(ing);
        return -ENOMEM;
    }
    r = pthread_create(&ing->thread, NULL, worker_main, ing);
    if (r != 0) {
        ingest_free(ing);
        return err_set(-EAGAIN, "cannot start the ingest worker");
    }
    *ret = ing;
    return 0;
}

static void stop_worker(struct ingest *ing, bool abort)
{
    queue_close(&ing->in, false, abort);
    pthread_join(ing->thread, NULL);
}

/* A failed ingest: the contents it stored (also of entries a later one replaced) are reclaimed
 * now rather than when their pins expire. */
static void entries_discard(struct store *st, const struct entries *es)
{
    struct changeset cs;
    changeset_init(&cs, "ingest");
    for (size_t i = 0; i < es->n; i++) {
        const struct file_meta *m = &es->v[i].meta;
        if (m->kind == FILE_KIND_FILE && m->has_content && changeset_put(&cs, m) < 0)
            break;
    }
    int r = store_discard(st, &cs); /* on failure the pins expire on their own */
    (void)r;
    changeset_release(&cs);
}

int ingest_finish(struct ingest *ing, struct changeset *cs, struct ingest_result *ret)
{
    stop_worker(ing, false);
    int r = saved_err_raise(&ing->err);
    if (r < 0) {
        char msg[512]; /* the ingest's own error is the one to report */
        snprintf(msg, sizeof(msg), "%s", err_message() ? err_message() : "");
        entries_discard(ing->st, &ing->es);
        if (msg[0])
            err_set(r, "%s", msg);
        goto out;
    }
    char *base = strdup(ing->base);
    if (!base) {
        r = -ENOMEM;
        goto out;
    }
    r = entries_to_changeset(&ing->es, cs);
    if (r < 0) {
        free(base);
        goto out;
    }
    ret->file_count = ing->es.file_count;
    ret->bytes = ing->es.file_bytes;
    ret->base_path = base;
out:
    ingest_free(ing);
    return r;
}

void ingest_abort(struct ingest *ing)
{
    if (!ing)
        return;
    stop_worker(ing, true);
    entries_discard(ing->st, &ing->es);
    ingest_free(ing);
}

/* ---- ingest-files ------------------------------------------------------------------------- */

/* Base64 text decoded per content write: a multiple of 4 characters, 768 KiB of bytes. */
#define B64_STEP ((size_t)1024 * 1024)

static int store_b64(struct store *st, struct content_batch *batch, const char *text, size_t len,
                     uint8_t *scratch, struct file_meta *meta)
{
    struct content_writer *w = NULL;
    int r = store_content_begin(st, &w);
    if (r < 0)
        return r;
    for (size_t i = 0; i < len; i += B64_STEP) {
        size_t n = len - i < B64_STEP ? len - i : B64_STEP;
        size_t got;
        if ((r = b64_decode_into(text + i, n, scratch, &got)) < 0 ||
            (r = store_content_write(st, w, scratch, got)) < 0) {
            store_content_abort(st, w);
            return r;
        }
    }
    int64_t size = 0;
    r = store_content_finish_in(st, batch, w, meta->content, &size);
    if (r < 0)
        return r;
    meta->size = size;
    meta->has_content = size > 0;
    return 0;
}

static void detail_key(const char *key, const char *why)
{
    char clean[200];
    err_detail("%s: %s", clean_name(key, clean), why);
}

/* Pass 1: every key and value, and keys that are parents of other keys. Returns the number of
 * bad keys (each named in a detail) or a negative error; *ret_bytes is the decoded total. */
static int files_validate(struct entries *es, const char *base, json_t *files, int64_t *ret_bytes)
{
    int bad = 0;
    int64_t bytes = 0;
    int64_t now = time_now_ns();
    const char *key;
    json_t *val;
    json_object_foreach(files, key, val)
    {
        struct file_meta meta = {.kind = FILE_KIND_FILE, .mode = 0644, .mtime_ns = now};
        int r = join_compact(base, key, &meta.path);
        if (r == -ENOMEM)
            return r;
        if (r < 0) {
            detail_key(key, "invalid path (must be relative, without '.', '..' or empty segments)");
            bad++;
            continue;
        }
        size_t dlen = 0;
        const char *why = NULL;
        if (reserved_path(meta.path, false))
            why = "lands in a path reserved by the sandbox runtime (/usr, /etc, /proc, ...)";
        else if (!json_is_string(val))
            why = "value must be a base64 string";
        else if (b64_check(json_string_value(val), json_string_length(val), &dlen) < 0)
            why = "invalid base64 (strict: no whitespace, padded to a multiple of 4)";
        if (why) {
            detail_key(key, why);
            file_meta_release(&meta);
            bad++;
            continue;
        }
        bytes += (int64_t)dlen;
        meta.size = (int64_t)dlen;
        if ((r = entries_add(es, &meta)) < 0)
            return r;
    }
    /* "a" and "a/b" cannot both be files: name the parent key rather than fail at commit. */
    size_t skip = strcmp(base, "/") == 0 ? 1 : strlen(base) + 1;
    for (size_t i = 0; i < es->n; i++) {
        const char *p = es->v[i].meta.path;
        if (es->v[i].dead)
            continue;
        for (size_t k = skip; p[k]; k++) {
            struct item *anc = p[k] == '/' ? entries_find(es, p, k) : NULL;
            if (anc && anc->meta.kind == FILE_KIND_FILE) {
                anc->meta.kind = FILE_KIND_DIR; /* report it once */
                detail_key(anc->meta.path + skip, "is also the parent directory of another key");
                bad++;
            }
        }
    }
    *ret_bytes = bytes;
    return bad;
}

/* Pass 2: decodes each value straight into a content writer (finished into a batch: few
 * transactions for many small files). */
static int files_store(struct store *st, struct entries *es, const char *base, json_t *files)
{
    struct content_batch *batch = NULL;
    uint8_t *scratch = malloc(B64_STEP / 4 * 3);
    int r = scratch ? store_content_batch_new(st, &batch) : -ENOMEM;
    if (r < 0) {
        free(scratch);
        return r;
    }
    const char *key;
    json_t *val;
    json_object_foreach(files, key, val)
    {
        char *path = NULL;
        if ((r = path_join_strict(base, key, &path)) < 0)
            break;
        struct item *it = entries_find(es, path, strlen(path));
        free(path);
        if (!it)
            continue;
        r = store_b64(st, batch, json_string_value(val), json_string_length(val), scratch,
                      &it->meta);
        if (r < 0)
            break;
    }
    if (r >= 0)
        r = store_content_batch_flush(st, batch);
    store_content_batch_free(st, batch);
    free(scratch);
    return r;
}

int ingest_files_build(struct store *st, const char *base_path, json_t *files, int64_t max_files,
                       int64_t max_bytes, struct changeset *cs, struct ingest_result *ret)
{
    if (!base_path || base_path[0] != '/')
        return err_set(-ERR_INVALID_INPUT, "basePath must be an absolute path");
    if (!json_is_object(files))
        return err_set(-ERR_INVALID_INPUT, "files must be an object of path to base64 string");
    if (max_files > 0 && (int64_t)json_object_size(files) > max_files) {
        int r = err_set(-ERR_TOO_MANY_ENTRIES, "more than %lld files", (long long)max_files);
        err_detail("MAX_INGEST_FILES=%lld", (long long)max_files);
        return r;
    }
    char *base = NULL;
    int r = path_normalize(base_path, strlen(base_path), &base);
    if (r < 0)
        return err_set(r == -ENOMEM ? r : -ERR_INVALID_INPUT, "invalid basePath");
    struct entries es = {0};
    int64_t bytes = 0;
    int bad = files_validate(&es, base, files, &bytes);
    if (bad < 0) {
        r = bad;
        goto out;
    }
    if (bad > 0) {
        r = err_set(-ERR_INVALID_INPUT, "%d invalid file entr%s", bad, bad == 1 ? "y" : "ies");
        goto out;
    }
    if (max_bytes > 0 && bytes > max_bytes) {
        r = err_set(-ERR_PAYLOAD_TOO_LARGE, "files decode to more than %lld bytes",
                    (long long)max_bytes);
        err_detail("MAX_INGEST_BYTES=%lld", (long long)max_bytes);
        goto out;
    }
    if ((r = files_store(st, &es, base, files)) < 0)
        goto out;
    /* sizes are final now: recount */
    es.file_count = 0;
    es.file_bytes = 0;
    for (size_t i = 0; i < es.n; i++) {
        if (!es.v[i].dead) {
            es.file_count++;
            es.file_bytes += es.v[i].meta.size;
        }
    }
    if ((r = entries_to_changeset(&es, cs)) < 0)
        goto out;
    ret->file_count = es.file_count;
    ret->bytes = es.file_bytes;
    ret->base_path = base;
    base = NULL;
out:
    entries_release(&es);
    free(base);
    return r;
}
