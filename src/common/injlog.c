/*
 * injlog.c - the injection journal and the survivor that replays it when
 * haul dies mid-injection (the contract is in injlog.h).
 *
 * Why a group-stop and not the freezer: the injected calls must run, and a
 * cgroup2-frozen task never leaves the kernel (its freeze trap comes before
 * the return to user mode), while v1-frozen tasks do not even reach a
 * ptrace-stop; `haul track` has no cgroup at all.  A group-stop is the one
 * hold that ptrace may override for its own calls and that the kernel
 * restores when the tracer vanishes.  Its cost is one SIGSTOP/SIGCONT pair
 * per injection window (the parent may see CLD_STOPPED/CLD_CONTINUED, a
 * SIGCONT handler runs once) and the time for every thread to stop.
 *
 * Why the journal holds the rewound registers and the call in flight: the
 * survivor sees the thread only after the kernel let it finish whatever
 * call it was in.  The thread is then at sc_addr + 2 with orig_rax = the
 * call's number exactly when that call ran; its rax is then the result,
 * which tells the survivor the address of a scratch mapping or the fd of a
 * userfaultfd that haul never got to record.  Repeating a munmap or close
 * that did run is harmless: the process is stopped, nobody reused them.
 *
 * Ordering: entries are written before the change they describe and freed
 * after the state is back.  The writer is the only thread that touches the
 * journal while it lives; the survivor reads it after the writer's death
 * (its pipe's EOF), so plain stores suffice.  The pipe's EOF can come before
 * the kernel has detached haul's tracees (exit_files precedes exit_notify),
 * so the survivor retries PTRACE_SEIZE while it fails with EPERM.
 *
 * Why a lock per process, across hauls: a survivor that owes a SIGCONT sends
 * it some time after haul's death, and a second haul may have stopped the
 * process by then (a retry at once).  That SIGCONT ended the second haul's
 * group-stop, and a kill of the second haul mid-injection then let the
 * process run on injected registers and an all-blocked signal mask
 * (tests/extra/inj_random_kill.sh caught it once in a CI run).  So a hold
 * takes an OFD write lock on byte PID of <run dir>/inject.lock (haul's
 * registry directory, $HAUL_RUN_DIR or /run/haul) first and drops it after the SIGCONT; the lock file's open
 * file description is shared with the survivor (opened before the fork), so
 * a haul that dies holding it leaves it held until its survivor has finished
 * and exited.  Another haul waits for it (HAUL_INJ_LOCK_TIMEOUT_MS), and a
 * process stopped when the lock is ours was stopped by its owner.
 */
#define LOG_PREFIX "inject: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/injlog.h"
#include "common/log.h"
#include "common/policy.h"
#include "common/proc.h"
#include "common/rsys.h"
#include "common/sysno.h"

struct injlog {
	pid_t pid;		/* the process held or being injected into, 0: none */
	int32_t held;		/* we group-stopped it: a SIGCONT is owed */
	int32_t depth;		/* injlog_stop() calls not yet matched by injlog_unhold() */
	uint32_t nthr;		/* entries in use are below this */
	pid_t sched_tid;	/* a thread whose scheduling haul raised, 0: none */
	uint32_t sched_len;	/* bytes of sched_attr */
	uint8_t sched_attr[64]; /* its own struct sched_attr */
	pid_t companion;	/* another survivor to wait for before any SIGCONT, 0: none */
	uint32_t nowed;		/* entries of owed[] in use are below this */
	struct {
		pid_t pid; /* 0: paid */
		unsigned long long start;
	} owed[INJLOG_MAX_OWED]; /* other processes haul group-stopped (injlog_owe_cont) */
	uint32_t nsock;		 /* sockets a dump put in TCP repair mode (injlog_tcp_repair) */
	struct {
		pid_t pid;
		int32_t fd, reuse;
		unsigned long long start; /* its start time: the same process still */
	} sock[INJLOG_MAX_SOCKS];
	struct injlog_thr thr[INJLOG_MAX_THREADS];
};

