/*
 * fd_unix_stream.c - files in flight (SCM_RIGHTS) in the queue of a unix
 * stream socket: the queue is carried cut where they ride, so the reader
 * gets them with the same bytes after the restore.
 *
 * Kernel behaviour (Linux 6.18, measured): a stream queue is a list of
 * buffers (skbs), one or more per send; the files of a send ride with its
 * first buffer.  A read hands them over with the first byte of that buffer
 * and ends at its end ("AAA", "BB"+fd, "CCC": recv(3) reads "AAA" alone,
 * recv(100) then "BB" and the fd).  MSG_PEEK cannot show where such a
 * buffer starts: a peek that ends anywhere walks on to the next buffer
 * with files and reports them.  So the buffers' lengths and file counts are
 * read with a BPF unix iterator (bpf/unix_skbs.bpf.c; the process is
 * frozen), and each piece is then peeked at its offset (SO_PEEK_OFF, put
 * back after): a run of plain bytes (the files a peek reports past its end
 * are closed), then each buffer with files alone, its files noted with it
 * (fd_unix_msgs.c: by path, or as the fd of the process that holds them).
 * Nothing is consumed: the source's queue is untouched, for a rollback.
 * The pieces are UnixPairFile.msgs; the restore sends each with one
 * sendmsg, in order (rst_unix_send_msg), which makes one buffer per piece
 * up to the kernel's buffer size, as the original send did.  Without the
 * iterator (no BPF, no BTF) a stream queue with files in flight is refused
 * by name.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "common/log.h"
#include "restore/fd_int.h"

/* The BPF object, embedded by src/restore/module.mk. */
extern const char haul_unix_skbs_bpf[];
extern const char haul_unix_skbs_bpf_end[];

#define USKB_MAX     4096      /* as UNIX_SKBS_MAX in the BPF program */
#define USKB_MORE    (~0u)     /* its record for "more buffers than that" */
#define USKB_PEEKMAX (1 << 20) /* as the queue lengths fd_unix_msgs.c carries */

struct uskb_rec {
	uint32_t len;  /* bytes still to read in the buffer */
	uint32_t nfds; /* files riding with it */
};

static struct {
	pthread_once_t once;
	struct bpf_object *obj;
	struct bpf_program *prog;
	struct bpf_map *bss; /* holds target_ino */
	pthread_mutex_t lock;
} uskb = {.once = PTHREAD_ONCE_INIT, .lock = PTHREAD_MUTEX_INITIALIZER};

static int quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	(void)fmt;
	(void)ap;
	return 0;
}

static void uskb_init(void)
{
	struct bpf_map *m;
	int ret;

	libbpf_set_print(quiet);
	uskb.obj = bpf_object__open_mem(
		haul_unix_skbs_bpf, (size_t)(haul_unix_skbs_bpf_end - haul_unix_skbs_bpf), NULL);
	if (!uskb.obj)
		return;
	ret = bpf_object__load(uskb.obj);
	uskb.prog = ret ? NULL : bpf_object__find_program_by_name(uskb.obj, "haul_unix_skbs");
	bpf_object__for_each_map(m, uskb.obj)
	{
		const char *n = bpf_map__name(m);
		size_t l = strlen(n);

		if (l >= 4 && !strcmp(n + l - 4, ".bss"))
			uskb.bss = m;
	}
	if (!uskb.prog || !uskb.bss) {
		pr_debug("the unix queue iterator is unavailable (%s)",
			 strerror(ret < 0 ? -ret : EINVAL));
		bpf_object__close(uskb.obj);
		uskb.obj = NULL;
		uskb.prog = NULL;
	}
}

