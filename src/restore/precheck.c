/*
 * precheck.c - what is refused, judged from /proc while the process runs
 * (and again inside the dump's stop, rst_check_resources with the tracer).
 *
 * Process-wide: kernel threads, zombies, a tracer, children, the VMAs
 * (kernel mappings, deleted files), SysV semaphores and message queues
 * (ipc.c), shared memory another process maps (shm_precheck.c), then each
 * per-process resource's precheck hook (res_kinds.c: attributes, timers,
 * seccomp).  Per fd: the kind table
 * (fd_kinds.c) classifies it and the kind refuses what it cannot carry;
 * then, over all fds at once, what only sharing decides: socketpairs whose
 * peer is elsewhere (fd_unix.c), pipes or sockets another process holds,
 * open file descriptions shared with another process.  Nothing here
 * touches the process: a refusal leaves it running untouched.
 */
#define LOG_PREFIX "dump: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/vma.h"
#include "restore/fd_inet.h"
#include "restore/fd_int.h"
#include "restore/restore.h"
#include "restore/res_int.h"
#include "restore/restore_int.h"
#include "restore/tree_int.h"

/* An open file description on a regular file, and which fd of the process names it. */
struct held_file {
	uint64_t dev, ino;
	int fd;
	char *path;
};

/* The fds of the process that another process may share, and what the scan found. */
static bool in_tree(pid_t pid);

struct sharing {
	pid_t pid;
	const struct rst_held_pipe *p;
	const struct held_file *f;
	size_t n;
	char *why;
	size_t whylen;
};

/*
 * Call @fn on every fd of every process but @s->pid, with the link text of
 * the fd (one scan of every /proc/PID/fd: a few ms).  Stops at the first
 * non-zero return.
 */
static int each_other_fd(const struct sharing *s,
			 int (*fn)(const struct sharing *s, pid_t other, const char *fd,
				   const char *link, char *target))
{
	struct dirent *pe;
	DIR *proc;
	int ret = 0;

	proc = opendir("/proc");
	if (!proc)
		return -errno;
	while (!ret && (pe = readdir(proc))) {
		pid_t other = atoi(pe->d_name);
		char path[64];
		struct dirent *de;
		DIR *d;

		if (other <= 0 || other == s->pid || in_tree(other))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fd", (int)other);
		d = opendir(path);
		if (!d)
			continue;
		while (!ret && (de = readdir(d))) {
			char link[96], target[4096];

			if (de->d_name[0] == '.')
				continue;
			snprintf(link, sizeof(link), "/proc/%d/fd/%.16s", (int)other, de->d_name);
			if (!rst_read_link(link, target, sizeof(target)))
				ret = fn(s, other, de->d_name, link, target);
		}
		closedir(d);
	}
	closedir(proc);
	return ret;
}

/* Whether fd @fd of @other, @target, is one of the pipes or sockets @s->p. */
static int pipe_shared(const struct sharing *s, pid_t other, const char *fd, const char *link,
		       char *target)
{
	bool sock;

	(void)fd;
	(void)link;
	if (!strncmp(target, "pipe:[", 6))
		sock = false;
	else if (!strncmp(target, "socket:[", 8))
		sock = true;
	else
		return 0;
	for (size_t i = 0; i < s->n; i++)
		if (s->p[i].sock == sock &&
		    strtoull(target + (sock ? 8 : 6), NULL, 10) == s->p[i].ino) {
			/* in a tree, whose fd it is: the message leads with the root */
			snprintf(s->why, s->whylen, "pid %d: fd %d is a %s shared with pid %d (%s)",
				 (int)s->pid, s->p[i].fd, sock ? "socket" : "pipe", (int)other,
				 target);
			return -EOPNOTSUPP;
		}
	return 0;
}

/*
 * Whether any process but @pid holds one of the pipes @p (a pipe shared
 * with another process is a connection haul cannot carry).  Only for
 * processes with pipes.
 */
static int check_pipes(pid_t pid, const struct rst_held_pipe *p, size_t n, char *why, size_t whylen)
{
	struct sharing s = {.pid = pid, .p = p, .n = n, .why = why, .whylen = whylen};

	return n ? each_other_fd(&s, pipe_shared) : 0;
}

/* Whether fd @ofd of @other is the open file description @f (same inode, then kcmp). */
static bool same_ofd(pid_t pid, const struct held_file *f, pid_t other, int ofd, const char *link)
{
	struct stat st;

	if (stat(link, &st) < 0 || st.st_dev != f->dev || st.st_ino != f->ino)
		return false;
	/* Without kcmp this cannot be told from a separate open: not refused (DESIGN.md). */
	return syscall(SYS_kcmp, pid, other, 0 /* KCMP_FILE */, f->fd, ofd) == 0;
}

