/*
 * log — one JSON object per line on stderr. Thread-safe (one write(2) per line).
 * Never pass tokens, secrets or request bodies to it.
 */
#ifndef SQLFS_UTIL_LOG_H
#define SQLFS_UTIL_LOG_H

#include <jansson.h>

/* Writes {"ts":..., "level":level, "msg":msg, ...fields} and steals the reference to `fields`
 * (which may be NULL). */
void log_json(const char *level, const char *msg, json_t *fields);
__attribute__((format(printf, 2, 3))) void log_msg(const char *level, const char *fmt, ...);
/* Silences info-level lines (tests, benchmarks); warnings and errors still go out. */
void log_set_quiet(int quiet);

#endif
