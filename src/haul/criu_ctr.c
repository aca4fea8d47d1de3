/*
 * criu_ctr.c - the DUMP and RESTORE requests of the criu entry point: a
 * container's process image (haul's own format, image DIR/<id>/ as for
 * `haul checkpoint`) plus its namespaces and mounts (haul-ctr.img and
 * ctr-tmpfs-N.tar, restore/ctr.h) in the engine's images directory.
 *
 * DUMP, in CRIU's order of callbacks:
 *   check the container (namespaces, mounts: refusals before anything is
 *   touched) -> network-lock -> [leave_running: memory copied in tracker
 *   rounds while it runs] -> stop -> tmpfs archives and the container
 *   record while stopped -> commit (the process is killed, or resumes with
 *   leave_running) -> post-dump -> [leave_running: network-unlock] ->
 *   stats-dump.  A failure after network-lock calls network-unlock: the
 *   container runs on.
 * RESTORE:
 *   read and check the record against the engine's root and ext_mnt ->
 *   pre-restore -> the container is created (namespaces, mounts, pivot,
 *   pid 1 of a new PID namespace, rebuilt as the process) ->
 *   setup-namespaces, post-restore (the engine records the PID) ->
 *   network-unlock -> post-resume.  The process is resumed before the
 *   callbacks (haul's restore ends running); a failed post-restore kills it.
 * A container whose pid 1 has children is dumped as a tree (tree_ckpt.c,
 * through tree_ctr.c: the container's parts while all are stopped) and
 * restored by the tree restore, pid 1 first, inside the new namespaces.
 * The cgroups: the engine (manage_cgroups) puts this process into the
 * container's cgroups before the request, and the restored one inherits
 * them; haul's image places it again by path, which on the same host is
 * the same cgroup.
 */
#define LOG_PREFIX "criu: "
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "haul/criu_int.h"
#include "haul/haul.h"
#include "haul/haul_int.h"
#include "haul/netlock.h"
#include "restore/ctr.h"
#include "restore/restore.h"
#include "tracker/tracker.h"

/* The images directory as a path of ours (haul's image code takes paths). */
static int imgdir_path(int imgfd, char *out, size_t len)
{
	char link[64];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", imgfd);
	n = readlink(link, out, len - 1);
	if (n < 0 || (size_t)n >= len - 1 || out[0] != '/') {
		pr_err("cannot name the images directory (fd %d): it must be a directory of this "
		       "mount namespace",
		       imgfd);
		return n < 0 ? -errno : -ENAMETOOLONG;
	}
	out[n] = '\0';
	return 0;
}

/*
 * The engine's externals: its mounts (ext_mnt), and its network namespace:
 * on dump external "net[INODE]:KEY" (key "net[INODE]"), on restore
 * inherit_fd RST_CTR_NET_KEY (value: the path of that fd, which the
 * restore helper opens; this process outlives it), its PID namespace the
 * same way (external "pid[INODE]:KEY", inherit_fd RST_CTR_PID_KEY), and the namespaces
 * it joins (join_ns: key RST_CTR_JOIN_KEY + kind, value the path).  @e's
 * strings point into @o, @paths and the static keys.  The count in *@n.
 */
static struct rst_ctr_ext *ext_list(const Haul__Criu__Options *o, char (*paths)[64], size_t *n)
{
	struct rst_ctr_ext *e = calloc(o->n_ext_mnt + o->n_external + o->n_join_ns + 3, sizeof(*e));
	size_t k = 0;

