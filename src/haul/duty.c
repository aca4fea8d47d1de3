/*
 * duty.c - a deep CPU throttle as a duty cycle of the cgroup2 freezer.
 *
 * Why: cpu.max cannot make a deep throttle short.  Its quota is at least
 * 1 ms, so a workload that uses a tenth of a CPU, or a throttle above 80% of
 * one busy thread, needs periods of 10-100 ms, and each period shows to a
 * client as one stop of that length (bench/RESULTS.md "Stalls": 25 ms
 * stretches, gaps of 40 ms before the freeze).  The freezer has no minimum:
 * a thread of haul freezes the cgroup for HAUL_MIG_DUTY_FROZEN_US, thaws it
 * for as long as the throttle leaves the workload (haul_conv_duty), and
 * again, so that a throttle up to 80% shows as a slowdown made of short
 * stops whatever CPU the workload uses.  The running window has a floor: a
 * thawed thread that waits for a CPU past it is frozen again and waits a
 * whole cycle more, so deeper throttles freeze longer instead (still
 * shorter than cpu.max's stretch at the same depth).
 *
 * The thread runs SCHED_FIFO where the host allows it: a thaw written late
 * by a preempted thread stretches the stop (KERNEL.md: ~13 ms at normal
 * priority, 17-120 us at SCHED_FIFO), above haul's other real-time threads
 * (HAUL_MIG_DUTY_PRIO: at priority 1 it woke up to 7.9 ms late on the
 * loaded host, behind the tracker's scan slices at 10 among others).  It
 * sleeps on absolute deadlines, and measures each frozen stretch from before
 * its freeze write to after its thaw write: a client's stop is no longer than
 * that plus the wake-up of its thread.  The stall probe cannot see these stops (a frozen task sleeps in
 * state S), so the measured longest is what haul reports for the throttle.
 *
 * A window the workload spent waiting for a CPU (another task held it) is
 * no window: frozen again, it would stop two stretches and a window in one.
 * So at the window's end the thread reads the cgroup's cpu.stat and the
 * process's state: its main thread still runnable and the cgroup run under a
 * quarter of the window, the workload gets another window (at most
 * HAUL_MIG_DUTY_EXTEND_MAX).  An idle workload is not runnable and is not
 * extended; one whose main thread sleeps while others wait is not either.
 *
 * A hold (haul_duty_hold) keeps the next frozen stretch frozen until it is
 * released, so that the pre-copy can scan with the workload stopped at a
 * stretch's start and, when what it found fits the downtime target, make
 * that stretch the switchover's stop (haul_duty_stop_frozen): no running
 * window comes between the last scan and the freeze, and none of the writes
 * a window lets through (a paced writer catches up its whole backlog in one)
 * reach the final round.
 *
 * Invariants: the cgroup is thawed when haul_duty_stop() returns (frozen
 * when haul_duty_stop_frozen() does), and only this thread writes
 * cgroup.freeze while it runs (the switchover lifts the throttle, or takes
 * over a held stretch, before it freezes).  If haul dies mid-cycle, the guardian's undo
 * thaws (haul_cg_undo writes 0 to cgroup.freeze whatever it finds).
 */
#define LOG_PREFIX "duty: "
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "haul/haul_int.h"

