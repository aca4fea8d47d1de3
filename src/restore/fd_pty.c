/*
 * fd_pty.c - a pty whose master (/dev/ptmx) and slave (/dev/pts/N) the
 * process both holds (it drives a program through a terminal of its own,
 * as expect or a test harness does).
 *
 * Dump: each end names the pair by its source index N (the master's
 * fdinfo "tty-index"); the slave's settings (TCGETS, TIOCGWINSZ; the
 * master's own termios does not steer anything), the master's packet mode
 * (TIOCGPKT), and the bytes waiting on each end (FIONREAD).  Restore: the
 * pair's first fd opens /dev/ptmx, unlocks it (TIOCSPTLCK 0) and asks its
 * index (TIOCGPTN); the master is parked above every fd of the image and
 * dup'ed to each master fd; each slave fd is a new open of /dev/pts/M
 * (O_NOCTTY), which then gets the settings, the owner and the mode
 * back.  The pty is a new one: its number M may differ from N.
 *
 * Refused by name, at the precheck and again at the dump: bytes queued in
 * the pty.  The kernel offers no way to read a tty's queues without
 * consuming them (no MSG_PEEK, no tee for ttys), and consuming them would
 * take them from the source, which runs on after a failed migration; a
 * restore without them loses what was typed or written (zdtm's pty00 then
 * waited forever for its input).  A queue is transient: a retry once the
 * process has read it goes through.
 */
#define LOG_PREFIX "pty: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/target_int.h"

/* A pair's entry among the parked pipes: ids above every inode number. */
#define PTY_ID(index) ((1ULL << 63) | (uint64_t)(index))

/* The source index of the pty @p is an end of, when the process holds both ends; else -1. */
static int pair_index(const struct rst_fd_probe *p)
{
	int index = rst_tty_pts_index(p->st);

	if (index >= 0)
		return rst_tty_master_of(p->pid, index) >= 0 ? index : -1;
	if (rst_tty_is_ptmx(p->st)) {
		const char *f = rst_status_field(p->fdinfo, "tty-index");

		if (f && rst_tty_slave_of(p->pid, atoi(f)) >= 0)
			return atoi(f);
	}
	return -1;
}

static bool pty_match(const struct rst_fd_probe *p)
{
	return pair_index(p) >= 0;
}

/* 0, or -EOPNOTSUPP with @why naming fd, pty and end when bytes wait on @sfd. */
static int queued(const struct rst_fd_probe *p, int sfd, int index, char *why, size_t wl)
{
	int n = 0;

	if (ioctl(sfd, FIONREAD, &n) < 0 || n <= 0)
		return 0;
	snprintf(why, wl,
		 "fd %d (pty /dev/pts/%d, %s): %d bytes wait to be read, and a pty's queue cannot "
		 "be carried without consuming it; try again once the process has read them",
		 p->fd, index, rst_tty_is_ptmx(p->st) ? "master" : "slave", n);
	return -EOPNOTSUPP;
}

static int pty_refuse(const struct rst_fd_probe *p, char *why, size_t wl)
{
	int index = pair_index(p), sfd, ret;

	if (index < 0)
		return 0;
	sfd = rst_fd_copy(p->pid, p->fd);
	if (sfd < 0)
		return 0; /* closed since: the dump sees it again */
	ret = queued(p, sfd, index, why, wl);
	close(sfd);
	return ret;
}

static int pty_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
		    Haul__Img__FileObject *const *prev, size_t nprev)
{
	Haul__Img__Pty *y;
	int index = pair_index(p), sfd, n = 0, pkt = 0, ret = 0;

	(void)prev;
	(void)nprev;
	if (index < 0)
		return -ESTALE; /* an end was closed since the precheck */
	y = malloc(sizeof(*y));
	if (!y)
		return -ENOMEM;
	haul__img__pty__init(y);
	o->pty = y;
	y->index = (uint32_t)index;
	y->master = rst_tty_is_ptmx(p->st);
	sfd = rst_fd_copy(p->pid, p->fd);
	if (sfd < 0)
		return sfd;
	if (!y->master) {
		y->has_slave_mode = y->has_slave_uid = y->has_slave_gid = true;
		y->slave_mode = p->st->st_mode & 07777;
		y->slave_uid = p->st->st_uid;
		y->slave_gid = p->st->st_gid;
		ret = rst_tty_read_termios(sfd, &y->termios);
	} else if (ioctl(sfd, TIOCGPKT, &pkt) == 0)
		y->has_packet = y->packet = pkt != 0;
	if (!ret && ioctl(sfd, FIONREAD, &n) == 0 && n > 0) {
		char why[256];

		queued(p, sfd, index, why, sizeof(why));
		pr_err("pid %d: %s", (int)p->pid, why);
		ret = -EOPNOTSUPP;
	}
	close(sfd);
	return ret;
}

/* The pair of @index: made on its first fd, its master parked; M in w_ofd. */
static int pair_of(struct rst_target *t, struct rst_fd_rctx *x, uint32_t index,
		   struct rst_tpipe **out)
{
	struct rst_tpipe *p;
	uint64_t rpath;
	int32_t v = 0;
	long m = -1;
	int ret;

