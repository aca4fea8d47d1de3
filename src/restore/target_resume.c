/*
 * target_resume.c - the last step of a restore: the stub becomes the
 * process.  In order: the vDSO at its old address (ARCH_MAP_VDSO_64), the
 * fds (fd_restore.c), cwd, umask, PR_SET_MM_MAP, personality, name, signal
 * actions, altstack, rseq, robust list, tid address, itimers, pending
 * signals, rlimits; the other threads (target_threads.c: injected clone3 with their TIDs,
 * auto-attached); credentials in every thread; the trampoline unmapped
 * while stopped at that syscall's exit; xstate, registers and signal mask
 * of every thread; detach.  target.c's opening comment has the whole
 * picture.
 */
#define LOG_PREFIX "restore: "
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/rsys.h"
#include "common/validate.h"
#include "common/vma.h"
#include "restore/restore.h"
#include "restore/fd_inet.h"
#include "restore/fd_int.h"
#include "restore/res_int.h"
#include "restore/ctr.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"
#include "restore/tree_int.h"

/* ---- resume -------------------------------------------------------------- */

struct prctl_mm_map_ {
	uint64_t start_code, end_code, start_data, end_data, start_brk, brk, start_stack;
	uint64_t arg_start, arg_end, env_start, env_end;
	uint64_t auxv;
	uint32_t auxv_size;
	uint32_t exe_fd;
};

static void img_to_regs(const Haul__Img__Regs *o, struct user_regs_struct *g)
{
	memset(g, 0, sizeof(*g));
	g->r15 = o->r15;
	g->r14 = o->r14;
	g->r13 = o->r13;
	g->r12 = o->r12;
	g->rbp = o->rbp;
	g->rbx = o->rbx;
	g->r11 = o->r11;
	g->r10 = o->r10;
	g->r9 = o->r9;
	g->r8 = o->r8;
	g->rax = o->rax;
	g->rcx = o->rcx;
	g->rdx = o->rdx;
	g->rsi = o->rsi;
	g->rdi = o->rdi;
	g->orig_rax = o->orig_rax;
	g->rip = o->rip;
	g->cs = o->cs;
	g->eflags = o->eflags;
	g->rsp = o->rsp;
	g->ss = o->ss;
	g->fs_base = o->fs_base;
	g->gs_base = o->gs_base;
	g->ds = o->ds;
	g->es = o->es;
	g->fs = o->fs;
	g->gs = o->gs;
}

/* The vDSO of this kernel, at the address the process knew (vvar first). */
static int restore_vdso(struct rst_target *t, const struct haul_layout *l, char *why, size_t wl)
{
	uint64_t vvar = 0, vdso = 0, vdso_end = 0;
	struct haul_layout now;
	const struct haul_vma *got;
	int ret;

	for (size_t i = 0; i < l->n; i++) {
		if ((l->v[i].flags & HAUL_VMA_VVAR) && (!vvar || l->v[i].start < vvar))
			vvar = l->v[i].start;
		if (l->v[i].flags & HAUL_VMA_VDSO) {
			vdso = l->v[i].start;
			vdso_end = l->v[i].end;
		}
	}
	if (!vdso)
		return 0;
	ret = rst_rcall(t, SYS_arch_prctl, ARCH_MAP_VDSO_64_, vvar ? vvar : vdso, 0, 0, 0, 0, NULL);
	if (ret) {
		snprintf(why, wl, "cannot map the vDSO at %#" PRIx64 ": %s", vvar ? vvar : vdso,
			 strerror(-ret));
		return ret;
	}
	ret = haul_layout_read(t->stub, false, &now);
	if (ret)
		return ret;
	got = haul_layout_find(&now, vdso);
	if (!got || !(got->flags & HAUL_VMA_VDSO) || got->start != vdso || got->end != vdso_end) {
		snprintf(why, wl,
			 "the vDSO of this kernel does not fit where the source had it "
			 "(%#" PRIx64 "-%#" PRIx64 "); restore needs the same kernel build",
			 vdso, vdso_end);
		ret = -EOPNOTSUPP;
	}
	haul_layout_release(&now);
	return ret;
}

