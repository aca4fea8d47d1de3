/*
 * workload.c - the process that haul's benchmarks and migration tests move.
 *
 * It maps --mem bytes of private anonymous memory, fills every page, then dirties
 * pages at --rate MiB/s (or as fast as it can) in one of three patterns: uniform
 * random, a hot set (random within the first --hot-fraction of pages) or a
 * sequential sweep.  Two things make it useful as a migration subject:
 *
 * Checkable memory.  Page i at generation g holds, as 64-bit words:
 *   word 0     i
 *   word 1     g | (salt << 32)
 *   word 2..   mix(salt, i, g, w): splitmix64 of the four, so pages do not compress
 * and a page from another page, another generation or another run cannot pass.
 * The generation of every page lives in a separate array in the same process, so
 * after a migration `verify` proves each page has the content of its last write.
 *
 * A client's view of stalls.  The main loop ticks every 1 ms (CLOCK_MONOTONIC,
 * absolute sleeps) and records the gap between consecutive ticks; the largest gap
 * is the downtime an outside client would see.  The timestamps live in the
 * process itself, so the measurement survives the move to another PID and network
 * namespace.  The gap is taken on both clocks: CLOCK_REALTIME is what a client
 * sees (the namespaced "hosts" on one machine share it), while a restore in a
 * time namespace may set CLOCK_MONOTONIC's offset so that it continues where the
 * dump left it, hiding the frozen interval (measured: 39 ms monotonic for a
 * 677 ms checkpoint-to-restore gap).  Stalls the workload causes itself (verify,
 * writing a report) are not counted.
 *
 * Reports go to stdout (a line every --print-every seconds) and, with --heartbeat
 * FILE, as key=value lines to FILE (written to FILE.tmp and renamed; no fd stays
 * open, so the process holds only stdin/stdout/stderr, which haul can restore when
 * they are regular files or /dev/null).  Control needs no PID, which changes across
 * a migration: with --control FILE the workload polls FILE every 100 ms for one of
 * "report", "verify", "reset" or "exit" (then deletes it).  Signals do the same:
 * SIGUSR1 report, SIGUSR2 verify, SIGHUP reset the gap statistics, SIGINT/SIGTERM
 * verify, report and exit.
 *
 * Single-threaded, no sockets, pipes or epoll: the subset haul migrates today.
 */
#define LOG_PREFIX "workload: "
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/close_range.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

#define WL_PAGE		 4096UL
#define WL_WORDS	 (WL_PAGE / sizeof(uint64_t))
#define WL_TICK_NS	 1000000LL  /* the heartbeat period a client would poll at */
#define WL_CONTROL_TICKS 100	    /* poll the control file every 100 ms */
#define WL_STALL_NS	 5000000LL  /* gaps above 5 ms are counted as stalls */
#define WL_TOP_GAPS	 64	    /* the largest gaps kept with their times, for attribution */
#define WL_BACKLOG_NS	 10000000LL /* after a stall, catch up at most 10 ms of writes */

enum wl_pattern {
	WL_UNIFORM,
	WL_HOT,
	WL_SEQ
};
static const char *const wl_pattern_name[] = {"uniform", "hot", "seq"};

struct wl_gaps {
	int64_t max_ns;	   /* largest CLOCK_MONOTONIC gap between ticks */
	int64_t max_rt_ns; /* largest CLOCK_REALTIME gap between ticks */
	int64_t max_at_rt; /* CLOCK_REALTIME at the end of the largest realtime gap */
	/* the largest realtime gaps, longest first: when each ended and how long */
	struct {
		int64_t end_rt, len_ns, steal_ns;
	} top[WL_TOP_GAPS];
	int64_t max_steal_ns; /* the host's steal in the largest realtime gap (steal_ns()) */
	int64_t steal_mark;   /* steal_ns() at the last mark (every WL_CONTROL_TICKS or gap) */
	uint64_t stalls;      /* gaps above WL_STALL_NS */
	uint64_t ticks;
	int64_t last_mono; /* 0: no previous tick (start, or after a self-inflicted stall) */
	int64_t last_rt;
};

