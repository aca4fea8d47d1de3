/*
 * res_timers.c - POSIX timers (timer_create), a per-process resource
 * (res_int.h).
 *
 * Dump: /proc/PID/timers lists each timer's id, signal and sigev_value,
 * notification (signal to the process, to one thread, or none) and
 * clock; an injected timer_gettime reads the time left and the interval,
 * timer_getoverrun the overrun (recorded, not restored: the kernel has no
 * call that sets it).
 *
 * Restore, among the last injected calls: with prctl
 * PR_TIMER_CREATE_RESTORE_IDS on, timer_create takes the id the caller
 * stores at its third argument (-EBUSY if taken), so each timer gets its
 * id back whatever order they were made in; the id read back is checked.
 * An armed timer is re-armed with the time it had left, relative: the
 * kernel does not tell whether it was armed TIMER_ABSTIME, so a
 * CLOCK_REALTIME timer fires at its old wall-clock time unless the clock
 * is set meanwhile.  Timers go before seccomp (res_kinds.c), whose filter
 * could refuse timer_create.
 */
#define LOG_PREFIX "timers: "
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>

#include "common/log.h"
#include "common/rsys.h"
#include "restore/fd_int.h"
#include "restore/res_int.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

/* Linux 6.16 include/uapi/linux/prctl.h */
#define RST_PR_TIMER_CREATE_RESTORE_IDS	    77
#define RST_PR_TIMER_CREATE_RESTORE_IDS_OFF 0
#define RST_PR_TIMER_CREATE_RESTORE_IDS_ON  1
#define RST_PR_TIMER_CREATE_RESTORE_IDS_GET 2

#define RST_SIGEV_THREAD_ID 4  /* SIGEV_SIGNAL | SIGEV_THREAD_ID */
#define RST_CLOCK_MAX	    11 /* CLOCK_TAI */

/* One entry of /proc/PID/timers. */
struct ptimer {
	int id, signo, notify, clock;
	unsigned long long sigval;
	pid_t tid; /* notified task as /proc names it */
};

/*
 * Parse /proc/PID/timers @text into *@out (*@n entries; free it).  Each
 * timer is four lines: "ID: n", "signal: signo/sigval-hex", "notify:
 * signal|none/pid|tid.N", "ClockID: n".  -EBADMSG on a line that does not
 * parse.
 */
static int parse_timers(const char *text, struct ptimer **out, size_t *n)
{
	struct ptimer *v = NULL, *nv;
	size_t cnt = 0;
	const char *p = text;

	while (p && *p) {
		struct ptimer t = {0};
		char what[16], who[8];
		int used = 0;

		if (sscanf(p, "ID: %d\nsignal: %d/%llx\nnotify: %15[a-z]/%7[a-z].%d\nClockID: %d%n",
			   &t.id, &t.signo, &t.sigval, what, who, &t.tid, &t.clock, &used) != 7) {
			free(v);
			return -EBADMSG;
		}
		if (!strcmp(what, "none"))
			t.notify = SIGEV_NONE;
		else if (!strcmp(what, "signal"))
			t.notify = SIGEV_SIGNAL;
		else
			t.notify = -1; /* refused by name in check_timer */
		if (!strcmp(who, "tid"))
			t.notify |= RST_SIGEV_THREAD_ID;
		nv = realloc(v, (cnt + 1) * sizeof(*nv));
		if (!nv) {
			free(v);
			return -ENOMEM;
		}
		v = nv;
		v[cnt++] = t;
		p += used;
		p += strspn(p, "\n");
	}
	*out = v;
	*n = cnt;
	return 0;
}

/* Whether this kernel can give timers their ids back. */
static bool restore_ids_available(void)
{
	return prctl(RST_PR_TIMER_CREATE_RESTORE_IDS, RST_PR_TIMER_CREATE_RESTORE_IDS_GET, 0, 0,
		     0) >= 0;
}

