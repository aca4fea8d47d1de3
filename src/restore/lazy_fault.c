/*
 * lazy_fault.c - the fault thread: mm events and the loop that serves faults.
 *
 * The fault thread owns every uffd.  It reads events (UNMAP, REMAP, REMOVE,
 * FORK) as they come, since the process blocks until they are read, and
 * applies them to the regions before any later copy; it reads faults, hands
 * their windows to the fault-fetch threads, copies fetched windows first
 * and background slices between them.  A fork adds an mm served like the
 * first.  On a failure it kills the restored process and every descendant
 * (they share its memory); when nothing is missing it closes the uffds.
 */
#define LOG_PREFIX "lazy: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>

#include "common/log.h"
#include "restore/lazy_int.h"

/* ---- events ------------------------------------------------------------------- */

static int on_remove(struct rst_lazy *lz, struct lz_mm *mm, uint64_t s, uint64_t e)
{
	pthread_mutex_lock(&lz->lock);
	for (size_t k = 0; k < mm->nr; k++) {
		struct lz_region *rg = &mm->r[k];
		uint64_t a = s > rg->start ? s : rg->start, b = e < rg->end ? e : rg->end;

		for (uint64_t p = a; p < b; p += PG) {
			uint64_t i = (p - rg->start) / PG;

			rst_lz_mark_done(lz, mm, rg, i, 1);
			bit_set(rg->zero, i);
		}
	}
	pthread_mutex_unlock(&lz->lock);
	return 0;
}

static int on_remap(struct rst_lazy *lz, struct lz_mm *mm, uint64_t from, uint64_t to, uint64_t len)
{
	struct lz_region *moved = NULL;
	size_t nmoved = 0;
	int ret = 0;

	pthread_mutex_lock(&lz->lock);
	for (size_t k = 0; k < mm->nr; k++) {
		struct lz_region *rg = &mm->r[k], *n;
		uint64_t a = from > rg->start ? from : rg->start;
		uint64_t b = from + len < rg->end ? from + len : rg->end;

		if (a >= b)
			continue;
		n = realloc(moved, (nmoved + 1) * sizeof(*moved));
		if (!n) {
			ret = -ENOMEM;
			goto out;
		}
		moved = n;
		ret = rst_lz_region_slice(rg, a, b, a - from + to, &moved[nmoved]);
		if (ret)
			goto out;
		nmoved++;
	}
	ret = rst_lz_regions_cut(lz, mm, from, from + len);
	if (!ret)
		ret = rst_lz_regions_cut(lz, mm, to, to + len);
	if (!ret)
		ret = rst_lz_regions_insert(lz, mm, moved, nmoved);
	if (!ret)
		nmoved = 0;
out:
	while (nmoved)
		rst_lz_region_release(&moved[--nmoved]);
	free(moved);
	pthread_mutex_unlock(&lz->lock);
	return ret;
}

