#include "unit.h"

#include <errno.h>
#include <stdio.h>
#include <sys/resource.h>

#include <archive.h>
#include <archive_entry.h>

#include "archive/export.h"
#include "memstore.h"
#include "util/err.h"

/* ---- populating a store directly --------------------------------------------------------------
 */

static void put_file(struct store *st, struct changeset *cs, const char *path, unsigned mode,
                     int64_t mtime_ns, const void *data, size_t len)
{
    struct file_meta m = {
        .path = (char *)path, .kind = FILE_KIND_FILE, .mode = mode, .mtime_ns = mtime_ns};
    struct content_writer *w = NULL;
    assert_int_equal(store_content_begin(st, &w), 0);
    for (size_t o = 0; o < len; o += 100000) {
        size_t k = len - o < 100000 ? len - o : 100000;
        assert_int_equal(store_content_write(st, w, (const char *)data + o, k), 0);
    }
    assert_int_equal(store_content_finish(st, w, m.content, &m.size), 0);
    m.has_content = m.size > 0;
    assert_int_equal(changeset_put(cs, &m), 0);
}

static void put_node(struct changeset *cs, const char *path, enum file_kind kind, unsigned mode,
                     int64_t mtime_ns, const char *target)
{
    struct file_meta m = {.path = (char *)path,
                          .kind = kind,
                          .mode = mode,
                          .mtime_ns = mtime_ns,
                          .target = (char *)target,
                          .size = target ? (int64_t)strlen(target) : 0};
    assert_int_equal(changeset_put(cs, &m), 0);
}

/* Reads the whole export with reads of `cap` bytes. */
static int export_all(struct store *st, const char *base, enum export_format f, size_t cap,
                      struct buf *out)
{
    struct export *exp = NULL;
    err_clear();
    int r = export_open(st, TEST_SB, base, f, &exp);
    if (r < 0)
        return r;
    uint8_t *tmp = malloc(cap);
    for (;;) {
        size_t got = 0;
        assert_int_equal(export_read(exp, tmp, cap, &got), 0);
        assert_true(got <= cap);
        if (got == 0)
            break;
        assert_int_equal(buf_add(out, tmp, got), 0);
    }
    /* reading past the end keeps answering 0 */
    size_t got = 1;
    assert_int_equal(export_read(exp, tmp, cap, &got), 0);
    assert_int_equal(got, 0);
    free(tmp);
    export_close(exp);
    return 0;
}

struct got_entry {
    char name[600];
    int type;
    unsigned perm;
    int64_t mtime;
    long mtime_nsec;
    char target[64];
    struct buf data;
};

static size_t read_back(const struct buf *ar, struct got_entry *out, size_t max)
{
    struct archive *a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_all(a);
    assert_int_equal(archive_read_open_memory(a, ar->data, ar->len), ARCHIVE_OK);
    struct archive_entry *e;
    size_t n = 0;
    int r;
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        assert_true(n < max);
        struct got_entry *g = &out[n++];
        memset(g, 0, sizeof(*g));
        snprintf(g->name, sizeof(g->name), "%s", archive_entry_pathname(e));
        g->type = (int)archive_entry_filetype(e);
        g->perm = archive_entry_perm(e);
        g->mtime = archive_entry_mtime(e);
        g->mtime_nsec = archive_entry_mtime_nsec(e);
        if (archive_entry_symlink(e))
            snprintf(g->target, sizeof(g->target), "%s", archive_entry_symlink(e));
        char blk[65536];
        la_ssize_t k;
        while ((k = archive_read_data(a, blk, sizeof(blk))) > 0)
            assert_int_equal(buf_add(&g->data, blk, (size_t)k), 0);
        assert_true(k == 0);
    }
    assert_int_equal(r, ARCHIVE_EOF);
    archive_read_free(a);
    return n;
}

static void release_entries(struct got_entry *g, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf_release(&g[i].data);
}

static const int64_t T = 1700000000LL * 1000000000LL;

static const struct commit_opts copts = {.expect_version = -1, .quota_bytes = 0, .now_ms = 1};

