#include "unit.h"

#include <errno.h>

#include "util/buf.h"

static void test_add_and_cstr(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(0);
    assert_null(b.data);
    assert_string_equal(buf_cstr(&b), "");
    assert_int_equal(buf_addstr(&b, "hello"), 0);
    assert_int_equal(buf_add(&b, " \0x", 3), 0); /* binary-safe */
    assert_int_equal(b.len, 8);
    assert_memory_equal(b.data, "hello \0x", 8);
    assert_int_equal(b.data[b.len], '\0');
    assert_int_equal(buf_add(&b, NULL, 0), 0);
    assert_int_equal(b.len, 8);
    /* Growth across many reallocations keeps contents and the terminating NUL. */
    buf_reset(&b);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(buf_add(&b, "ab", 2), 0);
    assert_int_equal(b.len, 20000);
    assert_true(b.cap >= b.len);
    assert_int_equal(b.data[19998], 'a');
    assert_int_equal(b.data[20000], '\0');
    buf_release(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    buf_release(&b);
}

static void test_bounded(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(10);
    assert_int_equal(buf_addstr(&b, "0123456"), 0);
    assert_int_equal(buf_addstr(&b, "789X"), -EFBIG);
    assert_int_equal(b.len, 7); /* unchanged */
    assert_string_equal(b.data, "0123456");
    assert_int_equal(buf_addf(&b, "%d", 1234), -EFBIG);
    assert_string_equal(b.data, "0123456");
    assert_int_equal(buf_addstr(&b, "789"), 0); /* exactly at the cap is fine */
    assert_string_equal(b.data, "0123456789");
    assert_int_equal(buf_add(&b, "x", 1), -EFBIG);
    assert_int_equal(buf_grow(&b, 1), -EFBIG);
    assert_int_equal(buf_grow(&b, 0), 0);
    assert_string_equal(b.data, "0123456789");
    buf_release(&b);
    assert_int_equal(b.max, 10); /* the cap survives release */
    assert_int_equal(buf_addstr(&b, "01234567890"), -EFBIG);
    assert_null(b.data);
    buf_release(&b);
}

static void test_addf(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(0);
    assert_int_equal(buf_addf(&b, "%s=%d;", "a", 1), 0);
    assert_int_equal(buf_addf(&b, "%s", ""), 0);
    assert_int_equal(buf_addf(&b, "%05.1f|%x", 3.14159, 255), 0);
    assert_string_equal(buf_cstr(&b), "a=1;003.1|ff");
    assert_int_equal(b.len, strlen("a=1;003.1|ff"));
    char big[300];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(buf_addf(&b, "[%s]", big), 0);
    assert_int_equal(b.len, 12 + 301);
    assert_int_equal(b.data[b.len - 1], ']');
    buf_release(&b);
}

static void test_consume(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(0);
    assert_int_equal(buf_addstr(&b, "abcdef"), 0);
    buf_consume(&b, 2);
    assert_string_equal(b.data, "cdef");
    assert_int_equal(b.len, 4);
    buf_consume(&b, 0);
    assert_string_equal(b.data, "cdef");
    buf_consume(&b, 4);
    assert_int_equal(b.len, 0);
    assert_string_equal(buf_cstr(&b), "");
    assert_int_equal(buf_addstr(&b, "x"), 0);
    assert_string_equal(b.data, "x");
    buf_release(&b);
}

static void test_detach(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(0);
    size_t len = 99;
    char *p = buf_detach(&b, &len); /* empty: "" not NULL */
    assert_non_null(p);
    assert_string_equal(p, "");
    assert_int_equal(len, 0);
    free(p);
    assert_int_equal(buf_addstr(&b, "owned"), 0);
    p = buf_detach(&b, &len);
    assert_string_equal(p, "owned");
    assert_int_equal(len, 5);
    assert_null(b.data); /* the buffer no longer owns it */
    assert_int_equal(b.len, 0);
    assert_int_equal(buf_addstr(&b, "again"), 0);
    assert_string_equal(b.data, "again");
    assert_string_equal(p, "owned");
    free(p);
    p = buf_detach(&b, NULL);
    assert_string_equal(p, "again");
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_and_cstr), cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_addf),         cmocka_unit_test(test_consume),
        cmocka_unit_test(test_detach),
    };
    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
