/*
 * fd_tty.c - terminals: which ones haul carries, their settings, and the
 * controlling terminal.
 *
 * A terminal whose other side stays behind (a pty slave whose master a
 * terminal emulator, sshd or `script` holds; a virtual console;
 * /dev/tty; /dev/console) is an external endpoint (fd_external.c).  A pty
 * slave or /dev/tty becomes, by default, the restoring haul's terminal,
 * like CRIU's --shell-job; a virtual console or /dev/console, devices every
 * host has, the same device again, opened by its path (spec "device": the
 * path must name the same device number there, else the restore fails
 * naming the fd), with the settings the host gave it (its speed and size
 * are the host's console's, not the process's).  What goes with it is what the process set: the
 * termios (TCGETS: iflag, oflag, cflag, lflag, line discipline, c_cc; the
 * kernel's struct, not glibc's) and the window size (TIOCGWINSZ), read on
 * a pidfd_getfd copy of the fd and set again on the new one; and, if it
 * was the process's controlling terminal (/proc/PID/stat tty_nr), the new
 * terminal becomes its controlling terminal (TIOCSCTTY: the stub leads its
 * own session) when no other session holds it.
 *
 * Refused by name: a pty master whose slave the process does not hold
 * (the process is the terminal emulator: its slave's processes stay
 * behind), a serial line (its modem lines, speed and the device stay
 * behind).  A pty whose both ends the process holds is fd_pty.c's kind.
 */
#define LOG_PREFIX "tty: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/target_int.h"

/* The kernel's struct termios (asm/termbits.h), as TCGETS/TCSETS take it. */
struct kterm {
	uint32_t iflag, oflag, cflag, lflag;
	uint8_t line;
	uint8_t cc[19];
};

#define TTY_MAJOR_VT	 4   /* tty0-63 virtual consoles, ttyS* from minor 64 */
#define TTY_MAJOR_AUX	 5   /* /dev/tty (0), /dev/console (1), /dev/ptmx (2) */
#define TTY_MAJOR_PTS_LO 136 /* Unix98 pty slaves: 136-143 */
#define TTY_MAJOR_PTS_HI 143
#define TTY_MAJOR_ACM	 166 /* USB modems */
#define TTY_MAJOR_USB	 188 /* USB serial */
#define TTY_MAJOR_AMA	 204 /* low-density serial (ttyAMA...) */
#define TTY_MAJOR_HVC	 229 /* hypervisor consoles */

static bool is_pts(unsigned ma)
{
	return ma >= TTY_MAJOR_PTS_LO && ma <= TTY_MAJOR_PTS_HI;
}

static bool is_serial(unsigned ma, unsigned mi)
{
	return (ma == TTY_MAJOR_VT && mi >= 64) || ma == TTY_MAJOR_ACM || ma == TTY_MAJOR_USB ||
	       ma == TTY_MAJOR_AMA;
}

bool rst_tty_match(const struct stat *st)
{
	unsigned ma = major(st->st_rdev), mi = minor(st->st_rdev);

	if (!S_ISCHR(st->st_mode))
		return false;
	return ma == TTY_MAJOR_VT || (ma == TTY_MAJOR_AUX && mi <= 2) || is_pts(ma) ||
	       ma == TTY_MAJOR_ACM || ma == TTY_MAJOR_USB || ma == TTY_MAJOR_AMA ||
	       ma == TTY_MAJOR_HVC;
}

bool rst_tty_host_device(const struct stat *st)
{
	unsigned ma = major(st->st_rdev), mi = minor(st->st_rdev);

	return S_ISCHR(st->st_mode) &&
	       ((ma == TTY_MAJOR_VT && mi < 64) || (ma == TTY_MAJOR_AUX && mi == 1));
}

int rst_tty_pts_index(const struct stat *st)
{
	unsigned ma = major(st->st_rdev);

	if (!S_ISCHR(st->st_mode) || !is_pts(ma))
		return -1;
	return (int)((ma - TTY_MAJOR_PTS_LO) * 256 + minor(st->st_rdev));
}

bool rst_tty_is_ptmx(const struct stat *st)
{
	return S_ISCHR(st->st_mode) && st->st_rdev == makedev(TTY_MAJOR_AUX, 2);
}

