/*
 * sink.c - rst_live_sink: the page server's sink that restores a live
 * migration into a restore target.
 *
 * One session is one rst_target, created when the session opens so that the
 * stub exists while pre-copy runs: layouts and pages go straight into it,
 * the state blob is kept until the restore command, and a session that ends
 * uncommitted kills whatever was built (the source still runs).  Every
 * callback runs on the page server's loop thread, which is therefore the
 * tracer of every stub (ptrace requires one thread).
 *
 * A lazy session (post-copy) resumes the process before its memory has
 * arrived: the stub gets rst_lazy_before_resume with the session itself as
 * the source (rst_lazy_session_fetch), stale pages named with the state
 * (hybrid) are zapped before registration, and after the resume a waiter
 * thread tells the source (ps_session_fetch_done) once every page is
 * present.  close() joins it and frees the fault server, which kills a
 * process whose memory is incomplete: an uncommitted or failed post-copy
 * never leaves a copy running here.
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "pageserver/pageserver.h"
#include "restore/lazy_int.h"
#include "restore/restore.h"
#include "restore/restore_int.h"

struct live_sess {
	struct rst_target *t;
	int32_t pid;
	void *state;
	size_t state_len;
	pid_t restored; /* > 0 once resumed */
	/* post-copy */
	bool lazy;
	struct ps_session *session;
	struct rst_lazy_hook hook;
	struct rst_lazy_range *stale; /* hook.stale */
	pthread_t waiter;
	bool waiting;
};

/* After a lazy resume: wait until every page is present, then release the source. */
static void *live_waiter(void *arg)
{
	struct live_sess *s = arg;
	int ret = rst_lazy_wait_complete(s->hook.lz, -1);

	if (ret) {
		pr_err_r(ret, "post-copy of pid %d (pid %d here) failed", (int)s->pid,
			 (int)s->restored);
		return NULL;
	}
	ps_session_fetch_done(s->session);
	return NULL;
}

static int live_open(void *arg, const struct ps_session_info *info, void **sess)
{
	struct rst_target_opts o = {0};
	struct live_sess *s;
	int ret;

	(void)arg;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->pid = info->pid;
	o.pid = info->pid;
	o.pidns = RST_PIDNS_AUTO;
	o.lazy = info->lazy;
	o.detach = true; /* the process must outlive the page server */
	if (info->lazy) {
		s->lazy = true;
		s->session = info->session;
		s->hook.src = (struct rst_lazy_source){.fetch = rst_lazy_session_fetch,
						       .arg = info->session};
		o.before_resume = rst_lazy_before_resume;
		o.before_resume_arg = &s->hook;
	}
	ret = rst_target_new(&o, &s->t);
	if (ret) {
		free(s);
		return ret;
	}
	*sess = s;
	return 0;
}

static int live_layout(void *sess, const struct haul_layout *l)
{
	struct live_sess *s = sess;

	return rst_target_layout(s->t, l);
}

static int live_pages(void *sess, uint64_t addr, const void *data, uint32_t npages)
{
	struct live_sess *s = sess;

	return rst_target_pages(s->t, addr, data, npages);
}

static int live_round_end(void *sess, uint64_t round)
{
	(void)sess;
	(void)round;
	return 0;
}

static int live_state(void *sess, const void *blob, size_t len)
{
	struct live_sess *s = sess;
	void *copy = malloc(len ? len : 1);

	if (!copy)
		return -ENOMEM;
	memcpy(copy, blob, len);
	free(s->state);
	s->state = copy;
	s->state_len = len;
	return 0;
}

static int live_stale(void *sess, const struct ps_range *r, size_t n)
{
	struct live_sess *s = sess;
	struct rst_lazy_range *v;

	if (!s->lazy)
		return -EPROTO;
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		v[i] = (struct rst_lazy_range){r[i].addr, r[i].addr + r[i].npages * 4096};
	free(s->stale);
	s->stale = v;
	s->hook.stale = v;
	s->hook.nstale = n;
	return 0;
}

static int live_restore(void *sess, struct ps_restore_result *res)
{
	struct live_sess *s = sess;
	pid_t pid = 0;

	memset(res, 0, sizeof(*res));
	if (!s->state) {
		res->err = -EPROTO;
		snprintf(res->msg, sizeof(res->msg), "no process state was sent for pid %d",
			 (int)s->pid);
		return 0;
	}
	res->err =
		rst_target_resume(s->t, s->state, s->state_len, &pid, res->msg, sizeof(res->msg));
	if (!res->err) {
		s->restored = pid;
		res->pid = pid;
		if (s->lazy) {
			int ret = pthread_create(&s->waiter, NULL, live_waiter, s);

			/* without the waiter the source never hears "done": kill the copy */
			if (ret) {
				rst_lazy_free(s->hook.lz);
				s->hook.lz = NULL;
				res->err = -ret;
				snprintf(res->msg, sizeof(res->msg),
					 "cannot start the post-copy waiter of pid %d",
					 (int)s->pid);
				return 0;
			}
			s->waiting = true;
		}
	}
	return 0;
}

static void live_close(void *sess, bool committed)
{
	struct live_sess *s = sess;

	if (!s)
		return;
	if (s->restored > 0 && !committed) {
		/* The source never confirmed its copy is dead: two must not run. */
		pr_warn("pid %d: migration not committed; killing the restored copy (pid %d here)",
			(int)s->pid, (int)s->restored);
		kill(s->restored, SIGKILL);
	}
	/* fetches fail once the session is gone, so the waiter always ends */
	if (s->waiting)
		pthread_join(s->waiter, NULL);
	rst_lazy_free(s->hook.lz); /* kills the process if memory is missing */
	haul_layout_release(&s->hook.lazy);
	free(s->stale);
	rst_target_free(s->t);
	free(s->state);
	free(s);
}

const struct ps_sink_ops rst_live_sink = {
	.open = live_open,
	.layout = live_layout,
	.pages = live_pages,
	.round_end = live_round_end,
	.state = live_state,
	.stale = live_stale,
	.restore = live_restore,
	.close = live_close,
};
