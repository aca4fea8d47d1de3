/*
 * th_verify.c - snapshot a process's observable state and compare two
 * snapshots (before checkpoint, after restore), item by item.
 *
 * A snapshot is a sorted list of "item" -> "value" strings, so that a
 * difference is reported by name ("fd 3 flags: 02100002 -> 0100002").  The
 * process is ptrace-stopped (src/common/rsys.h) for a few milliseconds, /proc
 * is read while it cannot change, then prctl()/sigaltstack()/ioprio_get()
 * calls are injected; it runs on unchanged.  /proc is read before the
 * injection because rsys blocks every signal while it runs calls (SigBlk
 * would lie).  With TH_VERIFY_NO_INJECT only /proc is read, the process
 * running.
 *
 * Compared:
 *   map START-END       perms, offset, device, inode, path and smaps VmFlags;
 *                       adjacent anonymous VMAs with equal attributes are
 *                       merged first (whether the kernel merged them depends
 *                       on anon_vma history, not on the program)
 *   fd N link/flags/pos/ino, its mount (mnt_id resolved through mountinfo
 *                       to mount point, root, type and source: ids differ
 *                       between mount namespaces) and every other fdinfo line
 *                       (eventfd count, epoll targets, signalfd mask, inotify,
 *                       the fd's locks and leases without their list index)
 *   lock TYPE DEV:INO START END   every /proc/locks entry of the pid
 *   limit NAME          soft and hard values of /proc/PID/limits
 *   status FIELD        every field but those excluded below
 *   stat pgrp, session, tty_nr, priority, nice, exit_signal, rt_priority, policy
 *   cwd, root, exe, comm, oom_score_adj, loginuid, personality,
 *   timerslack_ns, coredump_filter
 *   prctl dumpable, pdeathsig, keepcaps, securebits, no_new_privs,
 *   thp_disable, child_subreaper, mce_kill, tsc, speculation (3 kinds), mdwe,
 *   memory_merge, io_flusher; sigaltstack; ioprio; arch_prctl cpuid
 * Excluded, and why:
 *   VmFlags sd          soft-dirty: set on every new VMA and cleared by
 *                       clear_refs; says nothing about the program
 *   VmFlags um uw ui    userfaultfd registration: haul's own tracker and
 *                       lazy restore register and unregister it
 *   fdinfo ino of pipes, sockets and anon inodes: a restored pipe is a new
 *                       pipe (the link names its kind, compared as "pipe:[]");
 *                       and of deleted files (restored as a new file)
 *   fdinfo eventfd-id: an id the kernel gives each new eventfd
 *   fdinfo timerfd ticks and it_value: time passes between the snapshots
 *   map inode of shared anonymous memory, memfds, SysV shm: a new object
 *   stat pgrp, session when another process led them: the restorer runs
 *                       the process in its own session (target.c stub_main)
 *   status State, TracerPid (we stop or trace it to read it), Pid, PPid,
 *     Tgid, Ngid, NStgid, NSpid, NSpgid, NSsid (a restore may give another
 *     pid or pid namespace: by design), FDSize (the kernel's fd table size,
 *     grown by the restorer's own fds), VmPeak, VmHWM (high-water marks that
 *     include the restorer's transient mappings), VmRSS, RssAnon, RssFile,
 *     RssShmem, VmPTE, VmSwap (residency: pages come back on demand or
 *     differently shared), voluntary_ctxt_switches,
 *     nonvoluntary_ctxt_switches (scheduling counters), Mems_allowed (a
 *     1024-bit mask: Mems_allowed_list says the same), SigQ (the count of
 *     queued signals is per user, shared with every other process of the uid)
 *   stat state, ppid, tpgid, flags, times, start_time, vsize, rss, processor
 *     and the other counters: they change by themselves or by design
 *   With TH_VERIFY_LIVE, a file position may have grown.
 * Not read: per-thread state beyond the status of the main thread; cgroup
 * membership (haul migrate moves a process to its own cgroup by design).
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/rsys.h"
#include "th_verify.h"

struct th_item {
	char *key;
	char *val;
};

struct th_state {
	pid_t pid;
	struct th_item *it;
	size_t n, cap;
};

static int add(struct th_state *s, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int add(struct th_state *s, const char *key, const char *fmt, ...)
{
	va_list ap;
	char *v;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		struct th_item *it = realloc(s->it, cap * sizeof(*it));

		if (!it)
			return -ENOMEM;
		s->it = it;
		s->cap = cap;
	}
	va_start(ap, fmt);
	if (vasprintf(&v, fmt, ap) < 0)
		v = NULL;
	va_end(ap);
	s->it[s->n].key = strdup(key);
	s->it[s->n].val = v;
	if (!v || !s->it[s->n].key) {
		free(v);
		free(s->it[s->n].key);
		return -ENOMEM;
	}
	s->n++;
	return 0;
}

static void chomp(char *l)
{
	size_t n = strlen(l);

	while (n && isspace((unsigned char)l[n - 1]))
		l[--n] = '\0';
}

static FILE *proc_open(pid_t pid, const char *name)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/%.40s", (int)pid, name);
	return fopen(path, "re");
}

static bool in_list(const char *w, const char *const *list)
{
	for (; *list; list++)
		if (!strcmp(w, *list))
			return true;
	return false;
}

/* ---- maps ------------------------------------------------------------------ */