struct haul_duty {
	pthread_t thread;
	pid_t owner; /* the process whose thread it is: a forked child has no thread to join */
	pid_t pid;
	int fd;		       /* the cgroup's cgroup.freeze, written by the thread only */
	int stat_fd;	       /* the cgroup's cpu.stat, -1 where missing: no window is extended */
	atomic_llong extended; /* windows extended (the thread counts, its owner reads) */
	atomic_long frozen_us, run_us;
	atomic_bool stop;
	pthread_mutex_t lock; /* with @wake: haul_duty_stop() ends a sleep at once */
	pthread_cond_t wake;
	atomic_llong stretch_max_ns; /* the longest frozen stretch measured */
	/* a hold: asked (under lock), then taken by the thread at its next freeze */
	bool hold_asked, held, keep_frozen;
	long long held_at_ns; /* the held stretch's freeze write began */
	atomic_int err;	      /* the first failed write, -errno */
	/* for the log at the end: what a freeze and a thaw cost, and where a long stretch came
	 * from: the thread woken late (CPU, steal) or the thaw write waiting (cgroup_mutex) */
	long long cycles, freeze_ns, thaw_ns, late_max_ns, thaw_max_ns;
	long long thaw_at_ns; /* the thread's last thaw (read after the join) */
};

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * Sleep until @t_ns (CLOCK_MONOTONIC), or until haul_duty_stop() asks: a
 * lift then thaws at once instead of at the end of a freeze (the switchover
 * waits for it, and the client's stop would run into the switchover's).
 */
