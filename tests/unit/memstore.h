/* Stores for unit tests of modules above the store.
 * memstore: a small in-memory engine of store.h, instrumented (content writers begun and still
 * open, commits) for tests that must prove nothing leaked or was committed. Only what
 * ingest/export use: contents, stat, list, commit. One sandbox (any id), no version checks, no
 * quota. Thread-safe via one mutex.
 * test_sqlite_*: the real SQLite engine in a temporary directory, for round trips. */
#ifndef SQLFS_TESTS_MEMSTORE_H
#define SQLFS_TESTS_MEMSTORE_H

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "store/store.h"
#include "util/buf.h"
#include "util/compiler.h"
#include "util/path.h"

struct mem_content {
    uint8_t id[CONTENT_ID_LEN];
    struct buf data;
};

struct memstore {
    struct store base;
    pthread_mutex_t mu;
    struct mem_content *contents;
    size_t ncontents;
    struct file_meta *files;
    size_t nfiles;
    int commits;
    int writers_begun;
    int writers_open;
};

struct content_writer {
    struct memstore *ms;
    struct buf data;
};

struct content_reader {
    const struct buf *data;
    size_t off;
};

static void ms_close(struct store *st)
{
    struct memstore *ms = (struct memstore *)st;
    for (size_t i = 0; i < ms->ncontents; i++)
        buf_release(&ms->contents[i].data);
    free(ms->contents);
    for (size_t i = 0; i < ms->nfiles; i++)
        file_meta_release(&ms->files[i]);
    free(ms->files);
    pthread_mutex_destroy(&ms->mu);
    free(ms);
}

static int ms_begin(struct store *st, struct content_writer **ret)
{
    struct memstore *ms = (struct memstore *)st;
    struct content_writer *w = calloc(1, sizeof(*w));
    w->ms = ms;
    pthread_mutex_lock(&ms->mu);
    ms->writers_begun++;
    ms->writers_open++;
    pthread_mutex_unlock(&ms->mu);
    *ret = w;
    return 0;
}

static int ms_write(struct content_writer *w, const void *data, size_t len)
{
    return buf_add(&w->data, data, len);
}

static void ms_abort(struct content_writer *w)
{
    pthread_mutex_lock(&w->ms->mu);
    w->ms->writers_open--;
    pthread_mutex_unlock(&w->ms->mu);
    buf_release(&w->data);
    free(w);
}

static int ms_finish(struct content_writer *w, uint8_t id[CONTENT_ID_LEN], int64_t *ret_size)
{
    struct memstore *ms = w->ms;
    if (ret_size)
        *ret_size = (int64_t)w->data.len;
    if (w->data.len == 0) {
        memset(id, 0, CONTENT_ID_LEN);
        ms_abort(w);
        return 0;
    }
    SHA256((const unsigned char *)w->data.data, w->data.len, id);
    pthread_mutex_lock(&ms->mu);
    bool have = false;
    for (size_t i = 0; i < ms->ncontents && !have; i++)
        have = memcmp(ms->contents[i].id, id, CONTENT_ID_LEN) == 0;
    if (!have) {
        ms->contents = realloc(ms->contents, (ms->ncontents + 1) * sizeof(*ms->contents));
        struct mem_content *c = &ms->contents[ms->ncontents++];
        memcpy(c->id, id, CONTENT_ID_LEN);
        c->data = w->data;
        w->data = (struct buf)BUF_INIT(0);
    }
    pthread_mutex_unlock(&ms->mu);
    ms_abort(w);
    return 0;
}

static int ms_open(struct store *st, const uint8_t id[CONTENT_ID_LEN], struct content_reader **ret)
{
    struct memstore *ms = (struct memstore *)st;
    for (size_t i = 0; i < ms->ncontents; i++) {
        if (memcmp(ms->contents[i].id, id, CONTENT_ID_LEN) == 0) {
            struct content_reader *r = calloc(1, sizeof(*r));
            r->data = &ms->contents[i].data;
            *ret = r;
            return 0;
        }
    }
    return -ENOENT;
}

static int ms_read(struct content_reader *r, void *buf, size_t cap, size_t *ret_got)
{
    size_t n = r->data->len - r->off;
    if (n > cap)
        n = cap;
    memcpy(buf, r->data->data + r->off, n);
    r->off += n;
    *ret_got = n;
    return 0;
}

static void ms_rclose(struct content_reader *r)
{
    free(r);
}

static ssize_t ms_find(struct memstore *ms, const char *path)
{
    for (size_t i = 0; i < ms->nfiles; i++)
        if (strcmp(ms->files[i].path, path) == 0)
            return (ssize_t)i;
    return -1;
}

/* One sandbox: sid is not looked at. */
static int ms_stat(struct store *st, const char *sid UNUSED, const char *path,
                   struct file_meta *ret)
{
    struct memstore *ms = (struct memstore *)st;
    ssize_t i = ms_find(ms, path);
    if (i < 0)
        return -ENOENT;
    return file_meta_copy(ret, &ms->files[i]);
}

static int ms_cmp(const void *a, const void *b)
{
    return strcmp(((const struct file_meta *)a)->path, ((const struct file_meta *)b)->path);
}

