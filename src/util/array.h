/*
 * array — growing a malloc'd array in place.
 *
 *     struct item *v = NULL;
 *     size_t n = 0, cap = 0;
 *     if (ARRAY_GROW(v, n + 1, cap) < 0)
 *             return -ENOMEM;
 *     v[n++] = item;
 *
 * ARRAY_GROW(ptr, need, cap) makes room for at least `need` elements of *ptr: when cap < need
 * it reallocates ptr to a new capacity (double the old one, at least ARRAY_MIN_CAP and at least
 * `need`) and stores it in `cap`. `ptr` is any object pointer lvalue (NULL while cap is 0),
 * `cap` a size_t lvalue, each evaluated once. 0 on success; -ENOMEM when out of memory or when
 * need * sizeof(*ptr) would overflow, leaving ptr and cap as they were (the elements stay
 * owned by the caller). Elements past the old capacity are uninitialised.
 *
 * The caller owns the array (free(ptr)); not thread-safe beyond the caller's own locking.
 */
#ifndef SQLFS_UTIL_ARRAY_H
#define SQLFS_UTIL_ARRAY_H

#include <stddef.h>

#define ARRAY_MIN_CAP 16

/* The capacity-and-realloc step of ARRAY_GROW: 1 with *ret_ptr set (the new storage, *cap
 * updated) when it reallocated, 0 when cap already holds need, -ENOMEM. Use the macro. */
__attribute__((warn_unused_result)) int array_grow_(void *ptr, size_t elsize, size_t need,
                                                    size_t *cap, void **ret_ptr);

#define ARRAY_GROW(ptr, need, cap)                                                                 \
    __extension__({                                                                                \
        __typeof__(ptr) *array_p_ = &(ptr);                                                        \
        void *array_new_ = NULL;                                                                   \
        int array_r_ = array_grow_(*array_p_, sizeof(**array_p_), (need), &(cap), &array_new_);    \
        if (array_r_ > 0)                                                                          \
            *array_p_ = array_new_;                                                                \
        array_r_ < 0 ? array_r_ : 0;                                                               \
    })

#endif
