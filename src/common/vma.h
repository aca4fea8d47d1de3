/*
 * vma.h - the address-space layout of a process, as every module sees it.
 *
 * Parsed from /proc/PID/maps plus the VmFlags lines of /proc/PID/smaps.  The
 * tracker diffs two layouts each round, the dump records one, the wire carries
 * one (converted to the protobuf Vma message by the pageserver module), and the
 * restorer rebuilds one.
 */
#ifndef HAUL_COMMON_VMA_H
#define HAUL_COMMON_VMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* haul_vma.flags */
#define HAUL_VMA_SHARED	    (1u << 0)  /* MAP_SHARED ('s' in maps), else private */
#define HAUL_VMA_ANON	    (1u << 1)  /* no file behind it (heap, stack, anon) */
#define HAUL_VMA_FILE	    (1u << 2)  /* backed by path/dev/ino */
#define HAUL_VMA_HEAP	    (1u << 3)  /* [heap] */
#define HAUL_VMA_STACK	    (1u << 4)  /* [stack] */
#define HAUL_VMA_VDSO	    (1u << 5)  /* [vdso] */
#define HAUL_VMA_VVAR	    (1u << 6)  /* [vvar], [vvar_vclock] */
#define HAUL_VMA_VSYSCALL   (1u << 7)  /* [vsyscall] */
#define HAUL_VMA_GROWSDOWN  (1u << 8)  /* VmFlags gd */
#define HAUL_VMA_LOCKED	    (1u << 9)  /* VmFlags lo (mlock) */
#define HAUL_VMA_HUGEPAGE   (1u << 10) /* VmFlags hg (MADV_HUGEPAGE) */
#define HAUL_VMA_NOHUGE	    (1u << 11) /* VmFlags nh (MADV_NOHUGEPAGE) */
#define HAUL_VMA_DONTFORK   (1u << 12) /* VmFlags dc (MADV_DONTFORK) */
#define HAUL_VMA_DONTDUMP   (1u << 13) /* VmFlags dd */
#define HAUL_VMA_WIPEONFORK (1u << 14) /* VmFlags wf */
#define HAUL_VMA_DELETED    (1u << 15) /* file mapping whose file was unlinked */
#define HAUL_VMA_SHMEM	    (1u << 16) /* shared anon / memfd / SysV: "/dev/zero (deleted)" etc. */
#define HAUL_VMA_SPECIAL    (1u << 17) /* any other [name]: not migratable as memory */
#define HAUL_VMA_UFFD_WP    (1u << 18) /* VmFlags uw: registered with uffd-wp (by us) */
#define HAUL_VMA_RANDOM	    (1u << 19) /* VmFlags rr (MADV_RANDOM) */
#define HAUL_VMA_SEQ	    (1u << 20) /* VmFlags sr (MADV_SEQUENTIAL) */
#define HAUL_VMA_MAYSHARE   (1u << 21) /* VmFlags ms */
#define HAUL_VMA_MAYWRITE   (1u << 22) /* VmFlags mw: a shared file mapping's file is writable */
#define HAUL_VMA_NORESERVE  (1u << 23) /* VmFlags nr (MAP_NORESERVE) */
#define HAUL_VMA_MERGEABLE  (1u << 24) /* VmFlags mg (MADV_MERGEABLE, KSM) */
#define HAUL_VMA_LOCKFAULT  (1u << 25) /* VmFlags lf (mlock2 MLOCK_ONFAULT) */
#define HAUL_VMA_DROPPABLE  (1u << 26) /* VmFlags dp (MAP_DROPPABLE) */
#define HAUL_VMA_SEALED	    (1u << 27) /* VmFlags sl (mseal) */
#define HAUL_VMA_GUARD	    (1u << 28) /* VmFlags gu: may hold MADV_GUARD_INSTALL guard pages */

/* The VmFlags bits: what smaps adds to a maps line (layouts read from maps lack them). */
#define HAUL_VMA_VMFLAGS                                                                           \
	(HAUL_VMA_GROWSDOWN | HAUL_VMA_LOCKED | HAUL_VMA_HUGEPAGE | HAUL_VMA_NOHUGE |              \
	 HAUL_VMA_DONTFORK | HAUL_VMA_DONTDUMP | HAUL_VMA_WIPEONFORK | HAUL_VMA_UFFD_WP |          \
	 HAUL_VMA_RANDOM | HAUL_VMA_SEQ | HAUL_VMA_MAYSHARE | HAUL_VMA_MAYWRITE |                  \
	 HAUL_VMA_NORESERVE | HAUL_VMA_MERGEABLE | HAUL_VMA_LOCKFAULT | HAUL_VMA_DROPPABLE |       \
	 HAUL_VMA_SEALED | HAUL_VMA_GUARD)

#define HAUL_BUILD_ID_MAX 32 /* longer ELF build-ids are not recorded */

