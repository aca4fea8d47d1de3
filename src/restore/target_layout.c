/*
 * target_layout.c - the address space of the restore target: the
 * trampoline, the VMAs of each layout the source sends (the first one
 * made from nothing, later ones diffed against what exists) and the pages
 * written into them.
 *
 * A later layout keeps compatible overlaps (same kind, same file at the
 * same offset) with their contents, unmaps the rest and creates what is
 * new; the trampoline moves when a VMA needs its place.  Pages go straight
 * into the VMAs with process_vm_writev (/proc/PID/mem for read-only ones:
 * FOLL_FORCE).  A per-VMA bitmap, in 4 KiB chunks allocated only where a
 * page differs from the VMA's default, marks pages that may hold data, so
 * a zero page is written only where it replaces something (target.c's
 * opening comment has the invariants).
 */
#define LOG_PREFIX "restore: "
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/rsys.h"
#include "common/validate.h"
#include "common/vma.h"
#include "restore/restore.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

/* ---- layout -------------------------------------------------------------- */

static bool overlaps(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
	return a < d && c < b;
}

static bool tramp_clear(const struct haul_layout *l, uint64_t at)
{
	for (size_t i = 0; i < l->n; i++)
		if (overlaps(at - TRAMP_PAD, at + TRAMP_SIZE + TRAMP_PAD, l->v[i].start,
			     l->v[i].end))
			return false;
	return at >= (1ULL << 32) && at + TRAMP_SIZE + TRAMP_PAD < RST_TASK_SIZE;
}

/* CLOCK_MONOTONIC in ms, for the debug timings. */
static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Map a fresh trampoline clear of @l, using the current syscall address. */
static int tramp_map(struct rst_target *t, const struct haul_layout *l)
{
	static const uint8_t code[] = {0x0f, 0x05, 0xcc};
	uint64_t top = RST_TASK_SIZE - (1ULL << 30);
	long res;
	int ret;

	/* Candidates: 1 GiB steps down from the top of the address space. */
	for (uint64_t at = top; at > (1ULL << 32); at -= 1ULL << 30) {
		if (!tramp_clear(l, at) ||
		    (t->tramp && overlaps(at, at + TRAMP_SIZE, t->tramp, t->tramp + TRAMP_SIZE)))
			continue;
		ret = rst_rcall(t, SYS_mmap, at, TRAMP_SIZE, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, (uint64_t)-1, 0,
				&res);
		if (ret == -EEXIST)
			continue;
		if (ret)
			return ret;
		if ((uint64_t)res != at) {
			rst_rcall(t, SYS_munmap, res, TRAMP_SIZE, 0, 0, 0, 0, NULL);
			continue;
		}
		ret = rst_poke(t, at, code, sizeof(code));
		/* the batch blob (target_batch.c) */
		if (!ret)
			ret = rst_poke(t, at + TRAMP_BLOB, RSYS_BATCH_CODE,
				       sizeof(RSYS_BATCH_CODE));
		if (!ret)
			ret = rst_rcall(t, SYS_mprotect, at, TRAMP_CODE, PROT_READ | PROT_EXEC, 0,
					0, 0, NULL);
		if (ret)
			return ret;
		if (t->tramp)
			rst_rcall(t, SYS_munmap, t->tramp, TRAMP_SIZE, 0, 0, 0, 0, NULL);
		t->tramp = at;
		t->r.sc_addr = at;
		return 0;
	}
	pr_err("no room for the restorer's trampoline in the address space of pid %d",
	       (int)t->o.pid);
	return -ENOMEM;
}

static bool compatible(const struct haul_vma *a, const struct haul_vma *b)
{
	const uint32_t kind = HAUL_VMA_SHARED | HAUL_VMA_ANON | HAUL_VMA_FILE | HAUL_VMA_SHMEM;

	if ((a->flags & kind) != (b->flags & kind))
		return false;
	if (a->flags & HAUL_VMA_SHMEM) /* the same object at the same offset */
		return a->dev == b->dev && a->ino == b->ino &&
		       a->start - a->pgoff == b->start - b->pgoff;
	if (a->flags & HAUL_VMA_FILE)
		return a->dev == b->dev && a->ino == b->ino &&
		       a->start - a->pgoff == b->start - b->pgoff;
	return true;
}

/*
 * What mmap fixes for good and no later call changes: the file's open mode
 * behind a shared file mapping (mw: whether mprotect(PROT_WRITE) may ever
 * succeed), MAP_NORESERVE, MAP_DROPPABLE, MAP_GROWSDOWN (a stack made
 * without it never grows: the next deeper call chain faults).  Pre-copy layouts come from maps
 * and lack them; the state's layout has them, and a VMA made without them
 * is made again (remake).
 */
