/*
 * fd_inotify.c - inotify instances: their watches, re-added by path.
 *
 * fdinfo lists one "inotify wd:W ino:I sdev:D mask:M ignored_mask:0
 * fhandle-bytes:B fhandle-type:T f_handle:H" line per watch, newest first.
 * The path comes from the file handle (fd_fhandle.c) and must still name
 * that inode.  The restore creates the instance with inotify_init1 and
 * adds the watches in ascending wd: the kernel numbers a new watch after
 * the last one it gave (idr_alloc_cyclic from 1), so wds 1..n come back
 * exactly, and each returned wd is checked.  A hole (a watch removed
 * before a later one was added) cannot be reproduced without events the
 * process would read (IN_IGNORED of a placeholder), so it is refused by
 * name, as is a queue of unread events (FIONREAD on a pidfd_getfd copy):
 * events are not carried, and refusing is better than losing them.  A
 * watch on a symlink itself gets IN_DONT_FOLLOW back.
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/target_int.h"

#define RST_IN_CARRIED (IN_ALL_EVENTS | IN_ONESHOT | IN_EXCL_UNLINK | IN_DONT_FOLLOW)
#define RST_IN_MAX     4096 /* watches per instance haul carries */

static bool inotify_match(const struct rst_fd_probe *p)
{
	return !strcmp(p->target, "anon_inode:inotify");
}

/* One watch line of fdinfo. */
struct iwatch {
	int wd;
	unsigned mask;
	unsigned long ino, sdev;
	const char *line;
};

static int cmp_wd(const void *a, const void *b)
{
	return ((const struct iwatch *)a)->wd - ((const struct iwatch *)b)->wd;
}

/* The watches of @fdinfo, ascending wd, into *@out (free it); *@n of them.  -EBADMSG, -E2BIG. */
static int parse_watches(const char *fdinfo, struct iwatch **out, size_t *n)
{
	struct iwatch *v = NULL, *nv;
	size_t cnt = 0;

	for (const char *l = strstr(fdinfo, "\ninotify "); l; l = strstr(l + 1, "\ninotify ")) {
		struct iwatch w = {.line = l + 1};

		if (sscanf(l + 1, "inotify wd:%d ino:%lx sdev:%lx mask:%x", &w.wd, &w.ino, &w.sdev,
			   &w.mask) != 4) {
			free(v);
			return -EBADMSG;
		}
		if (cnt >= RST_IN_MAX) {
			free(v);
			return -E2BIG;
		}
		nv = realloc(v, (cnt + 1) * sizeof(*nv));
		if (!nv) {
			free(v);
			return -ENOMEM;
		}
		v = nv;
		v[cnt++] = w;
	}
	if (cnt)
		qsort(v, cnt, sizeof(*v), cmp_wd);
	*out = v;
	*n = cnt;
	return 0;
}

/* The path of watch @w, checked to still name its inode; 0 or -errno. */
static int watch_path(const struct iwatch *w, char *path, size_t len, bool *link)
{
	struct stat st;
	int ret = rst_fhandle_path(w->line, path, len);

	if (ret)
		return ret;
	if (lstat(path, &st) < 0)
		return -errno;
	if (st.st_ino != w->ino)
		return -ESTALE;
	*link = S_ISLNK(st.st_mode);
	return 0;
}

static int inotify_refuse(const struct rst_fd_probe *p, char *why, size_t wl)
{
	struct iwatch *v = NULL;
	size_t n = 0;
	int ret = parse_watches(p->fdinfo, &v, &n);

	if (ret) {
		snprintf(why, wl, "fd %d (inotify): %s", p->fd,
			 ret == -E2BIG ? "more than 4096 watches" : "cannot parse its fdinfo");
		return -EOPNOTSUPP;
	}
	for (size_t i = 0; i < n && !ret; i++) {
		char path[4096];
		bool link;

		if (v[i].wd != (int)i + 1) {
			snprintf(why, wl,
				 "fd %d (inotify) has no watch %zu but has watch %d: a watch was "
				 "removed before later ones were added, and the restore numbers "
				 "watches from 1 without holes",
				 p->fd, i + 1, v[i].wd);
			ret = -EOPNOTSUPP;
		} else if ((ret = watch_path(&v[i], path, sizeof(path), &link))) {
			snprintf(why, wl,
				 "fd %d (inotify) watch %d on inode %lu has no path to re-add it "
				 "by (%s): haul re-adds watches by path",
				 p->fd, v[i].wd, v[i].ino,
				 ret == -ENOENT || ret == -ESTALE ? "deleted or replaced"
								  : strerror(-ret));
			ret = -EOPNOTSUPP;
		}
	}
	free(v);
	if (ret)
		return ret;
	return rst_fhandle_refuse_queued(p, "inotify", why, wl);
}