int rst_tty_slave_of(pid_t pid, int index)
{
	char path[64], want[32];
	struct dirent *de;
	DIR *d;
	int found = -1;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	snprintf(want, sizeof(want), "/dev/pts/%d", index);
	d = opendir(path);
	if (!d)
		return -1;
	while (found < 0 && (de = readdir(d))) {
		char link[96], target[64];

		if (de->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "%s/%.16s", path, de->d_name);
		if (!rst_read_link(link, target, sizeof(target)) && !strcmp(target, want))
			found = atoi(de->d_name);
	}
	closedir(d);
	return found;
}

int rst_tty_master_of(pid_t pid, int index)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	int found = -1;

	snprintf(path, sizeof(path), "/proc/%d/fdinfo", (int)pid);
	d = opendir(path);
	if (!d)
		return -1;
	while (found < 0 && (de = readdir(d))) {
		char name[64], *text = NULL;
		const char *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(name, sizeof(name), "fdinfo/%.16s", de->d_name);
		if (rst_read_proc(pid, name, &text, NULL))
			continue;
		f = rst_status_field(text, "tty-index");
		if (f && atoi(f) == index)
			found = atoi(de->d_name);
		free(text);
	}
	closedir(d);
	return found;
}

int rst_tty_refuse(const struct rst_fd_probe *p, char *why, size_t wl)
{
	unsigned ma = major(p->st->st_rdev), mi = minor(p->st->st_rdev);
	const char *f;

	if (ma == TTY_MAJOR_AUX && mi == 2) {
		f = rst_status_field(p->fdinfo, "tty-index");
		snprintf(why, wl,
			 "fd %d is the master of pty /dev/pts/%d (%s): the process is a terminal "
			 "emulator, and whatever runs on its pty stays behind; haul carries "
			 "only the slave side of a pty",
			 p->fd, f ? atoi(f) : -1, p->target);
		return -EOPNOTSUPP;
	}
	if (is_serial(ma, mi)) {
		snprintf(why, wl,
			 "fd %d is serial line %s: its modem lines, speed and the device itself "
			 "stay behind, and haul cannot carry them; close it before moving the "
			 "process",
			 p->fd, p->target);
		return -EOPNOTSUPP;
	}
	return 0;
}

/* Whether @rdev is the controlling terminal of @pid, and its group the foreground one. */
static void ctty_of(pid_t pid, dev_t rdev, bool *ctty, bool *fg)
{
	char *stat = NULL, *p;
	int pgrp = 0, tty_nr = 0, tpgid = 0;
	unsigned ma, mi;

	*ctty = *fg = false;
	if (rst_read_proc(pid, "stat", &stat, NULL))
		return;
	p = strrchr(stat, ')');
	/* ") S ppid pgrp session tty_nr tpgid" */
	if (p && sscanf(p + 1, " %*c %*d %d %*d %d %d", &pgrp, &tty_nr, &tpgid) == 3) {
		/* tty_nr is the kernel's new_encode_dev(): minor bits split around major's */
		ma = ((unsigned)tty_nr >> 8) & 0xfff;
		mi = ((unsigned)tty_nr & 0xff) | (((unsigned)tty_nr >> 12) & 0xfff00);
		/* /dev/tty (5:0) is the controlling terminal by definition */
		*ctty = tty_nr &&
			((ma == major(rdev) && mi == minor(rdev)) || rdev == makedev(5, 0));
		*fg = *ctty && tpgid == pgrp;
	}
	free(stat);
}

