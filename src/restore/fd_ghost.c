/*
 * fd_ghost.c - regular files deleted while open, carried by content.
 *
 * Dump: the file is read through /proc/PID/fd/N (O_NOATIME, so that the
 * dump leaves its atime alone) extent by extent: SEEK_DATA/SEEK_HOLE give
 * the data extents, and only those travel ((offset, length) pairs in
 * GhostFile.extents, their bytes back to back in GhostFile.content); the
 * holes stay holes.  Owner, mode, size, atime and mtime are recorded too.
 * One inode is dumped once, on the first FileObject that names it
 * (fd_dump.c).
 *
 * Restore: the restorer creates a new file under the old name (or, when
 * the name is taken, next to it; when its directory was deleted too, in
 * the nearest directory above that still exists), in the stub's root (a
 * container's: /proc/STUB/root, RESOLVE_IN_ROOT), writes the extents,
 * sets the size with ftruncate, then owner, mode (after the owner: chown
 * clears set-id bits) and last the times.  Every fd of the image that
 * named this inode opens it by that name in the restored process; then the
 * name is unlinked, so the process holds it deleted again.  The ctime and
 * the inode number are new: no call can set them.
 *
 * rst_fd_deleted is the kind's entry in the fd table (fd_int.h): the
 * checks of a regular file, then the size limit; the restore opens the
 * recreated name (fd_restore.c recreates it on the inode's first fd).
 */
#define LOG_PREFIX "ghost: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/restore_int.h"

uint64_t rst_ghost_bytes(const struct stat *st)
{
	uint64_t alloc = (uint64_t)st->st_blocks * 512;

	return alloc < (uint64_t)st->st_size ? alloc : (uint64_t)st->st_size;
}

/* Append extent [@off, @off + @len) of @fd to @o. */
static int add_extent(int fd, Haul__Img__GhostFile *o, uint64_t off, uint64_t len, size_t *cap)
{
	size_t n = o->n_extents;
	uint8_t *data;
	uint64_t *ext;

	if (o->content.len + len > RST_DELETED_FILE_MAX)
		return -EFBIG;
	if (n + 2 > *cap) {
		size_t nc = *cap ? *cap * 2 : 16;

		ext = realloc(o->extents, nc * sizeof(*ext));
		if (!ext)
			return -ENOMEM;
		o->extents = ext;
		*cap = nc;
	}
	data = realloc(o->content.data, o->content.len + len + 1);
	if (!data)
		return -ENOMEM;
	o->content.data = data;
	for (uint64_t done = 0; done < len;) {
		ssize_t r = pread(fd, data + o->content.len + done, len - done, off + done);

		if (r < 0)
			return -errno;
		if (r == 0) /* shrank meanwhile: keep what there is */
			len = done;
		done += r;
	}
	o->extents[n] = off;
	o->extents[n + 1] = len;
	o->n_extents = n + 2;
	o->content.len += len;
	return 0;
}

int rst_ghost_dump(pid_t pid, int fd, Haul__Img__FileObject *f)
{
	char path[64];
	int ret;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
	ret = rst_ghost_read(path, f->ghost);
	if (ret == -EFBIG)
		pr_err("deleted file %s of fd %d of pid %d holds more than %llu MiB of data; it "
		       "cannot be carried in the image",
		       f->path, fd, (int)pid, RST_DELETED_FILE_MAX >> 20);
	return ret;
}

int rst_ghost_read(const char *path, Haul__Img__GhostFile *o)
{
	int dfd, ret;

	/* O_NONBLOCK: were a write lease held on it, the open fails instead of breaking it. */
	dfd = open(path, O_RDONLY | O_CLOEXEC | O_NOATIME | O_NONBLOCK);
	if (dfd < 0 && errno == EPERM)
		dfd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (dfd < 0)
		return -errno;
	ret = rst_ghost_read_fd(dfd, o);
	close(dfd);
	return ret;
}

