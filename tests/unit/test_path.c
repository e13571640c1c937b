#include "unit.h"

#include <errno.h>

#include "util/path.h"

static void expect_norm(const char *in, const char *want)
{
    char *out = NULL;
    assert_int_equal(path_normalize(in, strlen(in), &out), 0);
    assert_string_equal(out, want);
    free(out);
}

static void test_normalize(void **state)
{
    (void)state;
    expect_norm("/", "/");
    expect_norm("/a/b", "/a/b");
    expect_norm("a/b/", "/a/b");
    expect_norm("//a//./b/", "/a/b");
    expect_norm("/a/../b", "/b");
    expect_norm("/../../etc/passwd", "/etc/passwd");
    expect_norm("/a/b/../../..", "/");
    expect_norm("/home/user/..x", "/home/user/..x");
}

static void test_normalize_rejects(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(path_normalize("", 0, &out), -EINVAL);
    assert_int_equal(path_normalize("/a\0b", 4, &out), -EINVAL);
    char longname[300];
    memset(longname, 'x', sizeof(longname));
    longname[0] = '/';
    assert_int_equal(path_normalize(longname, sizeof(longname), &out), -ENAMETOOLONG);
    char *huge = malloc(5000);
    for (int i = 0; i < 5000; i += 2) {
        huge[i] = '/';
        huge[i + 1] = 'a';
    }
    assert_int_equal(path_normalize(huge, 5000, &out), -ENAMETOOLONG);
    free(huge);
    assert_null(out);
}

static void test_join_strict(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(path_join_strict("/base", "a/b.txt", &out), 0);
    assert_string_equal(out, "/base/a/b.txt");
    free(out);
    assert_int_equal(path_join_strict("/base", "./a/", &out), 0);
    assert_string_equal(out, "/base/a");
    free(out);
    assert_int_equal(path_join_strict("/", "x", &out), 0);
    assert_string_equal(out, "/x");
    free(out);
    out = NULL;
    assert_int_equal(path_join_strict("/base", "../x", &out), -EINVAL);
    assert_int_equal(path_join_strict("/base", "a/../../x", &out), -EINVAL);
    assert_int_equal(path_join_strict("/base", "/etc/passwd", &out), -EINVAL);
    assert_int_equal(path_join_strict("/base", "a//b", &out), -EINVAL);
    assert_int_equal(path_join_strict("/base", "a/./b", &out), -EINVAL);
    /* found by fuzz_path: a doubled "./" collapsed to the base directory itself */
    assert_int_equal(path_join_strict("/base", "././", &out), -EINVAL);
    assert_int_equal(path_join_strict("/base", "./././a", &out), -EINVAL);
    assert_int_equal(path_join_strict("/base", "", &out), -EINVAL);
    assert_null(out);
}

static void test_helpers(void **state)
{
    (void)state;
    assert_true(path_is_within("/a/b", "/a"));
    assert_true(path_is_within("/a", "/a"));
    assert_false(path_is_within("/ab", "/a"));
    assert_true(path_is_within("/x", "/"));
    char *p = path_parent("/a/b");
    assert_string_equal(p, "/a");
    free(p);
    p = path_parent("/a");
    assert_string_equal(p, "/");
    free(p);
    p = path_parent("/");
    assert_string_equal(p, "/");
    free(p);
    assert_string_equal(path_basename("/a/b"), "b");
    assert_int_equal(path_depth("/"), 0);
    assert_int_equal(path_depth("/a/b"), 2);
    char *r = NULL;
    assert_int_equal(path_resolve("/home/user", "x/../y", &r), 0);
    assert_string_equal(r, "/home/user/y");
    free(r);
    assert_int_equal(path_resolve("/home/user", "/etc", &r), 0);
    assert_string_equal(r, "/etc");
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_normalize_rejects),
        cmocka_unit_test(test_join_strict),
        cmocka_unit_test(test_helpers),
    };
    return cmocka_run_group_tests_name("path", tests, NULL, NULL);
}
