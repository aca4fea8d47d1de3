/*
 * image.c - checkpoint to and restore from an images directory (page store).
 *
 * Checkpoint: seize the process (ptrace stops every thread), dump its
 * state, then copy its pages into the page store:
 * only pages that exist (pagemap present or swapped; PROT_NONE ones too,
 * read through /proc/PID/mem; not guard pages, which the state lists), and for private file
 * mappings only the pages the process changed (pagemap bit 61 clear: an
 * anonymous copy-on-write page; the others are the file's and come back
 * with the mapping).  All-zero pages become holes.  The state and layout go
 * into the same commit, which the page store makes durable (fsync, rename)
 * before we kill the source: without --leave-running, the process dies
 * only once its image is safely on disk, and never runs after the dump.
 * With --leave-running, the pages are copied while it runs (tracker
 * rounds, uffd-wp: the loop is haul's, src/haul/checkpoint.c, which stages
 * each round here with rst_ckpt_store_round()), it is stopped only for the
 * last dirty pages and the state, and resumes before the commit is made
 * durable.
 *
 * The image is written beside the committed one and switched in only when
 * durable (imgdir.c): a failed or killed checkpoint never costs the previous
 * image.
 *
 * A process with children is checkpointed as a tree (tree_ckpt.c) and an
 * image with a tree.img is restored by tree_restore.c.
 *
 * Restore: the image is found by id (imgdir.c), opened read-only, and every
 * page checked against its checksum before anything is created; then one
 * rst_target fed from it: layout, every stored page, state; clocks continue
 * from the dump (time namespace).
 */
#define LOG_PREFIX "image: "
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/pstore.h"
#include "common/validate.h"
#include "common/vma.h"
#include "restore/ctr.h"
#include "restore/imgdir_int.h"
#include "restore/restore.h"
#include "restore/fd_inet.h"
#include "restore/fd_int.h"
#include "restore/restore_int.h"
#include "restore/tree_int.h"
#include "tracker/tracker.h"

#define PM_PRESENT (1ULL << 63)
#define PM_SWAPPED (1ULL << 62)
#define PM_FILE	   (1ULL << 61)

/* Pages read from the process per process_vm_readv. */
#define CKPT_CHUNK_PAGES 1024

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static bool page_is_zero(const uint8_t *p)
{
	static const uint8_t zero[HAUL_PAGE_SIZE];

	return !memcmp(p, zero, HAUL_PAGE_SIZE);
}

/* Store @n pages at @addr from @buf: data runs and zero holes. */
static int put_pages(struct pstore_proc *p, uint64_t addr, const uint8_t *buf, uint32_t n,
		     struct rst_ckpt_stats *st)
{
	uint32_t i = 0;

	while (i < n) {
		bool zero = page_is_zero(buf + (size_t)i * HAUL_PAGE_SIZE);
		uint32_t j = i + 1;
		int ret;

		while (j < n && page_is_zero(buf + (size_t)j * HAUL_PAGE_SIZE) == zero)
			j++;
		ret = pstore_put(p, addr + (uint64_t)i * HAUL_PAGE_SIZE,
				 zero ? NULL : buf + (size_t)i * HAUL_PAGE_SIZE, j - i);
		if (ret)
			return ret;
		if (zero)
			st->zero_pages += j - i;
		else
			st->pages += j - i;
		i = j;
	}
	return 0;
}