struct wl {
	/* configuration */
	uint64_t npages;
	double rate_mib; /* < 0: unbounded */
	enum wl_pattern pattern;
	double hot_fraction;
	double print_every;
	double duration;
	bool check;
	const char *hb_path;
	const char *control_path;
	/* state */
	uint8_t *mem;
	uint32_t *gen;
	uint64_t salt;
	uint64_t rng;
	uint64_t seq_next;
	uint64_t writes;
	uint64_t check_bad; /* pages found wrong by --check before a rewrite */
	uint64_t check_first_bad;
	int64_t start_mono;
	int64_t run_start;     /* end of the fill: --duration counts from here */
	int64_t rate_start;    /* time the current rate accounting began */
	uint64_t rate_written; /* pages written since rate_start */
	struct wl_gaps gaps;
	char verify_msg[160];
};

static volatile sig_atomic_t sig_report, sig_verify, sig_reset, sig_exit;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		sig_report = 1;
	else if (sig == SIGUSR2)
		sig_verify = 1;
	else if (sig == SIGHUP)
		sig_reset = 1;
	else
		sig_exit = 1;
}

static int64_t now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t page_seed(const struct wl *w, uint64_t idx, uint32_t g)
{
	return splitmix64(w->salt ^ (idx * 0x100000001b3ULL) ^ ((uint64_t)g << 40));
}

static void fill_page(const struct wl *w, uint64_t idx, uint32_t g)
{
	uint64_t *p = (uint64_t *)(w->mem + idx * WL_PAGE);
	uint64_t seed = page_seed(w, idx, g);

	p[0] = idx;
	p[1] = g | (w->salt << 32);
	for (size_t i = 2; i < WL_WORDS; i++)
		p[i] = splitmix64(seed + i);
}

/* Returns the first wrong word's index, or -1 when the page is as expected. */
static int check_page(const struct wl *w, uint64_t idx)
{
	const uint64_t *p = (const uint64_t *)(w->mem + idx * WL_PAGE);
	uint32_t g = w->gen[idx];
	uint64_t seed = page_seed(w, idx, g);

	if (p[0] != idx)
		return 0;
	if (p[1] != (g | (w->salt << 32)))
		return 1;
	for (size_t i = 2; i < WL_WORDS; i++)
		if (p[i] != splitmix64(seed + i))
			return (int)i;
	return -1;
}

static uint64_t rng_next(struct wl *w)
{
	/* xorshift64*: the state lives in the process, so the sequence migrates too */
	w->rng ^= w->rng >> 12;
	w->rng ^= w->rng << 25;
	w->rng ^= w->rng >> 27;
	return w->rng * 0x2545f4914f6cdd1dULL;
}

static uint64_t pick_page(struct wl *w)
{
	uint64_t hot;

	switch (w->pattern) {
	case WL_HOT:
		hot = (uint64_t)(w->npages * w->hot_fraction);
		if (hot == 0)
			hot = 1;
		return rng_next(w) % hot;
	case WL_SEQ:
		if (w->seq_next >= w->npages)
			w->seq_next = 0;
		return w->seq_next++;
	case WL_UNIFORM:
	default:
		return rng_next(w) % w->npages;
	}
}

static void write_one(struct wl *w)
{
	uint64_t idx = pick_page(w);

	if (w->check && check_page(w, idx) >= 0) {
		if (w->check_bad++ == 0)
			w->check_first_bad = idx;
	}
	w->gen[idx]++;
	fill_page(w, idx, w->gen[idx]);
	w->writes++;
}

