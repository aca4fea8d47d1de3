/*
 * ctr_memcheck.c - the process of the pre-dump tests (tests/extra/
 * ctr_predump.sh), built static for a busybox rootfs: memory that checks
 * itself.  It maps MIB MiB and keeps in every 4 KiB page a pattern derived
 * from a token (drawn at start, kept only in memory), the page number and
 * the page's generation (an array in the heap).  Every 20 ms it rewrites
 * 64 random pages with their next generation, replaces a 256 KiB mapping
 * by a new one elsewhere every 10 steps (a layout change: old contents
 * gone), zaps one page (MADV_DONTNEED, then rewritten) and verifies every
 * page; then writes "TOKEN COUNTER BAD" to STATUS_FILE (under a temporary
 * name, renamed).  BAD counts pages found wrong since start: after a
 * checkpoint and restore (through pre-dump images or not) it must stay 0
 * with the same token.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE	    4096
#define CHURN_PAGES 64

static uint64_t token;

static uint64_t word(uint64_t page, uint32_t gen, unsigned k)
{
	uint64_t x = token ^ (page * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)gen << 40) ^ k;

	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ULL;
	return x ^ (x >> 29);
}

static void fill(uint64_t *p, uint64_t page, uint32_t gen)
{
	for (unsigned k = 0; k < PAGE / 8; k++)
		p[k] = word(page, gen, k);
}

static unsigned long check(const uint64_t *p, uint64_t page, uint32_t gen)
{
	for (unsigned k = 0; k < PAGE / 8; k++)
		if (p[k] != word(page, gen, k))
			return 1;
	return 0;
}

static void put(const char *path, unsigned long counter, unsigned long bad)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return;
	fprintf(f, "%llu %lu %lu\n", (unsigned long long)token, counter, bad);
	fclose(f);
	rename(tmp, path);
}

int main(int argc, char **argv)
{
	struct timespec ts = {0, 20 * 1000 * 1000}, now;
	unsigned long counter = 0, bad = 0, npages;
	uint32_t *gen, churn_gen = 0;
	uint8_t *mem, *churn;

	if (argc < 3) {
		fprintf(stderr, "usage: ctr_memcheck STATUS_FILE MIB\n");
		return 2;
	}
	npages = strtoul(argv[2], NULL, 10) * (1024 * 1024 / PAGE);
	clock_gettime(CLOCK_REALTIME, &now);
	token = ((uint64_t)now.tv_nsec << 20) ^ ((uint64_t)getpid() << 48) ^ (uint64_t)now.tv_sec;
	mem = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	churn = mmap(NULL, CHURN_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		     -1, 0);
	gen = calloc(npages, sizeof(*gen));
	if (mem == MAP_FAILED || churn == MAP_FAILED || !gen)
		return 1;
	srandom((unsigned)token);
	for (unsigned long i = 0; i < npages; i++)
		fill((uint64_t *)(mem + i * PAGE), i, 0);
	for (unsigned long i = 0; i < CHURN_PAGES; i++)
		fill((uint64_t *)(churn + i * PAGE), npages + i, 0);
	for (;;) {
		unsigned long z;

		counter++;
		for (int n = 0; n < 64; n++) {
			unsigned long i = (unsigned long)random() % npages;

			fill((uint64_t *)(mem + i * PAGE), i, ++gen[i]);
		}
		if (counter % 10 == 0) {
			/* a new mapping first, then the old one goes: never the same address */
			uint8_t *c = mmap(NULL, CHURN_PAGES * PAGE, PROT_READ | PROT_WRITE,
					  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

			if (c != MAP_FAILED) {
				munmap(churn, CHURN_PAGES * PAGE);
				churn = c;
				churn_gen++;
				for (unsigned long i = 0; i < CHURN_PAGES; i++)
					fill((uint64_t *)(churn + i * PAGE), npages + i, churn_gen);
			}
		}
		z = (unsigned long)random() % npages;
		madvise(mem + z * PAGE, PAGE, MADV_DONTNEED);
		fill((uint64_t *)(mem + z * PAGE), z, gen[z]);
		for (unsigned long i = 0; i < npages; i++)
			bad += check((uint64_t *)(mem + i * PAGE), i, gen[i]);
		for (unsigned long i = 0; i < CHURN_PAGES; i++)
			bad += check((uint64_t *)(churn + i * PAGE), npages + i, churn_gen);
		put(argv[1], counter, bad);
		nanosleep(&ts, NULL);
	}
}
