/*
 * mig_workload.c - the process the migration tests move.
 *
 * mig_workload --mem MiB [--rate MiB/s|-1] [--hot MiB] [--threads N] [--control FILE]
 *              [--random SEED]   (the main thread writes pages at random, not in turn)
 *              [--tag WORD]
 *              [--filemap FILE]  (also a private writable mapping of FILE, see below)
 *              [--fork-on-move]  (see below)
 *              [--exit-on-move N] (the first tick in another network namespace exits
 *                                 with status N: a job that ends right after a move;
 *                                 -1: it execs "sleep 3" instead; -S, S > 1: it
 *                                 kills itself with signal S)
 *              [--vmcases DIR]   (also the VMAs of vmcases.h; verify checks them)
 *              [--world DIR]     (also the timers, seccomp filter, pidfd, inotify and
 *                                 fanotify marks under DIR of world.h; verify checks them)
 *
 * It maps --mem MiB of anonymous memory, fills every page, then rewrites
 * pages of the first --hot MiB (default: all) round-robin at --rate MiB/s
 * (-1: as fast as it can).  Page i at generation g holds i, g and a pattern
 * of both; the generations live in a separate array, so `verify` proves that
 * every page holds its last write (a page lost or stale in a migration fails).
 * The main loop ticks every 1 ms; the largest wall-clock gap between ticks is what a
 * client polling it would see as downtime.
 *
 * Every 100 ms it writes one line to stdout (the tests point it at a file):
 *   tick seq=WRITES pid=PID net=NETNS_INODE gap_ms=MAX_GAP_SINCE_LAST maxgap_ms=MAX
 * net= changes when the process lands in another network namespace.  With
 * --control FILE it polls FILE each tick for "verify" or "exit" (then deletes
 * it); SIGUSR1 verifies too.  Verify prints "verify ok seq=N pages=N" or
 * "verify FAIL page=I".  With --threads N, N more threads each rewrite their
 * own slice of the hot pages (the rate is shared); verify pauses them first.
 * Only stdout, stderr and /dev/null stay open, which is what haul migrates.
 *
 * --filemap FILE creates FILE (64 pages), maps it MAP_PRIVATE writable and
 * closes it: memory a post-copy must send before the resume.  Every tick
 * rewrites one of its first 32 pages; the control command "swap" maps
 * anonymous memory over the last 32 (the VMA turns lazy) and fills it, and
 * prints "swapped".  Verify checks these pages too.
 *
 * --fork-on-move: the first tick that finds the process in another network
 * namespace forks a child ("forked child=PID") that verifies its copy of the
 * memory over and over ("child verify ok" / "child verify FAIL page=I"),
 * 50 ms apart, and never writes: a process forked during post-copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmcases.h"
#include "world.h"

#define PAGE  4096UL
#define WORDS (PAGE / 8)

static volatile sig_atomic_t want_verify;

/* extra writer threads: each rewrites pages [lo, hi) of the hot set */
struct writer {
	pthread_t thr;
	uint64_t lo, hi, cursor, seq;
	double rate; /* MiB/s, < 0 unbounded */
};

#define FPAGES 64

static char *g_buf;
static char *g_fmap; /* --filemap */
static uint64_t g_fgen[FPAGES];

/* Page i of the file mapping: its own index space, far from the anonymous pages. */
static uint64_t fidx(uint64_t i)
{
	return (1ULL << 40) + i;
}
static uint64_t *g_gen;
static int g_pause, g_paused; /* verify asks writers to pause; they count in */

static void on_usr1(int sig)
{
	(void)sig;
	want_verify = 1;
}

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void fill(uint64_t *p, uint64_t i, uint64_t g)
{
	uint64_t s = mix(i * 0x100000001b3ULL ^ g);

	p[0] = i;
	p[1] = g;
	for (unsigned w = 2; w < WORDS; w++)
		p[w] = s + w;
}

