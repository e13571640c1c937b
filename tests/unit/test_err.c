#include "unit.h"

#include <errno.h>
#include <pthread.h>

#include "util/err.h"

static void expect(int code, const char *wire, int status, bool retryable)
{
    const struct err_info *e = err_info(code);
    assert_non_null(e);
    if (strcmp(e->code, wire) != 0 || e->status != status || e->retryable != retryable)
        fail_msg("code %d → %s %d %d, want %s %d %d", code, e->code, e->status, e->retryable, wire,
                 status, retryable);
    assert_non_null(e->message);
    /* Sign does not matter. */
    assert_ptr_equal(err_info(-code), e);
}

static void test_errno_mapping(void **state)
{
    (void)state;
    expect(-ENOENT, "ENOENT", 404, false);
    expect(-EISDIR, "EISDIR", 400, false);
    expect(-ENOTDIR, "ENOTDIR", 400, false);
    expect(-EEXIST, "EEXIST", 409, false);
    expect(-ENOTEMPTY, "ENOTEMPTY", 409, false);
    expect(-ELOOP, "ELOOP", 400, false);
    expect(-EINVAL, "EINVAL", 400, false);
    expect(-EFBIG, "EFBIG", 413, false);
    expect(-ENAMETOOLONG, "ENAMETOOLONG", 400, false);
    expect(-ENOSPC, "ENOSPC", 507, true);
    expect(-EDQUOT, "ENOSPC", 507, true);
    expect(-EBUSY, "EBUSY", 503, true);
    expect(-EAGAIN, "EBUSY", 503, true);
}

