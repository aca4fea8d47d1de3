/*
 * lazy_src.c - the source side of post-copy: pages of the frozen process.
 *
 * After switchover the source process stays frozen (never resumed) and is
 * the only copy of the memory that has not reached the target yet; each
 * page request from the target is answered from it with process_vm_readv
 * (5-8 GB/s for large reads on a 2-core VM), and with /proc/PID/mem for pages
 * the process itself cannot read (PROT_NONE, write-only).  Requests are
 * checked against the layout frozen with the process, so a peer cannot read
 * anything else of it.  A pidfd is checked after every read: a PID that
 * died and was reused must never answer for it (the data read is dropped).
 * Thread-safe: no state changes after open but the served counter.
 *
 * rst_lazy_session_fetch: the target side of the same over a live session
 * (the page server carries the request to the source's ps_client_serve).
 *
 * rst_lazy_ps: the same role played by a page server that holds a committed
 * image (lazy restore from `haul checkpoint --page-server`).  A ps_client
 * answers one request at a time, so a small pool of FETCH sessions lets the
 * fault-fetch threads and the fetchers ask concurrently; a thread takes a
 * free session, asks, and gives it back.
 */
#define LOG_PREFIX "lazy: "
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/proc.h"
#include "common/rsys.h"
#include "restore/lazy.h"

struct rst_lazy_src {
	pid_t pid;
	int pidfd;
	struct haul_layout l;
	uint64_t served; /* atomic */
};

int rst_lazy_src_open(pid_t pid, const struct haul_layout *vmas, struct rst_lazy_src **out)
{
	struct rst_lazy_src *s = calloc(1, sizeof(*s));
	int ret;

	if (!s)
		return -ENOMEM;
	s->pid = pid;
	s->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (s->pidfd < 0) {
		ret = -errno;
		pr_err_r(ret, "cannot open a pidfd for source pid %d", pid);
		free(s);
		return ret;
	}
	ret = haul_layout_copy(vmas, &s->l);
	if (ret) {
		close(s->pidfd);
		free(s);
		return ret;
	}
	*out = s;
	return 0;
}

static bool gone(const struct rst_lazy_src *s)
{
	struct pollfd p = {.fd = s->pidfd, .events = POLLIN};

	return poll(&p, 1, 0) != 0;
}

/* Whether [addr, end) lies inside the VMAs (which may be adjacent). */
static bool inside(const struct rst_lazy_src *s, uint64_t addr, uint64_t end)
{
	while (addr < end) {
		const struct haul_vma *v = haul_layout_find(&s->l, addr);

		if (!v)
			return false;
		addr = v->end;
	}
	return true;
}

int rst_lazy_src_read(struct rst_lazy_src *s, uint64_t addr, uint32_t npages, void *buf)
{
	uint64_t len = (uint64_t)npages * HAUL_PAGE_SIZE;
	struct iovec l = {buf, len}, r = {(void *)(uintptr_t)addr, len};
	ssize_t n;
	int ret = 0;

	if ((addr & (HAUL_PAGE_SIZE - 1)) || !npages || addr + len < addr ||
	    !inside(s, addr, addr + len)) {
		pr_err("request for %u pages at %#lx of pid %d is outside its memory", npages,
		       (unsigned long)addr, s->pid);
		return -ERANGE;
	}
	n = process_vm_readv(s->pid, &l, 1, &r, 1, 0);
	if (n != (ssize_t)len) {
		/* Short or refused (PROT_NONE): /proc/PID/mem reads like a debugger. */
		ret = rsys_read(s->pid, addr, buf, len);
	}
	if (gone(s)) {
		pr_err("source pid %d is gone: its pages cannot be served any more", s->pid);
		return -EHOSTDOWN;
	}
	if (ret) {
		pr_err_r(ret, "cannot read %u pages at %#lx of pid %d", npages, (unsigned long)addr,
			 s->pid);
		return ret == -ESRCH ? -EHOSTDOWN : ret;
	}
	__atomic_fetch_add(&s->served, npages, __ATOMIC_RELAXED);
	return 0;
}

uint64_t rst_lazy_src_served(struct rst_lazy_src *s)
{
	return __atomic_load_n(&s->served, __ATOMIC_RELAXED);
}

void rst_lazy_src_free(struct rst_lazy_src *s)
{
	if (!s)
		return;
	close(s->pidfd);
	haul_layout_release(&s->l);
	free(s);
}

int rst_lazy_src_fetch(void *arg, uint64_t addr, uint32_t npages, void *buf)
{
	return rst_lazy_src_read(arg, addr, npages, buf);
}

/* ---- a page server as the source ---------------------------------------------- */

