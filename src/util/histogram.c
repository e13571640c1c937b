/* histogram — fixed-bucket duration histograms. See histogram.h for the contract. */
#include "util/histogram.h"

#include <assert.h>

void histogram_init(struct histogram *h, const int64_t *bounds_ns, size_t nbounds)
{
    assert(nbounds <= HISTOGRAM_BOUNDS_MAX);
    for (size_t i = 1; i < nbounds; i++)
        assert(bounds_ns[i - 1] < bounds_ns[i]);
    h->bounds_ns = bounds_ns;
    h->nbounds = nbounds;
    for (size_t i = 0; i <= HISTOGRAM_BOUNDS_MAX; i++)
        atomic_init(&h->counts[i], 0);
    atomic_init(&h->sum_ns, 0);
}

void histogram_observe(struct histogram *h, int64_t ns)
{
    if (ns < 0)
        ns = 0;
    size_t i = 0;
    while (i < h->nbounds && ns > h->bounds_ns[i])
        i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

/* Each bucket is read once and the cumulative counts and the total are made from those reads
 * alone, so they agree with each other whatever runs meanwhile. */
void histogram_read(const struct histogram *h, struct histogram_view *ret)
{
    ret->nbounds = h->nbounds;
    uint64_t total = 0;
    for (size_t i = 0; i <= h->nbounds; i++) {
        total += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        ret->cumulative[i] = total;
    }
    ret->count = total;
    ret->sum_ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
}
