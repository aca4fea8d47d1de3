/*
 * cgplace.c - carry a process's cgroup membership: record it at dump,
 * place the restored process (and each thread that sits elsewhere) there.
 *
 * What is carried is /proc/PID/cgroup, one Cgroup per hierarchy: the v1
 * controllers ("cpu,cpuacct", "name=systemd") or "" for cgroup2, and the
 * path from that hierarchy's root.  Threads get their own lines only where
 * they differ from the main thread (v1 per-thread placement, cgroup2
 * threaded subtrees).  Layouts differ between hosts (hybrid v1 + cgroup2 at
 * /sys/fs/cgroup/unified here, pure cgroup2 elsewhere): each hierarchy is
 * found in /proc/self/mountinfo by its fs type and super options, never by
 * a fixed path.  A missing directory is created (mkdir -p) with the host's
 * default settings, and a warning says so: a cgroup's limits, owner and mode
 * are the host's configuration and are not carried.  A hierarchy the
 * restoring host lacks fails the restore by name, unless the process sat in
 * its root (nothing to reproduce).
 *
 * haul migrate moves a process that shares its cgroup into one of its own
 * (haul/mig-PID, src/haul/cgroup.c) to freeze it: that is haul's doing, not
 * the process's placement.  cgroup.c tells us with rst_cg_note_moved(), and
 * the dump records the cgroup it came from instead.
 */
#define LOG_PREFIX "cgroup: "
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/proc.h"
#include "restore/restore.h"
#include "restore/res_int.h"
#include "restore/restore_int.h"

/* Whether comma-separated @opts holds every comma-separated word of @ctrls. */
static bool opts_have_all(const char *opts, const char *ctrls)
{
	const char *w = ctrls;

	while (*w) {
		size_t wl = strcspn(w, ",");
		bool found = false;

		for (const char *o = opts; *o;) {
			size_t ol = strcspn(o, ",");

			found |= ol == wl && !strncmp(o, w, wl);
			o += ol + (o[ol] == ',');
		}
		if (!found)
			return false;
		w += wl + (w[wl] == ',');
	}
	return true;
}

/* A cgroup or cgroup2 mount of /proc/self/mountinfo. */
struct cg_mnt {
	bool v2;
	char opts[1024];
	char mnt[PATH_MAX];
	char root[PATH_MAX]; /* the path inside the hierarchy of the mount's root (field 4) */
};

/* One mountinfo line into @m: true when it is a cgroup or cgroup2 mount. */
static bool parse_mount(const char *line, struct cg_mnt *m)
{
	char type[64], src[256];
	const char *dash = strstr(line, " - ");

	if (!dash || sscanf(line, "%*s %*s %*s %4095s %4095s", m->root, m->mnt) != 2 ||
	    sscanf(dash + 3, "%63s %255s %1023s", type, src, m->opts) != 3)
		return false;
	m->v2 = !strcmp(type, "cgroup2");
	return m->v2 || !strcmp(type, "cgroup");
}

/* Is @m the hierarchy of @ctrls ("" = cgroup2)? */
static bool mount_is(bool v2, const char *opts, const char *ctrls)
{
	return ctrls[0] ? !v2 && opts_have_all(opts, ctrls) : v2;
}

/*
 * haul's own moves (rst_cg_note_moved): one migration per haul process, a
 * tree's each.  Kept as paths inside their hierarchy, worked out once here,
 * so that the dump matches its cgroup lines by string alone (reading
 * mountinfo for each line of each thread cost 6 ms of memcached's downtime).
 */
#define CG_NOTES_MAX 8192
static struct cg_note {
	pid_t pid;
	bool v2;
	char opts[1024];      /* the hierarchy's mount options (its controllers) */
	char dir[PATH_MAX];   /* haul's cgroup directory: the note's key */
	char moved[PATH_MAX]; /* the same, as a path in the hierarchy */
	char orig[PATH_MAX];  /* where the process was, as a path in the hierarchy */
} * notes;
static size_t nnotes;

/* The path inside its hierarchy of cgroup directory @dir; *@m: the mount it is under. */
static bool dir_to_path(const char *dir, struct cg_mnt *m, char *path, size_t len)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096];
	struct cg_mnt c;
	size_t best = 0, ml;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (!parse_mount(line, &c))
			continue;
		ml = strlen(c.mnt);
		if (ml > best && !strncmp(dir, c.mnt, ml) && (!dir[ml] || dir[ml] == '/')) {
			best = ml;
			*m = c;
		}
	}
	fclose(f);
	if (!best)
		return false;
	snprintf(path, len, "%s%s", strcmp(m->root, "/") ? m->root : "",
		 dir[best] ? dir + best : "");
	if (!path[0])
		snprintf(path, len, "/");
	return true;
}

