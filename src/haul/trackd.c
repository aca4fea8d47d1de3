/*
 * trackd.c - the tracker daemon of criu pre-dump rounds: a small haul
 * process that holds one process's dirty-page tracker (src/tracker, uffd
 * write-protect here) between the engine's requests, each of which is a
 * separate `criu swrk` process.  A uffd's tracking lives only as long as
 * the uffd is open; this process keeps it open.
 *
 * One daemon per tracked process, keyed by its PID and start time:
 *   <registry>/.trackd/<pid>-<start>.sock   unix stream socket (0600)
 *   <registry>/.trackd/<pid>-<start>.info   pid=, start=, daemon=, rounds=,
 *                                           image= (the last committed one)
 *   <registry>/.trackd/<pid>-<start>.log    its messages
 * (<registry> is /run/haul or $HAUL_RUN_DIR; `haul ps` lists the .info
 * files, and removes the .info and .sock of a daemon that was killed.)
 * It exits when the process exits (its pidfd polls readable),
 * after HAUL_TRACKD_IDLE_S seconds without a request (default
 * TRACKD_IDLE_S), on QUIT, or when a round finds the process gone or
 * exec'd.  It never blocks the process: the tracker uses no uffd events
 * (its write faults are resolved by the kernel); a client that stalls
 * stalls only this daemon (30 s socket timeouts).  The uffd is the
 * daemon's alone: the process keeps no fd of it.
 *
 * The protocol, one client at a time, all integers little endian:
 *   request  16 bytes: 0-3 "HTRQ", 4-7 op, 8-15 length L of the payload
 *            that follows (at most TRACKD_IDENT_MAX; only COMMIT has one)
 *     STATUS (1)  answered by IDENT
 *     ROUND  (2)  one tracker round: LAYOUT, GONE and DATA frames, END
 *     COMMIT (3)  payload: the identity of the image the client just
 *                 committed from the rounds since the last COMMIT
 *     QUIT   (4)  the daemon exits (after END)
 *   frame    24 bytes: 0-3 type, 4-7 npages, 8-15 addr, 16-23 aux
 *     IDENT (1)  aux = length of the identity that follows: the image
 *                committed last, empty when a round was served since (its
 *                pages were not committed: the chain is broken there)
 *     GONE  (2)  [addr, addr + npages pages): contents gone (zero holes)
 *     DATA  (3)  npages (1..TRACKD_CHUNK) pages of data follow
 *     END   (4)  aux = 0, or the errno that ended the round; addr = the
 *                round number
 *     LAYOUT (5) aux = length L (at most TRACKD_LAYOUT_MAX) of a packed
 *                haul.wire.Layout that follows: the round's layout, which
 *                the image's pages are staged against (a client reading
 *                /proc/PID/maps itself could be older than the round)
 * Round 1 reports every populated page; each later round the pages
 * written since the previous one.  A client builds an image from rounds
 * and COMMITs its identity; the next client may reference that image as a
 * parent only if STATUS still names it.
 */
#define LOG_PREFIX "trackd: "
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dirent.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/proc.h"
#include "common/wire.h"
#include "haul/criu_int.h"
#include "haul/haul_int.h"
#include "restore/restore.h"
#include "tracker/tracker.h"

#define RQ_MAGIC     "HTRQ"
#define FRAME_LEN    24
#define IO_TIMEOUT_S 30

enum {
	OP_STATUS = 1,
	OP_ROUND = 2,
	OP_COMMIT = 3,
	OP_QUIT = 4
};
enum {
	FR_IDENT = 1,
	FR_GONE = 2,
	FR_DATA = 3,
	FR_END = 4,
	FR_LAYOUT = 5
};

/* A round's layout frame: far above any real process's maps (65530 VMAs by default). */
#define TRACKD_LAYOUT_MAX (64u << 20)

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get_le32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= n;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = recv(fd, p, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		if (n == 0)
			return -ECONNRESET;
		p += n;
		len -= n;
	}
	return 0;
}

