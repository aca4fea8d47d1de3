/*
 * res_sched.c - each thread's scheduling: its policy (SCHED_FIFO and
 * SCHED_RR with their real-time priority, SCHED_BATCH, SCHED_IDLE), the
 * SCHED_RESET_ON_FORK flag, and its I/O priority (ionice, a service's
 * IOSchedulingClass).  A real-time server (an audio or trading process, a
 * watchdog) restored as SCHED_OTHER runs on, but is preempted where it
 * never was; a backup daemon restored at the default I/O priority
 * competes with the database it was kept behind: silently not the process
 * that was moved.
 *
 * Dump: sched_getattr and ioprio_get of every thread, kept
 * (ProcessState.sched, one per thread) when any is not plain SCHED_OTHER
 * or not at the dumping haul's own I/O priority.  Restore: from outside, once
 * the registers are loaded and the cgroups placed (a real-time policy is
 * admitted by the cgroup the thread is in), sched_setattr of each thread
 * with its nice as restored (the process's, ProcessState.nice), and
 * ioprio_set where the thread's differs.  Absent,
 * a thread that inherited another policy from the restorer is put back to
 * SCHED_OTHER.  Nothing runs boosted before: the resume's own boost
 * (target_boost.c) is over by then.
 *
 * Refused at the precheck, by thread: SCHED_DEADLINE (its runtime is
 * admitted per root domain; not supported yet).  Utilization clamps and
 * the other attributes stay procattr.c's audit.  A target that refuses
 * the policy (no CAP_SYS_NICE, a cgroup without real-time runtime) fails
 * the restore naming the thread and policy; a migration rolls back.
 */
#define LOG_PREFIX "restore: "
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/proc.h"
#include "common/rsys.h"
#include "restore/res_int.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

#ifndef SCHED_DEADLINE
#define SCHED_DEADLINE 6
#endif
#define FLAG_RESET_ON_FORK 0x01
#define WHO_PROCESS	   1	     /* IOPRIO_WHO_PROCESS: one thread */
#define IOPRIO_LIMIT	   (4 << 13) /* classes NONE, RT, BE, IDLE (<< 13), level and hints below */

/* Thread @tid's I/O priority (0: ours), or -1. */
static long io_of(pid_t tid)
{
	return syscall(SYS_ioprio_get, WHO_PROCESS, tid);
}

static int get_attr(pid_t tid, struct haul_sched_attr *a)
{
	memset(a, 0, sizeof(*a));
	return syscall(SYS_sched_getattr, tid, a, sizeof(*a), 0) < 0 ? -errno : 0;
}

static const char *policy_name(uint32_t p)
{
	static const char *const names[] = {"SCHED_OTHER",   "SCHED_FIFO", "SCHED_RR",
					    "SCHED_BATCH",   "policy 4",   "SCHED_IDLE",
					    "SCHED_DEADLINE"};

	return p < sizeof(names) / sizeof(names[0]) ? names[p] : "an unknown policy";
}

/* SCHED_OTHER without RESET_ON_FORK, at I/O priority @io of @own (-1: unknown, not compared). */
static bool plain(const struct haul_sched_attr *a, long io, long own)
{
	return a->policy == SCHED_OTHER && !(a->flags & FLAG_RESET_ON_FORK) &&
	       (io < 0 || own < 0 || io == own);
}

/* Thread @tid's policy as one the restore can give again: 0, -EOPNOTSUPP with @why. */
static int check_thread(pid_t pid, pid_t tid, struct haul_sched_attr *a, char *why, size_t wl)
{
	int ret = get_attr(tid, a);

	if (ret)
		return ret == -ESRCH ? 0 : ret; /* the thread exited */
	if (a->policy == SCHED_OTHER || a->policy == SCHED_FIFO || a->policy == SCHED_RR ||
	    a->policy == SCHED_BATCH || a->policy == SCHED_IDLE)
		return 0;
	snprintf(why, wl,
		 "pid %d thread %d runs %s (a restored process gets SCHED_OTHER); haul cannot "
		 "carry it (not supported yet): reset it in the process, or leave the process "
		 "where it is",
		 (int)pid, (int)tid, policy_name(a->policy));
	return -EOPNOTSUPP;
}

