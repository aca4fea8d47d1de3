/*
 * lazy_restore.c - post-copy restore of a real process, end to end on one
 * host: rst_counter (anonymous, heap, stack, shmem, file mappings, signals,
 * files) is seized and dumped and stays frozen as the source; a restore
 * target rebuilds it in a new PID namespace with only its file-backed and
 * mlocked memory written, registers the rest with userfaultfd through the
 * before_resume hook, and resumes it at once.  Its memory then comes from
 * the frozen original (process_vm_readv), on faults and in the background.
 * The restored process must finish with the same hash as an undisturbed run.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/rsys.h"
#include "common/vma.h"
#include "restore/lazy.h"
#include "restore/restore.h"
#include "th_rst.h"
#include "th_verify.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/*
 * Fault fetches made while the restorer is inside rst_target_resume are held
 * for 2 s, as a page server's fetch would be while its loop thread (the
 * restorer) is busy: if the restorer itself waits for such a page, the
 * resume takes that long; if the page was wanted by the process after it was
 * let go (the end of rst_target_resume), the resume does not.
 * Every fetch also counts those made by a real-time thread: the resume runs
 * SCHED_FIFO (target_boost.c), and the fault server it starts must not.
 */
struct guard {
	struct rst_lazy_src *src;
	atomic_int in_resume;
	atomic_int during;
	atomic_int realtime;
};

static void count_realtime(struct guard *g)
{
	int policy = sched_getscheduler(0);

	if (policy == SCHED_FIFO || policy == SCHED_RR)
		atomic_fetch_add(&g->realtime, 1);
}

static int guarded_fault_fetch(void *arg, uint64_t addr, uint32_t npages, void *buf)
{
	struct guard *g = arg;

	count_realtime(g);
	if (atomic_load(&g->in_resume)) {
		atomic_fetch_add(&g->during, 1);
		usleep(2000000); /* the behaviour under test: a fetch held while the loop is busy */
	}
	return rst_lazy_src_fetch(g->src, addr, npages, buf);
}

static int plain_fetch(void *arg, uint64_t addr, uint32_t npages, void *buf)
{
	struct guard *g = arg;

	count_realtime(g);
	return rst_lazy_src_fetch(g->src, addr, npages, buf);
}

/*
 * Restore rst_counter post-copy from its frozen original.  With
 * @rseq_eager, the page of its rseq area is written before resume like
 * the file-backed pages: then the restorer itself must never wait for a
 * lazy page (a page server's restorer could not: its loop is the tracer).
 * E2E_HYBRID: as after pre-copy rounds (below); E2E_COMPLETE: the same with
 * the zero pages left out of the stub, as the page store leaves them, and
 * the source's word that every non-stale page is there (State.complete).
 */
enum e2e_mode {
	E2E_PLAIN,
	E2E_RSEQ,
	E2E_HYBRID,
	E2E_COMPLETE
};

/* Write the @len bytes at @buf to @addr of the stub, leaving out all-zero pages. */
static int pages_but_zero(struct rst_target *t, uint64_t addr, const char *buf, size_t len)
{
	static const char zero[4096];
	int ret = 0;

	for (size_t off = 0; !ret && off < len; off += 4096)
		if (memcmp(buf + off, zero, 4096))
			ret = rst_target_pages(t, addr + off, buf + off, 1);
	return ret;
}

