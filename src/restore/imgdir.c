/*
 * imgdir.c - the images directory of `haul checkpoint` / `haul restore`.
 *
 * DIR/<id>/ is one committed image: a page store directory holding
 * <pid>/pages.img and <pid>/index.img (src/common/pstore_disk.c).  The id
 * is "<pid in its namespace>-<host pid>-<start time in ticks>-<boot id, 8
 * hex digits>": the same process checkpointed again gets the same id (its
 * image is replaced), two processes never do (two containers' PID 1 differ
 * by host pid, a reused host pid by start time, a reboot by boot id).
 *
 * A checkpoint never touches the committed image until the new one is
 * durable (PostgreSQL's rule: a committed image survives any crash):
 *  1. the new image is written into DIR/.haul-tmp-<id>-XXXXXX, flock()ed
 *     for as long as the checkpoint lives, and committed there (pstore:
 *     fsync pages, write/fsync/rename index, fsync);
 *  2. fsync of the tmp directory, then one rename: RENAME_NOREPLACE to
 *     DIR/<id> for a first image, RENAME_EXCHANGE with DIR/<id> otherwise
 *     (both names always exist: there is no moment without DIR/<id>);
 *  3. fsync(DIR): the new image is committed;
 *  4. the old image, now at the tmp name, is removed.
 * A kill -9 before 3 leaves the old image at DIR/<id> (or the new one, if
 * the rename reached the disk: either is whole); a failure (ENOSPC, EIO)
 * removes the tmp directory at once; a kill leaves it unlocked, and the
 * next checkpoint into DIR removes every tmp directory it can lock.
 * A restore only reads; it never cleans.
 */
#define LOG_PREFIX "image: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/proc.h"
#include "restore/imgdir_int.h"
#include "restore/tree_int.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

void rst_imgdir_fault(const char *fault, const char *point)
{
	if (fault && !strncmp(fault, "ckpt-kill:", 10) && !strcmp(fault + 10, point)) {
		pr_info("HAUL_FAULT: killed at %s", point);
		kill(getpid(), SIGKILL);
	}
}

/* Remove @name in @dfd and everything below it (image trees are two levels deep). */
static int rmtree_at(int dfd, const char *name, int depth)
{
	struct dirent *de;
	int fd, ret = 0;
	DIR *d;

	if (!unlinkat(dfd, name, 0) || errno == ENOENT)
		return 0;
	if ((errno != EISDIR && errno != EPERM) || depth > 4)
		return -errno;
	fd = openat(dfd, name, O_DIRECTORY | O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		ret = -errno;
		close(fd);
		return ret;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && !ret)
			ret = rmtree_at(dirfd(d), de->d_name, depth + 1);
	closedir(d);
	if (!ret && unlinkat(dfd, name, AT_REMOVEDIR) && errno != ENOENT)
		ret = -errno;
	return ret;
}

/* Remove the tmp directories of checkpoints that died (nobody holds their lock). */
static void remove_stale(const char *dir, int dfd)
{
	DIR *d = fdopendir(dup(dfd));
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		int fd;

		if (strncmp(de->d_name, RST_IMGDIR_TMP, strlen(RST_IMGDIR_TMP)))
			continue;
		fd = openat(dfd, de->d_name, O_DIRECTORY | O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			continue;
		if (!flock(fd, LOCK_EX | LOCK_NB)) {
			int ret = rmtree_at(dfd, de->d_name, 0);

			if (ret)
				pr_warn_r(ret, "cannot remove %s/%s left by a failed checkpoint",
					  dir, de->d_name);
			else
				pr_info("removed %s/%s left by a failed checkpoint", dir,
					de->d_name);
		}
		close(fd);
	}
	closedir(d);
}

/* "<own>-<host pid>-<start time>-<boot id>" of @pid. */
static int image_id(pid_t pid, pid_t own, char *id, size_t len)
{
	unsigned long long start = 0;
	char boot[40] = "";
	int ret;
	FILE *f;

	ret = haul_proc_starttime(pid, &start);
	if (ret)
		return ret;
	f = fopen("/proc/sys/kernel/random/boot_id", "re");
	if (f) {
		if (!fgets(boot, sizeof(boot), f))
			boot[0] = 0;
		fclose(f);
	}
	boot[8] = 0;
	snprintf(id, len, "%d-%d-%llu-%s", (int)own, (int)pid, start, boot[0] ? boot : "0");
	return 0;
}