static int restore_mm(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why, size_t wl)
{
	const Haul__Img__MmMap *mm = ps->mm;
	struct prctl_mm_map_ m = {0};
	char exe[4096];
	uint64_t rexe;
	long res;
	int ret, exe_fd;

	/* a deleted exe: the file its mappings were made again from (vma_ghost.c) */
	if (!rst_vma_ghost_name(t, mm->exe_dev, mm->exe_ino, exe, sizeof(exe)))
		snprintf(exe, sizeof(exe), "%s", mm->exe);
	ret = rst_put_str(t, 4096, exe, &rexe);
	if (!ret)
		ret = rst_rcall(t, SYS_openat, AT_FDCWD, rexe, O_RDONLY | O_CLOEXEC, 0, 0, 0, &res);
	if (ret) {
		snprintf(why, wl, "cannot open the executable %.256s: %s", mm->exe, strerror(-ret));
		return ret;
	}
	exe_fd = (int)res;
	if (ps->auxv.len > 2048) {
		snprintf(why, wl, "the auxiliary vector (%zu bytes) is too large", ps->auxv.len);
		return -E2BIG;
	}
	m.start_code = mm->start_code;
	m.end_code = mm->end_code;
	m.start_data = mm->start_data;
	m.end_data = mm->end_data;
	m.start_brk = mm->start_brk;
	m.brk = mm->brk;
	m.start_stack = mm->start_stack;
	m.arg_start = mm->arg_start;
	m.arg_end = mm->arg_end;
	m.env_start = mm->env_start;
	m.env_end = mm->env_end;
	m.auxv = rst_scratch(t) + 1024;
	m.auxv_size = ps->auxv.len;
	m.exe_fd = exe_fd;
	{
		/*
		 * The stub's exe is haul's binary.  When the process runs that same
		 * file (and maps it), the kernel refuses to replace the exe by
		 * itself (EBUSY while the old one is mapped); it is right already.
		 */
		struct stat cur, want;
		char link[64];

		snprintf(link, sizeof(link), "/proc/%d/exe", (int)t->stub);
		if (!stat(link, &cur) && !stat(exe, &want) && cur.st_dev == want.st_dev &&
		    cur.st_ino == want.st_ino)
			m.exe_fd = (uint32_t)-1;
	}
	ret = rst_poke(t, rst_scratch(t) + 1024, ps->auxv.data, ps->auxv.len);
	if (!ret)
		ret = rst_poke(t, rst_scratch(t), &m, sizeof(m));
	if (!ret)
		ret = rst_rcall(t, SYS_prctl, PR_SET_MM, PR_SET_MM_MAP, rst_scratch(t), sizeof(m),
				0, 0, NULL);
	rst_rcall(t, SYS_close, exe_fd, 0, 0, 0, 0, 0, NULL);
	if (ret)
		snprintf(why, wl, "cannot set the memory map fields (PR_SET_MM_MAP): %s",
			 strerror(-ret));
	return ret;
}

/*
 * The image's signal actions, altstack and queued signals: one batch
 * (target_batch.c); queued signals stay pending, every signal being
 * blocked until the mask is set last.
 */
static int restore_signals(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
			   size_t wl)
{
	struct rst_batch *b = rst_batch_new();
	uint64_t ss[3], at;
	int ret;

	if (!b)
		return -ENOMEM;
	/* The stub's actions are all SIG_DFL with no flags (helper M): set only the image's. */
	for (size_t i = 0; i < ps->n_sigactions; i++) {
		const Haul__Img__SigAction *a = ps->sigactions[i];
		uint64_t ka[4] = {a->handler, a->flags, a->restorer, a->mask};
		int sig = (int)a->signo;

		if (sig < 1 || sig > 64 || sig == SIGKILL || sig == SIGSTOP)
			continue;
		rst_bdata(t, b, ka, sizeof(ka), &at);
		rst_bcall(t, b, 0, "rt_sigaction", SYS_rt_sigaction, sig, at, 0, 8, 0, 0);
	}
	if (ps->has_altstack_flags) {
		if (ps->altstack_flags & SS_DISABLE) {
			ss[0] = 0;
			ss[1] = SS_DISABLE;
			ss[2] = 0;
		} else {
			ss[0] = ps->altstack_sp;
			ss[1] = ps->altstack_flags & ~(uint32_t)SS_ONSTACK;
			ss[2] = ps->altstack_size;
		}
		rst_bdata(t, b, ss, sizeof(ss), &at);
		rst_bcall(t, b, 0, "sigaltstack", SYS_sigaltstack, at, 0, 0, 0, 0, 0);
	}
	for (size_t i = 0; i < ps->n_pending; i++) {
		const Haul__Img__PendingSignal *p = ps->pending[i];
		int32_t signo;

		if (p->siginfo.len != 128)
			continue;
		memcpy(&signo, p->siginfo.data, sizeof(signo));
		rst_bdata(t, b, p->siginfo.data, 128, &at);
		if (p->shared)
			rst_bcall(t, b, 0, "rt_sigqueueinfo", SYS_rt_sigqueueinfo, t->o.pid, signo,
				  at, 0, 0, 0);
		else
			rst_bcall(t, b, 0, "rt_tgsigqueueinfo", SYS_rt_tgsigqueueinfo, t->o.pid,
				  t->o.pid, signo, at, 0, 0);
	}
	ret = rst_batch_run(t, b);
	if (ret)
		snprintf(why, wl,
			 "cannot restore the signal actions, altstack or queued signals: "
			 "%s: %s",
			 b->what, strerror(-ret));
	free(b);
	return ret;
}

