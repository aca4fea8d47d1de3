/*
 * procattr.c - process attributes: each one is carried, or it is at the
 * value a restored process gets anyway, or the checkpoint is refused by
 * name before the source is touched.  A silently different restore is the
 * worst outcome haul can have, so the audit is written as a rule, not a
 * list of known problems:
 *
 *  - every field of /proc/PID/task/TID/status (all threads) is classified
 *    in status_rules[]: varies (counters, ids, memory sizes), carried,
 *    must be zero, must equal the main thread's (carried process-wide),
 *    capabilities (what the restorer's credential calls leave), or "as
 *    haul's own" - the value a restored process inherits from the restorer.
 *    A field this code does not know (a newer kernel) falls under the last
 *    rule, so it is audited rather than ignored;
 *  - per-process files: time namespace for children, autogroup, LSM attr/,
 *    scheduling policy, ioprio, core-scheduling cookie, exit signal;
 *  - what only the process itself can read (prctl, arch_prctl, membarrier),
 *    through calls injected in every thread (rsys), at the precheck (a
 *    short seize) and again in the dump's stop.
 * Carried here: oom_score_adj, loginuid, PR_SET_CHILD_SUBREAPER,
 * PR_SET_THP_DISABLE, membarrier registrations, coredump_filter,
 * no_new_privs, cgroups (cgplace.c).  DESIGN.md "Supported and not
 * supported" has the table, with what is knowingly not carried and why.
 */
#define LOG_PREFIX "dump: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/proc.h"
#include "common/rsys.h"
#include "restore/restore.h"
#include "restore/res_int.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#define MEMBARRIER_CMD_GET_REGISTRATIONS_ (1 << 9)
#define PR_GET_IO_FLUSHER_		  58
#define PR_SCHED_CORE_			  62
#define PR_GET_MDWE_			  66
#define PR_GET_MEMORY_MERGE_		  68
#define ARCH_GET_CPUID_			  0x1011
#define ARCH_GET_XCOMP_PERM_		  0x1022
#define PTRACE_GET_SYSCALL_USER_DISPATCH_ 0x4211

static const char not_carried[] = "haul cannot carry it (not supported yet): reset it in the "
				  "process, or leave the process where it is";

/* ---- /proc ---------------------------------------------------------------- */

/* Read a small /proc file into @buf, trailing newline cut. 0 or -errno. */
static int read_text(const char *path, char *buf, size_t len)
{
	int n = haul_read_file(path, buf, len);

	if (n < 0)
		return n;
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	return 0;
}

/* The value of "@key:" in status text @text, whitespace trimmed, or false. */
static bool field(const char *text, const char *key, char *val, size_t len)
{
	size_t kl = strlen(key);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		size_t n;

		if (strncmp(p, key, kl) || p[kl] != ':')
			continue;
		p += kl + 1;
		p += strspn(p, " \t");
		n = strcspn(p, "\n");
		while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		snprintf(val, len, "%.*s", (int)n, p);
		return true;
	}
	return false;
}

enum rule {
	R_HAUL,	   /* as haul's own (what a restored process inherits); the default */
	R_VARIES,  /* an id, a counter or a size, or carried per thread elsewhere */
	R_CARRIED, /* carried process-wide; the same in every thread */
	R_ZERO,	   /* must be 0 */
	R_MAIN,	   /* carried from the main thread: every thread must agree */
	R_CAPS,	   /* a capability set: carried (caps.c) within haul's own bounding set */
};

static const struct {
	const char *key;
	enum rule rule;
} status_rules[] = {
	{"Name", R_VARIES}, /* comm, carried per thread */
	{"Umask", R_CARRIED},
	{"State", R_VARIES},
	{"Tgid", R_VARIES},
	{"Ngid", R_VARIES},
	{"Pid", R_VARIES},
	{"PPid", R_VARIES},	 /* knowingly: the restorer is the parent */
	{"TracerPid", R_VARIES}, /* refused by rst_check_resources */
	{"Uid", R_MAIN},
	{"Gid", R_MAIN},
	{"FDSize", R_VARIES},
	{"Groups", R_MAIN},
	{"NStgid", R_VARIES},
	{"NSpid", R_VARIES},
	{"NSpgid", R_VARIES},
	{"NSsid", R_VARIES}, /* knowingly: setsid() */
	{"Kthread", R_ZERO},
	{"Vm*", R_VARIES},
	{"Rss*", R_VARIES},
	{"HugetlbPages", R_VARIES},
	{"CoreDumping", R_ZERO},
	{"THP_enabled", R_CARRIED},
	{"Threads", R_VARIES},
	{"SigQ", R_VARIES},
	{"SigPnd", R_VARIES},
	{"ShdPnd", R_VARIES}, /* pending: carried */
	{"SigBlk", R_VARIES},
	{"SigIgn", R_VARIES},
	{"SigCgt", R_VARIES}, /* mask and actions: carried */
	{"CapInh", R_CAPS},
	{"CapPrm", R_CAPS},
	{"CapEff", R_CAPS},
	{"CapBnd", R_CAPS},
	{"CapAmb", R_CAPS},
	{"NoNewPrivs", R_MAIN},
	{"Seccomp", R_VARIES},		 /* per thread: res_seccomp.c */
	{"Seccomp_filters", R_VARIES},	 /* per thread: res_seccomp.c */
	{"Cpus_allowed_list", R_VARIES}, /* Cpus_allowed is judged */
	{"Mems_allowed_list", R_VARIES}, /* Mems_allowed is judged */
	{"voluntary_ctxt_switches", R_VARIES},
	{"nonvoluntary_ctxt_switches", R_VARIES},
};

