/*
 * cgroup.c - find, make and undo the cgroups a migrated workload lives in.
 *
 * Two controllers matter to migrate: the freezer (switchover) and cpu
 * (auto-converge throttle).  Hosts differ: the development VMs are hybrid
 * (v1 controllers under /sys/fs/cgroup/<ctrl>, cgroup2 without controllers at
 * /sys/fs/cgroup/unified), the large machine is pure cgroup2.  So the layout
 * is read from /proc/self/mounts, never assumed:
 *   freezer: cgroup2's cgroup.freeze wherever cgroup2 is mounted (it needs no
 *            controller), else the v1 freezer hierarchy;
 *   cpu:     cgroup2's cpu.max when the cpu controller is enabled there, else
 *            the v1 cpu hierarchy's cpu.cfs_quota_us.
 * Only a cgroup that holds the workload alone may be frozen or throttled: a
 * process that shares its cgroup (or sits in the root) is moved into a cgroup
 * haul makes, <mount>/haul/mig-<pid>, and moved back if the migration fails.
 * cgroup.procs moves every thread of the process at once.  A v1 cpu cgroup is
 * made only at the first throttle: nested under haul/ the process got a far
 * smaller CPU share than in its own place, and its clients stalled for it.
 * Under `ip netns exec` no hierarchy is mounted at all (a fresh sysfs on
 * /sys): haul_cg_probe() then mounts cgroup2 in a private mount namespace.
 */
#define LOG_PREFIX "cgroup: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "haul/haul_int.h"
#include "restore/restore.h"

/* Where haul mounts cgroup2 when no hierarchy is visible (see haul_cg_probe). */
#define HAUL_CG_FALLBACK_MNT "/sys/fs/cgroup"

bool haul_cg_has_file(const char *dir, const char *file)
{
	char p[PATH_MAX + 64];

	snprintf(p, sizeof(p), "%s/%s", dir, file);
	return access(p, F_OK) == 0;
}

int haul_cg_write(const char *dir, const char *file, const char *val)
{
	char p[PATH_MAX + 64];
	size_t len = strlen(val);
	ssize_t n;
	int fd, ret = 0;

	snprintf(p, sizeof(p), "%s/%s", dir, file);
	fd = open(p, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, val, len);
	if (n < 0)
		ret = -errno;
	else if ((size_t)n != len)
		ret = -EIO;
	close(fd);
	return ret;
}

int haul_cg_read(const char *dir, const char *file, char *buf, size_t len)
{
	char p[PATH_MAX + 64];

	snprintf(p, sizeof(p), "%s/%s", dir, file);
	return haul_read_file(p, buf, len);
}

int haul_cg_read_procs(const char *path, char *dir, size_t dlen, char *buf, size_t len)
{
	struct haul_cg_mounts m;
	int ret;

	if (path[0] == '/' && !access(path, F_OK)) {
		snprintf(dir, dlen, "%s", path);
	} else {
		ret = haul_cg_probe(&m);
		if (ret)
			return ret;
		snprintf(dir, dlen, "%s/%s", m.v2[0] ? m.v2 : m.v1_freezer,
			 path[0] == '/' ? path + 1 : path);
	}
	ret = haul_cg_read(dir, "cgroup.procs", buf, len);
	if (ret < 0)
		pr_err_r(ret, "cannot read the processes of cgroup '%s'", dir);
	return ret;
}

int haul_cg_mkdir_p(const char *path)
{
	char p[PATH_MAX];
	size_t len = strlen(path);

	if (len >= sizeof(p))
		return -ENAMETOOLONG;
	memcpy(p, path, len + 1);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(p, 0755) && errno != EEXIST)
		return -errno;
	return 0;
}

/* Whether the comma-separated mount options @opts contain @word. */
static bool opt_has(const char *opts, const char *word)
{
	size_t wl = strlen(word);

	for (const char *s = opts; s && *s;) {
		const char *e = strchr(s, ',');
		size_t l = e ? (size_t)(e - s) : strlen(s);

		if (l == wl && !strncmp(s, word, wl))
			return true;
		s = e ? e + 1 : NULL;
	}
	return false;
}