static int restore_task(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
			size_t wl)
{
	struct rst_batch *b = rst_batch_new();
	struct rst_cwd_ghost cwd;
	uint64_t addr;
	int ret;

	if (!b)
		return -ENOMEM;
	/* a deleted working directory: made again for the chdir, removed after (cwd_ghost.c) */
	ret = rst_cwd_ghost_begin(t, ps, &cwd, why, wl);
	if (ret) {
		free(b);
		return ret;
	}
	/* one round trip (target_batch.c) */
	rst_bdata(t, b, cwd.path, strlen(cwd.path) + 1, &addr);
	rst_bcall(t, b, 0, "chdir", SYS_chdir, addr, 0, 0, 0, 0, 0);
	rst_bcall(t, b, 0, "umask", SYS_umask, ps->umask, 0, 0, 0, 0, 0);
	rst_bcall(t, b, 0, "personality", SYS_personality, ps->personality, 0, 0, 0, 0, 0);
	rst_bdata(t, b, ps->comm, strlen(ps->comm) + 1, &addr);
	rst_bcall(t, b, 0, "prctl(PR_SET_NAME)", SYS_prctl, PR_SET_NAME, addr, 0, 0, 0, 0);
	if (ps->rseq)
		rst_bcall(t, b, 0, "rseq", SYS_rseq, ps->rseq->addr, ps->rseq->len, 0,
			  ps->rseq->sig, 0, 0);
	if (ps->has_robust_list)
		rst_bcall(t, b, 0, "set_robust_list", SYS_set_robust_list, ps->robust_list,
			  ps->robust_list_len, 0, 0, 0, 0);
	if (ps->has_tid_address)
		rst_bcall(t, b, 0, "set_tid_address", SYS_set_tid_address, ps->tid_address, 0, 0, 0,
			  0, 0);
	if (ps->has_timerslack_ns)
		rst_bcall(t, b, 0, "prctl(PR_SET_TIMERSLACK)", SYS_prctl, PR_SET_TIMERSLACK,
			  ps->timerslack_ns, 0, 0, 0, 0);
	for (size_t i = 0; i < ps->n_itimers; i++) {
		const Haul__Img__Itimer *it = ps->itimers[i];
		uint64_t tv[4] = {it->interval_us / 1000000, it->interval_us % 1000000,
				  it->value_us / 1000000, it->value_us % 1000000};

		rst_bdata(t, b, tv, sizeof(tv), &addr);
		rst_bcall(t, b, 0, "setitimer", SYS_setitimer, it->which, addr, 0, 0, 0, 0);
	}
	ret = rst_batch_run(t, b);
	rst_cwd_ghost_end(t, &cwd);
	if (ret && !strncmp(b->what, "chdir ", 6))
		snprintf(why, wl, "cannot enter the working directory %.256s: %s", ps->cwd,
			 strerror(-ret));
	else if (ret)
		snprintf(why, wl,
			 "cannot restore umask, personality, name, rseq, robust list, tid address "
			 "or timers: %s: %s",
			 b->what, strerror(-ret));
	free(b);
	if (ret)
		return ret;
	for (size_t i = 0; i < ps->n_rlimits; i++) {
		struct rlimit rl = {ps->rlimits[i]->cur, ps->rlimits[i]->max};

		if (prlimit(t->stub, ps->rlimits[i]->resource, &rl, NULL) < 0) {
			struct rlimit old;

			/* Without CAP_SYS_RESOURCE a hard limit cannot grow: keep ours. */
			if (errno == EPERM &&
			    !prlimit(t->stub, ps->rlimits[i]->resource, NULL, &old)) {
				rl.rlim_max = old.rlim_max;
				if (rl.rlim_cur > rl.rlim_max)
					rl.rlim_cur = rl.rlim_max;
				prlimit(t->stub, ps->rlimits[i]->resource, &rl, NULL);
			}
			pr_warn("pid %d: cannot set rlimit %u to %" PRIu64 "/%" PRIu64
				" (no CAP_SYS_RESOURCE?); it keeps a lower hard limit",
				(int)t->o.pid, ps->rlimits[i]->resource, ps->rlimits[i]->cur,
				ps->rlimits[i]->max);
		}
	}
	if (ps->has_nice)
		setpriority(PRIO_PROCESS, t->stub, ps->nice);
	return 0;
}

