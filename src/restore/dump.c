/*
 * dump.c - read the whole non-memory state of a stopped process.
 *
 * What a process is, besides its pages, comes from three places:
 *  - ptrace on the stopped task: registers (rewound into an interrupted
 *    syscall by rsys), xstate, signal mask, rseq, pending signals;
 *  - system calls injected into it (rsys_call): rt_sigaction per caught or
 *    ignored signal (status SigCgt/SigIgn),
 *    sigaltstack, brk(0), PR_GET_TID_ADDRESS, PR_GET_PDEATHSIG, getitimer,
 *    timer slack, dumpability - things no /proc file shows;
 *  - /proc/PID: stat (the PR_SET_MM fields), auxv, exe, personality, cwd,
 *    status (umask, creds), comm, fd + fdinfo, smaps (the layout; or maps
 *    plus VmFlags read before the stop, prep.c).
 * The result is one image.proto ProcessState, serialised.  The fds are the
 * resource layer's (fd_dump.c, one file per kind behind fd_kinds.c's
 * table); what is refused is judged in precheck.c.
 *
 * Anything haul cannot rebuild is refused before a single byte is dumped,
 * naming the resource (rst_check_resources); the caller then releases the
 * process, which runs on untouched.  Every injected call is read-only for
 * the tracee except the scratch mapping, which rsys_release() removes.
 */
#define LOG_PREFIX "dump: "
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/rsys.h"
#include "common/vma.h"
#include "restore/restore.h"
#include "restore/res_int.h"
#include "restore/restore_int.h"
#include "restore/fd_int.h"

#ifndef PTRACE_GET_RSEQ_CONFIGURATION
#define PTRACE_GET_RSEQ_CONFIGURATION 0x420f
#endif
#ifndef PR_GET_TID_ADDRESS
#define PR_GET_TID_ADDRESS 40
#endif

struct rseq_config {
	uint64_t rseq_abi_pointer;
	uint32_t rseq_abi_size;
	uint32_t signature;
	uint32_t flags;
	uint32_t pad;
};

/* The x86_64 layout of the kernel's struct sigaction (rt_sigaction). */
struct ksigaction {
	uint64_t handler;
	uint64_t flags;
	uint64_t restorer;
	uint64_t mask;
};

/* ---- the dump ------------------------------------------------------------ */

/* A secondary thread's part of the image. */
struct thread_buf {
	Haul__Img__ThreadState ts;
	Haul__Img__Regs regs;
	Haul__Img__Rseq rseq;
	uint8_t xstate[16384];
	Haul__Img__PendingSignal *pending;
	Haul__Img__PendingSignal **pendp;
	uint8_t (*siginfo)[128];
	char comm[32];
};

/* Everything a ProcessState points to, owned here and freed at once. */
struct dump_ctx {
	struct thread_buf *tb;
	Haul__Img__ThreadState **tsp;
	Haul__Img__ProcessState ps;
	Haul__Img__Regs regs;
	Haul__Img__MmMap mm;
	Haul__Img__Creds creds;
	Haul__Img__Rseq rseq;
	Haul__Img__SigAction sa[64];
	Haul__Img__SigAction *sap[64];
	Haul__Img__Rlimit rl[RLIM_NLIMITS];
	Haul__Img__Rlimit *rlp[RLIM_NLIMITS];
	Haul__Img__Itimer it[3];
	Haul__Img__Itimer *itp[3];
	uint32_t groups[256];
	char comm[32];
	char cwd[4096];
	char exe[4096];
	char release[65];
	uint8_t xstate[16384];
	Haul__Img__PendingSignal *pending; /* array, pointed to by pendp */
	Haul__Img__PendingSignal **pendp;
	uint8_t (*siginfo)[128];
	struct rst_fd_image fds; /* fd_dump.c's: the ProcessState's files and fds point into it */
	Haul__Img__Vma *vmas;
	Haul__Img__Vma **vmap;
	void *ghosts; /* vma_ghost.c's: the ProcessState's mapped_ghosts point into it */
	bool exe_deleted;
	struct haul_layout layout;
	char *status;
	char *stat;
	char *auxv;
	struct rst_shm_buf *shm;
	void *res[RST_RES_MAX]; /* what each resource's dump hook allocated */
};

static void dump_ctx_free(struct dump_ctx *c)
{
	for (size_t i = 0; c->tb && i < c->ps.n_threads; i++) {
		free(c->tb[i].pending);
		free(c->tb[i].pendp);
		free(c->tb[i].siginfo);
	}
	free(c->tb);
	free(c->tsp);
	rst_fd_image_free(&c->fds);
	for (size_t i = 0; c->vmas && i < c->ps.n_vmas; i++)
		free(c->vmas[i].guards); /* one block: pointers, then the ranges */
	free(c->vmas);
	free(c->vmap);
	rst_vma_ghost_release(c->ghosts);
	free(c->pending);
	free(c->pendp);
	free(c->siginfo);
	haul_layout_release(&c->layout);
	free(c->status);
	free(c->stat);
	free(c->auxv);
	rst_shm_buf_free(c->shm);
	rst_res_release(c->res);
	free(c);
}