void rst_ghost_meta(const struct stat *st, Haul__Img__GhostFile *o)
{
	o->has_uid = o->has_gid = o->has_atime_ns = o->has_mtime_ns = true;
	o->uid = st->st_uid;
	o->gid = st->st_gid;
	o->atime_ns = (uint64_t)st->st_atim.tv_sec * 1000000000ULL + st->st_atim.tv_nsec;
	o->mtime_ns = (uint64_t)st->st_mtim.tv_sec * 1000000000ULL + st->st_mtim.tv_nsec;
	o->has_size = o->has_mode = true;
	o->size = st->st_size;
	o->mode = st->st_mode;
}

int rst_ghost_read_fd(int dfd, Haul__Img__GhostFile *o)
{
	struct stat st;
	size_t cap = 0;
	off_t off = 0;
	int ret = 0;

	if (fstat(dfd, &st) < 0)
		return -errno;
	rst_ghost_meta(&st, o);
	o->has_content = true;
	while (!ret && off < st.st_size) {
		off_t data = lseek(dfd, off, SEEK_DATA), hole;

		if (data < 0 && errno == ENXIO)
			break; /* only a hole is left */
		if (data < 0) {
			/* No SEEK_DATA on this filesystem: all of it is data. */
			ret = add_extent(dfd, o, off, st.st_size - off, &cap);
			break;
		}
		hole = lseek(dfd, data, SEEK_HOLE);
		if (hole < 0 || hole > st.st_size)
			hole = st.st_size;
		ret = add_extent(dfd, o, data, hole - data, &cap);
		off = hole;
	}
	if (!ret && !o->content.data) /* all holes: an empty, not a missing, content */
		o->content.data = malloc(1);
	if (!ret && !o->content.data)
		ret = -ENOMEM;
	return ret;
}

/* Absolute @path split into its directory (@dir, "/" at the top) and last component (@base). */
static int split(const char *path, char *dir, size_t dl, const char **base)
{
	const char *slash = strrchr(path, '/');

	if (path[0] != '/' || !slash[1] || (size_t)(slash - path) >= dl)
		return -EINVAL;
	snprintf(dir, dl, "%.*s", slash == path ? 1 : (int)(slash - path), path);
	*base = slash + 1;
	return 0;
}

/*
 * Create @name in @pfd (absolute @dir of the stub's root) into @path; its
 * fd, or -errno.  @tmpfd >= 0: not a new file but that unnamed one
 * (O_TMPFILE) linked there; a new fd of it.
 */
static int create_at(int pfd, const char *dir, const char *name, int tmpfd, char *path, size_t plen)
{
	char self[48];
	int fd;

	if (tmpfd < 0) {
		fd = openat(pfd, name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600);
	} else {
		snprintf(self, sizeof(self), "/proc/self/fd/%d", tmpfd);
		fd = linkat(AT_FDCWD, self, pfd, name, AT_SYMLINK_FOLLOW) < 0
			     ? -1
			     : fcntl(tmpfd, F_DUPFD_CLOEXEC, 0);
	}
	if (fd < 0)
		return -errno;
	if ((size_t)snprintf(path, plen, "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", name) >=
	    plen) {
		unlinkat(pfd, name, 0);
		close(fd);
		return -ENAMETOOLONG;
	}
	return fd;
}

/* A free name like @base's in @pfd: base.haul-PID-INO[-N]; the fd, or -errno. */
static int create_beside(int pfd, const char *dir, const char *base, uint64_t ino, int tmpfd,
			 char *path, size_t plen)
{
	char name[512];
	int fd = -EEXIST;

	for (unsigned i = 0; i < 8 && fd == -EEXIST; i++) {
		snprintf(name, sizeof(name), i ? "%.400s.haul-%d-%llu-%u" : "%.400s.haul-%d-%llu",
			 base, (int)getpid(), (unsigned long long)ino, i);
		fd = create_at(pfd, dir, name, tmpfd, path, plen);
	}
	return fd;
}

/*
 * The directory of the stub's root (a container's, where its fds and
 * mappings open it: RESOLVE_IN_ROOT, as cwd_ghost.c) a file like @path is
 * made in: @path's own, or, when it was deleted too, the nearest one above
 * that exists (*@above).  An O_PATH fd or -errno; @dir its path, @base
 * @path's last component.
 */