static int check(const uint64_t *p, uint64_t i, uint64_t g)
{
	uint64_t s = mix(i * 0x100000001b3ULL ^ g);

	if (p[0] != i || p[1] != g)
		return -1;
	for (unsigned w = 2; w < WORDS; w++)
		if (p[w] != s + w)
			return -1;
	return 0;
}

/*
 * Gaps are measured on CLOCK_REALTIME: a restore in a time namespace hides the
 * frozen time from CLOCK_MONOTONIC, but not from a client's wall clock.
 */
static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (write(1, buf, n) < 0)
		_exit(3);
}

static unsigned long netns(void)
{
	struct stat st;

	return stat("/proc/self/ns/net", &st) ? 0 : (unsigned long)st.st_ino;
}

static void write_page(uint64_t i)
{
	g_gen[i]++;
	fill((uint64_t *)(g_buf + i * PAGE), i, g_gen[i]);
}

/* A child that only reads: its memory must stay what it was at the fork. */
static void __attribute__((noreturn))
child_verifier(const char *buf, const uint64_t *gen, uint64_t npages)
{
	for (;;) {
		uint64_t bad = npages;

		for (uint64_t i = 0; i < npages && bad == npages; i++)
			if (check((const uint64_t *)(buf + i * PAGE), i, gen[i]))
				bad = i;
		if (bad == npages)
			out("child verify ok\n");
		else
			out("child verify FAIL page=%llu\n", (unsigned long long)bad);
		usleep(50000);
	}
}