/* Run @n calls in @r in one round trip (@code: rsys_batch_code), naming the one that failed. */
static int inject_batch(struct rsys *r, uint64_t code, uint64_t scratch, struct rsys_bcall *b,
			size_t n)
{
	size_t failed;
	int ret = rsys_batch(r, code, scratch + RSYS_SCRATCH_TABLE, b, n, &failed);

	if (ret && failed < n)
		pr_err_r(ret, "cannot run %s (%ld, %#lx) in pid %d", b[failed].name, b[failed].nr,
			 (unsigned long)b[failed].args[0], r->pid);
	else if (ret)
		pr_err_r(ret, "cannot run %zu injected calls in pid %d", n, r->pid);
	return ret;
}

/* Thread @i (not the main one) of @s, with @scratch mapped in the shared mm. */
static int dump_thread(struct rst_seized *s, size_t i, struct thread_buf *b, uint64_t scratch,
		       uint64_t code)
{
	struct rsys *r = &s->thr[i];
	Haul__Img__ThreadState *o = &b->ts;
	struct rseq_config rc;
	struct iovec iov = {b->xstate, sizeof(b->xstate)};
	size_t n = 0, cap = 0, hlen = 0;
	uint64_t head = 0, out[5] = {0}, *ss = out; /* stack_t at 0, tid address at 32 */
	struct rsys_bcall b2[2] = {
		{"sigaltstack", SYS_sigaltstack, {0, scratch}, RSYS_BMAYFAIL, 0},
		{"prctl", SYS_prctl, {PR_GET_TID_ADDRESS, scratch + 32}, RSYS_BMAYFAIL, 0},
	};
	char name[64], *text = NULL;
	int ret;

	haul__img__thread_state__init(o);
	o->tid = rst_dump_inner_tid(s->pid, r->pid);
	rst_dump_regs(&r->saved, &s->raw[i], &b->regs);
	o->regs = &b->regs;
	o->sigmask = r->sigmask;
	if (ptrace(PTRACE_GETREGSET, r->pid, NT_X86_XSTATE, &iov) < 0)
		return -errno;
	o->xstate.data = b->xstate;
	o->xstate.len = iov.iov_len;

	ret = rst_dump_peek_signals(r->pid, false, &b->pending, &b->siginfo, &n, &cap);
	if (ret)
		return ret;
	if (n) {
		b->pendp = calloc(n, sizeof(*b->pendp));
		if (!b->pendp)
			return -ENOMEM;
		for (size_t k = 0; k < n; k++) {
			b->pending[k].siginfo.data = b->siginfo[k];
			b->pending[k].siginfo.len = 128;
			b->pendp[k] = &b->pending[k];
		}
	}
	o->n_pending = n;
	o->pending = b->pendp;

	/* its altstack and tid address: one round trip, results at scratch + 0 and + 32 */
	ret = inject_batch(r, code, scratch, b2, 2);
	if (!ret)
		ret = rsys_read(r->pid, scratch, out, sizeof(out));
	if (ret)
		return ret;
	if (b2[0].ret == 0) {
		o->has_altstack_sp = o->has_altstack_flags = o->has_altstack_size = true;
		o->altstack_sp = ss[0];
		o->altstack_flags = (uint32_t)ss[1];
		o->altstack_size = ss[2];
	}
	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, r->pid, sizeof(rc), &rc) == sizeof(rc) &&
	    rc.rseq_abi_pointer) {
		haul__img__rseq__init(&b->rseq);
		b->rseq.addr = rc.rseq_abi_pointer;
		b->rseq.len = rc.rseq_abi_size;
		b->rseq.sig = rc.signature;
		o->rseq = &b->rseq;
	}
	if (syscall(SYS_get_robust_list, r->pid, &head, &hlen) == 0) {
		o->has_robust_list = o->has_robust_list_len = true;
		o->robust_list = head;
		o->robust_list_len = hlen;
	}
	o->has_tid_address = b2[1].ret == 0;
	o->tid_address = out[4];
	snprintf(name, sizeof(name), "task/%d/comm", (int)r->pid);
	if (!rst_read_proc(s->pid, name, &text, NULL)) {
		text[strcspn(text, "\n")] = '\0';
		snprintf(b->comm, sizeof(b->comm), "%s", text);
		o->comm = b->comm;
		free(text);
	}
	return 0;
}

/* The scratch slots of dump_signals's batch: one ksigaction per signal, then the stack_t. */
#define SCR_ALTSTACK (64 * sizeof(struct ksigaction))

