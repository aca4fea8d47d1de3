/*
 * fd_pidfd.c - pidfds (pidfd_open, clone CLONE_PIDFD) on the process that
 * holds them, opened again by an injected pidfd_open of its own pid.
 *
 * fdinfo names the task: "Pid:" as haul sees it (-1 once it exited),
 * "NSpid:" down to the innermost namespace, whose last entry is the pid
 * the process knows.  The restored process keeps its pid (clone3 set_tid,
 * or a new PID namespace), so the pid names it on the target too.  A pidfd
 * on any other process is refused: that pid would name another process,
 * or none, there.  A pidfd on one of its other threads is refused as well:
 * the fds are restored before the threads exist.  moved_along() is where
 * the process-tree work adds the other processes of the tree.
 * PIDFD_THREAD is O_EXCL in the open flags, carried with them.
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/target_int.h"

#define RST_PIDFD_THREAD O_EXCL

static bool pidfd_match(const struct rst_fd_probe *p)
{
	return !strcmp(p->target, "anon_inode:[pidfd]") || !strncmp(p->target, "pidfd:", 6);
}

/*
 * Whether task @target (as haul sees it) is restored with @holder so that
 * a pidfd can name it there: today only @holder itself.
 */
static bool moved_along(pid_t holder, pid_t target)
{
	return target == holder;
}

static int pidfd_refuse(const struct rst_fd_probe *p, char *why, size_t wl)
{
	const char *f = rst_status_field(p->fdinfo, "Pid");
	char task[64];
	struct stat st;
	int target = f ? atoi(f) : 0;

	if (!f || target == 0) {
		snprintf(why, wl,
			 "fd %d is a pidfd whose fdinfo names no pid (a kernel haul does "
			 "not know?)",
			 p->fd);
		return -EOPNOTSUPP;
	}
	if (target < 0) {
		snprintf(why, wl,
			 "fd %d is a pidfd on a process that has exited: close it, or reap its "
			 "status, before moving pid %d",
			 p->fd, (int)p->pid);
		return -EOPNOTSUPP;
	}
	if (moved_along(p->pid, target))
		return 0;
	snprintf(task, sizeof(task), "/proc/%d/task/%d", (int)p->pid, target);
	if (!stat(task, &st))
		snprintf(why, wl,
			 "fd %d is a pidfd on thread %d of pid %d: only pidfds on the process "
			 "itself are carried (its fds are restored before its threads)",
			 p->fd, target, (int)p->pid);
	else
		snprintf(why, wl,
			 "fd %d is a pidfd on pid %d, a process that does not move with pid %d: "
			 "on the target that pid would name another process, or none; close it "
			 "first",
			 p->fd, target, (int)p->pid);
	return -EOPNOTSUPP;
}

static int pidfd_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
		      Haul__Img__FileObject *const *prev, size_t nprev)
{
	int pid = (int)rst_status_last_nspid(p->fdinfo);

	(void)prev;
	(void)nprev;
	if (pid <= 0)
		return -EIO;
	o->pidfd = malloc(sizeof(*o->pidfd));
	if (!o->pidfd)
		return -ENOMEM;
	haul__img__pidfd_file__init(o->pidfd);
	o->pidfd->pid = pid;
	return 0;
}

static int pidfd_validate(const Haul__Img__FileObject *f, char *why, size_t wl)
{
	if (!f->pidfd) {
		snprintf(why, wl, "file %u is a pidfd without its pidfd part", f->id);
		return -EBADMSG;
	}
	if (f->pidfd->pid <= 0) {
		snprintf(why, wl, "file %u is a pidfd on pid %d", f->id, f->pidfd->pid);
		return -EBADMSG;
	}
	return 0;
}

static int pidfd_restore(struct rst_target *t, struct rst_fd_rctx *x,
			 const Haul__Img__FileObject *f, const Haul__Img__FdEntry *e,
			 const char *path, int *tmp, bool *shared)
{
	unsigned flags = f->flags & (O_NONBLOCK | RST_PIDFD_THREAD);
	long res = -1;
	int ret;

	(void)path;
	*shared = false;
	if (f->pidfd->pid != x->ps->pid) {
		pr_err("cannot restore fd %d of pid %d: a pidfd on pid %d, another process", e->fd,
		       x->ps->pid, f->pidfd->pid);
		return -EOPNOTSUPP;
	}
	ret = rst_rcall(t, SYS_pidfd_open, f->pidfd->pid, flags, 0, 0, 0, 0, &res);
	*tmp = (int)res;
	return ret;
}

const struct rst_fd_ops rst_fd_pidfd = {
	.name = "pidfd",
	.kind = HAUL__IMG__FD_KIND__FD_PIDFD,
	.version = 4,
	.match = pidfd_match,
	.refuse = pidfd_refuse,
	.dump = pidfd_dump,
	.validate = pidfd_validate,
	.restore = pidfd_restore,
};
