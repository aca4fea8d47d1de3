/*
 * pstore_int.h - private to the page store (pstore.c: maps, slots, staging,
 * commit, reading; pstore_disk.c: the images directory format).  Nothing
 * outside src/common/pstore*.c includes it.
 */
#ifndef HAUL_COMMON_PSTORE_INT_H
#define HAUL_COMMON_PSTORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/pstore.h"
#include "common/vma.h"

#define PSTORE_ZERO UINT64_MAX

struct pmap {
	uint64_t *keys; /* page number + 1; 0 = empty */
	uint64_t *vals; /* slot, or PSTORE_ZERO */
	size_t cap;	/* power of two */
	size_t n;
};

struct u64vec {
	uint64_t *v;
	size_t n, cap;
};

struct pstore_proc {
	struct pstore *store;
	int32_t pid;
	char comm[32];
	uint64_t round;
	bool committed;		       /* an index exists (in memory or on disk) */
	struct pmap map;	       /* committed */
	struct pmap stage;	       /* staged */
	struct haul_layout layout;     /* committed */
	struct haul_layout new_layout; /* staged, when has_new_layout */
	bool has_new_layout;
	void *state;
	size_t state_len;
	void *new_state;
	size_t new_state_len;
	bool has_new_state;
	/* slots */
	uint64_t nslots;       /* high-water mark */
	struct u64vec free;    /* reusable now */
	struct u64vec dropped; /* staged slots overwritten by zero pages: free at commit/abort */
	uint8_t **chunks;      /* memory store */
	size_t nchunks;
	uint64_t *sums; /* directory store: XXH3-64 of each slot's 4 KiB, by slot */
	uint64_t sums_cap;
	int fd;	   /* pages.img, directory store; -1 in memory */
	int dirfd; /* DIR/<pid>, directory store */
	struct pstore_proc *next;
};

struct pstore {
	char *dir; /* NULL: memory */
	int dirfd;
	bool ro; /* opened with pstore_open_ro(): nothing may be written */
	struct pstore_proc *procs;
};

struct pstore_kv {
	uint64_t pg, val;
};

struct pstore_run {
	uint64_t pg, npages, slot;
};

int pstore_vec_push(struct u64vec *v, uint64_t x);
int pstore_pmap_init(struct pmap *m, size_t cap);
void pstore_pmap_free(struct pmap *m);
int pstore_pmap_set(struct pmap *m, uint64_t pg, uint64_t val, uint64_t *old);
/* The entries of @m sorted by page: *@out (free()). */
int pstore_pmap_sorted(const struct pmap *m, struct pstore_kv **out);
/* Coalesce sorted entries into runs: consecutive pages, all zero or consecutive slots. */
size_t pstore_make_runs(const struct pstore_kv *kv, size_t n, struct pstore_run *runs);

struct pstore_proc *pstore_proc_alloc(struct pstore *s, int32_t pid);
void pstore_proc_free(struct pstore_proc *p);
/* Open DIR/<pid>/ and its pages.img (read-only in a read-only store), creating them when @create. */
int pstore_proc_open_files(struct pstore_proc *p, bool create);

/* Write index.img of @p for map @m durably (pstore_disk.c). 0 or -errno, logged. */
int pstore_index_write(struct pstore_proc *p, const struct pmap *m, uint64_t round,
		       const struct haul_layout *layout, const void *state, size_t state_len);

#endif