static int dump_signals(struct dump_ctx *c, struct rsys *r, uint64_t scratch, uint64_t code)
{
	uint64_t set = ~0ULL; /* signals whose action is read: all, unless status says */
	struct ksigaction ka[64];
	struct rsys_bcall b[65];
	uint64_t ss[3]; /* stack_t: sp, flags (int, padded), size */
	size_t n = 0, cap = 0, nb = 0;
	char *status = NULL;
	const char *f;
	int ret;

	/*
	 * Only caught (SigCgt) and ignored (SigIgn) signals have an action
	 * other than SIG_DFL: read just those (one injected call each, instead
	 * of 62, all in one batch), and SIGCHLD, whose SA_NOCLDSTOP/SA_NOCLDWAIT
	 * act even with SIG_DFL.  The flags and mask set with another SIG_DFL
	 * action do nothing and are not carried.
	 */
	if (!rst_read_proc(r->pid, "status", &status, NULL)) {
		const char *cgt = rst_status_field(status, "SigCgt");

		if (cgt && (f = rst_status_field(status, "SigIgn")))
			set = strtoull(cgt, NULL, 16) | strtoull(f, NULL, 16) |
			      1ULL << (SIGCHLD - 1);
		free(status);
	}
	for (int sig = 1; sig <= 64; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP || !(set & 1ULL << (sig - 1)))
			continue;
		b[nb] = (struct rsys_bcall){.name = "rt_sigaction",
					    .nr = SYS_rt_sigaction,
					    .args = {sig, 0, scratch + nb * sizeof(ka[0]), 8}};
		nb++;
	}
	b[nb] = (struct rsys_bcall){.name = "sigaltstack",
				    .nr = SYS_sigaltstack,
				    .args = {0, scratch + SCR_ALTSTACK},
				    .flags = RSYS_BMAYFAIL};
	nb++;
	ret = inject_batch(r, code, scratch, b, nb);
	if (!ret)
		ret = rsys_read(r->pid, scratch, ka, (nb - 1) * sizeof(ka[0]));
	if (!ret && b[nb - 1].ret == 0)
		ret = rsys_read(r->pid, scratch + SCR_ALTSTACK, ss, sizeof(ss));
	if (ret)
		return ret;
	for (size_t i = 0; i + 1 < nb; i++) {
		if (!ka[i].handler && !ka[i].flags && !ka[i].mask)
			continue; /* SIG_DFL, as the restorer sets every other signal */
		haul__img__sig_action__init(&c->sa[n]);
		c->sa[n].signo = (uint32_t)b[i].args[0];
		c->sa[n].handler = ka[i].handler;
		c->sa[n].flags = ka[i].flags;
		c->sa[n].restorer = ka[i].restorer;
		c->sa[n].mask = ka[i].mask;
		c->sap[n] = &c->sa[n];
		n++;
	}
	c->ps.n_sigactions = n;
	c->ps.sigactions = c->sap;
	if (b[nb - 1].ret == 0) {
		c->ps.has_altstack_sp = c->ps.has_altstack_flags = c->ps.has_altstack_size = true;
		c->ps.altstack_sp = ss[0];
		c->ps.altstack_flags = (uint32_t)ss[1];
		c->ps.altstack_size = ss[2];
	}

	/* Queued signals: the thread's own queue, then the process-wide one. */
	n = 0;
	for (int shared = 0; shared < 2; shared++) {
		int ret2 =
			rst_dump_peek_signals(r->pid, shared, &c->pending, &c->siginfo, &n, &cap);

		if (ret2)
			return ret2;
	}
	if (n) {
		c->pendp = calloc(n, sizeof(*c->pendp));
		if (!c->pendp)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++) {
			c->pending[i].siginfo.data = c->siginfo[i];
			c->pending[i].siginfo.len = 128;
			c->pendp[i] = &c->pending[i];
		}
	}
	c->ps.n_pending = n;
	c->ps.pending = c->pendp;
	return 0;
}

/* dump_kernel_bookkeeping's batch, in order; the values read through memory at scratch + 8 * i. */
enum {
	BK_TIDADDR,
	BK_PDEATH,
	BK_SLACK,
	BK_DUMPABLE,
	BK_BRK,
	BK_ITIMER,
	BK_N = BK_ITIMER + 3
};