struct haul_vma {
	uint64_t start; /* page aligned, inclusive */
	uint64_t end;	/* page aligned, exclusive */
	uint64_t pgoff; /* file offset in bytes */
	uint64_t dev;	/* makedev(major, minor) of the file, 0 for anon */
	uint64_t ino;
	uint32_t prot;	/* PROT_READ | PROT_WRITE | PROT_EXEC */
	uint32_t flags; /* HAUL_VMA_* */
	char *path;	/* malloc'd; NULL for anonymous; "[heap]" etc. for specials */
	/*
	 * The first VmFlags mnemonic (or "pk" for a protection key) that haul
	 * cannot carry, "" when none: the dump refuses such a VMA by name.
	 * Only read from smaps; not compared, not on the wire.
	 */
	char uncarried[4];
	/*
	 * A SysV segment's shm_segsz (fstat of /proc/PID/map_files), 0 for
	 * anything else: the restorer makes the segment at its exact size
	 * from the first layout on.  Not compared.
	 */
	uint64_t shm_size;
	/*
	 * A private file mapping's file as the source saw it (vma_ident.c):
	 * its size and mtime (ns since the epoch), when file_known, and its
	 * ELF build-id where it has one (build_id_len 0: none); not known
	 * (not read, an older peer): not checked.  Not compared.
	 */
	uint64_t file_size;
	int64_t file_mtime;
	bool file_known;
	uint8_t build_id_len;
	uint8_t build_id[HAUL_BUILD_ID_MAX];
	/* without a build-id, at most HAUL_IDENT_HASH_MAX bytes: XXH3-64 of them */
	bool file_hashed;
	uint64_t file_hash;
};

struct haul_layout {
	struct haul_vma *v; /* sorted by start, non-overlapping */
	size_t n;
};

/*
 * Read the layout of @pid.  With @smaps, VmFlags are read too (slower: a few
 * ms for a large process).  Returns 0 or -errno (-ESRCH when the process is
 * gone).  The caller releases @out with haul_layout_release().
 */
int haul_layout_read(pid_t pid, bool smaps, struct haul_layout *out);
void haul_layout_release(struct haul_layout *l);

/* vma_ident.c: whether @v is a private file mapping, whose file the restorer checks. */
bool haul_vma_ident_wanted(const struct haul_vma *v);
/*
 * Record the file of every private file mapping of @l (size, mtime): from
 * @prev (may be NULL) where it holds the same VMA identified, else a stat
 * of /proc/PID/map_files.  One that cannot be read stays unknown.
 */
void haul_layout_identify(pid_t pid, struct haul_layout *l, const struct haul_layout *prev);
/*
 * Whether @st, the file the restorer opened for @v, is the file the source
 * mapped: 0, or -ESTALE with @why naming the file and what differs.  Where
 * only the mtime differs, the ELF build-ids decide: @readable (a path the
 * caller can open, such as /proc/STUB/fd/N; NULL: none) is read then.
 */
struct stat;
int haul_vma_ident_check(const struct haul_vma *v, const struct stat *st, const char *readable,
			 char *why, size_t len);
/* Set @v's build-id from an image or wire field (longer than HAUL_BUILD_ID_MAX: none). */
void haul_vma_set_build_id(struct haul_vma *v, bool has, const uint8_t *data, size_t len);
/* The XXH3-64 of the first @size bytes of the file open at @fd; 0 or -errno. */
int haul_file_hash(int fd, uint64_t size, uint64_t *out);
/* The ELF build-id of the file open at @fd into @out: its length, 0 when it has none. */
size_t haul_file_build_id(int fd, uint8_t out[HAUL_BUILD_ID_MAX]);

/* Add the VmFlags mnemonics of @s (an smaps "VmFlags:" value) to @v's flags and uncarried. */
void haul_vma_parse_vmflags(const char *s, struct haul_vma *v);
int haul_layout_copy(const struct haul_layout *src, struct haul_layout *dst);

/* The VMA that contains @addr, or NULL. Binary search. */
const struct haul_vma *haul_layout_find(const struct haul_layout *l, uint64_t addr);

/* Whether [addr, addr + npages pages) lies inside VMAs of @l (possibly several adjacent). */
bool haul_layout_covers(const struct haul_layout *l, uint64_t addr, uint64_t npages);

/* The first VMA that starts above @addr, or NULL. Binary search. */
const struct haul_vma *haul_layout_next(const struct haul_layout *l, uint64_t addr);

/* Whether a VMA holds memory haul migrates page by page (not vdso/vvar/vsyscall). */
bool haul_vma_is_memory(const struct haul_vma *v);

/* Whether two VMAs describe the same mapping (range, prot, flags, file). */
bool haul_vma_same(const struct haul_vma *a, const struct haul_vma *b);

/* Whether two layouts hold the same VMAs (haul_vma_same, one by one). */
bool haul_layout_same(const struct haul_layout *a, const struct haul_layout *b);

/*
 * What the VmFlags mnemonic @code (haul_vma.uncarried) stands for, in words
 * for a refusal ("hugetlbfs memory").  Never NULL.
 */
const char *haul_vmflag_what(const char *code);

/*
 * Walk the parts of shared VMA @v of @pid whose object holds data, in
 * address order: @fn(@arg, start, end) for each range [start, end) of @v
 * (start and end need not be page-aligned).  A nonzero return of @fn ends
 * the walk and is returned; else 0, or -errno from opening
 * /proc/PID/map_files (-ENOENT: @v is no longer mapped).  vma_data.c.
 */
typedef int (*haul_vma_data_fn)(void *arg, uint64_t start, uint64_t end);
int haul_vma_data_walk(pid_t pid, const struct haul_vma *v, haul_vma_data_fn fn, void *arg);

static inline uint64_t haul_vma_pages(const struct haul_vma *v)
{
	return (v->end - v->start) >> 12;
}

#endif