/*
 * VmFlags not compared: sd (soft-dirty tracking state), um/uw/ui (userfaultfd
 * registrations: haul's tracker and post-copy add and drop them), and ac
 * (VM_ACCOUNT: a private mapping made read-only after being writable, as the
 * loader's RELRO, keeps it, a restored one is mapped read-only and has none;
 * commit accounting only, nothing the program sees: DESIGN.md's VmFlags table
 * lists it as knowingly not carried).
 */
static const char *const vmflags_excluded[] = {"sd", "um", "uw", "ui", "ac", NULL};

struct vma_line {
	unsigned long start, end;
	char attr[512]; /* everything but the range */
	bool anon;
};

static int add_vma(struct th_state *s, const struct vma_line *v)
{
	char key[64];

	snprintf(key, sizeof(key), "map %lx-%lx", v->start, v->end);
	return add(s, key, "%s", v->attr);
}

/* The VmFlags line without the excluded flags, appended to @v's attributes. */
static void vma_flags(struct vma_line *v, char *flags)
{
	char *save = NULL;
	size_t len = strlen(v->attr);

	len += snprintf(v->attr + len, sizeof(v->attr) - len, " |");
	for (char *w = strtok_r(flags, " ", &save); w; w = strtok_r(NULL, " ", &save))
		if (!in_list(w, vmflags_excluded) && len < sizeof(v->attr))
			len += snprintf(v->attr + len, sizeof(v->attr) - len, " %s", w);
}

/*
 * Shared anonymous memory, memfds and SysV segments: a restore makes a new
 * shmem object, so their inode numbers cannot be kept (by design).
 */
static bool new_object(const char *path)
{
	return !strcmp(path, "/dev/zero (deleted)") || !strncmp(path, "/memfd:", 7) ||
	       !strncmp(path, "/SYSV", 5);
}

static int read_maps(struct th_state *s)
{
	struct vma_line cur = {0}, prev = {0};
	bool have_prev = false, have_cur = false;
	char line[4352];
	int ret = 0;
	FILE *f = proc_open(s->pid, "smaps");

	if (!f)
		return -errno;
	while (!ret && fgets(line, sizeof(line), f)) {
		unsigned long a, b, off, ino;
		char perms[8], dev[16], path[4096] = "";

		chomp(line);
		if (sscanf(line, "%lx-%lx %7s %lx %15s %lu %4095[^\n]", &a, &b, perms, &off, dev,
			   &ino, path) >= 6) {
			cur = (struct vma_line){.start = a, .end = b};
			/* an anonymous VMA's offset is its address >> 12: compare it relative */
			cur.anon = !ino && path[0] != '/';
			if (new_object(path))
				ino = 0;
			snprintf(cur.attr, sizeof(cur.attr), "%s %lx %s %lu %.400s", perms,
				 cur.anon ? 0 : off, dev, ino, path);
			have_cur = true;
			continue;
		}
		if (strncmp(line, "VmFlags:", 8) || !have_cur)
			continue;
		vma_flags(&cur, line + 8);
		have_cur = false;
		if (have_prev && prev.anon && cur.anon && prev.end == cur.start &&
		    !strcmp(prev.attr, cur.attr)) {
			prev.end = cur.end;
			continue;
		}
		if (have_prev)
			ret = add_vma(s, &prev);
		prev = cur;
		have_prev = true;
	}
	if (!ret && have_prev)
		ret = add_vma(s, &prev);
	fclose(f);
	return ret;
}

