#include "archive/export.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <archive.h>
#include <archive_entry.h>
#include <libdeflate.h>

#include "util/array.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/path.h"

/* File bytes handed to libarchive per step: the compressed output of one step stays below it. */
#define EXPORT_STEP (256 * 1024)

/* Tar bytes per gzip member. */
#define EXPORT_GZ_BLOCK (1024 * 1024)

struct export
{
    struct store *st;
    char *base;          /* normalised basePath */
    size_t base_skip;    /* bytes of a listed path before its archive name */
    struct file_meta *v; /* the entries, in path order */
    size_t n, cap;
    size_t next; /* next entry to write a header for */

    struct archive *a;
    struct archive_entry *entry; /* reused for every header */
    bool closed;                 /* archive_write_close done: only `out` is left */
    bool failed;                 /* a write error: the stream is unusable */

    struct content_reader *rd; /* content of the current file, or NULL */
    int64_t remaining;         /* bytes of the current file still to write */
    uint8_t *step;             /* EXPORT_STEP bytes of file data */

    struct libdeflate_compressor *gz; /* EXPORT_TAR_GZ only */
    struct buf tar;                   /* gzip: tar bytes not yet compressed (about one block) */
    struct buf out;                   /* archive bytes produced, not yet read */
    size_t out_off;                   /* bytes of `out` already handed out */
};

static int collect_cb(const struct file_meta *meta, void *userdata)
{
    struct export *exp = userdata;
    int r = ARRAY_GROW(exp->v, exp->n + 1, exp->cap);
    if (r < 0)
        return r;
    r = file_meta_copy(&exp->v[exp->n], meta);
    if (r < 0)
        return r;
    exp->n++;
    return 0;
}

static la_ssize_t write_cb(struct archive *a, void *userdata, const void *data, size_t len)
{
    struct export *exp = userdata;
    if (buf_add(exp->gz ? &exp->tar : &exp->out, data, len) < 0) {
        archive_set_error(a, ENOMEM, "out of memory");
        return -1;
    }
    return (la_ssize_t)len;
}

/* gzip: the tar stream is cut into EXPORT_GZ_BLOCK pieces, each compressed whole by libdeflate
 * into its own gzip member. A gzip file may hold any number of members (RFC 1952 §2.2) and every
 * gunzip, tar -z, Python's gzip/tarfile and libarchive read them as one stream. Whole-buffer
 * libdeflate costs far less per byte than zlib's streaming interface at the same level, which
 * lets exports of incompressible trees keep up with the network. */
static int setup_writer(struct export *exp, enum export_format fmt)
{
    exp->a = archive_write_new();
    exp->entry = archive_entry_new();
    if (!exp->a || !exp->entry)
        return -ENOMEM;
    if (fmt == EXPORT_TAR_GZ && !(exp->gz = libdeflate_alloc_compressor(EXPORT_GZIP_LEVEL)))
        return -ENOMEM;
    if (archive_write_set_format_pax_restricted(exp->a) != ARCHIVE_OK)
        return -EIO;
    /* No tar blocking beyond the 512-byte records: the stream is not going to a tape. */
    if (archive_write_set_bytes_per_block(exp->a, 0) != ARCHIVE_OK)
        return -EIO;
    if (archive_write_open2(exp->a, exp, NULL, write_cb, NULL, NULL) != ARCHIVE_OK)
        return -EIO;
    return 0;
}

/* Compresses the pending tar bytes into one gzip member once a block is full (or at the end). */
static int flush_gz(struct export *exp, bool final)
{
    if (exp->tar.len == 0 || (!final && exp->tar.len < EXPORT_GZ_BLOCK))
        return 0;
    size_t bound = libdeflate_gzip_compress_bound(exp->gz, exp->tar.len);
    int r = buf_grow(&exp->out, bound);
    if (r < 0)
        return r;
    size_t n = libdeflate_gzip_compress(exp->gz, exp->tar.data, exp->tar.len,
                                        exp->out.data + exp->out.len, bound);
    if (n == 0)
        return err_set(-EIO, "export: compression failed");
    exp->out.len += n;
    exp->out.data[exp->out.len] = '\0'; /* keep the buf invariant */
    buf_reset(&exp->tar);
    return 0;
}

int export_open(struct store *st, const char *sandbox_id, const char *base_path,
                enum export_format fmt, struct export **ret)
{
    if (!base_path || base_path[0] != '/')
        return err_set(-EINVAL, "basePath must be an absolute path");
    struct export *exp = calloc(1, sizeof(*exp));
    if (!exp)
        return -ENOMEM;
    exp->st = st;
    exp->out = (struct buf)BUF_INIT(0);
    exp->tar = (struct buf)BUF_INIT(0);
    int r = path_normalize(base_path, strlen(base_path), &exp->base);
    if (r < 0) {
        r = err_set(r == -ENOMEM ? r : -EINVAL, "invalid basePath");
        goto fail;
    }
    bool is_root = strcmp(exp->base, "/") == 0;
    struct file_meta top = {0};
    if (!is_root) {
        r = store_stat(st, sandbox_id, exp->base, &top);
        if (r == -ENOENT)
            r = err_set(-ENOENT, "basePath does not exist");
        if (r < 0)
            goto fail;
    }
    if (is_root || top.kind == FILE_KIND_DIR) {
        file_meta_release(&top);
        exp->base_skip = is_root ? 1 : strlen(exp->base) + 1;
        r = store_list(st, sandbox_id, exp->base, 0, collect_cb, exp);
    } else {
        /* a single file or symlink, archived under its own name */
        exp->base_skip = (size_t)(path_basename(exp->base) - exp->base);
        r = collect_cb(&top, exp);
        file_meta_release(&top);
    }
    if (r < 0)
        goto fail;
    exp->step = malloc(EXPORT_STEP);
    if (!exp->step) {
        r = -ENOMEM;
        goto fail;
    }
    if ((r = setup_writer(exp, fmt)) < 0)
        goto fail;
    *ret = exp;
    return 0;
fail:
    export_close(exp);
    return r;
}