/* Checks every page; the result goes to stdout and into later reports. */
static int verify_all(struct wl *w)
{
	for (uint64_t i = 0; i < w->npages; i++) {
		int word = check_page(w, i);

		if (word >= 0) {
			const uint64_t *p = (const uint64_t *)(w->mem + i * WL_PAGE);

			snprintf(w->verify_msg, sizeof(w->verify_msg),
				 "bad page %" PRIu64
				 " word %d (expected gen %u, found index %" PRIu64 " gen %" PRIu64
				 ")",
				 i, word, w->gen[i], p[0], (uint64_t)(p[1] & 0xffffffffU));
			printf("verify: %s\n", w->verify_msg);
			fflush(stdout);
			return -EIO;
		}
	}
	snprintf(w->verify_msg, sizeof(w->verify_msg), "ok %" PRIu64 " pages", w->npages);
	printf("verify: %s\n", w->verify_msg);
	fflush(stdout);
	return 0;
}

static double mib_written(const struct wl *w)
{
	return (double)w->writes * WL_PAGE / (1024.0 * 1024.0);
}

static void print_progress(struct wl *w, const char *state)
{
	double up = (now_ns(CLOCK_MONOTONIC) - w->start_mono) / 1e9;
	char rate[32];

	if (w->rate_mib < 0)
		snprintf(rate, sizeof(rate), "unbounded");
	else
		snprintf(rate, sizeof(rate), "%g MiB/s", w->rate_mib);
	printf("workload: pid %d, %" PRIu64 " MiB, %s %s, %s, up %.1f s, writes %" PRIu64
	       " (%.0f MiB), ticks %" PRIu64
	       ", max gap %.3f ms (monotonic %.3f ms), stalls>5ms %" PRIu64 "%s\n",
	       getpid(), w->npages * WL_PAGE >> 20, rate, wl_pattern_name[w->pattern], state, up,
	       w->writes, mib_written(w), w->gaps.ticks, w->gaps.max_rt_ns / 1e6,
	       w->gaps.max_ns / 1e6, w->gaps.stalls, w->check_bad ? ", check: BAD pages" : "");
	fflush(stdout);
}

/* Writes the heartbeat file atomically (tmp + rename) and closes it at once. */
static int write_report(struct wl *w, const char *state)
{
	char buf[4096], tmp[4096];
	int fd, n;

	if (!w->hb_path)
		return 0;
	n = snprintf(buf, sizeof(buf),
		     "pid=%d\nstate=%s\nmem_addr=%p\nmem_mib=%" PRIu64 "\nrate_mib=%g\npattern=%s\n"
		     "writes=%" PRIu64 "\nticks=%" PRIu64 "\nmax_gap_us=%" PRId64
		     "\nmax_gap_rt_us=%" PRId64 "\nmax_gap_at_rt=%.6f\nstalls_over_5ms=%" PRIu64
		     "\ncheck_bad=%" PRIu64 "\nverify=%s\n",
		     getpid(), state, (void *)w->mem, w->npages * WL_PAGE >> 20, w->rate_mib,
		     wl_pattern_name[w->pattern], w->writes, w->gaps.ticks, w->gaps.max_ns / 1000,
		     w->gaps.max_rt_ns / 1000, w->gaps.max_at_rt / 1e9, w->gaps.stalls,
		     w->check_bad, w->verify_msg[0] ? w->verify_msg : "none");
	/* top_gaps=LEN_US@END_REALTIME@HOST_STEAL_US;... longest first */
	n += snprintf(buf + n, sizeof(buf) - n,
		      "max_gap_steal_us=%" PRId64 "\ntop_gaps=", w->gaps.max_steal_ns / 1000);
	for (int i = 0; i < WL_TOP_GAPS && w->gaps.top[i].len_ns; i++)
		n += snprintf(buf + n, sizeof(buf) - n, "%s%" PRId64 "@%.6f@%" PRId64, i ? ";" : "",
			      w->gaps.top[i].len_ns / 1000, w->gaps.top[i].end_rt / 1e9,
			      w->gaps.top[i].steal_ns / 1000);
	n += snprintf(buf + n, sizeof(buf) - n, "\n");
	if (n >= (int)sizeof(buf)) /* 64 gaps take at most ~3 KiB; never write past it */
		n = sizeof(buf) - 1;
	snprintf(tmp, sizeof(tmp), "%s.tmp", w->hb_path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		n = -errno;
		pr_err_r(n, "cannot write heartbeat file '%s'", tmp);
		return n;
	}
	if (write(fd, buf, n) != n) {
		n = -EIO;
		close(fd);
		return n;
	}
	close(fd);
	if (rename(tmp, w->hb_path) < 0) {
		n = -errno;
		pr_err_r(n, "cannot rename '%s' to '%s'", tmp, w->hb_path);
		return n;
	}
	return 0;
}