static int near_dir(const struct rst_target *t, const char *path, char *dir, size_t dl,
		    const char **base, bool *above)
{
	int pfd;

	if (split(path, dir, dl, base))
		return -EINVAL;
	pfd = rst_dir_in_root(t, dir);
	*above = pfd == -ENOENT;
	while (pfd == -ENOENT && strcmp(dir, "/")) {
		char *slash = strrchr(dir, '/');

		if (slash == dir)
			dir[1] = '\0';
		else
			*slash = '\0';
		pfd = rst_dir_in_root(t, dir);
	}
	return pfd;
}

/*
 * A new, empty file (or unnamed @tmpfd linked) with a free name like
 * @f->path's, in near_dir's directory; its fd, its name in @path and its
 * directory (O_PATH) in *@dirfd, by which the caller removes it even once
 * the stub is gone.
 */
static int create_near(const struct rst_target *t, const Haul__Img__FileObject *f, int tmpfd,
		       char *path, size_t plen, int *dirfd)
{
	const Haul__Img__GhostFile *o = f->ghost;
	char dir[4096];
	const char *base;
	bool above;
	int pfd, fd;

	pfd = near_dir(t, f->path, dir, sizeof(dir), &base, &above);
	if (pfd < 0)
		return pfd;
	if (above) {
		fd = create_beside(pfd, dir, ".haul-ghost", o->ino, tmpfd, path, plen);
	} else {
		fd = create_at(pfd, dir, base, tmpfd, path, plen);
		if (fd == -EEXIST) /* someone reused the name since: keep theirs */
			fd = create_beside(pfd, dir, base, o->ino, tmpfd, path, plen);
	}
	if (fd < 0)
		close(pfd);
	else
		*dirfd = pfd;
	return fd;
}

