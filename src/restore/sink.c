/*
 * sink.c - rst_live_sink: the page server's sink that restores a live
 * migration into a restore target.
 *
 * One session is one rst_target, created when the session opens so that the
 * stub exists while pre-copy runs (an open naming an AppArmor profile this
 * host has not loaded is refused first, before anything is made): layouts and pages go straight into it,
 * the state blob is kept until the restore command, and a session that ends
 * uncommitted kills whatever was built (the source still runs).  Every
 * callback runs on the page server's loop thread, which is therefore the
 * tracer of every stub (ptrace requires one thread).
 *
 * A lazy session (post-copy) resumes the process before its memory has
 * arrived: the stub gets rst_lazy_before_resume with the session itself as
 * the source (rst_lazy_session_fetch), stale pages named with the state
 * (hybrid) are zapped before registration, and after the resume a waiter
 * thread tells the source (ps_session_fetch_done_report, with the fault
 * server's statistics) once every page is present.  close() joins it and frees the fault server, which kills a
 * process whose memory is incomplete: an uncommitted or failed post-copy
 * never leaves a copy running here.  Should the page server itself die
 * mid-post-copy, a watchdog child that holds a copy of the uffds (the
 * process's and its children's) kills them all before they could read zeros
 * for the memory that never came.
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/validate.h"
#include "pageserver/pageserver.h"
#include "restore/lazy.h"
#include "restore/restore.h"
#include "restore/fd_int.h"
#include "restore/restore_int.h"
#include "restore/tree_int.h"

struct live_sess {
	struct rst_target *t; /* NULL in a tree: its processes are the tree's (sink_tree.c) */
	struct rst_live_tree *tree;
	size_t idx; /* its entry in the tree */
	int32_t pid;
	void *state;
	size_t state_len;
	pid_t restored; /* > 0 once resumed: for messages; signals go through the target's pidfd */
	/* post-copy */
	bool lazy;
	struct ps_session *session;
	struct rst_lazy_hook hook;
	struct rst_lazy_range *stale; /* hook.stale */
	pthread_t waiter;
	bool waiting;
	pid_t watchdog; /* > 0 while it runs */
	int wd_fd;	/* its socket: 'D' = post-copy over, nothing to guard; EOF = we died */
};

/*
 * The post-copy watchdog.  If the page server dies (SIGKILL, OOM) while the
 * restored process still misses memory, the kernel closes the fault
 * server's uffds, and the process would read zeros where its data should be.
 * This child, forked when the session opens, is armed before the resume
 * with a copy of that uffd and the process's pidfd ('A', SCM_RIGHTS), and
 * holds the uffd of every process it forks during post-copy ('U'), so
 * their faults keep waiting; when its socket reads EOF without 'D' (we are
 * gone) after it was armed, it finds every descendant of the process,
 * SIGKILLs them all through pidfds and waits for them to die before its own
 * copies of the uffds go.  A fork after our death cannot add one: the
 * parent waits in fork() until someone reads its FORK event.  Forked from a
 * multi-threaded process: raw calls only (no stdio, no malloc).
 */
#define WD_MAX_FDS 256

/* "/proc/" DEC @a [@mid DEC @b] @tail into @buf (no snprintf: raw calls only here). */
static void wd_path(char *buf, long a, const char *mid, long b, const char *tail)
{
	char num[24];
	size_t n = 0;

	for (const char *p = "/proc/"; *p;)
		buf[n++] = *p++;
	for (int pass = 0; pass < 2; pass++) {
		long v = pass ? b : a;
		int k = 0;

		if (pass && !mid)
			break;
		for (const char *p = pass ? mid : ""; *p;)
			buf[n++] = *p++;
		do
			num[k++] = (char)('0' + v % 10);
		while ((v /= 10) > 0);
		while (k)
			buf[n++] = num[--k];
	}
	for (const char *p = tail; *p;)
		buf[n++] = *p++;
	buf[n] = 0;
}

