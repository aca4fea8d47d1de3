/*
 * grow.c - the doubling realloc behind haul's growing arrays (grow.h).
 *
 * The array pointer is passed by address as void * and copied in and out
 * with memcpy, so that one function serves arrays of every element type
 * without casting a T ** to void ** (which C does not allow to alias).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"

int haul_grow(void *pv, size_t *cap, size_t n, size_t size, size_t first)
{
	size_t nc;
	void *v, *nv;

	if (n < *cap)
		return 0;
	nc = *cap ? *cap * 2 : first;
	memcpy(&v, pv, sizeof(v));
	nv = realloc(v, nc * size);
	if (!nv)
		return -ENOMEM;
	memcpy(pv, &nv, sizeof(nv));
	*cap = nc;
	return 0;
}
