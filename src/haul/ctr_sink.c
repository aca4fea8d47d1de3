/*
 * ctr_sink.c - the page server's sink for container migrations (`haul
 * pageserver --containers DIR`), inside the switch sink (the network lock
 * and the moving addresses stay switch_sink.c's).
 *
 * A live session whose id the file channel announced (fchan_recv.c) is a
 * container: its layouts, pages and state go into a page-store image,
 * DIR/<session>/img/migrated/<pid>/, committed at every round barrier
 * while the container still runs on the source (p.haul's design: the
 * pre-dumps land in the target's images directory).  At the restore
 * command the file channel has already delivered the rest of what runc
 * restores from (config.json and rootfs in the bundle; haul-ctr.img,
 * tmpfs archives and descriptors.json in the images directory), and the
 * sink runs `runc restore -d --image-path DIR/<session>/img --bundle B ID`
 * with haul's criu entry point first on runc's PATH: runc creates the
 * container (its state, cgroups) and haul restores the process into it, so
 * that afterwards this host's runc knows and manages the container under
 * the same ID.  The state's cgroup placement (the source's paths) is
 * dropped before it is stored: here the process stays in the cgroups runc
 * made and put the restoring criu in (manage_cgroups).  A session that
 * closes uncommitted kills and deletes what runc restored.  Any other
 * session goes to rst_live_sink unchanged.  Post-copy of a container is
 * refused at open (runc's restore reads the whole image).
 */
#define LOG_PREFIX "container: "
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/pstore.h"
#include "haul/ctr_int.h"
#include "haul/haul_int.h"
#include "image.pb-c.h"
#include "pageserver/pageserver.h"
#include "restore/restore.h"

struct cs_sess {
	void *live; /* not a container: rst_live_sink's session */
	struct ctr_rx *rx;
	struct pstore *ps;
	struct pstore_proc *p;
	int32_t pid;
	uint64_t round;
};

static int cs_open(void *arg, const struct ps_session_info *info, void **sess)
{
	struct cs_sess *s = calloc(1, sizeof(*s));
	char dir[PATH_MAX + 16];
	int ret;

	if (!s)
		return -ENOMEM;
	s->rx = ctr_rx_get(info->session_id);
	if (!s->rx) {
		ret = rst_live_sink.open(arg, info, &s->live);
		if (ret) {
			free(s);
			return ret;
		}
		*sess = s;
		return 0;
	}
	if (info->lazy) {
		pr_err("container %s: post-copy is not supported for a container (runc restores "
		       "from a whole image); migrate it with pre-copy",
		       s->rx->id);
		ret = -EOPNOTSUPP;
		goto fail;
	}
	s->pid = info->pid;
	snprintf(dir, sizeof(dir), "%s/migrated", s->rx->images);
	ret = pstore_open(dir, &s->ps);
	if (!ret)
		ret = pstore_proc_get(s->ps, info->pid, true, &s->p);
	if (!ret && info->comm)
		ret = pstore_set_comm(s->p, info->comm);
	if (ret) {
		pr_err_r(ret, "container %s: cannot store its image in %s", s->rx->id, dir);
		goto fail;
	}
	pr_info("container %s: pid %d from %s, pages into %s", s->rx->id, (int)info->pid,
		info->peer, dir);
	*sess = s;
	return 0;
fail:
	pstore_close(s->ps);
	ctr_rx_put(s->rx);
	free(s);
	return ret;
}

static int cs_layout(void *sess, const struct haul_layout *l)
{
	struct cs_sess *s = sess;

	return s->live ? rst_live_sink.layout(s->live, l) : pstore_set_layout(s->p, l);
}

static int cs_pages(void *sess, uint64_t addr, const void *data, uint32_t npages)
{
	struct cs_sess *s = sess;

	return s->live ? rst_live_sink.pages(s->live, addr, data, npages)
		       : pstore_put(s->p, addr, data, npages);
}

static int cs_round_end(void *sess, uint64_t round)
{
	struct cs_sess *s = sess;

	if (s->live)
		return rst_live_sink.round_end(s->live, round);
	s->round = round > s->round ? round : s->round + 1;
	return pstore_commit(s->p, s->round);
}

/* The state without its cgroup placement: runc placed the restoring process here. */
static int state_here(const void *blob, size_t len, uint8_t **out, size_t *olen)
{
	Haul__Img__ProcessState *ps = haul__img__process_state__unpack(NULL, len, blob);
	size_t n = 0, *nt;

	if (!ps)
		return -EBADMSG;
	nt = calloc(ps->n_threads + 1, sizeof(*nt));
	if (!nt) {
		haul__img__process_state__free_unpacked(ps, NULL);
		return -ENOMEM;
	}
	n = ps->n_cgroups;
	ps->n_cgroups = 0;
	for (size_t i = 0; i < ps->n_threads; i++) {
		nt[i] = ps->threads[i]->n_cgroups;
		ps->threads[i]->n_cgroups = 0;
	}
	*olen = haul__img__process_state__get_packed_size(ps);
	*out = malloc(*olen ? *olen : 1);
	if (*out)
		haul__img__process_state__pack(ps, *out);
	ps->n_cgroups = n;
	for (size_t i = 0; i < ps->n_threads; i++)
		ps->threads[i]->n_cgroups = nt[i];
	free(nt);
	haul__img__process_state__free_unpacked(ps, NULL);
	return *out ? 0 : -ENOMEM;
}

