/*
 * rst_restore.c - checkpoint a real process, kill it, rebuild it with the
 * restorer (in memory, no images), and check it carries on exactly: its
 * final memory hash must equal an undisturbed run's (tests/progs/rst_counter).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/rsys.h"
#include "common/vma.h"
#include "haul/haul.h"
#include "restore/restore.h"
#include "th_proc.h"
#include "th_rst.h"
#include "th_verify.h"

static void make_dir(char *dir, size_t len, const char *tag)
{
	snprintf(dir, len, "/tmp/haul-rst-%s-%d", tag, (int)getpid());
	mkdir(dir, 0755);
}

static void remove_dir(const char *dir)
{
	char cmd[700];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", dir);
}

/*
 * Wait for the restored T (and free it): it exits 0, saw no error, and its
 * output OUT ends in the line WANT of an undisturbed run.
 */
static void expect_finished(struct rst_target *t, const char *out, const char *want)
{
	char got[128];
	int status;

	status = rst_target_wait(t);
	rst_target_free(t);
	cr_expect_eq(status, 0, "restored process exited with %d:\n%s", status, th_slurp(out));
	cr_expect_null(strstr(th_slurp(out), "ERROR"), "restored process saw an error:\n%s",
		       th_slurp(out));
	th_final_line(out, got, sizeof(got));
	cr_expect_str_eq(got, want);
}

static void checkpoint_restore_once(enum rst_pidns ns)
{
	char dir[256], out[600], want[128], why[256];
	struct th_snap s;
	struct rst_target *t = NULL;
	struct th_state *before;
	int ret;
	pid_t pid;

	make_dir(dir, sizeof(dir), ns == RST_PIDNS_ALWAYS ? "ns" : "auto");
	th_expected_final(dir, "1500", "16", want, sizeof(want));

	snprintf(out, sizeof(out), "%s/run.out", dir);
	pid = th_spawn_counter(dir, out, "1500", "16", "1000");
	th_wait_counter(pid, out, 5);
	cr_assert_eq(th_state_take(pid, TH_VERIFY_LIVE, &before), 0);
	ret = th_snap_take_kill(pid, &s);
	cr_assert_eq(ret, 0, "dump failed: %s", strerror(-ret));

	ret = th_snap_restore(&s, pid, ns, &t, why, sizeof(why));
	th_snap_free(&s);
	cr_assert_eq(ret, 0, "restore failed: %s", strerror(-ret));
	th_verify_same(before, rst_target_pid(t), TH_VERIFY_LIVE, "rst_counter");
	th_state_free(before);
	expect_finished(t, out, want);
	remove_dir(dir);
}

Test(rst, restored_in_new_pidns_finishes_like_undisturbed_run, .timeout = 60)
{
	checkpoint_restore_once(RST_PIDNS_ALWAYS);
}

Test(rst, restored_with_same_pid_on_host_finishes_like_undisturbed_run, .timeout = 60)
{
	checkpoint_restore_once(RST_PIDNS_AUTO);
}

/*
 * Issue 15: dumped between two nanosleeps, rst_counter was released before
 * the test killed it, ran on and appended to its O_APPEND file (and wrote
 * its MAP_SHARED file) once more; the restored copy did that again and
 * ended with another hash.  With no sleep at all every dump lands in the
 * middle of the work, so a source that ran on after the dump would change
 * the files every time: the copy must still finish like an undisturbed run.
 */
Test(rst, dumped_mid_iteration_without_sleeping_finishes_like_undisturbed_run, .timeout = 60)
{
	char dir[256], out[600], want[128], why[256];
	struct th_snap s;
	struct rst_target *t = NULL;
	int ret;
	pid_t pid;

	make_dir(dir, sizeof(dir), "busy");
	th_expected_final(dir, "200000", "4", want, sizeof(want));
	snprintf(out, sizeof(out), "%s/run.out", dir);
	pid = th_spawn_counter(dir, out, "200000", "4", "0");
	th_wait_ticking(out, 20, 10000);
	ret = th_snap_take_kill(pid, &s);
	cr_assert_eq(ret, 0, "dump failed: %s", strerror(-ret));
	cr_assert(!strstr(th_slurp(out), "final "),
		  "rst_counter finished before the dump; give it more iterations");
	ret = th_snap_restore(&s, pid, RST_PIDNS_AUTO, &t, why, sizeof(why));
	th_snap_free(&s);
	cr_assert_eq(ret, 0, "restore failed: %s (%s)", strerror(-ret), why);
	expect_finished(t, out, want);
	remove_dir(dir);
}

