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
 * either side, or further when every page between is present) means the
 * process walked through it, so that stream's next window doubles (up to
 * LAZY_FAULT_AROUND_PAGES) and extends the way it walks; any other fault
 * starts a new stream with a window of the faulting page alone.
 *
 * The background push fetches from just past the last fault window, so it
 * often fills the pages right ahead of a walk before the walk gets there;
 * the walk's next fault then lands past them, further than one window
 * away.  The pages between are present, so that fault still continues the
 * walk (the caller counts them, up to LAZY_WIN_GAP_PAGES).
 *
 * A new stream replaces the one used least recently, except that a thread
 * already holding half the streams replaces its own: a thread writing at
 * random cannot push out the walk of another (streams are tagged with the
 * faulting thread when the kernel reports it, UFFD_FEATURE_THREAD_ID).
 * Several threads reading sequentially each keep a stream; random faults
 * between them do not reset theirs.
 *
 * Pure bookkeeping, no locks: the fault thread owns each mm's state.  The
 * caller clips the window to the region and to the pages still missing.
 */
#include <stdlib.h>

#include "restore/lazy_int.h"

/* Whether @f continues @s's window upwards (1), downwards (-1), or not (0). */
static int stream_next(const struct lz_win_stream *s, const struct lz_win_fault *f)
{
	uint64_t p = f->page;

	if (!s->pages)
		return 0;
	/* pages [hi, p) lie between: within one window's width, or all present */
	if (p >= s->hi && (p - s->hi < s->pages || p - s->hi <= f->below))
		return 1;
	/* pages (p, lo) lie between */
	if (p < s->lo && (s->lo - p <= s->pages || s->lo - p - 1 <= f->above))
		return -1;
	return 0;
}

/* The stream a new walk takes: the least recently used, of @tid's own if it holds half. */
static struct lz_win_stream *stream_victim(struct lz_win *w, uint32_t tid)
{
	struct lz_win_stream *s = NULL;
	unsigned own = 0;

	for (unsigned k = 0; tid && k < LAZY_WIN_STREAMS; k++)
		own += w->s[k].pages && w->s[k].tid == tid;
	for (unsigned k = 0; k < LAZY_WIN_STREAMS; k++) {
		if (own * 2 >= LAZY_WIN_STREAMS && w->s[k].tid != tid)
			continue;
		if (!s || w->s[k].used < s->used)
			s = &w->s[k];
	}
	return s;
}

void rst_lz_window_pick(struct lz_win *w, const struct lz_win_fault *f, uint64_t *lo,
			uint32_t *npages)
{
	struct lz_win_stream *s = NULL;
	uint64_t p = f->page;
	uint32_t pages = 1;
	int dir = 0;

	w->tick++;
	for (unsigned k = 0; k < LAZY_WIN_STREAMS && !dir; k++) {
		dir = stream_next(&w->s[k], f);
		if (dir)
			s = &w->s[k];
	}
	if (s)
		pages = s->pages * 2 > LAZY_FAULT_AROUND_PAGES ? LAZY_FAULT_AROUND_PAGES
							       : s->pages * 2;
	else
		s = stream_victim(w, f->tid);
	/* a walk downwards fetches below the fault, any other window from it upwards */
	s->lo = dir < 0 ? (p + 1 >= pages ? p + 1 - pages : 0) : p;
	s->hi = s->lo + pages;
	s->pages = pages;
	s->used = w->tick;
	s->tid = f->tid;
	*lo = s->lo;
	*npages = pages;
}