static int dump_kernel_bookkeeping(struct dump_ctx *c, struct rsys *r, uint64_t scratch,
				   uint64_t code)
{
	struct rsys_bcall b[BK_N] = {
		[BK_TIDADDR] =
			{"prctl", SYS_prctl, {PR_GET_TID_ADDRESS, scratch}, RSYS_BMAYFAIL, 0},
		[BK_PDEATH] =
			{"prctl", SYS_prctl, {PR_GET_PDEATHSIG, scratch + 8}, RSYS_BMAYFAIL, 0},
		[BK_SLACK] = {"prctl", SYS_prctl, {PR_GET_TIMERSLACK}, RSYS_BMAYFAIL, 0},
		[BK_DUMPABLE] = {"prctl", SYS_prctl, {PR_GET_DUMPABLE}, RSYS_BMAYFAIL, 0},
		[BK_BRK] = {"brk", SYS_brk, {0}, 0, 0},
	};
	uint64_t out[2 + 3 * 4]; /* tid address, pdeathsig (int), then 3 itimervals */
	struct rseq_config rc;
	uint64_t head = 0;
	size_t hlen = 0;
	int ret;

	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, r->pid, sizeof(rc), &rc) == sizeof(rc) &&
	    rc.rseq_abi_pointer) {
		haul__img__rseq__init(&c->rseq);
		c->rseq.addr = rc.rseq_abi_pointer;
		c->rseq.len = rc.rseq_abi_size;
		c->rseq.sig = rc.signature;
		c->ps.rseq = &c->rseq;
	}
	if (syscall(SYS_get_robust_list, r->pid, &head, &hlen) == 0) {
		c->ps.has_robust_list = c->ps.has_robust_list_len = true;
		c->ps.robust_list = head;
		c->ps.robust_list_len = hlen;
	}
	for (int which = 0; which < 3; which++)
		b[BK_ITIMER + which] = (struct rsys_bcall){"getitimer",
							   SYS_getitimer,
							   {which, scratch + 16 + 32 * which},
							   RSYS_BMAYFAIL,
							   0};
	memset(out, 0, sizeof(out)); /* pdeathsig is an int: its upper half stays 0 */
	ret = rsys_write(r->pid, scratch, out, sizeof(out));
	if (!ret)
		ret = inject_batch(r, code, scratch, b, BK_N);
	if (!ret)
		ret = rsys_read(r->pid, scratch, out, sizeof(out));
	if (ret)
		return ret;
	c->ps.has_tid_address = b[BK_TIDADDR].ret == 0;
	c->ps.tid_address = out[0];
	c->ps.has_pdeathsig = b[BK_PDEATH].ret == 0;
	c->ps.pdeathsig = (int32_t)out[1];
	c->ps.has_timerslack_ns = b[BK_SLACK].ret >= 0;
	c->ps.timerslack_ns = b[BK_SLACK].ret;
	c->ps.has_dumpable = b[BK_DUMPABLE].ret >= 0;
	c->ps.dumpable = b[BK_DUMPABLE].ret == 1;
	c->mm.brk = (uint64_t)b[BK_BRK].ret;

	for (int which = 0; which < 3; which++) {
		const uint64_t *tv = &out[2 + 4 * which];

		if (b[BK_ITIMER + which].ret < 0 || (!tv[0] && !tv[1] && !tv[2] && !tv[3]))
			continue;
		haul__img__itimer__init(&c->it[c->ps.n_itimers]);
		c->it[c->ps.n_itimers].which = which;
		c->it[c->ps.n_itimers].interval_us = tv[0] * 1000000 + tv[1];
		c->it[c->ps.n_itimers].value_us = tv[2] * 1000000 + tv[3];
		c->itp[c->ps.n_itimers] = &c->it[c->ps.n_itimers];
		c->ps.n_itimers++;
	}
	c->ps.itimers = c->itp;
	return 0;
}

/* /proc/PID/stat fields 26-28 and 45-51 (1-based) are the PR_SET_MM_MAP ones. */
static int dump_mm(struct dump_ctx *c, pid_t pid)
{
	unsigned long long v[53] = {0};
	char *p;
	int ret, i;
	struct stat st;
	char link[64];

	ret = rst_read_proc(pid, "stat", &c->stat, NULL);
	if (ret)
		return ret;
	p = strrchr(c->stat, ')');
	if (!p)
		return -EIO;
	p += 2; /* field 3, the state */
	for (i = 3; i <= 52 && *p; i++) {
		if (i == 3)
			v[i] = 0;
		else
			v[i] = strtoull(p, NULL, 10);
		p = strchr(p, ' ');
		if (!p)
			break;
		p++;
	}
	if (i < 51) {
		pr_err("cannot parse /proc/%d/stat", (int)pid);
		return -EIO;
	}
	c->mm.start_code = v[26];
	c->mm.end_code = v[27];
	c->mm.start_stack = v[28];
	c->mm.start_data = v[45];
	c->mm.end_data = v[46];
	c->mm.start_brk = v[47];
	c->mm.arg_start = v[48];
	c->mm.arg_end = v[49];
	c->mm.env_start = v[50];
	c->mm.env_end = v[51];

	snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
	ret = rst_read_link(link, c->exe, sizeof(c->exe));
	if (ret)
		return ret;
	/* deleted (upgraded): carried as the file it maps, if it does (exe_ghost) */
	c->exe_deleted = rst_strip_deleted(c->exe);
	c->mm.exe = c->exe;
	if (stat(link, &st) == 0) {
		c->mm.has_exe_dev = c->mm.has_exe_ino = true;
		c->mm.exe_dev = st.st_dev;
		c->mm.exe_ino = st.st_ino;
	}
	c->ps.mm = &c->mm;
	return 0;
}

