/*
 * validate.c - field-by-field checks of peer messages and image records.
 *
 * Why a separate pass: protobuf-c only checks that a message parses and its
 * required fields are present.  Everything else (a FILE VMA without a path,
 * a range past the address space, signal 0, fd -5, a 16 TiB VMA) would
 * reach code that trusts it, on the root page server, where one crash ends
 * every session.  So each message kind gets one function, called where it
 * is decoded, before any handler looks at it; a failure names the field in
 * @why and returns -EBADMSG, and the caller closes that one connection (or
 * refuses that one image) with the reason.
 *
 * Rules, common to all: addresses page-aligned, start < end, inside the
 * user address space ([0, VAL_TASK_SIZE); only a [vsyscall] VMA may sit at
 * its fixed page above it); VMAs sorted and non-overlapping; strings
 * present where required, non-empty and shorter than PATH_MAX; counts
 * bounded (policy.h and the VAL_MAX_* of validate.h); enums in range;
 * signals 1..64.  Checks never allocate more than the message already
 * cost.  The fd records of an image (FileObject, FdEntry) are checked by
 * the restorer (restore/fd_validate.c, each kind its own part).
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "common/policy.h"
#include "common/validate.h"

#define VAL_NSIG 64

#define VAL_PROT_ALL  (PROT_READ | PROT_WRITE | PROT_EXEC)
#define VAL_FLAGS_ALL ((HAUL_VMA_GUARD << 1) - 1)

static int fail(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *why, size_t n, const char *fmt, ...)
{
	va_list ap;

	if (n) {
		va_start(ap, fmt);
		vsnprintf(why, n, fmt, ap);
		va_end(ap);
	}
	return -EBADMSG;
}

/* A C string the restorer may hand to the kernel: present if @required, bounded. */
static bool str_ok(const char *s, bool required)
{
	if (!s)
		return !required;
	return s[0] && strnlen(s, VAL_MAX_STR) < VAL_MAX_STR;
}

static bool sig_ok(uint64_t sig)
{
	return sig >= 1 && sig <= VAL_NSIG;
}

/* [addr, addr + npages pages) without overflow, page-aligned, below VAL_TASK_SIZE. */
static bool range_ok(uint64_t addr, uint64_t npages)
{
	return !(addr & (HAUL_PAGE_SIZE - 1)) && npages && addr < VAL_TASK_SIZE &&
	       npages <= (VAL_TASK_SIZE - addr) / HAUL_PAGE_SIZE;
}

/* One VMA: @prev_end is the previous VMA's end (0 for the first). */
static int vma_check(const char *what, size_t i, uint64_t start, uint64_t end, uint32_t prot,
		     uint32_t flags, const char *path, uint64_t prev_end, char *why, size_t n)
{
	if ((start | end) & (HAUL_PAGE_SIZE - 1) || start >= end)
		return fail(why, n, "%s[%zu]: range %#llx-%#llx is empty or not page-aligned", what,
			    i, (unsigned long long)start, (unsigned long long)end);
	if (start < prev_end)
		return fail(why, n, "%s[%zu]: %#llx-%#llx overlaps or precedes the VMA before it",
			    what, i, (unsigned long long)start, (unsigned long long)end);
	if (end > VAL_TASK_SIZE && !((flags & HAUL_VMA_VSYSCALL) && start == VAL_VSYSCALL_START &&
				     end == VAL_VSYSCALL_START + HAUL_PAGE_SIZE))
		return fail(why, n, "%s[%zu]: %#llx-%#llx lies outside the user address space",
			    what, i, (unsigned long long)start, (unsigned long long)end);
	if (prot & ~VAL_PROT_ALL)
		return fail(why, n, "%s[%zu]: unknown protection bits %#x", what, i, prot);
	if (flags & ~VAL_FLAGS_ALL)
		return fail(why, n, "%s[%zu]: unknown flag bits %#x", what, i, flags);
	if ((flags & HAUL_VMA_FILE) && !(flags & HAUL_VMA_SHMEM) && !str_ok(path, true))
		return fail(why, n, "%s[%zu]: file mapping %#llx-%#llx has %s path", what, i,
			    (unsigned long long)start, (unsigned long long)end,
			    path ? "an empty or over-long" : "no");
	if (!str_ok(path, false))
		return fail(why, n, "%s[%zu]: path is empty or longer than %d bytes", what, i,
			    VAL_MAX_STR - 1);
	return 0;
}

