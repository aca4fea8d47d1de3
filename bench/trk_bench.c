/*
 * trk_bench.c - what tracking costs, each figure a ratio against an
 * untracked baseline measured in the same run.
 *
 * A forked child maps SIZE MiB of anonymous memory, touches it all (warm),
 * and on command writes a random permille of its pages, timing its own
 * stores.  The parent measures:
 *   - read: process_vm_readv of the whole region in 1 MiB calls (the
 *     memory-read speed, the baseline for the hash backend);
 *   - per backend, one round when clean, after 1% and after 10% of pages
 *     were written: ms per GiB, and as a ratio to the read;
 *   - the child's write slowdown under tracking: ns per first store to a
 *     page after a round (which re-protected it) / ns untracked.
 * Targets (issue 3): uffd clean scan <= 2 ms per GiB; hash round <= 1.5x
 * the read.  Usage: trk_bench [SIZE_MIB] (default 512).
 */
#define LOG_PREFIX "trk_bench: "
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/probe.h"
#include "tracker/tracker.h"

struct cmd {
	unsigned int permille, seed;
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The workload: write the asked share of pages, answer with ns per page written. */
static void child(int in, int out, size_t size)
{
	char *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	size_t pages = size / 4096;
	struct cmd c;
	uint64_t addr;

	if (m == MAP_FAILED)
		_exit(2);
	madvise(m, size, MADV_NOHUGEPAGE); /* 4 KiB pages: the per-page costs we want */
	for (size_t i = 0; i < pages; i++)
		m[i * 4096] = (char)i;
	addr = (uintptr_t)m;
	if (write(out, &addr, sizeof(addr)) != sizeof(addr))
		_exit(2);
	while (read(in, &c, sizeof(c)) == sizeof(c)) {
		unsigned int seed = c.seed;
		size_t n = 0;
		double t0 = now_ms(), ns;

		for (size_t i = 0; i < pages; i++)
			if ((unsigned int)rand_r(&seed) % 1000 < c.permille) {
				m[i * 4096 + 64]++;
				n++;
			}
		ns = n ? (now_ms() - t0) * 1e6 / n : 0;
		if (write(out, &ns, sizeof(ns)) != sizeof(ns))
			_exit(2);
	}
	_exit(0);
}

static int to_child, from_child;

static double dirty(unsigned int permille, unsigned int seed)
{
	struct cmd c = {permille, seed};
	double ns = -1;

	if (write(to_child, &c, sizeof(c)) != sizeof(c) ||
	    read(from_child, &ns, sizeof(ns)) != sizeof(ns))
		return -1;
	return ns;
}

static double read_all(pid_t pid, uint64_t addr, size_t size, char *buf)
{
	double t0 = now_ms();

	for (size_t off = 0; off < size; off += 1 << 20) {
		struct iovec l = {buf, 1 << 20}, r = {(void *)(uintptr_t)(addr + off), 1 << 20};

		if (process_vm_readv(pid, &l, 1, &r, 1, 0) != 1 << 20)
			return -1;
	}
	return now_ms() - t0;
}

static double round_ms(struct trk *t, uint64_t *pages)
{
	struct trk_round r;
	double t0 = now_ms(), ms;

	if (trk_round(t, &r))
		return -1;
	ms = now_ms() - t0;
	*pages = r.dirty_pages;
	trk_round_release(&r);
	return ms;
}

static uint64_t child_addr;
static size_t child_size;
static char *read_buf;

static int bench_backend(enum trk_backend b, pid_t pid, double gib, double read_ms,
			 double write_ns_base)
{
	static const unsigned int pm[] = {0, 10, 100};
	static const char *const label[] = {"clean", "1%", "10%"};
	struct trk_opts o = {.backend = b};
	struct trk *t = NULL;
	uint64_t pages = 0;
	double first, ms, wns = 0;

	if (trk_open(pid, &o, &t)) {
		printf("trk_bench: %s: not available here, skipped\n", trk_backend_name(b));
		return 0;
	}
	first = round_ms(t, &pages);
	printf("trk_bench: %s: round 1 (all %llu pages, protects them): %.2f ms = %.2f ms/GiB; "
	       "attach stop %.3f ms\n",
	       trk_backend_name(b), (unsigned long long)pages, first, first / gib, trk_stop_ms(t));
	for (size_t i = 0; i < 3; i++) {
		double best = 1e30, rbest = read_ms;

		/*
		 * Best of 3: the VM is shared and noisy.  The memory read is
		 * measured again next to each round, so that a ratio compares
		 * the two under the same load.
		 */
		for (int rep = 0; rep < 3; rep++) {
			double w = pm[i] ? dirty(pm[i], 1000 + rep) : 0;
			double r = read_all(pid, child_addr, child_size, read_buf);

			if (r > 0 && (rep == 0 || r < rbest))
				rbest = r;

			if (pm[i] == 100 && rep == 0)
				wns = w;
			ms = round_ms(t, &pages);
			if (ms < 0) {
				trk_free(t);
				return -1;
			}
			if (ms < best)
				best = ms;
		}
		printf("trk_bench: %s %-5s round: %8.3f ms/GiB, %llu dirty pages; "
		       "scan/read ratio %.4f\n",
		       trk_backend_name(b), label[i], best / gib, (unsigned long long)pages,
		       best / rbest);
		if (b == TRK_UFFD && pm[i] == 0)
			printf("trk_bench: target uffd clean scan <= 2 ms/GiB: %s (%.3f)\n",
			       best / gib <= 2.0 ? "met" : "MISSED", best / gib);
		if (b == TRK_HASH && pm[i] == 0)
			printf("trk_bench: target hash round <= 1.5x memory read: %s "
			       "(ratio %.2f)\n",
			       best / rbest <= 1.5 ? "met" : "MISSED", best / rbest);
	}
	if (write_ns_base > 0 && wns > 0)
		printf("trk_bench: %s write slowdown ratio %.2f (%.0f ns per first store to a "
		       "page after a round, %.0f untracked)\n",
		       trk_backend_name(b), wns / write_ns_base, wns, write_ns_base);
	trk_free(t);
	return 0;
}

/*
 * A sparse address space: 64 GiB mapped, one page touched every 64 MiB plus
 * 16 MiB together.  uffd protects only populated pages (no markers in empty
 * page tables), so round 1 and clean rounds must cost like the populated
 * part, not like 64 GiB (UFFDIO_WRITEPROTECT of all of it: ~0.33 s and ~128 MiB
 * of page tables on a 2-core VM).
 */
static void bench_sparse(void)
{
	const size_t span = 64ULL << 30, dense = 16 << 20, step = 64 << 20;
	struct trk_opts o = {.backend = TRK_UFFD};
	int p[2], q[2], status;
	struct trk *t = NULL;
	uint64_t pages = 0;
	double first, best = 1e30;
	pid_t pid;
	char c;

	if (pipe(p) || pipe(q))
		return;
	pid = fork();
	if (pid == 0) {
		char *m = mmap(NULL, span, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		if (m == MAP_FAILED)
			_exit(2);
		for (size_t off = 0; off < span; off += step)
			m[off] = 1;
		memset(m + span / 2, 1, dense);
		if (write(q[1], "r", 1) != 1 || read(p[0], &c, 1) < 0)
			_exit(2);
		_exit(0);
	}
	if (read(q[0], &c, 1) != 1)
		goto out;
	if (trk_open(pid, &o, &t)) {
		printf("trk_bench: uffd sparse: not available here, skipped\n");
		goto out;
	}
	first = round_ms(t, &pages);
	for (int i = 0; i < 3; i++) {
		uint64_t n;
		double ms = round_ms(t, &n);

		if (ms >= 0 && ms < best)
			best = ms;
	}
	printf("trk_bench: uffd sparse 64 GiB mapping, %llu pages populated: round 1 %.2f ms, "
	       "clean round %.3f ms (%.4f ms per mapped GiB)\n",
	       (unsigned long long)pages, first, best, best / 64);
	trk_free(t);
out:
	if (write(p[1], "x", 1) != 1)
		kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	close(p[0]);
	close(p[1]);
	close(q[0]);
	close(q[1]);
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 512, size = mib << 20;
	int a[2], b[2], status;
	double read_ms = 1e30, base_ns = 1e30, gib = mib / 1024.0;
	uint64_t addr;
	char *buf;
	pid_t pid;

	log_init("trk_bench");
	if (!mib || pipe(a) || pipe(b))
		return 2;
	pid = fork();
	if (pid == 0) {
		close(a[1]);
		close(b[0]);
		child(a[0], b[1], size);
	}
	close(a[0]);
	close(b[1]);
	to_child = a[1];
	from_child = b[0];
	if (read(from_child, &addr, sizeof(addr)) != sizeof(addr))
		return 2;
	buf = malloc(1 << 20);
	child_addr = addr;
	child_size = size;
	read_buf = buf;
	for (int i = 0; i < 3; i++) {
		double r = read_all(pid, addr, size, buf), w = dirty(100, 1 + i);

		if (r < 0 || w < 0)
			return 2;
		if (r < read_ms)
			read_ms = r;
		if (w < base_ns)
			base_ns = w;
	}
	printf("trk_bench: %zu MiB anonymous memory, warm (touched once), 4 KiB pages\n", mib);
	printf("trk_bench: memory read (process_vm_readv 1 MiB calls): %.2f ms = %.2f GB/s "
	       "(baseline)\n",
	       read_ms, size / read_ms / 1e6);
	printf("trk_bench: untracked 10%% write: %.0f ns per page (baseline)\n", base_ns);
	bench_backend(TRK_UFFD, pid, gib, read_ms, base_ns);
	bench_backend(TRK_SOFT_DIRTY, pid, gib, read_ms, base_ns);
	bench_backend(TRK_HASH, pid, gib, read_ms, base_ns);
	bench_sparse();
	close(to_child);
	waitpid(pid, &status, 0);
	free(buf);
	return 0;
}