static void reset_gaps(struct wl *w)
{
	memset(&w->gaps, 0, sizeof(w->gaps));
}

/*
 * The time the host did not run this VM's vCPUs (/proc/stat steal, averaged over
 * the CPUs, USER_HZ resolution), in ns; 0 where it is not known.  A gap whose steal
 * is about its length was the host's, not the guest's (bench/RESULTS.md).
 */
static int64_t steal_ns(void)
{
	unsigned long long v[8] = {0};
	char line[256];
	FILE *f = fopen("/proc/stat", "re");
	long hz = sysconf(_SC_CLK_TCK), ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	if (!f)
		return 0;
	if (!fgets(line, sizeof(line), f) ||
	    sscanf(line, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5], &v[6], &v[7]) != 8 ||
	    hz <= 0 || ncpu <= 0)
		v[7] = 0;
	fclose(f);
	return (int64_t)(v[7] * (1000000000ULL / (unsigned long long)hz) /
			 (unsigned long long)ncpu);
}

/* Insert a gap into the sorted top list when it is among the largest. */
static void keep_top_gap(struct wl_gaps *g, int64_t end_rt, int64_t len, int64_t steal)
{
	int i = WL_TOP_GAPS - 1;

	if (len <= g->top[i].len_ns)
		return;
	for (; i > 0 && g->top[i - 1].len_ns < len; i--)
		g->top[i] = g->top[i - 1];
	g->top[i].end_rt = end_rt;
	g->top[i].len_ns = len;
	g->top[i].steal_ns = steal;
}

/* A heartbeat: one 1 ms tick of the client's view. */
static void tick(struct wl *w)
{
	int64_t mono = now_ns(CLOCK_MONOTONIC), rt = now_ns(CLOCK_REALTIME);

	if (w->gaps.last_mono) {
		int64_t gap = mono - w->gaps.last_mono, gap_rt = rt - w->gaps.last_rt, steal = 0;

		/* a stall: how much of it (and of the <= 100 ms before it) the host took */
		if (gap_rt > WL_STALL_NS) {
			int64_t s = steal_ns();

			steal = w->gaps.steal_mark && s > w->gaps.steal_mark
					? s - w->gaps.steal_mark
					: 0;
			w->gaps.steal_mark = s;
		}
		if (gap > w->gaps.max_ns)
			w->gaps.max_ns = gap;
		if (gap_rt > w->gaps.max_rt_ns) {
			w->gaps.max_rt_ns = gap_rt;
			w->gaps.max_at_rt = rt;
			w->gaps.max_steal_ns = steal;
		}
		keep_top_gap(&w->gaps, rt, gap_rt, steal);
		if (gap > WL_STALL_NS)
			w->gaps.stalls++;
	}
	if (w->gaps.ticks % WL_CONTROL_TICKS == 0)
		w->gaps.steal_mark = steal_ns();
	w->gaps.last_mono = mono;
	w->gaps.last_rt = rt;
	w->gaps.ticks++;
}

/* After work the workload does for itself, the next gap is not a client-seen stall. */
static void forget_last_tick(struct wl *w)
{
	w->gaps.last_mono = 0;
	w->rate_start = now_ns(CLOCK_MONOTONIC);
	w->rate_written = 0;
}

