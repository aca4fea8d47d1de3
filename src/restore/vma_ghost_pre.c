/*
 * vma_ghost_pre.c - deleted files mapped privately (vma_ghost.c), sent to
 * the target before a migration's freeze, so that their bytes are not in
 * the stop.
 *
 * Source (pre-copy, between rounds, with the process running): each such
 * inode of a layout is sent once (rst_dump_prep_ghosts, wire Ghost frames:
 * a MappedGhost with its content), read through /proc/PID/map_files.  What
 * was sent is still the file's content at the freeze when nothing wrote
 * it since, which this file knows without reading it again:
 *  - before the read, an inotify watch on the inode (IN_MODIFY: write,
 *    truncate; IN_ATTRIB: mode, owner, times, links; IN_CLOSE_WRITE: a
 *    writer closed it), and a read lease taken and given back at once
 *    (F_SETLEASE F_RDLCK fails while anyone holds the file open for
 *    writing, and a writable shared mapping holds its open file), so no
 *    writer existed when the read began and any later one leaves an event;
 *  - at the dump, the process stopped: the lease again (no writer now, the
 *    only one whose writes, through a shared mapping, make no event), then
 *    the events (one that wrote and closed meanwhile left IN_CLOSE_WRITE).
 * Unchanged, the state's GhostFile carries owner, mode, size and times
 * only, with `presented`; else (or when the target declined it) its
 * content, in the stop, as before.  The mapping process itself cannot
 * write the file: a private mapping's writes are its own pages.  But a
 * mapping made from an fd opened for writing keeps that open file, which
 * the kernel counts as a writer: such a file (not a library: ld.so opens
 * them read-only) always goes with the state.
 *
 * Target: a kept file is made at once, unnamed (O_TMPFILE) in the
 * directory of the stub's root where the restore would make it, with its
 * content, size, owner, mode (no set-id bits) and times, and kept by a
 * read-only fd (a writable open file would make it unfit to be an
 * executable again: PR_SET_MM_MAP denies writers); the restore links it
 * under the name rst_ghost_create would give (vma_ghost.c remap_inode).
 * An unnamed file needs no clean-up: a failed or abandoned migration
 * leaves nothing on disk.  A filesystem without O_TMPFILE, or a file that
 * cannot be made, is declined: the state carries it.
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/vma.h"
#include "restore/fd_int.h"
#include "restore/restore.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

/* Files kept by one target at most (each an fd); all targets of this haul: see kept_cap(). */
#define PRE_MAX 256

/* Files all targets of this page server keep (an fd each), against kept_cap(). */
static atomic_size_t kept_total;

/* A quarter of the fds this process may open: the rest stay for its sessions and restores. */
static size_t kept_cap(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur == RLIM_INFINITY)
		return 1024;
	return rl.rlim_cur / 4 > 16 ? rl.rlim_cur / 4 : 16;
}

/* ---- source ------------------------------------------------------------------------ */

struct pre_sent {
	uint64_t dev, ino;
	int wd;	      /* its watch, -1: none */
	bool kept;    /* the target kept it */
	bool changed; /* written, or its watch lost, since it was read */
};

/* One process's files sent; every table of this haul shares one inotify instance. */
struct rst_ghost_pre {
	struct pre_sent *e;
	size_t n;
	struct rst_ghost_pre *next;
};

/*
 * The inotify instance of every table (a tree of 100 processes must not
 * take 100 of the 128 instances a uid may have), its events marking every
 * table's entry of that watch; the tables in a list, under the lock.
 */
static struct {
	pthread_mutex_t mu;
	int ifd;
	struct rst_ghost_pre *head;
} shared = {PTHREAD_MUTEX_INITIALIZER, -1, NULL};

/* A new table on the shared instance (made on the first), or NULL. */
static struct rst_ghost_pre *table_new(void)
{
	struct rst_ghost_pre *g = calloc(1, sizeof(*g));

	pthread_mutex_lock(&shared.mu);
	if (g && shared.ifd < 0)
		shared.ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (g && shared.ifd >= 0) {
		g->next = shared.head;
		shared.head = g;
	} else {
		free(g);
		g = NULL;
	}
	pthread_mutex_unlock(&shared.mu);
	return g;
}

static struct pre_sent *sent_of(struct rst_ghost_pre *g, uint64_t dev, uint64_t ino)
{
	for (size_t i = 0; g && i < g->n; i++)
		if (g->e[i].dev == dev && g->e[i].ino == ino)
			return &g->e[i];
	return NULL;
}

/* Read every pending event: its inode changed in every table (all of them on an overflow). */
static void drain(void)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t r;

	pthread_mutex_lock(&shared.mu);
	while (shared.ifd >= 0 && (r = read(shared.ifd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + r;) {
			const struct inotify_event *ev = (const void *)p;

			for (struct rst_ghost_pre *g = shared.head; g; g = g->next)
				for (size_t i = 0; i < g->n; i++)
					if ((ev->mask & IN_Q_OVERFLOW) || g->e[i].wd == ev->wd)
						g->e[i].changed = true;
			p += sizeof(*ev) + ev->len;
		}
	}
	pthread_mutex_unlock(&shared.mu);
}