	for (size_t i = 0; e && i < o->n_ext_mnt; i++, k++) {
		e[k].key = o->ext_mnt[i]->key ? o->ext_mnt[i]->key : "";
		e[k].value = o->ext_mnt[i]->value ? o->ext_mnt[i]->value : "";
	}
	for (size_t i = 0; e && i < o->n_external; i++) {
		char *colon = strstr(o->external[i], "]:");

		if (!colon || colon - o->external[i] + 2 > 63)
			continue; /* criu_opts_check refused it */
		snprintf(paths[i], 64, "%.*s", (int)(colon - o->external[i] + 1), o->external[i]);
		e[k].key = paths[i];
		e[k++].value = colon + 2;
	}
	for (size_t i = 0; e && i < o->n_inherit_fd; i++) {
		const Haul__Criu__InheritedFd *f = o->inherit_fd[i];

		if (!f->key || strcmp(f->key, RST_CTR_NET_KEY) || !f->has_fd)
			continue;
		snprintf(paths[o->n_external], 64, "/proc/%d/fd/%d", (int)getpid(), f->fd);
		e[k].key = RST_CTR_NET_KEY;
		e[k++].value = paths[o->n_external];
		break;
	}
	/* the PID namespace the container joined: inherit_fd RST_CTR_PID_KEY (pidns_ctr.c) */
	for (size_t i = 0; e && i < o->n_inherit_fd; i++) {
		const Haul__Criu__InheritedFd *f = o->inherit_fd[i];

		if (!f->key || strcmp(f->key, RST_CTR_PID_KEY) || !f->has_fd)
			continue;
		snprintf(paths[o->n_external + 1], 64, "/proc/%d/fd/%d", (int)getpid(), f->fd);
		e[k].key = RST_CTR_PID_KEY;
		e[k++].value = paths[o->n_external + 1];
		break;
	}
	for (size_t i = 0; e && i < o->n_join_ns; i++) {
		const char *ns = o->join_ns[i]->ns ? o->join_ns[i]->ns : "";

		/* criu_opts_check refused any other kind */
		e[k].key = !strcmp(ns, "uts") ? RST_CTR_JOIN_KEY "uts" : RST_CTR_JOIN_KEY "ipc";
		e[k++].value = o->join_ns[i]->ns_file;
	}
	*n = k;
	return e;
}

/*
 * runc's descriptors.json in the images directory: a JSON array of the
 * targets of the container's fds 0, 1, 2... ("/dev/null", "pipe:[123]").
 * Up to @max entries into @out (strdup'd); the count, or -errno.
 */
static int read_descriptors(int imgfd, char **out, int max)
{
	char buf[8192], *p;
	int fd, n = 0;
	ssize_t len;

	fd = openat(imgfd, "descriptors.json", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len < 0)
		return -EIO;
	buf[len] = '\0';
	for (p = strchr(buf, '"'); p && n < max; p = strchr(p + 1, '"')) {
		char *end = strchr(p + 1, '"');

		if (!end || memchr(p + 1, '\\', end - p - 1))
			break; /* no escapes in fd targets runc writes */
		out[n] = strndup(p + 1, end - p - 1);
		if (!out[n])
			break;
		n++;
		p = end;
	}
	return n;
}

/*
 * The container's fds that are pipes to the engine (runc: the stdio of
 * conmon or of the caller, in descriptors.json) stay behind; on restore the
 * engine hands the new pipes in as inherit_fd.  So fd I is dumped as "fd I
 * of the restoring haul" (fd_extrules.c), and the restore maps each
 * inherit_fd key back to its fd number.  0 or -errno.
 */
int criu_stdio_rules(int imgfd, const Haul__Criu__Options *o, bool restore)
{
	char *desc[16], rule[64];
	int n = read_descriptors(imgfd, desc, 16), ret = 0;

	if (n < 0)
		return n;
	for (int i = 0; i < n && !ret && !restore; i++)
		if (!strncmp(desc[i], "pipe:[", 6)) {
			snprintf(rule, sizeof(rule), "%d=fd:%d", i, i);
			ret = rst_external_add(rule, true);
		}
	for (size_t k = 0; restore && !ret && k < o->n_inherit_fd; k++) {
		const Haul__Criu__InheritedFd *f = o->inherit_fd[k];
		int i;

		if (f->key &&
		    (!strcmp(f->key, RST_CTR_NET_KEY) || !strcmp(f->key, RST_CTR_PID_KEY)))
			continue; /* the network or PID namespace to join (ext_list), not an fd */
		for (i = 0; i < n; i++)
			if (f->key && !strcmp(desc[i], f->key))
				break;
		if (i == n || !f->has_fd || fcntl(f->fd, F_GETFD) < 0) {
			pr_err("inherit_fd '%s' (fd %d) names no fd of the container in "
			       "descriptors.json, or that fd is not open here",
			       f->key ? f->key : "", f->has_fd ? f->fd : -1);
			ret = -EINVAL;
			break;
		}
		snprintf(rule, sizeof(rule), "%d=fd:%d", i, f->fd);
		ret = rst_external_add(rule, true);
	}
	for (int i = 0; i < n; i++)
		free(desc[i]);
	return ret;
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int criu_ctr_write_record(int imgfd, const Haul__Ctr__Container *rec)
{
	size_t len = haul__ctr__container__get_packed_size(rec);
	uint8_t *buf = malloc(len ? len : 1);
	int fd, ret = 0;

	if (!buf)
		return -ENOMEM;
	haul__ctr__container__pack(rec, buf);
	fd = openat(imgfd, RST_CTR_FILE, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, buf, len) != (ssize_t)len || fsync(fd) < 0)
		ret = -errno;
	if (fd >= 0)
		close(fd);
	free(buf);
	if (ret)
		pr_err_r(ret, "cannot write the container record %s", RST_CTR_FILE);
	return ret;
}