/* Copy the pages of @v that must be stored. */
static int dump_vma_pages(pid_t pid, int pagemap, const struct haul_vma *v, struct pstore_proc *p,
			  uint8_t *buf, uint64_t *pm, struct rst_ckpt_stats *st)
{
	bool posix = (v->flags & HAUL_VMA_SHARED) && rst_shm_posix_path(v->path);
	bool file_private = (v->flags & HAUL_VMA_FILE) && !(v->flags & HAUL_VMA_SHMEM) && !posix;
	uint64_t *data = NULL;
	size_t ndata = 0, k = 0;

	/* shared memory: its object's data, also where this process's page tables lack it */
	if ((v->flags & HAUL_VMA_SHARED) && ((v->flags & HAUL_VMA_SHMEM) || posix)) {
		int ret = rst_shm_data(pid, v, &data, &ndata);

		if (ret) {
			pr_err_r(ret,
				 "cannot read which pages of shared memory %#" PRIx64
				 " of pid %d hold data",
				 v->start, (int)pid);
			return ret;
		}
	}

	for (uint64_t a = v->start; a < v->end;) {
		uint64_t n = (v->end - a) >> HAUL_PAGE_SHIFT, i = 0;
		ssize_t got;

		if (n > CKPT_CHUNK_PAGES)
			n = CKPT_CHUNK_PAGES;
		got = pread(pagemap, pm, n * 8, (a >> HAUL_PAGE_SHIFT) * 8);
		if (got != (ssize_t)(n * 8)) {
			free(data);
			return got < 0 ? -errno : -EIO;
		}
		/* pages the object holds count as present (read through the mapping) */
		for (; k < ndata && data[2 * k] < a + n * HAUL_PAGE_SIZE; k++) {
			uint64_t s = data[2 * k] > a ? data[2 * k] : a;
			uint64_t e = data[2 * k + 1] < a + n * HAUL_PAGE_SIZE
					     ? data[2 * k + 1]
					     : a + n * HAUL_PAGE_SIZE;

			for (uint64_t x = s; x < e; x += HAUL_PAGE_SIZE)
				pm[(x - a) >> HAUL_PAGE_SHIFT] |= PM_PRESENT;
			if (data[2 * k + 1] > a + n * HAUL_PAGE_SIZE)
				break; /* continues in the next chunk */
		}
		while (i < n) {
			uint64_t j;
			bool want;

/* Guard pages read as swapped (pagemap bit 58) but hold nothing: the image lists them. */
#define WANT(e)                                                                                    \
	(((e) & (PM_PRESENT | PM_SWAPPED)) && !rst_pm_is_guard(e) &&                               \
	 !(file_private && ((e)&PM_FILE)))
			want = WANT(pm[i]);
			for (j = i + 1; j < n && WANT(pm[j]) == want; j++)
				;
#undef WANT
			if (want) {
				/* PROT_NONE pages too: /proc/PID/mem where process_vm_readv fails. */
				struct trk_range r = {a + i * HAUL_PAGE_SIZE, j - i};
				int ret = trk_read_pages(pid, &r, 1, buf, NULL);

				if (ret) {
					pr_err_r(ret,
						 "cannot read %#" PRIx64 "+%" PRIu64
						 " pages of pid %d",
						 r.start, j - i, (int)pid);
					free(data);
					return ret;
				}
				ret = put_pages(p, a + i * HAUL_PAGE_SIZE, buf, (uint32_t)(j - i),
						st);
				if (ret) {
					free(data);
					return ret;
				}
			}
			i = j;
		}
		a += n * HAUL_PAGE_SIZE;
	}
	free(data);
	return 0;
}

/* The PID @pid knows itself by (the last NSpid entry). */
static pid_t own_pid(pid_t pid)
{
	char path[64], line[256];
	pid_t ret = pid;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return pid;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "NSpid:", 6)) {
			char *last = strrchr(line, '\t');

			ret = atoi(last ? last + 1 : line + 6);
		}
	fclose(f);
	return ret;
}

/*
 * Whether pages of @v go into the image at all.  PROT_NONE ones do: the
 * process may mprotect them readable again and find its data there.  A live
 * migration, which leaves one copy running, carries droppable ones too.
 */
static bool stored(const struct haul_vma *v)
{
	/*
	 * MAP_DROPPABLE contents are the kernel's to drop at any time (glibc's
	 * getrandom state lives there): an image that can be restored twice
	 * must not hand two copies the same state, so a restore reads zeros,
	 * as after memory pressure (CRIU's maps11 expects the same).
	 */
	if (!haul_vma_is_memory(v) || (v->flags & HAUL_VMA_DROPPABLE))
		return false;
	/*
	 * A shared file mapping's pages are the file's; but POSIX shm (/dev/shm)
	 * may be missing on the target, which then makes it from them.
	 */
	return !((v->flags & HAUL_VMA_FILE) && (v->flags & HAUL_VMA_SHARED) &&
		 !(v->flags & HAUL_VMA_SHMEM)) ||
	       rst_shm_posix_path(v->path);
}

bool rst_vma_stored(const struct haul_vma *v)
{
	return stored(v);
}

/*
 * Stage what tracker round @r found: ranges whose old contents are gone
 * become zero holes (where the layout still has memory), dirty pages are
 * read through the tracker and stored.
 */
