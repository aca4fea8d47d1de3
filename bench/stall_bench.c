/*
 * stall_bench.c - what each tracker phase before the freeze costs the
 * workload, as the workload itself sees it (issue 16).
 *
 * A forked child maps SIZE MiB of private anonymous memory (THP as the
 * system sets it), writes every page, and runs two threads the whole time:
 *   - a client: ticks every 1 ms (absolute sleeps) and keeps the longest gap
 *     between ticks, the stall a client polling it would see;
 *   - a mapper: mmap + munmap of 64 KiB in a loop, keeping the longest call,
 *     which is what any workload that maps memory (malloc, thread stacks)
 *     waits while someone holds its mmap_lock.
 * Its main thread answers commands: reset the maxima, report them, write
 * every page once (the "dirty 100%" case).  The parent runs each phase and
 * reads the child's maxima right after it:
 *   attach   trk_open (ptrace seize + injected userfaultfd/close);
 *   protect  round 1: write-protect every populated page;
 *   rescan   a round after every page was written: report + re-protect all;
 *   clean    a round with nothing written;
 *   smaps    a read of /proc/PID/smaps, as rst_dump_prepare does before a
 *            pre-copy round after the process took its mmap write lock
 *            (VmFlags): it walks the page tables of each VMA under the
 *            mmap_lock (no tracker involved);
 *   vmflags  the same VmFlags from the kernel's vm_flags words (the BPF
 *            iterator of src/restore/vmflags.c, what haul reads now):
 *            no page-table walk;
 *   detach   trk_free: closing the uffd unregisters every VMA, which clears
 *            the write-protect bits of every page under the mmap_lock;
 *   faults   the child's first store to each page after a re-protect (ns).
 * "longest call" is the longest single PAGEMAP_SCAN of that round (the
 * mmap_lock hold, plus any preemption of the caller).
 * protect and rescan run twice, sliced (haul's policy) and in one call per
 * VMA (slices as large as the address space: the behaviour before slicing),
 * alternating, each with a fresh tracker; medians of 3.
 * Usage: stall_bench [SIZE_MIB ...] (default 1024 4096).
 */
#define LOG_PREFIX "stall_bench: "
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/probe.h"
#include "restore/restore_int.h"
#include "tracker/tracker.h"

#define REPEAT 3

enum {
	CMD_RESET,
	CMD_REPORT,
	CMD_WRITE_ALL,
	CMD_EXIT
};

struct maxima {
	double tick_gap_ms; /* longest gap between 1 ms ticks */
	double mmap_ms;	    /* longest mmap or munmap */
	double store_ns;    /* WRITE_ALL: ns per page */
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- the child ------------------------------------------------------------------- */

static _Atomic double c_gap, c_mmap;
static atomic_bool c_reset_tick;

static void *ticker(void *arg)
{
	struct timespec next;
	double last = 0;

	(void)arg;
	clock_gettime(CLOCK_MONOTONIC, &next);
	for (;;) {
		double t;

		next.tv_nsec += 1000000;
		if (next.tv_nsec >= 1000000000) {
			next.tv_nsec -= 1000000000;
			next.tv_sec++;
		}
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
		t = now_ms();
		if (atomic_exchange(&c_reset_tick, false))
			last = 0;
		if (last && t - last > atomic_load(&c_gap))
			atomic_store(&c_gap, t - last);
		last = t;
	}
	return NULL;
}

static void *mapper(void *arg)
{
	(void)arg;
	for (;;) {
		double t0 = now_ms(), dt;
		void *p = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			       0);

		if (p != MAP_FAILED)
			munmap(p, 65536);
		dt = now_ms() - t0;
		if (dt > atomic_load(&c_mmap))
			atomic_store(&c_mmap, dt);
		usleep(200);
	}
	return NULL;
}

static void child(int in, int out, size_t size)
{
	char *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	size_t pages = size / 4096;
	unsigned gen = 1;
	pthread_t a, b;
	uint64_t addr;
	int cmd;

	if (m == MAP_FAILED)
		_exit(2);
	for (size_t i = 0; i < pages; i++)
		m[i * 4096] = (char)i;
	if (pthread_create(&a, NULL, ticker, NULL) || pthread_create(&b, NULL, mapper, NULL))
		_exit(2);
	addr = (uintptr_t)m;
	if (write(out, &addr, sizeof(addr)) != sizeof(addr))
		_exit(2);
	while (read(in, &cmd, sizeof(cmd)) == sizeof(cmd)) {
		struct maxima mx = {0};

		if (cmd == CMD_EXIT)
			_exit(0);
		if (cmd == CMD_WRITE_ALL) {
			double t0 = now_ms();

			gen++;
			for (size_t i = 0; i < pages; i++)
				m[i * 4096 + 8] = (char)gen;
			mx.store_ns = (now_ms() - t0) * 1e6 / pages;
		}
		if (cmd == CMD_RESET) {
			atomic_store(&c_gap, 0);
			atomic_store(&c_mmap, 0);
			atomic_store(&c_reset_tick, true);
		}
		mx.tick_gap_ms = atomic_load(&c_gap);
		mx.mmap_ms = atomic_load(&c_mmap);
		if (write(out, &mx, sizeof(mx)) != sizeof(mx))
			_exit(2);
	}
	_exit(0);
}