/*
 * The process image, with the container's parts taken while it is stopped.
 * With parent_img (or track_mem and leave_running) the pages come from the
 * pre-dump tracker daemon's rounds (criu_predump.c).
 */
static int dump_steps(const Haul__Criu__Options *o, bool leave, const char *dir, int imgfd,
		      Haul__Ctr__Container *rec, struct rst_ckpt_stats *st)
{
	bool chained =
		(o->parent_img && o->parent_img[0]) || (o->has_track_mem && o->track_mem && leave);
	struct criu_chain *ch = NULL;
	struct rst_ckpt *ck = NULL;
	struct trk *trk = NULL;
	char why[1024] = "";
	pid_t pid = o->pid;
	int ret;

	ret = rst_ckpt_begin(pid, dir, st, &ck);
	if (ret)
		return ret;
	/* without its tracker a dump is still whole: every page, as usual (logged) */
	if (chained && criu_chain_open(o, dir, st->id, leave, &ch))
		pr_warn("pid %d: dumped without a tracker daemon: every page", (int)pid);
	if (ch)
		ret = criu_chain_round(ch, ck);
	else if (!ret && leave && trk_open(pid, &(struct trk_opts){0}, &trk) == 0)
		for (int round = 0; round < 2 && !ret; round++)
			ret = rst_ckpt_store_round(ck, trk);
	if (!ret)
		ret = rst_ckpt_seize(ck);
	if (!ret && ch)
		ret = criu_chain_round(ch, ck);
	if (!ret && trk) {
		trk_set_frozen(trk, true);
		ret = rst_ckpt_store_round(ck, trk);
	}
	if (!ret && rec) {
		ret = rst_ctr_dump_tmpfs(pid, rec, dir, why, sizeof(why));
		if (ret)
			pr_err("%s", why);
		if (!ret)
			ret = criu_ctr_write_record(imgfd, rec);
	}
	if (!ret && ch)
		ret = criu_chain_link(ch, ck);
	if (!ret)
		ret = rst_ckpt_commit(ck, trk || ch, leave, NULL);
	if (!ret && ch && leave)
		criu_chain_committed(ch); /* else the process is gone, its tracker with it */
	rst_ckpt_end(ck, ret);
	criu_chain_free(ch);
	trk_free(trk);
	return ret;
}

/* The container's own parts of a tree's checkpoint, taken while all are stopped. */
struct tree_parts {
	pid_t pid;
	int imgfd;
	const char *dir;
	Haul__Ctr__Container *rec;
};

static int tree_parts_stopped(void *arg)
{
	struct tree_parts *tp = arg;
	char why[1024] = "";
	int ret;

	if (!tp->rec)
		return 0;
	ret = rst_ctr_dump_tmpfs(tp->pid, tp->rec, tp->dir, why, sizeof(why));
	if (ret)
		pr_err("%s", why);
	return ret ? ret : criu_ctr_write_record(tp->imgfd, tp->rec);
}

/*
 * A container whose pid 1 has children: the whole tree in one image
 * (tree_ckpt.c), memory read while stopped.  Pre-dump images and the
 * tracker follow one process, so a parent image or track_mem gives no
 * rounds here: the image holds every page (said in the log).
 */
