/* Unit tests of the store engines (store.h / changeset.h), on real databases: the whole suite
 * runs against SQLite (a temp directory) and, when SQLFS_TEST_PG_URL names a PostgreSQL
 * server (scripts/pg-test-cluster.sh; make test-unit starts one), against PostgreSQL too, each
 * test on a fresh database; then the PostgreSQL-only tests (several stores on one database as
 * replicas, connection loss, the pool). The raw database is inspected directly where the
 * contract has no accessor (chunk counts, the commit log). */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "store/store.h"
#include "util/err.h"
#include "util/timeutil.h"
#include "util/fs.h"

#define STORE_FIXTURE_NAME "test_store"
#include "store_fixture.h"

#define MIB (1024 * 1024)
/* The schema versions of this code: the number of migrations of each engine. */
#define SQLITE_SCHEMA_VERSION 5
#define PG_SCHEMA_VERSION 6

/* Reads a whole content with reads of `step` bytes; returns a malloc'd buffer. */
static uint8_t *read_all(struct store *st, const uint8_t id[CONTENT_ID_LEN], size_t step,
                         size_t *ret_len)
{
    struct content_reader *r;
    assert_int_equal(store_content_open(st, id, &r), 0);
    size_t cap = MIB, len = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (cap - len < step) {
            cap = cap * 2 + step;
            buf = realloc(buf, cap);
        }
        size_t got = 99;
        assert_int_equal(store_content_read(st, r, buf + len, step, &got), 0);
        if (got == 0)
            break;
        assert_true(got <= step);
        len += got;
    }
    store_content_close(st, r);
    *ret_len = len;
    return buf;
}

static void expect_content(struct store *st, const uint8_t id[CONTENT_ID_LEN], const void *data,
                           size_t len)
{
    size_t got;
    uint8_t *buf = read_all(st, id, 7777, &got);
    assert_int_equal(got, len);
    if (len)
        assert_memory_equal(buf, data, len);
    free(buf);
}

#define SB1 "11111111-1111-4111-8111-111111111111"
#define SB2 "22222222-2222-4222-8222-222222222222"
#define SB3 "33333333-3333-4333-8333-333333333333"

static void cs_file(struct changeset *cs, const char *path, const uint8_t *id, int64_t size)
{
    struct file_meta m = {
        .path = (char *)path, .kind = FILE_KIND_FILE, .mode = 0644, .size = size, .mtime_ns = 5};
    if (size > 0) {
        m.has_content = true;
        memcpy(m.content, id, CONTENT_ID_LEN);
    }
    assert_int_equal(changeset_put(cs, &m), 0);
}

static void cs_dir(struct changeset *cs, const char *path, uint32_t mode)
{
    struct file_meta m = {.path = (char *)path, .kind = FILE_KIND_DIR, .mode = mode, .mtime_ns = 7};
    assert_int_equal(changeset_put(cs, &m), 0);
}

/* Stores `text` and puts it at path. */
static void cs_text(struct store *st, struct changeset *cs, const char *path, const char *text)
{
    uint8_t id[CONTENT_ID_LEN];
    put_bytes(st, text, strlen(text), id);
    cs_file(cs, path, id, (int64_t)strlen(text));
}

/* Commits cs keeping `versions` versions of history (0: all). */
static int commit_keeping(struct store *st, const char *sb, struct changeset *cs, int64_t expect,
                          int64_t quota, struct commit_result *res, int64_t versions)
{
    struct commit_opts o = {.expect_version = expect,
                            .quota_bytes = quota,
                            .now_ms = 42000,
                            .history_max_commits = versions};
    struct commit_result tmp;
    int r = store_commit(st, sb, cs, &o, res ? res : &tmp);
    changeset_release(cs);
    return r;
}

/* Commits cs keeping one version: what a commit replaces or removes is collectable at once
 * (history is test_history.c's). */
static int commit(struct store *st, const char *sb, struct changeset *cs, int64_t expect,
                  int64_t quota, struct commit_result *res)
{
    return commit_keeping(st, sb, cs, expect, quota, res, 1);
}

static struct sandbox_rec get_sb(struct store *st, const char *id)
{
    struct sandbox_rec r;
    assert_int_equal(store_sandbox_get(st, id, NULL, NULL, &r), 0);
    return r;
}

static void expect_kind(struct store *st, const char *sb, const char *path, int kind)
{
    struct file_meta m;
    int r = store_stat(st, sb, path, &m);
    if (kind == 0) {
        assert_int_equal(r, -ENOENT);
        return;
    }
    assert_int_equal(r, 0);
    assert_int_equal(m.kind, kind);
    assert_string_equal(m.path, path);
    file_meta_release(&m);
}

/* ---- sandboxes ------------------------------------------------------------------------- */

struct idlist {
    char ids[16][UUID_STR_LEN];
    int n;
    int stop_after;
};

static int collect_sb(const struct sandbox_rec *rec, void *ud)
{
    struct idlist *l = ud;
    snprintf(l->ids[l->n++], UUID_STR_LEN, "%s", rec->id);
    return l->stop_after && l->n == l->stop_after ? 77 : 0;
}

static void batch_free_stub(struct content_batch *b)
{
    (void)b;
}

/* The engine's ops table passes the interface check; a table of another version, or missing a
 * required member or part of the batch members, is refused. */
static void test_ops_check(void **state)
{
    struct fx *f = *state;
    assert_int_equal(store_ops_check(f->st->ops), 0);
    assert_int_equal(f->st->ops->version, STORE_OPS_VERSION);

    struct store_ops ops = *f->st->ops;
    ops.version = STORE_OPS_VERSION + 1;
    err_clear();
    assert_int_equal(store_ops_check(&ops), -EINVAL);
    assert_non_null(strstr(err_message(), f->st->ops->name));
    ops.version = 0;
    assert_int_equal(store_ops_check(&ops), -EINVAL);

    ops = *f->st->ops;
    ops.commit = NULL;
    assert_int_equal(store_ops_check(&ops), -EINVAL);

    /* Optional members. */
    ops = *f->st->ops;
    ops.memory_bytes = NULL;
    ops.discard = NULL;
    assert_int_equal(store_ops_check(&ops), 0);
    struct store plain = {.ops = &ops};
    assert_int_equal(store_memory_bytes(&plain), -1);
    ops.content_batch_new = NULL;
    ops.content_finish_in = NULL;
    ops.content_batch_flush = NULL;
    ops.content_batch_free = NULL;
    assert_int_equal(store_ops_check(&ops), 0);
    /* batch members: all four or none */
    ops.content_batch_free = batch_free_stub;
    assert_int_equal(store_ops_check(&ops), -EINVAL);
}

static void test_sandbox_crud(void **state)
{
    struct fx *f = *state;
    struct sandbox_rec r1 = rec_of(SB1, "t1", "u1", 1000);
    r1.name = "first";
    r1.python = true;
    r1.env_json = "{\"A\":\"1\"}";
    struct sandbox_rec r2 = rec_of(SB2, "t1", "u2", 2000);
    struct sandbox_rec r3 = rec_of(SB3, "t1", "u1", 3000);
    r3.cwd = "/work";
    int64_t count = -1;
    assert_int_equal(store_sandbox_count(f->st, &count), 0);
    assert_int_equal(count, 0);
    assert_int_equal(store_sandbox_create(f->st, &r1, NULL, NULL), 0);
    assert_int_equal(store_sandbox_create(f->st, &r2, NULL, NULL), 0);
    assert_int_equal(store_sandbox_create(f->st, &r3, NULL, NULL), 0);
    assert_int_equal(store_sandbox_create(f->st, &r1, NULL, NULL), -EEXIST);
    assert_int_equal(store_sandbox_count(f->st, &count), 0);
    assert_int_equal(count, 3); /* every owner's */

    struct sandbox_rec g;
    assert_int_equal(store_sandbox_get(f->st, SB1, "t1", "u1", &g), 0);
    assert_string_equal(g.id, SB1);
    assert_string_equal(g.name, "first");
    assert_string_equal(g.env_json, "{\"A\":\"1\"}");
    assert_string_equal(g.cwd, "/home/user");
    assert_true(g.python);
    assert_false(g.javascript);
    assert_int_equal(g.version, 0);
    assert_int_equal(g.created_ms, 1000);
    assert_int_equal(g.last_used_ms, 0);
    sandbox_rec_release(&g);
    assert_int_equal(store_sandbox_get(f->st, SB2, "t1", "u2", &g), 0);
    assert_null(g.name);
    assert_string_equal(g.env_json, "{}");
    sandbox_rec_release(&g);
    assert_int_equal(store_sandbox_get(f->st, SB3, NULL, NULL, &g), 0);
    assert_string_equal(g.cwd, "/work");
    sandbox_rec_release(&g);

    /* Foreign or missing: -ENOENT alike. */
    assert_int_equal(store_sandbox_get(f->st, SB1, "t1", "u2", &g), -ENOENT);
    assert_int_equal(store_sandbox_get(f->st, SB1, "t2", "u1", &g), -ENOENT);
    assert_int_equal(store_sandbox_get(f->st, "nope", NULL, NULL, &g), -ENOENT);

    struct idlist l = {0};
    assert_int_equal(store_sandbox_list(f->st, "t1", "u1", collect_sb, &l), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.ids[0], SB3); /* newest first */
    assert_string_equal(l.ids[1], SB1);
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_sandbox_list(f->st, NULL, NULL, collect_sb, &l), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.ids[0], SB3);
    assert_string_equal(l.ids[1], SB2);
    assert_string_equal(l.ids[2], SB1);
    memset(&l, 0, sizeof(l));
    l.stop_after = 1;
    assert_int_equal(store_sandbox_list(f->st, NULL, NULL, collect_sb, &l), 77);
    assert_int_equal(l.n, 1);
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_sandbox_list(f->st, "t9", "u1", collect_sb, &l), 0);
    assert_int_equal(l.n, 0);

    assert_int_equal(store_sandbox_touch(f->st, SB2, 5555), 0);
    assert_int_equal(store_sandbox_get(f->st, SB2, NULL, NULL, &g), 0);
    assert_int_equal(g.last_used_ms, 5555);
    sandbox_rec_release(&g);
    assert_int_equal(store_sandbox_touch(f->st, "nope", 1), -ENOENT);

    assert_int_equal(store_sandbox_delete(f->st, SB1, "t1", "u2"), -ENOENT);
    assert_int_equal(store_sandbox_delete(f->st, SB1, "t1", "u1"), 0);
    assert_int_equal(store_sandbox_get(f->st, SB1, NULL, NULL, &g), -ENOENT);
    assert_int_equal(store_sandbox_delete(f->st, SB1, NULL, NULL), -ENOENT);
    assert_int_equal(store_sandbox_count(f->st, &count), 0);
    assert_int_equal(count, 2);
    assert_int_equal(store_check(f->st), 0);
}

/* changeset_put_take moves the strings (and reduces the mode like changeset_put); after
 * changeset_reserve(n) the next n appends keep the items where they are. */
static void test_changeset_take(void **state)
{
    (void)state;
    struct changeset cs;
    changeset_init(&cs, "t");
    assert_int_equal(changeset_delete(&cs, "/gone"), 0);
    assert_int_equal(changeset_reserve(&cs, 100), 0);
    assert_true(cs.cap - cs.n >= 100);
    const struct change *items = cs.items;
    for (int i = 0; i < 100; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/f%d", i);
        struct file_meta m = {
            .path = strdup(path), .kind = FILE_KIND_SYMLINK, .mode = 07777, .target = strdup("t")};
        assert_non_null(m.path);
        char *p = m.path;
        assert_int_equal(changeset_put_take(&cs, &m), 0);
        assert_null(m.path);
        assert_null(m.target);
        assert_ptr_equal(cs.items[cs.n - 1].meta.path, p);
        assert_int_equal(cs.items[cs.n - 1].meta.mode, 0777);
    }
    assert_ptr_equal(cs.items, items);
    assert_int_equal(cs.n, 101);
    assert_string_equal(cs.items[100].meta.path, "/f99");

    /* A reservation that cannot be met fails and changes nothing. */
    size_t cap = cs.cap;
    assert_int_equal(changeset_reserve(&cs, SIZE_MAX), -ENOMEM);
    assert_int_equal(changeset_reserve(&cs, SIZE_MAX / sizeof(struct change)), -ENOMEM);
    assert_ptr_equal(cs.items, items);
    assert_int_equal(cs.cap, cap);
    assert_int_equal(cs.n, 101);
    assert_int_equal(changeset_reserve(&cs, 0), 0);
    changeset_release(&cs);
}

/* max_owner_sandboxes counts the owner's (tenant, sub) sandboxes only; a delete makes room. */
static void test_owner_sandbox_limit(void **state)
{
    struct fx *f = *state;
    struct commit_opts o = {.expect_version = -1, .max_owner_sandboxes = 2};
    struct sandbox_rec r1 = rec_of(SB1, "t", "u", 1000);
    struct sandbox_rec r2 = rec_of(SB2, "t", "u", 1001);
    struct sandbox_rec r3 = rec_of(SB3, "t", "u", 1002);
    assert_int_equal(store_sandbox_create(f->st, &r1, NULL, &o), 0);
    assert_int_equal(store_sandbox_create(f->st, &r2, NULL, &o), 0);
    err_clear();
    assert_int_equal(store_sandbox_create(f->st, &r3, NULL, &o), -ERR_SANDBOX_LIMIT);
    assert_non_null(strstr(err_message(), "2 sandboxes"));
    struct sandbox_rec g;
    assert_int_equal(store_sandbox_get(f->st, SB3, NULL, NULL, &g), -ENOENT);
    /* another sub, another tenant with the same sub: their own counts */
    struct sandbox_rec other_sub = rec_of(SB3, "t", "v", 1003);
    assert_int_equal(store_sandbox_create(f->st, &other_sub, NULL, &o), 0);
    assert_int_equal(store_sandbox_delete(f->st, SB3, NULL, NULL), 0);
    struct sandbox_rec other_tenant = rec_of(SB3, "t2", "u", 1003);
    assert_int_equal(store_sandbox_create(f->st, &other_tenant, NULL, &o), 0);
    assert_int_equal(store_sandbox_delete(f->st, SB3, NULL, NULL), 0);
    /* no limit, then room again after a delete */
    struct commit_opts unlimited = {.expect_version = -1};
    assert_int_equal(store_sandbox_create(f->st, &r3, NULL, &unlimited), 0);
    assert_int_equal(store_sandbox_delete(f->st, SB3, NULL, NULL), 0);
    assert_int_equal(store_sandbox_delete(f->st, SB1, NULL, NULL), 0);
    assert_int_equal(store_sandbox_create(f->st, &r3, NULL, &o), 0);
}

static void test_create_with_initial(void **state)
{
    struct fx *f = *state;
    struct changeset cs;
    changeset_init(&cs, "create");
    cs.create_parents = true;
    cs_dir(&cs, "/home/user", 0755);
    cs_text(f->st, &cs, "/home/user/readme", "hi\n");
    struct sandbox_rec r = rec_of(SB1, "t", "u", 1000);
    struct commit_opts o = {.expect_version = 99, .now_ms = 1234};
    assert_int_equal(store_sandbox_create(f->st, &r, &cs, &o), 0);
    /* Creation fails whole: a bad initial change set leaves no sandbox behind. */
    struct sandbox_rec r2 = rec_of(SB2, "t", "u", 1000);
    struct changeset bad;
    changeset_init(&bad, "create");
    cs_dir(&bad, "/x/y", 0755); /* no parent, create_parents off */
    assert_int_equal(store_sandbox_create(f->st, &r2, &bad, &o), -ENOENT);
    changeset_release(&bad);
    changeset_release(&cs);
    struct sandbox_rec g;
    assert_int_equal(store_sandbox_get(f->st, SB2, NULL, NULL, &g), -ENOENT);
    g = get_sb(f->st, SB1);
    assert_int_equal(g.version, 1);
    assert_int_equal(g.file_count, 3); /* /home, /home/user, readme */
    assert_int_equal(g.size_bytes, 3);
    assert_int_equal(g.last_used_ms, 1234);
    sandbox_rec_release(&g);
    expect_kind(f->st, SB1, "/home", FILE_KIND_DIR);
    expect_kind(f->st, SB1, "/home/user/readme", FILE_KIND_FILE);
}

