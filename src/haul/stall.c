/*
 * stall.c - what a client of the migrated process feels before the freeze:
 * the longest time one of its threads wanted to run and could not.
 *
 * A thread samples /proc/PID/task/TID/schedstat (run time, run-queue wait)
 * and /proc/PID/task/TID/stat (state) of every thread every
 * HAUL_STALL_PERIOD_US while pre-copy runs: of the process, or of every
 * process of a tree (the root and its descendants, found again from
 * /proc/PID/task/TID/children every HAUL_STALL_RELIST samples, so that a
 * process or thread that appears is watched and one that exits is dropped,
 * its open stall counted as far as seen).  The longest stall names the
 * process it was in.  Between two samples a thread
 * made no progress when it ran for less than half the interval; it was
 * stalled when, in that interval, it also waited on the run queue for more
 * than half of it (CPU contention, a cpu.max throttle: a throttled task
 * stays queued and its wait counts) or was blocked in the kernel at both
 * ends ('D': mmap_lock, page locks; 't': stopped by a tracer, as our own
 * attach does).  Consecutive stalled intervals add up to one stall, closed
 * by the run-queue wait of the interval that ends it.
 *
 * What it cannot see, said in the man page: a wait shorter than the sample
 * period inside one interval counts only as its run-queue part; a thread
 * that sleeps interruptibly in the kernel on our behalf ('S': none of ours
 * today) looks idle; and its resolution is the interval it actually got
 * (reported: on a loaded machine the sampler itself runs late).  A thread
 * that sleeps by choice (nanosleep, epoll) is never counted.
 *
 * The sampler runs SCHED_FIFO where the host allows it: at normal priority
 * on a loaded 2-core host its interval grew to 37-86 ms (bench/RESULTS.md
 * "Stalls"), so it could not tell a 60 ms stall from its own lateness.  A
 * sample of a few threads costs tens of us every 2 ms; when samples cost more
 * than HAUL_STALL_FIFO_MAX_US on average (a workload of many threads) it goes
 * back to SCHED_OTHER, so the probe never takes a real share of a CPU at FIFO.
 *
 * The arithmetic (haul_stall_feed) is pure and unit-tested
 * (tests/unit/mig_stall.c); the sampler only reads files.
 */
#define LOG_PREFIX "migrate: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "haul/haul_int.h"

void haul_stall_feed(struct haul_stall_thread *th, double t_ms, uint64_t run_ns, uint64_t delay_ns,
		     bool blocked, struct haul_stall_stats *st)
{
	double dt, drun, dwait;
	bool both_blocked, stalled;

	if (!th->have) {
		th->have = true;
		goto keep;
	}
	dt = t_ms - th->t_ms;
	if (dt <= 0)
		return;
	if (dt > st->resolution_ms)
		st->resolution_ms = dt;
	drun = run_ns >= th->run_ns ? (run_ns - th->run_ns) / 1e6 : 0;
	dwait = delay_ns >= th->delay_ns ? (delay_ns - th->delay_ns) / 1e6 : 0;
	both_blocked = blocked && th->blocked;
	stalled = drun < dt / 2 && (dwait > dt / 2 || both_blocked);
	if (stalled) {
		double w = both_blocked && dt > dwait ? dt : dwait;

		th->stretch_ms += w;
		if (both_blocked)
			th->stretch_blocked_ms += w - dwait;
	} else {
		double len = th->stretch_ms + dwait;

		if (len > st->round_ms)
			st->round_ms = len;
		if (len > st->max_ms) {
			st->max_ms = len;
			st->max_blocked_ms = th->stretch_blocked_ms;
			st->max_at_ms = t_ms;
			st->max_pid = th->pid;
		}
		th->stretch_ms = th->stretch_blocked_ms = 0;
	}
keep:
	th->t_ms = t_ms;
	th->run_ns = run_ns;
	th->delay_ns = delay_ns;
	th->blocked = blocked;
}