/* ---- fds ------------------------------------------------------------------- */

/* "pipe:[1234]" -> "pipe:[]": a restored pipe or socket is a new object. */
static bool link_anon(char *link)
{
	char *b = strchr(link, '[');

	if (!strncmp(link, "anon_inode:", 11))
		return true;
	if (b && (!strncmp(link, "pipe:", 5) || !strncmp(link, "socket:", 7)) && isdigit(b[1])) {
		strcpy(b, "[]");
		return true;
	}
	return false;
}

/* Drop "ino:N" and "sdev:N" words from an epoll "tfd:" line (pipes get new inodes). */
static void strip_inos(char *v)
{
	char *p;

	while ((p = strstr(v, "ino:")) || (p = strstr(v, "sdev:"))) {
		size_t n = strcspn(p, " \t");

		memmove(p, p + n, strlen(p + n) + 1);
	}
}

/*
 * Mount ids are per mount namespace, and a restore into a new PID namespace
 * also gets a new mount namespace (target.c: it mounts its own /proc): an
 * fd's mount is compared by what it is (mount point, type, source).
 */
static void mount_of(pid_t pid, const char *id, char *out, size_t len)
{
	char line[4096];
	FILE *f = proc_open(pid, "mountinfo");

	snprintf(out, len, "mount id %.32s not in mountinfo", id);
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char mid[32], root[1024], mnt[1024], type[64], src[1024];

		/* "36 35 98:0 /root /mnt rw,noatime master:1 - ext3 /dev/root rw" */
		if (sscanf(line, "%31s %*s %*s %1023s %1023s", mid, root, mnt) != 3 ||
		    strcmp(mid, id))
			continue;
		if (sscanf(strstr(line, " - ") ? strstr(line, " - ") : "", " - %63s %1023s", type,
			   src) != 2)
			continue;
		snprintf(out, len, "%.400s %.200s %s %.200s", mnt, root, type, src);
		break;
	}
	fclose(f);
}

static int read_fdinfo(struct th_state *s, const char *fd, bool anon)
{
	char name[64], key[128], line[1024], lock[1024];
	int ret = 0;
	FILE *f;

	snprintf(name, sizeof(name), "fdinfo/%.16s", fd);
	f = proc_open(s->pid, name);
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	while (!ret && fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':'), *v;

		chomp(line);
		if (!colon)
			continue;
		*colon = '\0';
		v = colon + 1;
		while (isspace((unsigned char)*v))
			v++;
		if ((anon && !strcmp(line, "ino")) || !strcmp(line, "ticks") ||
		    !strcmp(line, "it_value") || !strcmp(line, "eventfd-id"))
			continue;
		/* a pidfd's: a restore in a new PID namespace adds a level; "Pid" is compared */
		if (!strcmp(line, "NSpid"))
			continue;
		if (!strcmp(line, "tfd"))
			strip_inos(v);
		if (!strcmp(line, "lock")) {
			/* "1: POSIX ADVISORY WRITE PID ...": the list index and the pid vary */
			char l[1024], *w, *save = NULL;
			size_t o = 0;

			snprintf(l, sizeof(l), "%s", v);
			strtok_r(l, " ", &save);
			while ((w = strtok_r(NULL, " ", &save)) && o < sizeof(lock))
				o += snprintf(lock + o, sizeof(lock) - o, " %s",
					      atoi(w) == s->pid ? "self" : w);
			v = lock;
		}
		if (!strcmp(line, "mnt_id")) {
			char m[1024];

			mount_of(s->pid, v, m, sizeof(m));
			snprintf(key, sizeof(key), "fd %.16s mount", fd);
			ret = add(s, key, "%s", m);
			continue;
		}
		/*
		 * Repeated lines (epoll targets, inotify watches, fanotify marks)
		 * are keyed by their first word (target fd, wd): the kernel lists
		 * epoll targets in the order of its rbtree, by file address.
		 */
		if (!strcmp(line, "tfd") || !strcmp(line, "inotify") || !strcmp(line, "fanotify"))
			snprintf(key, sizeof(key), "fd %.16s %.16s %.*s", fd, line,
				 (int)strcspn(v, " \t"), v);
		else
			snprintf(key, sizeof(key), "fd %.16s %.64s", fd, line);
		ret = add(s, key, "%s", v);
	}
	fclose(f);
	return ret;
}

