/*
 * image_fuzz.c - libFuzzer target for the image loader of `haul restore`
 * (make fuzz).
 *
 * Input byte 0 selects what the rest is:
 *   even: the body of an index.img.  The harness writes it, behind a valid
 *         header (magic, version 2, length, XXH3-64), into an images directory
 *         with a pages.img of (byte 1 % 16) pages, then loads it exactly as
 *         haul restore does: pstore_open(), the process's layout and state
 *         through their validators (rst_state_check), and every stored page (pstore_walk).
 *   odd:  a ProcessState blob, as a page server or image hands it to the
 *         restorer: unpacked and validated as the restorer does
 *         (rst_state_check: the common checks, then each fd kind's).
 * A crash, a leak or a sanitizer report is a bug; a refusal is not.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/log.h"
#include "common/pstore.h"
#include "common/validate.h"
#include "restore/fd_int.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define IMG_PID 4242

static char dir[64], pdir[96];

/* Leave nothing in /dev/shm (libFuzzer ends with exit()). */
static void cleanup(void)
{
	char path[160];

	snprintf(path, sizeof(path), "%s/index.img", pdir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/index.img.tmp", pdir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/pages.img", pdir);
	unlink(path);
	rmdir(pdir);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_level = getenv("IMAGE_FUZZ_LOG") ? LOG_DEBUG : -1;
	/* tmpfs: an input costs a few small writes */
	snprintf(dir, sizeof(dir), "/dev/shm/haul-image-fuzz-%d", (int)getpid());
	snprintf(pdir, sizeof(pdir), "%s/%d", dir, IMG_PID);
	if ((mkdir(dir, 0700) && access(dir, W_OK)) || (mkdir(pdir, 0700) && access(pdir, W_OK))) {
		perror(pdir);
		abort();
	}
	atexit(cleanup);
	return 0;
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void write_file(const char *name, const void *a, size_t alen, const void *b, size_t blen)
{
	char path[160];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", pdir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, a, alen) != (ssize_t)alen ||
	    (blen && write(fd, b, blen) != (ssize_t)blen)) {
		perror(path);
		abort();
	}
	close(fd);
}

static int walk_page(void *arg, uint64_t addr, const void *p, uint32_t npages)
{
	volatile uint8_t x = 0;

	(void)arg;
	(void)addr;
	/* touch every delivered page so a bad pointer or length shows up */
	if (p)
		for (size_t i = 0; i < (size_t)npages * 4096; i += 512)
			x ^= ((const uint8_t *)p)[i];
	return 0;
}

static void load_index(const uint8_t *body, size_t len, unsigned npages)
{
	static uint8_t pages[16 * 4096];
	uint8_t hdr[32];
	struct pstore *s;
	struct pstore_proc *p;
	const void *state;
	size_t slen;
	char why[160];

	memcpy(hdr, "HAULIDX1", 8);
	put_le64(hdr + 8, 2); /* PSTORE_IDX_VERSION, then reserved 0 */
	put_le64(hdr + 16, len);
	put_le64(hdr + 24, XXH3_64bits(body, len));
	for (unsigned i = 0; i < npages; i++)
		memset(pages + i * 4096, 'a' + (int)i, 4096);
	write_file("index.img", hdr, sizeof(hdr), body, len);
	write_file("pages.img", pages, (size_t)npages * 4096, NULL, 0);
	if (pstore_open(dir, &s))
		return;
	if (!pstore_proc_get(s, IMG_PID, false, &p)) {
		state = pstore_state(p, &slen);
		if (!val_layout(pstore_layout(p), why, sizeof(why)) &&
		    (!state || !rst_state_check(state, slen, why, sizeof(why))))
			pstore_walk(p, walk_page, NULL);
	}
	pstore_close(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[160];

	if (size < 2)
		return 0;
	if (data[0] & 1)
		rst_state_check(data + 1, size - 1, why, sizeof(why));
	else
		load_index(data + 2, size - 2, data[1] % 16);
	return 0;
}