static enum rule rule_of(const char *key)
{
	/* A key ending in '*' is a prefix. */
	for (size_t i = 0; i < sizeof(status_rules) / sizeof(status_rules[0]); i++) {
		const char *k = status_rules[i].key;
		size_t kl = strlen(k);

		if (k[kl - 1] == '*' ? !strncmp(key, k, kl - 1) : !strcmp(key, k))
			return status_rules[i].rule;
	}
	return R_HAUL;
}

static void who(char *buf, size_t len, pid_t pid, pid_t tid)
{
	if (tid == pid)
		snprintf(buf, len, "pid %d", (int)pid);
	else
		snprintf(buf, len, "thread %d of pid %d", (int)tid, (int)pid);
}

/* What haul itself may give a restored process: its own bounding set. */
static uint64_t caps_grantable(const char *own)
{
	char v[64];

	return field(own, "CapBnd", v, sizeof(v)) ? strtoull(v, NULL, 16) : 0;
}

/* Judge one line "key: value" of thread @tid's status. */
static int judge_line(pid_t pid, pid_t tid, const char *key, const char *val, const char *own,
		      const char *main_status, char *why, size_t wl)
{
	char w[64], mine[512], mv[512];

	who(w, sizeof(w), pid, tid);
	switch (rule_of(key)) {
	case R_VARIES:
	case R_CARRIED:
		return 0;
	case R_ZERO:
		if (!strcmp(val, "0"))
			return 0;
		snprintf(why, wl, "%s: %s is %.64s; %s", w, key, val, not_carried);
		return -EOPNOTSUPP;
	case R_MAIN:
		if (field(main_status, key, mv, sizeof(mv)) && !strcmp(mv, val))
			return 0;
		snprintf(why, wl,
			 "%s: %s is %.128s, the main thread's %.128s; haul carries one value for "
			 "the whole process: make the threads agree",
			 w, key, val, mv);
		return -EOPNOTSUPP;
	case R_CAPS: {
		/* carried from the main thread (caps.c), within what haul can grant */
		uint64_t have = strtoull(val, NULL, 16), can = caps_grantable(own);

		if (field(main_status, key, mv, sizeof(mv)) && strcmp(mv, val)) {
			snprintf(why, wl,
				 "%s: %s is %.64s, the main thread's %.64s; haul carries one set "
				 "for the whole process: make the threads agree",
				 w, key, val, mv);
			return -EOPNOTSUPP;
		}
		if ((have & ~can) == 0)
			return 0;
		snprintf(why, wl,
			 "%s: %s is %016" PRIx64 ", beyond the capabilities haul itself may grant "
			 "(%016" PRIx64 "); run haul with them",
			 w, key, have, can);
		return -EOPNOTSUPP;
	}
	case R_HAUL:
		break;
	}
	if (!field(own, key, mine, sizeof(mine)))
		snprintf(mine, sizeof(mine), "(none)");
	if (!strcmp(mine, val))
		return 0;
	snprintf(why, wl, "%s: %s is '%.128s', a restored process would get '%.128s'; %s", w, key,
		 val, mine, not_carried);
	return -EOPNOTSUPP;
}

static int audit_status(pid_t pid, pid_t tid, const char *own, const char *main_status, char *why,
			size_t wl)
{
	char path[96], *text = malloc(16384);
	int ret = 0;

	if (!text)
		return -ENOMEM;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid, (int)tid);
	ret = read_text(path, text, 16384);
	if (ret == -ENOENT || ret == -ESRCH) {
		free(text);
		return 0; /* the thread exited meanwhile */
	}
	for (char *l = text, *nl; !ret && l && *l; l = nl) {
		char *colon = strchr(l, ':'), *v;

		nl = strchr(l, '\n');
		if (nl)
			*nl++ = '\0';
		if (!colon)
			continue;
		*colon = '\0';
		v = colon + 1 + strspn(colon + 1, " \t");
		/* as field() reads the main thread's: "Groups:\t27 48 \n" ends in a blank */
		for (size_t n = strlen(v); n && (v[n - 1] == ' ' || v[n - 1] == '\t'); n--)
			v[n - 1] = '\0';
		ret = judge_line(pid, tid, l, v, own, main_status ? main_status : own, why, wl);
	}
	free(text);
	return ret;
}

