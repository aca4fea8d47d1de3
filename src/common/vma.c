/*
 * vma.c - read a process's address-space layout from /proc/PID/maps.
 *
 * maps gives range, protection, private/shared, file offset, device, inode and
 * path; with @smaps we read /proc/PID/smaps instead and take the VmFlags line
 * of each VMA (growsdown, mlock, huge-page and fork advice), which maps does
 * not show.  Both files list VMAs sorted by address, so the layout comes out
 * sorted and non-overlapping without further work.
 *
 * A path ending in " (deleted)" names an unlinked file: the suffix is cut and
 * HAUL_VMA_DELETED set.  Shared anonymous memory appears as "/dev/zero
 * (deleted)", SysV segments as "/SYSV%08x (deleted)", memfds as
 * "/memfd:NAME (deleted)"; all three are shmem (HAUL_VMA_SHMEM).
 */
#define LOG_PREFIX "vma: "
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "common/log.h"
#include "common/vma.h"

static uint32_t special_flags(const char *path)
{
	if (!strcmp(path, "[heap]"))
		return HAUL_VMA_HEAP | HAUL_VMA_ANON;
	if (!strcmp(path, "[stack]"))
		return HAUL_VMA_STACK | HAUL_VMA_ANON;
	if (!strcmp(path, "[vdso]"))
		return HAUL_VMA_VDSO;
	if (!strncmp(path, "[vvar", 5))
		return HAUL_VMA_VVAR;
	if (!strcmp(path, "[vsyscall]"))
		return HAUL_VMA_VSYSCALL;
	if (!strncmp(path, "[anon_shmem:", 12))
		return HAUL_VMA_ANON | HAUL_VMA_SHMEM;
	if (!strncmp(path, "[anon:", 6))
		return HAUL_VMA_ANON;
	return HAUL_VMA_SPECIAL;
}

/*
 * Every mnemonic show_smap_vma_flags() can print on Linux 6.18 (x86_64), and
 * what haul does with it (DESIGN.md, "VmFlags").  A flag is carried (a
 * HAUL_VMA_* bit the restorer reproduces), derived (the kernel sets it again
 * from what is carried: prot, sharing, the reopened file), or uncarried: the
 * dump refuses the VMA naming it.  A mnemonic missing here (a newer kernel)
 * is uncarried too.
 */
static const struct {
	char code[3];
	uint32_t flag;	/* HAUL_VMA_* carried; 0: derived or uncarried */
	bool uncarried; /* the dump refuses it */
} vmflags[] = {
	{"rd", 0, false},		    /* prot */
	{"wr", 0, false},		    /* prot */
	{"ex", 0, false},		    /* prot */
	{"sh", 0, false},		    /* MAP_SHARED of a writable file (ms + mw) */
	{"mr", 0, false},		    /* from the file's open mode and mount */
	{"mw", HAUL_VMA_MAYWRITE, false},   /* shared file: reopened O_RDWR */
	{"me", 0, false},		    /* from the file's mount (noexec) */
	{"ms", HAUL_VMA_MAYSHARE, false},   /* MAP_SHARED */
	{"gd", HAUL_VMA_GROWSDOWN, false},  /* MAP_GROWSDOWN */
	{"pf", 0, true},		    /* VM_PFNMAP: a device's memory */
	{"lo", HAUL_VMA_LOCKED, false},	    /* mlock */
	{"io", 0, true},		    /* VM_IO: a device's memory */
	{"sr", HAUL_VMA_SEQ, false},	    /* MADV_SEQUENTIAL */
	{"rr", HAUL_VMA_RANDOM, false},	    /* MADV_RANDOM */
	{"dc", HAUL_VMA_DONTFORK, false},   /* MADV_DONTFORK */
	{"de", 0, true},		    /* VM_DONTEXPAND: a driver's mapping */
	{"lf", HAUL_VMA_LOCKFAULT, false},  /* mlock2 MLOCK_ONFAULT */
	{"ac", 0, false},		    /* VM_ACCOUNT: private writable, not nr */
	{"nr", HAUL_VMA_NORESERVE, false},  /* MAP_NORESERVE */
	{"ht", 0, true},		    /* hugetlbfs */
	{"sf", 0, true},		    /* MAP_SYNC (DAX) */
	{"ar", 0, true},		    /* VM_ARCH_1 (x86: VM_PAT, with pf) */
	{"wf", HAUL_VMA_WIPEONFORK, false}, /* MADV_WIPEONFORK */
	{"dd", HAUL_VMA_DONTDUMP, false},   /* MADV_DONTDUMP */
	{"bt", 0, true},		    /* arm64 BTI */
	{"sd", 0, false},		    /* soft-dirty: tracking state, set on new VMAs */
	{"mm", 0, true},		    /* VM_MIXEDMAP: a driver's mapping */
	{"hg", HAUL_VMA_HUGEPAGE, false},   /* MADV_HUGEPAGE */
	{"nh", HAUL_VMA_NOHUGE, false},	    /* MADV_NOHUGEPAGE */
	{"mg", HAUL_VMA_MERGEABLE, false},  /* MADV_MERGEABLE */
	{"um", 0, true},		    /* the process's own userfaultfd (missing) */
	{"uw", HAUL_VMA_UFFD_WP, false},    /* haul's tracker; never restored */
	{"mt", 0, true},		    /* arm64 MTE */
	{"ui", 0, true},		    /* the process's own userfaultfd (minor) */
	{"ss", 0, true},		    /* x86 user shadow stack */
	{"dp", HAUL_VMA_DROPPABLE, false},  /* MAP_DROPPABLE */
	{"sl", HAUL_VMA_SEALED, false},	    /* mseal */
	{"gu", HAUL_VMA_GUARD, false},	    /* MADV_GUARD_INSTALL: ranges in the image */
};