static int store_round(struct trk *t, const struct trk_round *r, struct pstore_proc *p,
		       uint8_t *buf, struct rst_ckpt_stats *st)
{
	uint64_t zero[CKPT_CHUNK_PAGES / 64];
	int ret = pstore_set_layout(p, &r->layout);

	for (int pass = 0; pass < 2 && !ret; pass++) {
		const struct trk_range *rs = pass ? r->dirty : r->gone;
		size_t n = pass ? r->ndirty : r->ngone;

		for (size_t i = 0; i < n && !ret; i++) {
			for (size_t k = 0; k < r->layout.n && !ret; k++) {
				const struct haul_vma *v = &r->layout.v[k];
				uint64_t s = rs[i].start, e = s + rs[i].npages * HAUL_PAGE_SIZE;

				s = s > v->start ? s : v->start;
				e = e < v->end ? e : v->end;
				if (s >= e || !stored(v))
					continue;
				if (!pass) {
					ret = pstore_put(p, s, NULL, (e - s) >> HAUL_PAGE_SHIFT);
					continue;
				}
				for (uint64_t a = s; a < e && !ret;) {
					struct trk_range c = {a, (e - a) >> HAUL_PAGE_SHIFT};

					if (c.npages > CKPT_CHUNK_PAGES)
						c.npages = CKPT_CHUNK_PAGES;
					memset(zero, 0, sizeof(zero));
					ret = trk_read(t, &c, 1, buf, zero);
					if (!ret)
						ret = put_pages(p, a, buf, (uint32_t)c.npages, st);
					a += c.npages * HAUL_PAGE_SIZE;
				}
			}
		}
	}
	return ret;
}

/*
 * Drop what tracker rounds stored of @l's droppable VMAs: their layouts come
 * from maps, which shows no VmFlags, so stored() could not tell then.
 */
static int drop_droppable(struct pstore_proc *p, const struct haul_layout *l)
{
	int ret = 0;

	for (size_t i = 0; i < l->n && !ret; i++)
		if (l->v[i].flags & HAUL_VMA_DROPPABLE)
			ret = pstore_put(p, l->v[i].start, NULL, haul_vma_pages(&l->v[i]));
	return ret;
}

/* Pages of every stored VMA of @l that exist, read with pagemap (the process is stopped). */
static int store_all(pid_t pid, const struct haul_layout *l, struct pstore_proc *p, uint8_t *buf,
		     struct rst_ckpt_stats *st)
{
	uint64_t *pm = malloc(CKPT_CHUNK_PAGES * 8);
	char path[64];
	int ret = 0, pagemap;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	pagemap = open(path, O_RDONLY | O_CLOEXEC);
	if (pagemap < 0 || !pm) {
		ret = pagemap < 0 ? -errno : -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < l->n && !ret; i++)
		if (stored(&l->v[i]))
			ret = dump_vma_pages(pid, pagemap, &l->v[i], p, buf, pm, st);
out:
	if (pagemap >= 0)
		close(pagemap);
	free(pm);
	return ret;
}

int rst_store_pages(pid_t pid, const struct haul_layout *l, struct pstore_proc *p,
		    struct rst_ckpt_stats *st)
{
	uint8_t *buf = malloc(CKPT_CHUNK_PAGES * HAUL_PAGE_SIZE);
	int ret;

	if (!buf)
		return -ENOMEM;
	ret = store_all(pid, l, p, buf, st);
	free(buf);
	return ret;
}

/* One checkpoint being made, from rst_ckpt_begin() to rst_ckpt_end(). */
struct rst_ckpt {
	pid_t pid;
	struct rst_ckpt_stats *st;
	struct rst_imgdir_tx tx;
	struct rst_seized *sz;
	struct pstore *store;
	struct pstore_proc *p;
	struct haul_layout l;
	uint8_t *blob, *buf;
	size_t len;
	Haul__Img__ProcessState *ps;
	uint64_t t0;
	struct rst_ckpt_lock lock; /* the network lock (ckpt_lock.c) */
};

