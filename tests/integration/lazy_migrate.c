/*
 * lazy_migrate.c - a post-copy migration of a real process over a real page
 * server, everything but `haul migrate`'s freezer and CLI: the source side
 * seizes and dumps rst_counter, opens a lazy LIVE session, sends the layout,
 * only the pages of rst_lazy_eager_ranges(), the state, asks for the
 * restore and serves the rest with rst_lazy_serve() until the target has
 * every page, then kills its copy and commits.  The target side is a sink
 * like rst_live_sink with the post-copy pieces added (before_resume hook,
 * rst_lazy_session_fetch, a waiter that reports completion): the model for
 * wiring rst_live_sink.  The restored process must finish with the hash of
 * an undisturbed run.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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
#include "pageserver/pageserver.h"
#include "restore/lazy.h"
#include "restore/restore.h"
#include "th_verify.h"

static const char *progs(void)
{
	const char *p = getenv("HAUL_PROGS");

	return p ? p : "build/progs";
}

static pid_t spawn_counter(const char *dir, const char *out, const char *sleep_us)
{
	char bin[512];
	pid_t pid;

	snprintf(bin, sizeof(bin), "%s/rst_counter", progs());
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int nul = open("/dev/null", O_RDONLY);

		if (fd < 0 || nul < 0 || dup2(nul, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		close(fd);
		close(nul);
		closefrom(3);
		execl(bin, bin, dir, "1500", "32", sleep_us, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void final_line(const char *path, char *line, size_t len)
{
	static char buf[1 << 16];
	int fd = open(path, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	const char *p;

	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
	p = strstr(buf, "final ");
	cr_assert(p, "no final line in %s: %s", path, buf);
	snprintf(line, len, "%.*s", (int)strcspn(p, "\n"), p);
}

/* ---- the target: rst_live_sink plus post-copy ---- */

struct lsess {
	struct rst_target *t;
	struct ps_session *session;
	struct rst_lazy_hook hook;
	void *state;
	size_t state_len;
	pthread_t waiter;
	bool waiting, restored, closed;
	int lazy_result, exit_status;
};

static struct lsess ls;

/* After the resume: wait for every page, then let the source stop serving. */
static void *waiter(void *arg)
{
	struct lsess *s = arg;

	s->lazy_result = rst_lazy_wait_complete(s->hook.lz, -1);
	if (!s->lazy_result)
		ps_session_fetch_done(s->session);
	return NULL;
}

static int m_open(void *arg, const struct ps_session_info *info, void **sess)
{
	struct rst_target_opts o = {.pid = info->pid, .pidns = RST_PIDNS_ALWAYS};

	(void)arg;
	cr_assert(info->lazy);
	ls.session = info->session;
	ls.hook.src =
		(struct rst_lazy_source){.fetch = rst_lazy_session_fetch, .arg = info->session};
	o.lazy = true;
	o.before_resume = rst_lazy_before_resume;
	o.before_resume_arg = &ls.hook;
	*sess = &ls;
	return rst_target_new(&o, &ls.t);
}

static int m_layout(void *sess, const struct haul_layout *l)
{
	return rst_target_layout(((struct lsess *)sess)->t, l);
}

static int m_pages(void *sess, uint64_t addr, const void *data, uint32_t npages)
{
	return rst_target_pages(((struct lsess *)sess)->t, addr, data, npages);
}

static int m_round_end(void *sess, uint64_t round)
{
	(void)sess;
	(void)round;
	return 0;
}

static int m_state(void *sess, const void *blob, size_t len)
{
	struct lsess *s = sess;

	s->state = malloc(len);
	if (!s->state)
		return -ENOMEM;
	memcpy(s->state, blob, len);
	s->state_len = len;
	return 0;
}

static int m_restore(void *sess, struct ps_restore_result *res)
{
	struct lsess *s = sess;
	pid_t pid = 0;

	memset(res, 0, sizeof(*res));
	res->err =
		rst_target_resume(s->t, s->state, s->state_len, &pid, res->msg, sizeof(res->msg));
	if (!res->err) {
		res->pid = pid;
		s->restored = true;
		s->waiting = !pthread_create(&s->waiter, NULL, waiter, s);
	}
	return 0;
}

static void m_close(void *sess, bool committed)
{
	struct lsess *s = sess;

	/* Fetches fail once the session is gone, so the waiter always ends. */
	if (s->waiting)
		pthread_join(s->waiter, NULL);
	rst_lazy_free(s->hook.lz); /* kills the process if memory is missing */
	haul_layout_release(&s->hook.lazy);
	s->exit_status = s->restored && committed ? rst_target_wait(s->t) : -1;
	rst_target_free(s->t);
	free(s->state);
	__atomic_store_n(&s->closed, true, __ATOMIC_SEQ_CST);
}