/* A fresh locked tmp directory in DIR; retried if a cleaner removed it before our lock. */
static int make_tmp(struct rst_imgdir_tx *tx)
{
	for (int tries = 0; tries < 8; tries++) {
		struct stat st;
		int ret;

		if ((size_t)snprintf(tx->path, sizeof(tx->path), "%s/%s%s-XXXXXX", tx->dir,
				     RST_IMGDIR_TMP, tx->id) >= sizeof(tx->path))
			return -ENAMETOOLONG;
		if (!mkdtemp(tx->path)) {
			ret = -errno;
			pr_err_r(ret, "cannot create a directory in %s for the new image", tx->dir);
			return ret;
		}
		snprintf(tx->tmp, sizeof(tx->tmp), "%s", strrchr(tx->path, '/') + 1);
		tx->lockfd = openat(tx->dirfd, tx->tmp, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
		if (tx->lockfd < 0 || flock(tx->lockfd, LOCK_EX | LOCK_NB) ||
		    fstat(tx->lockfd, &st)) {
			ret = -errno;
			pr_err_r(ret, "cannot lock %s", tx->path);
			if (tx->lockfd >= 0)
				close(tx->lockfd);
			tx->lockfd = -1;
			unlinkat(tx->dirfd, tx->tmp, AT_REMOVEDIR);
			return ret;
		}
		if (st.st_nlink > 0)
			return 0;
		close(tx->lockfd); /* removed by another checkpoint's cleanup: again */
		tx->lockfd = -1;
	}
	return -EAGAIN;
}

int rst_imgdir_begin(const char *dir, pid_t pid, pid_t own, struct rst_imgdir_tx *tx)
{
	int ret;

	memset(tx, 0, sizeof(*tx));
	tx->dirfd = tx->lockfd = -1;
	if ((size_t)snprintf(tx->dir, sizeof(tx->dir), "%s", dir) >= sizeof(tx->dir))
		return -ENAMETOOLONG;
	ret = image_id(pid, own, tx->id, sizeof(tx->id));
	if (ret) {
		pr_err_r(ret, "cannot read the start time of pid %d", (int)pid);
		return ret;
	}
	if (mkdir(dir, 0700) && errno != EEXIST) {
		ret = -errno;
		pr_err_r(ret, "cannot create the images directory %s", dir);
		return ret;
	}
	tx->dirfd = open(dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (tx->dirfd < 0) {
		ret = -errno;
		pr_err_r(ret, "cannot open the images directory %s", dir);
		return ret;
	}
	remove_stale(dir, tx->dirfd);
	return make_tmp(tx);
}

int rst_imgdir_switch(struct rst_imgdir_tx *tx, const char *fault)
{
	int ret;

	rst_imgdir_fault(fault, "committed");
	if (fsync(tx->lockfd)) {
		ret = -errno;
		pr_err_r(ret, "cannot fsync %s", tx->path);
		return ret;
	}
	if (renameat2(tx->dirfd, tx->tmp, tx->dirfd, tx->id, RENAME_NOREPLACE)) {
		if (errno != EEXIST ||
		    renameat2(tx->dirfd, tx->tmp, tx->dirfd, tx->id, RENAME_EXCHANGE)) {
			ret = -errno;
			pr_err_r(ret,
				 "cannot switch %s/%s to the new image (the file system needs "
				 "renameat2 RENAME_EXCHANGE); the previous image stays",
				 tx->dir, tx->id);
			return ret;
		}
	}
	tx->switched = true;
	if (fsync(tx->dirfd)) {
		ret = -errno;
		pr_err_r(ret, "cannot fsync the images directory %s", tx->dir);
		return ret;
	}
	rst_imgdir_fault(fault, "switched");
	/* The old image, if any, now sits at the tmp name: rst_imgdir_end() removes it. */
	return 0;
}

void rst_imgdir_end(struct rst_imgdir_tx *tx)
{
	if (tx->lockfd >= 0) {
		int ret = rmtree_at(tx->dirfd, tx->tmp, 0);

		if (ret)
			pr_warn_r(ret, "cannot remove %s; the next checkpoint into %s will",
				  tx->path, tx->dir);
		close(tx->lockfd);
		tx->lockfd = -1;
	}
	if (tx->dirfd >= 0)
		close(tx->dirfd);
	tx->dirfd = -1;
}

/* ---- finding the image to restore ------------------------------------------------------ */

/* Images listed when several match. */
#define IMGDIR_MAX_LISTED 64

struct imgdir_match {
	char id[160];
	pid_t pid;
};

struct imgdir_pick {
	const char *id; /* filter, or NULL */
	pid_t pid;	/* filter, or 0 */
	size_t n;	/* matches (may exceed the list) */
	struct imgdir_match m[IMGDIR_MAX_LISTED];
};

static bool is_pid_name(const char *s)
{
	if (*s < '1' || *s > '9')
		return false;
	while (*s >= '0' && *s <= '9')
		s++;
	return !*s;
}

static void pick_add(struct imgdir_pick *k, const char *id, pid_t pid)
{
	if ((k->id && strcmp(k->id, id)) || (k->pid && k->pid != pid))
		return;
	if (k->n < IMGDIR_MAX_LISTED) {
		snprintf(k->m[k->n].id, sizeof(k->m[k->n].id), "%s", id);
		k->m[k->n].pid = pid;
	}
	k->n++;
}

/* The pids in checkpoint image DIR/@id (a page store directory). */
static void scan_image(struct imgdir_pick *k, int dfd, const char *id)
{
	int fd = openat(dfd, id, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	struct dirent *de;
	DIR *d;

	if (fd < 0)
		return;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	/* A tree is one image: of its root, whose pid opens the id. */
	if (!faccessat(fd, RST_TREE_FILE, F_OK, 0)) {
		pick_add(k, id, atoi(id));
		closedir(d);
		return;
	}
	while ((de = readdir(d)))
		if (is_pid_name(de->d_name))
			pick_add(k, id, atoi(de->d_name));
	closedir(d);
}

int rst_imgdir_find(const char *dir, const char *id, pid_t pid, char *store, size_t len,
		    pid_t *found)
{
	struct imgdir_pick *k = calloc(1, sizeof(*k));
	struct dirent *de;
	DIR *d = opendir(dir);
	int ret = 0;

	if (!d || !k) {
		ret = d ? -ENOMEM : -errno;
		pr_err_r(ret, "cannot open the images directory %s", dir);
		goto out;
	}
	k->id = id;
	k->pid = pid;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue; /* ".", "..", checkpoints in the making */
		if (is_pid_name(de->d_name))
			pick_add(k, de->d_name, atoi(de->d_name)); /* a page server's DIR/<pid>/ */
		else
			scan_image(k, dirfd(d), de->d_name);
	}
	if (k->n == 1) {
		const struct imgdir_match *m = &k->m[0];
		int w = is_pid_name(m->id) ? snprintf(store, len, "%s", dir)
					   : snprintf(store, len, "%s/%s", dir, m->id);

		if (w < 0 || (size_t)w >= len)
			ret = -ENAMETOOLONG;
		*found = m->pid;
	} else if (!k->n) {
		pr_err("no image%s%s%s in %s; make one with 'haul checkpoint PID --images %s'",
		       id ? " with id " : "", id ? id : "", pid ? " of that pid" : "", dir, dir);
		ret = -ENOENT;
	} else {
		pr_err("%s holds %zu images; say which with --id:", dir, k->n);
		for (size_t i = 0; i < k->n && i < IMGDIR_MAX_LISTED; i++)
			pr_err("  --id %s  (pid %d)", k->m[i].id, (int)k->m[i].pid);
		ret = -EINVAL;
	}
out:
	if (d)
		closedir(d);
	free(k);
	return ret;
}