static int check_timer(pid_t pid, const struct ptimer *t, char *why, size_t wl)
{
	if (t->notify < 0) {
		snprintf(why, wl, "POSIX timer %d of pid %d has a notification haul does not know",
			 t->id, (int)pid);
		return -EOPNOTSUPP;
	}
	if (t->clock < 0 || t->clock > RST_CLOCK_MAX) {
		snprintf(why, wl,
			 "POSIX timer %d of pid %d counts the CPU time of a given process or "
			 "thread (clock %d), which haul does not carry: use "
			 "CLOCK_PROCESS_CPUTIME_ID or a wall clock",
			 t->id, (int)pid, t->clock);
		return -EOPNOTSUPP;
	}
	return 0;
}

static int read_timers(pid_t pid, struct ptimer **v, size_t *n, char *why, size_t wl)
{
	char *text = NULL;
	int ret = rst_read_proc(pid, "timers", &text, NULL);

	if (ret) {
		snprintf(why, wl, "cannot read the POSIX timers of pid %d: %s", (int)pid,
			 strerror(-ret));
		return ret;
	}
	ret = parse_timers(text, v, n);
	free(text);
	if (ret)
		snprintf(why, wl, "cannot parse /proc/%d/timers (a kernel haul does not know?)",
			 (int)pid);
	return ret;
}

static int timers_precheck(pid_t pid, pid_t tracer, char *why, size_t wl)
{
	struct ptimer *v = NULL;
	size_t n = 0;
	int ret;

	(void)tracer;
	ret = read_timers(pid, &v, &n, why, wl);
	for (size_t i = 0; !ret && i < n; i++)
		ret = check_timer(pid, &v[i], why, wl);
	if (!ret && n && !restore_ids_available()) {
		snprintf(why, wl,
			 "pid %d has %zu POSIX timers, and this kernel cannot create a timer with "
			 "a given id (prctl PR_TIMER_CREATE_RESTORE_IDS, Linux 6.16)",
			 (int)pid, n);
		ret = -EOPNOTSUPP;
	}
	free(v);
	return ret;
}

static uint64_t ts_ns(const struct timespec *ts)
{
	return (uint64_t)ts->tv_sec * 1000000000ULL + (uint64_t)ts->tv_nsec;
}

/* The thread index (0 main, i: threads[i-1]) of task @tid of @s, or -1. */
static int thread_index(const struct rst_seized *s, pid_t tid)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->thr[i].pid == tid)
			return (int)i;
	return -1;
}

/* Timer @t of stopped @s into @o: its time left, interval and overrun by injected calls. */
static int dump_timer(struct rst_seized *s, uint64_t scratch, const struct ptimer *t,
		      Haul__Img__PosixTimer *o, char *why, size_t wl)
{
	uint64_t args[6] = {(uint64_t)t->id, scratch};
	struct itimerspec its;
	long res;
	int ret;

	haul__img__posix_timer__init(o);
	o->id = t->id;
	o->clockid = t->clock;
	o->notify = t->notify;
	o->signo = t->signo;
	o->sigval = t->sigval;
	if (t->notify & RST_SIGEV_THREAD_ID) {
		o->has_thread = true;
		o->thread = thread_index(s, t->tid);
		if (o->thread < 0) {
			snprintf(why, wl,
				 "POSIX timer %d of pid %d signals task %d, not one of its "
				 "threads",
				 t->id, (int)s->pid, (int)t->tid);
			return -EOPNOTSUPP;
		}
	}
	ret = rsys_call(&s->thr[0], SYS_timer_gettime, args, &res);
	if (!ret && res < 0)
		ret = (int)res;
	if (!ret)
		ret = rsys_read(s->pid, scratch, &its, sizeof(its));
	if (!ret)
		ret = rsys_call(&s->thr[0], SYS_timer_getoverrun, args, &res);
	if (ret) {
		snprintf(why, wl, "cannot read POSIX timer %d of pid %d: %s", t->id, (int)s->pid,
			 strerror(-ret));
		return ret;
	}
	o->value_ns = ts_ns(&its.it_value);
	o->interval_ns = ts_ns(&its.it_interval);
	o->has_overrun = res >= 0;
	o->overrun = (int32_t)res;
	return 0;
}

