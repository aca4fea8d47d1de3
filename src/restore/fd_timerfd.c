/*
 * fd_timerfd.c - timerfd: clock, time left, interval and unread ticks
 * from fdinfo; created again by injected timerfd_create, timerfd_settime
 * (relative: what was left) and TFD_IOC_SET_TICKS.  A timer armed with
 * TFD_TIMER_CANCEL_ON_SET is refused: a clock jump would cancel it, and
 * nothing tells the restore whether one happened.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>

#include "restore/fd_int.h"
#include "restore/target_int.h"

static bool timerfd_match(const struct rst_fd_probe *p)
{
	return !strcmp(p->target, "anon_inode:[timerfd]");
}

static int timerfd_precheck(const struct rst_fd_probe *p, char *why, size_t whylen)
{
	const char *f;

	/* TFD_TIMER_CANCEL_ON_SET: a clock jump would cancel it; not carried. */
	if ((f = rst_status_field(p->fdinfo, "settime flags")) && (strtoul(f, NULL, 8) & 2)) {
		snprintf(why, whylen,
			 "timerfd fd %d was armed with TFD_TIMER_CANCEL_ON_SET, which haul "
			 "does not carry",
			 p->fd);
		return -EOPNOTSUPP;
	}
	return 0;
}

static int timerfd_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
			Haul__Img__FileObject *const *prev, size_t nprev)
{
	Haul__Img__TimerfdFile *tf;
	unsigned long long a, b;
	const char *f;
	int ret;

	(void)prev;
	(void)nprev;
	ret = rst_fd_anon_part(p, "clockid", &haul__img__timerfd_file__descriptor, &f,
			       (void **)&tf);
	if (ret)
		return ret;
	o->timerfd = tf;
	tf->clockid = atoi(f);
	if ((f = rst_status_field(p->fdinfo, "ticks"))) {
		tf->has_ticks = true;
		tf->ticks = strtoull(f, NULL, 10);
	}
	if ((f = rst_status_field(p->fdinfo, "it_value")) &&
	    sscanf(f, " (%llu, %llu)", &a, &b) == 2) {
		tf->has_it_value_ns = true;
		tf->it_value_ns = a * 1000000000ULL + b;
	}
	if ((f = rst_status_field(p->fdinfo, "it_interval")) &&
	    sscanf(f, " (%llu, %llu)", &a, &b) == 2) {
		tf->has_it_interval_ns = true;
		tf->it_interval_ns = a * 1000000000ULL + b;
	}
	return 0;
}

/* Its clock must be one timerfd_create takes (CLOCK_REALTIME .. CLOCK_BOOTTIME_ALARM). */
static int timerfd_validate(const Haul__Img__FileObject *f, char *why, size_t wl)
{
	if (!f->timerfd) {
		snprintf(why, wl, "file %u is a timerfd without its timerfd part", f->id);
		return -EBADMSG;
	}
	if (f->timerfd->clockid < 0 || f->timerfd->clockid > 11) {
		snprintf(why, wl, "file %u (timerfd).clockid: %d", f->id, f->timerfd->clockid);
		return -EBADMSG;
	}
	return 0;
}

static int timerfd_restore(struct rst_target *t, struct rst_fd_rctx *x,
			   const Haul__Img__FileObject *f, const Haul__Img__FdEntry *e,
			   const char *path, int *tmp, bool *shared)
{
	const Haul__Img__TimerfdFile *tf = f->timerfd;
	long res;
	int ret;

	(void)x;
	(void)e;
	(void)path;
	ret = rst_fd_anon_create(t, f, SYS_timerfd_create, (uint64_t)tf->clockid, 0, tmp, shared);
	res = *tmp;
	/*
	 * What was left of it, relative.  A periodic timer that expired
	 * with its ticks unread shows 0 left (it is re-armed by the read):
	 * it goes on one period from now, its ticks restored below.
	 */
	if (!ret && (tf->it_value_ns || tf->it_interval_ns)) {
		uint64_t left = tf->it_value_ns ? tf->it_value_ns : tf->it_interval_ns;
		uint64_t its[4] = {tf->it_interval_ns / 1000000000ULL,
				   tf->it_interval_ns % 1000000000ULL, left / 1000000000ULL,
				   left % 1000000000ULL};

		ret = rst_poke(t, rst_scratch(t), its, sizeof(its));
		if (!ret)
			ret = rst_rcall(t, SYS_timerfd_settime, res, 0, rst_scratch(t), 0, 0, 0,
					NULL);
	}
	if (!ret && tf->ticks) {
		ret = rst_poke(t, rst_scratch(t), &tf->ticks, sizeof(tf->ticks));
		/* TFD_IOC_SET_TICKS: expirations that were not read yet. */
		if (!ret)
			ret = rst_rcall(t, SYS_ioctl, res, 0x40085400, rst_scratch(t), 0, 0, 0,
					NULL);
	}
	return ret;
}

const struct rst_fd_ops rst_fd_timerfd = {
	.name = "timerfd",
	.kind = HAUL__IMG__FD_KIND__FD_TIMERFD,
	.version = 4,
	.match = timerfd_match,
	.precheck = timerfd_precheck,
	.dump = timerfd_dump,
	.validate = timerfd_validate,
	.restore = timerfd_restore,
};
