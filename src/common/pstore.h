/*
 * pstore.h - the page store: pages of processes indexed by (pid, virtual
 * address), in memory or in an images directory on disk.
 *
 * Writes are staged and become visible only at pstore_commit(): the latest
 * committed round wins, zero pages are kept as holes, an aborted (or
 * crashed) round leaves the previous commit intact.  With a directory, each
 * process has DIR/<pid>/pages.img (page slots) and DIR/<pid>/index.img
 * (layout, state and page map of the last commit), the latter replaced
 * atomically (write, fsync, rename, fsync dir) at commit; the format is
 * documented at the top of pstore_disk.c and in DESIGN.md.  Opening a
 * directory loads every committed process in it; every page slot on disk
 * carries an XXH3-64 that each read checks.
 *
 * Used by the page server (STORE sessions, page requests) and by
 * `haul checkpoint --images` / `haul restore --images`.  Not thread-safe:
 * one thread uses one store (and its procs).
 */
#ifndef HAUL_COMMON_PSTORE_H
#define HAUL_COMMON_PSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/vma.h"

struct pstore;
struct pstore_proc;

/*
 * Open a store.  @dir NULL: in memory.  Otherwise the directory is created
 * if missing and every DIR/<pid>/ with a valid index.img is loaded (its
 * uncommitted leftovers are discarded).  Returns 0 or -errno.
 */
int pstore_open(const char *dir, struct pstore **out);
/*
 * Open the images directory @dir to read it only (a restore): nothing in
 * it is created, deleted, truncated or written, and writing calls return
 * -EROFS.  Fails on the first process whose image is damaged (short file,
 * bad checksum, other format version), logging the file: -EBADMSG,
 * -EPROTONOSUPPORT (another format version), -ENOENT (a file missing) or
 * another -errno.
 */
int pstore_open_ro(const char *dir, struct pstore **out);
/* Close (aborting staged rounds; committed data stays on disk). NULL is a no-op. */
void pstore_close(struct pstore *s);

/*
 * The process @pid.  With @create a missing one is made (empty, round 0,
 * nothing committed); without, -ENOENT.  The proc belongs to the store.
 */
int pstore_proc_get(struct pstore *s, int32_t pid, bool create, struct pstore_proc **out);
/* Pids of committed processes, sorted; returns how many (may exceed @max). */
size_t pstore_list(struct pstore *s, int32_t *pids, size_t max);
/* Forget a process entirely (and delete its directory). 0 or -errno. */
int pstore_proc_remove(struct pstore *s, int32_t pid);

/* ---- writing: staged until pstore_commit() ----------------------------------- */

/* Set the name shown in logs and kept in the image. */
int pstore_set_comm(struct pstore_proc *p, const char *comm);
/*
 * Stage a new layout.  At commit, committed pages outside every VMA of it
 * are dropped.  Later pstore_put()s are checked against it.  0 or -ENOMEM.
 */
int pstore_set_layout(struct pstore_proc *p, const struct haul_layout *l);
/* Stage the process state blob (copied). 0 or -ENOMEM. */
int pstore_set_state(struct pstore_proc *p, const void *blob, size_t len);
/*
 * Stage @npages pages at @addr (page aligned) from @data, NULL meaning
 * zero pages.  A page staged twice keeps the last data.  Returns 0,
 * -EINVAL unaligned, -ERANGE when a page lies outside every VMA of the
 * current (staged or committed) layout, -ENOMEM / -EIO / -ENOSPC.
 */
int pstore_put(struct pstore_proc *p, uint64_t addr, const void *data, uint32_t npages);
/*
 * Stage @npages pages at @addr whose bytes the caller will write itself
 * (e.g. a socket receive straight into the store): dst[i] gets the address
 * of page i's staged 4 KiB cell.  The cells stay valid, and are not given
 * to anyone else, until the next pstore_commit() or pstore_abort() of @p;
 * what they hold then is what is committed.  Same checks as pstore_put();
 * -EOPNOTSUPP for a directory store (see pstore_direct_ok()).
 */
int pstore_put_direct(struct pstore_proc *p, uint64_t addr, uint32_t npages, uint8_t **dst);
/* Whether pstore_put_direct() works for @p (memory stores). */
bool pstore_direct_ok(const struct pstore_proc *p);

/*
 * Make everything staged visible as round @round (must be > the committed
 * round, or equal to re-commit state/layout only).  On disk: fsync
 * pages.img, write and fsync index.img.tmp, rename, fsync the directory.
 * On failure nothing staged is visible and the previous commit stands.
 */
int pstore_commit(struct pstore_proc *p, uint64_t round);
/* Drop everything staged. */
void pstore_abort(struct pstore_proc *p);

/* ---- reading: the last commit ----------------------------------------------- */

int32_t pstore_pid(const struct pstore_proc *p);
const char *pstore_comm(const struct pstore_proc *p);
/* The last committed round, 0 when nothing was ever committed. */
uint64_t pstore_round(const struct pstore_proc *p);
/* The committed layout (n == 0 when none was ever committed). */
const struct haul_layout *pstore_layout(const struct pstore_proc *p);
/* The committed state blob, or NULL / 0. Valid until the next commit. */
const void *pstore_state(const struct pstore_proc *p, size_t *len);
/* Committed pages (data and zero holes). */
uint64_t pstore_npages(const struct pstore_proc *p);

/*
 * Copy @npages committed pages at @addr into @buf.  Zero holes and pages
 * never stored read as zeros.  Returns how many of them were stored (data
 * or zero), or -EINVAL / -EIO / -EBADMSG (a slot on disk fails its checksum:
 * logged with the file and slot).
 */
int64_t pstore_read(struct pstore_proc *p, uint64_t addr, uint32_t npages, void *buf);

/*
 * Call @fn for every committed page run in address order: @data the pages,
 * or NULL for zero pages.  @data is valid during the call only.  Stops at
 * and returns the first non-zero return of @fn; else 0 or -errno.
 */
typedef int (*pstore_walk_fn)(void *arg, uint64_t addr, const void *data, uint32_t npages);
int pstore_walk(struct pstore_proc *p, pstore_walk_fn fn, void *arg);

/*
 * Read every committed page of @p once and check it against its slot's
 * checksum (directory stores; a memory store has nothing to check).  0, or
 * -EBADMSG / -EIO with the file and slot logged.
 */
int pstore_verify(struct pstore_proc *p);

#endif
