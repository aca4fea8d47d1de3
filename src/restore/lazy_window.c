/*
 * lazy_window.c - the adaptive fault window: how many pages a fault fetches.
 *
 * A fetched page that the process never touches costs link time that the
 * next fault waits behind: at 1 Gbit/s a 64 KiB window is 0.5 ms on the
 * wire, a single page 33 us.  A uniform random writer touches nothing
 * around its faults, a sequential reader touches all of it.  The window
 * follows what the process showed, the way the kernel's readahead does:
 * each of the LAZY_WIN_STREAMS most recent windows is a stream; a fault
 * that lands just past a stream's window (within one window's width, on
 * either side) means the process walked through it, so that stream's next
 * window doubles (up to LAZY_FAULT_AROUND_PAGES) and extends the way it
 * walks; any other fault starts a new stream with a window of the faulting
 * page alone, replacing the stream used least recently.  Several threads
 * reading sequentially each keep a stream; random faults between them do
 * not reset theirs.
 *
 * Pure bookkeeping, no locks: the fault thread owns each mm's state.  The
 * caller clips the window to the region and to the pages still missing.
 */
#include <stdlib.h>

#include "restore/lazy_int.h"

/* Whether @p lies in the width of @s's window just past its end (1) or before its start (-1). */
static int stream_next(const struct lz_win_stream *s, uint64_t p)
{
	if (!s->pages)
		return 0;
	if (p >= s->hi && p - s->hi < s->pages)
		return 1;
	if (p < s->lo && s->lo - p <= s->pages)
		return -1;
	return 0;
}

void rst_lz_window_pick(struct lz_win *w, uint64_t p, uint64_t *lo, uint32_t *npages)
{
	struct lz_win_stream *s = NULL;
	uint32_t pages = 1;
	int dir = 0;

	w->tick++;
	for (unsigned k = 0; k < LAZY_WIN_STREAMS && !dir; k++) {
		dir = stream_next(&w->s[k], p);
		if (dir)
			s = &w->s[k];
	}
	if (s) {
		pages = s->pages * 2 > LAZY_FAULT_AROUND_PAGES ? LAZY_FAULT_AROUND_PAGES
							       : s->pages * 2;
	} else {
		/* a new stream, in place of the one used least recently */
		s = &w->s[0];
		for (unsigned k = 1; k < LAZY_WIN_STREAMS; k++)
			if (w->s[k].used < s->used)
				s = &w->s[k];
	}
	/* a walk downwards fetches below the fault, any other window from it upwards */
	s->lo = dir < 0 ? (p + 1 >= pages ? p + 1 - pages : 0) : p;
	s->hi = s->lo + pages;
	s->pages = pages;
	s->used = w->tick;
	*lo = s->lo;
	*npages = pages;
}