/* "S N" of timens_offsets for @ns: N in [0, 1e9). */
static void split_ns(int64_t ns, long long *sec, long long *nsec)
{
	*sec = ns / 1000000000LL;
	*nsec = ns % 1000000000LL;
	if (*nsec < 0) {
		*nsec += 1000000000LL;
		(*sec)--;
	}
}

/*
 * A time namespace pending for its children: unshare one in the main
 * thread (before the threads are created, which share it as they did on
 * the source, and before the credentials drop CAP_SYS_ADMIN) and give it
 * the image's offsets relative to the process's own namespace.
 */
static int restore_timens_children(struct rst_target *t, const Haul__Img__ProcessState *ps,
				   char *why, size_t wl)
{
	long long ms, mn, bs, bn;
	char path[64], text[128];
	int ret, fd;

	if (!ps->has_children_monotonic_ns || !ps->has_children_boottime_ns)
		return 0;
	ret = rst_rcall(t, SYS_unshare, CLONE_NEWTIME, 0, 0, 0, 0, 0, NULL);
	if (!ret) {
		split_ns(t->o.monotonic_offset_ns + ps->children_monotonic_ns, &ms, &mn);
		split_ns(t->o.boottime_offset_ns + ps->children_boottime_ns, &bs, &bn);
		snprintf(text, sizeof(text), "monotonic %lld %lld\nboottime %lld %lld\n", ms, mn,
			 bs, bn);
		snprintf(path, sizeof(path), "/proc/%d/timens_offsets", (int)t->stub);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		ret = fd < 0 ? -errno : 0;
		if (!ret && write(fd, text, strlen(text)) != (ssize_t)strlen(text))
			ret = -errno;
		if (fd >= 0)
			close(fd);
	}
	if (ret)
		snprintf(why, wl,
			 "cannot restore the time namespace pending for the children of pid %d: %s",
			 ps->pid, strerror(-ret));
	return ret;
}

/* no_new_privs in every thread: after the credentials (it is one-way). */
static int restore_nnp(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
		       size_t wl)
{
	int ret = 0;

	if (!ps->has_no_new_privs || !ps->no_new_privs)
		return 0;
	for (size_t i = 0; i < t->nthr && !ret; i++) {
		t->cur = &t->thr[i];
		ret = rst_rcall(t, SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0, NULL);
	}
	t->cur = NULL;
	if (!ret)
		ret = rst_rcall(t, SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0, NULL);
	if (ret)
		snprintf(why, wl, "cannot set no_new_privs in pid %d: %s", ps->pid, strerror(-ret));
	return ret;
}

/* Registers, xstate and signal mask of a thread stopped at an injected call's exit. */
static int load_cpu(pid_t tid, const Haul__Img__Regs *ir, const ProtobufCBinaryData *xstate,
		    uint64_t mask, char *why, size_t wl)
{
	struct user_regs_struct regs;
	struct iovec iov = {xstate->data, xstate->len};

	if (ptrace(PTRACE_SETREGSET, tid, NT_X86_XSTATE, &iov) < 0) {
		snprintf(why, wl, "cannot load the FPU/xstate of %d (another CPU model?): %s",
			 (int)tid, strerror(errno));
		return -errno;
	}
	img_to_regs(ir, &regs);
	if (ptrace(PTRACE_SETREGS, tid, 0, &regs) < 0 ||
	    ptrace(PTRACE_SETSIGMASK, tid, sizeof(mask), &mask) < 0) {
		snprintf(why, wl, "cannot load the registers of %d: %s", (int)tid, strerror(errno));
		return -errno;
	}
	return 0;
}

/*
 * The raw id system calls change one thread only (glibc broadcasts; we are
 * not glibc).  In a container's user namespace the image's ids (ours) are
 * set as the namespace sees them (userns_ctr.c).
 */
static int creds_on(struct rst_target *t, struct rst_batch *b, const Haul__Img__Creds *img)
{
	Haul__Img__Creds in, *c = &in;
	uint32_t *groups = NULL;
	uint64_t at;
	int ret = rst_ctr_creds_in(t->o.ctr, img, &in, &groups);

	if (ret) {
		pr_err("the ids of pid %d are not mapped in its user namespace; it is not "
		       "restored",
		       (int)t->stub);
		free(groups);
		return ret;
	}
	/* one round trip (target_batch.c); setfs[ug]id return the old id, never an error */
	rst_batch_init(b);
	rst_caps_before_ids(t, b, c);
	rst_bdata(t, b, c->groups, c->n_groups * sizeof(uint32_t), &at);
	rst_bcall(t, b, 0, "setgroups", SYS_setgroups, c->n_groups, at, 0, 0, 0, 0);
	rst_bcall(t, b, 0, "setresgid", SYS_setresgid, c->rgid, c->egid, c->sgid, 0, 0, 0);
	rst_bcall(t, b, 0, "setfsgid", SYS_setfsgid, c->fsgid, 0, 0, 0, 0, 0);
	rst_bcall(t, b, 0, "setresuid", SYS_setresuid, c->ruid, c->euid, c->suid, 0, 0, 0);
	rst_bcall(t, b, 0, "setfsuid", SYS_setfsuid, c->fsuid, 0, 0, 0, 0, 0);
	ret = rst_batch_run(t, b);
	free(groups);
	return ret;
}

