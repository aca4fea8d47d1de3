/*
 * image.c - checkpoint to and restore from an images directory (page store).
 *
 * Checkpoint: seize the process (one ptrace stop is the whole freeze for a
 * single thread), dump its state, then copy its pages into the page store:
 * only pages that exist (pagemap present or swapped), and for private file
 * mappings only the pages the process changed (pagemap bit 61 clear: an
 * anonymous copy-on-write page; the others are the file's and come back
 * with the mapping).  All-zero pages become holes.  The state and layout go
 * into the same commit, which the page store makes durable (fsync, rename)
 * before we kill the source: without --leave-running, the process dies
 * only once its image is safely on disk, and never runs after the dump.
 *
 * Restore: one rst_target fed from the committed image: layout, every
 * stored page, state; clocks continue from the dump (time namespace).
 */
#define LOG_PREFIX "image: "
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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
#include "common/vma.h"
#include "restore/restore.h"
#include "restore/restore_int.h"

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
	bool file_private = (v->flags & HAUL_VMA_FILE) && !(v->flags & HAUL_VMA_SHMEM);

	for (uint64_t a = v->start; a < v->end;) {
		uint64_t n = (v->end - a) >> HAUL_PAGE_SHIFT, i = 0;
		ssize_t got;

		if (n > CKPT_CHUNK_PAGES)
			n = CKPT_CHUNK_PAGES;
		got = pread(pagemap, pm, n * 8, (a >> HAUL_PAGE_SHIFT) * 8);
		if (got != (ssize_t)(n * 8))
			return got < 0 ? -errno : -EIO;
		while (i < n) {
			uint64_t j;
			bool want;

#define WANT(e) (((e) & (PM_PRESENT | PM_SWAPPED)) && !(file_private && ((e)&PM_FILE)))
			want = WANT(pm[i]);
			for (j = i + 1; j < n && WANT(pm[j]) == want; j++)
				;
#undef WANT
			if (want) {
				struct iovec l = {buf, (j - i) * HAUL_PAGE_SIZE};
				struct iovec r = {(void *)(uintptr_t)(a + i * HAUL_PAGE_SIZE),
						  (j - i) * HAUL_PAGE_SIZE};
				int ret;

				if (process_vm_readv(pid, &l, 1, &r, 1, 0) != (ssize_t)l.iov_len) {
					ret = -errno;
					pr_err_r(ret,
						 "cannot read %#" PRIx64 "+%" PRIu64
						 " pages of pid %d",
						 (uint64_t)(uintptr_t)r.iov_base, j - i, (int)pid);
					return ret;
				}
				ret = put_pages(p, a + i * HAUL_PAGE_SIZE, buf, (uint32_t)(j - i),
						st);
				if (ret)
					return ret;
			}
			i = j;
		}
		a += n * HAUL_PAGE_SIZE;
	}
	return 0;
}

