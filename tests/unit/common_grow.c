/*
 * common_grow.c - the doubling realloc of growing arrays (common/grow.h):
 * room is made only when the array is full, first to the given size, then
 * twice the capacity, and the elements already there stay.  No root.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/grow.h"

Test(common_grow, allocates_the_first_capacity_for_an_empty_array)
{
	uint64_t *v = NULL;
	size_t cap = 0;

	cr_assert_eq(haul_grow(&v, &cap, 0, sizeof(*v), 16), 0);
	cr_assert_not_null(v);
	cr_assert_eq(cap, 16);
	free(v);
}

Test(common_grow, leaves_an_array_with_room_as_it_is)
{
	int *v = malloc(4 * sizeof(*v)), *before = v;
	size_t cap = 4;

	cr_assert_not_null(v);
	cr_assert_eq(haul_grow(&v, &cap, 3, sizeof(*v), 16), 0);
	cr_assert_eq(v, before);
	cr_assert_eq(cap, 4);
	free(v);
}

Test(common_grow, doubles_a_full_array_and_keeps_its_elements)
{
	int *v = NULL;
	size_t cap = 0, n = 0;

	for (int i = 0; i < 100; i++) {
		cr_assert_eq(haul_grow(&v, &cap, n, sizeof(*v), 8), 0);
		v[n++] = i;
	}
	cr_assert_eq(cap, 128);
	for (int i = 0; i < 100; i++)
		cr_assert_eq(v[i], i);
	free(v);
}
