/*
 * fd_unix_carry.c - a pipe end, an eventfd, a memfd or a unix socket end
 * whose peer is closed, in flight (SCM_RIGHTS) in a unix socket's queue
 * that no process holds any more (sent, then closed by its sender): haul
 * makes it again and sends it with its message.
 *
 * Dump (on haul's duplicate from the peek, nothing consumed): a pipe end,
 * its end (F_GETFL), size and the bytes buffered in it, copied with tee(2)
 * from a new read end opened through /proc/self/fd (fd_pipe.c does the
 * same); an eventfd, its counter and semaphore mode from fdinfo; a memfd
 * (up to CARRY_MEMFD_MAX bytes), its name, contents, offset and seals; a
 * unix socket end (sock_diag: connected, unnamed, its peer closed: a peer
 * still open is held by a process or in flight too, refused), its type
 * and the stream bytes queued on it (peeked; messages or files queued on
 * it are refused).  One
 * scan of every /proc/PID/fd refuses, by name, a pipe whose either end a
 * process holds (its other end would be cut from it) or an eventfd a
 * process outside the tree holds (kcmp: the same open file; a memfd: its
 * inode open in any fd; a memfd only mapped elsewhere is not seen).  A queue
 * with two eventfds, or one pipe twice, no process holds is refused too:
 * each would be made again as a file of its own; so is a packet-mode pipe
 * (fd_pipe.c refuses those too).  Restore: pipe2, the
 * bytes written back, F_SETPIPE_SZ as far as fs.pipe-max-size allows, the
 * end kept; eventfd(count, flags); memfd_create, the contents written,
 * the seals added, opened again with its access mode through /proc,
 * offset set; a socketpair whose other end gets the bytes and is closed.
 * Haul's copy is closed once sent.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_int.h"

#define KIND_PIPE_R	1
#define KIND_PIPE_W	2
#define KIND_EVENTFD	3
#define KIND_MEMFD	4
#define KIND_USOCK	5
#define CARRY_MEMFD_MAX (64 << 20) /* a larger memfd in flight is refused */
#define KCMP_FILE_	0

int rst_unix_carry_kind(const struct stat *st, const char *link)
{
	struct rst_unix_info u;

	if (S_ISFIFO(st->st_mode) && !strncmp(link, "pipe:[", 6))
		return KIND_PIPE_R;
	if (!strcmp(link, "anon_inode:[eventfd]"))
		return KIND_EVENTFD;
	if (S_ISREG(st->st_mode) && !strncmp(link, "/memfd:", 7))
		return KIND_MEMFD;
	if (S_ISSOCK(st->st_mode) && !strncmp(link, "socket:[", 8) &&
	    !rst_unix_diag((uint32_t)st->st_ino, &u))
		return KIND_USOCK;
	return 0;
}

/*
 * Whether fd @ofd of @other (its /proc link @l, of the same text as ours)
 * is our @fd's file: any end of the same pipe, the same memfd inode, the
 * same open eventfd.
 */
static bool same_file(int fd, const char *l, bool pipe, bool memfd, pid_t other, int ofd)
{
	struct stat a, b;

	if (pipe)
		return true;
	if (memfd)
		return !fstat(fd, &a) && !stat(l, &b) && a.st_ino == b.st_ino &&
		       a.st_dev == b.st_dev;
	return syscall(SYS_kcmp, getpid(), other, KCMP_FILE_, fd, ofd) == 0;
}

/* A process (not haul) with an fd on the file of our fd @fd (@link): 0 none. */
static pid_t other_holder(int fd, const char *link, bool pipe, bool memfd, int *hfd)
{
	pid_t self = getpid(), found = 0;
	struct dirent *pe;
	DIR *proc = opendir("/proc");

	while (proc && !found && (pe = readdir(proc))) {
		pid_t other = atoi(pe->d_name);
		char path[64];
		struct dirent *de;
		DIR *d;

		if (other <= 0 || other == self)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fd", (int)other);
		d = opendir(path);
		while (d && !found && (de = readdir(d))) {
			char l[96], target[320];

			if (de->d_name[0] == '.')
				continue;
			snprintf(l, sizeof(l), "%s/%.16s", path, de->d_name);
			if (rst_read_link(l, target, sizeof(target)) || strcmp(target, link))
				continue;
			if (same_file(fd, l, pipe, memfd, other, atoi(de->d_name))) {
				found = other;
				*hfd = atoi(de->d_name);
			}
		}
		if (d)
			closedir(d);
	}
	if (proc)
		closedir(proc);
	return found;
}

