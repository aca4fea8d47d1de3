/*
 * shm_precheck.c - shared memory another process also uses is refused.
 *
 * haul moves one process: an object it shares with a process that stays
 * (a MAP_SHARED region inherited over fork, a memfd or SysV segment mapped
 * elsewhere) would be split in two by the move, and the tracker sees only
 * this process's own stores (DESIGN.md "Tracker", Limits).  So the
 * precheck refuses, naming object and process:
 *  - a shmem object of the process (dev, ino of a MAP_SHARED shmem VMA)
 *    that another process maps: one pass over /proc/N/maps of every other
 *    process, only when the process has shmem VMAs at all;
 *  - a SysV segment with more attachments (nattch) than the process's own.
 * A memfd held by another process's fd is refused by the open-file check
 * of precheck.c like any shared open file.  Processes that move together
 * (rst_ext_moving, a process tree: shm_tree.c restores what they share as
 * one object) are left out of the maps scan, and their attachments of the
 * process's SysV segments count with its own.
 */
#define LOG_PREFIX "precheck: "
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/vma.h"
#include "restore/fd_int.h"
#include "restore/restore_int.h"

struct shm_id {
	uint64_t dev, ino;
	const char *path;
	unsigned attach; /* SysV: this process's attachments */
};

/*
 * The MAP_SHARED shmem objects of @l, each once, with the attachments they
 * make.  @add: only count attachments of the @n objects already in @ids.
 */
static size_t collect(const struct haul_layout *l, struct shm_id *ids, size_t n, bool add)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct haul_vma *v = &l->v[i], *p = i ? &l->v[i - 1] : NULL;
		size_t k;

		if (!(v->flags & HAUL_VMA_SHMEM) || !(v->flags & HAUL_VMA_SHARED))
			continue;
		for (k = 0; k < n; k++)
			if (ids[k].dev == v->dev && ids[k].ino == v->ino)
				break;
		if (k == n && add)
			continue;
		if (k == n)
			ids[n++] =
				(struct shm_id){v->dev, v->ino, v->path ? v->path : "/dev/zero", 0};
		/* pieces of one shmat (mprotect splits) continue the one before */
		if (!p || p->end != v->start || p->ino != v->ino ||
		    p->pgoff + (p->end - p->start) != v->pgoff)
			ids[k].attach++;
	}
	return n;
}

/* A process that moves with @pid: its attachments of @ids count as the process's own. */
static void moving_attachments(pid_t other, struct shm_id *ids, size_t n)
{
	struct haul_layout o;

	if (haul_layout_read(other, false, &o))
		return; /* gone, or a kernel thread */
	collect(&o, ids, n, true);
	haul_layout_release(&o);
}

/* The first object of @ids that @other maps too. */
static int mapped_by(pid_t pid, pid_t other, const struct shm_id *ids, size_t n, char *why,
		     size_t whylen)
{
	struct haul_layout o;

	if (haul_layout_read(other, false, &o))
		return 0; /* gone, or a kernel thread */
	for (size_t i = 0; i < o.n; i++)
		for (size_t k = 0; k < n; k++)
			if ((o.v[i].flags & HAUL_VMA_SHMEM) && o.v[i].dev == ids[k].dev &&
			    o.v[i].ino == ids[k].ino) {
				snprintf(
					why, whylen,
					"shared memory %s (inode %" PRIu64 ") of pid %d is also "
					"mapped by pid %d, which does not move with it; haul would "
					"split it; move them together (their common ancestor's "
					"tree) or stop the other",
					ids[k].path, ids[k].ino, (int)pid, (int)other);
				haul_layout_release(&o);
				return -EOPNOTSUPP;
			}
	haul_layout_release(&o);
	return 0;
}

/* SysV: nattch beyond the process's own attachments. */
static int sysv_shared(pid_t pid, const struct shm_id *ids, size_t n, char *why, size_t whylen)
{
	char *text, *line, *save = NULL;
	int ret = 0;

	for (size_t k = 0; k < n; k++)
		if (!strncmp(ids[k].path, "/SYSV", 5))
			break;
		else if (k + 1 == n)
			return 0;
	ret = rst_ipc_read(pid, "shm", &text);
	if (ret)
		return ret;
	line = strtok_r(text, "\n", &save);
	while (!ret && (line = strtok_r(NULL, "\n", &save))) {
		unsigned long long id, nattch;

		if (sscanf(line, "%*d %llu %*o %*u %*d %*d %llu", &id, &nattch) != 2)
			continue;
		for (size_t k = 0; k < n; k++)
			if (!strncmp(ids[k].path, "/SYSV", 5) && ids[k].ino == id &&
			    nattch > ids[k].attach) {
				snprintf(why, whylen,
					 "SysV segment shmid %llu of pid %d has %llu attachments, "
					 "%u of them its own (or its tree's); haul would split it; "
					 "move them together or detach the others",
					 id, (int)pid, nattch, ids[k].attach);
				ret = -EOPNOTSUPP;
				break;
			}
	}
	free(text);
	return ret;
}

int rst_shm_precheck(pid_t pid, char *why, size_t whylen)
{
	struct haul_layout l;
	struct shm_id *ids;
	struct dirent *pe;
	DIR *proc;
	size_t n;
	char other_why[512] = "";
	int ret = haul_layout_read(pid, false, &l), other_ret = 0;

	if (ret)
		return ret;
	ids = calloc(l.n ? l.n : 1, sizeof(*ids));
	if (!ids) {
		haul_layout_release(&l);
		return -ENOMEM;
	}
	n = collect(&l, ids, 0, false);
	proc = n ? opendir("/proc") : NULL;
	if (n && !proc)
		ret = -errno;
	/* one pass: the first other process that maps an object, the tree's attachments */
	while (!ret && proc && (pe = readdir(proc))) {
		pid_t other = atoi(pe->d_name);

		if (other <= 0 || other == pid)
			continue;
		if (rst_ext_is_moving(other))
			moving_attachments(other, ids, n);
		else if (!other_ret)
			other_ret = mapped_by(pid, other, ids, n, other_why, sizeof(other_why));
	}
	if (proc)
		closedir(proc);
	/* the SysV count names the attachments; else the process that maps it */
	if (!ret && n)
		ret = sysv_shared(pid, ids, n, why, whylen);
	if (!ret && other_ret) {
		snprintf(why, whylen, "%s", other_why);
		ret = other_ret;
	}
	free(ids);
	haul_layout_release(&l);
	return ret;
}