int val_layout(const struct haul_layout *l, char *why, size_t n)
{
	if (l->n > VAL_MAX_VMAS)
		return fail(why, n, "vmas: %zu VMAs, more than %d", l->n, VAL_MAX_VMAS);
	for (size_t i = 0; i < l->n; i++) {
		const struct haul_vma *v = &l->v[i];
		int ret = vma_check("vmas", i, v->start, v->end, v->prot, v->flags, v->path,
				    i ? l->v[i - 1].end : 0, why, n);

		if (ret)
			return ret;
	}
	return 0;
}

static int img_vmas(Haul__Img__Vma *const *v, size_t nv, char *why, size_t n)
{
	if (nv > VAL_MAX_VMAS)
		return fail(why, n, "vmas: %zu VMAs, more than %d", nv, VAL_MAX_VMAS);
	for (size_t i = 0; i < nv; i++) {
		int ret = vma_check("vmas", i, v[i]->start, v[i]->end, v[i]->prot, v[i]->flags,
				    v[i]->path, i ? v[i - 1]->end : 0, why, n);

		if (ret)
			return ret;
		/* guard pages are installed with madvise: inside their VMA, page aligned */
		for (size_t k = 0; k < v[i]->n_guards; k++) {
			const Haul__Img__GuardRange *g = v[i]->guards[k];

			if (g->start >= g->end || g->start < v[i]->start || g->end > v[i]->end ||
			    ((g->start | g->end) & (HAUL_PAGE_SIZE - 1)))
				return fail(
					why, n,
					"vmas[%zu]: guard pages %#llx-%#llx outside %#llx-%#llx", i,
					(unsigned long long)g->start, (unsigned long long)g->end,
					(unsigned long long)v[i]->start,
					(unsigned long long)v[i]->end);
		}
	}
	return 0;
}

/* ---- session and page messages ----------------------------------------------------- */

/*
 * Cgroup lines (procattr, SessionOpen): the restorer makes and writes
 * <mount><path>, so a path must be absolute with no ".." component, and
 * controllers (@clen bytes of @c) a plain comma list.
 */
static int cgroup_check(const char *what, size_t i, const char *c, size_t clen, const char *p,
			char *why, size_t n)
{
	if (!c || clen >= VAL_MAX_STR || memchr(c, '/', clen))
		return fail(why, n, "%s[%zu].controllers: missing, too long or with a '/'", what,
			    i);
	if (!str_ok(p, true) || p[0] != '/')
		return fail(why, n, "%s[%zu].path: not an absolute path", what, i);
	for (const char *q = p; (q = strstr(q, "/..")); q += 3)
		if (q[3] == '/' || !q[3])
			return fail(why, n, "%s[%zu].path: has a '..' component", what, i);
	return 0;
}

static int cgroups_check(const char *what, Haul__Img__Cgroup *const *cg, size_t ncg, char *why,
			 size_t n)
{
	if (ncg > VAL_MAX_CGROUPS)
		return fail(why, n, "%s: %zu, more than %d", what, ncg, VAL_MAX_CGROUPS);
	for (size_t i = 0; i < ncg; i++) {
		const char *c = cg[i]->controllers;

		if (cgroup_check(what, i, c, c ? strnlen(c, VAL_MAX_STR) : 0, cg[i]->path, why, n))
			return -EBADMSG;
	}
	return 0;
}

bool val_aa_profile_ok(const char *name)
{
	return name && name[0] && strnlen(name, VAL_MAX_AA_NAME) < VAL_MAX_AA_NAME &&
	       !strchr(name, '\n') && strcmp(name, "unconfined") && !strstr(name, "//&") &&
	       name[0] != ':';
}