/* The bytes buffered in the pipe of our fd @fd and its size, into @f (tee: not consumed). */
static int dump_pipe(int fd, Haul__Img__UnixInflight *f)
{
	int rfd, tp[2] = {-1, -1}, avail = 0, ret = 0;
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	rfd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (rfd < 0)
		return -errno;
	f->has_size = true;
	f->size = (uint32_t)fcntl(rfd, F_GETPIPE_SZ);
	if (ioctl(rfd, FIONREAD, &avail) < 0)
		ret = -errno;
	f->has_data = true;
	if (!ret && avail > 0) {
		f->data.data = malloc(avail);
		if (!f->data.data || pipe2(tp, O_CLOEXEC | O_NONBLOCK) < 0)
			ret = f->data.data ? -errno : -ENOMEM;
		if (!ret)
			fcntl(tp[1], F_SETPIPE_SZ, (int)f->size);
		if (!ret && (tee(rfd, tp[1], avail, SPLICE_F_NONBLOCK) != avail ||
			     read(tp[0], f->data.data, avail) != avail))
			ret = -EIO;
		if (!ret)
			f->data.len = avail;
	}
	if (tp[0] >= 0)
		close(tp[0]);
	if (tp[1] >= 0)
		close(tp[1]);
	close(rfd);
	return ret;
}

/* The counter and mode of our eventfd @fd, from fdinfo. */
static int dump_eventfd(int fd, Haul__Img__UnixInflight *f)
{
	char path[64], line[128];
	FILE *fi;
	int found = 0;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	fi = fopen(path, "re");
	if (!fi)
		return -errno;
	while (fgets(line, sizeof(line), fi)) {
		if (!strncmp(line, "eventfd-count:", 14)) {
			f->has_count = true;
			f->count = strtoull(line + 14, NULL, 16);
			found = 1;
		} else if (!strncmp(line, "eventfd-semaphore:", 18)) {
			f->has_semaphore = true;
			f->semaphore = atoi(line + 18) != 0;
		}
	}
	fclose(fi);
	return found ? 0 : -EIO;
}

/* The name, contents and seals of our memfd @fd into @f. */
static int dump_memfd(int fd, Haul__Img__UnixInflight *f)
{
	struct stat st;
	int seals;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_size > CARRY_MEMFD_MAX)
		return -EFBIG;
	seals = fcntl(fd, F_GET_SEALS);
	f->has_seals = seals > 0;
	f->seals = seals > 0 ? (uint32_t)seals : 0;
	f->has_data = true;
	f->data.data = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!f->data.data)
		return -ENOMEM;
	for (off_t at = 0; at < st.st_size;) {
		ssize_t n = pread(fd, f->data.data + at, (size_t)(st.st_size - at), at);

		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		at += n;
	}
	f->data.len = (size_t)st.st_size;
	return 0;
}

/*
 * Our unix socket @fd (@link), connected, unnamed, its peer closed: its type
 * and, on a stream, the bytes queued on it (peeked, with no file in flight).
 */
static int dump_usock(int fd, const char *link, Haul__Img__UnixInflight *f, const char **why)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} ctl;
	struct msghdr m = {.msg_control = ctl.b, .msg_controllen = sizeof(ctl.b)};
	struct rst_unix_info u;
	struct iovec iov;
	ssize_t n;

	if (rst_unix_diag((uint32_t)strtoul(link + 8, NULL, 10), &u))
		return -EIO;
	f->has_sock_type = true;
	f->sock_type = u.type;
	*why = u.named	      ? "it has a name"
	       : u.state != 1 ? "it is not connected"
	       : u.peer ? "its peer is still open (a process holds it, or it is in flight too)"
	       : u.rqlen && u.type != SOCK_STREAM ? "messages are queued on it"
						  : NULL;
	if (*why)
		return -EOPNOTSUPP;
	f->has_data = true;
	if (!u.rqlen)
		return 0;
	f->data.data = malloc(u.rqlen);
	if (!f->data.data)
		return -ENOMEM;
	iov.iov_base = f->data.data;
	iov.iov_len = u.rqlen;
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	n = recvmsg(fd, &m, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n >= 0 && (CMSG_FIRSTHDR(&m) || (m.msg_flags & MSG_CTRUNC))) {
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
			for (size_t i = 0; c->cmsg_type == SCM_RIGHTS &&
					   i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			     i++) {
				int x;

				memcpy(&x, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				close(x);
			}
		*why = "files are in flight on it too";
		return -EOPNOTSUPP;
	}
	if (n != (ssize_t)u.rqlen)
		return n < 0 ? -errno : -EIO;
	f->data.len = (size_t)n;
	return 0;
}

