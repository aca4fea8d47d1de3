/*
 * common_vma_ident.c - the file of a private file mapping, as the source
 * saw it, against the one a restorer opened (common/vma_ident.c).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/vma.h"

static const struct haul_vma lib = {.start = 0x7f0000000000,
				    .end = 0x7f0000002000,
				    .dev = 0x801,
				    .ino = 42,
				    .prot = PROT_READ | PROT_EXEC,
				    .flags = HAUL_VMA_FILE,
				    .path = "/usr/lib/libx.so.1",
				    .file_size = 8192,
				    .file_mtime = 1700000000123456789,
				    .file_known = true};

static struct stat file_like(uint64_t dev, uint64_t ino, off_t size, int64_t mtime)
{
	struct stat st;

	memset(&st, 0, sizeof(st));
	st.st_dev = dev;
	st.st_ino = ino;
	st.st_mode = S_IFREG | 0644;
	st.st_size = size;
	st.st_mtim.tv_sec = mtime / 1000000000;
	st.st_mtim.tv_nsec = mtime % 1000000000;
	return st;
}

Test(vma_ident, the_same_size_and_mtime_or_the_same_inode_pass)
{
	char why[1024] = "";
	struct stat st = file_like(0x802, 7, 8192, lib.file_mtime);

	cr_assert_eq(haul_vma_ident_check(&lib, &st, NULL, why, sizeof(why)), 0, "%s", why);
	st = file_like(0x801, 42, 100, 5); /* the same inode, changed since */
	cr_assert_eq(haul_vma_ident_check(&lib, &st, NULL, why, sizeof(why)), 0, "%s", why);
}

Test(vma_ident, another_size_or_mtime_is_refused_by_name)
{
	char why[1024] = "";
	struct stat st = file_like(0x802, 7, 8193, lib.file_mtime);

	cr_assert_eq(haul_vma_ident_check(&lib, &st, NULL, why, sizeof(why)), -ESTALE);
	cr_assert(
		strstr(why,
		       "/usr/lib/libx.so.1 is 8193 bytes on the restoring host and was 8192 at the source"),
		"%s", why);
	st = file_like(0x802, 7, 8192, lib.file_mtime + 1);
	cr_assert_eq(haul_vma_ident_check(&lib, &st, NULL, why, sizeof(why)), -ESTALE);
	cr_assert(strstr(why, "modified 2023-11-14 22:13:20.123456790 UTC on the restoring host "
			      "and 2023-11-14 22:13:20.123456789 UTC at the source"),
		  "%s", why);
	cr_assert(strstr(why, "touch -m -d @1700000000.123456789 '/usr/lib/libx.so.1'"), "%s", why);
}

Test(vma_ident, unknown_shared_and_anonymous_are_not_checked)
{
	char why[64];
	struct stat st = file_like(1, 1, 1, 1);
	struct haul_vma v = lib;

	v.file_known = false;
	cr_assert_eq(haul_vma_ident_check(&v, &st, NULL, why, sizeof(why)), 0);
	v = lib;
	v.flags |= HAUL_VMA_SHARED;
	cr_assert_eq(haul_vma_ident_check(&v, &st, NULL, why, sizeof(why)), 0);
	cr_assert_not(haul_vma_ident_wanted(&v));
	v.flags = HAUL_VMA_ANON;
	cr_assert_not(haul_vma_ident_wanted(&v));
}

/* Our own private mapping of a file we write: identified once per file, from a stat. */
Test(vma_ident, a_mapping_of_our_own_is_identified_and_reused_from_prev)
{
	char path[] = "/tmp/haul-vma-ident-XXXXXX";
	int fd = mkstemp(path);
	struct haul_layout l, again;
	struct stat st;
	char *m;

	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 3 * 4096), 0);
	m = mmap(NULL, 3 * 4096, PROT_READ, MAP_PRIVATE, fd, 0);
	cr_assert_neq(m, MAP_FAILED);
	cr_assert_eq(mprotect(m + 4096, 4096, PROT_READ | PROT_WRITE), 0); /* two VMAs */
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq(haul_layout_read(getpid(), false, &l), 0);
	haul_layout_identify(getpid(), &l, NULL);
	for (int i = 0; i < 3; i++) {
		const struct haul_vma *v = haul_layout_find(&l, (uint64_t)m + i * 4096);

		cr_assert_not_null(v);
		cr_assert(v->file_known);
		cr_assert_eq(v->file_size, 3 * 4096);
		cr_assert_eq(v->file_mtime, st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec);
	}
	/* reused from @prev while the VMA stays: a later change is not seen */
	cr_assert_eq(ftruncate(fd, 4 * 4096), 0);
	cr_assert_eq(haul_layout_read(getpid(), false, &again), 0);
	haul_layout_identify(getpid(), &again, &l);
	cr_assert_eq(haul_layout_find(&again, (uint64_t)m)->file_size, 3 * 4096);
	haul_layout_identify(getpid(), &again, NULL);
	cr_assert_eq(haul_layout_find(&again, (uint64_t)m)->file_size, 4 * 4096);
	haul_layout_release(&l);
	haul_layout_release(&again);
	munmap(m, 3 * 4096);
	close(fd);
	unlink(path);
}