/* The inodes of thread @tid's time namespace and the one pending for its children. */
static void timens_inodes(pid_t pid, pid_t tid, ino_t ino[2])
{
	static const char *const f[2] = {"time", "time_for_children"};

	for (int i = 0; i < 2; i++) {
		char path[96];
		struct stat st;

		snprintf(path, sizeof(path), "/proc/%d/task/%d/ns/%s", (int)pid, (int)tid, f[i]);
		ino[i] = stat(path, &st) ? 0 : st.st_ino;
	}
}

static bool timens_pending(pid_t pid, pid_t tid)
{
	ino_t ino[2];

	timens_inodes(pid, tid, ino);
	return ino[0] && ino[1] && ino[0] != ino[1];
}

/*
 * The main thread's pending time namespace is carried, and threads that
 * share its namespaces with it (created after the unshare) get it too;
 * a thread whose own differ is refused.
 */
static int audit_timens(pid_t pid, pid_t tid, char *why, size_t wl)
{
	ino_t m[2], t[2];
	char w[64];

	if (tid == pid)
		return 0;
	timens_inodes(pid, pid, m);
	timens_inodes(pid, tid, t);
	if (!t[0] || (m[0] == t[0] && m[1] == t[1]))
		return 0;
	who(w, sizeof(w), pid, tid);
	snprintf(why, wl,
		 "%s: its time namespaces (its own and its children's) are not the main "
		 "thread's (unshare(CLONE_NEWTIME) in one thread only); %s",
		 w, not_carried);
	return -EOPNOTSUPP;
}

/* attr/ files of the thread (LSM labels and the exec/create ones it set). */
static int audit_lsm(pid_t pid, pid_t tid, char *why, size_t wl)
{
	static const char *const files[] = {"current", "exec", "fscreate", "keycreate",
					    "sockcreate"};

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char path[96], mine[256] = "", theirs[256] = "", w[64];
		int a, b;

		snprintf(path, sizeof(path), "/proc/%d/task/%d/attr/%s", (int)pid, (int)tid,
			 files[i]);
		a = read_text(path, theirs, sizeof(theirs));
		snprintf(path, sizeof(path), "/proc/thread-self/attr/%s", files[i]);
		b = read_text(path, mine, sizeof(mine));
		if (a == b && !strcmp(mine, theirs))
			continue;
		if (a == -ENOENT || a == -ESRCH)
			continue; /* the thread exited */
		if (i == 0 && !a && rst_apparmor_carries(pid, tid, theirs))
			continue; /* the AppArmor profile: res_apparmor.c carries it */
		who(w, sizeof(w), pid, tid);
		snprintf(why, wl,
			 "%s: LSM attribute attr/%s is '%.64s', a restored process would get "
			 "'%.64s'; %s",
			 w, files[i], a ? strerror(-a) : theirs, b ? strerror(-b) : mine,
			 not_carried);
		return -EOPNOTSUPP;
	}
	return 0;
}

/* Policy, priority, flags and clamps; nice: the main thread's is carried, threads inherit it. */
static int audit_sched(pid_t pid, pid_t tid, int main_nice, char *why, size_t wl)
{
	struct haul_sched_attr a = {0}, o = {0};
	long io, own_io;
	char w[64];

	who(w, sizeof(w), pid, tid);
	if (syscall(SYS_sched_getattr, tid, &a, sizeof(a), 0) < 0)
		return errno == ESRCH ? 0 : -errno;
	if (syscall(SYS_sched_getattr, 0, &o, sizeof(o), 0) < 0)
		return -errno;
	if (a.policy != o.policy || a.priority != o.priority || a.flags != o.flags ||
	    a.runtime != o.runtime || a.deadline != o.deadline || a.period != o.period ||
	    a.util_min != o.util_min || a.util_max != o.util_max) {
		snprintf(why, wl,
			 "%s: scheduling policy %u priority %u flags %#" PRIx64
			 " (a restored process gets policy %u priority %u flags %#" PRIx64 "); %s",
			 w, a.policy, a.priority, a.flags, o.policy, o.priority, o.flags,
			 not_carried);
		return -EOPNOTSUPP;
	}
	if (tid != pid && a.nice != main_nice) {
		snprintf(why, wl,
			 "%s: nice %d differs from the main thread's %d; haul carries the main "
			 "thread's: make them agree",
			 w, a.nice, main_nice);
		return -EOPNOTSUPP;
	}
	io = syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, tid);
	own_io = syscall(SYS_ioprio_get, 1, 0);
	if (io >= 0 && io != own_io) {
		snprintf(why, wl, "%s: I/O priority %#lx, a restored process gets %#lx; %s", w, io,
			 own_io, not_carried);
		return -EOPNOTSUPP;
	}
	{
		uint64_t cookie = 0;

		if (!prctl(PR_SCHED_CORE_, 0 /* GET */, tid, 0 /* PIDTYPE_PID */, &cookie) &&
		    cookie) {
			snprintf(why, wl, "%s: has a core-scheduling cookie; %s", w, not_carried);
			return -EOPNOTSUPP;
		}
	}
	return 0;
}