/* Whether @o already carries a file no process holds that @f could be (see the top). */
static bool seen_twice(const Haul__Img__UnixPairFile *o, const Haul__Img__UnixInflight *f)
{
	for (size_t i = 0; i < o->n_inflight; i++) {
		const Haul__Img__UnixInflight *e = o->inflight[i];

		if (e == f || !e->has_kind)
			continue;
		if (e->kind == KIND_EVENTFD && f->kind == KIND_EVENTFD)
			return true;
		if (e->kind != KIND_EVENTFD && f->kind != KIND_EVENTFD && !strcmp(e->path, f->path))
			return true; /* one pipe, or memfds of one name */
	}
	return false;
}

int rst_unix_carry_dump(pid_t pid, int fd, const char *link, const Haul__Img__UnixPairFile *o,
			Haul__Img__UnixInflight *f)
{
	bool pipe = !strncmp(link, "pipe:[", 6), memfd = !strncmp(link, "/memfd:", 7);
	bool sock = !strncmp(link, "socket:[", 8);
	const char *why = NULL;
	int hfd = -1, ret;
	pid_t other;

	f->has_kind = true;
	if (memfd)
		f->kind = KIND_MEMFD;
	else if (sock)
		f->kind = KIND_USOCK;
	else if (pipe)
		f->kind = (f->flags & O_ACCMODE) == O_WRONLY ? KIND_PIPE_W : KIND_PIPE_R;
	else
		f->kind = KIND_EVENTFD;
	other = other_holder(fd, link, pipe, memfd, &hfd);
	if (other) {
		pr_err("unix socket %llu of pid %d has %s in flight (SCM_RIGHTS) that pid %d holds "
		       "too (fd %d)%s: not carried; retry once the process has read it",
		       (unsigned long long)o->ino, (int)pid, link, (int)other, hfd,
		       pipe ? ", an end of the same pipe" : "");
		return -EOPNOTSUPP;
	}
	if (pipe && (f->flags & O_DIRECT)) {
		pr_err("unix socket %llu of pid %d has a packet-mode pipe %s in flight (SCM_RIGHTS) "
		       "that no process holds: its packet boundaries are not carried; retry once "
		       "the process has read it",
		       (unsigned long long)o->ino, (int)pid, link);
		return -EOPNOTSUPP;
	}
	if (seen_twice(o, f)) {
		pr_err("unix socket %llu of pid %d has %s in flight (SCM_RIGHTS) more than once "
		       "(or two eventfds) that no process holds: haul would make each again as a "
		       "file of its own; retry once the process has read them",
		       (unsigned long long)o->ino, (int)pid, link);
		return -EOPNOTSUPP;
	}
	if (sock)
		ret = dump_usock(fd, link, f, &why);
	else
		ret = memfd ? dump_memfd(fd, f) : pipe ? dump_pipe(fd, f) : dump_eventfd(fd, f);
	if (ret == -EOPNOTSUPP) {
		pr_err("unix socket %llu of pid %d has unix socket %s in flight (SCM_RIGHTS) that "
		       "no process holds, and %s: not carried (haul carries a connected unnamed "
		       "one whose peer is closed); retry once the process has read it",
		       (unsigned long long)o->ino, (int)pid, link, why);
		return ret;
	}
	if (ret == -EFBIG) {
		pr_err("unix socket %llu of pid %d has %s in flight (SCM_RIGHTS), larger than the "
		       "%d MiB haul carries in an image: retry once the process has read it",
		       (unsigned long long)o->ino, (int)pid, link, CARRY_MEMFD_MAX >> 20);
		return -EOPNOTSUPP;
	}
	if (ret)
		pr_err("cannot read %s in flight on unix socket %llu of pid %d: %s", link,
		       (unsigned long long)o->ino, (int)pid, strerror(-ret));
	return ret;
}

