/*
 * tree_walk.c - the processes of a tree as the checkpoint finds them: the
 * root and every descendant, from /proc/PID/task/TID/children (a child
 * belongs to the thread that forked it, so every thread's file is read).
 *
 * The walk only adds: the checkpoint walks, stops what it found, and walks
 * again until a walk adds nothing (a stopped process forks no more), so a
 * child forked meanwhile is never missed.  The ids (pid, ppid, pgid, sid)
 * are read again once everything is stopped, in the tree's own PID
 * namespace (the last NSpid/NSpgid/NSsid entry); a zombie's wait status is
 * field 52 of its stat (exit_code, Linux >= 3.5).  Invariant: every parent
 * sits before its children, the root at [0].
 */
#define LOG_PREFIX "tree: "
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/restore_int.h"
#include "restore/tree_int.h"

ssize_t rst_tree_find(const struct rst_tree *t, pid_t pid)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->p[i].pid == pid)
			return (ssize_t)i;
	return -1;
}

static ssize_t find_host(const struct rst_tree *t, pid_t host)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->p[i].host == host)
			return (ssize_t)i;
	return -1;
}

static int add(struct rst_tree *t, pid_t host)
{
	if (t->n == RST_TREE_MAX)
		return -E2BIG;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		struct rst_tree_proc *p = realloc(t->p, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		t->p = p;
		t->cap = cap;
	}
	memset(&t->p[t->n], 0, sizeof(t->p[0]));
	t->p[t->n++].host = host;
	return 0;
}

/* Call @fn for each child of every thread of @host. */
static int each_child(pid_t host, int (*fn)(struct rst_tree *, pid_t), struct rst_tree *t,
		      size_t *added)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	int ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)host);
	d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : -errno; /* gone: the re-read drops it */
	while (!ret && (de = readdir(d))) {
		char name[96], *text = NULL;

		if (de->d_name[0] == '.')
			continue;
		snprintf(name, sizeof(name), "task/%d/children", atoi(de->d_name));
		if (rst_read_proc(host, name, &text, NULL))
			continue;
		for (char *s = text, *end; !ret && *s; s = end) {
			long c = strtol(s, &end, 10);

			if (end == s)
				break;
			if (c > 0 && find_host(t, (pid_t)c) < 0) {
				ret = fn(t, (pid_t)c);
				if (!ret)
					(*added)++;
			}
		}
		free(text);
	}
	closedir(d);
	return ret;
}

static int count_child(struct rst_tree *t, pid_t c)
{
	(void)t;
	(void)c;
	return -EEXIST;
}

bool rst_has_children(pid_t host)
{
	struct rst_tree none = {0};
	size_t n = 0;

	return each_child(host, count_child, &none, &n) == -EEXIST;
}

int rst_tree_walk(struct rst_tree *t, pid_t root, size_t *added, char *why, size_t wl)
{
	int ret = 0;

	*added = 0;
	if (!t->n) {
		ret = add(t, root);
		if (ret)
			return ret;
		(*added)++;
	}
	/* t->n grows as we go: children are walked after their parents. */
	for (size_t i = 0; i < t->n && !ret; i++)
		ret = each_child(t->p[i].host, add, t, added);
	if (ret == -E2BIG)
		snprintf(why, wl, "the tree of pid %d has more than %d processes", (int)root,
			 RST_TREE_MAX);
	return ret;
}

/* The last number of a "Key:\tA\tB" status line, and how many there were. */
static int last_ns(const char *status, const char *key, int *count)
{
	const char *f = rst_status_field(status, key);
	int v = -1;

	*count = 0;
	while (f) {
		char *end;
		long x = strtol(f, &end, 10);

		if (end == f)
			break;
		v = (int)x;
		(*count)++;
		f = end;
	}
	return v;
}

/* A zombie's wait status: /proc/PID/stat field 52 (exit_code). */
static int zombie_status(pid_t host, int *status)
{
	char *text = NULL, *s;
	int ret = rst_read_proc(host, "stat", &text, NULL), field = 2;

	if (ret)
		return ret;
	s = strrchr(text, ')'); /* comm may hold anything */
	ret = -EBADMSG;
	while (s && *s) {
		s = strchr(s, ' ');
		if (!s)
			break;
		s++;
		if (++field == 52) {
			*status = atoi(s);
			ret = 0;
			break;
		}
	}
	free(text);
	return ret;
}

static int read_ids(struct rst_tree *t, size_t i, int levels, char *why, size_t wl)
{
	struct rst_tree_proc *p = &t->p[i];
	char *status = NULL;
	const char *f;
	int n, ret = rst_read_proc(p->host, "status", &status, NULL);

	if (ret)
		return ret;
	p->pid = last_ns(status, "NSpid", &n);
	if (levels && n != levels) {
		snprintf(why, wl,
			 "pid %d (pid %d here) of the tree of pid %d is in a PID namespace of its "
			 "own; checkpoint that namespace's init on its own",
			 p->pid, (int)p->host, t->p[0].pid);
		free(status);
		return -EOPNOTSUPP;
	}
	p->pgid = last_ns(status, "NSpgid", &n);
	p->sid = last_ns(status, "NSsid", &n);
	f = rst_status_field(status, "PPid");
	p->ppid = 0;
	if (i && f) {
		ssize_t k = find_host(t, (pid_t)atoi(f));

		p->ppid = k >= 0 ? t->p[k].pid : 0;
	}
	f = rst_status_field(status, "State");
	p->zombie = f && f[strspn(f, " \t")] == 'Z';
	f = rst_status_field(status, "Name");
	p->comm[0] = '\0';
	if (p->zombie && f) {
		f += strspn(f, " \t");
		snprintf(p->comm, sizeof(p->comm), "%.*s", (int)strcspn(f, "\n"), f);
	}
	free(status);
	if (p->zombie)
		return zombie_status(p->host, &p->exit_status);
	return 0;
}

int rst_tree_read_ids(struct rst_tree *t, char *why, size_t wl)
{
	char *status = NULL;
	int levels = 0;
	size_t w = 0;
	int ret;

	ret = rst_read_proc(t->p[0].host, "status", &status, NULL);
	if (ret) {
		snprintf(why, wl, "pid %d is gone", (int)t->p[0].host);
		return ret;
	}
	last_ns(status, "NSpid", &levels);
	free(status);
	for (size_t i = 0; i < t->n; i++) {
		ret = read_ids(t, i, levels, why, wl);
		if (ret == -ESRCH && i) {
			/* a zombie reaped before its parent stopped: not in the tree any more */
			continue;
		}
		if (ret) {
			if (!why[0])
				snprintf(why, wl, "cannot read the ids of pid %d: %s",
					 (int)t->p[i].host, strerror(-ret));
			return ret;
		}
		t->p[w++] = t->p[i];
	}
	t->n = w;
	for (size_t i = 1; i < t->n; i++)
		if (!t->p[i].ppid) {
			snprintf(why, wl, "pid %d left the tree of pid %d while it was stopped",
				 t->p[i].pid, t->p[0].pid);
			return -EAGAIN;
		}
	return 0;
}

void rst_tree_release(struct rst_tree *t)
{
	free(t->p);
	memset(t, 0, sizeof(*t));
}