int rst_ckpt_begin(pid_t pid, const char *dir, struct rst_ckpt_stats *st, struct rst_ckpt **out)
{
	uint64_t t0 = now_ns();
	struct rst_ckpt *ck;
	char why[512];
	int ret;
	pid_t own = own_pid(pid);

	memset(st, 0, sizeof(*st));
	ret = rst_dump_precheck(pid, why, sizeof(why));
	if (ret) {
		pr_err("cannot checkpoint pid %d: %s", (int)pid, why);
		return ret;
	}
	ck = calloc(1, sizeof(*ck));
	if (!ck)
		return -ENOMEM;
	ck->pid = pid;
	ck->st = st;
	ck->t0 = t0;
	ck->tx = (struct rst_imgdir_tx){.dirfd = -1, .lockfd = -1};
	ck->buf = malloc(CKPT_CHUNK_PAGES * HAUL_PAGE_SIZE);
	if (!ck->buf) {
		free(ck);
		return -ENOMEM;
	}
	/* The new image goes beside the committed one; it replaces it only once durable. */
	ret = rst_imgdir_begin(dir, pid, own, &ck->tx);
	if (ret)
		goto fail;
	snprintf(st->id, sizeof(st->id), "%s", ck->tx.id);
	ret = pstore_open(ck->tx.path, &ck->store);
	if (ret) {
		pr_err_r(ret, "cannot open %s for the new image", ck->tx.path);
		goto fail;
	}
	ret = pstore_proc_get(ck->store, own, true, &ck->p);
	if (ret) {
		pr_err_r(ret, "cannot make an image of pid %d in %s", (int)own, ck->tx.path);
		goto fail;
	}
	*out = ck;
	return 0;
fail:
	rst_ckpt_end(ck, ret);
	return ret;
}

int rst_ckpt_store_round(struct rst_ckpt *ck, struct trk *t)
{
	struct trk_round r;
	int ret = trk_round(t, &r);

	if (!ret) {
		ret = store_round(t, &r, ck->p, ck->buf, ck->st);
		trk_round_release(&r);
	}
	return ret;
}

int rst_ckpt_stage_layout(struct rst_ckpt *ck, const struct haul_layout *l)
{
	return pstore_set_layout(ck->p, l);
}

int rst_ckpt_stage(struct rst_ckpt *ck, const struct haul_layout *l, uint64_t addr,
		   const void *data, uint32_t npages)
{
	uint64_t end = addr + (uint64_t)npages * HAUL_PAGE_SIZE;
	int ret = 0;

	for (size_t k = 0; k < l->n && !ret; k++) {
		const struct haul_vma *v = &l->v[k];
		uint64_t s = addr > v->start ? addr : v->start, e = end < v->end ? end : v->end;

		if (s >= e || !stored(v))
			continue;
		if (!data)
			ret = pstore_put(ck->p, s, NULL, (e - s) >> HAUL_PAGE_SHIFT);
		else
			ret = put_pages(ck->p, s, (const uint8_t *)data + (s - addr),
					(uint32_t)((e - s) >> HAUL_PAGE_SHIFT), ck->st);
	}
	return ret;
}

int rst_ckpt_commit_pages(struct rst_ckpt *ck, const struct haul_layout *l)
{
	int ret = pstore_set_layout(ck->p, l);

	if (!ret)
		ret = pstore_commit(ck->p, pstore_round(ck->p) + 1);
	if (ret) {
		pr_err_r(ret, "cannot commit the pages of pid %d to %s", (int)ck->pid, ck->tx.path);
		return ret;
	}
	ret = rst_imgdir_switch(&ck->tx, NULL);
	ck->st->total_ns = now_ns() - ck->t0;
	return ret;
}

const char *rst_ckpt_path(const struct rst_ckpt *ck)
{
	return ck->tx.path;
}

int rst_ckpt_seize(struct rst_ckpt *ck)
{
	for (int i = 0;; i++) {
		int ret = rst_seize(ck->pid, &ck->sz);

		if (ret) {
			pr_err_r(ret, "cannot stop pid %d to dump it", (int)ck->pid);
			return ret;
		}
		/* Connections it has not accepted yet: it runs to accept them (sock_drain.c). */
		if (i == RST_ACCEPT_DRAIN_TRIES || !rst_sock_accept_pending(ck->pid, NULL, 0))
			break;
		rst_release(ck->sz);
		ck->sz = NULL;
		rst_sock_drain_wait(ck->pid, NULL, 0);
	}
	ck->st->frozen_ns = now_ns();
	return 0;
}