/* Add the descendants of @pid (pidfds) to @fd[*n..max). */
static void wd_kids(pid_t pid, int *fd, int *n, int max, int depth)
{
	char path[96], buf[4096];
	int dir;
	long got;

	if (depth > 16)
		return;
	wd_path(path, pid, NULL, 0, "/task");
	dir = (int)syscall(SYS_open, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return;
	while ((got = syscall(SYS_getdents64, dir, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < got;) {
			struct {
				uint64_t ino;
				int64_t off;
				unsigned short reclen;
				unsigned char type;
				char name[];
			} *d = (void *)(buf + off);
			char kids[4096];
			long tid = 0, r;
			int f;

			off += d->reclen;
			if (d->name[0] < '0' || d->name[0] > '9')
				continue;
			for (const char *p = d->name; *p; p++)
				tid = tid * 10 + (*p - '0');
			wd_path(path, pid, "/task/", tid, "/children");
			f = (int)syscall(SYS_open, path, O_RDONLY | O_CLOEXEC);
			if (f < 0)
				continue;
			r = read(f, kids, sizeof(kids) - 1);
			close(f);
			for (long i = 0, kid = 0; r > 0 && i <= r; i++) {
				if (i < r && kids[i] >= '0' && kids[i] <= '9') {
					kid = kid * 10 + (kids[i] - '0');
					continue;
				}
				if (kid > 0 && *n < max) {
					int pfd = (int)syscall(SYS_pidfd_open, (pid_t)kid, 0);

					if (pfd >= 0) {
						fd[(*n)++] = pfd;
						wd_kids((pid_t)kid, fd, n, max, depth + 1);
					}
				}
				kid = 0;
			}
		}
	}
	close(dir);
}

/* The fds of SCM_RIGHTS message @mh into @fd[0..max): how many. */
static int wd_fds(struct msghdr *mh, int *fd, int max)
{
	struct cmsghdr *cm = CMSG_FIRSTHDR(mh);
	int n;

	if (!cm || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
		return 0;
	n = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
	n = n < max ? n : max;
	memcpy(fd, CMSG_DATA(cm), (size_t)n * sizeof(int));
	return n;
}

static void __attribute__((noreturn)) watchdog_main(int rd)
{
	static int victims[WD_MAX_FDS];
	struct pollfd p[WD_MAX_FDS];
	int nv = 0, pidfd = -1;
	pid_t pid = 0;

	/* nothing of the page server's (sockets above all) may stay open here */
	if (rd > 0)
		syscall(SYS_close_range, 0, rd - 1, 0);
	syscall(SYS_close_range, rd + 1, ~0U, 0);
	for (;;) {
		char m[1 + sizeof(pid_t)], cbuf[CMSG_SPACE(2 * sizeof(int))];
		struct iovec iov = {m, sizeof(m)};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = cbuf,
				    .msg_controllen = sizeof(cbuf)};
		ssize_t n = recvmsg(rd, &mh, MSG_CMSG_CLOEXEC);
		int fd[2], k;

		if (n < 0 && errno == EINTR)
			continue;
		if (n >= 1 && m[0] == 'D')
			_exit(0);
		if (n < 1 || (m[0] != 'A' && m[0] != 'U'))
			break; /* EOF: the page server is gone */
		/* a uffd (the process's own, or a child's) stays open here until we exit */
		k = wd_fds(&mh, fd, 2);
		if (m[0] == 'A' && n == (ssize_t)sizeof(m) && k == 2) {
			/* armed: the restored process's uffd and pidfd, before it runs */
			memcpy(&pid, m + 1, sizeof(pid));
			pidfd = fd[1];
		}
	}
	if (pidfd < 0)
		_exit(0); /* never armed: no process ran on these pages */
	victims[nv++] = pidfd;
	wd_kids(pid, victims, &nv, WD_MAX_FDS, 0);
	for (int i = 0; i < nv; i++) {
		syscall(SYS_pidfd_send_signal, victims[i], SIGKILL, NULL, 0);
		p[i] = (struct pollfd){.fd = victims[i], .events = POLLIN};
	}
	/* every one of them dead (each pidfd readable), or 5 s */
	for (int waited = 0; waited < 5000; waited += 10) {
		int dead = 0;

		poll(p, (nfds_t)nv, 10);
		for (int i = 0; i < nv; i++)
			dead += (p[i].revents & POLLIN) != 0;
		if (dead == nv)
			break;
	}
	_exit(0);
}

/* Send the watchdog message @m (@len bytes) with @nfds (1 or 2) fds.  0 or -errno. */
static int wd_send(struct live_sess *s, const char *m, size_t len, const int *fds, int nfds)
{
	char cbuf[CMSG_SPACE(2 * sizeof(int))];
	struct iovec iov = {(void *)m, len};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cbuf,
			    .msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int))};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	ssize_t n;

	if (s->wd_fd < 0)
		return -ESRCH;
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
	memcpy(CMSG_DATA(cm), fds, (size_t)nfds * sizeof(int));
	n = sendmsg(s->wd_fd, &mh, MSG_NOSIGNAL);
	return n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
}