/*
 * The bad point of issue 15 made certain: the source runs on after the dump
 * (released, then one more tick line: 100 more appends to its O_APPEND
 * offset file) before it is killed.  Restoring that image would repeat the
 * appends; the restorer must refuse and name the file.
 */
Test(rst, restore_refuses_an_append_file_written_after_the_dump, .timeout = 60)
{
	char dir[256], out[600], why[512] = "";
	struct th_snap s;
	struct rst_target *t = NULL;
	int status, ret, ticks;
	pid_t pid;

	make_dir(dir, sizeof(dir), "ranon");
	snprintf(out, sizeof(out), "%s/run.out", dir);
	pid = th_spawn_counter(dir, out, "100000", "4", "1000");
	th_wait_counter(pid, out, 2);
	ret = th_snap_take(pid, &s);
	cr_assert_eq(ret, 0, "dump failed: %s", strerror(-ret));
	ticks = 0;
	for (const char *p = th_slurp(out); (p = strstr(p, "tick ")); p++)
		ticks++;
	th_wait_ticking(out, ticks + 1, 10000);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);

	ret = th_snap_restore(&s, pid, RST_PIDNS_AUTO, &t, why, sizeof(why));
	th_snap_free(&s);
	cr_expect_neq(ret, 0, "a restore over an appended O_APPEND file succeeded");
	cr_expect(strstr(why, "offset.") && strstr(why, "O_APPEND") &&
			  strstr(why, "after the dump"),
		  "the refusal does not name the file and the cause: %s", why);
	if (t) { /* restored after all: it would run for minutes */
		kill(rst_target_pid(t), SIGKILL);
		rst_target_wait(t);
		rst_target_free(t);
	}
	remove_dir(dir);
}

/* ---- incremental (live migration) ---------------------------------------- */

/* Every readable memory VMA of @pid, read now (the process may be running). */
static int read_all(pid_t pid, struct th_snap *s)
{
	int ret;

	memset(s, 0, sizeof(*s));
	ret = haul_layout_read(pid, true, &s->l);
	if (ret)
		return ret;
	s->runs = calloc(s->l.n, sizeof(*s->runs));
	s->n = s->l.n;
	for (size_t i = 0; i < s->l.n; i++) {
		const struct haul_vma *v = &s->l.v[i];

		if (!haul_vma_is_memory(v) || !(v->prot & PROT_READ))
			continue;
		s->runs[i].addr = v->start;
		s->runs[i].npages = (v->end - v->start) >> 12;
		s->runs[i].data = malloc(v->end - v->start);
		ret = rsys_read(pid, v->start, s->runs[i].data, v->end - v->start);
		if (ret)
			return ret;
	}
	return 0;
}

/* Send the layout of @cur and every page that differs from @prev (all when @prev is NULL). */
static int send_round(struct rst_target *t, const struct th_snap *prev, const struct th_snap *cur,
		      uint64_t *sent)
{
	static const uint8_t zero[4096];
	int ret = rst_target_layout(t, &cur->l);

	for (size_t i = 0; !ret && i < cur->n; i++) {
		const struct th_snap_run *r = &cur->runs[i];

		for (uint32_t p = 0; !ret && r->data && p < r->npages; p++) {
			uint64_t a = r->addr + (uint64_t)p * 4096;
			const uint8_t *d = (const uint8_t *)r->data + (size_t)p * 4096;
			const struct haul_vma *ov = prev ? haul_layout_find(&prev->l, a) : NULL;

			if (ov) {
				const struct th_snap_run *orun = &prev->runs[ov - prev->l.v];

				if (orun->data && ov->start == cur->l.v[i].start &&
				    !memcmp((const uint8_t *)orun->data + (a - orun->addr), d,
					    4096))
					continue;
			}
			ret = rst_target_pages(t, a, memcmp(d, zero, 4096) ? d : NULL, 1);
			(*sent)++;
		}
	}
	return ret;
}