/* What the dump allocated: the timers and the pointer array. */
struct timers_buf {
	Haul__Img__PosixTimer *t;
	Haul__Img__PosixTimer **ptr;
};

static void timers_release(void *priv)
{
	struct timers_buf *b = priv;

	if (!b)
		return;
	free(b->t);
	free(b->ptr);
	free(b);
}

static int timers_dump(struct rst_seized *s, uint64_t scratch, Haul__Img__ProcessState *ps,
		       void **priv, char *why, size_t wl)
{
	struct timers_buf *b;
	struct ptimer *v = NULL;
	size_t n = 0;
	int ret;

	ret = read_timers(s->pid, &v, &n, why, wl);
	if (ret || !n) {
		free(v);
		return ret;
	}
	b = calloc(1, sizeof(*b));
	if (b) {
		*priv = b;
		b->t = calloc(n, sizeof(*b->t));
		b->ptr = calloc(n, sizeof(*b->ptr));
	}
	if (!b || !b->t || !b->ptr) {
		free(v);
		return -ENOMEM;
	}
	for (size_t i = 0; !ret && i < n; i++) {
		ret = check_timer(s->pid, &v[i], why, wl);
		if (!ret)
			ret = dump_timer(s, scratch, &v[i], &b->t[i], why, wl);
		b->ptr[i] = &b->t[i];
	}
	free(v);
	if (ret)
		return ret;
	ps->posix_timers = b->ptr;
	ps->n_posix_timers = n;
	return 0;
}

static int timers_validate(const Haul__Img__ProcessState *ps, char *why, size_t wl)
{
	for (size_t i = 0; i < ps->n_posix_timers; i++) {
		const Haul__Img__PosixTimer *t = ps->posix_timers[i];
		int base = t->notify & ~RST_SIGEV_THREAD_ID;
		bool tid = t->notify & RST_SIGEV_THREAD_ID;

		if (t->id < 0 || t->clockid < 0 || t->clockid > RST_CLOCK_MAX ||
		    (base != SIGEV_SIGNAL && base != SIGEV_NONE) ||
		    (tid &&
		     (!t->has_thread || t->thread < 0 || (size_t)t->thread > ps->n_threads)) ||
		    (base == SIGEV_SIGNAL && (t->signo < 1 || t->signo > 64)) ||
		    t->value_ns / 1000000000ULL > INT64_MAX / 2 ||
		    t->interval_ns / 1000000000ULL > INT64_MAX / 2) {
			snprintf(why, wl, "POSIX timer %zu (id %d) is malformed", i, t->id);
			return -EBADMSG;
		}
		for (size_t k = 0; k < i; k++)
			if (ps->posix_timers[k]->id == t->id) {
				snprintf(why, wl, "POSIX timer id %d appears twice", t->id);
				return -EBADMSG;
			}
	}
	return 0;
}

static void ns_ts(uint64_t ns, struct timespec *ts)
{
	ts->tv_sec = (time_t)(ns / 1000000000ULL);
	ts->tv_nsec = (long)(ns % 1000000000ULL);
}

/* The sigevent of @o for the kernel (struct sigevent, 64 bytes). */
static void make_sigevent(const Haul__Img__ProcessState *ps, const Haul__Img__PosixTimer *o,
			  struct sigevent *sev)
{
	memset(sev, 0, sizeof(*sev));
	sev->sigev_value.sival_ptr = (void *)(uintptr_t)o->sigval;
	sev->sigev_signo = o->signo;
	sev->sigev_notify = o->notify;
	/* the thread by the TID the process knows: threads keep theirs (clone3 set_tid) */
	if (o->notify & RST_SIGEV_THREAD_ID)
		sev->_sigev_un._tid = o->thread ? ps->threads[o->thread - 1]->tid : ps->pid;
}

