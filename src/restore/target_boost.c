/*
 * target_boost.c - the resume of a restored process runs SCHED_FIFO: the
 * restorer's thread all along, the stub while it rebuilds memory hooks,
 * fds and mm.
 *
 * Why: a resume is a few hundred injected calls (Redis: 17 TCP sockets, 5
 * threads with their credentials and capabilities), each two ptrace stops
 * that hand the CPU back and forth between us and the stub.  On an idle
 * machine a call costs ~40 us; with the load at 2-4x the cores each hop
 * waits for a CPU, and the same calls took 150 ms instead of 20, all of it
 * in the downtime.  The tracker boosts its injection for the same reason
 * (tracker/uffd.c).  Without CAP_SYS_NICE, or when we run real-time
 * already, nothing is boosted and the resume runs as before.
 *
 * Why the stub only until its task state: a real-time task has no timer
 * slack (the kernel zeroes it, ignores PR_SET_TIMERSLACK, and on the way
 * back resets it to the default), and a thread cloned by it would inherit
 * 0 as its default.  So the stub goes back to its own attributes (those
 * from before the boost, inherited from us: what procattr.c's audit
 * expects a restored process to get; with the nice it has now) before
 * restore_task sets the image's slack and nice and before any thread is
 * cloned.  The restored process never runs boosted; a failed resume kills
 * the stub.
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/proc.h"
#include "restore/target_int.h"

/* Above the tracker's injection boost (10): the downtime's work goes first. */
#define RESUME_PRIO 11

static int get_attr(pid_t tid, struct haul_sched_attr *a)
{
	memset(a, 0, sizeof(*a));
	return syscall(SYS_sched_getattr, tid, a, sizeof(*a), 0) < 0 ? -errno : 0;
}

static int set_fifo(pid_t tid)
{
	struct haul_sched_attr a = {
		.size = sizeof(a), .policy = SCHED_FIFO, .priority = RESUME_PRIO};

	return syscall(SYS_sched_setattr, tid, &a, 0) < 0 ? -errno : 0;
}

void rst_boost_begin(struct rst_target *t)
{
	struct rst_boost *b = &t->boost;

	if (b->self || get_attr(0, &b->self_saved) || b->self_saved.policy == SCHED_FIFO ||
	    b->self_saved.policy == SCHED_RR)
		return;
	if (get_attr(t->stub, &b->stub_saved) || b->stub_saved.policy == SCHED_FIFO ||
	    b->stub_saved.policy == SCHED_RR)
		return;
	if (set_fifo(0))
		return; /* no CAP_SYS_NICE, or no real-time runtime here */
	b->self = true;
	b->stub = !set_fifo(t->stub);
	pr_debug("pid %d: the resume runs SCHED_FIFO %d (the stub %s)", (int)t->o.pid, RESUME_PRIO,
		 b->stub ? "too" : "not");
}

/* @tid back to the stub's attributes from before the boost, with its nice of now. */
static void unboost(struct rst_target *t, pid_t tid)
{
	struct haul_sched_attr a = t->boost.stub_saved;
	int nice;

	errno = 0;
	nice = getpriority(PRIO_PROCESS, tid);
	if (!errno)
		a.nice = nice;
	a.size = sizeof(a);
	if (syscall(SYS_sched_setattr, tid, &a, 0) < 0)
		pr_warn("cannot put thread %d of restored pid %d back to scheduling policy %u: %s",
			(int)tid, (int)t->o.pid, a.policy, strerror(errno));
}

void rst_boost_end_tracees(struct rst_target *t)
{
	if (!t->boost.stub)
		return;
	for (size_t i = 0; i < t->nthr; i++)
		unboost(t, t->thr[i].pid);
	unboost(t, t->stub);
	t->boost.stub = false;
}

void rst_boost_end(struct rst_target *t)
{
	struct haul_sched_attr *a = &t->boost.self_saved;

	rst_boost_end_tracees(t);
	if (!t->boost.self)
		return;
	a->size = sizeof(*a);
	if (syscall(SYS_sched_setattr, 0, a, 0) < 0)
		pr_warn("cannot put the restorer back to scheduling policy %u: %s", a->policy,
			strerror(errno));
	t->boost.self = false;
}