/* Per-process: autogroup, exit signal. */
static int audit_process(pid_t pid, char *why, size_t wl)
{
	char path[96], text[1024];

	snprintf(path, sizeof(path), "/proc/%d/autogroup", (int)pid);
	if (!read_text(path, text, sizeof(text))) {
		const char *n = strstr(text, " nice ");

		/* The restored process is a session leader of a new autogroup: nice 0. */
		if (n && atoi(n + 6) != 0) {
			snprintf(why, wl, "pid %d: its autogroup (%.64s) has a nice value; %s",
				 (int)pid, text, not_carried);
			return -EOPNOTSUPP;
		}
	}
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!read_text(path, text, sizeof(text))) {
		const char *p = strrchr(text, ')');
		int f = 2;

		/* Field 38, exit_signal: the restorer's clone gives SIGCHLD. */
		while (p && f < 38 && (p = strchr(p + 1, ' ')))
			f++;
		if (p && atoi(p + 1) != SIGCHLD) {
			snprintf(why, wl,
				 "pid %d: its exit signal to its parent is %d, not SIGCHLD; %s",
				 (int)pid, atoi(p + 1), not_carried);
			return -EOPNOTSUPP;
		}
	}
	return 0;
}

int rst_attr_audit_proc(pid_t pid, char *why, size_t whylen)
{
	char path[96], *own = malloc(16384), *main_status = malloc(16384);
	struct haul_sched_attr ma = {0};
	struct dirent *de;
	DIR *d = NULL;
	int ret;

	if (!own || !main_status) {
		ret = -ENOMEM;
		goto out;
	}
	ret = read_text("/proc/thread-self/status", own, 16384);
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (!ret)
		ret = read_text(path, main_status, 16384);
	if (ret) {
		snprintf(why, whylen, "cannot read the status of pid %d: %s", (int)pid,
			 strerror(-ret));
		goto out;
	}
	if (syscall(SYS_sched_getattr, pid, &ma, sizeof(ma), 0) < 0) {
		ret = -errno;
		snprintf(why, whylen, "cannot read the scheduling of pid %d: %s", (int)pid,
			 strerror(errno));
		goto out;
	}
	ret = audit_process(pid, why, whylen);
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if (!ret && !(d = opendir(path))) {
		ret = -errno;
		snprintf(why, whylen, "cannot list the threads of pid %d", (int)pid);
	}
	while (!ret && d && (de = readdir(d))) {
		pid_t tid = atoi(de->d_name);

		if (tid <= 0)
			continue;
		ret = audit_status(pid, tid, own, main_status, why, whylen);
		if (!ret)
			ret = audit_lsm(pid, tid, why, whylen);
		if (!ret)
			ret = audit_timens(pid, tid, why, whylen);
		if (!ret)
			ret = audit_sched(pid, tid, ma.nice, why, whylen);
	}
	if (d)
		closedir(d);
out:
	if (ret && !why[0])
		snprintf(why, whylen, "cannot read the attributes of pid %d: %s", (int)pid,
			 strerror(-ret));
	free(own);
	free(main_status);
	return ret;
}

/* ---- injected: what only the process can read ------------------------------ */

/* A value read by a call in the process, compared with the same call in haul. */
static const struct probe {
	const char *name;
	long nr;
	uint64_t op;
	unsigned size; /* 0: the value is the return value; else bytes written at arg 2 */
	bool main_only;
} probes[] = {
	{"PR_GET_IO_FLUSHER", SYS_prctl, PR_GET_IO_FLUSHER_, 0, false},
	{"PR_MCE_KILL_GET (machine-check kill policy)", SYS_prctl, PR_MCE_KILL_GET, 0, false},
	{"PR_GET_TSC (rdtsc allowed)", SYS_prctl, PR_GET_TSC, 4, false},
	{"PR_GET_SECUREBITS (securebits, keepcaps)", SYS_prctl, PR_GET_SECUREBITS, 0, false},
	{"ARCH_GET_CPUID (cpuid faulting)", SYS_arch_prctl, ARCH_GET_CPUID_, 0, false},
	{"PR_GET_MDWE (memory-deny-write-execute)", SYS_prctl, PR_GET_MDWE_, 0, true},
	{"PR_GET_MEMORY_MERGE (KSM for the whole process)", SYS_prctl, PR_GET_MEMORY_MERGE_, 0,
	 true},
	{"ARCH_GET_XCOMP_PERM (permitted xstate features, AMX)", SYS_arch_prctl,
	 ARCH_GET_XCOMP_PERM_, 8, true},
};