static struct injlog *g_log;  /* the shared journal, NULL: none (or in the survivor) */
static int g_wfd = -1;	      /* write end of the survivor's pipe */
static int g_lockfd = -1;     /* <run dir>/inject.lock, shared with the survivor; -1: none */
static pid_t g_survivor = -1; /* its pid */
static char g_fault_step[16]; /* HAUL_FAULT=kill:inject:STEP[:N] */
static unsigned g_fault_n, g_fault_seen;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

bool injlog_active(void)
{
	return g_log != NULL;
}

void injlog_fault(const char *step)
{
	if (!g_fault_step[0] || strcmp(step, g_fault_step) || ++g_fault_seen != g_fault_n)
		return;
	pr_info("fault: killed at inject:%s:%u", step, g_fault_n);
	raise(SIGKILL);
}

static void parse_fault(const char *fault)
{
	const char *s, *colon;
	size_t n;

	g_fault_step[0] = '\0';
	if (!fault || strncmp(fault, "kill:inject:", 12))
		return;
	s = fault + 12;
	colon = strchr(s, ':');
	n = colon ? (size_t)(colon - s) : strlen(s);
	if (!n || n >= sizeof(g_fault_step))
		return;
	memcpy(g_fault_step, s, n);
	g_fault_step[n] = '\0';
	g_fault_n = colon ? (unsigned)atoi(colon + 1) : 1;
	g_fault_seen = 0;
}

/* The state letter of thread @tid of @pid (/proc stat field 3), or 0 when gone. */
static char thread_state(pid_t pid, pid_t tid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, (int)tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : 0;
}

/*
 * 1 once the group-stop of @pid has begun (a thread of it is stopped), 0
 * when not yet, -errno.  Begun is enough: from the moment one thread takes
 * the SIGSTOP every other one has JOBCTL_STOP_PENDING and stops before its
 * next user instruction (seized ones report it to us as an event-stop), and
 * a tracer's death re-arms the stop while group_stop_count or
 * SIGNAL_STOP_STOPPED says a group-stop is on.  Waiting for every thread
 * would only add the slowest thread's wake-up to the stop.
 */
static int stop_begun(pid_t pid)
{
	struct dirent *de;
	int ret = 0;
	DIR *d = haul_proc_opendir(pid, "task");

	if (!d)
		return errno == ENOENT ? -ESRCH : -errno;
	while (!ret && (de = readdir(d))) {
		pid_t tid = (pid_t)atoi(de->d_name);
		char st;

		if (tid <= 0)
			continue;
		st = thread_state(pid, tid);
		if (st == 'T' || st == 't')
			ret = 1;
	}
	closedir(d);
	return ret;
}

/* Open @d/inject.lock, before the survivor's fork; without it holds are not serialized. */
static void lock_open(const char *d)
{
	char path[512];

	if (mkdir(d, 0755) && errno != EEXIST)
		pr_debug("cannot make %s: %s", d, strerror(errno));
	snprintf(path, sizeof(path), "%s/inject.lock", d);
	g_lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (g_lockfd < 0)
		pr_warn("cannot open %s (%s): a haul started while another (or its survivor) holds "
			"the same process is not kept out",
			path, strerror(errno));
}

static void lock_close(void)
{
	if (g_lockfd >= 0)
		close(g_lockfd); /* a survivor's copy keeps a dead haul's locks */
	g_lockfd = -1;
}

/* Set (F_WRLCK) or drop (F_UNLCK) the lock of @pid without waiting: 0 or -errno. */
static int pid_lock(pid_t pid, short type)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = pid, .l_len = 1};

	if (g_lockfd < 0)
		return 0;
	return fcntl(g_lockfd, F_OFD_SETLK, &fl) ? -errno : 0;
}

