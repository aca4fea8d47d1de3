/*
 * restore_int.h - private to src/restore: the image format version and the
 * helpers dump.c, target.c, sink.c and the image commands share.
 */
#ifndef HAUL_RESTORE_INT_H
#define HAUL_RESTORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
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

/* The layout carried by a ProcessState, as a haul_layout (release it). */
int rst_state_layout(const Haul__Img__ProcessState *ps, struct haul_layout *out);

/*
 * fd_lock.c: the file locks and leases of an OFD, from its fdinfo text.
 * rst_lock_check: 0, or -EOPNOTSUPP with @why naming fd @fd and @path when
 * a lock cannot be carried.  rst_lock_dump fills @o->locks (free them with
 * rst_lock_free).  rst_lock_call: the syscall that takes @l again on
 * remote fd @fd; when buf_arg >= 0, args[buf_arg] must point at a copy of
 * buf[0..buflen) in the process.
 */
struct rst_lock_call {
	long nr;
	uint64_t args[6];
	int buf_arg;
	uint8_t buf[32];
	size_t buflen;
};
int rst_lock_check(int fd, const char *path, const char *fdinfo, char *why, size_t whylen);
int rst_lock_dump(const char *fdinfo, Haul__Img__Fd *o);
void rst_lock_free(Haul__Img__Fd *o);
int rst_lock_call(const Haul__Img__FileLock *l, int fd, struct rst_lock_call *c);
const char *rst_lock_name(const Haul__Img__FileLock *l);

/*
 * fd_ofd.c: give each fd of @fds (all of @pid, dumped) the file_id of its
 * open file description: fds sharing one get the id of the first.
 */
int rst_ofd_assign(pid_t pid, Haul__Img__Fd *fds, size_t n);

/*
 * fd_ghost.c: deleted-but-open regular files, carried by content.
 * rst_ghost_bytes: the bytes the image would carry for @st (its data,
 * holes excluded, as far as st_blocks tells).  rst_ghost_dump reads the
 * data extents, owner and times of the file open as @fd in @pid into @o.
 * rst_ghost_create makes a new file like it under a free name near
 * @o->path, returned in @path: content, holes, size, mode, owner, times;
 * the caller opens it for every fd and then unlinks it.
 */
uint64_t rst_ghost_bytes(const struct stat *st);
int rst_ghost_dump(pid_t pid, int fd, Haul__Img__Fd *o);
int rst_ghost_create(const Haul__Img__Fd *o, char *path, size_t plen);

#endif
