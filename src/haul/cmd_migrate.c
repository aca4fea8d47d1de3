/*
 * cmd_migrate.c - `haul migrate`: the command line around haul_migrate()
 * (migrate.c): options, which process, progress, summary and --json.
 *
 * The process is a PID, a `haul run` NAME, or --cgroup PATH (the one process
 * in it).  SIGINT/SIGTERM ask migrate to stop before the commit point (the
 * source thaws and runs on); past it they change nothing.  Progress: one
 * line per round on stderr (round, pages, MB/s, dirty rate, expected
 * downtime, throttle); at the end a summary on stdout and, with --json FILE,
 * the numbers a benchmark needs.  Exit status: 0 migrated; 1 failed and the
 * source runs on; 3 in doubt (the source stays frozen; see the message);
 * 4 lost (post-copy failed after the resume and the source died with it).
 */
#define LOG_PREFIX "migrate: "
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "haul/ctr_int.h"
#include "haul/haul.h"
#include "haul/haul_int.h"
#include "haul/netlock.h"

static volatile sig_atomic_t mig_stop;

static void on_signal(int sig)
{
	(void)sig;
	mig_stop = 1;
}

static const char intro[] =
	"Move a running process to the host whose 'haul pageserver' listens at\n"
	"HOST:PORT, with a stop of about --downtime.  Durations take ms, s or m\n"
	"(a bare number is milliseconds).\n";

static const char outro[] =
	"The key (at least 32 random bytes, mode 0600) is root-equivalent on the\n"
	"target: its holder can restore any process with any uid and memory there,\n"
	"and create root-owned setuid files at paths it chooses.\n\n"
	"Post-copy (--postcopy, --hybrid) trades safety for a short stop: from the\n"
	"resume until the last page has arrived, the source is kept frozen as the only\n"
	"copy of that memory. A connection that breaks in that window (reset, EOF)\n"
	"is re-established and serving goes on, if it comes back within --timeout\n"
	"(and the page server's own --timeout). If the source host or process dies,\n"
	"or the link stays down, the restored process cannot survive (the target\n"
	"kills it). The source, if alive, stays frozen at the switchover point (or is\n"
	"thawed with --postcopy-rollback: effects the process had on the target may\n"
	"then repeat). Pre-copy has no such window.\n\n"
	"Exit status: 0 migrated; 1 not migrated (the process runs on here);\n"
	"2 the command line is wrong; 3 in doubt (the source stays frozen: see the\n"
	"message); 4 lost (post-copy failed after the resume and the source process\n"
	"died).\n";

static const struct haul_opt_choice compress_modes[] = {
	{"auto", PS_COMPRESS_AUTO},
	{"lz4", PS_COMPRESS_LZ4},
	{"none", PS_COMPRESS_NONE},
	{NULL, 0},
};

/*
 * The process of cgroup @path (absolute, or relative to the cgroup2 mount):
 * its one process, or the root of the one tree its processes form (the
 * whole tree moves).
 */
static int pid_of_cgroup(const char *path, pid_t *pid)
{
	return haul_cgroup_tree_root(path, pid);
}

/* The PID @pid has in its own (innermost) PID namespace, from NSpid. */
static pid_t ns_pid_of(pid_t pid)
{
	char p[64], line[256];
	pid_t v = 0;
	FILE *f;

	snprintf(p, sizeof(p), "/proc/%d/status", pid);
	f = fopen(p, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "NSpid:", 6))
			continue;
		for (char *s = strtok(line + 6, " \t\n"); s; s = strtok(NULL, " \t\n"))
			v = atoi(s);
	}
	fclose(f);
	return v;
}

struct progress {
	bool quiet;
	bool tty; /* stderr is a terminal: redraw a live line during rounds */
	struct haul_events *events;
};

static void print_progress(void *arg, uint64_t seq, uint64_t sent, uint64_t total, double mbps,
			   unsigned proc, unsigned nprocs)
{
	const struct progress *p = arg;

	if (p->quiet || !p->tty)
		return;
	fprintf(stderr, "\r\033[Khaul: round %3llu: %8llu of %llu pages %8.1f MB/s",
		(unsigned long long)seq, (unsigned long long)sent, (unsigned long long)total, mbps);
	/* a tree: the sums so far, up to the process being sent */
	if (nprocs > 1)
		fprintf(stderr, ", process %u of %u", proc, nprocs);
}