/* ---- content --------------------------------------------------------------------------- */

static void test_content_roundtrip(void **state)
{
    struct fx *f = *state;
    static const size_t sizes[] = {0,   1,       16 * 1024, 16 * 1024 + 1,    MIB - 1,
                                   MIB, MIB + 1, 2 * MIB,   3 * MIB + MIB / 2};
    uint8_t *data = malloc(4 * MIB);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        fill(data, sizes[i], i + 1);
        uint8_t id[CONTENT_ID_LEN];
        put_bytes(f->st, data, sizes[i], id);
        static const uint8_t zero[CONTENT_ID_LEN] = {0};
        if (sizes[i] == 0)
            assert_memory_equal(id, zero, CONTENT_ID_LEN);
        else
            assert_memory_not_equal(id, zero, CONTENT_ID_LEN);
        expect_content(f->st, id, data, sizes[i]);
        /* Big reads too (one call crosses chunk boundaries). */
        size_t got;
        uint8_t *buf = read_all(f->st, id, 3 * MIB, &got);
        assert_int_equal(got, sizes[i]);
        if (got)
            assert_memory_equal(buf, data, got);
        free(buf);
        /* One big write gives the same id as many small ones. */
        uint8_t id2[CONTENT_ID_LEN];
        put_bytes_step(f->st, data, sizes[i], sizes[i] ? sizes[i] : 1, id2);
        assert_memory_equal(id, id2, CONTENT_ID_LEN);
    }
    free(data);
    uint8_t unknown[CONTENT_ID_LEN];
    memset(unknown, 0xab, sizeof(unknown));
    struct content_reader *r;
    assert_int_equal(store_content_open(f->st, unknown, &r), -ENOENT);
}

/* The content id is SHA-256(chunk hashes || 8-byte big-endian size). */
static void test_content_id_format(void **state)
{
    struct fx *f = *state;
    uint8_t *data = malloc(MIB + 5);
    fill(data, MIB + 5, 9);
    uint8_t want[32], h[64];
    unsigned int n;
    assert_int_equal(EVP_Digest(data, MIB, h, &n, EVP_sha256(), NULL), 1);
    assert_int_equal(EVP_Digest(data + MIB, 5, h + 32, &n, EVP_sha256(), NULL), 1);
    uint8_t buf[72];
    memcpy(buf, h, 64);
    uint64_t size = MIB + 5;
    for (int i = 0; i < 8; i++)
        buf[64 + i] = (uint8_t)(size >> (56 - 8 * i));
    assert_int_equal(EVP_Digest(buf, 72, want, &n, EVP_sha256(), NULL), 1);
    uint8_t id[CONTENT_ID_LEN];
    put_bytes(f->st, data, MIB + 5, id);
    assert_memory_equal(id, want, 32);
    /* Small (inline) content follows the same formula with one chunk. */
    assert_int_equal(EVP_Digest("abc", 3, buf, &n, EVP_sha256(), NULL), 1);
    memset(buf + 32, 0, 8);
    buf[39] = 3;
    assert_int_equal(EVP_Digest(buf, 40, want, &n, EVP_sha256(), NULL), 1);
    put_bytes(f->st, "abc", 3, id);
    assert_memory_equal(id, want, 32);
    free(data);
}

static void test_dedup(void **state)
{
    struct fx *f = *state;
    size_t len = 2 * MIB + 100;
    uint8_t *data = malloc(len);
    fill(data, len, 3);
    uint8_t a[CONTENT_ID_LEN], b[CONTENT_ID_LEN];
    put_bytes(f->st, data, len, a);
    put_bytes_step(f->st, data, len, 4096, b);
    assert_memory_equal(a, b, CONTENT_ID_LEN);
    assert_int_equal(db_int(f, "SELECT count(*) FROM blobs.chunks"), 3);
    assert_int_equal(db_int(f, "SELECT count(*) FROM contents"), 1);
    /* A zero-filled file: its equal chunks are stored once. */
    uint8_t *zeros = calloc(1, 3 * MIB);
    uint8_t z[CONTENT_ID_LEN];
    put_bytes(f->st, zeros, 3 * MIB, z);
    assert_int_equal(db_int(f, "SELECT count(*) FROM blobs.chunks"), 4);
    expect_content(f->st, z, zeros, 3 * MIB);
    free(zeros);
    free(data);
}

static void test_seek(void **state)
{
    struct fx *f = *state;
    size_t len = 3 * MIB + MIB / 2;
    uint8_t *data = malloc(len);
    fill(data, len, 4);
    uint8_t id[CONTENT_ID_LEN];
    put_bytes(f->st, data, len, id);
    struct content_reader *r;
    assert_int_equal(store_content_open(f->st, id, &r), 0);
    static const int64_t offs[] = {
        0, 5, MIB - 3, MIB, MIB + 1, 2 * MIB + MIB / 2 + 7, 3 * MIB + MIB / 2 - 10, 100};
    uint8_t buf[5000];
    for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
        assert_int_equal(store_content_seek(f->st, r, offs[i]), 0);
        size_t want = len - (size_t)offs[i] < sizeof(buf) ? len - (size_t)offs[i] : sizeof(buf);
        size_t got;
        assert_int_equal(store_content_read(f->st, r, buf, sizeof(buf), &got), 0);
        assert_int_equal(got, want);
        assert_memory_equal(buf, data + offs[i], want);
    }
    assert_int_equal(store_content_seek(f->st, r, (int64_t)len), 0);
    size_t got = 1;
    assert_int_equal(store_content_read(f->st, r, buf, sizeof(buf), &got), 0);
    assert_int_equal(got, 0);
    assert_int_equal(store_content_seek(f->st, r, (int64_t)len + 1), -EINVAL);
    assert_int_equal(store_content_seek(f->st, r, -1), -EINVAL);
    store_content_close(f->st, r);
    /* Seek inside an inline (small) content. */
    put_bytes(f->st, "hello world", 11, id);
    assert_int_equal(store_content_open(f->st, id, &r), 0);
    assert_int_equal(store_content_seek(f->st, r, 6), 0);
    assert_int_equal(store_content_read(f->st, r, buf, sizeof(buf), &got), 0);
    assert_int_equal(got, 5);
    assert_memory_equal(buf, "world", 5);
    store_content_close(f->st, r);
    free(data);
}

static void test_writer_abort(void **state)
{
    struct fx *f = *state;
    uint8_t *data = malloc(2 * MIB);
    fill(data, 2 * MIB, 5);
    struct content_writer *w;
    assert_int_equal(store_content_begin(f->st, &w), 0);
    assert_int_equal(store_content_write(f->st, w, data, 2 * MIB), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM blobs.chunks"), 2);
    store_content_abort(f->st, w);
    assert_int_equal(db_int(f, "SELECT count(*) FROM blobs.chunks"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM pending_chunks"), 0);
    free(data);
}

/* Writes len bytes and finishes the content into batch b. */
static void put_in_batch(struct store *st, struct content_batch *b, const void *data, size_t len,
                         uint8_t id[CONTENT_ID_LEN])
{
    struct content_writer *w;
    assert_int_equal(store_content_begin(st, &w), 0);
    if (len)
        assert_int_equal(store_content_write(st, w, data, len), 0);
    int64_t size = -1;
    assert_int_equal(store_content_finish_in(st, b, w, id, &size), 0);
    assert_int_equal(size, (int64_t)len);
}

static void test_content_batch(void **state)
{
    struct fx *f = *state;
    static const size_t sizes[] = {0, 3, 16 * 1024, 16 * 1024 + 1, 200000, MIB + 5, 2 * MIB, 3};
    enum { N = sizeof(sizes) / sizeof(sizes[0]) };
    uint8_t *data = malloc(N * 2 * MIB);
    uint8_t ids[N][CONTENT_ID_LEN];
    struct content_batch *b;
    assert_int_equal(store_content_batch_new(f->st, &b), 0);
    if (!b) {
        free(data);
        skip(); /* the engine does not batch */
    }
    for (size_t i = 0; i < N; i++) {
        /* the last one repeats the second: the same content twice in one batch */
        fill(data + i * 2 * MIB, sizes[i], i == N - 1 ? 1 : i);
        put_in_batch(f->st, b, data + i * 2 * MIB, sizes[i], ids[i]);
    }
    assert_memory_equal(ids[1], ids[N - 1], CONTENT_ID_LEN);
    /* Nothing recorded yet; only the whole chunks are stored, held by their pending rows. */
    assert_int_equal(db_int(f, "SELECT count(*) FROM contents"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM blobs.chunks"), 3);
    assert_int_equal(db_int(f, "SELECT count(*) FROM pending_chunks"), 3);
    struct gc_stats gs;
    assert_int_equal(store_gc(f->st, &gs), 0);
    assert_int_equal(store_content_batch_flush(f->st, b), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM contents"), 6);
    assert_int_equal(db_int(f, "SELECT count(*) FROM blobs.chunks"), 6);
    assert_int_equal(db_int(f, "SELECT count(*) FROM pending_chunks"), 0);
    assert_int_equal(db_int(f, "SELECT sum(refs) FROM content_pins"), 7);
    assert_int_equal(store_gc(f->st, &gs), 0); /* pinned: kept */
    for (size_t i = 0; i < N; i++) {
        expect_content(f->st, ids[i], data + i * 2 * MIB, sizes[i]);
        uint8_t id[CONTENT_ID_LEN]; /* the same id as a plain finish */
        put_bytes(f->st, data + i * 2 * MIB, sizes[i], id);
        assert_memory_equal(id, ids[i], CONTENT_ID_LEN);
    }
    assert_int_equal(db_int(f, "SELECT count(*) FROM contents"), 6);
    assert_int_equal(store_content_batch_flush(f->st, b), 0); /* empty: nothing to do */
    store_content_batch_free(f->st, b);

    /* A full batch flushes itself (the first full set is recorded by the time the second one
     * is full); what is left unflushed is discarded by free. */
    assert_int_equal(store_content_batch_new(f->st, &b), 0);
    int64_t before = db_int(f, "SELECT count(*) FROM contents");
    int64_t pins = db_int(f, "SELECT sum(refs) FROM content_pins");
    for (uint32_t i = 0; i < 3000; i++) {
        uint8_t id[CONTENT_ID_LEN];
        char text[32];
        int n = snprintf(text, sizeof(text), "small file %u", i);
        put_in_batch(f->st, b, text, (size_t)n, id);
    }
    int64_t flushed = db_int(f, "SELECT count(*) FROM contents") - before;
    assert_true(flushed > 0 && flushed < 3000);
    uint8_t id[CONTENT_ID_LEN];
    fill(data, MIB + 100, 77);
    put_in_batch(f->st, b, data, MIB + 100, id);
    store_content_batch_free(f->st, b);
    int64_t kept = db_int(f, "SELECT count(*) FROM contents") - before;
    assert_true(kept >= flushed && kept < 3000);
    assert_int_equal(db_int(f, "SELECT sum(refs) FROM content_pins"), pins + kept);
    assert_int_equal(db_int(f, "SELECT count(*) FROM pending_chunks"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM blobs.chunks"), 6);
    free(data);
}

/* ---- commits --------------------------------------------------------------------------- */

static void test_commit_parents(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    struct changeset cs;
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/a/b/c.txt", "abc");
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), -ENOENT);
    struct sandbox_rec g = get_sb(f->st, SB1);
    assert_int_equal(g.version, 0);
    assert_int_equal(g.file_count, 0);
    sandbox_rec_release(&g);

    changeset_init(&cs, "put");
    cs.create_parents = true;
    cs_text(f->st, &cs, "/a/b/c.txt", "abc");
    struct commit_result res;
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, &res), 0);
    assert_int_equal(res.version, 1);
    assert_int_equal(res.size_bytes, 3);
    struct file_meta m;
    assert_int_equal(store_stat(f->st, SB1, "/a/b", &m), 0);
    assert_int_equal(m.kind, FILE_KIND_DIR);
    assert_int_equal(m.mode, 0755);
    assert_int_equal(m.mtime_ns, 42000LL * 1000000);
    file_meta_release(&m);
    assert_int_equal(store_stat(f->st, SB1, "/a/b/c.txt", &m), 0);
    assert_int_equal(m.size, 3);
    assert_true(m.has_content);
    assert_int_equal(m.mode, 0644);
    expect_content(f->st, m.content, "abc", 3);
    file_meta_release(&m);

    /* A file (or a symlink) as a parent: -ENOTDIR, even with create_parents. */
    changeset_init(&cs, "put");
    cs.create_parents = true;
    cs_dir(&cs, "/a/b/c.txt/d", 0755);
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), -ENOTDIR);
    changeset_init(&cs, "put");
    struct file_meta link = {
        .path = "/a/link", .kind = FILE_KIND_SYMLINK, .mode = 0777, .target = "b"};
    assert_int_equal(changeset_put(&cs, &link), 0);
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0);
    assert_int_equal(store_stat(f->st, SB1, "/a/link", &m), 0);
    assert_int_equal(m.kind, FILE_KIND_SYMLINK);
    assert_string_equal(m.target, "b");
    assert_int_equal(m.size, 1);
    file_meta_release(&m);
    changeset_init(&cs, "put");
    cs.create_parents = true;
    cs_text(f->st, &cs, "/a/link/x", "x");
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), -ENOTDIR);
    /* Without create_parents, a file further up still reads as -ENOTDIR. */
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/a/b/c.txt/d/e", "x");
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), -ENOTDIR);
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/a/b/nope/e", "x");
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), -ENOENT);
    g = get_sb(f->st, SB1);
    assert_int_equal(g.version, 2);
    assert_int_equal(g.file_count, 4);
    assert_int_equal(g.size_bytes, 3); /* symlinks and dirs do not count */
    sandbox_rec_release(&g);
    /* The root: a dir put is a no-op, anything else is refused. */
    changeset_init(&cs, "put");
    cs_dir(&cs, "/", 0700);
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0);
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/", "x");
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), -EISDIR);
    assert_int_equal(store_stat(f->st, SB1, "/", &m), 0);
    assert_int_equal(m.kind, FILE_KIND_DIR);
    file_meta_release(&m);
    /* Commits to a missing sandbox. */
    changeset_init(&cs, "put");
    assert_int_equal(commit(f->st, SB2, &cs, -1, 0, NULL), -ENOENT);
}

static int64_t sum_sizes_cb_total;
static int64_t sum_rows;
static int sum_cb(const struct file_meta *m, void *ud)
{
    (void)ud;
    sum_rows++;
    if (m->kind == FILE_KIND_FILE)
        sum_sizes_cb_total += m->size;
    return 0;
}

/* size_bytes and file_count equal a full recount. */
static void check_accounting(struct store *st, const char *sb)
{
    sum_sizes_cb_total = sum_rows = 0;
    assert_int_equal(store_list(st, sb, "/", 0, sum_cb, NULL), 0);
    struct sandbox_rec g = get_sb(st, sb);
    assert_int_equal(g.size_bytes, sum_sizes_cb_total);
    assert_int_equal(g.file_count, sum_rows);
    sandbox_rec_release(&g);
}

