/*
 * server_session.c - the session table: SessionOpen and SessionJoin, a
 * stream leaving its session, failing a session, and reaping what is done.
 *
 * A session is told apart by its id; only the page store is keyed by PID,
 * so two sessions may not write pages of one PID at once.  A session is
 * freed by ps_server_reap() once it has no connection attached, none left
 * whose receives might still write its staged pages (nrefs), and it is not
 * waiting for its source to rejoin.  A stream lost mid-round, or from an
 * uncommitted live session, fails the session, unless the session can
 * detach (post-copy recovery, server_fetch.c).
 */
#define LOG_PREFIX "ps: "
#include <errno.h>
#include <ev.h>
#include <liburing.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/pstore.h"
#include "common/validate.h"
#include "common/wire.h"
#include "pageserver/pageserver.h"
#include "pageserver/ps_int.h"
#include "pageserver/server_int.h"

/* ---- sessions --------------------------------------------------------------------------- */

static struct ps_session *session_find(struct ps_server *s, uint64_t id)
{
	for (struct ps_session *x = s->sessions; x; x = x->next)
		if (x->id == id)
			return x;
	return NULL;
}

static bool session_uses_store(const struct ps_session *x)
{
	return x->kind != HAUL__WIRE__SESSION_KIND__LIVE || !x->srv->o.sink;
}

/* Whether @x writes pages of its PID into the page store (keyed by PID). */
static bool session_writes_store(const struct ps_session *x)
{
	return x->kind != HAUL__WIRE__SESSION_KIND__FETCH && session_uses_store(x);
}

/*
 * Whether a transport error on a stream of @x detaches it instead of
 * failing it: a lazy live session between the resume and the commit,
 * whose process would die without the source's pages.
 */
bool ps_session_can_detach(const struct ps_session *x)
{
	return x->kind == HAUL__WIRE__SESSION_KIND__LIVE && x->lazy && x->restored && !x->proc &&
	       !x->committed && !x->failed && !x->srv->closing;
}

static void session_free(struct ps_session *x)
{
	struct ps_server *s = x->srv;

	if (x->proc && x->kind != HAUL__WIRE__SESSION_KIND__FETCH)
		pstore_abort(x->proc);
	ev_timer_stop(s->loop, &x->detach_timer);
	/* Wake every requester before the sink's close() waits for its threads. */
	ps_fetch_fail_all(x, -ECONNRESET);
	if (x->sink_sess)
		s->o.sink->close(x->sink_sess, x->committed);
	/* the sink's threads are gone: nothing uses a lane any more */
	ps_lane_free_all(x);
	pthread_mutex_destroy(&x->lane_mu);
	free(x->state_buf);
	pr_info("session %016llx of pid %d (%s) from %s ended%s: %llu rounds, %llu pages, %.1f MB",
		(unsigned long long)x->id, x->pid, x->comm, x->peer,
		x->committed ? ", committed" : (x->failed ? ", failed" : ""),
		(unsigned long long)x->last_round, (unsigned long long)x->total_pages,
		x->total_bytes / 1e6);
	haul_layout_release(&x->layout);
	free(x);
	s->nsessions_done++;
	ps_server_weigh(s); /* unlinked already: the others decide */
	if (s->o.once)
		ev_break(s->loop, EVBREAK_ALL);
}

void ps_session_detach(struct ps_conn *c)
{
	struct ps_session *x = c->sess;

	if (!x)
		return;
	c->sess = NULL;
	x->streams[c->stream] = NULL;
	x->nconns--;
	if (x->detached) {
		/* a stream lost again while waiting frees its slot; a refusal still fails */
		if (c->state == PS_CLOSING)
			ps_session_fail(x, -ECONNRESET, "a rejoining stream was refused");
		return;
	}
	if (c->state != PS_CLOSING && ps_session_can_detach(x)) {
		ps_session_park(x);
		return;
	}
	/*
	 * A stream gone mid-round fails the session: its pages of the round are
	 * lost.  So does one gone from a live session that was not committed
	 * while others stay (the migration cannot go on without it).
	 */
	if (!x->failed && !x->committed &&
	    (x->in_round || c->state == PS_CLOSING ||
	     (x->kind == HAUL__WIRE__SESSION_KIND__LIVE && x->nconns)))
		ps_session_fail(x, -ECONNRESET, "a stream of the session closed");
}