static int read_fds(struct th_state *s)
{
	char path[64], link[4096], key[96];
	struct dirent *e;
	int ret = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)s->pid);
	d = opendir(path);
	if (!d)
		return -errno;
	while (!ret && (e = readdir(d))) {
		char lpath[384];
		ssize_t n;
		bool anon;

		if (e->d_name[0] == '.')
			continue;
		snprintf(lpath, sizeof(lpath), "%s/%s", path, e->d_name);
		n = readlink(lpath, link, sizeof(link) - 1);
		if (n < 0)
			continue; /* closed meanwhile */
		link[n] = '\0';
		/* a deleted file is restored as a new file with its content: a new inode */
		anon = link_anon(link) || (n > 10 && !strcmp(link + n - 10, " (deleted)"));
		snprintf(key, sizeof(key), "fd %.16s link", e->d_name);
		ret = add(s, key, "%s", link);
		if (!ret)
			ret = read_fdinfo(s, e->d_name, anon);
	}
	closedir(d);
	return ret;
}

/* ---- locks, limits, status, stat, small files ------------------------------ */

static int read_locks(struct th_state *s)
{
	char line[512], key[256];
	int ret = 0;
	FILE *f = fopen("/proc/locks", "re");

	if (!f)
		return -errno;
	while (!ret && fgets(line, sizeof(line), f)) {
		char cls[16], mode[16], rw[16], id[64], start[32], end[32];
		int lpid;

		/* "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; "->" lines wait */
		if (strstr(line, "->") || sscanf(line, "%*s %15s %15s %15s %d %63s %31s %31s", cls,
						 mode, rw, &lpid, id, start, end) != 7)
			continue;
		if (lpid != s->pid)
			continue;
		snprintf(key, sizeof(key), "lock %s %s %s %s", cls, id, start, end);
		ret = add(s, key, "%s %s", mode, rw);
	}
	fclose(f);
	return ret;
}

static int read_limits(struct th_state *s)
{
	char line[256], key[96];
	int ret = 0;
	FILE *f = proc_open(s->pid, "limits");

	if (!f)
		return -errno;
	while (!ret && fgets(line, sizeof(line), f)) {
		chomp(line);
		/* "Max open files            1024                 1048576              files" */
		if (strlen(line) < 26 || !strncmp(line, "Limit", 5))
			continue;
		line[25] = '\0';
		chomp(line);
		snprintf(key, sizeof(key), "limit %.40s", line);
		ret = add(s, key, "%s", line + 26);
	}
	fclose(f);
	return ret;
}

static const char *const status_excluded[] = {
	"State",
	"TracerPid",
	"Pid",
	"PPid",
	"Tgid",
	"Ngid",
	"NStgid",
	"NSpid",
	"NSpgid",
	"NSsid",
	"FDSize",
	"VmPeak",
	"VmHWM",
	"VmRSS",
	"RssAnon",
	"RssFile",
	"RssShmem",
	"VmPTE",
	"VmSwap",
	"voluntary_ctxt_switches",
	"nonvoluntary_ctxt_switches",
	"Mems_allowed",
	"SigQ",
	NULL,
};

