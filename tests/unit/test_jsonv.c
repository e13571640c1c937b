#include "unit.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api/jsonv.h"
#include "util/buf.h"
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

/* "{"a":[item,item,...]}" of n items (malloc'd, *len set). */
static char *repeated(const char *item, size_t n, size_t *len)
{
    struct buf b = BUF_INIT(0);
    assert_int_equal(buf_addstr(&b, "{\"a\":["), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(buf_addf(&b, "%s%s", i ? "," : "", item), 0);
    assert_int_equal(buf_addstr(&b, "]}"), 0);
    return buf_detach(&b, len);
}

static void test_parse_budget(void **state)
{
    (void)state;
    jsonv_init();
    assert_int_equal(jsonv_parse_limit(1000), 16 * 1000 + 2 * 1024 * 1024);
    /* 4 MiB of zeros takes about 20 x its size: refused, naming the bound */
    size_t len;
    char *zeros = repeated("0", 2 << 20, &len);
    json_t *o = NULL;
    assert_int_equal(jsonv_parse_object(zeros, len, &o), -ERR_PAYLOAD_TOO_LARGE);
    assert_null(o);
    assert_non_null(strstr(err_detail_at(0), "16 x the body size"));
    assert_true(jsonv_parse_peak() <= jsonv_parse_limit(len));
    assert_true(jsonv_parse_peak() > 16 * len);
    free(zeros);
    err_clear();
    /* large strings take about 3 x: accepted, and the peak says what the parse held */
    char *strs = repeated("\"0123456789abcdef0123456789abcdef\"", 1 << 17, &len);
    assert_int_equal(jsonv_parse_object(strs, len, &o), 0);
    assert_true(jsonv_parse_peak() > len && jsonv_parse_peak() < 8 * len);
    /* the budget is off outside the parse: building a large value is not charged */
    json_t *big = json_array();
    for (int i = 0; i < 1 << 20; i++)
        assert_int_equal(json_array_append_new(big, json_integer(i)), 0);
    json_decref(big);
    json_decref(o);
    free(strs);
    /* a small body is never refused for its shape: the fixed slack covers it */
    char *small = repeated("{}", 2000, &len);
    assert_int_equal(jsonv_parse_object(small, len, &o), 0);
    json_decref(o);
    free(small);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int),
        cmocka_unit_test(test_parse_object),
        cmocka_unit_test(test_parse_budget),
    };
    return cmocka_run_group_tests_name("jsonv", tests, NULL, NULL);
}