/* ---- the parent ------------------------------------------------------------------ */

static int to_child, from_child;

static struct maxima ask(int cmd)
{
	struct maxima mx = {0};

	if (write(to_child, &cmd, sizeof(cmd)) != sizeof(cmd) ||
	    read(from_child, &mx, sizeof(mx)) != sizeof(mx)) {
		pr_err("the child stopped answering");
		exit(1);
	}
	return mx;
}

/* The child's view of one phase: reset, let it settle 20 ms, run, report. */
struct phase {
	double ms, call_ms, gap_ms, mmap_ms, stop_ms;
};

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double med(double *v)
{
	qsort(v, REPEAT, sizeof(*v), cmp_d);
	return v[REPEAT / 2];
}

/*
 * One tracker: attach, round 1 (protect), write all, round (rescan), a
 * clean round; the child's maxima around each.
 */
static int run_once(pid_t pid, bool sliced, struct phase ph[7], double *store_ns)
{
	struct trk_opts o = {.backend = TRK_UFFD};
	struct trk_round r;
	struct maxima mx;
	struct trk *t = NULL;
	double t0;
	int ret;

	if (!sliced)
		o.slice_bytes = o.slice_pages = 1ULL << 50; /* one call per VMA, as before */
	ask(CMD_RESET);
	usleep(20000);
	t0 = now_ms();
	ret = trk_open(pid, &o, &t);
	if (ret)
		return ret;
	ph[0].ms = now_ms() - t0;
	ph[0].stop_ms = trk_stop_ms(t);
	mx = ask(CMD_REPORT);
	ph[0].gap_ms = mx.tick_gap_ms;
	ph[0].mmap_ms = mx.mmap_ms;
	for (int k = 1; k <= 3; k++) {
		if (k == 2)
			*store_ns = ask(CMD_WRITE_ALL).store_ns;
		ask(CMD_RESET);
		usleep(20000);
		t0 = now_ms();
		ret = trk_round(t, &r);
		if (ret)
			break;
		ph[k].ms = now_ms() - t0;
		trk_round_release(&r);
		ph[k].call_ms = trk_call_ms(t);
		mx = ask(CMD_REPORT);
		ph[k].gap_ms = mx.tick_gap_ms;
		ph[k].mmap_ms = mx.mmap_ms;
	}
	ask(CMD_RESET);
	usleep(20000);
	t0 = now_ms();
	trk_free(t);
	ph[4].ms = now_ms() - t0;
	mx = ask(CMD_REPORT);
	ph[4].gap_ms = mx.tick_gap_ms;
	ph[4].mmap_ms = mx.mmap_ms;
	return ret;
}

static const char *const phase_name[7] = {
	"attach", "protect (round 1)", "rescan (all written)", "clean round",
	"detach", "smaps read",	       "vm_flags read"};

/* The VmFlags as rst_dump_prepare reads them now; the child's maxima. */
static struct phase vmflags_read(pid_t pid)
{
	struct phase ph = {0};
	struct haul_layout l;
	struct maxima mx;
	double t0;

	ask(CMD_RESET);
	usleep(20000);
	t0 = now_ms();
	if (rst_layout_read_flags_running(pid, &l) == 0)
		haul_layout_release(&l);
	ph.ms = now_ms() - t0;
	mx = ask(CMD_REPORT);
	ph.gap_ms = mx.tick_gap_ms;
	ph.mmap_ms = mx.mmap_ms;
	return ph;
}

/* Read /proc/PID/smaps whole, as rst_dump_prepare did; the child's maxima. */
static struct phase smaps_read(pid_t pid)
{
	struct phase ph = {0};
	struct maxima mx;
	char path[64], buf[65536];
	double t0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	ask(CMD_RESET);
	usleep(20000);
	t0 = now_ms();
	f = fopen(path, "re");
	if (f) {
		while (fread(buf, 1, sizeof(buf), f) > 0)
			;
		fclose(f);
	}
	ph.ms = now_ms() - t0;
	mx = ask(CMD_REPORT);
	ph.gap_ms = mx.tick_gap_ms;
	ph.mmap_ms = mx.mmap_ms;
	return ph;
}