Test(rst, incremental_rounds_then_final_dirty_pages_restore_exactly, .timeout = 90)
{
	char dir[256], out[600], want[128], why[256];
	struct rst_target_opts o = {.pidns = RST_PIDNS_AUTO};
	struct th_snap prev, cur;
	struct rst_target *t;
	struct rst_seized *sz;
	struct th_state *before;
	uint64_t first = 0, last = 0, total = 0;
	uint8_t *state;
	size_t len;
	pid_t pid, here;
	int ret, status;

	make_dir(dir, sizeof(dir), "incr");
	th_expected_final(dir, "1500", "16", want, sizeof(want));
	snprintf(out, sizeof(out), "%s/run.out", dir);
	pid = th_spawn_counter(dir, out, "1500", "16", "1000");
	th_wait_counter(pid, out, 3);

	/* The source still runs with its PID: the target must use a new namespace. */
	o.pid = pid;
	cr_assert_eq(rst_target_new(&o, &t), 0);
	cr_assert_eq(read_all(pid, &prev), 0);
	cr_assert_eq(send_round(t, NULL, &prev, &first), 0);
	for (int round = 0; round < 2; round++) {
		uint64_t n = 0;
		size_t from = th_file_size(out);

		/* the next tick line: it has run 100 more iterations and dirtied pages */
		cr_assert_eq(th_wait_file(out, from, "tick", 10000, NULL, 0), 0,
			     "rst_counter printed no tick between rounds: %s", th_slurp(out));
		cr_assert_eq(read_all(pid, &cur), 0);
		cr_assert_eq(send_round(t, &prev, &cur, &n), 0);
		th_snap_free(&prev);
		prev = cur;
	}
	/* Switchover: stop, last dirty pages and the state, kill the source, resume. */
	cr_assert_eq(th_wait_sleeping(pid, 0, "nanosleep", 5000), 0,
		     "rst_counter pid %d does not sleep in nanosleep", (int)pid);
	cr_assert_eq(th_state_take(pid, TH_VERIFY_LIVE, &before), 0);
	cr_assert_eq(rst_seize(pid, &sz), 0);
	cr_assert_eq(rst_dump_state(sz, &state, &len), 0);
	cr_assert_eq(read_all(pid, &cur), 0);
	cr_assert_eq(send_round(t, &prev, &cur, &last), 0);
	for (size_t i = 0; i < cur.n; i++)
		total += cur.runs[i].data ? cur.runs[i].npages : 0;
	rst_kill_seized(sz);
	waitpid(pid, &status, 0);
	ret = rst_target_resume(t, state, len, &here, why, sizeof(why));
	cr_assert_eq(ret, 0, "resume failed: %s", why);
	th_verify_same(before, here, TH_VERIFY_LIVE, "rst_counter (incremental)");
	th_state_free(before);
	cr_log_info("incremental: %llu pages in round 1, %llu in the final round of %llu",
		    (unsigned long long)first, (unsigned long long)last, (unsigned long long)total);
	/*
	 * How many pages the workload dirtied between the last two reads is a
	 * matter of timing (64 random pages an iteration: a loaded machine
	 * lets it run more iterations and it can dirty most of its heap), so
	 * only what does not depend on it is checked: the final round left out
	 * what had not changed. Its size belongs in the benchmarks.
	 */
	cr_expect_lt(last, total, "the final round resent all %llu pages",
		     (unsigned long long)total);
	expect_finished(t, out, want);
	free(state);
	th_snap_free(&prev);
	th_snap_free(&cur);
	remove_dir(dir);
}

Test(rst, restore_fails_cleanly_when_pid_is_taken_and_no_namespace_allowed, .timeout = 30)
{
	char dir[256], out[600];
	struct th_snap s;
	struct rst_target_opts o = {.pidns = RST_PIDNS_NEVER};
	struct rst_target *t = NULL;
	int status;
	pid_t pid;

	make_dir(dir, sizeof(dir), "taken");
	snprintf(out, sizeof(out), "%s/run.out", dir);
	pid = th_spawn_counter(dir, out, "100000", "4", "1000");
	th_wait_counter(pid, out, 2);
	cr_assert_eq(th_snap_take(pid, &s), 0);
	o.pid = pid; /* still running: the PID is taken */
	cr_expect_eq(rst_target_new(&o, &t), -EEXIST);
	cr_expect_null(t);
	cr_expect_eq(waitpid(pid, &status, WNOHANG), 0, "the source died");
	th_snap_free(&s);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	remove_dir(dir);
}

