/*
 * lazy_workload - a process whose memory is all populated and checkable,
 * for post-copy restore tests and the resume-time benchmark.
 *
 * usage: lazy_workload MIB ITERATIONS
 *
 * Maps MIB MiB of anonymous memory and fills every word with a function of
 * its address, prints "ready" and then, ITERATIONS times, sleeps 1 ms and
 * reads and rewrites 64 random pages (each gets +1 in word 1, remembered in
 * a small table so the final check knows what to expect).  At the end it
 * checks every word of the region and prints "final ok" or "final bad N".
 * Only stdout is used (point it at a file: restore refuses pipes).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PGSZ 4096UL

static uint64_t pattern(uint64_t addr)
{
	return (addr >> 3) * 0x9E3779B97F4A7C15ull + 0x7f4a7c15;
}

int main(int argc, char **argv)
{
	size_t len, npages;
	uint64_t iters, x = 0x2545F4914F6CDD1Dull, bad = 0;
	uint32_t *bumps;
	char *mem;

	if (argc < 3) {
		fprintf(stderr, "usage: %s MIB ITERATIONS\n", argv[0]);
		return 2;
	}
	len = strtoull(argv[1], NULL, 10) << 20;
	iters = strtoull(argv[2], NULL, 10);
	npages = len / PGSZ;
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bumps = calloc(npages, sizeof(*bumps));
	if (mem == MAP_FAILED || !bumps)
		return 2;
	for (size_t off = 0; off < len; off += 8)
		*(uint64_t *)(mem + off) = pattern((uint64_t)(uintptr_t)(mem + off));
	printf("ready %zu\n", npages);
	fflush(stdout);

	for (uint64_t i = 0; i < iters; i++) {
		struct timespec ts = {0, 1000000};

		for (int k = 0; k < 64; k++) {
			size_t pg;
			uint64_t *w;

			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			pg = x % npages;
			w = (uint64_t *)(mem + pg * PGSZ);
			bad += w[0] != pattern((uint64_t)(uintptr_t)w);
			w[1]++;
			bumps[pg]++;
		}
		nanosleep(&ts, NULL);
	}
	for (size_t pg = 0; pg < npages; pg++) {
		uint64_t *w = (uint64_t *)(mem + pg * PGSZ);

		for (size_t k = 0; k < PGSZ / 8; k++)
			bad += w[k] !=
			       pattern((uint64_t)(uintptr_t)(w + k)) + (k == 1 ? bumps[pg] : 0);
	}
	if (bad)
		printf("final bad %llu\n", (unsigned long long)bad);
	else
		printf("final ok\n");
	return bad ? 1 : 0;
}
