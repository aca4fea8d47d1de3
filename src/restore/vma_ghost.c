/*
 * vma_ghost.c - files deleted while mapped MAP_PRIVATE (a library or data
 * file replaced by a package upgrade while the server runs), carried by
 * content: one resource kind (res_int.h), "RES_VMA_GHOST".
 *
 * Precheck: such a mapping is carried when its file is a regular file
 * with no other link and at most RST_DELETED_FILE_MAX bytes of data; a
 * shared mapping of a deleted file, an AIO ring ("/[aio]"), a file linked
 * elsewhere and a larger one are refused by name (rst_vma_ghost_refusal,
 * precheck.c).
 *
 * Pages: as for any private file mapping, only the pages the process wrote
 * travel (tracker/read_file.c reads the rest from the file through
 * /proc/PID/map_files, deleted or not).  Until the state arrives the target
 * keeps each such VMA as anonymous memory, a placeholder whose bits mark
 * the pages written into it, zero pages included (target_layout.c).
 *
 * Dump: the content of each inode once (GhostFile: data extents and their
 * bytes, size, mode, owner, times), read through /proc/PID/map_files as
 * fd_ghost.c reads /proc/PID/fd, into ProcessState.mapped_ghosts; none
 * where an fd of the process carries the inode's content already.  In a
 * migration it went to the target before the freeze (vma_ghost_pre.c):
 * unchanged since, the state names it `presented`, without its bytes.
 * Otherwise it travels with the state, in the stop (a state over one frame
 * goes in parts, State.total).  A deleted executable is the ghost its
 * mappings name (dump.c exe_ghost, restore_mm opens it).
 *
 * Restore (phase RST_RES_VMAS: after the layout and shared memory, before
 * the memory hooks, mlock and seals): each inode's file is made again by
 * rst_ghost_create (at its path, or next to it when the path is taken, as
 * by the new library; a presented one was made unnamed before the freeze
 * and is only linked there, rst_ghost_link), every placeholder of it is replaced by a private
 * mapping of that file with the written pages copied over
 * (rst_target_map_ghost), and the name is unlinked: the process maps a
 * deleted file again, the pages it never wrote read the old file's bytes,
 * and MADV_DONTNEED of a written page brings the file's back, as on the
 * source.  When an fd of the process names the same deleted inode, or it
 * is the executable, the name stays until the fds and the mm fields are
 * restored (fd_restore.c and restore_mm open it: one inode for all;
 * rst_vma_ghost_unlink).  The ctime and the inode number are new.  In a
 * tree each process makes its own copy (not shared between processes).
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/vma.h"
#include "restore/fd_int.h"
#include "restore/res_int.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

bool rst_vma_ghost(const struct haul_vma *v)
{
	return (v->flags & (HAUL_VMA_FILE | HAUL_VMA_DELETED)) ==
		       (HAUL_VMA_FILE | HAUL_VMA_DELETED) &&
	       !(v->flags & (HAUL_VMA_SHARED | HAUL_VMA_SHMEM | HAUL_VMA_SPECIAL));
}

int rst_vma_ghost_refusal(pid_t pid, const struct haul_vma *v, char *why, size_t len)
{
	const char *p = v->path ? v->path : "";
	char mf[96];
	struct stat st;

	if (!(v->flags & HAUL_VMA_DELETED) || (v->flags & HAUL_VMA_SHMEM))
		return 0;
	if (!strcmp(p, "/[aio]")) {
		snprintf(
			why, len,
			"VMA %#" PRIx64 "-%#" PRIx64 " is an AIO ring (io_setup): Linux AIO "
			"contexts are not carried (not supported yet); use io_uring or blocking I/O",
			v->start, v->end);
		return -EOPNOTSUPP;
	}
	if (v->flags & HAUL_VMA_SHARED) {
		snprintf(why, len,
			 "VMA %#" PRIx64 "-%#" PRIx64
			 " maps deleted file %s MAP_SHARED: its writes "
			 "go to a file that no longer has a name, which haul does not carry (not "
			 "supported yet; private mappings of deleted files are)",
			 v->start, v->end, p);
		return -EOPNOTSUPP;
	}
	snprintf(mf, sizeof(mf), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pid, v->start,
		 v->end);
	if (stat(mf, &st) < 0)
		return 0; /* gone since the maps were read: the dump judges it again */
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, len,
			 "VMA %#" PRIx64 "-%#" PRIx64 " maps %s, deleted and not a regular file "
			 "(mode %#o): not supported",
			 v->start, v->end, p, (unsigned)st.st_mode);
		return -EOPNOTSUPP;
	}
	if (st.st_nlink > 0) {
		snprintf(why, len,
			 "VMA %#" PRIx64 "-%#" PRIx64 " maps %s, unlinked there but with %lu other "
			 "link(s) elsewhere; haul makes a deleted file again as a new inode and "
			 "cannot find those links (not supported yet)",
			 v->start, v->end, p, (unsigned long)st.st_nlink);
		return -EOPNOTSUPP;
	}
	if (rst_ghost_bytes(&st) > RST_DELETED_FILE_MAX) {
		snprintf(why, len,
			 "VMA %#" PRIx64 "-%#" PRIx64 " maps deleted file %s with %llu bytes of "
			 "data: more than %llu MiB cannot be carried",
			 v->start, v->end, p, (unsigned long long)rst_ghost_bytes(&st),
			 RST_DELETED_FILE_MAX >> 20);
		return -EOPNOTSUPP;
	}
	return 0;
}