int rst_ckpt_commit(struct rst_ckpt *ck, bool tracked, bool leave_running, const char *fault)
{
	struct rst_ckpt_stats *st = ck->st;
	pid_t pid = ck->pid;
	int ret;

	/* stopped, no socket read yet: the network lock (ckpt_lock.c) */
	ret = rst_ckpt_lock_take(&ck->lock, &ck->tx, &ck->pid, 1, leave_running);
	if (ret) {
		pr_err_r(ret, "cannot lock the network of pid %d for its checkpoint; it runs on",
			 (int)pid);
		return ret;
	}
	ret = rst_dump_state(ck->sz, &ck->blob, &ck->len);
	if (ret) {
		pr_err_r(ret, "cannot dump the state of pid %d; it runs on", (int)pid);
		return ret;
	}
	ck->ps = haul__img__process_state__unpack(NULL, ck->len, ck->blob);
	if (!ck->ps)
		return -EBADMSG;
	ret = rst_state_layout(ck->ps, &ck->l);
	if (!ret)
		ret = pstore_set_comm(ck->p, ck->ps->comm);
	if (!ret)
		ret = pstore_set_layout(ck->p, &ck->l);
	if (!ret)
		ret = pstore_set_state(ck->p, ck->blob, ck->len);
	if (!ret && !tracked)
		ret = store_all(pid, &ck->l, ck->p, ck->buf, st);
	else if (!ret)
		ret = drop_droppable(ck->p, &ck->l);
	if (ret)
		return ret;
	rst_imgdir_fault(fault, "staged");
	if (leave_running) {
		/* Everything is staged: it may run on while the image is made durable. */
		rst_ckpt_lock_lift(&ck->lock);
		rst_tcp_hold_end(true);
		rst_release(ck->sz);
		ck->sz = NULL;
		st->frozen_ns = now_ns() - st->frozen_ns;
	}
	ret = pstore_commit(ck->p, pstore_round(ck->p) + 1);
	if (ret) {
		pr_err_r(ret, "cannot commit the image of pid %d to %s; the previous image stays",
			 (int)pid, ck->tx.path);
		return ret;
	}
	ret = rst_imgdir_switch(&ck->tx, fault);
	if (ret)
		return ret;
	if (!leave_running) {
		/* Durable on disk: the source may go, and must not run again. */
		rst_kill_seized(ck->sz);
		ck->sz = NULL;
		rst_tcp_hold_end(false);       /* its sockets closed in repair mode: nothing sent */
		rst_ckpt_lock_keep(&ck->lock); /* until the restore: no peer meets a closed port */
		st->frozen_ns = now_ns() - st->frozen_ns;
	}
	st->total_ns = now_ns() - ck->t0;
	return 0;
}

void rst_ckpt_end(struct rst_ckpt *ck, int ret)
{
	if (!ck)
		return;
	if (ret && ck->p)
		pstore_abort(ck->p);
	free(ck->buf);
	pstore_close(ck->store);
	rst_imgdir_end(&ck->tx);
	haul_layout_release(&ck->l);
	if (ck->ps)
		haul__img__process_state__free_unpacked(ck->ps, NULL);
	free(ck->blob);
	rst_ckpt_lock_lift(&ck->lock);
	rst_tcp_hold_end(true); /* a failed checkpoint: the process runs on */
	rst_release(ck->sz);
	free(ck);
}

static int feed_page(void *arg, uint64_t addr, const void *data, uint32_t npages)
{
	return rst_target_pages(arg, addr, data, npages);
}

