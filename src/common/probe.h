/*
 * probe.h - what the running kernel offers haul, probed once and cached.
 *
 * Every probe runs the real operation on a scratch object of our own (a page
 * of our memory, a private userfaultfd, an io_uring of one entry) rather than
 * trusting version numbers or config files: distro kernels backport and
 * compile out features independently.  Results are cached on first use;
 * all functions are thread-safe (one pthread_once per probe).
 *
 * Predicates return bool; probe_*_err() give the -errno that explains a
 * false answer (-EOPNOTSUPP when the kernel lacks the feature, -EPERM when we
 * may not use it, ...).
 */
#ifndef HAUL_COMMON_PROBE_H
#define HAUL_COMMON_PROBE_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/userfaultfd.h>

/*
 * Kernel uapi that the build machine's headers (Linux 6.1) may lack, from
 * include/uapi/linux/fs.h (PAGEMAP_SCAN, 6.7) and userfaultfd.h.  Guarded so
 * that newer headers win.
 */
#ifndef PAGEMAP_SCAN
#define PAGE_IS_WPALLOWED  (1 << 0)
#define PAGE_IS_WRITTEN	   (1 << 1)
#define PAGE_IS_FILE	   (1 << 2)
#define PAGE_IS_PRESENT	   (1 << 3)
#define PAGE_IS_SWAPPED	   (1 << 4)
#define PAGE_IS_PFNZERO	   (1 << 5)
#define PAGE_IS_HUGE	   (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)

struct page_region {
	__u64 start;
	__u64 end;
	__u64 categories;
};

#define PM_SCAN_WP_MATCHING   (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)

struct pm_scan_arg {
	__u64 size;
	__u64 flags;
	__u64 start;
	__u64 end;
	__u64 walk_end;
	__u64 vec;
	__u64 vec_len;
	__u64 max_pages;
	__u64 category_inverted;
	__u64 category_mask;
	__u64 category_anyof_mask;
	__u64 return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif

/* pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst) */
#define PM_ENTRY_SOFT_DIRTY (1ULL << 55)
#define PM_ENTRY_FILE	    (1ULL << 61) /* a page of a file, or shared anonymous */
#define PM_ENTRY_SWAPPED    (1ULL << 62)
#define PM_ENTRY_PRESENT    (1ULL << 63)

/* ioctl(PAGEMAP_SCAN) on /proc/PID/pagemap (Linux >= 6.7). */
bool probe_pagemap_scan(void);

/*
 * The UFFD_FEATURE_* bits a fresh userfaultfd offers (UFFDIO_API with
 * features = 0).  Returns 0, or -errno when no userfaultfd can be created
 * (-ENOSYS not compiled in, -EPERM vm.unprivileged_userfaultfd and no
 * privilege).
 */
int probe_uffd_features(uint64_t *features);

/*
 * Whether the uffd-wp tracker can run: userfaultfd with WP_ASYNC and
 * WP_UNPOPULATED, PAGEMAP_SCAN, pidfd_getfd.  On false, *@why (if given)
 * names the first missing piece.
 */
bool probe_uffd_wp_async(const char **why);

/* pidfd_open + pidfd_getfd (Linux >= 5.6). */
bool probe_pidfd_getfd(void);

/*
 * Soft-dirty bits that really track writes (CONFIG_MEM_SOFT_DIRTY): a page
 * of ours is cleared with clear_refs "4", must read clean in pagemap bit 55,
 * is written, and must then read dirty.  Note: the probe clears the
 * soft-dirty bits of the calling process.
 */
bool probe_soft_dirty(void);

enum probe_cg_layout {
	PROBE_CG_NONE = 0, /* no cgroup filesystem mounted */
	PROBE_CG_V1,	   /* only v1 hierarchies */
	PROBE_CG_V2,	   /* only the unified hierarchy */
	PROBE_CG_HYBRID,   /* v1 controllers plus cgroup2 (e.g. /sys/fs/cgroup/unified) */
};

struct probe_cgroup {
	enum probe_cg_layout layout;
	char v2_mount[256];   /* cgroup2 mount point, "" if none */
	bool v2_freeze;	      /* cgroup.freeze exists in non-root cgroup2 groups */
	char v1_freezer[256]; /* v1 freezer hierarchy mount point, "" if none */
};

/* The cgroup layout of this machine (from /proc/self/mountinfo). Never NULL. */
const struct probe_cgroup *probe_cgroup(void);
const char *probe_cg_layout_name(enum probe_cg_layout l);

/* io_uring_setup() works here; probe_io_uring_err() says why not. */
bool probe_io_uring(void);
int probe_io_uring_err(void);

/*
 * clone3() with set_tid is accepted (kernel >= 5.5 and CAP_CHECKPOINT_RESTORE
 * or CAP_SYS_ADMIN).  Tested without creating a process: asking for our own
 * PID must fail with EEXIST.
 */
bool probe_clone3_set_tid(void);
int probe_clone3_set_tid_err(void);

/* A child can unshare(CLONE_NEWTIME) (CONFIG_TIME_NS, kernel >= 5.6). */
bool probe_time_ns(void);
int probe_time_ns_err(void);

#endif
