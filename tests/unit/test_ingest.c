#include "unit.h"

#include <errno.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "util/b64.h"
#include "archive/export.h"
#include "archive/ingest.h"
#include "memstore.h"
#include "util/err.h"
#include "util/timeutil.h"

/* ---- building archives in memory ------------------------------------------------------------ */

enum fmt { F_TAR, F_TGZ, F_TBZ2, F_TXZ, F_TZST, F_ZIP };

struct spec {
    const char *name;
    char type; /* f file, d dir, l symlink, h hardlink, c char device, p fifo */
    unsigned mode;
    int64_t mtime;    /* seconds */
    const char *data; /* file data or link target */
    size_t len;       /* file length (data may be NULL: pattern bytes) */
};

static la_ssize_t buf_write_cb(struct archive *a, void *ud, const void *d, size_t n)
{
    (void)a;
    assert_int_equal(buf_add(ud, d, n), 0);
    return (la_ssize_t)n;
}

/* Incompressible, reproducible file bytes. */
static uint8_t pattern_byte(size_t i)
{
    uint64_t x = (uint64_t)i * 0x9e3779b97f4a7c15ull;
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 29;
    return (uint8_t)(x >> 56);
}

static int build_last_block = 1;

static void build(enum fmt f, const struct spec *sp, size_t n, struct buf *out)
{
    struct archive *a = archive_write_new();
    if (f == F_ZIP)
        assert_int_equal(archive_write_set_format_zip(a), ARCHIVE_OK);
    else
        assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    switch (f) {
    case F_TGZ:
        assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
        break;
    case F_TBZ2:
        assert_int_equal(archive_write_add_filter_bzip2(a), ARCHIVE_OK);
        break;
    case F_TXZ:
        assert_int_equal(archive_write_add_filter_xz(a), ARCHIVE_OK);
        break;
    case F_TZST:
        assert_int_equal(archive_write_add_filter_zstd(a), ARCHIVE_OK);
        break;
    default:
        break;
    }
    /* no padding of the compressed stream to a 10 KiB block (tar --zstd does not pad), unless a
     * test asks for tar's usual padding */
    assert_int_equal(archive_write_set_bytes_in_last_block(a, build_last_block), ARCHIVE_OK);
    assert_int_equal(archive_write_open2(a, out, NULL, buf_write_cb, NULL, NULL), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    for (size_t i = 0; i < n; i++) {
        archive_entry_clear(e);
        archive_entry_copy_pathname(e, sp[i].name);
        archive_entry_set_perm(e, sp[i].mode);
        archive_entry_set_mtime(e, sp[i].mtime, 0);
        switch (sp[i].type) {
        case 'f':
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_size(e, (la_int64_t)sp[i].len);
            break;
        case 'd':
            archive_entry_set_filetype(e, AE_IFDIR);
            break;
        case 'l':
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_copy_symlink(e, sp[i].data);
            break;
        case 'h':
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_copy_hardlink(e, sp[i].data);
            archive_entry_set_size(e, 0);
            break;
        case 'c':
            archive_entry_set_filetype(e, AE_IFCHR);
            archive_entry_set_rdev(e, 0x0101);
            break;
        case 'p':
            archive_entry_set_filetype(e, AE_IFIFO);
            break;
        }
        assert_true(archive_write_header(a, e) >= ARCHIVE_WARN);
        if (sp[i].type == 'f' && sp[i].len) {
            if (sp[i].data) {
                assert_int_equal(archive_write_data(a, sp[i].data, sp[i].len),
                                 (la_ssize_t)sp[i].len);
            } else {
                uint8_t blk[4096];
                for (size_t o = 0; o < sp[i].len; o += sizeof(blk)) {
                    size_t k = sp[i].len - o < sizeof(blk) ? sp[i].len - o : sizeof(blk);
                    for (size_t j = 0; j < k; j++)
                        blk[j] = pattern_byte(o + j);
                    assert_int_equal(archive_write_data(a, blk, k), (la_ssize_t)k);
                }
            }
        }
    }
    archive_entry_free(e);
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

/* ---- driving an ingest ---------------------------------------------------------------------- */

static struct ingest_limits nolimits = {
    .max_files = 0, .max_bytes = 0, .tmp_dir = NULL, .max_path_bytes = 0};

static int run_ingest(struct store *st, const char *base, const void *data, size_t len,
                      size_t piece, const struct ingest_limits *lim, struct changeset *cs,
                      struct ingest_result *res)
{
    struct ingest *ing = NULL;
    err_clear();
    assert_int_equal(ingest_new(st, base, lim, &ing), 0);
    const uint8_t *p = data;
    for (size_t o = 0; o < len; o += piece) {
        size_t k = len - o < piece ? len - o : piece;
        if (ingest_feed(ing, p + o, k) < 0)
            break;
    }
    return ingest_finish(ing, cs, res);
}

static bool has_detail(const char *needle)
{
    for (int i = 0; i < err_detail_count(); i++)
        if (strstr(err_detail_at(i), needle))
            return true;
    return false;
}

static const struct change *find_change(const struct changeset *cs, const char *path)
{
    const struct change *found = NULL;
    for (size_t i = 0; i < cs->n; i++)
        if (strcmp(cs->items[i].meta.path, path) == 0)
            found = &cs->items[i];
    return found;
}

/* Expects the ingest of sp[0..n) to fail with `code` and a detail containing `detail`, and
 * nothing reaching the change set. */
static void expect_refused(enum fmt f, const struct spec *sp, size_t n,
                           const struct ingest_limits *lim, int code, const char *detail)
{
    struct memstore *ms = memstore_new();
    struct buf ar = BUF_INIT(0);
    build(f, sp, n, &ar);
    struct changeset cs;
    changeset_init(&cs, "ingest");
    struct ingest_result res = {0};
    int r = run_ingest(&ms->base, "/home/user/project", ar.data, ar.len, 4096, lim, &cs, &res);
    assert_int_equal(r, code);
    assert_non_null(err_message());
    if (detail && !has_detail(detail)) {
        for (int i = 0; i < err_detail_count(); i++)
            fprintf(stderr, "detail: %s\n", err_detail_at(i));
        fail_msg("missing detail %s (message: %s)", detail, err_message());
    }
    assert_int_equal(cs.n, 0);
    assert_false(cs.create_parents);
    assert_null(res.base_path);
    assert_int_equal(ms->writers_open, 0);
    changeset_release(&cs);
    buf_release(&ar);
    store_close(&ms->base);
}

/* ---- round trip -------------------------------------------------------------------------------
 */

static const char hello[] = "int main(void) { return 0; }\n";

static const struct spec tree[] = {
    {"src/", 'd', 0750, 1700000000, NULL, 0},
    {"src/a.c", 'f', 0644, 1700000002, hello, sizeof(hello) - 1},
    {"README", 'f', 0600, 1600000000, "read me\n", 8},
    {"empty", 'f', 0644, 1700000004, NULL, 0},
    {"bin/run.sh", 'f', 0755, 1700000006, "#!/bin/sh\necho hi\n", 18},
    {"data/big.bin", 'f', 0644, 1700000008, NULL, 300000},
    {"link", 'l', 0777, 1700000010, "src/a.c", 0},
    {"abs", 'l', 0777, 1700000010, "/etc/passwd", 0},
    {"up", 'l', 0777, 1700000010, "../../x", 0},
    {"d/e/f/deep/name-that-is-rather-long-to-need-more-than-one-hundred-bytes-in-a-tar-header-"
     "so-pax-is-used.txt",
     'f', 0640, 1700000012, "deep\n", 5},
};
#define NTREE (sizeof(tree) / sizeof(tree[0]))

struct seen {
    const struct spec *sp;
    bool hit;
};

/* Reads an exported archive back and compares every entry with the spec. */
static void check_export(struct store *st, enum export_format ef, const struct spec *sp, size_t n,
                         size_t readcap)
{
    struct export *exp = NULL;
    assert_int_equal(export_open(st, TEST_SB, "/home/user/project", ef, &exp), 0);
    struct buf out = BUF_INIT(0);
    uint8_t *tmp = malloc(readcap);
    for (;;) {
        size_t got = 0;
        assert_int_equal(export_read(exp, tmp, readcap, &got), 0);
        if (got == 0)
            break;
        assert_int_equal(buf_add(&out, tmp, got), 0);
    }
    free(tmp);
    export_close(exp);
    if (ef == EXPORT_TAR_GZ)
        assert_true(out.len > 2 && (uint8_t)out.data[0] == 0x1f && (uint8_t)out.data[1] == 0x8b);

    struct archive *a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_all(a);
    assert_int_equal(archive_read_open_memory(a, out.data, out.len), ARCHIVE_OK);
    struct archive_entry *e;
    size_t seen = 0;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname(e);
        size_t i = 0;
        for (; i < n; i++) {
            const char *want = sp[i].name;
            size_t wl = strlen(want);
            if (strcmp(name, want) == 0 ||
                (sp[i].type == 'd' && want[wl - 1] != '/' && strncmp(name, want, wl) == 0 &&
                 strcmp(name + wl, "/") == 0))
                break;
        }
        if (i == n) {
            /* parents created implicitly (dirs) are fine */
            assert_int_equal(archive_entry_filetype(e), AE_IFDIR);
            assert_int_equal(archive_entry_perm(e), 0755);
            continue;
        }
        seen++;
        const struct spec *s = &sp[i];
        if (s->type == 'd') {
            assert_int_equal(archive_entry_filetype(e), AE_IFDIR);
            assert_true(name[strlen(name) - 1] == '/');
        } else if (s->type == 'l') {
            assert_int_equal(archive_entry_filetype(e), AE_IFLNK);
            assert_string_equal(archive_entry_symlink(e), s->data);
            continue;
        } else {
            assert_int_equal(archive_entry_filetype(e), AE_IFREG);
        }
        assert_int_equal(archive_entry_perm(e), s->mode);
        assert_int_equal(archive_entry_mtime(e), s->mtime);
        if (s->type == 'f' || s->type == 'h') {
            const struct spec *src = s;
            if (s->type == 'h')
                for (size_t k = 0; k < n; k++)
                    if (strcmp(sp[k].name, s->data) == 0)
                        src = &sp[k];
            assert_int_equal(archive_entry_size(e), (la_int64_t)src->len);
            uint8_t *data = malloc(src->len + 1);
            size_t got = 0;
            for (;;) {
                la_ssize_t k = archive_read_data(a, data + got, src->len + 1 - got);
                assert_true(k >= 0);
                if (k == 0)
                    break;
                got += (size_t)k;
            }
            assert_int_equal(got, src->len);
            for (size_t k = 0; k < got; k++)
                if (data[k] != (src->data ? (uint8_t)src->data[k] : pattern_byte(k)))
                    fail_msg("%s: byte %zu differs", name, k);
            free(data);
        }
    }
    archive_read_free(a);
    assert_int_equal(seen, n);
    buf_release(&out);
}

static const struct commit_opts copts = {.expect_version = -1, .quota_bytes = 0, .now_ms = 1};

/* archive → ingest → change set → commit (SQLite) → export (tar.gz and tar) → compare */
static void round_trip(enum fmt f, size_t piece)
{
    char dir[64];
    struct store *st = test_sqlite_open(dir);
    assert_non_null(st);
    struct spec sp[NTREE + 1];
    memcpy(sp, tree, sizeof(tree));
    size_t n = NTREE;
    if (f != F_ZIP) /* zip has no hardlinks */
        sp[n++] = (struct spec){"src/b.c", 'h', 0644, 1700000002, "src/a.c", 0};
    if (f == F_ZIP) /* zip keeps DOS times (2 s) besides its Unix extension: use even times */
        for (size_t i = 0; i < n; i++)
            sp[i].mtime &= ~(int64_t)1;
    struct buf ar = BUF_INIT(0);
    build(f, sp, n, &ar);
    struct changeset cs;
    changeset_init(&cs, "ingest");
    struct ingest_result res = {0};
    int64_t v0 = test_sqlite_version(st);
    int r = run_ingest(st, "/home/user/project", ar.data, ar.len, piece, &nolimits, &cs, &res);
    if (r < 0)
        fail_msg("ingest failed: %d %s", r, err_message());
    assert_int_equal(test_sqlite_version(st), v0); /* nothing committed by the ingest itself */
    assert_true(cs.create_parents);
    assert_string_equal(res.base_path, "/home/user/project");
    int64_t files = 0, bytes = 0;
    for (size_t i = 0; i < n; i++) {
        if (sp[i].type == 'f' || sp[i].type == 'h') {
            files++;
            bytes += sp[i].type == 'f' ? (int64_t)sp[i].len : (int64_t)sizeof(hello) - 1;
        }
    }
    assert_int_equal(res.file_count, files);
    assert_int_equal(res.bytes, bytes);
    const struct change *a = find_change(&cs, "/home/user/project/src/a.c");
    assert_non_null(a);
    assert_true(a->meta.has_content);
    if (f != F_ZIP) {
        const struct change *b = find_change(&cs, "/home/user/project/src/b.c");
        assert_non_null(b);
        assert_int_equal(b->meta.kind, FILE_KIND_FILE);
        assert_memory_equal(a->meta.content, b->meta.content, CONTENT_ID_LEN);
    }
    const struct change *em = find_change(&cs, "/home/user/project/empty");
    assert_non_null(em);
    assert_false(em->meta.has_content);
    assert_int_equal(em->meta.size, 0);
    struct commit_result cr;
    r = store_commit(st, TEST_SB, &cs, &copts, &cr);
    if (r < 0)
        fail_msg("commit failed: %d %s", r, err_message());
    assert_int_equal(cr.version, v0 + 1);
    check_export(st, EXPORT_TAR_GZ, sp, n, 65536);
    check_export(st, EXPORT_TAR, sp, n, 1000);
    ingest_result_release(&res);
    changeset_release(&cs);
    buf_release(&ar);
    test_sqlite_close(st, dir);
}

/* More files than one store content batch holds (and more bytes than it buffers), gzip'd, so
 * several batch flushes and the inflater thread are crossed; every byte comes back. */
static void test_many_files_sqlite(void **state)
{
    (void)state;
    char dir[64];
    struct store *st = test_sqlite_open(dir);
    assert_non_null(st);
    enum { N = 3000 };
    struct spec *sp = calloc(N, sizeof(*sp));
    char(*names)[32] = calloc(N, sizeof(*names));
    assert_non_null(sp);
    assert_non_null(names);
    for (size_t i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "d%02zu/f%04zu", i / 100, i);
        size_t len = i % 50 == 0 ? 40000 + i * 7 : i % 3 == 0 ? 0 : 100 + i % 900;
        sp[i] = (struct spec){names[i], 'f', 0640, 1700000000 + (int64_t)i, NULL, len};
    }
    struct buf ar = BUF_INIT(0);
    build(F_TGZ, sp, N, &ar);
    struct changeset cs;
    changeset_init(&cs, "ingest");
    struct ingest_result res = {0};
    int r = run_ingest(st, "/home/user/project", ar.data, ar.len, 65536, &nolimits, &cs, &res);
    if (r < 0)
        fail_msg("ingest failed: %d %s", r, err_message());
    assert_int_equal(res.file_count, N);
    struct commit_result cr;
    r = store_commit(st, TEST_SB, &cs, &copts, &cr);
    if (r < 0)
        fail_msg("commit failed: %d %s", r, err_message());
    check_export(st, EXPORT_TAR, sp, N, 65536);
    ingest_result_release(&res);
    changeset_release(&cs);
    buf_release(&ar);
    free(names);
    free(sp);
    test_sqlite_close(st, dir);
}