static void ignore_sigio(void)
{
	struct sigaction sa, old;

	/* a lease broken in the instant it is held signals its holder: SIGIO kills by default */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	if (!sigaction(SIGIO, NULL, &old) && old.sa_handler == SIG_DFL)
		sigaction(SIGIO, &sa, NULL);
}

/* Whether nobody holds @fd's file open for writing now (a read lease can be had). */
static bool no_writer(int fd)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, ignore_sigio);
	if (fcntl(fd, F_SETLEASE, F_RDLCK) < 0)
		return false;
	fcntl(fd, F_SETLEASE, F_UNLCK);
	return true;
}

/* The deleted regular file @v of @pid maps, read-only, its stat in @st; -errno. */
static int open_mapped(pid_t pid, const struct haul_vma *v, struct stat *st)
{
	char mf[96];
	int fd;

	snprintf(mf, sizeof(mf), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pid, v->start,
		 v->end);
	fd = open(mf, O_RDONLY | O_CLOEXEC | O_NOATIME | O_NONBLOCK);
	if (fd < 0 && errno == EPERM)
		fd = open(mf, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode) || st->st_nlink || st->st_ino != v->ino) {
		close(fd);
		return -ESTALE;
	}
	return fd;
}

/* Watch, check and read @v's file, send it; *@e says what became of it.  -errno: the session. */
static int send_one(struct rst_ghost_pre *g, pid_t pid, const struct haul_vma *v,
		    rst_ghost_send_fn send, void *arg, struct pre_sent *e)
{
	Haul__Img__GhostFile gf = HAUL__IMG__GHOST_FILE__INIT;
	Haul__Img__MappedGhost m = HAUL__IMG__MAPPED_GHOST__INIT;
	char self[48];
	struct stat st;
	uint8_t *blob = NULL;
	size_t len = 0;
	int fd, ret = 0;

	fd = open_mapped(pid, v, &st);
	if (fd < 0 || rst_ghost_bytes(&st) > RST_DELETED_FILE_MAX)
		goto out; /* the dump judges it */
	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	(void)g;
	e->wd = inotify_add_watch(shared.ifd, self, IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE);
	if (e->wd < 0 || !no_writer(fd)) {
		pr_debug("pid %d: deleted file %s is open for writing (or unwatchable): it goes "
			 "with the state",
			 (int)pid, v->path);
		goto out;
	}
	if (rst_ghost_read_fd(fd, &gf))
		goto out;
	gf.dev = v->dev; /* as the dump names it: the maps' */
	gf.ino = v->ino;
	m.path = v->path;
	m.ghost = &gf;
	len = haul__img__mapped_ghost__get_packed_size(&m);
	blob = malloc(len ? len : 1);
	if (!blob)
		goto out;
	haul__img__mapped_ghost__pack(&m, blob);
	ret = send(arg, blob, len, &e->kept);
	e->changed = false;
	if (!ret)
		pr_info("pid %d: deleted file %s (%zu bytes of data) %s", (int)pid, v->path,
			gf.content.len,
			e->kept ? "sent before the freeze"
				: "declined by the target: it goes with the state");
out:
	free(blob);
	free(gf.content.data);
	free(gf.extents);
	if (fd >= 0)
		close(fd);
	return ret;
}

int rst_dump_prep_ghosts(struct rst_dump_prep *p, pid_t pid, const struct haul_layout *l,
			 rst_ghost_send_fn send, void *arg)
{
	struct rst_ghost_pre **gp = rst_prep_ghost_slot(p), *g;
	int ret = 0;

	if (!gp)
		return 0;
	for (size_t i = 0; i < l->n && !ret; i++) {
		const struct haul_vma *v = &l->v[i];
		struct pre_sent *e;

		if (!rst_vma_ghost(v) || sent_of(*gp, v->dev, v->ino))
			continue;
		if (!*gp && !(*gp = table_new()))
			return 0; /* the state carries them */
		g = *gp;
		pthread_mutex_lock(&shared.mu); /* drain() walks the entries */
		e = realloc(g->e, (g->n + 1) * sizeof(*e));
		if (e) {
			g->e = e;
			e = &g->e[g->n++];
			*e = (struct pre_sent){
				.dev = v->dev, .ino = v->ino, .wd = -1, .changed = true};
		}
		pthread_mutex_unlock(&shared.mu);
		if (!e)
			return 0;
		ret = send_one(g, pid, v, send, arg, e);
	}
	return ret;
}

bool rst_ghost_pre_unchanged(struct rst_ghost_pre *g, pid_t pid, const struct haul_vma *v,
			     Haul__Img__GhostFile *o)
{
	struct pre_sent *e = sent_of(g, v->dev, v->ino);
	struct stat st;
	bool same;
	int fd;

	if (!e || !e->kept || e->changed)
		return false;
	fd = open_mapped(pid, v, &st);
	if (fd < 0)
		return false;
	same = no_writer(fd);
	close(fd);
	drain(); /* after the lease: a writer gone meanwhile left IN_CLOSE_WRITE */
	if (!same || e->changed) {
		pr_debug("pid %d: deleted file %s %s since it was sent: it goes with the state",
			 (int)pid, v->path, same ? "changed" : "has a writer");
		return false;
	}
	rst_ghost_meta(&st, o);
	o->has_presented = o->presented = true;
	return true;
}