/* The fds (fd_dump.c): FileObjects (ids from 1) and the FdEntries naming them. */
static int dump_fds(struct dump_ctx *c, struct rsys *r, uint64_t scratch, char *why, size_t whylen)
{
	int ret = rst_dump_fds(r, scratch, c->ps.pid, &c->fds, why, whylen);

	if (ret)
		return ret;
	c->ps.files = c->fds.files;
	c->ps.n_files = c->fds.nfiles;
	c->ps.fds = c->fds.fds;
	c->ps.n_fds = c->fds.nfds;
	return 0;
}

static int dump_process(struct dump_ctx *c, pid_t pid)
{
	const char *f;
	char link[64];
	char *text = NULL;
	size_t len;
	int ret;

	ret = rst_read_proc(pid, "auxv", &c->auxv, &len);
	if (ret)
		return ret;
	c->ps.auxv.data = (uint8_t *)c->auxv;
	c->ps.auxv.len = len;

	ret = rst_read_proc(pid, "personality", &text, NULL);
	if (ret)
		return ret;
	c->ps.personality = strtoul(text, NULL, 16);
	free(text);

	ret = rst_read_proc(pid, "comm", &text, NULL);
	if (ret)
		return ret;
	text[strcspn(text, "\n")] = '\0';
	snprintf(c->comm, sizeof(c->comm), "%s", text);
	free(text);
	c->ps.comm = c->comm;

	snprintf(link, sizeof(link), "/proc/%d/cwd", (int)pid);
	ret = rst_read_link(link, c->cwd, sizeof(c->cwd));
	if (ret)
		return ret;
	if (rst_strip_deleted(c->cwd)) {
		/* made again at the restore, entered and removed (cwd_ghost.c) */
		struct stat st;
		char why[4096];

		if (rst_cwd_ghost_check(pid, c->cwd, why, sizeof(why))) {
			pr_err("cannot dump pid %d: %s", (int)pid, why);
			return -EOPNOTSUPP;
		}
		snprintf(link, sizeof(link), "/proc/%d/cwd", (int)pid);
		if (stat(link, &st) < 0)
			return -errno;
		c->ps.has_cwd_deleted = c->ps.cwd_deleted = true;
		c->ps.has_cwd_mode = c->ps.has_cwd_uid = c->ps.has_cwd_gid = true;
		c->ps.cwd_mode = st.st_mode & 07777;
		c->ps.cwd_uid = st.st_uid;
		c->ps.cwd_gid = st.st_gid;
	}
	c->ps.cwd = c->cwd;

	ret = rst_read_proc(pid, "status", &c->status, NULL);
	if (ret)
		return ret;
	if ((f = rst_status_field(c->status, "Umask")))
		c->ps.umask = strtoul(f, NULL, 8);
	haul__img__creds__init(&c->creds);
	if ((f = rst_status_field(c->status, "Uid")))
		sscanf(f, "%u %u %u %u", &c->creds.ruid, &c->creds.euid, &c->creds.suid,
		       &c->creds.fsuid);
	if ((f = rst_status_field(c->status, "Gid")))
		sscanf(f, "%u %u %u %u", &c->creds.rgid, &c->creds.egid, &c->creds.sgid,
		       &c->creds.fsgid);
	if ((f = rst_status_field(c->status, "Groups"))) {
		char *end;

		for (;;) {
			unsigned long g = strtoul(f, &end, 10);

			if (end == f || c->creds.n_groups == 256)
				break;
			c->groups[c->creds.n_groups++] = g;
			f = end;
		}
	}
	c->creds.groups = c->groups;
	rst_caps_read(c->status, &c->creds);
	c->ps.creds = &c->creds;

	ret = rst_read_proc(pid, "limits", &text, NULL);
	if (ret) {
		pr_err_r(ret, "cannot read /proc/%d/limits", (int)pid);
		return ret;
	}
	ret = rst_parse_limits(pid, text, c->rl);
	free(text);
	if (ret)
		return ret;
	for (int res = 0; res < RLIM_NLIMITS; res++)
		c->rlp[res] = &c->rl[res];
	c->ps.n_rlimits = RLIM_NLIMITS;
	c->ps.rlimits = c->rlp;

	errno = 0;
	c->ps.nice = getpriority(PRIO_PROCESS, pid);
	c->ps.has_nice = errno == 0;
	return 0;
}

