#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/secret.h"
#include "util/err.h"

static char tmpdir[] = "/tmp/sqlfs-secret-XXXXXX";

static int setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void path_in(char *out, size_t n, const char *rel)
{
    snprintf(out, n, "%s/%s", tmpdir, rel);
}

/* Makes the data directory tmpdir/name (0700) and names its auth_secret file. */
static void secret_dir(const char *name, char dir[256], char file[300])
{
    path_in(dir, 256, name);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(file, 300, "%s/auth_secret", dir);
}

static void write_file(const char *path, const char *content, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void test_create_and_reload(void **state)
{
    (void)state;
    char dir[256], file[300];
    path_in(dir, sizeof(dir), "a/b/data"); /* parents are created too */
    snprintf(file, sizeof(file), "%s/auth_secret", dir);

    char *s1 = NULL, *s2 = NULL;
    bool created = false;
    assert_int_equal(secret_load_or_create(dir, &s1, &created), 0);
    assert_true(created);
    assert_int_equal(strlen(s1), 64);
    for (const char *p = s1; *p; p++)
        assert_non_null(strchr("0123456789abcdef", *p));

    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_uid, geteuid());
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    assert_int_equal(secret_load_or_create(dir, &s2, &created), 0);
    assert_false(created);
    assert_string_equal(s1, s2);
    free(s2);
    assert_int_equal(secret_load(dir, &s2), 0);
    assert_string_equal(s1, s2);
    free(s2);

    /* No temporary files are left behind. */
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "test $(ls -A '%s' | wc -l) -eq 1", dir);
    assert_int_equal(system(cmd), 0);

    /* Two data dirs get different secrets. */
    path_in(dir, sizeof(dir), "other");
    assert_int_equal(secret_load_or_create(dir, &s2, NULL), 0);
    assert_string_not_equal(s1, s2);
    free(s1);
    free(s2);
}

static void test_refuse_unsafe(void **state)
{
    (void)state;
    char dir[256], file[300];
    secret_dir("loose", dir, file);
    write_file(file, "operator-chosen-0123456789abcdef-0123\n", 0644);

    char *s = NULL;
    err_clear();
    assert_int_equal(secret_load_or_create(dir, &s, NULL), -EACCES);
    assert_null(s);
    assert_non_null(strstr(err_message(), "0644"));
    assert_null(strstr(err_message(), tmpdir)); /* no host paths in messages */
    assert_int_equal(secret_load(dir, &s), -EACCES);
    /* The refused file is left untouched. */
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);

    assert_int_equal(chmod(file, 0640), 0);
    assert_int_equal(secret_load(dir, &s), -EACCES);
    assert_int_equal(chmod(file, 0600), 0);
    assert_int_equal(secret_load(dir, &s), 0);
    assert_string_equal(s, "operator-chosen-0123456789abcdef-0123"); /* whitespace trimmed */
    free(s);
    s = NULL;

    write_file(file, " \n\t", 0600);
    assert_int_equal(secret_load(dir, &s), -EINVAL);

    /* A symlink in place of the file is refused, even to a safe target. */
    char target[300];
    path_in(target, sizeof(target), "target");
    write_file(target, "abc", 0600);
    assert_int_equal(unlink(file), 0);
    assert_int_equal(symlink(target, file), 0);
    assert_int_equal(secret_load(dir, &s), -EINVAL);
    assert_int_equal(secret_load_or_create(dir, &s, NULL), -EINVAL);
    assert_null(s);

    /* A directory in its place too. */
    assert_int_equal(unlink(file), 0);
    assert_int_equal(mkdir(file, 0700), 0);
    assert_int_equal(secret_load(dir, &s), -EINVAL);
}

static void test_missing(void **state)
{
    (void)state;
    char dir[256];
    path_in(dir, sizeof(dir), "absent");
    char *s = NULL;
    assert_int_equal(secret_load(dir, &s), -ENOENT);
    assert_int_equal(mkdir(dir, 0700), 0);
    err_clear();
    assert_int_equal(secret_load(dir, &s), -ENOENT);
    assert_non_null(err_message());
    assert_null(s);
    assert_int_equal(secret_load("", &s), -EINVAL);
    assert_int_equal(secret_load_or_create("", &s, NULL), -EINVAL);
}

static void test_too_long(void **state)
{
    (void)state;
    char dir[256], file[300];
    secret_dir("long", dir, file);
    char *big = malloc(SECRET_MAX_LEN + 2);
    memset(big, 'k', SECRET_MAX_LEN + 1);
    big[SECRET_MAX_LEN + 1] = '\0';
    write_file(file, big, 0600);
    char *s = NULL;
    assert_int_equal(secret_load(dir, &s), -EINVAL);
    big[SECRET_MAX_LEN] = '\0';
    write_file(file, big, 0600);
    assert_int_equal(secret_load(dir, &s), 0);
    assert_int_equal(strlen(s), SECRET_MAX_LEN);
    free(s);
    free(big);
}

static void test_too_short(void **state)
{
    (void)state;
    char dir[256], file[300];
    secret_dir("short", dir, file);
    /* 31 bytes once the surrounding whitespace is trimmed: refused, whatever the padding. */
    write_file(file, "  0123456789abcdef0123456789abcde\n\n", 0600);
    char *s = NULL;
    err_clear();
    assert_int_equal(secret_load(dir, &s), -EINVAL);
    assert_null(s);
    const char *m = err_message();
    assert_non_null(strstr(m, "auth_secret in the data directory is 31 bytes"));
    assert_non_null(strstr(m, "at least 32 bytes"));
    assert_non_null(strstr(m, "openssl rand -hex 32"));
    assert_null(strstr(m, tmpdir));
    assert_null(strchr(m, '\n'));
    /* ... and not replaced by a generated one: the operator chose it. */
    assert_int_equal(secret_load_or_create(dir, &s, NULL), -EINVAL);
    assert_null(s);
    write_file(file, "0123456789abcdef0123456789abcdef\n", 0600); /* 32: enough */
    assert_int_equal(secret_load(dir, &s), 0);
    assert_int_equal(strlen(s), 32);
    free(s);

    err_clear();
    assert_int_equal(secret_check_length("AUTH_SECRET", 0), -EINVAL);
    assert_string_equal(err_message(),
                        "AUTH_SECRET is 0 bytes: a signing secret must be at least 32 bytes "
                        "(make one with: openssl rand -hex 32)");
    assert_int_equal(secret_check_length("AUTH_SECRET", 31), -EINVAL);
    assert_int_equal(secret_check_length("AUTH_SECRET", 32), 0);
}

static void test_equal(void **state)
{
    (void)state;
    assert_true(secret_equal("abc", 3, "abc", 3));
    assert_false(secret_equal("abc", 3, "abd", 3));
    assert_false(secret_equal("abc", 3, "abcd", 4));
    assert_false(secret_equal("abc", 3, "ab", 2));
    assert_true(secret_equal("", 0, "", 0));
    assert_false(secret_equal("a\0b", 3, "a\0c", 3)); /* binary-safe */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_and_reload), cmocka_unit_test(test_refuse_unsafe),
        cmocka_unit_test(test_missing),           cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_too_short),         cmocka_unit_test(test_equal),
    };
    return cmocka_run_group_tests_name("secret", tests, setup, teardown);
}