static int send_frame(int fd, uint32_t type, uint32_t npages, uint64_t addr, uint64_t aux,
		      const void *data, size_t dlen)
{
	uint8_t h[FRAME_LEN];
	int ret;

	put_le32(h, type);
	put_le32(h + 4, npages);
	put_le64(h + 8, addr);
	put_le64(h + 16, aux);
	ret = write_all(fd, h, sizeof(h));
	if (!ret && dlen)
		ret = write_all(fd, data, dlen);
	return ret;
}

static int send_req(int fd, uint32_t op, const char *payload)
{
	size_t len = payload ? strlen(payload) : 0;
	uint8_t h[16];
	int ret;

	memcpy(h, RQ_MAGIC, 4);
	put_le32(h + 4, op);
	put_le64(h + 8, len);
	ret = write_all(fd, h, sizeof(h));
	if (!ret && len)
		ret = write_all(fd, payload, len);
	return ret;
}

static void set_timeouts(int fd)
{
	struct timeval tv = {IO_TIMEOUT_S, 0};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* <registry>/.trackd/<pid>-<start>@ext into @out. */
static int trackd_path(pid_t pid, unsigned long long start, const char *ext, char *out, size_t len)
{
	if ((size_t)snprintf(out, len, "%s/.trackd/%d-%llu%s", haul_reg_dir(), (int)pid, start,
			     ext) >= len)
		return -ENAMETOOLONG;
	return 0;
}

/* ---- the daemon ----------------------------------------------------------- */

struct trackd {
	pid_t pid;
	unsigned long long start;
	struct trk *t;
	uint64_t rounds;
	char ident[TRACKD_IDENT_MAX + 1]; /* "" unless the last thing served was a COMMIT */
	uint8_t *buf;
	char sock[PATH_MAX], info[PATH_MAX];
	ino_t ino; /* of our socket: a successor's at the same path is never removed */
};

/* Remove our socket and info file (before QUIT is answered: a successor may follow at once). */
static void unpublish(struct trackd *d)
{
	struct stat st;

	if (d->ino && !stat(d->sock, &st) && st.st_ino == d->ino) {
		unlink(d->sock);
		unlink(d->info);
	}
	d->ino = 0;
}

static void write_info(const struct trackd *d)
{
	char tmp[PATH_MAX + 8];
	FILE *f;

	if (!d->ino)
		return; /* not published (yet, or any more) */
	snprintf(tmp, sizeof(tmp), "%s.tmp", d->info);
	f = fopen(tmp, "we");
	if (!f)
		return;
	fprintf(f, "pid=%d\nstart=%llu\ndaemon=%d\ntracker=%s\nrounds=%llu\nimage=%s\n",
		(int)d->pid, d->start, (int)getpid(), trk_backend_name(trk_backend(d->t)),
		(unsigned long long)d->rounds, d->ident);
	if (fclose(f) == 0)
		rename(tmp, d->info);
}

/* Send [s, e) of a dirty range, read through the tracker, in chunks. */
static int send_data(struct trackd *d, int fd, uint64_t s, uint64_t e)
{
	while (s < e) {
		struct trk_range c = {s, (e - s) >> HAUL_PAGE_SHIFT};
		int ret;

		if (c.npages > TRACKD_CHUNK)
			c.npages = TRACKD_CHUNK;
		ret = trk_read(d->t, &c, 1, d->buf, NULL);
		if (!ret)
			ret = send_frame(fd, FR_DATA, (uint32_t)c.npages, s, 0, d->buf,
					 c.npages * HAUL_PAGE_SIZE);
		if (ret)
			return ret;
		s += c.npages * HAUL_PAGE_SIZE;
	}
	return 0;
}

static int send_layout(int fd, const struct haul_layout *l)
{
	Haul__Wire__Layout m = HAUL__WIRE__LAYOUT__INIT;
	Haul__Wire__Vma *vmas = calloc(l->n + 1, sizeof(*vmas));
	Haul__Wire__Vma **vmap = calloc(l->n + 1, sizeof(*vmap));
	uint8_t *buf = NULL;
	size_t len = 0;
	int ret = -ENOMEM;

	if (vmas && vmap) {
		wire_layout_to_msg(l, vmas, vmap, &m);
		len = haul__wire__layout__get_packed_size(&m);
		buf = malloc(len ? len : 1);
	}
	if (buf) {
		haul__wire__layout__pack(&m, buf);
		ret = len > TRACKD_LAYOUT_MAX ? -E2BIG
					      : send_frame(fd, FR_LAYOUT, 0, 0, len, buf, len);
	}
	free(buf);
	free(vmap);
	free(vmas);
	return ret;
}

/*
 * One round to the client on @fd: gone ranges, then the dirty pages, each
 * clipped to the VMAs whose pages an image stores (as image.c's rounds).
 * A send error is returned; a tracker error is reported in END.
 */
static int serve_round(struct trackd *d, int fd, bool *fatal)
{
	struct trk_round r;
	int ret = trk_round(d->t, &r), err;

	d->ident[0] = '\0'; /* what this round reports is nobody's until COMMIT */
	if (ret) {
		pr_err_r(ret, "round %llu of pid %d failed", (unsigned long long)d->rounds + 1,
			 (int)d->pid);
		*fatal = ret == -ESRCH || ret == -ECHILD;
		return send_frame(fd, FR_END, 0, d->rounds, (uint64_t)-ret, NULL, 0);
	}
	d->rounds++;
	err = send_layout(fd, &r.layout);
	for (int pass = 0; pass < 2 && !err; pass++) {
		const struct trk_range *rs = pass ? r.dirty : r.gone;
		size_t n = pass ? r.ndirty : r.ngone;

		for (size_t i = 0; i < n && !err; i++)
			for (size_t k = 0; k < r.layout.n && !err; k++) {
				const struct haul_vma *v = &r.layout.v[k];
				uint64_t s = rs[i].start, e = s + rs[i].npages * HAUL_PAGE_SIZE;

				s = s > v->start ? s : v->start;
				e = e < v->end ? e : v->end;
				if (s >= e || !rst_vma_stored(v))
					continue;
				err = pass ? send_data(d, fd, s, e)
					   : send_frame(fd, FR_GONE,
							(uint32_t)((e - s) >> HAUL_PAGE_SHIFT), s,
							0, NULL, 0);
			}
	}
	trk_round_release(&r);
	if (!err)
		err = send_frame(fd, FR_END, 0, d->rounds, 0, NULL, 0);
	write_info(d);
	return err;
}

/* Requests of one client until it closes; *@quit when the daemon should end. */
static void serve_conn(struct trackd *d, int fd, bool *quit)
{
	for (;;) {
		uint8_t h[16];
		uint64_t len;
		int ret = read_all(fd, h, sizeof(h));

		if (ret)
			return;
		len = get_le64(h + 8);
		if (memcmp(h, RQ_MAGIC, 4) || len > TRACKD_IDENT_MAX) {
			pr_warn("a client sent a malformed request; it is disconnected");
			return;
		}
		switch (get_le32(h + 4)) {
		case OP_STATUS:
			ret = send_frame(fd, FR_IDENT, 0, 0, strlen(d->ident), d->ident,
					 strlen(d->ident));
			break;
		case OP_ROUND:
			ret = serve_round(d, fd, quit);
			break;
		case OP_COMMIT:
			ret = read_all(fd, d->ident, len);
			d->ident[ret ? 0 : len] = '\0';
			write_info(d);
			pr_info("pid %d: image %s committed from %llu rounds", (int)d->pid,
				d->ident, (unsigned long long)d->rounds);
			break;
		case OP_QUIT:
			*quit = true;
			unpublish(d);
			send_frame(fd, FR_END, 0, d->rounds, 0, NULL, 0);
			return;
		default:
			pr_warn("a client sent request %u; it is disconnected", get_le32(h + 4));
			return;
		}
		if (ret || *quit)
			return;
	}
}

static unsigned idle_seconds(void)
{
	const char *e = getenv("HAUL_TRACKD_IDLE_S");
	long v = e ? strtol(e, NULL, 10) : 0;

	return v > 0 && v < 86400 * 7 ? (unsigned)v : TRACKD_IDLE_S;
}

static void serve(struct trackd *d, int lfd, int pidfd)
{
	unsigned idle = idle_seconds();
	bool quit = false;

	while (!quit) {
		struct pollfd p[2] = {{lfd, POLLIN, 0}, {pidfd, POLLIN, 0}};
		int n = poll(p, 2, (int)idle * 1000), cfd;

		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0) {
			pr_info("pid %d: no request for %u s; tracking ends", (int)d->pid, idle);
			return;
		}
		if (n < 0) {
			pr_err_r(-errno, "cannot wait for requests about pid %d; tracking ends",
				 (int)d->pid);
			return;
		}
		if (p[1].revents & POLLIN) {
			pr_info("pid %d exited; tracking ends", (int)d->pid);
			return;
		}
		cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (cfd < 0)
			continue;
		set_timeouts(cfd);
		serve_conn(d, cfd, &quit);
		close(cfd);
	}
	pr_info("pid %d: tracking ends (asked to quit or the process is gone)", (int)d->pid);
}

