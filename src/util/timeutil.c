#include "util/timeutil.h"

#include <stdio.h>
#include <time.h>

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t time_now_ns(void)
{
    return clock_ns(CLOCK_REALTIME);
}

int64_t time_now_ms(void)
{
    return clock_ns(CLOCK_REALTIME) / 1000000;
}

int64_t time_mono_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

int64_t time_mono_ms(void)
{
    return clock_ns(CLOCK_MONOTONIC) / 1000000;
}

void time_iso8601(int64_t ms, char *out, size_t outlen)
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int milli = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, milli);
}

int64_t time_mono_deadline_ms(int64_t start_ms, int64_t span_ms)
{
    return start_ms + span_ms + 1;
}
