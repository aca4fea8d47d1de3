/*
 * fd_unix_pending.c - unix stream and seqpacket connections a listener
 * of the process (or of its tree) had not accepted yet.
 *
 * Such a connection is a client socket, an fd of some process, whose
 * peer sits in the listener's accept queue with no fd and no inode
 * (sock_diag's UNIX_DIAG_ICONS lists the clients' inodes in queue order;
 * a client's UNIX_DIAG_PEER is 0).  Nothing can be read from the queued
 * end without accepting it, so a connection is carried only while its
 * client has sent nothing (nothing in flight: the client's wqlen; the
 * listener's refuse hook names one that sent bytes); the client end
 * itself cannot have received anything.
 * Checkpoint: the listener records its clients' inodes in queue order
 * (UnixListenFile.pending), the client end is a UnixPairFile with
 * `pending` and the listener's name as peer_name.
 * Restore: the client end is a new socket (bound to its own name if it
 * had one) connected again to the listener's name, which puts it back
 * in the accept queue: at once when the listener is restored already,
 * else haul keeps a copy and the listener's restore connects the waiting
 * ones, in its recorded queue order, in its own stub (the copies passed
 * over SCM_RIGHTS).  Clients restored after their listener connect in
 * restore order (tree order, then fd order), which may differ from the
 * source's queue order across processes.
 */
#define LOG_PREFIX "unix: "
#include <dirent.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

#define UNIX_LISTEN_STATE 10 /* TCP_LISTEN as sock_diag reports it */

int rst_unix_icons(uint32_t ino, uint32_t **icons, size_t *n)
{
	struct {
		struct nlmsghdr nlh;
		struct unix_diag_req r;
	} req;
	struct nlmsghdr *nlh;
	struct rtattr *a;
	char *buf;
	ssize_t got;
	int fd, len;

	*icons = NULL;
	*n = 0;
	memset(&req, 0, sizeof(req));
	req.nlh.nlmsg_len = sizeof(req);
	req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.nlh.nlmsg_flags = NLM_F_REQUEST;
	req.r.sdiag_family = AF_UNIX;
	req.r.udiag_states = ~0u;
	req.r.udiag_ino = ino;
	req.r.udiag_show = UDIAG_SHOW_ICONS;
	req.r.udiag_cookie[0] = req.r.udiag_cookie[1] = ~0u;
	buf = malloc(1 << 20);
	if (!buf)
		return -ENOMEM;
	fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0 || send(fd, &req, sizeof(req), 0) != sizeof(req)) {
		int ret = -errno;

		if (fd >= 0)
			close(fd);
		free(buf);
		return ret;
	}
	got = recv(fd, buf, 1 << 20, 0);
	close(fd);
	nlh = (struct nlmsghdr *)buf;
	if (got < (ssize_t)NLMSG_LENGTH(sizeof(struct unix_diag_msg)) ||
	    !NLMSG_OK(nlh, (size_t)got) || nlh->nlmsg_type == NLMSG_ERROR) {
		free(buf);
		return -ENOENT;
	}
	len = nlh->nlmsg_len - NLMSG_LENGTH(sizeof(struct unix_diag_msg));
	a = (struct rtattr *)((struct unix_diag_msg *)NLMSG_DATA(nlh) + 1);
	for (; RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		if (a->rta_type != UNIX_DIAG_ICONS)
			continue;
		*n = RTA_PAYLOAD(a) / sizeof(uint32_t);
		*icons = malloc(*n ? *n * sizeof(uint32_t) : 1);
		if (!*icons) {
			free(buf);
			return -ENOMEM;
		}
		memcpy(*icons, RTA_DATA(a), *n * sizeof(uint32_t));
	}
	free(buf);
	return 0;
}

/*
 * The first socket fd of @pid for which @hit(its inode, @arg) holds: that
 * inode, else 0.  /proc/PID/fd read as links: no fd is classified here (the
 * refuse hooks that call this run inside the classification).
 */
static uint32_t find_socket(pid_t pid, bool (*hit)(uint32_t ino, const void *arg), const void *arg)
{
	char link[96], target[48];
	struct dirent *d;
	uint32_t found = 0;
	DIR *fds;

	snprintf(link, sizeof(link), "/proc/%d/fd", (int)pid);
	fds = opendir(link);
	while (fds && !found && (d = readdir(fds))) {
		uint32_t ino;
		ssize_t l;

		if (d->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "/proc/%d/fd/%.16s", (int)pid, d->d_name);
		l = readlink(link, target, sizeof(target) - 1);
		if (l <= 8 || strncmp(target, "socket:[", 8))
			continue;
		target[l] = '\0';
		ino = (uint32_t)strtoul(target + 8, NULL, 10);
		if (hit(ino, arg))
			found = ino;
	}
	if (fds)
		closedir(fds);
	return found;
}