static void test_round_trip_tar(void **state)
{
    (void)state;
    round_trip(F_TAR, 1);
    round_trip(F_TAR, 7);
    round_trip(F_TAR, 65536);
}
static void test_round_trip_tgz(void **state)
{
    (void)state;
    round_trip(F_TGZ, 1);
    round_trip(F_TGZ, 7);
    round_trip(F_TGZ, 65536);
}
static void test_round_trip_tbz2(void **state)
{
    (void)state;
    round_trip(F_TBZ2, 1);
    round_trip(F_TBZ2, 7);
    round_trip(F_TBZ2, 65536);
}
static void test_round_trip_txz(void **state)
{
    (void)state;
    round_trip(F_TXZ, 1);
    round_trip(F_TXZ, 7);
    round_trip(F_TXZ, 65536);
}
static void test_round_trip_tzst(void **state)
{
    (void)state;
    round_trip(F_TZST, 1);
    round_trip(F_TZST, 7);
    round_trip(F_TZST, 65536);
}
static void test_round_trip_zip(void **state)
{
    (void)state;
    round_trip(F_ZIP, 1);
    round_trip(F_ZIP, 7);
    round_trip(F_ZIP, 65536);
}

/* ---- hostile archives ------------------------------------------------------------------------ */

static void test_zip_slip(void **state)
{
    (void)state;
    const struct spec a[] = {{"ok.txt", 'f', 0644, 1, "x", 1}, {"../x", 'f', 0644, 1, "evil", 4}};
    expect_refused(F_TAR, a, 2, &nolimits, -ERR_INVALID_INPUT, "../x");
    expect_refused(F_ZIP, a, 2, &nolimits, -ERR_INVALID_INPUT, "../x");
    const struct spec b[] = {{"a/../../x", 'f', 0644, 1, "evil", 4}};
    expect_refused(F_TGZ, b, 1, &nolimits, -ERR_INVALID_INPUT, "a/../../x");
    const struct spec c[] = {{"a//b", 'f', 0644, 1, "evil", 4}};
    expect_refused(F_TAR, c, 1, &nolimits, -ERR_INVALID_INPUT, "a//b");
}

