/*
 * trk_accuracy.c - the tracker against a real, foreign process that writes
 * known random pages between rounds (tests/progs/trk_target.c): no written
 * page may be missed; false positives are counted and logged.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <fcntl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>

#include "common/probe.h"
#include "trk_drive.h"

static char target_bin[512];
static struct td drv = {.to = -1, .from = -1};

static void setup(void)
{
	const char *progs = getenv("HAUL_PROGS");

	snprintf(target_bin, sizeof(target_bin), "%s/trk_target", progs ? progs : "build/progs");
	cr_assert(access(target_bin, X_OK) == 0, "%s is not built", target_bin);
	cr_assert(td_start(&drv, target_bin) == 0, "cannot start %s", target_bin);
}

static void teardown(void)
{
	td_stop(&drv);
}

static void run_scenario(enum trk_backend b, bool populated)
{
	struct td_stats s;
	char err[512] = "";
	int ret = td_scenario(&drv, b, populated, &s, err, sizeof(err));

	cr_log_info("%s: %llu rounds, %llu pages written, %llu missed, %llu false positives "
		    "in test regions, %llu shared pages written by a child unseen, "
		    "slowest round %.2f ms, longest stop %.3f ms",
		    trk_backend_name(b), (unsigned long long)s.rounds,
		    (unsigned long long)s.written, (unsigned long long)s.missed,
		    (unsigned long long)s.false_pos, (unsigned long long)s.shared_unseen,
		    s.max_round_ms, s.stop_ms);
	cr_assert(ret == 0, "%s: %s", trk_backend_name(b), err);
	cr_assert_eq(s.missed, 0);
}

TestSuite(trk, .init = setup, .fini = teardown, .timeout = 60);

Test(trk, uffd_reports_every_written_page)
{
	if (!probe_uffd_wp_async(NULL))
		cr_skip_test("uffd-wp async tracking is not available on this kernel");
	run_scenario(TRK_UFFD, false);
}

Test(trk, uffd_counting_populated_pages_reports_every_written_page)
{
	if (!probe_uffd_wp_async(NULL))
		cr_skip_test("uffd-wp async tracking is not available on this kernel");
	run_scenario(TRK_UFFD, true);
}

Test(trk, hash_reports_every_written_page)
{
	run_scenario(TRK_HASH, false);
}

Test(trk, soft_dirty_reports_every_written_page)
{
	if (!probe_soft_dirty())
		cr_skip_test("soft-dirty is not compiled into this kernel (tested under qemu by "
			     "tests/extra/trk_softdirty_qemu.sh)");
	run_scenario(TRK_SOFT_DIRTY, false);
}

Test(trk, soft_dirty_is_refused_where_the_kernel_lacks_it)
{
	struct trk_opts o = {.backend = TRK_SOFT_DIRTY};
	struct trk *t = NULL;

	if (probe_soft_dirty())
		cr_skip_test("this kernel has soft-dirty");
	cr_assert_eq(trk_open(drv.pid, &o, &t), -EOPNOTSUPP);
	cr_assert_null(t);
}

Test(trk, auto_picks_uffd_when_available)
{
	struct trk *t = NULL;

	cr_assert_eq(trk_open(drv.pid, NULL, &t), 0);
	if (probe_uffd_wp_async(NULL))
		cr_assert_eq(trk_backend(t), TRK_UFFD);
	else if (probe_soft_dirty())
		cr_assert_eq(trk_backend(t), TRK_SOFT_DIRTY);
	else
		cr_assert_eq(trk_backend(t), TRK_HASH);
	cr_log_info("auto: %s, target stopped %.3f ms", trk_backend_name(trk_backend(t)),
		    trk_stop_ms(t));
	if (trk_backend(t) == TRK_UFFD)
		cr_expect_lt(trk_stop_ms(t), 5.0, "target stopped %.3f ms (goal: < 2 ms)",
			     trk_stop_ms(t));
	trk_free(t);
}

static void exec_gives_echild(enum trk_backend b)
{
	struct trk_opts o = {.backend = b};
	struct trk_round r;
	struct trk *t = NULL;

	cr_assert_eq(trk_open(drv.pid, &o, &t), 0);
	cr_assert_eq(trk_round(t, &r), 0);
	trk_round_release(&r);
	cr_assert_eq(td_cmd(&drv, TT_EXEC, 0, NULL, 0, NULL, 0), 0);
	/* the new image answers only once exec is complete */
	cr_assert_eq(td_info(&drv), 0);
	cr_assert_eq(trk_round(t, &r), -ECHILD);
	trk_free(t);
}