int val_session_open(const Haul__Wire__SessionOpen *m, char *why, size_t n)
{
	if (!m->session_id)
		return fail(why, n, "session_id: 0");
	if (m->kind > HAUL__WIRE__SESSION_KIND__FETCH)
		return fail(why, n, "kind: unknown session kind %d", (int)m->kind);
	if (m->pid <= 0)
		return fail(why, n, "pid: %d", m->pid);
	if (!m->nstreams || m->nstreams > PS_MAX_STREAMS)
		return fail(why, n, "nstreams: %u (1..%d)", m->nstreams, PS_MAX_STREAMS);
	if (m->comm && strnlen(m->comm, VAL_MAX_STR) >= VAL_MAX_STR)
		return fail(why, n, "comm: longer than %d bytes", VAL_MAX_STR - 1);
	if (m->has_boot_id && m->boot_id.len != 16)
		return fail(why, n, "boot_id: %zu bytes, not 16", m->boot_id.len);
	if (m->n_cgroups > VAL_MAX_CGROUPS)
		return fail(why, n, "cgroups: %zu lines (at most %d)", m->n_cgroups,
			    VAL_MAX_CGROUPS);
	for (size_t i = 0; i < m->n_cgroups; i++) {
		const char *l = m->cgroups[i], *colon = strchr(l, ':');

		if (!colon)
			return fail(why, n, "cgroups[%zu]: not \"controllers:path\"", i);
		if (cgroup_check("cgroups", i, l, colon - l, colon + 1, why, n))
			return -EBADMSG;
	}
	if (m->n_apparmor_profiles > VAL_MAX_AA_PROFILES)
		return fail(why, n, "apparmor_profiles: %zu names (at most %d)",
			    m->n_apparmor_profiles, VAL_MAX_AA_PROFILES);
	for (size_t i = 0; i < m->n_apparmor_profiles; i++)
		if (!val_aa_profile_ok(m->apparmor_profiles[i]))
			return fail(why, n, "apparmor_profiles[%zu]: '%.64s' is not a profile name",
				    i, m->apparmor_profiles[i]);
	/* a tree's shape is checked by the restore sink (rst_tree_check) */
	if ((m->has_tree || m->has_tree_session) && m->kind != HAUL__WIRE__SESSION_KIND__LIVE)
		return fail(why, n, "tree: only a live session belongs to a tree");
	if (m->has_tree && m->has_tree_session)
		return fail(why, n, "tree_session: set with tree (a root names no other session)");
	if (m->has_tree_session && (!m->tree_session || m->tree_session == m->session_id))
		return fail(why, n, "tree_session: %016llx", (unsigned long long)m->tree_session);
	return 0;
}

int val_session_join(const Haul__Wire__SessionJoin *m, uint32_t nstreams, char *why, size_t n)
{
	bool resume = m->has_resume && m->resume, lane = m->has_lane && m->lane;

	if (!m->session_id)
		return fail(why, n, "session_id: 0");
	if (lane && (resume || m->stream != 0))
		return fail(why, n, "lane: on stream %u%s, not stream 0 alone", m->stream,
			    resume ? " with resume" : "");
	if (lane)
		return 0;
	if ((m->stream == 0 && !resume) || m->stream >= nstreams)
		return fail(why, n, "stream: %u of a %u-stream session", m->stream, nstreams);
	return 0;
}

int val_pages(const Haul__Wire__Pages *m, char *why, size_t n)
{
	if (m->n_ranges > WIRE_MAX_REQ_PAGES)
		return fail(why, n, "ranges: %zu, more than %u", m->n_ranges, WIRE_MAX_REQ_PAGES);
	for (size_t i = 0; i < m->n_ranges; i++) {
		const Haul__Wire__PageRange *r = m->ranges[i];

		if (r->npages > WIRE_MAX_REQ_PAGES || !range_ok(r->addr, r->npages))
			return fail(why, n, "ranges[%zu]: %u pages at %#llx", i, r->npages,
				    (unsigned long long)r->addr);
		if (r->enc > HAUL__WIRE__ENCODING__ZERO)
			return fail(why, n, "ranges[%zu]: unknown encoding %d", i, (int)r->enc);
	}
	return 0;
}

int val_page_req(const Haul__Wire__PageReq *m, char *why, size_t n)
{
	if (m->npages > WIRE_MAX_REQ_PAGES || !range_ok(m->addr, m->npages))
		return fail(why, n, "%u pages at %#llx (1..%u aligned pages in the user space)",
			    m->npages, (unsigned long long)m->addr, WIRE_MAX_REQ_PAGES);
	return 0;
}