static int listen_on(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	size_t len = strlen(path);
	int fd;

	if (len >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	memcpy(a.sun_path, path, len + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || chmod(path, 0600) || listen(fd, 4)) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	return fd;
}

/* The daemon's body, in the grandchild; @ready gets one int: 0 or -errno. */
static int daemon_main(pid_t pid, unsigned long long start, int ready)
{
	struct trackd d = {.pid = pid, .start = start};
	struct stat st;
	int lfd = -1, pidfd = -1, ret;

	d.buf = malloc(TRACKD_CHUNK * HAUL_PAGE_SIZE);
	ret = d.buf ? 0 : -ENOMEM;
	if (!ret)
		ret = trackd_path(pid, start, ".sock", d.sock, sizeof(d.sock));
	if (!ret)
		ret = trackd_path(pid, start, ".info", d.info, sizeof(d.info));
	if (!ret) {
		pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
		ret = pidfd < 0 ? -errno : 0;
	}
	/* the survivor that undoes the attach's injected calls if we die in it (injlog.h) */
	if (!ret && (ret = injlog_open(getenv("HAUL_FAULT"), haul_reg_dir())))
		pr_err_r(ret, "cannot start the injection journal for pid %d", (int)pid);
	if (!ret) {
		ret = trk_open(pid, &(struct trk_opts){0}, &d.t);
		if (ret)
			pr_err_r(ret, "cannot track pid %d", (int)pid);
		injlog_close();
	}
	if (!ret) {
		lfd = listen_on(d.sock);
		ret = lfd < 0 ? lfd : 0;
		if (!ret && !stat(d.sock, &st))
			d.ino = st.st_ino;
	}
	if (!ret) {
		write_info(&d);
		pr_info("tracking pid %d (%s) for pre-dump rounds at %s", (int)pid,
			trk_backend_name(trk_backend(d.t)), d.sock);
	}
	if (write(ready, &ret, sizeof(ret)) != sizeof(ret))
		ret = ret ? ret : -EPIPE;
	close(ready);
	if (!ret)
		serve(&d, lfd, pidfd);
	unpublish(&d);
	if (lfd >= 0)
		close(lfd);
	trk_free(d.t); /* lifts the write protection: the process runs on untouched */
	if (pidfd >= 0)
		close(pidfd);
	free(d.buf);
	return ret;
}

/*
 * The grandchild of the caller (not the engine's child: the engine waits
 * for `criu swrk` only), in its own session, with none of the caller's
 * fds: stdio /dev/null, messages to the .log file.
 */
static void become_daemon(pid_t pid, unsigned long long start, int ready)
{
	char log[PATH_MAX];
	int fd;

	if (fork() != 0)
		_exit(0);
	if (dup2(ready, 3) < 0)
		_exit(1);
	syscall(SYS_close_range, 4, ~0U, 0);
	fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		if (fd > 2)
			close(fd);
	}
	if (!trackd_path(pid, start, ".log", log, sizeof(log))) {
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (fd >= 0) {
			dup2(fd, 2);
			close(fd);
		}
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	_exit(daemon_main(pid, start, 3) ? 1 : 0);
}

int trackd_start(pid_t pid)
{
	unsigned long long start;
	char dir[PATH_MAX];
	int p[2], ret, st, got = -EIO;
	pid_t child;

	ret = haul_proc_starttime(pid, &start);
	if (ret)
		return ret;
	snprintf(dir, sizeof(dir), "%s", haul_reg_dir());
	mkdir(dir, 0755);
	snprintf(dir, sizeof(dir), "%s/.trackd", haul_reg_dir());
	if (mkdir(dir, 0700) && errno != EEXIST) {
		ret = -errno;
		pr_err_r(ret, "cannot create %s for the tracker of pid %d", dir, (int)pid);
		return ret;
	}
	if (pipe2(p, O_CLOEXEC))
		return -errno;
	child = fork();
	if (child < 0) {
		ret = -errno;
		close(p[0]);
		close(p[1]);
		return ret;
	}
	if (child == 0) {
		close(p[0]);
		setsid();
		become_daemon(pid, start, p[1]);
	}
	close(p[1]);
	waitpid(child, &st, 0);
	if (read(p[0], &got, sizeof(got)) != sizeof(got))
		got = -EIO;
	close(p[0]);
	if (got)
		pr_err_r(got,
			 "the tracker daemon of pid %d did not start (its log: %s/%d-%llu.log)",
			 (int)pid, dir, (int)pid, start);
	return got;
}

/* ---- the client ----------------------------------------------------------- */

int trackd_connect(pid_t pid, int *out)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	unsigned long long start;
	int fd, ret;

	*out = -1;
	ret = haul_proc_starttime(pid, &start);
	if (!ret)
		ret = trackd_path(pid, start, ".sock", a.sun_path, sizeof(a.sun_path));
	if (ret)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		ret = errno == ECONNREFUSED ? -ENOENT : -errno;
		close(fd);
		return ret;
	}
	set_timeouts(fd);
	*out = fd;
	return 0;
}