static void test_commit_replace_and_delete(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    struct changeset cs;
    changeset_init(&cs, "put");
    cs.create_parents = true;
    cs_text(f->st, &cs, "/d/x/1", "one");
    cs_text(f->st, &cs, "/d/x/2", "two!");
    cs_text(f->st, &cs, "/d/y", "yy");
    cs_text(f->st, &cs, "/d.txt", "sibling"); /* sorts between /d and /d/... ('.' < '/') */
    cs_text(f->st, &cs, "/d0", "after");      /* sorts after the subtree of /d */
    cs_text(f->st, &cs, "/d!", "before");     /* '!' < '/' */
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0);
    check_accounting(f->st, SB1);
    struct sandbox_rec g = get_sb(f->st, SB1);
    assert_int_equal(g.file_count, 8);
    assert_int_equal(g.size_bytes, 3 + 4 + 2 + 7 + 5 + 6);
    sandbox_rec_release(&g);

    /* A dir over a dir: mode and mtime change, children stay. */
    changeset_init(&cs, "put");
    cs_dir(&cs, "/d", 0700);
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0);
    struct file_meta m;
    assert_int_equal(store_stat(f->st, SB1, "/d", &m), 0);
    assert_int_equal(m.mode, 0700);
    assert_int_equal(m.mtime_ns, 7);
    file_meta_release(&m);
    expect_kind(f->st, SB1, "/d/x/1", FILE_KIND_FILE);

    /* With keep_dirs (archive ingests) a file over a dir is refused and nothing changes. */
    g = get_sb(f->st, SB1);
    int64_t v0 = g.version;
    sandbox_rec_release(&g);
    changeset_init(&cs, "ingest");
    cs.keep_dirs = true;
    cs_text(f->st, &cs, "/d.txt", "replaced");
    cs_text(f->st, &cs, "/d", "now a file");
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), -EISDIR);
    expect_kind(f->st, SB1, "/d", FILE_KIND_DIR);
    expect_kind(f->st, SB1, "/d/x/1", FILE_KIND_FILE);
    g = get_sb(f->st, SB1);
    assert_int_equal(g.version, v0);
    assert_int_equal(g.size_bytes, 3 + 4 + 2 + 7 + 5 + 6);
    sandbox_rec_release(&g);

    /* A file over a dir removes the subtree, and nothing else. */
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/d", "now a file");
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0);
    expect_kind(f->st, SB1, "/d", FILE_KIND_FILE);
    expect_kind(f->st, SB1, "/d/x", 0);
    expect_kind(f->st, SB1, "/d/x/1", 0);
    expect_kind(f->st, SB1, "/d/y", 0);
    expect_kind(f->st, SB1, "/d.txt", FILE_KIND_FILE);
    expect_kind(f->st, SB1, "/d0", FILE_KIND_FILE);
    expect_kind(f->st, SB1, "/d!", FILE_KIND_FILE);
    check_accounting(f->st, SB1);
    g = get_sb(f->st, SB1);
    assert_int_equal(g.file_count, 4);
    assert_int_equal(g.size_bytes, 10 + 7 + 5 + 6);
    sandbox_rec_release(&g);

    /* Replace a file by a dir, add below it, then delete the subtree; absent paths are fine. */
    changeset_init(&cs, "put");
    cs_dir(&cs, "/d", 0755);
    cs_text(f->st, &cs, "/d/n", "n");
    cs_dir(&cs, "/d/sub", 0755);
    cs_text(f->st, &cs, "/d/sub/m", "mm");
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0);
    check_accounting(f->st, SB1);
    changeset_init(&cs, "delete");
    assert_int_equal(changeset_delete(&cs, "/d"), 0);
    assert_int_equal(changeset_delete(&cs, "/does/not/exist"), 0);
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0);
    expect_kind(f->st, SB1, "/d", 0);
    expect_kind(f->st, SB1, "/d/sub/m", 0);
    expect_kind(f->st, SB1, "/d.txt", FILE_KIND_FILE);
    check_accounting(f->st, SB1);
    g = get_sb(f->st, SB1);
    assert_int_equal(g.file_count, 3);
    assert_int_equal(g.size_bytes, 7 + 5 + 6);
    sandbox_rec_release(&g);

    /* Changes apply in order: put then delete in one commit. */
    changeset_init(&cs, "mix");
    cs_text(f->st, &cs, "/tmp1", "t");
    assert_int_equal(changeset_delete(&cs, "/tmp1"), 0);
    cs_text(f->st, &cs, "/tmp2", "tt");
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0);
    expect_kind(f->st, SB1, "/tmp1", 0);
    expect_kind(f->st, SB1, "/tmp2", FILE_KIND_FILE);
    check_accounting(f->st, SB1);

    /* Deleting the root empties the tree. */
    changeset_init(&cs, "delete");
    assert_int_equal(changeset_delete(&cs, "/"), 0);
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0);
    g = get_sb(f->st, SB1);
    assert_int_equal(g.file_count, 0);
    assert_int_equal(g.size_bytes, 0);
    sandbox_rec_release(&g);
    assert_int_equal(store_has_children(f->st, SB1, "/"), 0);
}

/* Stores `n` contents of 10 bytes ("<tag> %05d") through a content batch, into ids. */
static void batch_texts(struct store *st, const char *tag, int n, uint8_t (*ids)[CONTENT_ID_LEN])
{
    struct content_batch *b;
    assert_int_equal(store_content_batch_new(st, &b), 0);
    for (int i = 0; i < n; i++) {
        char text[16];
        assert_int_equal(snprintf(text, sizeof(text), "%s %05d", tag, i), 10);
        put_in_batch(st, b, text, 10, ids[i]);
    }
    assert_int_equal(store_content_batch_flush(st, b), 0);
    store_content_batch_free(st, b);
}

/* Change sets of thousands of puts, which an engine with bulk row primitives applies in runs
 * (store/apply.c): a path put twice, a directory put twice, a directory replaced by a file and
 * that by a directory within one run, a run whose parents outgrow the row cache, many replaced
 * contents; the result is that of the changes applied one by one. */
static void test_commit_many(void **state)
{
    struct fx *f = *state;
    enum { FILES = 3000, DIRS = 50, DEEP = 1024 };
    uint8_t(*ids)[CONTENT_ID_LEN] = malloc(FILES * CONTENT_ID_LEN);
    assert_non_null(ids);
    create_sb(f->st, SB1);
    batch_texts(f->st, "file", FILES, ids);
    struct changeset cs;
    changeset_init(&cs, "ingest");
    cs.create_parents = true;
    char path[128];
    for (int i = 0; i < FILES; i++) {
        snprintf(path, sizeof(path), "/m/d%02d/f%04d", i % DIRS, i);
        cs_file(&cs, path, ids[i], 10);
    }
    /* these fall in the run that also put /m/d01/f2051 and others below /m/d01 */
    cs_file(&cs, "/m/d00/f0000", ids[1], 10); /* the last put of a path wins */
    cs_dir(&cs, "/m/dd", 0700);
    cs_dir(&cs, "/m/dd", 0750);
    cs_file(&cs, "/m/d01", ids[3], 10); /* the 60 files below /m/d01 go */
    cs_dir(&cs, "/m/d01", 0755);
    cs_file(&cs, "/m/d01/again", ids[2], 10);
    struct file_meta link = {
        .path = "/m/link", .kind = FILE_KIND_SYMLINK, .mode = 0777, .target = "d00"};
    assert_int_equal(changeset_put(&cs, &link), 0);
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0);
    check_accounting(f->st, SB1);
    struct sandbox_rec g = get_sb(f->st, SB1);
    int64_t rows = 1 + DIRS + FILES - FILES / DIRS + 3;
    assert_int_equal(g.file_count, rows);
    assert_int_equal(g.size_bytes, (FILES - FILES / DIRS + 1) * 10);
    sandbox_rec_release(&g);
    struct file_meta m;
    assert_int_equal(store_stat(f->st, SB1, "/m/d00/f0000", &m), 0);
    assert_memory_equal(m.content, ids[1], CONTENT_ID_LEN);
    file_meta_release(&m);
    assert_int_equal(store_stat(f->st, SB1, "/m/dd", &m), 0);
    assert_int_equal(m.mode, 0750);
    file_meta_release(&m);
    expect_kind(f->st, SB1, "/m/d01", FILE_KIND_DIR);
    expect_kind(f->st, SB1, "/m/d01/f0001", 0);
    expect_kind(f->st, SB1, "/m/d01/f2051", 0);
    expect_kind(f->st, SB1, "/m/d01/again", FILE_KIND_FILE);
    expect_kind(f->st, SB1, "/m/d02/f2052", FILE_KIND_FILE);
    expect_kind(f->st, SB1, "/m/link", FILE_KIND_SYMLINK);
    struct gc_stats gs;
    assert_int_equal(store_gc(f->st, &gs), 0);
    /* ids[0] and those of the files below /m/d01 but f0001 (whose content f0000 holds) */
    assert_int_equal(gs.contents_deleted, FILES / DIRS);
    assert_int_equal(db_int(f, "SELECT count(*) FROM contents"), FILES - FILES / DIRS);

    /* 18 rows a file, all new: more than the row cache holds */
    changeset_init(&cs, "deep");
    cs.create_parents = true;
    for (int i = 0; i < DEEP; i++) {
        snprintf(path, sizeof(path), "/z/%04d/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/file", i);
        cs_file(&cs, path, NULL, 0);
    }
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0);
    rows += 1 + DEEP * 18;
    g = get_sb(f->st, SB1);
    assert_int_equal(g.file_count, rows);
    sandbox_rec_release(&g);
    check_accounting(f->st, SB1);
    expect_kind(f->st, SB1, "/z/1023/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p", FILE_KIND_DIR);

    /* every file of /m/dNN replaced by new content: the old contents are collected */
    batch_texts(f->st, "next", FILES, ids);
    changeset_init(&cs, "replace");
    for (int i = 0; i < FILES; i++) {
        snprintf(path, sizeof(path), "/m/d%02d/f%04d", i % DIRS, i);
        if (i % DIRS != 1)
            cs_file(&cs, path, ids[i], 10);
    }
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0);
    assert_int_equal(store_gc(f->st, &gs), 0);
    /* the new contents of /m/d01 were never committed: still pinned */
    assert_int_equal(gs.contents_deleted, FILES - FILES / DIRS - 1); /* /m/d01/again's stays */
    assert_int_equal(db_int(f, "SELECT count(*) FROM contents"), FILES + 1);
    check_accounting(f->st, SB1);
    free(ids);
}

static void test_commit_quota(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    struct changeset cs;
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/a", "0123456789"); /* 10 bytes */
    assert_int_equal(commit(f->st, SB1, &cs, -1, 100, NULL), 0);

    char big[200];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/b", "small");
    assert_int_equal(changeset_delete(&cs, "/a"), 0);
    cs_text(f->st, &cs, "/c", big);
    cs.new_cwd = strdup("/elsewhere");
    err_clear();
    assert_int_equal(commit(f->st, SB1, &cs, -1, 100, NULL), -ERR_QUOTA);
    assert_non_null(err_message());
    assert_non_null(strstr(err_message(), "100"));
    /* Nothing changed. */
    struct sandbox_rec g = get_sb(f->st, SB1);
    assert_int_equal(g.version, 1);
    assert_int_equal(g.size_bytes, 10);
    assert_int_equal(g.file_count, 1);
    assert_string_equal(g.cwd, "/home/user");
    sandbox_rec_release(&g);
    expect_kind(f->st, SB1, "/a", FILE_KIND_FILE);
    expect_kind(f->st, SB1, "/b", 0);
    expect_kind(f->st, SB1, "/c", 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM commits"), 1);

    /* Exactly at the quota fits; an over-quota sandbox may still shrink. */
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/b", big + 109); /* 90 bytes */
    assert_int_equal(commit(f->st, SB1, &cs, -1, 100, NULL), 0);
    changeset_init(&cs, "put");
    assert_int_equal(changeset_delete(&cs, "/a"), 0);
    assert_int_equal(commit(f->st, SB1, &cs, -1, 50, NULL), 0);
    g = get_sb(f->st, SB1);
    assert_int_equal(g.size_bytes, 90);
    sandbox_rec_release(&g);
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/e", "e");
    assert_int_equal(commit(f->st, SB1, &cs, -1, 50, NULL), -ERR_QUOTA);
}

/* The commit log read back: every change of versions (since, to] in order; -ERANGE when asked
 * for more than max_changes, or for versions the sandbox has not reached; -ENOENT without the
 * sandbox. */
struct logged_change {
    int64_t version;
    int op;
    char path[32];
};

struct change_log {
    struct logged_change v[16];
    int n;
};

static int change_collect(int64_t version, int op, const char *path, void *ud)
{
    struct change_log *l = ud;
    assert_true(l->n < 16);
    l->v[l->n].version = version;
    l->v[l->n].op = op;
    snprintf(l->v[l->n].path, sizeof(l->v[l->n].path), "%s", path);
    l->n++;
    return 0;
}

static void test_changes_since(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    struct changeset cs;
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/a", "a");
    cs_text(f->st, &cs, "/b", "b");
    assert_int_equal(commit_keeping(f->st, SB1, &cs, 0, 0, NULL, 0), 0); /* version 1 */
    changeset_init(&cs, "put");
    assert_int_equal(changeset_delete(&cs, "/a"), 0);
    cs_text(f->st, &cs, "/c", "c");
    assert_int_equal(commit_keeping(f->st, SB1, &cs, 1, 0, NULL, 0), 0); /* version 2 */
    changeset_init(&cs, "exec");
    assert_int_equal(commit_keeping(f->st, SB1, &cs, 2, 0, NULL, 0), 0); /* version 3: no change */

    struct change_log l = {0};
    assert_int_equal(store_changes_since(f->st, SB1, 0, 3, 100, change_collect, &l), 0);
    assert_int_equal(l.n, 4);
    const struct logged_change want[] = {{1, CHANGE_PUT, "/a"},
                                         {1, CHANGE_PUT, "/b"},
                                         {2, CHANGE_DELETE, "/a"},
                                         {2, CHANGE_PUT, "/c"}};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(l.v[i].version, want[i].version);
        assert_int_equal(l.v[i].op, want[i].op);
        assert_string_equal(l.v[i].path, want[i].path);
    }
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_changes_since(f->st, SB1, 1, 2, 100, change_collect, &l), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.v[1].path, "/c");
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_changes_since(f->st, SB1, 2, 3, 100, change_collect, &l), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(store_changes_since(f->st, SB1, 0, 3, 3, change_collect, &l), -ERANGE);
    assert_int_equal(store_changes_since(f->st, SB1, 0, 4, 100, change_collect, &l), -ERANGE);
    assert_int_equal(store_changes_since(f->st, SB2, 0, 1, 100, change_collect, &l), -ENOENT);
    err_clear();
}

