/*
 * fd_fanotify.c - fanotify groups of the notification class: their marks,
 * re-added by path.
 *
 * fdinfo: "fanotify flags:F event-flags:E" (fanotify_init's arguments),
 * then one line per mark: an inode ("ino: sdev: ... f_handle:", its path
 * from the handle, fd_fhandle.c), a mount ("mnt_id:", its mount point in
 * the process's mountinfo) or a filesystem ("sdev:" alone, a mount of it),
 * each with "mflags: mask: ignored_mask:".  The restore calls
 * fanotify_init and then fanotify_mark(FAN_MARK_ADD) per mark: its mask,
 * then its ignored mask (FAN_MARK_IGNORE or FAN_MARK_IGNORED_MASK as it
 * was made).  Refused by name: a group of the content or pre-content
 * class (permission events may wait for an answer the restored process
 * cannot give), unread events (FIONREAD on a pidfd_getfd copy: events are
 * not carried), a mark with no path left.
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/target_int.h"

#define RST_FAN_CLASS_MASK 0xc	 /* FAN_CLASS_CONTENT | FAN_CLASS_PRE_CONTENT */
#define RST_FAN_IGNORE	   0x400 /* FAN_MARK_IGNORE, Linux 6.0 */
#define RST_FAN_EVICTABLE  0x200 /* FAN_MARK_EVICTABLE, Linux 5.19 */
#define RST_FAN_MFLAGS	   (FAN_MARK_IGNORED_SURV_MODIFY | RST_FAN_EVICTABLE | RST_FAN_IGNORE)
#define RST_FAN_MAX	   4096 /* marks per group haul carries */

enum {
	MARK_INODE,
	MARK_MOUNT,
	MARK_FS
};

static bool fanotify_match(const struct rst_fd_probe *p)
{
	return !strcmp(p->target, "anon_inode:[fanotify]");
}

/* One mark line: its type, fields and path (resolved when @resolve). */
struct fmark {
	unsigned type, mflags, mask, ignored;
	unsigned long ino;
	char path[4096];
};

/*
 * Mark line @l of fd @p (after "fanotify ") into @m, its path resolved.
 * 0, -EBADMSG (does not parse), -ENOENT (no path), -errno.
 */
static int parse_mark(const struct rst_fd_probe *p, const char *l, struct fmark *m)
{
	const char *mf = strstr(l, "mflags:");
	char mi[64];
	unsigned long v;
	struct stat st;
	int ret;

	memset(m, 0, sizeof(*m));
	if (!mf ||
	    sscanf(mf, "mflags:%x mask:%x ignored_mask:%x", &m->mflags, &m->mask, &m->ignored) != 3)
		return -EBADMSG;
	if (sscanf(l, "ino:%lx", &m->ino) == 1) {
		m->type = MARK_INODE;
		ret = rst_fhandle_path(l, m->path, sizeof(m->path));
		if (!ret && (lstat(m->path, &st) < 0 || st.st_ino != m->ino))
			ret = -ENOENT;
		return ret;
	}
	snprintf(mi, sizeof(mi), "/proc/%d/mountinfo", (int)p->pid);
	if (sscanf(l, "mnt_id:%lx", &v) == 1) {
		m->type = MARK_MOUNT;
		return rst_mount_path(mi, (long)v, 0, m->path, sizeof(m->path));
	}
	if (sscanf(l, "sdev:%lx", &v) == 1) {
		m->type = MARK_FS;
		return rst_mount_path(mi, -1, v, m->path, sizeof(m->path));
	}
	return -EBADMSG;
}

/* Call @fn on every mark line of fd @p; stops at the first non-zero return. */
static int each_mark(const struct rst_fd_probe *p, int (*fn)(void *arg, const char *l), void *arg)
{
	int ret = 0;
	size_t n = 0;

	for (const char *l = strstr(p->fdinfo, "\nfanotify "); l && !ret;
	     l = strstr(l + 1, "\nfanotify ")) {
		if (!strncmp(l + 10, "flags:", 6))
			continue;
		if (++n > RST_FAN_MAX)
			return -E2BIG;
		ret = fn(arg, l + 10);
	}
	return ret;
}