int rst_checkpoint_images(pid_t pid, const char *dir, bool leave_running, struct rst_ckpt_stats *st)
{
	struct rst_seized *sz = NULL;
	struct pstore *store = NULL;
	struct pstore_proc *p;
	struct haul_layout l = {0};
	uint8_t *blob = NULL, *buf = NULL;
	uint64_t *pm = NULL, t0 = now_ns();
	char why[512], path[64];
	size_t len;
	int ret, pagemap = -1;
	Haul__Img__ProcessState *ps = NULL;

	memset(st, 0, sizeof(*st));
	ret = rst_dump_precheck(pid, why, sizeof(why));
	if (ret) {
		pr_err("cannot checkpoint pid %d: %s", (int)pid, why);
		return ret;
	}
	ret = rst_seize(pid, &sz);
	if (ret)
		return ret;
	st->frozen_ns = now_ns();
	ret = rst_dump_state(sz, &blob, &len);
	if (ret)
		goto out;
	ps = haul__img__process_state__unpack(NULL, len, blob);
	if (!ps) {
		ret = -EBADMSG;
		goto out;
	}
	ret = rst_state_layout(ps, &l);
	if (ret)
		goto out;
	ret = pstore_open(dir, &store);
	if (ret) {
		pr_err_r(ret, "cannot open images directory %s", dir);
		goto out;
	}
	/* Images are named by the PID the process knows itself by. */
	ret = pstore_proc_get(store, ps->pid, true, &p);
	if (!ret)
		ret = pstore_set_comm(p, ps->comm);
	if (!ret)
		ret = pstore_set_layout(p, &l);
	if (!ret)
		ret = pstore_set_state(p, blob, len);
	if (ret)
		goto out;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	pagemap = open(path, O_RDONLY | O_CLOEXEC);
	buf = malloc(CKPT_CHUNK_PAGES * HAUL_PAGE_SIZE);
	pm = malloc(CKPT_CHUNK_PAGES * 8);
	if (pagemap < 0 || !buf || !pm) {
		ret = pagemap < 0 ? -errno : -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < l.n && !ret; i++) {
		const struct haul_vma *v = &l.v[i];

		if (!haul_vma_is_memory(v) || !(v->prot & PROT_READ))
			continue;
		/* A shared file mapping's pages are the file's. */
		if ((v->flags & HAUL_VMA_FILE) && (v->flags & HAUL_VMA_SHARED) &&
		    !(v->flags & HAUL_VMA_SHMEM))
			continue;
		ret = dump_vma_pages(pid, pagemap, v, p, buf, pm, st);
	}
	if (ret)
		goto out;
	ret = pstore_commit(p, pstore_round(p) + 1);
	if (ret) {
		pr_err_r(ret, "cannot commit the image of pid %d to %s", (int)pid, dir);
		goto out;
	}
	if (!leave_running) {
		/* Durable on disk: the source may go, and must not run again. */
		rst_kill_seized(sz);
		sz = NULL;
	}
	st->total_ns = now_ns() - t0;
	st->frozen_ns = now_ns() - st->frozen_ns;
out:
	if (ret && store)
		pstore_abort(p);
	if (pagemap >= 0)
		close(pagemap);
	free(buf);
	free(pm);
	pstore_close(store);
	haul_layout_release(&l);
	if (ps)
		haul__img__process_state__free_unpacked(ps, NULL);
	free(blob);
	rst_release(sz);
	return ret;
}

static int feed_page(void *arg, uint64_t addr, const void *data, uint32_t npages)
{
	return rst_target_pages(arg, addr, data, npages);
}

int rst_restore_images(const char *dir, pid_t pid, const struct rst_target_opts *base,
		       struct rst_target **out, pid_t *here)
{
	struct rst_target_opts o = *base;
	struct pstore *store = NULL;
	struct pstore_proc *p;
	struct rst_target *t = NULL;
	const void *state;
	char why[512] = "";
	size_t len;
	int ret;

	ret = pstore_open(dir, &store);
	if (ret) {
		pr_err_r(ret, "cannot open images directory %s", dir);
		return ret;
	}
	if (!pid) {
		int32_t pids[2];
		size_t n = pstore_list(store, pids, 2);

		if (n != 1) {
			pr_err("images directory %s holds %zu processes; say which with --pid", dir,
			       n);
			ret = n ? -EINVAL : -ENOENT;
			goto out;
		}
		pid = pids[0];
	}
	ret = pstore_proc_get(store, pid, false, &p);
	if (ret) {
		pr_err("images directory %s has no image of pid %d", dir, (int)pid);
		goto out;
	}
	state = pstore_state(p, &len);
	if (!state) {
		pr_err("the image of pid %d in %s has no process state", (int)pid, dir);
		ret = -ENOENT;
		goto out;
	}
	o.pid = pid;
	ret = rst_image_clock_offsets(state, len, &o.monotonic_offset_ns, &o.boottime_offset_ns);
	if (ret)
		goto out;
	ret = rst_target_new(&o, &t);
	if (!ret)
		ret = rst_target_layout(t, pstore_layout(p));
	if (!ret)
		ret = pstore_walk(p, feed_page, t);
	if (!ret)
		ret = rst_target_resume(t, state, len, here, why, sizeof(why));
	if (ret) {
		rst_target_free(t);
		goto out;
	}
	*out = t;
out:
	pstore_close(store);
	return ret;
}