static const struct ps_sink_ops lazy_sink = {
	.open = m_open,
	.layout = m_layout,
	.pages = m_pages,
	.round_end = m_round_end,
	.state = m_state,
	.restore = m_restore,
	.close = m_close,
};

static void *run_server(void *arg)
{
	ps_server_run(arg);
	return NULL;
}

Test(lazy, post_copy_migration_of_a_real_process_over_the_page_server, .timeout = 120)
{
	char dir[256], out[600], want[128], got[128], cmd[700], to[64];
	struct ps_server_opts so = {0};
	struct ps_client_opts co = {0};
	struct ps_restore_result res;
	struct rst_lazy_range *eager;
	struct ps_server *s;
	struct ps_client *c;
	struct rst_seized *sz;
	struct th_state *before;
	struct haul_layout l;
	uint8_t *state;
	size_t state_len, neager;
	uint64_t eager_pages = 0;
	int status, ret;
	pthread_t st;
	pid_t pid;

	log_init("test");
	memset(&ls, 0, sizeof(ls));
	snprintf(dir, sizeof(dir), "/tmp/haul-lazy-mig-%d", (int)getpid());
	mkdir(dir, 0755);
	snprintf(out, sizeof(out), "%s/expected.out", dir);
	pid = spawn_counter(dir, out, "0");
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "undisturbed run failed");
	final_line(out, want, sizeof(want));

	so.listen = "127.0.0.1:0";
	memset(so.key, 5, sizeof(so.key));
	so.sink = &lazy_sink;
	cr_assert_eq(ps_server_new(&so, &s), 0);
	cr_assert_eq(pthread_create(&st, NULL, run_server, s), 0);

	snprintf(out, sizeof(out), "%s/run.out", dir);
	pid = spawn_counter(dir, out, "1000");
	usleep(150000);

	/* Source: freeze (seize), dump, and send only what cannot wait. */
	cr_assert_eq(th_state_take(pid, TH_VERIFY_LIVE | TH_VERIFY_NO_INJECT, &before), 0);
	cr_assert_eq(rst_seize(pid, &sz), 0);
	cr_assert_eq(rst_dump_state(sz, &state, &state_len), 0);
	cr_assert_eq(haul_layout_read(pid, true, &l), 0);
	cr_assert_eq(rst_lazy_eager_ranges(pid, &l, &eager, &neager), 0);
	snprintf(to, sizeof(to), "127.0.0.1:%d", ps_server_port(s));
	co.to = to;
	memcpy(co.key, so.key, sizeof(co.key));
	co.nstreams = 2;
	co.pid = pid;
	co.comm = "rst_counter";
	co.lazy = true;
	co.timeout_ms = 20000;
	cr_assert_eq(ps_client_new(&co, &c), 0);
	cr_assert_eq(ps_client_layout(c, &l), 0);
	cr_assert_eq(ps_client_round_begin(c, 1), 0);
	for (size_t i = 0; i < neager; i++) {
		size_t len = eager[i].end - eager[i].start;
		void *buf = malloc(len);

		cr_assert_not_null(buf);
		cr_assert_eq(rsys_read(pid, eager[i].start, buf, len), 0);
		cr_assert_eq(ps_client_pages(c, eager[i].start, buf, (uint32_t)(len >> 12), NULL),
			     0);
		eager_pages += len >> 12;
		free(buf);
	}
	cr_assert_eq(ps_client_round_end(c, 1), 0);
	cr_assert_eq(ps_client_state(c, state, state_len), 0);
	cr_assert_eq(ps_client_restore(c, &res), 0);
	cr_assert_eq(res.err, 0, "restore: %s", res.msg);
	/* no injected calls: this thread serves its faults, from the next line on */
	th_verify_same(before, res.pid, TH_VERIFY_LIVE | TH_VERIFY_NO_INJECT, "rst_counter");
	th_state_free(before);

	/* The process runs on the target; its memory follows from here. */
	ret = rst_lazy_serve(c, pid, &l, 20000);
	cr_expect_eq(ret, 0, "serving: %s", strerror(-ret));
	rst_kill_seized(sz);
	cr_expect_eq(ps_client_commit(c), 0);
	ps_client_free(c);
	/* The session closes: the sink waits there for the restored process to finish. */
	while (!__atomic_load_n(&ls.closed, __ATOMIC_SEQ_CST))
		usleep(10000);
	ps_server_stop(s);
	pthread_join(st, NULL);
	ps_server_free(s);
	cr_expect_eq(ls.lazy_result, 0, "post-copy: %s", strerror(-ls.lazy_result));
	cr_expect_eq(ls.exit_status, 0, "restored process exit status %d", ls.exit_status);
	final_line(out, got, sizeof(got));
	cr_expect_str_eq(got, want, "the migrated run diverged");
	cr_log_info("post-copy migration: %zu eager ranges (%lu pages) before resume", neager,
		    (unsigned long)eager_pages);
	free(eager);
	haul_layout_release(&l);
	free(state);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", dir);
}
