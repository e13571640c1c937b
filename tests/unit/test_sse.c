#include "unit.h"

#include <errno.h>
#include <jansson.h>

#include "api/sse.h"
#include "util/buf.h"
#include "util/utf8.h"

/* The reference: what the route wrote before sse.c existed — sanitize, then jansson. Returns
 * the JSON string's inside (no quotes), malloc'd. */
static char *reference_escape(const char *s, size_t n, size_t *ret_len)
{
    struct buf clean = BUF_INIT(0);
    assert_int_equal(utf8_sanitize_into(&clean, s, n), 0);
    json_t *str = json_stringn(buf_cstr(&clean), clean.len);
    assert_non_null(str);
    char *txt = json_dumps(str, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(txt);
    size_t len = strlen(txt);
    assert_true(len >= 2 && txt[0] == '"' && txt[len - 1] == '"');
    memmove(txt, txt + 1, len - 2);
    txt[len - 2] = '\0';
    *ret_len = len - 2;
    json_decref(str);
    buf_release(&clean);
    return txt;
}

/* sse_json_escape must equal the reference and decode back to the sanitized bytes. */
static void check_escape(const char *s, size_t n)
{
    size_t want_len;
    char *want = reference_escape(s, n, &want_len);
    struct buf got = BUF_INIT(0);
    assert_int_equal(buf_add(&got, "prefix", 6), 0);
    assert_int_equal(sse_json_escape(&got, s, n), 0);
    assert_int_equal(got.len, 6 + want_len);
    assert_memory_equal(got.data + 6, want, want_len);
    assert_int_equal(got.data[got.len], '\0');
    assert_null(memchr(got.data, '\n', got.len)); /* an SSE data line cannot end early */
    assert_null(memchr(got.data, '\r', got.len));
    free(want);
    buf_release(&got);
}

static void test_every_ascii_byte(void **state)
{
    (void)state;
    struct buf empty = BUF_INIT(0);
    assert_int_equal(sse_json_escape(&empty, "", 0), 0);
    assert_int_equal(empty.len, 0);
    assert_string_equal(buf_cstr(&empty), "");
    buf_release(&empty);
    for (int c = 0; c < 128; c++) {
        char one = (char)c;
        check_escape(&one, 1);
    }
    struct buf b = BUF_INIT(0);
    assert_int_equal(sse_json_escape(&b, "a\"b\\c\n\t\x01\x1f\x7f/", 11), 0);
    assert_string_equal(b.data, "a\\\"b\\\\c\\n\\t\\u0001\\u001F\x7f/");
    buf_release(&b);
}

static void test_utf8(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "caf\xc3\xa9",              /* 2-byte */
        "\xe2\x82\xac 5",           /* 3-byte */
        "\xf0\x9f\x98\x80!",        /* 4-byte */
        "\x80",                     /* lone continuation */
        "\xc0\x80",                 /* overlong NUL */
        "\xe0\x80\xaf",             /* overlong '/' */
        "\xed\xa0\x80",             /* surrogate */
        "\xf4\x90\x80\x80",         /* above U+10FFFF */
        "\xf5\xff\xfe",             /* never valid */
        "ab\xe2\x82",               /* truncated at the end */
        "\xe2\x82x\xe2\x82\xac\"",  /* truncated in the middle, then valid */
        "\xef\xbf\xbd",             /* U+FFFD itself */
        "\xe2\x80\xa8\xe2\x80\xa9", /* U+2028/9 pass as they are, like jansson */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_escape(cases[i], strlen(cases[i]));
    struct buf b = BUF_INIT(0);
    assert_int_equal(sse_json_escape(&b,
                                     "a\xff"
                                     "b",
                                     3),
                     0);
    assert_string_equal(b.data, "a\xef\xbf\xbd"
                                "b");
    buf_release(&b);
}

/* A special byte at every offset around the 8-byte word steps of the fast path. */
static void test_word_boundaries(void **state)
{
    (void)state;
    static const char specials[] = {'\n', '"', '\\', '\0', '\x1f', '\x80', '\xc3', '\x7f'};
    char s[40];
    for (size_t len = 0; len <= sizeof(s); len++)
        for (size_t at = 0; at < len; at++)
            for (size_t k = 0; k < sizeof(specials); k++) {
                memset(s, 'x', sizeof(s));
                s[at] = specials[k];
                check_escape(s, len);
            }
}

static void test_random_against_jansson(void **state)
{
    (void)state;
    /* biased towards the bytes that matter; a fixed seed keeps failures reproducible */
    static const unsigned char alphabet[] = {'a',  'Z',  ' ',  '\n', '\r', '\t', '"',  '\\', 0,
                                             1,    0x1f, 0x20, 0x7f, 0x80, 0xbf, 0xc2, 0xc3, 0xe2,
                                             0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff, 0x9f, 0xa0};
    unsigned seed = 12345;
    char s[300];
    for (int iter = 0; iter < 3000; iter++) {
        seed = seed * 1103515245u + 12345u;
        size_t len = (seed >> 8) % sizeof(s);
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            s[i] = (char)alphabet[(seed >> 8) % sizeof(alphabet)];
        }
        check_escape(s, len);
    }
}