static uint32_t creation_flags(const struct haul_vma *v)
{
	uint32_t f = v->flags & (HAUL_VMA_NORESERVE | HAUL_VMA_DROPPABLE | HAUL_VMA_GROWSDOWN);

	if ((v->flags & HAUL_VMA_FILE) && (v->flags & HAUL_VMA_SHARED) &&
	    !(v->flags & HAUL_VMA_SHMEM))
		f |= v->flags & HAUL_VMA_MAYWRITE;
	return f;
}

/*
 * The protection a VMA is created with.  Shared memory is written through
 * its mapping, and /proc/PID/mem forces writes only into private (COW)
 * mappings: a read-only or PROT_NONE shmem VMA stays writable until resume
 * (finish_vmas), where it gets its own protection.
 */
uint32_t rst_create_prot(const struct haul_vma *v)
{
	if ((v->flags & HAUL_VMA_SHMEM) && (v->flags & HAUL_VMA_SHARED))
		return v->prot | PROT_READ | PROT_WRITE;
	return v->prot;
}

/* Whether a VMA of the image is one the restorer creates as memory. */
static bool wanted(const struct haul_vma *v)
{
	return haul_vma_is_memory(v);
}

/* The advice each VmFlag stands for. */
static const struct {
	uint32_t flag;
	int advice;
} advs[] = {
	{HAUL_VMA_HUGEPAGE, MADV_HUGEPAGE},	{HAUL_VMA_NOHUGE, MADV_NOHUGEPAGE},
	{HAUL_VMA_DONTFORK, MADV_DONTFORK},	{HAUL_VMA_DONTDUMP, MADV_DONTDUMP},
	{HAUL_VMA_WIPEONFORK, MADV_WIPEONFORK}, {HAUL_VMA_RANDOM, MADV_RANDOM},
	{HAUL_VMA_SEQ, MADV_SEQUENTIAL},	{HAUL_VMA_MERGEABLE, MADV_MERGEABLE},
};

static int apply_advice(struct rst_target *t, const struct haul_vma *v, uint64_t s, uint64_t e)
{
	for (size_t i = 0; i < sizeof(advs) / sizeof(advs[0]); i++) {
		int ret;

		if (!(v->flags & advs[i].flag))
			continue;
		double t0 = now_ms();

		ret = rst_rcall(t, SYS_madvise, s, e - s, advs[i].advice, 0, 0, 0, NULL);
		if (now_ms() - t0 > 1)
			pr_debug("pid %d: madvise(%d) of %" PRIu64 " KiB took %.1f ms",
				 (int)t->o.pid, advs[i].advice, (e - s) >> 10, now_ms() - t0);
		if (ret)
			pr_warn_r(ret, "cannot advise %#" PRIx64 "-%#" PRIx64 " of pid %d (%d)", s,
				  e, (int)t->o.pid, advs[i].advice);
	}
	return 0;
}

static void advice_done(struct rst_target *t, struct rst_batch *b);

/* apply_advice's calls, added to @b with RSYS_BMAYFAIL (a failure only warns: advice_done). */
static void advise_later(struct rst_target *t, struct rst_batch *b, const struct haul_vma *v,
			 uint64_t s, uint64_t e)
{
	for (size_t i = 0; i < sizeof(advs) / sizeof(advs[0]); i++) {
		if (!(v->flags & advs[i].flag))
			continue;
		/* never a run inside rst_bcall: advice_done reads every result of the table */
		if (b->n == RST_BATCH_MAX)
			advice_done(t, b);
		rst_bcall(t, b, RSYS_BMAYFAIL, "madvise", SYS_madvise, s, e - s, advs[i].advice, 0,
			  0, 0);
	}
}

/*
 * Whether @fd, opened in the stub for private file mapping @v, is the file
 * the source mapped (common/vma_ident.c): 0, or -ESTALE, said by name.
 */