static void test_commit_stale_cwd_log(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    struct changeset cs;
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/f", "f");
    assert_int_equal(commit_keeping(f->st, SB1, &cs, 1, 0, NULL, 0), -ESTALE);
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/f", "f");
    assert_int_equal(commit_keeping(f->st, SB1, &cs, 0, 0, NULL, 0), 0);
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/g", "g");
    assert_int_equal(commit_keeping(f->st, SB1, &cs, 0, 0, NULL, 0), -ESTALE);
    expect_kind(f->st, SB1, "/g", 0);

    /* An empty change set bumps the version, logs and sets cwd. */
    changeset_init(&cs, "exec");
    cs.new_cwd = strdup("/tmp");
    assert_int_equal(changeset_set_info(&cs, "{\"exitCode\":0}"), 0);
    struct commit_result res;
    assert_int_equal(commit_keeping(f->st, SB1, &cs, 1, 0, &res, 0), 0);
    assert_int_equal(res.version, 2);
    struct sandbox_rec g = get_sb(f->st, SB1);
    assert_int_equal(g.version, 2);
    assert_string_equal(g.cwd, "/tmp");
    assert_int_equal(g.last_used_ms, 42000);
    sandbox_rec_release(&g);
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM commits WHERE id = %lld AND version = 2 AND kind = 'exec' "
             "AND info = '{\"exitCode\":0}' AND changes = 0 AND created_ms = 42000",
             (long long)res.commit_id);
    assert_int_equal(db_int(f, sql), 1);

    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/h", "hhh");
    assert_int_equal(changeset_delete(&cs, "/f"), 0);
    assert_int_equal(commit_keeping(f->st, SB1, &cs, -1, 0, &res, 0), 0);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM commits WHERE id = %lld AND changes = 2 AND bytes_delta = 2",
             (long long)res.commit_id);
    assert_int_equal(db_int(f, sql), 1);
    snprintf(sql, sizeof(sql),
             on_pg ? "SELECT (string_agg(op || convert_from(path, 'UTF8'), ',' ORDER BY seq) "
                     "= '1/h,2/f')::int FROM commit_changes WHERE commit_id = %lld"
                   : "SELECT group_concat(op || path, ',') = '1/h,2/f' FROM "
                     "(SELECT op, path FROM commit_changes WHERE commit_id = %lld ORDER BY seq)",
             (long long)res.commit_id);
    assert_int_equal(db_int(f, sql), 1);
    assert_int_equal(db_int(f, "SELECT count(*) FROM commits"), 3);
}

static void test_commit_bad_content(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    uint8_t unknown[CONTENT_ID_LEN];
    memset(unknown, 7, sizeof(unknown));
    struct changeset cs;
    changeset_init(&cs, "put");
    cs_file(&cs, "/x", unknown, 10);
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), -EIO);
    uint8_t id[CONTENT_ID_LEN];
    put_bytes(f->st, "12345", 5, id);
    changeset_init(&cs, "put");
    cs_file(&cs, "/x", id, 6);
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), -EINVAL);
    changeset_init(&cs, "put");
    cs_file(&cs, "/x", id, 5);
    cs_file(&cs, "/empty", NULL, 0);
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0);
    struct file_meta m;
    assert_int_equal(store_stat(f->st, SB1, "/empty", &m), 0);
    assert_false(m.has_content);
    assert_int_equal(m.size, 0);
    file_meta_release(&m);
    check_accounting(f->st, SB1);
}

/* ---- garbage collection ---------------------------------------------------------------- */

static void test_gc_after_delete(void **state)
{
    struct fx *f = *state;
    size_t lx = 2 * MIB, ly = MIB + MIB / 2;
    uint8_t *x = malloc(lx), *y = malloc(ly);
    fill(x, lx, 11);
    fill(y, ly, 12);
    uint8_t idx[CONTENT_ID_LEN], idy[CONTENT_ID_LEN], ids[CONTENT_ID_LEN];
    create_sb(f->st, SB1);
    create_sb(f->st, SB2);
    struct changeset cs;
    changeset_init(&cs, "put");
    put_bytes(f->st, x, lx, idx);
    cs_file(&cs, "/x", idx, (int64_t)lx);
    put_bytes(f->st, y, ly, idy);
    cs_file(&cs, "/y", idy, (int64_t)ly);
    put_bytes(f->st, "small", 5, ids);
    cs_file(&cs, "/s", ids, 5);
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0);
    changeset_init(&cs, "put");
    put_bytes(f->st, x, lx, idx);
    cs_file(&cs, "/shared", idx, (int64_t)lx);
    assert_int_equal(commit(f->st, SB2, &cs, -1, 0, NULL), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM blobs.chunks"), 4);
    assert_int_equal(db_int(f, "SELECT count(*) FROM content_pins"), 0);

    struct gc_stats gs;
    assert_int_equal(store_gc(f->st, &gs), 0);
    assert_int_equal(gs.contents_deleted, 0);
    assert_int_equal(store_sandbox_delete(f->st, SB1, NULL, NULL), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM blobs.chunks"), 2);
    assert_int_equal(db_int(f, "SELECT count(*) FROM contents"), 1);
    assert_int_equal(db_int(f, "SELECT count(*) FROM files"), 1);
    assert_int_equal(db_int(f, "SELECT count(*) FROM commits"), 1);
    struct content_reader *r;
    assert_int_equal(store_content_open(f->st, idy, &r), -ENOENT);
    assert_int_equal(store_content_open(f->st, ids, &r), -ENOENT);
    expect_content(f->st, idx, x, lx);

    /* Overwriting the last reference makes it garbage too. */
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/shared", "replaced");
    assert_int_equal(commit(f->st, SB2, &cs, -1, 0, NULL), 0);
    assert_int_equal(store_gc(f->st, &gs), 0);
    assert_int_equal(gs.contents_deleted, 1);
    assert_int_equal(gs.chunks_deleted, 2);
    assert_int_equal(gs.bytes_freed, (int64_t)lx);
    assert_int_equal(db_int(f, "SELECT count(*) FROM blobs.chunks"), 0);
    assert_int_equal(store_gc(f->st, &gs), 0);
    assert_int_equal(gs.contents_deleted, 0);
    assert_int_equal(store_sandbox_delete(f->st, SB2, NULL, NULL), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM contents"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM gc_candidates"), 0);
    free(x);
    free(y);
}

static void test_gc_keeps_pinned(void **state)
{
    struct fx *f = *state;
    uint8_t *data = malloc(MIB);
    fill(data, MIB, 21);
    uint8_t id[CONTENT_ID_LEN], id2[CONTENT_ID_LEN];

    /* Finished, not committed: pinned. */
    put_bytes(f->st, data, MIB, id);
    struct gc_stats gs;
    assert_int_equal(store_gc(f->st, &gs), 0);
    expect_content(f->st, id, data, MIB);

    /* The same content committed, then unreferenced, while a second writer re-pinned it. */
    create_sb(f->st, SB1);
    create_sb(f->st, SB2);
    struct changeset cs;
    changeset_init(&cs, "put");
    cs_file(&cs, "/f", id, MIB);
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0); /* drops the only pin */
    put_bytes(f->st, data, MIB, id2);                          /* pinned again */
    assert_memory_equal(id, id2, CONTENT_ID_LEN);
    assert_int_equal(store_sandbox_delete(f->st, SB1, NULL, NULL), 0); /* runs GC */
    expect_content(f->st, id, data, MIB);
    changeset_init(&cs, "put");
    cs_file(&cs, "/g", id, MIB);
    assert_int_equal(commit(f->st, SB2, &cs, -1, 0, NULL), 0);

    /* A writer in progress holds a chunk that GC would otherwise collect. */
    struct content_writer *w;
    assert_int_equal(store_content_begin(f->st, &w), 0);
    assert_int_equal(store_content_write(f->st, w, data, MIB), 0); /* chunk stored, pending */
    assert_int_equal(store_sandbox_delete(f->st, SB2, NULL, NULL), 0);
    assert_int_equal(store_gc(f->st, &gs), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM contents"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM blobs.chunks"), 1);
    int64_t size;
    assert_int_equal(store_content_finish(f->st, w, id2, &size), 0);
    assert_memory_equal(id, id2, CONTENT_ID_LEN);
    expect_content(f->st, id, data, MIB);

    /* Pins do not survive a restart: the uncommitted content is collected at open. */
    reopen(f);
    struct content_reader *r;
    assert_int_equal(store_content_open(f->st, id, &r), -ENOENT);
    assert_int_equal(db_int(f, "SELECT count(*) FROM blobs.chunks"), 0);
    free(data);
}

/* A refused change set, discarded: its own contents go at once (chunks included), a content it
 * shares with a committed file stays, and no pin is left behind. */
static void test_discard(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    uint8_t *data = malloc(2 * MIB);
    fill(data, 2 * MIB, 41);
    uint8_t kept[CONTENT_ID_LEN], mine[CONTENT_ID_LEN], small[CONTENT_ID_LEN];
    struct changeset cs;
    changeset_init(&cs, "put");
    put_bytes(f->st, data, MIB, kept);
    cs_file(&cs, "/kept", kept, MIB);
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0);
    int64_t chunks_before = db_int(f, "SELECT count(*) FROM blobs.chunks");

    changeset_init(&cs, "put");
    put_bytes(f->st, data, MIB, kept); /* pinned again by this change set's writer */
    cs_file(&cs, "/again", kept, MIB);
    put_bytes(f->st, data + MIB, MIB, mine);
    cs_file(&cs, "/mine", mine, MIB);
    put_bytes(f->st, "small", 5, small); /* inline */
    cs_file(&cs, "/small", small, 5);
    struct commit_opts o = {.expect_version = -1, .quota_bytes = MIB + 1};
    assert_int_equal(store_commit(f->st, SB1, &cs, &o, NULL), -ERR_QUOTA);
    assert_int_equal(db_int(f, "SELECT count(*) FROM content_pins"), 3);

    assert_int_equal(store_discard(f->st, &cs), 0);
    changeset_release(&cs);
    assert_int_equal(db_int(f, "SELECT count(*) FROM content_pins"), 0);
    struct content_reader *r;
    assert_int_equal(store_content_open(f->st, mine, &r), -ENOENT);
    assert_int_equal(store_content_open(f->st, small, &r), -ENOENT);
    assert_int_equal(db_int(f, "SELECT count(*) FROM blobs.chunks"), chunks_before);
    expect_content(f->st, kept, data, MIB);
    struct gc_stats gs;
    assert_int_equal(store_gc(f->st, &gs), 0);
    expect_content(f->st, kept, data, MIB);
    free(data);
}

/* A commit says whether it left contents for a collection to free: when it deleted or replaced
 * files holding content, directly or below a deleted directory, and only then. */
static void test_commit_unreferenced(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    struct commit_result res;
    struct changeset cs;
    changeset_init(&cs, "put");
    cs.create_parents = true;
    cs_text(f->st, &cs, "/d/a", "alpha");
    cs_file(&cs, "/d/empty", NULL, 0);
    cs_dir(&cs, "/e", 0755);
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, &res), 0);
    assert_false(res.unreferenced);

    /* rows without content go: nothing to collect */
    changeset_init(&cs, "delete");
    assert_int_equal(changeset_delete(&cs, "/d/empty"), 0);
    assert_int_equal(changeset_delete(&cs, "/e"), 0);
    assert_int_equal(changeset_delete(&cs, "/absent"), 0);
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, &res), 0);
    assert_false(res.unreferenced);
    changeset_init(&cs, "empty");
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, &res), 0);
    assert_false(res.unreferenced);

    /* a file replaced */
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/d/a", "beta");
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, &res), 0);
    assert_true(res.unreferenced);
    struct gc_stats gs;
    assert_int_equal(store_gc(f->st, &gs), 0);
    assert_int_equal(gs.contents_deleted, 1);

    /* a directory deleted with the files below it */
    changeset_init(&cs, "delete");
    assert_int_equal(changeset_delete(&cs, "/d"), 0);
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, &res), 0);
    assert_true(res.unreferenced);
    assert_int_equal(store_gc(f->st, &gs), 0);
    assert_int_equal(gs.contents_deleted, 1);
    assert_int_equal(db_int(f, "SELECT count(*) FROM contents"), 0);
}

/* Collecting chunks frees their pages without writing them again: the chunk database's WAL
 * grows by a few pages, not by the bytes collected (whatever the SQLite library's secure_delete
 * default), so that a collection on a nearly full disk does not need as much room as it frees.
 * A reader holding a snapshot keeps the WAL from restarting, so its size shows every write. */
static void test_gc_does_not_rewrite_freed_chunks(void **state)
{
    struct fx *f = *state;
    if (on_pg)
        skip(); /* SQLite's pages */
    size_t len = 8 * MIB;
    uint8_t *data = malloc(len);
    fill(data, len, 51);
    uint8_t id[CONTENT_ID_LEN];
    create_sb(f->st, SB1);
    struct changeset cs;
    changeset_init(&cs, "put");
    put_bytes(f->st, data, len, id);
    cs_file(&cs, "/big", id, (int64_t)len);
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0);
    changeset_init(&cs, "delete");
    assert_int_equal(changeset_delete(&cs, "/big"), 0);
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0);

    sqlite3 *reader;
    assert_int_equal(sqlite3_open_v2(f->db, &reader, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    char sql[256];
    snprintf(sql, sizeof(sql),
             "ATTACH DATABASE '%s.chunks' AS blobs; BEGIN; SELECT count(*) FROM blobs.chunks;",
             f->db);
    assert_int_equal(sqlite3_exec(reader, sql, NULL, NULL, NULL), SQLITE_OK);
    char wal[160];
    snprintf(wal, sizeof(wal), "%s.chunks-wal", f->db);
    struct stat before, after;
    assert_int_equal(stat(wal, &before), 0);
    struct gc_stats gs;
    assert_int_equal(store_gc(f->st, &gs), 0);
    assert_int_equal(gs.chunks_deleted, 8);
    assert_int_equal(stat(wal, &after), 0);
    assert_true(after.st_size - before.st_size < (off_t)MIB);
    assert_int_equal(sqlite3_exec(reader, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(reader);
    assert_int_equal(db_int(f, "SELECT count(*) FROM blobs.chunks"), 0);
    free(data);
}

/* ---- persistence, listing -------------------------------------------------------------- */

static void test_persistence(void **state)
{
    struct fx *f = *state;
    size_t len = MIB + 3;
    uint8_t *data = malloc(len);
    fill(data, len, 31);
    struct sandbox_rec rec = rec_of(SB1, "t", "u", 777);
    rec.name = "persist";
    rec.network = true;
    assert_int_equal(store_sandbox_create(f->st, &rec, NULL, NULL), 0);
    struct changeset cs;
    changeset_init(&cs, "put");
    cs.create_parents = true;
    uint8_t id[CONTENT_ID_LEN];
    put_bytes(f->st, data, len, id);
    cs_file(&cs, "/home/user/big.bin", id, (int64_t)len);
    cs_text(f->st, &cs, "/home/user/small.txt", "small");
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0);
    reopen(f);
    reopen(f);
    struct sandbox_rec g = get_sb(f->st, SB1);
    assert_string_equal(g.name, "persist");
    assert_true(g.network);
    assert_int_equal(g.version, 1);
    assert_int_equal(g.file_count, 4);
    assert_int_equal(g.size_bytes, (int64_t)len + 5);
    sandbox_rec_release(&g);
    struct file_meta m;
    assert_int_equal(store_stat(f->st, SB1, "/home/user/big.bin", &m), 0);
    expect_content(f->st, m.content, data, len);
    file_meta_release(&m);
    assert_int_equal(db_int(f, "SELECT max(version) FROM schema_migrations"),
                     on_pg ? PG_SCHEMA_VERSION : SQLITE_SCHEMA_VERSION);
    free(data);
}

struct walk_log {
    char paths[32][64];
    int n;
    int stop_at;
};

static int log_cb(const struct file_meta *m, void *ud)
{
    struct walk_log *l = ud;
    snprintf(l->paths[l->n++], 64, "%s", m->path);
    return l->stop_at && l->n == l->stop_at ? 5 : 0;
}

static void expect_walk(struct store *st, const char *prefix, int depth, const char *want)
{
    struct walk_log l = {0};
    assert_int_equal(store_list(st, SB1, prefix, depth, log_cb, &l), 0);
    char got[1024] = "";
    for (int i = 0; i < l.n; i++) {
        if (i)
            strcat(got, " ");
        strcat(got, l.paths[i]);
    }
    assert_string_equal(got, want);
}

static void test_list(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    struct changeset cs;
    changeset_init(&cs, "put");
    cs.create_parents = true;
    cs_text(f->st, &cs, "/a/b/c/d.txt", "d");
    cs_text(f->st, &cs, "/a/b!x", "!");
    cs_text(f->st, &cs, "/a/x", "x");
    cs_text(f->st, &cs, "/a.txt", "a");
    cs_dir(&cs, "/b", 0755);
    cs_text(f->st, &cs, "/a/b/e", "e");
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0);

    /* memcmp order: "/a.txt" and "/a/b!x" sort before "/a/b..." ('.', '!' < '/'). */
    expect_walk(f->st, "/", 0, "/a /a.txt /a/b /a/b!x /a/b/c /a/b/c/d.txt /a/b/e /a/x /b");
    expect_walk(f->st, "/", 1, "/a /a.txt /b");
    expect_walk(f->st, "/", 2, "/a /a.txt /a/b /a/b!x /a/x /b");
    expect_walk(f->st, "/a", 1, "/a/b /a/b!x /a/x");
    expect_walk(f->st, "/a", 2, "/a/b /a/b!x /a/b/c /a/b/e /a/x");
    expect_walk(f->st, "/a", -1, "/a/b /a/b!x /a/b/c /a/b/c/d.txt /a/b/e /a/x");
    expect_walk(f->st, "/a/b", 0, "/a/b/c /a/b/c/d.txt /a/b/e");
    expect_walk(f->st, "/a/b/c/d.txt", 0, "");
    expect_walk(f->st, "/b", 0, "");
    expect_walk(f->st, "/zzz", 0, "");

    struct walk_log l = {.stop_at = 2};
    assert_int_equal(store_list(f->st, SB1, "/", 0, log_cb, &l), 5);
    assert_int_equal(l.n, 2);
    l = (struct walk_log){0};
    assert_int_equal(store_list(f->st, SB2, "/", 0, log_cb, &l), -ENOENT);

    assert_int_equal(store_has_children(f->st, SB1, "/"), 1);
    assert_int_equal(store_has_children(f->st, SB1, "/a/b"), 1);
    assert_int_equal(store_has_children(f->st, SB1, "/a/b/c/d.txt"), 0);
    assert_int_equal(store_has_children(f->st, SB1, "/b"), 0);
    assert_int_equal(store_has_children(f->st, SB2, "/"), -ENOENT);
}

/* Callbacks may call the store (export walks the tree and streams each file). */
struct nested {
    struct store *st;
    int files;
    int failures;
};

static int nested_cb(const struct file_meta *m, void *ud)
{
    struct nested *n = ud;
    struct file_meta again;
    if (store_stat(n->st, SB1, m->path, &again) < 0 || again.kind != m->kind) {
        n->failures++;
        return 0;
    }
    file_meta_release(&again);
    if (m->kind == FILE_KIND_FILE) {
        size_t len;
        uint8_t *buf = read_all(n->st, m->content, 1000, &len);
        if ((int64_t)len != m->size || memcmp(buf, m->path, len) != 0)
            n->failures++;
        free(buf);
        n->files++;
    }
    return 0;
}

static void test_nested_calls(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    struct changeset cs;
    changeset_init(&cs, "put");
    cs.create_parents = true;
    char path[64];
    for (int i = 0; i < 40; i++) {
        snprintf(path, sizeof(path), "/d%d/f%d", i % 4, i);
        cs_text(f->st, &cs, path, path); /* each file holds its own path */
    }
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0);
    struct nested n = {.st = f->st};
    assert_int_equal(store_list(f->st, SB1, "/", 0, nested_cb, &n), 0);
    assert_int_equal(n.failures, 0);
    assert_int_equal(n.files, 40);
}

