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

static void parse_vmflags(const char *s, struct haul_vma *v)
{
	static const struct {
		char code[3];
		uint32_t flag;
	} map[] = {
		{"gd", HAUL_VMA_GROWSDOWN},  {"lo", HAUL_VMA_LOCKED},	{"hg", HAUL_VMA_HUGEPAGE},
		{"nh", HAUL_VMA_NOHUGE},     {"dc", HAUL_VMA_DONTFORK}, {"dd", HAUL_VMA_DONTDUMP},
		{"wf", HAUL_VMA_WIPEONFORK}, {"uw", HAUL_VMA_UFFD_WP},	{"rr", HAUL_VMA_RANDOM},
		{"sr", HAUL_VMA_SEQ},	     {"ms", HAUL_VMA_MAYSHARE},
	};

	while (*s) {
		while (*s == ' ')
			s++;
		if (!s[0] || !s[1])
			break;
		for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
			if (s[0] == map[i].code[0] && s[1] == map[i].code[1])
				v->flags |= map[i].flag;
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
				parse_vmflags(line + 8, &l.v[l.n - 1]);
			continue;
		}
		if (parse_line(line, &v))
			continue; /* an smaps key/value line */
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