static int read_status(struct th_state *s)
{
	char line[1024], key[96];
	int ret = 0;
	FILE *f = proc_open(s->pid, "status");

	if (!f)
		return -errno;
	while (!ret && fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':'), *v;

		chomp(line);
		if (!colon)
			continue;
		*colon = '\0';
		if (in_list(line, status_excluded))
			continue;
		v = colon + 1;
		while (isspace((unsigned char)*v))
			v++;
		snprintf(key, sizeof(key), "status %.80s", line);
		ret = add(s, key, "%s", v);
	}
	fclose(f);
	return ret;
}

/* /proc/PID/stat fields after the comm, counted from 0 (state). */
static const struct {
	int idx;
	const char *name;
} stat_fields[] = {
	{2, "pgrp"},  {3, "session"},	   {4, "tty_nr"},	{15, "priority"},
	{16, "nice"}, {35, "exit_signal"}, {37, "rt_priority"}, {38, "policy"},
};

static int read_stat(struct th_state *s)
{
	char buf[2048], *p, *save = NULL, key[64];
	const char *w[64];
	int n = 0, ret = 0;
	FILE *f = proc_open(s->pid, "stat");
	size_t len;

	if (!f)
		return -errno;
	len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	p = strrchr(buf, ')');
	if (!p)
		return -EINVAL;
	for (char *t = strtok_r(p + 1, " \n", &save); t && n < 64; t = strtok_r(NULL, " \n", &save))
		w[n++] = t;
	for (size_t i = 0; !ret && i < sizeof(stat_fields) / sizeof(stat_fields[0]); i++) {
		if (stat_fields[i].idx >= n)
			continue;
		snprintf(key, sizeof(key), "stat %s", stat_fields[i].name);
		ret = add(s, key, "%s", w[stat_fields[i].idx]);
	}
	return ret;
}

static int read_small(struct th_state *s)
{
	static const char *const links[] = {"cwd", "root", "exe", NULL};
	/*
	 * Not sessionid: the kernel gives a new audit session to whoever sets
	 * loginuid, which the restore does (DESIGN.md lists it as knowingly not
	 * carried).
	 */
	static const char *const files[] = {"comm",	   "oom_score_adj", "loginuid",
					    "personality", "timerslack_ns", "coredump_filter",
					    NULL};
	char path[64], buf[4096];
	int ret = 0;

	for (int i = 0; !ret && links[i]; i++) {
		ssize_t n;

		snprintf(path, sizeof(path), "/proc/%d/%s", (int)s->pid, links[i]);
		n = readlink(path, buf, sizeof(buf) - 1);
		buf[n < 0 ? 0 : n] = '\0';
		ret = add(s, links[i], "%s", n < 0 ? strerror(errno) : buf);
	}
	for (int i = 0; !ret && files[i]; i++) {
		FILE *f = proc_open(s->pid, files[i]);

		buf[0] = '\0';
		if (f) {
			if (!fgets(buf, sizeof(buf), f))
				buf[0] = '\0';
			fclose(f);
		}
		chomp(buf);
		ret = add(s, files[i], "%s", f ? buf : strerror(errno));
	}
	return ret;
}

/* ---- injected calls -------------------------------------------------------- */

/* prctl(@opt, @arg2) returning its value, or (@ptr) writing an int at the scratch. */
static const struct {
	const char *name;
	long opt, arg2;
	bool ptr;
} prctls[] = {
	{"dumpable", PR_GET_DUMPABLE, 0, false},
	{"pdeathsig", PR_GET_PDEATHSIG, 0, true},
	{"keepcaps", PR_GET_KEEPCAPS, 0, false},
	{"securebits", PR_GET_SECUREBITS, 0, false},
	{"no_new_privs", PR_GET_NO_NEW_PRIVS, 0, false},
	{"thp_disable", PR_GET_THP_DISABLE, 0, false},
	{"child_subreaper", PR_GET_CHILD_SUBREAPER, 0, true},
	{"mce_kill", PR_MCE_KILL_GET, 0, false},
	{"tsc", PR_GET_TSC, 0, true},
	{"speculation store_bypass", 52 /* PR_GET_SPECULATION_CTRL */, 0, false},
	{"speculation indirect_branch", 52, 1, false},
	{"speculation l1d_flush", 52, 2, false},
	{"mdwe", 66 /* PR_GET_MDWE */, 0, false},
	{"memory_merge", 68 /* PR_GET_MEMORY_MERGE */, 0, false},
	{"io_flusher", 58 /* PR_GET_IO_FLUSHER */, 0, false},
};