/* The watchdog gets (and holds) the uffd of each process forked during post-copy. */
static void watchdog_hold(void *arg, int uffd)
{
	struct live_sess *s = arg;
	int ret = wd_send(s, "U", 1, &uffd, 1);

	if (ret && ret != -ESRCH) /* -ESRCH: dismissed, nothing left to guard */
		pr_warn("cannot hand a child's uffd of pid %d to the post-copy watchdog: %s",
			(int)s->pid, strerror(-ret));
	close(uffd);
}

static void watchdog_dismiss(struct live_sess *s);

/*
 * Fork the watchdog when the lazy session opens, long before the freeze:
 * forked after the resume it cost 2.5 ms while the process waited for its
 * first page (bench/RESULTS.md, stop 31), and until it held the uffd a
 * page server's death would have left the process reading zeros.  It holds
 * nothing until watchdog_arm().
 */
static int watchdog_fork(struct live_sess *s)
{
	int p[2];
	pid_t child;

	/* a socket, not a pipe: send() with MSG_NOSIGNAL cannot raise SIGPIPE; packets keep
	 * each message whole */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p) < 0)
		return -errno;
	child = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
	if (child < 0) {
		int ret = -errno;

		close(p[0]);
		close(p[1]);
		pr_err_r(ret, "cannot start the post-copy watchdog of pid %d", (int)s->pid);
		return ret;
	}
	if (child == 0)
		watchdog_main(p[0]);
	close(p[0]);
	s->watchdog = child;
	s->wd_fd = p[1];
	return 0;
}

/*
 * Before the resume: hand the watchdog the uffd and the pidfd of the
 * restored process (none needed when nothing is missing: dismissed), and
 * the uffd of every process it forks from now on.  0 or -errno: the
 * process must not run unguarded.
 */
static int watchdog_arm(struct live_sess *s)
{
	int uffd = rst_lazy_dup_uffd(s->hook.lz), fds[2], ret;
	pid_t pid = rst_target_pid(s->t);
	char m[1 + sizeof(pid_t)] = {'A'};

	if (uffd == -ENOENT) {
		watchdog_dismiss(s);
		return 0;
	}
	if (uffd < 0)
		return uffd;
	/* the target's own pidfd, opened on the stub: never a PID reused since */
	fds[0] = uffd;
	fds[1] = fcntl(rst_target_pidfd(s->t), F_DUPFD_CLOEXEC, 0);
	memcpy(m + 1, &pid, sizeof(pid));
	ret = fds[1] < 0 ? -errno : wd_send(s, m, sizeof(m), fds, 2);
	if (ret)
		pr_err_r(ret, "cannot arm the post-copy watchdog of pid %d", (int)s->pid);
	else
		rst_lazy_on_fork(s->hook.lz, watchdog_hold, s);
	close(uffd);
	if (fds[1] >= 0)
		close(fds[1]);
	return ret;
}

/* The target's hook before the resume: the fault server attached, then the watchdog armed. */
static int live_before_resume(void *arg, struct rsys *r, const struct haul_layout *l)
{
	struct live_sess *s = arg;
	int ret = rst_lazy_before_resume(&s->hook, r, l);

	return ret ? ret : watchdog_arm(s);
}

