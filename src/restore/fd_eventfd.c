/*
 * fd_eventfd.c - eventfd: its counter and semaphore mode, from fdinfo
 * ("eventfd-count" in hex, "eventfd-semaphore"), created again by an
 * injected eventfd2 with that count.  timerfd is created the same way
 * (rst_fd_anon_create), and dumped from a required fdinfo field alike
 * (rst_fd_anon_part).
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

int rst_fd_anon_part(const struct rst_fd_probe *p, const char *key,
		     const ProtobufCMessageDescriptor *desc, const char **val, void **out)
{
	void *m;

	if (!(*val = rst_status_field(p->fdinfo, key)))
		return -EIO;
	m = malloc(desc->sizeof_message);
	if (!m)
		return -ENOMEM;
	protobuf_c_message_init(desc, m);
	*out = m;
	return 0;
}

static int eventfd_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
			Haul__Img__FileObject *const *prev, size_t nprev)
{
	Haul__Img__EventfdFile *ev;
	const char *f;
	int ret;

	(void)prev;
	(void)nprev;
	ret = rst_fd_anon_part(p, "eventfd-count", &haul__img__eventfd_file__descriptor, &f,
			       (void **)&ev);
	if (ret)
		return ret;
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

int rst_fd_anon_create(struct rst_target *t, const Haul__Img__FileObject *f, long nr, uint64_t a0,
		       uint64_t a1, int *tmp, bool *shared)
{
	long res = -1;
	int ret;

	*shared = false;
	ret = rst_rcall(t, nr, a0, a1 | ((uint64_t)f->flags & O_NONBLOCK), 0, 0, 0, 0, &res);
	*tmp = (int)res;
	return ret;
}

static int eventfd_restore(struct rst_target *t, struct rst_fd_rctx *x,
			   const Haul__Img__FileObject *f, const Haul__Img__FdEntry *e,
			   const char *path, int *tmp, bool *shared)
{
	(void)x;
	(void)e;
	(void)path;
	return rst_fd_anon_create(t, f, SYS_eventfd2, f->eventfd->count,
				  f->eventfd->semaphore ? 1 : 0, tmp, shared);
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