/* Take the lock of @pid, waiting for another haul or a survivor to let go: 0, -EBUSY or -errno. */
static int lock_pid(pid_t pid)
{
	double deadline = now_ms() + HAUL_INJ_LOCK_TIMEOUT_MS;
	int ret;

	while ((ret = pid_lock(pid, F_WRLCK)) == -EAGAIN || ret == -EACCES) {
		if (now_ms() > deadline) {
			pr_err("pid %d is held by another haul, or by the survivor of one that died, "
			       "for over %d ms; it runs on untouched, try again once that one is done",
			       (int)pid, HAUL_INJ_LOCK_TIMEOUT_MS);
			return -EBUSY;
		}
		usleep(200); /* a sleep: a SCHED_FIFO caller must not starve the holder */
	}
	if (ret)
		pr_err_r(ret, "cannot lock pid %d for injection", (int)pid);
	return ret;
}

/* The hold of @pid is over (its SIGCONT, if owed, sent): forget it and let other hauls in. */
static void hold_clear(pid_t pid)
{
	g_log->held = 0;
	g_log->depth = 0;
	g_log->pid = 0;
	pid_lock(pid, F_UNLCK);
}

int injlog_stop(pid_t pid)
{
	int ret;

	if (!g_log)
		return 0;
	if (g_log->pid == pid && g_log->depth > 0) {
		g_log->depth++; /* stopped already (or its owner's): nested */
		return 0;
	}
	ret = lock_pid(pid);
	if (ret)
		return ret;
	g_log->pid = pid;
	g_log->depth = 1;
	if (thread_state(pid, pid) == 'T') {
		/* stopped by its owner (job control): it stays stopped, its owner continues it */
		g_log->held = 0;
		return 0;
	}
	g_log->held = 1; /* before the signal: from here a survivor owes the SIGCONT */
	if (kill(pid, SIGSTOP)) {
		ret = -errno;
		hold_clear(pid);
		pr_err_r(ret, "cannot stop pid %d", (int)pid);
		return ret;
	}
	return 0;
}

int injlog_hold(pid_t pid)
{
	double deadline = now_ms() + HAUL_INJ_STOP_TIMEOUT_MS;
	int ret;

	if (!g_log)
		return 0;
	ret = injlog_stop(pid);
	if (ret)
		return ret;
	while ((ret = stop_begun(pid)) == 0) {
		if (now_ms() > deadline) {
			pr_err("pid %d did not stop within %d ms (every thread in uninterruptible "
			       "sleep, or frozen?); it runs on untouched, try again later",
			       (int)pid, HAUL_INJ_STOP_TIMEOUT_MS);
			injlog_unhold(pid);
			return -ETIMEDOUT;
		}
		/*
		 * Sleep, not sched_yield(): the tracker runs us SCHED_FIFO, and a
		 * yielding FIFO task starves a normal one on a busy core (measured:
		 * 2-144 ms instead of ~0.1 ms for the stop to complete).
		 */
		usleep(20);
	}
	if (ret < 0) {
		injlog_unhold(pid);
		return ret;
	}
	injlog_fault("hold");
	return 0;
}

bool injlog_owner_stopped(pid_t pid)
{
	if (g_log && g_log->pid == pid && g_log->depth > 0)
		return !g_log->held;
	return thread_state(pid, pid) == 'T';
}

void injlog_unhold(pid_t pid)
{
	if (!g_log || g_log->pid != pid || g_log->depth <= 0 || --g_log->depth > 0)
		return;
	injlog_fault("unhold");
	if (g_log->held)
		kill(pid, SIGCONT);
	hold_clear(pid);
}

void injlog_forget(pid_t pid)
{
	if (!g_log || g_log->pid != pid)
		return;
	for (uint32_t i = 0; i < g_log->nthr; i++)
		injlog_thread_done(&g_log->thr[i]);
	hold_clear(pid);
}