/* A pipe like @f's, its bytes written back; the end @f was. */
static int make_pipe(const Haul__Img__UnixInflight *f)
{
	int p[2], keep;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	/* as far as fs.pipe-max-size allows (no CAP_SYS_RESOURCE): the bytes fit the old size */
	if (f->has_size && f->size)
		fcntl(p[1], F_SETPIPE_SZ, (int)f->size);
	if (f->has_data && f->data.len &&
	    write(p[1], f->data.data, f->data.len) != (ssize_t)f->data.len) {
		int ret = -errno ? -errno : -EIO;

		close(p[0]);
		close(p[1]);
		return ret;
	}
	keep = f->kind == KIND_PIPE_W ? 1 : 0;
	close(p[1 - keep]);
	if (fcntl(p[keep], F_SETFL, (int)(f->flags & O_NONBLOCK)) < 0) {
		close(p[keep]);
		return -errno;
	}
	return p[keep];
}

/* A memfd like @f: its name, contents, seals, access mode and offset. */
static int make_memfd(const Haul__Img__UnixInflight *f)
{
	char name[256], path[64];
	int fd, ofd = -1, ret = 0;
	size_t len = strlen(f->path + 7);

	/* "/memfd:NAME", as the link read (" (deleted)" already stripped or not) */
	if (len >= 10 && !strcmp(f->path + 7 + len - 10, " (deleted)"))
		len -= 10;
	snprintf(name, sizeof(name), "%.*s", (int)len, f->path + 7);
	fd = memfd_create(name, MFD_CLOEXEC | (f->seals ? MFD_ALLOW_SEALING : 0));
	if (fd < 0)
		return -errno;
	if (f->has_data && f->data.len &&
	    write(fd, f->data.data, f->data.len) != (ssize_t)f->data.len)
		ret = -errno ? -errno : -EIO;
	if (!ret && f->seals && fcntl(fd, F_ADD_SEALS, (int)f->seals) < 0)
		ret = -errno;
	if (!ret) {
		/* the access mode it had: a new open of the same file through /proc */
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		ofd = open(path, (int)(f->flags & (O_ACCMODE | O_APPEND | O_NONBLOCK)) | O_CLOEXEC);
		if (ofd < 0 || lseek(ofd, (off_t)f->pos, SEEK_SET) < 0)
			ret = -errno;
	}
	close(fd);
	if (ret && ofd >= 0)
		close(ofd);
	return ret ? ret : ofd;
}

/* A unix socket end like @f: a socketpair whose other end gets its bytes, then closes. */
static int make_usock(const Haul__Img__UnixInflight *f)
{
	int sv[2], ret = 0;

	if (socketpair(AF_UNIX, (int)f->sock_type | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	if (f->has_data && f->data.len &&
	    send(sv[1], f->data.data, f->data.len, MSG_DONTWAIT | MSG_NOSIGNAL) !=
		    (ssize_t)f->data.len)
		ret = -errno ? -errno : -EIO;
	close(sv[1]);
	if (!ret && fcntl(sv[0], F_SETFL, (int)(f->flags & O_NONBLOCK)) < 0)
		ret = -errno;
	if (ret)
		close(sv[0]);
	return ret ? ret : sv[0];
}

int rst_unix_carry_make(const Haul__Img__UnixPairFile *u, const Haul__Img__UnixInflight *f)
{
	int fd;

	if (f->kind == KIND_USOCK)
		fd = make_usock(f);
	else if (f->kind == KIND_MEMFD)
		fd = make_memfd(f);
	else if (f->kind == KIND_EVENTFD)
		fd = eventfd((unsigned int)f->count,
			     EFD_CLOEXEC | (f->flags & O_NONBLOCK ? EFD_NONBLOCK : 0) |
				     (f->semaphore ? EFD_SEMAPHORE : 0));
	else
		fd = make_pipe(f);
	if (fd < 0) {
		int ret = fd == -1 ? -errno : fd;

		pr_err("cannot make %s again for the message of unix socket %llu that carried it: "
		       "%s",
		       f->path, (unsigned long long)u->ino, strerror(-ret));
		return ret;
	}
	return fd;
}
