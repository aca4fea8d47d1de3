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
#define RST_IMAGE_VERSION 1

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

/* The layout carried by a ProcessState, as a haul_layout (release it). */
int rst_state_layout(const Haul__Img__ProcessState *ps, struct haul_layout *out);

#endif
