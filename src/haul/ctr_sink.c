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
 * refused at open (runc's restore reads the whole image).  A podman
 * container's bundle holds config.dump: podman restores it instead
 * (`podman container restore --import`, ctr_podman_rst.c), and an
 * uncommitted close removes it from podman.
 *
 * A container of several processes (haul migrate's tree, SessionOpen.tree):
 * the root's session (pid 1) carries the tree's shape; every other live
 * process's session names it (tree_session) and stores its pages and state
 * as DIR/<session>/img/migrated/<pid>/ of the same page store (one struct
 * cs_tree, shared, on the loop thread).  The root's restore writes
 * tree.img beside them and runs runc restore: haul's criu entry point
 * restores the tree image (tree_restore.c) inside the container's new
 * namespaces.  The root's session decides for all, as in sink_tree.c: a
 * member's close only detaches it; the root's uncommitted close kills and
 * deletes what runc restored.
 */
#define LOG_PREFIX "container: "
#include <errno.h>
#include <fcntl.h>
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

/* A container's tree: one page store for every process of it. */
struct cs_tree {
	uint64_t id;	     /* the root's session id */
	struct pstore *ps;   /* NULL once the root's restore closed it for runc */
	Haul__Img__Tree *tr; /* SessionOpen.tree, unpacked */
	bool *joined;	     /* by entry: a session stores that process */
	unsigned refs;
	struct cs_tree *next;
};

struct cs_sess {
	void *live; /* not a container: rst_live_sink's session */
	struct ctr_rx *rx;
	struct pstore *ps;     /* one process's store; NULL in a tree */
	struct cs_tree *tree;  /* a tree's: the root's session and every member's */
	bool member;	       /* a process of the tree other than its root */
	struct pstore_proc *p; /* NULL once the store is closed */
	int32_t pid;
	uint64_t round;
};

/* The trees being received; the loop thread only. */
static struct cs_tree *cs_trees;

static void tree_put(struct cs_tree *t)
{
	struct cs_tree **pp;

	if (!t || --t->refs)
		return;
	for (pp = &cs_trees; *pp && *pp != t; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = t->next;
	pstore_close(t->ps);
	haul__img__tree__free_unpacked(t->tr, NULL);
	free(t->joined);
	free(t);
}

/* The index of @pid in @tr, or -1. */
static ssize_t tree_entry(const Haul__Img__Tree *tr, int32_t pid)
{
	for (size_t i = 0; i < tr->n_procs; i++)
		if (tr->procs[i]->pid == pid)
			return (ssize_t)i;
	return -1;
}

/* The root's open: the tree's shape and its page store. */
static int tree_root_open(struct cs_sess *s, const struct ps_session_info *info, const char *dir)
{
	struct cs_tree *t = calloc(1, sizeof(*t));
	int ret;

	if (!t)
		return -ENOMEM;
	t->tr = haul__img__tree__unpack(NULL, info->tree_len, info->tree);
	if (t->tr)
		t->joined = calloc(t->tr->n_procs + 1, sizeof(*t->joined));
	if (!t->tr || !t->joined || t->tr->root != info->pid || tree_entry(t->tr, info->pid) < 0) {
		pr_err("container %s: the tree of session %llu does not decode or its root is not "
		       "pid %d",
		       s->rx->id, (unsigned long long)info->session_id, (int)info->pid);
		if (t->tr)
			haul__img__tree__free_unpacked(t->tr, NULL);
		free(t->joined);
		free(t);
		return -EPROTO;
	}
	ret = pstore_open(dir, &t->ps);
	if (ret) {
		haul__img__tree__free_unpacked(t->tr, NULL);
		free(t->joined);
		free(t);
		return ret;
	}
	t->joined[tree_entry(t->tr, info->pid)] = true;
	t->id = info->session_id;
	t->refs = 1;
	t->next = cs_trees;
	cs_trees = t;
	s->tree = t;
	return 0;
}

/* A member's open: the root's tree must be open, still receiving, and name @info->pid. */
static int tree_member_open(struct cs_sess *s, const struct ps_session_info *info)
{
	struct cs_tree *t;
	ssize_t i = -1;

	for (t = cs_trees; t && t->id != info->tree_session; t = t->next)
		;
	if (t)
		i = tree_entry(t->tr, info->pid);
	if (!t || !t->ps || i < 0 || t->tr->procs[i]->zombie || t->joined[i]) {
		pr_err("container %s: session %llu of pid %d names tree session %llu, which is not "
		       "open here, has been restored, has no live pid %d, or has it joined already",
		       s->rx->id, (unsigned long long)info->session_id, (int)info->pid,
		       (unsigned long long)info->tree_session, (int)info->pid);
		return -EPROTO;
	}
	t->joined[i] = true;
	t->refs++;
	s->tree = t;
	s->member = true;
	return 0;
}

/* The session's store is still there (a tree's closes at the root's restore). */
static int cs_usable(const struct cs_sess *s)
{
	if (s->p && (!s->tree || s->tree->ps))
		return 0;
	pr_err("container %s: pid %d sent data after the tree's restore", s->rx->id, (int)s->pid);
	return -EPROTO;
}

static int cs_open(void *arg, const struct ps_session_info *info, void **sess)
{
	struct cs_sess *s = calloc(1, sizeof(*s));
	char dir[PATH_MAX + 16];
	int ret;

	if (!s)
		return -ENOMEM;
	s->rx = ctr_rx_get(info->session_id);
	/* another process of a container's tree: its session names the root's */
	if (!s->rx && info->tree_session)
		s->rx = ctr_rx_get(info->tree_session);
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
	if (info->tree_session)
		ret = tree_member_open(s, info);
	else if (info->tree)
		ret = tree_root_open(s, info, dir);
	else
		ret = pstore_open(dir, &s->ps);
	if (!ret)
		ret = pstore_proc_get(s->tree ? s->tree->ps : s->ps, info->pid, true, &s->p);
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
	tree_put(s->tree);
	ctr_rx_put(s->rx);
	free(s);
	return ret;
}

static int cs_layout(void *sess, const struct haul_layout *l)
{
	struct cs_sess *s = sess;

	if (s->live)
		return rst_live_sink.layout(s->live, l);
	return cs_usable(s) ? -EPROTO : pstore_set_layout(s->p, l);
}

static int cs_pages(void *sess, uint64_t addr, const void *data, uint32_t npages)
{
	struct cs_sess *s = sess;

	if (s->live)
		return rst_live_sink.pages(s->live, addr, data, npages);
	return cs_usable(s) ? -EPROTO : pstore_put(s->p, addr, data, npages);
}

static int cs_round_end(void *sess, uint64_t round)
{
	struct cs_sess *s = sess;

	if (s->live)
		return rst_live_sink.round_end(s->live, round);
	if (cs_usable(s))
		return -EPROTO;
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

/* A live member's deleted mapped file, made ahead; an image's carries it in its state. */
static int cs_ghost(void *sess, const void *blob, size_t len)
{
	struct cs_sess *s = sess;

	return s->live ? rst_live_sink.ghost(s->live, blob, len) : 0;
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
	if (cs_usable(s))
		return -EPROTO;
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
		pr_info("container %s: image of pid %d committed with the state in %.1f ms",
			s->rx->id, (int)s->pid, haul_now_ms() - t0);
	return ret;
}

static int cs_stale(void *sess, const struct ps_range *r, size_t n, bool complete)
{
	struct cs_sess *s = sess;

	if (!s->live || !rst_live_sink.stale)
		return -EOPNOTSUPP;
	return rst_live_sink.stale(s->live, r, n, complete);
}

/* The last line of @path that says something (an engine's error), into @out. */
void haul_ctr_last_line(const char *path, char *out, size_t len)
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

/*
 * The root's restore of a tree: tree.img beside the processes' images, the
 * shared store closed (every member's session stops storing).  0, or
 * -errno with @res filled.
 */
static int tree_image(struct cs_sess *s, struct ps_restore_result *res)
{
	char dir[PATH_MAX + 16];
	int fd, ret;

	snprintf(dir, sizeof(dir), "%s/migrated", s->rx->images);
	fd = open(dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	ret = fd < 0 ? -errno : rst_tree_img_put(fd, s->tree->tr);
	if (fd >= 0)
		close(fd);
	if (ret) {
		res->err = ret;
		snprintf(res->msg, sizeof(res->msg),
			 "container %s: cannot write the tree of its %zu processes: %s", s->rx->id,
			 s->tree->tr->n_procs, strerror(-ret));
		pr_err("%s", res->msg);
		return ret;
	}
	pstore_close(s->tree->ps);
	s->tree->ps = NULL;
	pr_info("container %s: tree of %zu processes written", s->rx->id, s->tree->tr->n_procs);
	return 0;
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
	if (s->member) {
		res->err = -EPROTO;
		snprintf(res->msg, sizeof(res->msg),
			 "container %s: restore on the session of pid %d, not its tree's root",
			 rx->id, (int)s->pid);
		pr_err("%s", res->msg);
		return 0;
	}
	if (s->tree) {
		ret = tree_image(s, res);
		if (ret)
			return 0;
	}
	/* runc's criu reads the image: it must be whole on disk and closed here */
	pstore_close(s->ps);
	s->ps = NULL;
	s->p = NULL;
	if (haul_podman_bundle(rx->bundle)) {
		/* a podman container's: podman restores it (ctr_podman_rst.c) */
		pid_t pid = 0;

		ret = haul_podman_restore(rx, &pid, why, sizeof(why));
		res->pid = pid;
		if (ret) {
			res->err = ret;
			snprintf(res->msg, sizeof(res->msg),
				 "podman restore of container %.64s failed: %.150s", rx->id, why);
			pr_err("%s", res->msg);
		}
		return 0;
	}
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
		haul_ctr_last_line(log, why, sizeof(why));
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
	} else if (s->member) {
		/* the root's session decides for the whole tree */
		tree_put(s->tree);
		ctr_rx_put(s->rx);
	} else {
		bool restored, podman;

		ctr_rx_lock();
		restored = s->rx->restored;
		podman = s->rx->podman;
		s->rx->committed = committed;
		ctr_rx_unlock();
		if (!committed && restored && podman) {
			/* never two copies: podman forgets what it restored here */
			haul_podman_rm(t->podman[0] ? t->podman : "podman", t->root, s->rx->id);
			pr_warn("container %s: not committed; removed from podman here", s->rx->id);
		} else if (!committed && restored) {
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
		tree_put(s->tree);
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
	.ghost = cs_ghost,
};
