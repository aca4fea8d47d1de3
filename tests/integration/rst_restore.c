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
#include "th_verify.h"

static const char *progs(void)
{
	const char *p = getenv("HAUL_PROGS");

	return p ? p : "build/progs";
}

static void msleep(int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* Start rst_counter in @dir with stdout to @out. */
static pid_t spawn_counter(const char *dir, const char *out, const char *iters, const char *mib,
			   const char *sleep_us)
{
	char bin[512];
	pid_t pid;

	snprintf(bin, sizeof(bin), "%s/rst_counter", progs());
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int nul = open("/dev/null", O_RDONLY);

		/* Only files and /dev/null: a pipe from the test runner would be refused. */
		if (fd < 0 || nul < 0 || dup2(nul, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		close(fd);
		close(nul);
		closefrom(3);
		execl(bin, bin, dir, iters, mib, sleep_us, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static char *slurp(const char *path)
{
	static char buf[1 << 16];
	int fd = open(path, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* The "final ..." line of @path, copied into @line. */
static void final_line(const char *path, char *line, size_t len)
{
	const char *p = strstr(slurp(path), "final ");

	cr_assert(p, "no final line in %s: %s", path, slurp(path));
	snprintf(line, len, "%.*s", (int)strcspn(p, "\n"), p);
}

struct page_run {
	uint64_t addr;
	uint32_t npages;
	void *data;
};

struct snapshot {
	struct haul_layout l;
	struct page_run *runs;
	size_t n;
	uint8_t *state;
	size_t state_len;
};

/* What migrate does on the source, without the network: layout, every page, state. */
static int snapshot_take(pid_t pid, struct snapshot *s)
{
	struct rst_seized *sz;
	int ret;

	memset(s, 0, sizeof(*s));
	ret = rst_seize(pid, &sz);
	if (ret)
		return ret;
	ret = rst_dump_state(sz, &s->state, &s->state_len);
	if (ret)
		goto out;
	ret = haul_layout_read(pid, true, &s->l);
	if (ret)
		goto out;
	s->runs = calloc(s->l.n, sizeof(*s->runs));
	for (size_t i = 0; i < s->l.n; i++) {
		const struct haul_vma *v = &s->l.v[i];
		size_t len = v->end - v->start;

		if (!haul_vma_is_memory(v) || !(v->prot & PROT_READ))
			continue;
		s->runs[s->n].addr = v->start;
		s->runs[s->n].npages = len >> 12;
		s->runs[s->n].data = malloc(len);
		ret = rsys_read(pid, v->start, s->runs[s->n].data, len);
		if (ret)
			goto out;
		s->n++;
	}
out:
	rst_release(sz);
	return ret;
}

static void snapshot_free(struct snapshot *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->runs[i].data);
	free(s->runs);
	free(s->state);
	haul_layout_release(&s->l);
}

static int restore_snapshot(const struct snapshot *s, pid_t pid, enum rst_pidns ns,
			    struct rst_target **out)
{
	struct rst_target_opts o = {.pid = pid, .pidns = ns};
	struct rst_target *t;
	char why[256];
	pid_t here;
	int ret;

	ret = rst_target_new(&o, &t);
	if (ret)
		return ret;
	ret = rst_target_layout(t, &s->l);
	for (size_t i = 0; !ret && i < s->n; i++)
		ret = rst_target_pages(t, s->runs[i].addr, s->runs[i].data, s->runs[i].npages);
	if (!ret)
		ret = rst_target_resume(t, s->state, s->state_len, &here, why, sizeof(why));
	if (ret) {
		rst_target_free(t);
		return ret;
	}
	*out = t;
	return 0;
}

static void make_dir(char *dir, size_t len, const char *tag)
{
	snprintf(dir, len, "/tmp/haul-rst-%s-%d", tag, (int)getpid());
	mkdir(dir, 0755);
}

static void expected_final(const char *dir, const char *iters, const char *mib, char *line,
			   size_t len)
{
	char out[600];
	int status;
	pid_t p;

	snprintf(out, sizeof(out), "%s/expected.out", dir);
	p = spawn_counter(dir, out, iters, mib, "0");
	cr_assert_eq(waitpid(p, &status, 0), p);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "undisturbed run failed");
	final_line(out, line, len);
}

static void checkpoint_restore_once(enum rst_pidns ns)
{
	char dir[256], out[600], want[128], got[128], cmd[700];
	struct snapshot s;
	struct rst_target *t = NULL;
	struct th_state *before;
	int status, ret;
	pid_t pid;

	make_dir(dir, sizeof(dir), ns == RST_PIDNS_ALWAYS ? "ns" : "auto");
	expected_final(dir, "1500", "16", want, sizeof(want));

	snprintf(out, sizeof(out), "%s/run.out", dir);
	pid = spawn_counter(dir, out, "1500", "16", "1000");
	msleep(400);
	cr_assert_eq(th_state_take(pid, TH_VERIFY_LIVE, &before), 0);
	ret = snapshot_take(pid, &s);
	cr_assert_eq(ret, 0, "dump failed: %s", strerror(-ret));
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);

	ret = restore_snapshot(&s, pid, ns, &t);
	snapshot_free(&s);
	cr_assert_eq(ret, 0, "restore failed: %s", strerror(-ret));
	th_verify_same(before, rst_target_pid(t), TH_VERIFY_LIVE, "rst_counter");
	th_state_free(before);
	status = rst_target_wait(t);
	rst_target_free(t);
	cr_expect_eq(status, 0, "restored process exited with %d; output:\n%s", status, slurp(out));
	cr_expect_null(strstr(slurp(out), "ERROR"), "restored process saw an error:\n%s",
		       slurp(out));
	final_line(out, got, sizeof(got));
	cr_expect_str_eq(got, want);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", dir);
}

Test(rst, restored_in_new_pidns_finishes_like_undisturbed_run, .timeout = 60)
{
	checkpoint_restore_once(RST_PIDNS_ALWAYS);
}

Test(rst, restored_with_same_pid_on_host_finishes_like_undisturbed_run, .timeout = 60)
{
	checkpoint_restore_once(RST_PIDNS_AUTO);
}

/* ---- incremental (live migration) ---------------------------------------- */

/* Every readable memory VMA of @pid, read now (the process may be running). */
static int read_all(pid_t pid, struct snapshot *s)
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
static int send_round(struct rst_target *t, const struct snapshot *prev, const struct snapshot *cur,
		      uint64_t *sent)
{
	static const uint8_t zero[4096];
	int ret = rst_target_layout(t, &cur->l);

	for (size_t i = 0; !ret && i < cur->n; i++) {
		const struct page_run *r = &cur->runs[i];

		for (uint32_t p = 0; !ret && r->data && p < r->npages; p++) {
			uint64_t a = r->addr + (uint64_t)p * 4096;
			const uint8_t *d = (const uint8_t *)r->data + (size_t)p * 4096;
			const struct haul_vma *ov = prev ? haul_layout_find(&prev->l, a) : NULL;

			if (ov) {
				const struct page_run *orun = &prev->runs[ov - prev->l.v];

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
	char dir[256], out[600], want[128], got[128], why[256], cmd[700];
	struct rst_target_opts o = {.pidns = RST_PIDNS_AUTO};
	struct snapshot prev, cur;
	struct rst_target *t;
	struct rst_seized *sz;
	struct th_state *before;
	uint64_t first = 0, last = 0, total = 0;
	uint8_t *state;
	size_t len;
	pid_t pid, here;
	int ret, status;

	make_dir(dir, sizeof(dir), "incr");
	expected_final(dir, "1500", "16", want, sizeof(want));
	snprintf(out, sizeof(out), "%s/run.out", dir);
	pid = spawn_counter(dir, out, "1500", "16", "1000");
	msleep(200);

	/* The source still runs with its PID: the target must use a new namespace. */
	o.pid = pid;
	cr_assert_eq(rst_target_new(&o, &t), 0);
	cr_assert_eq(read_all(pid, &prev), 0);
	cr_assert_eq(send_round(t, NULL, &prev, &first), 0);
	for (int round = 0; round < 2; round++) {
		uint64_t n = 0;

		msleep(100);
		cr_assert_eq(read_all(pid, &cur), 0);
		cr_assert_eq(send_round(t, &prev, &cur, &n), 0);
		snapshot_free(&prev);
		prev = cur;
	}
	/* Switchover: stop, last dirty pages and the state, kill the source, resume. */
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
	cr_expect_lt(last, total / 2, "the final round sent %llu of %llu pages",
		     (unsigned long long)last, (unsigned long long)total);
	status = rst_target_wait(t);
	rst_target_free(t);
	free(state);
	snapshot_free(&prev);
	snapshot_free(&cur);
	cr_expect_eq(status, 0, "restored process exited with %d:\n%s", status, slurp(out));
	cr_expect_null(strstr(slurp(out), "ERROR"), "%s", slurp(out));
	final_line(out, got, sizeof(got));
	cr_expect_str_eq(got, want);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", dir);
}

Test(rst, restore_fails_cleanly_when_pid_is_taken_and_no_namespace_allowed, .timeout = 30)
{
	char dir[256], out[600];
	struct snapshot s;
	struct rst_target_opts o = {.pidns = RST_PIDNS_NEVER};
	struct rst_target *t = NULL;
	int status;
	pid_t pid;

	make_dir(dir, sizeof(dir), "taken");
	snprintf(out, sizeof(out), "%s/run.out", dir);
	pid = spawn_counter(dir, out, "100000", "4", "1000");
	msleep(100);
	cr_assert_eq(snapshot_take(pid, &s), 0);
	o.pid = pid; /* still running: the PID is taken */
	cr_expect_eq(rst_target_new(&o, &t), -EEXIST);
	cr_expect_null(t);
	cr_expect_eq(waitpid(pid, &status, WNOHANG), 0, "the source died");
	snapshot_free(&s);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	snprintf(out, sizeof(out), "rm -rf %s", dir);
	if (system(out) != 0)
		cr_log_warn("cannot remove %s", dir);
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
	char dir[256], out[600], why[256], cmd[700];
	struct rst_target_opts o = {.pidns = RST_PIDNS_ALWAYS, .lazy = true, .before_resume = hook};
	struct hook_seen h = {0, false, -EIO};
	struct snapshot s;
	struct rst_target *t;
	int status, ret;
	pid_t pid, here;

	make_dir(dir, sizeof(dir), "hook");
	snprintf(out, sizeof(out), "%s/run.out", dir);
	pid = spawn_counter(dir, out, "100000", "4", "1000");
	msleep(100);
	cr_assert_eq(snapshot_take(pid, &s), 0);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);

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
	snapshot_free(&s);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", dir);
}

/* ---- fds that are not files -------------------------------------------------- */

Test(rst, event_loop_over_epoll_eventfd_timerfd_signalfd_and_self_pipe_carries_on, .timeout = 60)
{
	char bin[512], out[128];
	struct snapshot s;
	struct rst_target *t;
	struct th_state *before;
	int status, ret;
	pid_t pid;

	snprintf(bin, sizeof(bin), "%s/rst_fds", progs());
	snprintf(out, sizeof(out), "/tmp/haul-rst-fds-%d.out", (int)getpid());
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int nul = open("/dev/null", O_RDWR);

		if (fd < 0 || nul < 0 || dup2(nul, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		closefrom(3);
		execl(bin, bin, "1500", (char *)NULL);
		_exit(127);
	}
	msleep(500);
	cr_assert_eq(th_state_take(pid, TH_VERIFY_LIVE, &before), 0);
	ret = snapshot_take(pid, &s);
	cr_assert_eq(ret, 0, "dump failed: %s", strerror(-ret));
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	ret = restore_snapshot(&s, pid, RST_PIDNS_AUTO, &t);
	snapshot_free(&s);
	cr_assert_eq(ret, 0, "restore failed: %s", strerror(-ret));
	th_verify_same(before, rst_target_pid(t), TH_VERIFY_LIVE, "rst_fds");
	th_state_free(before);
	status = rst_target_wait(t);
	rst_target_free(t);
	cr_expect_eq(status, 0, "restored rst_fds exited with %d:\n%s", status, slurp(out));
	cr_expect(strstr(slurp(out), "final ok 1500"), "%s", slurp(out));
	unlink(out);
}

/* ---- threads ------------------------------------------------------------------ */

/* Run @prog @arg with stdout to @out; returns its pid. */
static pid_t spawn_prog(const char *prog, const char *arg, const char *out)
{
	char bin[512];
	pid_t pid;

	snprintf(bin, sizeof(bin), "%s/%s", progs(), prog);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int nul = open("/dev/null", O_RDWR);

		if (fd < 0 || nul < 0 || dup2(nul, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		closefrom(3);
		execl(bin, bin, arg, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void threads_once(enum rst_pidns ns)
{
	char out[128], want[128], got[128];
	struct snapshot s;
	struct rst_target *t;
	struct th_state *before;
	int status, ret;
	pid_t pid;

	snprintf(out, sizeof(out), "/tmp/haul-rst-threads-%d.out", (int)getpid());
	pid = spawn_prog("rst_threads", "1500", out);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	final_line(out, want, sizeof(want));

	pid = spawn_prog("rst_threads", "1500", out);
	msleep(600);
	cr_assert_eq(th_state_take(pid, TH_VERIFY_LIVE, &before), 0);
	ret = snapshot_take(pid, &s);
	cr_assert_eq(ret, 0, "dump failed: %s", strerror(-ret));
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	ret = restore_snapshot(&s, pid, ns, &t);
	snapshot_free(&s);
	cr_assert_eq(ret, 0, "restore failed: %s", strerror(-ret));
	th_verify_same(before, rst_target_pid(t), TH_VERIFY_LIVE, "rst_threads");
	th_state_free(before);
	status = rst_target_wait(t);
	rst_target_free(t);
	cr_expect_eq(status, 0, "restored rst_threads exited with %d:\n%s", status, slurp(out));
	cr_expect_null(strstr(slurp(out), "ERROR"), "%s", slurp(out));
	final_line(out, got, sizeof(got));
	cr_expect_str_eq(got, want);
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
	char dir[256], imgs[300], pages[700], out[600], want[128], got[128], cmd[700];
	struct rst_target_opts o = {.pidns = RST_PIDNS_ALWAYS};
	struct rst_ckpt_stats st;
	struct rst_target *t = NULL;
	uint8_t *before, *after;
	size_t blen, alen;
	pid_t pid, here = 0;
	int status, ret, fd;
	uint8_t b;

	make_dir(dir, sizeof(dir), "flip");
	expected_final(dir, "1500", "16", want, sizeof(want));
	snprintf(out, sizeof(out), "%s/run.out", dir);
	snprintf(imgs, sizeof(imgs), "%s/images", dir);
	pid = spawn_counter(dir, out, "1500", "16", "1000");
	msleep(400);
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
	cr_expect_eq(status, 0, "restored process exited with %d:\n%s", status, slurp(out));
	final_line(out, got, sizeof(got));
	cr_expect_str_eq(got, want);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", dir);
}
