/*
 * fd_ofd.c - which fds of a process share one open file description.
 *
 * Two fds made by dup, inherited over fork or passed with SCM_RIGHTS name
 * one open file description (OFD): one offset, one set of status flags,
 * one owner of flock/OFD locks.  `cmd >log 2>&1` is the common case: if
 * the restore opened the file twice, each fd would get its own offset and
 * the writes through one would overwrite the other's.  So the image has
 * one FileObject per OFD and every FdEntry names one by id; the restorer
 * opens each FileObject once and dup3s it for its other fds (fd_restore.c).
 *
 * The kernel answers the question with kcmp(KCMP_FILE) (CONFIG_CHECKPOINT_
 * RESTORE); it is asked only for fds on the same st_dev/st_ino (both ends
 * of a pipe share the inode: kcmp tells them apart).  Without kcmp (ENOSYS,
 * or EPERM under a restrictive LSM), fds on the same inode with the same
 * position and status flags are taken as one OFD: two separate opens that
 * agree on both are then merged, which keeps bytes in order but loses the
 * independence of their offsets from there on.  Anon-inode fds (eventfd,
 * signalfd, timerfd, epoll: one inode for all) are then never merged.
 */
#define LOG_PREFIX "ofd: "
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/restore_int.h"

#ifndef KCMP_FILE
#define KCMP_FILE 0
#endif

/* 1: same OFD, 0: not, -errno: kcmp cannot tell. */
static int kcmp_file(pid_t pid, int a, int b)
{
	long r = syscall(SYS_kcmp, pid, pid, KCMP_FILE, a, b);

	if (r < 0)
		return -errno;
	return r == 0;
}

/*
 * What two fds of one OFD must agree on (read while the process is
 * stopped): kcmp is asked only then, which keeps the pairs few even with
 * many anon-inode fds, all on one inode.
 */
static bool may_share(const struct rst_ofd_key *a, const struct rst_ofd_key *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->kind == b->kind && a->flags == b->flags &&
	       a->pos == b->pos && a->efd_count == b->efd_count;
}

/*
 * Without kcmp, for two fds that may_share: eventfd, signalfd, timerfd and
 * epoll instances all share the one anon inode, so nothing tells two of
 * them apart: never merged; any other two are taken as one.
 */
static bool fallback_same(const struct rst_ofd_key *a)
{
	switch (a->kind) {
	case HAUL__IMG__FD_KIND__FD_EVENTFD:
	case HAUL__IMG__FD_KIND__FD_SIGNALFD:
	case HAUL__IMG__FD_KIND__FD_TIMERFD:
	case HAUL__IMG__FD_KIND__FD_EPOLL:
		return false;
	default:
		return true; /* may_share held */
	}
}

int rst_ofd_assign(pid_t pid, const struct rst_ofd_key *k, size_t n, size_t *lead)
{
	bool have_kcmp = true;

	for (size_t i = 0; i < n; i++) {
		const struct rst_ofd_key *o = &k[i];

		lead[i] = i;
		for (size_t j = 0; j < i; j++) {
			const struct rst_ofd_key *p = &k[j];
			int same = 0;

			if (lead[j] != j || !may_share(o, p))
				continue; /* only the first fd of each OFD is compared */
			if (have_kcmp) {
				same = kcmp_file(pid, p->fd, o->fd);
				if (same < 0) {
					pr_warn("kcmp cannot compare the fds of pid %d (%s); its fds "
						"on one file with the same offset and flags are "
						"taken as one open file",
						(int)pid, strerror(-same));
					have_kcmp = false;
				}
			}
			if (!have_kcmp)
				same = fallback_same(o);
			if (same > 0) {
				lead[i] = j;
				break;
			}
		}
	}
	return 0;
}
