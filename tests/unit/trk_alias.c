/*
 * trk_alias.c - a page written through one mapping of a shared memory
 * object is reported dirty at every mapping of it (tracker/alias.c), so
 * the receiver never keeps a stale copy at the other address.  No processes.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "common/vma.h"
#include "tracker/trk_int.h"

#define P 4096ULL

static struct haul_vma shm(uint64_t page, uint64_t n, uint64_t pgoff_pages, uint64_t ino)
{
	struct haul_vma v;

	memset(&v, 0, sizeof(v));
	v.start = page * P;
	v.end = (page + n) * P;
	v.pgoff = pgoff_pages * P;
	v.dev = 1;
	v.ino = ino;
	v.prot = 3;
	v.flags = HAUL_VMA_SHARED | HAUL_VMA_FILE | HAUL_VMA_SHMEM;
	return v;
}

Test(trk_alias, a_store_through_one_mapping_dirties_the_same_page_of_the_other)
{
	/* A: object pages 0..9 at page 100; B: object pages 4..7 at page 500 */
	struct haul_vma v[2] = {shm(100, 10, 0, 7), shm(500, 4, 4, 7)};
	struct haul_layout l = {v, 2};
	struct trk_rl d = {0};

	cr_assert_eq(trk_rl_add(&d, 105 * P, 1), 0); /* object page 5 through A */
	cr_assert_eq(trk_rl_add(&d, 503 * P, 1), 0); /* object page 7 through B */
	cr_assert_eq(trk_shmem_aliases(&l, &d), 0);
	cr_assert_eq(d.n, 4, "%zu ranges", d.n);
	cr_expect_eq(d.r[0].start, 105 * P);
	cr_expect_eq(d.r[1].start, 107 * P, "object page 7 at A");
	cr_expect_eq(d.r[2].start, 501 * P, "object page 5 at B");
	cr_expect_eq(d.r[3].start, 503 * P);
	cr_expect_eq(d.pages, 4);
	trk_rl_release(&d);
}

Test(trk_alias, pages_outside_the_shared_part_and_other_objects_stay_alone)
{
	struct haul_vma v[3] = {shm(100, 10, 0, 7), shm(500, 4, 4, 7), shm(900, 10, 0, 8)};
	struct haul_layout l = {v, 3};
	struct trk_rl d = {0};

	cr_assert_eq(trk_rl_add(&d, 100 * P, 2), 0); /* object pages 0-1: only A maps them */
	cr_assert_eq(trk_rl_add(&d, 904 * P, 1), 0); /* another object */
	cr_assert_eq(trk_shmem_aliases(&l, &d), 0);
	cr_assert_eq(d.n, 2, "%zu ranges", d.n);
	cr_expect_eq(d.pages, 3);
	trk_rl_release(&d);
}