static int filemap(const char *path)
{
	uint64_t page[WORDS];
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		return -1;
	for (uint64_t i = 0; i < FPAGES; i++) {
		fill(page, fidx(i), 0);
		if (write(fd, page, PAGE) != (ssize_t)PAGE) {
			close(fd);
			return -1;
		}
	}
	g_fmap = mmap(NULL, FPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	return g_fmap == MAP_FAILED ? -1 : 0;
}

static void fwrite_page(uint64_t i)
{
	g_fgen[i]++;
	fill((uint64_t *)(g_fmap + i * PAGE), fidx(i), g_fgen[i]);
}

/* The last half of the file mapping becomes anonymous memory. */
static int fswap(void)
{
	char *a = g_fmap + FPAGES / 2 * PAGE;

	if (mmap(a, FPAGES / 2 * PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != a)
		return -1;
	for (uint64_t i = FPAGES / 2; i < FPAGES; i++) {
		g_fgen[i] = 1000;
		fwrite_page(i);
	}
	return 0;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	double t0 = now();

	for (;;) {
		struct timespec ts = {0, 1000000};
		uint64_t due;

		if (__atomic_load_n(&g_pause, __ATOMIC_ACQUIRE)) {
			__atomic_add_fetch(&g_paused, 1, __ATOMIC_ACQ_REL);
			while (__atomic_load_n(&g_pause, __ATOMIC_ACQUIRE))
				usleep(100);
			__atomic_sub_fetch(&g_paused, 1, __ATOMIC_ACQ_REL);
		}
		due = w->rate < 0 ? w->seq + 256 : (uint64_t)((now() - t0) * w->rate * 256);
		for (; w->seq < due; w->seq++) {
			write_page(w->cursor);
			w->cursor = w->cursor + 1 < w->hi ? w->cursor + 1 : w->lo;
		}
		if (w->rate >= 0)
			while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
				;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct writer *wr = NULL;
	int nthreads = 0;
	uint64_t npages, nhot, seq = 0, *gen, cursor = 0, rnd = 0;
	double rate = 0, mem = 64, hot = -1, t0, last_tick, last_print, gap = 0, maxgap = 0;
	const char *control = NULL, *fpath = NULL, *vmdir = NULL, *world = NULL;
	uint64_t ftick = 0;
	bool fork_on_move = false, forked = false;
	int exit_on_move = 0;
	unsigned long net0;
	struct sigaction sa = {.sa_handler = on_usr1};
	char *buf;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--mem"))
			mem = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--rate"))
			rate = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--hot"))
			hot = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--control"))
			control = argv[i + 1];
		else if (!strcmp(argv[i], "--threads"))
			nthreads = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--random"))
			rnd = (uint64_t)atoll(argv[i + 1]);
		else if (!strcmp(argv[i], "--filemap"))
			fpath = argv[i + 1];
		else if (!strcmp(argv[i], "--fork-on-move"))
			fork_on_move = atoi(argv[i + 1]) != 0;
		else if (!strcmp(argv[i], "--exit-on-move"))
			exit_on_move = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--vmcases"))
			vmdir = argv[i + 1];
		else if (!strcmp(argv[i], "--world"))
			world = argv[i + 1];
		else if (strcmp(argv[i], "--tag")) {
			fprintf(stderr, "mig_workload: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	npages = (uint64_t)(mem * 256);
	nhot = hot < 0 ? npages : (uint64_t)(hot * 256);
	if (!npages || nhot > npages)
		nhot = npages;
	buf = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	gen = calloc(npages, sizeof(*gen));
	if (buf == MAP_FAILED || !gen) {
		fprintf(stderr, "mig_workload: cannot allocate %.0f MiB\n", mem);
		return 1;
	}
	if (fpath && filemap(fpath)) {
		fprintf(stderr, "mig_workload: cannot map %s: %s\n", fpath, strerror(errno));
		return 1;
	}
	if (vmdir && vmcases_setup(vmdir, NULL)) {
		fprintf(stderr, "mig_workload: cannot set up --vmcases: %s\n", strerror(errno));
		return 1;
	}
	if (world && (world_timers_setup() || world_seccomp_setup() || world_pidfd_setup() ||
		      world_inotify_setup(world) || world_fanotify_setup())) {
		fprintf(stderr, "mig_workload: cannot set up --world: %s\n", strerror(errno));
		return 1;
	}
	sigaction(SIGUSR1, &sa, NULL);
	for (uint64_t i = 0; i < npages; i++)
		fill((uint64_t *)(buf + i * PAGE), i, 0);
	g_buf = buf;
	g_gen = gen;
	if (nthreads > 0) {
		/* slice 0 stays the main thread's; slices 1..n go to the writers */
		uint64_t slice = nhot / (nthreads + 1);

		wr = calloc(nthreads, sizeof(*wr));
		if (!wr || !slice)
			return 1;
		rate = rate < 0 ? rate : rate / (nthreads + 1);
		for (int t = 0; t < nthreads; t++) {
			wr[t].lo = wr[t].cursor = slice * (t + 1);
			wr[t].hi = t + 1 == nthreads ? nhot : slice * (t + 2);
			wr[t].rate = rate;
			if (pthread_create(&wr[t].thr, NULL, writer_main, &wr[t]))
				return 1;
		}
		nhot = slice;
	}
	net0 = netns();
	out("ready pages=%llu pid=%d net=%lu\n", (unsigned long long)npages, getpid(), net0);

	t0 = last_tick = last_print = now();
	for (;;) {
		double t = now(), d = t - last_tick;
		uint64_t due;

		if (d > gap)
			gap = d;
		last_tick = t;
		/* rate < 0: unbounded; else the writes owed by now, at most 10 ms behind */
		due = rate < 0 ? seq + 256 : (uint64_t)((t - t0) * rate * 256);
		if (rate >= 0 && due > seq + (uint64_t)(rate * 256 / 100) + 1)
			seq = due - (uint64_t)(rate * 256 / 100) - 1;
		for (; seq < due; seq++) {
			uint64_t i = cursor;

			if (rnd) {
				/* xorshift64: pages at random, in an order no prefetch can guess */
				rnd ^= rnd << 13;
				rnd ^= rnd >> 7;
				rnd ^= rnd << 17;
				i = rnd % nhot;
			}
			cursor = cursor + 1 < nhot ? cursor + 1 : 0;
			write_page(i);
		}
		if (g_fmap)
			fwrite_page(ftick++ % (FPAGES / 2));
		if (t - last_print >= 0.1) {
			if (gap > maxgap)
				maxgap = gap;
			uint64_t all = seq;

			for (int k = 0; k < nthreads; k++)
				all += __atomic_load_n(&wr[k].seq, __ATOMIC_RELAXED);
			out("tick seq=%llu pid=%d net=%lu gap_ms=%.2f maxgap_ms=%.2f\n",
			    (unsigned long long)all, getpid(), netns(), gap * 1e3, maxgap * 1e3);
			gap = 0;
			last_print = t;
			if (exit_on_move < -1 && netns() != net0) {
				out("killing itself on move signal=%d\n", -exit_on_move);
				kill(getpid(), -exit_on_move);
			}
			if (exit_on_move == -1 && netns() != net0) {
				out("exec on move\n");
				execlp("sleep", "sleep", "3", (char *)NULL);
				out("exec failed: %s\n", strerror(errno));
				return 1;
			}
			if (exit_on_move > 0 && netns() != net0) {
				out("exiting on move status=%d\n", exit_on_move);
				return exit_on_move;
			}
			if (fork_on_move && !forked && netns() != net0) {
				pid_t kid = fork();

				forked = true;
				if (kid == 0)
					child_verifier(buf, gen, npages);
				out("forked child=%d\n", (int)kid);
			}
			if (control && !access(control, F_OK)) {
				char cmd[32] = "";
				int fd = open(control, O_RDONLY);

				if (fd >= 0) {
					if (read(fd, cmd, sizeof(cmd) - 1) < 0)
						cmd[0] = '\0';
					close(fd);
				}
				unlink(control);
				if (!strncmp(cmd, "verify", 6))
					want_verify = 1;
				else if (!strncmp(cmd, "exit", 4))
					return 0;
				else if (!strncmp(cmd, "swap", 4) && g_fmap)
					out(fswap() ? "swap failed\n" : "swapped\n");
			}
		}
		if (want_verify) {
			uint64_t bad = npages;

			want_verify = 0;
			__atomic_store_n(&g_pause, 1, __ATOMIC_RELEASE);
			while (__atomic_load_n(&g_paused, __ATOMIC_ACQUIRE) < nthreads)
				usleep(100);
			for (uint64_t i = 0; i < npages && bad == npages; i++)
				if (check((uint64_t *)(buf + i * PAGE), i, gen[i]))
					bad = i;
			for (uint64_t i = 0; g_fmap && i < FPAGES && bad == npages; i++)
				if (check((uint64_t *)(g_fmap + i * PAGE), fidx(i), g_fgen[i]))
					bad = fidx(i);
			__atomic_store_n(&g_pause, 0, __ATOMIC_RELEASE);
			if (bad == npages && world) {
				char why[256];

				if (world_timers_check(why, sizeof(why)) ||
				    world_seccomp_check(why, sizeof(why)) ||
				    world_pidfd_check(why, sizeof(why)) ||
				    world_inotify_check(why, sizeof(why)) ||
				    world_fanotify_check(why, sizeof(why)))
					out("verify FAIL world: %s\n", why);
				else
					out("verify ok seq=%llu pages=%llu\n",
					    (unsigned long long)seq, (unsigned long long)npages);
			} else if (bad == npages && vmdir) {
				char why[256];

				if (vmcases_check(why, sizeof(why)))
					out("verify FAIL vmcases: %s\n", why);
				else
					out("verify ok seq=%llu pages=%llu\n",
					    (unsigned long long)seq, (unsigned long long)npages);
			} else if (bad == npages)
				out("verify ok seq=%llu pages=%llu\n", (unsigned long long)seq,
				    (unsigned long long)npages);
			else
				out("verify FAIL page=%llu\n", (unsigned long long)bad);
			/* our own stall is not downtime */
			last_tick = now();
		}
		if (rate >= 0) {
			struct timespec ts = {0, 1000000};

			while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
				;
		}
	}
}