static int check_file(struct rst_target *t, const struct haul_vma *v, int fd, bool *refused)
{
	char why[1536], readable[64];
	struct stat st;
	int ret;

	*refused = false;
	/* POSIX shm: haul makes the file again itself (shm_restore.c) */
	if (!v->file_known || !haul_vma_ident_wanted(v) || rst_shm_posix_path(v->path))
		return 0;
	ret = rst_rcall(t, SYS_fstat, fd, rst_scratch(t), 0, 0, 0, 0, NULL);
	if (!ret)
		ret = rst_peek(t, rst_scratch(t), &st, sizeof(st));
	if (ret) {
		pr_err_r(ret, "cannot check %s, mapped at %#" PRIx64 " by pid %d", v->path,
			 v->start, (int)t->o.pid);
		return ret;
	}
	/* a file's VMAs come one after the other: one check for all of them */
	if (t->ident.ok && t->ident.dev == (uint64_t)st.st_dev &&
	    t->ident.ino == (uint64_t)st.st_ino && t->ident.src_dev == v->dev &&
	    t->ident.src_ino == v->ino)
		return 0;
	snprintf(readable, sizeof(readable), "/proc/%d/fd/%d", (int)t->stub, fd);
	ret = haul_vma_ident_check(v, &st, readable, why, sizeof(why));
	t->ident.ok = !ret;
	t->ident.dev = st.st_dev;
	t->ident.ino = st.st_ino;
	t->ident.src_dev = v->dev;
	t->ident.src_ino = v->ino;
	if (ret) {
		pr_err("cannot map VMA %#" PRIx64 "-%#" PRIx64 " of pid %d: %s", v->start, v->end,
		       (int)t->o.pid, why);
		*refused = true;
	}
	return ret;
}

/* Create [@s, @e) of @v in the stub. */
static int create_part(struct rst_target *t, const struct haul_vma *v, uint64_t s, uint64_t e)
{
	uint64_t flags = MAP_FIXED | ((v->flags & HAUL_VMA_SHARED) ? MAP_SHARED : MAP_PRIVATE);
	bool refused = false;
	long res;
	int ret, fd = -1;

	if (v->flags & HAUL_VMA_GROWSDOWN)
		flags |= MAP_GROWSDOWN;
	if (v->flags & HAUL_VMA_NORESERVE)
		flags |= MAP_NORESERVE;
	if ((v->flags & HAUL_VMA_DROPPABLE) && !(v->flags & HAUL_VMA_FILE))
		flags = (flags & ~(uint64_t)MAP_PRIVATE) | RST_MAP_DROPPABLE;
	if (rst_vma_ghost(v)) {
		/* its file comes with the state: anonymous until then (vma_ghost.c) */
		ret = rst_rcall(t, SYS_mmap, s, e - s, v->prot, flags | MAP_ANONYMOUS, (uint64_t)-1,
				0, &res);
	} else if ((v->flags & HAUL_VMA_FILE) && !(v->flags & HAUL_VMA_SHMEM)) {
		uint64_t path;
		/* A shared mapping of a file opened for writing may be made writable later. */
		int oflags = ((v->flags & HAUL_VMA_SHARED) &&
			      ((v->prot & PROT_WRITE) || (v->flags & HAUL_VMA_MAYWRITE)))
				     ? O_RDWR
				     : O_RDONLY;

		ret = rst_put_str(t, 0, v->path, &path);
		if (!ret)
			ret = rst_rcall(t, SYS_openat, AT_FDCWD, path, oflags | O_CLOEXEC, 0, 0, 0,
					&res);
		/* POSIX shm missing here: made again from its pages (shm_restore.c) */
		if (ret == -ENOENT && (v->flags & HAUL_VMA_SHARED) && rst_shm_posix_path(v->path) &&
		    !(ret = rst_shm_posix_create(t, t->lay, v)))
			ret = rst_rcall(t, SYS_openat, AT_FDCWD, path, oflags | O_CLOEXEC, 0, 0, 0,
					&res);
		if (ret) {
			pr_err_r(ret, "cannot open %s for VMA %#" PRIx64 " of pid %d", v->path,
				 v->start, (int)t->o.pid);
			return ret;
		}
		fd = (int)res;
		ret = check_file(t, v, fd, &refused);
		if (!ret)
			ret = rst_rcall(t, SYS_mmap, s, e - s, v->prot, flags, fd,
					v->pgoff + (s - v->start), &res);
		rst_rcall(t, SYS_close, fd, 0, 0, 0, 0, 0, NULL);
		if (refused)
			return ret; /* check_file said why */
	} else if ((v->flags & HAUL_VMA_SHMEM) && (v->flags & HAUL_VMA_SHARED)) {
		/* one object for all its VMAs (shm_restore.c) */
		ret = rst_shm_map(t, t->lay, v, s, e);
		res = (long)s;
	} else {
		ret = rst_rcall(t, SYS_mmap, s, e - s, rst_create_prot(v), flags | MAP_ANONYMOUS,
				(uint64_t)-1, 0, &res);
	}
	if (!ret && (uint64_t)res != s)
		ret = -EFAULT;
	if (ret) {
		pr_err_r(ret, "cannot map %#" PRIx64 "-%#" PRIx64 " %s in pid %d", s, e,
			 v->path ? v->path : "(anon)", (int)t->o.pid);
		return ret;
	}
	if (v->path && (!strncmp(v->path, "[anon:", 6) || !strncmp(v->path, "[anon_shmem:", 12))) {
		/* A name given with PR_SET_VMA_ANON_NAME: "[anon:NAME]". */
		const char *name = strchr(v->path, ':') + 1;
		char buf[96];
		uint64_t rname;

		snprintf(buf, sizeof(buf), "%.*s", (int)strcspn(name, "]"), name);
		ret = rst_put_str(t, 0, buf, &rname);
		if (!ret)
			ret = rst_rcall(t, SYS_prctl, PR_SET_VMA, PR_SET_VMA_ANON_NAME, s, e - s,
					rname, 0, NULL);
		if (ret)
			pr_warn_r(ret, "cannot name %#" PRIx64 "-%#" PRIx64 " of pid %d '%s'", s, e,
				  (int)t->o.pid, buf);
	}
	return apply_advice(t, v, s, e);
}