void haul_vma_parse_vmflags(const char *s, struct haul_vma *v)
{
	while (*s) {
		size_t i, n = sizeof(vmflags) / sizeof(vmflags[0]);

		while (*s == ' ')
			s++;
		if (!s[0] || !s[1] || s[0] == '\n')
			break;
		for (i = 0; i < n; i++)
			if (s[0] == vmflags[i].code[0] && s[1] == vmflags[i].code[1])
				break;
		if (i < n)
			v->flags |= vmflags[i].flag;
		if ((i == n || vmflags[i].uncarried) && !v->uncarried[0]) {
			v->uncarried[0] = s[0];
			v->uncarried[1] = s[1];
		}
		s += 2;
		while (*s && *s != ' ' && *s != '\n')
			s++;
	}
}

/* Parse one maps line into @v. Returns 0, or -EINVAL for a line that is not a VMA. */
static int parse_line(char *line, struct haul_vma *v)
{
	unsigned long long start, end, off, ino;
	unsigned int maj, min;
	char perms[5];
	int pos = 0;
	char *path, *nl;

	if (sscanf(line, "%llx-%llx %4s %llx %x:%x %llu %n", &start, &end, perms, &off, &maj, &min,
		   &ino, &pos) < 7 ||
	    pos == 0)
		return -EINVAL;
	memset(v, 0, sizeof(*v));
	v->start = start;
	v->end = end;
	v->pgoff = off;
	v->dev = makedev(maj, min);
	v->ino = ino;
	v->prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
		  (perms[2] == 'x' ? PROT_EXEC : 0);
	if (perms[3] == 's')
		v->flags |= HAUL_VMA_SHARED;

	path = line + pos;
	nl = strchr(path, '\n');
	if (nl)
		*nl = '\0';
	if (!*path) {
		v->flags |= HAUL_VMA_ANON;
		return 0;
	}
	if (path[0] == '[') {
		v->flags |= special_flags(path);
	} else {
		size_t len = strlen(path);
		static const char del[] = " (deleted)";

		v->flags |= HAUL_VMA_FILE;
		if (len > sizeof(del) - 1 && !strcmp(path + len - (sizeof(del) - 1), del)) {
			path[len - (sizeof(del) - 1)] = '\0';
			v->flags |= HAUL_VMA_DELETED;
		}
		if ((v->flags & HAUL_VMA_DELETED) &&
		    (!strcmp(path, "/dev/zero") || !strncmp(path, "/SYSV", 5) ||
		     !strncmp(path, "/memfd:", 7)))
			v->flags |= HAUL_VMA_SHMEM;
	}
	v->path = strdup(path);
	return v->path ? 0 : -ENOMEM;
}

int haul_layout_read(pid_t pid, bool smaps, struct haul_layout *out)
{
	char fname[64], *line = NULL;
	size_t cap = 0, alloc = 0;
	struct haul_layout l = {0};
	FILE *f;
	ssize_t n;
	int ret = 0;

	snprintf(fname, sizeof(fname), "/proc/%d/%s", (int)pid, smaps ? "smaps" : "maps");
	f = fopen(fname, "re");
	if (!f)
		return errno == ENOENT ? -ESRCH : -errno;
	while ((n = getline(&line, &cap, f)) > 0) {
		struct haul_vma v;

		if (smaps && !strncmp(line, "VmFlags:", 8)) {
			if (l.n)
				haul_vma_parse_vmflags(line + 8, &l.v[l.n - 1]);
			continue;
		}
		/* A protection key other than 0 (pkey_mprotect) is not carried. */
		if (smaps && !strncmp(line, "ProtectionKey:", 14)) {
			if (l.n && strtol(line + 14, NULL, 10) != 0 && !l.v[l.n - 1].uncarried[0])
				memcpy(l.v[l.n - 1].uncarried, "pk", 3);
			continue;
		}
		if (parse_line(line, &v))
			continue; /* an smaps key/value line */
		if ((v.flags & HAUL_VMA_SHMEM) && v.path && !strncmp(v.path, "/SYSV", 5)) {
			char mf[96];
			struct stat st;

			snprintf(mf, sizeof(mf), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64,
				 (int)pid, v.start, v.end);
			if (stat(mf, &st) == 0)
				v.shm_size = (uint64_t)st.st_size;
		}
		if (l.n == alloc) {
			size_t na = alloc ? alloc * 2 : 64;
			struct haul_vma *nv = realloc(l.v, na * sizeof(*nv));

			if (!nv) {
				free(v.path);
				ret = -ENOMEM;
				goto out;
			}
			l.v = nv;
			alloc = na;
		}
		l.v[l.n++] = v;
	}
	if (ferror(f))
		ret = -EIO;
out:
	free(line);
	fclose(f);
	if (ret) {
		haul_layout_release(&l);
		return ret;
	}
	/* An empty maps file: a zombie or a kernel thread; either way nothing to migrate. */
	if (!l.n)
		return -ESRCH;
	*out = l;
	return 0;
}

