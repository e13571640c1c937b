/* timeutil — clocks and ISO-8601 timestamps. Thread-safe. */
#ifndef SQLFS_UTIL_TIMEUTIL_H
#define SQLFS_UTIL_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Wall clock, milliseconds / nanoseconds since the Unix epoch. */
int64_t time_now_ms(void);
int64_t time_now_ns(void);
/* Monotonic clock in milliseconds / nanoseconds (for durations and deadlines). */
int64_t time_mono_ms(void);
int64_t time_mono_ns(void);
/* The first time_mono_ms() reading at which at least span_ms have really passed since the
 * reading `start_ms` was taken. A reading truncates to the millisecond, so a deadline of
 * start_ms + span_ms could pass up to 1 ms early; a timeout must never cut a script short. */
int64_t time_mono_deadline_ms(int64_t start_ms, int64_t span_ms);
/* Formats epoch milliseconds as "2026-11-26T05:45:27.123Z" into out (>= 25 bytes). */
void time_iso8601(int64_t ms, char *out, size_t outlen);

#define TIME_ISO_LEN 32

#endif