int rst_ghost_tmpfile(const struct rst_target *t, const char *path)
{
	char dir[4096];
	const char *base;
	bool above;
	int pfd = near_dir(t, path, dir, sizeof(dir), &base, &above), fd;

	if (pfd < 0)
		return pfd;
	fd = openat(pfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		fd = errno == EISDIR ? -EOPNOTSUPP : -errno; /* EISDIR: no O_TMPFILE there */
	close(pfd);
	return fd;
}

int rst_ghost_remove(int *dirfd, const char *path)
{
	const char *base = strrchr(path, '/');
	int ret = 0;

	if (*dirfd < 0)
		return 0;
	if (base && unlinkat(*dirfd, base + 1, 0) < 0)
		ret = -errno;
	close(*dirfd);
	*dirfd = -1;
	return ret;
}

int rst_ghost_fstat(int dirfd, const char *path, struct stat *st)
{
	const char *base = strrchr(path, '/');

	if (dirfd < 0 || !base)
		return -EBADF;
	return fstatat(dirfd, base + 1, st, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

int rst_ghost_fill(int fd, const Haul__Img__GhostFile *o)
{
	struct timespec ts[2];
	size_t at = 0;
	int ret = 0;

	for (size_t i = 0; !ret && i + 1 < o->n_extents; i += 2) {
		uint64_t off = o->extents[i], len = o->extents[i + 1];

		if (at + len > o->content.len)
			return -EBADMSG;
		for (uint64_t done = 0; !ret && done < len;) {
			ssize_t n = pwrite(fd, o->content.data + at + done, len - done, off + done);

			if (n <= 0)
				ret = n < 0 ? -errno : -EIO;
			else
				done += n;
		}
		at += len;
	}
	if (!ret && o->has_size && ftruncate(fd, (off_t)o->size) < 0)
		ret = -errno;
	if (!ret && o->has_uid && fchown(fd, o->uid, o->gid) < 0)
		ret = -errno;
	if (!ret && fchmod(fd, o->mode & 07777) < 0)
		ret = -errno;
	if (!ret && o->has_mtime_ns) {
		ts[0].tv_sec = o->atime_ns / 1000000000ULL;
		ts[0].tv_nsec = o->atime_ns % 1000000000ULL;
		ts[1].tv_sec = o->mtime_ns / 1000000000ULL;
		ts[1].tv_nsec = o->mtime_ns % 1000000000ULL;
		if (futimens(fd, ts) < 0)
			ret = -errno;
	}
	return ret;
}

int rst_ghost_create(const struct rst_target *t, const Haul__Img__FileObject *f, char *path,
		     size_t plen, int *dirfd)
{
	int fd, ret;

	*dirfd = -1;
	fd = create_near(t, f, -1, path, plen, dirfd);
	if (fd < 0)
		return fd;
	ret = rst_ghost_fill(fd, f->ghost);
	close(fd);
	if (ret)
		rst_ghost_remove(dirfd, path);
	return ret;
}

int rst_ghost_link(const struct rst_target *t, const Haul__Img__FileObject *f, int tmpfd,
		   char *path, size_t plen, int *dirfd)
{
	int fd;

	*dirfd = -1;
	fd = create_near(t, f, tmpfd, path, plen, dirfd);
	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

static bool deleted_match(const struct rst_fd_probe *p)
{
	return S_ISREG(p->st->st_mode) && (p->deleted || p->st->st_nlink == 0);
}

static int deleted_refuse(const struct rst_fd_probe *p, char *why, size_t whylen)
{
	int ret = rst_fd_reg.refuse(p, why, whylen);

	if (ret)
		return ret;
	if (p->st->st_nlink > 0) {
		/*
		 * Unlinked here but linked elsewhere (link + unlink): a file
		 * recreated from its content would be a new inode, parted from
		 * the one the other names still show (zdtm unlink_fstat03).
		 */
		snprintf(why, whylen,
			 "fd %d is %s, unlinked, but its inode still has %lu other link(s) "
			 "elsewhere; haul recreates an unlinked file as a new inode and cannot "
			 "find those links (not supported yet): reopen the file by a name it "
			 "has, or close the fd",
			 p->fd, p->target, (unsigned long)p->st->st_nlink);
		return -EOPNOTSUPP;
	}
	if (rst_ghost_bytes(p->st) > RST_DELETED_FILE_MAX) {
		snprintf(why, whylen,
			 "fd %d is deleted file %s with %llu bytes of data (more "
			 "than %llu MiB cannot be carried in the image)",
			 p->fd, p->target, (unsigned long long)rst_ghost_bytes(p->st),
			 RST_DELETED_FILE_MAX >> 20);
		return -EOPNOTSUPP;
	}
	return 0;
}

/* The inode's identity, size and mode; its content comes on its first FileObject (fd_dump.c). */
static int deleted_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
			Haul__Img__FileObject *const *prev, size_t nprev)
{
	Haul__Img__GhostFile *g = malloc(sizeof(*g));

	(void)prev;
	(void)nprev;
	if (!g)
		return -ENOMEM;
	haul__img__ghost_file__init(g);
	g->dev = p->st->st_dev;
	g->ino = p->st->st_ino;
	g->has_size = g->has_mode = true;
	g->size = p->st->st_size;
	g->mode = p->st->st_mode;
	o->ghost = g;
	return 0;
}

/* The extents: (offset, length) pairs in order, inside the file and the content. */
static int deleted_validate(const Haul__Img__FileObject *f, char *why, size_t wl)
{
	const Haul__Img__GhostFile *g = f->ghost;
	struct rst_extents x;
	uint64_t data;

	if (!g) {
		snprintf(why, wl, "file %u is a deleted file without its ghost part", f->id);
		return -EBADMSG;
	}
	if (!f->path || !f->path[0]) {
		snprintf(why, wl, "file %u (deleted file) has no path to recreate it at", f->id);
		return -EBADMSG;
	}
	if (g->has_presented && g->presented) {
		snprintf(why, wl,
			 "file %u (deleted file %.256s) is named as sent before the freeze, "
			 "which only a mapped one can be",
			 f->id, f->path);
		return -EBADMSG;
	}
	x = (struct rst_extents){
		.part = "ghost",
		.beyond = "the file or its content",
		.v = g->extents,
		.n = g->n_extents,
		.size = g->has_size ? g->size : UINT64_MAX,
		.datalen = g->content.len,
	};
	return rst_fd_check_extents(f->id, &x, &data, why, wl);
}

const struct rst_fd_ops rst_fd_deleted = {
	.name = "deleted file",
	.kind = HAUL__IMG__FD_KIND__FD_DELETED,
	.version = 4,
	.match = deleted_match,
	.refuse = deleted_refuse,
	.dump = deleted_dump,
	.validate = deleted_validate,
	.restore = rst_fd_open_path,
	.setup = rst_fd_seek,
};
