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
 * (ProcessState.sched, one per thread) when any is not plain SCHED_OTHER,
 * not at the default I/O priority (class NONE, whatever level an older
 * kernel reports with it) or not at the main thread's nice (threads
 * started by a real-time thread with SCHED_RESET_ON_FORK are at 0; a
 * program may renice one thread).  Restore: from outside, once the registers are
 * loaded and the cgroups placed (a real-time policy is admitted by the
 * cgroup the thread is in), setpriority and sched_setattr of each thread
 * with its own nice, and ioprio_set where the
 * thread's differs.  Where the cgroup moves wait for the commit (one host,
 * the source's cgroup frozen: cgplace.c), a real-time policy waits with
 * them (rst_sched_place_later).  Absent, a thread that inherited another
 * policy or I/O priority from the restorer is put back to the defaults.
 * Nothing runs boosted before: the resume's own boost (target_boost.c) is
 * over by then.
 *
 * Refused at the precheck, by thread: SCHED_DEADLINE (its runtime is
 * admitted per root domain; not supported yet).  Utilization clamps and
 * the other attributes stay procattr.c's audit.  A target that refuses
 * the policy (no CAP_SYS_NICE, a cgroup without real-time runtime) fails
 * the restore naming the thread and policy; a migration rolls back.
 */
#define LOG_PREFIX "restore: "
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

/*
 * Thread @tid's I/O priority (0: ours), or -1; class NONE (the default,
 * whatever level an older kernel reports with it, which ioprio_set would
 * refuse) as 0.
 */
static long io_of(pid_t tid)
{
	long io = syscall(SYS_ioprio_get, WHO_PROCESS, tid);

	return io >= 0 && !(io >> 13) ? 0 : io;
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

/* SCHED_OTHER without RESET_ON_FORK, at the default I/O priority (@io 0; -1: unknown). */
static bool plain(const struct haul_sched_attr *a, long io)
{
	return a->policy == SCHED_OTHER && !(a->flags & FLAG_RESET_ON_FORK) && io <= 0;
}

/* Thread @tid's nice (getpriority: a real-time thread has one too); @dflt when unreadable. */
static int nice_of(pid_t tid, int dflt)
{
	int n;

	errno = 0;
	n = getpriority(PRIO_PROCESS, tid);
	return errno ? dflt : n;
}

/* The policies the restore gives again (not SCHED_DEADLINE). */
static bool carried_policy(uint32_t p)
{
	return p == SCHED_OTHER || p == SCHED_FIFO || p == SCHED_RR || p == SCHED_BATCH ||
	       p == SCHED_IDLE;
}

/* Whether @a is a policy the restore can give again: 0, or -EOPNOTSUPP with @why. */
static int refuse_policy(pid_t pid, pid_t tid, const struct haul_sched_attr *a, char *why,
			 size_t wl)
{
	if (carried_policy(a->policy))
		return 0;
	snprintf(why, wl,
		 "pid %d thread %d runs %s (a restored process gets SCHED_OTHER); haul cannot "
		 "carry it (not supported yet): reset it in the process, or leave the process "
		 "where it is",
		 (int)pid, (int)tid, policy_name(a->policy));
	return -EOPNOTSUPP;
}

/* Each thread of @pid through refuse_policy; *@any: one is not plain or not at @pid's nice. */
static int each_thread(pid_t pid, bool *any, char *why, size_t wl)
{
	struct haul_sched_attr a;
	int ret, nice = nice_of(pid, 0);
	pid_t *tids = NULL;
	size_t n = 0;

	*any = false;
	ret = haul_proc_tids(pid, &tids, &n);
	for (size_t i = 0; !ret && i < n; i++) {
		ret = get_attr(tids[i], &a);
		if (ret == -ESRCH) {
			ret = 0;
			continue; /* the thread exited */
		}
		if (!ret)
			ret = refuse_policy(pid, tids[i], &a, why, wl);
		*any |= !ret && (!plain(&a, io_of(tids[i])) || nice_of(tids[i], 0) != nice);
	}
	free(tids);
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
	long io;
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
		if ((ret = get_attr(s->thr[i].pid, &a)))
			snprintf(why, wl,
				 "cannot read the scheduling policy of pid %d thread %d: %s",
				 (int)s->pid, (int)s->thr[i].pid, strerror(-ret));
		else
			ret = refuse_policy(s->pid, s->thr[i].pid, &a, why, wl);
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
		b->pol[i].has_nice = true;
		b->pol[i].nice = nice_of(s->thr[i].pid, 0);
		any |= !plain(&a, io) || b->pol[i].nice != b->pol[0].nice;
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

		if (!carried_policy(p->policy) ||
		    (rt ? p->priority < 1 || p->priority > 99 : p->priority != 0) ||
		    p->ioprio >= IOPRIO_LIMIT || p->nice < -20 || p->nice > 19) {
			snprintf(why, wl,
				 "thread %zu: scheduling policy %u with priority %u, I/O priority "
				 "%#x, nice %d, is not one haul restores",
				 i, p->policy, p->priority, p->ioprio, p->nice);
			return -EBADMSG;
		}
	}
	return 0;
}

