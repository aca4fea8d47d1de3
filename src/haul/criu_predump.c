/*
 * criu_predump.c - CRIU's pre-dump through the criu entry point: PRE_DUMP,
 * and DUMP with parent_img (runc checkpoint --pre-dump --image-path D1,
 * then --parent-path ../D1 --image-path D2).
 *
 * CRIU tracks with soft-dirty bits, which this kernel lacks; haul tracks
 * with uffd write-protect, which lives as long as its uffd.  So the first
 * pre-dump starts a tracker daemon (trackd.c) that holds the tracker for
 * the process between requests; each request takes tracker rounds from it:
 *   PRE_DUMP   one round while the process runs (never stopped): round 1
 *              is every populated page, later rounds what was written
 *              since; committed as a page image without state into D/<id>/;
 *   DUMP       one round running, one stopped (criu_ctr.c's dump_steps),
 *              then the state as for any dump.
 * An image made from rounds after the daemon's previous commit holds only
 * those pages and names that image in parent.img (src/restore/imgchain.c,
 * the format), provided the daemon says its last commit is exactly the
 * parent the engine names: any doubt (no daemon: it ended, timed out or
 * was killed; a round taken and never committed; another parent) makes a
 * new series, with every page, and says so in the log.  A restore reads
 * through the chain; the pre-dump directories must be kept with the final
 * one, as with CRIU.
 */
#define LOG_PREFIX "criu: "
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/vma.h"
#include "haul/criu_int.h"
#include "haul/haul.h"
#include "haul/haul_int.h"
#include "restore/restore.h"

struct criu_chain {
	int fd; /* the tracker daemon */
	pid_t pid;
	bool has_parent;
	struct rst_parent par;
	char ident[TRACKD_IDENT_MAX + 1]; /* this image's: its path */
	struct haul_layout l;		  /* the last round's */
	struct rst_ckpt *ck;
	uint64_t round;
};

/* The identity of image @id in the images directory @dir: realpath(@dir)/@id. */
static int image_ident(const char *dir, const char *id, char *out, size_t len)
{
	char real[PATH_MAX];

	if (!realpath(dir, real))
		return -errno;
	if ((size_t)snprintf(out, len, "%s/%s", real, id) >= len)
		return -ENAMETOOLONG;
	return 0;
}

/*
 * Whether the daemon's last image is the parent the engine names (relative
 * to @dir, as CRIU takes it); fills ch->par.  A "no" is logged.
 */
static bool parent_usable(struct criu_chain *ch, const char *dir, const char *parent,
			  const char *id, const char *last)
{
	char pdir[PATH_MAX * 2], want[TRACKD_IDENT_MAX + 1], store[PATH_MAX * 2 + 256];
	int ret;

	snprintf(pdir, sizeof(pdir), "%s%s%s", parent[0] == '/' ? "" : dir,
		 parent[0] == '/' ? "" : "/", parent);
	ret = image_ident(pdir, id, want, sizeof(want));
	if (ret) {
		pr_warn("pid %d: the parent images directory %s cannot be read (%s): every page "
			"is dumped",
			(int)ch->pid, pdir, strerror(-ret));
		return false;
	}
	if (strcmp(last, want)) {
		pr_warn("pid %d: its tracker's last image is '%s', not the parent %s: every page "
			"is dumped (keep one series of pre-dumps per process)",
			(int)ch->pid, last[0] ? last : "(none: a round was never committed)", want);
		return false;
	}
	snprintf(store, sizeof(store), "%s/%s", pdir, id);
	ret = rst_chain_index_sum(store, (pid_t)atoi(id), &ch->par.index_sum);
	if (ret || strlen(parent) >= sizeof(ch->par.dir) || strlen(id) >= sizeof(ch->par.id)) {
		pr_warn("pid %d: the parent image %s has no readable index: every page is dumped",
			(int)ch->pid, store);
		return false;
	}
	snprintf(ch->par.dir, sizeof(ch->par.dir), "%s", parent);
	snprintf(ch->par.id, sizeof(ch->par.id), "%s", id);
	return true;
}

int criu_chain_open(const Haul__Criu__Options *o, const char *dir, const char *id, bool keep,
		    struct criu_chain **out)
{
	const char *parent = o->parent_img && o->parent_img[0] ? o->parent_img : NULL;
	char last[TRACKD_IDENT_MAX + 1] = "";
	struct criu_chain *ch = calloc(1, sizeof(*ch));
	int ret;

	*out = NULL;
	if (!ch)
		return -ENOMEM;
	ch->fd = -1;
	ch->pid = o->pid;
	ret = image_ident(dir, id, ch->ident, sizeof(ch->ident));
	if (ret)
		goto fail;
	if (trackd_connect(ch->pid, &ch->fd) == 0 && parent &&
	    trackd_status(ch->fd, last, sizeof(last)) == 0)
		ch->has_parent = parent_usable(ch, dir, parent, id, last);
	else if (parent)
		pr_warn("pid %d: no tracker holds its writes since %s (it ended, timed out, or "
			"another criu made that image): every page is dumped",
			(int)ch->pid, parent);
	if (ch->fd >= 0 && !ch->has_parent) {
		/* a new series: the old daemon's rounds are nobody's parent */
		trackd_quit(ch->fd);
		close(ch->fd);
		ch->fd = -1;
	}
	if (ch->fd < 0 && !keep) {
		/* the process ends with this dump: no tracker needed, every page as usual */
		free(ch);
		return 0;
	}
	if (ch->fd < 0) {
		ret = trackd_start(ch->pid);
		if (!ret)
			ret = trackd_connect(ch->pid, &ch->fd);
		if (ret)
			goto fail;
	}
	pr_info("pid %d: pages from its tracker daemon%s%s", (int)ch->pid,
		ch->has_parent ? ", only those written since the parent " : " (a new series)",
		ch->has_parent ? parent : "");
	*out = ch;
	return 0;
fail:
	pr_err_r(ret, "cannot start tracking pid %d for pre-dump rounds", (int)ch->pid);
	criu_chain_free(ch);
	return ret;
}