/* Whether @lino is a unix listener whose accept queue holds client socket *@arg. */
static bool listener_queues(uint32_t lino, const void *arg)
{
	struct rst_unix_info u;
	bool found = false;
	uint32_t *ic;
	size_t n;

	if (rst_unix_diag(lino, &u) || u.state != UNIX_LISTEN_STATE || !u.rqlen ||
	    rst_unix_icons(lino, &ic, &n))
		return false;
	for (size_t i = 0; i < n && !found; i++)
		found = ic[i] == *(const uint32_t *)arg;
	free(ic);
	return found;
}

/* Whether client socket @ino waits in the accept queue of a unix listener, an fd of @pid. */
static bool queued_at(pid_t pid, uint32_t ino)
{
	return find_socket(pid, listener_queues, &ino) != 0;
}

bool rst_unix_is_pending(pid_t pid, uint32_t ino)
{
	const pid_t *m;
	size_t n = rst_ext_moving_pids(&m);

	if (pid > 0 && queued_at(pid, ino))
		return true;
	for (size_t i = 0; i < n; i++)
		if (m[i] != pid && queued_at(m[i], ino))
			return true;
	return false;
}

static bool same_ino(uint32_t ino, const void *arg)
{
	return ino == *(const uint32_t *)arg;
}

/* Whether @pid or a process that moves with it has an fd on socket @ino. */
static bool held(pid_t pid, uint32_t ino)
{
	return rst_unix_moving_holds(ino) || find_socket(pid, same_ino, &ino);
}

/* Whether @ino is a connected unix socket with a name, of type *@arg. */
static bool named_connected(uint32_t ino, const void *arg)
{
	struct rst_unix_info u;

	return !rst_unix_diag(ino, &u) && u.named && u.peer && u.type == *(const uint8_t *)arg &&
	       u.state != UNIX_LISTEN_STATE;
}

/*
 * A connection that was accepted is made again by connect() and accept()
 * on the listener (fd_unix_named.c), which takes the first connection of
 * its queue: a client restored pending before it would be paired with the
 * accepted end instead (zdtm's sockets00 waited forever on the wrong
 * connection).  Until their order is kept, a listener with connections
 * waiting is refused beside a named connection of the process or its tree.
 */
static int refuse_beside_accepted(const struct rst_fd_probe *p, const char *name, uint8_t type,
				  char *why, size_t wl)
{
	const pid_t *m;
	size_t n = rst_ext_moving_pids(&m);
	/* an end accepted from a listener, or a client bound first */
	uint32_t ino = find_socket(p->pid, named_connected, &type);

	for (size_t i = 0; i < n && !ino; i++)
		if (m[i] != p->pid)
			ino = find_socket(m[i], named_connected, &type);
	if (!ino)
		return 0;
	snprintf(why, wl,
		 "fd %d: unix listener on %s has connections not accepted yet, beside an accepted "
		 "one (socket:[%u]); haul cannot remake both with their right peers yet: retry "
		 "once the process has accepted them",
		 p->fd, name, ino);
	return -EOPNOTSUPP;
}

int rst_unix_pending_check(const struct rst_fd_probe *p, const char *name, char *why, size_t wl)
{
	struct rst_unix_info li;
	uint32_t *ic;
	size_t n;
	int ret = rst_unix_icons(p->st->st_ino, &ic, &n);

	if (ret)
		return ret;
	if (n && !rst_unix_diag((uint32_t)p->st->st_ino, &li))
		ret = refuse_beside_accepted(p, name, li.type, why, wl);
	for (size_t i = 0; i < n && !ret; i++) {
		struct rst_unix_info q;

		/* the queue lists the clients; what one sent is in flight (its wqlen) */
		if (rst_unix_diag(ic[i], &q))
			continue; /* gone meanwhile */
		if (q.wqlen) {
			snprintf(
				why, wl,
				"fd %d: unix listener on %s has a connection not accepted yet "
				"(socket:[%u]) whose client sent bytes (%u in flight), which cannot "
				"be read before it is accepted; retry once the process has "
				"accepted it",
				p->fd, name, ic[i], q.wqlen);
			ret = -EOPNOTSUPP;
		} else if (!held(p->pid, ic[i])) {
			snprintf(why, wl,
				 "fd %d: unix listener on %s has a connection not accepted yet "
				 "(socket:[%u]) from a client outside the process and its tree, "
				 "which would lose it; retry once the process has accepted it",
				 p->fd, name, ic[i]);
			ret = -EOPNOTSUPP;
		}
	}
	free(ic);
	return ret;
}