struct fan_check {
	const struct rst_fd_probe *p;
	char *why;
	size_t wl;
};

static int check_mark(void *arg, const char *l)
{
	struct fan_check *c = arg;
	struct fmark *m = malloc(sizeof(*m));
	int ret;

	if (!m)
		return -ENOMEM;
	ret = parse_mark(c->p, l, m);
	if (ret)
		snprintf(c->why, c->wl,
			 "fd %d (fanotify) has a mark haul cannot re-add by path (%.*s): %s",
			 c->p->fd, (int)strcspn(l, " \n"), l,
			 ret == -EBADMSG ? "its fdinfo does not parse" : "no path names it now");
	else if (m->mflags & ~RST_FAN_MFLAGS) {
		snprintf(c->why, c->wl,
			 "fd %d (fanotify) has a mark with flags %#x haul does not know", c->p->fd,
			 m->mflags);
		ret = -EOPNOTSUPP;
	}
	free(m);
	return ret ? -EOPNOTSUPP : 0;
}

static int fanotify_refuse(const struct rst_fd_probe *p, char *why, size_t wl)
{
	struct fan_check c = {p, why, wl};
	unsigned flags = 0, ef = 0;
	const char *h = strstr(p->fdinfo, "fanotify flags:");
	int ret;

	if (!h || sscanf(h, "fanotify flags:%x event-flags:%x", &flags, &ef) != 2) {
		snprintf(why, wl, "fd %d (fanotify): cannot parse its fdinfo", p->fd);
		return -EOPNOTSUPP;
	}
	if (flags & RST_FAN_CLASS_MASK) {
		snprintf(why, wl,
			 "fd %d is a fanotify group of the %s class: permission events may be "
			 "waiting for its answer, which a restore cannot carry",
			 p->fd,
			 (flags & RST_FAN_CLASS_MASK) == FAN_CLASS_CONTENT ? "content"
									   : "pre-content");
		return -EOPNOTSUPP;
	}
	ret = each_mark(p, check_mark, &c);
	if (ret == -E2BIG)
		snprintf(why, wl, "fd %d (fanotify) has more than %d marks", p->fd, RST_FAN_MAX);
	if (ret)
		return -EOPNOTSUPP;
	return rst_fhandle_refuse_queued(p, "fanotify", why, wl);
}

static int dump_mark(void *arg, const char *l)
{
	Haul__Img__FileObject *o = ((void **)arg)[0];
	const struct rst_fd_probe *p = ((void **)arg)[1];
	Haul__Img__FanotifyFile *fa = o->fanotify;
	Haul__Img__FanotifyMark **nm, *mk;
	struct fmark *m = malloc(sizeof(*m));
	int ret = m ? parse_mark(p, l, m) : -ENOMEM;

	nm = ret ? NULL : realloc(fa->marks, (fa->n_marks + 1) * sizeof(*nm));
	mk = nm ? calloc(1, sizeof(*mk)) : NULL;
	if (nm)
		fa->marks = nm;
	if (!ret && !mk)
		ret = -ENOMEM;
	if (!ret) {
		haul__img__fanotify_mark__init(mk);
		mk->type = m->type;
		mk->mflags = m->mflags;
		mk->mask = m->mask;
		mk->ignored_mask = m->ignored;
		mk->path = strdup(m->path);
		fa->marks[fa->n_marks++] = mk;
		if (!mk->path)
			ret = -ENOMEM;
	}
	free(m);
	return ret;
}

static int fanotify_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
			 Haul__Img__FileObject *const *prev, size_t nprev)
{
	const char *h = strstr(p->fdinfo, "fanotify flags:");
	void *arg[2] = {o, (void *)p};
	Haul__Img__FanotifyFile *fa;

	(void)prev;
	(void)nprev;
	fa = calloc(1, sizeof(*fa));
	if (!fa)
		return -ENOMEM;
	haul__img__fanotify_file__init(fa);
	o->fanotify = fa;
	if (!h || sscanf(h, "fanotify flags:%x event-flags:%x", &fa->flags, &fa->event_flags) != 2)
		return -EBADMSG;
	return each_mark(p, dump_mark, arg);
}