static void test_absolute(void **state)
{
    (void)state;
    const struct spec a[] = {{"/etc/passwd", 'f', 0644, 1, "root::0:0\n", 10}};
    expect_refused(F_TAR, a, 1, &nolimits, -ERR_INVALID_INPUT, "/etc/passwd");
    expect_refused(F_ZIP, a, 1, &nolimits, -ERR_INVALID_INPUT, "/etc/passwd");
}

static void test_symlink_write_through(void **state)
{
    (void)state;
    const struct spec a[] = {{"l", 'l', 0777, 1, "/etc", 0}, {"l/passwd", 'f', 0644, 1, "evil", 4}};
    expect_refused(F_TAR, a, 2, &nolimits, -ERR_INVALID_INPUT, "l/passwd");
    const struct spec b[] = {{"d/", 'd', 0755, 1, NULL, 0},
                             {"d/up", 'l', 0777, 1, "../../..", 0},
                             {"d/up/x/y", 'f', 0644, 1, "evil", 4}};
    expect_refused(F_TGZ, b, 3, &nolimits, -ERR_INVALID_INPUT, "d/up/x/y");
    expect_refused(F_ZIP, b, 3, &nolimits, -ERR_INVALID_INPUT, "d/up/x/y");
    /* a directory entry through the link is refused as well */
    const struct spec c[] = {{"l", 'l', 0777, 1, "/", 0}, {"l/etc/", 'd', 0755, 1, NULL, 0}};
    expect_refused(F_TAR, c, 2, &nolimits, -ERR_INVALID_INPUT, "l/etc/");
}