/* Whether fd @fd of @other, @target, shares an open file description of @s->f. */
static int file_shared(const struct sharing *s, pid_t other, const char *fd, const char *link,
		       char *target)
{
	const struct held_file *f = s->f;

	if (target[0] != '/')
		return 0;
	rst_strip_deleted(target);
	for (size_t i = 0; i < s->n; i++) {
		if (strcmp(target, f[i].path) || !same_ofd(s->pid, &f[i], other, atoi(fd), link))
			continue;
		snprintf(s->why, s->whylen,
			 "fd %d (%.256s) shares its open file and offset with fd %s "
			 "of pid %d; restored alone it would read or write at its own "
			 "offset (open it O_APPEND, or let pid %d close it)",
			 f[i].fd, f[i].path, fd, (int)other, (int)other);
		return -EOPNOTSUPP;
	}
	return 0;
}

/*
 * Whether another process shares an open file description of a regular
 * file with @pid (fork, SCM_RIGHTS; `(a; b) >log`): the restored process
 * would get its own, and the two would read or write at separate offsets.
 * Only O_WRONLY|O_APPEND descriptions are exempt (every write goes to the
 * end whatever the offset).  One scan of every /proc/PID/fd, as for pipes;
 * stat and kcmp only for links naming one of @f's paths.
 */
static int check_shared_files(pid_t pid, const struct held_file *f, size_t n, char *why,
			      size_t whylen)
{
	struct sharing s = {.pid = pid, .f = f, .n = n, .why = why, .whylen = whylen};

	return n ? each_other_fd(&s, file_shared) : 0;
}

static int check_vmas(pid_t pid, char *why, size_t whylen)
{
	struct haul_layout l;
	int ret = haul_layout_read(pid, false, &l);

	if (ret)
		return ret;
	for (size_t i = 0; i < l.n && !ret; i++) {
		const struct haul_vma *v = &l.v[i];
		const char *p = v->path ? v->path : "";

		if (v->flags & (HAUL_VMA_VDSO | HAUL_VMA_VVAR | HAUL_VMA_VSYSCALL))
			continue;
		ret = -EOPNOTSUPP;
		if (v->flags & HAUL_VMA_SPECIAL)
			snprintf(why, whylen,
				 "VMA %#" PRIx64 "-%#" PRIx64 " is %s, a kernel mapping", v->start,
				 v->end, p);
		else
			ret = rst_vma_ghost_refusal(pid, v, why, whylen);
	}
	haul_layout_release(&l);
	return ret;
}

/*
 * Whether @pid is a kernel thread: PF_KTHREAD in the flags of /proc/PID/stat
 * (field 9, after the parenthesised comm, which may itself hold spaces and
 * parentheses).  It has no user memory: ptrace refuses it (EPERM) and its
 * pagemap reads as ESRCH, which would make a confusing message later.
 */