void injlog_sched(pid_t tid, const void *attr, size_t len)
{
	if (!g_log)
		return;
	g_log->sched_tid = 0;
	if (!len || len > sizeof(g_log->sched_attr))
		return;
	memcpy(g_log->sched_attr, attr, len);
	g_log->sched_len = (uint32_t)len;
	g_log->sched_tid = tid;
}

struct injlog_thr *injlog_thread(pid_t tid)
{
	struct injlog_thr *e = NULL;

	if (!g_log)
		return NULL;
	for (uint32_t i = 0; i < g_log->nthr && !e; i++)
		if (g_log->thr[i].tid == tid)
			e = &g_log->thr[i];
	for (uint32_t i = 0; i < g_log->nthr && !e; i++)
		if (!g_log->thr[i].tid)
			e = &g_log->thr[i];
	if (!e) {
		if (g_log->nthr == INJLOG_MAX_THREADS)
			return NULL;
		e = &g_log->thr[g_log->nthr++];
	}
	e->dirty = 0;
	e->inflight_nr = -1;
	e->rfd = -1;
	e->scratch = 0;
	e->tid = tid;
	return e;
}

void injlog_thread_done(struct injlog_thr *e)
{
	if (!e)
		return;
	e->dirty = 0;
	e->tid = 0;
}

/* ---- the survivor --------------------------------------------------------- */

/* Seize @tid once haul's death has detached it; 0, -ESRCH (gone) or -errno. */
static int seize_orphan(pid_t tid)
{
	double deadline = now_ms() + HAUL_INJ_DETACH_WAIT_MS;

	while (ptrace(PTRACE_SEIZE, tid, 0, PTRACE_O_TRACESYSGOOD) < 0) {
		if (errno != EPERM || now_ms() > deadline)
			return -errno;
		usleep(1000); /* the dead tracer is still being torn down */
	}
	if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) < 0) {
		int ret = -errno;

		ptrace(PTRACE_DETACH, tid, 0, 0);
		return ret;
	}
	return rsys_wait_event_stop(tid);
}

static int repair_thread(const struct injlog_thr *e)
{
	struct rsys r = {.pid = e->tid, .sc_addr = e->sc_addr, .saved = e->regs, .seized = true};
	struct user_regs_struct cur;
	int rfd = e->rfd, ret;

	r.sigmask_blocked = true; /* whatever it is now, its own mask goes back */
	r.sigmask = e->sigmask;
	r.scratch = e->scratch;
	ret = seize_orphan(e->tid);
	if (ret)
		return ret;
	/* the call in flight ran exactly when the thread stands right after it */
	if (!ptrace(PTRACE_GETREGS, e->tid, 0, &cur) && cur.rip == e->sc_addr + 2 &&
	    (int64_t)cur.orig_rax == e->inflight_nr) {
		long rax = (long)cur.rax;

		if (e->inflight_nr == SYS_mmap && !r.scratch && (rax < -4095 || rax >= 0))
			r.scratch = (uint64_t)rax;
		else if (e->inflight_nr == SYS_userfaultfd && rax >= 0)
			rfd = (int)rax;
	}
	if (rfd >= 0) {
		uint64_t args[6] = {(uint64_t)rfd};
		long rv;

		rsys_call(&r, SYS_close, args, &rv);
	}
	return rsys_release(&r); /* unmaps the scratch, mask and registers back, detach */
}

void injlog_tcp_repair(pid_t pid, int fd, int reuse)
{
	uint32_t i;

	if (!g_log)
		return;
	if (g_log->nsock == INJLOG_MAX_SOCKS) {
		pr_warn("the injection journal is full: if haul dies now, fd %d of pid %d stays in "
			"TCP repair mode",
			fd, (int)pid);
		return;
	}
	i = g_log->nsock;
	g_log->sock[i].pid = pid;
	g_log->sock[i].fd = fd;
	g_log->sock[i].reuse = reuse;
	g_log->sock[i].start = 0;
	haul_proc_starttime(pid, &g_log->sock[i].start);
	__atomic_store_n(&g_log->nsock, i + 1,
			 __ATOMIC_RELEASE); /* the entry first, then the count */
}