static void test_device_fifo(void **state)
{
    (void)state;
    const struct spec a[] = {{"ok", 'f', 0644, 1, "x", 1}, {"dev/null", 'c', 0666, 1, NULL, 0}};
    expect_refused(F_TAR, a, 2, &nolimits, -ERR_INVALID_INPUT, "dev/null");
    const struct spec b[] = {{"fifo", 'p', 0644, 1, NULL, 0}};
    expect_refused(F_TGZ, b, 1, &nolimits, -ERR_INVALID_INPUT, "fifo");
}

static void test_bad_hardlink(void **state)
{
    (void)state;
    const struct spec a[] = {{"h", 'h', 0644, 1, "missing", 0}};
    expect_refused(F_TAR, a, 1, &nolimits, -ERR_INVALID_INPUT, "entry: h");
    const struct spec b[] = {{"h", 'h', 0644, 1, "../../../etc/shadow", 0}};
    expect_refused(F_TAR, b, 1, &nolimits, -ERR_INVALID_INPUT, "entry: h");
}

static void test_limits(void **state)
{
    (void)state;
    const struct spec a[] = {{"a", 'f', 0644, 1, "1", 1},
                             {"b", 'f', 0644, 1, "2", 1},
                             {"c/", 'd', 0755, 1, NULL, 0},
                             {"c/d", 'f', 0644, 1, "3", 1},
                             {"e", 'l', 0777, 1, "a", 0}};
    struct ingest_limits four = {
        .max_files = 4, .max_bytes = 0, .tmp_dir = NULL, .max_path_bytes = 0};
    expect_refused(F_TAR, a, 5, &four, -ERR_TOO_MANY_ENTRIES, "MAX_INGEST_FILES=4");
    struct ingest_limits two_bytes = {
        .max_files = 0, .max_bytes = 2, .tmp_dir = NULL, .max_path_bytes = 0};
    expect_refused(F_TGZ, a, 5, &two_bytes, -ERR_PAYLOAD_TOO_LARGE, "MAX_INGEST_BYTES=2");
    const struct spec big[] = {{"big", 'f', 0644, 1, NULL, 100000}};
    struct ingest_limits small = {
        .max_files = 0, .max_bytes = 99999, .tmp_dir = NULL, .max_path_bytes = 0};
    expect_refused(F_ZIP, big, 1, &small, -ERR_PAYLOAD_TOO_LARGE, "MAX_INGEST_BYTES=99999");
    /* files that can never fit in the sandbox's quota stop the ingest, whatever the format */
    struct ingest_limits quota = {.max_bytes = 1 << 20, .quota_bytes = 99999};
    expect_refused(F_TAR, big, 1, &quota, -ERR_QUOTA, "SANDBOX_QUOTA_BYTES=99999");
    expect_refused(F_TGZ, big, 1, &quota, -ERR_QUOTA, "SANDBOX_QUOTA_BYTES=99999");
    /* paths below /home/user/project (20, 20, 20, 22 and 20 bytes) and e's target "a" (1) */
    struct ingest_limits paths = {
        .max_files = 0, .max_bytes = 0, .tmp_dir = NULL, .max_path_bytes = 102};
    expect_refused(F_TAR, a, 5, &paths, -ERR_PAYLOAD_TOO_LARGE, "MAX_INGEST_PATH_BYTES=102");
    paths.max_path_bytes = 81; /* refused at the fourth entry */
    expect_refused(F_ZIP, a, 5, &paths, -ERR_PAYLOAD_TOO_LARGE, "entry: c/d");
    /* exactly at the limits is fine */
    struct memstore *ms = memstore_new();
    struct buf ar = BUF_INIT(0);
    build(F_TAR, a, 5, &ar);
    struct changeset cs;
    changeset_init(&cs, "ingest");
    struct ingest_result res = {0};
    struct ingest_limits exact = {.max_files = 5,
                                  .max_bytes = 3,
                                  .tmp_dir = NULL,
                                  .max_path_bytes =
                                      23}; /* below /p: 22 bytes of paths, 1 of target */
    assert_int_equal(run_ingest(&ms->base, "/p", ar.data, ar.len, 512, &exact, &cs, &res), 0);
    assert_int_equal(res.file_count, 3);
    assert_int_equal(res.bytes, 3);
    ingest_result_release(&res);
    changeset_release(&cs);
    buf_release(&ar);
    store_close(&ms->base);
}

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* A gzip member holding `len` bytes of `data`, appended to out (libarchive's raw format). */
static void gzip_member(struct buf *out, const void *data, size_t len)
{
    struct archive *a = archive_write_new();
    assert_int_equal(archive_write_set_format_raw(a), ARCHIVE_OK);
    assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    assert_int_equal(archive_write_set_bytes_per_block(a, 0), ARCHIVE_OK);
    assert_int_equal(archive_write_open2(a, out, NULL, buf_write_cb, NULL, NULL), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    archive_entry_copy_pathname(e, "x");
    archive_entry_set_filetype(e, AE_IFREG);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    assert_int_equal(archive_write_data(a, data, len), (la_ssize_t)len);
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    archive_entry_free(e);
}

/* A 1 GiB file of zeros in about 1 MB of tar.gz (concatenated gzip members). */
static void test_bomb(void **state)
{
    (void)state;
    struct archive_entry *e = archive_entry_new();
    archive_entry_copy_pathname(e, "zeros");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)1 << 30);
    /* a ustar header for it */
    struct buf hdr = BUF_INIT(0);
    struct archive *a = archive_write_new();
    archive_write_set_format_ustar(a);
    archive_write_set_bytes_per_block(a, 0);
    archive_write_open2(a, &hdr, NULL, buf_write_cb, NULL, NULL);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    archive_write_free(a); /* its close pads the missing data: only the first 512 bytes matter */
    archive_entry_free(e);
    struct buf gz = BUF_INIT(0);
    gzip_member(&gz, hdr.data, 512);
    uint8_t *mib = calloc(1, 1 << 20);
    struct buf one = BUF_INIT(0);
    gzip_member(&one, mib, 1 << 20);
    for (int i = 0; i < 1024 + 1; i++) /* data and the end-of-archive records */
        assert_int_equal(buf_add(&gz, one.data, one.len), 0);
    assert_true(gz.len < 2 * 1024 * 1024);

    long rss0 = max_rss_kb();
    struct memstore *ms = memstore_new();
    struct changeset cs;
    changeset_init(&cs, "ingest");
    struct ingest_result res = {0};
    int64_t t0 = time_mono_ms();
    /* the declared size alone stops it */
    struct ingest_limits lim = {
        .max_files = 0, .max_bytes = 64 << 20, .tmp_dir = NULL, .max_path_bytes = 0};
    assert_int_equal(run_ingest(&ms->base, "/p", gz.data, gz.len, 65536, &lim, &cs, &res),
                     -ERR_PAYLOAD_TOO_LARGE);
    assert_true(has_detail("MAX_INGEST_BYTES=67108864"));
    /* a declared size that lies: the count while decompressing stops it (64 MiB of zeros in a
     * zip entry whose central directory claims 1000 bytes, against a 1 MiB limit) */
    struct buf zip = BUF_INIT(0);
    a = archive_write_new();
    archive_write_set_format_zip(a);
    archive_write_set_options(a, "zip:compression-level=1");
    archive_write_open2(a, &zip, NULL, buf_write_cb, NULL, NULL);
    e = archive_entry_new();
    archive_entry_copy_pathname(e, "zeros");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    for (int i = 0; i < 64; i++)
        assert_int_equal(archive_write_data(a, mib, 1 << 20), 1 << 20);
    archive_write_close(a);
    archive_write_free(a);
    archive_entry_free(e);
    assert_true(zip.len < 1024 * 1024);
    /* the central directory lies: it claims 1000 bytes */
    uint8_t *cd = memmem(zip.data, zip.len, "PK\1\2", 4);
    assert_non_null(cd);
    cd[24] = 1000 & 0xff;
    cd[25] = 1000 >> 8;
    cd[26] = cd[27] = 0;
    struct ingest_limits lim2 = {
        .max_files = 0, .max_bytes = 1 << 20, .tmp_dir = NULL, .max_path_bytes = 0};
    assert_int_equal(run_ingest(&ms->base, "/p", zip.data, zip.len, 65536, &lim2, &cs, &res),
                     -ERR_PAYLOAD_TOO_LARGE);
    assert_true(has_detail("MAX_INGEST_BYTES=1048576"));
    int64_t ms_taken = time_mono_ms() - t0;
    long grown_kb = max_rss_kb() - rss0;
    fprintf(stderr, "bomb: stopped in %lld ms, peak RSS grew %ld KiB\n", (long long)ms_taken,
            grown_kb);
    assert_true(ms_taken < 5000);
    assert_true(grown_kb < 32 * 1024);
    assert_int_equal(cs.n, 0);
    changeset_release(&cs);
    store_close(&ms->base);
    free(mib);
    buf_release(&one);
    buf_release(&gz);
    buf_release(&hdr);
    buf_release(&zip);
}