/*
 * Free what is finished: connections torn down whose submissions are all
 * reaped, sessions without connections.  Called only from the top of the
 * loop's callbacks, never from inside a handler.
 */
void ps_server_reap(struct ps_server *s)
{
	for (struct ps_conn **pp = &s->conns; *pp;) {
		struct ps_conn *c = *pp;

		if (c->dead && !c->recv_busy && !c->send_busy) {
			*pp = c->next;
			ps_conn_free(c);
		} else {
			pp = &c->next;
		}
	}
	for (struct ps_session **pp = &s->sessions; *pp;) {
		struct ps_session *x = *pp;

		if (!x->nconns && !x->nrefs && !x->detached) {
			*pp = x->next;
			session_free(x);
		} else {
			pp = &x->next;
		}
	}
}

/*
 * Fail every stream of @x.  Its staged pages are dropped by session_free(),
 * once no receive of its connections can still write into them.
 */
void ps_session_fail(struct ps_session *x, int err, const char *reason)
{
	if (x->failed)
		return;
	x->failed = true;
	ps_server_weigh(x->srv);
	if (x->detached) {
		x->detached = false;
		ev_timer_stop(x->srv->loop, &x->detach_timer);
	}
	ps_fetch_fail_all(x, err);
	for (uint32_t i = 0; i < x->nstreams; i++)
		if (x->streams[i] && x->streams[i]->state != PS_CLOSING)
			ps_conn_fail(x->streams[i], err, "session %016llx failed: %s",
				     (unsigned long long)x->id, reason);
}

/* SessionOk with the resource kinds this target restores (the source checks them). */
static void send_ok_caps(struct ps_conn *c, Haul__Wire__SessionOk *ok)
{
	const struct ps_server_opts *o = &c->srv->o;
	Haul__Wire__ResourceCap *rc = calloc(o->ncaps, sizeof(*rc));
	Haul__Wire__ResourceCap **rp = calloc(o->ncaps, sizeof(*rp));

	/* Without memory the list is left out: the source assumes image version 3. */
	for (size_t i = 0; rc && rp && i < o->ncaps; i++) {
		haul__wire__resource_cap__init(&rc[i]);
		rc[i].kind = (char *)o->caps[i].kind;
		rc[i].version = o->caps[i].version;
		rp[i] = &rc[i];
		ok->n_resources = i + 1;
	}
	ok->resources = rp;
	ps_conn_send(c, WIRE_SESSION_OK, &ok->base, NULL, 0);
	free(rp);
	free(rc);
}

static void session_ok(struct ps_conn *c, struct ps_session *x)
{
	Haul__Wire__SessionOk ok = HAUL__WIRE__SESSION_OK__INIT;

	ok.session_id = x->id;
	ok.has_committed_round = true;
	ok.committed_round = x->proc ? pstore_round(x->proc) : 0;
	char **addrs = NULL;

	c->state = PS_READY;
	/* this host's addresses: the source checks its sockets' against them */
	if (x->kind == HAUL__WIRE__SESSION_KIND__LIVE)
		ps_net_ok_addrs(&ok, &addrs);
	if (x->kind == HAUL__WIRE__SESSION_KIND__LIVE && x->srv->o.ncaps)
		send_ok_caps(c, &ok);
	else
		ps_conn_send(c, WIRE_SESSION_OK, &ok.base, NULL, 0);
	ps_net_ok_addrs_release(&ok, addrs);
}

const char *ps_kind_name(Haul__Wire__SessionKind k)
{
	return k == HAUL__WIRE__SESSION_KIND__LIVE    ? "live"
	       : k == HAUL__WIRE__SESSION_KIND__STORE ? "store"
						      : "fetch";
}

