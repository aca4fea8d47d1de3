/*
 * trk_proto.h - the command protocol of tests/progs/trk_target.c, shared by
 * the tests that drive it.  Host-endian: both ends run on one machine.
 */
#ifndef HAUL_TESTS_TRK_PROTO_H
#define HAUL_TESTS_TRK_PROTO_H

#include <stdint.h>

enum tt_kind {
	TT_ANON = 0,	 /* private anonymous */
	TT_THP,		 /* private anonymous, 2 MiB aligned, MADV_HUGEPAGE */
	TT_HEAP,	 /* [heap], grown with sbrk */
	TT_STACK,	 /* a buffer in [stack] */
	TT_SHARED,	 /* MAP_SHARED | MAP_ANONYMOUS */
	TT_FILE_PRIVATE, /* MAP_PRIVATE of a temp file */
	TT_FILE_SHARED,	 /* MAP_SHARED of a temp file */
	TT_NKINDS,
	TT_NEW = 100, /* mapped by TT_MMAP */
};

#define TT_ANON_PAGES	256
#define TT_THP_PAGES	1024
#define TT_HEAP_PAGES	256
#define TT_STACK_PAGES	64
#define TT_SHARED_PAGES 128
#define TT_FILE_PAGES	128

enum tt_op {
	TT_INFO = 1,   /* -> pid, then (kind, addr, npages) per region */
	TT_WRITE,      /* values: page addresses to write; status: pages not found */
	TT_VERIFY,     /* -> pages whose contents differ from the shadow */
	TT_MREMAP,     /* arg: region index; -> its new address */
	TT_MMAP,       /* arg: pages; -> address of a new region, even pages touched */
	TT_REMAP_SAME, /* arg: region index: munmap + mmap again at the same address */
	TT_ZAP,	       /* values: pages to MADV_DONTNEED */
	TT_FORK,       /* values: pages a forked child writes in its copy */
	TT_EXEC,       /* exec /proc/self/exe after the reply */
	TT_EXIT,       /* exit after the reply */
	TT_THREADS,    /* arg: start that many threads writing random pages nonstop */
	TT_QUIESCE,    /* stop and join them; -> pages they wrote */
	TT_CHURN,      /* start a thread that maps, moves, replaces, zaps and writes nonstop */
	TT_SPARSE,     /* arg: pages (MAP_NORESERVE); one page in 512 touched; -> address */
	TT_PATCHY, /* arg: n; 2n page tables (2 MiB aligned), the first n 15/16 touched; -> address */
	TT_REMERGE, /* arg: a TT_RM_* step (trk_target.c remerge()); -> address */
};

/* The steps of TT_REMERGE: two halves of one 32-page mapping moved apart, then together. */
enum tt_remerge {
	TT_RM_SPLIT = 0,    /* map 32 pages, move the upper half away; its place stays a hole */
	TT_RM_SPLIT_FILLED, /* the same, and a new 16-page mapping fills the hole */
	TT_RM_MERGE,	    /* move the upper half back (unmapping the filler), write page 3 */
};

struct tt_req {
	uint32_t op;
	uint32_t n;
	uint64_t arg;
};

struct tt_reply {
	int64_t status;
	uint64_t n;
};

#endif