/* A tar.gz (padded like tar's output) whose gzip trailer is cut short: the tar's end comes
 * before the missing bytes, which are never needed; the decompressing thread's failure on them
 * must not take away the data it produced before. */
static void test_cut_gzip_trailer(void **state)
{
    (void)state;
    struct memstore *ms = memstore_new();
    enum { N = 600 }; /* under INGEST_QUEUE_BYTES once decompressed */
    struct spec sp[N];
    char names[N][16];
    for (size_t i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "f%03zu", i);
        sp[i] = (struct spec){names[i], 'f', 0644, 1, NULL, 5000};
    }
    struct buf ar = BUF_INIT(0);
    build_last_block = 10240;
    build(F_TGZ, sp, N, &ar);
    build_last_block = 1;
    ar.len -= 4; /* the uncompressed size that ends the gzip trailer */
    struct changeset cs;
    changeset_init(&cs, "ingest");
    struct ingest_result res = {0};
    /* in one piece: the decompressing thread fails long before the worker has read it all */
    int r = run_ingest(&ms->base, "/p", ar.data, ar.len, ar.len, &nolimits, &cs, &res);
    if (r < 0)
        fail_msg("ingest failed: %d %s", r, err_message());
    assert_int_equal(res.file_count, N);
    ingest_result_release(&res);
    changeset_release(&cs);
    buf_release(&ar);
    assert_int_equal(ms->writers_open, 0);
    store_close(&ms->base);
}