/* Timer @o in the stub, at its id, armed as it was. */
static int restore_timer(struct rst_target *t, const Haul__Img__ProcessState *ps,
			 const Haul__Img__PosixTimer *o, char *why, size_t wl)
{
	uint64_t sc = rst_scratch(t);
	struct itimerspec its;
	struct sigevent sev;
	int32_t id = o->id;
	int ret;

	make_sigevent(ps, o, &sev);
	ret = rst_poke(t, sc, &sev, sizeof(sev));
	if (!ret)
		ret = rst_poke(t, sc + 128, &id, sizeof(id));
	if (!ret)
		ret = rst_rcall(t, SYS_timer_create, o->clockid, sc, sc + 128, 0, 0, 0, NULL);
	if (!ret)
		ret = rst_peek(t, sc + 128, &id, sizeof(id));
	if (ret) {
		snprintf(why, wl, "cannot create POSIX timer %d (clock %d) in pid %d: %s%s", o->id,
			 o->clockid, ps->pid, strerror(-ret),
			 ret == -EBUSY ? " (its id is taken)" : "");
		return ret;
	}
	if (id != o->id) {
		snprintf(why, wl, "POSIX timer %d of pid %d came back as timer %d", o->id, ps->pid,
			 id);
		return -EEXIST;
	}
	if (!o->value_ns)
		return 0;
	ns_ts(o->value_ns, &its.it_value);
	ns_ts(o->interval_ns, &its.it_interval);
	ret = rst_poke(t, sc + 192, &its, sizeof(its));
	if (!ret)
		ret = rst_rcall(t, SYS_timer_settime, id, 0, sc + 192, 0, 0, 0, NULL);
	if (ret)
		snprintf(why, wl, "cannot arm POSIX timer %d of pid %d: %s", o->id, ps->pid,
			 strerror(-ret));
	return ret;
}

static int timers_restore(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
			  size_t wl)
{
	int ret;

	if (!ps->n_posix_timers)
		return 0;
	ret = rst_rcall(t, SYS_prctl, RST_PR_TIMER_CREATE_RESTORE_IDS,
			RST_PR_TIMER_CREATE_RESTORE_IDS_ON, 0, 0, 0, 0, NULL);
	if (ret) {
		snprintf(why, wl,
			 "cannot restore the POSIX timers of pid %d with their ids: prctl "
			 "PR_TIMER_CREATE_RESTORE_IDS: %s (Linux 6.16)",
			 ps->pid, strerror(-ret));
		return ret;
	}
	for (size_t i = 0; i < ps->n_posix_timers && !ret; i++)
		ret = restore_timer(t, ps, ps->posix_timers[i], why, wl);
	if (!ret) {
		ret = rst_rcall(t, SYS_prctl, RST_PR_TIMER_CREATE_RESTORE_IDS,
				RST_PR_TIMER_CREATE_RESTORE_IDS_OFF, 0, 0, 0, 0, NULL);
		if (ret)
			snprintf(why, wl, "cannot end the timer id restore of pid %d: %s", ps->pid,
				 strerror(-ret));
	}
	return ret;
}

static bool timers_in_use(pid_t pid)
{
	char *text = NULL;
	bool any = !rst_read_proc(pid, "timers", &text, NULL) && text[0];

	free(text);
	return any;
}

const struct rst_res_ops rst_res_timers = {
	.name = "POSIX timers",
	.cap = "RES_POSIX_TIMERS",
	.version = 4,
	.in_use = timers_in_use,
	.phase = RST_RES_LAST,
	.precheck = timers_precheck,
	.dump = timers_dump,
	.release = timers_release,
	.validate = timers_validate,
	.restore = timers_restore,
};