static int on_layout(void *arg, const struct haul_layout *l)
{
	struct criu_chain *ch = arg;

	return rst_ckpt_stage_layout(ch->ck, l);
}

static int on_pages(void *arg, uint64_t addr, const void *data, uint32_t npages)
{
	struct criu_chain *ch = arg;

	return rst_ckpt_stage(ch->ck, &ch->l, addr, data, npages);
}

int criu_chain_round(struct criu_chain *ch, struct rst_ckpt *ck)
{
	int ret;

	ch->ck = ck;
	ret = trackd_round(ch->fd, &ch->l, on_layout, on_pages, ch, &ch->round);
	if (ret)
		pr_err_r(ret, "round %llu of the tracker of pid %d failed",
			 (unsigned long long)ch->round + 1, (int)ch->pid);
	return ret;
}

int criu_chain_link(struct criu_chain *ch, struct rst_ckpt *ck)
{
	return ch->has_parent ? rst_chain_write_parent(rst_ckpt_path(ck), &ch->par) : 0;
}

void criu_chain_committed(struct criu_chain *ch)
{
	int ret = trackd_commit(ch->fd, ch->ident);

	/* the next pre-dump then starts a new series: slower, never wrong */
	if (ret)
		pr_warn("pid %d: its tracker did not learn of image %s (%s): the next dump with "
			"it as parent dumps every page",
			(int)ch->pid, ch->ident, strerror(-ret));
}

void criu_chain_free(struct criu_chain *ch)
{
	if (!ch)
		return;
	if (ch->fd >= 0)
		close(ch->fd);
	haul_layout_release(&ch->l);
	free(ch);
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int criu_predump(struct criu_conn *c, const Haul__Criu__Options *o, int imgfd, int wdir)
{
	struct haul_pid_lock lock = {-1, ""};
	struct rst_ckpt_stats st = {0};
	struct criu_chain *ch = NULL;
	struct rst_ckpt *ck = NULL;
	char dir[PATH_MAX], why[1024] = "";
	uint64_t t0 = now_us();
	ssize_t n;
	int ret;

	(void)c; /* CRIU calls no hook of the engine on pre-dump */
	snprintf(why, sizeof(why), "/proc/self/fd/%d", imgfd);
	n = readlink(why, dir, sizeof(dir) - 1);
	if (n <= 0 || dir[0] != '/') {
		pr_err("cannot name the images directory (fd %d)", imgfd);
		return -ENOENT;
	}
	dir[n] = '\0';
	ret = haul_pid_lock(o->pid, "pre-dumped", &lock, why, sizeof(why));
	if (ret) {
		pr_err("cannot pre-dump pid %d: %s", o->pid, why);
		return ret;
	}
	/* a tracker daemon follows one process: a tree's pre-dump would miss the others */
	if (rst_has_children(o->pid)) {
		pr_err("cannot pre-dump pid %d: it has child processes, and the pre-dump of a "
		       "container of several processes is not carried; checkpoint it without "
		       "--pre-dump (the tree is dumped whole)",
		       o->pid);
		haul_pid_unlock(&lock);
		return -EOPNOTSUPP;
	}
	/* the container's stdio pipes are the engine's: what the final dump will say */
	ret = criu_stdio_rules(imgfd, o, false);
	if (!ret)
		ret = rst_ckpt_begin(o->pid, dir, &st, &ck);
	if (!ret)
		ret = criu_chain_open(o, dir, st.id, true, &ch);
	if (!ret)
		ret = criu_chain_round(ch, ck);
	if (!ret)
		ret = criu_chain_link(ch, ck);
	if (!ret)
		ret = rst_ckpt_commit_pages(ck, &ch->l);
	if (!ret)
		criu_chain_committed(ch);
	rst_ckpt_end(ck, ret);
	if (!ret) {
		pr_info("pre-dumped pid %d into %s/%s: round %llu, %llu pages (%llu zero)%s%s, "
			"never stopped, %.1f ms",
			o->pid, dir, st.id, (unsigned long long)ch->round,
			(unsigned long long)st.pages, (unsigned long long)st.zero_pages,
			ch->has_parent ? ", parent " : "", ch->has_parent ? o->parent_img : "",
			(now_us() - t0) / 1e3);
		criu_stats_write(wdir, 0, now_us() - t0, now_us() - t0, st.pages, st.zero_pages);
	} else {
		pr_err("the pre-dump of pid %d failed (above); it runs on", o->pid);
	}
	criu_chain_free(ch);
	haul_pid_unlock(&lock);
	return ret;
}