/* Post-copy is over (complete, or the process is dead): the watchdog may go. */
static void watchdog_dismiss(struct live_sess *s)
{
	if (s->hook.lz)
		rst_lazy_on_fork(s->hook.lz, NULL, NULL);
	if (s->wd_fd >= 0) {
		if (send(s->wd_fd, "D", 1, MSG_NOSIGNAL) != 1)
			pr_warn("cannot dismiss the post-copy watchdog of pid %d", (int)s->pid);
		close(s->wd_fd);
		s->wd_fd = -1;
	}
}

/*
 * The process needed no more of its memory before all of it arrived: it
 * exec'd, or exited by itself.  Either ends post-copy as well as the last
 * page would: the source may commit and die (thawed, it would run what the
 * process did here again).  Killed by a signal, or gone with no word from
 * the kernel how, it does not: the session fails at once with the reason,
 * and the source keeps its frozen copy, in doubt, for the operator.
 * PS_LAZY_EXECED, PS_LAZY_EXITED or 0.
 */
static uint32_t live_ended(struct live_sess *s, int *wst)
{
	char why[200];

	if (rst_lazy_end(s->hook.lz, wst) == RST_LAZY_EXECED) {
		pr_info("pid %d (pid %d here) exec'd before all its memory arrived: post-copy is "
			"over",
			(int)s->pid, (int)s->restored);
		return PS_LAZY_EXECED;
	}
	if (*wst >= 0 && WIFEXITED(*wst)) {
		pr_info("pid %d (pid %d here) exited with status %d before all its memory "
			"arrived: post-copy is over",
			(int)s->pid, (int)s->restored, WEXITSTATUS(*wst));
		return PS_LAZY_EXITED;
	}
	if (*wst >= 0 && WIFSIGNALED(*wst))
		snprintf(why, sizeof(why),
			 "pid %d (pid %d on the target) was killed by signal %d (%s) before all "
			 "its memory arrived",
			 (int)s->pid, (int)s->restored, WTERMSIG(*wst), strsignal(WTERMSIG(*wst)));
	else
		snprintf(why, sizeof(why),
			 "pid %d (pid %d on the target) ended before all its memory arrived, and "
			 "this kernel does not say how (PIDFD_INFO_EXIT: Linux 6.15)",
			 (int)s->pid, (int)s->restored);
	pr_err("%s: the source keeps its frozen copy", why);
	ps_session_fetch_fail(s->session, -ESRCH, why);
	return 0;
}

/* After a lazy resume: wait until every page is present, then release the source. */
static void *live_waiter(void *arg)
{
	struct live_sess *s = arg;
	struct rst_lazy_stats st;
	struct ps_lazy_report rep;
	int ret = rst_lazy_wait_complete(s->hook.lz, -1), wst = -1;
	uint32_t ended = ret == -ESRCH ? live_ended(s, &wst) : 0;

	if (ret && !ended) {
		if (ret != -ESRCH)
			pr_err_r(ret, "post-copy of pid %d (pid %d here) failed", (int)s->pid,
				 (int)s->restored);
		return NULL;
	}
	/* every page is in: the uffd copy the watchdog holds would only keep it registered */
	watchdog_dismiss(s);
	rst_lazy_stats(s->hook.lz, &st);
	rep = (struct ps_lazy_report){
		.faults = st.faults,
		.fault_pages = st.fault_pages,
		.pushed_pages = st.pushed_pages,
		.zero_filled = st.zero_filled,
		.present_pages = st.present_pages + st.settled_pages,
		.total_pages = st.total_pages,
		.eexist_pages = st.eexist,
		.fetched_bytes = st.fetched_bytes,
		.fault_p50_ns = st.fault_p50_ns,
		.fault_p99_ns = st.fault_p99_ns,
		.fault_max_ns = st.fault_max_ns,
		.complete_ns = st.complete_ns,
		.ended = ended,
		.exit_status = wst,
	};
	/* the source reports what we measured (haul migrate --json) */
	ps_session_fetch_done_report(s->session, &rep);
	if (ended)
		return NULL;
	pr_info("pid %d (pid %d here): all memory arrived %.1f ms after the resume; %llu faults "
		"(%llu pages, latency p50 %.0f us, p99 %.0f us, max %.0f us), %llu pages pushed",
		(int)s->pid, (int)s->restored, st.complete_ns / 1e6, (unsigned long long)st.faults,
		(unsigned long long)st.fault_pages, st.fault_p50_ns / 1e3, st.fault_p99_ns / 1e3,
		st.fault_max_ns / 1e3, (unsigned long long)st.pushed_pages);
	pr_debug("pid %d: %llu fault windows fetched by the fault thread itself", (int)s->pid,
		 (unsigned long long)st.faults_inline);
	return NULL;
}

