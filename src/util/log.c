#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/jsontext.h"
#include "util/timeutil.h"

static int log_quiet;

void log_set_quiet(int quiet)
{
    log_quiet = quiet;
}

void log_json(const char *level, const char *msg, json_t *fields)
{
    if (log_quiet && strcmp(level, "info") == 0) {
        json_decref(fields);
        return;
    }
    json_t *o = json_object();
    char ts[TIME_ISO_LEN];
    time_iso8601(time_now_ms(), ts, sizeof(ts));
    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "level", json_string(level));
    json_object_set_new(o, "msg", jsontext(msg)); /* any bytes: never a dropped field */
    if (fields) {
        json_object_update(o, fields);
        json_decref(fields);
    }
    /* 15 significant digits: a duration rounded to the microsecond prints as 3.099, not as the
     * nearest double's 17 digits (3.0989999999999998) */
    char *line = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(15));
    json_decref(o);
    if (!line)
        return;
    size_t n = strlen(line);
    line[n] = '\n'; /* replaces the NUL; written with explicit length */
    ssize_t w = write(STDERR_FILENO, line, n + 1);
    (void)w;
    free(line);
}

void log_msg(const char *level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_json(level, msg, NULL);
}
