/*
 * res_seccomp.c - seccomp, a per-process resource (res_int.h): strict mode
 * and the stack of classic-BPF filters of every thread.
 *
 * Injected calls go through the tracee's filters like its own, so every
 * thread haul injects into under seccomp gets PTRACE_O_SUSPEND_SECCOMP
 * (common/rsys.c, at attach; needs CAP_SYS_ADMIN; cleared by the detach),
 * and so does every thread of a restored process before its filters are
 * installed (suspend_all): the restore installs them before the
 * credentials, while the stub still has CAP_SYS_ADMIN (a process that
 * installed its filters as root and then changed its ids has neither that
 * nor no_new_privs: zdtm's seccomp_filter), and goes on injecting after them.
 *
 * Dump: PTRACE_SECCOMP_GET_FILTER by index (0 the newest) for each thread,
 * PTRACE_GET_SECCOMP_METADATA for its flags (LOG, SPEC_ALLOW); identical
 * programs are stored once, each thread names its stack oldest first.
 * Restore: when every thread has the same stack, the main thread installs
 * it with SECCOMP_FILTER_FLAG_TSYNC, so the threads share the filters as
 * they did; otherwise each thread installs its own.  A filter that hands
 * syscalls to a user-space supervisor (SECCOMP_RET_USER_NOTIF) is refused:
 * its listener fd is elsewhere and would not follow.
 */
#define LOG_PREFIX "seccomp: "
#include <dirent.h>
#include <errno.h>
#include <linux/filter.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/res_int.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

#define RST_PTRACE_O_SUSPEND_SECCOMP	 (1 << 21)
#define RST_PTRACE_SECCOMP_GET_FILTER	 0x420c
#define RST_PTRACE_GET_SECCOMP_METADATA	 0x420d
#define RST_SECCOMP_SET_MODE_FILTER	 1
#define RST_SECCOMP_FILTER_FLAG_TSYNC	 1
#define RST_SECCOMP_FILTER_FLAGS_CARRIED 6 /* LOG, SPEC_ALLOW */
#define RST_SECCOMP_RET_ACTION_FULL	 0xffff0000U
#define RST_SECCOMP_RET_USER_NOTIF	 0x7fc00000U
#define RST_BPF_MAXINSNS		 4096

int rst_seccomp_mode(pid_t tid)
{
	char name[64], *status = NULL;
	const char *f;
	int mode;

	snprintf(name, sizeof(name), "task/%d/status", (int)tid);
	mode = rst_read_proc(tid, name, &status, NULL);
	if (mode)
		return mode;
	f = rst_status_field(status, "Seccomp");
	mode = f ? atoi(f) : 0;
	free(status);
	return mode;
}

/* Whether program @f[0..n) can return SECCOMP_RET_USER_NOTIF (a RET K with that action). */
static bool has_user_notif(const struct sock_filter *f, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (BPF_CLASS(f[i].code) == BPF_RET && BPF_RVAL(f[i].code) == BPF_K &&
		    (f[i].k & RST_SECCOMP_RET_ACTION_FULL) == RST_SECCOMP_RET_USER_NOTIF)
			return true;
	return false;
}

/* What the dump allocated. */
struct sc_buf {
	Haul__Img__SeccompFilter *f;
	Haul__Img__SeccompFilter **fp;
	size_t nf;
	Haul__Img__SeccompStack *st;
	Haul__Img__SeccompStack **sp;
	uint32_t *idx; /* every stack's indexes, one array */
	size_t nidx;
};

static void sc_release(void *priv)
{
	struct sc_buf *b = priv;

	if (!b)
		return;
	for (size_t i = 0; i < b->nf; i++)
		free(b->f[i].prog.data);
	free(b->f);
	free(b->fp);
	free(b->st);
	free(b->sp);
	free(b->idx);
	free(b);
}

