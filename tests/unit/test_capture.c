#include "unit.h"

#include "exec/capture.h"
#include "util/utf8.h"

static void assert_kept(const struct capture_stream *s, const char *want, bool truncated)
{
    assert_int_equal(s->data.len, strlen(want));
    assert_memory_equal(buf_cstr(&s->data), want, strlen(want));
    assert_int_equal(s->truncated, truncated);
}

/* A stream keeps up to its cap, cut inside the chunk that crosses it; filling the cap exactly is
 * not a truncation. */
static void test_cut_at_the_cap(void **state)
{
    (void)state;
    struct capture_allowance a = CAPTURE_ALLOWANCE_INIT(10);
    struct capture c;
    capture_init(&c, &a, NULL);
    capture_add(&c, CAPTURE_STDOUT, "hello", 5);
    capture_add(&c, CAPTURE_STDOUT, "world", 5);
    assert_kept(&c.out, "helloworld", false);
    capture_add(&c, CAPTURE_STDOUT, "", 0);
    assert_false(c.out.truncated);
    capture_add(&c, CAPTURE_STDOUT, "!", 1);
    assert_kept(&c.out, "helloworld", true);
    /* the other stream has a cap of its own */
    capture_add(&c, CAPTURE_STDERR, "0123456789abc", 13);
    assert_kept(&c.err, "0123456789", true);
    assert_int_equal(budget_used(&a.stream[0]), 10);
    assert_int_equal(budget_used(&a.stream[1]), 10);
    capture_release(&c);
    assert_int_equal(c.out.data.len, 0);
}

/* The scripts of a request share its cap in the order they write. */
static void test_shared_allowance(void **state)
{
    (void)state;
    struct capture_allowance a = CAPTURE_ALLOWANCE_INIT(8);
    struct capture first, second;
    capture_init(&first, &a, NULL);
    capture_init(&second, &a, NULL);
    capture_add(&first, CAPTURE_STDOUT, "abcdef", 6);
    capture_add(&second, CAPTURE_STDOUT, "ghijkl", 6);
    capture_add(&first, CAPTURE_STDOUT, "m", 1);
    assert_kept(&first.out, "abcdef", true);
    assert_kept(&second.out, "gh", true);
    capture_release(&first);
    capture_release(&second);
}

/* The memory budget refuses what it cannot hold: the stream is truncated, the allowance gets
 * back what memory refused, and the stream keeps nothing more even once memory is free again
 * (a kept stream is always a prefix). Releasing gives the memory back. */
static void test_memory_refusal(void **state)
{
    (void)state;
    struct capture_allowance a = CAPTURE_ALLOWANCE_INIT(100);
    struct budget memory = BUDGET_INIT(6);
    struct capture c, other;
    capture_init(&other, &a, &memory);
    capture_init(&c, &a, &memory);
    capture_add(&other, CAPTURE_STDERR, "xy", 2);
    capture_add(&c, CAPTURE_STDOUT, "abcdef", 6);
    assert_kept(&c.out, "abcd", true);
    assert_int_equal(budget_used(&memory), 6);
    assert_int_equal(budget_used(&a.stream[0]), 4);
    capture_release(&other);
    assert_int_equal(budget_used(&memory), 4);
    capture_add(&c, CAPTURE_STDOUT, "g", 1);
    assert_kept(&c.out, "abcd", true);
    capture_add(&c, CAPTURE_STDERR, "12", 2);
    assert_kept(&c.err, "12", false);
    assert_int_equal(budget_used(&memory), 6);
    capture_release(&c);
    assert_int_equal(budget_used(&memory), 0);
}

/* A spent memory budget keeps nothing at all. */
static void test_memory_spent(void **state)
{
    (void)state;
    struct capture_allowance a = CAPTURE_ALLOWANCE_INIT(100);
    struct budget memory = BUDGET_INIT(3);
    assert_int_equal(budget_take(&memory, 3), 3);
    struct capture c;
    capture_init(&c, &a, &memory);
    capture_on_output(&c, CAPTURE_STDOUT, "abc", 3);
    assert_kept(&c.out, "", true);
    assert_int_equal(budget_used(&a.stream[0]), 0);
    capture_release(&c);
    assert_int_equal(budget_used(&memory), 3);
}

/* The cut falls at the byte, inside a UTF-8 character if need be: the kept bytes are what the
 * script wrote, and the incomplete character at the end is for the text rendering to drop. */
static void test_cut_inside_a_character(void **state)
{
    (void)state;
    struct capture_allowance a = CAPTURE_ALLOWANCE_INIT(5);
    struct capture c;
    capture_init(&c, &a, NULL);
    capture_on_output(&c, CAPTURE_STDOUT, "abcd\xc3\xa9", 6); /* "abcdé" */
    assert_kept(&c.out, "abcd\xc3", true);
    assert_int_equal(utf8_incomplete_tail(c.out.data.data, c.out.data.len), 1);
    capture_release(&c);
    /* bytes that lead no character are invalid, not incomplete */
    assert_int_equal(utf8_incomplete_tail("ok \xff\xfe", 5), 0);
    assert_int_equal(utf8_incomplete_tail("a\xc0", 2), 0);
    assert_int_equal(utf8_incomplete_tail("a\xf5\x80", 3), 0);
    assert_int_equal(utf8_incomplete_tail("a\xf0\x9f\x98", 4), 3);
    assert_int_equal(utf8_incomplete_tail("a\xe2\x82", 3), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cut_at_the_cap),         cmocka_unit_test(test_shared_allowance),
        cmocka_unit_test(test_memory_refusal),         cmocka_unit_test(test_memory_spent),
        cmocka_unit_test(test_cut_inside_a_character),
    };
    return cmocka_run_group_tests_name("capture", tests, NULL, NULL);
}