struct rst_lazy_ps {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct ps_client **c;
	bool *busy; /* c[i] is in use by a fetching thread */
	unsigned n;
	int err; /* the first failure: every later fetch fails with it */
	char to[128];
};

int rst_lazy_ps_open(const struct ps_client_opts *o, unsigned n, struct rst_lazy_ps **out)
{
	struct ps_client_opts fo = *o;
	struct rst_lazy_ps *p = calloc(1, sizeof(*p));
	int ret = 0;

	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cv, NULL);
	snprintf(p->to, sizeof(p->to), "%s", o->to ? o->to : "?");
	p->c = calloc(n ? n : 1, sizeof(*p->c));
	p->busy = calloc(n ? n : 1, sizeof(*p->busy));
	if (!p->c || !p->busy) {
		rst_lazy_ps_free(p);
		return -ENOMEM;
	}
	fo.kind = PS_SESSION_FETCH;
	fo.nstreams = 1;
	for (unsigned i = 0; i < n; i++) {
		ret = ps_client_new(&fo, &p->c[i]);
		if (ret) {
			pr_err_r(ret, "cannot open fetch session %u to %s for pid %d", i, p->to,
				 o->pid);
			rst_lazy_ps_free(p);
			return ret;
		}
		p->n++;
	}
	*out = p;
	return 0;
}

/* Take session @want (fault path), or any free one but the fault session. Under p->lock. */
static struct ps_client *take(struct rst_lazy_ps *p, bool fault)
{
	for (unsigned i = 0; i < p->n; i++) {
		/* With >= 2 sessions, session 0 is the fault path's alone. */
		if (p->busy[i] || (p->n >= 2 && (i == 0) != fault))
			continue;
		p->busy[i] = true;
		return p->c[i];
	}
	return NULL;
}

static void give_back(struct rst_lazy_ps *p, struct ps_client *c)
{
	for (unsigned i = 0; i < p->n; i++)
		if (p->c[i] == c)
			p->busy[i] = false;
}

static int ps_fetch(struct rst_lazy_ps *p, bool fault, uint64_t addr, uint32_t npages, void *buf)
{
	struct ps_client *c = NULL;
	int ret = 0;

	pthread_mutex_lock(&p->lock);
	while (!p->err && !(c = take(p, fault)))
		pthread_cond_wait(&p->cv, &p->lock);
	if (p->err) {
		ret = p->err;
		pthread_mutex_unlock(&p->lock);
		return ret;
	}
	pthread_mutex_unlock(&p->lock);

	for (uint32_t done = 0; !ret && done < npages;) {
		uint32_t k = npages - done;

		if (k > WIRE_MAX_REQ_PAGES)
			k = WIRE_MAX_REQ_PAGES;
		ret = ps_client_fetch(c, addr + (uint64_t)done * HAUL_PAGE_SIZE, k,
				      (char *)buf + (uint64_t)done * HAUL_PAGE_SIZE);
		done += k;
	}
	/* -ESRCH would read as "the restored process exited" (lazy.h). */
	if (ret == -ESRCH)
		ret = -EHOSTDOWN;

	pthread_mutex_lock(&p->lock);
	give_back(p, c);
	if (ret && !p->err) {
		p->err = ret;
		pr_err_r(ret, "page server %s stopped answering page requests", p->to);
	}
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->lock);
	return ret;
}

int rst_lazy_ps_fetch(void *arg, uint64_t addr, uint32_t npages, void *buf)
{
	return ps_fetch(arg, false, addr, npages, buf);
}

int rst_lazy_ps_fetch_fault(void *arg, uint64_t addr, uint32_t npages, void *buf)
{
	return ps_fetch(arg, true, addr, npages, buf);
}