int rst_restore_images(const char *dir, const char *id, pid_t pid,
		       const struct rst_target_opts *base, struct rst_target **out, pid_t *here)
{
	struct rst_target_opts o = *base;
	char path[PATH_MAX];
	struct pstore *store = NULL;
	struct pstore_proc *p;
	struct rst_target *t = NULL;
	struct rst_chain *chain = NULL;
	const void *state;
	char why[512] = "";
	size_t len;
	int ret;

	ret = rst_imgdir_find(dir, id, pid, path, sizeof(path), &pid);
	if (ret)
		return ret;
	/* the network lock its checkpoint left: lifted once every socket exists (ckpt_lock.c) */
	ret = rst_restore_lock_arm(path, o.ctr && o.ctr->netns[0] ? o.ctr->netns : NULL);
	if (ret)
		return ret;
	/* A tree image: every process of it, from tree.img. */
	if (rst_is_tree_image(path)) {
		ret = rst_restore_tree(path, base, out, here);
		if (ret)
			rst_tcp_defer_all(NULL);
		return ret;
	}
	/* Read-only: a restore never changes an image, damaged or not. */
	ret = pstore_open_ro(path, &store);
	if (ret) {
		pr_err("cannot restore from %s: its image is damaged or unreadable (above); restore "
		       "another image or checkpoint again",
		       path);
		rst_tcp_defer_all(NULL);
		return ret;
	}
	ret = pstore_proc_get(store, pid, false, &p);
	if (ret) {
		pr_err("%s has no image of pid %d", path, (int)pid);
		goto out;
	}
	/* Every page against its checksum before anything is created. */
	ret = pstore_verify(p);
	if (ret) {
		pr_err("cannot restore from %s: a page of pid %d is damaged (above); restore "
		       "another image or checkpoint again",
		       path, (int)pid);
		goto out;
	}
	state = pstore_state(p, &len);
	if (!state) {
		pr_err("the image of pid %d in %s has no process state", (int)pid, path);
		ret = -ENOENT;
		goto out;
	}
	/* every record is checked before any of it is used (common/validate.h, fd_validate.c) */
	if (val_layout(pstore_layout(p), why, sizeof(why))) {
		pr_err("the layout of pid %d in %s is corrupt: %s; checkpoint the process again",
		       (int)pid, dir, why);
		ret = -EBADMSG;
		goto out;
	}
	ret = rst_state_check(state, len, why, sizeof(why));
	/* -EOPNOTSUPP: sound, but this host lacks what it needs (an AppArmor profile) */
	if (ret == -EPROTO || ret == -EOPNOTSUPP) {
		pr_err("the image of pid %d in %s cannot be restored: %s", (int)pid, dir, why);
		goto out;
	}
	if (ret) {
		pr_err("the process state of pid %d in %s is corrupt: %s; checkpoint the process "
		       "again",
		       (int)pid, dir, why);
		ret = -EBADMSG;
		goto out;
	}
	o.pid = pid;
	ret = rst_image_clock_offsets(state, len, &o.monotonic_offset_ns, &o.boottime_offset_ns);
	if (ret) {
		pr_err("the process state of pid %d in %s is corrupt (%zu bytes that do not decode "
		       "as a haul image); checkpoint the process again",
		       (int)pid, path, len);
		goto out;
	}
	/* the parents of an image of pre-dump rounds, every page checked too (imgchain.c) */
	ret = rst_chain_open(path, pid, &chain);
	if (!ret)
		ret = rst_target_new(&o, &t);
	if (!ret)
		ret = rst_target_layout(t, pstore_layout(p));
	if (!ret)
		ret = rst_chain_walk(chain, p, pstore_layout(p), feed_page, t);
	if (!ret)
		ret = rst_target_resume(t, state, len, here, why, sizeof(why));
	if (ret) {
		rst_target_free(t);
		goto out;
	}
	*out = t;
out:
	if (ret)
		rst_tcp_defer_all(NULL);
	rst_chain_free(chain);
	pstore_close(store);
	return ret;
}

/* Our /proc/sys/kernel/random/boot_id as 16 bytes. */
static int read_boot_id(uint8_t id[16])
{
	char text[64];
	unsigned b[16];
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
	int ret = -EIO;

	if (!f)
		return -errno;
	if (fgets(text, sizeof(text), f) &&
	    sscanf(text, "%2x%2x%2x%2x-%2x%2x-%2x%2x-%2x%2x-%2x%2x%2x%2x%2x%2x", &b[0], &b[1],
		   &b[2], &b[3], &b[4], &b[5], &b[6], &b[7], &b[8], &b[9], &b[10], &b[11], &b[12],
		   &b[13], &b[14], &b[15]) == 16) {
		for (int i = 0; i < 16; i++)
			id[i] = (uint8_t)b[i];
		ret = 0;
	}
	fclose(f);
	return ret;
}

void rst_session_clock_offsets(const struct ps_session_info *info, int64_t *mono, int64_t *boot)
{
	struct timespec m, b;
	uint8_t ours[16];

	*mono = *boot = 0;
	if (info->has_boot_id && !read_boot_id(ours) && !memcmp(ours, info->boot_id, 16)) {
		/* One host, one clock: the process's own offsets are exact. */
		*mono = info->timens_monotonic_ns;
		*boot = info->timens_boottime_ns;
		return;
	}
	if (!info->has_clocks)
		return; /* an older client: our clocks, as before */
	clock_gettime(CLOCK_MONOTONIC, &m);
	clock_gettime(CLOCK_BOOTTIME, &b);
	*mono = info->clock_monotonic_ns - (m.tv_sec * 1000000000LL + m.tv_nsec);
	*boot = info->clock_boottime_ns - (b.tv_sec * 1000000000LL + b.tv_nsec);
}
