/*
 * fd_procfs.c - fds on /proc (procfs) and on /proc/PID/ns/NAME (nsfs): which
 * are carried, and why the others are refused at the precheck.
 *
 * A procfs file looks like a regular file or a directory and is carried
 * as one (fd_file.c: reopened by its path, flags and offset).  For a file
 * not tied to a pid (meminfo, loadavg, sys/...) that is all.  A file of
 * a pid, /proc/N/ENTRY or /proc/N/task/M/ENTRY, is reopened at the same
 * path on the target: the restored process keeps its pid, and its threads
 * their tids, as it knows them (clone3 set_tid, in a new PID namespace
 * with a /proc of its own when the pid is taken; DESIGN.md "Restore
 * target"), so the path names the restored task there.  That holds when
 *  - N is the process itself or a process that moves with it (a tree:
 *    every process of the tree exists before any fd is restored), and M
 *    that process's main thread or, for the process itself, any of its
 *    threads (named /proc/N/task/M: /proc/M of a thread is refused);
 *  - N and M are the ids as the tasks know themselves (the last of
 *    NSpid): a /proc of an outer PID namespace names them by numbers the
 *    restore does not keep;
 *  - ENTRY is a view the kernel computes at each read (status, maps,
 *    net/...) or a directory of them: not a link (fd/N, exe, cwd, root,
 *    map_files/N, /proc/self), not mem (bound to the address space at
 *    open), not a namespace file.
 * Which task /proc/N is: its PID namespace and the last of its NSpid, read
 * through the process's root (/proc/PID/root/proc/N, the procfs the fd
 * is on, as path_precheck checks), against those of each candidate.
 *
 * The fds are restored before the threads exist: a file of another thread
 * is opened on the main thread's same entry (rst_procfs_stand_in) and
 * reopened by rst_res_procfs, after the threads and credentials, over
 * every fd of it.  Then the offsets of /proc files are set: an lseek on a
 * seq_file generates the text up to there at once, and a read goes on in
 * that text, so it must be the restored process's, not the half-restored
 * stub's (its name, its ids).
 */
#define LOG_PREFIX "dump: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/vfs.h>

#include "restore/fd_int.h"
#include "restore/res_int.h"
#include "restore/target_int.h"

/* The entries of a pid's or a task's directory that are carried, each between spaces. */
static const char carried[] =
	" arch_status attr autogroup auxv cgroup children clear_refs cmdline comm coredump_filter"
	" cpuset environ gid_map io ksm_merging_pages ksm_stat latency limits loginuid maps"
	" mountinfo mounts mountstats net numa_maps oom_adj oom_score oom_score_adj pagemap"
	" personality projid_map sched schedstat sessionid setgroups smaps smaps_rollup stack stat"
	" statm status syscall timens_offsets timerslack_ns uid_map wchan ";

/* Why the entries programs hold most are not: the rest are "not one haul knows to carry". */
static const struct {
	const char *entry, *why;
} refused[] = {
	{"mem", "the memory file is bound to the address space it was opened on"},
	{"fd", "fd/ holds links to the process's other files: open the file itself"},
	{"fdinfo", "fdinfo/ describes fds by number"},
	{"map_files", "map_files/ holds links to mapped files"},
	{"ns", "ns/ holds namespace files, which haul does not carry"},
	{"exe", "exe is a link to the executable: open the file itself"},
	{"cwd", "cwd is a link to the working directory: open the directory itself"},
	{"root", "root is a link to the root directory: open the directory itself"},
};

/* Whether the first component of @entry (NUL or '/' ended) is @name. */
static bool first_is(const char *entry, const char *name)
{
	size_t n = strlen(name);

	return !strncmp(entry, name, n) && (entry[n] == '\0' || entry[n] == '/');
}

/* 0 when @entry is carried, else -EOPNOTSUPP with @why (@p's fd, @path). */
static int entry_refuse(const struct rst_fd_probe *p, const char *entry, char *why, size_t wl)
{
	const char *reason = "not an entry haul knows to carry";
	size_t n = strcspn(entry, "/");
	char word[40];

	if (!entry[0])
		return 0; /* the directory itself */
	snprintf(word, sizeof(word), " %.*s ", (int)n, entry);
	if (n + 3 <= sizeof(word) && strstr(carried, word))
		return 0;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		if (first_is(entry, refused[i].entry))
			reason = refused[i].why;
	snprintf(why, wl,
		 "pid %d: fd %d is %.256s, which cannot be reopened on the target (%s); "
		 "close it before the move",
		 (int)p->pid, p->fd, p->target, reason);
	return -EOPNOTSUPP;
}