int val_stale(const Haul__Wire__State *m, size_t max_ranges, char *why, size_t n)
{
	if (m->n_stale % 2)
		return fail(why, n, "stale: %zu numbers, not (addr, npages) pairs", m->n_stale);
	if (m->n_stale / 2 > max_ranges)
		return fail(why, n, "stale: %zu ranges, more than %zu", m->n_stale / 2, max_ranges);
	for (size_t i = 0; i < m->n_stale; i += 2)
		if (m->stale[i + 1] > UINT32_MAX || !range_ok(m->stale[i], m->stale[i + 1]))
			return fail(why, n, "stale[%zu]: %llu pages at %#llx", i / 2,
				    (unsigned long long)m->stale[i + 1],
				    (unsigned long long)m->stale[i]);
	return 0;
}

/* ---- process state ---------------------------------------------------------------------- */

static int pending_check(const char *what, Haul__Img__PendingSignal *const *p, size_t np, char *why,
			 size_t n)
{
	for (size_t i = 0; i < np; i++) {
		int32_t signo;

		if (p[i]->siginfo.len != 128)
			return fail(why, n, "%s[%zu].siginfo: %zu bytes, not 128", what, i,
				    p[i]->siginfo.len);
		memcpy(&signo, p[i]->siginfo.data, sizeof(signo));
		if (!sig_ok((uint64_t)(int64_t)signo))
			return fail(why, n, "%s[%zu]: signal %d (1..%d)", what, i, signo, VAL_NSIG);
	}
	return 0;
}

static int rseq_check(const char *what, const Haul__Img__Rseq *r, char *why, size_t n)
{
	if (r && (r->addr >= VAL_TASK_SIZE || r->len > HAUL_PAGE_SIZE))
		return fail(why, n, "%s.rseq: %u bytes at %#llx", what, r->len,
			    (unsigned long long)r->addr);
	return 0;
}

static int thread_check(const Haul__Img__ThreadState *th, size_t i, char *why, size_t n)
{
	char what[48];

	snprintf(what, sizeof(what), "threads[%zu]", i);
	if (th->tid <= 0)
		return fail(why, n, "%s.tid: %d", what, th->tid);
	if (th->xstate.len > VAL_MAX_XSTATE)
		return fail(why, n, "%s.xstate: %zu bytes, more than %u", what, th->xstate.len,
			    VAL_MAX_XSTATE);
	if (th->comm && strnlen(th->comm, VAL_MAX_STR) >= VAL_MAX_STR)
		return fail(why, n, "%s.comm: longer than %d bytes", what, VAL_MAX_STR - 1);
	if (th->n_pending > 2 * VAL_NSIG * 1024)
		return fail(why, n, "%s.pending: %zu signals", what, th->n_pending);
	if (rseq_check(what, th->rseq, why, n))
		return -EBADMSG;
	snprintf(what, sizeof(what), "threads[%zu].cgroups", i);
	if (cgroups_check(what, th->cgroups, th->n_cgroups, why, n))
		return -EBADMSG;
	snprintf(what, sizeof(what), "threads[%zu].pending", i);
	return pending_check(what, th->pending, th->n_pending, why, n);
}

static int mm_check(const Haul__Img__MmMap *mm, char *why, size_t n)
{
	const uint64_t a[] = {mm->start_code, mm->end_code,  mm->start_data,  mm->end_data,
			      mm->start_brk,  mm->brk,	     mm->start_stack, mm->arg_start,
			      mm->arg_end,    mm->env_start, mm->env_end};

	for (size_t i = 0; i < sizeof(a) / sizeof(a[0]); i++)
		if (a[i] >= VAL_TASK_SIZE)
			return fail(why, n, "mm: address %#llx outside the user address space",
				    (unsigned long long)a[i]);
	if (!str_ok(mm->exe, true))
		return fail(why, n, "mm.exe: empty or longer than %d bytes", VAL_MAX_STR - 1);
	return 0;
}