/*
 * The capability sets in every thread: after the seccomp filters, whose
 * installation may need CAP_SYS_ADMIN (without no_new_privs) that the
 * image's sets drop; injected calls are not judged by the filters
 * (res_seccomp.c suspends them).
 */
static int restore_caps(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
			size_t wl)
{
	int ret = 0;

	for (size_t i = 0; i < t->nthr && !ret; i++) {
		t->cur = &t->thr[i];
		ret = rst_caps_after_ids(t, ps->creds);
	}
	t->cur = NULL;
	if (!ret)
		ret = rst_caps_after_ids(t, ps->creds);
	if (ret)
		snprintf(why, wl, "cannot restore the capabilities of pid %d: %s", ps->pid,
			 strerror(-ret));
	return ret;
}

static int restore_creds(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
			 size_t wl)
{
	struct rst_batch *b = rst_batch_new();
	int ret = 0;

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < t->nthr && !ret; i++) {
		t->cur = &t->thr[i];
		ret = creds_on(t, b, ps->creds);
	}
	t->cur = NULL;
	if (!ret)
		ret = creds_on(t, b, ps->creds);
	if (ret && b->what[0])
		snprintf(why, wl, "cannot restore credentials: %s: %s", b->what, strerror(-ret));
	else if (ret)
		snprintf(why, wl, "cannot restore credentials: %s", strerror(-ret));
	free(b);
	return ret;
}

/*
 * What the kernel resets whenever the ids change, or the capabilities grow
 * (commit_creds): dumpability and the parent-death signal.  Set after the
 * last of those changes, the capability sets: set before, a process of
 * another uid came back with neither (zdtm's pdeath_sig).
 */
static int restore_cred_resets(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
			       size_t wl)
{
	int ret = 0;

	if (ps->has_dumpable)
		ret = rst_rcall(t, SYS_prctl, PR_SET_DUMPABLE, ps->dumpable ? 1 : 0, 0, 0, 0, 0,
				NULL);
	if (!ret)
		ret = rst_rcall(t, SYS_prctl, PR_SET_PDEATHSIG,
				ps->has_pdeathsig ? (uint64_t)ps->pdeathsig : 0, 0, 0, 0, 0, NULL);
	if (ret)
		snprintf(why, wl, "cannot restore dumpability or the parent-death signal: %s",
			 strerror(-ret));
	return ret;
}

static int check_image(const Haul__Img__ProcessState *ps, char *why, size_t wl)
{
	struct utsname u;

	uname(&u);
	if (ps->version != RST_IMAGE_VERSION) {
		snprintf(why, wl, "image version %u, this haul restores version %u", ps->version,
			 RST_IMAGE_VERSION);
		return -EPROTO;
	}
	if (strcmp(ps->arch, "x86_64")) {
		snprintf(why, wl, "image is for %.32s, this is x86_64", ps->arch);
		return -EOPNOTSUPP;
	}
	if (strcmp(ps->kernel_release, u.release)) {
		snprintf(why, wl,
			 "image is from kernel %.64s, this is %.64s: restore needs the same kernel "
			 "on both sides (vDSO, xstate layout)",
			 ps->kernel_release, u.release);
		return -EOPNOTSUPP;
	}
	return 0;
}

/*
 * Milliseconds since *@t, and *@t = now: the phases of a resume (debug
 * log); *@calls gets the round trips into the stub since the last lap.
 */
static double lap_ms(const struct rst_target *rt, struct timespec *t, unsigned long *calls,
		     unsigned long *mark)
{
	unsigned long now = rst_round_trips(rt);
	struct timespec n;
	double ms;

	*calls = now - *mark;
	*mark = now;

	clock_gettime(CLOCK_MONOTONIC, &n);
	ms = (n.tv_sec - t->tv_sec) * 1e3 + (n.tv_nsec - t->tv_nsec) / 1e6;
	*t = n;
	return ms;
}