/* A SQLite store (in dir) holding a sample tree under /home/user and a file outside it. */
static struct store *sample_store(char *dir, char **longname)
{
    struct store *st = test_sqlite_open(dir);
    assert_non_null(st);
    struct changeset cs;
    changeset_init(&cs, "test");
    cs.create_parents = true;
    put_node(&cs, "/home", FILE_KIND_DIR, 0755, T, NULL);
    put_node(&cs, "/home/user", FILE_KIND_DIR, 0755, T, NULL);
    put_node(&cs, "/home/user/src", FILE_KIND_DIR, 0700, T + 1000000000, NULL);
    put_file(st, &cs, "/home/user/src/a.c", 0644, T + 2000000000, "int a;\n", 7);
    put_file(st, &cs, "/home/user/run.sh", 0755, T + 3000000000, "#!/bin/sh\n", 10);
    put_file(st, &cs, "/home/user/empty", 0600, T, "", 0);
    put_node(&cs, "/home/user/link", FILE_KIND_SYMLINK, 0777, T, "/etc/passwd");
    put_node(&cs, "/home/user/emptydir", FILE_KIND_DIR, 0755, T, NULL);
    put_file(st, &cs, "/home/user/h\xc3\xa9llo.txt", 0644, T, "utf8\n", 5);
    /* a path of more than 255 bytes and a name of more than 100: pax extensions */
    static char lng[400];
    snprintf(lng, sizeof(lng), "/home/user/%0100d/%0100d/%0150d.txt", 1, 2, 3);
    for (char *p = lng; *p; p++)
        if (*p == '0')
            *p = 'x';
    put_file(st, &cs, lng, 0644, T, "long\n", 5);
    size_t big = 3 * 1024 * 1024 + 17;
    uint8_t *data = malloc(big);
    for (size_t i = 0; i < big; i++)
        data[i] = (uint8_t)(i * 2654435761u >> 24);
    put_file(st, &cs, "/home/user/big.bin", 0644, T, data, big);
    free(data);
    put_file(st, &cs, "/other/secret", 0600, T, "not exported", 12);
    assert_int_equal(store_commit(st, TEST_SB, &cs, &copts, NULL), 0);
    changeset_release(&cs);
    if (longname)
        *longname = lng + strlen("/home/user/");
    return st;
}

static const struct got_entry *find(const struct got_entry *g, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(g[i].name, name) == 0)
            return &g[i];
    return NULL;
}

static void check_sample(const struct got_entry *g, size_t n, const char *longname)
{
    const struct got_entry *e;
    assert_non_null(e = find(g, n, "src/"));
    assert_int_equal(e->type, AE_IFDIR);
    assert_int_equal(e->perm, 0700);
    assert_int_equal(e->mtime, 1700000001);
    assert_non_null(e = find(g, n, "src/a.c"));
    assert_int_equal(e->type, AE_IFREG);
    assert_int_equal(e->perm, 0644);
    assert_int_equal(e->mtime, 1700000002);
    assert_int_equal(e->data.len, 7);
    assert_memory_equal(e->data.data, "int a;\n", 7);
    assert_non_null(e = find(g, n, "run.sh"));
    assert_int_equal(e->perm, 0755);
    assert_non_null(e = find(g, n, "empty"));
    assert_int_equal(e->perm, 0600);
    assert_int_equal(e->data.len, 0);
    assert_non_null(e = find(g, n, "link"));
    assert_int_equal(e->type, AE_IFLNK);
    assert_string_equal(e->target, "/etc/passwd");
    assert_non_null(e = find(g, n, "emptydir/"));
    assert_int_equal(e->type, AE_IFDIR);
    assert_non_null(e = find(g, n, "h\xc3\xa9llo.txt"));
    assert_non_null(e = find(g, n, longname));
    assert_memory_equal(e->data.data, "long\n", 5);
    assert_non_null(e = find(g, n, "big.bin"));
    assert_int_equal(e->data.len, 3 * 1024 * 1024 + 17);
    for (size_t i = 0; i < e->data.len; i++)
        if ((uint8_t)e->data.data[i] != (uint8_t)(i * 2654435761u >> 24))
            fail_msg("big.bin differs at %zu", i);
    for (size_t i = 0; i < n; i++)
        assert_null(strstr(g[i].name, "secret"));
}

static void test_export_formats(void **state)
{
    (void)state;
    char *longname = NULL;
    char dir[64];
    struct store *st = sample_store(dir, &longname);
    size_t caps[] = {1, 1000, 65536, 1 << 20};
    for (int f = EXPORT_TAR_GZ; f <= EXPORT_TAR; f++) {
        for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
            if (caps[c] == 1 && f == EXPORT_TAR)
                continue; /* 3 MiB one byte at a time once is enough */
            struct buf ar = BUF_INIT(0);
            assert_int_equal(export_all(st, "/home/user", f, caps[c], &ar), 0);
            if (f == EXPORT_TAR_GZ)
                assert_true((uint8_t)ar.data[0] == 0x1f && (uint8_t)ar.data[1] == 0x8b);
            else
                assert_memory_equal(ar.data + 257, "ustar", 5);
            struct got_entry g[16];
            size_t n = read_back(&ar, g, 16);
            assert_int_equal(n, 11); /* 9 nodes and the 2 parents of the long path */
            /* path order: a directory before its contents */
            for (size_t i = 1; i < n; i++)
                assert_true(strcmp(g[i - 1].name, g[i].name) < 0);
            check_sample(g, n, longname);
            release_entries(g, n);
            buf_release(&ar);
        }
    }
    test_sqlite_close(st, dir);
}