void haul_layout_release(struct haul_layout *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].path);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

int haul_layout_copy(const struct haul_layout *src, struct haul_layout *dst)
{
	struct haul_layout l = {0};

	l.v = calloc(src->n ? src->n : 1, sizeof(*l.v));
	if (!l.v)
		return -ENOMEM;
	for (size_t i = 0; i < src->n; i++) {
		l.v[i] = src->v[i];
		l.v[i].path = NULL;
		if (src->v[i].path && !(l.v[i].path = strdup(src->v[i].path))) {
			l.n = i;
			haul_layout_release(&l);
			return -ENOMEM;
		}
	}
	l.n = src->n;
	*dst = l;
	return 0;
}

const struct haul_vma *haul_layout_find(const struct haul_layout *l, uint64_t addr)
{
	size_t lo = 0, hi = l->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct haul_vma *v = &l->v[mid];

		if (addr < v->start)
			hi = mid;
		else if (addr >= v->end)
			lo = mid + 1;
		else
			return v;
	}
	return NULL;
}

bool haul_layout_covers(const struct haul_layout *l, uint64_t addr, uint64_t npages)
{
	uint64_t end = addr + npages * 4096;

	while (addr < end) {
		const struct haul_vma *v = haul_layout_find(l, addr);

		if (!v)
			return false;
		addr = v->end;
	}
	return true;
}

const struct haul_vma *haul_layout_next(const struct haul_layout *l, uint64_t addr)
{
	size_t lo = 0, hi = l->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (l->v[mid].start > addr)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo < l->n ? &l->v[lo] : NULL;
}

bool haul_vma_is_memory(const struct haul_vma *v)
{
	return !(v->flags & (HAUL_VMA_VDSO | HAUL_VMA_VVAR | HAUL_VMA_VSYSCALL | HAUL_VMA_SPECIAL));
}

bool haul_vma_same(const struct haul_vma *a, const struct haul_vma *b)
{
	const uint32_t mask = ~(uint32_t)HAUL_VMA_UFFD_WP;

	if (a->start != b->start || a->end != b->end || a->prot != b->prot ||
	    (a->flags & mask) != (b->flags & mask) || a->pgoff != b->pgoff || a->dev != b->dev ||
	    a->ino != b->ino)
		return false;
	if (!a->path || !b->path)
		return a->path == b->path;
	return !strcmp(a->path, b->path);
}

bool haul_layout_same(const struct haul_layout *a, const struct haul_layout *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (!haul_vma_same(&a->v[i], &b->v[i]))
			return false;
	return true;
}

const char *haul_vmflag_what(const char *code)
{
	static const struct {
		char code[3];
		const char *what;
	} what[] = {
		{"pf", "a PFN mapping of a device (VM_PFNMAP)"},
		{"io", "a device's I/O memory (VM_IO)"},
		{"de", "a driver mapping that must not grow (VM_DONTEXPAND)"},
		{"ht", "hugetlbfs memory"},
		{"sf", "a synchronous DAX mapping (MAP_SYNC)"},
		{"ar", "a page-attribute (PAT) mapping (VM_ARCH_1)"},
		{"bt", "arm64 BTI-guarded code"},
		{"mm", "a mixed PFN mapping of a driver (VM_MIXEDMAP)"},
		{"um", "registered with the process's own userfaultfd (missing mode)"},
		{"mt", "arm64 MTE-tagged memory"},
		{"ui", "registered with the process's own userfaultfd (minor mode)"},
		{"ss", "an x86 shadow stack"},
		{"pk", "tagged with a memory protection key (pkey_mprotect)"},
	};

	for (size_t i = 0; i < sizeof(what) / sizeof(what[0]); i++)
		if (!strncmp(code, what[i].code, 2))
			return what[i].what;
	return "a VmFlags flag this haul does not know";
}