static int read_frame(int fd, uint32_t *type, uint32_t *npages, uint64_t *addr, uint64_t *aux)
{
	uint8_t h[FRAME_LEN];
	int ret = read_all(fd, h, sizeof(h));

	if (ret)
		return ret;
	*type = get_le32(h);
	*npages = get_le32(h + 4);
	*addr = get_le64(h + 8);
	*aux = get_le64(h + 16);
	return 0;
}

int trackd_status(int fd, char *ident, size_t len)
{
	uint32_t type, np;
	uint64_t addr, aux;
	int ret = send_req(fd, OP_STATUS, NULL);

	if (!ret)
		ret = read_frame(fd, &type, &np, &addr, &aux);
	if (ret)
		return ret;
	if (type != FR_IDENT || aux > TRACKD_IDENT_MAX || aux >= len)
		return -EPROTO;
	ret = read_all(fd, ident, aux);
	ident[ret ? 0 : aux] = '\0';
	return ret;
}

/* A LAYOUT frame's @len bytes into *@l (released first). */
static int read_layout(int fd, uint64_t len, struct haul_layout *l)
{
	Haul__Wire__Layout *m;
	uint8_t *buf;
	int ret;

	if (len > TRACKD_LAYOUT_MAX)
		return -EPROTO;
	buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	ret = read_all(fd, buf, len);
	if (!ret) {
		m = haul__wire__layout__unpack(NULL, len, buf);
		ret = m ? 0 : -EBADMSG;
		if (m) {
			haul_layout_release(l);
			ret = wire_layout_from_msg(m->vmas, m->n_vmas, l);
			haul__wire__layout__free_unpacked(m, NULL);
		}
	}
	free(buf);
	return ret;
}

