/*
 * fd_unix_msgs.c - the messages queued on a datagram or seqpacket end of
 * a unix pair of the process, boundaries kept, and the files in flight
 * with them (SCM_RIGHTS).
 *
 * Dump: MSG_PEEK sees only the first message; SO_PEEK_OFF (set on the
 * socket for the time of the dump, the process being stopped, then put
 * back) moves each peek on to the next one.  The peek hands haul a
 * duplicate of every file in flight: a regular file with a path that no
 * process of the tree holds too is recorded by path, flags and offset; a
 * file of any kind that a process restored before the queue's owner (tree
 * order) holds too is recorded as that process's fd; a pipe end or an
 * eventfd no process holds by what it holds (fd_unix_carry.c); any other
 * (the owner or a later process holds it: its open file description would
 * split; another kind no process holds) fails the dump by name.  Duplicates are closed.  Restore: once every
 * fd exists, each message is sent again, in order, through the other end
 * of the rebuilt pair (haul's pidfd_getfd copy of it), its files opened
 * again by haul (path, flags, offset: haul's opens, with haul's
 * credentials, in haul's mount namespace), borrowed from their restored holder (pidfd_getfd in
 * the target, then in haul) or made again (fd_unix_carry.c), sent with it, then closed.
 */
#include <dirent.h>
#include <errno.h>
#include <linux/sockios.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"
#include "restore/tree_int.h"

#define MSG_MAX	   (1 << 20) /* a larger message fails the dump */
#define MSGS_MAX   65536     /* more messages fail the dump */
#define KCMP_FILE_ 0

/* The fd of @pid that is the open file description of our fd @fd (inode @st), or -1. */
static int held_by(pid_t pid, int fd, const struct stat *st)
{
	char dir[64], path[96];
	struct dirent *d;
	int found = -1;
	DIR *fds;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	fds = opendir(dir);
	while (fds && found < 0 && (d = readdir(fds))) {
		struct stat s;

		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%.16s", dir, d->d_name);
		if (!stat(path, &s) && s.st_dev == st->st_dev && s.st_ino == st->st_ino &&
		    syscall(SYS_kcmp, getpid(), pid, KCMP_FILE_, fd, atoi(d->d_name)) == 0)
			found = atoi(d->d_name);
	}
	if (fds)
		closedir(fds);
	return found;
}

/*
 * Which process of the tree holds the file in flight our fd @fd (inode @st)
 * is, on queue owner @pid: 0 none (its fd in *@hfd, holder in *@hpid), or
 * -EOPNOTSUPP (logged) when @pid itself or a process restored after it
 * holds it (its fd would not exist yet when the queue is refilled).
 */
static int holder_of(pid_t pid, int fd, const struct stat *st, const char *path,
		     const Haul__Img__UnixPairFile *o, pid_t *hpid, int *hfd)
{
	const pid_t *m;
	size_t nm = rst_ext_moving_pids(&m);
	bool before = true;

	*hpid = 0;
	*hfd = held_by(pid, fd, st);
	for (size_t i = 0; i < nm && *hfd < 0; i++) {
		if (m[i] == pid) {
			before = false;
			continue;
		}
		*hfd = held_by(m[i], fd, st);
		*hpid = m[i];
	}
	if (*hfd < 0)
		return 0;
	if (*hpid && before)
		return 0;
	pr_err("unix socket %llu of pid %d has %s in flight (SCM_RIGHTS) while pid %d (%s) "
	       "holds the same open file as its fd %d: its offset would split; retry once it "
	       "has been read",
	       (unsigned long long)o->ino, (int)pid, path, (int)(*hpid ? *hpid : pid),
	       *hpid ? "restored after it" : "itself", *hfd);
	return -EOPNOTSUPP;
}

/* What a file in flight is, in words, for a refusal. */
static const char *kind_of(const struct stat *st, const char *path)
{
	if (S_ISSOCK(st->st_mode))
		return "a socket";
	if (S_ISCHR(st->st_mode))
		return "a character device";
	if (S_ISDIR(st->st_mode))
		return "a directory";
	if (!strncmp(path, "anon_inode:", 11))
		return "an anonymous-inode file";
	return S_ISREG(st->st_mode) ? "a deleted or unreachable file" : "a special file";
}