static size_t bits_nchunks(const struct haul_vma *v)
{
	return (haul_vma_pages(v) + BITS_CHUNK_PAGES - 1) / BITS_CHUNK_PAGES;
}

/* The chunk table of @o, every page @fill. 0 or -ENOMEM. */
static int bits_init(struct tvma *o, bool fill)
{
	size_t n = bits_nchunks(&o->v);

	o->fill = fill;
	o->bits = calloc(n ? n : 1, sizeof(*o->bits));
	return o->bits ? 0 : -ENOMEM;
}

/* Page @i of @o; 0 or -ENOMEM (the first page of a chunk that differs from the fill). */
static int bit_set(struct tvma *o, uint64_t i, bool on)
{
	uint64_t **c = &o->bits[i / BITS_CHUNK_PAGES];

	i %= BITS_CHUNK_PAGES;
	if (!*c) {
		if (on == o->fill)
			return 0;
		*c = malloc(BITS_CHUNK_PAGES / 8);
		if (!*c)
			return -ENOMEM;
		memset(*c, o->fill ? 0xff : 0, BITS_CHUNK_PAGES / 8);
	}
	if (on)
		(*c)[i / 64] |= 1ULL << (i % 64);
	else
		(*c)[i / 64] &= ~(1ULL << (i % 64));
	return 0;
}

static bool bit_get(const struct tvma *o, uint64_t i)
{
	const uint64_t *c = o->bits[i / BITS_CHUNK_PAGES];

	i %= BITS_CHUNK_PAGES;
	return c ? c[i / 64] >> (i % 64) & 1 : o->fill;
}

/* Copy the bits of [@s, @e) from @o to @w, skipping chunks that are the fill on both. */
static int bits_carry(struct tvma *w, const struct tvma *o, uint64_t s, uint64_t e)
{
	for (uint64_t a = s; a < e;) {
		uint64_t oi = (a - o->v.start) >> 12, wi = (a - w->v.start) >> 12;
		uint64_t run = (e - a) >> 12;

		if (BITS_CHUNK_PAGES - oi % BITS_CHUNK_PAGES < run)
			run = BITS_CHUNK_PAGES - oi % BITS_CHUNK_PAGES;
		if (BITS_CHUNK_PAGES - wi % BITS_CHUNK_PAGES < run)
			run = BITS_CHUNK_PAGES - wi % BITS_CHUNK_PAGES;
		if (o->bits[oi / BITS_CHUNK_PAGES] || w->bits[wi / BITS_CHUNK_PAGES] ||
		    o->fill != w->fill)
			for (uint64_t k = 0; k < run; k++) {
				int ret = bit_set(w, wi + k, bit_get(o, oi + k));

				if (ret)
					return ret;
			}
		a += run << 12;
	}
	return 0;
}

void rst_tvmas_free(struct tvma *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].v.path);
		for (size_t k = 0; v[i].bits && k < bits_nchunks(&v[i].v); k++)
			free(v[i].bits[k]);
		free(v[i].bits);
	}
	free(v);
}

/* @o's bits all @fill again. */
static int bits_init_again(struct tvma *o, bool fill)
{
	for (size_t k = 0; o->bits && k < bits_nchunks(&o->v); k++)
		free(o->bits[k]);
	free(o->bits);
	return bits_init(o, fill);
}

static int write_mem(struct rst_target *t, uint64_t addr, const void *data, size_t len);

/* Copy the pages of [@s, @e) of @o whose bit is set to the same offsets at @to. */
static int copy_marked(struct rst_target *t, const struct tvma *o, uint64_t s, uint64_t e,
		       uint64_t to)
{
	const uint64_t chunk = 64 << 10;
	char *buf = malloc(chunk);
	int ret = buf ? 0 : -ENOMEM;

	for (uint64_t a = s; a < e && !ret; a += HAUL_PAGE_SIZE) {
		uint64_t b = a;

		while (b < e && b - a < chunk && bit_get(o, (b - o->v.start) >> 12))
			b += HAUL_PAGE_SIZE;
		if (b == a)
			continue;
		ret = rst_peek(t, a, buf, b - a);
		if (!ret)
			ret = write_mem(t, to + (a - s), buf, b - a);
		a = b - HAUL_PAGE_SIZE;
	}
	free(buf);
	return ret;
}