static void test_export_base_kinds(void **state)
{
    (void)state;
    char dir[64];
    struct store *st = sample_store(dir, NULL);
    struct buf ar = BUF_INIT(0);
    struct got_entry g[32];
    /* missing basePath */
    assert_int_equal(export_all(st, "/home/nobody", EXPORT_TAR_GZ, 4096, &ar), -ENOENT);
    assert_non_null(err_message());
    assert_int_equal(export_all(st, "relative", EXPORT_TAR_GZ, 4096, &ar), -EINVAL);
    /* a file: that file alone, under its own name */
    assert_int_equal(export_all(st, "/home/user/src/a.c", EXPORT_TAR, 4096, &ar), 0);
    size_t n = read_back(&ar, g, 32);
    assert_int_equal(n, 1);
    assert_string_equal(g[0].name, "a.c");
    assert_memory_equal(g[0].data.data, "int a;\n", 7);
    release_entries(g, n);
    buf_release(&ar);
    /* a symlink: the link itself */
    assert_int_equal(export_all(st, "/home/user/link", EXPORT_TAR, 4096, &ar), 0);
    n = read_back(&ar, g, 32);
    assert_int_equal(n, 1);
    assert_string_equal(g[0].name, "link");
    assert_int_equal(g[0].type, AE_IFLNK);
    release_entries(g, n);
    buf_release(&ar);
    /* an empty directory: a valid empty archive */
    assert_int_equal(export_all(st, "/home/user/emptydir", EXPORT_TAR_GZ, 4096, &ar), 0);
    assert_int_equal(read_back(&ar, g, 32), 0);
    buf_release(&ar);
    /* the root: everything, relative to / */
    assert_int_equal(export_all(st, "/", EXPORT_TAR_GZ, 65536, &ar), 0);
    n = read_back(&ar, g, 32);
    assert_int_equal(n, 15);
    assert_non_null(find(g, n, "home/"));
    assert_non_null(find(g, n, "home/user/src/a.c"));
    assert_non_null(find(g, n, "other/secret"));
    release_entries(g, n);
    buf_release(&ar);
    /* basePath is normalised */
    assert_int_equal(export_all(st, "/home/user/src/../src/", EXPORT_TAR, 512, &ar), 0);
    n = read_back(&ar, g, 32);
    assert_int_equal(n, 1);
    assert_string_equal(g[0].name, "a.c");
    release_entries(g, n);
    buf_release(&ar);
    test_sqlite_close(st, dir);
}

static void test_export_close_early(void **state)
{
    (void)state;
    char dir[64];
    struct store *st = sample_store(dir, NULL);
    struct export *exp = NULL;
    assert_int_equal(export_open(st, TEST_SB, "/home/user", EXPORT_TAR_GZ, &exp), 0);
    assert_int_equal(export_entry_count(exp), 11);
    char tmp[3000];
    size_t got = 0;
    for (int i = 0; i < 5; i++)
        assert_int_equal(export_read(exp, tmp, sizeof(tmp), &got), 0);
    export_close(exp); /* mid-file: the content reader and writer are released */
    export_close(NULL);
    test_sqlite_close(st, dir);
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "re");
    long size = 0, res = 0;
    assert_int_equal(fscanf(f, "%ld %ld", &size, &res), 2);
    fclose(f);
    return res * 4;
}

/* Memory stays bounded while a large file streams out: the export holds about one step. */
static void test_export_bounded(void **state)
{
    (void)state;
    char dir[64];
    struct store *st = test_sqlite_open(dir);
    assert_non_null(st);
    struct changeset cs;
    changeset_init(&cs, "test");
    cs.create_parents = true;
    size_t big = 48u << 20;
    uint8_t *data = malloc(big);
    for (size_t i = 0; i < big; i++)
        data[i] = (uint8_t)(i * 2654435761u >> 24);
    put_file(st, &cs, "/d/big", 0644, T, data, big);
    free(data);
    assert_int_equal(store_commit(st, TEST_SB, &cs, &copts, NULL), 0);
    changeset_release(&cs);
    struct export *exp = NULL;
    assert_int_equal(export_open(st, TEST_SB, "/d", EXPORT_TAR, &exp), 0);
    long rss0 = rss_kb(), peak = rss0;
    char tmp[32768];
    size_t total = 0, got = 0;
    do {
        assert_int_equal(export_read(exp, tmp, sizeof(tmp), &got), 0);
        total += got;
        long r = rss_kb();
        if (r > peak)
            peak = r;
    } while (got);
    export_close(exp);
    fprintf(stderr, "export of 48 MiB: %zu bytes out, RSS grew %ld KiB\n", total, peak - rss0);
    assert_true(total > big);
#ifdef __SANITIZE_ADDRESS__
    assert_true(peak - rss0 < 32 * 1024); /* ASan's quarantine keeps freed blocks resident */
#else
    assert_true(peak - rss0 < 8 * 1024);
#endif
    test_sqlite_close(st, dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_formats),
        cmocka_unit_test(test_export_base_kinds),
        cmocka_unit_test(test_export_close_early),
        cmocka_unit_test(test_export_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
