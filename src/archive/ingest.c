/*
 * ingest — see ingest.h. The worker and the lifecycle of an archive ingest; the parts they
 * use are listed in ingest_internal.h.
 */
#include "archive/ingest.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "archive/ingest_internal.h"
#include "store/reserved.h"
#include "util/buf.h"
#include "util/cleanup.h"
#include "util/err.h"
#include "util/fd.h"
#include "util/path.h"
#include "util/timeutil.h"

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
        ar = archive_read_open(a, inf ? &inf->out : &ing->in, NULL, queue_read_cb, NULL);
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

/* ---- lifecycle ------------------------------------------------------------------------------ */

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