int rst_target_map_ghost(struct rst_target *t, struct tvma *o, int fd)
{
	const struct haul_vma *v = &o->v;
	uint64_t len = v->end - v->start;
	long tmp;
	int ret;

	ret = rst_rcall(t, SYS_mmap, 0, len, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | (v->flags & HAUL_VMA_NORESERVE ? MAP_NORESERVE : 0), fd,
			v->pgoff, &tmp);
	if (ret) {
		pr_err_r(ret, "cannot map deleted file %s again for VMA %#" PRIx64 " of pid %d",
			 v->path, v->start, (int)t->o.pid);
		return ret;
	}
	ret = copy_marked(t, o, v->start, v->end, (uint64_t)tmp);
	if (!ret)
		ret = rst_rcall(t, SYS_mremap, (uint64_t)tmp, len, len,
				MREMAP_MAYMOVE | MREMAP_FIXED, v->start, 0, NULL);
	if (ret) {
		pr_err_r(ret,
			 "cannot put deleted file %s back at %#" PRIx64 "-%#" PRIx64 " of pid %d",
			 v->path, v->start, v->end, (int)t->o.pid);
		rst_rcall(t, SYS_munmap, (uint64_t)tmp, len, 0, 0, 0, 0, NULL);
		return ret;
	}
	if (v->prot != (PROT_READ | PROT_WRITE))
		ret = rst_rcall(t, SYS_mprotect, v->start, len, v->prot, 0, 0, 0, NULL);
	if (!ret)
		ret = apply_advice(t, v, v->start, v->end);
	/* every page is the file's or a copy now: a later zero page must be written */
	if (!ret)
		ret = bits_init_again(o, true);
	return ret;
}

/*
 * Make [@s, @e) of kept VMA @o again as @w, whose creation flags differ,
 * keeping its contents: a file-shared part is simply mapped again (the file
 * holds it); anonymous memory is mapped fresh elsewhere, the pages that may
 * hold data are copied over by the tracer (/proc/PID/mem: PROT_NONE too),
 * and mremap moves it over the old part, replacing it in one step.  Only
 * the first layout with VmFlags (the state's, at the switchover) meets
 * this, for VMAs made from a pre-copy layout: the stack (MAP_GROWSDOWN),
 * and rarely MAP_NORESERVE, MAP_DROPPABLE, a shared file opened for writing.
 */
static int remake_part(struct rst_target *t, const struct tvma *o, const struct haul_vma *w,
		       uint64_t s, uint64_t e)
{
	uint64_t flags = MAP_ANONYMOUS | MAP_PRIVATE;
	long tmp;
	int ret;

	if (w->flags & HAUL_VMA_FILE) {
		if (w->flags & HAUL_VMA_SHARED)
			return create_part(t, w, s, e);
		pr_warn("cannot remake private file mapping %#" PRIx64 "-%#" PRIx64
			" of pid %d with its mmap flags (%#x); it keeps those of pre-copy",
			s, e, (int)t->o.pid, creation_flags(w));
		return 0;
	}
	if (w->flags & HAUL_VMA_SHARED)
		flags = MAP_ANONYMOUS | MAP_SHARED;
	else if (w->flags & HAUL_VMA_DROPPABLE)
		flags = MAP_ANONYMOUS | RST_MAP_DROPPABLE;
	if (w->flags & HAUL_VMA_NORESERVE)
		flags |= MAP_NORESERVE;
	if (w->flags & HAUL_VMA_GROWSDOWN) /* mremap keeps it: the stack grows again */
		flags |= MAP_GROWSDOWN;
	ret = rst_rcall(t, SYS_mmap, 0, e - s, PROT_READ | PROT_WRITE, flags, (uint64_t)-1, 0,
			&tmp);
	if (ret) {
		pr_err_r(ret, "cannot map a copy of %#" PRIx64 "-%#" PRIx64 " in pid %d", s, e,
			 (int)t->o.pid);
		return ret;
	}
	ret = copy_marked(t, o, s, e, (uint64_t)tmp);
	if (!ret)
		ret = rst_rcall(t, SYS_mremap, (uint64_t)tmp, e - s, e - s,
				MREMAP_MAYMOVE | MREMAP_FIXED, s, 0, NULL);
	if (ret) {
		pr_err_r(ret,
			 "cannot remake %#" PRIx64 "-%#" PRIx64 " of pid %d with its mmap flags", s,
			 e, (int)t->o.pid);
		rst_rcall(t, SYS_munmap, (uint64_t)tmp, e - s, 0, 0, 0, 0, NULL);
		return ret;
	}
	if (rst_create_prot(w) != (PROT_READ | PROT_WRITE))
		ret = rst_rcall(t, SYS_mprotect, s, e - s, rst_create_prot(w), 0, 0, 0, NULL);
	if (!ret)
		ret = apply_advice(t, w, s, e);
	return ret;
}