/* A copy of @parent's state for its child, whose memory is registered with @ufd. */
/* Tell rst_lazy_on_fork's function about @mm's uffd (a duplicate it owns).  Under lz->lock. */
void rst_lz_fork_notify(struct rst_lazy *lz, struct lz_mm *mm)
{
	int fd;

	if (!lz->fork_fn || mm->uffd < 0)
		return;
	fd = fcntl(mm->uffd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		pr_warn("cannot pass on the uffd of a child of pid %d: %s", lz->pid,
			strerror(errno));
	else
		lz->fork_fn(lz->fork_arg, fd);
}

static int on_fork(struct rst_lazy *lz, struct lz_mm *parent, int ufd)
{
	struct lz_mm *mm = calloc(1, sizeof(*mm)), **n;
	int ret = -ENOMEM;

	if (!mm) {
		close(ufd);
		return -ENOMEM;
	}
	mm->uffd = ufd;
	pthread_mutex_lock(&lz->lock);
	mm->r = calloc(parent->nr ? parent->nr : 1, sizeof(*mm->r));
	if (!mm->r)
		goto err;
	for (size_t k = 0; k < parent->nr; k++) {
		struct lz_region *rg = &parent->r[k];

		ret = rst_lz_region_slice(rg, rg->start, rg->end, rg->start, &mm->r[k]);
		if (ret)
			goto err;
		/* The parent's claims are for the parent's copies: the child fetches its own. */
		memset(mm->r[k].claimed, 0, ((rg->end - rg->start) / PG + 63) / 64 * 8);
		mm->nr++;
		mm->missing += mm->r[k].missing;
	}
	n = realloc(lz->mm, (lz->nmm + 1) * sizeof(*n));
	if (!n) {
		ret = -ENOMEM;
		goto err;
	}
	lz->mm = n;
	lz->mm[lz->nmm++] = mm;
	lz->missing += mm->missing;
	lz->work_gen++;
	pthread_cond_broadcast(&lz->cv);
	rst_lz_fork_notify(lz, mm);
	pthread_mutex_unlock(&lz->lock);
	pr_info("pid %d forked during post-copy: serving its child too (%lu pages missing there)",
		lz->pid, (unsigned long)mm->missing);
	return 0;
err:
	pthread_mutex_unlock(&lz->lock);
	for (size_t k = 0; k < mm->nr; k++)
		rst_lz_region_release(&mm->r[k]);
	free(mm->r);
	close(ufd);
	free(mm);
	pr_err_r(ret, "cannot follow a fork of pid %d during post-copy", lz->pid);
	return ret;
}

static int on_event(struct rst_lazy *lz, struct lz_mm *mm, const struct uffd_msg *m)
{
	int ret;

	pthread_mutex_lock(&lz->lock);
	lz->st.events++;
	pthread_mutex_unlock(&lz->lock);
	switch (m->event) {
	case UFFD_EVENT_REMOVE:
		return on_remove(lz, mm, m->arg.remove.start, m->arg.remove.end);
	case UFFD_EVENT_UNMAP:
		pthread_mutex_lock(&lz->lock);
		ret = rst_lz_regions_cut(lz, mm, m->arg.remove.start, m->arg.remove.end);
		pthread_mutex_unlock(&lz->lock);
		return ret;
	case UFFD_EVENT_REMAP:
		return on_remap(lz, mm, m->arg.remap.from, m->arg.remap.to, m->arg.remap.len);
	case UFFD_EVENT_FORK:
		return on_fork(lz, mm, (int)m->arg.fork.ufd);
	default:
		pr_err("unexpected userfaultfd event %#x from pid %d", m->event, lz->pid);
		return -EPROTO;
	}
}

/* @mm exited or exec'd (its copies say ESRCH): nothing more to do for it. Fault thread. */
void rst_lz_mm_dead(struct rst_lazy *lz, struct lz_mm *mm)
{
	pthread_mutex_lock(&lz->lock);
	if (!mm->dead) {
		if (mm == lz->mm[0] && mm->missing)
			lz->exited = true;
		lz->missing -= mm->missing;
		mm->missing = 0;
		mm->dead = true;
		close(mm->uffd);
		mm->uffd = -1;
	}
	pthread_mutex_unlock(&lz->lock);
}

/* ---- the fault thread --------------------------------------------------------- */

void rst_lz_finish(struct rst_lazy *lz, int result)
{
	pthread_mutex_lock(&lz->lock);
	if (!lz->finished) {
		lz->finished = true;
		lz->result = result;
		if (!result)
			lz->st.complete_ns = now_ns() - lz->t_start;
	}
	lz->stopping = true;
	pthread_cond_broadcast(&lz->cv);
	pthread_cond_broadcast(&lz->ucv);
	pthread_mutex_unlock(&lz->lock);
}

/* Remember every descendant of the restored process (pidfds), so that none escapes a kill. */
static void kids_scan(struct rst_lazy *lz, pid_t pid, unsigned depth)
{
	char path[96], tids[64], *buf = NULL;
	size_t cap = 0;
	FILE *f;
	DIR *d;
	struct dirent *e;

	if (depth > 16)
		return;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(tids, sizeof(tids), "%.32s", e->d_name);
		snprintf(path, sizeof(path), "/proc/%d/task/%s/children", (int)pid, tids);
		f = fopen(path, "re");
		if (!f)
			continue;
		while (getdelim(&buf, &cap, ' ', f) > 0) {
			pid_t kid = (pid_t)atoi(buf);
			bool known = false;
			struct lz_kid *n;

			if (kid <= 0)
				continue;
			for (size_t k = 0; k < lz->nkids; k++)
				known |= lz->kids[k].pid == kid;
			if (!known) {
				int fd = (int)syscall(SYS_pidfd_open, kid, 0);

				n = fd >= 0 ? realloc(lz->kids, (lz->nkids + 1) * sizeof(*n))
					    : NULL;
				if (n) {
					lz->kids = n;
					lz->kids[lz->nkids++] = (struct lz_kid){kid, fd};
				} else if (fd >= 0) {
					close(fd);
				}
			}
			kids_scan(lz, kid, depth + 1);
		}
		fclose(f);
	}
	free(buf);
	closedir(d);
}

