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
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "pageserver/pageserver.h"
#include "restore/restore.h"
#include "restore/restore_int.h"

struct live_sess {
	struct rst_target *t;
	int32_t pid;
	void *state;
	size_t state_len;
	pid_t restored; /* > 0 once resumed */
};

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
	.restore = live_restore,
	.close = live_close,
};