/* One value a thread reads of itself: @nr(@op, ptr); size 0: the return value. */
struct rq {
	long nr;
	uint64_t op;
	unsigned size;
	long v; /* out: the value, or -errno */
};

/* Thread values read at most in one batch: the probes, the thread's own and the carried ones. */
#define RQ_MAX 16

/* Read @n values in thread @r in one round trip (@code: rsys_batch_code), as remote_value. */
static int remote_values(struct rsys *r, uint64_t code, uint64_t scratch, struct rq *q, size_t n)
{
	struct rsys_bcall c[RQ_MAX];
	uint64_t out[RQ_MAX] = {0};
	size_t failed;
	int ret;

	/* each value that comes through memory has its own slot: scratch + 8 * i */
	ret = rsys_write(r->pid, scratch, out, n * sizeof(out[0]));
	for (size_t i = 0; i < n; i++)
		c[i] = (struct rsys_bcall){
			.name = q[i].nr == SYS_prctl ? "prctl" : "arch_prctl or membarrier",
			.nr = q[i].nr,
			.args = {q[i].op, q[i].size ? scratch + 8 * i : 0},
			.flags = RSYS_BMAYFAIL,
		};
	if (!ret)
		ret = rsys_batch(r, code, scratch + RSYS_SCRATCH_TABLE, c, n, &failed);
	if (!ret)
		ret = rsys_read(r->pid, scratch, out, n * sizeof(out[0]));
	if (ret) {
		pr_err_r(ret, "cannot read the attributes of thread %d", r->pid);
		return ret;
	}
	for (size_t i = 0; i < n; i++) {
		q[i].v = c[i].ret;
		if (q[i].size && c[i].ret == 0)
			q[i].v = q[i].size == 4 ? (long)(int32_t)out[i] : (long)out[i];
	}
	return 0;
}

static long own_value(const struct probe *p)
{
	uint64_t out = 0;
	long res = syscall(p->nr, p->op, p->size ? &out : NULL, 0, 0, 0);

	if (res < 0)
		return -errno;
	if (p->size)
		return p->size == 4 ? (long)(int32_t)out : (long)out;
	return res;
}

/*
 * What a thread other than the main one must have: its main's slack (@slack
 * its own), no pdeathsig (@pdeath), no SUD.
 */
static int audit_thread(struct rsys *r, pid_t pid, long main_slack, long slack, long pdeath,
			char *why, size_t wl)
{
	struct {
		uint64_t mode, offset, len;
		uint32_t selector;
	} sud = {0};
	char w[64];

	who(w, sizeof(w), pid, r->pid);
	if (ptrace(PTRACE_GET_SYSCALL_USER_DISPATCH_, r->pid, sizeof(sud), &sud) >= 0 && sud.mode) {
		snprintf(why, wl,
			 "%s: syscall user dispatch (PR_SET_SYSCALL_USER_DISPATCH) is on; %s", w,
			 not_carried);
		return -EOPNOTSUPP;
	}
	if (r->pid == pid)
		return 0;
	if (slack != main_slack) {
		snprintf(why, wl,
			 "%s: timer slack %ld ns, the main thread's %ld ns; haul carries the main "
			 "thread's: make them agree",
			 w, slack, main_slack);
		return -EOPNOTSUPP;
	}
	if (pdeath) {
		snprintf(why, wl, "%s: parent-death signal %ld (PR_SET_PDEATHSIG) on a thread; %s",
			 w, pdeath, not_carried);
		return -EOPNOTSUPP;
	}
	return 0;
}

/* The carried process-wide values only the process can read: @sub, @thp, @mb as read. */
static int read_carried(pid_t pid, long sub, long thp, long mb, Haul__Img__ProcessState *ps,
			char *why, size_t wl)
{
	if (sub < 0 || thp < 0 || mb < 0) {
		snprintf(why, wl,
			 "cannot read %s of pid %d: %s (membarrier registrations need kernel 6.3)",
			 sub < 0   ? "PR_GET_CHILD_SUBREAPER"
			 : thp < 0 ? "PR_GET_THP_DISABLE"
				   : "the membarrier registrations",
			 (int)pid,
			 strerror(-(sub < 0   ? sub
				    : thp < 0 ? thp
					      : mb)));
		return -EOPNOTSUPP;
	}
	if (ps) {
		ps->has_child_subreaper = ps->has_thp_disable = ps->has_membarrier = true;
		ps->child_subreaper = sub != 0;
		ps->thp_disable = thp;
		ps->membarrier = mb;
	}
	return 0;
}