/* Time-namespace offsets of @pid, added to our clocks: the clocks it sees. */
static void dump_clocks(struct dump_ctx *c, pid_t pid)
{
	struct timespec mono, boot;
	int64_t moff, boff;

	clock_gettime(CLOCK_MONOTONIC, &mono);
	clock_gettime(CLOCK_BOOTTIME, &boot);
	rst_timens_offsets(pid, &moff, &boff);
	c->ps.monotonic_ns = mono.tv_sec * 1000000000ULL + mono.tv_nsec + moff;
	c->ps.boottime_ns = boot.tv_sec * 1000000000ULL + boot.tv_nsec + boff;
}

/* The guard pages of @v into @o->guards (one block: pointers, then ranges). */
static int dump_guards(int pagemap, const struct haul_vma *v, Haul__Img__Vma *o,
		       struct rst_guards *g)
{
	Haul__Img__GuardRange *r;
	int ret = rst_vma_guards(pagemap, v, g);

	if (ret || !g->n)
		return ret;
	o->guards = malloc(g->n * (sizeof(*o->guards) + sizeof(*r)));
	if (!o->guards)
		return -ENOMEM;
	r = (Haul__Img__GuardRange *)(o->guards + g->n);
	for (size_t k = 0; k < g->n; k++) {
		haul__img__guard_range__init(&r[k]);
		r[k].start = g->r[k].start;
		r[k].end = g->r[k].end;
		o->guards[k] = &r[k];
	}
	o->n_guards = g->n;
	return 0;
}

/*
 * A deleted executable (the server's binary upgraded under it) comes back
 * as the file its mappings are made again from (vma_ghost.c): the image
 * names that inode as the exe, restore_mm finds it by dev and ino.
 */
static int exe_ghost(struct dump_ctx *c, pid_t pid)
{
	for (size_t i = 0; i < c->ps.n_mapped_ghosts; i++) {
		const Haul__Img__MappedGhost *m = c->ps.mapped_ghosts[i];

		if (strcmp(m->path, c->exe))
			continue;
		c->mm.has_exe_dev = c->mm.has_exe_ino = true;
		c->mm.exe_dev = m->ghost->dev;
		c->mm.exe_ino = m->ghost->ino;
		return 0;
	}
	pr_err("the executable %s of pid %d was deleted and the process does not map it; it "
	       "cannot be restored",
	       c->exe, (int)pid);
	return -EOPNOTSUPP;
}

static int dump_layout(struct dump_ctx *c, pid_t pid, struct rst_dump_prep *p)
{
	struct rst_guards g = {0};
	char why[512], path[64];
	int pagemap = -1, ret = rst_prep_layout(p, pid, &c->layout);

	if (ret)
		return ret;
	/* The precheck saw the same from smaps; VmFlags may have changed since. */
	ret = rst_vma_refusal(&c->layout, why, sizeof(why));
	if (ret) {
		pr_err("cannot dump pid %d: %s", (int)pid, why);
		return ret;
	}
	c->vmas = calloc(c->layout.n, sizeof(*c->vmas));
	c->vmap = calloc(c->layout.n, sizeof(*c->vmap));
	if (!c->vmas || !c->vmap)
		return -ENOMEM;
	for (size_t i = 0; i < c->layout.n && !ret; i++) {
		const struct haul_vma *v = &c->layout.v[i];
		Haul__Img__Vma *o = &c->vmas[i];

		haul__img__vma__init(o);
		o->start = v->start;
		o->end = v->end;
		o->has_pgoff = o->has_dev = o->has_ino = true;
		o->pgoff = v->pgoff;
		o->dev = v->dev;
		o->ino = v->ino;
		o->prot = v->prot;
		o->flags = v->flags & ~HAUL_VMA_UFFD_WP;
		o->path = v->path;
		o->has_shm_size = v->shm_size != 0;
		o->shm_size = v->shm_size;
		o->has_file_size = o->has_file_mtime = v->file_known;
		o->file_size = v->file_size;
		o->file_mtime = v->file_mtime;
		o->has_file_build_id = v->file_known && v->build_id_len;
		o->file_build_id.len = v->build_id_len;
		o->file_build_id.data = (uint8_t *)v->build_id;
		o->has_file_hash = v->file_known && v->file_hashed;
		o->file_hash = v->file_hash;
		c->vmap[i] = o;
		c->ps.n_vmas = i + 1;
		if ((v->flags & HAUL_VMA_GUARD) && pagemap < 0) {
			snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
			pagemap = open(path, O_RDONLY | O_CLOEXEC);
			if (pagemap < 0)
				ret = -errno;
		}
		if (!ret)
			ret = dump_guards(pagemap, v, o, &g);
		if (ret)
			pr_err_r(ret, "cannot read the guard pages of VMA %#" PRIx64 " of pid %d",
				 v->start, (int)pid);
	}
	if (pagemap >= 0)
		close(pagemap);
	rst_guards_release(&g);
	c->ps.vmas = c->vmap;
	/* the content of deleted files it maps privately (vma_ghost.c) */
	if (!ret) {
		why[0] = '\0';
		ret = rst_vma_ghost_dump(pid, &c->layout, rst_prep_ghosts(p), &c->ps, &c->ghosts,
					 why, sizeof(why));
		if (ret)
			pr_err("cannot dump pid %d: %s", (int)pid, why[0] ? why : strerror(-ret));
	}
	return ret;
}

