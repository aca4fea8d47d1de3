/*
 * cmd_track.c - `haul track PID`: watch a process's dirty rate before
 * migrating it.
 *
 * Runs one tracker round every --interval and prints, per round, the
 * pages written since the previous one, the rate in MB/s over the real time
 * between rounds, the round's own cost, and the working set: the distinct
 * pages written at least once since round 1 (a pre-copy cannot converge
 * below it).  Round 1 is the baseline: every populated page.
 *
 * --json prints one object per line per round:
 *   {"round":2,"elapsed_ms":1000.3,"dirty_pages":12,"dirty_mb_s":0.05,
 *    "ranges":3,"scan_ms":0.41,"populated_pages":9000,"working_set_pages":12,
 *    "layout_changed":false,"vmas":40,"vmas_appeared":0,"vmas_vanished":0,
 *    "vmas_changed":0,"tracker":"uffd","scan_call_max_ms":0.12,
 *    "dirty":[{"start":"0x7f0000001000","pages":2},...],
 *    "gone":[{"start":"0x7f0000100000","pages":16}]}
 * Addresses are hex strings: JSON numbers lose precision above 2^53.
 *
 * The target is never harmed: on SIGINT/SIGTERM or any error we free the
 * tracker, which leaves nothing behind in the process.
 */
#define LOG_PREFIX "track: "
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/injlog.h"
#include "common/log.h"
#include "haul/haul.h"
#include "haul/haul_int.h"
#include "restore/restore.h"
#include "tracker/tracker.h"

static volatile sig_atomic_t track_stop;

