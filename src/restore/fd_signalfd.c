/*
 * fd_signalfd.c - signalfd: its mask (fdinfo "sigmask", hex), created
 * again by an injected signalfd4 with that mask.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>

#include "restore/fd_int.h"
#include "restore/target_int.h"

static bool signalfd_match(const struct rst_fd_probe *p)
{
	return !strcmp(p->target, "anon_inode:[signalfd]");
}

static int signalfd_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
			 Haul__Img__FileObject *const *prev, size_t nprev)
{
	const char *f;

	(void)prev;
	(void)nprev;
	if (!(f = rst_status_field(p->fdinfo, "sigmask")))
		return -EIO;
	o->signalfd = malloc(sizeof(*o->signalfd));
	if (!o->signalfd)
		return -ENOMEM;
	haul__img__signalfd_file__init(o->signalfd);
	o->signalfd->sigmask = strtoull(f, NULL, 16);
	return 0;
}

static int signalfd_validate(const Haul__Img__FileObject *f, char *why, size_t wl)
{
	if (f->signalfd)
		return 0;
	snprintf(why, wl, "file %u is a signalfd without its signalfd part", f->id);
	return -EBADMSG;
}

static int signalfd_restore(struct rst_target *t, struct rst_fd_rctx *x,
			    const Haul__Img__FileObject *f, const Haul__Img__FdEntry *e,
			    const char *path, int *tmp, bool *shared)
{
	int nb = (int)f->flags & O_NONBLOCK;
	uint64_t mask = f->signalfd->sigmask;
	long res = -1;
	int ret;

	(void)x;
	(void)e;
	(void)path;
	*shared = false;
	ret = rst_poke(t, rst_scratch(t), &mask, sizeof(mask));
	if (!ret)
		ret = rst_rcall(t, SYS_signalfd4, (uint64_t)-1, rst_scratch(t), 8, nb, 0, 0, &res);
	*tmp = (int)res;
	return ret;
}

const struct rst_fd_ops rst_fd_signalfd = {
	.name = "signalfd",
	.kind = HAUL__IMG__FD_KIND__FD_SIGNALFD,
	.version = 4,
	.match = signalfd_match,
	.dump = signalfd_dump,
	.validate = signalfd_validate,
	.restore = signalfd_restore,
};