static int dump_tree(const Haul__Criu__Options *o, bool leave, const char *dir, int imgfd,
		     Haul__Ctr__Container *rec, struct rst_ckpt_stats *st)
{
	struct tree_parts tp = {.pid = o->pid, .imgfd = imgfd, .dir = dir, .rec = rec};

	if ((o->parent_img && o->parent_img[0]) || (o->has_track_mem && o->track_mem))
		pr_warn("pid %d has child processes: the tree is dumped whole while stopped, "
			"without the parent image or tracker rounds",
			(int)o->pid);
	return rst_ctr_tree_checkpoint(o->pid, dir, leave, tree_parts_stopped, &tp, st);
}

static int dump_request(struct criu_conn *c, const Haul__Criu__Options *o, int imgfd, int wdir)
{
	bool leave = o->has_leave_running && o->leave_running;
	char(*paths)[64] = calloc(o->n_external + 2, sizeof(*paths));
	size_t next = 0;
	struct rst_ctr_ext *ext = paths ? ext_list(o, paths, &next) : NULL;
	Haul__Ctr__Container *rec = NULL;
	struct haul_pid_lock lock = {-1, ""};
	struct rst_ckpt_stats st = {0};
	char dir[PATH_MAX], why[1024] = "";
	bool locked = false, tree = false;
	uint64_t t0 = now_us();
	int ret;

	if (!ext) {
		free(paths);
		return -ENOMEM;
	}
	ret = imgdir_path(imgfd, dir, sizeof(dir));
	if (ret)
		goto out;
	ret = haul_pid_lock(o->pid, "checkpointed", &lock, why, sizeof(why));
	if (ret) {
		pr_err("cannot checkpoint pid %d: %s", o->pid, why);
		goto out;
	}
	ret = rst_ctr_dump_check(o->pid, ext, next, &rec, why, sizeof(why));
	if (ret) {
		pr_err("cannot checkpoint the container of pid %d: %s; it runs on", o->pid, why);
		goto out;
	}
	pr_info("pid %d: %s", o->pid,
		rec ? "a container (namespaces and mounts carried)" : "a process");
	ret = criu_stdio_rules(imgfd, o, false);
	if (ret)
		goto out;
	/*
	 * the process's own refusals too come before any callback of the engine;
	 * a tree's processes are prechecked by its checkpoint, before any stops
	 */
	tree = rst_has_children(o->pid);
	ret = tree ? 0 : rst_dump_precheck(o->pid, why, sizeof(why));
	if (ret) {
		pr_err("cannot checkpoint pid %d: %s; it runs on", o->pid, why);
		goto out;
	}
	ret = criu_notify(c, "network-lock", 0);
	if (ret)
		goto out;
	locked = true;
	if (tree)
		ret = dump_tree(o, leave, dir, imgfd, rec, &st);
	else
		ret = dump_steps(o, leave, dir, imgfd, rec, &st);
	if (ret) {
		pr_err("the checkpoint of pid %d failed (above); it runs on", o->pid);
		goto out;
	}
	pr_info("checkpointed pid %d into %s/%s: %llu pages, stopped %.1f ms%s", o->pid, dir, st.id,
		(unsigned long long)st.pages, st.frozen_ns / 1e6, leave ? " (left running)" : "");
	ret = criu_inventory_write(imgfd);
	if (!ret)
		ret = criu_notify(c, "post-dump", o->pid);
	if (ret)
		goto out;
	if (leave) {
		locked = false;
		ret = criu_notify(c, "network-unlock", 0);
	}
	criu_stats_write(wdir, st.frozen_ns / 1000, now_us() - t0, now_us() - t0, st.pages,
			 st.zero_pages);
out:
	if (ret && locked)
		criu_notify(c, "network-unlock", 0);
	haul_pid_unlock(&lock);
	rst_ctr_record_free(rec);
	free(ext);
	free(paths);
	return ret;
}

