#include "unit.h"

#include <jansson.h>
#include <string.h>

#include "api/jsonv.h"
#include "util/err.h"

static int64_t int_field(const char *text, int *ret_rc)
{
    json_error_t e;
    json_t *o = json_loads(text, 0, &e);
    assert_non_null(o);
    int64_t v = -1;
    *ret_rc = jsonv_int(o, "n", 1, 300000, &v);
    json_decref(o);
    err_clear();
    return v;
}

static void test_int(void **state)
{
    (void)state;
    int rc;
    assert_int_equal(int_field("{\"n\": 5000}", &rc), 5000);
    assert_int_equal(rc, 1);
    assert_int_equal(int_field("{\"n\": 5000.0}", &rc), 5000);
    assert_int_equal(rc, 1);
    assert_int_equal(int_field("{}", &rc), -1);
    assert_int_equal(rc, 0);
    (void)int_field("{\"n\": 1.5}", &rc);
    assert_int_equal(rc, -ERR_INVALID_INPUT);
    (void)int_field("{\"n\": 0}", &rc);
    assert_int_equal(rc, -ERR_INVALID_INPUT);
    /* found by fuzz_json: reals outside int64_t were cast (undefined behaviour) before the check */
    (void)int_field("{\"n\": 1e19}", &rc);
    assert_int_equal(rc, -ERR_INVALID_INPUT);
    (void)int_field("{\"n\": -1e300}", &rc);
    assert_int_equal(rc, -ERR_INVALID_INPUT);
    (void)int_field("{\"n\": 9223372036854775808.0}", &rc);
    assert_int_equal(rc, -ERR_INVALID_INPUT);
}

static int parse(const char *text, json_t **ret)
{
    return jsonv_parse_object(text, strlen(text), ret);
}

static void test_parse_object(void **state)
{
    (void)state;
    json_t *o = NULL;
    assert_int_equal(parse("{\"a\": 1}", &o), 0);
    assert_true(json_is_object(o));
    json_decref(o);
    assert_int_equal(parse("[1]", &o), -ERR_INVALID_INPUT);
    assert_null(o);
    assert_non_null(strstr(err_message(), "JSON object"));
    assert_int_equal(parse("{\"a\": 1, \"a\": 2}", &o), -ERR_INVALID_INPUT);
    assert_null(o);
    assert_int_equal(parse("{\"a\": ", &o), -ERR_INVALID_INPUT);
    assert_non_null(strstr(err_message(), "not valid JSON"));
    /* the NUL refusal names the escape, not the parser's flag */
    assert_int_equal(parse("{\"a\": \"x\\u0000y\"}", &o), -ERR_INVALID_INPUT);
    assert_non_null(strstr(err_message(), "\\u0000"));
    assert_null(strstr(err_message(), "JSON_ALLOW_NUL"));
    err_clear();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int),
        cmocka_unit_test(test_parse_object),
    };
    return cmocka_run_group_tests_name("jsonv", tests, NULL, NULL);
}