size_t export_entry_count(const struct export *exp)
{
    return exp->n;
}

static int writer_fail(struct export *exp, const char *what)
{
    exp->failed = true;
    int e = archive_errno(exp->a);
    return err_set(e == ENOMEM ? -ENOMEM : -EIO, "export: %s", what);
}

/* Writes the header of entry exp->next and opens its content. */
static int write_header(struct export *exp)
{
    const struct file_meta *m = &exp->v[exp->next++];
    struct archive_entry *e = exp->entry;
    archive_entry_clear(e);
    const char *name = m->path + exp->base_skip;
    if (m->kind == FILE_KIND_DIR) {
        struct buf b = BUF_INIT(0);
        int r = buf_addstr(&b, name);
        if (r == 0)
            r = buf_addstr(&b, "/");
        if (r < 0) {
            buf_release(&b);
            return r;
        }
        archive_entry_copy_pathname(e, buf_cstr(&b));
        buf_release(&b);
        archive_entry_set_filetype(e, AE_IFDIR);
        archive_entry_set_size(e, 0);
    } else if (m->kind == FILE_KIND_SYMLINK) {
        archive_entry_copy_pathname(e, name);
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_copy_symlink(e, m->target ? m->target : "");
        archive_entry_set_size(e, 0);
    } else {
        archive_entry_copy_pathname(e, name);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, m->has_content ? m->size : 0);
    }
    archive_entry_set_perm(e, m->kind == FILE_KIND_SYMLINK ? 0777
                                                           : file_mode_allowed(m->kind, m->mode));
    archive_entry_set_mtime(e, (time_t)(m->mtime_ns / 1000000000),
                            (long)(m->mtime_ns % 1000000000));
    archive_entry_set_uid(e, 1000);
    archive_entry_set_gid(e, 1000);
    archive_entry_copy_uname(e, "user");
    archive_entry_copy_gname(e, "user");
    if (archive_write_header(exp->a, e) < ARCHIVE_WARN)
        return writer_fail(exp, "cannot write an entry header");
    if (m->kind == FILE_KIND_FILE && m->has_content && m->size > 0) {
        int r = store_content_open(exp->st, m->content, &exp->rd);
        if (r < 0)
            return err_set(r, "export: cannot read a file's content");
        exp->remaining = m->size;
    }
    return 0;
}

/* Writes the next piece of the current file's content. */
static int write_data(struct export *exp)
{
    size_t want = exp->remaining < EXPORT_STEP ? (size_t)exp->remaining : EXPORT_STEP;
    size_t got = 0;
    int r = store_content_read(exp->st, exp->rd, exp->step, want, &got);
    if (r < 0)
        return err_set(r, "export: cannot read a file's content");
    if (got == 0) /* shorter than its recorded size: the store is inconsistent */
        return err_set(-EIO, "export: a file's content is shorter than its size");
    if (archive_write_data(exp->a, exp->step, got) < 0)
        return writer_fail(exp, "cannot write file data");
    exp->remaining -= (int64_t)got;
    if (exp->remaining == 0) {
        store_content_close(exp->st, exp->rd);
        exp->rd = NULL;
    }
    return 0;
}

/* Produces more archive bytes into exp->out (or closes the archive at the end). */
static int produce(struct export *exp)
{
    if (exp->rd)
        return write_data(exp);
    if (exp->next < exp->n)
        return write_header(exp);
    if (archive_write_close(exp->a) != ARCHIVE_OK)
        return writer_fail(exp, "cannot finish the archive");
    exp->closed = true;
    return 0;
}

int export_read(struct export *exp, void *buf, size_t cap, size_t *ret_got)
{
    if (exp->failed)
        return -EIO;
    while (exp->out.len == exp->out_off && !(exp->closed && exp->tar.len == 0)) {
        buf_reset(&exp->out);
        exp->out_off = 0;
        int r = exp->closed ? 0 : produce(exp);
        if (r == 0 && exp->gz)
            r = flush_gz(exp, exp->closed);
        if (r < 0) {
            exp->failed = true;
            return r;
        }
    }
    size_t avail = exp->out.len - exp->out_off;
    size_t n = avail < cap ? avail : cap;
    if (n)
        memcpy(buf, exp->out.data + exp->out_off, n);
    exp->out_off += n;
    *ret_got = n;
    return 0;
}

void export_close(struct export *exp)
{
    if (!exp)
        return;
    store_content_close(exp->st, exp->rd);
    if (exp->a)
        archive_write_free(exp->a);
    archive_entry_free(exp->entry);
    for (size_t i = 0; i < exp->n; i++)
        file_meta_release(&exp->v[i]);
    free(exp->v);
    free(exp->step);
    buf_release(&exp->out);
    buf_release(&exp->tar);
    if (exp->gz)
        libdeflate_free_compressor(exp->gz);
    free(exp->base);
    free(exp);
}