/* The buffers of the queue of unix socket @ino, in order, into @r (@max); their count. */
static int uskb_read(uint64_t ino, struct uskb_rec *r, size_t max)
{
	uint32_t zero = 0;
	struct bpf_link *link;
	size_t got = 0;
	int fd, ret = 0;

	pthread_once(&uskb.once, uskb_init);
	if (!uskb.prog)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&uskb.lock);
	if (bpf_map_update_elem(bpf_map__fd(uskb.bss), &zero, &ino, BPF_ANY)) {
		ret = -errno;
		goto out;
	}
	link = bpf_program__attach_iter(uskb.prog, NULL);
	if (!link) {
		ret = -errno ? -errno : -EINVAL;
		goto out;
	}
	fd = bpf_iter_create(bpf_link__fd(link));
	if (fd < 0)
		ret = -errno;
	while (fd >= 0 && !ret) {
		ssize_t n = read(fd, (char *)r + got, max * sizeof(*r) - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			ret = -errno;
		else if (n == 0)
			break;
		else
			got += (size_t)n;
		if (got == max * sizeof(*r))
			break;
	}
	if (fd >= 0)
		close(fd);
	bpf_link__destroy(link);
out:
	pthread_mutex_unlock(&uskb.lock);
	return ret ? ret : (int)(got / sizeof(*r));
}

static size_t count_fds(struct msghdr *m)
{
	size_t n = 0;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			n += (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
	return n;
}

/*
 * The @len bytes at @off of the queue of @sfd as a new piece of @o; @r is
 * the buffer with files the piece is (its files noted with it), or NULL for
 * a run of plain bytes, peeked until whole (with SO_PASSCRED on, a peek
 * stops where the writer changes).
 */
static int peek_piece(pid_t pid, int sfd, Haul__Img__UnixPairFile *o, uint32_t off, uint32_t len,
		      const struct uskb_rec *r)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * 253)];
		struct cmsghdr align;
	} ctl;
	ProtobufCBinaryData *nm;
	char *buf = malloc(len);
	uint32_t got = 0;
	int ret = 0;
	ssize_t n = 0;

	if (!buf)
		return -ENOMEM;
	while (!ret && got < len) {
		struct iovec iov = {buf + got, len - got};
		struct msghdr m = {.msg_iov = &iov,
				   .msg_iovlen = 1,
				   .msg_control = ctl.b,
				   .msg_controllen = sizeof(ctl.b)};
		int at = (int)(off + got);

		if (setsockopt(sfd, SOL_SOCKET, SO_PEEK_OFF, &at, sizeof(at)) < 0) {
			ret = -errno;
			break;
		}
		n = recvmsg(sfd, &m, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0) {
			ret = -errno;
			break;
		}
		/* a plain run's peek walks on to the next buffer's files: not its own */
		if (r && count_fds(&m) == r->nfds && !(m.msg_flags & MSG_CTRUNC))
			ret = rst_unix_take_fds(pid, &m, o, (uint32_t)o->n_msgs);
		else if (rst_unix_drop_fds(&m) != 0 && r)
			ret = -EIO;
		if (!ret && (n == 0 || (r && n != (ssize_t)len) || (m.msg_flags & MSG_CTRUNC)))
			ret = -EIO;
		got += n > 0 ? (uint32_t)n : 0;
	}
	if (ret == -EIO)
		pr_err("unix socket %llu of pid %d: the %u bytes at %u of its queue peek as %u "
		       "bytes with other files than the kernel's queue holds; retry the dump",
		       (unsigned long long)o->ino, (int)pid, len, off, got);
	nm = ret ? NULL : realloc(o->msgs, (o->n_msgs + 1) * sizeof(*nm));
	if (!ret && !nm)
		ret = -ENOMEM;
	if (ret) {
		free(buf);
		return ret;
	}
	o->msgs = nm;
	nm[o->n_msgs].data = (uint8_t *)buf;
	nm[o->n_msgs++].len = len;
	return 0;
}