void rst_cg_note_moved(pid_t pid, const char *dir, const char *orig)
{
	struct cg_mnt m, mo;
	char moved[PATH_MAX], from[PATH_MAX];

	if (!dir_to_path(dir, &m, moved, sizeof(moved)) ||
	    !dir_to_path(orig, &mo, from, sizeof(from))) {
		pr_warn("pid %d's cgroup %s is under no cgroup mount here; it will be carried as %s",
			(int)pid, orig, dir);
		return;
	}
	for (size_t i = 0;; i++) {
		if (i == nnotes) {
			struct cg_note *g = nnotes < CG_NOTES_MAX
						    ? realloc(notes, (nnotes + 8) * sizeof(*g))
						    : NULL;

			if (!g)
				break;
			memset(g + nnotes, 0, 8 * sizeof(*g));
			notes = g;
			nnotes += 8;
		}
		if (!notes[i].pid || (notes[i].pid == pid && !strcmp(notes[i].dir, dir))) {
			notes[i].pid = pid;
			notes[i].v2 = m.v2;
			snprintf(notes[i].opts, sizeof(notes[i].opts), "%s", m.opts);
			snprintf(notes[i].dir, sizeof(notes[i].dir), "%s", dir);
			snprintf(notes[i].moved, sizeof(notes[i].moved), "%s", moved);
			snprintf(notes[i].orig, sizeof(notes[i].orig), "%s", from);
			return;
		}
	}
	pr_warn("too many cgroup moves to remember; pid %d's cgroup %s will be carried as %s",
		(int)pid, orig, dir);
}

/*
 * The mount point of the hierarchy @ctrls ("" = cgroup2) here, and the
 * path inside it of that mount's root (mountinfo field 4).  -ENOENT: not
 * mounted.
 */
static int hier_mount(const char *ctrls, char *mnt, size_t mlen, char *root, size_t rlen)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096];
	struct cg_mnt m;
	int ret = -ENOENT;

	if (!f)
		return -errno;
	while (ret && fgets(line, sizeof(line), f)) {
		if (!parse_mount(line, &m) || !mount_is(m.v2, m.opts, ctrls))
			continue;
		snprintf(mnt, mlen, "%s", m.mnt);
		snprintf(root, rlen, "%s", m.root);
		ret = 0;
	}
	fclose(f);
	return ret;
}

/* The directory of cgroup @path of hierarchy @ctrls here, or -ENOENT / -EXDEV. */
static int cg_dir(const char *ctrls, const char *path, char *dir, size_t len)
{
	char mnt[PATH_MAX], root[PATH_MAX];
	size_t rl;
	int ret = hier_mount(ctrls, mnt, sizeof(mnt), root, sizeof(root));

	if (ret)
		return ret;
	rl = strcmp(root, "/") ? strlen(root) : 0;
	if (strncmp(path, root, rl) || (path[rl] && path[rl] != '/'))
		return -EXDEV; /* above the mount's root: not reachable here */
	if ((size_t)snprintf(dir, len, "%s%s", mnt, path + rl) >= len)
		return -ENAMETOOLONG;
	return 0;
}

/* The placement before haul moved @pid, when @path of @ctrls is haul's own cgroup for it. */
static void undo_haul_move(pid_t pid, const char *ctrls, char *path, size_t len)
{
	for (size_t i = 0; i < nnotes; i++)
		if (notes[i].pid == pid && mount_is(notes[i].v2, notes[i].opts, ctrls) &&
		    !strcmp(notes[i].moved, path)) {
			snprintf(path, len, "%s", notes[i].orig);
			return;
		}
}

void rst_cg_buf_free(struct rst_cg_buf *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++) {
		free(b->cg[i].controllers);
		free(b->cg[i].path);
	}
	free(b->cg);
	free(b->ptr);
	free(b);
}