/*
 * What a VMA gets once its pages are in: its guard pages (MADV_GUARD_INSTALL
 * zaps what the page copy may have put there), the final protection of
 * shared memory (create_prot), mlock (MLOCK_ONFAULT for "lf"), and last
 * mseal, after which nothing may change the VMA.
 */
static int finish_vmas(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
		       size_t wl)
{
	int ret = 0;

	for (size_t i = 0; i < ps->n_vmas && !ret; i++)
		for (size_t k = 0; k < ps->vmas[i]->n_guards && !ret; k++) {
			const Haul__Img__GuardRange *g = ps->vmas[i]->guards[k];

			ret = rst_rcall(t, SYS_madvise, g->start, g->end - g->start,
					RST_MADV_GUARD_INSTALL, 0, 0, 0, NULL);
			if (ret)
				snprintf(why, wl,
					 "cannot install guard pages %#" PRIx64 "-%#" PRIx64
					 ": %s (MADV_GUARD_INSTALL needs Linux 6.13)",
					 g->start, g->end, strerror(-ret));
		}
	for (size_t i = 0; i < t->n && !ret; i++) {
		const struct haul_vma *v = &t->v[i].v;

		if (rst_create_prot(v) != v->prot) {
			ret = rst_rcall(t, SYS_mprotect, v->start, v->end - v->start, v->prot, 0, 0,
					0, NULL);
			if (ret)
				snprintf(why, wl, "cannot protect %#" PRIx64 "-%#" PRIx64 ": %s",
					 v->start, v->end, strerror(-ret));
		}
		if (!ret && (v->flags & HAUL_VMA_LOCKED)) {
			int r = (v->flags & HAUL_VMA_LOCKFAULT)
					? rst_rcall(t, SYS_mlock2, v->start, v->end - v->start,
						    MLOCK_ONFAULT, 0, 0, 0, NULL)
					: rst_rcall(t, SYS_mlock, v->start, v->end - v->start, 0, 0,
						    0, 0, NULL);

			if (r)
				pr_warn_r(r, "cannot mlock %#" PRIx64 "-%#" PRIx64 " of pid %d",
					  v->start, v->end, (int)t->o.pid);
		}
	}
	for (size_t i = 0; i < t->n && !ret; i++) {
		const struct haul_vma *v = &t->v[i].v;

		if (!(v->flags & HAUL_VMA_SEALED))
			continue;
		ret = rst_rcall(t, SYS_mseal, v->start, v->end - v->start, 0, 0, 0, 0, NULL);
		if (ret)
			snprintf(why, wl, "cannot seal %#" PRIx64 "-%#" PRIx64 ": %s", v->start,
				 v->end, strerror(-ret));
	}
	return ret;
}

/* The image is @t's and this restorer's; how its batches run. */
static int resume_begin(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
			size_t wl)
{
	int ret = check_image(ps, why, wl);

	if (ret)
		return ret;
	if (ps->pid != t->o.pid) {
		snprintf(why, wl, "image is of pid %d, the target was made for pid %d", ps->pid,
			 (int)t->o.pid);
		return -EINVAL;
	}
	t->job_stop = rst_job_stop_signal(ps);
	t->batch_singly = rst_batch_sigtrap_taken(ps);
	if (t->batch_singly)
		pr_debug("pid %d ignores SIGTRAP or has one queued: its batches of injected calls "
			 "run one call at a time",
			 (int)t->o.pid);
	return 0;
}