/* Reads and deletes the control file; returns its first word, or "" when absent. */
static void poll_control(struct wl *w, char *cmd, size_t len)
{
	ssize_t n;
	int fd;

	cmd[0] = 0;
	if (!w->control_path)
		return;
	fd = open(w->control_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, cmd, len - 1);
	close(fd);
	unlink(w->control_path);
	if (n < 0)
		n = 0;
	cmd[n] = 0;
	cmd[strcspn(cmd, " \t\r\n")] = 0;
}

/* Writes the pages due in this tick; unbounded writes for one tick's worth of time. */
static void dirty_for_tick(struct wl *w, int64_t tick_start)
{
	if (w->rate_mib < 0) {
		do {
			for (int i = 0; i < 16; i++)
				write_one(w);
		} while (now_ns(CLOCK_MONOTONIC) - tick_start < WL_TICK_NS);
		return;
	}
	if (w->rate_mib == 0)
		return;
	double pps = w->rate_mib * 1024.0 * 1024.0 / WL_PAGE;
	int64_t elapsed = tick_start - w->rate_start;
	double due = pps * elapsed / 1e9 - (double)w->rate_written;
	double cap = pps * WL_BACKLOG_NS / 1e9 + 1;

	if (due > cap) {
		/* a stall (a freeze, a migration) left a backlog: drop it, not burst it */
		w->rate_written += (uint64_t)(due - cap);
		due = cap;
	}
	for (uint64_t n = (uint64_t)due; n > 0; n--) {
		write_one(w);
		w->rate_written++;
	}
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || v <= 0)
		return -EINVAL;
	switch (*end) {
	case 'k':
	case 'K':
		v *= 1024;
		end++;
		break;
	case 'm':
	case 'M':
		v *= 1024 * 1024;
		end++;
		break;
	case 'g':
	case 'G':
		v *= 1024.0 * 1024 * 1024;
		end++;
		break;
	case 't':
	case 'T':
		v *= 1024.0 * 1024 * 1024 * 1024;
		end++;
		break;
	case 0:
		v *= 1024 * 1024;
		break; /* a bare number is MiB */
	default:
		return -EINVAL;
	}
	if (*end == 'i' || *end == 'I')
		end++;
	if (*end == 'b' || *end == 'B')
		end++;
	if (*end)
		return -EINVAL;
	*out = (uint64_t)v;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: workload --mem SIZE [--rate MiB/s|unbounded] [--pattern uniform|hot|seq]\n"
		"                [--hot-fraction F] [--heartbeat FILE] [--control FILE]\n"
		"                [--print-every S] [--duration S] [--check] [--verify] [--no-thp]\n\n"
		"Fills SIZE (K/M/G suffix; a bare number is MiB) of anonymous memory with a\n"
		"checkable pattern, then dirties it at the given rate (default 64 MiB/s) while\n"
		"measuring the largest gap between its 1 ms heartbeats.\n\n"
		"  --pattern      uniform (default), hot (random in the first F of pages), seq\n"
		"  --hot-fraction F for --pattern hot (default 0.1)\n"
		"  --heartbeat F  write key=value reports to F (each progress line, on request)\n"
		"  --control F    poll F every 100 ms for: report, verify, reset, exit\n"
		"  --print-every  seconds between progress lines (default 1; 0: none)\n"
		"  --duration S   exit after S seconds of dirtying (default: run until told)\n"
		"  --check        verify each page before rewriting it\n"
		"  --verify       verify every page when exiting\n"
		"  --no-thp       madvise(MADV_NOHUGEPAGE) on the memory\n\n"
		"Signals: USR1 report, USR2 verify, HUP reset gap statistics, INT/TERM exit.\n"
		"Exit status: 0, or 3 when a verify or --check found a bad page.\n");
}