static void test_corrupt(void **state)
{
    (void)state;
    struct memstore *ms = memstore_new();
    struct changeset cs;
    changeset_init(&cs, "ingest");
    struct ingest_result res = {0};
    const char junk[] = "this is certainly not an archive of any kind, just some text......";
    assert_int_equal(run_ingest(&ms->base, "/p", junk, sizeof(junk), 7, &nolimits, &cs, &res),
                     -ERR_INVALID_INPUT);
    assert_non_null(strstr(err_message(), "archive"));
    assert_int_equal(run_ingest(&ms->base, "/p", "", 0, 7, &nolimits, &cs, &res),
                     -ERR_INVALID_INPUT);
    /* truncated: every compressed format cut in the middle */
    const struct spec sp[] = {{"big", 'f', 0644, 1, NULL, 200000}, {"after", 'f', 0644, 1, "x", 1}};
    enum fmt fmts[] = {F_TAR, F_TGZ, F_TBZ2, F_TXZ, F_TZST, F_ZIP};
    for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
        struct buf ar = BUF_INIT(0);
        build(fmts[i], sp, 2, &ar);
        int r = run_ingest(&ms->base, "/p", ar.data, ar.len / 2, 4096, &nolimits, &cs, &res);
        if (r != -ERR_INVALID_INPUT)
            fail_msg("format %zu truncated: %d", i, r);
        /* corrupt bytes early in a compressed stream (libarchive does not check gzip's CRC,
         * so damage inside a stored deflate block would go unnoticed: hit the block headers) */
        if (fmts[i] != F_TAR && fmts[i] != F_ZIP) {
            for (size_t k = 24; k < 24 + 64; k++)
                ar.data[k] ^= 0x5a;
            r = run_ingest(&ms->base, "/p", ar.data, ar.len, 4096, &nolimits, &cs, &res);
            if (r != -ERR_INVALID_INPUT)
                fail_msg("format %zu corrupt: %d", i, r);
        }
        buf_release(&ar);
    }
    assert_int_equal(cs.n, 0);
    assert_int_equal(ms->writers_open, 0);
    changeset_release(&cs);
    store_close(&ms->base);
}

static void test_abort(void **state)
{
    (void)state;
    struct memstore *ms = memstore_new();
    const struct spec sp[] = {{"a", 'f', 0644, 1, NULL, 3 << 20},
                              {"b", 'f', 0644, 1, NULL, 3 << 20}};
    struct buf ar = BUF_INIT(0);
    build(F_TGZ, sp, 2, &ar);
    struct ingest *ing = NULL;
    assert_int_equal(ingest_new(&ms->base, "/p", &nolimits, &ing), 0);
    assert_int_equal(ingest_feed(ing, ar.data, ar.len / 2), 0);
    ingest_abort(ing);
    assert_int_equal(ms->writers_open, 0);
    assert_int_equal(ms->commits, 0);
    /* abort right away, before any byte */
    assert_int_equal(ingest_new(&ms->base, "/p", &nolimits, &ing), 0);
    ingest_abort(ing);
    ingest_abort(NULL);
    /* a feed after the worker failed reports the failure at once */
    assert_int_equal(ingest_new(&ms->base, "/p", &nolimits, &ing), 0);
    int r = 0;
    for (int i = 0; i < 100 && r == 0; i++) {
        r = ingest_feed(ing, "garbage!", 8);
        if (r == 0)
            usleep(1000);
    }
    uint8_t lots[1 << 16];
    memset(lots, 'g', sizeof(lots));
    for (int i = 0; i < 200 && r == 0; i++) /* 12 MiB: more than the queue holds */
        r = ingest_feed(ing, lots, sizeof(lots));
    assert_int_equal(r, -ERR_INVALID_INPUT);
    ingest_abort(ing);
    buf_release(&ar);
    store_close(&ms->base);
}

/* Zip bodies are spooled under tmp_dir; a broken tmp_dir is a server error, never a 404, and
 * does not concern tar bodies. */