/* ---- concurrency ----------------------------------------------------------------------- */

#define NTHREADS 4
#define ITERS 40

struct worker {
    struct store *st;
    char sb[UUID_STR_LEN];
    int failures;
};

static int count_cb(const struct file_meta *m, void *ud)
{
    (void)m;
    (*(int *)ud)++;
    return 0;
}

static void *writer_main(void *arg)
{
    struct worker *wk = arg;
    uint8_t *data = malloc(MIB + 100);
    for (int i = 0; i < ITERS; i++) {
        size_t len = i % 5 == 0 ? MIB + 100 : (size_t)(10 + i);
        fill(data, len, (uint64_t)i + 1000);
        struct content_writer *w;
        uint8_t id[CONTENT_ID_LEN];
        int64_t size;
        if (store_content_begin(wk->st, &w) < 0 || store_content_write(wk->st, w, data, len) < 0 ||
            store_content_finish(wk->st, w, id, &size) < 0) {
            wk->failures++;
            continue;
        }
        struct changeset cs;
        changeset_init(&cs, "put");
        cs.create_parents = true;
        char path[64];
        snprintf(path, sizeof(path), "/dir%d/file%d", i % 3, i);
        struct file_meta m = {
            .path = path, .kind = FILE_KIND_FILE, .mode = 0644, .size = size, .has_content = true};
        memcpy(m.content, id, CONTENT_ID_LEN);
        struct commit_opts o = {.expect_version = i, .now_ms = 1};
        struct commit_result res;
        if (changeset_put(&cs, &m) < 0 || store_commit(wk->st, wk->sb, &cs, &o, &res) < 0)
            wk->failures++;
        changeset_release(&cs);
        /* Read back what was committed. */
        struct content_reader *r;
        uint8_t *buf = malloc(len);
        size_t got = 0, total = 0;
        if (store_content_open(wk->st, id, &r) < 0) {
            wk->failures++;
        } else {
            while (store_content_read(wk->st, r, buf + total, len - total + 1, &got) == 0 &&
                   got > 0)
                total += got;
            store_content_close(wk->st, r);
            if (total != len || memcmp(buf, data, len) != 0)
                wk->failures++;
        }
        free(buf);
    }
    free(data);
    return NULL;
}

static void *reader_main(void *arg)
{
    struct worker *wk = arg;
    for (int i = 0; i < ITERS * 4; i++) {
        int n = 0;
        if (store_list(wk->st, wk->sb, "/", 0, count_cb, &n) < 0)
            wk->failures++;
        struct sandbox_rec g;
        if (store_sandbox_get(wk->st, wk->sb, NULL, NULL, &g) < 0)
            wk->failures++;
        else
            sandbox_rec_release(&g);
        struct gc_stats gs;
        if (i % 16 == 0 && store_gc(wk->st, &gs) < 0)
            wk->failures++;
    }
    return NULL;
}

static off_t wal_size(const struct fx *f)
{
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", f->db);
    struct stat st;
    return stat(wal, &st) == 0 ? st.st_size : -1;
}

/* Waits up to ms for the main WAL to be truncated to nothing; returns its last size. */
static off_t wal_wait_empty(const struct fx *f, int ms)
{
    off_t sz = wal_size(f);
    for (int waited = 0; sz != 0 && waited < ms; waited += 50) {
        usleep(50 * 1000);
        sz = wal_size(f);
    }
    return sz;
}

/* Creates n sandboxes numbered from first (a burst of commits). */
static void create_many(struct fx *f, int first, int n)
{
    for (int i = first; i < first + n; i++) {
        char id[37];
        snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012d", i % 1000000);
        struct sandbox_rec r = rec_of(id, "t1", "u1", 1000 + i);
        assert_int_equal(store_sandbox_create(f->st, &r, NULL, NULL), 0);
    }
}

/* A burst of commits grows the WAL past 4 MiB; once the store has been idle for a while it is
 * checkpointed in full and truncated, but never while a reader still needs the database as it
 * was (and that reader blocks no writer). A small WAL is left as it is. */