/* @o's pieces from the buffers @r[0..@n) of @sfd's queue. */
static int cut_queue(pid_t pid, int sfd, Haul__Img__UnixPairFile *o, const struct uskb_rec *r,
		     size_t n)
{
	uint32_t off = 0, plain = 0;
	int ret = 0;

	for (size_t i = 0; i < n && !ret; i++) {
		if (!r[i].nfds) {
			plain += r[i].len;
			continue;
		}
		if (!r[i].len) {
			pr_err("unix socket %llu of pid %d has files in flight with no bytes, "
			       "which a send cannot queue again: retry once the process has read "
			       "them",
			       (unsigned long long)o->ino, (int)pid);
			return -EOPNOTSUPP;
		}
		if (plain)
			ret = peek_piece(pid, sfd, o, off, plain, NULL);
		off += plain;
		plain = 0;
		if (!ret)
			ret = peek_piece(pid, sfd, o, off, r[i].len, &r[i]);
		off += r[i].len;
	}
	if (!ret && plain)
		ret = peek_piece(pid, sfd, o, off, plain, NULL);
	return ret;
}

/* Without the iterator: whether a peek of the queue of @sfd reports files in flight. */
static bool peek_sees_fds(int sfd, uint32_t rqlen)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * 253)];
		struct cmsghdr align;
	} ctl;
	char *buf = malloc(rqlen);
	struct iovec iov = {buf, rqlen};
	struct msghdr m = {.msg_iov = &iov,
			   .msg_iovlen = 1,
			   .msg_control = ctl.b,
			   .msg_controllen = sizeof(ctl.b)};
	bool seen;

	if (!buf)
		return true;
	seen = recvmsg(sfd, &m, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC) >= 0 &&
	       (rst_unix_drop_fds(&m) || (m.msg_flags & MSG_CTRUNC));
	free(buf);
	return seen;
}

int rst_unix_peek_stream(pid_t pid, int sfd, Haul__Img__UnixPairFile *o, uint32_t rqlen)
{
	struct uskb_rec *r = malloc((USKB_MAX + 1) * sizeof(*r));
	int old = -1, n, ret = 0;
	socklen_t ol = sizeof(old);
	uint64_t sum = 0;
	bool fds = false;

	if (!r)
		return -ENOMEM;
	n = uskb_read(o->ino, r, USKB_MAX + 1);
	if (n == -EOPNOTSUPP || n == 0) {
		/* no iterator, or it does not see the socket (another network namespace) */
		free(r);
		if (!peek_sees_fds(sfd, rqlen))
			return 1;
		pr_err("unix stream socket %llu of pid %d has files in flight (SCM_RIGHTS), and "
		       "where they ride in its queue cannot be read here (the BPF unix iterator "
		       "needs CAP_BPF, the kernel's BTF and haul in the socket's network "
		       "namespace): retry once the process has read them",
		       (unsigned long long)o->ino, (int)pid);
		return -EOPNOTSUPP;
	}
	if (n < 0) {
		free(r);
		pr_err("cannot read the queue of unix socket %llu of pid %d: %s",
		       (unsigned long long)o->ino, (int)pid, strerror(-n));
		return n;
	}
	for (int i = 0; i < n; i++) {
		fds |= r[i].nfds != 0;
		sum += r[i].len;
	}
	if (n > USKB_MAX || r[n - 1].len == USKB_MORE || (fds && sum > USKB_PEEKMAX)) {
		free(r);
		pr_err("unix socket %llu of pid %d has more than %d buffers or %d bytes queued with "
		       "files in flight: not carried; retry once the process has read them",
		       (unsigned long long)o->ino, (int)pid, USKB_MAX, USKB_PEEKMAX);
		return -EOPNOTSUPP;
	}
	if (sum != rqlen) {
		free(r);
		pr_err("unix socket %llu of pid %d holds %llu bytes in its buffers but reports %u "
		       "queued: is the process still running? retry the dump",
		       (unsigned long long)o->ino, (int)pid, (unsigned long long)sum, rqlen);
		return -EIO;
	}
	if (!fds) {
		free(r);
		return 1;
	}
	if (getsockopt(sfd, SOL_SOCKET, SO_PEEK_OFF, &old, &ol) < 0) {
		free(r);
		return -errno;
	}
	ret = cut_queue(pid, sfd, o, r, (size_t)n);
	rst_unix_peek_end(sfd, (unsigned long long)o->ino, old);
	free(r);
	return ret;
}