int haul_cg_parse_mounts(const char *text, struct haul_cg_mounts *m)
{
	const char *line = text;

	memset(m, 0, sizeof(*m));
	while (line && *line) {
		char dev[64], dir[PATH_MAX], type[32], opts[512];
		const char *next = strchr(line, '\n');

		if (sscanf(line, "%63s %4095s %31s %511s", dev, dir, type, opts) == 4) {
			if (!strcmp(type, "cgroup2") && !m->v2[0])
				snprintf(m->v2, sizeof(m->v2), "%s", dir);
			else if (!strcmp(type, "cgroup") && opt_has(opts, "freezer") &&
				 !m->v1_freezer[0])
				snprintf(m->v1_freezer, sizeof(m->v1_freezer), "%s", dir);
			else if (!strcmp(type, "cgroup") && opt_has(opts, "cpu") && !m->v1_cpu[0])
				snprintf(m->v1_cpu, sizeof(m->v1_cpu), "%s", dir);
		}
		line = next ? next + 1 : NULL;
	}
	return m->v2[0] || m->v1_freezer[0] ? 0 : -ENOENT;
}

static int read_file(const char *path, char *buf, size_t len)
{
	size_t off = 0;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	while (off + 1 < len && (n = read(fd, buf + off, len - 1 - off)) > 0)
		off += n;
	close(fd);
	buf[off] = '\0';
	return off;
}

static int parse_own_mounts(struct haul_cg_mounts *m)
{
	char *buf;
	int ret;

	buf = malloc(65536);
	if (!buf)
		return -ENOMEM;
	ret = read_file("/proc/self/mounts", buf, 65536);
	if (ret >= 0)
		ret = haul_cg_parse_mounts(buf, m);
	else
		pr_err_r(ret, "cannot read /proc/self/mounts to find the cgroup hierarchies; is "
			      "/proc mounted?");
	free(buf);
	return ret;
}

/*
 * No cgroup hierarchy is visible: typically `ip netns exec`, which unshares
 * the mount namespace and mounts a fresh sysfs on /sys, leaving
 * /sys/fs/cgroup an empty directory.  The process's cgroup still exists;
 * only the mount is missing.  Mount cgroup2 there in a mount namespace of
 * haul's own (propagation cut, so nothing leaks to the host or to ip's
 * namespace) and go on.  unshare(CLONE_NEWNS) needs a single-threaded
 * process, which haul is while it probes.
 */
static int mount_private_cgroup2(void)
{
	if (unshare(CLONE_NEWNS))
		return -errno;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return -errno;
	if (mount("cgroup2", HAUL_CG_FALLBACK_MNT, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  NULL))
		return -errno;
	pr_info("no cgroup hierarchy was mounted (ip netns exec remounts /sys); mounted cgroup2 "
		"on %s in a private mount namespace",
		HAUL_CG_FALLBACK_MNT);
	return 0;
}

int haul_cg_probe(struct haul_cg_mounts *m)
{
	int ret;

	ret = parse_own_mounts(m);
	if (ret == -ENOENT) {
		int mret = mount_private_cgroup2();

		if (!mret)
			ret = parse_own_mounts(m);
		if (ret) {
			pr_err("no cgroup hierarchy is visible in /proc/self/mounts (ip netns exec "
			       "remounts /sys without /sys/fs/cgroup) and cgroup2 cannot be mounted "
			       "on %s (%s): run haul with 'nsenter --net=/run/netns/NAME' instead "
			       "of 'ip netns exec NAME', or mount cgroup2 on %s first",
			       HAUL_CG_FALLBACK_MNT, mret ? strerror(-mret) : strerror(-ret),
			       HAUL_CG_FALLBACK_MNT);
			return ret;
		}
	}
	/* HAUL_FREEZER=v1: use the v1 freezer although cgroup2 is there (tests) */
	if (!ret && getenv("HAUL_FREEZER") && !strcmp(getenv("HAUL_FREEZER"), "v1")) {
		if (!m->v1_freezer[0]) {
			pr_err("HAUL_FREEZER=v1 but no v1 freezer hierarchy is mounted");
			return -EOPNOTSUPP;
		}
		m->v2[0] = '\0';
	}
	return ret;
}