/* The index in @b of program @prog (taken), added if new. */
static int add_filter(struct sc_buf *b, uint8_t *prog, size_t len, uint32_t flags, uint32_t *out)
{
	Haul__Img__SeccompFilter *nf;

	for (size_t i = 0; i < b->nf; i++)
		if (b->f[i].prog.len == len && b->f[i].flags == flags &&
		    !memcmp(b->f[i].prog.data, prog, len)) {
			free(prog);
			*out = (uint32_t)i;
			return 0;
		}
	nf = realloc(b->f, (b->nf + 1) * sizeof(*nf));
	if (!nf) {
		free(prog);
		return -ENOMEM;
	}
	b->f = nf;
	haul__img__seccomp_filter__init(&nf[b->nf]);
	nf[b->nf].prog.data = prog;
	nf[b->nf].prog.len = len;
	nf[b->nf].has_flags = true;
	nf[b->nf].flags = flags;
	*out = (uint32_t)b->nf++;
	return 0;
}

/*
 * The filters of stopped thread @tid, newest first from the kernel, into
 * @b's index list (oldest first); *@count how many.
 */
static int dump_stack(pid_t pid, pid_t tid, struct sc_buf *b, size_t *count, char *why, size_t wl)
{
	size_t first = b->nidx;

	for (unsigned long k = 0;; k++) {
		struct {
			uint64_t filter_off, flags;
		} md = {k, 0};
		long n = ptrace(RST_PTRACE_SECCOMP_GET_FILTER, tid, k, NULL);
		uint32_t *ni, at;
		uint8_t *prog;
		int ret;

		if (n < 0 && errno == ENOENT)
			break;
		if (n <= 0 || n > RST_BPF_MAXINSNS) {
			ret = n < 0 ? -errno : -EIO;
			snprintf(why, wl,
				 "cannot read seccomp filter %lu of thread %d of pid %d: %s", k,
				 (int)tid, (int)pid, strerror(-ret));
			return ret;
		}
		prog = malloc((size_t)n * sizeof(struct sock_filter));
		if (!prog)
			return -ENOMEM;
		if (ptrace(RST_PTRACE_SECCOMP_GET_FILTER, tid, k, prog) != n ||
		    ptrace(RST_PTRACE_GET_SECCOMP_METADATA, tid, sizeof(md), &md) < 0) {
			ret = -errno;
			free(prog);
			snprintf(why, wl,
				 "cannot read seccomp filter %lu of thread %d of pid %d: %s", k,
				 (int)tid, (int)pid, strerror(-ret));
			return ret;
		}
		if (has_user_notif((const struct sock_filter *)prog, (size_t)n)) {
			free(prog);
			snprintf(why, wl,
				 "seccomp filter %lu of thread %d of pid %d hands syscalls to a "
				 "user-space supervisor (SECCOMP_RET_USER_NOTIF), whose listener "
				 "would not follow: move the process with its supervisor stopped, "
				 "or without that filter",
				 k, (int)tid, (int)pid);
			return -EOPNOTSUPP;
		}
		ret = add_filter(b, prog, (size_t)n * sizeof(struct sock_filter),
				 (uint32_t)md.flags & RST_SECCOMP_FILTER_FLAGS_CARRIED, &at);
		if (ret)
			return ret;
		ni = realloc(b->idx, (b->nidx + 1) * sizeof(*ni));
		if (!ni)
			return -ENOMEM;
		b->idx = ni;
		/* newest first from the kernel: insert at the stack's start */
		memmove(&ni[first + 1], &ni[first], (b->nidx - first) * sizeof(*ni));
		ni[first] = at;
		b->nidx++;
	}
	*count = b->nidx - first;
	return 0;
}