static void test_output_frame(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(0);
    assert_int_equal(sse_output_frame(&b, "stdout", 42, "hi\n", 3), 0);
    assert_string_equal(b.data, "event: stdout\ndata: {\"t\":42,\"data\":\"hi\\n\"}\n\n");
    /* byte for byte what json_dumps writes for the same object */
    const char data[] = "x\"\xff\xe2\x82\xac\x01 end";
    struct buf clean = BUF_INIT(0);
    assert_int_equal(utf8_sanitize_into(&clean, data, sizeof(data) - 1), 0);
    json_t *o = json_object();
    json_object_set_new(o, "t", json_integer(1234567890123));
    json_object_set_new(o, "data", json_stringn(clean.data, clean.len));
    struct buf want = BUF_INIT(0);
    assert_int_equal(sse_json_frame(&want, "stderr", o), 0);
    buf_reset(&b);
    assert_int_equal(sse_output_frame(&b, "stderr", 1234567890123, data, sizeof(data) - 1), 0);
    assert_int_equal(b.len, want.len);
    assert_memory_equal(b.data, want.data, want.len);
    json_decref(o);
    buf_release(&want);
    buf_release(&clean);
    buf_release(&b);
}

static void test_json_frame(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(0);
    json_t *o = json_pack("{s:i,s:b}", "exitCode", 3, "timedOut", 0);
    assert_int_equal(sse_json_frame(&b, "exit", o), 0);
    assert_string_equal(b.data, "event: exit\ndata: {\"exitCode\":3,\"timedOut\":false}\n\n");
    json_decref(o);
    buf_release(&b);
}

/* At the buffer's cap the call fails and the buffer is as it was. */
static void test_failure_leaves_buffer(void **state)
{
    (void)state;
    struct buf b = BUF_INIT(40);
    assert_int_equal(buf_add(&b, "kept", 4), 0);
    assert_int_equal(sse_output_frame(&b, "stdout", 1, "0123456789012345678901234567890123", 34),
                     -EFBIG);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.data, "kept");
    char many[20];
    memset(many, '\n', sizeof(many)); /* fits raw, not escaped */
    assert_int_equal(sse_json_escape(&b, many, sizeof(many)), -EFBIG);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.data, "kept");
    buf_release(&b);
    /* a frame that fits exactly, though not with the usual slack */
    struct buf exact = BUF_INIT(43);
    assert_int_equal(sse_output_frame(&exact, "stdout", 7, "a\nb", 3), 0);
    assert_string_equal(exact.data, "event: stdout\ndata: {\"t\":7,\"data\":\"a\\nb\"}\n\n");
    assert_int_equal(exact.len, 43);
    buf_release(&exact);
}

/* Large inputs exercise the growth paths: all escapes, all replacements, all plain. */
static void test_large(void **state)
{
    (void)state;
    size_t n = 200000;
    char *s = malloc(n);
    assert_non_null(s);
    const char fills[] = {'\x01', '\xff', 'a', '\n'};
    for (size_t k = 0; k < sizeof(fills); k++) {
        memset(s, fills[k], n);
        check_escape(s, n);
    }
    for (size_t i = 0; i < n; i++)
        s[i] = (char)(i * 7919 % 256);
    check_escape(s, n);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_ascii_byte),      cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_word_boundaries),       cmocka_unit_test(test_random_against_jansson),
        cmocka_unit_test(test_output_frame),          cmocka_unit_test(test_json_frame),
        cmocka_unit_test(test_failure_leaves_buffer), cmocka_unit_test(test_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
