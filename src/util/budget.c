#include "util/budget.h"

size_t budget_take(struct budget *b, size_t want)
{
    int64_t used = atomic_load(&b->used);
    for (;;) {
        int64_t left = b->limit - used;
        if (left <= 0 || want == 0)
            return 0;
        int64_t take = (uint64_t)left < want ? left : (int64_t)want;
        if (atomic_compare_exchange_weak(&b->used, &used, used + take))
            return (size_t)take;
    }
}

void budget_give(struct budget *b, size_t n)
{
    if (n)
        atomic_fetch_sub(&b->used, (int64_t)n);
}

bool budget_spent(struct budget *b)
{
    return atomic_load(&b->used) >= b->limit;
}

int64_t budget_used(struct budget *b)
{
    return atomic_load(&b->used);
}
