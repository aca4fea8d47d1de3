/*
 * rst_shm_route.c - a dirty page of memory shared by processes of a tree
 * is sent once, by the first process (tree order) that maps that object
 * page, at its own address (src/restore/shm_tree_route.c).  No processes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/vma.h"
#include "restore/restore.h"
#include "tracker/tracker.h"

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

static struct haul_vma priv(uint64_t page, uint64_t n)
{
	struct haul_vma v;

	memset(&v, 0, sizeof(v));
	v.start = page * P;
	v.end = (page + n) * P;
	v.prot = 3;
	v.flags = HAUL_VMA_ANON;
	return v;
}

struct got {
	size_t n;
	struct {
		size_t proc;
		uint64_t addr, npages;
	} p[16];
};

static int collect(void *arg, size_t proc, uint64_t addr, uint64_t npages)
{
	struct got *g = arg;

	cr_assert_lt(g->n, 16);
	g->p[g->n].proc = proc;
	g->p[g->n].addr = addr;
	g->p[g->n++].npages = npages;
	return 0;
}

#define EXPECT(g, k, pr, a, np)                                                                    \
	do {                                                                                       \
		cr_expect_eq((g).p[k].proc, (pr), "piece %d: process %zu", k, (g).p[k].proc);      \
		cr_expect_eq((g).p[k].addr, (a), "piece %d: address %#llx", k,                     \
			     (unsigned long long)(g).p[k].addr);                                   \
		cr_expect_eq((g).p[k].npages, (np), "piece %d: %llu pages", k,                     \
			     (unsigned long long)(g).p[k].npages);                                 \
	} while (0)

Test(rst_shm_route, a_child_store_in_inherited_memory_is_sent_by_the_parent_at_its_address)
{
	/* parent: object 7 pages 0..15 at page 100; child: the same, moved to page 900 (mremap) */
	struct haul_vma p[2] = {shm(100, 16, 0, 7), priv(200, 4)};
	struct haul_vma c[2] = {priv(200, 4), shm(900, 16, 0, 7)};
	struct haul_layout lp = {p, 2}, lc = {c, 2};
	const struct haul_layout *l[2] = {&lp, &lc};
	struct rst_shm_route *r;
	struct got g = {0};

	cr_assert_eq(rst_shm_route_new(l, 2, &r), 0);
	/* the child writes object pages 3-4 and its own private page 201 */
	cr_assert_eq(rst_shm_route(r, 1, 903 * P, 2, collect, &g), 0);
	cr_assert_eq(rst_shm_route(r, 1, 201 * P, 1, collect, &g), 0);
	cr_assert_eq(g.n, 2, "%zu pieces", g.n);
	EXPECT(g, 0, 0, 103 * P, 2);
	EXPECT(g, 1, 1, 201 * P, 1);
	rst_shm_route_free(r);
}

Test(rst_shm_route, object_pages_only_a_later_process_maps_are_its_own)
{
	/* parent maps object pages 0..7 of 9, child 0..15 at page 500, grandchild 12..15 */
	struct haul_vma p[1] = {shm(100, 8, 0, 9)};
	struct haul_vma c[1] = {shm(500, 16, 0, 9)};
	struct haul_vma gc[1] = {shm(700, 4, 12, 9)};
	struct haul_layout lp = {p, 1}, lc = {c, 1}, lg = {gc, 1};
	const struct haul_layout *l[4] = {&lp, NULL, &lc, &lg};
	struct rst_shm_route *r;
	struct got g = {0};

	cr_assert_eq(rst_shm_route_new(l, 4, &r), 0);
	/* the child writes object pages 6..13: 6-7 are the parent's, 8-13 its own */
	cr_assert_eq(rst_shm_route(r, 2, 506 * P, 8, collect, &g), 0);
	/* the grandchild writes object page 14: the child's */
	cr_assert_eq(rst_shm_route(r, 3, 702 * P, 1, collect, &g), 0);
	cr_assert_eq(g.n, 3, "%zu pieces", g.n);
	EXPECT(g, 0, 0, 106 * P, 2);
	EXPECT(g, 1, 2, 508 * P, 6);
	EXPECT(g, 2, 2, 514 * P, 1);
	rst_shm_route_free(r);
}