static int inotify_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
			Haul__Img__FileObject *const *prev, size_t nprev)
{
	Haul__Img__InotifyFile *in;
	struct iwatch *v = NULL;
	size_t n = 0;
	int ret;

	(void)prev;
	(void)nprev;
	ret = parse_watches(p->fdinfo, &v, &n);
	if (ret)
		return ret;
	in = calloc(1, sizeof(*in));
	if (!in) {
		free(v);
		return -ENOMEM;
	}
	haul__img__inotify_file__init(in);
	o->inotify = in;
	in->watches = calloc(n ? n : 1, sizeof(*in->watches));
	if (!in->watches)
		ret = -ENOMEM;
	for (size_t i = 0; i < n && !ret; i++) {
		Haul__Img__InotifyWatch *w = calloc(1, sizeof(*w));
		char path[4096];
		bool link = false;

		if (!w) {
			ret = -ENOMEM;
			break;
		}
		haul__img__inotify_watch__init(w);
		in->watches[in->n_watches++] = w;
		ret = watch_path(&v[i], path, sizeof(path), &link);
		w->wd = v[i].wd;
		w->mask = v[i].mask | (link ? IN_DONT_FOLLOW : 0);
		w->path = strdup(ret ? "" : path);
		if (!ret && !w->path)
			ret = -ENOMEM;
	}
	free(v);
	return ret;
}

static int inotify_validate(const Haul__Img__FileObject *f, char *why, size_t wl)
{
	if (!f->inotify) {
		snprintf(why, wl, "file %u is an inotify fd without its inotify part", f->id);
		return -EBADMSG;
	}
	if (f->inotify->n_watches > RST_IN_MAX) {
		snprintf(why, wl, "file %u (inotify) has %zu watches", f->id,
			 f->inotify->n_watches);
		return -EBADMSG;
	}
	for (size_t i = 0; i < f->inotify->n_watches; i++) {
		const Haul__Img__InotifyWatch *w = f->inotify->watches[i];

		if (w->wd != (int)i + 1 || !w->mask || (w->mask & ~RST_IN_CARRIED) ||
		    w->path[0] != '/' || strlen(w->path) >= 4096) {
			snprintf(why, wl,
				 "file %u (inotify).watches[%zu]: wd %d mask %#x path '%.64s'",
				 f->id, i, w->wd, w->mask, w->path);
			return -EBADMSG;
		}
	}
	return 0;
}

static int inotify_restore(struct rst_target *t, struct rst_fd_rctx *x,
			   const Haul__Img__FileObject *f, const Haul__Img__FdEntry *e,
			   const char *path, int *tmp, bool *shared)
{
	long res = -1;
	int ret;

	(void)x;
	(void)path;
	*shared = false;
	ret = rst_rcall(t, SYS_inotify_init1, f->flags & O_NONBLOCK, 0, 0, 0, 0, 0, &res);
	*tmp = (int)res;
	for (size_t i = 0; i < f->inotify->n_watches && !ret; i++) {
		const Haul__Img__InotifyWatch *w = f->inotify->watches[i];
		uint64_t addr;

		ret = rst_put_str(t, 0, w->path, &addr);
		if (!ret)
			ret = rst_rcall(t, SYS_inotify_add_watch, *tmp, addr, w->mask, 0, 0, 0,
					&res);
		if (ret)
			pr_err_r(ret, "cannot watch %s again (wd %d of fd %d)", w->path, w->wd,
				 e->fd);
		else if (res != w->wd) {
			pr_err("watch %s of fd %d came back as wd %ld, not %d", w->path, e->fd, res,
			       w->wd);
			ret = -EEXIST;
		}
	}
	return ret;
}

const struct rst_fd_ops rst_fd_inotify = {
	.name = "inotify",
	.kind = HAUL__IMG__FD_KIND__FD_INOTIFY,
	.version = 4,
	.match = inotify_match,
	.refuse = inotify_refuse,
	.dump = inotify_dump,
	.validate = inotify_validate,
	.restore = inotify_restore,
};