/* ---- restore --------------------------------------------------------------------- */

struct pwait {
	uint64_t ino; /* the client's inode at the dump */
	int fd;	      /* haul's copy of the client end */
};

static __thread struct {
	uint64_t *done; /* queued inodes of listeners restored */
	size_t ndone;
	struct pwait *w;
	size_t nw;
} pq;

void rst_unix_pending_reset(void)
{
	for (size_t i = 0; i < pq.nw; i++) {
		pr_warn("unix socket %llu, not accepted yet: its listener was not restored, so it "
			"stays unconnected",
			(unsigned long long)pq.w[i].ino);
		close(pq.w[i].fd);
	}
	free(pq.done);
	free(pq.w);
	memset(&pq, 0, sizeof(pq));
}

static int put_addr(struct rst_target *t, const ProtobufCBinaryData *name, socklen_t *sl)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	if (!name->len || name->len >= sizeof(sun.sun_path))
		return -EINVAL;
	memcpy(sun.sun_path, name->data, name->len);
	*sl = offsetof(struct sockaddr_un, sun_path) + name->len + (name->data[0] != '\0');
	return rst_poke(t, rst_scratch(t), &sun, *sl);
}

int rst_unix_pending_client(struct rst_target *t, const Haul__Img__UnixPairFile *u, int *src)
{
	bool ready = false;
	socklen_t sl;
	long res;
	int fd, ret;

	ret = rst_rcall(t, SYS_socket, AF_UNIX, u->type | SOCK_CLOEXEC, 0, 0, 0, 0, &res);
	if (ret)
		return ret;
	fd = (int)res;
	if (u->has_name) {
		/* a client bound before it connected (its name is its own: nothing else binds it) */
		ret = put_addr(t, &u->name, &sl);
		if (!ret)
			ret = rst_rcall(t, SYS_bind, fd, rst_scratch(t), sl, 0, 0, 0, NULL);
	}
	for (size_t i = 0; i < pq.ndone; i++)
		ready |= pq.done[i] == u->ino;
	if (!ret && ready) {
		ret = put_addr(t, &u->peer_name, &sl);
		if (!ret)
			ret = rst_rcall(t, SYS_connect, fd, rst_scratch(t), sl, 0, 0, 0, NULL);
	} else if (!ret) {
		struct pwait *w = realloc(pq.w, (pq.nw + 1) * sizeof(*w));

		if (!w)
			ret = -ENOMEM;
		else
			pq.w = w;
		if (!ret) {
			w[pq.nw].ino = u->ino;
			w[pq.nw].fd = (int)syscall(SYS_pidfd_getfd, t->pidfd, fd, 0);
			ret = w[pq.nw].fd < 0 ? -errno : 0;
			pq.nw += !ret;
		}
	}
	if (ret) {
		rst_rcall(t, SYS_close, fd, 0, 0, 0, 0, 0, NULL);
		pr_err("cannot connect unix socket %llu to the listener on its peer's name again: "
		       "%s",
		       (unsigned long long)u->ino, strerror(-ret));
		return ret;
	}
	*src = fd;
	return 0;
}

int rst_unix_pending_listener(struct rst_target *t, const Haul__Img__UnixListenFile *l)
{
	uint64_t *d;
	int ret = 0;

	d = realloc(pq.done, (pq.ndone + l->n_pending + 1) * sizeof(*d));
	if (!d)
		return -ENOMEM;
	pq.done = d;
	for (size_t i = 0; i < l->n_pending; i++)
		pq.done[pq.ndone++] = l->pending[i];
	/* the clients restored before it, in the listener's queue order */
	for (size_t i = 0; i < l->n_pending && !ret; i++)
		for (size_t k = 0; k < pq.nw && !ret; k++) {
			socklen_t sl;
			int rfd = -1;

			if (pq.w[k].ino != l->pending[i])
				continue;
			ret = rst_ext_push_fd(t, pq.w[k].fd, &rfd);
			if (!ret)
				ret = put_addr(t, &l->name, &sl);
			if (!ret)
				ret = rst_rcall(t, SYS_connect, rfd, rst_scratch(t), sl, 0, 0, 0,
						NULL);
			if (rfd >= 0)
				rst_rcall(t, SYS_close, rfd, 0, 0, 0, 0, 0, NULL);
			close(pq.w[k].fd);
			pq.w[k] = pq.w[--pq.nw];
			break;
		}
	if (ret)
		pr_err("cannot queue a connection on the unix listener again: %s", strerror(-ret));
	return ret;
}