int trackd_round(int fd, struct haul_layout *l, trackd_layout_fn lfn, trackd_page_fn fn, void *arg,
		 uint64_t *round)
{
	uint8_t *buf = malloc(TRACKD_CHUNK * HAUL_PAGE_SIZE);
	int ret = buf ? send_req(fd, OP_ROUND, NULL) : -ENOMEM;

	while (!ret) {
		uint32_t type, np;
		uint64_t addr, aux;

		ret = read_frame(fd, &type, &np, &addr, &aux);
		if (ret)
			break;
		if (type == FR_END) {
			*round = addr;
			ret = aux ? -(int)(aux & 0xffff) : 0;
			if (ret)
				pr_err_r(ret, "the tracker's round failed (its log is beside its "
					      "socket)");
			break;
		}
		if (type == FR_LAYOUT) {
			ret = read_layout(fd, aux, l);
			if (!ret)
				ret = lfn(arg, l);
		} else if (type == FR_GONE) {
			ret = fn(arg, addr, NULL, np);
		} else if (type == FR_DATA && np >= 1 && np <= TRACKD_CHUNK) {
			ret = read_all(fd, buf, (size_t)np * HAUL_PAGE_SIZE);
			if (!ret)
				ret = fn(arg, addr, buf, np);
		} else {
			pr_err("the tracker daemon sent frame type %u of %u pages; its round is "
			       "refused",
			       type, np);
			ret = -EPROTO;
		}
	}
	free(buf);
	return ret;
}

