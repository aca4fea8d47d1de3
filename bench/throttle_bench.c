/*
 * throttle_bench.c - what the pre-copy throttle costs a client, by depth and
 * by mechanism, away from everything else a migration does (issue 16).
 *
 * It starts bench/workload (--mem 256M --rate RATE, its 1 ms heartbeat is the
 * client), gives it a cgroup as haul migrate does (haul_cg_prepare), and for
 * each throttle depth applies, alternately:
 *   cpu.max   what main did: cpu.max with the period whose stretch is at most
 *             4 ms where the 1 ms minimum quota allows it, else up to 25 ms
 *             (the default downtime target);
 *   duty      haul_cg_throttle as it is now: cpu.max where that stays short,
 *             else the freezer's duty cycle (duty.c);
 * for SECONDS each, resets the workload's gap statistics at the start, lifts
 * the throttle and reads them: the longest gap, the gaps over 5 ms, and the
 * pages written against the unthrottled rate (how much it was slowed: the
 * workload catches up on its schedule, so a throttle slows it only below the
 * CPU share its rate needs).  Every mechanism sees the same machine within
 * seconds; repeats alternate.
 * With --raw, instead a sweep of the duty cycle's frozen and running
 * stretches (FROZEN_US:RUN_US ...): how short a running window the workload's
 * threads still get a CPU in, on this host.
 * Usage: throttle_bench [--rate MIB_S] [--secs S] [--repeat N] [PCT ...]
 *        throttle_bench --raw [--rate ...] FROZEN_US:RUN_US ...
 *        (defaults 64, 2, 2, "20 50 80 90 96").  Root; cgroup2 freezer.
 */
#define LOG_PREFIX "throttle_bench: "
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "haul/haul_int.h"

static char hb_path[128];

/* A key of the workload's heartbeat file, -1 when absent. */
static double hb_value(const char *key)
{
	char buf[8192], *p;
	size_t klen = strlen(key);
	FILE *f = fopen(hb_path, "r");
	size_t n;

	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, key, klen) && p[klen] == '=')
			return atof(p + klen + 1);
	return -1;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, ms % 1000 * 1000000L};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Ask for a report and wait until the heartbeat file is rewritten. */
static int report(pid_t pid)
{
	/* the file is replaced on each report; its tick count moves between two (mtime is coarse) */
	double ticks = hb_value("ticks");

	kill(pid, SIGUSR1);
	for (int i = 0; i < 1500; i++) {
		sleep_ms(2);
		if (hb_value("ticks") != ticks)
			return 0;
	}
	return -ETIMEDOUT;
}

static double cpu_secs(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	p = strrchr(buf, ')');
	if (p)
		sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
	return (ut + st) / (double)sysconf(_SC_CLK_TCK);
}

struct sample {
	bool duty; /* the freezer's duty cycle ran */
	unsigned applied;
	double stretch_ms, gap_ms, over5, writes;
};

/* One throttle of @pct by @duty or main's cpu.max, for @secs. */
static int run_one(pid_t pid, struct haul_cg *cg, unsigned pct, bool duty, double cpus, int secs,
		   struct sample *s)
{
	double w0, w1;
	int ret;

	if (report(pid))
		return -ETIMEDOUT;
	w0 = hb_value("writes");
	kill(pid, SIGHUP);
	sleep_ms(50);
	cg->v2_freezer = duty; /* off: haul_cg_throttle takes main's cpu.max path */
	cg->throttle_stall_max_us = HAUL_MIG_DOWNTIME_MS * 1000;
	ret = haul_cg_throttle(cg, pct, cpus);
	cg->v2_freezer = true;
	if (ret)
		return ret;
	s->duty = cg->duty != NULL;
	s->applied = cg->throttle_pct;
	s->stretch_ms = cg->throttle_stall_ms;
	sleep_ms(secs * 1000L);
	if (cg->duty)
		s->stretch_ms = haul_duty_stretch_max_ms(cg->duty);
	if (report(pid))
		return -ETIMEDOUT;
	ret = haul_cg_throttle(cg, 0, cpus);
	if (ret)
		return ret;
	w1 = hb_value("writes");
	s->gap_ms = hb_value("max_gap_rt_us") / 1e3;
	s->over5 = hb_value("stalls_over_5ms");
	s->writes = w1 - w0;
	return 0;
}

/* The duty cycle alone at @frozen_us / @run_us, for the sweep of run windows. */
static int run_raw(pid_t pid, struct haul_cg *cg, long frozen_us, long run_us, int secs,
		   struct sample *s)
{
	struct haul_duty *d;
	double w0;
	int ret;

	if (report(pid))
		return -ETIMEDOUT;
	w0 = hb_value("writes");
	kill(pid, SIGHUP);
	sleep_ms(50);
	ret = haul_duty_start(pid, cg->freezer_dir, frozen_us, run_us, &d);
	if (ret)
		return ret;
	sleep_ms(secs * 1000L);
	s->duty = true;
	s->applied = (unsigned)(100.0 * frozen_us / (frozen_us + run_us));
	s->stretch_ms = haul_duty_stretch_max_ms(d);
	ret = haul_duty_stop(d);
	if (ret || report(pid))
		return ret ? ret : -ETIMEDOUT;
	s->gap_ms = hb_value("max_gap_rt_us") / 1e3;
	s->over5 = hb_value("stalls_over_5ms");
	s->writes = hb_value("writes") - w0;
	return 0;
}