int haul_cg_parse_proc(const char *text, const char *ctrl, char *out, size_t len)
{
	const char *line = text;

	while (line && *line) {
		const char *next = strchr(line, '\n');
		const char *c1 = strchr(line, ':'), *c2;
		size_t l;

		if (!c1 || (next && c1 > next))
			goto next;
		c2 = strchr(c1 + 1, ':');
		if (!c2 || (next && c2 > next))
			goto next;
		if (ctrl[0]) {
			/* "4:cpu,cpuacct:/path": @ctrl among the comma list */
			char list[256];

			l = c2 - c1 - 1;
			if (l >= sizeof(list))
				goto next;
			memcpy(list, c1 + 1, l);
			list[l] = '\0';
			if (!opt_has(list, ctrl))
				goto next;
		} else if (c2 != c1 + 1 || strncmp(line, "0:", 2)) {
			goto next;
		}
		l = next ? (size_t)(next - c2 - 1) : strlen(c2 + 1);
		if (l + 1 > len)
			return -ENAMETOOLONG;
		memcpy(out, c2 + 1, l);
		out[l] = '\0';
		return 0;
next:
		line = next ? next + 1 : NULL;
	}
	return -ENOENT;
}

/* The absolute directory of @pid's cgroup in hierarchy @ctrl mounted at @mnt. */
static int pid_cgroup_dir(pid_t pid, const char *mnt, const char *ctrl, char *out, size_t len)
{
	char path[64], text[4096], rel[PATH_MAX];
	int ret;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
	ret = read_file(path, text, sizeof(text));
	if (ret < 0)
		return ret;
	ret = haul_cg_parse_proc(text, ctrl, rel, sizeof(rel));
	if (ret)
		return ret;
	if ((size_t)snprintf(out, len, "%s%s", mnt, strcmp(rel, "/") ? rel : "") >= len)
		return -ENAMETOOLONG;
	return 0;
}

/* Whether the cgroup at @dir holds @pid and nothing else (and is not a root). */
static bool cgroup_is_own(const char *dir, const char *mnt, pid_t pid)
{
	char buf[4096], *nl;
	int ret;

	if (!strcmp(dir, mnt))
		return false;
	ret = haul_cg_read(dir, "cgroup.procs", buf, sizeof(buf));
	if (ret <= 0)
		return false;
	nl = strchr(buf, '\n');
	return atoi(buf) == pid && (!nl || !nl[1]);
}

static int move_pid(const char *dir, pid_t pid)
{
	char v[32];

	snprintf(v, sizeof(v), "%d", pid);
	return haul_cg_write(dir, "cgroup.procs", v);
}

static void put_back(const struct haul_cg *cg, const char *dir, const char *orig);

/*
 * Give @pid a cgroup of its own in the hierarchy at @mnt: keep the one it
 * has if it is alone there, else make <mnt>/haul/mig-<pid> and move it.
 */
