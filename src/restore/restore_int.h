/*
 * restore_int.h - private to src/restore: the image format version and the
 * helpers dump.c, target.c, sink.c and the image commands share.
 */
#ifndef HAUL_RESTORE_INT_H
#define HAUL_RESTORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/vma.h"
#include "image.pb-c.h"

/* ProcessState.version: bump when an older restorer would misapply an image. */
#define RST_IMAGE_VERSION 2

/* Largest content of a deleted-but-open file carried inside the state. */
#define RST_DELETED_FILE_MAX (64ULL << 20)

/* x86_64 user address-space end with 4-level page tables (TASK_SIZE_MAX). */
#define RST_TASK_SIZE 0x7ffffffff000ULL

/*
 * Check what can be checked from /proc without stopping @pid: threads,
 * tracer (unless it is @tracer), seccomp, children, posix timers, fds and
 * VMAs.  Returns 0 or -EOPNOTSUPP with the reason in @why.
 */
int rst_check_resources(pid_t pid, pid_t tracer, char *why, size_t whylen);

/*
 * prep.c: at the freeze, before any call is injected, note whether the
 * prepared VmFlags still hold (@p NULL: no-op).
 */
struct rst_dump_prep;
void rst_prep_freeze(struct rst_dump_prep *p);
/* The layout of frozen @pid with VmFlags: from maps + @p when they hold, else smaps. */
int rst_prep_layout(struct rst_dump_prep *p, pid_t pid, struct haul_layout *out);

/*
 * vmcheck.c: whether every VMA of @l can be carried exactly (VmFlags, shared
 * memory); 0 or -EOPNOTSUPP naming the VMA in @why.  rst_vma_precheck reads
 * /proc/@pid/smaps for it (before the process is touched).
 */
int rst_vma_refusal(const struct haul_layout *l, char *why, size_t whylen);
int rst_vma_precheck(pid_t pid, char *why, size_t whylen);

/* pagemap bit 58 (PM_GUARD_REGION, 6.14+): a guard page (MADV_GUARD_INSTALL), unreadable. */
static inline bool rst_pm_is_guard(uint64_t pm)
{
	return pm >> 58 & 1;
}

struct rst_guard_range {
	uint64_t start, end;
};
struct rst_guards {
	struct rst_guard_range *r; /* sorted, merged */
	size_t n, cap;
};
/*
 * The guard pages of @v (read from the open /proc/PID/pagemap @pagemap;
 * none unless VmFlags "gu"), replacing @g's ranges.  0 or -errno.
 */
int rst_vma_guards(int pagemap, const struct haul_vma *v, struct rst_guards *g);
void rst_guards_release(struct rst_guards *g);

/* The layout carried by a ProcessState, as a haul_layout (release it). */
int rst_state_layout(const Haul__Img__ProcessState *ps, struct haul_layout *out);

#endif