static void test_idle_wal_truncated(void **state)
{
    struct fx *f = *state;
    if (on_pg)
        skip(); /* SQLite's WAL */
    create_many(f, 0, 800);
    assert_true(wal_size(f) > 4 << 20);
    assert_int_equal(wal_wait_empty(f, 6000), 0);
    /* a read transaction opened before the next burst: its snapshot is the database file as it
     * is now, so no frame may be copied into it and the WAL must stay */
    sqlite3 *reader;
    assert_int_equal(sqlite3_open_v2(f->db, &reader, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM sandboxes;", NULL, NULL, NULL),
        SQLITE_OK);
    create_many(f, 800, 800);
    usleep(2600 * 1000);
    /* a writer is not held up by the checkpointer's attempts */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    create_sb(f->st, SB1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 < 1000);
    usleep(2600 * 1000);
    assert_true(wal_size(f) > 4 << 20);
    assert_int_equal(sqlite3_exec(reader, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(reader);
    assert_int_equal(wal_wait_empty(f, 6000), 0);
    /* everything is in the database file */
    assert_int_equal(db_int(f, "SELECT count(*) FROM sandboxes"), 1601);
    /* a few commits after that: a WAL this small stays */
    create_sb(f->st, SB2);
    off_t small = wal_size(f);
    assert_true(small > 0 && small < 4 << 20);
    usleep(3000 * 1000);
    assert_int_equal(wal_size(f), small);
}

/* Once the store has been idle for a while its connections give their page caches back:
 * SQLite's memory falls well below what a burst of commits and reads left, and the data reads
 * as before afterwards. */
static void test_idle_releases_cache_memory(void **state)
{
    struct fx *f = *state;
    if (on_pg)
        skip(); /* SQLite's page caches */
    create_many(f, 0, 400);
    create_sb(f->st, SB1);
    /* a few reads through the pooled readers fill their caches too */
    for (int i = 0; i < 20; i++) {
        struct sandbox_rec g = get_sb(f->st, SB1);
        sandbox_rec_release(&g);
    }
    int64_t busy = store_memory_bytes(f->st);
    assert_true(busy > 1 << 20);
    int64_t now = busy;
    for (int waited = 0; now > busy / 4 && waited < 8000; waited += 100) {
        usleep(100 * 1000);
        now = store_memory_bytes(f->st);
    }
    assert_true(now <= busy / 4);
    struct sandbox_rec g = get_sb(f->st, SB1);
    assert_string_equal(g.id, SB1);
    sandbox_rec_release(&g);
    assert_int_equal(db_int(f, "SELECT count(*) FROM sandboxes"), 401);
}

static void test_concurrency(void **state)
{
    struct fx *f = *state;
    struct worker wk[NTHREADS * 2];
    pthread_t th[NTHREADS * 2];
    for (int i = 0; i < NTHREADS; i++) {
        memset(&wk[i], 0, sizeof(wk[i]));
        wk[i].st = f->st;
        snprintf(wk[i].sb, UUID_STR_LEN, "%08x-0000-4000-8000-000000000000", (unsigned)i);
        create_sb(f->st, wk[i].sb);
        wk[NTHREADS + i] = wk[i];
    }
    for (int i = 0; i < NTHREADS; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, writer_main, &wk[i]), 0);
        assert_int_equal(pthread_create(&th[NTHREADS + i], NULL, reader_main, &wk[NTHREADS + i]),
                         0);
    }
    for (int i = 0; i < NTHREADS * 2; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(wk[i].failures, 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        struct sandbox_rec g = get_sb(f->st, wk[i].sb);
        assert_int_equal(g.version, ITERS);
        assert_int_equal(g.file_count, ITERS + 3);
        sandbox_rec_release(&g);
        check_accounting(f->st, wk[i].sb);
    }
}

/* ---- PostgreSQL only: several stores on one database (replicas), lost connections, the pool */

static int64_t ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/* A second store on the test's database: another replica. */
static struct store *replica(struct fx *f, const struct store_pg_opts *opts)
{
    struct store *st = NULL;
    assert_int_equal(store_open_pg(f->url, opts ? opts : &pg_opts, &st), 0);
    return st;
}

/* Runs SQL as the superuser on the test's database. */
static void admin_sql(struct fx *f, const char *sql)
{
    PGconn *c = pg_admin(f->url);
    pg_run(c, sql);
    PQfinish(c);
}

struct racer {
    struct store *st;
    pthread_barrier_t *start;
    struct changeset cs;
    int64_t expect;
    int result;
};

static void *race_commit(void *arg)
{
    struct racer *x = arg;
    struct commit_opts o = {.expect_version = x->expect, .now_ms = 1};
    struct commit_result res;
    pthread_barrier_wait(x->start);
    x->result = store_commit(x->st, SB1, &x->cs, &o, &res);
    return NULL;
}

/* The version fence across replicas: two stores commit to one sandbox at the same moment, both
 * based on the same version. Exactly one commit applies; the other gets -ESTALE and changes
 * nothing, round after round (no in-process lock is involved: the stores are separate). */
static void test_pg_fence_two_replicas(void **state)
{
    struct fx *f = *state;
    struct store *b = replica(f, NULL);
    create_sb(f->st, SB1);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    enum { ROUNDS = 25 };
    for (int64_t v = 0; v < ROUNDS; v++) {
        struct racer x[2] = {{.st = f->st, .start = &start, .expect = v},
                             {.st = b, .start = &start, .expect = v}};
        char path[2][48];
        for (int i = 0; i < 2; i++) {
            changeset_init(&x[i].cs, "put");
            snprintf(path[i], sizeof(path[i]), "/r%d_%d", (int)v, i);
            cs_text(x[i].st, &x[i].cs, path[i], path[i]);
        }
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
            assert_int_equal(pthread_create(&th[i], NULL, race_commit, &x[i]), 0);
        for (int i = 0; i < 2; i++)
            assert_int_equal(pthread_join(th[i], NULL), 0);
        int winner = x[0].result == 0 ? 0 : 1;
        assert_int_equal(x[winner].result, 0);
        assert_int_equal(x[1 - winner].result, -ESTALE);
        expect_kind(f->st, SB1, path[winner], FILE_KIND_FILE);
        expect_kind(f->st, SB1, path[1 - winner], 0);
        assert_int_equal(store_discard(x[1 - winner].st, &x[1 - winner].cs), 0);
        for (int i = 0; i < 2; i++)
            changeset_release(&x[i].cs);
    }
    pthread_barrier_destroy(&start);
    struct sandbox_rec g = get_sb(f->st, SB1);
    assert_int_equal(g.version, ROUNDS);
    assert_int_equal(g.file_count, ROUNDS);
    sandbox_rec_release(&g);
    assert_int_equal(db_int(f, "SELECT count(*) FROM commits"), ROUNDS);
    store_close(b);
}

struct lock_taker {
    struct store *st;
    bool exclusive;
    int64_t timeout_ms;
    int rc;
    int64_t waited_ms;
    struct store_lock *l;
};

static void *lock_take(void *arg)
{
    struct lock_taker *t = arg;
    int64_t t0 = time_mono_ms();
    t->rc = store_lock_acquire(t->st, SB1, t->exclusive, t->timeout_ms, &t->l);
    t->waited_ms = time_mono_ms() - t0;
    return NULL;
}

/* Sandbox locks across two stores on one database: a writer excludes writers and readers of
 * the other, readers share, a wait is bounded by its timeout, and a lock whose session dies
 * (its server killed) is released at once. */
static void test_pg_locks_two_replicas(void **state)
{
    struct fx *f = *state;
    struct store *b = replica(f, NULL);
    struct store_lock *la = NULL, *lb = NULL;
    assert_true(store_has_locks(f->st));
    assert_int_equal(store_lock_acquire(f->st, SB1, true, 1000, &la), 0);
    int64_t t0 = time_mono_ms();
    assert_int_equal(store_lock_acquire(b, SB1, true, 300, &lb), -ERR_LOCK_TIMEOUT);
    assert_true(time_mono_ms() - t0 >= 250);
    assert_int_equal(store_lock_acquire(b, SB1, false, 100, &lb), -ERR_LOCK_TIMEOUT);
    /* another sandbox is not held back */
    assert_int_equal(store_lock_acquire(b, SB2, true, 1000, &lb), 0);
    store_lock_release(b, lb);
    /* a waiter gets the lock as soon as the holder lets go */
    struct lock_taker w = {.st = b, .exclusive = true, .timeout_ms = 10000};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, lock_take, &w), 0);
    usleep(200 * 1000);
    store_lock_release(f->st, la);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(w.rc, 0);
    store_lock_release(b, w.l);
    /* readers share */
    assert_int_equal(store_lock_acquire(f->st, SB1, false, 1000, &la), 0);
    assert_int_equal(store_lock_acquire(b, SB1, false, 1000, &lb), 0);
    store_lock_release(b, lb);
    store_lock_release(f->st, la);
    /* the holder's session dies: its lock goes with it */
    assert_int_equal(store_lock_acquire(f->st, SB1, true, 1000, &la), 0);
    admin_sql(f, "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                 "AND classid = 1397836883 AND granted AND pid <> pg_backend_pid()");
    t0 = time_mono_ms();
    assert_int_equal(store_lock_acquire(b, SB1, true, 5000, &lb), 0);
    assert_true(time_mono_ms() - t0 < 2000);
    store_lock_release(b, lb);
    store_lock_release(f->st, la); /* its session is gone: released by closing it */
    err_clear();
    store_close(b);
}

struct create_racer {
    struct store *st;
    pthread_barrier_t *start;
    const char *id;
    int result;
};

static void *race_create(void *arg)
{
    struct create_racer *x = arg;
    struct sandbox_rec r = rec_of(x->id, "t", "same-owner", 1000);
    struct commit_opts o = {.max_owner_sandboxes = 1};
    pthread_barrier_wait(x->start);
    x->result = store_sandbox_create(x->st, &r, NULL, &o);
    return NULL;
}

/* The owner limit across replicas: two creates of one owner at its last free place, from two
 * stores at once: one succeeds, the other gets -ERR_SANDBOX_LIMIT. */
static void test_pg_owner_limit_two_replicas(void **state)
{
    struct fx *f = *state;
    struct store *b = replica(f, NULL);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    static const char *const ids[][2] = {{SB1, SB2}, {SB3, "44444444-4444-4444-8444-444444444444"}};
    for (int round = 0; round < 2; round++) {
        struct create_racer x[2] = {{.st = f->st, .start = &start, .id = ids[round][0]},
                                    {.st = b, .start = &start, .id = ids[round][1]}};
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
            assert_int_equal(pthread_create(&th[i], NULL, race_create, &x[i]), 0);
        for (int i = 0; i < 2; i++)
            assert_int_equal(pthread_join(th[i], NULL), 0);
        if (round == 0) {
            assert_true((x[0].result == 0) != (x[1].result == 0));
            assert_int_equal(x[0].result + x[1].result, -ERR_SANDBOX_LIMIT);
        } else {
            assert_int_equal(x[0].result, -ERR_SANDBOX_LIMIT);
            assert_int_equal(x[1].result, -ERR_SANDBOX_LIMIT);
        }
    }
    pthread_barrier_destroy(&start);
    assert_int_equal(db_int(f, "SELECT count(*) FROM sandboxes"), 1);
    store_close(b);
}

struct killer_commit {
    struct store *st;
    struct changeset *cs;
    int64_t expect;
    int result;
    struct commit_result res;
    int done; /* set (atomically) once store_commit returned */
};

static void *run_commit(void *arg)
{
    struct killer_commit *k = arg;
    struct commit_opts o = {.expect_version = k->expect, .now_ms = 1};
    k->result = store_commit(k->st, SB1, k->cs, &o, &k->res);
    __atomic_store_n(&k->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/*
 * A commit is atomic across connection loss: its session is terminated (pg_terminate_backend
 * from another connection, as a server restart or a cut network does) at varying moments while
 * a commit of many files runs. Whatever the moment, either the whole commit is there (and was
 * reported so, or reported as in doubt) or none of it (reported as -ERR_STORE_UNAVAILABLE, or in
 * doubt); the store works again at once on fresh connections.
 */
/* A change set of `files` files sharing content id, in a directory tree of its own (tag). */
static void many_files(struct changeset *cs, const uint8_t id[CONTENT_ID_LEN], int tag, int files)
{
    changeset_init(cs, "put");
    cs->create_parents = true;
    for (int i = 0; i < files; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/a%d/d%d/f%d", tag, i % 10, i);
        cs_file(cs, path, id, 10);
    }
}

static void test_pg_connection_loss_mid_commit(void **state)
{
    struct fx *f = *state;
    enum { FILES = 1000, ATTEMPTS_MAX = 40 };
    create_sb(f->st, SB1);
    uint8_t id[CONTENT_ID_LEN];
    put_bytes(f->st, "same bytes", 10, id);
    /* how long such a commit takes here, uncut */
    struct changeset cs;
    many_files(&cs, id, 0, FILES);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(commit(f->st, SB1, &cs, 0, 0, NULL), 0);
    int64_t span_ms = ms_since(&t0);
    int lost = 0, applied = 0, attempt = 1;
    /* the cut moves later after a cut commit or one it came before, earlier after one it came
     * after: a loaded machine's commits take longer than the first, an idle one's less */
    int64_t delay_us = span_ms * 500;
    /* connected once: a new connection takes longer than a commit of an idle machine */
    PGconn *killer = pg_admin(f->url);
    for (; attempt <= ATTEMPTS_MAX && (lost < 3 || applied < 3); attempt++) {
        struct sandbox_rec before = get_sb(f->st, SB1);
        put_bytes(f->st, "same bytes", 10, id); /* pinned for this change set */
        many_files(&cs, id, attempt, FILES);
        struct killer_commit k = {.st = f->st, .cs = &cs, .expect = before.version};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, run_commit, &k), 0);
        usleep((useconds_t)delay_us);
        pg_run(killer, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND application_name = 'sqlfs' "
                       "AND state <> 'idle'");
        bool finished_before = __atomic_load_n(&k.done, __ATOMIC_ACQUIRE);
        assert_int_equal(pthread_join(th, NULL), 0);
        struct sandbox_rec after = get_sb(f->st, SB1);
        bool all = after.version == before.version + 1 &&
                   after.file_count == before.file_count + FILES + 10 + 1;
        bool none = after.version == before.version && after.file_count == before.file_count;
        if (k.result == 0)
            assert_true(all);
        else if (k.result == -ERR_STORE_UNAVAILABLE)
            assert_true(none);
        else
            assert_true(k.result == -ERR_COMMIT_IN_DOUBT && (all || none)); /* said so */
        lost += k.result != 0;
        applied += all;
        /* a whole commit was either over before the cut (cut sooner) or not begun yet (later) */
        delay_us = all && finished_before ? delay_us / 2 : delay_us * 3 / 2 + 1000;
        if (!all)
            assert_int_equal(store_discard(f->st, &cs), 0);
        changeset_release(&cs);
        sandbox_rec_release(&before);
        sandbox_rec_release(&after);
        check_accounting(f->st, SB1);
    }
    PQfinish(killer);
    print_message("commit of %d files: %lld ms; %d of %d cut, %d applied\n", FILES,
                  (long long)span_ms, lost, attempt - 1, applied);
    /* the moments spread over the commit: some were cut, some finished */
    assert_true(lost > 0);
    assert_true(applied > 0);
}

struct churn {
    struct store *st;
    const uint8_t *data;
    size_t len;
    int rounds;
    int failures;
    volatile int done;
};

/* Creates a sandbox, writes the shared bytes into it, reads them back, deletes it: over and
 * over, so the same content and chunks keep becoming garbage and being written again. */
static void *churn_main(void *arg)
{
    struct churn *c = arg;
    for (int i = 0; i < c->rounds; i++) {
        char sb[UUID_STR_LEN];
        snprintf(sb, sizeof(sb), "5555%04u-0000-4000-8000-000000000000", (unsigned)i % 10000u);
        struct sandbox_rec r = rec_of(sb, "t", "u", 1000);
        struct content_writer *w;
        uint8_t id[CONTENT_ID_LEN];
        int64_t size;
        struct changeset cs;
        changeset_init(&cs, "put");
        struct file_meta m = {.path = "/f",
                              .kind = FILE_KIND_FILE,
                              .mode = 0644,
                              .size = (int64_t)c->len,
                              .has_content = true};
        int bad = store_sandbox_create(c->st, &r, NULL, NULL) < 0 ||
                  store_content_begin(c->st, &w) < 0 ||
                  store_content_write(c->st, w, c->data, c->len) < 0 ||
                  store_content_finish(c->st, w, id, &size) < 0;
        memcpy(m.content, id, CONTENT_ID_LEN);
        bad = bad || changeset_put(&cs, &m) < 0 || store_commit(c->st, sb, &cs, NULL, NULL) < 0;
        changeset_release(&cs);
        if (!bad) {
            struct content_reader *rd;
            uint8_t *buf = malloc(c->len);
            size_t got = 0, total = 0;
            bad = !buf || store_content_open(c->st, id, &rd) < 0;
            while (!bad && store_content_read(c->st, rd, buf + total, c->len - total, &got) == 0 &&
                   got > 0)
                total += got;
            if (!bad) {
                store_content_close(c->st, rd);
                bad = total != c->len || memcmp(buf, c->data, c->len) != 0;
            }
            free(buf);
        }
        bad = store_sandbox_delete(c->st, sb, NULL, NULL) < 0 || bad;
        c->failures += bad;
    }
    c->done = 1;
    return NULL;
}

/*
 * GC on one replica never takes what a writer on another replica is writing or has just
 * finished: a writer's chunks (pending under its lease) survive the deletion of the only
 * content that used them, and its content is whole when finished; a writer whose lease ran out
 * has its chunks collected and then fails to finish (-EIO) instead of recording a content with
 * missing chunks. Then a churn of writes, commits and deletes on one replica against GC looping
 * on another: every content reads back whole.
 */
static void test_pg_gc_with_writer_on_other_replica(void **state)
{
    struct fx *f = *state;
    struct store *b = replica(f, NULL);
    size_t len = 2 * MIB;
    uint8_t *data = malloc(len);
    fill(data, len, 61);
    create_sb(f->st, SB1);
    create_sb(f->st, SB2);
    struct changeset cs;
    changeset_init(&cs, "put");
    uint8_t id[CONTENT_ID_LEN], id2[CONTENT_ID_LEN];
    put_bytes(f->st, data, len, id);
    cs_file(&cs, "/x", id, (int64_t)len);
    assert_int_equal(commit(f->st, SB1, &cs, -1, 0, NULL), 0);

    struct content_writer *w;
    assert_int_equal(store_content_begin(b, &w), 0);
    assert_int_equal(store_content_write(b, w, data, len), 0); /* both chunks exist: pending */
    assert_int_equal(store_sandbox_delete(f->st, SB1, NULL, NULL), 0); /* GC on this replica */
    struct gc_stats gs;
    assert_int_equal(store_gc(f->st, &gs), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM contents"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM chunks"), 2);
    int64_t size;
    assert_int_equal(store_content_finish(b, w, id2, &size), 0);
    assert_memory_equal(id, id2, CONTENT_ID_LEN);
    assert_int_equal(store_gc(f->st, &gs), 0); /* pinned by b */
    expect_content(f->st, id, data, len);
    changeset_init(&cs, "put");
    cs_file(&cs, "/y", id, (int64_t)len);
    assert_int_equal(commit(b, SB2, &cs, -1, 0, NULL), 0);
    expect_content(f->st, id, data, len);

    /* a writer whose lease ran out (its replica stalled, or died) */
    fill(data, len, 62);
    assert_int_equal(store_content_begin(b, &w), 0);
    assert_int_equal(store_content_write(b, w, data, MIB), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM chunks"), 3);
    admin_sql(f, "UPDATE writers SET lease_ms = 0");
    assert_int_equal(store_gc(f->st, &gs), 0);
    assert_int_equal(gs.chunks_deleted, 1);
    assert_int_equal(store_content_write(b, w, data + MIB, 100), 0);
    assert_int_equal(store_content_finish(b, w, id2, &size), -EIO);
    assert_int_equal(db_int(f, "SELECT count(*) FROM contents"), 1);
    assert_int_equal(db_int(f, "SELECT count(*) FROM chunks"), 2);

    /* churn on b against GC looping on this replica */
    fill(data, len, 63);
    struct churn c = {.st = b, .data = data, .len = MIB + MIB / 2, .rounds = 30};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, churn_main, &c), 0);
    int collections = 0;
    while (!c.done) {
        assert_int_equal(store_gc(f->st, &gs), 0);
        collections++;
    }
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(c.failures, 0);
    assert_true(collections > 1);
    store_close(b);
    assert_int_equal(store_gc(f->st, &gs), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM contents"), 1); /* /y */
    assert_int_equal(db_int(f, "SELECT count(*) FROM pending_chunks"), 0);
    free(data);
}

struct blocked {
    struct store *st;
    int result;
};

static void *blocked_commit(void *arg)
{
    struct blocked *x = arg;
    x->result = store_commit(x->st, SB1, NULL, NULL, NULL);
    return NULL;
}

/* A call that finds every pooled connection in use waits DATABASE_POOL_WAIT_MS, then fails
 * with the retryable -ERR_BUSY; it never hangs, and the pool serves again once a connection is
 * given back. */
static void test_pg_pool_exhausted(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    create_sb(f->st, SB2);
    struct store_pg_opts one = {.pool_size = 1, .pool_wait_ms = 300};
    struct store *p = replica(f, &one);
    /* the commit takes p's only connection and waits for the sandbox row another session
     * holds */
    PGconn *holder = pg_admin(f->url);
    pg_run(holder, "BEGIN");
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT 1 FROM sandboxes WHERE id = '%s' FOR UPDATE", SB1);
    pg_run(holder, sql);
    struct blocked x = {.st = p};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, blocked_commit, &x), 0);
    usleep(200 * 1000);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct sandbox_rec g;
    err_clear();
    assert_int_equal(store_sandbox_get(p, SB2, NULL, NULL, &g), -ERR_BUSY);
    int64_t waited = ms_since(&t0);
    assert_true(waited >= 250 && waited < 3000);
    assert_non_null(strstr(err_message(), "DATABASE_POOL_SIZE"));
    pg_run(holder, "ROLLBACK");
    PQfinish(holder);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(x.result, 0);
    g = get_sb(p, SB2);
    sandbox_rec_release(&g);
    store_close(p);
}

/* The database out of reach: opening fails -ERR_STORE_UNAVAILABLE with libpq's reason and
 * without the password; connections the server dropped while idle (a restart) are replaced
 * on the next call, which succeeds. */
