#include "util/array.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

int array_grow_(void *ptr, size_t elsize, size_t need, size_t *cap, void **ret_ptr)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap <= SIZE_MAX / 2 ? *cap * 2 : need;
    if (ncap < ARRAY_MIN_CAP)
        ncap = ARRAY_MIN_CAP;
    if (ncap < need)
        ncap = need;
    if (elsize && ncap > SIZE_MAX / elsize) {
        if (need > SIZE_MAX / elsize)
            return -ENOMEM;
        ncap = need; /* doubling would overflow: exactly what is needed */
    }
    void *p = realloc(ptr, ncap * elsize);
    if (!p)
        return -ENOMEM;
    *ret_ptr = p;
    *cap = ncap;
    return 1;
}
