/*
 * fd_lock.c - file locks and leases held through an fd: precheck, dump and
 * the call that takes them again in the restored process.
 *
 * The source is /proc/PID/fdinfo/N, whose "lock:" lines list every lock of
 * the file that this open file description (OFD) carries: flock and OFD
 * locks and leases owned by the OFD, and POSIX locks owned by the process
 * that were set through it (fs/locks.c show_fd_locks: flc_file == this
 * file).  A line reads
 *   lock:\t1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF
 *   lock:\t2: LEASE  ACTIVE    READ  1234 08:01:5678 0 EOF
 * class, mode (ADVISORY, or a lease's ACTIVE/BREAKING/BREAKER), type,
 * owner pid, dev:ino, first byte and last byte (EOF: to the end).
 *
 * Carried: POSIX, OFD and flock locks (read or write) and ACTIVE read or
 * write leases.  Refused at the precheck, by fd and file: a lease being
 * broken (its breaker waits on it), delegations, mandatory locks and any
 * class or type this code does not know.  They are taken again by calls
 * injected into the restored process after all its fds exist (a POSIX
 * lock dies with the close of any fd of its file, and restoring fds opens
 * and closes temporaries): fcntl F_SETLK / F_OFD_SETLK, flock with
 * LOCK_NB, fcntl F_SETLEASE.  Non-blocking: a lock someone else took
 * meanwhile fails the restore with -EAGAIN, naming the fd.
 */
#define LOG_PREFIX "lock: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/syscall.h>

#include "common/log.h"
#include "restore/restore_int.h"

#ifndef F_OFD_SETLK
#define F_OFD_SETLK 37
#endif

struct lock_line {
	Haul__Img__LockKind kind;
	uint32_t type;
	uint64_t start, len;
	const char *bad; /* why it cannot be carried, NULL when it can */
};

/* Parse one "lock:" line (the text after "lock:"). */
static void parse_line(const char *l, struct lock_line *o)
{
	char cls[16], mode[16], type[16], end[32];
	unsigned long long start = 0;
	int n;

	memset(o, 0, sizeof(*o));
	n = sscanf(l, " %*d: %15s %15s %15s %*d %*s %llu %31s", cls, mode, type, &start, end);
	if (n < 3) {
		o->bad = "an unreadable lock line";
		return;
	}
	if (!strcmp(cls, "POSIX"))
		o->kind = HAUL__IMG__LOCK_KIND__LOCK_POSIX;
	else if (!strcmp(cls, "OFDLCK"))
		o->kind = HAUL__IMG__LOCK_KIND__LOCK_OFD;
	else if (!strcmp(cls, "FLOCK"))
		o->kind = HAUL__IMG__LOCK_KIND__LOCK_FLOCK;
	else if (!strcmp(cls, "LEASE"))
		o->kind = HAUL__IMG__LOCK_KIND__LOCK_LEASE;
	else if (!strcmp(cls, "DELEG"))
		o->bad = "an NFS delegation";
	else
		o->bad = "a lock of a kind haul does not know";
	if (o->bad)
		return;
	if (o->kind == HAUL__IMG__LOCK_KIND__LOCK_LEASE) {
		if (strcmp(mode, "ACTIVE")) {
			o->bad = "a lease being broken";
			return;
		}
	} else if (strcmp(mode, "ADVISORY")) {
		o->bad = "a mandatory lock";
		return;
	}
	if (!strcmp(type, "READ"))
		o->type = F_RDLCK;
	else if (!strcmp(type, "WRITE"))
		o->type = F_WRLCK;
	else {
		o->bad = "a lock of an unknown type";
		return;
	}
	if (o->kind != HAUL__IMG__LOCK_KIND__LOCK_POSIX &&
	    o->kind != HAUL__IMG__LOCK_KIND__LOCK_OFD)
		return;
	if (n < 5) {
		o->bad = "a lock without a range";
		return;
	}
	o->start = start;
	if (strcmp(end, "EOF")) {
		unsigned long long last = strtoull(end, NULL, 10);

		if (last < start) {
			o->bad = "a lock with an inverted range";
			return;
		}
		o->len = last - start + 1;
	}
}

/* Call @fn on every "lock:" line of @fdinfo; stops at its first nonzero return. */
static int for_each_lock(const char *fdinfo, int (*fn)(const struct lock_line *, void *), void *arg)
{
	int ret = 0;

	for (const char *l = fdinfo; !ret && l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		struct lock_line ll;

		if (strncmp(l, "lock:", 5))
			continue;
		parse_line(l + 5, &ll);
		ret = fn(&ll, arg);
	}
	return ret;
}

struct check_arg {
	int fd;
	const char *path;
	char *why;
	size_t whylen;
};