static void test_pg_unavailable(void **state)
{
    struct fx *f = *state;
    struct store *st = NULL;
    err_clear();
    assert_int_equal(
        store_open_pg("postgresql://u:hunter2@/x?host=/nonexistent-sqlfs", &pg_opts, &st),
        -ERR_STORE_UNAVAILABLE);
    assert_null(st);
    assert_non_null(strstr(err_message(), "cannot connect to the database"));
    assert_null(strstr(err_message(), "hunter2"));
    assert_int_equal(store_open_pg("mysql://x", &pg_opts, &st), -EINVAL);

    create_sb(f->st, SB1);
    struct sandbox_rec g = get_sb(f->st, SB1); /* a connection now idle in the pool */
    sandbox_rec_release(&g);
    admin_sql(f, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE datname = current_database() AND application_name = 'sqlfs'");
    usleep(100 * 1000);
    g = get_sb(f->st, SB1);
    sandbox_rec_release(&g);
    struct changeset cs;
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/after", "restart");
    assert_int_equal(commit(f->st, SB1, &cs, 0, 0, NULL), 0);
    assert_int_equal(store_check(f->st), 0);
}

struct opener {
    const char *url;
    pthread_barrier_t *start;
    int result;
    struct store *st;
};

static void *open_main(void *arg)
{
    struct opener *o = arg;
    pthread_barrier_wait(o->start);
    o->result = store_open_pg(o->url, &pg_opts, &o->st);
    return NULL;
}

/* Servers starting together on a new database: one migrates, the others wait for it and find
 * the schema current. */
static void test_pg_migrate_together(void **state)
{
    (void)state;
    char name[64];
    char *url = pg_new_db(name, sizeof(name));
    enum { N = 3 };
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N);
    struct opener o[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        o[i] = (struct opener){.url = url, .start = &start};
        assert_int_equal(pthread_create(&th[i], NULL, open_main, &o[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(o[i].result, 0);
        store_close(o[i].st);
    }
    pthread_barrier_destroy(&start);
    assert_int_equal(store_migrate_pg(url), 0);
    struct fx tmp = {.url = url};
    assert_int_equal(db_int(&tmp, "SELECT count(*) FROM schema_migrations"), PG_SCHEMA_VERSION);
    free(url);
    pg_drop_db(name);
}

/* ---- the exec journal ---- */

static struct exec_rec exec_of(const char *id, int64_t started, const char *out)
{
    return (struct exec_rec){.exec_id = (char *)id,
                             .kind = "sync",
                             .script = "echo hi",
                             .started_ms = started,
                             .duration_ms = 7,
                             .exit_code = 3,
                             .timed_out = true,
                             .version = 2,
                             .stdout_bytes = 100,
                             .stderr_bytes = 0,
                             .stdout_data = (char *)out,
                             .stdout_len = out ? strlen(out) : 0,
                             .stdout_truncated = true};
}

struct ids {
    char got[16][40];
    int n;
};

static int collect_id(const struct exec_rec *e, void *ud)
{
    struct ids *ids = ud;
    assert_null(e->stdout_data);
    snprintf(ids->got[ids->n++], sizeof(ids->got[0]), "%s", e->exec_id);
    return 0;
}

static void test_exec_journal(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    create_sb(f->st, SB2);
    struct journal_opts o = {.max_records = 3, .now_ms = 10000};
    char id[16];
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "x%d", i);
        struct exec_rec e = exec_of(id, 9000 + i, i == 4 ? "out\xff" : NULL);
        assert_int_equal(store_exec_add(f->st, SB1, &e, &o), 0);
    }
    struct exec_rec dup = exec_of("x4", 9999, NULL);
    assert_int_equal(store_exec_add(f->st, SB1, &dup, &o), -EEXIST);
    assert_int_equal(store_exec_add(f->st, SB2, &dup, &o), 0); /* ids are per sandbox */
    assert_int_equal(store_exec_add(f->st, SB3, &dup, &o), -ENOENT);
    /* newest first, three kept */
    struct ids ids = {0};
    assert_int_equal(store_exec_list(f->st, SB1, NULL, 10, collect_id, &ids), 0);
    assert_int_equal(ids.n, 3);
    assert_string_equal(ids.got[0], "x4");
    assert_string_equal(ids.got[2], "x2");
    ids.n = 0;
    assert_int_equal(store_exec_list(f->st, SB1, "x4", 1, collect_id, &ids), 0);
    assert_int_equal(ids.n, 1);
    assert_string_equal(ids.got[0], "x3");
    assert_int_equal(store_exec_list(f->st, SB1, "x0", 1, collect_id, &ids), -ERR_EXEC_NOT_FOUND);
    assert_int_equal(store_exec_list(f->st, SB3, NULL, 1, collect_id, &ids), -ENOENT);
    /* one record whole */
    struct exec_rec e;
    assert_int_equal(store_exec_get(f->st, SB1, "x4", &e), 0);
    assert_string_equal(e.kind, "sync");
    assert_string_equal(e.script, "echo hi");
    assert_int_equal(e.started_ms, 9004);
    assert_int_equal(e.duration_ms, 7);
    assert_int_equal(e.exit_code, 3);
    assert_true(e.timed_out);
    assert_int_equal(e.version, 2);
    assert_int_equal(e.stdout_bytes, 100);
    assert_int_equal(e.stdout_len, 4);
    assert_memory_equal(e.stdout_data, "out\xff", 4);
    assert_true(e.stdout_truncated);
    assert_null(e.stderr_data);
    assert_int_equal(e.stderr_len, 0);
    assert_false(e.stderr_truncated);
    exec_rec_release(&e);
    assert_int_equal(store_exec_get(f->st, SB1, "x0", &e), -ERR_EXEC_NOT_FOUND);
    /* by age: records started before now - max_age go when one is added */
    struct journal_opts aged = {.max_age_ms = 500, .now_ms = 9503};
    struct exec_rec late = exec_of("late", 9503, NULL);
    assert_int_equal(store_exec_add(f->st, SB1, &late, &aged), 0);
    ids.n = 0;
    assert_int_equal(store_exec_list(f->st, SB1, NULL, 10, collect_id, &ids), 0);
    assert_int_equal(ids.n, 3); /* x3 (9003) and x4 (9004) are within 500 ms, x2 is not */
    assert_string_equal(ids.got[0], "late");
    assert_string_equal(ids.got[2], "x3");
    /* deleted with the sandbox */
    assert_int_equal(store_sandbox_delete(f->st, SB1, NULL, NULL), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM execs"), 1);
}

/* ---- network egress ---- */

#define POLICY "{\"allow\":[\"pypi.org\",\"*.github.com\"],\"deny\":[\"10.0.0.0/8\"]}"

/* A sandbox's policy by sandbox_get: its network flag into *ret_network, its policy (malloc'd,
 * NULL when none) returned. */
static char *policy_of(struct store *st, const char *id, bool *ret_network)
{
    struct sandbox_rec g;
    assert_int_equal(store_sandbox_get(st, id, NULL, NULL, &g), 0);
    char *policy = g.network_policy ? strdup(g.network_policy) : NULL;
    *ret_network = g.network;
    sandbox_rec_release(&g);
    return policy;
}

/* What sandbox_list gives for SB1 and SB2. */
struct policies {
    char *of[2];
    bool network[2];
};

static int collect_policy(const struct sandbox_rec *rec, void *ud)
{
    struct policies *l = ud;
    int i = strcmp(rec->id, SB1) == 0 ? 0 : strcmp(rec->id, SB2) == 0 ? 1 : -1;
    assert_true(i >= 0);
    l->of[i] = rec->network_policy ? strdup(rec->network_policy) : NULL;
    l->network[i] = rec->network;
    return 0;
}

/* The policy is stored by create and fork, read by get and list, and set with the network
 * flag by set_network alone: no version, no commit, no lastUsedAt; the owner is checked. */
static void test_network_policy(void **state)
{
    struct fx *f = *state;
    struct sandbox_rec r1 = rec_of(SB1, "t", "u", 1000);
    r1.network = true;
    r1.network_policy = POLICY;
    struct sandbox_rec r2 = rec_of(SB2, "t", "u", 2000);
    r2.network = true;
    assert_int_equal(store_sandbox_create(f->st, &r1, NULL, NULL), 0);
    assert_int_equal(store_sandbox_create(f->st, &r2, NULL, NULL), 0);
    bool net = false;
    char *p = policy_of(f->st, SB1, &net);
    assert_string_equal(p, POLICY);
    assert_true(net);
    free(p);
    p = policy_of(f->st, SB2, &net);
    assert_null(p);
    assert_true(net);
    struct policies l = {0};
    assert_int_equal(store_sandbox_list(f->st, "t", "u", collect_policy, &l), 0);
    assert_string_equal(l.of[0], POLICY);
    assert_null(l.of[1]);
    free(l.of[0]);

    /* set_network: both columns; the version, the commit log and lastUsedAt stay */
    assert_int_equal(store_commit(f->st, SB1, NULL, NULL, NULL), 0);
    assert_int_equal(store_sandbox_touch(f->st, SB1, 4242), 0);
    int64_t commits = db_int(f, "SELECT count(*) FROM commits");
    assert_int_equal(store_sandbox_set_network(f->st, SB1, "t", "u", false, NULL), 0);
    struct sandbox_rec g;
    assert_int_equal(store_sandbox_get(f->st, SB1, NULL, NULL, &g), 0);
    assert_false(g.network);
    assert_null(g.network_policy);
    assert_int_equal(g.version, 1);
    assert_int_equal(g.last_used_ms, 4242);
    sandbox_rec_release(&g);
    assert_int_equal(db_int(f, "SELECT count(*) FROM commits"), commits);
    assert_int_equal(store_sandbox_set_network(f->st, SB2, NULL, NULL, true, "{\"allow\":[]}"), 0);
    p = policy_of(f->st, SB2, &net);
    assert_string_equal(p, "{\"allow\":[]}");
    assert_true(net);
    free(p);
    assert_int_equal(store_sandbox_set_network(f->st, SB1, "t", NULL, true, POLICY), 0);
    p = policy_of(f->st, SB1, &net);
    assert_string_equal(p, POLICY);
    assert_true(net);
    free(p);
    /* someone else's, or missing: -ENOENT, nothing changed */
    assert_int_equal(store_sandbox_set_network(f->st, SB1, "t", "other", false, NULL), -ENOENT);
    assert_int_equal(store_sandbox_set_network(f->st, SB1, "other", "u", false, NULL), -ENOENT);
    assert_int_equal(store_sandbox_set_network(f->st, SB3, NULL, NULL, false, NULL), -ENOENT);
    p = policy_of(f->st, SB1, &net);
    assert_string_equal(p, POLICY);
    assert_true(net);
    free(p);

    /* a fork stores the policy of the record it is given */
    struct sandbox_rec r3 = rec_of(SB3, "t", "u", 3000);
    r3.network = true;
    r3.network_policy = POLICY;
    assert_int_equal(store_sandbox_fork(f->st, SB1, 1, &r3, NULL, NULL), 0);
    p = policy_of(f->st, SB3, &net);
    assert_string_equal(p, POLICY);
    assert_true(net);
    free(p);
    /* and survives a reopen */
    reopen(f);
    p = policy_of(f->st, SB3, &net);
    assert_string_equal(p, POLICY);
    free(p);
}

static struct egress_rec egress_of(int64_t at, const char *host, bool allowed)
{
    return (struct egress_rec){.at_ms = at,
                               .host = (char *)host,
                               .port = 443,
                               .allowed = allowed,
                               .rule = allowed ? "allow pypi.org" : "deny: not in the allowlist",
                               .bytes_up = 10,
                               .bytes_down = 20,
                               .duration_ms = 5};
}

/* Records listed: "host@at" each, newest first. */
struct egress_list {
    char got[32][64];
    int n;
    int stop_after;
};

static int collect_egress(const struct egress_rec *e, void *ud)
{
    struct egress_list *l = ud;
    assert_true(l->n < 32);
    snprintf(l->got[l->n++], sizeof(l->got[0]), "%s@%lld", e->host, (long long)e->at_ms);
    return l->stop_after && l->n == l->stop_after ? 99 : 0;
}

/* The sandbox's egress log, newest first, joined with spaces. */
static char *egress_log(struct store *st, const char *id)
{
    struct egress_list l = {0};
    assert_int_equal(store_egress_list(st, id, 100, collect_egress, &l), 0);
    size_t cap = sizeof(l.got) + sizeof(l.got) / sizeof(l.got[0]) + 1, len = 0;
    char *out = calloc(1, cap);
    assert_non_null(out);
    for (int i = 0; i < l.n; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? " " : "", l.got[i]);
    return out;
}

static void expect_egress(struct store *st, const char *id, const char *want)
{
    char *got = egress_log(st, id);
    assert_string_equal(got, want);
    free(got);
}

/* One record whole. */
static int check_full_record(const struct egress_rec *e, void *ud)
{
    (void)ud;
    assert_int_equal(e->at_ms, 500);
    assert_string_equal(e->exec_id, "ex1");
    assert_string_equal(e->host, "files.pythonhosted.org");
    assert_int_equal(e->port, 8443);
    assert_string_equal(e->address, "151.101.0.223");
    assert_true(e->allowed);
    assert_string_equal(e->rule, "allow *.pythonhosted.org");
    assert_string_equal(e->error, "connection refused");
    assert_int_equal(e->bytes_up, 5000000000LL);
    assert_int_equal(e->bytes_down, 7);
    assert_int_equal(e->duration_ms, 1234);
    return 1;
}

/* The egress log: added in batches, listed newest first (at_ms, then the order added), bounded
 * in count and age per sandbox, deleted with its sandbox, not copied by a fork; an add for a
 * sandbox that is gone adds nothing. */
static void test_egress_log(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    create_sb(f->st, SB2);
    struct egress_rec v[] = {egress_of(100, "a", true), egress_of(300, "b", false),
                             egress_of(200, "c", true), egress_of(300, "d", true)};
    assert_int_equal(store_egress_add(f->st, SB1, v, 4, NULL), 0);
    expect_egress(f->st, SB1, "d@300 b@300 c@200 a@100");
    expect_egress(f->st, SB2, "");
    /* limit, and a callback that stops the walk */
    struct egress_list l = {0};
    assert_int_equal(store_egress_list(f->st, SB1, 2, collect_egress, &l), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.got[1], "b@300");
    l = (struct egress_list){.stop_after = 3};
    assert_int_equal(store_egress_list(f->st, SB1, 10, collect_egress, &l), 99);
    assert_int_equal(l.n, 3);
    assert_int_equal(store_egress_list(f->st, SB1, 0, collect_egress, &l), -EINVAL);
    assert_int_equal(store_egress_list(f->st, SB3, 10, collect_egress, &l), -ENOENT);

    /* every field, NULLs included */
    struct egress_rec full = {.at_ms = 500,
                              .exec_id = "ex1",
                              .host = "files.pythonhosted.org",
                              .port = 8443,
                              .address = "151.101.0.223",
                              .allowed = true,
                              .rule = "allow *.pythonhosted.org",
                              .error = "connection refused",
                              .bytes_up = 5000000000LL,
                              .bytes_down = 7,
                              .duration_ms = 1234};
    assert_int_equal(store_egress_add(f->st, SB2, &full, 1, NULL), 0);
    assert_int_equal(store_egress_list(f->st, SB2, 1, check_full_record, NULL), 1);
    l = (struct egress_list){0};
    assert_int_equal(store_egress_list(f->st, SB1, 1, collect_egress, &l), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM egress WHERE exec_id IS NULL "
                               "AND address IS NULL AND error IS NULL"),
                     4);

    /* a record without host or rule: nothing of the batch is added */
    struct egress_rec bad[] = {egress_of(600, "e", true), egress_of(600, NULL, true)};
    assert_int_equal(store_egress_add(f->st, SB1, bad, 2, NULL), -EINVAL);
    bad[1].host = "f";
    bad[1].rule = NULL;
    assert_int_equal(store_egress_add(f->st, SB1, bad, 2, NULL), -EINVAL);
    assert_int_equal(store_egress_add(f->st, SB1, bad, 0, NULL), 0);
    expect_egress(f->st, SB1, "d@300 b@300 c@200 a@100");

    /* by count: the newest kept, by at_ms (a late record of an old connection goes first) */
    struct egress_opts keep3 = {.max_records = 3, .now_ms = 1000};
    struct egress_rec more[] = {egress_of(400, "g", true), egress_of(150, "h", true)};
    assert_int_equal(store_egress_add(f->st, SB1, more, 2, &keep3), 0);
    expect_egress(f->st, SB1, "g@400 d@300 b@300");
    expect_egress(f->st, SB2, "files.pythonhosted.org@500"); /* another sandbox's stays */
    /* by age: asked for before now - max_age */
    struct egress_opts young = {.max_age_ms = 150, .now_ms = 550};
    struct egress_rec late = egress_of(550, "i", false);
    assert_int_equal(store_egress_add(f->st, SB1, &late, 1, &young), 0);
    expect_egress(f->st, SB1, "i@550 g@400");
    expect_egress(f->st, SB2, "files.pythonhosted.org@500");

    /* a fork does not copy the log */
    assert_int_equal(store_commit(f->st, SB1, NULL, NULL, NULL), 0);
    struct sandbox_rec r3 = rec_of(SB3, "t", "u", 3000);
    assert_int_equal(store_sandbox_fork(f->st, SB1, 1, &r3, NULL, NULL), 0);
    expect_egress(f->st, SB3, "");
    assert_int_equal(db_int(f, "SELECT count(*) FROM egress"), 3);

    /* deleted with the sandbox; an add for it afterwards adds nothing */
    assert_int_equal(store_sandbox_delete(f->st, SB1, NULL, NULL), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM egress"), 1);
    assert_int_equal(store_egress_add(f->st, SB1, v, 4, &keep3), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM egress"), 1);
    assert_int_equal(store_egress_list(f->st, SB1, 10, collect_egress, &l), -ENOENT);
    expect_egress(f->st, SB2, "files.pythonhosted.org@500");
}

/* Runs SQL on the raw database (no rows of interest). */
static void db_exec(struct fx *f, const char *sql)
{
    if (on_pg) {
        PGconn *c = pg_admin(f->url);
        pg_run(c, sql);
        PQfinish(c);
        return;
    }
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

/* A database made before network egress migrates: its sandboxes have no policy, and the
 * egress log starts empty. */
static void test_egress_migration(void **state)
{
    struct fx *f = *state;
    struct sandbox_rec r = rec_of(SB1, "t", "u", 1000);
    r.network = true;
    assert_int_equal(store_sandbox_create(f->st, &r, NULL, NULL), 0);
    store_close(f->st);
    f->st = NULL;
    db_exec(f, on_pg ? "DROP TABLE egress; ALTER TABLE sandboxes DROP COLUMN network_policy; "
                       "DELETE FROM schema_migrations WHERE version = 6"
                     : "DROP TABLE egress; ALTER TABLE sandboxes DROP COLUMN network_policy; "
                       "DELETE FROM schema_migrations WHERE version = 5");
    open_store(f);
    assert_int_equal(db_int(f, "SELECT max(version) FROM schema_migrations"),
                     on_pg ? PG_SCHEMA_VERSION : SQLITE_SCHEMA_VERSION);
    bool net = false;
    char *p = policy_of(f->st, SB1, &net);
    assert_null(p);
    assert_true(net);
    expect_egress(f->st, SB1, "");
    struct egress_rec e = egress_of(100, "a", true);
    assert_int_equal(store_egress_add(f->st, SB1, &e, 1, NULL), 0);
    expect_egress(f->st, SB1, "a@100");
    assert_int_equal(store_sandbox_set_network(f->st, SB1, NULL, NULL, true, POLICY), 0);
    p = policy_of(f->st, SB1, &net);
    assert_string_equal(p, POLICY);
    free(p);
}

/* ---- idempotency keys ---- */

static void test_idempotency(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    create_sb(f->st, SB2);
    uint8_t h1[32], h2[32];
    memset(h1, 1, sizeof(h1));
    memset(h2, 2, sizeof(h2));
    struct idem_opts o = {.now_ms = 100000, .ttl_ms = 50000, .pending_ttl_ms = 1000, .max_keys = 3};
    struct idem_rec r;
    /* new, then pending */
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "u", "k", h1, &o, &r), 0);
    assert_int_equal(r.state, IDEM_NEW);
    uint8_t claim_k[IDEM_CLAIM_LEN];
    memcpy(claim_k, r.claim, sizeof(claim_k));
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "u", "k", h2, &o, &r), 0);
    assert_int_equal(r.state, IDEM_PENDING);
    assert_memory_equal(r.hash, h1, 32);
    idem_rec_release(&r);
    /* the owner is checked, the sandbox must exist */
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "other", "k", h1, &o, &r), -ENOENT);
    assert_int_equal(store_idem_begin(f->st, SB3, "t", "u", "k", h1, &o, &r), -ENOENT);
    /* the answer */
    assert_int_equal(store_idem_finish(f->st, SB1, "k", claim_k, IDEM_DONE, 201, "application/json",
                                       "{\"a\":1}", 7, 0),
                     0);
    assert_int_equal(store_idem_finish(f->st, SB1, "k", claim_k, IDEM_DONE, 200, NULL, NULL, 0, 0),
                     -ENOENT);
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "u", "k", h1, &o, &r), 0);
    assert_int_equal(r.state, IDEM_DONE);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.content_type, "application/json");
    assert_int_equal(r.body_len, 7);
    assert_memory_equal(r.body, "{\"a\":1}", 7);
    idem_rec_release(&r);
    /* keys are per sandbox */
    assert_int_equal(store_idem_begin(f->st, SB2, "t", "u", "k", h1, &o, &r), 0);
    assert_int_equal(r.state, IDEM_NEW);
    /* too large: the status and the note kept, no body */
    assert_int_equal(
        store_idem_finish(f->st, SB2, "k", r.claim, IDEM_TOO_LARGE, 200, NULL, "x1", 2, 0), 0);
    assert_int_equal(store_idem_begin(f->st, SB2, "t", "u", "k", h1, &o, &r), 0);
    assert_int_equal(r.state, IDEM_TOO_LARGE);
    assert_int_equal(r.status, 200);
    assert_null(r.content_type);
    assert_int_equal(r.body_len, 2);
    idem_rec_release(&r);
    /* in doubt: the status and the note kept, so that a retry does not run again */
    assert_int_equal(store_idem_begin(f->st, SB2, "t", "u", "d", h1, &o, &r), 0);
    assert_int_equal(r.state, IDEM_NEW);
    assert_int_equal(
        store_idem_finish(f->st, SB2, "d", r.claim, IDEM_IN_DOUBT, 500, NULL, "x2", 2, 0), 0);
    assert_int_equal(store_idem_begin(f->st, SB2, "t", "u", "d", h1, &o, &r), 0);
    assert_int_equal(r.state, IDEM_IN_DOUBT);
    assert_int_equal(r.status, 500);
    assert_int_equal(r.body_len, 2);
    assert_memory_equal(r.body, "x2", 2);
    idem_rec_release(&r);
    /* abort forgets a pending key only */
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "u", "p", h1, &o, &r), 0);
    assert_int_equal(store_idem_abort(f->st, SB1, "p", r.claim), 0);
    assert_int_equal(store_idem_abort(f->st, SB1, "k", claim_k), 0);
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "u", "p", h2, &o, &r), 0);
    assert_int_equal(r.state, IDEM_NEW);
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "u", "k", h1, &o, &r), 0);
    assert_int_equal(r.state, IDEM_DONE);
    idem_rec_release(&r);
    /* a pending key past pending_ttl is abandoned: used afresh */
    struct idem_opts later = o;
    later.now_ms += 2000;
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "u", "p", h1, &later, &r), 0);
    assert_int_equal(r.state, IDEM_NEW);
    /* at most max_keys per sandbox: the oldest go ("k" and "p" are there; two more) */
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "u", "q", h1, &later, &r), 0);
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "u", "s", h1, &later, &r), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM idempotency WHERE key = 'k' AND state = 2"),
                     0);
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "u", "q", h1, &later, &r), 0);
    assert_int_equal(r.state, IDEM_PENDING);
    idem_rec_release(&r);
    /* past the ttl every key of the sandbox is forgotten when one is added */
    struct idem_opts next_day = o;
    next_day.now_ms += 60000;
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "u", "z", h1, &next_day, &r), 0);
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "u", "q", h2, &next_day, &r), 0);
    assert_int_equal(r.state, IDEM_NEW);
    /* deleted with the sandbox */
    assert_int_equal(store_sandbox_delete(f->st, SB1, NULL, NULL), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM idempotency"), 2);
}