int rst_dump_state(struct rst_seized *s, uint8_t **blob, size_t *len)
{
	return rst_dump_state_prepared(s, NULL, blob, len);
}

/* The process as it knows itself, and its main thread's registers and xstate. */
static int dump_main_thread(struct dump_ctx *c, struct rst_seized *s)
{
	struct rsys *r = &s->thr[0];
	struct utsname u;
	struct iovec iov;
	int ret;

	c->ps.version = RST_IMAGE_VERSION;
	uname(&u);
	snprintf(c->release, sizeof(c->release), "%s", u.release);
	c->ps.kernel_release = c->release;
	c->ps.arch = "x86_64";
	c->ps.pid = s->pid;
	{
		/* The PID it knows itself by: the last NSpid entry. */
		char *status = NULL;
		const char *f;

		if (!rst_read_proc(s->pid, "status", &status, NULL) &&
		    (f = rst_status_field(status, "NSpid"))) {
			const char *last = f;

			for (const char *p = f; *p && *p != '\n'; p++)
				if (p[0] == '\t' || p[0] == ' ')
					last = p + 1;
			c->ps.pid = atoi(last);
		}
		free(status);
	}
	rst_dump_regs(&r->saved, &s->raw[0], &c->regs);
	c->ps.regs = &c->regs;
	c->ps.has_syscall_restart = true;
	c->ps.syscall_restart = r->in_syscall_restart;
	c->ps.sigmask = r->sigmask;
	if (s->owner_stopped) {
		int sig = r->stop_sig;

		/* the seize's event-stop names the group-stop's signal */
		c->ps.has_job_stop_signal = true;
		c->ps.job_stop_signal =
			sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU ? sig : SIGSTOP;
	}

	iov.iov_base = c->xstate;
	iov.iov_len = sizeof(c->xstate);
	if (ptrace(PTRACE_GETREGSET, r->pid, NT_X86_XSTATE, &iov) < 0) {
		ret = -errno;
		pr_err_r(ret, "cannot read the xstate of pid %d", r->pid);
		return ret;
	}
	c->ps.xstate.data = c->xstate;
	c->ps.xstate.len = iov.iov_len;
	return 0;
}

/* The other threads (dump_thread each), when there are any. */
static int dump_threads(struct dump_ctx *c, struct rst_seized *s, uint64_t scratch, uint64_t code)
{
	int ret;

	if (s->n < 2)
		return 0;
	c->tb = calloc(s->n - 1, sizeof(*c->tb));
	c->tsp = calloc(s->n - 1, sizeof(*c->tsp));
	if (!c->tb || !c->tsp)
		return -ENOMEM;
	for (size_t i = 1; i < s->n; i++) {
		c->ps.n_threads = i;
		ret = dump_thread(s, i, &c->tb[i - 1], scratch, code);
		if (ret) {
			pr_err_r(ret, "cannot dump thread %d of pid %d", s->thr[i].pid,
				 (int)s->pid);
			return ret;
		}
		c->tsp[i - 1] = &c->tb[i - 1].ts;
	}
	c->ps.threads = c->tsp;
	return 0;
}

/* Milliseconds since *@t, and *@t moved to now: the phases of one dump, for HAUL_LOG=debug. */
static double lap_ms(struct timespec *t)
{
	struct timespec n;
	double ms;

	clock_gettime(CLOCK_MONOTONIC, &n);
	ms = (double)(n.tv_sec - t->tv_sec) * 1e3 + (double)(n.tv_nsec - t->tv_nsec) / 1e6;
	*t = n;
	return ms;
}