Test(trk, uffd_reports_exec_as_echild)
{
	if (!probe_uffd_wp_async(NULL))
		cr_skip_test("uffd-wp async tracking is not available on this kernel");
	exec_gives_echild(TRK_UFFD);
}

Test(trk, hash_reports_exec_as_echild)
{
	exec_gives_echild(TRK_HASH);
}

Test(trk, reports_exit_as_esrch)
{
	struct trk_round r;
	struct trk *t = NULL;
	int ret = 0;

	cr_assert_eq(trk_open(drv.pid, NULL, &t), 0);
	cr_assert_eq(trk_round(t, &r), 0);
	trk_round_release(&r);
	cr_assert_eq(td_cmd(&drv, TT_EXIT, 0, NULL, 0, NULL, 0), 0);
	/* the reply comes just before exit(): give it up to 2 s to die */
	for (int i = 0; i < 200; i++) {
		ret = trk_round(t, &r);
		trk_round_release(&r);
		if (ret)
			break;
		usleep(10000);
	}
	cr_assert_eq(ret, -ESRCH);
	trk_free(t);
	drv.pid = 0;
}

Test(trk, target_runs_on_when_tracker_is_killed)
{
	int64_t st;
	uint64_t out[1], v[4];
	int status;
	pid_t c;

	c = fork();
	cr_assert(c >= 0);
	if (c == 0) {
		struct trk_round r;
		struct trk *t = NULL;

		if (trk_open(drv.pid, NULL, &t) || trk_round(t, &r))
			_exit(1);
		trk_round_release(&r);
		kill(getpid(), SIGKILL);
		_exit(2);
	}
	cr_assert_eq(waitpid(c, &status, 0), c);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "tracker child failed");
	for (int i = 0; i < 4; i++)
		v[i] = drv.reg[0].addr + (uint64_t)i * TD_PG;
	cr_assert_eq(td_cmd(&drv, TT_WRITE, 0, v, 4, NULL, 0), 0);
	st = td_cmd(&drv, TT_VERIFY, 0, NULL, 0, out, 1);
	cr_assert_eq(st, 0);
	cr_assert_eq(out[0], 0, "%llu pages differ", (unsigned long long)out[0]);
	cr_assert(!td_has_uffd(drv.pid), "the target holds a userfaultfd");
	/* and it can be tracked again: nothing of the dead tracker is left registered */
	{
		struct trk_round r;
		struct trk *t = NULL;

		cr_assert_eq(trk_open(drv.pid, NULL, &t), 0);
		cr_assert_eq(trk_round(t, &r), 0);
		trk_round_release(&r);
		trk_free(t);
	}
}

Test(trk, read_pages_reads_contents_and_flags_zero_pages)
{
	struct trk_range rg[2] = {{drv.reg[0].addr, 4}, {drv.reg[0].addr + 8 * TD_PG, 2}};
	uint64_t zap[1] = {drv.reg[0].addr + 9 * TD_PG}, zero[1] = {0};
	uint64_t *buf = aligned_alloc(4096, 6 * TD_PG);

	cr_assert_eq(td_cmd(&drv, TT_ZAP, 0, zap, 1, NULL, 0), 0);
	cr_assert_eq(trk_read_pages(drv.pid, rg, 2, buf, zero), 0);
	/* every page starts with its counter (1 after start-up); the zapped one is zero */
	for (int i = 0; i < 5; i++)
		cr_assert_eq(buf[i * 512], 1, "page %d reads %llu", i,
			     (unsigned long long)buf[i * 512]);
	cr_assert_eq(buf[5 * 512], 0);
	cr_assert_eq(zero[0], 1ULL << 5);
	free(buf);
}