/* Every thread's filters into @b (and @ps when not NULL). */
static int sc_collect(struct rst_seized *s, struct sc_buf *b, Haul__Img__ProcessState *ps,
		      char *why, size_t wl)
{
	size_t *cnt = calloc(s->n, sizeof(*cnt));
	bool any = false, *strict = calloc(s->n, sizeof(*strict));
	int ret = cnt && strict ? 0 : -ENOMEM;

	for (size_t i = 0; i < s->n && !ret; i++) {
		int mode = rst_seccomp_mode(s->thr[i].pid);

		if (mode < 0)
			ret = mode;
		else if (mode == 1)
			strict[i] = any = true;
		else if (mode == 2) {
			any = true;
			ret = dump_stack(s->pid, s->thr[i].pid, b, &cnt[i], why, wl);
		}
	}
	if (!ret && any && ps) {
		size_t off = 0;

		b->st = calloc(s->n, sizeof(*b->st));
		b->sp = calloc(s->n, sizeof(*b->sp));
		b->fp = calloc(b->nf ? b->nf : 1, sizeof(*b->fp));
		if (!b->st || !b->sp || !b->fp)
			ret = -ENOMEM;
		for (size_t i = 0; !ret && i < s->n; i++) {
			haul__img__seccomp_stack__init(&b->st[i]);
			b->st[i].filter = b->idx ? b->idx + off : NULL;
			b->st[i].n_filter = cnt[i];
			b->st[i].has_strict = strict[i];
			b->st[i].strict = strict[i];
			b->sp[i] = &b->st[i];
			off += cnt[i];
		}
		for (size_t i = 0; !ret && i < b->nf; i++)
			b->fp[i] = &b->f[i];
		if (!ret) {
			ps->seccomp_stacks = b->sp;
			ps->n_seccomp_stacks = s->n;
			ps->seccomp_filters = b->fp;
			ps->n_seccomp_filters = b->nf;
		}
	}
	free(cnt);
	free(strict);
	return ret;
}

static int sc_precheck_seized(struct rst_seized *s, uint64_t scratch, char *why, size_t wl)
{
	struct sc_buf *b = calloc(1, sizeof(*b));
	int ret = b ? sc_collect(s, b, NULL, why, wl) : -ENOMEM;

	(void)scratch;
	sc_release(b);
	return ret;
}

static int sc_dump(struct rst_seized *s, uint64_t scratch, Haul__Img__ProcessState *ps, void **priv,
		   char *why, size_t wl)
{
	struct sc_buf *b = calloc(1, sizeof(*b));

	(void)scratch;
	if (!b)
		return -ENOMEM;
	*priv = b;
	return sc_collect(s, b, ps, why, wl);
}

static int sc_validate(const Haul__Img__ProcessState *ps, char *why, size_t wl)
{
	for (size_t i = 0; i < ps->n_seccomp_filters; i++) {
		const Haul__Img__SeccompFilter *f = ps->seccomp_filters[i];

		if (!f->prog.len || f->prog.len % sizeof(struct sock_filter) ||
		    f->prog.len > RST_BPF_MAXINSNS * sizeof(struct sock_filter) ||
		    (f->flags & ~RST_SECCOMP_FILTER_FLAGS_CARRIED)) {
			snprintf(why, wl, "seccomp filter %zu is malformed (%zu bytes, flags %#x)",
				 i, f->prog.len, f->flags);
			return -EBADMSG;
		}
	}
	if (ps->n_seccomp_stacks && ps->n_seccomp_stacks != ps->n_threads + 1) {
		snprintf(why, wl, "%zu seccomp stacks for %zu threads", ps->n_seccomp_stacks,
			 ps->n_threads + 1);
		return -EBADMSG;
	}
	for (size_t i = 0; i < ps->n_seccomp_stacks; i++) {
		const Haul__Img__SeccompStack *st = ps->seccomp_stacks[i];

		if (st->strict && st->n_filter) {
			snprintf(why, wl, "seccomp stack %zu is strict and has filters", i);
			return -EBADMSG;
		}
		for (size_t k = 0; k < st->n_filter; k++)
			if (st->filter[k] >= ps->n_seccomp_filters) {
				snprintf(why, wl, "seccomp stack %zu names filter %u of %zu", i,
					 st->filter[k], ps->n_seccomp_filters);
				return -EBADMSG;
			}
	}
	return 0;
}

/* Whether every thread has the same filter stack (then TSYNC shares it). */
static bool same_stacks(const Haul__Img__ProcessState *ps)
{
	const Haul__Img__SeccompStack *a = ps->seccomp_stacks[0];

	for (size_t i = 1; i < ps->n_seccomp_stacks; i++) {
		const Haul__Img__SeccompStack *b = ps->seccomp_stacks[i];

		if (b->strict || a->strict || b->n_filter != a->n_filter ||
		    memcmp(b->filter, a->filter, a->n_filter * sizeof(*a->filter)))
			return false;
	}
	return true;
}