/* remake_part, timed: it copies the pages that may hold data (HAUL_LOG=debug). */
static int remake(struct rst_target *t, const struct tvma *o, const struct haul_vma *w, uint64_t s,
		  uint64_t e)
{
	double t0 = now_ms();
	int ret = remake_part(t, o, w, s, e);

	pr_debug("pid %d: %#" PRIx64 "-%#" PRIx64 " made again (creation flags %#x -> %#x) in "
		 "%.1f ms",
		 (int)t->o.pid, s, e, creation_flags(&o->v), creation_flags(w), now_ms() - t0);
	return ret;
}

/* VmFlags: what smaps adds to a maps line; layouts sent in pre-copy lack them. */
#define VMFLAGS_MASK HAUL_VMA_VMFLAGS

/*
 * Whether @l has exactly the VMAs the stub has (ranges, protections, kinds,
 * files; VmFlags aside).  Then nothing is mapped or unmapped and no page
 * bitmap is rebuilt: the state's layout at the switchover is normally the
 * last one sent, and rebuilding the bitmaps page by page cost time in
 * proportion to memory size (~7 ms for 4 GiB) inside the downtime.
 */
static bool same_geometry(const struct rst_target *t, const struct haul_layout *l)
{
	size_t k = 0;

	for (size_t i = 0; i < l->n; i++) {
		const struct haul_vma *v = &l->v[i], *o;

		if (!wanted(v))
			continue;
		if (k == t->n)
			return false;
		o = &t->v[k++].v;
		if (o->start != v->start || o->end != v->end || o->prot != v->prot ||
		    o->pgoff != v->pgoff || o->dev != v->dev || o->ino != v->ino ||
		    (o->flags & ~VMFLAGS_MASK) != (v->flags & ~VMFLAGS_MASK))
			return false;
		if (!o->path || !v->path ? o->path != v->path : strcmp(o->path, v->path) != 0)
			return false;
	}
	return k == t->n;
}

/* The madvise calls of @b ran (each may fail): warn for those that did. */
static void advice_done(struct rst_target *t, struct rst_batch *b)
{
	int ret = rst_batch_run(t, b);

	for (size_t i = 0; !ret && i < b->done; i++) {
		const struct rsys_bcall *c = &b->c[i];

		if (c->ret < 0 && c->ret >= -4095)
			pr_warn_r((int)c->ret,
				  "cannot advise %#" PRIx64 "-%#" PRIx64 " of pid %d (%d)",
				  c->args[0], c->args[0] + c->args[1], (int)t->o.pid,
				  (int)c->args[2]);
	}
	if (ret)
		pr_warn_r(ret, "cannot advise the memory of pid %d: %s", (int)t->o.pid, b->what);
	rst_batch_init(b);
}

/*
 * Kept part [@s, @e) of @o becomes @w.  A file deleted since an earlier
 * layout (an upgrade during the migration) turns a mapped file into a
 * placeholder (vma_ghost.c): its bits meant "may hold data" and now mean
 * "a copy to keep", and every page of the old mapping is right (the file's
 * bytes or a copy, zeros included), so all of them are kept.  The other
 * way (linked again) is not carried.
 */
static int ghost_turn(struct rst_target *t, const struct haul_vma *was, struct tvma *o,
		      const struct haul_vma *w, uint64_t s, uint64_t e)
{
	int ret = 0;

	if (rst_vma_ghost(was) && !rst_vma_ghost(w)) {
		pr_err("pid %d: %s, mapped at %#" PRIx64 ", deleted, has a name again: not "
		       "supported",
		       (int)t->o.pid, w->path ? w->path : "", s);
		return -EOPNOTSUPP;
	}
	if (!rst_vma_ghost(w) || rst_vma_ghost(was))
		return 0;
	for (uint64_t a = s; a < e && !ret; a += HAUL_PAGE_SIZE)
		ret = bit_set(o, (a - o->v.start) >> 12, true);
	return ret;
}