int rst_dump_state_prepared(struct rst_seized *s, struct rst_dump_prep *prep, uint8_t **blob,
			    size_t *len)
{
	struct rsys *r = &s->thr[0];
	struct dump_ctx *c;
	char why[512] = "";
	double check_ms, inj_ms, proc_ms, fds_ms, layout_ms;
	struct timespec t;
	uint64_t scratch, code = 0, trip_ns = 0;
	unsigned long trips = 0;
	size_t n;
	int ret;

	clock_gettime(CLOCK_MONOTONIC, &t);
	/* First: the scratch mapping below takes the mmap lock itself. */
	rst_prep_freeze(prep);
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	haul__img__process_state__init(&c->ps);
	haul__img__mm_map__init(&c->mm);

	ret = rst_check_resources(s->pid, getpid(), why, sizeof(why));
	if (ret) {
		pr_err("cannot dump pid %d: %s", (int)s->pid, why);
		goto out;
	}
	check_ms = lap_ms(&t);
	ret = dump_main_thread(c, s);
	if (ret)
		goto out;

	ret = rsys_scratch(r, &scratch);
	if (ret)
		goto out;
	ret = rsys_batch_code(r, &code);
	if (ret)
		goto out;
	ret = dump_signals(c, r, scratch, code);
	if (ret)
		goto out;
	ret = dump_kernel_bookkeeping(c, r, scratch, code);
	if (ret)
		goto out;
	ret = dump_threads(c, s, scratch, code);
	if (ret)
		goto out;
	inj_ms = lap_ms(&t);
	ret = dump_mm(c, s->pid);
	if (ret)
		goto out;
	ret = dump_process(c, s->pid);
	if (ret)
		goto out;
	/* the per-process resources that are not fds (res_kinds.c) */
	ret = rst_res_dump(s, scratch, &c->ps, c->res, why, sizeof(why));
	if (ret) {
		if (why[0])
			pr_err("cannot dump pid %d: %s", (int)s->pid, why);
		goto out;
	}
	proc_ms = lap_ms(&t);
	ret = dump_fds(c, r, scratch, why, sizeof(why));
	if (ret) {
		if (why[0])
			pr_err("cannot dump pid %d: %s", (int)s->pid, why);
		goto out;
	}
	fds_ms = lap_ms(&t);
	/*
	 * The layout last: the scratch mapping must not be in it.  Unmap it
	 * now; rsys_release() would do so later, but the image must not name
	 * a VMA the restored process will not have.
	 */
	{
		uint64_t args[6] = {scratch, RSYS_SCRATCH_SIZE};
		long res;

		ret = rsys_call(r, SYS_munmap, args, &res);
		if (ret)
			goto out;
		r->scratch = r->code_scratch = r->code = 0;
	}
	ret = dump_layout(c, s->pid, prep);
	if (!ret && c->exe_deleted)
		ret = exe_ghost(c, s->pid);
	if (!ret)
		ret = rst_shm_dump(s->pid, &c->layout, &c->ps, &c->shm);
	if (ret)
		goto out;
	dump_clocks(c, s->pid);

	n = haul__img__process_state__get_packed_size(&c->ps);
	*blob = malloc(n ? n : 1);
	if (!*blob) {
		ret = -ENOMEM;
		goto out;
	}
	*len = haul__img__process_state__pack(&c->ps, *blob);
	pr_debug("pid %d: state of %zu bytes, %zu VMAs, %zu fds, %zu signal actions", (int)s->pid,
		 *len, c->ps.n_vmas, c->ps.n_fds, c->ps.n_sigactions);
	layout_ms = lap_ms(&t);
	for (size_t i = 0; i < s->n; i++) {
		trips += s->thr[i].calls;
		trip_ns += s->thr[i].call_ns;
	}
	pr_debug("pid %d: dump took %.1f ms: resource check %.1f, injected calls %.1f, "
		 "/proc and resources %.1f, fds %.1f, layout and shm %.1f; %lu round trips "
		 "(%.1f ms, batches %s)",
		 (int)s->pid, check_ms + inj_ms + proc_ms + fds_ms + layout_ms, check_ms, inj_ms,
		 proc_ms, fds_ms, layout_ms, trips, trip_ns / 1e6, code ? "on" : "off");
out:
	dump_ctx_free(c);
	return ret;
}

int rst_state_layout(const Haul__Img__ProcessState *ps, struct haul_layout *out)
{
	struct haul_layout l = {0};

	l.v = calloc(ps->n_vmas ? ps->n_vmas : 1, sizeof(*l.v));
	if (!l.v)
		return -ENOMEM;
	for (size_t i = 0; i < ps->n_vmas; i++) {
		const Haul__Img__Vma *o = ps->vmas[i];
		struct haul_vma *v = &l.v[i];

		v->start = o->start;
		v->end = o->end;
		v->pgoff = o->pgoff;
		v->dev = o->dev;
		v->ino = o->ino;
		v->prot = o->prot;
		v->flags = o->flags;
		v->shm_size = o->shm_size;
		v->file_known = o->has_file_size && o->has_file_mtime;
		v->file_size = o->file_size;
		v->file_mtime = o->file_mtime;
		haul_vma_set_build_id(v, o->has_file_build_id, o->file_build_id.data,
				      o->file_build_id.len);
		v->file_hashed = o->has_file_hash;
		v->file_hash = o->file_hash;
		l.n = i + 1;
		if (o->path && !(v->path = strdup(o->path))) {
			haul_layout_release(&l);
			return -ENOMEM;
		}
	}
	*out = l;
	return 0;
}