static void run_precopy(enum trk_backend b)
{
	struct td_stats s;
	char err[512] = "";
	int ret = td_precopy(&drv, b, 4, 20, &s, err, sizeof(err));

	cr_log_info("%s pre-copy under 4 writer threads: %llu rounds, %llu pages written "
		    "meanwhile, %llu dirty pages reported, %llu pages differ",
		    trk_backend_name(b), (unsigned long long)s.rounds,
		    (unsigned long long)s.written, (unsigned long long)s.dirty,
		    (unsigned long long)s.missed);
	cr_assert(ret == 0, "%s: %s", trk_backend_name(b), err);
}

Test(trk, uffd_precopy_under_concurrent_writers_matches_target)
{
	if (!probe_uffd_wp_async(NULL))
		cr_skip_test("uffd-wp async tracking is not available on this kernel");
	run_precopy(TRK_UFFD);
}

Test(trk, hash_precopy_under_concurrent_writers_matches_target)
{
	run_precopy(TRK_HASH);
}

/*
 * Slices of 16 pages and at most 4 pages reported per call: every scan pass
 * is hundreds of calls while 4 threads write without pause, so writes land
 * before, inside and after the slice being walked.  None may be missed.
 */
Test(trk, uffd_write_during_a_sliced_scan_pass_is_never_missed)
{
	struct trk_opts o = {.backend = TRK_UFFD, .slice_bytes = 16 * TD_PG, .slice_pages = 4};
	struct td_stats s;
	char err[512] = "";
	int ret;

	if (!probe_uffd_wp_async(NULL))
		cr_skip_test("uffd-wp async tracking is not available on this kernel");
	ret = td_precopy_o(&drv, &o, 4, 20, &s, err, sizeof(err));
	cr_log_info("sliced pre-copy under 4 writer threads: %llu rounds, %llu pages written "
		    "meanwhile, %llu dirty pages reported, %llu pages differ, longest call %.3f ms",
		    (unsigned long long)s.rounds, (unsigned long long)s.written,
		    (unsigned long long)s.dirty, (unsigned long long)s.missed, s.stop_ms);
	cr_assert(ret == 0, "%s", err);
	cr_assert_eq(s.missed, 0);
}

static void run_churn(enum trk_backend b)
{
	struct td_stats s;
	char err[512] = "";
	int ret = td_churn_precopy(&drv, b, 40, &s, err, sizeof(err));

	cr_log_info("%s whole-process pre-copy under layout churn: %llu rounds, %llu dirty "
		    "pages, %llu differ, %llu stale",
		    trk_backend_name(b), (unsigned long long)s.rounds, (unsigned long long)s.dirty,
		    (unsigned long long)s.missed, (unsigned long long)s.false_pos);
	cr_assert(ret == 0, "%s: %s", trk_backend_name(b), err);
}

Test(trk, uffd_whole_process_copy_survives_layout_churn_mid_round)
{
	if (!probe_uffd_wp_async(NULL))
		cr_skip_test("uffd-wp async tracking is not available on this kernel");
	run_churn(TRK_UFFD);
}

/*
 * The upper half of a mapping moved away and back merges with the lower
 * half, and the kernel unregisters the merged VMA while the lower half's
 * pages keep their uffd-wp bits; page 3 is then written.  A receiver that
 * applies every round must end up with the target's 32 pages, whether the
 * upper half's place was a hole (the merged VMA is partly fresh) or held
 * another mapping (wholly kept: nothing in the layout shows the change).
 */
/* The receiver's copy of the 32 pages at @addr against the target's memory. */
static void assert_copy_matches(struct td_img *m, uint64_t addr, int round)
{
	static uint64_t got[32 * 512];
	struct trk_range all = {addr, 32};

	cr_assert_eq(trk_read_pages(drv.pid, &all, 1, got, NULL), 0);
	for (int i = 0; i < 32; i++) {
		size_t k = td_img_slot(m, addr + i * TD_PG, false);

		cr_assert(m->addr[k] && m->data[k],
			  "after round %d, page %d: the copy holds nothing (dropped in round %d)",
			  round, i, m->dropped[k]);
		cr_assert_eq(*(uint64_t *)m->data[k], got[i * 512],
			     "after round %d, page %d: copy %#llx, target %#llx", round, i,
			     (unsigned long long)*(uint64_t *)m->data[k],
			     (unsigned long long)got[i * 512]);
	}
}

