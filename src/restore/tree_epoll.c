/*
 * tree_epoll.c - epoll watches across the processes of a tree.
 *
 * The kernel keys a watch by (file, fd number): the fd number is the one
 * the adding process used, in its own fd table, and the file is what that
 * number named then.  An epoll set inherited over fork is one open file
 * description in several processes, and any of them may add to it: the
 * fdinfo of the set then lists fd numbers of different fd tables.  A
 * watch is restored by EPOLL_CTL_ADD of that number in a process where
 * the number names that file again.
 *
 * Who: kcmp(KCMP_EPOLL_TFD) compares fd N of a process with the file of
 * the watch (tfd N, toff: its rank among the set's watches of number N);
 * that needs only the two pids, no stop.  At the precheck a watch must be
 * on a file that the process holding the set, or (a tree) another of its
 * processes, has at that number: else the file was closed or replaced
 * since it was added (the watch lives on while the file is open anywhere)
 * and no restored process could add it back: refused, naming it.  At the
 * dump (tree order) a watch whose file is not at that number in the
 * process that stores the set records the tree pid of the first process
 * that has it there (EpollTarget.pid); that process must come after the
 * set's in tree order (its fds are restored later, with the set already
 * made), else refused by name.
 *
 * Restore: the process that stores the set adds its own watches
 * (fd_epoll.c); each later process adds the watches recorded for it, on
 * a copy of the set taken from the earlier process (pidfd_getfd, parked
 * above its fd numbers, closed after): one set, one watch, right file.
 * Without kcmp or its KCMP_EPOLL_TFD (ENOSYS, EINVAL before Linux 4.13) a
 * watch is judged by the inode fdinfo gives, in the set's own process
 * only.
 */
#define LOG_PREFIX "tree: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/sysno.h"
#include "restore/fd_int.h"
#include "restore/target_int.h"
#include "restore/tree_int.h"

#define KCMP_EPOLL_TFD_ 7 /* include/uapi/linux/kcmp.h */

/* struct kcmp_epoll_slot of include/uapi/linux/kcmp.h */
struct epoll_slot {
	uint32_t efd, tfd, toff;
};

int rst_epoll_watch_at(pid_t pid, int fd, pid_t epid, int efd, int tfd, int toff)
{
	struct epoll_slot s = {(uint32_t)efd, (uint32_t)tfd, (uint32_t)toff};
	long r = syscall(SYS_kcmp, pid, epid, KCMP_EPOLL_TFD_, fd, (unsigned long)&s);

	if (r < 0 && errno == EINVAL)
		return -ENOSYS; /* a kernel before 4.13: no KCMP_EPOLL_TFD */
	if (r < 0)
		return errno == ENOSYS || errno == EPERM ? -errno : 0;
	return r == 0;
}

int rst_epoll_watch_holder(pid_t epid, int efd, int tfd, int toff, const pid_t *cand, size_t n,
			   size_t *who)
{
	int r = rst_epoll_watch_at(epid, tfd, epid, efd, tfd, toff);

	if (r)
		return r < 0 ? r : 0; /* the set's own process: no index */
	for (size_t i = 0; i < n; i++) {
		if (cand[i] == epid)
			continue;
		r = rst_epoll_watch_at(cand[i], tfd, epid, efd, tfd, toff);
		if (r < 0)
			return r;
		if (r) {
			*who = i;
			return 1;
		}
	}
	return -ENOENT;
}

/* The first fd of @ps naming FileObject @id, or -1. */
static int fd_of(const Haul__Img__ProcessState *ps, uint32_t id)
{
	for (size_t i = 0; i < ps->n_fds; i++)
		if (ps->fds[i]->file_id == id)
			return ps->fds[i]->fd;
	return -1;
}

/* The rank of target @k among @ep's targets with the same fd number. */
static int toff_of(const Haul__Img__EpollFile *ep, size_t k)
{
	int toff = 0;

	for (size_t j = 0; j < k; j++)
		toff += ep->targets[j]->tfd == ep->targets[k]->tfd;
	return toff;
}

