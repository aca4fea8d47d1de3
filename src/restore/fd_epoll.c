/*
 * fd_epoll.c - epoll instances: the watched fds ("tfd:" lines of fdinfo,
 * with events and data), re-added by injected epoll_ctl once every fd
 * exists.  The precheck refuses an instance watching an fd that was
 * closed or replaced since it was added (fdinfo names the inode it had):
 * re-adding by number would watch another file.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "common/validate.h"
#include "restore/fd_int.h"
#include "restore/target_int.h"

static bool epoll_match(const struct rst_fd_probe *p)
{
	return !strcmp(p->target, "anon_inode:[eventpoll]");
}

/* Every fd an epoll instance watches must be the file it was when added. */
static int epoll_precheck(const struct rst_fd_probe *p, char *why, size_t whylen)
{
	for (const char *l = p->fdinfo; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		unsigned long long ino;
		char link[64];
		struct stat st;
		const char *i;
		int tfd;

		if (strncmp(l, "tfd:", 4))
			continue;
		tfd = atoi(l + 4);
		i = strstr(l, "ino:");
		ino = i ? strtoull(i + 4, NULL, 16) : 0;
		snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)p->pid, tfd);
		if (stat(link, &st) < 0 || st.st_ino != ino) {
			snprintf(why, whylen,
				 "epoll fd %d watches fd %d, which was closed or replaced since",
				 p->fd, tfd);
			return -EOPNOTSUPP;
		}
	}
	return 0;
}

static int epoll_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
		      Haul__Img__FileObject *const *prev, size_t nprev)
{
	const char *text = p->fdinfo;
	Haul__Img__EpollFile *ep;
	size_t n = 0;

	(void)prev;
	(void)nprev;
	ep = malloc(sizeof(*ep));
	if (!ep)
		return -ENOMEM;
	haul__img__epoll_file__init(ep);
	o->epoll = ep;
	for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
		n += !strncmp(l, "tfd:", 4);
	if (!n)
		return 0;
	ep->targets = calloc(n, sizeof(*ep->targets));
	if (!ep->targets)
		return -ENOMEM;
	for (const char *l = text; l && *l && ep->n_targets < n;
	     l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		Haul__Img__EpollTarget *tg;
		int tfd;
		unsigned int events;
		unsigned long long data;

		if (strncmp(l, "tfd:", 4) ||
		    sscanf(l, "tfd: %d events: %x data: %llx", &tfd, &events, &data) != 3)
			continue;
		/* each its own allocation: the FileObject is freed with free_unpacked */
		tg = malloc(sizeof(*tg));
		if (!tg)
			return -ENOMEM;
		haul__img__epoll_target__init(tg);
		tg->tfd = tfd;
		tg->events = events;
		tg->data = data;
		ep->targets[ep->n_targets++] = tg;
	}
	return 0;
}

/* Its targets are fd numbers of the process. */
static int epoll_validate(const Haul__Img__FileObject *f, char *why, size_t wl)
{
	if (!f->epoll) {
		snprintf(why, wl, "file %u is an epoll instance without its epoll part", f->id);
		return -EBADMSG;
	}
	if (f->epoll->n_targets > VAL_MAX_EPOLL) {
		snprintf(why, wl, "file %u (epoll).targets: %zu, more than %d", f->id,
			 f->epoll->n_targets, VAL_MAX_EPOLL);
		return -EBADMSG;
	}
	for (size_t k = 0; k < f->epoll->n_targets; k++)
		if (f->epoll->targets[k]->tfd < 0 ||
		    (uint32_t)f->epoll->targets[k]->tfd >= VAL_MAX_FDS) {
			snprintf(why, wl, "file %u (epoll).targets[%zu].tfd: %d", f->id, k,
				 f->epoll->targets[k]->tfd);
			return -EBADMSG;
		}
	return 0;
}

static int epoll_restore(struct rst_target *t, struct rst_fd_rctx *x,
			 const Haul__Img__FileObject *f, const Haul__Img__FdEntry *e,
			 const char *path, int *tmp, bool *shared)
{
	long res = -1;
	int ret;

	(void)x;
	(void)f;
	(void)e;
	(void)path;
	*shared = false;
	ret = rst_rcall(t, SYS_epoll_create1, 0, 0, 0, 0, 0, 0, &res);
	*tmp = (int)res;
	return ret;
}

/* Every fd exists: each instance watches its targets again (through its first fd). */
static int epoll_finish(struct rst_target *t, struct rst_fd_rctx *x, char *why, size_t wl)
{
	const Haul__Img__ProcessState *ps = x->ps;
	int ret = 0;

	for (size_t i = 0; i < ps->n_files && !ret; i++) {
		const Haul__Img__FileObject *f = ps->files[i];
		const Haul__Img__FdEntry *e = rst_fd_first(ps, f->id);

		if (f->kind != HAUL__IMG__FD_KIND__FD_EPOLL || !e)
			continue;
		for (size_t k = 0; k < f->epoll->n_targets && !ret; k++) {
			const Haul__Img__EpollTarget *tg = f->epoll->targets[k];
			uint8_t ev[12]; /* struct epoll_event is packed on x86_64 */

			memcpy(ev, &tg->events, 4);
			memcpy(ev + 4, &tg->data, 8);
			ret = rst_poke(t, rst_scratch(t), ev, sizeof(ev));
			if (!ret)
				ret = rst_rcall(t, SYS_epoll_ctl, e->fd, 1 /* EPOLL_CTL_ADD */,
						tg->tfd, rst_scratch(t), 0, 0, NULL);
			if (ret)
				snprintf(why, wl, "cannot make epoll fd %d watch fd %d again: %s",
					 e->fd, tg->tfd, strerror(-ret));
		}
	}
	return ret;
}

const struct rst_fd_ops rst_fd_epoll = {
	.name = "epoll",
	.kind = HAUL__IMG__FD_KIND__FD_EPOLL,
	.version = 4,
	.match = epoll_match,
	.precheck = epoll_precheck,
	.dump = epoll_dump,
	.validate = epoll_validate,
	.restore = epoll_restore,
	.finish = epoll_finish,
};
