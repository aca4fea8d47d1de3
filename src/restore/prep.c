/*
 * prep.c - read a process's VmFlags before the freeze, and know whether
 * they still hold at the freeze.
 *
 * The dump needs each VMA's VmFlags (mlock, huge-page and fork advice,
 * growsdown), which only /proc/PID/smaps shows; smaps also walks every page
 * table to count RSS/PSS, ~30 ms per populated GiB here (smaps_account),
 * which used to be most of the switchover downtime.  /proc/PID/maps shows
 * the rest of the layout without the walk (~0.1 ms).
 *
 * So rst_dump_prepare() reads smaps while the process still runs, and
 * watches it: a perf counter per thread on the tracepoint
 * mmap_lock:mmap_lock_acquire_returned filtered on write == 1, inherited by
 * threads created later.  The kernel changes a VMA's flags only under the
 * mmap write lock (vm_flags_set asserts it), and the process's own system
 * calls (madvise, mlock, mmap, munmap, mremap, brk, prctl...) take it in the
 * process's context, where the counter sees them.  Others cannot change its
 * VmFlags: process_madvise only takes advice that leaves them alone, and
 * haul's own uffd registration only changes "uw", which the image ignores.
 *
 * At the freeze (rst_prep_freeze, before any call is injected: the dump's
 * own scratch mmap takes the lock too) the counter is read: zero means no
 * VMA of the process changed its flags since smaps was read.  The dump then
 * reads maps and takes the VmFlags of each VMA from the prepared layout
 * where the VMA is the same (a growsdown stack may have grown: no lock
 * change of flags goes with that); any other difference, a counter that
 * moved, or no counter at all (tracefs or perf missing) reads smaps in the
 * freeze window as before.  The fast path is an optimisation only.
 * "Reads smaps" means rst_layout_read_flags (vmflags.c): the same VmFlags
 * from the kernel's vm_flags words where a BPF iterator can read them, with
 * no page-table walk; smaps itself where not.
 */
#define LOG_PREFIX "dump: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/vma.h"
#include "restore/restore.h"
#include "restore/restore_int.h"

/* Where tracefs may be; mounted at the first one when neither is. */
static const char *const tracefs_dirs[] = {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"};
#define MMAP_LOCK_EVENT "events/mmap_lock/mmap_lock_acquire_returned/id"

/* Threads watched at most: one fd each. */
#define PREP_MAX_THREADS 512

struct rst_dump_prep {
	pid_t pid;
	struct haul_layout layout; /* with VmFlags, read after the counters were zeroed */
	bool have_layout;
	int *fd; /* one counter per thread watched (new ones inherit) */
	pid_t *tid;
	size_t nfd;
	bool watching; /* every thread has a counter */
	bool clean;    /* at the freeze: no mmap write lock since the layout was read */
	bool fast;     /* the last dump took its VmFlags from the layout */
	struct rst_ghost_pre *ghosts; /* deleted mapped files sent before the freeze */
};

/* The tracepoint's id, mounting tracefs when it is not. -errno when unavailable. */
static int mmap_lock_event_id(void)
{
	char path[128], buf[32];
	int fd;
	ssize_t n;

	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < sizeof(tracefs_dirs) / sizeof(tracefs_dirs[0]); i++) {
			snprintf(path, sizeof(path), "%s/%s", tracefs_dirs[i], MMAP_LOCK_EVENT);
			fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			if (n <= 0)
				return -EIO;
			buf[n] = '\0';
			return atoi(buf);
		}
		/* Not mounted (or no such event): mount tracefs where it belongs, once. */
		if (pass || mount("nodev", tracefs_dirs[0], "tracefs", 0, NULL) < 0)
			break;
	}
	return -ENOENT;
}

