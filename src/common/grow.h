/*
 * grow.h - room for one more element in a growing array (grow.c).
 */
#ifndef HAUL_COMMON_GROW_H
#define HAUL_COMMON_GROW_H

#include <stddef.h>

/*
 * @pv points to the array pointer (a T **, NULL while empty) of an array of
 * @size-byte elements that holds @n of *@cap: when it is full, realloc it
 * to twice its capacity (@first at first) and update *@cap.  0, or -ENOMEM
 * with the array and *@cap unchanged.
 */
int haul_grow(void *pv, size_t *cap, size_t n, size_t size, size_t first);

#endif