/* Whether the value @v of probe @p, read in thread @tid of @pid, is what a restored one gets. */
static int audit_probe(const struct probe *p, pid_t pid, pid_t tid, long v, char *why, size_t wl)
{
	long mine = own_value(p);
	char w[64];

	if (p->nr == SYS_prctl && p->op == PR_GET_IO_FLUSHER_) {
		/* -EPERM there or here: no CAP_SYS_RESOURCE to ask with */
		v = rst_io_flusher(tid, v);
		mine = rst_io_flusher(0, mine);
	}
	if (v == mine)
		return 0;
	/* strict seccomp disables rdtsc; res_seccomp.c restores the mode, and it */
	if (p->op == PR_GET_TSC && v == PR_TSC_SIGSEGV && rst_seccomp_mode(tid) == 1)
		return 0;
	who(w, sizeof(w), pid, tid);
	snprintf(why, wl, "%s: %s is %ld, a restored process would get %ld; %s", w, p->name, v,
		 mine, not_carried);
	return -EOPNOTSUPP;
}

/*
 * Thread @i's values in one batch: the probes (main-only ones in the main
 * thread), then its timer slack and parent-death signal, then in the main
 * thread the carried ones (subreaper, THP, membarrier).  Returns how many.
 */
enum {
	RQ_SLACK,
	RQ_PDEATH,
	RQ_SUB,
	RQ_THP,
	RQ_MB
};
static size_t thread_requests(bool main_thread, struct rq *q, size_t *own)
{
	size_t n = 0;

	for (size_t k = 0; k < sizeof(probes) / sizeof(probes[0]); k++)
		if (main_thread || !probes[k].main_only)
			q[n++] = (struct rq){probes[k].nr, probes[k].op, probes[k].size, 0};
	*own = n;
	q[n++] = (struct rq){SYS_prctl, PR_GET_TIMERSLACK, 0, 0};
	q[n++] = (struct rq){SYS_prctl, PR_GET_PDEATHSIG, 4, 0};
	if (main_thread) {
		q[n++] = (struct rq){SYS_prctl, PR_GET_CHILD_SUBREAPER, 4, 0};
		q[n++] = (struct rq){SYS_prctl, PR_GET_THP_DISABLE, 0, 0};
		q[n++] = (struct rq){SYS_membarrier, MEMBARRIER_CMD_GET_REGISTRATIONS_, 0, 0};
	}
	return n;
}

int rst_attr_audit_seized(struct rsys *thr, size_t n, uint64_t scratch, Haul__Img__ProcessState *ps,
			  char *why, size_t whylen)
{
	pid_t pid = thr[0].pid;
	long main_slack = 0;
	uint64_t code;
	int ret;

	/* one round trip per thread, where the process lets the batch code run */
	ret = rsys_batch_code(&thr[0], &code);
	for (size_t i = 0; !ret && i < n; i++) {
		struct rq q[RQ_MAX];
		size_t own, nq = thread_requests(i == 0, q, &own);
		size_t k = 0;

		ret = remote_values(&thr[i], code, scratch, q, nq);
		if (ret)
			break;
		if (i == 0) {
			main_slack = q[own + RQ_SLACK].v;
			ret = read_carried(pid, q[own + RQ_SUB].v, q[own + RQ_THP].v,
					   q[own + RQ_MB].v, ps, why, whylen);
		}
		for (size_t p = 0; !ret && p < sizeof(probes) / sizeof(probes[0]); p++)
			if (i == 0 || !probes[p].main_only)
				ret = audit_probe(&probes[p], pid, thr[i].pid, q[k++].v, why,
						  whylen);
		if (!ret)
			ret = audit_thread(&thr[i], pid, main_slack, q[own + RQ_SLACK].v,
					   q[own + RQ_PDEATH].v, why, whylen);
	}
	if (ret && !why[0])
		snprintf(why, whylen, "cannot read the attributes of pid %d in its threads: %s",
			 (int)pid, strerror(-ret));
	return ret;
}

/* ---- time namespace for children ----------------------------------------- */

bool rst_attr_timens_pending(pid_t pid)
{
	return timens_pending(pid, pid);
}

/* "monotonic S N\nboottime S N" (timens_offsets) into ns. No malloc: see rst_attr_active_timens. */
static int read_offsets(const char *path, int64_t *mono, int64_t *boot)
{
	char text[256];
	int ret = read_text(path, text, sizeof(text));

	*mono = *boot = 0;
	if (ret)
		return ret;
	for (char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		char *end;
		long long sec, nsec;
		int64_t *to = !strncmp(l, "monotonic", 9)  ? mono
			      : !strncmp(l, "boottime", 8) ? boot
							   : NULL;

		if (!to)
			continue;
		sec = strtoll(l + strcspn(l, " \t"), &end, 10);
		nsec = strtoll(end, NULL, 10);
		*to = sec * 1000000000LL + nsec;
	}
	return 0;
}