static int watch_thread(struct rst_dump_prep *p, int id, pid_t tid)
{
	struct perf_event_attr a;
	int fd;

	if (p->nfd == PREP_MAX_THREADS)
		return -E2BIG;
	memset(&a, 0, sizeof(a));
	a.type = PERF_TYPE_TRACEPOINT;
	a.size = sizeof(a);
	a.config = id;
	a.inherit = 1; /* threads it creates from now on count here too */
	fd = syscall(SYS_perf_event_open, &a, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* Only write locks change VMAs; page faults may take the read lock. */
	if (ioctl(fd, PERF_EVENT_IOC_SET_FILTER, "write == 1") < 0) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	p->fd[p->nfd] = fd;
	p->tid[p->nfd++] = tid;
	return 0;
}

static bool watched(const struct rst_dump_prep *p, pid_t tid)
{
	for (size_t i = 0; i < p->nfd; i++)
		if (p->tid[i] == tid)
			return true;
	return false;
}

/*
 * A counter on every thread.  A thread created by one not yet watched is
 * not inherited: list the threads again until a pass finds none new.
 */
static int watch(struct rst_dump_prep *p)
{
	char path[64];
	bool added = true;
	int id = mmap_lock_event_id();

	if (id < 0)
		return id;
	p->fd = calloc(PREP_MAX_THREADS, sizeof(*p->fd));
	p->tid = calloc(PREP_MAX_THREADS, sizeof(*p->tid));
	if (!p->fd || !p->tid)
		return -ENOMEM;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)p->pid);
	while (added) {
		struct dirent *de;
		DIR *d = opendir(path);
		int ret = 0;

		if (!d)
			return errno == ENOENT ? -ESRCH : -errno;
		added = false;
		while (!ret && (de = readdir(d))) {
			pid_t tid = atoi(de->d_name);

			if (tid <= 0 || watched(p, tid))
				continue;
			ret = watch_thread(p, id, tid);
			if (ret == -ESRCH) /* exited meanwhile */
				ret = 0;
			else if (!ret)
				added = true;
		}
		closedir(d);
		if (ret)
			return ret;
	}
	return 0;
}

/* Write locks taken since the last reset, or -errno. */
static long long lock_count(const struct rst_dump_prep *p)
{
	long long sum = 0;

	for (size_t i = 0; i < p->nfd; i++) {
		uint64_t v;

		if (read(p->fd[i], &v, sizeof(v)) != sizeof(v))
			return -EIO;
		sum += v;
	}
	return sum;
}

int rst_dump_prepare(pid_t pid, struct rst_dump_prep **pp)
{
	struct rst_dump_prep *p = *pp;
	int ret;

	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p)
			return -ENOMEM;
		p->pid = pid;
		*pp = p;
		ret = watch(p);
		if (ret) {
			/* Not fatal: the dump reads smaps at the freeze, as without a prepare. */
			pr_info("cannot watch pid %d for VMA changes (%s); VmFlags will be read at "
				"the freeze",
				(int)pid, strerror(-ret));
			for (size_t i = 0; i < p->nfd; i++)
				close(p->fd[i]);
			p->nfd = 0;
			return 0;
		}
		p->watching = true;
	} else if (!p->watching || (p->have_layout && lock_count(p) == 0)) {
		return 0; /* nothing to do, or the layout still holds */
	}
	for (size_t i = 0; i < p->nfd; i++)
		if (ioctl(p->fd[i], PERF_EVENT_IOC_RESET, 0) < 0)
			return -errno;
	if (p->have_layout)
		haul_layout_release(&p->layout);
	p->have_layout = false;
	ret = rst_layout_read_flags_running(pid, &p->layout);
	if (ret)
		return ret;
	haul_layout_identify(pid, &p->layout, NULL);
	p->have_layout = true;
	return 0;
}

void rst_dump_prep_free(struct rst_dump_prep *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nfd; i++)
		close(p->fd[i]);
	free(p->fd);
	free(p->tid);
	if (p->have_layout)
		haul_layout_release(&p->layout);
	rst_ghost_pre_free(p->ghosts);
	free(p);
}

struct rst_ghost_pre **rst_prep_ghost_slot(struct rst_dump_prep *p)
{
	return p ? &p->ghosts : NULL;
}

struct rst_ghost_pre *rst_prep_ghosts(struct rst_dump_prep *p)
{
	return p ? p->ghosts : NULL;
}