/* Our duplicate @fd of a file in flight with message @msg of @o: recorded, or refused. */
static int note_inflight(pid_t pid, int fd, Haul__Img__UnixPairFile *o, uint32_t msg)
{
	Haul__Img__UnixInflight **v, *f;
	char link[64], path[4096];
	struct stat st;
	bool carry;
	pid_t hpid;
	int hfd, ret;
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (fstat(fd, &st) || n <= 0)
		return -errno;
	path[n] = '\0';
	ret = holder_of(pid, fd, &st, path, o, &hpid, &hfd);
	if (ret)
		return ret;
	carry = hfd < 0 && (!S_ISREG(st.st_mode) || path[0] != '/' || st.st_nlink == 0);
	if (carry && !rst_unix_carry_kind(&st, path)) {
		pr_err("unix socket %llu of pid %d has %s in flight (SCM_RIGHTS, %s) that no "
		       "process of the tree holds, which haul does not carry (it carries regular "
		       "files with a path, pipe ends, eventfds, memfds and unix socket ends whose "
		       "peer is closed): retry once the process has read it, or keep it open in "
		       "the sender",
		       (unsigned long long)o->ino, (int)pid, kind_of(&st, path), path);
		return -EOPNOTSUPP;
	}
	v = realloc(o->inflight, (o->n_inflight + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	o->inflight = v;
	f = malloc(sizeof(*f));
	if (!f)
		return -ENOMEM;
	haul__img__unix_inflight__init(f);
	v[o->n_inflight++] = f;
	f->msg = msg;
	f->flags = (uint32_t)fcntl(fd, F_GETFL);
	f->pos = S_ISREG(st.st_mode) ? (uint64_t)lseek(fd, 0, SEEK_CUR) : 0;
	if (hfd >= 0) {
		f->has_holder_pid = f->has_holder_fd = true;
		f->holder_pid = hpid;
		f->holder_fd = hfd;
	}
	f->path = strdup(path);
	if (!f->path)
		return -ENOMEM;
	/* made again by haul at the restore (fd_unix_carry.c) */
	return carry ? rst_unix_carry_dump(pid, fd, path, o, f) : 0;
}

size_t rst_unix_cmsg_fds(struct msghdr *m, int fds[RST_UNIX_FDS_MAX])
{
	size_t n = 0;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++)
			if (n < RST_UNIX_FDS_MAX)
				memcpy(&fds[n++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	return n;
}

size_t rst_unix_drop_fds(struct msghdr *m)
{
	int fds[RST_UNIX_FDS_MAX];
	size_t n = rst_unix_cmsg_fds(m, fds);

	for (size_t i = 0; i < n; i++)
		close(fds[i]);
	return n;
}

/* The files a peek handed us, noted with message @msg of @o (or refused); all closed. */
int rst_unix_take_fds(pid_t pid, struct msghdr *m, Haul__Img__UnixPairFile *o, uint32_t msg)
{
	int fds[RST_UNIX_FDS_MAX], ret = 0;
	size_t n = rst_unix_cmsg_fds(m, fds);

	for (size_t i = 0; i < n; i++) {
		if (!ret)
			ret = note_inflight(pid, fds[i], o, msg);
		close(fds[i]);
	}
	return ret;
}

/*
 * Peek the next message of @sfd into a new o->msgs entry; 1 when there is
 * none left.  @left: the bytes of the queue not peeked yet (SIOCINQ sums a
 * seqpacket queue), updated.
 */
static int peek_one(pid_t pid, int sfd, Haul__Img__UnixPairFile *o, char *buf, long *left)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * RST_UNIX_FDS_MAX)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {buf, MSG_MAX};
	struct msghdr m = {.msg_iov = &iov,
			   .msg_iovlen = 1,
			   .msg_control = ctl.b,
			   .msg_controllen = sizeof(ctl.b)};
	ProtobufCBinaryData *nm;
	ssize_t n;
	int ret;

	n = recvmsg(sfd, &m, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return errno == EAGAIN ? 1 : -errno;
	ret = rst_unix_take_fds(pid, &m, o, (uint32_t)o->n_msgs);
	if (!ret && (m.msg_flags & MSG_CTRUNC)) {
		pr_err("unix socket %llu has more file descriptors in flight (SCM_RIGHTS) with one "
		       "message than haul carries: retry once the process has read them",
		       (unsigned long long)o->ino);
		ret = -EOPNOTSUPP;
	}
	if (ret)
		return ret;
	/*
	 * A seqpacket end shut for reads (its own shutdown, or the peer's for
	 * writes) peeks 0 at the end of its queue; a datagram end answers EAGAIN
	 * there.  0 is the end only once every queued byte was peeked (@left): a
	 * zero-length message among them would otherwise be taken for it.
	 */
	if (n == 0 && o->type == SOCK_SEQPACKET && (o->shutdown & 1) && !*left)
		return 1;
	if (n == 0 || n > MSG_MAX || o->n_msgs >= MSGS_MAX) {
		pr_err("unix socket %llu has a message of %zd bytes queued (or more than %d): not "
		       "carried; retry once the process has read it",
		       (unsigned long long)o->ino, n, MSGS_MAX);
		return -EOPNOTSUPP;
	}
	nm = realloc(o->msgs, (o->n_msgs + 1) * sizeof(*nm));
	if (!nm)
		return -ENOMEM;
	o->msgs = nm;
	nm[o->n_msgs].data = malloc(n);
	if (!nm[o->n_msgs].data)
		return -ENOMEM;
	memcpy(nm[o->n_msgs].data, buf, n);
	nm[o->n_msgs++].len = n;
	*left -= n;
	return 0;
}

int rst_unix_peek_start(int sfd, int *old)
{
	socklen_t ol = sizeof(*old);
	int zero = 0;

	if (getsockopt(sfd, SOL_SOCKET, SO_PEEK_OFF, old, &ol) < 0 ||
	    setsockopt(sfd, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero)) < 0)
		return -errno;
	return 0;
}

void rst_unix_peek_end(int sfd, unsigned long long ino, int old)
{
	if (setsockopt(sfd, SOL_SOCKET, SO_PEEK_OFF, &old, sizeof(old)) < 0)
		pr_warn("cannot put SO_PEEK_OFF of unix socket %llu back to %d: %s", ino, old,
			strerror(errno));
}

int rst_unix_peek_msgs(pid_t pid, int sfd, Haul__Img__UnixPairFile *o)
{
	long left = 0;
	int old = -1, ret;
	char *buf = malloc(MSG_MAX);

	if (!buf)
		return -ENOMEM;
	ret = rst_unix_peek_start(sfd, &old);
	if (ret) {
		pr_err("cannot peek past the first message of unix socket %llu (SO_PEEK_OFF): %s",
		       (unsigned long long)o->ino, strerror(-ret));
		free(buf);
		return ret;
	}
	if (ioctl(sfd, SIOCINQ, &left) < 0)
		left = -1; /* unknown: a 0-byte peek stays a refused message */
	while (!ret)
		ret = peek_one(pid, sfd, o, buf, &left);
	rst_unix_peek_end(sfd, o->ino, old);
	free(buf);
	return ret == 1 ? 0 : ret;
}

/* Haul's fd on the file in flight @f of @u: the holder's open file, or a new open. */
static int inflight_fd(struct rst_target *t, int park, const Haul__Img__UnixPairFile *u,
		       const Haul__Img__UnixInflight *f)
{
	int fd, got, ret;

	if (f->has_holder_pid && f->has_holder_fd) {
		/* borrowed in the target (the holder's pid is its there), then taken */
		ret = rst_share_getfd(t, park, f->holder_pid, f->holder_fd, &got);
		if (ret) {
			pr_err("cannot take fd %d of pid %d (%s) to send it again with the message of "
			       "unix socket %llu: %s",
			       f->holder_fd, f->holder_pid, f->path, (unsigned long long)u->ino,
			       strerror(-ret));
			return ret;
		}
		fd = (int)syscall(SYS_pidfd_getfd, t->pidfd, got, 0);
		ret = fd < 0 ? -errno : 0;
		rst_rcall(t, SYS_close, (uint64_t)got, 0, 0, 0, 0, 0, NULL);
		return fd < 0 ? ret : fd;
	}
	if (f->has_kind)
		return rst_unix_carry_make(u, f);
	fd = open(f->path, (int)(f->flags & ~(O_CREAT | O_EXCL | O_TRUNC)) | O_CLOEXEC);
	if (fd < 0 || lseek(fd, (off_t)f->pos, SEEK_SET) < 0) {
		ret = -errno;
		pr_err("cannot open %s again for the message of unix socket %llu that carried "
		       "it: %s",
		       f->path, (unsigned long long)u->ino, strerror(-ret));
		if (fd >= 0)
			close(fd);
		return ret;
	}
	return fd;
}

int rst_unix_send_msg(struct rst_target *t, int park, int lfd, const Haul__Img__UnixPairFile *u,
		      size_t i)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * RST_UNIX_FDS_MAX)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {u->msgs[i].data, u->msgs[i].len};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	int fds[RST_UNIX_FDS_MAX], nfds = 0, ret = 0;
	ssize_t n;

	for (size_t k = 0; k < u->n_inflight && !ret; k++) {
		const Haul__Img__UnixInflight *f = u->inflight[k];
		int fd;

		if (f->msg != i)
			continue;
		if (nfds == RST_UNIX_FDS_MAX) {
			ret = -E2BIG;
			break;
		}
		fd = inflight_fd(t, park, u, f);
		if (fd < 0)
			ret = fd;
		else
			fds[nfds++] = fd;
	}
	if (!ret && nfds) {
		m.msg_control = ctl.b;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		CMSG_FIRSTHDR(&m)->cmsg_level = SOL_SOCKET;
		CMSG_FIRSTHDR(&m)->cmsg_type = SCM_RIGHTS;
		CMSG_FIRSTHDR(&m)->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(CMSG_FIRSTHDR(&m)), fds, sizeof(int) * nfds);
	}
	if (!ret) {
		n = sendmsg(lfd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n != (ssize_t)u->msgs[i].len)
			ret = n < 0 ? -errno : -EMSGSIZE;
	}
	for (int k = 0; k < nfds; k++)
		close(fds[k]);
	return ret;
}