void haul_stall_close(struct haul_stall_thread *th, struct haul_stall_stats *st)
{
	/* a stall still going on when sampling ends (the freeze follows) counts as seen so far */
	if (th->stretch_ms > st->round_ms)
		st->round_ms = th->stretch_ms;
	if (th->stretch_ms > st->max_ms) {
		st->max_ms = th->stretch_ms;
		st->max_blocked_ms = th->stretch_blocked_ms;
		st->max_at_ms = th->t_ms;
		st->max_pid = th->pid;
	}
	th->stretch_ms = th->stretch_blocked_ms = 0;
}

/* ---- the sampler --------------------------------------------------------------- */

struct probe_thread {
	struct haul_stall_thread s; /* s.pid: its process */
	pid_t tid;
	int sched_fd, stat_fd;
	bool seen; /* still listed at the last directory read */
};

struct haul_stall_probe {
	pid_t pid;    /* the root */
	bool tree;    /* and its descendants */
	pid_t *procs; /* the processes found at the last directory read */
	size_t nprocs, procs_cap;
	pthread_t thread;
	pthread_mutex_t lock; /* st, between the sampler and haul_stall_probe_take() */
	atomic_bool stop;
	struct probe_thread *th;
	size_t n, cap;
	struct haul_stall_stats st;
	pid_t tid; /* the sampler's, once started is posted */
	sem_t started;
};

static void drop_thread(struct haul_stall_probe *p, size_t i)
{
	haul_stall_close(&p->th[i].s, &p->st);
	close(p->th[i].sched_fd);
	close(p->th[i].stat_fd);
	p->th[i] = p->th[--p->n];
}

static int add_thread(struct haul_stall_probe *p, pid_t pid, pid_t tid)
{
	char path[64];
	struct probe_thread *t;

	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 16;

		t = realloc(p->th, cap * sizeof(*t));
		if (!t)
			return -ENOMEM;
		p->th = t;
		p->cap = cap;
	}
	t = &p->th[p->n];
	memset(t, 0, sizeof(*t));
	t->s.pid = pid;
	t->tid = tid;
	t->seen = true;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/schedstat", (int)pid, (int)tid);
	t->sched_fd = open(path, O_RDONLY | O_CLOEXEC);
	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, (int)tid);
	t->stat_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (t->sched_fd < 0 || t->stat_fd < 0) {
		int ret = -errno;

		if (t->sched_fd >= 0)
			close(t->sched_fd);
		if (t->stat_fd >= 0)
			close(t->stat_fd);
		return ret; /* gone meanwhile: not an error for the caller */
	}
	p->n++;
	return 0;
}

static int add_proc(struct haul_stall_probe *p, pid_t pid)
{
	for (size_t i = 0; i < p->nprocs; i++)
		if (p->procs[i] == pid)
			return 0; /* listed twice: a read that raced a reparenting */
	if (p->nprocs == p->procs_cap) {
		size_t cap = p->procs_cap ? 2 * p->procs_cap : 8;
		pid_t *n = realloc(p->procs, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		p->procs = n;
		p->procs_cap = cap;
	}
	p->procs[p->nprocs++] = pid;
	return 0;
}

/* Add the children of thread @tid of @pid (/proc/PID/task/TID/children) to p->procs. */
static void add_children(struct haul_stall_probe *p, pid_t pid, pid_t tid)
{
	char path[80];
	FILE *f;
	int child;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)tid);
	f = fopen(path, "re");
	if (!f)
		return; /* gone meanwhile */
	while (fscanf(f, "%d", &child) == 1)
		if (child > 0 && add_proc(p, (pid_t)child))
			break; /* out of memory: the ones listed are watched */
	fclose(f);
}

/* Mark (or add) every thread of process @pid; with p->tree, list its children too. */
static void list_proc(struct haul_stall_probe *p, pid_t pid)
{
	char path[64];
	struct dirent *d;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	dir = opendir(path);
	if (!dir)
		return; /* gone: its threads are dropped */
	while ((d = readdir(dir))) {
		pid_t tid = (pid_t)atoi(d->d_name);
		size_t i;

		if (tid <= 0)
			continue;
		for (i = 0; i < p->n && p->th[i].tid != tid; i++)
			;
		if (i < p->n)
			p->th[i].seen = true;
		else
			add_thread(p, pid, tid);
		if (p->tree)
			add_children(p, pid, tid);
	}
	closedir(dir);
}