static int resume(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why, size_t wl)
{
	struct haul_layout l;
	uint64_t mask = ps->sigmask;
	struct timespec lap;
	double ms[9] = {0};
	unsigned long n[9] = {0}, mark = rst_round_trips(t);
	double in_calls = rst_round_trips_ms(t);
	int ret;

	clock_gettime(CLOCK_MONOTONIC, &lap);

	ret = resume_begin(t, ps, why, wl);
	if (!ret)
		ret = rst_state_layout(ps, &l);
	if (ret)
		return ret;
	/* Normally a no-op: the last layout sent was this one. */
	ret = rst_target_layout(t, &l);
	ms[0] = lap_ms(t, &lap, &n[0], &mark);
	if (!ret)
		ret = restore_vdso(t, &l, why, wl);
	/* sizes and seals of shared memory, before post-copy registers it */
	if (!ret)
		ret = rst_shm_finish(t, ps, why, wl);
	/* deleted files mapped privately, before memory hooks, mlock and seals */
	if (!ret)
		ret = rst_res_restore(t, ps, RST_RES_VMAS, why, wl);
	ms[1] = lap_ms(t, &lap, &n[1], &mark);
	if (!ret && t->o.before_resume) {
		ret = t->o.before_resume(t->o.before_resume_arg, &t->r, &l);
		if (ret)
			snprintf(why, wl, "cannot prepare post-copy memory: %s", strerror(-ret));
	}
	haul_layout_release(&l);
	if (ret) {
		if (!why[0])
			snprintf(why, wl, "cannot rebuild the address space: %s", strerror(-ret));
		return ret;
	}
	ret = finish_vmas(t, ps, why, wl);
	if (ret)
		return ret;

	ms[2] = lap_ms(t, &lap, &n[2], &mark);
	/* one fd table with its parent (CLONE_FILES), which restored it */
	ret = t->files_shared ? 0 : rst_restore_fds(t, ps, why, wl);
	ms[3] = lap_ms(t, &lap, &n[3], &mark);
	if (!ret)
		ret = restore_mm(t, ps, why, wl);
	/* the names of deleted mapped files the fds and the exe opened: deleted again */
	rst_vma_ghost_unlink(t);
	ms[4] = lap_ms(t, &lap, &n[4], &mark);
	/* before its timer slack is set and its threads cloned (target_boost.c) */
	rst_boost_end_tracees(t);
	if (!ret)
		ret = restore_task(t, ps, why, wl);
	if (!ret)
		ret = rst_res_restore(t, ps, RST_RES_TASK, why, wl);
	if (!ret)
		ret = restore_signals(t, ps, why, wl);
	ms[5] = lap_ms(t, &lap, &n[5], &mark);
	/* Before the threads: clone(CLONE_VM) shares it with them, as on the source. */
	if (!ret)
		ret = restore_timens_children(t, ps, why, wl);
	if (!ret)
		ret = rst_create_threads(t, ps, why, wl);
	ms[6] = lap_ms(t, &lap, &n[6], &mark);
	if (!ret)
		ret = rst_res_restore(t, ps, RST_RES_CREDS, why, wl);
	if (!ret)
		ret = restore_creds(t, ps, why, wl);
	if (!ret)
		ret = restore_nnp(t, ps, why, wl);
	if (!ret)
		ret = rst_res_restore(t, ps, RST_RES_LAST, why, wl);
	if (!ret)
		ret = restore_caps(t, ps, why, wl);
	if (!ret)
		ret = restore_cred_resets(t, ps, why, wl);
	ms[7] = lap_ms(t, &lap, &n[7], &mark);
	if (ret) {
		if (!why[0])
			snprintf(why, wl, "%s", strerror(-ret));
		return ret;
	}

	/* The last injected call: stopped at its exit, nothing runs from the trampoline again. */
	ret = rst_rcall(t, SYS_munmap, t->tramp, TRAMP_SIZE, 0, 0, 0, 0, NULL);
	if (ret) {
		snprintf(why, wl, "cannot unmap the restorer's trampoline: %s", strerror(-ret));
		return ret;
	}
	for (size_t i = 0; i < t->nthr && !ret; i++)
		ret = load_cpu(t->thr[i].pid, ps->threads[i]->regs, &ps->threads[i]->xstate,
			       ps->threads[i]->sigmask, why, wl);
	if (!ret)
		ret = load_cpu(t->stub, ps->regs, &ps->xstate, mask, why, wl);
	/*
	 * Its cgroups last, once no call is injected any more: on the same
	 * host the source's own cgroup may be frozen by haul migrate (until
	 * the commit thaws it), and a frozen tracee would run no injected call.
	 */
	if (!ret)
		ret = rst_res_apply(t, ps, why, wl);
	if (ret)
		return ret;
	ms[8] = lap_ms(t, &lap, &n[8], &mark);
	pr_debug("pid %d resume phases (ms/injected calls): layout %.2f/%lu, vdso and shm "
		 "%.2f/%lu, memory hooks and mlock %.2f/%lu, fds %.2f/%lu, mm %.2f/%lu, task and "
		 "signals %.2f/%lu, threads %.2f/%lu, creds and last resources %.2f/%lu, "
		 "registers and cgroups %.2f/%lu; %.2f ms in injected calls",
		 (int)t->o.pid, ms[0], n[0], ms[1], n[1], ms[2], n[2], ms[3], n[3], ms[4], n[4],
		 ms[5], n[5], ms[6], n[6], ms[7], n[7], ms[8], n[8],
		 rst_round_trips_ms(t) - in_calls);
	return 0;
}

