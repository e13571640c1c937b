#include "unit.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/cleanup.h"

static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

/* Opens /dev/null into a _cleanup_close_ local; hands it out when `keep`. */
static int open_scoped(bool keep, int *ret_fd, int *seen_fd)
{
    _cleanup_close_ int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    *seen_fd = fd;
    if (!keep) {
        errno = ENOSPC; /* the cleanup's close must not change it */
        return -1;
    }
    *ret_fd = TAKE_FD(fd);
    assert_int_equal(fd, -1);
    return 0;
}

static void test_close_and_take_fd(void **state)
{
    (void)state;
    int fd = -1, seen = -1;
    assert_int_equal(open_scoped(false, &fd, &seen), -1);
    assert_int_equal(errno, ENOSPC);
    assert_false(fd_open(seen)); /* closed at scope exit */
    assert_int_equal(open_scoped(true, &fd, &seen), 0);
    assert_int_equal(fd, seen);
    assert_true(fd_open(fd)); /* taken: not closed */
    close(fd);
}

static char *dup_scoped(const char *s, bool keep)
{
    _cleanup_free_ char *copy = strdup(s);
    _cleanup_free_ char *scratch = malloc(64); /* freed on every path (ASan checks) */
    assert_non_null(copy);
    assert_non_null(scratch);
    if (!keep)
        return NULL;
    char *out = TAKE_PTR(copy);
    assert_null(copy);
    return out;
}

static void test_free_and_take_ptr(void **state)
{
    (void)state;
    assert_null(dup_scoped("x", false));
    char *s = dup_scoped("kept", true);
    assert_string_equal(s, "kept");
    free(s);
}

static void test_file_dir_and_custom(void **state)
{
    (void)state;
    {
        _cleanup_fclose_ FILE *f = fopen("/dev/null", "re");
        _cleanup_fclose_ FILE *none = NULL;
        _cleanup_closedir_ DIR *d = opendir("/");
        _cleanup_closedir_ DIR *nodir = NULL;
        _cleanup_(buf_release) struct buf b = BUF_INIT(0);
        assert_non_null(f);
        assert_non_null(d);
        assert_int_equal(buf_addstr(&b, "released at scope exit"), 0);
        (void)none;
        (void)nodir;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_and_take_fd),
        cmocka_unit_test(test_free_and_take_ptr),
        cmocka_unit_test(test_file_dir_and_custom),
    };
    return cmocka_run_group_tests_name("cleanup", tests, NULL, NULL);
}
