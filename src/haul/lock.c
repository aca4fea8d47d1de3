/*
 * lock.c - one haul at a time per process: the migration lock.
 *
 * haul migrate, checkpoint and track each attach to the process (a uffd, a
 * ptrace seize, a freeze); two at once on one process would fight over it
 * and could leave two copies running.  Each takes an exclusive flock(2) on
 * HAUL_LOCK_DIR/pid-<PID>-<start time>.lock first, the start time being
 * field 22 of /proc/PID/stat: a PID reused by another process names another
 * file, so a lock left over from a process that died never blocks a new
 * one.  The holder writes "<its pid> <verb>\n" into the file, so a refusal
 * can say who holds it.
 *
 * The kernel drops a flock when its holder dies (even by SIGKILL), so no
 * stale lock outlives a crashed haul.  The holder unlinks the file before
 * it unlocks; a locker therefore checks, once it has the lock, that the
 * path still names the inode it locked, and starts again if not (it had
 * locked a file that a previous holder unlinked meanwhile).
 *
 * A killed haul leaves its file behind, unlocked.  Each locker sweeps the
 * directory first: the file of a process that is gone (no such pid, or
 * another start time) and that nobody holds is removed the way a holder
 * removes its own (locked, still the path's inode, unlinked, unlocked);
 * nobody can want that lock again.
 */
#define LOG_PREFIX "lock: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "haul/haul_int.h"

/* Who holds @fd's lock: the pid and verb it wrote; 0 when unknown (it has not written yet). */
static pid_t lock_holder(int fd, char *verb, size_t vlen)
{
	char buf[64] = "";
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	int holder = 0;
	char v[32] = "";

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if (sscanf(buf, "%d %31s", &holder, v) != 2 || holder <= 0)
		return 0;
	snprintf(verb, vlen, "%s", v);
	return holder;
}

static int lock_path(pid_t pid, char *path, size_t len, char *why, size_t wl)
{
	const char *dir = getenv("HAUL_LOCK_DIR");
	unsigned long long start;
	int ret = haul_proc_starttime(pid, &start);

	if (ret) {
		if (ret == -ENOENT || ret == -ESRCH) {
			snprintf(why, wl, "pid %d does not exist", (int)pid);
			return -ESRCH;
		}
		snprintf(why, wl, "cannot read /proc/%d/stat: %s", (int)pid, strerror(-ret));
		return ret;
	}
	if (!dir || !dir[0])
		dir = HAUL_LOCK_DIR;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		snprintf(why, wl, "cannot create the lock directory %s: %s", dir, strerror(-ret));
		return ret;
	}
	if ((size_t)snprintf(path, len, "%s/pid-%d-%llu.lock", dir, (int)pid, start) >= len) {
		snprintf(why, wl, "the lock directory %s has too long a name", dir);
		return -ENAMETOOLONG;
	}
	return 0;
}

/* Remove the lock files beside @lock of processes that are gone and that nobody holds. */
static void sweep(const char *lock)
{
	char dir[PATH_MAX];
	struct dirent *e;
	DIR *d;

	snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(lock, '/') - lock), lock);
	d = opendir(dir);
	while (d && (e = readdir(d))) {
		unsigned long long start, now;
		struct stat a, b;
		char path[PATH_MAX];
		int pid, fd;

		if (sscanf(e->d_name, "pid-%d-%llu.lock", &pid, &start) != 2 || pid <= 0 ||
		    (!haul_proc_starttime(pid, &now) && now == start))
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= sizeof(path))
			continue;
		fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
		if (fd < 0)
			continue;
		if (!flock(fd, LOCK_EX | LOCK_NB) && !fstat(fd, &a) && !stat(path, &b) &&
		    a.st_ino == b.st_ino && a.st_dev == b.st_dev)
			unlink(path);
		close(fd);
	}
	if (d)
		closedir(d);
}

int haul_pid_lock(pid_t pid, const char *verb, struct haul_pid_lock *l, char *why, size_t wl)
{
	char line[64];
	int ret;

	l->fd = -1;
	why[0] = '\0';
	ret = lock_path(pid, l->path, sizeof(l->path), why, wl);
	if (ret)
		return ret;
	sweep(l->path);
	for (;;) {
		struct stat a, b;
		char hverb[32] = "";
		pid_t holder;

		l->fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (l->fd < 0) {
			ret = -errno;
			snprintf(why, wl, "cannot open the lock file %s: %s", l->path,
				 strerror(-ret));
			return ret;
		}
		if (flock(l->fd, LOCK_EX | LOCK_NB) == 0) {
			/* still the file the path names (a holder unlinks it before unlocking) */
			if (fstat(l->fd, &a) == 0 && stat(l->path, &b) == 0 &&
			    a.st_ino == b.st_ino && a.st_dev == b.st_dev)
				break;
			close(l->fd);
			continue;
		}
		ret = -errno;
		if (ret != -EWOULDBLOCK) {
			snprintf(why, wl, "cannot lock %s: %s", l->path, strerror(-ret));
		} else {
			ret = -EBUSY;
			holder = lock_holder(l->fd, hverb, sizeof(hverb));
			if (holder)
				snprintf(why, wl,
					 "pid %d is already being %s by haul pid %d; wait for it "
					 "to end, or stop it",
					 (int)pid, hverb, (int)holder);
			else
				snprintf(why, wl,
					 "pid %d is already being migrated, checkpointed or "
					 "tracked by another haul (it holds %s); wait for it to "
					 "end, or stop it",
					 (int)pid, l->path);
		}
		close(l->fd);
		l->fd = -1;
		return ret;
	}
	snprintf(line, sizeof(line), "%d %s\n", (int)getpid(), verb);
	if (ftruncate(l->fd, 0) < 0 || pwrite(l->fd, line, strlen(line), 0) < 0)
		pr_warn("cannot write the holder into %s: %s (a refusal will not name us)", l->path,
			strerror(errno));
	return 0;
}

void haul_pid_unlock(struct haul_pid_lock *l)
{
	if (l->fd < 0)
		return;
	/* unlink first: whoever locks the old inode after this sees it is gone and retries */
	unlink(l->path);
	close(l->fd);
	l->fd = -1;
}
