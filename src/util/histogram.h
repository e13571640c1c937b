/*
 * histogram — a histogram of durations with fixed buckets, as Prometheus exposes them: for each
 * upper bound ("le") the number of observations at or below it, the number of all of them
 * (the +Inf bucket) and their sum.
 *
 * The bounds are the caller's: an ascending array of at most HISTOGRAM_BOUNDS_MAX durations in
 * nanoseconds, borrowed (static storage in practice) for the histogram's life. An observation
 * costs two relaxed atomic additions and a search of the bounds; there is no allocation and no
 * lock, so the memory of a histogram is fixed by its type.
 *
 * Thread-safety: histogram_observe and histogram_read may run on any threads at once. A read
 * while observations happen may miss some of them, but what it returns is consistent with
 * itself: its buckets are cumulative and its count is its +Inf bucket (the sum may lag or lead
 * by the observations in flight).
 */
#ifndef SQLFS_UTIL_HISTOGRAM_H
#define SQLFS_UTIL_HISTOGRAM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define HISTOGRAM_BOUNDS_MAX 20

struct histogram {
    const int64_t *bounds_ns; /* ascending upper bounds, borrowed */
    size_t nbounds;           /* entries of bounds_ns, <= HISTOGRAM_BOUNDS_MAX */
    /* observations in (bounds_ns[i-1], bounds_ns[i]]; [nbounds]: above the last bound */
    atomic_uint_least64_t counts[HISTOGRAM_BOUNDS_MAX + 1];
    atomic_int_least64_t sum_ns; /* every observation, added up */
};

/* What histogram_read returns: cumulative counts, as exposed. */
struct histogram_view {
    size_t nbounds;                                /* as the histogram's */
    uint64_t cumulative[HISTOGRAM_BOUNDS_MAX + 1]; /* [i]: observations <= bounds_ns[i];
                                                    * [nbounds]: all (+Inf) */
    uint64_t count;                                /* == cumulative[nbounds] */
    int64_t sum_ns;
};

/* Sets up h, empty, over `nbounds` ascending bounds (asserted: a programmer's error). Allocates
 * nothing; there is nothing to release. */
void histogram_init(struct histogram *h, const int64_t *bounds_ns, size_t nbounds);
/* Counts one observation of ns nanoseconds (a negative one counts as 0). */
void histogram_observe(struct histogram *h, int64_t ns);
/* The histogram as it is now into *ret. */
void histogram_read(const struct histogram *h, struct histogram_view *ret);

#endif