/* A copy of an ELF file with another mtime passes by its build-id; other bytes do not. */
Test(vma_ident, a_copy_with_another_mtime_passes_by_its_build_id)
{
	char copy[] = "/tmp/haul-vma-ident-XXXXXX", why[1024] = "";
	int in = open("/proc/self/exe", O_RDONLY), fd = mkstemp(copy);
	struct haul_vma v = lib;
	struct stat st;
	char buf[65536];
	ssize_t n;

	cr_assert(in >= 0 && fd >= 0);
	v.build_id_len = (uint8_t)haul_file_build_id(in, v.build_id);
	if (!v.build_id_len)
		cr_skip_test("this test binary has no ELF build-id (built without --build-id)");
	while ((n = read(in, buf, sizeof(buf))) > 0)
		cr_assert_eq(write(fd, buf, (size_t)n), n);
	cr_assert_eq(fstat(fd, &st), 0);
	v.file_size = (uint64_t)st.st_size;
	v.file_mtime = 5; /* 1970: another mtime */
	cr_assert_eq(haul_vma_ident_check(&v, &st, copy, why, sizeof(why)), 0, "%s", why);
	v.build_id[0] ^= 1;
	cr_assert_eq(haul_vma_ident_check(&v, &st, copy, why, sizeof(why)), -ESTALE);
	cr_assert(strstr(why, "has another ELF build-id on the restoring host"), "%s", why);
	/* the same mtime does not make another build-id the same file */
	v.file_mtime = st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
	cr_assert_eq(haul_vma_ident_check(&v, &st, copy, why, sizeof(why)), -ESTALE);
	cr_assert_eq(haul_vma_ident_check(&v, &st, NULL, why, sizeof(why)), -ESTALE);
	/* a file that is not ELF has none */
	cr_assert_eq(ftruncate(fd, 100), 0);
	cr_assert_eq(haul_file_build_id(fd, v.build_id), 0);
	close(in);
	close(fd);
	unlink(copy);
}

/* A file without a build-id is told by its bytes: another mtime passes, another byte does not. */
Test(vma_ident, a_file_without_build_id_is_told_by_its_bytes)
{
	char path[] = "/tmp/haul-vma-ident-XXXXXX", why[1024] = "";
	int fd = mkstemp(path);
	struct haul_vma v = lib;
	struct stat st;

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "locale data", 11), 11);
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq(haul_file_build_id(fd, v.build_id), 0);
	cr_assert_eq(haul_file_hash(fd, 11, &v.file_hash), 0);
	v.file_hashed = true;
	v.file_size = 11;
	v.file_mtime = 5; /* generated on each host: another mtime */
	cr_assert_eq(haul_vma_ident_check(&v, &st, path, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(pwrite(fd, "L", 1, 0), 1);
	cr_assert_eq(haul_vma_ident_check(&v, &st, path, why, sizeof(why)), -ESTALE);
	cr_assert(strstr(why, "holds other bytes on the restoring host than at the source"), "%s",
		  why);
	close(fd);
	unlink(path);
}

/* A private mapping of a device (/dev/zero) is no file to check: not identified, never opened. */
Test(vma_ident, a_private_mapping_of_dev_zero_is_not_identified)
{
	int fd = open("/dev/zero", O_RDONLY);
	struct haul_layout l;
	char *m;

	cr_assert_geq(fd, 0);
	m = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
	cr_assert_neq(m, MAP_FAILED);
	cr_assert_eq(haul_layout_read(getpid(), false, &l), 0);
	haul_layout_identify(getpid(), &l, NULL);
	cr_assert_not_null(haul_layout_find(&l, (uint64_t)m));
	cr_assert_not(haul_layout_find(&l, (uint64_t)m)->file_known);
	haul_layout_release(&l);
	munmap(m, 4096);
	close(fd);
}