static void sleep_until(struct haul_duty *d, long long t_ns)
{
	struct timespec ts = {.tv_sec = t_ns / 1000000000LL, .tv_nsec = t_ns % 1000000000LL};

	pthread_mutex_lock(&d->lock);
	while (!atomic_load(&d->stop) &&
	       pthread_cond_timedwait(&d->wake, &d->lock, &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&d->lock);
}

/* Frozen since @t0_ns: a hold asked is taken by this stretch (its waiter woken). */
static void take_hold(struct haul_duty *d, long long t0_ns)
{
	pthread_mutex_lock(&d->lock);
	if (d->hold_asked) {
		d->hold_asked = false;
		d->held = true;
		d->held_at_ns = t0_ns;
		pthread_cond_broadcast(&d->wake);
	}
	pthread_mutex_unlock(&d->lock);
}

/* At a stretch's end: a held one stays frozen until released, or the thread is stopped. */
static void wait_release(struct haul_duty *d)
{
	pthread_mutex_lock(&d->lock);
	while (d->held && !atomic_load(&d->stop))
		pthread_cond_wait(&d->wake, &d->lock);
	pthread_mutex_unlock(&d->lock);
}

static int write_freeze(struct haul_duty *d, const char *v)
{
	if (pwrite(d->fd, v, 1, 0) == 1)
		return 0;
	return -errno;
}

/* The number after @key in the file @fd (read from its start), or -1. */
static long long read_key(int fd, const char *key)
{
	char buf[512], *p;
	ssize_t n;

	if (fd < 0)
		return -1;
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strstr(buf, key);
	return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

/*
 * Whether the workload spent the window since @usage_us (cpu.stat) waiting for a
 * CPU: its main thread still runnable at the end, the cgroup run under a quarter of
 * the @win_us window.  (The cgroup's cpu.pressure cannot tell: it is summed in
 * jiffies, and a window is under one.)
 */
static bool starved(const struct haul_duty *d, long long usage_us, long long win_us)
{
	long long now = read_key(d->stat_fd, "usage_usec ");

	return now >= 0 && now - usage_us < win_us / 4 && haul_proc_state(d->pid) == 'R';
}

/*
 * The running window that began at @thaw_ns, the cgroup's usage then @usage_us (-1:
 * unknown, no extension): HAUL_MIG_DUTY_MIN_RUN_US or what the throttle leaves, and
 * again while the workload only waited.
 */
static void run_window(struct haul_duty *d, long long thaw_ns, long long usage_us)
{
	long long run_ns = atomic_load(&d->run_us) * 1000LL, end = thaw_ns + run_ns;

	sleep_until(d, end);
	for (int i = 0; usage_us >= 0 && i < HAUL_MIG_DUTY_EXTEND_MAX && !atomic_load(&d->stop);
	     i++) {
		if (!starved(d, usage_us, (now_ns() - thaw_ns) / 1000))
			break;
		atomic_fetch_add(&d->extended, 1);
		end += run_ns;
		sleep_until(d, end);
	}
}

static void *duty_main(void *arg)
{
	struct haul_duty *d = arg;
	struct sched_param sp = {.sched_priority = HAUL_MIG_DUTY_PRIO};
	int ret;

	/* EPERM in a cpu cgroup without RT runtime: a late thaw then costs more */
	ret = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
	if (ret)
		pr_debug("pid %d: the duty cycle runs without SCHED_FIFO (%s): its thaws may "
			 "come late under load",
			 d->pid, strerror(ret));
	while (!atomic_load(&d->stop)) {
		long long t0, t1, t2, t3;
		long long usage;

		t0 = now_ns();
		ret = write_freeze(d, "1");
		t1 = now_ns();
		if (ret)
			break;
		take_hold(d, t0);
		sleep_until(d, t0 + atomic_load(&d->frozen_us) * 1000LL);
		wait_release(d);
		if (atomic_load(&d->stop) && d->keep_frozen)
			return NULL; /* the switchover's stop now: haul_duty_stop_frozen */
		t2 = now_ns();
		ret = write_freeze(d, "0");
		t3 = now_ns();
		if (ret)
			break;
		/* read after the thaw, not in the frozen stretch: it ran a few us at most */
		usage = read_key(d->stat_fd, "usage_usec ");
		d->thaw_at_ns = t3;
		d->cycles++;
		d->freeze_ns += t1 - t0;
		d->thaw_ns += t3 - t2;
		if (t2 - t0 - atomic_load(&d->frozen_us) * 1000LL > d->late_max_ns)
			d->late_max_ns = t2 - t0 - atomic_load(&d->frozen_us) * 1000LL;
		if (t3 - t2 > d->thaw_max_ns)
			d->thaw_max_ns = t3 - t2;
		if (t3 - t0 > atomic_load(&d->stretch_max_ns))
			atomic_store(&d->stretch_max_ns, t3 - t0);
		/* a full running stretch after a late thaw: no debt is paid back by freezing */
		run_window(d, t3, usage);
	}
	if (ret) {
		/* under the lock: a haul_duty_hold waiting for the next freeze hears of it */
		pthread_mutex_lock(&d->lock);
		atomic_store(&d->err, ret);
		pthread_cond_broadcast(&d->wake);
		pthread_mutex_unlock(&d->lock);
		pr_err_r(ret,
			 "cannot write cgroup.freeze of pid %d: the throttle's duty cycle "
			 "stopped, the workload runs unthrottled",
			 d->pid);
	}
	/* thawed on every way out; the guardian thaws too if this never runs */
	write_freeze(d, "0");
	return NULL;
}

int haul_duty_start(pid_t pid, const char *freezer_dir, long frozen_us, long run_us,
		    struct haul_duty **out)
{
	char path[PATH_MAX + 32];
	pthread_condattr_t ca;
	struct haul_duty *d;
	int ret;

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	/* the deadlines are CLOCK_MONOTONIC, as clock_nanosleep's were */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->wake, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&d->lock, NULL);
	d->owner = getpid();
	d->pid = pid;
	atomic_init(&d->frozen_us, frozen_us);
	atomic_init(&d->run_us, run_us);
	snprintf(path, sizeof(path), "%s/cpu.stat", freezer_dir);
	d->stat_fd = open(path, O_RDONLY | O_CLOEXEC);
	snprintf(path, sizeof(path), "%s/cgroup.freeze", freezer_dir);
	d->fd = open(path, O_WRONLY | O_CLOEXEC);
	if (d->fd < 0) {
		ret = -errno;
		pr_err_r(ret, "cannot open '%s' for the throttle of pid %d", path, pid);
		goto free_duty;
	}
	ret = -pthread_create(&d->thread, NULL, duty_main, d);
	if (ret) {
		pr_err_r(ret, "cannot start the throttle's duty cycle for pid %d", pid);
		close(d->fd);
		goto free_duty;
	}
	*out = d;
	return 0;
free_duty:
	if (d->stat_fd >= 0)
		close(d->stat_fd);
	pthread_cond_destroy(&d->wake);
	pthread_mutex_destroy(&d->lock);
	free(d);
	return ret;
}

void haul_duty_set(struct haul_duty *d, long frozen_us, long run_us)
{
	atomic_store(&d->frozen_us, frozen_us);
	atomic_store(&d->run_us, run_us);
}

double haul_duty_frozen_ms(const struct haul_duty *d)
{
	return d ? atomic_load(&d->frozen_us) / 1e3 : 0;
}

double haul_duty_stretch_max_ms(const struct haul_duty *d)
{
	return d ? atomic_load(&d->stretch_max_ns) / 1e6 : 0;
}

/*
 * After the last thaw, let the workload run HAUL_MIG_DUTY_LIFT_RUN_US before
 * whatever comes next: the switchover freezes right after the lift, and a
 * lift that cut a frozen stretch short would otherwise make the two one stop
 * to a client (measured: a 24 ms stretch and 18.5 ms of downtime, one 46 ms
 * gap).
 */
static void settle(const struct haul_duty *d)
{
	long long left = d->thaw_at_ns + HAUL_MIG_DUTY_LIFT_RUN_US * 1000LL - now_ns();
	struct timespec ts = {.tv_sec = 0, .tv_nsec = left};

	if (d->thaw_at_ns && left > 0)
		nanosleep(&ts, NULL);
}

/* Join the stopped thread of @d, log its cycle, thaw unless @frozen, free @d.  0 or -errno. */
static int duty_end(struct haul_duty *d, bool frozen)
{
	int ret, err;

	pthread_join(d->thread, NULL);
	if (!frozen)
		settle(d);
	ret = atomic_load(&d->err);
	if (d->cycles)
		pr_debug("pid %d: duty cycle of %lld freezes, longest frozen stretch %.2f ms, "
			 "a freeze write %.0f us, a thaw write %.0f us on average; thawing woke "
			 "up to %.2f ms late, a thaw write took up to %.2f ms; %lld windows "
			 "extended (it waited for a CPU)%s",
			 d->pid, d->cycles, haul_duty_stretch_max_ms(d),
			 d->freeze_ns / 1e3 / d->cycles, d->thaw_ns / 1e3 / d->cycles,
			 d->late_max_ns / 1e6, d->thaw_max_ns / 1e6, atomic_load(&d->extended),
			 frozen ? "; left frozen for the switchover" : "");
	/* the thread's last write thawed it; say so if even this one fails */
	err = frozen ? 0 : write_freeze(d, "0");
	if (err && !ret)
		ret = err;
	close(d->fd);
	if (d->stat_fd >= 0)
		close(d->stat_fd);
	pthread_cond_destroy(&d->wake);
	pthread_mutex_destroy(&d->lock);
	free(d);
	return ret;
}

int haul_duty_stop(struct haul_duty *d)
{
	if (!d)
		return 0;
	if (d->owner != getpid())
		return write_freeze(d, "0"); /* a fork's copy: thaw, leave the parent's alone */
	pthread_mutex_lock(&d->lock);
	atomic_store(&d->stop, true);
	pthread_cond_broadcast(&d->wake);
	pthread_mutex_unlock(&d->lock);
	return duty_end(d, false);
}

int haul_duty_hold(struct haul_duty *d, int timeout_ms, double *held_at_ms)
{
	long long dl_ns = now_ns() + timeout_ms * 1000000LL;
	struct timespec dl = {.tv_sec = dl_ns / 1000000000LL, .tv_nsec = dl_ns % 1000000000LL};
	int ret = 0;

	pthread_mutex_lock(&d->lock);
	d->hold_asked = true;
	while (!d->held && !atomic_load(&d->stop) && !atomic_load(&d->err) && ret != ETIMEDOUT)
		ret = pthread_cond_timedwait(&d->wake, &d->lock, &dl);
	if (d->held) {
		*held_at_ms = d->held_at_ns / 1e6;
		ret = 0;
	} else {
		d->hold_asked = false;
		ret = atomic_load(&d->err) ? atomic_load(&d->err) : -ETIMEDOUT;
	}
	pthread_mutex_unlock(&d->lock);
	return ret;
}

void haul_duty_release(struct haul_duty *d)
{
	pthread_mutex_lock(&d->lock);
	d->held = false;
	d->hold_asked = false;
	pthread_cond_broadcast(&d->wake);
	pthread_mutex_unlock(&d->lock);
}

int haul_duty_stop_frozen(struct haul_duty *d)
{
	pthread_mutex_lock(&d->lock);
	if (!d->held || d->owner != getpid()) {
		pthread_mutex_unlock(&d->lock);
		return -EINVAL;
	}
	d->keep_frozen = true;
	atomic_store(&d->stop, true);
	pthread_cond_broadcast(&d->wake);
	pthread_mutex_unlock(&d->lock);
	return duty_end(d, true);
}

long long haul_duty_extended(const struct haul_duty *d)
{
	return d ? atomic_load(&d->extended) : 0;
}

bool haul_cg_duty_wanted(const struct haul_cg *cg, unsigned pct, double cpus)
{
	long q, p;

	if (!cg->v2_freezer || !pct)
		return false;
	if (!cg->cpu_dir[0] && !cg->cpu_mnt[0])
		return true;
	return haul_conv_cpu_max(pct, cpus, 0, &q, &p) < pct;
}

int haul_cg_duty_throttle(struct haul_cg *cg, unsigned pct)
{
	long frozen, run;
	unsigned applied = haul_conv_duty(pct, cg->throttle_stall_max_us, &frozen, &run);
	int ret;

	if (cg->duty) {
		haul_duty_set(cg->duty, frozen, run);
	} else {
		/* a cpu.max throttle in force: the duty cycle replaces it, not on top */
		if (cg->throttle_pct) {
			ret = haul_cg_throttle(cg, 0, 1.0);
			if (ret)
				return ret;
		}
		ret = haul_duty_start(cg->pid, cg->freezer_dir, frozen, run, &cg->duty);
		if (ret)
			return ret;
		pr_debug("pid %d: throttled %u%% as a duty cycle of the freezer, %ld us frozen, "
			 "%ld us running",
			 cg->pid, applied, frozen, run);
	}
	cg->throttle_pct = applied;
	cg->throttle_stall_ms = frozen / 1e3;
	if (haul_duty_stretch_max_ms(cg->duty) > cg->throttle_stall_ms)
		cg->throttle_stall_ms = haul_duty_stretch_max_ms(cg->duty);
	return 0;
}

/* @cg's duty cycle has ended, its longest stretch @stretch_ms: unthrottled. */
static void cg_duty_gone(struct haul_cg *cg, double stretch_ms)
{
	if (stretch_ms > cg->duty_stretch_max_ms)
		cg->duty_stretch_max_ms = stretch_ms;
	cg->duty = NULL;
	cg->throttle_pct = 0;
	cg->throttle_stall_ms = 0;
}

int haul_cg_duty_keep_frozen(struct haul_cg *cg)
{
	double stretch = haul_duty_stretch_max_ms(cg->duty);
	int ret;

	if (!cg->duty)
		return -EINVAL;
	ret = haul_duty_stop_frozen(cg->duty);
	if (ret == -EINVAL)
		return ret;	   /* nothing held: nothing done */
	cg_duty_gone(cg, stretch); /* the thread is gone either way */
	if (ret)
		pr_err_r(ret,
			 "the throttle of pid %d in '%s' failed a write to cgroup.freeze while "
			 "holding it frozen for the switchover",
			 cg->pid, cg->freezer_dir);
	return ret;
}

int haul_cg_duty_lift(struct haul_cg *cg)
{
	double stretch = haul_duty_stretch_max_ms(cg->duty);
	int ret;

	if (!cg->duty)
		return 0;
	ret = haul_duty_stop(cg->duty);
	cg_duty_gone(cg, stretch);
	if (ret)
		pr_err_r(ret,
			 "cannot thaw pid %d in '%s' after its throttle: write 0 to its "
			 "cgroup.freeze",
			 cg->pid, cg->freezer_dir);
	return ret;
}