/* Let the process run: M stops guarding, every thread is detached. */
static int run(struct rst_target *t, char *why, size_t wl)
{
	int ret;

	/* connections between sockets of this restore: every one exists now (fd_tcp_local.c) */
	ret = rst_tcp_deferred_finish(why, wl);
	if (ret)
		return ret;

	/* M stops guarding: from here the process lives on without us (a forked one has no M). */
	if (t->ctl >= 0 && write(t->ctl, "R", 1) != 1) {
		ret = -errno;
		snprintf(why, wl, "cannot tell the restore helper: %s", strerror(errno));
		return ret;
	}
	t->resumed = true;
	if (t->job_stop)
		rst_job_stop_send(t);
	for (size_t i = 0; i < t->nthr; i++)
		if (ptrace(PTRACE_DETACH, t->thr[i].pid, 0, 0) < 0)
			pr_warn("cannot detach thread %d of restored pid %d: %s", t->thr[i].pid,
				(int)t->o.pid, strerror(errno));
	t->nthr = 0;
	if (ptrace(PTRACE_DETACH, t->stub, 0, 0) < 0) {
		ret = -errno;
		snprintf(why, wl, "cannot let the process run: %s", strerror(errno));
		return ret;
	}
	t->seized = false;
	if (t->job_stop && t->job_stop != SIGSTOP)
		rst_job_stop_check(t);
	return 0;
}

int rst_target_ready(struct rst_target *t, const void *state, size_t len, char *why, size_t whylen)
{
	Haul__Img__ProcessState *ps;
	struct timespec t0, t1;
	int ret;

	why[0] = '\0';
	if (t->resumed) {
		snprintf(why, whylen, "pid %d was resumed already", (int)t->o.pid);
		return -EINVAL;
	}
	ps = haul__img__process_state__unpack(NULL, len, state);
	if (!ps) {
		snprintf(why, whylen, "the process state of pid %d is corrupt", (int)t->o.pid);
		return -EBADMSG;
	}
	/* nothing of it is used before every field passed (common/validate.h, fd_validate.c) */
	if (ps->version != RST_IMAGE_VERSION) {
		snprintf(why, whylen,
			 "image version %u, this haul restores version %u: restore it with the "
			 "haul that dumped it, or checkpoint again with this one",
			 ps->version, RST_IMAGE_VERSION);
		haul__img__process_state__free_unpacked(ps, NULL);
		pr_err("cannot restore pid %d: %s", (int)t->o.pid, why);
		return -EPROTO;
	}
	if (val_process_state(ps, why, whylen) || rst_fd_validate(ps, why, whylen) ||
	    rst_res_validate(ps, why, whylen)) {
		haul__img__process_state__free_unpacked(ps, NULL);
		pr_err("cannot restore pid %d: bad process state: %s", (int)t->o.pid, why);
		return -EBADMSG;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rst_boost_begin(t);
	ret = resume(t, ps, why, whylen);
	rst_boost_end(t);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	haul__img__process_state__free_unpacked(ps, NULL);
	if (ret) {
		pr_err("cannot restore pid %d: %s", (int)t->o.pid, why);
		if (t->seized) {
			rst_target_kill(t);
			for (size_t i = 0; i < t->nthr; i++)
				waitpid(t->thr[i].pid, NULL, __WALL);
			t->nthr = 0;
			waitpid(t->stub, NULL, __WALL);
			t->seized = false;
		}
		return ret;
	}
	t->ready_ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
	return 0;
}

int rst_target_run(struct rst_target *t, pid_t *pid, char *why, size_t whylen)
{
	int ret = run(t, why, whylen);

	if (ret) {
		pr_err("cannot restore pid %d: %s", (int)t->o.pid, why);
		rst_target_kill(t);
		return ret;
	}
	if (t->mem >= 0) {
		close(t->mem);
		t->mem = -1;
	}
	*pid = t->stub;
	pr_info("pid %d restored in %.1f ms (pid %d here%s)", (int)t->o.pid, t->ready_ms,
		(int)t->stub, t->pidns ? ", in a new PID namespace" : "");
	return 0;
}

int rst_target_resume(struct rst_target *t, const void *state, size_t len, pid_t *pid, char *why,
		      size_t whylen)
{
	int ret = rst_target_ready(t, state, len, why, whylen);

	return ret ? ret : rst_target_run(t, pid, why, whylen);
}

int rst_image_clock_offsets(const void *state, size_t len, int64_t *mono, int64_t *boot)
{
	Haul__Img__ProcessState *ps = haul__img__process_state__unpack(NULL, len, state);
	struct timespec m, b;

	if (!ps)
		return -EBADMSG;
	clock_gettime(CLOCK_MONOTONIC, &m);
	clock_gettime(CLOCK_BOOTTIME, &b);
	*mono = (int64_t)ps->monotonic_ns - (m.tv_sec * 1000000000LL + m.tv_nsec);
	*boot = (int64_t)ps->boottime_ns - (b.tv_sec * 1000000000LL + b.tv_nsec);
	haul__img__process_state__free_unpacked(ps, NULL);
	return 0;
}
