/*
 * dump_thread.c - one stopped thread as ptrace and /proc show it, for the
 * dump (dump.c): its registers in image form (an interrupted relative
 * sleep turned back into its call, since a new task cannot resume
 * restart_syscall), its queued signals (PTRACE_PEEKSIGINFO, the thread's
 * own queue or the process-wide one) and the tid it knows itself by in its
 * PID namespace.  Nothing here touches the thread.
 */
#define LOG_PREFIX "dump: "
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>

#include "restore/restore.h"
#include "restore/res_int.h"
#include "restore/restore_int.h"
#include "restore/fd_int.h"

static void regs_to_img(const struct user_regs_struct *g, Haul__Img__Regs *o)
{
	haul__img__regs__init(o);
	o->r15 = g->r15;
	o->r14 = g->r14;
	o->r13 = g->r13;
	o->r12 = g->r12;
	o->rbp = g->rbp;
	o->rbx = g->rbx;
	o->r11 = g->r11;
	o->r10 = g->r10;
	o->r9 = g->r9;
	o->r8 = g->r8;
	o->rax = g->rax;
	o->rcx = g->rcx;
	o->rdx = g->rdx;
	o->rsi = g->rsi;
	o->rdi = g->rdi;
	o->orig_rax = g->orig_rax;
	o->rip = g->rip;
	o->cs = g->cs;
	o->eflags = g->eflags;
	o->rsp = g->rsp;
	o->ss = g->ss;
	o->fs_base = g->fs_base;
	o->gs_base = g->gs_base;
	o->ds = g->ds;
	o->es = g->es;
	o->fs = g->fs;
	o->gs = g->gs;
}

/*
 * A relative sleep interrupted with ERESTART_RESTARTBLOCK would resume as
 * restart_syscall, whose saved state a new task lacks: it would fail with
 * EINTR.  Run the original call again instead (the sleep starts over:
 * longer, but not cut short).
 */
void rst_dump_regs(const struct user_regs_struct *saved, const struct user_regs_struct *raw,
		   Haul__Img__Regs *o)
{
	struct user_regs_struct g = *saved;

	if ((long)raw->rax == -516 &&
	    (raw->orig_rax == SYS_nanosleep || raw->orig_rax == SYS_clock_nanosleep ||
	     raw->orig_rax == SYS_poll || raw->orig_rax == SYS_futex))
		g.rax = raw->orig_rax;
	regs_to_img(&g, o);
}

int rst_dump_peek_signals(pid_t tid, bool shared, Haul__Img__PendingSignal **arr,
			  uint8_t (**si)[128], size_t *n, size_t *cap)
{
	for (uint64_t off = 0;; off++) {
		struct {
			uint64_t off;
			uint32_t flags;
			int32_t nr;
		} arg = {off, shared ? 1 : 0, 1};
		uint8_t info[128];
		long got = ptrace(PTRACE_PEEKSIGINFO, tid, &arg, info);

		if (got < 0)
			return -errno;
		if (got == 0)
			return 0;
		if (*n == *cap) {
			size_t nc = *cap ? *cap * 2 : 8;
			void *a = realloc(*arr, nc * sizeof(**arr));

			if (!a)
				return -ENOMEM;
			*arr = a;
			a = realloc(*si, nc * sizeof(**si));
			if (!a)
				return -ENOMEM;
			*si = a;
			*cap = nc;
		}
		memcpy((*si)[*n], info, sizeof(info));
		haul__img__pending_signal__init(&(*arr)[*n]);
		(*arr)[*n].shared = shared;
		(*n)++;
	}
}

int rst_dump_inner_tid(pid_t pid, pid_t tid)
{
	char name[64], *status = NULL;
	const char *f;
	int ret = tid;

	snprintf(name, sizeof(name), "task/%d/status", (int)tid);
	if (!rst_read_proc(pid, name, &status, NULL) && (f = rst_status_field(status, "NSpid"))) {
		const char *last = f;

		for (const char *p = f; *p && *p != '\n'; p++)
			if (p[0] == '\t' || p[0] == ' ')
				last = p + 1;
		ret = atoi(last);
	}
	free(status);
	return ret;
}
