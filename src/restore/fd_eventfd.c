/*
 * fd_eventfd.c - eventfd: its counter and semaphore mode, from fdinfo
 * ("eventfd-count" in hex, "eventfd-semaphore"), created again by an
 * injected eventfd2 with that count.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>

#include "restore/fd_int.h"
#include "restore/target_int.h"

static bool eventfd_match(const struct rst_fd_probe *p)
{
	return !strcmp(p->target, "anon_inode:[eventfd]");
}

static int eventfd_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
			Haul__Img__FileObject *const *prev, size_t nprev)
{
	Haul__Img__EventfdFile *ev;
	const char *f;

	(void)prev;
	(void)nprev;
	if (!(f = rst_status_field(p->fdinfo, "eventfd-count")))
		return -EIO;
	ev = malloc(sizeof(*ev));
	if (!ev)
		return -ENOMEM;
	haul__img__eventfd_file__init(ev);
	ev->count = strtoull(f, NULL, 16);
	if ((f = rst_status_field(p->fdinfo, "eventfd-semaphore"))) {
		ev->has_semaphore = true;
		ev->semaphore = atoi(f) != 0;
	}
	o->eventfd = ev;
	return 0;
}

static int eventfd_validate(const Haul__Img__FileObject *f, char *why, size_t wl)
{
	if (f->eventfd)
		return 0;
	snprintf(why, wl, "file %u is an eventfd without its eventfd part", f->id);
	return -EBADMSG;
}

static int eventfd_restore(struct rst_target *t, struct rst_fd_rctx *x,
			   const Haul__Img__FileObject *f, const Haul__Img__FdEntry *e,
			   const char *path, int *tmp, bool *shared)
{
	int nb = (int)f->flags & O_NONBLOCK;
	long res = -1;
	int ret;

	(void)x;
	(void)e;
	(void)path;
	*shared = false;
	ret = rst_rcall(t, SYS_eventfd2, f->eventfd->count, nb | (f->eventfd->semaphore ? 1 : 0), 0,
			0, 0, 0, &res);
	*tmp = (int)res;
	return ret;
}

const struct rst_fd_ops rst_fd_eventfd = {
	.name = "eventfd",
	.kind = HAUL__IMG__FD_KIND__FD_EVENTFD,
	.version = 4,
	.match = eventfd_match,
	.dump = eventfd_dump,
	.validate = eventfd_validate,
	.restore = eventfd_restore,
};