/*
 * SIGKILL the restored process and every descendant (forked children share
 * its lazy memory), and wait (a bounded time) until the process is dead.
 */
void rst_lz_kill_process(struct rst_lazy *lz)
{
	struct pollfd p = {.fd = lz->pidfd, .events = POLLIN};

	if (lz->pidfd < 0)
		return;
	kids_scan(lz, lz->pid, 0);
	for (size_t k = 0; k < lz->nkids; k++)
		syscall(SYS_pidfd_send_signal, lz->kids[k].pidfd, SIGKILL, NULL, 0);
	if (syscall(SYS_pidfd_send_signal, lz->pidfd, SIGKILL, NULL, 0) && errno != ESRCH)
		pr_err("cannot kill pid %d: %s", lz->pid, strerror(errno));
	/* Its threads may sit in uffd waits: SIGKILL wakes them and they die. */
	poll(&p, 1, 2000);
}

/*
 * The memory can no longer arrive: kill the process before its uffd is
 * closed, or its threads would read zeros where its data was.
 */
static void fail(struct rst_lazy *lz, int err)
{
	pr_err("post-copy of pid %d failed, %lu pages never arrived (%s): the process cannot "
	       "continue without its memory and is killed; post-copy cannot survive the loss of "
	       "the source or the link",
	       lz->pid, (unsigned long)lz->missing, strerror(-err));
	rst_lz_kill_process(lz);
	rst_lz_finish(lz, err);
}

/* Close every uffd: that unregisters the memory; nobody waits for us any more. */
void rst_lz_close_all(struct rst_lazy *lz)
{
	pthread_mutex_lock(&lz->lock);
	for (size_t k = 0; k < lz->nmm; k++) {
		if (lz->mm[k]->uffd >= 0)
			close(lz->mm[k]->uffd);
		lz->mm[k]->uffd = -1;
	}
	pthread_mutex_unlock(&lz->lock);
}