static void test_zip_spool_dir(void **state)
{
    (void)state;
    struct memstore *ms = memstore_new();
    const struct spec sp[] = {{"a", 'f', 0644, 2, "zip", 3}};
    struct ingest_limits bad = {.max_files = 0,
                                .max_bytes = 0,
                                .tmp_dir = "/nonexistent-dir-for-sqlfs-tests",
                                .max_path_bytes = 0};
    struct changeset cs;
    changeset_init(&cs, "ingest");
    struct ingest_result res = {0};
    struct buf ar = BUF_INIT(0);
    build(F_ZIP, sp, 1, &ar);
    assert_int_equal(run_ingest(&ms->base, "/p", ar.data, ar.len, 100, &bad, &cs, &res), -EIO);
    assert_int_equal(cs.n, 0);
    buf_release(&ar);
    build(F_TGZ, sp, 1, &ar);
    assert_int_equal(run_ingest(&ms->base, "/p", ar.data, ar.len, 100, &bad, &cs, &res), 0);
    assert_int_equal(res.file_count, 1);
    ingest_result_release(&res);
    /* a usable tmp_dir is used, and the spool leaves no file behind */
    struct ingest_limits good = {
        .max_files = 0, .max_bytes = 0, .tmp_dir = "/tmp", .max_path_bytes = 0};
    buf_release(&ar);
    build(F_ZIP, sp, 1, &ar);
    assert_int_equal(run_ingest(&ms->base, "/p", ar.data, ar.len, 100, &good, &cs, &res), 0);
    ingest_result_release(&res);
    changeset_release(&cs);
    buf_release(&ar);
    store_close(&ms->base);
}

static void test_duplicates_and_dot(void **state)
{
    (void)state;
    struct memstore *ms = memstore_new();
    const struct spec sp[] = {{"./", 'd', 0755, 1, NULL, 0},
                              {"./a", 'f', 0644, 1, "first", 5},
                              {"./a", 'f', 0600, 2, "second!", 7},
                              {"x", 'l', 0777, 1, "a", 0},
                              {"x", 'f', 0644, 1, "replaced the link", 17},
                              {"x2/", 'd', 0755, 1, NULL, 0}};
    struct buf ar = BUF_INIT(0);
    build(F_TAR, sp, 6, &ar);
    struct changeset cs;
    changeset_init(&cs, "ingest");
    struct ingest_result res = {0};
    assert_int_equal(run_ingest(&ms->base, "/", ar.data, ar.len, 100, &nolimits, &cs, &res), 0);
    assert_int_equal(res.file_count, 2);
    assert_int_equal(res.bytes, 7 + 17);
    assert_int_equal(cs.n, 3);
    const struct change *a = find_change(&cs, "/a");
    assert_int_equal(a->meta.size, 7);
    assert_int_equal(a->meta.mode, 0600);
    assert_int_equal(find_change(&cs, "/x")->meta.kind, FILE_KIND_FILE);
    ingest_result_release(&res);
    changeset_release(&cs);
    buf_release(&ar);
    store_close(&ms->base);
}

static void test_setuid_dropped(void **state)
{
    (void)state;
    struct memstore *ms = memstore_new();
    const struct spec sp[] = {{"suid", 'f', 06755, 1, "x", 1}, {"tmp/", 'd', 01777, 1, NULL, 0}};
    struct buf ar = BUF_INIT(0);
    build(F_TAR, sp, 2, &ar);
    struct changeset cs;
    changeset_init(&cs, "ingest");
    struct ingest_result res = {0};
    assert_int_equal(run_ingest(&ms->base, "/p", ar.data, ar.len, 100, &nolimits, &cs, &res), 0);
    assert_int_equal(find_change(&cs, "/p/suid")->meta.mode, 0755);
    assert_int_equal(find_change(&cs, "/p/tmp")->meta.mode, 01777);
    ingest_result_release(&res);
    changeset_release(&cs);
    buf_release(&ar);
    store_close(&ms->base);
}

/* ---- base64 and ingest-files ------------------------------------------------------------------
 */

static void expect_b64(const char *in, const char *want)
{
    uint8_t *out = NULL;
    size_t len = 99;
    assert_int_equal(b64_decode(in, strlen(in), &out, &len), 0);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(out, want, len);
    free(out);
}

static void expect_b64_bad(const char *in, size_t len)
{
    size_t n;
    uint8_t *out = NULL;
    assert_int_equal(b64_check(in, len, &n), -EINVAL);
    assert_int_equal(b64_decode(in, len, &out, &n), -EINVAL);
    assert_null(out);
}

static void test_b64(void **state)
{
    (void)state;
    expect_b64("", "");
    expect_b64("Zg==", "f");
    expect_b64("Zm8=", "fo");
    expect_b64("Zm9v", "foo");
    expect_b64("Zm9vYg==", "foob");
    expect_b64("Zm9vYmE=", "fooba");
    expect_b64("Zm9vYmFy", "foobar");
    expect_b64("+/+/", "\xfb\xff\xbf");
    /* binary with NULs */
    uint8_t *out = NULL;
    size_t len = 0;
    assert_int_equal(b64_decode("AAEA", 4, &out, &len), 0);
    assert_int_equal(len, 3);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 1);
    assert_int_equal(out[2], 0);
    free(out);
    expect_b64_bad("Zg", 2);        /* unpadded */
    expect_b64_bad("Zg=", 3);       /* wrong length */
    expect_b64_bad("Zm9v\n", 5);    /* newline */
    expect_b64_bad("Zm9v YmFy", 9); /* space */
    expect_b64_bad(" Zm9", 4);      /* leading space */
    expect_b64_bad("Zm9\t", 4);     /* tab */
    expect_b64_bad("Z===", 4);      /* too much padding */
    expect_b64_bad("Zg=a", 4);      /* padding in the middle */
    expect_b64_bad("Zg==Zg==", 8);  /* padding before the end */
    expect_b64_bad("Zm9-", 4);      /* URL-safe alphabet */
    expect_b64_bad("Zm9_", 4);
    expect_b64_bad("Zm\0v", 4); /* NUL */
    expect_b64_bad("====", 4);
    /* round trip of every length 0..300 through encode/decode */
    uint8_t src[300];
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (uint8_t)(i * 7 + 3);
    for (size_t n = 0; n <= sizeof(src); n++) {
        char *enc = NULL;
        size_t elen = 0;
        assert_int_equal(b64_encode(src, n, &enc, &elen), 0);
        size_t dl = 0;
        assert_int_equal(b64_check(enc, elen, &dl), 0);
        assert_int_equal(dl, n);
        assert_int_equal(b64_decode(enc, elen, &out, &len), 0);
        assert_int_equal(len, n);
        assert_memory_equal(out, src, n);
        free(out);
        free(enc);
    }
}