static void e2e(enum e2e_mode mode)
{
	bool rseq_eager = mode != E2E_PLAIN;
	struct rst_lazy_range *stale = NULL;
	size_t nstale = 0;
	char dir[256], out[600], want[128], got[128], why[256], cmd[700];
	struct rst_lazy_hook h = {0};
	struct rst_target_opts o = {.pidns = RST_PIDNS_ALWAYS,
				    .lazy = true,
				    .before_resume = rst_lazy_before_resume,
				    .before_resume_arg = &h};
	struct guard g = {0};
	struct rst_lazy_stats st;
	struct rst_seized *sz;
	struct rst_target *t;
	struct haul_layout l;
	uint8_t *state;
	size_t state_len;
	uint64_t eager = 0, t0, resume_ns;
	struct th_state *before;
	int status, ret;
	pid_t pid, here;

	log_init("test");
	snprintf(dir, sizeof(dir), "/tmp/haul-lazy-e2e-%d-%d", (int)getpid(), (int)mode);
	mkdir(dir, 0755);
	th_expected_final(dir, "1500", "32", want, sizeof(want));

	snprintf(out, sizeof(out), "%s/run.out", dir);
	pid = th_spawn_counter(dir, out, "1500", "32", "1000");
	th_wait_counter(pid, out, 2);

	/* Source: seized and dumped; it stays stopped while it serves its pages. */
	cr_assert_eq(th_state_take(pid, TH_VERIFY_LIVE | TH_VERIFY_NO_INJECT, &before), 0);
	cr_assert_eq(rst_seize(pid, &sz), 0);
	cr_assert_eq(rst_dump_state(sz, &state, &state_len), 0);
	cr_assert_eq(haul_layout_read(pid, true, &l), 0);
	cr_assert_eq(rst_lazy_src_open(pid, &l, &g.src), 0);
	/* Background fetches go straight to the source; faults through the guard. */
	h.src = (struct rst_lazy_source){
		.fetch = plain_fetch, .arg = &g, .fetch_fault = guarded_fault_fetch};

	/* Target: only what cannot be lazy is written before resume. */
	o.pid = pid;
	cr_assert_eq(rst_target_new(&o, &t), 0);
	ret = rst_target_layout(t, &l);
	if (rseq_eager) {
		/* What migrate sends before resume: rst_lazy_eager_ranges(). */
		struct rst_lazy_range *r;
		size_t n;

		cr_assert_eq(rst_lazy_eager_ranges(pid, &l, &r, &n), 0);
		for (size_t i = 0; !ret && i < n; i++) {
			size_t len = r[i].end - r[i].start;
			void *buf = malloc(len);

			cr_assert_not_null(buf);
			ret = rsys_read(pid, r[i].start, buf, len);
			if (!ret)
				ret = rst_target_pages(t, r[i].start, buf, (uint32_t)(len >> 12));
			eager += len >> 12;
			free(buf);
		}
		free(r);
	}
	for (size_t i = 0; !rseq_eager && !ret && i < l.n; i++) {
		const struct haul_vma *v = &l.v[i];
		size_t len = v->end - v->start;
		void *buf;

		if (!haul_vma_is_memory(v) || !(v->prot & PROT_READ) || rst_lazy_vma_ok(v))
			continue;
		buf = malloc(len);
		cr_assert_not_null(buf);
		ret = rsys_read(pid, v->start, buf, len);
		if (!ret)
			ret = rst_target_pages(t, v->start, buf, (uint32_t)(len >> 12));
		eager += len >> 12;
		free(buf);
	}
	if (mode == E2E_HYBRID || mode == E2E_COMPLETE) {
		/*
		 * As after pre-copy rounds: every lazy page is in the stub too, but
		 * one in 16 holds stale data (dirtied after its last round): those
		 * are named stale, zapped by the hook and fetched again.
		 */
		for (size_t i = 0; !ret && i < l.n; i++) {
			const struct haul_vma *v = &l.v[i];
			size_t len = v->end - v->start;
			char *buf;

			if (!rst_lazy_vma_ok(v) || !(v->prot & PROT_READ))
				continue;
			buf = malloc(len);
			cr_assert_not_null(buf);
			ret = rsys_read(pid, v->start, buf, len);
			for (size_t off = 0; !ret && off < len; off += 16 * 4096) {
				memset(buf + off, 0xa5, 4096);
				stale = realloc(stale, (nstale + 1) * sizeof(*stale));
				cr_assert_not_null(stale);
				stale[nstale++] = (struct rst_lazy_range){v->start + off,
									  v->start + off + 4096};
			}
			if (!ret && mode == E2E_COMPLETE)
				ret = pages_but_zero(t, v->start, buf, len);
			else if (!ret)
				ret = rst_target_pages(t, v->start, buf, (uint32_t)(len >> 12));
			free(buf);
		}
		h.stale = stale;
		h.nstale = nstale;
		h.complete = mode == E2E_COMPLETE;
	}
	cr_assert_eq(ret, 0, "eager pages: %s", strerror(-ret));
	t0 = now_ns();
	atomic_store(&g.in_resume, 1);
	ret = rst_target_resume(t, state, state_len, &here, why, sizeof(why));
	atomic_store(&g.in_resume, 0);
	resume_ns = now_ns() - t0;
	cr_assert_eq(ret, 0, "resume: %s", why);
	th_verify_same(before, here, TH_VERIFY_LIVE | TH_VERIFY_NO_INJECT, "rst_counter (lazy)");
	th_state_free(before);
	cr_assert_not_null(h.lz);
	cr_assert_gt(h.lazy.n, 0);

	ret = rst_lazy_wait_complete(h.lz, 60000);
	rst_lazy_stats(h.lz, &st);
	cr_expect(ret == 0 || ret == -ESRCH, "post-copy: %s", strerror(-ret));
	cr_expect_eq(atomic_load(&g.realtime), 0,
		     "%d fetches ran real-time, as the resume that started the fault server",
		     atomic_load(&g.realtime));
	/* Every page has arrived (or the process finished first): the source may go. */
	rst_kill_seized(sz);
	status = rst_target_wait(t);
	cr_expect_eq(status, 0, "restored process exit status %d", status);
	th_final_line(out, got, sizeof(got));
	cr_expect_str_eq(got, want, "the restored run diverged");
	if (mode == E2E_HYBRID || mode == E2E_COMPLETE)
		cr_expect_leq(st.fault_pages + st.pushed_pages, nstale,
			      "%lu pages fetched for %zu stale ones",
			      (unsigned long)(st.fault_pages + st.pushed_pages), nstale);
	/* the zero pages left out were taken as zero, not fetched */
	if (mode == E2E_COMPLETE)
		cr_expect_gt(st.settled_pages, 0, "no absent page was taken as zero");
	if (rseq_eager)
		cr_expect_lt(resume_ns, 1500000000ull,
			     "the restorer waited for a lazy page: resume took %.0f ms",
			     resume_ns / 1e6);
	cr_log_info(
		"lazy e2e%s: %zu lazy VMAs (%lu pages), %lu eager pages, resume %.2f ms "
		"(%d fault fetches held during it), %lu faults (p50 %lu ns p99 %lu ns), %lu pushed, "
		"all in %.1f ms",
		mode == E2E_COMPLETE ? " (hybrid, complete)"
		: mode == E2E_HYBRID ? " (hybrid)"
		: rseq_eager	     ? " (rseq page eager)"
				     : "",
		h.lazy.n, (unsigned long)st.total_pages, (unsigned long)eager, resume_ns / 1e6,
		atomic_load(&g.during), (unsigned long)st.faults, (unsigned long)st.fault_p50_ns,
		(unsigned long)st.fault_p99_ns, (unsigned long)st.pushed_pages,
		st.complete_ns / 1e6);

	rst_lazy_free(h.lz);
	haul_layout_release(&h.lazy);
	rst_target_free(t);
	rst_lazy_src_free(g.src);
	haul_layout_release(&l);
	free(state);
	free(stale);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", dir);
}

Test(lazy, real_process_restored_post_copy_from_its_frozen_original, .timeout = 120)
{
	e2e(E2E_PLAIN);
}

Test(lazy, restorer_never_waits_for_lazy_pages_once_the_rseq_page_is_eager, .timeout = 120)
{
	e2e(E2E_RSEQ);
}

Test(lazy, hybrid_restore_fetches_only_the_stale_pages, .timeout = 120)
{
	e2e(E2E_HYBRID);
}

/* Pages the stub lacks outside the stale ones read as zero and are never fetched. */
Test(lazy, a_complete_hybrid_state_takes_absent_pages_as_zero, .timeout = 120)
{
	e2e(E2E_COMPLETE);
}
