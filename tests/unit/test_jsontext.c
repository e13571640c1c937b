#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <unistd.h>

#include "api/http.h"
#include "api/sse.h"
#include "util/b64.h"
#include "util/err.h"
#include "util/jsontext.h"
#include "util/log.h"

#define FFFD "\xef\xbf\xbd"

/* The object serialised and parsed back: what a client sees. */
static json_t *round_trip(const json_t *o)
{
    char *txt = json_dumps(o, JSON_COMPACT);
    assert_non_null(txt);
    json_error_t e;
    json_t *back = json_loads(txt, 0, &e);
    assert_non_null(back);
    free(txt);
    return back;
}

static void test_text(void **state)
{
    (void)state;
    json_t *j = jsontext("plain h\xc3\xa9llo");
    assert_string_equal(json_string_value(j), "plain h\xc3\xa9llo");
    json_decref(j);
    /* a lone byte, a truncated sequence, an overlong form and a surrogate: one U+FFFD per byte */
    j = jsontext("a\xff"
                 "b\xe2\x82"
                 "c\xc0\xaf"
                 "d\xed\xa0\x80");
    assert_non_null(j);
    assert_string_equal(json_string_value(j),
                        "a" FFFD "b" FFFD FFFD "c" FFFD FFFD "d" FFFD FFFD FFFD);
    json_decref(j);
    j = jsontext(NULL);
    assert_string_equal(json_string_value(j), "");
    json_decref(j);
    j = jsontext_new("x\0y", 3); /* explicit length: NUL bytes are kept */
    assert_int_equal(json_string_length(j), 3);
    json_decref(j);
    json_t *o = json_object();
    assert_int_equal(jsontext_set(o, "msg", "bad \xfe name"), 0);
    assert_string_equal(json_string_value(json_object_get(o, "msg")), "bad " FFFD " name");
    json_decref(o);
}

static void test_path_valid_has_no_bytes_field(void **state)
{
    (void)state;
    json_t *o = json_object();
    const char *p = "/home/user/\xc3\xa9t\xc3\xa9.txt";
    assert_int_equal(jsontext_set_path(o, "path", p, strlen(p)), 0);
    json_t *back = round_trip(o);
    assert_string_equal(json_string_value(json_object_get(back, "path")), p);
    assert_null(json_object_get(back, "pathBytes"));
    assert_int_equal(json_object_size(back), 1);
    json_decref(back);
    json_decref(o);
}

static void test_path_invalid_has_exact_bytes(void **state)
{
    (void)state;
    json_t *o = json_object();
    const char p[] = "/home/user/d\xff/a\xfe"
                     "b";
    size_t n = sizeof(p) - 1;
    assert_int_equal(jsontext_set_path(o, "cwd", p, n), 0);
    json_t *back = round_trip(o);
    assert_string_equal(json_string_value(json_object_get(back, "cwd")),
                        "/home/user/d" FFFD "/a" FFFD "b");
    json_t *bytes = json_object_get(back, "cwdBytes");
    assert_true(json_is_string(bytes));
    assert_string_equal(json_string_value(bytes), "L2hvbWUvdXNlci9k/y9h/mI=");
    uint8_t *dec = NULL;
    size_t dlen = 0;
    assert_int_equal(b64_decode(json_string_value(bytes), json_string_length(bytes), &dec, &dlen),
                     0);
    assert_int_equal(dlen, n);
    assert_memory_equal(dec, p, n);
    free(dec);
    json_decref(back);
    /* set again with valid bytes: the stale Bytes field goes */
    assert_int_equal(jsontext_set_path(o, "cwd", "/tmp", 4), 0);
    assert_null(json_object_get(o, "cwdBytes"));
    assert_string_equal(json_string_value(json_object_get(o, "cwd")), "/tmp");
    json_decref(o);
}

static void test_path_key_too_long(void **state)
{
    (void)state;
    json_t *o = json_object();
    char key[80];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    assert_int_equal(jsontext_set_path(o, key, "/\xff", 2), -EINVAL);
    json_decref(o);
}

/* The error body (HTTP replies and the exec stream's error event) keeps `error` and `details`
 * whatever bytes the message embeds. */
static void test_error_body_any_bytes(void **state)
{
    (void)state;
    err_clear();
    (void)err_set(-ENOENT, "no such file or directory: %s", "/home/user/\xff\xfe");
    err_detail("%s: bad", "a\xff");
    json_t *o = http_error_json(-ENOENT);
    assert_non_null(o);
    struct buf frame = BUF_INIT(0);
    assert_int_equal(sse_json_frame(&frame, "error", o), 0);
    const char *data = strstr(buf_cstr(&frame), "data: ");
    assert_non_null(data);
    json_error_t e;
    json_t *back = json_loads(data + 6, JSON_DISABLE_EOF_CHECK, &e);
    assert_non_null(back);
    assert_string_equal(json_string_value(json_object_get(back, "error")),
                        "no such file or directory: /home/user/" FFFD FFFD);
    assert_string_equal(json_string_value(json_object_get(back, "code")), "ENOENT");
    json_t *d = json_object_get(back, "details");
    assert_int_equal(json_array_size(d), 1);
    assert_string_equal(json_string_value(json_array_get(d, 0)), "a" FFFD ": bad");
    assert_true(json_is_false(json_object_get(back, "retryable")));
    json_decref(back);
    buf_release(&frame);
    json_decref(o);
    err_clear();
}

/* A log line whose message holds invalid UTF-8 is still one JSON object with its `msg`. */
static void test_log_line_any_bytes(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fds[1], STDERR_FILENO) >= 0);
    log_msg("warn", "cannot read %s", "/srv/\xff");
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    close(fds[1]);
    char line[512];
    ssize_t n = read(fds[0], line, sizeof(line) - 1);
    close(fds[0]);
    assert_true(n > 0);
    line[n] = '\0';
    json_error_t e;
    json_t *o = json_loads(line, 0, &e);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "msg")), "cannot read /srv/" FFFD);
    json_decref(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_path_valid_has_no_bytes_field),
        cmocka_unit_test(test_path_invalid_has_exact_bytes),
        cmocka_unit_test(test_path_key_too_long),
        cmocka_unit_test(test_error_body_any_bytes),
        cmocka_unit_test(test_log_line_any_bytes),
    };
    return cmocka_run_group_tests_name("jsontext", tests, NULL, NULL);
}