static int check_one(const struct lock_line *ll, void *arg)
{
	struct check_arg *a = arg;

	if (!ll->bad)
		return 0;
	snprintf(a->why, a->whylen,
		 "fd %d (%.256s) holds %s, which haul cannot take again on restore; release it "
		 "or let the process finish first",
		 a->fd, a->path, ll->bad);
	return -EOPNOTSUPP;
}

int rst_lock_check(int fd, const char *path, const char *fdinfo, char *why, size_t whylen)
{
	struct check_arg a = {fd, path, why, whylen};

	return for_each_lock(fdinfo, check_one, &a);
}

static int count_one(const struct lock_line *ll, void *arg)
{
	(void)ll;
	(*(size_t *)arg)++;
	return 0;
}

/* Where the locks of one fd go (its FileObject, allocated for @n). */
struct lock_dump {
	Haul__Img__FileObject *o;
	int fd;
	size_t n;
};

static int dump_one(const struct lock_line *ll, void *arg)
{
	struct lock_dump *d = arg;
	Haul__Img__FileObject *o = d->o;
	Haul__Img__FileLock *l;

	if (ll->bad) {
		pr_err("fd %d (%s) holds %s (it appeared after the precheck); the dump stops",
		       d->fd, o->path, ll->bad);
		return -EOPNOTSUPP;
	}
	if (o->n_locks == d->n)
		return -EIO; /* both passes read one text: cannot differ */
	l = malloc(sizeof(*l));
	if (!l)
		return -ENOMEM;
	haul__img__file_lock__init(l);
	l->kind = ll->kind;
	l->type = ll->type;
	if (ll->kind == HAUL__IMG__LOCK_KIND__LOCK_POSIX ||
	    ll->kind == HAUL__IMG__LOCK_KIND__LOCK_OFD) {
		l->has_start = l->has_len = true;
		l->start = ll->start;
		l->len = ll->len;
	}
	o->locks[o->n_locks++] = l;
	return 0;
}

/* Each lock its own allocation: the FileObject is freed with free_unpacked. */
int rst_lock_dump(const char *fdinfo, int fd, Haul__Img__FileObject *o)
{
	struct lock_dump d = {.o = o, .fd = fd};

	for_each_lock(fdinfo, count_one, &d.n);
	if (!d.n)
		return 0;
	o->locks = calloc(d.n, sizeof(*o->locks));
	if (!o->locks)
		return -ENOMEM;
	return for_each_lock(fdinfo, dump_one, &d);
}

/* struct flock of x86_64: short type, whence; pad; off_t start, len; pid_t pid; pad. */
struct flock64_x86 {
	int16_t l_type;
	int16_t l_whence;
	int32_t pad0;
	int64_t l_start;
	int64_t l_len;
	int32_t l_pid;
	int32_t pad1;
};

int rst_lock_call(const Haul__Img__FileLock *l, int fd, struct rst_lock_call *c)
{
	struct flock64_x86 fl = {0};

	memset(c, 0, sizeof(*c));
	c->args[0] = (uint64_t)fd;
	switch (l->kind) {
	case HAUL__IMG__LOCK_KIND__LOCK_POSIX:
	case HAUL__IMG__LOCK_KIND__LOCK_OFD:
		if (l->type != F_RDLCK && l->type != F_WRLCK)
			return -EINVAL;
		fl.l_type = (int16_t)l->type;
		fl.l_whence = SEEK_SET;
		fl.l_start = (int64_t)l->start;
		fl.l_len = (int64_t)l->len;
		memcpy(c->buf, &fl, sizeof(fl));
		c->buflen = sizeof(fl);
		c->nr = SYS_fcntl;
		c->args[1] = l->kind == HAUL__IMG__LOCK_KIND__LOCK_POSIX ? F_SETLK : F_OFD_SETLK;
		c->buf_arg = 2;
		return 0;
	case HAUL__IMG__LOCK_KIND__LOCK_FLOCK:
		c->nr = SYS_flock;
		c->args[1] = (l->type == F_WRLCK ? LOCK_EX : LOCK_SH) | LOCK_NB;
		c->buf_arg = -1;
		return 0;
	case HAUL__IMG__LOCK_KIND__LOCK_LEASE:
		if (l->type != F_RDLCK && l->type != F_WRLCK)
			return -EINVAL;
		c->nr = SYS_fcntl;
		c->args[1] = F_SETLEASE;
		c->args[2] = l->type;
		c->buf_arg = -1;
		return 0;
	default:
		return -EINVAL;
	}
}

const char *rst_lock_name(const Haul__Img__FileLock *l)
{
	switch (l->kind) {
	case HAUL__IMG__LOCK_KIND__LOCK_POSIX:
		return "POSIX lock";
	case HAUL__IMG__LOCK_KIND__LOCK_OFD:
		return "OFD lock";
	case HAUL__IMG__LOCK_KIND__LOCK_FLOCK:
		return "flock";
	case HAUL__IMG__LOCK_KIND__LOCK_LEASE:
		return "lease";
	default:
		return "lock";
	}
}
