/*
 * fchan_tree.c - a directory tree (a container's rootfs) kept in step on
 * the target over the file channel: the first scan sends everything, each
 * later one what changed since (p.haul's fs_haul does the same with rsync).
 *
 * A scan walks the tree without following symlinks and never leaves its
 * filesystem's view (a mount inside the rootfs directory on this host is
 * walked as a directory of it: what runc mounts lives in the container's
 * mount namespace, not here).  An entry is sent again when its type,
 * mode, owner, size, mtime, ctime or inode differ from the last scan
 * (ctime catches a write that restored the mtime; the inode a file
 * replaced by a rename); one that vanished is deleted on the target.
 * The entries are kept sorted by path, so a directory is always sent
 * before what it holds.  Carried: directories, regular files, symlinks.
 * Refused by name: device nodes, sockets, fifos (runc makes /dev's
 * nodes itself; a socket file cannot carry its connections).  Not
 * carried: hard links (each name is sent as its own file), extended
 * attributes, ACLs, file capabilities.
 */
#define LOG_PREFIX "fchan: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "haul/ctr_int.h"

struct scan {
	struct fchan_ent *e;
	size_t n, cap;
	char *why;
	size_t wl;
	const char *root;
};

static int ent_cmp(const void *a, const void *b)
{
	return strcmp(((const struct fchan_ent *)a)->path, ((const struct fchan_ent *)b)->path);
}

static const char *kind_refused(mode_t m)
{
	return S_ISCHR(m)    ? "a character device"
	       : S_ISBLK(m)  ? "a block device"
	       : S_ISSOCK(m) ? "a socket file"
	       : S_ISFIFO(m) ? "a fifo"
			     : NULL;
}

static int scan_add(struct scan *s, const char *path, const struct stat *st)
{
	struct fchan_ent *e;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		struct fchan_ent *ne = realloc(s->e, cap * sizeof(*ne));

		if (!ne)
			return -ENOMEM;
		s->e = ne;
		s->cap = cap;
	}
	e = &s->e[s->n];
	e->path = strdup(path);
	if (!e->path)
		return -ENOMEM;
	e->mode = st->st_mode;
	e->size = S_ISDIR(st->st_mode) ? 0 : st->st_size;
	e->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
	e->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
	e->ino = st->st_ino;
	e->seen = false;
	s->n++;
	return 0;
}

/* Walk directory @dfd (path @rel, "" for the root), adding what it holds. */
static int scan_dir(struct scan *s, int dfd, const char *rel, int depth)
{
	DIR *d;
	struct dirent *de;
	int ret = 0;

	if (depth > 256) {
		snprintf(s->why, s->wl, "%s/%s is nested too deep to copy", s->root, rel);
		close(dfd);
		return -ELOOP;
	}
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -errno;
	}
	while (!ret && (errno = 0, de = readdir(d))) {
		char path[PATH_MAX];
		struct stat st;
		const char *bad;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (snprintf(path, sizeof(path), "%s%s%s", rel, rel[0] ? "/" : "", de->d_name) >=
		    (int)sizeof(path))
			return -ENAMETOOLONG;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue; /* gone meanwhile: the next scan deletes it there */
			ret = -errno;
			snprintf(s->why, s->wl, "cannot read %s/%s: %s", s->root, path,
				 strerror(-ret));
			break;
		}
		bad = kind_refused(st.st_mode);
		if (bad) {
			snprintf(
				s->why, s->wl,
				"%s/%s is %s: the file channel carries directories, regular files "
				"and symlinks only; remove it, or keep the rootfs on shared storage "
				"(--shared-storage)",
				s->root, path, bad);
			ret = -EOPNOTSUPP;
			break;
		}
		ret = scan_add(s, path, &st);
		if (!ret && S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd(d), de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			ret = sub < 0 ? -errno : scan_dir(s, sub, path, depth + 1);
		}
	}
	if (!ret && errno)
		ret = -errno;
	closedir(d);
	return ret;
}