/* The ghost of (@dev, @ino) in @ps, or NULL. */
static const Haul__Img__MappedGhost *ghost_of(const Haul__Img__ProcessState *ps, uint64_t dev,
					      uint64_t ino)
{
	for (size_t i = 0; i < ps->n_mapped_ghosts; i++)
		if (ps->mapped_ghosts[i]->ghost->dev == dev &&
		    ps->mapped_ghosts[i]->ghost->ino == ino)
			return ps->mapped_ghosts[i];
	return NULL;
}

/* The FileObject of an fd of @ps on the deleted inode (@dev, @ino) with its content, or NULL. */
static const Haul__Img__FileObject *fd_ghost_of(const Haul__Img__ProcessState *ps, uint64_t dev,
						uint64_t ino)
{
	for (size_t i = 0; i < ps->n_files; i++) {
		const Haul__Img__FileObject *f = ps->files[i];

		if (f->kind == HAUL__IMG__FD_KIND__FD_DELETED && f->ghost && f->ghost->dev == dev &&
		    f->ghost->ino == ino && f->ghost->has_content)
			return f;
	}
	return NULL;
}

/* What rst_vma_ghost_dump allocated, freed by rst_vma_ghost_release. */
struct ghost_dump {
	Haul__Img__MappedGhost *m;
	Haul__Img__GhostFile *g;
	Haul__Img__MappedGhost **mp;
	size_t n;
};

void rst_vma_ghost_release(void *priv)
{
	struct ghost_dump *d = priv;

	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++) {
		free(d->g[i].content.data);
		free(d->g[i].extents);
	}
	free(d->m);
	free(d->g);
	free(d->mp);
	free(d);
}

/* Count the inodes @l maps deleted and private; the first VMA of each in @first. */
static size_t count_ghosts(const struct haul_layout *l, bool *first)
{
	size_t n = 0;

	for (size_t i = 0; i < l->n; i++) {
		first[i] = false;
		if (!rst_vma_ghost(&l->v[i]))
			continue;
		first[i] = true;
		for (size_t k = 0; k < i && first[i]; k++)
			if (first[k] && l->v[k].dev == l->v[i].dev && l->v[k].ino == l->v[i].ino)
				first[i] = false;
		n += first[i];
	}
	return n;
}