	for (size_t i = 0; i < x->npipes; i++)
		if (x->pipes[i].id == PTY_ID(index)) {
			*out = &x->pipes[i];
			return 0;
		}
	ret = rst_put_str(t, 0, "/dev/ptmx", &rpath);
	if (!ret)
		ret = rst_rcall(t, SYS_openat, AT_FDCWD, rpath, O_RDWR | O_NOCTTY | O_CLOEXEC, 0, 0,
				0, &m);
	if (!ret)
		ret = rst_poke(t, rst_scratch(t), &v, sizeof(v));
	if (!ret)
		ret = rst_rcall(t, SYS_ioctl, m, TIOCSPTLCK, rst_scratch(t), 0, 0, 0, NULL);
	if (!ret)
		ret = rst_rcall(t, SYS_ioctl, m, TIOCGPTN, rst_scratch(t), 0, 0, 0, NULL);
	if (!ret)
		ret = rst_peek(t, rst_scratch(t), &v, sizeof(v));
	p = &x->pipes[x->npipes];
	memset(p, 0, sizeof(*p));
	p->id = PTY_ID(index);
	p->w = -1; /* the refill after every fd closes r and w: no second end to park */
	p->w_ofd = (uint32_t)v;
	if (!ret)
		ret = rst_fd_park(t, x, (int)m, &p->r);
	else if (m >= 0)
		rst_rcall(t, SYS_close, m, 0, 0, 0, 0, 0, NULL);
	if (ret)
		return ret;
	x->npipes++;
	*out = p;
	return 0;
}

static int pty_validate(const Haul__Img__FileObject *f, char *why, size_t wl)
{
	if (!f->pty || f->pty->index > (1U << 20) ||
	    (f->pty->termios && f->pty->termios->cc.len > 64)) {
		snprintf(why, wl, "file %u is a pty end without its pty part, or out of range",
			 f->id);
		return -EBADMSG;
	}
	return 0;
}

static int pty_restore(struct rst_target *t, struct rst_fd_rctx *x, const Haul__Img__FileObject *f,
		       const Haul__Img__FdEntry *e, const char *path, int *tmp, bool *shared)
{
	struct rst_tpipe *p;
	char slave[32];
	uint64_t rpath;
	long res = -1;
	int ret;

	(void)path;
	ret = pair_of(t, x, f->pty->index, &p);
	if (ret)
		return ret;
	if (f->pty->master) {
		*shared = true;
		*tmp = p->r;
		return 0;
	}
	*shared = false;
	snprintf(slave, sizeof(slave), "/dev/pts/%u", p->w_ofd);
	ret = rst_put_str(t, 0, slave, &rpath);
	if (!ret)
		ret = rst_rcall(t, SYS_openat, AT_FDCWD, rpath,
				((int)f->flags & (O_ACCMODE | O_NONBLOCK)) | O_NOCTTY | O_CLOEXEC,
				0, 0, 0, &res);
	*tmp = (int)res;
	if (!ret && f->pty->index != p->w_ofd)
		pr_info("pid %d: fd %d: pty /dev/pts/%u is /dev/pts/%u now", (int)t->o.pid, e->fd,
			f->pty->index, p->w_ofd);
	return ret;
}

/*
 * The slave's owner and mode, from here through /proc (the stub, root,
 * made it its own): grantpt gave the source's to the process's uid, and a
 * process of another uid could not open its own terminal again (zdtm's
 * pty01).  The ids are this host's, as for the other files haul chowns.
 */
static int slave_owner(struct rst_target *t, const Haul__Img__Pty *y, int fd)
{
	char link[64];
	int f, ret = 0;

	if (y->master || !y->has_slave_uid || !y->has_slave_gid || !y->has_slave_mode)
		return 0;
	snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)t->stub, fd);
	f = open(link, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (f < 0)
		return -errno;
	if (fchown(f, y->slave_uid, y->slave_gid) < 0 || fchmod(f, y->slave_mode) < 0)
		ret = -errno;
	close(f);
	return ret;
}

/* At its own number: O_NONBLOCK; a slave its settings and owner, a master its packet mode. */
static int pty_setup(struct rst_target *t, const Haul__Img__FileObject *f,
		     const Haul__Img__FdEntry *e)
{
	int32_t on = 1;
	int ret = rst_fd_set_nonblock(t, f, e);

	if (!ret)
		ret = slave_owner(t, f->pty, e->fd);
	if (!ret && f->pty->termios)
		ret = rst_tty_set_termios(t, e->fd, f->pty->termios);
	if (!ret && f->pty->master && f->pty->packet) {
		ret = rst_poke(t, rst_scratch(t), &on, sizeof(on));
		if (!ret)
			ret = rst_rcall(t, SYS_ioctl, e->fd, TIOCPKT, rst_scratch(t), 0, 0, 0,
					NULL);
	}
	return ret;
}

const struct rst_fd_ops rst_fd_pty = {
	.name = "pty pair",
	.kind = HAUL__IMG__FD_KIND__FD_PTY,
	.version = 4,
	.match = pty_match,
	.refuse = pty_refuse,
	.dump = pty_dump,
	.validate = pty_validate,
	.restore = pty_restore,
	.setup = pty_setup,
};