static int inject_one(struct th_state *s, struct rsys *r, uint64_t scratch, size_t i)
{
	uint64_t a[6] = {(uint64_t)prctls[i].opt, (uint64_t)prctls[i].arg2};
	char key[64];
	int v = 0, ret;
	long rv;

	if (prctls[i].ptr)
		a[1] = scratch;
	ret = rsys_call(r, SYS_prctl, a, &rv);
	if (!ret && prctls[i].ptr && rv == 0)
		ret = rsys_read(s->pid, scratch, &v, sizeof(v));
	if (ret)
		return ret;
	snprintf(key, sizeof(key), "prctl %s", prctls[i].name);
	if (rv < 0)
		return add(s, key, "error %s", strerror((int)-rv));
	return add(s, key, "%ld", prctls[i].ptr ? (long)v : rv);
}

static int inject_more(struct th_state *s, struct rsys *r, uint64_t scratch)
{
	uint64_t a[6] = {0, scratch};
	stack_t ss = {0};
	long rv;
	int ret;

	ret = rsys_call(r, SYS_sigaltstack, a, &rv);
	if (!ret && rv == 0)
		ret = rsys_read(s->pid, scratch, &ss, sizeof(ss));
	if (!ret)
		ret = add(s, "sigaltstack", "sp %p size %zu flags %d", ss.ss_sp, ss.ss_size,
			  ss.ss_flags);
	a[0] = 1; /* IOPRIO_WHO_PROCESS, this process */
	a[1] = 0;
	if (!ret)
		ret = rsys_call(r, SYS_ioprio_get, a, &rv);
	if (!ret)
		ret = add(s, "ioprio", "%ld", rv);
	a[0] = 0x1011; /* ARCH_GET_CPUID */
	if (!ret)
		ret = rsys_call(r, SYS_arch_prctl, a, &rv);
	if (!ret)
		ret = add(s, "arch_prctl cpuid", "%ld", rv);
	return ret;
}

/* Everything /proc says about the process. */
static int read_proc(struct th_state *s)
{
	int ret = read_maps(s);

	if (!ret)
		ret = read_fds(s);
	if (!ret)
		ret = read_locks(s);
	if (!ret)
		ret = read_limits(s);
	if (!ret)
		ret = read_status(s);
	if (!ret)
		ret = read_stat(s);
	if (!ret)
		ret = read_small(s);
	return ret;
}

/*
 * Stop the process (its thread @pid), read /proc while it cannot change it
 * (a malloc between the smaps and the status reads would show as drift),
 * then inject the calls.  /proc comes first: rsys blocks every signal from
 * its first injected call until the release (SigBlk would lie).
 */
static int read_stopped(struct th_state *s)
{
	struct rsys r;
	uint64_t scratch;
	int ret = rsys_seize(&r, s->pid);

	if (ret)
		return ret;
	ret = read_proc(s);
	if (!ret)
		ret = rsys_scratch(&r, &scratch);
	for (size_t i = 0; !ret && i < sizeof(prctls) / sizeof(prctls[0]); i++)
		ret = inject_one(s, &r, scratch, i);
	if (!ret)
		ret = inject_more(s, &r, scratch);
	rsys_release(&r);
	return ret;
}

/* ---- snapshot and comparison -------------------------------------------------- */

static int item_cmp(const void *a, const void *b)
{
	return strcmp(((const struct th_item *)a)->key, ((const struct th_item *)b)->key);
}