int rst_tty_read_termios(int sfd, Haul__Img__Termios **out)
{
	Haul__Img__Termios *tm;
	struct kterm kt;
	struct winsize ws;

	if (ioctl(sfd, TCGETS, &kt) < 0)
		return -errno;
	tm = malloc(sizeof(*tm));
	if (!tm)
		return -ENOMEM;
	haul__img__termios__init(tm);
	tm->iflag = kt.iflag;
	tm->oflag = kt.oflag;
	tm->cflag = kt.cflag;
	tm->lflag = kt.lflag;
	tm->line = kt.line;
	tm->cc.data = malloc(sizeof(kt.cc));
	if (!tm->cc.data) {
		free(tm);
		return -ENOMEM;
	}
	memcpy(tm->cc.data, kt.cc, sizeof(kt.cc));
	tm->cc.len = sizeof(kt.cc);
	if (ioctl(sfd, TIOCGWINSZ, &ws) == 0) {
		tm->has_rows = tm->has_cols = tm->has_xpixel = tm->has_ypixel = true;
		tm->rows = ws.ws_row;
		tm->cols = ws.ws_col;
		tm->xpixel = ws.ws_xpixel;
		tm->ypixel = ws.ws_ypixel;
	}
	*out = tm;
	return 0;
}

int rst_tty_dump(const struct rst_fd_probe *p, Haul__Img__External *e)
{
	int sfd, ret;

	sfd = rst_fd_copy(p->pid, p->fd);
	if (sfd < 0)
		return sfd;
	ret = rst_tty_read_termios(sfd, &e->termios);
	close(sfd);
	if (ret)
		return ret;
	e->has_ctty = e->has_foreground = true;
	{
		bool ctty, fg;

		ctty_of(p->pid, p->st->st_rdev, &ctty, &fg);
		e->ctty = ctty;
		e->foreground = fg;
	}
	return 0;
}

int rst_tty_set_ctty(struct rst_target *t, int fd, pid_t pgrp)
{
	int ret = rst_rcall(t, SYS_ioctl, fd, TIOCSCTTY, 0, 0, 0, 0, NULL);

	if (!ret && pgrp > 0) {
		int32_t g = pgrp;

		ret = rst_poke(t, rst_scratch(t), &g, sizeof(g));
		if (!ret)
			ret = rst_rcall(t, SYS_ioctl, fd, TIOCSPGRP, rst_scratch(t), 0, 0, 0, NULL);
	}
	return ret;
}

int rst_tty_set_termios(struct rst_target *t, int fd, const Haul__Img__Termios *tm)
{
	struct kterm kt;
	int ret;

	if (!tm)
		return 0;
	memset(&kt, 0, sizeof(kt));
	kt.iflag = tm->iflag;
	kt.oflag = tm->oflag;
	kt.cflag = tm->cflag;
	kt.lflag = tm->lflag;
	kt.line = (uint8_t)tm->line;
	memcpy(kt.cc, tm->cc.data, tm->cc.len < sizeof(kt.cc) ? tm->cc.len : sizeof(kt.cc));
	ret = rst_poke(t, rst_scratch(t), &kt, sizeof(kt));
	if (!ret)
		ret = rst_rcall(t, SYS_ioctl, fd, TCSETS, rst_scratch(t), 0, 0, 0, NULL);
	if (!ret && tm->has_rows && tm->has_cols) {
		struct winsize ws = {(unsigned short)tm->rows, (unsigned short)tm->cols,
				     (unsigned short)tm->xpixel, (unsigned short)tm->ypixel};

		ret = rst_poke(t, rst_scratch(t), &ws, sizeof(ws));
		if (!ret)
			ret = rst_rcall(t, SYS_ioctl, fd, TIOCSWINSZ, rst_scratch(t), 0, 0, 0,
					NULL);
	}
	return ret;
}

int rst_tty_apply(struct rst_target *t, int fd, const Haul__Img__External *e, bool settings)
{
	int ret;

	if (!e->termios)
		return 0;
	ret = settings ? rst_tty_set_termios(t, fd, e->termios) : 0;
	if (ret)
		return ret;
	/* One process leads its own session (the stub's setsid): no other group to set. */
	if (e->ctty && rst_tty_set_ctty(t, fd, 0))
		pr_warn("pid %d: fd %d: the new terminal is another session's controlling "
			"terminal (the shell that runs haul?); the process runs without one, so "
			"^C and ^Z on it do not reach it",
			(int)t->o.pid, fd);
	return 0;
}

int rst_tty_own(char *path, size_t len)
{
	for (int fd = 0; fd <= 2; fd++)
		if (isatty(fd) && ttyname_r(fd, path, len) == 0)
			return 0;
	return -ENOTTY;
}