static int bench_size(size_t mib)
{
	int p2c[2], c2p[2];
	double v[2][7][4][REPEAT], store[2][REPEAT], untracked[REPEAT];
	uint64_t addr;
	pid_t pid;
	int ret = 0;

	if (pipe(p2c) || pipe(c2p))
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (!pid) {
		close(p2c[1]);
		close(c2p[0]);
		child(p2c[0], c2p[1], mib << 20);
	}
	close(p2c[0]);
	close(c2p[1]);
	to_child = p2c[1];
	from_child = c2p[0];
	if (read(from_child, &addr, sizeof(addr)) != sizeof(addr)) {
		pr_err("the child could not map %zu MiB", mib);
		ret = -ENOMEM;
		goto out;
	}
	for (int rep = 0; rep < REPEAT && !ret; rep++) {
		untracked[rep] = ask(CMD_WRITE_ALL).store_ns;
		for (int s = 0; s < 2 && !ret; s++) {
			bool sliced = (rep + s) % 2; /* alternate which goes first */
			struct phase ph[7] = {0};

			ret = run_once(pid, sliced, ph, &store[sliced][rep]);
			ph[5] = smaps_read(pid);
			ph[6] = vmflags_read(pid);
			for (int k = 0; k < 7; k++) {
				v[sliced][k][0][rep] = ph[k].ms;
				v[sliced][k][1][rep] = k ? ph[k].call_ms : ph[k].stop_ms;
				v[sliced][k][2][rep] = ph[k].gap_ms;
				v[sliced][k][3][rep] = ph[k].mmap_ms;
			}
		}
	}
	if (ret) {
		pr_err_r(ret, "tracking the child failed");
		goto out;
	}
	printf("stall_bench: %zu MiB, medians of %d (the child's 1 ms ticker and mmap loop "
	       "run throughout):\n",
	       mib, REPEAT);
	for (int k = 0; k < 7; k++)
		for (int s = 1; s >= 0; s--) {
			bool by_slice = k >= 1 && k <= 3;

			if (!by_slice && !s)
				continue; /* attach and detach do not depend on slicing */
			printf("stall_bench:   %-21s %-9s %8.2f ms; %-12s %7.3f ms; client gap "
			       "%6.2f ms; longest mmap/munmap %7.3f ms\n",
			       phase_name[k], by_slice ? (s ? "sliced" : "one call") : "",
			       med(v[s][k][0]),
			       k == 0	  ? "stopped"
			       : by_slice ? "longest call"
					  : "-",
			       k >= 4 ? 0.0 : med(v[s][k][1]), med(v[s][k][2]), med(v[s][k][3]));
		}
	printf("stall_bench:   first store per page: untracked %.0f ns, after a re-protect %.0f "
	       "ns (%.1fx)\n",
	       med(untracked), med(store[1]), med(store[1]) / med(untracked));
	printf("stall_bench: ratio: %zu MiB longest mmap/munmap while protecting, sliced vs one "
	       "call: %.3f vs %.3f ms (%.3fx)\n",
	       mib, med(v[1][1][3]), med(v[0][1][3]), med(v[1][1][3]) / med(v[0][1][3]));
	printf("stall_bench: ratio: %zu MiB VmFlags read, vm_flags iterator vs smaps: %.3f vs "
	       "%.3f ms (%.4fx); longest mmap/munmap meanwhile %.3f vs %.3f ms%s\n",
	       mib, med(v[1][6][0]), med(v[1][5][0]), med(v[1][6][0]) / med(v[1][5][0]),
	       med(v[1][6][3]), med(v[1][5][3]),
	       rst_vmflags_fast() ? "" : " (no BPF iterator here: both read smaps)");
out : {
	int cmd = CMD_EXIT;

	if (write(to_child, &cmd, sizeof(cmd)) != sizeof(cmd))
		kill(pid, SIGKILL);
}
	waitpid(pid, NULL, 0);
	close(to_child);
	close(from_child);
	return ret;
}

int main(int argc, char **argv)
{
	size_t sizes[8] = {1024, 4096};
	int n = 2, ret = 0;

	if (!probe_uffd_wp_async(NULL)) {
		printf("stall_bench: skipped: uffd-wp async tracking is not available here\n");
		return 0;
	}
	rst_vmflags_fast(); /* load and calibrate once, outside the timings */
	if (argc > 1) {
		n = 0;
		for (int i = 1; i < argc && n < 8; i++)
			sizes[n++] = strtoul(argv[i], NULL, 10);
	}
	for (int i = 0; i < n && !ret; i++)
		ret = bench_size(sizes[i]);
	return ret ? 1 : 0;
}