static int live_open(void *arg, const struct ps_session_info *info, void **sess)
{
	struct rst_target_opts o = {0};
	struct live_sess *s;
	char why[256];
	int ret;

	(void)arg;
	/* a profile this host lacks: refused before anything is made, before the freeze */
	ret = rst_apparmor_check_profiles(info->pid, info->apparmor_profiles,
					  info->napparmor_profiles, why, sizeof(why));
	if (ret) {
		pr_err("%s", why);
		return ret;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->pid = info->pid;
	s->wd_fd = -1;
	o.pid = info->pid;
	o.pidns = RST_PIDNS_AUTO;
	o.lazy = info->lazy;
	o.detach = true; /* the process must outlive the page server */
	/* its clocks go on from the source's, on another host too */
	rst_session_clock_offsets(info, &o.monotonic_offset_ns, &o.boottime_offset_ns);
	if (info->lazy) {
		s->lazy = true;
		s->session = info->session;
		s->hook.src = (struct rst_lazy_source){.fetch = rst_lazy_session_fetch,
						       .arg = info->session,
						       .fetch_fault = rst_lazy_session_fetch_fault,
						       .fetch_fault_try =
							       rst_lazy_session_fetch_fault_try};
		o.before_resume = rst_lazy_before_resume;
		o.before_resume_arg = &s->hook;
	}
	o.cg_defer_frozen = true;
	if (info->tree || info->tree_session) {
		/* one session of a process tree (sink_tree.c) */
		ret = rst_live_tree_open(info, &o, &s->tree, &s->idx);
		if (ret) {
			free(s);
			return ret;
		}
		*sess = s;
		return 0;
	}
	if (s->lazy) {
		/* guarded from before the resume (watchdog_arm): forked now, outside the stop */
		o.before_resume = live_before_resume;
		o.before_resume_arg = s;
		ret = watchdog_fork(s);
		if (ret) {
			free(s);
			return ret;
		}
	}
	ret = rst_target_new(&o, &s->t);
	if (ret) {
		watchdog_dismiss(s);
		if (s->watchdog > 0)
			waitpid(s->watchdog, NULL, 0);
		free(s);
		return ret;
	}
	rst_target_cgroups_early(s->t, info->cgroups, info->ncgroups);
	*sess = s;
	return 0;
}

/* The session's stub: its own, or its entry's in a tree (NULL once the tree resumed or ended). */
static struct rst_target *sess_target(const struct live_sess *s)
{
	return s->tree ? rst_live_tree_target(s->tree, s->idx) : s->t;
}

static int live_layout(void *sess, const struct haul_layout *l)
{
	struct rst_target *t = sess_target(sess);

	return t ? rst_target_layout(t, l) : -ESRCH;
}

static int live_pages(void *sess, uint64_t addr, const void *data, uint32_t npages)
{
	struct rst_target *t = sess_target(sess);

	return t ? rst_target_pages(t, addr, data, npages) : -ESRCH;
}

static int live_round_end(void *sess, uint64_t round)
{
	(void)sess;
	(void)round;
	return 0;
}

static int live_state(void *sess, const void *blob, size_t len)
{
	struct live_sess *s = sess;
	char why[160];
	void *copy;
	int ret;

	/* checked on arrival, so the source learns at once (rst_target_resume checks again) */
	ret = s->tree ? rst_live_tree_check_state(s->tree, s->idx, blob, len, why, sizeof(why))
		      : rst_state_check(blob, len, why, sizeof(why));
	if (ret == -EOPNOTSUPP) {
		/* sound, but this host lacks what it needs (an AppArmor profile: res_apparmor.c) */
		pr_err("pid %d cannot be restored here: %s", (int)s->pid, why);
		return -EBADMSG;
	}
	if (ret) {
		pr_err("pid %d: the source sent a bad process state: %s", (int)s->pid, why);
		return -EBADMSG;
	}
	copy = malloc(len ? len : 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, blob, len);
	free(s->state);
	s->state = copy;
	s->state_len = len;
	if (s->tree)
		rst_live_tree_state(s->tree, s->idx, copy, len);
	return 0;
}

static int live_ghost(void *sess, const void *blob, size_t len)
{
	struct rst_target *t = sess_target(sess);

	return t ? rst_target_ghost_pre(t, blob, len) : -ESRCH;
}

static int live_stale(void *sess, const struct ps_range *r, size_t n, bool complete)
{
	struct live_sess *s = sess;
	struct rst_lazy_range *v;

	if (!s->lazy)
		return -EPROTO;
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		v[i] = (struct rst_lazy_range){r[i].addr, r[i].addr + r[i].npages * 4096};
	free(s->stale);
	s->stale = v;
	s->hook.stale = v;
	s->hook.nstale = n;
	s->hook.complete = complete;
	return 0;
}

static int live_restore(void *sess, struct ps_restore_result *res)
{
	struct live_sess *s = sess;
	pid_t pid = 0;

	memset(res, 0, sizeof(*res));
	if (!s->state) {
		res->err = -EPROTO;
		snprintf(res->msg, sizeof(res->msg), "no process state was sent for pid %d",
			 (int)s->pid);
		return 0;
	}
	if (s->tree) {
		res->err = rst_live_tree_restore(s->tree, s->idx, &pid, res->msg, sizeof(res->msg));
		s->restored = res->err ? 0 : pid;
		res->pid = res->err ? 0 : pid;
		return 0;
	}
	res->err =
		rst_target_resume(s->t, s->state, s->state_len, &pid, res->msg, sizeof(res->msg));
	if (!res->err) {
		const char *fault = getenv("HAUL_FAULT");

		/* HAUL_FAULT=ps-kill:resumed (tests): the page server dies before it answers */
		if (fault && !strcmp(fault, "ps-kill:resumed") && s->lazy) {
			pr_info("HAUL_FAULT: killed after the resume of pid %d", (int)s->pid);
			kill(getpid(), SIGKILL);
		}
		s->restored = pid;
		res->pid = pid;
		if (s->lazy) {
			int ret = pthread_create(&s->waiter, NULL, live_waiter, s);

			/* without the waiter telling the source "done": kill the copy */
			if (ret) {
				rst_lazy_free(s->hook.lz);
				s->hook.lz = NULL;
				res->err = -ret;
				snprintf(res->msg, sizeof(res->msg),
					 "cannot start post-copy (its waiter) for pid %d",
					 (int)s->pid);
				return 0;
			}
			s->waiting = true;
		}
	}
	return 0;
}

static void live_close(void *sess, bool committed)
{
	struct live_sess *s = sess;

	if (!s)
		return;
	if (s->tree) {
		rst_live_tree_close(s->tree, s->idx, committed);
		free(s->state);
		free(s);
		return;
	}
	if (s->restored > 0 && !committed) {
		/* The source never confirmed its copy is dead: two must not run. */
		pr_warn("pid %d: migration not committed; killing the restored copy (pid %d here)",
			(int)s->pid, (int)s->restored);
		rst_target_kill(s->t);
	} else if (s->restored > 0) {
		rst_target_committed(s->t);
	}
	/* fetches fail once the session is gone, so the waiter always ends */
	if (s->waiting)
		pthread_join(s->waiter, NULL);
	rst_lazy_free(s->hook.lz); /* kills the process if memory is missing */
	s->hook.lz = NULL;
	watchdog_dismiss(s);
	if (s->watchdog > 0)
		waitpid(s->watchdog, NULL, 0);
	haul_layout_release(&s->hook.lazy);
	free(s->stale);
	rst_target_free(s->t);
	free(s->state);
	free(s);
}

const struct ps_sink_ops rst_live_sink = {
	.open = live_open,
	.layout = live_layout,
	.pages = live_pages,
	.round_end = live_round_end,
	.state = live_state,
	.stale = live_stale,
	.restore = live_restore,
	.close = live_close,
	.ghost = live_ghost,
};