/* ---- the post-copy hook ------------------------------------------------------ */

struct hook_seen {
	int calls;
	bool had_stack;
	int fail;
};

static int hook(void *arg, struct rsys *r, const struct haul_layout *l)
{
	struct hook_seen *h = arg;

	h->calls++;
	(void)r;
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].flags & HAUL_VMA_STACK)
			h->had_stack = true;
	return h->fail;
}

Test(rst, before_resume_hook_sees_the_final_layout_and_can_fail_the_resume, .timeout = 60)
{
	char dir[256], out[600], why[256];
	struct rst_target_opts o = {.pidns = RST_PIDNS_ALWAYS, .lazy = true, .before_resume = hook};
	struct hook_seen h = {0, false, -EIO};
	struct th_snap s;
	struct rst_target *t;
	int ret;
	pid_t pid, here;

	make_dir(dir, sizeof(dir), "hook");
	snprintf(out, sizeof(out), "%s/run.out", dir);
	pid = th_spawn_counter(dir, out, "100000", "4", "1000");
	th_wait_counter(pid, out, 2);
	cr_assert_eq(th_snap_take_kill(pid, &s), 0);

	o.pid = pid;
	o.before_resume_arg = &h;
	cr_assert_eq(rst_target_new(&o, &t), 0);
	ret = rst_target_layout(t, &s.l);
	for (size_t i = 0; !ret && i < s.n; i++)
		ret = rst_target_pages(t, s.runs[i].addr, s.runs[i].data, s.runs[i].npages);
	cr_assert_eq(ret, 0);
	ret = rst_target_resume(t, s.state, s.state_len, &here, why, sizeof(why));
	cr_expect_eq(ret, -EIO);
	cr_expect(strstr(why, "post-copy"), "%s", why);
	cr_expect_eq(h.calls, 1);
	cr_expect(h.had_stack);
	/* The half-built process is gone: its helper exits with SIGKILL's status. */
	cr_expect_eq(rst_target_wait(t), 128 + SIGKILL);
	rst_target_free(t);
	th_snap_free(&s);
	remove_dir(dir);
}

/* ---- fds that are not files -------------------------------------------------- */

Test(rst, event_loop_over_epoll_eventfd_timerfd_signalfd_and_self_pipe_carries_on, .timeout = 60)
{
	const char *const args[] = {"1500", NULL};
	char out[128], why[256];
	struct th_snap s;
	struct rst_target *t;
	struct th_state *before;
	int status, ret;
	pid_t pid;

	snprintf(out, sizeof(out), "/tmp/haul-rst-fds-%d.out", (int)getpid());
	pid = th_spawn_prog(out, "rst_fds", args);
	th_wait_ticking(out, 5, 10000);
	cr_assert_eq(th_state_take(pid, TH_VERIFY_LIVE, &before), 0);
	ret = th_snap_take_kill(pid, &s);
	cr_assert_eq(ret, 0, "dump failed: %s", strerror(-ret));
	ret = th_snap_restore(&s, pid, RST_PIDNS_AUTO, &t, why, sizeof(why));
	th_snap_free(&s);
	cr_assert_eq(ret, 0, "restore failed: %s", strerror(-ret));
	th_verify_same(before, rst_target_pid(t), TH_VERIFY_LIVE, "rst_fds");
	th_state_free(before);
	status = rst_target_wait(t);
	rst_target_free(t);
	cr_expect_eq(status, 0, "restored rst_fds exited with %d:\n%s", status, th_slurp(out));
	cr_expect(strstr(th_slurp(out), "final ok 1500"), "%s", th_slurp(out));
	unlink(out);
}

/* ---- threads ------------------------------------------------------------------ */

