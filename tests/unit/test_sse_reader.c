/* sse_reader: events out of a byte stream cut anywhere (client/sse_reader.h). */
#include "unit.h"

#include <errno.h>

#include "client/sse_reader.h"
#include "util/buf.h"

/* The events seen, as "type=data|" each. */
static int collect(void *ctx, const char *event, const char *data, size_t len)
{
    struct buf *out = ctx;
    assert_int_equal(data[len], '\0');
    if (buf_addf(out, "%s=", event) < 0 || buf_add(out, data, len) < 0 || buf_addstr(out, "|") < 0)
        return -ENOMEM;
    return strcmp(event, "stop") == 0 ? -ECANCELED : 0;
}

/* Feeds `s` cut into pieces of `step` bytes; returns the events (caller frees). */
static char *feed_in_steps(const char *s, size_t step, int *ret_rc)
{
    struct buf out = BUF_INIT(0);
    struct sse_reader r;
    sse_reader_init(&r, 1024, collect, &out);
    size_t n = strlen(s);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i += step)
        rc = sse_reader_feed(&r, s + i, i + step < n ? step : n - i);
    sse_reader_release(&r);
    *ret_rc = rc;
    return buf_detach(&out, NULL);
}

/* The same stream gives the same events whatever the cuts. */
static void check(const char *stream, const char *want)
{
    for (size_t step = 1; step <= strlen(stream) + 1; step++) {
        int rc;
        char *got = feed_in_steps(stream, step, &rc);
        assert_int_equal(rc, 0);
        assert_string_equal(got, want);
        free(got);
    }
}

static void test_events(void **state)
{
    (void)state;
    check("event: start\ndata: {\"t\":0}\n\n"
          ": keep-alive\n\n"
          "event: stdout\ndata: {\"data\":\"a\"}\n\n",
          "start={\"t\":0}|stdout={\"data\":\"a\"}|");
}

static void test_line_ends(void **state)
{
    (void)state;
    check("event: x\r\ndata: 1\r\n\r\nevent: y\rdata: 2\r\rdata:3\n\n", "x=1|y=2|message=3|");
}

static void test_fields(void **state)
{
    (void)state;
    /* several data lines join with LF; one space dropped; no colon: empty value; unknown, id
     * and retry ignored; an event without data is not dispatched */
    check("data:a\ndata:  b\ndata\nid: 7\nretry: 10\nfoo: bar\n\n"
          "event: empty\n\n"
          "data: after\n\n",
          "message=a\n b\n|message=after|");
    /* an unfinished event is never dispatched */
    check("data: done\n\ndata: half", "message=done|");
}

static void test_limits_and_stop(void **state)
{
    (void)state;
    char big[2048];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    int rc;
    char *got = feed_in_steps(big, 100, &rc);
    assert_int_equal(rc, -EFBIG);
    free(got);
    got = feed_in_steps("event: stop\ndata: 1\n\ndata: 2\n\n", 5, &rc);
    assert_int_equal(rc, -ECANCELED);
    assert_string_equal(got, "stop=1|");
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_line_ends),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_limits_and_stop),
    };
    return cmocka_run_group_tests_name("sse_reader", tests, NULL, NULL);
}