int rst_attr_active_timens(pid_t pid, int64_t *mono, int64_t *boot)
{
	int64_t v[2] = {0, 0};
	char path[64];
	int p[2], fd, status;
	pid_t c;

	snprintf(path, sizeof(path), "/proc/%d/ns/time", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (pipe2(p, O_CLOEXEC) < 0) {
		close(fd);
		return -errno;
	}
	/*
	 * A single-threaded child enters the namespace (entering freezes the
	 * offsets of that one only, which the process already lives in) and
	 * reads its own: after setns both of its namespaces are that one.
	 * Raw fork and no malloc in the child: other threads of haul may hold
	 * libc locks.
	 */
	c = syscall(SYS_fork);
	if (c == 0) {
		int err = setns(fd, CLONE_NEWTIME) ? errno : 0;

		if (!err)
			err = -read_offsets("/proc/self/timens_offsets", &v[0], &v[1]);
		if (!err && write(p[1], v, sizeof(v)) != sizeof(v))
			err = EIO;
		_exit(err);
	}
	close(fd);
	close(p[1]);
	if (c < 0) {
		close(p[0]);
		return -errno;
	}
	fd = read(p[0], v, sizeof(v)) == sizeof(v) ? 0 : -EIO;
	close(p[0]);
	while (waitpid(c, &status, 0) < 0 && errno == EINTR)
		;
	if (fd) {
		fd = WIFEXITED(status) && WEXITSTATUS(status) ? -WEXITSTATUS(status) : fd;
		pr_err_r(fd, "cannot enter the time namespace of pid %d to read its offsets",
			 (int)pid);
		return fd;
	}
	*mono = v[0];
	*boot = v[1];
	return 0;
}

/* ---- carried from /proc ------------------------------------------------- */

int rst_attr_dump_proc(pid_t pid, Haul__Img__ProcessState *ps)
{
	char path[96], text[16384], v[64];
	int ret;

	snprintf(path, sizeof(path), "/proc/%d/oom_score_adj", (int)pid);
	ret = read_text(path, text, sizeof(text));
	if (ret)
		goto fail;
	ps->has_oom_score_adj = true;
	ps->oom_score_adj = atoi(text);
	snprintf(path, sizeof(path), "/proc/%d/coredump_filter", (int)pid);
	ret = read_text(path, text, sizeof(text));
	if (ret)
		goto fail;
	ps->has_coredump_filter = true;
	ps->coredump_filter = strtoul(text, NULL, 16);
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	ret = read_text(path, text, sizeof(text));
	if (ret)
		goto fail;
	ps->has_no_new_privs = field(text, "NoNewPrivs", v, sizeof(v));
	ps->no_new_privs = ps->has_no_new_privs && atoi(v) != 0;
	if (rst_attr_timens_pending(pid)) {
		int64_t pm, pb, am, ab;

		snprintf(path, sizeof(path), "/proc/%d/timens_offsets", (int)pid);
		ret = read_offsets(path, &pm, &pb);
		if (!ret)
			ret = rst_attr_active_timens(pid, &am, &ab);
		if (ret)
			goto fail;
		ps->has_children_monotonic_ns = ps->has_children_boottime_ns = true;
		ps->children_monotonic_ns = pm - am;
		ps->children_boottime_ns = pb - ab;
	}
	/* Without CONFIG_AUDIT there is no loginuid to carry. */
	snprintf(path, sizeof(path), "/proc/%d/loginuid", (int)pid);
	if (!read_text(path, text, sizeof(text))) {
		ps->has_loginuid = true;
		ps->loginuid = strtoul(text, NULL, 10);
	}
	return 0;
fail:
	pr_err_r(ret, "cannot read %s", path);
	return ret;
}

/* ---- restore: what is written from outside ------------------------------- */

static int write_text(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) != (ssize_t)strlen(val))
		ret = -errno;
	close(fd);
	return ret;
}

int rst_attr_apply(pid_t here, const pid_t *tids, const Haul__Img__ProcessState *ps,
		   struct rst_cg_later *later, char *why, size_t wl)
{
	char path[96], v[32];
	int ret;