/*
 * @fail_rescans: round 3's re-registered walks fail that many times as if
 * the mapping kept changing (trk_test_fail_rescans), so that it is given up:
 * sent whole at once, and walked again in round 4.
 */
static void run_remerge(enum tt_remerge split, unsigned fail_rescans)
{
	struct trk_opts o = {.backend = TRK_UFFD};
	struct td_img m;
	struct trk_round r;
	struct trk *t = NULL;
	uint64_t addr[1];
	int rounds = fail_rescans ? 4 : 3;

	if (!probe_uffd_wp_async(NULL))
		cr_skip_test("uffd-wp async tracking is not available on this kernel");
	td_img_init(&m, 1 << 12);
	cr_assert_eq(td_cmd(&drv, TT_REMERGE, split, NULL, 0, addr, 1), 0);
	cr_assert_eq(trk_open(drv.pid, &o, &t), 0);
	for (int round = 1; round <= rounds; round++) {
		if (round == 3) {
			cr_assert_eq(td_cmd(&drv, TT_REMERGE, TT_RM_MERGE, NULL, 0, NULL, 0), 0);
			trk_test_fail_rescans(t, fail_rescans);
		}
		cr_assert_eq(trk_round(t, &r), 0);
		cr_assert_eq(td_img_apply(&m, t, &r), 0);
		/* a new mapping drops nothing: the caller would zero all its holes */
		if (round == 1)
			cr_assert_eq(r.ngone, 0, "round 1 reports %zu ranges gone", r.ngone);
		if (round == 3)
			cr_assert(td_dirty_has(&r, addr[0] + 3 * TD_PG),
				  "the write after the merge is not reported");
		/* given up in round 3: walked again, and its pages sent whole again */
		if (round == 4)
			cr_assert(td_dirty_has(&r, addr[0]) &&
					  td_dirty_has(&r, addr[0] + 31 * TD_PG),
				  "a mapping given up is not sent whole at the next round");
		trk_round_release(&r);
		if (round >= 3)
			assert_copy_matches(&m, addr[0], round);
	}
	trk_free(t);
	td_img_free(&m);
}

Test(trk, uffd_a_move_that_merges_two_mappings_loses_no_write)
{
	run_remerge(TT_RM_SPLIT, 0);
}

Test(trk, uffd_a_move_that_merges_over_a_kept_mapping_loses_no_page)
{
	run_remerge(TT_RM_SPLIT_FILLED, 0);
}

Test(trk, uffd_a_mapping_that_keeps_changing_under_the_scan_is_sent_whole)
{
	run_remerge(TT_RM_SPLIT_FILLED, 3);
}

Test(trk, hash_whole_process_copy_survives_layout_churn_mid_round)
{
	run_churn(TRK_HASH);
}

Test(trk, traced_target_refuses_uffd_and_auto_falls_back_to_hash)
{
	struct trk_opts uffd = {.backend = TRK_UFFD};
	struct trk_round r;
	struct trk *t = NULL;

	if (!probe_uffd_wp_async(NULL))
		cr_skip_test("uffd-wp async tracking is not available on this kernel");
	/* we trace it first, as a debugger would */
	cr_assert_eq(ptrace(PTRACE_SEIZE, drv.pid, 0, 0), 0);
	cr_assert_eq(trk_open(drv.pid, &uffd, &t), -EPERM);
	cr_assert_null(t);
	cr_assert_eq(trk_open(drv.pid, NULL, &t), 0);
	cr_assert_eq(trk_backend(t), probe_soft_dirty() ? TRK_SOFT_DIRTY : TRK_HASH);
	if (trk_backend(t) == TRK_HASH) {
		cr_assert_eq(trk_round(t, &r), 0);
		cr_assert_gt(r.dirty_pages, 0);
		trk_round_release(&r);
	}
	trk_free(t);
	/* a running tracee must be stopped before it can be detached */
	cr_assert_eq(ptrace(PTRACE_INTERRUPT, drv.pid, 0, 0), 0);
	cr_assert_eq(waitpid(drv.pid, NULL, __WALL), drv.pid);
	cr_assert_eq(ptrace(PTRACE_DETACH, drv.pid, 0, 0), 0);
	cr_assert(!td_has_uffd(drv.pid));
	cr_assert_eq(td_info(&drv), 0, "the target stopped answering");
}