/* Send @u's messages, in order, into remote fd @fd (the other end of its pair). */
static int send_msgs(struct rst_target *t, int park, int fd, const Haul__Img__UnixPairFile *u)
{
	int lfd, ret = 0;

	if (!u || !u->n_msgs)
		return 0;
	lfd = (int)syscall(SYS_pidfd_getfd, t->pidfd, fd, 0);
	if (lfd < 0)
		return -errno;
	for (size_t i = 0; i < u->n_msgs && !ret; i++)
		ret = rst_unix_send_msg(t, park, lfd, u, i);
	close(lfd);
	if (ret)
		pr_err("cannot queue the %zu messages of unix socket %llu again: %s", u->n_msgs,
		       (unsigned long long)u->ino, strerror(-ret));
	return ret;
}

int rst_unix_refill_msgs(struct rst_target *t, struct rst_fd_rctx *x)
{
	int ret = 0;

	for (size_t i = 0; i < x->npipes && !ret; i++) {
		const struct rst_tpipe *p = &x->pipes[i];

		if (!p->sock)
			continue;
		for (size_t k = 0; k < x->ps->n_files && !ret; k++) {
			const Haul__Img__UnixPairFile *u = x->ps->files[k]->unix_pair;

			if (!u || (u->ino != p->id && u->peer != p->id))
				continue;
			/* what the end had to read goes in through the other end */
			ret = send_msgs(t, x->park, u->ino == p->id ? p->w : p->r, u);
		}
	}
	return ret;
}