/* Each thread of @pid through check_thread; *@any: one is not plain SCHED_OTHER. */
static int each_thread(pid_t pid, bool *any, char *why, size_t wl)
{
	struct haul_sched_attr a;
	char path[64];
	struct dirent *de;
	long own = io_of(0);
	int ret = 0;
	DIR *d;

	*any = false;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return errno == ENOENT ? -ESRCH : -errno;
	while (!ret && (de = readdir(d)))
		if (de->d_name[0] != '.') {
			a.policy = SCHED_OTHER;
			a.flags = 0;
			ret = check_thread(pid, atoi(de->d_name), &a, why, wl);
			*any |= !ret && !plain(&a, io_of(atoi(de->d_name)), own);
		}
	closedir(d);
	return ret;
}

static int sched_precheck(pid_t pid, pid_t tracer, char *why, size_t wl)
{
	bool any;

	(void)tracer;
	return each_thread(pid, &any, why, wl);
}

static bool sched_in_use(pid_t pid)
{
	char why[256];
	bool any;

	return !each_thread(pid, &any, why, sizeof(why)) && any;
}

/* What the dump allocated: one policy per thread. */
struct sched_buf {
	Haul__Img__SchedPolicy *pol, **ptrs;
};

static void sched_release(void *priv)
{
	struct sched_buf *b = priv;

	if (!b)
		return;
	free(b->pol);
	free(b->ptrs);
	free(b);
}

static int sched_dump(struct rst_seized *s, uint64_t scratch, Haul__Img__ProcessState *ps,
		      void **priv, char *why, size_t wl)
{
	struct sched_buf *b = calloc(1, sizeof(*b));
	struct haul_sched_attr a;
	long io, own = io_of(0);
	bool any = false;
	int ret = 0;

	(void)scratch;
	if (!b)
		return -ENOMEM;
	*priv = b;
	b->pol = calloc(s->n, sizeof(*b->pol));
	b->ptrs = calloc(s->n, sizeof(*b->ptrs));
	if (!b->pol || !b->ptrs)
		return -ENOMEM;
	for (size_t i = 0; i < s->n && !ret; i++) {
		ret = check_thread(s->pid, s->thr[i].pid, &a, why, wl);
		if (!ret && (ret = get_attr(s->thr[i].pid, &a)))
			snprintf(why, wl,
				 "cannot read the scheduling policy of pid %d thread %d: %s",
				 (int)s->pid, (int)s->thr[i].pid, strerror(-ret));
		if (ret)
			break;
		haul__img__sched_policy__init(&b->pol[i]);
		b->pol[i].policy = a.policy;
		b->pol[i].has_priority = a.priority != 0;
		b->pol[i].priority = a.priority;
		b->pol[i].has_reset_on_fork = (a.flags & FLAG_RESET_ON_FORK) != 0;
		b->pol[i].reset_on_fork = b->pol[i].has_reset_on_fork;
		io = io_of(s->thr[i].pid);
		b->pol[i].has_ioprio = io >= 0;
		b->pol[i].ioprio = io >= 0 ? (uint32_t)io : 0;
		b->ptrs[i] = &b->pol[i];
		any |= !plain(&a, io, own);
	}
	if (!ret && any) {
		ps->sched = b->ptrs;
		ps->n_sched = s->n;
	}
	return ret;
}