int ps_on_session_open(struct ps_conn *c, ProtobufCMessage *m)
{
	Haul__Wire__SessionOpen *o = (Haul__Wire__SessionOpen *)m;
	struct ps_server *s = c->srv;
	struct ps_session *x;
	char why[160];
	int ret;

	if (val_session_open(o, why, sizeof(why))) {
		ps_conn_fail(c, -EPROTO, "sent a bad SessionOpen: %s", why);
		return -EPROTO;
	}
	if (o->n_move_address > PS_MAX_MOVE_ADDRS) {
		ps_conn_fail(c, -EPROTO, "sent a SessionOpen moving %zu addresses (at most %d)",
			     o->n_move_address, PS_MAX_MOVE_ADDRS);
		return -EPROTO;
	}
	if (session_find(s, o->session_id)) {
		ps_conn_fail(c, -EEXIST, "session %016llx is already open",
			     (unsigned long long)o->session_id);
		return -EEXIST;
	}
	/*
	 * Sessions are told apart by their id alone: two live migrations of
	 * one in-namespace PID (two `haul run` workloads are both pid 1) each
	 * restore into their own stub, in a new PID namespace when the PID is
	 * taken, and a detached post-copy waiting for its source blocks no
	 * one.  Only the page store is keyed by PID: two sessions writing
	 * pages of one PID into it at once would mix their rounds.
	 */
	for (x = s->sessions; x; x = x->next)
		if (x->pid == o->pid && session_writes_store(x) &&
		    o->kind != HAUL__WIRE__SESSION_KIND__FETCH &&
		    (o->kind != HAUL__WIRE__SESSION_KIND__LIVE || !s->o.sink)) {
			ps_conn_fail(c, -EBUSY,
				     "pid %d is already being stored by session %016llx from %s; "
				     "retry once it ends",
				     o->pid, (unsigned long long)x->id, x->peer);
			return -EBUSY;
		}
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->srv = s;
	x->id = o->session_id;
	x->kind = o->kind;
	x->pid = o->pid;
	snprintf(x->comm, sizeof(x->comm), "%s", o->comm ? o->comm : "");
	snprintf(x->peer, sizeof(x->peer), "%s", c->peer);
	x->nstreams = o->nstreams;
	x->lazy = o->has_lazy && o->lazy;
	ev_init(&x->detach_timer, ps_detach_timer_cb);
	x->detach_timer.data = x;
	pthread_mutex_init(&x->lane_mu, NULL);
	if (x->kind == HAUL__WIRE__SESSION_KIND__FETCH) {
		ret = pstore_proc_get(s->store, x->pid, false, &x->proc);
		if (ret || pstore_round(x->proc) == 0) {
			free(x);
			ps_conn_fail(c, -ENOENT,
				     "asked for pid %d, which has no committed image here", o->pid);
			return -ENOENT;
		}
	} else if (session_uses_store(x)) {
		ret = pstore_proc_get(s->store, x->pid, true, &x->proc);
		if (ret) {
			free(x);
			ps_conn_fail(c, ret, "cannot store pages of pid %d: %s", o->pid,
				     strerror(-ret));
			return ret;
		}
		pstore_set_comm(x->proc, x->comm);
		/* The client counts rounds from 1; the store goes on from its last commit. */
		x->round_base = pstore_round(x->proc);
	} else {
		struct ps_session_info info = {
			.session_id = x->id,
			.pid = x->pid,
			.comm = x->comm,
			.peer = c->peer,
			.nstreams = x->nstreams,
			.lazy = x->lazy,
			.session = x,
			.has_clocks = o->has_clock_monotonic_ns && o->has_clock_boottime_ns,
			.clock_monotonic_ns = o->clock_monotonic_ns,
			.clock_boottime_ns = o->clock_boottime_ns,
			.has_boot_id = o->has_boot_id && o->boot_id.len == 16,
			.timens_monotonic_ns = o->timens_monotonic_ns,
			.timens_boottime_ns = o->timens_boottime_ns,
			.move_addrs = (const char *const *)o->move_address,
			.nmove_addrs = o->n_move_address,
			.cgroups = o->cgroups,
			.ncgroups = o->n_cgroups,
			.apparmor_profiles = o->apparmor_profiles,
			.napparmor_profiles = o->n_apparmor_profiles,
			.tree = o->has_tree ? o->tree.data : NULL,
			.tree_len = o->has_tree ? o->tree.len : 0,
			.tree_session = o->has_tree_session ? o->tree_session : 0,
		};

		if (info.has_boot_id)
			memcpy(info.boot_id, o->boot_id.data, 16);

		/* the stub forked here would inherit a lowered nice: full weight first */
		haul_cpuweight_set(&s->weight, 0);
		log_err_mark();
		ret = s->o.sink->open(s->o.sink_arg, &info, &x->sink_sess);
		if (ret) {
			free(x);
			/* the cause the sink logged here, else the errno alone */
			ps_conn_fail(c, ret, "cannot start restoring pid %d: %s", o->pid,
				     log_err_first()[0] ? log_err_first() : strerror(-ret));
			return ret;
		}
	}
	x->next = s->sessions;
	s->sessions = x;
	x->streams[0] = c;
	x->nconns = 1;
	x->nrefs = 1;
	x->njoined = 1;
	c->sess = x;
	c->sref = x;
	c->stream = 0;
	pr_info("session %016llx from %s: %s pid %d (%s), %u stream%s", (unsigned long long)x->id,
		c->peer, ps_kind_name(x->kind), x->pid, x->comm, x->nstreams,
		x->nstreams > 1 ? "s" : "");
	session_ok(c, x);
	return 0;
}