/*
 * Bring the thread list up to date with /proc/PID/task of the process, or
 * of every process of the tree (p->procs grows as children are found).
 */
static void list_threads(struct haul_stall_probe *p)
{
	for (size_t i = 0; i < p->n; i++)
		p->th[i].seen = false;
	p->nprocs = 0;
	if (add_proc(p, p->pid))
		return;
	for (size_t k = 0; k < p->nprocs; k++)
		list_proc(p, p->procs[k]);
	for (size_t i = 0; i < p->n;)
		if (!p->th[i].seen)
			drop_thread(p, i);
		else
			i++;
	if (p->n > p->st.threads)
		p->st.threads = (unsigned)p->n;
	if (p->nprocs > p->st.procs)
		p->st.procs = (unsigned)p->nprocs;
}

/* One sample of one thread; false when it is gone. */
static bool sample(struct haul_stall_probe *p, struct probe_thread *t, double now)
{
	char buf[512], *c;
	unsigned long long run, delay;
	double open_ms, open_blocked_ms;
	uint64_t prev_delay;
	ssize_t n;
	bool blocked, had;

	n = pread(t->sched_fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return false;
	buf[n] = 0;
	if (sscanf(buf, "%llu %llu", &run, &delay) != 2)
		return false;
	n = pread(t->stat_fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return false;
	buf[n] = 0;
	/* the state follows the last ')' (the name may hold any character) */
	c = strrchr(buf, ')');
	blocked = c && c[1] == ' ' && (c[2] == 'D' || c[2] == 't');
	open_ms = t->s.stretch_ms;
	open_blocked_ms = t->s.stretch_blocked_ms;
	prev_delay = t->s.delay_ns;
	had = t->s.have;
	haul_stall_feed(&t->s, now, run, delay, blocked, &p->st);
	/* on haul's clock (haul_now_ms, as the rounds' debug lines): which phase it was */
	if (had && t->s.stretch_ms == 0) {
		double len = open_ms + (delay > prev_delay ? (delay - prev_delay) / 1e6 : 0);

		/* the thread's name says whether it serves clients (a background thread may not) */
		char *name = strchr(buf, '(');

		if (c)
			*c = 0;
		if (len >= HAUL_STALL_LOG_MS)
			pr_debug(
				"stall probe: tid %d (%s) of pid %d stalled %.1f ms (%.1f blocked), "
				"%.1f..%.1f",
				(int)t->tid, name && c ? name + 1 : "?", (int)t->s.pid, len,
				open_blocked_ms, now - len, now);
	}
	return true;
}

/* SCHED_FIFO for the sampler, if the host lets us; whether it took. */
static bool probe_fifo(pid_t pid)
{
	struct sched_param sp = {.sched_priority = 1};
	int ret = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);

	if (ret)
		pr_debug("stall probe of pid %d runs without SCHED_FIFO (%s): on a loaded host "
			 "its resolution suffers",
			 (int)pid, strerror(ret));
	return !ret;
}

/*
 * Back to SCHED_OTHER when samples cost more than a FIFO thread should take:
 * on average (@avg_ms, decaying by a tenth a sample), since one sample may
 * take an interrupt or a page fault (single samples of one thread took up to
 * 0.39 ms on the loaded host).  The cost is the sampler's own CPU time: on a
 * VM the wall clock also counts the host's steal, which made a probe of six
 * threads give up FIFO and sample only every 40-50 ms just when the host
 * was busiest.
 */
static bool probe_fifo_check(pid_t pid, double sample_ms, size_t nthreads, double *avg_ms,
			     unsigned k)
{
	struct sched_param sp = {.sched_priority = 0};

	*avg_ms = k <= 1 ? sample_ms : *avg_ms * 0.9 + sample_ms * 0.1;
	if (k < 10 || *avg_ms * 1e3 <= HAUL_STALL_FIFO_MAX_US)
		return true;
	pthread_setschedparam(pthread_self(), SCHED_OTHER, &sp);
	pr_debug("stall probe of pid %d: a sample of %zu threads takes %.3f ms; back to "
		 "SCHED_OTHER",
		 (int)pid, nthreads, *avg_ms);
	return false;
}

/* The calling thread's CPU time, ms. */
static double thread_cpu_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void *probe_main(void *arg)
{
	struct haul_stall_probe *p = arg;
	struct timespec next;
	unsigned k = 0;
	double avg_ms = 0;
	bool fifo;

	p->tid = (pid_t)syscall(SYS_gettid);
	fifo = probe_fifo(p->pid);
	sem_post(&p->started);
	clock_gettime(CLOCK_MONOTONIC, &next);
	while (!atomic_load(&p->stop)) {
		double now, cpu0;

		cpu0 = thread_cpu_ms();
		pthread_mutex_lock(&p->lock);
		if (k++ % HAUL_STALL_RELIST == 0)
			list_threads(p);
		now = haul_now_ms();
		for (size_t i = 0; i < p->n;)
			if (sample(p, &p->th[i], now))
				i++;
			else
				drop_thread(p, i);
		p->st.samples++;
		pthread_mutex_unlock(&p->lock);
		if (fifo)
			fifo = probe_fifo_check(p->pid, thread_cpu_ms() - cpu0, p->n, &avg_ms, k);
		next.tv_nsec += HAUL_STALL_PERIOD_US * 1000L;
		while (next.tv_nsec >= 1000000000L) {
			next.tv_nsec -= 1000000000L;
			next.tv_sec++;
		}
		/* late (a loaded machine): do not burst to catch up, start again from now */
		{
			struct timespec cur;

			clock_gettime(CLOCK_MONOTONIC, &cur);
			if (cur.tv_sec > next.tv_sec ||
			    (cur.tv_sec == next.tv_sec && cur.tv_nsec > next.tv_nsec))
				next = cur;
		}
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
	}
	return NULL;
}

int haul_stall_probe_start(pid_t pid, bool tree, struct haul_stall_probe **out)
{
	struct haul_stall_probe *p = calloc(1, sizeof(*p));
	int ret;

	*out = NULL;
	if (!p)
		return -ENOMEM;
	p->pid = pid;
	p->tree = tree;
	p->st.period_ms = HAUL_STALL_PERIOD_US / 1e3;
	pthread_mutex_init(&p->lock, NULL);
	atomic_init(&p->stop, false);
	sem_init(&p->started, 0, 0);
	ret = -pthread_create(&p->thread, NULL, probe_main, p);
	if (ret) {
		sem_destroy(&p->started);
		pr_warn("cannot start the stall probe of pid %d (%s); the client's stalls before "
			"the freeze are not measured",
			(int)pid, strerror(-ret));
		pthread_mutex_destroy(&p->lock);
		free(p);
		return ret;
	}
	*out = p;
	return 0;
}

pid_t haul_stall_probe_tid(struct haul_stall_probe *p)
{
	if (!p)
		return 0;
	/* posted once, before the first sample: every later wait returns at once */
	while (sem_wait(&p->started) < 0 && errno == EINTR)
		;
	sem_post(&p->started);
	return p->tid;
}

double haul_stall_probe_take(struct haul_stall_probe *p)
{
	double v;

	if (!p)
		return 0;
	pthread_mutex_lock(&p->lock);
	v = p->st.round_ms;
	p->st.round_ms = 0;
	pthread_mutex_unlock(&p->lock);
	return v;
}

void haul_stall_probe_stop(struct haul_stall_probe *p, struct haul_stall_stats *st)
{
	if (!p)
		return;
	atomic_store(&p->stop, true);
	pthread_join(p->thread, NULL);
	while (p->n)
		drop_thread(p, p->n - 1);
	free(p->th);
	free(p->procs);
	if (st)
		*st = p->st;
	pthread_mutex_destroy(&p->lock);
	sem_destroy(&p->started);
	free(p);
}