static void test_ingest_files(void **state)
{
    (void)state;
    char dir[64];
    struct store *st = test_sqlite_open(dir);
    assert_non_null(st);
    json_t *files = json_pack("{s:s, s:s, s:s}", "a.txt", "aGVsbG8=", "dir/b.bin", "AAEC", "e", "");
    struct changeset cs;
    changeset_init(&cs, "ingest");
    struct ingest_result res = {0};
    err_clear();
    assert_int_equal(ingest_files_build(st, "/home/user/x", files, 10, 100, &cs, &res), 0);
    assert_int_equal(res.file_count, 3);
    assert_int_equal(res.bytes, 8);
    assert_true(cs.create_parents);
    assert_int_equal(cs.n, 3);
    const struct change *c = find_change(&cs, "/home/user/x/a.txt");
    assert_non_null(c);
    assert_int_equal(c->meta.mode, 0644);
    assert_int_equal(c->meta.size, 5);
    assert_true(c->meta.has_content);
    assert_false(find_change(&cs, "/home/user/x/e")->meta.has_content);
    assert_int_equal(store_commit(st, TEST_SB, &cs, &copts, NULL), 0);
    struct content_reader *rd = NULL;
    assert_int_equal(store_content_open(st, c->meta.content, &rd), 0);
    char got[16];
    size_t n = 0;
    assert_int_equal(store_content_read(st, rd, got, sizeof(got), &n), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(got, "hello", 5);
    store_content_close(st, rd);
    ingest_result_release(&res);
    changeset_release(&cs);
    json_decref(files);
    test_sqlite_close(st, dir);
    struct memstore *ms = memstore_new();

    /* every bad key is named; nothing is stored */
    changeset_init(&cs, "ingest");
    files = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:s}", "good", "Zm9v", "/abs",
                      "Zm9v", "../up", "Zm9v", "a/./b", "Zm9v", "a//b", "Zm9v", "num", 5, "ws",
                      "Zm9v\n", "pad", "Zg=", "p", "Zm9v", "p/child", "Zm9v");
    int before = ms->writers_begun;
    err_clear();
    assert_int_equal(ingest_files_build(&ms->base, "/home/user/x", files, 100, 1000, &cs, &res),
                     -ERR_INVALID_INPUT);
    const char *bad[] = {"/abs:", "../up:", "a/./b:", "a//b:", "num:", "ws:", "pad:", "p:"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (!has_detail(bad[i]))
            fail_msg("no detail for %s", bad[i]);
    assert_false(has_detail("good"));
    assert_false(has_detail("p/child"));
    assert_int_equal(err_detail_count(), 8);
    assert_int_equal(cs.n, 0);
    assert_int_equal(ms->writers_begun, before);
    json_decref(files);

    /* limits */
    files = json_pack("{s:s, s:s}", "a", "Zm9v", "b", "Zm9v");
    err_clear();
    assert_int_equal(ingest_files_build(&ms->base, "/x", files, 1, 0, &cs, &res),
                     -ERR_TOO_MANY_ENTRIES);
    assert_true(has_detail("MAX_INGEST_FILES=1"));
    err_clear();
    assert_int_equal(ingest_files_build(&ms->base, "/x", files, 0, 5, &cs, &res),
                     -ERR_PAYLOAD_TOO_LARGE);
    assert_true(has_detail("MAX_INGEST_BYTES=5"));
    assert_int_equal(ingest_files_build(&ms->base, "/x", files, 2, 6, &cs, &res), 0);
    ingest_result_release(&res);
    json_decref(files);
    err_clear();
    assert_int_equal(ingest_files_build(&ms->base, "/x", json_null(), 2, 6, &cs, &res),
                     -ERR_INVALID_INPUT);
    changeset_release(&cs);
    store_close(&ms->base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bomb), /* first: its peak-RSS check needs a low baseline */
        cmocka_unit_test(test_round_trip_tar),
        cmocka_unit_test(test_round_trip_tgz),
        cmocka_unit_test(test_many_files_sqlite),
        cmocka_unit_test(test_round_trip_tbz2),
        cmocka_unit_test(test_round_trip_txz),
        cmocka_unit_test(test_round_trip_tzst),
        cmocka_unit_test(test_round_trip_zip),
        cmocka_unit_test(test_zip_slip),
        cmocka_unit_test(test_absolute),
        cmocka_unit_test(test_symlink_write_through),
        cmocka_unit_test(test_device_fifo),
        cmocka_unit_test(test_bad_hardlink),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_cut_gzip_trailer),
        cmocka_unit_test(test_abort),
        cmocka_unit_test(test_duplicates_and_dot),
        cmocka_unit_test(test_zip_spool_dir),
        cmocka_unit_test(test_setuid_dropped),
        cmocka_unit_test(test_b64),
        cmocka_unit_test(test_ingest_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