void rst_lazy_ps_free(struct rst_lazy_ps *p)
{
	if (!p)
		return;
	for (unsigned i = 0; i < p->n; i++)
		ps_client_free(p->c[i]);
	free(p->c);
	free(p->busy);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static int session_fetch(void *arg, uint64_t addr, uint32_t npages, void *buf, bool urgent)
{
	int ret = 0;

	for (uint32_t done = 0; !ret && done < npages;) {
		uint32_t k = npages - done;
		uint64_t a = addr + (uint64_t)done * HAUL_PAGE_SIZE;
		void *b = (char *)buf + (uint64_t)done * HAUL_PAGE_SIZE;

		if (k > WIRE_MAX_REQ_PAGES)
			k = WIRE_MAX_REQ_PAGES;
		ret = urgent ? ps_session_fetch_urgent(arg, a, k, b)
			     : ps_session_fetch(arg, a, k, b);
		done += k;
	}
	/* -ESRCH would read as "the restored process exited" (lazy.h). */
	return ret == -ESRCH ? -EHOSTDOWN : ret;
}

int rst_lazy_session_fetch(void *arg, uint64_t addr, uint32_t npages, void *buf)
{
	return session_fetch(arg, addr, npages, buf, false);
}

int rst_lazy_session_fetch_fault_try(void *arg, uint64_t addr, uint32_t npages, void *buf)
{
	/* whatever kept the lane from answering, the fault-fetch threads try the streams */
	return ps_session_lane_fetch(arg, addr, npages, buf) ? -EAGAIN : 0;
}

int rst_lazy_session_fetch_fault(void *arg, uint64_t addr, uint32_t npages, void *buf)
{
	/*
	 * The fault lane first (a request and its reply on this thread); when
	 * it is busy, absent or broken, stream 0 through the loop thread, which
	 * also retries what the lane failed (a lane that fails once is gone).
	 */
	if (npages <= WIRE_MAX_REQ_PAGES && !ps_session_lane_fetch(arg, addr, npages, buf))
		return 0;
	return session_fetch(arg, addr, npages, buf, true);
}

#ifndef PTRACE_GET_RSEQ_CONFIGURATION
#define PTRACE_GET_RSEQ_CONFIGURATION 0x420f
#endif

/* struct ptrace_rseq_configuration (linux/ptrace.h, which clashes with sys/ptrace.h). */
struct lazy_rseq_conf {
	uint64_t ptr;
	uint32_t size, sig, flags, pad;
};

/*
 * The rseq area of thread @tid (seized and stopped) as a page range in
 * *@r when it lies in a lazy VMA of @l: the restore registers it with an
 * injected call, which the kernel answers by writing to it, before any
 * page can be fetched.  0 (nothing to add, *@r empty too), or -errno.
 */
static int rseq_range(pid_t tid, const struct haul_layout *l, struct rst_lazy_range *r)
{
	struct lazy_rseq_conf rc;

	*r = (struct rst_lazy_range){0, 0};
	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, sizeof(rc), &rc) == (long)sizeof(rc) &&
	    rc.ptr) {
		uint64_t s = rc.ptr & ~(HAUL_PAGE_SIZE - 1);
		uint64_t e = (rc.ptr + (rc.size ? rc.size : 32) + HAUL_PAGE_SIZE - 1) &
			     ~(HAUL_PAGE_SIZE - 1);
		const struct haul_vma *v = haul_layout_find(l, s);

		if (v && rst_lazy_vma_ok(v))
			*r = (struct rst_lazy_range){s, e};
		return 0;
	}
	/* No rseq (EINVAL on old kernels) is fine; not being its tracer is not. */
	if (errno == EIO || errno == EINVAL)
		return 0;
	pr_err_r(-errno, "cannot read the rseq area of thread %d", (int)tid);
	return -errno;
}

int rst_lazy_eager_ranges(pid_t pid, const struct haul_layout *l, struct rst_lazy_range **out,
			  size_t *n)
{
	struct rst_lazy_range *r = NULL;
	pid_t *tids = NULL;
	size_t k = 0, ntids = 0;
	int ret = 0;

	/* every thread's rseq page (the process is stopped: its threads are known) */
	if (pid > 0)
		ret = haul_proc_tids(pid, &tids, &ntids);
	if (!ret)
		r = calloc(l->n + ntids + 1, sizeof(*r));
	if (!ret && !r)
		ret = -ENOMEM;
	for (size_t i = 0; !ret && i < l->n; i++) {
		const struct haul_vma *v = &l->v[i];

		/* PROT_NONE too: its pages are read through /proc/PID/mem */
		if (haul_vma_is_memory(v) && !rst_lazy_vma_ok(v))
			r[k++] = (struct rst_lazy_range){v->start, v->end};
	}
	for (size_t i = 0; !ret && i < ntids; i++) {
		ret = rseq_range(tids[i], l, &r[k]);
		if (!ret && r[k].end > r[k].start)
			k++;
	}
	free(tids);
	if (ret) {
		free(r);
		return ret;
	}
	*out = r;
	*n = k;
	return 0;
}

int rst_lazy_serve(struct ps_client *c, pid_t pid, const struct haul_layout *l, int idle_ms)
{
	struct rst_lazy_src *src;
	int ret = rst_lazy_src_open(pid, l, &src);

	if (ret)
		return ret;
	ret = ps_client_serve(c, rst_lazy_src_fetch, src, idle_ms);
	if (ret)
		pr_err_r(ret,
			 "post-copy of pid %d ended before the target had every page "
			 "(%lu served); the target cannot go on without them",
			 pid, (unsigned long)rst_lazy_src_served(src));
	else
		pr_info("post-copy of pid %d complete: %lu pages served", pid,
			(unsigned long)rst_lazy_src_served(src));
	rst_lazy_src_free(src);
	return ret;
}