void injlog_tcp_held(void *arg, pid_t pid, int fd, int reuse)
{
	(void)arg;
	injlog_tcp_repair(pid, fd, reuse);
}

void injlog_tcp_done(void)
{
	if (g_log)
		g_log->nsock = 0;
}

void injlog_owe_cont(pid_t pid)
{
	uint32_t i;

	if (!g_log)
		return;
	if (g_log->nowed == INJLOG_MAX_OWED) {
		pr_warn("the injection journal is full: if haul dies now, pid %d stays stopped "
			"(kill -CONT %d)",
			(int)pid, (int)pid);
		return;
	}
	i = g_log->nowed;
	g_log->owed[i].start = 0;
	haul_proc_starttime(pid, &g_log->owed[i].start);
	g_log->owed[i].pid = pid;
	__atomic_store_n(&g_log->nowed, i + 1, __ATOMIC_RELEASE);
}

void injlog_owe_paid(pid_t pid)
{
	if (!g_log)
		return;
	for (uint32_t i = 0; i < g_log->nowed; i++)
		if (g_log->owed[i].pid == pid)
			g_log->owed[i].pid = 0;
	while (g_log->nowed && !g_log->owed[g_log->nowed - 1].pid)
		g_log->nowed--;
}

/* The survivor: the SIGCONT owed to every other process haul stopped (the same process still). */
static int pay_owed(const struct injlog *j)
{
	int paid = 0;

	for (uint32_t i = 0; i < j->nowed; i++) {
		unsigned long long now = 0;
		pid_t pid = j->owed[i].pid;

		if (pid > 0 && pid != j->pid && !haul_proc_starttime(pid, &now) &&
		    now == j->owed[i].start && !kill(pid, SIGCONT))
			paid++;
	}
	return paid;
}

void injlog_companion(pid_t pid)
{
	if (g_log)
		g_log->companion = pid;
}

/* The survivor: wait (up to 5 s) for the companion survivor to finish its part. */
static void companion_wait(pid_t pid)
{
	for (int i = 0; pid > 0 && i < 5000; i++) {
		char st = thread_state(pid, pid);

		if (!st || st == 'Z' || st == 'X')
			return;
		usleep(1000);
	}
}

/* The survivor: every socket of the journal out of TCP repair mode, before any SIGCONT. */
static void release_sockets(const struct injlog *j)
{
	int off = 0, done = 0;

	for (uint32_t i = 0; i < j->nsock; i++) {
		int pidfd = (int)syscall(SYS_pidfd_open, j->sock[i].pid, 0), sfd;
		unsigned long long now = 0;

		if (pidfd < 0)
			continue; /* gone (killed after its checkpoint): nothing to repair */
		/* a pid reused since: not ours to touch (checked with the pidfd held) */
		if (haul_proc_starttime(j->sock[i].pid, &now) || now != j->sock[i].start) {
			close(pidfd);
			continue;
		}
		sfd = (int)syscall(SYS_pidfd_getfd, pidfd, j->sock[i].fd, 0);
		close(pidfd);
		if (sfd < 0)
			continue;
		if (setsockopt(sfd, IPPROTO_TCP, TCP_REPAIR, &off, sizeof(off)) ||
		    setsockopt(sfd, SOL_SOCKET, SO_REUSEADDR, &j->sock[i].reuse, sizeof(int)))
			pr_err("cannot take fd %d of pid %d out of TCP repair mode: %s; its "
			       "connection is stuck (the process must reconnect)",
			       j->sock[i].fd, (int)j->sock[i].pid, strerror(errno));
		else
			done++;
		close(sfd);
	}
	if (done)
		pr_warn("haul died with %d TCP connection(s) in repair mode: taken out of it",
			done);
}