/* One set's watches: whose fd each is (EpollTarget.pid for another process's). */
static int owners_of(const struct rst_tree *t, size_t i, const pid_t *hosts, int efd,
		     Haul__Img__EpollFile *ep, char *why, size_t wl)
{
	const struct rst_tree_proc *p = &t->p[i];

	for (size_t k = 0; k < ep->n_targets; k++) {
		Haul__Img__EpollTarget *tg = ep->targets[k];
		size_t who = 0;
		int r = rst_epoll_watch_holder(p->host, efd, tg->tfd, toff_of(ep, k), hosts, t->n,
					       &who);

		if (r == -ENOSYS || r == -EPERM)
			return 0; /* the precheck judged by inode, in this process */
		if (r == 0)
			continue;
		if (r < 0) {
			snprintf(why, wl,
				 "epoll fd %d of pid %d watches a file added as fd %d, and no "
				 "process of the tree holds it at that number (closed or replaced "
				 "since); haul adds a watch back by fd number: remove it "
				 "(EPOLL_CTL_DEL) before closing the fd",
				 efd, p->pid, tg->tfd);
			return -EOPNOTSUPP;
		}
		if (who < i) {
			snprintf(why, wl,
				 "epoll fd %d of pid %d watches fd %d of pid %d, which no longer "
				 "holds that epoll set and comes before pid %d in the tree: haul "
				 "cannot add the watch back there",
				 efd, p->pid, tg->tfd, t->p[who].pid, p->pid);
			return -EOPNOTSUPP;
		}
		tg->has_pid = true;
		tg->pid = t->p[who].pid;
	}
	return 0;
}

int rst_epoll_tree_owners(const struct rst_tree *t, size_t i, Haul__Img__ProcessState *ps,
			  char *why, size_t wl)
{
	pid_t *hosts = calloc(t->n ? t->n : 1, sizeof(*hosts));
	int ret = hosts ? 0 : -ENOMEM;

	/* zombies hold no fds: a pid no kcmp matches */
	for (size_t j = 0; hosts && j < t->n; j++)
		hosts[j] = t->p[j].zombie ? 0 : t->p[j].host;
	for (size_t k = 0; k < ps->n_files && !ret; k++) {
		Haul__Img__FileObject *f = ps->files[k];
		int efd = fd_of(ps, f->id);

		if (f->kind == HAUL__IMG__FD_KIND__FD_EPOLL && f->epoll && efd >= 0)
			ret = owners_of(t, i, hosts, efd, f->epoll, why, wl);
	}
	free(hosts);
	return ret;
}

/* EPOLL_CTL_ADD of @tg on the set at fd @efd of @t. */
static int add_watch(struct rst_target *t, int efd, const Haul__Img__EpollTarget *tg)
{
	uint8_t ev[12]; /* struct epoll_event is packed on x86_64 */
	int ret;

	memcpy(ev, &tg->events, 4);
	memcpy(ev + 4, &tg->data, 8);
	ret = rst_poke(t, rst_scratch(t), ev, sizeof(ev));
	return ret ? ret
		   : rst_rcall(t, SYS_epoll_ctl, (uint64_t)efd, 1 /* EPOLL_CTL_ADD */,
			       (uint64_t)tg->tfd, rst_scratch(t), 0, 0, NULL);
}

/* Add @ep's watches recorded for @t (their file is its fd) to a copy of the set. */
static int watches_of(struct rst_target *t, int park, pid_t holder, int efd,
		      const Haul__Img__EpollFile *ep, char *why, size_t wl)
{
	int mine = -1, ret = 0;

	for (size_t k = 0; k < ep->n_targets && !ret; k++) {
		const Haul__Img__EpollTarget *tg = ep->targets[k];

		if (!tg->has_pid || tg->pid != t->o.pid)
			continue;
		if (mine < 0)
			ret = rst_share_getfd(t, park, holder, efd, &mine);
		if (!ret)
			ret = add_watch(t, mine, tg);
		if (ret)
			snprintf(
				why, wl,
				"cannot make epoll fd %d of pid %d watch fd %d of pid %d again: %s",
				efd, (int)holder, tg->tfd, (int)t->o.pid, strerror(-ret));
	}
	if (mine >= 0)
		rst_rcall(t, SYS_close, (uint64_t)mine, 0, 0, 0, 0, 0, NULL);
	return ret;
}

int rst_epoll_tree_watches(struct rst_target *t, int park, char *why, size_t wl)
{
	const struct rst_share_rst *s = rst_share_current();
	int ret = 0;

	for (size_t j = 0; s && j < s->n && !ret; j++)
		for (size_t k = 0; k < s->ps[j]->n_files && !ret; k++) {
			const Haul__Img__FileObject *f = s->ps[j]->files[k];
			int efd = fd_of(s->ps[j], f->id);

			if (f->kind == HAUL__IMG__FD_KIND__FD_EPOLL && f->epoll && efd >= 0)
				ret = watches_of(t, park, s->pid[j], efd, f->epoll, why, wl);
		}
	return ret;
}

bool rst_epoll_tree_later(pid_t self, pid_t pid)
{
	const struct rst_share_rst *s = rst_share_current();

	if (!s || !s->tr)
		return false;
	for (size_t i = 0; i < s->tr->n_procs; i++) {
		const Haul__Img__ProcessEntry *e = s->tr->procs[i];

		if (e->pid == self)
			self = 0; /* from here on: later */
		else if (e->pid == pid)
			return !self && !e->zombie;
	}
	return false;
}