/* Same geometry: take @l's VmFlags, advising only what is new (the diff keeps such VMAs too). */
static int update_vmflags(struct rst_target *t, const struct haul_layout *l)
{
	/* the advice in one round trip (target_batch.c), run before any remake */
	struct rst_batch *b = rst_batch_new();
	size_t k = 0;
	int ret = 0;

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < l->n && !ret; i++) {
		struct haul_vma add;
		struct tvma *o;

		if (!wanted(&l->v[i]))
			continue;
		o = &t->v[k++];
		add = l->v[i];
		add.flags &= ~o->v.flags & ~HAUL_VMA_UFFD_WP;
		if (creation_flags(&o->v) != creation_flags(&l->v[i])) {
			advice_done(t, b);
			ret = remake(t, o, &l->v[i], o->v.start, o->v.end);
			if (ret)
				break;
		} else if (add.flags & VMFLAGS_MASK) {
			advise_later(t, b, &add, add.start, add.end);
		}
		if (!ret)
			ret = ghost_turn(t, &o->v, o, &l->v[i], o->v.start, o->v.end);
		o->v.flags = l->v[i].flags & ~HAUL_VMA_UFFD_WP;
	}
	if (!ret)
		advice_done(t, b);
	free(b);
	return ret;
}

int rst_target_layout(struct rst_target *t, const struct haul_layout *l)
{
	struct tvma *nv;
	size_t nn = 0;
	int ret = 0;

	if (t->resumed)
		return -EINVAL;
	if (!t->tramp || !tramp_clear(l, t->tramp)) {
		ret = tramp_map(t, l);
		if (ret)
			return ret;
	}
	if (!t->v) {
		/* First layout: nothing of haul may remain (its vDSO blocks ARCH_MAP_VDSO). */
		ret = rst_rcall(t, SYS_munmap, 0, t->tramp, 0, 0, 0, 0, NULL);
		if (!ret)
			ret = rst_rcall(t, SYS_munmap, t->tramp + TRAMP_SIZE,
					RST_TASK_SIZE - (t->tramp + TRAMP_SIZE), 0, 0, 0, 0, NULL);
		if (ret) {
			pr_err_r(ret, "cannot clear the address space of the stub for pid %d",
				 (int)t->o.pid);
			return ret;
		}
	}
	memset(&t->ident, 0, sizeof(t->ident)); /* a file may have changed since */
	if (t->v && same_geometry(t, l))
		return update_vmflags(t, l);
	t->lay = l;

	nv = calloc(l->n ? l->n : 1, sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	for (size_t i = 0; i < l->n; i++) {
		const struct haul_vma *v = &l->v[i];
		struct tvma *o = &nv[nn];
		bool file = (v->flags & HAUL_VMA_FILE) && !(v->flags & HAUL_VMA_SHMEM);

		if (!wanted(v))
			continue;
		o->v = *v;
		o->v.flags &= ~HAUL_VMA_UFFD_WP;
		o->v.path = v->path ? strdup(v->path) : NULL;
		/* a placeholder's bits: the pages the process wrote (rst_target_pages) */
		ret = bits_init(o, file && !rst_vma_ghost(v));
		nn++;
		if (ret || (v->path && !o->v.path)) {
			ret = -ENOMEM;
			goto out;
		}
	}

	/* Unmap whatever of the old VMAs no compatible new VMA keeps. */
	for (size_t i = 0; i < t->n && !ret; i++) {
		const struct haul_vma *ov = &t->v[i].v;
		uint64_t cur = ov->start;

		for (size_t j = 0; j < nn && cur < ov->end; j++) {
			const struct haul_vma *w = &nv[j].v;

			if (!overlaps(ov->start, ov->end, w->start, w->end) || !compatible(ov, w))
				continue;
			if (w->start > cur)
				ret = rst_rcall(t, SYS_munmap, cur, w->start - cur, 0, 0, 0, 0,
						NULL);
			cur = w->end < ov->end ? w->end : ov->end;
		}
		if (!ret && cur < ov->end)
			ret = rst_rcall(t, SYS_munmap, cur, ov->end - cur, 0, 0, 0, 0, NULL);
	}
	/* Create what is new, fix protections of what is kept, carry the bits over. */
	for (size_t j = 0; j < nn && !ret; j++) {
		struct tvma *w = &nv[j];
		uint64_t cur = w->v.start;

		for (size_t i = 0; i < t->n && !ret; i++) {
			struct tvma *o = &t->v[i];
			uint64_t s, e;

			if (!overlaps(o->v.start, o->v.end, w->v.start, w->v.end) ||
			    !compatible(&o->v, &w->v))
				continue;
			s = o->v.start > w->v.start ? o->v.start : w->v.start;
			e = o->v.end < w->v.end ? o->v.end : w->v.end;
			if (s > cur)
				ret = create_part(t, &w->v, cur, s);
			if (!ret && creation_flags(&o->v) != creation_flags(&w->v)) {
				ret = remake(t, o, &w->v, s, e);
			} else if (!ret) {
				/* advice the kept part lacks: pre-copy layouts carry no VmFlags */
				struct haul_vma add = w->v;

				add.flags &= ~o->v.flags;
				if (rst_create_prot(&o->v) != rst_create_prot(&w->v))
					ret = rst_rcall(t, SYS_mprotect, s, e - s,
							rst_create_prot(&w->v), 0, 0, 0, NULL);
				if (!ret && (add.flags & VMFLAGS_MASK))
					apply_advice(t, &add, s, e);
			}
			if (!ret)
				ret = bits_carry(w, o, s, e);
			if (!ret)
				ret = ghost_turn(t, &o->v, w, &w->v, s, e);
			cur = e;
		}
		if (!ret && cur < w->v.end)
			ret = create_part(t, &w->v, cur, w->v.end);
	}
out:
	t->lay = NULL;
	if (ret) {
		rst_tvmas_free(nv, nn);
		return ret;
	}
	rst_tvmas_free(t->v, t->n);
	t->v = nv;
	t->n = nn;
	return 0;
}

/* ---- pages --------------------------------------------------------------- */

static struct tvma *find_tvma(struct rst_target *t, uint64_t addr)
{
	size_t lo = 0, hi = t->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (addr < t->v[mid].v.start)
			hi = mid;
		else if (addr >= t->v[mid].v.end)
			lo = mid + 1;
		else
			return &t->v[mid];
	}
	return NULL;
}