/* Read and dispatch what @mm's uffd holds: events at once, faults into @pend. */
static int read_msgs(struct rst_lazy *lz, struct lz_mm *mm, struct lz_pend *pend, size_t *npend)
{
	struct uffd_msg msgs[MAX_MSGS];
	ssize_t n = read(mm->uffd, msgs, sizeof(msgs));
	uint64_t t0 = now_ns();
	bool child = mm != lz->mm[0];
	int ret;

	if (n < 0)
		return errno == EAGAIN ? 0 : -errno;
	for (ssize_t k = 0; k < n / (ssize_t)sizeof(msgs[0]); k++) {
		uint64_t addr = msgs[k].arg.pagefault.address & ~(PG - 1);

		if (msgs[k].event != UFFD_EVENT_PAGEFAULT) {
			ret = on_event(lz, mm, &msgs[k]);
			if (ret)
				return ret;
			continue;
		}
		if (child && !mm->scanned) {
			/* It runs now: learn its pid, so that a failure kills it too. */
			kids_scan(lz, lz->pid, 0);
			mm->scanned = true;
		}
		pthread_mutex_lock(&lz->lock);
		lz->last_fault_ns = t0;
		pthread_mutex_unlock(&lz->lock);
		if (*npend < MAX_MSGS * 4)
			pend[(*npend)++] = (struct lz_pend){mm, addr, t0, NULL,
							    msgs[k].arg.pagefault.feat.ptid};
		else
			rst_lz_uffd_wake(mm, addr); /* it faults again and is read next turn */
	}
	return 0;
}

/*
 * Serve the faults of @pend that wait for no window yet.  *@stalled: one
 * must wait for events (-EAGAIN); *@busy: one found no free window.  0 or
 * -errno.
 */