static int parse_args(struct wl *w, int argc, char **argv, bool *verify_exit, bool *no_thp)
{
	static const struct option opts[] = {
		{"mem", required_argument, NULL, 'm'},
		{"rate", required_argument, NULL, 'r'},
		{"pattern", required_argument, NULL, 'p'},
		{"hot-fraction", required_argument, NULL, 'f'},
		{"heartbeat", required_argument, NULL, 'b'},
		{"control", required_argument, NULL, 'c'},
		{"print-every", required_argument, NULL, 'e'},
		{"duration", required_argument, NULL, 'd'},
		{"check", no_argument, NULL, 'k'},
		{"verify", no_argument, NULL, 'v'},
		{"no-thp", no_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	uint64_t bytes = 0;
	int c;

	while ((c = getopt_long(argc, argv, "m:r:p:f:b:c:e:d:kvnh", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (parse_size(optarg, &bytes) < 0 || bytes < WL_PAGE) {
				pr_err("bad --mem '%s': give a size such as 256M or 4G", optarg);
				return -EINVAL;
			}
			w->npages = bytes / WL_PAGE;
			break;
		case 'r':
			if (!strcmp(optarg, "unbounded") || !strcmp(optarg, "max")) {
				w->rate_mib = -1;
			} else {
				char *end;

				w->rate_mib = strtod(optarg, &end);
				if (end == optarg || w->rate_mib < 0 ||
				    (*end && strcasecmp(end, "M") && strcasecmp(end, "MiB/s"))) {
					pr_err("bad --rate '%s': give MiB/s or 'unbounded'",
					       optarg);
					return -EINVAL;
				}
			}
			break;
		case 'p':
			if (!strcmp(optarg, "uniform"))
				w->pattern = WL_UNIFORM;
			else if (!strcmp(optarg, "hot"))
				w->pattern = WL_HOT;
			else if (!strcmp(optarg, "seq"))
				w->pattern = WL_SEQ;
			else {
				pr_err("bad --pattern '%s': uniform, hot or seq", optarg);
				return -EINVAL;
			}
			break;
		case 'f':
			w->hot_fraction = strtod(optarg, NULL);
			if (!(w->hot_fraction > 0 && w->hot_fraction <= 1)) {
				pr_err("bad --hot-fraction '%s': give a fraction in (0, 1]",
				       optarg);
				return -EINVAL;
			}
			break;
		case 'b':
			w->hb_path = optarg;
			break;
		case 'c':
			w->control_path = optarg;
			break;
		case 'e':
			w->print_every = strtod(optarg, NULL);
			break;
		case 'd':
			w->duration = strtod(optarg, NULL);
			break;
		case 'k':
			w->check = true;
			break;
		case 'v':
			*verify_exit = true;
			break;
		case 'n':
			*no_thp = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc || !w->npages) {
		usage(stderr);
		return -EINVAL;
	}
	return 0;
}

static int setup(struct wl *w, bool no_thp)
{
	size_t len = w->npages * WL_PAGE;
	struct sigaction sa = {.sa_handler = on_signal};
	int sigs[] = {SIGUSR1, SIGUSR2, SIGHUP, SIGINT, SIGTERM};

	/*
	 * Hold nothing but stdin/stdout/stderr: a pipe or socket inherited from the
	 * shell or from make's jobserver would make the process unmigratable.
	 */
	close_range(3, ~0U, 0);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	if (getrandom(&w->salt, sizeof(w->salt), 0) != sizeof(w->salt))
		w->salt = (uint64_t)now_ns(CLOCK_REALTIME);
	w->salt = (w->salt & 0xffffffffULL) | 1;
	w->rng = splitmix64(w->salt);
	w->mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (w->mem == MAP_FAILED) {
		pr_err("cannot map %zu MiB: %s", len >> 20, strerror(errno));
		return -ENOMEM;
	}
	if (no_thp)
		madvise(w->mem, len, MADV_NOHUGEPAGE);
	w->gen = calloc(w->npages, sizeof(*w->gen));
	if (!w->gen) {
		pr_err("cannot allocate the generation table for %" PRIu64 " pages", w->npages);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < w->npages; i++)
		fill_page(w, i, 0);
	return 0;
}

static bool handle_command(struct wl *w, const char *cmd, bool *bad)
{
	if (!strcmp(cmd, "report")) {
		print_progress(w, "running");
		write_report(w, "running");
	} else if (!strcmp(cmd, "verify")) {
		if (verify_all(w) < 0)
			*bad = true;
		write_report(w, "running");
	} else if (!strcmp(cmd, "reset")) {
		reset_gaps(w);
	} else if (!strcmp(cmd, "exit")) {
		return true;
	} else if (cmd[0]) {
		printf("workload: unknown control command '%s'\n", cmd);
	}
	return false;
}

int main(int argc, char **argv)
{
	struct wl w = {.rate_mib = 64, .hot_fraction = 0.1, .print_every = 1};
	bool verify_exit = false, no_thp = false, bad = false;
	int64_t next, last_print;
	char cmd[64];
	int ret;

	log_init("workload");
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (parse_args(&w, argc, argv, &verify_exit, &no_thp) < 0)
		return 2;
	w.start_mono = now_ns(CLOCK_MONOTONIC);
	ret = setup(&w, no_thp);
	if (ret < 0)
		return 1;
	printf("workload: filled %" PRIu64 " MiB in %.2f s\n", w.npages * WL_PAGE >> 20,
	       (now_ns(CLOCK_MONOTONIC) - w.start_mono) / 1e9);
	print_progress(&w, "ready");
	write_report(&w, "ready");

	next = now_ns(CLOCK_MONOTONIC);
	last_print = next;
	w.run_start = next;
	forget_last_tick(&w);
	for (;;) {
		struct timespec ts;
		int64_t now;

		tick(&w);
		now = now_ns(CLOCK_MONOTONIC);
		dirty_for_tick(&w, now);

		if (sig_exit)
			break;
		if (w.duration > 0 && now - w.run_start >= (int64_t)(w.duration * 1e9))
			break;
		if (sig_report || sig_verify || sig_reset ||
		    (w.control_path && w.gaps.ticks % WL_CONTROL_TICKS == 0)) {
			bool quit = false;

			if (sig_reset) {
				sig_reset = 0;
				reset_gaps(&w);
			}
			if (sig_report) {
				sig_report = 0;
				quit = handle_command(&w, "report", &bad);
			}
			if (sig_verify) {
				sig_verify = 0;
				quit = handle_command(&w, "verify", &bad);
				forget_last_tick(&w);
			}
			poll_control(&w, cmd, sizeof(cmd));
			if (cmd[0]) {
				quit = handle_command(&w, cmd, &bad);
				if (!strcmp(cmd, "verify"))
					forget_last_tick(&w);
			}
			if (quit)
				break;
		}
		if (w.print_every > 0 && now - last_print >= (int64_t)(w.print_every * 1e9)) {
			last_print = now;
			print_progress(&w, "running");
			write_report(&w, "running");
		}

		/* The next heartbeat: 1 ms after the last, or now when a stall overran it. */
		if (w.rate_mib < 0)
			continue;
		next += WL_TICK_NS;
		now = now_ns(CLOCK_MONOTONIC);
		if (next < now)
			next = now;
		ts.tv_sec = next / 1000000000LL;
		ts.tv_nsec = next % 1000000000LL;
		/* EINTR (a signal, or a restore that cannot resume the sleep) just re-ticks */
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}

	if (verify_exit && verify_all(&w) < 0)
		bad = true;
	if (w.check_bad) {
		printf("workload: check found %" PRIu64 " bad pages, first %" PRIu64 "\n",
		       w.check_bad, w.check_first_bad);
		bad = true;
	}
	print_progress(&w, "exited");
	write_report(&w, "exited");
	return bad ? 3 : 0;
}