static void print_round(void *arg, const struct haul_mig_round *r)
{
	const struct progress *p = arg;
	char pages[48] = "pages";

	haul_events_round(p->events, r);
	if (p->quiet)
		return;
	if (p->tty)
		fputs("\r\033[K", stderr);
	/* a tree's round: the sum over its processes */
	if (r->nprocs > 1)
		snprintf(pages, sizeof(pages), "pages of %u processes", r->nprocs);
	if (r->final)
		fprintf(stderr, "haul: round %3llu (frozen): %8llu %s %8.1f MB/s\n",
			(unsigned long long)r->seq, (unsigned long long)r->pages, pages, r->mbps);
	else
		fprintf(stderr,
			"haul: round %3llu: %8llu %s %8.1f MB/s, dirty %7.1f MB/s, expected "
			"downtime %7.1f ms%s%.0u%s\n",
			(unsigned long long)r->seq, (unsigned long long)r->pages, pages, r->mbps,
			r->dirty_mbps, r->expected_ms, r->throttle_pct ? ", throttle " : "",
			r->throttle_pct, r->throttle_pct ? "%" : "");
}

static const char *outcome(const struct haul_mig_result *r)
{
	return r->committed ? "migrated"
	       : r->lost    ? "lost"
	       : r->indoubt ? "in-doubt"
			    : "not-migrated";
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", *s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

static const char *mode_name(const struct haul_mig_opts *o)
{
	if (o->mode == HAUL_MIG_POSTCOPY)
		return "post-copy";
	if (o->mode == HAUL_MIG_HYBRID)
		return "hybrid";
	return o->stop_and_copy ? "stop-and-copy" : "pre-copy";
}

/*
 * The longest stall a client of the process could feel, from what is known:
 * before the freeze (the stall probe, pre-copy only), the tracker's attach,
 * freeze to resume, and after the resume (post-copy: the longest single
 * fault the target served).  0 when nothing of it is known.
 */
static double client_stall_ms(const struct haul_mig_result *r)
{
	double m = r->downtime_ms;

	if (r->stall_measured && r->stall.max_ms > m)
		m = r->stall.max_ms;
	if (r->attach_stop_ms > m)
		m = r->attach_stop_ms;
	if (r->lazy && r->has_report && r->report.fault_max_ns / 1e6 > m)
		m = r->report.fault_max_ns / 1e6;
	return m;
}

/* What the client felt (issue 16): numbers, or null where haul cannot know. */
static void write_json_stalls(FILE *f, const struct haul_mig_result *r)
{
	fprintf(f, "  \"client_stall_ms\": %.3f,\n", client_stall_ms(r));
	if (r->stall_measured)
		fprintf(f,
			"  \"client_stall_before_ms\": %.3f,\n  \"client_stall_resolution_ms\": "
			"%.3f,\n  \"client_stall_probe_samples\": %llu,\n"
			"  \"client_stall_before_blocked_ms\": %.3f,\n",
			r->stall.max_ms, r->stall.resolution_ms,
			(unsigned long long)r->stall.samples, r->stall.max_blocked_ms);
	else
		fprintf(f, "  \"client_stall_before_ms\": null,\n  \"client_stall_resolution_ms\": "
			   "null,\n  \"client_stall_probe_samples\": 0,\n"
			   "  \"client_stall_before_blocked_ms\": null,\n");
	/* the process whose thread stalled longest (a tree: any of them); null: no stall seen */
	if (r->stall_measured && r->stall.max_pid)
		fprintf(f, "  \"client_stall_before_pid\": %d,\n", (int)r->stall.max_pid);
	else
		fprintf(f, "  \"client_stall_before_pid\": null,\n");
	if (r->lazy && r->has_report)
		fprintf(f, "  \"client_stall_after_ms\": %.3f,\n", r->report.fault_max_ns / 1e6);
	else if (r->lazy)
		fprintf(f, "  \"client_stall_after_ms\": null,\n");
	else
		fprintf(f, "  \"client_stall_after_ms\": 0,\n");
	fprintf(f,
		"  \"attach_stop_ms\": %.3f,\n  \"scan_call_max_ms\": %.3f,\n"
		"  \"throttle_stall_max_ms\": %.3f,\n",
		r->attach_stop_ms, r->scan_call_max_ms, r->throttle_stall_max_ms);
}

static int write_json(const char *path, const struct haul_mig_opts *o,
		      const struct haul_mig_result *r)
{
	/* post-copy: the target's own measurements, all 0 when it sent none (target_report) */
	const struct ps_lazy_report *lr = &r->report;
	FILE *f = fopen(path, "we");

	if (!f)
		return -errno;
	fprintf(f, "{\n  \"result\": \"%s\",\n  \"error\": ", outcome(r));
	json_str(f, r->err ? strerror(-r->err) : "");
	fprintf(f, ",\n  \"phase\": ");
	json_str(f, r->phase);
	fprintf(f, ",\n  \"why\": ");
	json_str(f, r->why);
	fprintf(f,
		",\n  \"mode\": \"%s\",\n  \"pid\": %d,\n  \"processes\": %u,\n  \"target_pid\": "
		"%d,\n  \"to\": ",
		mode_name(o), o->pid, r->nprocs ? r->nprocs : 1, r->target_pid);
	json_str(f, o->to);
	fprintf(f,
		",\n  \"total_ms\": %.3f,\n  \"downtime_ms\": %.3f,\n  \"downtime_target_ms\": "
		"%.3f,\n  \"expected_downtime_ms\": %.3f,\n  \"fixed_cost_estimate_ms\": %.3f,\n"
		"  \"over_target\": %s,\n"
		"  \"freeze_ms\": %.3f,\n  \"seize_ms\": %.3f,\n  \"final_round_ms\": %.3f,\n"
		"  \"dump_ms\": %.3f,\n  \"state_ms\": %.3f,\n  \"restore_ms\": %.3f,\n"
		"  \"kill_ms\": %.3f,\n  \"lock_ms\": %.3f,\n  \"handover_ms\": %.3f,\n"
		"  \"refreeze_ms\": %.3f,\n  \"indoubt_ms\": %.3f,\n"
		"  \"lazy\": %s,\n  \"resume_ms\": %.3f,\n  \"memory_complete_ms\": %.3f,\n"
		"  \"eager_pages\": %llu,\n  \"stale_pages\": %llu,\n  \"served_pages\": %llu,\n"
		"  \"rolled_back\": %s,\n"
		"  \"rounds\": %u,\n  \"bytes_sent\": %llu,\n  \"pages_sent\": %llu,\n"
		"  \"throttle_max_pct\": %u,\n  \"held_ms\": %.3f,\n  \"precopy_nice\": %d,\n",
		r->total_ms, r->downtime_ms, o->downtime_ms, r->expected_ms, r->fixed_est_ms,
		r->over_why ? "true" : "false", r->freeze_ms, r->seize_ms, r->final_ms, r->dump_ms,
		r->state_ms, r->restore_ms, r->kill_ms, r->lock_ms, r->handover_ms, r->refreeze_ms,
		r->indoubt_ms, r->lazy ? "true" : "false", r->target_pid ? r->downtime_ms : 0,
		r->complete_ms, (unsigned long long)r->eager_pages,
		(unsigned long long)r->stale_pages, (unsigned long long)r->served_pages,
		r->rolled_back ? "true" : "false", r->rounds, (unsigned long long)r->bytes_sent,
		(unsigned long long)r->pages_sent, r->throttle_max, r->held_ms, r->precopy_nice);
	fprintf(f, "  \"over_target_why\": ");
	json_str(f, r->over_why);
	fprintf(f,
		",\n  \"served_bytes\": %llu,\n  \"lane_replies\": %llu,\n  \"target_report\": %s,\n"
		"  \"faults\": %llu,\n"
		"  \"fault_pages\": %llu,\n  \"pushed_pages\": %llu,\n  \"present_pages\": %llu,\n"
		"  \"zero_filled_pages\": %llu,\n  \"fault_p50_us\": %.1f,\n  \"fault_p99_us\": "
		"%.1f,\n  \"fault_max_us\": %.1f,\n  \"target_complete_ms\": %.3f,\n"
		"  \"fetched_bytes\": %llu,\n  \"reconnects\": %u,\n  \"target_ended\": \"%s\",\n"
		"  \"target_exit_status\": %d,\n",
		(unsigned long long)r->served_bytes, (unsigned long long)r->lane_replies,
		r->has_report ? "true" : "false", (unsigned long long)lr->faults,
		(unsigned long long)lr->fault_pages, (unsigned long long)lr->pushed_pages,
		(unsigned long long)lr->present_pages, (unsigned long long)lr->zero_filled,
		lr->fault_p50_ns / 1e3, lr->fault_p99_ns / 1e3, lr->fault_max_ns / 1e3,
		lr->complete_ns / 1e6, (unsigned long long)lr->fetched_bytes, r->reconnects,
		lr->ended == PS_LAZY_EXITED   ? "exited"
		: lr->ended == PS_LAZY_EXECED ? "exec"
					      : "",
		lr->ended == PS_LAZY_EXITED ? WEXITSTATUS(lr->exit_status) : -1);
	write_json_stalls(f, r);
	fprintf(f, "  \"pages_per_round\": [");
	for (size_t i = 0; i < r->nround; i++)
		fprintf(f, "%s%llu", i ? ", " : "", (unsigned long long)r->round[i].pages);
	fprintf(f, "],\n  \"round_detail\": [");
	for (size_t i = 0; i < r->nround; i++) {
		const struct haul_mig_round *x = &r->round[i];

		fprintf(f,
			"%s\n    {\"round\": %llu, \"pages\": %llu, \"wire_bytes\": %llu, \"ms\": "
			"%.3f, \"scan_ms\": %.3f, \"mbps\": %.1f, \"dirty_mbps\": %.1f, "
			"\"expected_ms\": %.3f, \"throttle_pct\": %u, \"final\": %s, "
			"\"stall_ms\": %.3f}",
			i ? "," : "", (unsigned long long)x->seq, (unsigned long long)x->pages,
			(unsigned long long)x->wire_bytes, x->ms, x->scan_ms, x->mbps,
			x->dirty_mbps, x->expected_ms, x->throttle_pct, x->final ? "true" : "false",
			x->stall_ms);
	}
	fprintf(f, "\n  ]\n}\n");
	if (fclose(f))
		return -errno;
	return 0;
}

/* The client's view next to haul's own downtime: what it felt before, during, after. */
static void print_stalls(const struct haul_mig_result *r)
{
	char before[160], after[96];

	if (r->stall_measured && r->nprocs > 1 && r->stall.max_pid)
		snprintf(before, sizeof(before),
			 "%.1f ms in pid %d (run-time probe of every process, every %.1f ms or "
			 "worse)",
			 r->stall.max_ms, (int)r->stall.max_pid, r->stall.resolution_ms);
	else if (r->stall_measured)
		snprintf(before, sizeof(before), "%.1f ms (run-time probe, every %.1f ms or worse)",
			 r->stall.max_ms, r->stall.resolution_ms);
	else
		snprintf(before, sizeof(before), "not measured");
	if (!r->lazy)
		snprintf(after, sizeof(after), "none from haul");
	else if (r->has_report)
		snprintf(after, sizeof(after), "longest fault %.1f ms",
			 r->report.fault_max_ns / 1e6);
	else
		snprintf(after, sizeof(after), "unknown (the target sent no fault statistics)");
	printf("  client's longest stall %.1f ms: before the freeze %s, attach %.2f ms, freeze to "
	       "resume %.1f ms, after the resume %s\n",
	       client_stall_ms(r), before, r->attach_stop_ms, r->downtime_ms, after);
}

static void summary(const struct haul_mig_opts *o, const struct haul_mig_result *r)
{
	if (r->committed) {
		if (r->nprocs > 1)
			printf("migrated pid %d and its %u descendants to %s (pid %d there): total "
			       "%.2f s, downtime %.1f ms (target %.0f ms)\n",
			       o->pid, r->nprocs - 1, o->to, r->target_pid, r->total_ms / 1e3,
			       r->downtime_ms, o->downtime_ms);
		else
			printf("migrated pid %d to %s (pid %d there): total %.2f s, downtime %.1f "
			       "ms (target %.0f ms)\n",
			       o->pid, o->to, r->target_pid, r->total_ms / 1e3, r->downtime_ms,
			       o->downtime_ms);
		printf("  freeze %.2f ms, seize %.2f ms, final round %.2f ms, state %.2f ms, "
		       "restore %.2f ms; %u rounds, %.1f MiB sent, %llu pages%s\n",
		       r->freeze_ms, r->seize_ms, r->final_ms, r->state_ms, r->restore_ms,
		       r->rounds, r->bytes_sent / 1048576.0, (unsigned long long)r->pages_sent,
		       r->throttle_max ? ", throttled" : "");
		if (r->held_ms > 0)
			printf("  the stop began in a throttle stretch, %.1f ms before the freeze: the "
			       "last scan ran there\n",
			       r->held_ms);
		if (r->over_why)
			printf("  switched over expecting %.1f ms, over the %.0f ms target: %s\n",
			       r->expected_ms, o->downtime_ms, r->over_why);
		print_stalls(r);
		if (r->lazy)
			printf("  post-copy: running on the target %.1f ms after the freeze, all "
			       "memory there after %.1f ms; %llu pages before the resume, %llu "
			       "served after it (%llu named stale)\n",
			       r->downtime_ms, r->complete_ms, (unsigned long long)r->eager_pages,
			       (unsigned long long)r->served_pages,
			       (unsigned long long)r->stale_pages);
		if (r->lazy && r->has_report && r->report.ended)
			printf("  it %s on %s before all its memory arrived: what it had not "
			       "touched was never needed\n",
			       r->report.ended == PS_LAZY_EXECED ? "exec'd" : "exited", o->to);
		if (r->lazy && r->has_report)
			printf("  faults %llu, latency p50 %.2f ms, p99 %.2f ms, max %.2f ms; %llu "
			       "pages by fault, %llu pushed; all memory there %.1f ms after the "
			       "resume; %.1f MiB served, %llu faults' requests over the fault lane\n",
			       (unsigned long long)r->report.faults, r->report.fault_p50_ns / 1e6,
			       r->report.fault_p99_ns / 1e6, r->report.fault_max_ns / 1e6,
			       (unsigned long long)r->report.fault_pages,
			       (unsigned long long)r->report.pushed_pages,
			       r->report.complete_ns / 1e6, r->served_bytes / 1048576.0,
			       (unsigned long long)r->lane_replies);
		else if (r->lazy)
			printf("  the target sent no fault statistics (an older haul); %.1f MiB "
			       "served\n",
			       r->served_bytes / 1048576.0);
	} else if (r->lost) {
		printf("pid %d lost: post-copy failed after it resumed on %s and the source "
		       "died (see above)\n",
		       o->pid, o->to);
	} else if (r->rolled_back) {
		printf("pid %d not migrated: post-copy failed after the resume; rolled back, it "
		       "runs on here from the switchover point\n",
		       o->pid);
	} else if (r->indoubt) {
		printf("pid %d: in doubt after %.2f s; the source stays frozen (see above)\n",
		       o->pid, r->total_ms / 1e3);
	} else if (!haul_proc_state(o->pid) || haul_proc_state(o->pid) == 'Z') {
		printf("pid %d not migrated: it exited during the migration\n", o->pid);
	} else {
		printf("pid %d not migrated (%s: %s); it runs on here\n", o->pid,
		       r->phase ? r->phase : "?", r->why[0] ? r->why : strerror(-r->err));
	}
}

/* The command line, before the process is looked up. */
struct mig_cli {
	const char *key, *cgroup, *json, *events;
	bool quiet;
	struct haul_opt_list move; /* --move-address */
	struct haul_ctr_opts ctr;  /* --container and its options (ctr_migrate.c) */
};

/*
 * Parse @argv into @o and @c: the index of the PID|NAME argument (argc with
 * --cgroup), or HAUL_OPTS_HELP / -EINVAL (logged) for haul_opts_exit().
 */
/* What the options say together: one way to name the process, the addresses, the mode. */
static int check_cli(bool named, struct haul_mig_opts *o, struct mig_cli *c)
{
	if (named + !!c->cgroup + !!c->ctr.id != 1) {
		pr_err("name the process: a PID, a NAME of 'haul ps', --cgroup PATH or "
		       "--container ID, one of them");
		return -EINVAL;
	}
	for (size_t i = 0; i < c->move.n; i++) {
		struct haul_net_addr a;

		if (haul_net_addr_parse(c->move.v[i], &a)) {
			pr_err("--move-address '%s' is not ADDR/PREFIX (198.18.0.100/24, "
			       "2001:db8::10/64)",
			       c->move.v[i]);
			return -EINVAL;
		}
	}
	o->move_addrs = c->move.v;
	o->nmove_addrs = c->move.n;
	if (c->ctr.podman && (!c->ctr.id || c->ctr.shared)) {
		pr_err("--podman goes with --container NAME, without --shared-storage (podman's "
		       "storage is its own on each host)");
		return -EINVAL;
	}
	if (c->ctr.id && o->mode != HAUL_MIG_PRECOPY) {
		pr_err("--container takes pre-copy only: runc restores the container from a whole "
		       "image on the target; leave out --postcopy and --hybrid");
		return -EINVAL;
	}
	return 0;
}

static int parse_cli(int argc, char **argv, struct haul_mig_opts *o, struct mig_cli *c)
{
	double downtime = HAUL_MIG_DOWNTIME_MS, timeout = HAUL_MIG_REPLY_TIMEOUT_MS;
	long long streams = 1, max_rounds = HAUL_MIG_MAX_ROUNDS, nice = HAUL_MIG_PRECOPY_NICE;
	int compress = PS_COMPRESS_AUTO, arg;
	bool postcopy = false, hybrid = false;
	struct haul_opt_list ext_fd = {0}, ext_kind = {0};
	const struct haul_opt opts[] = {
		{"to", 't', HAUL_OPT_HOSTPORT, HAUL_OPT_REQUIRED, &o->to, "HOST:PORT",
		 "where the target's 'haul pageserver' listens", 1, 65535, NULL},
		{"key", 'k', HAUL_OPT_PATH, HAUL_OPT_REQUIRED, &c->key, "FILE",
		 "the key the page server was started with", 0, 0, NULL},
		{"cgroup", 'c', HAUL_OPT_PATH, 0, &c->cgroup, "PATH",
		 "the process, or the one process tree, of this cgroup, instead of PID|NAME", 0, 0,
		 NULL},
		{"downtime", 'd', HAUL_OPT_DURATION, HAUL_OPT_DEFAULT, &downtime, "TIME",
		 "downtime target", 1, HAUL_OPT_HOUR_MS, NULL},
		{"bandwidth", 'b', HAUL_OPT_RATE, 0, &o->bandwidth, "RATE",
		 "cap, bytes/s: 500M, 2G, 60MiB/s, or 1gbit, 800mbit\n(default none)", 0, 0, NULL},
		{"streams", 's', HAUL_OPT_INT, HAUL_OPT_DEFAULT, &streams, "N",
		 "TCP streams (post-copy with 2 or more:\nfaults get stream 0 to themselves)", 1,
		 PS_MAX_STREAMS, NULL},
		{"compress", 'z', HAUL_OPT_ENUM, HAUL_OPT_DEFAULT, &compress, "MODE",
		 "auto|lz4|none", 0, 0, compress_modes},
		{"encrypt", 'E', HAUL_OPT_FLAG, 0, &o->encrypt, NULL,
		 "encrypt the page streams (chacha20-poly1305; needed by\na page server run "
		 "with --encrypt).  Without it pages\nand state cross the network "
		 "authenticated but readable",
		 0, 0, NULL},
		{"max-rounds", 'r', HAUL_OPT_INT, HAUL_OPT_DEFAULT, &max_rounds, "N",
		 "pre-copy rounds before switching over anyway", 1, 100000, NULL},
		{"precopy-nice", 0, HAUL_OPT_INT, HAUL_OPT_DEFAULT, &nice, "N",
		 "run haul's pre-copy work (and the target's page server)\nat nice +N until the "
		 "freeze, so the process gets the\nCPU first; back at full weight from the "
		 "freeze on\n(0: full weight throughout)",
		 0, 19, NULL},
		{"stop-and-copy", 'S', HAUL_OPT_FLAG, 0, &o->stop_and_copy, NULL,
		 "no pre-copy: freeze, copy everything, restore (baseline)", 0, 0, NULL},
		{"postcopy", 'P', HAUL_OPT_FLAG, 0, &postcopy, NULL,
		 "resume on the target at once; memory follows on demand", 0, 0, NULL},
		{"hybrid", 'H', HAUL_OPT_FLAG, 0, &hybrid, NULL,
		 "pre-copy; where it stops converging, post-copy the rest", 0, 0, NULL},
		{"postcopy-rollback", 'R', HAUL_OPT_FLAG, 0, &o->postcopy_rollback, NULL,
		 "if post-copy fails after the resume, thaw the source\n(default: keep it "
		 "frozen and exit 3)",
		 0, 0, NULL},
		{"timeout", 'T', HAUL_OPT_DURATION, HAUL_OPT_DEFAULT, &timeout, "TIME",
		 "wait at most this for each reply of the target\n", 1, 24 * HAUL_OPT_HOUR_MS,
		 NULL},
		{"json", 'j', HAUL_OPT_PATH, 0, &c->json, "FILE",
		 "write times, downtime, rounds and bytes to FILE", 0, 0, NULL},
		{"events", 0, HAUL_OPT_STR, 0, &c->events, "FD|FILE",
		 "stream one JSON object per phase and round (started,\nround, frozen, resumed, "
		 "committed, ...) as it happens",
		 0, 0, NULL},
		{"quiet", 'q', HAUL_OPT_FLAG, 0, &c->quiet, NULL, "no per-round lines", 0, 0, NULL},
		{"move-address", 0, HAUL_OPT_STR, HAUL_OPT_REPEAT, &c->move, "ADDR/PREFIX",
		 "move this service address (IPv4 or IPv6; repeatable):\nremoved here after the "
		 "freeze, added on the target's\ninterface on that subnet and announced "
		 "(gratuitous\nARP, unsolicited NA) before the process resumes there",
		 0, 0, NULL},
		{"on-switch", 0, HAUL_OPT_STR, 0, &o->on_switch, "CMD",
		 "run CMD (sh -c) here at the switch: HAUL_SWITCH_PHASE=\nsource-down after the "
		 "freeze (failure rolls back),\nsource-up after a rollback, source-done after "
		 "the\ncommit; with HAUL_SIDE, HAUL_PID, HAUL_MIGRATION_ID,\nHAUL_ADDRESSES (the "
		 "target runs its own: haul\npageserver --on-switch)",
		 0, 0, NULL},
		{"container", 0, HAUL_OPT_STR, 0, &c->ctr.id, "ID",
		 "a runc container instead of PID|NAME: its process,\nnamespaces, mounts and "
		 "rootfs move; the target's page\nserver (set up for containers: "
		 "haul-pageserver(1))\nrestores it with runc under the same ID, and it is\n"
		 "deleted here",
		 0, 0, NULL},
		{"runtime", 0, HAUL_OPT_STR, HAUL_OPT_DEFAULT, &c->ctr.runtime, "NAME",
		 "the container's runtime (runc)", 0, 0, NULL},
		{"podman", 0, HAUL_OPT_STR, 0, &c->ctr.podman, "CMD",
		 "--container names a podman container (name or ID):\nCMD runs podman here (a "
		 "wrapper may add its global\nflags); the target's page server restores it "
		 "with\nits podman (--podman), and it is removed here",
		 0, 0, NULL},
		{"root", 0, HAUL_OPT_PATH, 0, &c->ctr.root, "DIR",
		 "the runtime's state directory (runc --root; default\nrunc's own)", 0, 0, NULL},
		{"shared-storage", 0, HAUL_OPT_FLAG, 0, &c->ctr.shared, NULL,
		 "the container's bundle and rootfs are on storage the\ntarget shares, at the "
		 "same path: not copied",
		 0, 0, NULL},
		{"files-to", 0, HAUL_OPT_HOSTPORT, 0, &c->ctr.files_to, "HOST:PORT",
		 "the target's file channel (default: --to's host, its\nport + 1)", 1, 65535, NULL},
		HAUL_OPTS_EXTERNAL(&ext_fd, &ext_kind),
		{NULL, 0, 0, 0, NULL, NULL, NULL, 0, 0, NULL},
	};
	const struct haul_cmd_spec spec = {"migrate",
					   "PID|NAME|--cgroup PATH|--container ID --to "
					   "HOST:PORT --key FILE [options]",
					   intro,
					   outro,
					   opts,
					   0,
					   1,
					   false};

	arg = haul_opts_parse_external(&spec, argc, argv, &ext_fd, &ext_kind);
	if (arg < 0)
		return arg;
	o->downtime_ms = downtime;
	o->timeout_ms = (int)timeout;
	o->streams = (unsigned)streams;
	o->max_rounds = (unsigned)max_rounds;
	o->precopy_nice = (int)nice;
	o->compress = (enum ps_compress)compress;
	o->mode = postcopy ? HAUL_MIG_POSTCOPY : hybrid ? HAUL_MIG_HYBRID : HAUL_MIG_PRECOPY;
	if (postcopy + hybrid + o->stop_and_copy > 1) {
		pr_err("--stop-and-copy, --postcopy and --hybrid exclude each other");
		return -EINVAL;
	}
	return check_cli(arg < argc, o, c) ? -EINVAL : arg;
}

/* haul migrate, with @c (zeroed) owned by the caller, which releases its lists. */
static int cmd_migrate(int argc, char **argv, struct mig_cli *c)
{
	struct haul_mig_opts o = {.streams = 1};
	struct haul_mig_result r;
	struct sigaction sa = {.sa_handler = on_signal};
	struct haul_wl wl;
	struct progress prog = {.tty = isatty(STDERR_FILENO)};
	struct haul_ctr_mig *ctr = NULL;
	const char *key, *cgroup, *json, *events;
	bool have_wl;
	int arg, ret;

	arg = parse_cli(argc, argv, &o, c);
	if (arg < 0)
		return haul_opts_exit(arg);
	key = c->key;
	cgroup = c->cgroup;
	json = c->json;
	events = c->events;
	prog.quiet = c->quiet;
	if (c->ctr.id) {
		if (ps_key_load(key, o.key))
			return 2;
		if (haul_ctr_mig_prepare(&c->ctr, &o, &ctr))
			return 1; /* refused or failed before anything was touched: it runs on */
	} else if (cgroup) {
		if (pid_of_cgroup(cgroup, &o.pid))
			return 1;
	} else if (isdigit((unsigned char)argv[arg][0])) {
		o.pid = atoi(argv[arg]);
	} else if (!haul_reg_load(argv[arg], &wl)) {
		if (wl.migrated_to[0]) {
			pr_err("workload '%s' was migrated to %s already; migrate it from there",
			       wl.name, wl.migrated_to);
			return 1;
		}
		o.pid = wl.pid;
	} else {
		pr_err("'%s' is neither a PID nor a workload of 'haul ps'", argv[arg]);
		return 2;
	}
	if (o.pid <= 0 || !haul_proc_state(o.pid)) {
		pr_err("pid %d does not exist; check it with ps (or 'haul ps' for a NAME)", o.pid);
		haul_ctr_mig_free(ctr);
		return 1;
	}
	ret = ctr ? 0 : ps_key_load(key, o.key);
	if (ret)
		return 2; /* ps_key_load said why */
	o.ns_pid = ns_pid_of(o.pid);
	o.fault = getenv("HAUL_FAULT");
	o.stop = &mig_stop;
	if (events && haul_events_open(events, o.pid, &o.events)) {
		haul_ctr_mig_free(ctr);
		return 2;
	}
	prog.events = o.events;
	o.on_round = print_round;
	o.on_progress = print_progress;
	o.arg = &prog;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* network locks left by a haul that died with its survivor */
	haul_netlock_reap();
	have_wl = !haul_reg_find_pid(o.pid, &wl);
	haul_events_started(o.events, o.to, mode_name(&o), o.downtime_ms);
	haul_migrate(&o, &r);
	if (ctr) {
		haul_ctr_mig_finish(ctr, &r);
		haul_ctr_mig_free(ctr);
	}
	haul_events_end(o.events, &r);
	haul_events_free(o.events);
	summary(&o, &r);
	if (json) {
		int jr = write_json(json, &o, &r);

		if (jr)
			pr_err_r(jr, "cannot write '%s'", json);
	}
	if (r.committed && have_wl) {
		snprintf(wl.migrated_to, sizeof(wl.migrated_to), "%s", o.to);
		haul_reg_save(&wl);
	}
	haul_mig_result_release(&r);
	if (r.committed)
		return 0;
	if (r.lost)
		return 4;
	return r.indoubt ? 3 : 1;
}

int haul_cmd_migrate(int argc, char **argv)
{
	struct mig_cli c = {.ctr.runtime = "runc"};
	int ret = cmd_migrate(argc, argv, &c);

	haul_opt_list_release(&c.move);
	return ret;
}