Test(rst_shm_route, a_range_across_private_and_shared_vmas_is_split_at_their_bounds)
{
	/* process 1: private 10..11, object 3 pages 0..1 at 12, private 14..15 */
	struct haul_vma a[1] = {shm(50, 2, 0, 3)};
	struct haul_vma b[3] = {priv(10, 2), shm(12, 2, 0, 3), priv(14, 2)};
	struct haul_layout la = {a, 1}, lb = {b, 3};
	const struct haul_layout *l[2] = {&la, &lb};
	struct rst_shm_route *r;
	struct got g = {0};

	cr_assert_eq(rst_shm_route_new(l, 2, &r), 0);
	cr_assert_eq(rst_shm_route(r, 1, 10 * P, 6, collect, &g), 0);
	cr_assert_eq(g.n, 3, "%zu pieces", g.n);
	EXPECT(g, 0, 1, 10 * P, 2);
	EXPECT(g, 1, 0, 50 * P, 2);
	EXPECT(g, 2, 1, 14 * P, 2);
	cr_expect_eq(rst_shm_route(r, 2, 10 * P, 1, collect, &g), -EINVAL);
	rst_shm_route_free(r);
}

Test(rst_shm_route, rounds_of_a_tree_send_each_shared_page_once_by_its_owner)
{
	/* parent: object 5 pages 0..7 at 100, private 300..301; child: object at 900 */
	struct haul_vma p[2] = {shm(100, 8, 0, 5), priv(300, 2)};
	struct haul_vma c[1] = {shm(900, 8, 0, 5)};
	struct trk_range pd[2] = {{102 * P, 2}, {300 * P, 1}};
	struct trk_range cd[1] = {{901 * P, 4}};
	struct trk_round r[3];

	memset(r, 0, sizeof(r));
	r[0].layout = (struct haul_layout){p, 2};
	r[1].layout = (struct haul_layout){c, 1};
	/* r[2]: a zombie, nothing */
	r[0].dirty = malloc(sizeof(pd));
	r[1].dirty = malloc(sizeof(cd));
	cr_assert(r[0].dirty && r[1].dirty);
	memcpy(r[0].dirty, pd, sizeof(pd));
	memcpy(r[1].dirty, cd, sizeof(cd));
	r[0].ndirty = 2;
	r[1].ndirty = 1;
	struct rst_shm_route *prev = NULL;

	cr_assert_eq(rst_shm_route_rounds(&prev, NULL, r, 3), 0);
	/* object pages 1..4 written by the child, 2..3 by the parent: 1..4 once, by the parent */
	cr_assert_eq(r[0].ndirty, 2, "%zu ranges", r[0].ndirty);
	cr_expect_eq(r[0].dirty[0].start, 101 * P);
	cr_expect_eq(r[0].dirty[0].npages, 4);
	cr_expect_eq(r[0].dirty[1].start, 300 * P);
	cr_expect_eq(r[0].dirty[1].npages, 1);
	cr_expect_eq(r[0].dirty_pages, 5);
	cr_expect_eq(r[1].ndirty, 0, "the child sends %zu ranges", r[1].ndirty);
	cr_expect_eq(r[1].dirty_pages, 0);
	cr_expect_eq(r[2].ndirty, 0);
	for (int i = 0; i < 3; i++)
		free(r[i].dirty);
	rst_shm_route_free(prev);
}

Test(rst_shm_route, an_object_range_whose_owner_went_is_sent_again_by_the_next_owner)
{
	/* round 1: parent maps object 5 pages 0..7 at 100, child at 900; round 2: parent unmapped */
	struct haul_vma p[1] = {shm(100, 8, 0, 5)};
	struct haul_vma c[1] = {shm(900, 8, 0, 5)};
	struct rst_shm_route *prev = NULL;
	struct trk_round r[2];

	memset(r, 0, sizeof(r));
	r[0].layout = (struct haul_layout){p, 1};
	r[1].layout = (struct haul_layout){c, 1};
	cr_assert_eq(rst_shm_route_rounds(&prev, NULL, r, 2), 0);
	cr_expect_eq(r[0].ndirty + r[1].ndirty, 0);
	free(r[0].dirty);
	free(r[1].dirty);
	memset(r, 0, sizeof(r));
	r[1].layout = (struct haul_layout){c, 1};
	cr_assert_eq(rst_shm_route_rounds(&prev, NULL, r, 2), 0);
	/* nobody wrote, but the child now owns pages 0..7: it sends them */
	cr_assert_eq(r[1].ndirty, 1, "%zu ranges", r[1].ndirty);
	cr_expect_eq(r[1].dirty[0].start, 900 * P);
	cr_expect_eq(r[1].dirty[0].npages, 8);
	cr_expect_eq(r[0].ndirty, 0);
	free(r[0].dirty);
	free(r[1].dirty);
	rst_shm_route_free(prev);
}