void rst_ghost_pre_free(struct rst_ghost_pre *g)
{
	if (!g)
		return;
	pthread_mutex_lock(&shared.mu);
	for (struct rst_ghost_pre **pp = &shared.head; *pp; pp = &(*pp)->next)
		if (*pp == g) {
			*pp = g->next;
			break;
		}
	/* the last table gone: so is the instance, and every watch with it */
	if (!shared.head && shared.ifd >= 0) {
		close(shared.ifd);
		shared.ifd = -1;
	}
	pthread_mutex_unlock(&shared.mu);
	free(g->e);
	free(g);
}

/* ---- target ------------------------------------------------------------------------ */

/* @m as sent before the freeze: a sound ghost with its content.  0 or -EBADMSG (@why). */
static int pre_validate(const Haul__Img__MappedGhost *m, char *why, size_t wl)
{
	Haul__Img__FileObject f = HAUL__IMG__FILE_OBJECT__INIT;

	if (!rst_vma_ghost_path_ok(m->path)) {
		snprintf(why, wl, "its path is not absolute, has a '.' or '..' or is too long");
		return -EBADMSG;
	}
	if (!m->ghost->has_content || m->ghost->presented) {
		snprintf(why, wl, "%.256s comes without its content", m->path);
		return -EBADMSG;
	}
	f.kind = HAUL__IMG__FD_KIND__FD_DELETED;
	f.path = m->path;
	f.ghost = m->ghost;
	return rst_fd_deleted.validate(&f, why, wl);
}

/* *@fd (read-write) replaced by a read-only fd of the same file: 0 or -errno. */
static int reopen_ro(int *fd)
{
	char self[48];
	int ro;

	snprintf(self, sizeof(self), "/proc/self/fd/%d", *fd);
	ro = open(self, O_RDONLY | O_CLOEXEC);
	if (ro < 0)
		return -errno;
	close(*fd);
	*fd = ro;
	return 0;
}

int rst_target_ghost_pre(struct rst_target *t, const void *blob, size_t len)
{
	Haul__Img__MappedGhost *m = haul__img__mapped_ghost__unpack(NULL, len, blob);
	Haul__Img__GhostFile gf;
	struct rst_preghost *p;
	char why[320];
	int fd, ret;

	if (!m || !m->ghost) {
		pr_err("pid %d: the source sent a malformed deleted file", (int)t->o.pid);
		haul__img__mapped_ghost__free_unpacked(m, NULL);
		return -EBADMSG;
	}
	ret = pre_validate(m, why, sizeof(why));
	if (ret) {
		pr_err("pid %d: the source sent a bad deleted file: %s", (int)t->o.pid, why);
		goto out;
	}
	if (t->npre >= PRE_MAX || atomic_load(&kept_total) >= kept_cap() ||
	    rst_target_ghost_pre_fd(t, m->ghost->dev, m->ghost->ino) >= 0)
		goto out; /* declined: the state carries it */
	fd = rst_ghost_tmpfile(t, m->path);
	if (fd < 0) {
		pr_debug("pid %d: no unnamed file for %s here (%s): it comes with the state",
			 (int)t->o.pid, m->path, strerror(-fd));
		goto out;
	}
	gf = *m->ghost;
	gf.mode &= ~(uint32_t)(S_ISUID | S_ISGID); /* never a set-id copy of an old program */
	ret = rst_ghost_fill(fd, &gf);
	/* kept read-only: a writer would make it unfit as an exe (PR_SET_MM_MAP) */
	if (!ret)
		ret = reopen_ro(&fd);
	p = ret ? NULL : realloc(t->pre, (t->npre + 1) * sizeof(*p));
	if (!p) {
		pr_warn("pid %d: cannot make deleted file %s ahead (%s): it comes with the state",
			(int)t->o.pid, m->path, strerror(ret ? -ret : ENOMEM));
		close(fd);
		ret = 0;
		goto out;
	}
	t->pre = p;
	t->pre[t->npre++] = (struct rst_preghost){m->ghost->dev, m->ghost->ino, fd};
	atomic_fetch_add(&kept_total, 1);
	ret = 1;
out:
	haul__img__mapped_ghost__free_unpacked(m, NULL);
	return ret;
}

int rst_target_ghost_pre_fd(const struct rst_target *t, uint64_t dev, uint64_t ino)
{
	for (size_t i = 0; i < t->npre; i++)
		if (t->pre[i].dev == dev && t->pre[i].ino == ino)
			return t->pre[i].fd;
	return -1;
}

void rst_target_ghost_pre_release(struct rst_target *t)
{
	for (size_t i = 0; i < t->npre; i++)
		close(t->pre[i].fd);
	atomic_fetch_sub(&kept_total, t->npre);
	free(t->pre);
	t->pre = NULL;
	t->npre = 0;
}