int rst_vma_ghost_dump(pid_t pid, const struct haul_layout *l, struct rst_ghost_pre *pre,
		       Haul__Img__ProcessState *ps, void **priv, char *why, size_t wl)
{
	struct ghost_dump *d;
	bool *first = calloc(l->n ? l->n : 1, sizeof(*first));
	size_t n;
	int ret = 0;

	if (!first)
		return -ENOMEM;
	n = count_ghosts(l, first);
	if (!n) {
		free(first);
		return 0;
	}
	d = calloc(1, sizeof(*d));
	if (d) {
		d->m = calloc(n, sizeof(*d->m));
		d->g = calloc(n, sizeof(*d->g));
		d->mp = calloc(n, sizeof(*d->mp));
	}
	*priv = d;
	if (!d || !d->m || !d->g || !d->mp) {
		free(first);
		return -ENOMEM;
	}
	for (size_t i = 0; i < l->n && !ret; i++) {
		const struct haul_vma *v = &l->v[i];
		Haul__Img__MappedGhost *m = &d->m[d->n];
		Haul__Img__GhostFile *g = &d->g[d->n];
		char mf[96];

		if (!first[i])
			continue;
		haul__img__mapped_ghost__init(m);
		haul__img__ghost_file__init(g);
		m->path = v->path;
		m->ghost = g;
		g->dev = v->dev;
		g->ino = v->ino;
		d->mp[d->n++] = m;
		/* an fd of it carries the content already (fd_ghost.c): not twice */
		if (fd_ghost_of(ps, v->dev, v->ino))
			continue;
		/* on the target since before the freeze, unchanged (vma_ghost_pre.c) */
		if (pre && rst_ghost_pre_unchanged(pre, pid, v, g))
			continue;
		snprintf(mf, sizeof(mf), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pid,
			 v->start, v->end);
		ret = rst_ghost_read(mf, g);
		if (ret == -EFBIG)
			snprintf(why, wl,
				 "deleted file %s mapped at %#" PRIx64 " by pid %d holds more than "
				 "%llu MiB of data: it cannot be carried",
				 v->path, v->start, (int)pid, RST_DELETED_FILE_MAX >> 20);
		else if (ret)
			snprintf(why, wl,
				 "cannot read deleted file %s mapped at %#" PRIx64 " by pid %d: %s",
				 v->path, v->start, (int)pid, strerror(-ret));
	}
	free(first);
	ps->n_mapped_ghosts = d->n;
	ps->mapped_ghosts = d->mp;
	return ret;
}

bool rst_vma_ghost_path_ok(const char *p)
{
	if (!p || p[0] != '/' || strnlen(p, 3901) > 3900)
		return false;
	for (const char *c = p; c; c = strchr(c + 1, '/')) {
		size_t n = strcspn(c + 1, "/");

		if ((n == 1 && c[1] == '.') || (n == 2 && c[1] == '.' && c[2] == '.'))
			return false;
	}
	return true;
}

/* At load: every ghost's extents sane, one per inode; every deleted private VMA has one. */
static int ghost_validate(const Haul__Img__ProcessState *ps, char *why, size_t wl)
{
	for (size_t i = 0; i < ps->n_mapped_ghosts; i++) {
		const Haul__Img__MappedGhost *m = ps->mapped_ghosts[i];
		Haul__Img__FileObject f = HAUL__IMG__FILE_OBJECT__INIT;
		int ret;

		f.kind = HAUL__IMG__FD_KIND__FD_DELETED;
		f.path = m->path;
		f.ghost = m->ghost;
		if (!rst_vma_ghost_path_ok(m->path)) {
			snprintf(why, wl,
				 "mapped_ghosts[%zu]: path not absolute, with a '.' or '..' "
				 "component, or over 3900 bytes",
				 i);
			return -EBADMSG;
		}
		if (!m->ghost->has_content && !m->ghost->presented &&
		    !fd_ghost_of(ps, m->ghost->dev, m->ghost->ino)) {
			snprintf(why, wl,
				 "mapped_ghosts[%zu] (%.256s): no content, nor an fd of it", i,
				 m->path);
			return -EBADMSG;
		}
		if (ghost_of(ps, m->ghost->dev, m->ghost->ino) != m) {
			snprintf(why, wl, "mapped_ghosts[%zu] (%.256s): a second one of its inode",
				 i, m->path);
			return -EBADMSG;
		}
		if (m->ghost->has_content && m->ghost->presented) {
			snprintf(why, wl,
				 "mapped_ghosts[%zu] (%.256s): both its content and sent before", i,
				 m->path);
			return -EBADMSG;
		}
		ret = m->ghost->has_content ? rst_fd_deleted.validate(&f, why, wl) : 0;
		if (ret)
			return ret;
	}
	for (size_t i = 0; i < ps->n_vmas; i++) {
		const Haul__Img__Vma *v = ps->vmas[i];
		struct haul_vma h = {.flags = v->flags};

		if (rst_vma_ghost(&h) && !ghost_of(ps, v->dev, v->ino)) {
			snprintf(why, wl,
				 "vmas[%zu]: maps deleted file %.256s, whose content the image "
				 "lacks",
				 i, v->path ? v->path : "");
			return -EBADMSG;
		}
	}
	return 0;
}