static void threads_once(enum rst_pidns ns)
{
	const char *const args[] = {"1500", NULL};
	char out[128], want[128], why[256];
	struct th_snap s;
	struct rst_target *t;
	struct th_state *before;
	int status, ret;
	pid_t pid;

	snprintf(out, sizeof(out), "/tmp/haul-rst-threads-%d.out", (int)getpid());
	pid = th_spawn_prog(out, "rst_threads", args);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	th_final_line(out, want, sizeof(want));

	pid = th_spawn_prog(out, "rst_threads", args);
	th_wait_ticking(out, 6, 10000);
	cr_assert_eq(th_state_take(pid, TH_VERIFY_LIVE, &before), 0);
	ret = th_snap_take_kill(pid, &s);
	cr_assert_eq(ret, 0, "dump failed: %s", strerror(-ret));
	ret = th_snap_restore(&s, pid, ns, &t, why, sizeof(why));
	th_snap_free(&s);
	cr_assert_eq(ret, 0, "restore failed: %s", strerror(-ret));
	th_verify_same(before, rst_target_pid(t), TH_VERIFY_LIVE, "rst_threads");
	th_state_free(before);
	expect_finished(t, out, want);
	unlink(out);
}

Test(rst, three_threads_with_mutex_condvar_and_join_restore_in_new_pidns, .timeout = 60)
{
	threads_once(RST_PIDNS_ALWAYS);
}

Test(rst, three_threads_restore_with_their_tids_on_the_host, .timeout = 60)
{
	threads_once(RST_PIDNS_AUTO);
}

/* The whole of @path, malloc()ed; *@len its size. */
static uint8_t *read_whole(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *b;
	int fd = open(path, O_RDONLY);

	cr_assert_geq(fd, 0, "cannot open %s", path);
	cr_assert_eq(fstat(fd, &st), 0);
	b = malloc(st.st_size ? st.st_size : 1);
	cr_assert_not_null(b);
	cr_assert_eq(pread(fd, b, st.st_size, 0), st.st_size);
	close(fd);
	*len = st.st_size;
	return b;
}

/*
 * An image with one flipped byte in a page is refused before anything is
 * created, and left byte for byte as it was; put right, it restores to the
 * undisturbed result (the refusal was the damage, nothing else).
 */
Test(rst, image_with_a_flipped_page_byte_is_refused_and_left_as_it_was, .timeout = 60)
{
	char dir[256], imgs[300], pages[700], out[600], want[128], got[128];
	struct rst_target_opts o = {.pidns = RST_PIDNS_ALWAYS};
	struct rst_ckpt_stats st;
	struct rst_target *t = NULL;
	uint8_t *before, *after;
	size_t blen, alen;
	pid_t pid, here = 0;
	int status, ret, fd;
	uint8_t b;

	make_dir(dir, sizeof(dir), "flip");
	th_expected_final(dir, "1500", "16", want, sizeof(want));
	snprintf(out, sizeof(out), "%s/run.out", dir);
	snprintf(imgs, sizeof(imgs), "%s/images", dir);
	pid = th_spawn_counter(dir, out, "1500", "16", "1000");
	th_wait_counter(pid, out, 5);
	ret = haul_checkpoint_images(pid, imgs, false, NULL, &st);
	cr_assert_eq(ret, 0, "checkpoint failed: %s", strerror(-ret));
	waitpid(pid, &status, 0);

	snprintf(pages, sizeof(pages), "%s/%s/%d/pages.img", imgs, st.id, (int)pid);
	fd = open(pages, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, &b, 1, 2 * 4096 + 9), 1);
	b ^= 0x40;
	cr_assert_eq(pwrite(fd, &b, 1, 2 * 4096 + 9), 1);
	before = read_whole(pages, &blen);
	ret = rst_restore_images(imgs, NULL, 0, &o, &t, &here);
	cr_expect_eq(ret, -EBADMSG, "restore of a damaged image: %s", strerror(-ret));
	cr_expect_eq(here, 0, "a process was created for a damaged image");
	after = read_whole(pages, &alen);
	cr_expect(blen == alen && !memcmp(before, after, blen), "the restore changed pages.img");
	free(before);
	free(after);

	b ^= 0x40;
	cr_assert_eq(pwrite(fd, &b, 1, 2 * 4096 + 9), 1);
	close(fd);
	ret = rst_restore_images(imgs, NULL, 0, &o, &t, &here);
	cr_assert_eq(ret, 0, "restore of the repaired image: %s", strerror(-ret));
	status = rst_target_wait(t);
	rst_target_free(t);
	cr_expect_eq(status, 0, "restored process exited with %d:\n%s", status, th_slurp(out));
	th_final_line(out, got, sizeof(got));
	cr_expect_str_eq(got, want);
	remove_dir(dir);
}