/* The process-wide scalars and strings. */
static int proc_check(const Haul__Img__ProcessState *ps, char *why, size_t n)
{
	if (!str_ok(ps->kernel_release, true) || !str_ok(ps->arch, true))
		return fail(why, n, "kernel_release/arch: missing or longer than %d bytes",
			    VAL_MAX_STR - 1);
	if (ps->pid <= 0)
		return fail(why, n, "pid: %d", ps->pid);
	if (strnlen(ps->comm, VAL_MAX_STR) >= VAL_MAX_STR)
		return fail(why, n, "comm: longer than %d bytes", VAL_MAX_STR - 1);
	if (!str_ok(ps->cwd, true))
		return fail(why, n, "cwd: empty or longer than %d bytes", VAL_MAX_STR - 1);
	/* a deleted cwd is made again by haul under the stub's root (cwd_ghost.c) */
	if (ps->has_cwd_deleted && ps->cwd_deleted) {
		if (ps->cwd[0] != '/' || (ps->has_cwd_mode && ps->cwd_mode & ~07777u))
			return fail(why, n, "cwd (deleted): not an absolute path, or mode %#o",
				    ps->cwd_mode);
		for (const char *q = ps->cwd; (q = strstr(q, "/..")); q += 3)
			if (q[3] == '/' || !q[3])
				return fail(why, n, "cwd (deleted): has a '..' component");
	}
	if (ps->xstate.len > VAL_MAX_XSTATE)
		return fail(why, n, "xstate: %zu bytes, more than %u", ps->xstate.len,
			    VAL_MAX_XSTATE);
	if (ps->auxv.len > VAL_MAX_AUXV || ps->auxv.len % 16)
		return fail(why, n, "auxv: %zu bytes (pairs of 8-byte words, at most %d)",
			    ps->auxv.len, VAL_MAX_AUXV);
	if (ps->umask & ~0777u)
		return fail(why, n, "umask: %#o", ps->umask);
	if (ps->has_pdeathsig && ps->pdeathsig && !sig_ok((uint64_t)(int64_t)ps->pdeathsig))
		return fail(why, n, "pdeathsig: signal %d (0..%d)", ps->pdeathsig, VAL_NSIG);
	if (ps->has_job_stop_signal && ps->job_stop_signal && ps->job_stop_signal != SIGSTOP &&
	    ps->job_stop_signal != SIGTSTP && ps->job_stop_signal != SIGTTIN &&
	    ps->job_stop_signal != SIGTTOU)
		return fail(why, n, "job_stop_signal: %d, not a stop signal", ps->job_stop_signal);
	if (ps->has_nice && (ps->nice < -20 || ps->nice > 19))
		return fail(why, n, "nice: %d (-20..19)", ps->nice);
	if (ps->creds->n_groups > VAL_MAX_GROUPS)
		return fail(why, n, "creds.groups: %zu, more than %d", ps->creds->n_groups,
			    VAL_MAX_GROUPS);
	if (ps->n_threads > VAL_MAX_THREADS)
		return fail(why, n, "threads: %zu, more than %d", ps->n_threads, VAL_MAX_THREADS);
	if (ps->has_oom_score_adj && (ps->oom_score_adj < -1000 || ps->oom_score_adj > 1000))
		return fail(why, n, "oom_score_adj: %d (-1000..1000)", ps->oom_score_adj);
	if (cgroups_check("cgroups", ps->cgroups, ps->n_cgroups, why, n))
		return -EBADMSG;
	return rseq_check("state", ps->rseq, why, n);
}

/* ShmObjects: known kinds, a memfd name memfd_create takes. */
static int shm_check(const Haul__Img__ProcessState *ps, char *why, size_t n)
{
	if (ps->n_shm_objects > VAL_MAX_VMAS + VAL_MAX_FDS)
		return fail(why, n, "shm_objects: %zu", ps->n_shm_objects);
	for (size_t i = 0; i < ps->n_shm_objects; i++) {
		const Haul__Img__ShmObject *o = ps->shm_objects[i];

		if (o->kind > HAUL__IMG__SHM_KIND__SHM_POSIX)
			return fail(why, n, "shm_objects[%zu].kind: unknown kind %d", i,
				    (int)o->kind);
		if (o->name && strnlen(o->name, VAL_MAX_STR) >= VAL_MAX_STR)
			return fail(why, n, "shm_objects[%zu].name: longer than %d bytes", i,
				    VAL_MAX_STR - 1);
	}
	return 0;
}

