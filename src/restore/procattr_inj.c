/*
 * procattr_inj.c - the process attributes only the process itself can
 * read (prctl, arch_prctl, membarrier), read by calls injected in every
 * thread of the stopped process, one batch per thread (rsys_batch), at the
 * precheck's short seize and again in the dump's stop: each must be at the
 * value a restored process gets, or be carried (subreaper, THP disable,
 * membarrier registrations), or the migration is refused by name.  The
 * /proc half of the audit, and why it is a rule rather than a list, is
 * procattr.c.
 */
#define LOG_PREFIX "dump: "
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/rsys.h"
#include "restore/restore.h"
#include "restore/res_int.h"
#include "restore/restore_int.h"

#define MEMBARRIER_CMD_GET_REGISTRATIONS_ (1 << 9)
#define PR_GET_IO_FLUSHER_		  58
#define PR_GET_MDWE_			  66
#define PR_GET_MEMORY_MERGE_		  68
#define ARCH_GET_CPUID_			  0x1011
#define ARCH_GET_XCOMP_PERM_		  0x1022
#define PTRACE_GET_SYSCALL_USER_DISPATCH_ 0x4211

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
			.name = q[i].nr == SYS_prctl	    ? "prctl"
				: q[i].nr == SYS_arch_prctl ? "arch_prctl"
							    : "membarrier",
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

	rst_attr_who(w, sizeof(w), pid, r->pid);
	if (ptrace(PTRACE_GET_SYSCALL_USER_DISPATCH_, r->pid, sizeof(sud), &sud) >= 0 && sud.mode) {
		snprintf(why, wl,
			 "%s: syscall user dispatch (PR_SET_SYSCALL_USER_DISPATCH) is on; %s", w,
			 rst_attr_not_carried);
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
			 w, pdeath, rst_attr_not_carried);
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
	rst_attr_who(w, sizeof(w), pid, tid);
	snprintf(why, wl, "%s: %s is %ld, a restored process would get %ld; %s", w, p->name, v,
		 mine, rst_attr_not_carried);
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