	ret = rst_cg_place(ps->pid, here, tids, ps, later, why, wl);
	if (ret)
		return ret;
	if (ps->has_oom_score_adj) {
		snprintf(path, sizeof(path), "/proc/%d/oom_score_adj", (int)here);
		snprintf(v, sizeof(v), "%d", ps->oom_score_adj);
		ret = write_text(path, v);
		if (ret) {
			snprintf(why, wl, "cannot set oom_score_adj of pid %d to %d: %s%s", ps->pid,
				 ps->oom_score_adj, strerror(-ret),
				 ret == -EACCES ? " (below the restorer's own it needs "
						  "CAP_SYS_RESOURCE: run haul with it)"
						: "");
			return ret;
		}
	}
	if (ps->has_coredump_filter) {
		snprintf(path, sizeof(path), "/proc/%d/coredump_filter", (int)here);
		snprintf(v, sizeof(v), "0x%x", ps->coredump_filter);
		ret = write_text(path, v);
		if (ret) {
			snprintf(why, wl, "cannot set coredump_filter of pid %d to %#x: %s",
				 ps->pid, ps->coredump_filter, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* ---- the resource (res_int.h) --------------------------------------------- */

/*
 * loginuid can only be written by the process itself (proc_loginuid_write),
 * with CAP_AUDIT_CONTROL: before the credentials drop it.
 */
static int restore_loginuid(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
			    size_t wl)
{
	char path[64], cur[32] = "", v[16];
	uint64_t addr, vaddr;
	long fd;
	int ret, fdr;

	snprintf(path, sizeof(path), "/proc/%d/loginuid", (int)t->stub);
	fdr = open(path, O_RDONLY | O_CLOEXEC);
	if (fdr >= 0) {
		ssize_t n = read(fdr, cur, sizeof(cur) - 1);

		cur[n > 0 ? n : 0] = '\0';
		close(fdr);
	}
	if (strtoul(cur, NULL, 10) == ps->loginuid)
		return 0;
	snprintf(v, sizeof(v), "%u", ps->loginuid);
	ret = rst_put_str(t, 0, "/proc/self/loginuid", &addr);
	if (!ret)
		ret = rst_put_str(t, 64, v, &vaddr);
	if (!ret)
		ret = rst_rcall(t, SYS_openat, AT_FDCWD, addr, O_WRONLY | O_CLOEXEC, 0, 0, 0, &fd);
	if (!ret) {
		ret = rst_rcall(t, SYS_write, fd, vaddr, strlen(v), 0, 0, 0, NULL);
		rst_rcall(t, SYS_close, fd, 0, 0, 0, 0, 0, NULL);
	}
	if (ret)
		snprintf(
			why, wl,
			"cannot set the loginuid of pid %d to %u (the restorer's is %.16s): %s; it "
			"can be set once, with CAP_AUDIT_CONTROL: run haul where loginuid is "
			"unset or the same",
			ps->pid, ps->loginuid, cur, strerror(-ret));
	return ret;
}

/* Attributes only the process can set on itself (procattr.c dumped them). */
static int attrs_restore(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
			 size_t wl)
{
	const char *what = "PR_SET_CHILD_SUBREAPER";
	int ret = 0;

	if (ps->has_loginuid) {
		ret = restore_loginuid(t, ps, why, wl);
		if (ret)
			return ret;
	}
	if (ps->has_child_subreaper && ps->child_subreaper)
		ret = rst_rcall(t, SYS_prctl, PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0, 0, NULL);
	if (!ret && ps->has_thp_disable && (ps->thp_disable & 1)) {
		what = "PR_SET_THP_DISABLE";
		ret = rst_rcall(t, SYS_prctl, PR_SET_THP_DISABLE, 1, ps->thp_disable & ~1u, 0, 0, 0,
				NULL);
	}
	/* Each bit of GET_REGISTRATIONS is the REGISTER_* command that set it. */
	for (unsigned b = 0; !ret && ps->has_membarrier && b < 32; b++)
		if (ps->membarrier & (1u << b)) {
			what = "a membarrier registration";
			ret = rst_rcall(t, SYS_membarrier, 1u << b, 0, 0, 0, 0, 0, NULL);
		}
	if (ret)
		snprintf(why, wl, "cannot restore %s of pid %d: %s", what, ps->pid, strerror(-ret));
	return ret;
}

/* oom_score_adj, coredump_filter and cgroups, written from here (procattr.c). */
static int attrs_apply(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
		       size_t wl)
{
	pid_t *tids = calloc(t->nthr + 1, sizeof(*tids));
	int ret;

	if (!tids) {
		snprintf(why, wl, "out of memory placing pid %d in its cgroups", ps->pid);
		return -ENOMEM;
	}
	for (size_t i = 0; i < t->nthr; i++)
		tids[i] = t->thr[i].pid;
	ret = rst_attr_apply(t->stub, tids, ps, t->o.cg_defer_frozen ? &t->cg_later : NULL, why,
			     wl);
	free(tids);
	if (ret && !why[0])
		snprintf(why, wl, "cannot set the cgroups or OOM score of pid %d: %s", ps->pid,
			 strerror(-ret));
	return ret;
}

static int attrs_precheck(pid_t pid, pid_t tracer, char *why, size_t wl)
{
	(void)tracer;
	return rst_attr_audit_proc(pid, why, wl);
}

static int attrs_precheck_seized(struct rst_seized *s, uint64_t scratch, char *why, size_t wl)
{
	return rst_attr_audit_seized(s->thr, s->n, scratch, NULL, why, wl);
}

static int attrs_dump(struct rst_seized *s, uint64_t scratch, Haul__Img__ProcessState *ps,
		      void **priv, char *why, size_t wl)
{
	int ret = rst_attr_audit_seized(s->thr, s->n, scratch, ps, why, wl);

	(void)priv;
	return ret ? ret : rst_attr_dump_proc(s->pid, ps);
}

const struct rst_res_ops rst_res_attrs = {
	.name = "process attributes",
	.phase = RST_RES_TASK,
	.precheck = attrs_precheck,
	.precheck_seized = attrs_precheck_seized,
	.dump = attrs_dump,
	.restore = attrs_restore,
	.apply = attrs_apply,
};
