/* Symlink resolution inside a sandbox (sandbox_resolve): relative and absolute targets, ".."
 * that stays at the sandbox root, loops, dangling links and non-directories on the way, over an
 * in-memory store holding one sandbox tree. */
#include "unit.h"

#include <errno.h>

#include "memstore.h"
#include "sandbox/sandbox.h"

static struct memstore *ms;
static struct sandboxes *sbx;

static void put(const char *path, enum file_kind kind, const char *target)
{
    struct changeset cs;
    changeset_init(&cs, "test");
    cs.create_parents = true;
    struct file_meta m = {.path = (char *)path, .kind = kind, .mode = 0755};
    if (target) {
        m.target = (char *)target;
        m.size = (int64_t)strlen(target);
    }
    assert_int_equal(changeset_put(&cs, &m), 0);
    assert_int_equal(store_commit(&ms->base, TEST_SB, &cs, NULL, NULL), 0);
    changeset_release(&cs);
}

static void link_to(const char *path, const char *target)
{
    put(path, FILE_KIND_SYMLINK, target);
}

static int setup(void **state)
{
    (void)state;
    ms = memstore_new();
    struct sandbox_config cfg = {0};
    assert_int_equal(sandboxes_new(&ms->base, &cfg, &sbx), 0);
    put("/d", FILE_KIND_DIR, NULL);
    put("/d/sub", FILE_KIND_DIR, NULL);
    put("/d/f", FILE_KIND_FILE, NULL);
    put("/d/sub/g", FILE_KIND_FILE, NULL);
    link_to("/abs", "/d");                       /* absolute */
    link_to("/rel", "d/sub");                    /* relative to its own directory */
    link_to("/d/sub/up", "../f");                /* relative with ".." */
    link_to("/d/sub/esc", "../../../../../d/f"); /* ".." beyond the root stays at the root */
    link_to("/d/sub/host", "/etc/passwd");       /* absolute: the sandbox's /etc, not the host's */
    link_to("/d/sub/dot", "./g");
    link_to("/d/sub/parent", "..");
    link_to("/root", "/");
    link_to("/d/chain", "/abs/sub/up"); /* a link through links */
    link_to("/loop1", "/loop2");
    link_to("/loop2", "/loop1");
    link_to("/self", "self");
    link_to("/dangling", "/nope");
    link_to("/dangling_dir", "/nodir/x");
    link_to("/through_file", "/d/f/x");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sandboxes_free(sbx);
    store_close(&ms->base);
    return 0;
}

/* Resolves path; returns the code, with the resolved path and kind (0 when not resolved). */
static int resolve(const char *path, bool follow_last, char **ret_path, enum file_kind *ret_kind)
{
    struct file_meta m;
    memset(&m, 0, sizeof(m));
    *ret_path = (char *)"unset";
    int r = sandbox_resolve(sbx, TEST_SB, path, follow_last, ret_path, &m);
    *ret_kind = 0;
    if (r == 0) {
        assert_string_equal(m.path, *ret_path);
        *ret_kind = m.kind;
        file_meta_release(&m);
    }
    return r;
}

static void expect(const char *path, bool follow_last, const char *want, enum file_kind kind)
{
    char *got = NULL;
    enum file_kind k;
    int r = resolve(path, follow_last, &got, &k);
    if (r != 0)
        fail_msg("%s: %d", path, r);
    assert_string_equal(got, want);
    assert_int_equal(k, kind);
    free(got);
}

/* Fails with `code`; *ret_path is `where` (NULL: not set). */
static void expect_error(const char *path, bool follow_last, int code, const char *where)
{
    char *got = NULL;
    enum file_kind k;
    assert_int_equal(resolve(path, follow_last, &got, &k), code);
    if (where) {
        assert_non_null(got);
        assert_string_equal(got, where);
    } else {
        assert_null(got);
    }
    free(got);
}