/* Whether @g is the process's executable (dump.c names a deleted one by its ghost). */
static bool is_exe(const Haul__Img__ProcessState *ps, const Haul__Img__GhostFile *g)
{
	return ps->mm && ps->mm->has_exe_dev && ps->mm->exe_dev == g->dev &&
	       ps->mm->exe_ino == g->ino;
}

/* Remove made-again file @g (by its directory: the stub may be gone) and forget it. */
static void ghost_drop(struct rst_target *t, struct rst_tghost *g)
{
	int ret = rst_ghost_remove(&g->dirfd, g->path);

	if (ret)
		pr_warn("cannot remove %s, a deleted file of pid %d made again in its root: %s; "
			"remove it by hand",
			g->path, (int)t->o.pid, strerror(-ret));
	free(g->path);
}

/* Whether stub fd @fd is the file made at @path in its root (a safety net: nothing else). */
static int same_file(struct rst_target *t, const struct rst_tghost *g, int fd, char *why, size_t wl)
{
	const char *path = g->path;
	struct stat made, opened;
	char link[64];

	snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)t->stub, fd);
	if (!rst_ghost_fstat(g->dirfd, path, &made) && !stat(link, &opened) &&
	    made.st_dev == opened.st_dev && made.st_ino == opened.st_ino)
		return 0;
	snprintf(why, wl,
		 "deleted file %.256s, made again, is not what pid %d opens by that name: "
		 "something replaced it meanwhile",
		 path, (int)t->o.pid);
	return -EXDEV;
}

/* Make @m's file again, map it over its placeholders; its name kept in t->vghosts. */
static int remap_inode(struct rst_target *t, const Haul__Img__ProcessState *ps,
		       const Haul__Img__MappedGhost *m, char *why, size_t wl)
{
	Haul__Img__FileObject f = HAUL__IMG__FILE_OBJECT__INIT;
	const Haul__Img__FileObject *held = fd_ghost_of(ps, m->ghost->dev, m->ghost->ino);
	Haul__Img__GhostFile gf;
	struct rst_tghost *g;
	char path[4096];
	uint64_t rpath;
	long fd = -1;
	int ret, dfd;

	f.kind = HAUL__IMG__FD_KIND__FD_DELETED;
	f.path = m->path;
	/* the content an fd of it carries when the mapping's record has none */
	gf = *(m->ghost->has_content || !held ? m->ghost : held->ghost);
	/* never a set-id copy of an old program on disk, even for a moment */
	gf.mode &= ~(uint32_t)(S_ISUID | S_ISGID);
	f.ghost = &gf;
	g = realloc(t->vghosts, (t->nvghosts + 1) * sizeof(*g));
	if (!g)
		return -ENOMEM;
	t->vghosts = g;
	if (m->ghost->presented && !held) {
		/* made before the freeze, unnamed (vma_ghost_pre.c): only named here */
		int tmp = rst_target_ghost_pre_fd(t, m->ghost->dev, m->ghost->ino);

		if (tmp < 0) {
			snprintf(why, wl,
				 "deleted file %.256s is named as sent before the freeze, but none "
				 "came (an image on disk never has it so)",
				 m->path);
			return -EBADMSG;
		}
		ret = rst_ghost_link(t, &f, tmp, path, sizeof(path), &dfd);
	} else {
		ret = rst_ghost_create(t, &f, path, sizeof(path), &dfd);
	}
	if (ret) {
		snprintf(why, wl, "cannot make deleted file %.256s again: %s", m->path,
			 strerror(-ret));
		return ret;
	}
	g = &t->vghosts[t->nvghosts];
	g->dev = m->ghost->dev;
	g->ino = m->ghost->ino;
	g->dirfd = dfd;
	g->path = strdup(path);
	if (!g->path) {
		rst_ghost_remove(&dfd, path);
		return -ENOMEM;
	}
	t->nvghosts++;
	ret = rst_put_str(t, 0, path, &rpath);
	if (!ret)
		ret = rst_rcall(t, SYS_openat, AT_FDCWD, rpath, O_RDONLY | O_CLOEXEC, 0, 0, 0, &fd);
	if (!ret)
		ret = same_file(t, g, (int)fd, why, wl);
	for (size_t i = 0; i < t->n && !ret; i++)
		if (rst_vma_ghost(&t->v[i].v) && t->v[i].v.dev == g->dev && t->v[i].v.ino == g->ino)
			ret = rst_target_map_ghost(t, &t->v[i], (int)fd);
	if (fd >= 0)
		rst_rcall(t, SYS_close, (uint64_t)fd, 0, 0, 0, 0, 0, NULL);
	if (ret && !why[0])
		snprintf(why, wl, "cannot map deleted file %.256s again (made as %.256s): %s",
			 m->path, path, strerror(-ret));
	return ret;
}