/* A claim renewed stays pending; one taken as abandoned and claimed again is the new claim's:
 * the first claim's finish, abort and renew touch nothing. */
static void test_idempotency_claims(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    uint8_t h[32];
    memset(h, 1, sizeof(h));
    struct idem_opts o = {.now_ms = 100000, .ttl_ms = 50000, .pending_ttl_ms = 1000, .max_keys = 9};
    struct idem_rec r;
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "u", "k", h, &o, &r), 0);
    assert_int_equal(r.state, IDEM_NEW);
    uint8_t first[IDEM_CLAIM_LEN];
    memcpy(first, r.claim, sizeof(first));
    /* renewed at +900: still pending at +1500 */
    assert_int_equal(store_idem_renew(f->st, SB1, "k", first, o.now_ms + 900), 0);
    struct idem_opts at = o;
    at.now_ms += 1500;
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "u", "k", h, &at, &r), 0);
    assert_int_equal(r.state, IDEM_PENDING);
    idem_rec_release(&r);
    /* not renewed again: taken over at +2500 by a second claim */
    at.now_ms = o.now_ms + 2500;
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "u", "k", h, &at, &r), 0);
    assert_int_equal(r.state, IDEM_NEW);
    uint8_t second[IDEM_CLAIM_LEN];
    memcpy(second, r.claim, sizeof(second));
    assert_memory_not_equal(first, second, IDEM_CLAIM_LEN);
    /* the first claim is lost: nothing it does reaches the second's record */
    assert_int_equal(store_idem_renew(f->st, SB1, "k", first, at.now_ms), -ENOENT);
    assert_int_equal(store_idem_finish(f->st, SB1, "k", first, IDEM_DONE, 200, NULL, "a", 1, 0),
                     -ENOENT);
    assert_int_equal(store_idem_abort(f->st, SB1, "k", first), 0);
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "u", "k", h, &at, &r), 0);
    assert_int_equal(r.state, IDEM_PENDING);
    idem_rec_release(&r);
    /* the second finishes */
    assert_int_equal(store_idem_finish(f->st, SB1, "k", second, IDEM_DONE, 201, NULL, "b", 1, 0),
                     0);
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "u", "k", h, &at, &r), 0);
    assert_int_equal(r.state, IDEM_DONE);
    assert_int_equal(r.status, 201);
    idem_rec_release(&r);
    assert_int_equal(store_idem_renew(f->st, SB1, "k", second, at.now_ms), -ENOENT);
    /* a key left pending by a previous run: on SQLite the store's only server is gone with it,
     * the key is free at once; on PostgreSQL another server may be running its request */
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "u", "p", h, &at, &r), 0);
    assert_int_equal(r.state, IDEM_NEW);
    reopen(f);
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "u", "p", h, &at, &r), 0);
    assert_int_equal(r.state, on_pg ? IDEM_PENDING : IDEM_NEW);
    idem_rec_release(&r);
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "u", "k", h, &at, &r), 0);
    assert_int_equal(r.state, IDEM_DONE);
    idem_rec_release(&r);
}

/* Begins `key` (new), finishes it with `len` bytes of answer under max_stored_bytes. */
static void idem_put(struct fx *f, const char *sb, const char *key, const struct idem_opts *o,
                     size_t len, int64_t max_stored_bytes)
{
    uint8_t h[32];
    memset(h, 7, sizeof(h));
    struct idem_rec r;
    assert_int_equal(store_idem_begin(f->st, sb, "t", "u", key, h, o, &r), 0);
    assert_int_equal(r.state, IDEM_NEW);
    char body[64];
    memset(body, 'b', sizeof(body));
    assert_true(len <= sizeof(body));
    assert_int_equal(store_idem_finish(f->st, sb, key, r.claim, IDEM_DONE, 200, NULL, body, len,
                                       max_stored_bytes),
                     0);
}

/* The state of `key` now (its record released). */
static enum idem_state idem_state_of(struct fx *f, const char *sb, const char *key,
                                     const struct idem_opts *o)
{
    uint8_t h[32];
    memset(h, 7, sizeof(h));
    struct idem_rec r;
    assert_int_equal(store_idem_begin(f->st, sb, "t", "u", key, h, o, &r), 0);
    enum idem_state st = r.state;
    idem_rec_release(&r);
    return st;
}

/* The answers a sandbox keeps stay within max_stored_bytes, the oldest dropped first (a pending
 * key and the one just finished stay); keys past the ttl go when a key is added to any sandbox,
 * sweep_max at a time. */
static void test_idempotency_bounds(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    create_sb(f->st, SB2);
    struct idem_opts o = {
        .now_ms = 100000, .ttl_ms = 50000, .pending_ttl_ms = 1000, .max_keys = 99};
    uint8_t h[32];
    memset(h, 7, sizeof(h));
    struct idem_rec r;
    /* a pending key older than all, then answers of 30, 30 and 30 bytes within 70 */
    assert_int_equal(store_idem_begin(f->st, SB1, "t", "u", "p", h, &o, &r), 0);
    idem_put(f, SB1, "a", &o, 30, 70);
    idem_put(f, SB1, "b", &o, 30, 70);
    idem_put(f, SB1, "c", &o, 30, 70);
    assert_int_equal(db_int(f, "SELECT count(*) FROM idempotency"), 3);
    assert_int_equal(idem_state_of(f, SB1, "p", &o), IDEM_PENDING);
    assert_int_equal(idem_state_of(f, SB1, "b", &o), IDEM_DONE);
    assert_int_equal(idem_state_of(f, SB1, "c", &o), IDEM_DONE);
    /* a dropped answer's key is as if expired: it runs afresh */
    assert_int_equal(idem_state_of(f, SB1, "a", &o), IDEM_NEW);
    /* other sandboxes' answers are not counted */
    idem_put(f, SB2, "x", &o, 60, 70);
    assert_int_equal(idem_state_of(f, SB1, "c", &o), IDEM_DONE);
    /* past the ttl, a key added to SB2 forgets SB1's keys too, sweep_max at a time */
    struct idem_opts later = o;
    later.now_ms += o.ttl_ms + 1;
    later.sweep_max = 2;
    int64_t before = db_int(f, "SELECT count(*) FROM idempotency WHERE sid = "
                               "(SELECT sid FROM sandboxes WHERE id = '" SB1 "')");
    assert_int_equal(before, 4);
    idem_put(f, SB2, "y", &later, 1, 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM idempotency WHERE sid = "
                               "(SELECT sid FROM sandboxes WHERE id = '" SB1 "')"),
                     before - 2);
    idem_put(f, SB2, "z", &later, 1, 0);
    idem_put(f, SB2, "w", &later, 1, 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM idempotency WHERE sid = "
                               "(SELECT sid FROM sandboxes WHERE id = '" SB1 "')"),
                     0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ops_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sandbox_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_wal_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_releases_cache_memory, setup, teardown),
        cmocka_unit_test(test_changeset_take),
        cmocka_unit_test_setup_teardown(test_owner_sandbox_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_with_initial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_id_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seek, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_parents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_replace_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_quota, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_stale_cwd_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changes_since, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_bad_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc_after_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc_keeps_pinned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_discard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_unreferenced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc_does_not_rewrite_freed_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persistence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_network_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_egress_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_egress_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency_bounds, setup, teardown),
    };
    /* SQLFS_TEST_ENGINE=sqlite or =postgres: one engine only */
    const char *only = getenv("SQLFS_TEST_ENGINE");
    int failed = 0;
    if (!only || strcmp(only, "sqlite") == 0)
        failed += cmocka_run_group_tests_name("store: sqlite", tests, NULL, NULL);
    if (only && strcmp(only, "sqlite") == 0)
        return failed;
    pg_url = getenv("SQLFS_TEST_PG_URL");
    if (!pg_url || !*pg_url) {
        printf("store: SQLFS_TEST_PG_URL is not set: the PostgreSQL engine is not tested "
               "(scripts/pg-test-cluster.sh start DIR prints one)\n");
        return failed;
    }
    on_pg = true;
    failed += cmocka_run_group_tests_name("store: postgres", tests, NULL, NULL);
    const struct CMUnitTest pg_tests[] = {
        cmocka_unit_test_setup_teardown(test_pg_fence_two_replicas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_locks_two_replicas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_owner_limit_two_replicas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_connection_loss_mid_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_gc_with_writer_on_other_replica, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_pool_exhausted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_unavailable, setup, teardown),
        cmocka_unit_test(test_pg_migrate_together),
    };
    failed += cmocka_run_group_tests_name("store: postgres only", pg_tests, NULL, NULL);
    return failed;
}
