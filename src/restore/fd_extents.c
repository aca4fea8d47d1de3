/*
 * fd_extents.c - the check of the data extents a FileObject carries.
 *
 * A deleted file (GhostFile) and a memfd (MemfdFile) both travel as their
 * data extents, (offset, length) pairs in file order, plus the bytes of
 * those extents one after the other.  The restorer writes each extent's
 * bytes at its offset, so before anything is made the pairs must be whole,
 * ordered, free of overflow, inside the file's size and inside the bytes
 * the image carries; the caller then checks what else its kind requires
 * (a memfd's extents name all of its bytes).
 */
#include <errno.h>
#include <stdio.h>

#include "restore/fd_int.h"

int rst_fd_check_extents(uint32_t id, const struct rst_extents *x, uint64_t *total, char *why,
			 size_t wl)
{
	uint64_t at = 0, data = 0;

	if (x->n % 2) {
		snprintf(why, wl, "file %u (%s).extents: %zu values, not (offset, length) pairs",
			 id, x->part, x->n);
		return -EBADMSG;
	}
	for (size_t k = 0; k < x->n; k += 2) {
		uint64_t off = x->v[k], len = x->v[k + 1];

		if (off < at || len > UINT64_MAX - off || len > x->datalen - data ||
		    off + len > x->size) {
			snprintf(why, wl,
				 "file %u (%s).extents[%zu]: %llu+%llu out of order or beyond %s",
				 id, x->part, k / 2, (unsigned long long)off,
				 (unsigned long long)len, x->beyond);
			return -EBADMSG;
		}
		at = off + len;
		data += len;
	}
	*total = data;
	return 0;
}