/* Append one line to @b; its pointer goes to b->ptr[b->n]. */
static int add(struct rst_cg_buf *b, const char *ctrls, const char *path)
{
	if (b->n == b->cap) {
		size_t nc = b->cap ? b->cap * 2 : 16;
		Haul__Img__Cgroup *cg = realloc(b->cg, nc * sizeof(*cg));
		Haul__Img__Cgroup **p;

		if (!cg)
			return -ENOMEM;
		b->cg = cg;
		p = realloc(b->ptr, nc * sizeof(*p));
		if (!p)
			return -ENOMEM;
		b->ptr = p;
		b->cap = nc;
	}
	haul__img__cgroup__init(&b->cg[b->n]);
	b->cg[b->n].controllers = strdup(ctrls);
	b->cg[b->n].path = strdup(path);
	b->n++;
	if (!b->cg[b->n - 1].controllers || !b->cg[b->n - 1].path)
		return -ENOMEM;
	return 0;
}

/*
 * Parse /proc/@pid/@file ("cgroup" or "task/TID/cgroup") into @b; lines
 * equal to one of b->cg[0..nsame) (the main thread's) are skipped.
 */
static int read_lines(pid_t pid, const char *file, struct rst_cg_buf *b, size_t nsame)
{
	char path[96], text[8192];
	int ret;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	ret = haul_read_file(path, text, sizeof(text));
	if (ret < 0)
		return ret == -ENOENT ? -ESRCH : ret;
	for (char *l = text, *nl; l && *l; l = nl) {
		char *c1 = strchr(l, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		char cg[PATH_MAX];
		bool skip = false;

		nl = strchr(l, '\n');
		if (nl)
			*nl++ = '\0';
		if (!c2)
			continue;
		*c2 = '\0';
		snprintf(cg, sizeof(cg), "%s", c2 + 1);
		undo_haul_move(pid, c1 + 1, cg, sizeof(cg));
		for (size_t i = 0; i < nsame; i++)
			skip |= !strcmp(b->cg[i].controllers, c1 + 1) && !strcmp(b->cg[i].path, cg);
		if (!skip && (ret = add(b, c1 + 1, cg)))
			return ret;
	}
	return 0;
}

int rst_cg_dump(pid_t pid, const pid_t *tids, Haul__Img__ThreadState **th, size_t nthr,
		Haul__Img__ProcessState *ps, struct rst_cg_buf **out)
{
	struct rst_cg_buf *b = calloc(1, sizeof(*b));
	size_t *first = calloc(nthr + 1, sizeof(*first));
	char file[64];
	size_t nproc;
	int ret;

	if (!b || !first) {
		free(b);
		free(first);
		return -ENOMEM;
	}
	ret = read_lines(pid, "cgroup", b, 0);
	nproc = b->n;
	for (size_t i = 0; !ret && i < nthr; i++) {
		first[i] = b->n;
		snprintf(file, sizeof(file), "task/%d/cgroup", (int)tids[i]);
		ret = read_lines(pid, file, b, nproc);
	}
	if (ret) {
		pr_err_r(ret, "cannot read the cgroups of pid %d", (int)pid);
		free(first);
		rst_cg_buf_free(b);
		return ret;
	}
	/* Pointers only now: the array moved while it grew. */
	for (size_t i = 0; i < b->n; i++)
		b->ptr[i] = &b->cg[i];
	first[nthr] = b->n;
	ps->n_cgroups = nproc;
	ps->cgroups = b->ptr;
	for (size_t i = 0; i < nthr; i++) {
		th[i]->n_cgroups = first[i + 1] - first[i];
		th[i]->cgroups = b->ptr + first[i];
	}
	free(first);
	*out = b;
	return 0;
}

/* 1 when @path was created (with its parents as needed), 0 when it existed, or -errno. */
static int mkdir_p(const char *path)
{
	char p[PATH_MAX];
	struct stat st;

	if (!stat(path, &st))
		return 0;

	snprintf(p, sizeof(p), "%s", path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(p, 0755))
		return errno == EEXIST ? 0 : -errno;
	return 1;
}

/* Write @id into @dir's cgroup.procs (@thread: its tasks or cgroup.threads). */
static int write_id(const char *dir, const char *ctrls, pid_t id, bool thread)
{
	char f[PATH_MAX + 32], v[32];
	int fd, ret = 0;

	snprintf(v, sizeof(v), "%d", (int)id);
	snprintf(f, sizeof(f), "%s/%s", dir,
		 thread ? (ctrls[0] ? "tasks" : "cgroup.threads") : "cgroup.procs");
	fd = open(f, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, v, strlen(v)) != (ssize_t)strlen(v))
		ret = -errno;
	close(fd);
	return ret;
}