static int ghost_restore(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
			 size_t wl)
{
	int ret = 0;

	for (size_t i = 0; i < ps->n_mapped_ghosts && !ret; i++) {
		const Haul__Img__MappedGhost *m = ps->mapped_ghosts[i];

		ret = remap_inode(t, ps, m, why, wl);
		/* no fd (the parent restores them) nor the exe opens it by name: deleted again */
		if (!ret && (t->files_shared || !fd_ghost_of(ps, m->ghost->dev, m->ghost->ino)) &&
		    !is_exe(ps, m->ghost)) {
			struct rst_tghost *g = &t->vghosts[--t->nvghosts];

			ghost_drop(t, g);
		}
	}
	/* a placeholder left (fill 0: never mapped again) would read zeros for the file */
	for (size_t i = 0; i < t->n && !ret; i++)
		if (rst_vma_ghost(&t->v[i].v) && !t->v[i].fill) {
			snprintf(why, wl,
				 "VMA %#" PRIx64 "-%#" PRIx64 " maps deleted file %.256s, whose "
				 "content the state lacks",
				 t->v[i].v.start, t->v[i].v.end,
				 t->v[i].v.path ? t->v[i].v.path : "");
			ret = -EBADMSG;
		}
	if (!ret && ps->n_mapped_ghosts)
		pr_debug("pid %d: %zu deleted file(s) mapped again", (int)t->o.pid,
			 ps->n_mapped_ghosts);
	return ret;
}

bool rst_vma_ghost_name(const struct rst_target *t, uint64_t dev, uint64_t ino, char *path,
			size_t plen)
{
	for (size_t i = 0; i < t->nvghosts; i++)
		if (t->vghosts[i].dev == dev && t->vghosts[i].ino == ino) {
			snprintf(path, plen, "%s", t->vghosts[i].path);
			return true;
		}
	return false;
}

void rst_vma_ghost_unlink(struct rst_target *t)
{
	for (size_t i = 0; i < t->nvghosts; i++) {
		ghost_drop(t, &t->vghosts[i]);
	}
	free(t->vghosts);
	t->vghosts = NULL;
	t->nvghosts = 0;
}

/* Whether @pid maps a deleted file privately (a target must announce the kind). */
static bool ghost_in_use(pid_t pid)
{
	struct haul_layout l;
	bool used = false;

	if (haul_layout_read(pid, false, &l))
		return false;
	for (size_t i = 0; i < l.n && !used; i++)
		used = rst_vma_ghost(&l.v[i]);
	haul_layout_release(&l);
	return used;
}

const struct rst_res_ops rst_res_vma_ghost = {
	.name = "deleted files mapped privately",
	.cap = "RES_VMA_GHOST",
	.version = 1,
	.phase = RST_RES_VMAS,
	.in_use = ghost_in_use,
	.validate = ghost_validate,
	.restore = ghost_restore,
};
