/*
 * trk_read_file.c - reading a stopped process's private file mapping from
 * the file (src/tracker/read_file.c) gives exactly what process_vm_readv
 * gives: the file's bytes where the process never wrote, its own copies
 * where it did, the same zero bits, and the same bytes again through the
 * fallback when the mapping runs past the file's end.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/vma.h"
#include "tracker/tracker.h"

#define PG     4096
#define NPAGES 64

static pid_t child = -1;
static char path[] = "/tmp/haul-trk-read-file-XXXXXX";

static void teardown(void)
{
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	unlink(path);
}

TestSuite(trk_read_file, .fini = teardown);

/*
 * A file of @file_pages pages (page i filled with byte i + 1, page 30 all
 * zeros) mapped private over NPAGES pages by a child that writes pages 3,
 * 4 and 10 (its own copies), reads page 20 and stops.  Returns where it
 * mapped it.
 */
static uint64_t start_child(size_t file_pages)
{
	uint8_t page[PG];
	int fd = mkstemp(path), p[2];
	uint64_t at = 0;

	cr_assert_geq(fd, 0);
	for (size_t i = 0; i < file_pages; i++) {
		memset(page, i == 30 ? 0 : (int)(i + 1), sizeof(page));
		cr_assert_eq(write(fd, page, sizeof(page)), PG);
	}
	cr_assert_eq(pipe(p), 0);
	child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		volatile uint8_t *m =
			mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
		uint64_t a = (uint64_t)(uintptr_t)m;

		if (m == MAP_FAILED)
			_exit(1);
		m[3 * PG] = 0xaa;
		m[4 * PG + 7] = 0xbb;
		m[10 * PG] = 0; /* written: its own copy, still not all zero */
		(void)m[20 * PG];
		if (write(p[1], &a, sizeof(a)) != sizeof(a))
			_exit(1);
		raise(SIGSTOP);
		_exit(0);
	}
	close(fd);
	close(p[1]);
	cr_assert_eq(read(p[0], &at, sizeof(at)), (ssize_t)sizeof(at));
	close(p[0]);
	cr_assert_eq(waitpid(child, NULL, WUNTRACED), child);
	return at;
}

static void compare(uint64_t at, size_t npages)
{
	static uint8_t a[NPAGES * PG], b[NPAGES * PG];
	uint64_t za[NPAGES / 64 + 1] = {0}, zb[NPAGES / 64 + 1] = {0};
	struct trk_range r = {at, npages};
	struct haul_layout l = {0};
	const struct haul_vma *v;

	cr_assert_eq(haul_layout_read(child, false, &l), 0);
	v = haul_layout_find(&l, at);
	cr_assert_not_null(v);
	cr_assert(v->flags & HAUL_VMA_FILE);
	memset(b, 0x5a, sizeof(b));
	cr_assert_eq(trk_read_pages(child, &r, 1, a, za), 0);
	cr_assert_eq(trk_read_file_pages(child, v, &r, b, zb), 0);
	for (size_t i = 0; i < npages; i++)
		cr_assert_eq(memcmp(a + i * PG, b + i * PG, PG), 0, "page %zu differs", i);
	cr_assert_eq(memcmp(za, zb, sizeof(za)), 0, "zero bits differ");
	haul_layout_release(&l);
}

Test(trk_read_file, unwritten_pages_from_the_file_written_ones_from_the_process)
{
	uint64_t at = start_child(NPAGES);

	compare(at, NPAGES);
	compare(at + 2 * PG, 9); /* a range inside the mapping, from its offset */
}

Test(trk_read_file, a_mapping_past_the_files_end_reads_as_process_vm_readv_does)
{
	uint64_t at = start_child(40);

	compare(at, 44); /* 4 pages past the end: both read them as the process would fault */
}