/* Whether task @id (of @pid; @thread: a thread) already sits in @path of @ctrls. */
static bool placed(pid_t pid, pid_t id, bool thread, const char *ctrls, const char *path)
{
	char file[96], text[8192];

	if (thread)
		snprintf(file, sizeof(file), "/proc/%d/task/%d/cgroup", (int)pid, (int)id);
	else
		snprintf(file, sizeof(file), "/proc/%d/cgroup", (int)id);
	if (haul_read_file(file, text, sizeof(text)) < 0)
		return false;
	for (char *l = text, *nl; l && *l; l = nl) {
		char *c1 = strchr(l, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

		nl = strchr(l, '\n');
		if (nl)
			*nl++ = '\0';
		if (c2 && (size_t)(c2 - c1 - 1) == strlen(ctrls) &&
		    !strncmp(c1 + 1, ctrls, c2 - c1 - 1))
			return !strcmp(c2 + 1, path);
	}
	return false;
}

/*
 * Whether cgroup @dir is frozen (cgroup2: cgroup.events says so, an
 * ancestor's freeze included; the v1 freezer: not THAWED), or, with
 * @busy, holds any process.  A task written into a frozen cgroup stops.
 */
static bool frozen_or_busy(const char *dir, bool busy)
{
	char f[PATH_MAX + 32], text[256];

	snprintf(f, sizeof(f), "%s/cgroup.events", dir);
	if (haul_read_file(f, text, sizeof(text)) >= 0)
		return strstr(text, "frozen 1") || (busy && strstr(text, "populated 1"));
	snprintf(f, sizeof(f), "%s/freezer.state", dir);
	if (haul_read_file(f, text, sizeof(text)) >= 0 && strncmp(text, "THAWED", 6))
		return true;
	if (!busy)
		return false;
	snprintf(f, sizeof(f), "%s/cgroup.procs", dir);
	return haul_read_file(f, text, sizeof(text)) != 0;
}

/* Remember @id for rst_cg_place_later(). */
static int defer(struct rst_cg_later *later, const char *dir, const char *ctrls, pid_t id,
		 bool thread)
{
	struct rst_cg_later_one *e = realloc(later->e, (later->n + 1) * sizeof(*e));

	if (!e)
		return -ENOMEM;
	later->e = e;
	e += later->n;
	e->dir = strdup(dir);
	e->ctrls = strdup(ctrls);
	e->id = id;
	e->thread = thread;
	if (!e->dir || !e->ctrls) {
		free(e->dir);
		free(e->ctrls);
		return -ENOMEM;
	}
	later->n++;
	return 0;
}

/*
 * Put @id (the restored process @here, or one of its threads) into @cg;
 * nothing when it is there already, and into @later when @later is set
 * and the cgroup is frozen.
 */
static int place(pid_t pid, pid_t here, pid_t id, const Haul__Img__Cgroup *cg, bool thread,
		 struct rst_cg_later *later, char *why, size_t wl)
{
	const char *name = cg->controllers[0] ? cg->controllers : "cgroup2";
	char dir[PATH_MAX];
	int ret = cg_dir(cg->controllers, cg->path, dir, sizeof(dir));

	if (ret == -ENOENT && !strcmp(cg->path, "/"))
		return 0; /* the root of a hierarchy this host lacks: nothing to reproduce */
	if (ret) {
		snprintf(why, wl,
			 "pid %d was in %s cgroup %.256s; this host has %s: mount that hierarchy "
			 "or restore on a host that has it",
			 (int)pid, name, cg->path,
			 ret == -ENOENT ? "no such hierarchy" : "it outside its cgroup mount");
		return -EOPNOTSUPP;
	}
	if (placed(here, id, thread, cg->controllers, cg->path))
		return 0;
	ret = mkdir_p(dir);
	if (ret < 0) {
		snprintf(why, wl, "cannot create %s cgroup %.256s for pid %d: %s", name, dir,
			 (int)pid, strerror(-ret));
		return ret;
	}
	if (ret)
		pr_warn("created %s cgroup %s for pid %d: its settings (limits, owner, mode) are "
			"this host's defaults, not the source's; set them if they matter",
			name, dir, (int)pid);
	if (later && frozen_or_busy(dir, false))
		return defer(later, dir, cg->controllers, id, thread);
	ret = write_id(dir, cg->controllers, id, thread);
	if (ret)
		snprintf(why, wl, "cannot move %s %d of pid %d into %s cgroup %.256s: %s",
			 thread ? "thread" : "process", (int)id, (int)pid, name, dir,
			 strerror(-ret));
	return ret;
}

int rst_cg_place(pid_t pid, pid_t here, const pid_t *tids, const Haul__Img__ProcessState *ps,
		 struct rst_cg_later *later, char *why, size_t wl)
{
	int ret = 0;

	for (size_t i = 0; !ret && i < ps->n_cgroups; i++)
		ret = place(pid, here, here, ps->cgroups[i], false, later, why, wl);
	for (size_t i = 0; !ret && i < ps->n_threads; i++)
		for (size_t k = 0; !ret && k < ps->threads[i]->n_cgroups; k++)
			ret = place(pid, here, tids[i], ps->threads[i]->cgroups[k], true, later,
				    why, wl);
	return ret;
}

void rst_cg_place_later(pid_t pid, struct rst_cg_later *later)
{
	for (size_t i = 0; i < later->n; i++) {
		struct rst_cg_later_one *e = &later->e[i];
		/* the source may have removed its cgroup once it was empty */
		int ret = mkdir_p(e->dir);

		if (ret >= 0)
			ret = write_id(e->dir, e->ctrls, e->id, e->thread);

		if (ret)
			pr_warn("cannot move %s %d of pid %d into cgroup %s: %s; it stays where "
				"the page server put it",
				e->thread ? "thread" : "process", (int)e->id, (int)pid, e->dir,
				strerror(-ret));
		else
			pr_info("pid %d joined cgroup %s (frozen at the resume)", (int)pid, e->dir);
	}
	rst_cg_later_free(later);
}

void rst_cg_later_free(struct rst_cg_later *later)
{
	for (size_t i = 0; i < later->n; i++) {
		free(later->e[i].dir);
		free(later->e[i].ctrls);
	}
	free(later->e);
	later->e = NULL;
	later->n = 0;
}

void rst_cg_early(pid_t pid, pid_t here, char *const *lines, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *colon = strchr(lines[i], ':');
		char ctrls[256], dir[PATH_MAX];

		if (!colon || (size_t)(colon - lines[i]) >= sizeof(ctrls))
			continue;
		snprintf(ctrls, sizeof(ctrls), "%.*s", (int)(colon - lines[i]), lines[i]);
		if (!strcmp(colon + 1, "/") || cg_dir(ctrls, colon + 1, dir, sizeof(dir)))
			continue; /* the root, or not here: the resume says what is wrong */
		/* a cgroup in use may be the source's own on this host: frozen at the switch */
		if (frozen_or_busy(dir, true) || mkdir_p(dir) < 0 ||
		    write_id(dir, ctrls, here, false))
			continue;
		pr_debug("pid %d (pid %d here) placed in %s before the switch", (int)pid, (int)here,
			 dir);
	}
}