static void on_signal(int sig)
{
	(void)sig;
	track_stop = 1;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The working set: a sorted, merged list of ranges; union with each round. */
struct wset {
	struct trk_range *r;
	size_t n;
	uint64_t pages;
};

static int wset_add(struct wset *w, const struct trk_range *d, size_t nd)
{
	struct trk_range *out = malloc((w->n + nd + 1) * sizeof(*out));
	size_t i = 0, j = 0, o = 0;

	if (!out)
		return -ENOMEM;
	w->pages = 0;
	while (i < w->n || j < nd) {
		const struct trk_range *x;
		uint64_t end;

		if (j >= nd || (i < w->n && w->r[i].start <= d[j].start))
			x = &w->r[i++];
		else
			x = &d[j++];
		end = x->start + x->npages * 4096;
		if (o && out[o - 1].start + out[o - 1].npages * 4096 >= x->start) {
			uint64_t oend = out[o - 1].start + out[o - 1].npages * 4096;

			if (end > oend)
				out[o - 1].npages = (end - out[o - 1].start) / 4096;
			continue;
		}
		out[o++] = *x;
	}
	for (size_t k = 0; k < o; k++)
		w->pages += out[k].npages;
	free(w->r);
	w->r = out;
	w->n = o;
	return 0;
}

/* VMAs of @cur with no VMA of the same range in @prev, and same range but different. */
struct vma_diff {
	size_t appeared, vanished, changed;
};

static const struct haul_vma *same_range(const struct haul_layout *l, const struct haul_vma *v)
{
	const struct haul_vma *w = haul_layout_find(l, v->start);

	return w && w->start == v->start && w->end == v->end ? w : NULL;
}

static struct vma_diff diff_layouts(const struct haul_layout *prev, const struct haul_layout *cur)
{
	struct vma_diff d = {0, 0, 0};

	for (size_t i = 0; i < cur->n; i++) {
		const struct haul_vma *w = same_range(prev, &cur->v[i]);

		if (!w)
			d.appeared++;
		else if (!haul_vma_same(w, &cur->v[i]))
			d.changed++;
	}
	for (size_t i = 0; i < prev->n; i++)
		if (!same_range(cur, &prev->v[i]))
			d.vanished++;
	return d;
}

static void print_ranges(const char *name, const struct trk_range *r, size_t n)
{
	printf(",\"%s\":[", name);
	for (size_t i = 0; i < n; i++)
		printf("%s{\"start\":\"%#llx\",\"pages\":%llu}", i ? "," : "",
		       (unsigned long long)r[i].start, (unsigned long long)r[i].npages);
	printf("]");
}

static const char intro[] =
	"Watch which pages PID writes, round by round: pages and MB/s per round, and\n"
	"the working set (distinct pages written since round 1).  Round 1 lists every\n"
	"populated page.  The process is not stopped (uffd: under 2 ms once).\n";

static const struct haul_opt_choice backends[] = {
	{"uffd", TRK_UFFD},
	{"soft-dirty", TRK_SOFT_DIRTY},
	{"hash", TRK_HASH},
	{NULL, 0},
};

/* One `haul track` run. */
struct track_run {
	pid_t pid;
	struct trk *t;
	bool json;
	struct wset ws;		 /* every page seen dirty since round 2 */
	struct haul_layout prev; /* the previous round's layout */
};

/* One round's line (or JSON object); @n counts rounds from 1. */
static void print_round(const struct track_run *tr, long n, const struct trk_round *r,
			double elapsed, double mbs, const struct vma_diff *vd)
{
	const struct wset *ws = &tr->ws;

	if (tr->json) {
		printf("{\"round\":%llu,\"elapsed_ms\":%.3f,\"dirty_pages\":%llu,"
		       "\"dirty_mb_s\":%.3f,\"ranges\":%zu,\"scan_ms\":%.3f,"
		       "\"populated_pages\":%llu,\"working_set_pages\":%llu,"
		       "\"layout_changed\":%s,\"vmas\":%zu,\"vmas_appeared\":%zu,"
		       "\"vmas_vanished\":%zu,\"vmas_changed\":%zu,\"tracker\":\"%s\","
		       "\"scan_call_max_ms\":%.3f",
		       (unsigned long long)r->seq, n > 1 ? elapsed : 0.0,
		       (unsigned long long)r->dirty_pages, mbs, r->ndirty, r->scan_ms,
		       (unsigned long long)r->present_pages, (unsigned long long)ws->pages,
		       r->layout_changed ? "true" : "false", r->layout.n, vd->appeared,
		       vd->vanished, vd->changed, trk_backend_name(trk_backend(tr->t)),
		       trk_call_ms(tr->t));
		print_ranges("dirty", r->dirty, r->ndirty);
		print_ranges("gone", r->gone, r->ngone);
		printf("}\n");
	} else if (n == 1) {
		printf("round 1: %llu populated pages (%.1f MiB) in %zu ranges, scan %.2f ms\n",
		       (unsigned long long)r->dirty_pages, r->dirty_pages * 4096.0 / 1048576,
		       r->ndirty, r->scan_ms);
	} else {
		printf("round %llu: %llu pages (%.1f MiB) dirty in %zu ranges, %.1f MB/s, "
		       "scan %.2f ms, populated %llu, working set %llu pages (%.1f MiB)%s\n",
		       (unsigned long long)r->seq, (unsigned long long)r->dirty_pages,
		       r->dirty_pages * 4096.0 / 1048576, r->ndirty, mbs, r->scan_ms,
		       (unsigned long long)r->present_pages, (unsigned long long)ws->pages,
		       ws->pages * 4096.0 / 1048576, r->layout_changed ? ", layout changed" : "");
		if (r->layout_changed)
			printf("  VMAs: %zu appeared, %zu vanished, %zu changed protection or "
			       "backing\n",
			       vd->appeared, vd->vanished, vd->changed);
	}
	fflush(stdout);
}

/*
 * Rounds every @interval ms until ^C, the process's exit or @rounds (0: no
 * limit).  0 (the process exiting ends it too) or 1.
 */
static int track_rounds(struct track_run *tr, long interval, long long rounds)
{
	double last = now_ms();

	for (long n = 1; !track_stop && (!rounds || n <= rounds); n++) {
		struct trk_round r;
		struct vma_diff vd;
		double now, elapsed, mbs;
		int ret;

		if (n > 1) {
			struct timespec ts = {interval / 1000, (interval % 1000) * 1000000L};

			while (nanosleep(&ts, &ts) && !track_stop)
				;
			if (track_stop)
				break;
		}
		ret = trk_round(tr->t, &r);
		if (ret == -ESRCH) {
			pr_info("pid %d exited", (int)tr->pid);
			return 0;
		}
		if (ret)
			return 1; /* trk_round said why */
		now = now_ms();
		elapsed = now - last;
		last = now;
		if (n > 1 && wset_add(&tr->ws, r.dirty, r.ndirty)) {
			trk_round_release(&r);
			return 1;
		}
		mbs = n > 1 && elapsed > 0 ? r.dirty_pages * 4096.0 / 1e6 / (elapsed / 1e3) : 0;
		vd = n > 1 ? diff_layouts(&tr->prev, &r.layout) : (struct vma_diff){0, 0, 0};
		haul_layout_release(&tr->prev);
		if (haul_layout_copy(&r.layout, &tr->prev)) {
			trk_round_release(&r);
			return 1;
		}
		print_round(tr, n, &r, elapsed, mbs, &vd);
		trk_round_release(&r);
	}
	return 0;
}

int haul_cmd_track(int argc, char **argv)
{
	struct trk_opts topts = {.backend = TRK_AUTO, .populated = true};
	struct track_run tr = {0};
	double interval_ms = 1000;
	long long rounds = 0;
	int backend = TRK_AUTO;
	int c, ret, status;
	struct haul_pid_lock lock;
	char why[PATH_MAX + 128];
	char *end;
	const struct haul_opt opts[] = {
		{"interval", 'i', HAUL_OPT_DURATION, HAUL_OPT_DEFAULT, &interval_ms, "TIME",
		 "time between rounds", 1, 24 * HAUL_OPT_HOUR_MS, NULL},
		{"rounds", 'n', HAUL_OPT_INT, 0, &rounds, "N",
		 "stop after N rounds, round 1 included (default: until ^C)", 1, 0, NULL},
		{"json", 'j', HAUL_OPT_FLAG, 0, &tr.json, NULL,
		 "one JSON object per line per round, with the dirty ranges", 0, 0, NULL},
		{"tracker", 't', HAUL_OPT_ENUM, 0, &backend, "B",
		 "uffd|soft-dirty|hash: force a backend (default: the\nbest this kernel offers)", 0,
		 0, backends},
		{NULL, 0, 0, 0, NULL, NULL, NULL, 0, 0, NULL},
	};
	const struct haul_cmd_spec spec = {
		"track",
		"PID [--interval TIME] [--rounds N] [--json] [--tracker uffd|soft-dirty|hash]",
		intro,
		"Durations take ms, s or m (a bare number is milliseconds).\n",
		opts,
		1,
		1,
		false};

	c = haul_opts_parse(&spec, argc, argv);
	if (c < 0)
		return haul_opts_exit(c);
	topts.backend = (enum trk_backend)backend;
	tr.pid = (pid_t)strtol(argv[c], &end, 10);
	if (*end || tr.pid <= 0) {
		pr_err("'%s' is not a pid", argv[c]);
		return 2;
	}

	if (rst_is_kthread(tr.pid)) {
		pr_err("pid %d is a kernel thread: it has no user memory to track", (int)tr.pid);
		return 1;
	}
	ret = haul_pid_lock(tr.pid, "tracked", &lock, why, sizeof(why));
	if (ret) {
		pr_err("cannot track pid %d: %s", (int)tr.pid, why);
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	/* the survivor that undoes injected calls if we die during the attach (injlog.h) */
	ret = injlog_open(getenv("HAUL_FAULT"), haul_reg_dir());
	if (ret) {
		pr_err_r(ret, "cannot start the injection journal for pid %d", (int)tr.pid);
		haul_pid_unlock(&lock);
		return 1;
	}
	ret = trk_open(tr.pid, &topts, &tr.t);
	if (ret) {
		injlog_close();
		haul_pid_unlock(&lock);
		if (ret == -ESRCH)
			pr_err("pid %d does not exist", (int)tr.pid);
		else if (ret != -EOPNOTSUPP)
			pr_err_r(ret, "cannot track pid %d", (int)tr.pid);
		return 1;
	}
	if (!tr.json)
		printf("tracking pid %d with %s (target stopped %.3f ms to attach)\n", (int)tr.pid,
		       trk_backend_name(trk_backend(tr.t)), trk_stop_ms(tr.t));
	status = track_rounds(&tr, (long)interval_ms, rounds);
	trk_free(tr.t);
	injlog_close();
	haul_pid_unlock(&lock);
	free(tr.ws.r);
	haul_layout_release(&tr.prev);
	return status;
}