/*
 * SessionJoin: stream 1.. of a new session; with resume, any stream of a
 * detached session (post-copy recovery), which resumes once every stream
 * is back.
 */
int ps_on_session_join(struct ps_conn *c, ProtobufCMessage *m)
{
	Haul__Wire__SessionJoin *j = (Haul__Wire__SessionJoin *)m;
	struct ps_session *x = session_find(c->srv, j->session_id);
	bool resume = j->has_resume && j->resume;
	char why[160];

	if (x && val_session_join(j, x->nstreams, why, sizeof(why))) {
		ps_conn_fail(c, -EPROTO, "sent a bad SessionJoin: %s", why);
		return -EPROTO;
	}
	if (x && !x->failed && j->has_lane && j->lane)
		return ps_on_lane_join(c, x);
	if (!x || x->failed) {
		ps_conn_fail(c, -ENOENT, "%s unknown session %016llx%s",
			     resume ? "rejoined" : "joined", (unsigned long long)j->session_id,
			     resume ? " (it failed, gave up waiting, or never existed here)" : "");
		return -ENOENT;
	}
	if (resume != x->detached) {
		ps_conn_fail(
			c, -EBUSY,
			resume ? "rejoined session %016llx, which is not detached (its streams "
				 "are connected, or it cannot recover)"
			       : "joined session %016llx, which waits for its source to rejoin",
			(unsigned long long)j->session_id);
		return -EBUSY;
	}
	if ((j->stream == 0 && !resume) || j->stream >= x->nstreams || x->streams[j->stream]) {
		ps_conn_fail(c, -EPROTO,
			     "joined session %016llx as stream %u of %u (taken or out "
			     "of range)",
			     (unsigned long long)j->session_id, j->stream, x->nstreams);
		return -EPROTO;
	}
	x->streams[j->stream] = c;
	x->nconns++;
	x->nrefs++;
	if (!resume)
		x->njoined++;
	c->sess = x;
	c->sref = x;
	c->stream = j->stream;
	session_ok(c, x);
	if (resume && x->nconns == x->nstreams)
		ps_session_resume(x);
	return 0;
}