/* Who a task is: its PID namespace and its pid there. */
struct task_key {
	char ns[64];
	long pid;
};

/* The key of the task of directory @dir of /proc/@pid ("root/proc/N", "task/M", ""). */
static int task_key(pid_t pid, const char *dir, struct task_key *k)
{
	char name[96], link[160], *text = NULL;
	int ret;

	snprintf(link, sizeof(link), "/proc/%d/%s%sns/pid", (int)pid, dir, dir[0] ? "/" : "");
	ret = rst_read_link(link, k->ns, sizeof(k->ns));
	snprintf(name, sizeof(name), "%s%sstatus", dir, dir[0] ? "/" : "");
	if (!ret)
		ret = rst_read_proc(pid, name, &text, NULL);
	if (!ret)
		k->pid = rst_status_last_nspid(text);
	free(text);
	return ret ? ret : k->pid > 0 ? 0 : -EIO;
}

static bool same_task(const struct task_key *a, const struct task_key *b)
{
	return a->pid == b->pid && !strcmp(a->ns, b->ns);
}

/* Whether task @k is a thread of @pid other than its main one. */
static bool other_thread(pid_t pid, const struct task_key *k)
{
	struct dirent *de;
	bool found = false;
	DIR *d;
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	while (d && !found && (de = readdir(d))) {
		struct task_key t;
		char dir[64];

		if (de->d_name[0] == '.' || atoi(de->d_name) == pid)
			continue;
		snprintf(dir, sizeof(dir), "task/%.16s", de->d_name);
		found = !task_key(pid, dir, &t) && same_task(&t, k);
	}
	if (d)
		closedir(d);
	return found;
}

/* Whether task @k is a process that moves with @pid (not @pid itself). */
static bool moves_along(pid_t pid, const struct task_key *k)
{
	struct task_key t;
	const pid_t *pids;
	size_t n = rst_ext_moving_pids(&pids);

	for (size_t i = 0; i < n; i++)
		if (pids[i] != pid && !task_key(pids[i], "", &t) && same_task(&t, k))
			return true;
	return false;
}

/* The key of /proc/@dir ("N", "N/task/M") in @p's root: 0, or -EOPNOTSUPP with @why. */
static int root_key(const struct rst_fd_probe *p, const char *dir, struct task_key *k, char *why,
		    size_t wl)
{
	char root[96];
	int ret;

	snprintf(root, sizeof(root), "root/proc/%s", dir);
	ret = task_key(p->pid, root, k);
	if (ret)
		snprintf(why, wl,
			 "pid %d: fd %d is %.256s, whose task cannot be told through the "
			 "process's root (%s); close it before the move",
			 (int)p->pid, p->fd, p->target, strerror(-ret));
	return ret ? -EOPNOTSUPP : 0;
}

/* Whether the last number of @dir is @k's pid: the task is named by its own pid. */
static int own_number(const struct rst_fd_probe *p, const char *dir, const struct task_key *k,
		      char *why, size_t wl)
{
	const char *last = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;

	if (strtol(last, NULL, 10) == k->pid)
		return 0;
	snprintf(why, wl,
		 "pid %d: fd %d is %.256s, which names task %ld through the /proc of an outer "
		 "PID namespace: haul restores it as %ld of its own; open it through a /proc "
		 "mounted in its PID namespace, or close it",
		 (int)p->pid, p->fd, p->target, k->pid, k->pid);
	return -EOPNOTSUPP;
}

/*
 * The file of /proc/@pdir (a pid's directory "N") or of /proc/@tdir (a
 * task's, "N/task/M"; NULL: none) in the procfs the fd is on: carried when
 * N is the process or one that moves with it, M that process's main
 * thread or, for the process itself, one of its threads (reopened once the
 * threads exist, rst_res_procfs), each named by its own pid.
 */