static int serve_pending(struct rst_lazy *lz, struct lz_pend *pend, size_t *npend, bool *stalled,
			 bool *busy)
{
	/* one fault alone: its window is fetched on this thread (req_issue) */
	lz->fetch_inline = *npend == 1;
	for (size_t k = 0; k < *npend;) {
		struct lz_pend *pf = &pend[k];
		int ret;

		if (pf->req) {
			k++;
			continue;
		}
		ret = pf->mm->dead ? -ESRCH : rst_lz_serve_fault(lz, pf);
		if (ret == 1 || ret == -EAGAIN || ret == -EBUSY) {
			/* waiting for its window, for the events, or for a free window */
			*stalled |= ret == -EAGAIN;
			*busy |= ret == -EBUSY;
			k++;
			continue;
		}
		ret = rst_lz_pend_answered(lz, pend, npend, k, ret);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * Copy the fault windows fetched so far, oldest first, and answer the
 * faults that waited for them.  *@freed: a window was freed; *@stalled: a
 * fault must wait for events.  0, -EAGAIN (the address space is changing:
 * the rest waits for the next turn) or -errno.
 */
static int copy_urgent(struct rst_lazy *lz, struct lz_pend *pend, size_t *npend, bool *freed,
		       bool *stalled)
{
	for (;;) {
		struct lz_req *q = lz->ucur;
		int ret;

		if (!q) {
			pthread_mutex_lock(&lz->lock);
			q = lz_queue_pop(lz->ur_head, lz->ur_tail);
			pthread_mutex_unlock(&lz->lock);
			if (!q)
				return 0;
			lz->ucur = q;
		}
		ret = rst_lz_copy_req(lz, q);
		if (ret == -ESRCH) {
			/* That mm is gone: its faults are dropped with it. */
			rst_lz_mm_dead(lz, q->mm);
			ret = 0;
		}
		if (ret)
			return ret;
		lz->ucur = NULL;
		ret = rst_lz_req_done(lz, q, pend, npend, stalled);
		if (ret)
			return ret;
		*freed = true;
	}
}

/*
 * Wait for the next thing to do (@work: do not wait): poll the stop and
 * ready eventfds, the restored process's pidfd and the uffd of each of the
 * @nmm mms, in *@p (grown to 3 + @nmm; *@np its length).  0 or -errno.
 */
static int poll_turn(struct rst_lazy *lz, struct pollfd **p, size_t *np, size_t nmm, bool work)
{
	struct pollfd *q = *p;

	if (*np < 3 + nmm) {
		q = realloc(*p, (3 + nmm) * sizeof(*q));
		if (!q)
			return -ENOMEM;
		*p = q;
		*np = 3 + nmm;
	}
	q[0] = (struct pollfd){.fd = lz->stopfd, .events = POLLIN};
	q[1] = (struct pollfd){.fd = lz->readyfd, .events = POLLIN};
	/* A negative fd is ignored by poll(). */
	q[2] = (struct pollfd){.fd = lz->mm[0]->dead ? -1 : lz->pidfd, .events = POLLIN};
	for (size_t k = 0; k < nmm; k++)
		q[3 + k] = (struct pollfd){.fd = lz->mm[k]->uffd, .events = POLLIN};
	/* Faults waiting for their window or for a free one wait for readyfd. */
	if (poll(q, 3 + nmm, work ? 0 : -1) < 0 && errno != EINTR)
		return -errno;
	return 0;
}

void *rst_lz_fault_main(void *arg)
{
	struct rst_lazy *lz = arg;
	struct lz_pend pend[MAX_MSGS * 4];
	struct pollfd *p = NULL;
	size_t npend = 0, np = 0;
	bool retry = false;
	int ret = 0;

	for (;;) {
		bool work, exited, stalled = false, busy = false, freed = false;
		size_t nmm;

		pthread_mutex_lock(&lz->lock);
		work = retry || lz->cur || lz->ready_head || lz->ucur || lz->ur_head;
		ret = lz->fetch_err;
		nmm = lz->nmm;
		pthread_mutex_unlock(&lz->lock);
		if (ret)
			break;
		ret = poll_turn(lz, &p, &np, nmm, work);
		if (ret)
			break;
		if (p[0].revents)
			goto stopped;
		exited = p[2].revents;
		if (p[1].revents) {
			uint64_t v;

			if (read(lz->readyfd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
				ret = -errno;
				break;
			}
		}

		/* Events and faults: all of them, before any copy. */
		for (size_t k = 0; !ret && k < nmm; k++)
			if (p[3 + k].revents && !lz->mm[k]->dead)
				ret = read_msgs(lz, lz->mm[k], pend, &npend);
		if (ret)
			break;

		/* New faults first (their fetches start), then the windows that came back. */
		ret = serve_pending(lz, pend, &npend, &stalled, &busy);
		if (ret)
			break;
		ret = copy_urgent(lz, pend, &npend, &freed, &stalled);
		if (ret == -EAGAIN) {
			stalled = true;
			ret = 0;
		}
		if (!ret && busy && freed)
			ret = serve_pending(lz, pend, &npend, &stalled, &busy);
		if (ret)
			break;
		/* One background slice per turn, also while fault windows are in flight. */
		if (!stalled) {
			ret = rst_lz_push_slice(lz);
			if (ret == -ESRCH && lz->cur) {
				/* That mm is gone; its chunk is dropped on the next turn. */
				rst_lz_mm_dead(lz, lz->cur->mm);
				ret = 0;
			}
			if (ret == -EAGAIN)
				stalled = true;
			if (ret == -EAGAIN || ret > 0)
				ret = 0;
			if (ret)
				break;
		}
		retry = stalled;
		/*
		 * EAGAIN lasts until the thread that raised the event (madvise,
		 * munmap) runs again after we read it: let it have the CPU
		 * instead of spinning on the copy.
		 */
		if (stalled)
			sched_yield();
		if (exited)
			rst_lz_mm_dead(lz, lz->mm[0]);
		if (!lz->missing) {
			/* Everything arrived, or whoever still needed memory is gone. */
			if (lz->exited)
				pr_warn("pid %d exited before all its memory arrived", lz->pid);
			rst_lz_finish(lz, lz->exited ? -ESRCH : 0);
			if (lz->st.faults)
				rst_lz_timeline_log(lz);
			rst_lz_pace_log(lz);
			goto done;
		}
	}
	pthread_mutex_lock(&lz->lock);
	if (lz->fetch_err)
		ret = lz->fetch_err;
	pthread_mutex_unlock(&lz->lock);
	fail(lz, ret);
done:
	rst_lz_close_all(lz);
	free(p);
	return NULL;
stopped:
	/* rst_lazy_free() stops us: it decides about the process. */
	free(p);
	return NULL;
}