int th_state_take(pid_t pid, int flags, struct th_state **out)
{
	struct th_state *s = calloc(1, sizeof(*s));
	int ret;

	if (!s)
		return -ENOMEM;
	s->pid = pid;
	ret = flags & TH_VERIFY_NO_INJECT ? read_proc(s) : read_stopped(s);
	if (ret) {
		th_state_free(s);
		return ret;
	}
	qsort(s->it, s->n, sizeof(*s->it), item_cmp);
	*out = s;
	return 0;
}

void th_state_free(struct th_state *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++) {
		free(s->it[i].key);
		free(s->it[i].val);
	}
	free(s->it);
	free(s);
}

/* @v with the snapshot's own pid shown as "self" (pgrp, session, lock owners). */
static const char *norm(const struct th_state *s, const char *v, char *buf, size_t len)
{
	char *end;
	long n = strtol(v, &end, 10);

	if (end != v && !*end && n == s->pid)
		return "self";
	snprintf(buf, len, "%s", v);
	return buf;
}

/*
 * The restorer starts the process in its own session (target.c stub_main:
 * setsid, so that a ^C meant for haul's group is not for it): a group or
 * session led by another process (the test runner) cannot be kept, by design.
 * One the process led itself must still be its own.
 */
static bool own_session(const char *key, const char *a)
{
	return (!strcmp(key, "stat pgrp") || !strcmp(key, "stat session")) && strcmp(a, "self");
}

/* Whether @key is a file position that may have grown while the process ran. */
static bool grew(const char *key, const char *a, const char *b, int flags)
{
	size_t kl = strlen(key);

	return (flags & TH_VERIFY_LIVE) && kl > 4 && !strcmp(key + kl - 4, " pos") &&
	       strtoull(b, NULL, 10) >= strtoull(a, NULL, 10);
}

static void report_add(char *report, size_t len, size_t *off, const char *key, const char *a,
		       const char *b)
{
	int n;

	if (*off >= len)
		return;
	n = snprintf(report + *off, len - *off, "%s: %s -> %s\n", key, a ? a : "(none)",
		     b ? b : "(none)");
	*off += n > 0 ? (size_t)n : 0;
}

int th_state_diff(const struct th_state *before, const struct th_state *after, int flags,
		  char *report, size_t len)
{
	size_t i = 0, j = 0, off = 0;
	char ba[4096], bb[4096];
	int diffs = 0;

	if (len)
		report[0] = '\0';
	while (i < before->n || j < after->n) {
		int c = i == before->n	? 1
			: j == after->n ? -1
					: strcmp(before->it[i].key, after->it[j].key);

		if (c < 0) {
			report_add(report, len, &off, before->it[i].key, before->it[i].val, NULL);
			diffs++;
			i++;
		} else if (c > 0) {
			report_add(report, len, &off, after->it[j].key, NULL, after->it[j].val);
			diffs++;
			j++;
		} else {
			const char *a = norm(before, before->it[i].val, ba, sizeof(ba));
			const char *b = norm(after, after->it[j].val, bb, sizeof(bb));

			if (strcmp(a, b) && !grew(before->it[i].key, a, b, flags) &&
			    !own_session(before->it[i].key, a)) {
				report_add(report, len, &off, before->it[i].key, a, b);
				diffs++;
			}
			i++;
			j++;
		}
	}
	return diffs;
}

int th_verify_same(const struct th_state *before, pid_t pid, int flags, const char *what)
{
	static char report[16384];
	struct th_state *after;
	int ret = th_state_take(pid, flags, &after);
	int n;

	cr_expect_eq(ret, 0, "%s: cannot read the state of pid %d after restore: %s", what,
		     (int)pid, strerror(-ret));
	if (ret)
		return -1;
	n = th_state_diff(before, after, flags, report, sizeof(report));
	cr_expect_eq(n, 0, "%s: %d item(s) of pid %d differ after restore (before -> after):\n%s",
		     what, n, (int)pid, report);
	th_state_free(after);
	return n;
}