static void test_sqlfs_codes(void **state)
{
    (void)state;
    expect(-ERR_INVALID_INPUT, "INVALID_INPUT", 400, false);
    expect(-ERR_EDIT_BINARY, "EDIT_BINARY", 400, false);
    expect(-ERR_AUTH_REQUIRED, "AUTH_REQUIRED", 401, false);
    expect(-ERR_AUTH_INVALID, "AUTH_INVALID", 401, false);
    expect(-ERR_FORBIDDEN, "FORBIDDEN", 403, false);
    expect(-ERR_SANDBOX_NOT_FOUND, "SANDBOX_NOT_FOUND", 404, false);
    expect(-ERR_NOT_FOUND, "NOT_FOUND", 404, false);
    expect(-ERR_METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", 405, false);
    expect(-ERR_EXEC_TIMEOUT, "EXEC_TIMEOUT", 408, false);
    expect(-ERR_EDIT_NO_MATCH, "EDIT_NO_MATCH", 409, false);
    expect(-ERR_EDIT_NOT_UNIQUE, "EDIT_NOT_UNIQUE", 409, false);
    expect(-ERR_PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", 413, false);
    expect(-ERR_QUOTA, "EQUOTA", 413, false);
    expect(-ERR_TOO_MANY_ENTRIES, "PAYLOAD_TOO_LARGE", 413, false);
    expect(-ERR_UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE", 415, false);
    expect(-ERR_READONLY_VIOLATION, "EREADONLY_VIOLATION", 422, false);
    expect(-ERR_RATE_LIMITED, "RATE_LIMITED", 429, true);
    expect(-ERR_INTERNAL, "INTERNAL_ERROR", 500, false);
    expect(-ERR_ADMIN_NOT_CONFIGURED, "ADMIN_NOT_CONFIGURED", 500, false);
    expect(-ERR_JAIL_UNAVAILABLE, "EXEC_UNAVAILABLE", 503, false);
    expect(-ERR_BUSY, "EBUSY", 503, true);
    expect(-ERR_SHUTTING_DOWN, "ESHUTTINGDOWN", 503, true);
    expect(-ERR_LOCK_TIMEOUT, "ELOCKTIMEOUT", 503, true);
    expect(-ERR_STORAGE_FULL, "ENOSPC", 507, true);
    expect(-ERR_RANGE_NOT_SATISFIABLE, "RANGE_NOT_SATISFIABLE", 416, false);
    expect(-ERR_STORE_UNAVAILABLE, "STORE_UNAVAILABLE", 503, true);
    /* a commit in doubt is no retryable error: it may have been applied */
    expect(-ERR_COMMIT_IN_DOUBT, "INTERNAL_ERROR", 500, false);
    /* Every code of the enum has an entry that is not the fallback (except ERR_INTERNAL and
     * ERR_COMMIT_IN_DOUBT, an internal error on the wire). */
    for (int c = ERR_BASE; c < ERR_END; c++)
        if (c != ERR_INTERNAL && c != ERR_COMMIT_IN_DOUBT &&
            strcmp(err_info(-c)->code, "INTERNAL_ERROR") == 0)
            fail_msg("code %d has no table entry", c);
}

static void test_unknown(void **state)
{
    (void)state;
    const int unknown[] = {0,        -EPERM,          -ENOMEM, -EIO,       -EACCES,
                           -ERR_END, -(ERR_BASE - 1), 99999,   -2147483647};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        const struct err_info *e = err_info(unknown[i]);
        assert_string_equal(e->code, "INTERNAL_ERROR");
        assert_int_equal(e->status, 500);
        assert_false(e->retryable);
    }
}

static void test_messages(void **state)
{
    (void)state;
    err_clear();
    assert_null(err_message());
    assert_int_equal(err_detail_count(), 0);
    assert_int_equal(err_set(-ENOENT, "no such file: %s", "/a"), -ENOENT);
    assert_string_equal(err_message(), "no such file: /a");
    assert_int_equal(err_set(ERR_AUTH_INVALID, "token %s", "expired"), -ERR_AUTH_INVALID);
    assert_string_equal(err_message(), "token expired");
    err_detail("first %d", 1);
    err_detail("second");
    assert_int_equal(err_detail_count(), 2);
    assert_string_equal(err_detail_at(0), "first 1");
    assert_string_equal(err_detail_at(1), "second");
    assert_null(err_detail_at(2));
    assert_null(err_detail_at(-1));
    for (int i = 0; i < 40; i++)
        err_detail("d%d", i);
    assert_int_equal(err_detail_count(), 32); /* capped, earliest kept */
    assert_string_equal(err_detail_at(31), "d29");
    /* Long messages are truncated, not overflowed. */
    char big[2000];
    memset(big, 'm', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(err_set(-EINVAL, "%s", big), -EINVAL);
    assert_true(strlen(err_message()) < sizeof(big) - 1);
    assert_int_equal(err_message()[0], 'm');
    err_clear();
    assert_null(err_message());
    assert_int_equal(err_detail_count(), 0);
}

static void *other_thread(void *arg)
{
    (void)arg;
    /* State is per thread: nothing set in main is visible here. */
    const char *m = err_message();
    (void)err_set(-EIO, "from the other thread");
    return (void *)(m == NULL ? (void *)1 : NULL);
}

static void test_thread_local(void **state)
{
    (void)state;
    err_clear();
    (void)err_set(-EINVAL, "main thread");
    pthread_t t;
    void *res = NULL;
    assert_int_equal(pthread_create(&t, NULL, other_thread, NULL), 0);
    pthread_join(t, &res);
    assert_non_null(res);
    assert_string_equal(err_message(), "main thread");
    err_clear();
}

/* err_info_at lists every entry once (each code of the enum and each errno one), and
 * err_info_by_code finds an entry by its wire code. */
static void test_listing(void **state)
{
    (void)state;
    size_t n = 0;
    bool saw_timeout = false, saw_enoent = false;
    const struct err_info *e;
    for (; (e = err_info_at(n)); n++) {
        assert_non_null(e->code);
        assert_true(e->status >= 400 && e->status <= 599);
        saw_timeout |= e == err_info(-ERR_EXEC_TIMEOUT);
        saw_enoent |= e == err_info(-ENOENT);
        assert_non_null(err_info_by_code(e->code));
        assert_string_equal(err_info_by_code(e->code)->code, e->code);
    }
    assert_true(saw_timeout && saw_enoent);
    assert_int_equal(n, (size_t)(ERR_END - ERR_BASE) + 11);
    assert_null(err_info_at(n + 5));
    assert_ptr_equal(err_info_by_code("EXEC_TIMEOUT"), err_info(-ERR_EXEC_TIMEOUT));
    assert_null(err_info_by_code("NO_SUCH_CODE"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errno_mapping), cmocka_unit_test(test_sqlfs_codes),
        cmocka_unit_test(test_unknown),       cmocka_unit_test(test_messages),
        cmocka_unit_test(test_thread_local),  cmocka_unit_test(test_listing),
    };
    return cmocka_run_group_tests_name("err", tests, NULL, NULL);
}