static void survivor_main(int rfd)
{
	struct injlog *j = g_log;
	int failed = 0, repaired = 0, paid;
	char c;

	setsid();
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_NAME, "haul-injlog", 0, 0, 0);
	g_log = NULL; /* our own rsys calls are not journaled */
	g_fault_step[0] = '\0';
	for (;;) { /* haul never writes: EOF is its end */
		ssize_t n = read(rfd, &c, 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
	}
	for (uint32_t i = 0; i < j->nthr; i++) {
		const struct injlog_thr *e = &j->thr[i];
		int ret;

		if (!e->tid || !e->dirty)
			continue;
		ret = repair_thread(e);
		if (ret == -ESRCH)
			continue;
		if (ret) {
			failed++;
			pr_err_r(ret,
				 "cannot put back the registers of thread %d of pid %d after haul "
				 "died; it may crash when continued (kill -CONT %d)",
				 e->tid, j->pid, j->pid);
		} else {
			repaired++;
		}
	}
	/* its connections able to send again before it runs (a send in repair mode fails) */
	release_sockets(j);
	/* and the network lock lifted (netguard.c), or its UDP sends would fail with EPERM */
	companion_wait(j->companion);
	/* its own scheduling back before it runs again (the tracker raises it to SCHED_FIFO) */
	if (j->sched_tid)
		syscall(SYS_sched_setattr, j->sched_tid, j->sched_attr, 0);
	if (j->held && j->pid && !failed)
		kill(j->pid, SIGCONT);
	paid = pay_owed(j);
	if (paid)
		pr_warn("haul died with %d other process(es) of the tree stopped: continued", paid);
	if (repaired || (j->held && j->pid))
		pr_warn("haul died while injecting into pid %d: %d thread(s) got their registers "
			"and signal mask back%s",
			j->pid, repaired, failed ? "" : "; it runs on");
	_exit(failed ? 1 : 0);
}

int injlog_open(const char *fault, const char *run_dir)
{
	int p[2];
	pid_t pid;

	if (g_log)
		return 0;
	g_log = mmap(NULL, sizeof(*g_log), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
		     0);
	if (g_log == MAP_FAILED) {
		g_log = NULL;
		return -errno;
	}
	lock_open(run_dir);
	if (pipe2(p, O_CLOEXEC)) {
		int ret = -errno;

		lock_close();
		munmap(g_log, sizeof(*g_log));
		g_log = NULL;
		return ret;
	}
	pid = fork();
	if (pid < 0) {
		int ret = -errno;

		close(p[0]);
		close(p[1]);
		lock_close();
		munmap(g_log, sizeof(*g_log));
		g_log = NULL;
		return ret;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);

		/* stderr and the pipe's read end; no socket or pipe of haul's, not its stdout */
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
		}
		/* the lock's description too: held past our death until the survivor exits */
		for (int fd = 3; fd < 1024; fd++)
			if (fd != p[0] && fd != g_lockfd)
				close(fd);
		survivor_main(p[0]);
	}
	close(p[0]);
	g_wfd = p[1];
	g_survivor = pid;
	parse_fault(fault);
	return 0;
}

pid_t injlog_survivor(void)
{
	return g_log ? g_survivor : -1;
}

static bool journal_dirty(void)
{
	if (g_log->held || g_log->sched_tid || g_log->nsock || g_log->nowed)
		return true;
	for (uint32_t i = 0; i < g_log->nthr; i++)
		if (g_log->thr[i].tid && g_log->thr[i].dirty)
			return true;
	return false;
}

void injlog_close(void)
{
	bool dirty;

	if (!g_log)
		return;
	dirty = journal_dirty();
	close(g_wfd);
	g_wfd = -1;
	/* a dirty journal is repaired once we are gone: do not wait for that here */
	if (!dirty)
		while (waitpid(g_survivor, NULL, 0) < 0 && errno == EINTR)
			;
	g_survivor = -1;
	lock_close();
	munmap(g_log, sizeof(*g_log));
	g_log = NULL;
}