static int own_cgroup(const struct haul_cg *cg, const char *mnt, const char *ctrl, char *dir,
		      char *orig)
{
	char cur[PATH_MAX], other[PATH_MAX];
	pid_t pid = cg->pid;
	int ret;

	ret = pid_cgroup_dir(pid, mnt, ctrl, cur, sizeof(cur));
	if (ret) {
		pr_err_r(ret, "cannot read the %s cgroup of pid %d", ctrl[0] ? ctrl : "cgroup2",
			 pid);
		return ret;
	}
	/* a tree moves from one cgroup, and back there on failure */
	for (size_t i = 0; i < cg->nmore; i++)
		if (!pid_cgroup_dir(cg->more[i], mnt, ctrl, other, sizeof(other)) &&
		    strcmp(other, cur)) {
			pr_err("pid %d of the tree of pid %d is in cgroup '%s', not in '%s' with "
			       "it; move it there first (haul moves a tree from one cgroup)",
			       cg->more[i], pid, other, cur);
			return -EOPNOTSUPP;
		}
	orig[0] = '\0';
	if (!cg->nmore && cgroup_is_own(cur, mnt, pid)) {
		snprintf(dir, PATH_MAX, "%s", cur);
		return 0;
	}
	if ((size_t)snprintf(dir, PATH_MAX, "%s/%s/mig-%d", mnt, HAUL_CG_PARENT, pid) >= PATH_MAX)
		return -ENAMETOOLONG;
	ret = haul_cg_mkdir_p(dir);
	if (ret) {
		pr_err_r(ret, "cannot make cgroup '%s' for pid %d", dir, pid);
		return ret;
	}
	ret = move_pid(dir, pid);
	if (ret) {
		pr_err_r(ret, "cannot move pid %d into cgroup '%s'", pid, dir);
		rmdir(dir);
		return ret;
	}
	for (size_t i = 0; i < cg->nmore; i++) {
		ret = move_pid(dir, cg->more[i]);
		if (ret == -ESRCH)
			continue; /* exited: the check at the freeze finds it */
		if (ret) {
			pr_err_r(ret, "cannot move pid %d of the tree into cgroup '%s'",
				 cg->more[i], dir);
			put_back(cg, dir, cur);
			return ret;
		}
		rst_cg_note_moved(cg->more[i], dir, cur);
	}
	snprintf(orig, PATH_MAX, "%s", cur);
	/* The dump carries where the process was, not haul's cgroup. */
	rst_cg_note_moved(pid, dir, cur);
	pr_debug("moved pid %d from '%s' into '%s'", pid, cur, dir);
	return 0;
}

/*
 * On pure cgroup2 the cpu controller must be enabled in every ancestor's
 * subtree_control for cpu.max to appear.  Best effort: a host without it
 * still migrates, only without auto-converge.
 */
static void v2_enable_cpu(const char *mnt)
{
	char parent[PATH_MAX + 64], ctl[256];
	char *save = NULL;
	bool cpu = false;

	if (haul_cg_read(mnt, "cgroup.controllers", ctl, sizeof(ctl)) <= 0)
		return;
	for (char *w = strtok_r(ctl, " \n", &save); w; w = strtok_r(NULL, " \n", &save))
		cpu |= !strcmp(w, "cpu");
	if (!cpu)
		return;
	snprintf(parent, sizeof(parent), "%s/%s", mnt, HAUL_CG_PARENT);
	haul_cg_mkdir_p(parent);
	haul_cg_write(mnt, "cgroup.subtree_control", "+cpu");
	haul_cg_write(parent, "cgroup.subtree_control", "+cpu");
}

/* Remember the cpu limit the workload had, so that lifting the throttle restores it. */
static void save_cpu_limit(struct haul_cg *cg)
{
	char q[32], p[32];

	if (cg->v2_cpu) {
		if (haul_cg_read(cg->cpu_dir, "cpu.max", cg->cpu_limit, sizeof(cg->cpu_limit)) <= 0)
			snprintf(cg->cpu_limit, sizeof(cg->cpu_limit), "max");
		cg->cpu_limit[strcspn(cg->cpu_limit, "\n")] = '\0';
		return;
	}
	if (haul_cg_read(cg->cpu_dir, "cpu.cfs_quota_us", q, sizeof(q)) <= 0 ||
	    haul_cg_read(cg->cpu_dir, "cpu.cfs_period_us", p, sizeof(p)) <= 0)
		snprintf(cg->cpu_limit, sizeof(cg->cpu_limit), "-1 100000");
	else
		snprintf(cg->cpu_limit, sizeof(cg->cpu_limit), "%ld %ld", atol(q), atol(p));
}