Test(trk, open_of_a_missing_pid_is_esrch)
{
	struct trk *t = NULL;

	cr_assert_eq(trk_open(4000000, NULL, &t), -ESRCH);
	cr_assert_null(t);
}

/* Pages of [start, start + npages) the round reports. */
static uint64_t dirty_in(const struct trk_round *r, uint64_t start, uint64_t npages)
{
	uint64_t end = start + npages * TD_PG, n = 0;

	for (size_t i = 0; i < r->ndirty; i++) {
		uint64_t s = r->dirty[i].start, e = s + r->dirty[i].npages * TD_PG;

		s = s > start ? s : start;
		e = e < end ? e : end;
		if (s < e)
			n += (e - s) / TD_PG;
	}
	return n;
}

Test(trk, uffd_sparse_mapping_costs_only_its_populated_pages)
{
	const uint64_t pages = 1ULL << 22; /* 16 GiB mapped, 8192 pages touched */
	struct trk_opts o = {.backend = TRK_UFFD};
	struct trk_round r;
	struct trk *t = NULL;
	uint64_t addr[1], w[2];

	if (!probe_uffd_wp_async(NULL))
		cr_skip_test("uffd-wp async tracking is not available on this kernel");
	cr_assert_eq(td_cmd(&drv, TT_SPARSE, pages, NULL, 0, addr, 1), 0);
	cr_assert_eq(trk_open(drv.pid, &o, &t), 0);
	for (int round = 1; round <= 4; round++) {
		cr_assert_eq(trk_round(t, &r), 0);
		cr_log_info("sparse round %d: %llu pages of the 16 GiB mapping, %.2f ms", round,
			    (unsigned long long)dirty_in(&r, addr[0], pages), r.scan_ms);
		/* round 1: exactly the touched pages; later: nothing, never the holes */
		cr_assert_eq(dirty_in(&r, addr[0], pages), round == 1 ? pages / 512 : 0);
		trk_round_release(&r);
	}
	/* a touched page and a hole, written */
	w[0] = addr[0] + 512 * TD_PG;
	w[1] = addr[0] + 777 * TD_PG;
	{
		/* TT_WRITE only knows its regions: poke the pages through the tracker's target */
		uint64_t one = 1;
		struct iovec l = {&one, 8}, rv = {(void *)(uintptr_t)w[0], 8};

		cr_assert_eq(process_vm_writev(drv.pid, &l, 1, &rv, 1, 0), 8);
		rv.iov_base = (void *)(uintptr_t)w[1];
		cr_assert_eq(process_vm_writev(drv.pid, &l, 1, &rv, 1, 0), 8);
	}
	cr_assert_eq(trk_round(t, &r), 0);
	cr_assert_eq(dirty_in(&r, addr[0], pages), 2);
	cr_assert(td_dirty_has(&r, w[0]) && td_dirty_has(&r, w[1]));
	trk_round_release(&r);
	trk_free(t);
}

/*
 * A VMA that is not 7/8 populated as a whole (Redis's jemalloc arena: 87%)
 * but whose page tables are, each on its own, dense: after the full walk of
 * round 1 those page tables are walked fast, which reports their holes once
 * (as written, then marked); the empty page tables stay in the full walk
 * and report nothing.  Writes anywhere are still seen.
 */