/* Whether @a (this scan) differs from @b (the last one sent). */
static bool changed(const struct fchan_ent *a, const struct fchan_ent *b)
{
	return a->mode != b->mode || a->size != b->size || a->mtime_ns != b->mtime_ns ||
	       a->ctime_ns != b->ctime_ns || a->ino != b->ino;
}

static int send_ent(struct fchan_tree *t, struct fchan *c, const struct fchan_ent *e)
{
	char full[PATH_MAX * 2], name[PATH_MAX + 64];
	struct fchan_hdr h = {.area = FCHAN_BUNDLE};
	struct stat st;

	snprintf(full, sizeof(full), "%s/%s", t->root, e->path);
	snprintf(name, sizeof(name), "%s%s%s", t->prefix, e->path[0] ? "/" : "", e->path);
	if (S_ISREG(e->mode)) {
		int ret = fchan_send_file(c, FCHAN_BUNDLE, full, name);

		/* renamed or removed since the scan (nothing was sent): the next scan deletes it */
		return ret == -ENOENT ? 0 : ret;
	}
	if (lstat(full, &st) < 0)
		return errno == ENOENT ? 0 : -errno; /* gone: the next scan deletes it */
	h.mode = st.st_mode & 07777;
	h.uid = st.st_uid;
	h.gid = st.st_gid;
	h.path_len = (uint32_t)strlen(name);
	h.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	if (S_ISLNK(e->mode)) {
		char target[PATH_MAX];
		ssize_t n = readlink(full, target, sizeof(target) - 1);

		if (n < 0)
			return -errno;
		h.type = FCHAN_SYMLINK;
		h.data_len = (uint64_t)n;
		return fchan_send_rec(c, &h, name, target);
	}
	h.type = FCHAN_DIR;
	return fchan_send_rec(c, &h, name, NULL);
}

int fchan_tree_sync(struct fchan_tree *t, struct fchan *c, bool send, char *why, size_t wl)
{
	struct scan s = {.why = why, .wl = wl, .root = t->root};
	struct stat st;
	int dfd, ret;

	why[0] = '\0';
	dfd = open(t->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fstat(dfd, &st) < 0) {
		ret = -errno;
		snprintf(why, wl, "cannot open the rootfs %s: %s", t->root, strerror(-ret));
		if (dfd >= 0)
			close(dfd);
		return ret;
	}
	ret = scan_add(&s, "", &st);
	if (!ret)
		ret = scan_dir(&s, dfd, "", 0);
	else
		close(dfd);
	if (!ret)
		qsort(s.e, s.n, sizeof(*s.e), ent_cmp);
	for (size_t i = 0; !ret && send && i < s.n; i++) {
		struct fchan_ent *old =
			t->n ? bsearch(&s.e[i], t->e, t->n, sizeof(*t->e), ent_cmp) : NULL;

		if (old)
			old->seen = true;
		if (!old || changed(&s.e[i], old))
			ret = send_ent(t, c, &s.e[i]);
	}
	/* what vanished since the last scan goes on the target too */
	for (size_t i = 0; !ret && send && i < t->n; i++) {
		char name[PATH_MAX + 64];

		if (t->e[i].seen)
			continue;
		snprintf(name, sizeof(name), "%s/%s", t->prefix, t->e[i].path);
		ret = fchan_send_rec(c,
				     &(struct fchan_hdr){.type = FCHAN_DELETE,
							 .path_len = (uint32_t)strlen(name)},
				     name, NULL);
	}
	if (ret && !why[0])
		snprintf(why, wl, "copying %s to the target failed: %s", t->root, strerror(-ret));
	if (ret || !send) {
		for (size_t i = 0; i < s.n; i++)
			free(s.e[i].path);
		free(s.e);
		return ret;
	}
	fchan_tree_free(t);
	t->e = s.e;
	t->n = s.n;
	t->cap = s.cap;
	for (size_t i = 0; i < t->n; i++)
		t->e[i].seen = false;
	return 0;
}

void fchan_tree_free(struct fchan_tree *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->e[i].path);
	free(t->e);
	t->e = NULL;
	t->n = t->cap = 0;
}