int criu_ctr_dump(struct criu_conn *c, const Haul__Criu__Options *o, int imgfd, int wdir)
{
	int ret;

	/*
	 * tcp_established: connections are carried, under the checkpoint's
	 * network lock (ckpt_netlock.c) in the container's namespace, which the
	 * image keeps until its restore lifts it; without it each is refused
	 * by name, as CRIU does
	 */
	bool tcp = o->has_tcp_established && o->tcp_established;

	rst_tcp_carry_connections(tcp);
	if (tcp) {
		haul_netlock_reap();
		haul_ckpt_netlock_use();
	}
	ret = dump_request(c, o, imgfd, wdir);
	if (tcp) {
		haul_ckpt_netlock_done();
		rst_netlock_set(NULL);
	}
	rst_tcp_carry_connections(true);
	return ret;
}

/* The container record of the images directory; *@out NULL when there is none. */
static int read_record(int imgfd, Haul__Ctr__Container **out)
{
	struct stat st;
	uint8_t *buf;
	int fd, ret = 0;

	*out = NULL;
	fd = openat(imgfd, RST_CTR_FILE, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) < 0 || st.st_size > CRIU_REQ_MAX * 16) {
		close(fd);
		pr_err("the container record %s is unreadable or too large", RST_CTR_FILE);
		return -EBADMSG;
	}
	buf = malloc(st.st_size ? st.st_size : 1);
	if (!buf || read(fd, buf, st.st_size) != st.st_size)
		ret = buf ? -EIO : -ENOMEM;
	close(fd);
	if (!ret) {
		*out = haul__ctr__container__unpack(NULL, st.st_size, buf);
		if (!*out) {
			pr_err("the container record %s does not decode; checkpoint again",
			       RST_CTR_FILE);
			ret = -EBADMSG;
		}
	}
	free(buf);
	return ret;
}

int criu_ctr_restore(struct criu_conn *c, const Haul__Criu__Options *o, int imgfd, int wdir,
		     pid_t *pid)
{
	uint64_t t0 = now_us();
	struct rst_target_opts to = {0};
	char(*paths)[64] = calloc(o->n_external + 2, sizeof(*paths));
	size_t next = 0;
	struct rst_ctr_ext *ext = paths ? ext_list(o, paths, &next) : NULL;
	Haul__Ctr__Container *rec = NULL;
	struct rst_target *t = NULL;
	struct rst_ctr ctr = {0};
	char dir[PATH_MAX], why[1024] = "";
	pid_t here = 0;
	int ret;

	if (!ext) {
		free(paths);
		return -ENOMEM;
	}
	ret = imgdir_path(imgfd, dir, sizeof(dir));
	if (!ret)
		ret = read_record(imgfd, &rec);
	if (!ret)
		ret = criu_stdio_rules(imgfd, o, true);
	if (ret)
		goto out;
	if (rec) {
		ret = rst_ctr_prepare(rec, dir, o->root, ext, next, &ctr, why, sizeof(why));
		if (ret) {
			pr_err("cannot restore the container of %s: %s", dir, why);
			goto out;
		}
		to.ctr = &ctr;
		to.pidns = RST_PIDNS_ALWAYS;
		to.sibling = o->has_rst_sibling && o->rst_sibling;
	}
	to.detach = true; /* the container outlives this request */
	ret = criu_notify(c, "pre-restore", 0);
	if (ret)
		goto out;
	/* the lock a tcp_established DUMP left is lifted just before it runs (ckpt_netlock.c) */
	haul_ckpt_netlock_use();
	ret = rst_restore_images(dir, NULL, 0, &to, &t, &here);
	haul_ckpt_netlock_done();
	rst_netlock_set(NULL);
	if (ret) {
		pr_err("cannot restore the image of %s (above)", dir);
		goto out;
	}
	ret = criu_notify(c, "setup-namespaces", here);
	if (!ret)
		ret = criu_notify(c, "post-restore", here);
	if (ret) {
		pr_err("the engine refused the restored pid %d; it is killed", (int)here);
		rst_target_kill(t);
		goto out;
	}
	criu_stats_restore_write(wdir, now_us() - t0, 0);
	criu_notify(c, "network-unlock", 0);
	criu_notify(c, "post-resume", here);
	pr_info("restored %s as pid %d", rec ? "the container" : "the process", (int)here);
	*pid = here;
out:
	rst_target_free(t);
	rst_ctr_release(&ctr);
	if (rec)
		haul__ctr__container__free_unpacked(rec, NULL);
	free(ext);
	free(paths);
	return ret;
}
