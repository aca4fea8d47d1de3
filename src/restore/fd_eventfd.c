/*
 * fd_eventfd.c - eventfd: its counter and semaphore mode, from fdinfo
 * ("eventfd-count" in hex, "eventfd-semaphore"), created again by an
 * injected eventfd2 with that count.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>

#include "restore/fd_int.h"
#include "restore/target_int.h"

static bool eventfd_match(const struct rst_fd_probe *p)
{
	return !strcmp(p->target, "anon_inode:[eventfd]");
}

static int eventfd_dump(const struct rst_fd_probe *p, Haul__Img__Fd *o, const Haul__Img__Fd *prev,
			size_t nprev)
{
	const char *f;

	(void)prev;
	(void)nprev;
	if ((f = rst_status_field(p->fdinfo, "eventfd-count"))) {
		o->has_efd_count = true;
		o->efd_count = strtoull(f, NULL, 16);
	}
	if ((f = rst_status_field(p->fdinfo, "eventfd-semaphore"))) {
		o->has_efd_semaphore = true;
		o->efd_semaphore = atoi(f) != 0;
	}
	return o->has_efd_count ? 0 : -EIO;
}

static int eventfd_restore(struct rst_target *t, struct rst_fd_rctx *x, const Haul__Img__Fd *f,
			   const char *path, int *tmp, bool *shared)
{
	int nb = (int)f->flags & O_NONBLOCK;
	long res = -1;
	int ret;

	(void)x;
	(void)path;
	*shared = false;
	ret = rst_rcall(t, SYS_eventfd2, f->efd_count, nb | (f->efd_semaphore ? 1 : 0), 0, 0, 0, 0,
			&res);
	*tmp = (int)res;
	return ret;
}

const struct rst_fd_ops rst_fd_eventfd = {
	.name = "eventfd",
	.kind = HAUL__IMG__FD_KIND__FD_EVENTFD,
	.version = 3,
	.match = eventfd_match,
	.dump = eventfd_dump,
	.restore = eventfd_restore,
};
