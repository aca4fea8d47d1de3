/*
 * slice.c - walking a range in bounded slices, so that no single kernel call
 * holds the target's mmap_lock for long.
 *
 * PAGEMAP_SCAN takes mmap_lock (read) for its whole walk and drops it only
 * when its internal buffer of 512 regions fills: over a populated,
 * contiguously written range (one region) that is the whole call.  Write-
 * protecting 4 GiB in one call held it for 64-100 ms.  A reader alone stalls
 * no page fault (faults take the VMA's own lock), but every mmap, munmap,
 * mprotect, brk or thread creation of the target waits for it, and so does
 * every fault queued behind such a writer.  So each call is bounded twice:
 * by address (@slice bytes, ends aligned to 2 MiB so a THP is never split
 * at a slice boundary) and, by the caller, by pages found (max_pages), which
 * bounds the re-protect work of a dense slice.  The call says where it
 * stopped (walk_end); the next slice starts exactly there.
 *
 * Invariant (tests/unit/trk_slice.c): the slices tile [start, end) in order,
 * each address exactly once, whatever walk_end the kernel returns in
 * (pos, slice end]; a call that makes no progress ends the walk (the range
 * vanished under us), as the unsliced walk did.
 */
#include <errno.h>

#include "tracker/trk_int.h"

#define SLICE_ALIGN (2ULL << 20)

uint64_t trk_slice_end(uint64_t pos, uint64_t end, uint64_t slice)
{
	uint64_t e;

	if (!slice || end - pos <= slice)
		return end;
	e = (pos + slice) & ~(SLICE_ALIGN - 1);
	/* a slice smaller than the alignment, or pos just below a boundary: take the plain bound */
	if (e <= pos)
		e = pos + slice;
	return e < end ? e : end;
}

int trk_slice_walk(uint64_t start, uint64_t end, uint64_t slice, trk_slice_fn fn, void *arg)
{
	uint64_t pos = start;

	while (pos < end) {
		uint64_t se = trk_slice_end(pos, end, slice), walk_end = se;
		int ret = fn(arg, pos, se, &walk_end);

		if (ret)
			return ret;
		if (walk_end <= pos)
			break; /* no progress: the range vanished under us */
		/* the kernel stops early (max_pages, buffer full), never past the slice */
		pos = walk_end < se ? walk_end : se;
	}
	return 0;
}