int rst_cg_lines(pid_t pid, char ***out, size_t *n)
{
	struct rst_cg_buf b = {0};
	char **l;
	int ret = read_lines(pid, "cgroup", &b, 0);

	*out = NULL;
	*n = 0;
	l = ret ? NULL : calloc(b.n + 1, sizeof(*l));
	if (!ret && !l)
		ret = -ENOMEM;
	for (size_t i = 0; !ret && i < b.n; i++)
		if (asprintf(&l[i], "%s:%s", b.cg[i].controllers, b.cg[i].path) < 0)
			ret = -ENOMEM;
	if (!ret) {
		*out = l;
		*n = b.n;
	} else if (l) {
		for (size_t i = 0; i < b.n; i++)
			free(l[i]);
		free(l);
	}
	for (size_t i = 0; i < b.n; i++) {
		free(b.cg[i].controllers);
		free(b.cg[i].path);
	}
	free(b.cg);
	free(b.ptr);
	return ret;
}

/* ---- the resource (res_int.h): placed from outside by rst_res_attrs' apply ---- */

static int cgroups_dump(struct rst_seized *s, uint64_t scratch, Haul__Img__ProcessState *ps,
			void **priv, char *why, size_t wl)
{
	pid_t *tids = calloc(s->n, sizeof(*tids));
	int ret;

	(void)scratch;
	if (!tids)
		return -ENOMEM;
	for (size_t i = 1; i < s->n; i++)
		tids[i - 1] = s->thr[i].pid;
	ret = rst_cg_dump(s->pid, tids, ps->threads, s->n - 1, ps, (struct rst_cg_buf **)priv);
	free(tids);
	if (ret)
		snprintf(why, wl, "cannot read the cgroups of pid %d: %s", (int)s->pid,
			 strerror(-ret));
	return ret;
}

static void cgroups_release(void *priv)
{
	rst_cg_buf_free(priv);
}

const struct rst_res_ops rst_res_cgroups = {
	.name = "cgroups",
	.dump = cgroups_dump,
	.release = cgroups_release,
};
