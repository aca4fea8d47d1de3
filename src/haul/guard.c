/*
 * guard.c - the guardian: a child process that keeps a failed or killed
 * `haul migrate` from costing the workload.
 *
 * haul forks it once the workload's cgroups are prepared, before anything
 * is frozen, throttled or seized.  It becomes a session leader (Ctrl-C on the
 * terminal does not reach it), ignores SIGINT/SIGTERM/SIGHUP, closes every fd
 * but stderr and the read end of a pipe, and waits on that pipe.  haul sends
 * one byte per state change:
 *   'C' the restore command goes out: the target may run the process from now
 *       on, so a dead haul leaves the source frozen ("in doubt");
 *   'A' back to armed (the target refused the restore);
 *   'D' haul is done (committed or undone by itself): exit quietly;
 *   'R' and three ints (fd, SO_REUSEADDR, pid: 0 the process, else that
 *       process of its tree): the dump is putting that TCP socket in repair
 *       mode;
 *   'S' and a pid: haul SIGSTOPped that process of a tree (the injection
 *       journal holds one process only): SIGCONT it after the thaw, once
 *       the journal's survivor is gone;
 *   'J' and a pid: the injection journal's survivor, which puts back the
 *       registers of a process haul died injecting into (continued before
 *       that, the process would run on injected registers).
 * A socket left in repair mode never sends again, so before it thaws the
 * process the armed guardian takes each such socket (pidfd_getfd) out of
 * repair mode (the kernel sends a window probe: the peer learns we are back)
 * and puts SO_REUSEADDR back (leaving repair clears it).  In doubt it leaves
 * them: if the target runs, the source must die without a FIN or RST.
 * EOF without 'D' means haul died: when armed, the guardian undoes the
 * cgroup changes (lifts the throttle, thaws: the source runs on, the kernel
 * has already dropped haul's ptrace and uffd, and the injection survivor,
 * src/common/injlog.c, puts back what a dump or attach in progress changed
 * before it lets the process run); when in doubt, it leaves the source
 * frozen and prints what the operator must check.
 */
#define LOG_PREFIX "guard: "
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "common/log.h"
#include "common/sysno.h"
#include "haul/ctr_int.h"
#include "haul/haul_int.h"

/* The sockets the dump put in repair mode: fd and SO_REUSEADDR pairs; the tree's stopped pids. */
struct held {
	int (*fr)[3];
	size_t n, cap;
	pid_t *stopped;
	size_t nstopped, capstopped;
	pid_t journal; /* the injection journal's survivor, 0: none */
};

static void stopped_add(struct held *h, int rfd)
{
	pid_t pid;

	if (read(rfd, &pid, sizeof(pid)) != (ssize_t)sizeof(pid))
		return;
	if (h->nstopped == h->capstopped) {
		size_t nc = h->capstopped ? h->capstopped * 2 : 16;
		pid_t *a = realloc(h->stopped, nc * sizeof(*a));

		if (!a) {
			pr_err("out of memory: pid %d stays stopped (send it SIGCONT)", (int)pid);
			return;
		}
		h->stopped = a;
		h->capstopped = nc;
	}
	h->stopped[h->nstopped++] = pid;
}

static void held_add(struct held *h, int rfd)
{
	int rec[3];

	if (read(rfd, rec, sizeof(rec)) != (ssize_t)sizeof(rec))
		return; /* haul died mid-record: the write is atomic, so it never began */
	if (h->n == h->cap) {
		size_t nc = h->cap ? h->cap * 2 : 16;
		int(*a)[3] = realloc(h->fr, nc * sizeof(*a));

		if (!a) {
			pr_err("out of memory: fd %d stays in TCP repair mode", rec[0]);
			return;
		}
		h->fr = a;
		h->cap = nc;
	}
	h->fr[h->n][0] = rec[0];
	h->fr[h->n][1] = rec[1];
	h->fr[h->n++][2] = rec[2];
}

/* The sockets of process @pid among them (@owner 0 in a record: @root's). */
static void held_release_of(const struct held *h, pid_t root, pid_t pid)
{
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	size_t done = 0, n = 0;

	for (size_t i = 0; i < h->n; i++)
		n += (h->fr[i][2] ? h->fr[i][2] : root) == pid;
	if (pidfd < 0 && n) {
		pr_err("cannot reach the sockets of pid %d: %s; %zu connection(s) stay in TCP "
		       "repair mode (the process must reconnect)",
		       (int)pid, strerror(errno), n);
		return;
	}
	for (size_t i = 0; i < h->n; i++) {
		int sfd, off = 0;

		if ((h->fr[i][2] ? h->fr[i][2] : root) != pid)
			continue;
		sfd = (int)syscall(SYS_pidfd_getfd, pidfd, h->fr[i][0], 0);

		if (sfd < 0)
			continue; /* closed since: nothing to repair */
		if (setsockopt(sfd, IPPROTO_TCP, TCP_REPAIR, &off, sizeof(off)) ||
		    setsockopt(sfd, SOL_SOCKET, SO_REUSEADDR, &h->fr[i][1], sizeof(int)))
			pr_err("cannot take fd %d of pid %d out of TCP repair mode: %s; its "
			       "connection is stuck (the process must reconnect)",
			       h->fr[i][0], (int)pid, strerror(errno));
		else
			done++;
		close(sfd);
	}
	if (pidfd >= 0)
		close(pidfd);
	if (done)
		pr_warn("%zu TCP connection(s) of pid %d taken out of repair mode", done, (int)pid);
}