/* Put back the limit save_cpu_limit() found. */
static int restore_cpu_limit(const struct haul_cg *cg)
{
	long q = -1, p = 100000;
	char v[32];
	int ret;

	if (cg->v2_cpu)
		return haul_cg_write(cg->cpu_dir, "cpu.max",
				     cg->cpu_limit[0] ? cg->cpu_limit : "max");
	sscanf(cg->cpu_limit, "%ld %ld", &q, &p);
	ret = haul_cg_write(cg->cpu_dir, "cpu.cfs_quota_us", "-1");
	if (!ret) {
		snprintf(v, sizeof(v), "%ld", p);
		ret = haul_cg_write(cg->cpu_dir, "cpu.cfs_period_us", v);
	}
	if (!ret && q > 0) {
		snprintf(v, sizeof(v), "%ld", q);
		ret = haul_cg_write(cg->cpu_dir, "cpu.cfs_quota_us", v);
	}
	return ret;
}

int haul_cg_prepare(pid_t pid, const struct haul_cg_mounts *m, struct haul_cg *cg)
{
	return haul_cg_prepare_tree(pid, NULL, 0, m, cg);
}

int haul_cg_prepare_tree(pid_t pid, const pid_t *more, size_t nmore, const struct haul_cg_mounts *m,
			 struct haul_cg *cg)
{
	int ret;

	memset(cg, 0, sizeof(*cg));
	cg->pid = pid;
	cg->more = more;
	cg->nmore = nmore;
	if (m->v2[0]) {
		v2_enable_cpu(m->v2);
		cg->v2_freezer = true;
		ret = own_cgroup(cg, m->v2, "", cg->freezer_dir, cg->freezer_orig);
	} else if (m->v1_freezer[0]) {
		ret = own_cgroup(cg, m->v1_freezer, "freezer", cg->freezer_dir, cg->freezer_orig);
	} else {
		pr_err("no cgroup freezer on this host: mount cgroup2 or the v1 freezer");
		return -EOPNOTSUPP;
	}
	if (ret)
		return ret;
	if (cg->v2_freezer && haul_cg_has_file(cg->freezer_dir, "cpu.max")) {
		cg->v2_cpu = true;
		snprintf(cg->cpu_dir, sizeof(cg->cpu_dir), "%s", cg->freezer_dir);
	} else if (m->v1_cpu[0]) {
		/*
		 * Not now: in <v1 cpu>/haul/mig-<pid> the process competes under one
		 * parent with every other migration, and under load it got 3-4% of a
		 * CPU where it had 27% in its own place (bench/RESULTS.md "Stalls",
		 * Redis): its clients stalled 0.1-1 s before the freeze.  The move
		 * waits for the first throttle, which needs it (haul_cg_throttle).
		 */
		char cur[PATH_MAX];

		if (pid_cgroup_dir(pid, m->v1_cpu, "cpu", cur, sizeof(cur))) {
			pr_warn("pid %d cannot be throttled: its cpu cgroup cannot be read", pid);
		} else if (!nmore && cgroup_is_own(cur, m->v1_cpu, pid)) {
			/* alone in its cgroup already: nothing moves, the limit is saved now */
			if (own_cgroup(cg, m->v1_cpu, "cpu", cg->cpu_dir, cg->cpu_orig))
				cg->cpu_dir[0] = '\0';
		} else {
			/* where it goes back: the guardian's copy of @cg is made before the move */
			snprintf(cg->cpu_mnt, sizeof(cg->cpu_mnt), "%s", m->v1_cpu);
			snprintf(cg->cpu_orig, sizeof(cg->cpu_orig), "%s", cur);
		}
	} else {
		pr_warn("no cpu controller on this host: pid %d cannot be throttled", pid);
	}
	if (cg->cpu_dir[0])
		save_cpu_limit(cg);
	pr_debug("pid %d: freezer '%s' (%s), cpu '%s'", pid, cg->freezer_dir,
		 cg->v2_freezer ? "cgroup2" : "v1",
		 cg->cpu_dir[0]	  ? cg->cpu_dir
		 : cg->cpu_mnt[0] ? "v1, at the first throttle"
				  : "none");
	return 0;
}

/* The v1 cpu cgroup of its own, made at the first throttle (see haul_cg_prepare_tree). */
static int own_cpu_cgroup(struct haul_cg *cg)
{
	int ret;

	ret = own_cgroup(cg, cg->cpu_mnt, "cpu", cg->cpu_dir, cg->cpu_orig);
	if (ret) {
		pr_warn("pid %d cannot be throttled: no cpu cgroup of its own", cg->pid);
		cg->cpu_dir[0] = '\0';
		return ret;
	}
	cg->cpu_mnt[0] = '\0';
	save_cpu_limit(cg);
	pr_debug("pid %d: cpu '%s' for the throttle", cg->pid, cg->cpu_dir);
	return 0;
}