static void test_plain_paths(void **state)
{
    (void)state;
    expect("/", true, "/", FILE_KIND_DIR);
    expect("/d", true, "/d", FILE_KIND_DIR);
    expect("/d/sub/g", true, "/d/sub/g", FILE_KIND_FILE);
}

static void test_absolute_and_relative_links(void **state)
{
    (void)state;
    expect("/abs", true, "/d", FILE_KIND_DIR);
    expect("/abs/f", true, "/d/f", FILE_KIND_FILE);
    expect("/rel", true, "/d/sub", FILE_KIND_DIR);
    expect("/rel/g", true, "/d/sub/g", FILE_KIND_FILE);
    expect("/d/sub/up", true, "/d/f", FILE_KIND_FILE);
    expect("/d/sub/dot", true, "/d/sub/g", FILE_KIND_FILE);
    expect("/d/sub/parent", true, "/d", FILE_KIND_DIR);
    expect("/d/sub/parent/sub/parent/f", true, "/d/f", FILE_KIND_FILE);
    expect("/root", true, "/", FILE_KIND_DIR);
    expect("/root/root/d/f", true, "/d/f", FILE_KIND_FILE);
    expect("/d/chain", true, "/d/f", FILE_KIND_FILE);
}

/* A target never leaves the sandbox: ".." stops at its root and "/" is its root. */
static void test_clamped_at_root(void **state)
{
    (void)state;
    expect("/d/sub/esc", true, "/d/f", FILE_KIND_FILE);
    expect_error("/d/sub/host", true, -ENOENT, NULL); /* the sandbox has no /etc */
}

/* follow_last false: the last segment is the link itself; the ones before it are followed. */
static void test_last_not_followed(void **state)
{
    (void)state;
    expect("/abs", false, "/abs", FILE_KIND_SYMLINK);
    expect("/abs/sub/up", false, "/d/sub/up", FILE_KIND_SYMLINK);
    expect("/loop1", false, "/loop1", FILE_KIND_SYMLINK);
    expect("/dangling", false, "/dangling", FILE_KIND_SYMLINK);
}

static void test_loops(void **state)
{
    (void)state;
    expect_error("/loop1", true, -ELOOP, NULL);
    expect_error("/self", true, -ELOOP, NULL);
    expect_error("/loop1/x", false, -ELOOP, NULL); /* an intermediate loop, even unfollowed */
}

/* At most 40 links are followed on the way: a chain of 40 resolves, one of 41 is a loop. */
static void test_link_limit(void **state)
{
    (void)state;
    char path[32], target[32];
    for (int i = 1; i <= 41; i++) {
        snprintf(path, sizeof(path), "/c%d", i);
        snprintf(target, sizeof(target), i == 1 ? "/d/f" : "/c%d", i - 1);
        link_to(path, target);
    }
    expect("/c40", true, "/d/f", FILE_KIND_FILE);
    expect_error("/c41", true, -ELOOP, NULL);
}

/* A missing last node still tells where it would be, when its parent exists (a write creates it
 * there); a missing parent or a file used as a directory does not. */
static void test_missing_and_dangling(void **state)
{
    (void)state;
    expect_error("/d/new", true, -ENOENT, "/d/new");
    expect_error("/abs/new", true, -ENOENT, "/d/new");
    expect_error("/dangling", true, -ENOENT, "/nope");
    expect_error("/dangling_dir", true, -ENOENT, NULL);
    expect_error("/nodir/x", true, -ENOENT, NULL);
    expect_error("/d/f/x", true, -ENOTDIR, NULL);
    expect_error("/through_file", true, -ENOTDIR, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_paths),
        cmocka_unit_test(test_absolute_and_relative_links),
        cmocka_unit_test(test_clamped_at_root),
        cmocka_unit_test(test_last_not_followed),
        cmocka_unit_test(test_loops),
        cmocka_unit_test(test_link_limit),
        cmocka_unit_test(test_missing_and_dangling),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