/* Every held socket, each in its own process (the root's, or one of its tree). */
static void held_release(const struct held *h, pid_t root)
{
	held_release_of(h, root, root);
	for (size_t i = 0; i < h->n; i++) {
		bool first = h->fr[i][2] && h->fr[i][2] != root;

		for (size_t k = 0; k < i && first; k++)
			first = h->fr[k][2] != h->fr[i][2];
		if (first)
			held_release_of(h, root, h->fr[i][2]);
	}
}

/* A record after a byte haul_survivor_wait() does not know: 'R', a socket held. */
static void guard_record(void *arg, char c, int rfd)
{
	if (c == 'R')
		held_add(arg, rfd);
	else if (c == 'S')
		stopped_add(arg, rfd);
	else if (c == 'J' &&
		 read(rfd, &((struct held *)arg)->journal, sizeof(pid_t)) != (ssize_t)sizeof(pid_t))
		((struct held *)arg)->journal = 0;
}

/*
 * haul's scratch directory (the container's dump, already sent): nothing
 * reads it once haul is gone, whichever way the migration stands.
 */
static void remove_workdir(const char *workdir)
{
	int ret;

	if (!workdir)
		return;
	ret = fchan_rm_rf(AT_FDCWD, workdir);
	if (ret && ret != -ENOENT)
		pr_warn("cannot remove haul's work directory %s: %s; remove it by hand", workdir,
			strerror(-ret));
}

static void guard_main(struct haul_cg *cg, const char *to, const char *workdir, int rfd)
{
	struct held h = {0};
	struct haul_survivor_state st = {.record = guard_record, .arg = &h};

	haul_survivor_wait(rfd, &st);
	remove_workdir(workdir);
	if (st.indoubt) {
		pr_err("haul migrate died after asking %s to resume pid %d; the source copy stays "
		       "frozen in '%s'. If the process runs on %s, kill the source "
		       "(kill -9 %d%s; write 0 to cgroup.freeze); if it does not, thaw the source "
		       "(write 0 to cgroup.freeze)",
		       to, cg->pid, cg->freezer_dir, to, cg->pid,
		       cg->nmore ? " and every other pid of its tree in cgroup.procs" : "");
		_exit(1);
	}
	held_release(&h, cg->pid);
	haul_cg_undo(cg);
	/* the journal's survivor first puts back what haul was injecting (bounded wait) */
	for (int i = 0; i < 5000 && h.nstopped && h.journal > 0; i++) {
		char js = haul_proc_state(h.journal);

		if (!js || js == 'Z' || js == 'X')
			break;
		usleep(1000);
	}
	for (size_t i = 0; i < h.nstopped; i++)
		kill(h.stopped[i], SIGCONT);
	pr_warn("haul migrate of pid %d died before the commit point; pid %d was thawed and runs "
		"on here",
		cg->pid, cg->pid);
	_exit(0);
}

int haul_guard_start(const struct haul_cg *cg, const char *to, const char *workdir,
		     struct haul_guard *g)
{
	struct haul_cg copy = *cg;
	int fd;
	pid_t pid;

	g->pid = -1;
	g->fd = -1;
	pid = haul_survivor_fork("haul-guard", &fd);
	if (pid < 0)
		return pid;
	if (pid == 0)
		guard_main(&copy, to, workdir, fd);
	g->pid = pid;
	g->fd = fd;
	return 0;
}

int haul_guard_indoubt(struct haul_guard *g)
{
	return haul_survivor_send(g->fd, 'C');
}

int haul_guard_rearm(struct haul_guard *g)
{
	return haul_survivor_send(g->fd, 'A');
}

void haul_guard_tcp_held(void *guard, pid_t pid, int fd, int reuse)
{
	struct haul_guard *g = guard;
	char rec[1 + 3 * sizeof(int)] = {'R'};
	int owner = g->owner;

	(void)pid; /* the tree's pids as the target knows them: g->owner */
	if (g->fd < 0)
		return;
	memcpy(rec + 1, &fd, sizeof(int));
	memcpy(rec + 1 + sizeof(int), &reuse, sizeof(int));
	memcpy(rec + 1 + 2 * sizeof(int), &owner, sizeof(int));
	/* one write (under PIPE_BUF): the guardian reads a whole record or none */
	if (write(g->fd, rec, sizeof(rec)) != (ssize_t)sizeof(rec))
		pr_warn("cannot tell the guardian about fd %d: %s", fd, strerror(errno));
}

void haul_guard_stopped(struct haul_guard *g, pid_t pid)
{
	char rec[1 + sizeof(pid_t)] = {'S'};

	if (g->fd < 0)
		return;
	memcpy(rec + 1, &pid, sizeof(pid));
	if (write(g->fd, rec, sizeof(rec)) != (ssize_t)sizeof(rec))
		pr_warn("cannot tell the guardian about pid %d: %s", (int)pid, strerror(errno));
}

void haul_guard_journal(struct haul_guard *g, pid_t survivor)
{
	char rec[1 + sizeof(pid_t)] = {'J'};

	if (g->fd < 0 || survivor <= 0)
		return;
	memcpy(rec + 1, &survivor, sizeof(survivor));
	if (write(g->fd, rec, sizeof(rec)) != (ssize_t)sizeof(rec))
		pr_warn("cannot tell the guardian about the journal: %s", strerror(errno));
}

void haul_guard_stop(struct haul_guard *g)
{
	haul_survivor_stop(&g->pid, &g->fd);
}