int haul_cg_throttle(struct haul_cg *cg, unsigned pct, double cpus)
{
	long period = 0, quota = 0;
	char v[64];
	int ret;

	/* deeper than cpu.max makes with short stretches: the freezer's duty cycle (duty.c) */
	if (haul_cg_duty_wanted(cg, pct, cpus))
		return haul_cg_duty_throttle(cg, pct);
	if (cg->duty) {
		ret = haul_cg_duty_lift(cg);
		if (ret || !pct)
			return ret;
	}
	if (!cg->cpu_dir[0] && cg->cpu_mnt[0]) {
		if (!pct)
			return 0; /* never throttled: nothing to lift */
		ret = own_cpu_cgroup(cg);
		if (ret)
			return ret;
	}
	if (!cg->cpu_dir[0])
		return -EOPNOTSUPP;
	/* the period keeps each throttled stretch short: a slowdown, not stalls (converge.c) */
	if (pct)
		pct = haul_conv_cpu_max(pct, cpus, cg->throttle_stall_max_us, &quota, &period);
	if (!pct) {
		ret = restore_cpu_limit(cg);
		/*
		 * The write unthrottles at once, mid-stretch or not, and the
		 * switchover freezes right after the lift: let it run first, or a
		 * long stretch (no cgroup2 freezer: up to the downtime target) and
		 * the stop are one gap to a client (duty.c's settle, the same).
		 */
		if (!ret && cg->throttle_stall_ms * 1e3 > HAUL_MIG_THROTTLE_STALL_US)
			usleep(HAUL_MIG_DUTY_LIFT_RUN_US);
	} else if (cg->v2_cpu) {
		snprintf(v, sizeof(v), "%ld %ld", quota, period);
		ret = haul_cg_write(cg->cpu_dir, "cpu.max", v);
	} else {
		/* v1 checks quota against the period in force: lift, set period, set quota */
		ret = haul_cg_write(cg->cpu_dir, "cpu.cfs_quota_us", "-1");
		if (!ret) {
			snprintf(v, sizeof(v), "%ld", period);
			ret = haul_cg_write(cg->cpu_dir, "cpu.cfs_period_us", v);
		}
		if (!ret) {
			snprintf(v, sizeof(v), "%ld", quota);
			ret = haul_cg_write(cg->cpu_dir, "cpu.cfs_quota_us", v);
		}
	}
	if (ret) {
		pr_err_r(ret, "cannot throttle pid %d to %u%% in '%s'", cg->pid, pct, cg->cpu_dir);
		return ret;
	}
	cg->throttle_pct = pct;
	cg->throttle_stall_ms = pct ? haul_conv_throttle_stall_ms(quota, period, cpus) : 0;
	return 0;
}

/* rmdir, waiting a little for an exiting process to leave the cgroup (reaping is slow). */
static void rmdir_when_empty(const char *dir)
{
	for (int i = 0; i < HAUL_MIG_RMDIR_TRIES; i++) {
		if (!rmdir(dir) || errno == ENOENT)
			return;
		if (errno != EBUSY)
			break;
		usleep(10000);
	}
	pr_warn("cannot remove cgroup '%s': %s; remove it once it is empty", dir, strerror(errno));
}

/*
 * Move every process listed in @dir's @file (cgroup.procs, or v1's tasks for
 * a thread left behind) to @orig.  Only whole lines count: a list longer than
 * the buffer is cut, and the rest is read on the next pass.  The number moved.
 */
