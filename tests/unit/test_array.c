#include "unit.h"

#include <errno.h>
#include <stdint.h>

#include "util/array.h"

/* The overflow test asks for allocations no allocator can serve: under ASan they must fail
 * (NULL), as they do in libc, instead of aborting the test. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

struct item {
    int64_t a, b;
};

static void test_grow_keeps_elements(void **state)
{
    (void)state;
    struct item *v = NULL;
    size_t n = 0, cap = 0;
    assert_int_equal(ARRAY_GROW(v, 0, cap), 0); /* nothing needed: nothing allocated */
    assert_null(v);
    assert_int_equal(cap, 0);
    for (int i = 0; i < 10000; i++) {
        assert_int_equal(ARRAY_GROW(v, n + 1, cap), 0);
        assert_true(cap >= n + 1);
        v[n++] = (struct item){i, -i};
    }
    assert_true(cap < 2 * 10000); /* doubling, not one realloc per element */
    for (int i = 0; i < 10000; i++)
        assert_true(v[i].a == i && v[i].b == -i);
    struct item *before = v;
    size_t cap_before = cap;
    assert_int_equal(ARRAY_GROW(v, cap, cap), 0); /* room already: unchanged */
    assert_ptr_equal(v, before);
    assert_int_equal(cap, cap_before);
    free(v);
}

static void test_grow_capacity_rules(void **state)
{
    (void)state;
    char **v = NULL;
    size_t cap = 0;
    assert_int_equal(ARRAY_GROW(v, 1, cap), 0);
    assert_int_equal(cap, ARRAY_MIN_CAP);
    assert_int_equal(ARRAY_GROW(v, ARRAY_MIN_CAP + 1, cap), 0);
    assert_int_equal(cap, 2 * ARRAY_MIN_CAP);
    assert_int_equal(ARRAY_GROW(v, 1000, cap), 0); /* a big step: exactly what is needed */
    assert_int_equal(cap, 1000);
    free(v);
}

static void test_grow_overflow(void **state)
{
    (void)state;
    struct item *v = NULL;
    size_t cap = 0;
    assert_int_equal(ARRAY_GROW(v, 4, cap), 0);
    v[3] = (struct item){7, 8};
    struct item *before = v;
    size_t cap_before = cap;
    /* need * sizeof(struct item) overflows size_t: refused, array untouched */
    assert_int_equal(ARRAY_GROW(v, SIZE_MAX / sizeof(struct item) + 1, cap), -ENOMEM);
    assert_int_equal(ARRAY_GROW(v, SIZE_MAX, cap), -ENOMEM);
    assert_ptr_equal(v, before);
    assert_int_equal(cap, cap_before);
    assert_true(v[3].a == 7 && v[3].b == 8);
    /* representable but not allocatable */
    assert_int_equal(ARRAY_GROW(v, SIZE_MAX / sizeof(struct item) / 2, cap), -ENOMEM);
    assert_ptr_equal(v, before);
    assert_int_equal(cap, cap_before);
    /* doubling a huge capacity would overflow: the step is what is needed, no wrap-around */
    size_t huge = SIZE_MAX / 2 + 10, need = huge + 1;
    void *out = NULL;
    assert_int_equal(array_grow_(NULL, 1, need, &huge, &out), -ENOMEM); /* too big for malloc */
    assert_int_equal(huge, SIZE_MAX / 2 + 10);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grow_keeps_elements),
        cmocka_unit_test(test_grow_capacity_rules),
        cmocka_unit_test(test_grow_overflow),
    };
    return cmocka_run_group_tests_name("array", tests, NULL, NULL);
}