int trackd_commit(int fd, const char *ident)
{
	if (strlen(ident) > TRACKD_IDENT_MAX)
		return -ENAMETOOLONG;
	return send_req(fd, OP_COMMIT, ident);
}

int trackd_quit(int fd)
{
	uint32_t type, np;
	uint64_t addr, aux;
	int ret = send_req(fd, OP_QUIT, NULL);

	if (!ret)
		ret = read_frame(fd, &type, &np, &addr, &aux);
	return ret;
}

/* ---- haul ps -------------------------------------------------------------- */

void trackd_list(FILE *out)
{
	char dir[PATH_MAX];
	struct dirent *de;
	bool header = false;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/.trackd", haul_reg_dir());
	d = opendir(dir);
	if (!d)
		return;
	while ((de = readdir(d))) {
		char path[PATH_MAX + 300], line[TRACKD_IDENT_MAX + 16],
			image[TRACKD_IDENT_MAX + 16] = "";
		int pid = 0, daemon = 0;
		unsigned long long rounds = 0;
		size_t n = strlen(de->d_name);
		FILE *f;

		if (n < 6 || strcmp(de->d_name + n - 5, ".info"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f)) {
			line[strcspn(line, "\n")] = '\0';
			if (!strncmp(line, "pid=", 4))
				pid = atoi(line + 4);
			else if (!strncmp(line, "daemon=", 7))
				daemon = atoi(line + 7);
			else if (!strncmp(line, "rounds=", 7))
				rounds = strtoull(line + 7, NULL, 10);
			else if (!strncmp(line, "image=", 6))
				snprintf(image, sizeof(image), "%s", line + 6);
		}
		fclose(f);
		/* a daemon killed with -9 leaves its files: removed here (its log stays) */
		if (!daemon || kill(daemon, 0)) {
			unlink(path);
			memcpy(path + strlen(path) - 5, ".sock", 5);
			unlink(path);
			continue;
		}
		if (!header)
			fprintf(out, "\n%-20s %7s  %-24s %s\n", "TRACKER (pre-dump)", "PID",
				"DAEMON", "LAST IMAGE");
		header = true;
		fprintf(out, "%-20s %7d  pid %-6d %3llu rounds  %s\n", "criu pre-dump", pid, daemon,
			rounds, image[0] ? image : "(none committed)");
	}
	closedir(d);
}