bool rst_is_kthread(pid_t pid)
{
	char *stat = NULL, *p;
	unsigned long flags = 0;
	bool kt = false;

	if (rst_read_proc(pid, "stat", &stat, NULL))
		return false;
	p = strrchr(stat, ')');
	/* ") S ppid pgrp session tty_nr tpgid flags" */
	if (p && sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %lu", &flags) == 1)
		kt = flags & 0x00200000; /* PF_KTHREAD, include/linux/sched.h */
	free(stat);
	return kt;
}

/* The sets whose sharing is judged over all fds at once (pipes, sockets, files). */
struct held {
	struct rst_held_pipe *pipes;
	struct held_file *files;
	size_t npipes, nfiles;
	bool precheck; /* not in the dump's stop: the sharing of sockets too */
};

static void held_release(struct held *h)
{
	for (size_t i = 0; i < h->nfiles; i++)
		free(h->files[i].path);
	free(h->files);
	free(h->pipes);
}

/* Note fd @p of kind @k in @h if its sharing must be checked. */
static int hold_fd(struct held *h, const struct rst_fd_probe *p, const struct rst_fd_ops *k)
{
	if (k == &rst_fd_reg || k == &rst_fd_deleted) {
		struct held_file *nf = realloc(h->files, (h->nfiles + 1) * sizeof(*nf));

		if (!nf)
			return -ENOMEM;
		h->files = nf;
		/* O_WRONLY|O_APPEND: every write goes to the end whatever the offset. */
		if ((p->flags & (O_ACCMODE | O_APPEND)) == (O_WRONLY | O_APPEND))
			return 0;
		nf[h->nfiles].dev = p->st->st_dev;
		nf[h->nfiles].ino = p->st->st_ino;
		nf[h->nfiles].fd = p->fd;
		nf[h->nfiles].path = strdup(p->target);
		return nf[h->nfiles++].path ? 0 : -ENOMEM;
	}
	/*
	 * A TCP or UDP socket another process holds too (systemd's socket
	 * activation, a parent, SCM_RIGHTS) would be two sockets after the
	 * move: checked at the precheck only (a scan of every fd on the host).
	 */
	bool inet = k == &rst_fd_tcp_listen || k == &rst_fd_tcp || k == &rst_fd_udp ||
		    k == &rst_fd_unix_lsn || /* a unix listener: only its sharing too */
		    k == &rst_fd_unix_dgram; /* so is a unix datagram socket */

	if (k == &rst_fd_pipe || k == &rst_fd_unix_pair || (inet && h->precheck)) {
		struct rst_held_pipe *np = realloc(h->pipes, (h->npipes + 1) * sizeof(*np));

		if (!np)
			return -ENOMEM;
		h->pipes = np;
		np[h->npipes].ino = p->st->st_ino;
		np[h->npipes].sock = k != &rst_fd_pipe;
		np[h->npipes].inet = inet;
		np[h->npipes++].fd = p->fd;
	}
	return 0;
}

/*
 * One fd of the process, classified by the kind table (fd_kinds.c): the
 * kind's fdinfo audit (its precheck hook) and the locks (fd_lock.c); the
 * pipes, sockets and files whose sharing is judged later go into @arg.
 */
static int check_fd(void *arg, const struct rst_fd_probe *p, const struct rst_fd_ops *k, char *why,
		    size_t whylen)
{
	int ret = k->precheck ? k->precheck(p, why, whylen) : 0;

	if (!ret)
		ret = rst_lock_check(p->fd, p->target, p->fdinfo, why, whylen);
	if (!ret)
		ret = hold_fd(arg, p, k);
	return ret;
}

/*
 * A tree checkpoint (tree_ckpt.c) dumps the children too, and what the
 * tree's processes share among themselves is carried (tree_share.c): per
 * thread, as the checks run, the tree's members (host PIDs).
 */
static __thread bool children_ok;
static __thread const pid_t *tree_pids;
static __thread size_t tree_n;

void rst_precheck_tree(const pid_t *members, size_t n)
{
	children_ok = members != NULL;
	tree_pids = members;
	tree_n = n;
}

size_t rst_precheck_members(const pid_t **members)
{
	*members = tree_pids;
	return tree_n;
}

static bool in_tree(pid_t pid)
{
	for (size_t i = 0; i < tree_n; i++)
		if (tree_pids[i] == pid)
			return true;
	return false;
}

int rst_check_resources(pid_t pid, pid_t tracer, char *why, size_t whylen)
{
	struct held h = {0};
	char *status = NULL, *text = NULL, path[96];
	const char *f;
	int ret;

	ret = rst_read_proc(pid, "status", &status, NULL);
	if (ret) {
		snprintf(why, whylen, "pid %d is gone", (int)pid);
		return ret;
	}
	ret = -EOPNOTSUPP;
	if (rst_is_kthread(pid)) {
		f = rst_status_field(status, "Name");
		f = f ? f + strspn(f, " \t") : NULL;
		snprintf(why, whylen,
			 "pid %d (%.*s) is a kernel thread; only user processes can be moved",
			 (int)pid, f ? (int)strcspn(f, "\n") : 1, f ? f : "?");
		goto out;
	}
	if ((f = rst_status_field(status, "State")) && strchr(f, 'Z')) {
		snprintf(why, whylen, "pid %d is a zombie", (int)pid);
		ret = -ESRCH;
		goto out;
	}
	if ((f = rst_status_field(status, "TracerPid")) && atoi(f) != 0 && atoi(f) != tracer) {
		snprintf(why, whylen, "pid %d is being traced by pid %d", (int)pid, atoi(f));
		goto out;
	}
	snprintf(path, sizeof(path), "task/%d/children", (int)pid);
	if (!children_ok && !rst_read_proc(pid, path, &text, NULL)) {
		if (atoi(text) > 0) {
			snprintf(why, whylen,
				 "pid %d has child process %d (a process is moved alone here; "
				 "'haul checkpoint' and 'haul migrate' take it with its "
				 "descendants)",
				 (int)pid, atoi(text));
			goto out;
		}
		free(text);
		text = NULL;
	}
	{
		/* a deleted one is made again at the restore, unless the kernel made it (cwd_ghost.c) */
		char cwd[4096], link[64];

		snprintf(link, sizeof(link), "/proc/%d/cwd", (int)pid);
		if (!rst_read_link(link, cwd, sizeof(cwd)) && rst_strip_deleted(cwd) &&
		    rst_cwd_ghost_check(pid, cwd, why, whylen))
			goto out;
	}
	h.precheck = !tracer;
	ret = rst_fd_each(pid, check_fd, &h, why, whylen);
	if (!ret)
		ret = rst_unix_check_pairs(pid, h.pipes, h.npipes, why, whylen);
	/*
	 * Sharing with another process (the pipes and sockets here, the files
	 * below) is checked once, at the precheck
	 * (tracer 0) while the process runs: a scan of every fd on the host
	 * does not belong in the downtime, and no new sharer can appear
	 * meanwhile but by pidfd_getfd (children and sockets to others are
	 * refused).
	 */
	if (!ret && !tracer)
		ret = check_pipes(pid, h.pipes, h.npipes, why, whylen);
	if (!ret && !tracer)
		ret = check_shared_files(pid, h.files, h.nfiles, why, whylen);
	if (!ret)
		ret = check_vmas(pid, why, whylen);
	if (!ret)
		ret = rst_ipc_precheck(pid, why, whylen);
	if (!ret && !tracer) /* like the open files: once, while it runs */
		ret = rst_shm_precheck(pid, why, whylen);
	/* the per-process resources that are not fds (res_kinds.c) */
	if (!ret)
		ret = rst_res_precheck(pid, tracer, why, whylen);
out:
	held_release(&h);
	free(text);
	free(status);
	return ret;
}