/* Install stack @st in the thread t->cur (@tsync: for every thread). */
static int install_stack(struct rst_target *t, const Haul__Img__ProcessState *ps,
			 const Haul__Img__SeccompStack *st, bool tsync)
{
	uint64_t sc = rst_scratch(t);
	int ret = 0;

	if (st->strict)
		return rst_rcall(t, SYS_prctl, PR_SET_SECCOMP, 1 /* SECCOMP_MODE_STRICT */, 0, 0, 0,
				 0, NULL);
	for (size_t k = 0; k < st->n_filter && !ret; k++) {
		const Haul__Img__SeccompFilter *f = ps->seccomp_filters[st->filter[k]];
		struct sock_fprog fp = {
			.len = (unsigned short)(f->prog.len / sizeof(struct sock_filter)),
			.filter = (struct sock_filter *)(uintptr_t)(sc + 64),
		};

		ret = rst_poke(t, sc, &fp, sizeof(fp));
		if (!ret)
			ret = rst_poke(t, sc + 64, f->prog.data, f->prog.len);
		if (!ret)
			ret = rst_rcall(t, SYS_seccomp, RST_SECCOMP_SET_MODE_FILTER,
					f->flags | (tsync ? RST_SECCOMP_FILTER_FLAG_TSYNC : 0), sc,
					0, 0, 0, NULL);
	}
	return ret;
}

/* The injected calls from here on must not be judged by the filters being installed. */
static int suspend_all(struct rst_target *t)
{
	long opts = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | RST_PTRACE_O_SUSPEND_SECCOMP;

	if (ptrace(PTRACE_SETOPTIONS, t->stub, 0, opts) < 0)
		return -errno;
	for (size_t i = 0; i < t->nthr; i++)
		if (ptrace(PTRACE_SETOPTIONS, t->thr[i].pid, 0, opts) < 0)
			return -errno;
	return 0;
}

static int sc_restore(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why, size_t wl)
{
	bool tsync;
	size_t i = 0;
	int ret;

	if (!ps->n_seccomp_stacks)
		return 0;
	ret = suspend_all(t);
	if (ret) {
		snprintf(why, wl,
			 "cannot restore the seccomp filters of pid %d: PTRACE_O_SUSPEND_SECCOMP: "
			 "%s (needs CAP_SYS_ADMIN)",
			 ps->pid, strerror(-ret));
		return ret;
	}
	tsync = same_stacks(ps);
	for (i = 0; i < ps->n_seccomp_stacks && !ret; i++) {
		if (i > t->nthr)
			break;
		t->cur = i ? &t->thr[i - 1] : NULL;
		ret = install_stack(t, ps, ps->seccomp_stacks[i], tsync);
		if (tsync)
			break;
	}
	t->cur = NULL;
	if (ret)
		snprintf(why, wl,
			 "cannot install the seccomp filters of thread %zu of pid %d: %s (before "
			 "its credentials, as root)",
			 i, ps->pid, strerror(-ret));
	return ret;
}

static bool sc_in_use(pid_t pid)
{
	char name[64];
	struct dirent *de;
	bool any = false;
	DIR *d;

	snprintf(name, sizeof(name), "/proc/%d/task", (int)pid);
	d = opendir(name);
	while (d && !any && (de = readdir(d)))
		any = de->d_name[0] != '.' && rst_seccomp_mode(atoi(de->d_name)) > 0;
	if (d)
		closedir(d);
	return any;
}

const struct rst_res_ops rst_res_seccomp = {
	.name = "seccomp",
	.cap = "RES_SECCOMP",
	.version = 4,
	.in_use = sc_in_use,
	.phase = RST_RES_CREDS,
	.precheck_seized = sc_precheck_seized,
	.dump = sc_dump,
	.release = sc_release,
	.validate = sc_validate,
	.restore = sc_restore,
};