static int cs_state(void *sess, const void *blob, size_t len)
{
	struct cs_sess *s = sess;
	uint8_t *mine = NULL;
	size_t mlen = 0;
	double t0;
	int ret;

	if (s->live)
		return rst_live_sink.state(s->live, blob, len);
	ret = state_here(blob, len, &mine, &mlen);
	if (ret) {
		pr_err_r(ret, "container %s: the state of pid %d does not decode", s->rx->id,
			 (int)s->pid);
		return ret;
	}
	t0 = haul_now_ms();
	ret = pstore_set_state(s->p, mine, mlen);
	free(mine);
	if (!ret)
		ret = pstore_commit(s->p, s->round);
	if (!ret)
		pr_info("container %s: image committed with the state in %.1f ms", s->rx->id,
			haul_now_ms() - t0);
	return ret;
}

static int cs_stale(void *sess, const struct ps_range *r, size_t n)
{
	struct cs_sess *s = sess;

	if (!s->live || !rst_live_sink.stale)
		return -EOPNOTSUPP;
	return rst_live_sink.stale(s->live, r, n);
}

/* The last line of @path that says something, into @out. */
static void last_line(const char *path, char *out, size_t len)
{
	FILE *f = fopen(path, "re");
	char line[512];

	out[0] = '\0';
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0])
			snprintf(out, len, "%.300s", line);
	}
	fclose(f);
}

static int cs_restore(void *sess, struct ps_restore_result *res)
{
	struct cs_sess *s = sess;
	struct ctr_target *t = &haul_ctr_target;
	struct ctr_rx *rx = s->rx;
	struct haul_runc_state st;
	char log[PATH_MAX + 32], why[400];
	const char *args[] = {"restore",  "-d",	      "--image-path", rx->images,
			      "--bundle", rx->bundle, rx->id,	      NULL};
	bool synced;
	double t0;
	int ret;

	if (s->live)
		return rst_live_sink.restore(s->live, res);
	ctr_rx_lock();
	synced = rx->synced;
	ctr_rx_unlock();
	if (!synced) {
		res->err = -EPROTO;
		snprintf(res->msg, sizeof(res->msg),
			 "container %s: its files did not all arrive on the file channel", rx->id);
		pr_err("%s", res->msg);
		return 0;
	}
	/* runc's criu reads the image: it must be whole on disk and closed here */
	pstore_close(s->ps);
	s->ps = NULL;
	s->p = NULL;
	snprintf(log, sizeof(log), "%s/runc-restore.log", rx->dir);
	t0 = haul_now_ms();
	ret = haul_runc(t->runtime, t->root, args, t->criu_dir, log, NULL, 0,
			HAUL_CTR_RESTORE_TIMEOUT_MS);
	if (!ret)
		ret = haul_runc_state(t->runtime, t->root, rx->id, &st);
	if (!ret && st.pid <= 0)
		ret = -ESRCH;
	ctr_rx_lock();
	rx->restored = true; /* even a failed restore may leave a container to delete */
	ctr_rx_unlock();
	if (ret) {
		last_line(log, why, sizeof(why));
		res->err = ret;
		snprintf(res->msg, sizeof(res->msg),
			 "runc restore of container %.64s failed: %.150s", rx->id,
			 why[0] ? why : strerror(-ret));
		pr_err("%s (%s/restore.log)", res->msg, rx->images);
		return 0;
	}
	res->pid = st.pid;
	pr_info("container %s: restored by %s as pid %d in %.1f ms (runc restore and state)",
		rx->id, t->runtime, (int)st.pid, haul_now_ms() - t0);
	return 0;
}

static void cs_close(void *sess, bool committed)
{
	struct cs_sess *s = sess;
	struct ctr_target *t = &haul_ctr_target;

	if (!s)
		return;
	if (s->live) {
		rst_live_sink.close(s->live, committed);
	} else {
		bool restored;

		ctr_rx_lock();
		restored = s->rx->restored;
		s->rx->committed = committed;
		ctr_rx_unlock();
		if (!committed && restored) {
			const char *kill_args[] = {"kill", s->rx->id, "KILL", NULL};
			const char *del_args[] = {"delete", "-f", s->rx->id, NULL};

			/* never two copies: the source was not told to die, so this one does */
			haul_runc(t->runtime, t->root, kill_args, NULL, "/dev/null", NULL, 0,
				  HAUL_CTR_RUNC_TIMEOUT_MS);
			haul_runc(t->runtime, t->root, del_args, NULL, "/dev/null", NULL, 0,
				  HAUL_CTR_RUNC_TIMEOUT_MS);
			pr_warn("container %s: not committed; killed and deleted here", s->rx->id);
		}
		pstore_close(s->ps);
		ctr_rx_put(s->rx);
	}
	free(s);
}

const struct ps_sink_ops haul_ctr_sink = {
	.open = cs_open,
	.layout = cs_layout,
	.pages = cs_pages,
	.round_end = cs_round_end,
	.state = cs_state,
	.stale = cs_stale,
	.restore = cs_restore,
	.close = cs_close,
};