/* Always the whole subtree below prefix, whatever max_depth. */
static int ms_list(struct store *st, const char *sid UNUSED, const char *prefix,
                   int max_depth UNUSED, store_file_cb cb, void *userdata)
{
    struct memstore *ms = (struct memstore *)st;
    qsort(ms->files, ms->nfiles, sizeof(*ms->files), ms_cmp);
    for (size_t i = 0; i < ms->nfiles; i++) {
        const char *p = ms->files[i].path;
        if (strcmp(p, prefix) == 0 || !path_is_within(p, prefix))
            continue;
        int r = cb(&ms->files[i], userdata);
        if (r)
            return r;
    }
    return 0;
}

static void ms_remove_tree(struct memstore *ms, const char *path)
{
    size_t o = 0;
    for (size_t i = 0; i < ms->nfiles; i++) {
        if (path_is_within(ms->files[i].path, path))
            file_meta_release(&ms->files[i]);
        else
            ms->files[o++] = ms->files[i];
    }
    ms->nfiles = o;
}

static void ms_put(struct memstore *ms, const struct file_meta *m)
{
    ssize_t i = ms_find(ms, m->path);
    if (i >= 0 && ms->files[i].kind == FILE_KIND_DIR && m->kind == FILE_KIND_DIR) {
        ms->files[i].mode = m->mode;
        ms->files[i].mtime_ns = m->mtime_ns;
        return;
    }
    if (i >= 0)
        ms_remove_tree(ms, m->path);
    ms->files = realloc(ms->files, (ms->nfiles + 1) * sizeof(*ms->files));
    if (file_meta_copy(&ms->files[ms->nfiles], m) == 0)
        ms->nfiles++;
}

/* No version checks, no quota. */
static int ms_commit(struct store *st, const char *sid UNUSED, const struct changeset *cs,
                     const struct commit_opts *opts UNUSED, struct commit_result *ret)
{
    struct memstore *ms = (struct memstore *)st;
    for (size_t c = 0; c < cs->n; c++) {
        const struct file_meta *m = &cs->items[c].meta;
        if (cs->items[c].op == CHANGE_DELETE) {
            ms_remove_tree(ms, m->path);
            continue;
        }
        char *parent = path_parent(m->path);
        while (strcmp(parent, "/") != 0) {
            ssize_t i = ms_find(ms, parent);
            if (i >= 0 && ms->files[i].kind != FILE_KIND_DIR) {
                free(parent);
                return -ENOTDIR;
            }
            if (i < 0) {
                if (!cs->create_parents) {
                    free(parent);
                    return -ENOENT;
                }
                struct file_meta d = {.path = parent, .kind = FILE_KIND_DIR, .mode = 0755};
                ms_put(ms, &d);
            }
            char *pp = path_parent(parent);
            free(parent);
            parent = pp;
        }
        free(parent);
        ms_put(ms, m);
    }
    ms->commits++;
    if (ret)
        memset(ret, 0, sizeof(*ret));
    return 0;
}

static const struct store_ops memstore_ops = {
    .version = STORE_OPS_VERSION,
    .name = "memory",
    .close = ms_close,
    .stat = ms_stat,
    .list = ms_list,
    .content_begin = ms_begin,
    .content_write = ms_write,
    .content_finish = ms_finish,
    .content_abort = ms_abort,
    .content_open = ms_open,
    .content_read = ms_read,
    .content_close = ms_rclose,
    .commit = ms_commit,
};

static inline struct memstore *memstore_new(void)
{
    struct memstore *ms = calloc(1, sizeof(*ms));
    ms->base.ops = &memstore_ops;
    pthread_mutex_init(&ms->mu, NULL);
    return ms;
}

#endif

/* ---- the real SQLite engine in a temporary directory ----------------------------------------- */

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "util/fs.h"

#define TEST_SB "11111111-1111-4111-8111-111111111111"

/* Opens a fresh SQLite store under dir (>= 64 bytes, filled here) holding sandbox TEST_SB. */
static inline struct store *test_sqlite_open(char *dir)
{
    snprintf(dir, 64, "/tmp/test_archive.XXXXXX");
    if (!mkdtemp(dir))
        return NULL;
    char db[128];
    snprintf(db, sizeof(db), "%s/store.db", dir);
    struct store *st = NULL;
    if (store_open_sqlite(db, &st) < 0)
        return NULL;
    struct sandbox_rec r = {0};
    snprintf(r.id, sizeof(r.id), "%s", TEST_SB);
    r.tenant = (char *)"t";
    r.sub = (char *)"u";
    if (store_sandbox_create(st, &r, NULL, NULL) < 0) {
        store_close(st);
        return NULL;
    }
    return st;
}

static inline void test_sqlite_close(struct store *st, const char *dir)
{
    store_close(st);
    if (rm_rf_at(AT_FDCWD, dir, NULL) < 0)
        fprintf(stderr, "cannot remove the test directory %s\n", dir);
}

/* The sandbox's version (how many commits it saw). */
static inline int64_t test_sqlite_version(struct store *st)
{
    struct sandbox_rec r;
    if (store_sandbox_get(st, TEST_SB, NULL, NULL, &r) < 0)
        return -1;
    int64_t v = r.version;
    sandbox_rec_release(&r);
    return v;
}