static int write_mem(struct rst_target *t, uint64_t addr, const void *data, size_t len)
{
	struct iovec l = {(void *)data, len}, r = {(void *)(uintptr_t)addr, len};
	ssize_t n = process_vm_writev(t->stub, &l, 1, &r, 1, 0);

	if (n == (ssize_t)len)
		return 0;
	if (n < 0)
		n = 0;
	/* A read-only VMA (or a partial write): /proc/PID/mem forces it. */
	return rst_poke(t, addr + n, (const char *)data + n, len - n);
}

static const uint8_t zeros[64 << 10];

/*
 * Zero pages [@a, @e) of @v, written in runs only where a page may hold
 * something else.  Their bits then say "zero" (0); a placeholder's say "a
 * copy to keep" (1): a written page of zeros is not the file's page.
 */
static int write_zeros(struct rst_target *t, struct tvma *v, uint64_t a, uint64_t e)
{
	const bool copy = rst_vma_ghost(&v->v);
	int ret = 0;

	while (a < e && !ret) {
		uint64_t b = a;

		while (b < e && bit_get(v, (b - v->v.start) >> 12) && b - a < sizeof(zeros))
			b += HAUL_PAGE_SIZE;
		if (b > a)
			ret = write_mem(t, a, zeros, b - a);
		else if (!copy) { /* zero already, and known to be */
			a += HAUL_PAGE_SIZE;
			continue;
		} else {
			b = a + HAUL_PAGE_SIZE;
		}
		for (uint64_t p = a; !ret && p < b; p += HAUL_PAGE_SIZE)
			ret = bit_set(v, (p - v->v.start) >> 12, copy);
		a = b;
	}
	return ret;
}

int rst_target_pages(struct rst_target *t, uint64_t addr, const void *data, uint32_t npages)
{
	uint64_t end = addr + (uint64_t)npages * HAUL_PAGE_SIZE;

	if (t->resumed)
		return -EINVAL;
	while (addr < end) {
		struct tvma *v = find_tvma(t, addr);
		uint64_t stop, first;
		int ret = 0;

		if (!v) {
			pr_err("page %#" PRIx64 " of pid %d lies outside every VMA of the layout",
			       addr, (int)t->o.pid);
			return -ERANGE;
		}
		stop = end < v->v.end ? end : v->v.end;
		first = (addr - v->v.start) >> 12;
		if ((v->v.flags & HAUL_VMA_FILE) && (v->v.flags & HAUL_VMA_SHARED) &&
		    !(v->v.flags & HAUL_VMA_SHMEM) && !rst_shm_posix_ours(t, v->v.path)) {
			/* The file has these pages; never write stale copies into it. */
		} else if (data) {
			ret = write_mem(t, addr, data, stop - addr);
			for (uint64_t i = 0; !ret && i < (stop - addr) >> 12; i++)
				ret = bit_set(v, first + i, true);
		} else {
			ret = write_zeros(t, v, addr, stop);
		}
		if (ret) {
			pr_err_r(ret, "cannot write pages at %#" PRIx64 " of pid %d", addr,
				 (int)t->o.pid);
			return ret;
		}
		if (data)
			data = (const char *)data + (stop - addr);
		addr = stop;
	}
	return 0;
}