static int move_listed(const struct haul_cg *cg, const char *dir, const char *file,
		       const char *orig)
{
	char buf[8192], *last;
	int moved = 0, ret;

	if (haul_cg_read(dir, file, buf, sizeof(buf)) <= 0)
		return 0;
	last = strrchr(buf, '\n');
	if (!last)
		return 0;
	last[1] = '\0';
	for (char *q = buf, *end; *q; q = end) {
		long v = strtol(q, &end, 10);
		char s[32];

		if (end == q)
			break;
		snprintf(s, sizeof(s), "%ld", v);
		ret = haul_cg_write(orig, file, s);
		if (!ret)
			moved++;
		else if (ret != -ESRCH)
			pr_warn_r(ret,
				  "cannot move pid %ld of the tree of pid %d back to cgroup '%s'",
				  v, cg->pid, orig);
	}
	return moved;
}

/*
 * Move back, then remove the cgroup haul made.  Whatever is in it goes back:
 * the processes haul moved and what they forked meanwhile (a child starts in
 * its parent's cgroup, so a fork during the moves lands in @dir: it is read
 * again until it is empty).  An exited process stays until it is reaped, and
 * writing its pid "moves" it without an error (the kernel skips an exiting
 * task): so the wait is by time (HAUL_MIG_RMDIR_TRIES x 10 ms), not by
 * passes, which a zombie listed again and again used up in 0.1 s.
 */
static void put_back(const struct haul_cg *cg, const char *dir, const char *orig)
{
	bool v1 = haul_cg_has_file(dir, "tasks");
	double until = haul_now_ms() + HAUL_MIG_RMDIR_TRIES * 10.0;
	int err = 0;

	if (!orig[0])
		return;
	do {
		int moved = move_listed(cg, dir, "cgroup.procs", orig);

		if (!moved && v1)
			moved = move_listed(cg, dir, "tasks", orig);
		if (!rmdir(dir))
			return;
		err = errno;
		if (err == ENOENT)
			return;
		if (err != EBUSY)
			break;
		usleep(moved ? 1000 : 10000);
	} while (haul_now_ms() < until);
	pr_warn("cannot remove cgroup '%s' of pid %d: %s; move what is left in it to '%s' and "
		"remove it",
		dir, cg->pid, strerror(err), orig);
}

/*
 * A copy of @cg made before the first throttle (the guardian's) does not
 * know whether haul moved the process into its v1 cpu cgroup since: the
 * cgroup's name tells.  Moving the process out lifts that cgroup's limit.
 */
static void put_back_lazy_cpu(const struct haul_cg *cg)
{
	char dir[PATH_MAX];

	if ((size_t)snprintf(dir, sizeof(dir), "%s/%s/mig-%d", cg->cpu_mnt, HAUL_CG_PARENT,
			     cg->pid) < sizeof(dir) &&
	    !access(dir, F_OK))
		put_back(cg, dir, cg->cpu_orig);
}

void haul_cg_undo(struct haul_cg *cg)
{
	int ret;

	/* haul's own undo: stop the duty cycle before the thaw (the guardian's copy has none) */
	haul_cg_duty_lift(cg);
	/* unconditionally: the guardian's copy of @cg predates any throttle */
	if (cg->cpu_dir[0] && restore_cpu_limit(cg))
		pr_warn("cannot lift the cpu throttle of pid %d in '%s'", cg->pid, cg->cpu_dir);
	if (cg->freezer_dir[0]) {
		ret = haul_thaw(cg);
		if (ret)
			pr_err_r(ret, "cannot thaw pid %d in '%s': write 0 to its cgroup.freeze",
				 cg->pid, cg->freezer_dir);
	}
	if (cg->cpu_dir[0] && !cg->v2_cpu)
		put_back(cg, cg->cpu_dir, cg->cpu_orig);
	else if (!cg->cpu_dir[0] && cg->cpu_mnt[0])
		put_back_lazy_cpu(cg);
	if (cg->freezer_dir[0])
		put_back(cg, cg->freezer_dir, cg->freezer_orig);
}

void haul_cg_cleanup(struct haul_cg *cg)
{
	if (cg->cpu_dir[0] && !cg->v2_cpu && cg->cpu_orig[0])
		rmdir_when_empty(cg->cpu_dir);
	if (cg->freezer_dir[0] && cg->freezer_orig[0])
		rmdir_when_empty(cg->freezer_dir);
}