static int sched_validate(const Haul__Img__ProcessState *ps, char *why, size_t wl)
{
	if (ps->n_sched && ps->n_sched != ps->n_threads + 1) {
		snprintf(why, wl, "%zu scheduling policies for %zu threads", ps->n_sched,
			 ps->n_threads + 1);
		return -EBADMSG;
	}
	for (size_t i = 0; i < ps->n_sched; i++) {
		const Haul__Img__SchedPolicy *p = ps->sched[i];
		bool rt = p->policy == SCHED_FIFO || p->policy == SCHED_RR;

		if ((p->policy != SCHED_OTHER && !rt && p->policy != SCHED_BATCH &&
		     p->policy != SCHED_IDLE) ||
		    (rt ? p->priority < 1 || p->priority > 99 : p->priority != 0) ||
		    p->ioprio >= IOPRIO_LIMIT) {
			snprintf(why, wl,
				 "thread %zu: scheduling policy %u with priority %u, I/O priority "
				 "%#x, is not one haul restores",
				 i, p->policy, p->priority, p->ioprio);
			return -EBADMSG;
		}
	}
	return 0;
}

/* Thread @tid (index @i) of @t given policy @p, with its nice as restored. */
static int set_thread(struct rst_target *t, pid_t tid, size_t i, const Haul__Img__SchedPolicy *p,
		      char *why, size_t wl)
{
	struct haul_sched_attr a = {.size = sizeof(a)};
	int nice;

	errno = 0;
	nice = getpriority(PRIO_PROCESS, tid);
	a.nice = errno ? 0 : nice;
	a.policy = p ? p->policy : SCHED_OTHER;
	a.priority = p ? p->priority : 0;
	a.flags = p && p->reset_on_fork ? FLAG_RESET_ON_FORK : 0;
	if (syscall(SYS_sched_setattr, tid, &a, 0) == 0)
		return 0;
	snprintf(why, wl,
		 "cannot give thread %zu (tid %d) of restored pid %d %s priority %u%s: %s (does "
		 "haul have CAP_SYS_NICE here, and its cgroup real-time runtime?)",
		 i, (int)tid, (int)t->o.pid, policy_name(a.policy), a.priority,
		 a.flags ? " with SCHED_RESET_ON_FORK" : "", strerror(errno));
	return -errno;
}

/* Thread @tid (index @i) of @t at I/O priority @io, unless it is there already. */
static int set_io(struct rst_target *t, pid_t tid, size_t i, uint32_t io, char *why, size_t wl)
{
	if (io_of(tid) == (long)io || syscall(SYS_ioprio_set, WHO_PROCESS, tid, (int)io) == 0)
		return 0;
	snprintf(
		why, wl,
		"cannot give thread %zu (tid %d) of restored pid %d I/O priority class %u level %u: %s",
		i, (int)tid, (int)t->o.pid, io >> 13, io & 7, strerror(errno));
	return -errno;
}

static int sched_apply(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
		       size_t wl)
{
	int ret = 0;

	for (size_t i = 0; i <= t->nthr && !ret; i++) {
		pid_t tid = i ? t->thr[i - 1].pid : t->stub;
		struct haul_sched_attr now;

		if (ps->n_sched) {
			ret = set_thread(t, tid, i, i < ps->n_sched ? ps->sched[i] : NULL, why, wl);
			if (!ret && i < ps->n_sched && ps->sched[i]->has_ioprio)
				ret = set_io(t, tid, i, ps->sched[i]->ioprio, why, wl);
			continue;
		}
		/* none in the image: SCHED_OTHER, whatever the restorer runs */
		if (!get_attr(tid, &now) && !plain(&now, -1, -1))
			ret = set_thread(t, tid, i, NULL, why, wl);
	}
	return ret;
}

const struct rst_res_ops rst_res_sched = {
	.name = "sched",
	.cap = "RES_SCHED",
	.version = 1,
	.phase = RST_RES_LAST,
	.in_use = sched_in_use,
	.precheck = sched_precheck,
	.dump = sched_dump,
	.release = sched_release,
	.validate = sched_validate,
	.apply = sched_apply,
};