static int task_refuse(const struct rst_fd_probe *p, const char *pdir, const char *tdir, char *why,
		       size_t wl)
{
	struct task_key self, k, t;
	bool own;
	int ret = task_key(p->pid, "", &self);

	if (ret) {
		snprintf(why, wl, "pid %d is gone", (int)p->pid);
		return ret;
	}
	ret = root_key(p, pdir, &k, why, wl);
	if (ret)
		return ret;
	own = same_task(&k, &self);
	if (!own && !moves_along(p->pid, &k)) {
		if (other_thread(p->pid, &k))
			snprintf(why, wl,
				 "pid %d: fd %d is %.256s, a file of its thread %ld named as "
				 "/proc/%ld; haul carries a thread's files as /proc/PID/task/TID: "
				 "open it there, or close it before the move",
				 (int)p->pid, p->fd, p->target, k.pid, k.pid);
		else
			snprintf(why, wl,
				 "pid %d: fd %d is %.256s, a file of a process that does not move "
				 "with it (on the target that pid names another process, or none); "
				 "close it before the move",
				 (int)p->pid, p->fd, p->target);
		return -EOPNOTSUPP;
	}
	ret = own_number(p, pdir, &k, why, wl);
	if (ret || !tdir)
		return ret;
	ret = root_key(p, tdir, &t, why, wl);
	if (ret)
		return ret;
	if (!same_task(&t, &k) && !(own && other_thread(p->pid, &t))) {
		snprintf(why, wl,
			 "pid %d: fd %d is %.256s, a file of a thread of another process of the "
			 "tree (the fds are restored before that process's threads exist); close "
			 "it before the move",
			 (int)p->pid, p->fd, p->target);
		return -EOPNOTSUPP;
	}
	return own_number(p, tdir, &t, why, wl);
}

/* The digits at @s, and how many (0: not a pid). */
static size_t pid_len(const char *s)
{
	size_t n = strspn(s, "0123456789");

	return n && (s[n] == '\0' || s[n] == '/') ? n : 0;
}

/* /proc/@rest with @rest after "/proc/": a pid's file, or one not tied to a pid. */
static int proc_path_refuse(const struct rst_fd_probe *p, const char *rest, char *why, size_t wl)
{
	size_t n = pid_len(rest), m = 0;
	char pdir[32], tdir[64];
	const char *entry;
	int ret;

	if (!n) {
		if (!first_is(rest, "self") && !first_is(rest, "thread-self"))
			return 0; /* meminfo, loadavg, sys/...: a file like any */
		snprintf(why, wl,
			 "pid %d: fd %d is the link %.256s itself (O_PATH|O_NOFOLLOW), which "
			 "names whoever follows it; close it before the move",
			 (int)p->pid, p->fd, p->target);
		return -EOPNOTSUPP;
	}
	entry = rest + n + (rest[n] == '/');
	snprintf(pdir, sizeof(pdir), "%.*s", (int)n, rest);
	if (first_is(entry, "task") && entry[4] == '/' && (m = pid_len(entry + 5))) {
		snprintf(tdir, sizeof(tdir), "%s/task/%.*s", pdir, (int)m, entry + 5);
		entry += 5 + m + (entry[5 + m] == '/');
	} else if (first_is(entry, "task")) {
		entry = ""; /* the task directory itself, judged as the pid's */
	}
	ret = entry_refuse(p, entry, why, wl);
	return ret ? ret : task_refuse(p, pdir, m ? tdir : NULL, why, wl);
}

int rst_procfs_refuse(const struct rst_fd_probe *p, char *why, size_t wl)
{
	char link[64];
	struct statfs fs;

	snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)p->pid, p->fd);
	if (statfs(link, &fs) < 0)
		return errno == ENOENT ? -ENOENT : 0; /* closed meanwhile; else not ours to judge */
	if (fs.f_type == NSFS_MAGIC) {
		snprintf(why, wl,
			 "pid %d: fd %d is namespace file %.256s (an open of /proc/PID/ns/...); "
			 "haul does not carry namespace fds: close it before the move",
			 (int)p->pid, p->fd, p->target);
		return -EOPNOTSUPP;
	}
	if (fs.f_type != PROC_SUPER_MAGIC)
		return 0;
	if (strncmp(p->target, "/proc", 5) || (p->target[5] != '/' && p->target[5] != '\0')) {
		snprintf(why, wl,
			 "pid %d: fd %d is %.256s, on a procfs mounted elsewhere than /proc; "
			 "close it before the move",
			 (int)p->pid, p->fd, p->target);
		return -EOPNOTSUPP;
	}
	return proc_path_refuse(p, p->target + 5 + (p->target[5] == '/'), why, wl);
}

