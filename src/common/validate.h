/*
 * validate.h - field-by-field checks of every message and image record that
 * comes from outside: a peer of the page server (after authentication too:
 * the key is shared, a key holder may still be buggy or hostile) and the
 * files of an --images directory.
 *
 * One function per message or record kind.  Each checks every field its
 * consumers rely on (strings present and bounded, ranges page-aligned,
 * ordered and inside the user address space, counts, enums, fd and signal
 * numbers), so that the code after it may use them without further checks.
 * On failure it returns -EBADMSG and writes into @why (capacity @n) the
 * field and what is wrong with it ("vmas[3].path: missing for a file
 * mapping"); it logs nothing: the caller logs once, naming the peer or file.
 *
 * Pure computation, no globals: safe from any thread, and cheap enough to
 * run on every frame.  The rules are listed in DESIGN.md "Validation".
 */
#ifndef HAUL_COMMON_VALIDATE_H
#define HAUL_COMMON_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/vma.h"
#include "image.pb-c.h"
#include "wire.pb-c.h"

/* End of the x86_64 user address space with 4-level page tables (TASK_SIZE_MAX). */
#define VAL_TASK_SIZE 0x7ffffffff000ULL
/* The legacy [vsyscall] page, the one VMA that lies above it. */
#define VAL_VSYSCALL_START 0xffffffffff600000ULL
/* Most VMAs in a layout: the kernel's default vm.max_map_count. */
#define VAL_MAX_VMAS 65530
/* Most threads, fds, and strings' bytes of one process state. */
#define VAL_MAX_THREADS 32768
#define VAL_MAX_FDS	(1u << 20) /* fs.nr_open's ceiling */
#define VAL_MAX_STR	4096	   /* PATH_MAX, with its NUL */
/* Cgroup lines of a process or thread (one per hierarchy). */
#define VAL_MAX_CGROUPS 64
/* Largest XSAVE area (AMX included, ~11 KiB today) with room to grow. */
#define VAL_MAX_XSTATE (64u << 10)
/* auxv: (type, value) pairs of 8 bytes each; the kernel keeps at most ~50. */
#define VAL_MAX_AUXV 2048
/* Supplementary groups: the restorer passes them through its 64 KiB scratch area. */
#define VAL_MAX_GROUPS 16384
/* Epoll targets of one instance, and the bytes of one fd's buffered data or content. */
#define VAL_MAX_EPOLL 65536
/*
 * AppArmor profiles of one process (SessionOpen.apparmor_profiles, each
 * name once): 16 names of at most 1023 bytes keep the open within the
 * client's 64 KiB message room.
 */
#define VAL_MAX_AA_PROFILES 16
#define VAL_MAX_AA_NAME	    1024

/* A layout (wire Layout, an image's VMAs, ProcessState.vmas). */
int val_layout(const struct haul_layout *l, char *why, size_t n);

/* SessionOpen: ids, pid, kind, stream count, comm, boot_id, cgroups, AppArmor profiles. */
int val_session_open(const Haul__Wire__SessionOpen *m, char *why, size_t n);
/*
 * Whether @name is a profile name one changeprofile gives back: non-empty,
 * shorter than VAL_MAX_AA_NAME, no newline, not "unconfined", no stack
 * ("a//&b") and no policy namespace (":ns:a").
 */
bool val_aa_profile_ok(const char *name);
/* SessionJoin against the session's stream count. */
int val_session_join(const Haul__Wire__SessionJoin *m, uint32_t nstreams, char *why, size_t n);
/* PAGES / PAGE_REPLY: every range inside the user address space, counts bounded. */
int val_pages(const Haul__Wire__Pages *m, char *why, size_t n);
/* PageReq: aligned, 1..WIRE_MAX_REQ_PAGES pages, inside the user address space. */
int val_page_req(const Haul__Wire__PageReq *m, char *why, size_t n);
/* State.stale: at most @max_ranges (addr, npages) pairs, aligned, in the user address space. */
int val_stale(const Haul__Wire__State *m, size_t max_ranges, char *why, size_t n);

/* A whole process state (image.proto ProcessState): every field resume uses. */
int val_process_state(const Haul__Img__ProcessState *ps, char *why, size_t n);
/*
 * Unpack @len bytes at @blob as a ProcessState and validate it: 0 or
 * -EBADMSG (with @why).  Nothing is kept.
 */
int val_state_blob(const void *blob, size_t len, char *why, size_t n);

/*
 * An image index (pstore's index file of one process): pid @pid expected,
 * @file_slots page slots present in its pages.img.
 */
int val_image_index(const Haul__Wire__ImageIndex *m, int32_t pid, uint64_t file_slots, char *why,
		    size_t n);

#endif
