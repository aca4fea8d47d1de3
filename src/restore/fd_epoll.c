/*
 * fd_epoll.c - epoll instances: the watched fds ("tfd:" lines of fdinfo,
 * with events and data: EPOLLET, EPOLLEXCLUSIVE and a disarmed
 * EPOLLONESHOT, whose events are then only those flags, are added back
 * as they are), re-added by injected epoll_ctl once every fd exists.  The
 * precheck refuses an instance watching a file that no longer is at the
 * fd number it was added with (kcmp KCMP_EPOLL_TFD; without kcmp, the
 * inode fdinfo names): re-adding by number would watch another file.  In
 * a tree the number may be another process's (a set inherited over fork,
 * added to by a child): tree_epoll.c finds it and adds it back there.
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
#include "restore/tree_int.h"

static bool epoll_match(const struct rst_fd_probe *p)
{
	return !strcmp(p->target, "anon_inode:[eventpoll]");
}

/* Whether fd @tfd of @pid is the inode @ino fdinfo gives (without kcmp). */
static bool same_inode(pid_t pid, int tfd, unsigned long long ino)
{
	char link[64];
	struct stat st;

	snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)pid, tfd);
	return stat(link, &st) == 0 && st.st_ino == ino;
}

/*
 * Every file an epoll instance watches must be at the fd number it was
 * added with, in this process or (a tree) another of it.
 */
static int epoll_precheck(const struct rst_fd_probe *p, char *why, size_t whylen)
{
	const pid_t *members;
	size_t nmembers = rst_precheck_members(&members);

	for (const char *l = p->fdinfo; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		unsigned long long ino;
		const char *i;
		size_t who;
		int tfd, toff = 0, r;

		if (strncmp(l, "tfd:", 4))
			continue;
		tfd = atoi(l + 4);
		/* its rank among the earlier watches of the same number (kcmp's toff) */
		for (const char *m = p->fdinfo; m < l; m = strchr(m, '\n') + 1)
			toff += !strncmp(m, "tfd:", 4) && atoi(m + 4) == tfd;
		i = strstr(l, "ino:");
		ino = i ? strtoull(i + 4, NULL, 16) : 0;
		r = rst_epoll_watch_holder(p->pid, p->fd, tfd, toff, members, nmembers, &who);
		if (r == -ENOSYS || r == -EPERM)
			r = same_inode(p->pid, tfd, ino) ? 0 : -ENOENT;
		if (r >= 0)
			continue;
		snprintf(why, whylen,
			 "epoll fd %d of pid %d watches a file (inode %llu) added as fd %d, and "
			 "%s holds it at that number (closed or replaced since); haul "
			 "adds a watch back by fd number: remove it (EPOLL_CTL_DEL) before "
			 "closing the fd",
			 p->fd, (int)p->pid, ino, tfd,
			 nmembers ? "no process of the tree" : "the process no longer");
		return -EOPNOTSUPP;
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

/*
 * A watch recorded for another process of the tree (EpollTarget.pid): it
 * adds it (tree_epoll.c), so it must be a live one restored after @t.
 */
static int foreign(struct rst_target *t, const Haul__Img__EpollTarget *tg, int efd, char *why,
		   size_t wl)
{
	if (!tg->has_pid || tg->pid == t->o.pid)
		return 0;
	if (rst_epoll_tree_later(t->o.pid, tg->pid))
		return 1;
	snprintf(why, wl,
		 "the image is inconsistent: epoll fd %d of pid %d has a watch for pid %d, "
		 "which is no live process after it in the tree; checkpoint the tree again",
		 efd, (int)t->o.pid, tg->pid);
	return -EBADMSG;
}

/*
 * Every fd exists: each instance watches its targets again (through its
 * first fd); then the watches earlier processes' sets have on our fds.
 */
static int epoll_finish(struct rst_target *t, struct rst_fd_rctx *x, char *why, size_t wl)
{
	const Haul__Img__ProcessState *ps = x->ps;
	struct rst_batch *b = malloc(sizeof(*b));
	int ret = 0;

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < ps->n_files && !ret; i++) {
		const Haul__Img__FileObject *f = ps->files[i];
		const Haul__Img__FdEntry *e = rst_fd_first(ps, f->id);
		int *tfd;

		if (f->kind != HAUL__IMG__FD_KIND__FD_EPOLL || !e)
			continue;
		/* its watches in one round trip (target_batch.c); tfd[] names a failed one */
		tfd = calloc(f->epoll->n_targets + 1, sizeof(*tfd));
		if (!tfd) {
			ret = -ENOMEM;
			break;
		}
		rst_batch_init(b);
		for (size_t k = 0; k < f->epoll->n_targets && !ret; k++) {
			const Haul__Img__EpollTarget *tg = f->epoll->targets[k];
			uint8_t ev[12]; /* struct epoll_event is packed on x86_64 */
			uint64_t at;

			ret = foreign(t, tg, e->fd, why, wl);
			if (ret) {
				ret = ret > 0 ? 0 : ret;
				continue;
			}
			memcpy(ev, &tg->events, 4);
			memcpy(ev + 4, &tg->data, 8);
			tfd[b->done + b->n] = tg->tfd;
			rst_bdata(t, b, ev, sizeof(ev), &at);
			rst_bcall(t, b, 0, "epoll_ctl(EPOLL_CTL_ADD)", SYS_epoll_ctl, e->fd,
				  1 /* EPOLL_CTL_ADD */, tg->tfd, at, 0, 0);
		}
		if (!ret) {
			ret = rst_batch_run(t, b);
			if (ret)
				snprintf(why, wl,
					 "cannot make epoll fd %d watch fd %d again: %s: %s", e->fd,
					 tfd[b->failed], b->what, strerror(-ret));
		}
		free(tfd);
	}
	free(b);
	if (!ret)
		ret = rst_epoll_tree_watches(t, x->park, why, wl);
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