static int fanotify_validate(const Haul__Img__FileObject *f, char *why, size_t wl)
{
	const Haul__Img__FanotifyFile *fa = f->fanotify;

	if (!fa || (fa->flags & RST_FAN_CLASS_MASK) || fa->n_marks > RST_FAN_MAX) {
		snprintf(why, wl, "file %u (fanotify): %s", f->id,
			 !fa ? "no fanotify part" : "a permission class or too many marks");
		return -EBADMSG;
	}
	for (size_t i = 0; i < fa->n_marks; i++) {
		const Haul__Img__FanotifyMark *m = fa->marks[i];

		if (m->type > MARK_FS || (m->mflags & ~RST_FAN_MFLAGS) ||
		    (!m->mask && !m->ignored_mask) || m->path[0] != '/' ||
		    strlen(m->path) >= 4096) {
			snprintf(why, wl,
				 "file %u (fanotify).marks[%zu]: type %u mflags %#x path '%.64s'",
				 f->id, i, m->type, m->mflags, m->path);
			return -EBADMSG;
		}
	}
	return 0;
}

/* Mark @m on group @fd in the stub: its mask, then its ignored mask. */
static int restore_mark(struct rst_target *t, int fd, const Haul__Img__FanotifyMark *m)
{
	unsigned type = m->type == MARK_MOUNT ? FAN_MARK_MOUNT
			: m->type == MARK_FS  ? FAN_MARK_FILESYSTEM
					      : 0;
	unsigned base = FAN_MARK_ADD | type | (m->mflags & RST_FAN_EVICTABLE);
	uint64_t addr;
	int ret = rst_put_str(t, 0, m->path, &addr);

	if (!ret && m->mask)
		ret = rst_rcall(t, SYS_fanotify_mark, fd, base, m->mask, AT_FDCWD, addr, 0, NULL);
	if (!ret && m->ignored_mask) {
		unsigned ig = m->mflags & RST_FAN_IGNORE ? RST_FAN_IGNORE : FAN_MARK_IGNORED_MASK;

		ret = rst_rcall(t, SYS_fanotify_mark, fd,
				base | ig | (m->mflags & FAN_MARK_IGNORED_SURV_MODIFY),
				m->ignored_mask, AT_FDCWD, addr, 0, NULL);
	}
	return ret;
}

static int fanotify_restore(struct rst_target *t, struct rst_fd_rctx *x,
			    const Haul__Img__FileObject *f, const Haul__Img__FdEntry *e,
			    const char *path, int *tmp, bool *shared)
{
	const Haul__Img__FanotifyFile *fa = f->fanotify;
	long res = -1;
	int ret;

	(void)x;
	(void)path;
	*shared = false;
	ret = rst_rcall(t, SYS_fanotify_init, fa->flags, fa->event_flags, 0, 0, 0, 0, &res);
	*tmp = (int)res;
	if (ret)
		pr_err_r(ret, "cannot create fanotify group of fd %d (flags %#x)", e->fd,
			 fa->flags);
	for (size_t i = 0; i < fa->n_marks && !ret; i++) {
		ret = restore_mark(t, *tmp, fa->marks[i]);
		if (ret)
			pr_err_r(ret, "cannot mark %s again on fd %d (fanotify)",
				 fa->marks[i]->path, e->fd);
	}
	return ret;
}

const struct rst_fd_ops rst_fd_fanotify = {
	.name = "fanotify",
	.kind = HAUL__IMG__FD_KIND__FD_FANOTIFY,
	.version = 4,
	.match = fanotify_match,
	.refuse = fanotify_refuse,
	.dump = fanotify_dump,
	.validate = fanotify_validate,
	.restore = fanotify_restore,
};