Test(trk, uffd_dense_page_tables_of_a_patchy_vma_are_walked_fast)
{
	const uint64_t n = 8, holes = n * 512 / 16, touched = n * 512 - holes;
	struct trk_opts o = {.backend = TRK_UFFD};
	struct trk_round r;
	struct trk *t = NULL;
	uint64_t addr[1], w[2], one = 1;

	if (!probe_uffd_wp_async(NULL))
		cr_skip_test("uffd-wp async tracking is not available on this kernel");
	cr_assert_eq(td_cmd(&drv, TT_PATCHY, n, NULL, 0, addr, 1), 0);
	cr_assert_eq(trk_open(drv.pid, &o, &t), 0);
	for (int round = 1; round <= 3; round++) {
		uint64_t want = round == 1 ? touched : round == 2 ? holes : 0;

		cr_assert_eq(trk_round(t, &r), 0);
		cr_log_info("patchy round %d: %llu pages, %.2f ms", round,
			    (unsigned long long)dirty_in(&r, addr[0], 2 * n * 512), r.scan_ms);
		/* round 2: the holes of the dense half, none of the empty half */
		cr_assert_eq(dirty_in(&r, addr[0], n * 512), want, "round %d", round);
		cr_assert_eq(dirty_in(&r, addr[0] + n * 512 * TD_PG, n * 512), 0, "round %d",
			     round);
		trk_round_release(&r);
	}
	/* a hole of the fast half and a page of the empty half, written */
	w[0] = addr[0] + 15 * TD_PG;
	w[1] = addr[0] + (n * 512 + 3) * TD_PG;
	for (int i = 0; i < 2; i++) {
		struct iovec l = {&one, 8}, rv = {(void *)(uintptr_t)w[i], 8};

		cr_assert_eq(process_vm_writev(drv.pid, &l, 1, &rv, 1, 0), 8);
	}
	cr_assert_eq(trk_round(t, &r), 0);
	cr_assert_eq(dirty_in(&r, addr[0], 2 * n * 512), 2);
	cr_assert(td_dirty_has(&r, w[0]) && td_dirty_has(&r, w[1]));
	trk_round_release(&r);
	trk_free(t);
}

/*
 * A frozen round splits its fast walk across threads (scan_par.c): with
 * parts as small as 4 MiB, writes at the ends of the dense half and on
 * both sides of each cut between parts are each reported exactly once, and
 * re-protected (the round after reports nothing).
 */
Test(trk, uffd_frozen_round_split_across_threads_reports_every_write_once)
{
	const uint64_t n = 32, part = 4ULL << 20;
	struct trk_opts o = {.backend = TRK_UFFD, .par_part_bytes = part};
	struct trk_round r;
	struct trk *t = NULL;
	uint64_t addr[1], w[40], one = 1;
	size_t nw = 0;

	if (!probe_uffd_wp_async(NULL))
		cr_skip_test("uffd-wp async tracking is not available on this kernel");
	cr_assert_eq(td_cmd(&drv, TT_PATCHY, n, NULL, 0, addr, 1), 0);
	cr_assert_eq(trk_open(drv.pid, &o, &t), 0);
	for (int round = 1; round <= 3; round++) { /* the dense half walked fast from round 2 */
		cr_assert_eq(trk_round(t, &r), 0);
		trk_round_release(&r);
	}
	w[nw++] = addr[0];
	for (uint64_t cut = part; cut < n * 512 * TD_PG; cut += part) { /* wherever the cuts fall */
		w[nw++] = addr[0] + cut - TD_PG;
		w[nw++] = addr[0] + cut;
	}
	w[nw++] = addr[0] + (n * 512 - 1) * TD_PG;
	w[nw++] = addr[0] + (n * 512 + 7) * TD_PG; /* the empty half (walked in full) */
	for (size_t i = 0; i < nw; i++) {
		struct iovec l = {&one, 8}, rv = {(void *)(uintptr_t)w[i], 8};

		cr_assert_eq(process_vm_writev(drv.pid, &l, 1, &rv, 1, 0), 8);
	}
	trk_set_frozen(t, true);
	cr_assert_eq(trk_round(t, &r), 0);
	cr_log_info("frozen round over %llu MiB in parts of %llu MiB: %llu pages, %.2f ms",
		    (unsigned long long)(2 * n * 512 * TD_PG >> 20),
		    (unsigned long long)(part >> 20),
		    (unsigned long long)dirty_in(&r, addr[0], 2 * n * 512), r.scan_ms);
	cr_assert_eq(dirty_in(&r, addr[0], 2 * n * 512), nw);
	for (size_t i = 0; i < nw; i++)
		cr_assert(td_dirty_has(&r, w[i]), "the write at page %llu is not reported",
			  (unsigned long long)((w[i] - addr[0]) / TD_PG));
	trk_round_release(&r);
	cr_assert_eq(trk_round(t, &r), 0);
	cr_assert_eq(dirty_in(&r, addr[0], 2 * n * 512), 0,
		     "a frozen round left pages unprotected");
	trk_round_release(&r);
	trk_set_frozen(t, false);
	trk_free(t);
}
