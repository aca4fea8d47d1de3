/*
 * rst_vmcheck.c - which VMAs the dump carries and which it refuses by name
 * (VmFlags, shared memory; src/restore/vmcheck.c, src/common/vma.c), on
 * layouts built by hand, and the VmFlags haul reads from its own smaps.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/vma.h"
#include "restore/restore_int.h"

static struct haul_vma anon(uint64_t start, uint64_t npages)
{
	return (struct haul_vma){.start = start,
				 .end = start + npages * 4096,
				 .prot = PROT_READ | PROT_WRITE,
				 .flags = HAUL_VMA_ANON};
}

static struct haul_vma shmem(uint64_t start, uint64_t npages, uint64_t pgoff, bool shared)
{
	static char path[] = "/dev/zero";
	struct haul_vma v = anon(start, npages);

	v.flags = HAUL_VMA_FILE | HAUL_VMA_DELETED | HAUL_VMA_SHMEM |
		  (shared ? HAUL_VMA_SHARED | HAUL_VMA_MAYSHARE : 0);
	v.pgoff = pgoff;
	v.dev = 1;
	v.ino = 552;
	v.path = path;
	return v;
}

static int refusal(struct haul_vma *v, size_t n, char *why, size_t len)
{
	struct haul_layout l = {.v = v, .n = n};

	why[0] = '\0';
	return rst_vma_refusal(&l, why, len);
}

Test(rst_vmcheck, uncarried_vmflag_is_refused_naming_vma_and_flag)
{
	struct haul_vma v[2] = {anon(0x10000, 4), anon(0x20000, 2)};
	char why[512];

	memcpy(v[1].uncarried, "pf", 3);
	cr_assert_eq(refusal(v, 2, why, sizeof(why)), -EOPNOTSUPP);
	cr_expect(strstr(why, "0x20000-0x22000"), "%s", why);
	cr_expect(strstr(why, "VmFlags \"pf\""), "%s", why);
	cr_expect(strstr(why, "PFN mapping"), "%s", why);
}

Test(rst_vmcheck, unknown_vmflag_is_refused_too)
{
	struct haul_vma v = anon(0x10000, 1);
	char why[512];

	memcpy(v.uncarried, "zz", 3);
	cr_assert_eq(refusal(&v, 1, why, sizeof(why)), -EOPNOTSUPP);
	cr_expect(strstr(why, "does not know"), "%s", why);
}

Test(rst_vmcheck, kernel_mappings_are_not_judged_by_their_vmflags)
{
	struct haul_vma v = anon(0x10000, 2);
	char why[512];

	v.flags = HAUL_VMA_VDSO; /* [vdso] shows "de" */
	memcpy(v.uncarried, "de", 3);
	cr_expect_eq(refusal(&v, 1, why, sizeof(why)), 0, "%s", why);
}

Test(rst_vmcheck, private_mapping_of_shared_memory_is_refused)
{
	struct haul_vma v[2] = {shmem(0x10000, 5, 0, true), shmem(0x40000, 5, 4096, false)};
	char why[512];

	cr_assert_eq(refusal(v, 2, why, sizeof(why)), -EOPNOTSUPP);
	cr_expect(strstr(why, "0x40000-0x45000 is a private mapping of shared memory /dev/zero"),
		  "%s", why);
}

Test(rst_vmcheck, two_shared_vmas_over_the_same_object_pages_are_carried)
{
	/* the restorer maps both onto one object (shm_restore.c) */
	struct haul_vma v[2] = {shmem(0x10000, 5, 0, true), shmem(0x40000, 3, 2 * 4096, true)};
	char why[512] = "";

	cr_expect_eq(refusal(v, 2, why, sizeof(why)), 0, "%s", why);
}

Test(rst_vmcheck, one_shared_object_split_in_disjoint_vmas_is_carried)
{
	/* mprotect of part of one shared anon mapping: two VMAs, disjoint object pages */
	struct haul_vma v[2] = {shmem(0x10000, 2, 0, true), shmem(0x12000, 3, 2 * 4096, true)};
	char why[512];

	v[1].prot = PROT_READ;
	cr_expect_eq(refusal(v, 2, why, sizeof(why)), 0, "%s", why);
}

Test(rst_vmcheck, pagemap_bit_58_is_a_guard_page)
{
	cr_expect(rst_pm_is_guard(0x440000000000009fULL)); /* as 6.18 shows one */
	cr_expect_not(rst_pm_is_guard(0x8100000000132c48ULL));
}

Test(rst_vmcheck, own_smaps_gives_noreserve_and_mergeable_as_carried_flags)
{
	char *p = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	struct haul_layout l;
	const struct haul_vma *v;
	bool mg;

	cr_assert_neq(p, MAP_FAILED);
	mg = madvise(p, 4 * 4096, MADV_MERGEABLE) == 0; /* KSM may be compiled out */
	cr_assert_eq(haul_layout_read(getpid(), true, &l), 0);
	v = haul_layout_find(&l, (uint64_t)(uintptr_t)p);
	cr_assert_not_null(v);
	cr_expect(v->flags & HAUL_VMA_NORESERVE);
	cr_expect(!mg || (v->flags & HAUL_VMA_MERGEABLE));
	cr_expect_str_empty(v->uncarried);
	haul_layout_release(&l);
	munmap(p, 4 * 4096);
}