bool rst_procfs_path(const char *path)
{
	return !strncmp(path, "/proc/", 6);
}

/* T of "/proc/P/task/T/..." with P @ps's pid and T one of its other threads (*@entry: the rest), else 0. */
static int32_t other_thread_of(const Haul__Img__ProcessState *ps, const char *path,
			       const char **entry)
{
	const char *at = path + 6;
	char *end;
	long pid, tid;

	if (!rst_procfs_path(path))
		return 0;
	pid = strtol(at, &end, 10);
	if (end == at || pid != ps->pid || strncmp(end, "/task/", 6))
		return 0;
	at = end + 6;
	tid = strtol(at, &end, 10);
	if (end == at || tid == pid || (*end != '/' && *end != '\0'))
		return 0;
	for (size_t i = 0; i < ps->n_threads; i++)
		if (ps->threads[i]->tid == tid) {
			*entry = end;
			return (int32_t)tid;
		}
	return 0;
}

bool rst_procfs_stand_in(const Haul__Img__ProcessState *ps, const char *path, char *buf, size_t len)
{
	const char *entry;

	if (!other_thread_of(ps, path, &entry))
		return false;
	snprintf(buf, len, "/proc/%d/task/%d%s", ps->pid, ps->pid, entry);
	return true;
}

/* File @f of a thread, opened on its stand-in: its own now, at every fd of @ps naming it. */
static int reopen_thread_file(struct rst_target *t, const Haul__Img__ProcessState *ps,
			      const Haul__Img__FileObject *f, const Haul__Img__FdEntry *first,
			      char *why, size_t wl)
{
	bool shared;
	int ret, tmp = -1;

	ret = rst_fd_open_path(t, NULL, f, first, f->path, &tmp, &shared);
	for (size_t i = 0; !ret && i < ps->n_fds; i++)
		if (ps->fds[i]->file_id == f->id)
			ret = rst_rcall(t, SYS_dup3, tmp, ps->fds[i]->fd,
					ps->fds[i]->cloexec ? O_CLOEXEC : 0, 0, 0, 0, NULL);
	if (tmp >= 0)
		rst_rcall(t, SYS_close, tmp, 0, 0, 0, 0, 0, NULL);
	if (ret)
		snprintf(why, wl,
			 "cannot reopen fd %d (%.256s) of pid %d once its thread exists: %s",
			 first->fd, f->path, ps->pid, strerror(-ret));
	return ret;
}

/*
 * The files of @ps on /proc once the task is restored but for its
 * registers: a thread's file reopened (the threads exist now), then every
 * offset set.
 */
static int procfs_finish(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
			 size_t wl)
{
	for (size_t i = 0; i < ps->n_fds; i++) {
		const Haul__Img__FdEntry *e = ps->fds[i];
		const Haul__Img__FileObject *f = rst_fd_file(ps, e->file_id);
		const char *entry;
		int ret = 0;

		if (!f || !f->path || !rst_procfs_path(f->path) ||
		    rst_fd_first(ps, e->file_id) != e ||
		    (f->kind != HAUL__IMG__FD_KIND__FD_REG &&
		     f->kind != HAUL__IMG__FD_KIND__FD_DIR &&
		     f->kind != HAUL__IMG__FD_KIND__FD_PATH))
			continue;
		if (other_thread_of(ps, f->path, &entry))
			ret = reopen_thread_file(t, ps, f, e, why, wl);
		if (ret)
			return ret;
		if (!f->has_pos || !f->pos || (f->flags & O_PATH))
			continue;
		ret = rst_rcall(t, SYS_lseek, e->fd, f->pos, SEEK_SET, 0, 0, 0, NULL);
		if (ret) {
			snprintf(why, wl, "cannot seek fd %d (%.256s) of pid %d to %llu: %s", e->fd,
				 f->path, ps->pid, (unsigned long long)f->pos, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

const struct rst_res_ops rst_res_procfs = {
	.name = "/proc files of threads, offsets",
	.phase = RST_RES_LAST,
	.restore = procfs_finish,
};