static pid_t start_workload(const char *self, const char *rate)
{
	char bin[512], dir[64];
	const char *slash = strrchr(self, '/');
	pid_t pid;

	snprintf(bin, sizeof(bin), "%.*sworkload", slash ? (int)(slash - self + 1) : 0, self);
	snprintf(dir, sizeof(dir), "/tmp/throttle-bench-%d", (int)getpid());
	mkdir(dir, 0755);
	snprintf(hb_path, sizeof(hb_path), "%s/hb", dir);
	pid = fork();
	if (pid == 0) {
		int fd = open("/dev/null", O_RDWR);

		dup2(fd, 0);
		dup2(fd, 1);
		execl(bin, bin, "--mem", "256M", "--rate", rate, "--heartbeat", hb_path,
		      "--print-every", "1000", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; pid > 0 && i < 3000 && hb_value("ticks") < 0; i++)
		sleep_ms(10);
	if (pid > 0 && hb_value("ticks") < 0) {
		pr_err("workload '%s' never reported to '%s'; build it with make all", bin,
		       hb_path);
		kill(pid, SIGKILL);
		return -1;
	}
	return pid;
}

int main(int argc, char **argv)
{
	unsigned pcts[16] = {20, 50, 80, 90, 96}, npct = 5;
	const char *rate = "64";
	int secs = 2, repeat = 2, ret = 1, i = 1;
	struct haul_cg_mounts m;
	struct haul_cg cg;
	double cpus, c0, free_writes;
	pid_t pid;

	log_init("throttle_bench");
	bool raw = false;
	long raws[16][2];
	unsigned nraw = 0;

	for (; i < argc && argv[i][0] == '-'; i += 2) {
		if (!strcmp(argv[i], "--raw")) {
			raw = true;
			i--;
		} else if (i + 1 >= argc) {
			break;
		} else if (!strcmp(argv[i], "--rate"))
			rate = argv[i + 1];
		else if (!strcmp(argv[i], "--secs"))
			secs = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--repeat"))
			repeat = atoi(argv[i + 1]);
	}
	if (i < argc)
		npct = 0;
	for (; i < argc && npct < 16 && nraw < 16; i++)
		if (raw && sscanf(argv[i], "%ld:%ld", &raws[nraw][0], &raws[nraw][1]) == 2)
			nraw++;
		else if (!raw)
			pcts[npct++] = (unsigned)atoi(argv[i]);
	if (haul_cg_probe(&m) || !m.v2[0]) {
		pr_err("no cgroup2 freezer on this host: nothing to compare");
		return 77;
	}
	pid = start_workload(argv[0], rate);
	if (pid <= 0)
		return 1;
	if (haul_cg_prepare(pid, &m, &cg)) {
		kill(pid, SIGKILL);
		return 1;
	}
	/* the unthrottled rate and CPU share: what the throttle is a share of */
	c0 = cpu_secs(pid);
	report(pid);
	free_writes = hb_value("writes");
	sleep_ms(secs * 1000L);
	report(pid);
	free_writes = hb_value("writes") - free_writes;
	cpus = (cpu_secs(pid) - c0) / secs;
	if (cpus < 0.05)
		cpus = 0.05;
	{
		char load[64] = "?";
		FILE *f = fopen("/proc/loadavg", "r");

		if (f && !fgets(load, sizeof(load), f))
			snprintf(load, sizeof(load), "?");
		if (f)
			fclose(f);
		load[strcspn(load, "\n")] = '\0';
		printf("workload pid %d at %s MiB/s uses %.2f CPUs; %d s per cell; loadavg %s\n",
		       (int)pid, rate, cpus, secs, load);
	}
	printf("| throttle asked | mechanism | applied | stretch ms (duty: measured) | client max gap "
	       "ms | gaps > 5 ms per s | writes vs unthrottled |\n|---|---|---|---|---|---|---|\n");
	for (unsigned k = 0; k < nraw; k++)
		for (int r = 0; r < repeat; r++) {
			struct sample s;
			int err = run_raw(pid, &cg, raws[k][0], raws[k][1], secs, &s);

			if (err) {
				pr_err_r(err, "duty cycle %ld:%ld us failed", raws[k][0],
					 raws[k][1]);
				goto out;
			}
			printf("| %u%% | duty %ld us frozen, %ld us running | %u%% | %.2f | %.1f | %.1f "
			       "| %.2f |\n",
			       s.applied, raws[k][0], raws[k][1], s.applied, s.stretch_ms, s.gap_ms,
			       s.over5 / secs, free_writes > 0 ? s.writes / free_writes : 0);
			fflush(stdout);
		}
	for (unsigned k = 0; !raw && k < npct; k++)
		for (int r = 0; r < repeat; r++)
			for (int d = 0; d < 2; d++) {
				bool duty = (d + r) % 2; /* alternate which goes first */
				struct sample s;

				int err = run_one(pid, &cg, pcts[k], duty, cpus, secs, &s);

				if (err) {
					pr_err_r(err, "cell %u%% %s failed", pcts[k],
						 duty ? "duty" : "cpu.max");
					goto out;
				}
				printf("| %u%% | %s | %u%% | %.2f | %.1f | %.1f | %.2f |\n",
				       pcts[k],
				       !duty	? "main's cpu.max"
				       : s.duty ? "now: freezer duty cycle"
						: "now: cpu.max (short)",
				       s.applied, s.stretch_ms, s.gap_ms, s.over5 / secs,
				       free_writes > 0 ? s.writes / free_writes : 0);
				fflush(stdout);
			}
	ret = 0;
out:
	haul_cg_throttle(&cg, 0, cpus);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	haul_cg_undo(&cg);
	haul_cg_cleanup(&cg);
	return ret;
}