int val_process_state(const Haul__Img__ProcessState *ps, char *why, size_t n)
{
	int ret = proc_check(ps, why, n);

	if (!ret)
		ret = mm_check(ps->mm, why, n);
	if (ret)
		return ret;
	if (ps->n_sigactions > VAL_NSIG)
		return fail(why, n, "sigactions: %zu, more than %d", ps->n_sigactions, VAL_NSIG);
	for (size_t i = 0; i < ps->n_sigactions; i++)
		if (!sig_ok(ps->sigactions[i]->signo))
			return fail(why, n, "sigactions[%zu].signo: %u (1..%d)", i,
				    ps->sigactions[i]->signo, VAL_NSIG);
	if (ps->n_rlimits > RLIM_NLIMITS)
		return fail(why, n, "rlimits: %zu, more than %d", ps->n_rlimits, RLIM_NLIMITS);
	for (size_t i = 0; i < ps->n_rlimits; i++)
		if (ps->rlimits[i]->resource >= RLIM_NLIMITS)
			return fail(why, n, "rlimits[%zu].resource: %u (0..%d)", i,
				    ps->rlimits[i]->resource, RLIM_NLIMITS - 1);
	if (ps->n_itimers > 3)
		return fail(why, n, "itimers: %zu, more than 3", ps->n_itimers);
	for (size_t i = 0; i < ps->n_itimers; i++)
		if (ps->itimers[i]->which > 2)
			return fail(why, n, "itimers[%zu].which: %u (0..2)", i,
				    ps->itimers[i]->which);
	if (ps->n_pending > 2 * VAL_NSIG * 1024)
		return fail(why, n, "pending: %zu signals", ps->n_pending);
	ret = pending_check("pending", ps->pending, ps->n_pending, why, n);
	for (size_t i = 0; i < ps->n_threads && !ret; i++)
		ret = thread_check(ps->threads[i], i, why, n);
	if (!ret)
		ret = img_vmas(ps->vmas, ps->n_vmas, why, n);
	if (!ret)
		ret = shm_check(ps, why, n);
	/* the fd records (FileObject, FdEntry): restore/fd_validate.c, at the restore */
	return ret;
}

int val_state_blob(const void *blob, size_t len, char *why, size_t n)
{
	Haul__Img__ProcessState *ps = haul__img__process_state__unpack(NULL, len, blob);
	int ret;

	if (!ps)
		return fail(why, n, "the process state does not parse (corrupt or truncated)");
	ret = val_process_state(ps, why, n);
	haul__img__process_state__free_unpacked(ps, NULL);
	return ret;
}

/* ---- image records ---------------------------------------------------------------------- */

int val_image_index(const Haul__Wire__ImageIndex *m, int32_t pid, uint64_t file_slots, char *why,
		    size_t n)
{
	if (m->pid != pid)
		return fail(why, n, "pid: %d in the index of pid %d", m->pid, pid);
	if (m->nslots > file_slots)
		return fail(why, n, "nslots: %llu, but pages.img holds %llu pages",
			    (unsigned long long)m->nslots, (unsigned long long)file_slots);
	if (m->comm && strnlen(m->comm, VAL_MAX_STR) >= VAL_MAX_STR)
		return fail(why, n, "comm: longer than %d bytes", VAL_MAX_STR - 1);
	if (m->n_vmas > VAL_MAX_VMAS)
		return fail(why, n, "vmas: %zu VMAs, more than %d", m->n_vmas, VAL_MAX_VMAS);
	for (size_t i = 0; i < m->n_vmas; i++) {
		const Haul__Wire__Vma *v = m->vmas[i];
		int ret = vma_check("vmas", i, v->start, v->end, v->prot, v->flags, v->path,
				    i ? m->vmas[i - 1]->end : 0, why, n);

		if (ret)
			return ret;
	}
	for (size_t i = 0; i < m->n_runs; i++) {
		const Haul__Wire__PageRun *r = m->runs[i];

		if (!range_ok(r->addr, r->npages))
			return fail(why, n,
				    "runs[%zu]: %u pages at %#llx (aligned, in the user "
				    "address space)",
				    i, r->npages, (unsigned long long)r->addr);
		if (r->slot != UINT64_MAX &&
		    (r->slot > m->nslots || r->npages > m->nslots - r->slot))
			return fail(why, n, "runs[%zu]: slots %llu+%u past nslots %llu", i,
				    (unsigned long long)r->slot, r->npages,
				    (unsigned long long)m->nslots);
	}
	return 0;
}