/* @p's policy as sched_setattr takes it, with thread @tid's nice as restored; NULL: plain. */
static struct haul_sched_attr attr_of(pid_t tid, uint32_t policy, uint32_t priority, bool reset)
{
	struct haul_sched_attr a = {.size = sizeof(a)};

	a.nice = nice_of(tid, 0);
	a.policy = policy;
	a.priority = priority;
	a.flags = reset ? FLAG_RESET_ON_FORK : 0;
	return a;
}

/* Thread @tid (index @i) of @t given policy @p (NULL: SCHED_OTHER). */
static int set_thread(struct rst_target *t, pid_t tid, size_t i, const Haul__Img__SchedPolicy *p,
		      char *why, size_t wl)
{
	struct haul_sched_attr a;

	/* its own nice first: sched_setattr of a fair policy takes the one it reads now */
	if (p && p->has_nice && setpriority(PRIO_PROCESS, tid, p->nice) < 0) {
		snprintf(why, wl, "cannot give thread %zu (tid %d) of restored pid %d nice %d: %s",
			 i, (int)tid, (int)t->o.pid, p->nice, strerror(errno));
		return -errno;
	}
	a = attr_of(tid, p ? p->policy : SCHED_OTHER, p ? p->priority : 0, p && p->reset_on_fork);
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
	snprintf(why, wl,
		 "cannot give thread %zu (tid %d) of restored pid %d I/O priority class %u level "
		 "%u: %s",
		 i, (int)tid, (int)t->o.pid, io >> 13, io & 7, strerror(errno));
	return -errno;
}

/*
 * A real-time policy for a thread whose cgroups are joined only at the
 * commit (the source's own, frozen, on one host): set then, once it is in
 * the cgroup that admits it (rst_sched_place_later).
 */
static int set_later(struct rst_target *t, pid_t tid, const Haul__Img__SchedPolicy *p)
{
	struct rst_sched_later *n =
		realloc(t->sched_later, (t->nsched_later + 1) * sizeof(*t->sched_later));

	if (!n)
		return -ENOMEM;
	t->sched_later = n;
	n[t->nsched_later++] =
		(struct rst_sched_later){tid, p->policy, p->priority, p->reset_on_fork};
	return 0;
}

static int sched_apply(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
		       size_t wl)
{
	int ret = 0;

	for (size_t i = 0; i <= t->nthr && !ret; i++) {
		pid_t tid = i ? t->thr[i - 1].pid : t->stub;
		const Haul__Img__SchedPolicy *p = i < ps->n_sched ? ps->sched[i] : NULL;
		struct haul_sched_attr now;

		if (p && t->cg_later.n && (p->policy == SCHED_FIFO || p->policy == SCHED_RR))
			ret = set_later(t, tid, p);
		else if (p || (!get_attr(tid, &now) && !plain(&now, 0)))
			ret = set_thread(t, tid, i, p, why, wl); /* none: SCHED_OTHER */
		if (!ret && (p ? p->has_ioprio : io_of(tid) > 0))
			ret = set_io(t, tid, i, p ? p->ioprio : 0, why, wl);
	}
	return ret;
}

void rst_sched_place_later(struct rst_target *t)
{
	for (size_t i = 0; i < t->nsched_later; i++) {
		const struct rst_sched_later *e = &t->sched_later[i];
		struct haul_sched_attr a =
			attr_of(e->tid, e->policy, e->priority, e->reset_on_fork);

		if (syscall(SYS_sched_setattr, e->tid, &a, 0) < 0)
			pr_warn("thread %d of pid %d stays SCHED_OTHER: cannot give it %s priority %u "
				"in the cgroup it joined at the commit: %s",
				(int)e->tid, (int)t->o.pid, policy_name(e->policy), e->priority,
				strerror(errno));
	}
	free(t->sched_later);
	t->sched_later = NULL;
	t->nsched_later = 0;
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
