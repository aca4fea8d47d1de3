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
 *    scheduling flags and clamps (the policy and ioprio: res_sched.c),
 *    core-scheduling cookie, exit signal;
 *  - what only the process itself can read (prctl, arch_prctl, membarrier),
 *    through calls injected in every thread (procattr_inj.c), at the
 *    precheck (a short seize) and again in the dump's stop.
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
#include <sys/resource.h>
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
#define PR_SCHED_CORE_ 62

const char rst_attr_not_carried[] = "haul cannot carry it (not supported yet): reset it in "
				    "the process, or leave the process where it is";

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

void rst_attr_who(char *buf, size_t len, pid_t pid, pid_t tid)
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

	rst_attr_who(w, sizeof(w), pid, tid);
	switch (rule_of(key)) {
	case R_VARIES:
	case R_CARRIED:
		return 0;
	case R_ZERO:
		if (!strcmp(val, "0"))
			return 0;
		snprintf(why, wl, "%s: %s is %.64s; %s", w, key, val, rst_attr_not_carried);
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
		 val, mine, rst_attr_not_carried);
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
	rst_attr_who(w, sizeof(w), pid, tid);
	snprintf(why, wl,
		 "%s: its time namespaces (its own and its children's) are not the main "
		 "thread's (unshare(CLONE_NEWTIME) in one thread only); %s",
		 w, rst_attr_not_carried);
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
		rst_attr_who(w, sizeof(w), pid, tid);
		snprintf(why, wl,
			 "%s: LSM attribute attr/%s is '%.64s', a restored process would get "
			 "'%.64s'; %s",
			 w, files[i], a ? strerror(-a) : theirs, b ? strerror(-b) : mine,
			 rst_attr_not_carried);
		return -EOPNOTSUPP;
	}
	return 0;
}

/*
 * The minimum clamp a real-time thread has when nobody set one (the
 * kernel's sched_util_clamp_min_rt_default, with CONFIG_UCLAMP_TASK; the
 * restored thread gets it again from sched_setattr), else @own.
 */
static uint32_t rt_util_min(uint32_t own)
{
	char text[32];

	return read_text("/proc/sys/kernel/sched_util_clamp_min_rt_default", text, sizeof(text))
		       ? own
		       : (uint32_t)strtoul(text, NULL, 10);
}

/*
 * Deadline parameters and clamps (the policy, priority,
 * SCHED_RESET_ON_FORK, I/O priority and each thread's nice: res_sched.c).
 */
static int audit_sched(pid_t pid, pid_t tid, char *why, size_t wl)
{
	struct haul_sched_attr a = {0}, o = {0};
	bool fair;
	char w[64];

	rst_attr_who(w, sizeof(w), pid, tid);
	if (syscall(SYS_sched_getattr, tid, &a, sizeof(a), 0) < 0)
		return errno == ESRCH ? 0 : -errno;
	if (syscall(SYS_sched_getattr, 0, &o, sizeof(o), 0) < 0)
		return -errno;
	/*
	 * SCHED_DEADLINE (6) is refused by res_sched.c, by name.  The runtime
	 * of a fair policy (OTHER 0, BATCH 3, IDLE 5) is its time slice
	 * (sched_setattr may set one); a real-time policy has none.
	 */
	fair = a.policy == 0 || a.policy == 3 || a.policy == 5;
	if (!fair && a.policy != 6)
		o.util_min = rt_util_min(o.util_min);
	if (a.policy != 6 && ((a.flags & ~(uint64_t)1) != (o.flags & ~(uint64_t)1) ||
			      (fair && (a.runtime != o.runtime || a.deadline != o.deadline ||
					a.period != o.period)) ||
			      a.util_min != o.util_min || a.util_max != o.util_max)) {
		snprintf(why, wl,
			 "%s: scheduling flags %#" PRIx64
			 " utilization clamps %u-%u time slice %" PRIu64
			 " ns (a restored process gets flags %#" PRIx64
			 " clamps %u-%u slice %" PRIu64 " ns); %s",
			 w, a.flags, a.util_min, a.util_max, a.runtime, o.flags, o.util_min,
			 o.util_max, o.runtime, rst_attr_not_carried);
		return -EOPNOTSUPP;
	}
	{
		uint64_t cookie = 0;

		if (!prctl(PR_SCHED_CORE_, 0 /* GET */, tid, 0 /* PIDTYPE_PID */, &cookie) &&
		    cookie) {
			snprintf(why, wl, "%s: has a core-scheduling cookie; %s", w,
				 rst_attr_not_carried);
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
				 (int)pid, text, rst_attr_not_carried);
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
				 (int)pid, atoi(p + 1), rst_attr_not_carried);
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
			ret = audit_sched(pid, tid, why, whylen);
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
