/*
 * softdirty.c - dirty tracking with soft-dirty bits (CONFIG_MEM_SOFT_DIRTY).
 *
 * Writing "4" to /proc/PID/clear_refs clears every soft-dirty bit and
 * write-protects the PTEs; the next write sets the bit again, and pagemap
 * shows it as bit 55.  Reading pagemap and clearing are two operations, and
 * a page written between them would lose its bit unseen, so all threads are
 * held still with ptrace (freeze.c) from the read until the clear is done;
 * the stop lasts one pagemap read of the address space plus the clear
 * (a few ms per GiB).  New VMAs carry VM_SOFTDIRTY, so all of their pages
 * read dirty, and mremap marks moved PTEs soft-dirty: nothing moved is
 * missed.  Holes inside a VM_SOFTDIRTY VMA also read bit 55, so only
 * populated (present or swapped) pages count.
 */
#define LOG_PREFIX "trk: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/log.h"
#include "common/probe.h"
#include "tracker/trk_int.h"

struct sd_state {
	int clear_fd;
	uint64_t *pm;
	struct trk_frozen frozen;
};

static int sd_open(struct trk *t)
{
	struct sd_state *st = calloc(1, sizeof(*st));
	char path[64];
	int ret;

	if (!st)
		return -ENOMEM;
	st->pm = malloc(TRK_PM_CHUNK * sizeof(*st->pm));
	snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)t->pid);
	st->clear_fd = open(path, O_WRONLY | O_CLOEXEC);
	if (!st->pm || st->clear_fd < 0) {
		ret = !st->pm ? -ENOMEM : errno == ENOENT ? -ESRCH : -errno;
		pr_err_r(ret, "cannot open %s", path);
		if (st->clear_fd >= 0)
			close(st->clear_fd);
		free(st->pm);
		free(st);
		return ret;
	}
	t->priv = st;
	return 0;
}

static void sd_close(struct trk *t)
{
	struct sd_state *st = t->priv;

	if (!st)
		return;
	close(st->clear_fd);
	free(st->pm);
	free(st->frozen.tids);
	free(st);
	t->priv = NULL;
}

static int sd_scan(struct trk *t, const struct haul_layout *cur, const struct trk_rl *fresh,
		   struct trk_scan *out)
{
	struct sd_state *st = t->priv;
	double t0 = trk_now_ms(), stopped;
	/* round 1 sends every populated page; later rounds the soft-dirty ones */
	uint64_t wmask = t->seq == 0 ? ~0ULL : PM_ENTRY_SOFT_DIRTY;
	int ret;

	(void)fresh; /* new VMAs read soft-dirty by themselves */
	ret = t->frozen ? 0 : trk_freeze(t->pid, &st->frozen);
	if (ret)
		return ret;
	for (size_t i = 0; i < cur->n && !ret; i++)
		if (haul_vma_is_memory(&cur->v[i]))
			ret = trk_pagemap_populated(t->pagemap_fd, st->pm, &cur->v[i],
						    &out->present, &out->written, wmask);
	if (!ret && pwrite(st->clear_fd, "4", 1, 0) != 1) {
		ret = -errno;
		pr_err_r(ret, "cannot clear the soft-dirty bits of pid %d", (int)t->pid);
	}
	if (!t->frozen) {
		trk_thaw(&st->frozen);
		stopped = trk_now_ms() - t0;
		if (stopped > t->stop_ms)
			t->stop_ms = stopped;
	}
	return ret;
}

const struct trk_ops trk_sd_ops = {
	.id = TRK_SOFT_DIRTY,
	.open = sd_open,
	.scan = sd_scan,
	.close = sd_close,
};