bool rst_dump_prep_fast(const struct rst_dump_prep *p)
{
	return p && p->fast;
}

void rst_prep_freeze(struct rst_dump_prep *p)
{
	if (!p)
		return;
	p->fast = false;
	p->clean = p->watching && p->have_layout && lock_count(p) == 0;
}

/* VmFlags bits: what smaps adds to a maps line. */
#define VMFLAGS_MASK HAUL_VMA_VMFLAGS

/* Whether prepared @o and current @v (maps only) are one VMA, a grown stack included. */
static bool same_vma(const struct haul_vma *o, const struct haul_vma *v)
{
	bool grows = o->flags & HAUL_VMA_GROWSDOWN;

	if (o->end != v->end || o->prot != v->prot ||
	    (o->flags & ~VMFLAGS_MASK) != (v->flags & ~VMFLAGS_MASK) || o->dev != v->dev ||
	    o->ino != v->ino)
		return false;
	/* A growsdown VMA grows by faults, its start and anon pgoff with it. */
	if (o->start != v->start && !(grows && v->start < o->start))
		return false;
	if (o->start == v->start && o->pgoff != v->pgoff)
		return false;
	if (!o->path || !v->path)
		return o->path == v->path;
	return !strcmp(o->path, v->path);
}

/* The layout of @pid with VmFlags, from smaps (or the task_vma iterator). */
static int read_flags(struct rst_dump_prep *p, pid_t pid, struct haul_layout *out)
{
	int ret = rst_layout_read_flags(pid, out);

	if (!ret)
		haul_layout_identify(pid, out, p && p->have_layout ? &p->layout : NULL);
	return ret;
}

/*
 * The layout of stopped @pid for its image: VmFlags and the files of its
 * private file mappings (vma_ident.c) taken from the prepare's layout where
 * a VMA is the same, read again where not.
 */
int rst_prep_layout(struct rst_dump_prep *p, pid_t pid, struct haul_layout *out)
{
	struct haul_layout l;
	size_t k = 0;
	int ret;

	if (!p || !p->clean) {
		if (p)
			pr_debug(
				"pid %d: VmFlags may have changed since the prepare; reading smaps",
				(int)pid);
		return read_flags(p, pid, out);
	}
	ret = haul_layout_read(pid, false, &l);
	if (ret)
		return ret;
	for (size_t i = 0; i < l.n; i++) {
		while (k < p->layout.n && p->layout.v[k].end < l.v[i].end)
			k++;
		if (k == p->layout.n || !same_vma(&p->layout.v[k], &l.v[i])) {
			pr_debug("pid %d: VMA %#llx-%#llx changed since the prepare; reading smaps",
				 (int)pid, (unsigned long long)l.v[i].start,
				 (unsigned long long)l.v[i].end);
			haul_layout_release(&l);
			return read_flags(p, pid, out);
		}
		l.v[i].flags |= p->layout.v[k].flags & VMFLAGS_MASK;
		memcpy(l.v[i].uncarried, p->layout.v[k].uncarried, sizeof(l.v[i].uncarried));
	}
	haul_layout_identify(pid, &l, &p->layout);
	p->fast = true;
	pr_debug("pid %d: %zu VMAs from maps, VmFlags from before the stop", (int)pid, l.n);
	*out = l;
	return 0;
}

int rst_dump_prep_layout(struct rst_dump_prep *p, pid_t pid, struct haul_layout *out)
{
	rst_prep_freeze(p);
	return rst_prep_layout(p, pid, out);
}

void rst_dump_prep_annotate(const struct rst_dump_prep *p, struct haul_layout *l)
{
	const uint32_t creation =
		HAUL_VMA_NORESERVE | HAUL_VMA_DROPPABLE | HAUL_VMA_GROWSDOWN | HAUL_VMA_MAYWRITE;

	if (!p || !p->have_layout)
		return;
	for (size_t i = 0; i < l->n; i++) {
		struct haul_vma *v = &l->v[i];
		const struct haul_vma *w = haul_layout_find(&p->layout, v->start);

		if (w && w->start == v->start && w->end == v->end)
			v->flags |= w->flags & creation;
	}
}
