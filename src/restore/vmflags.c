/*
 * vmflags.c - a process's VmFlags without /proc/PID/smaps's page-table walk.
 *
 * The dump needs every VMA's VmFlags (mlock, huge-page and fork advice,
 * MAP_NORESERVE, ...), which /proc/PID/maps lacks and /proc/PID/smaps shows.
 * But smaps also counts RSS/PSS page by page, holding the process's mmap_lock
 * for the whole walk of a VMA: 243 ms for 1 GiB of populated memory, during
 * which every mmap, munmap or brk of the process waits (bench/RESULTS.md
 * "Stalls").  A workload that maps memory all the time (malloc arenas,
 * thread stacks, a JIT) paid that in every pre-copy round.
 *
 * Here the flags come from the kernel's vm_flags word itself, read by a BPF
 * task_vma iterator (bpf/vmflags.bpf.c): microseconds per VMA, no page
 * tables.  The word's bits are the kernel's own and change between
 * releases, so they are not written down here: the first use learns them.
 * A calibration child makes one VMA per flag (mlock, MADV_*, MAP_NORESERVE,
 * mseal, uffd-wp, ...); its smaps (small, cheap) and its vm_flags words are
 * read, and each mnemonic gets the bits set in every VMA that shows it and
 * clear in every VMA that does not.  Mnemonics that always come together
 * (vvar's pf io de) form one group.  The translation must then give back
 * smaps's exact VmFlags for every VMA of the child, else the method is off
 * for this haul process.
 *
 * Reading a layout: /proc/PID/maps (no walk either) and the iterator, matched
 * VMA by VMA.  A bit that no mnemonic explains (a protection key, a flag the
 * calibration could not make), layouts that differ (the process mapped in
 * between), no BPF (no CAP_BPF, no BTF, an old kernel) or HAUL_VMFLAGS=smaps:
 * smaps as before.  The answer is the same either way; only the cost differs.
 */
#define LOG_PREFIX "vmflags: "
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/vma.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

/* The BPF object, embedded by src/restore/module.mk. */
extern const char haul_vmflags_bpf[];
extern const char haul_vmflags_bpf_end[];

#define VMF_MAX_GROUPS 48
#define VMF_CAL_VMAS   24

struct vmf_group {
	uint64_t mask;	/* the vm_flags bits of this group, all set together */
	char names[24]; /* its mnemonics, "pf io de " */
};

static struct {
	pthread_once_t once;
	bool ok;
	struct bpf_object *obj;
	struct bpf_program *prog;
	struct vmf_group g[VMF_MAX_GROUPS];
	size_t ng;
	uint64_t known; /* every group's bits */
	char gate[64];	/* the VmFlags of [vsyscall], which the iterator does not visit */
	pthread_mutex_t lock;
} vmf = {.once = PTHREAD_ONCE_INIT, .lock = PTHREAD_MUTEX_INITIALIZER};

struct vmf_rec {
	uint64_t start, end, flags;
};

/* Every VMA of @pid as the iterator sees it; *@out malloc'd. */
static int iter_read(pid_t pid, struct vmf_rec **out, size_t *n)
{
	union bpf_iter_link_info li;
	struct bpf_link *link;
	struct vmf_rec *r = NULL;
	size_t cap = 0, k = 0;
	ssize_t got;
	int fd, ret = 0;

	memset(&li, 0, sizeof(li));
	li.task.tid = (__u32)pid;
	LIBBPF_OPTS(bpf_iter_attach_opts, opts, .link_info = &li, .link_info_len = sizeof(li));
	pthread_mutex_lock(&vmf.lock);
	link = bpf_program__attach_iter(vmf.prog, &opts);
	pthread_mutex_unlock(&vmf.lock);
	if (!link)
		return -errno ? -errno : -EINVAL;
	fd = bpf_iter_create(bpf_link__fd(link));
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	for (;;) {
		if (k == cap) {
			size_t nc = cap ? cap * 2 : 256;
			struct vmf_rec *nr = realloc(r, nc * sizeof(*nr));

			if (!nr) {
				ret = -ENOMEM;
				break;
			}
			r = nr;
			cap = nc;
		}
		got = read(fd, r + k, (cap - k) * sizeof(*r));
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			ret = -errno;
			break;
		}
		if (got == 0)
			break;
		/*
		 * Records come in address order, each once.  The iterator has been
		 * seen to go back and repeat (a 16 TiB ASan shadow VMA before the
		 * stack, Linux 6.18): stop there and let the caller read smaps.
		 */
		for (size_t e = k + (size_t)got / sizeof(*r); k < e; k++)
			if (r[k].end <= r[k].start || (k && r[k].start < r[k - 1].end))
				ret = -EIO;
		if (ret) {
			pr_debug("pid %d: the vm_flags iterator went back after %zu VMAs; reading "
				 "smaps",
				 (int)pid, k);
			break;
		}
	}
	close(fd);
out:
	bpf_link__destroy(link);
	if (ret) {
		free(r);
		return ret;
	}
	*out = r;
	*n = k;
	return 0;
}

/* --- calibration ---------------------------------------------------------- */

/*
 * The calibration child's calls: raw system calls only.  It is forked from a
 * haul that may have threads (and from sanitizer builds whose interceptors
 * take locks another thread may have held at the fork).
 */
static char *cal_map(size_t len, int prot, int flags, int fd)
{
	return (char *)syscall(SYS_mmap, NULL, len, prot, flags, fd, 0);
}

static void cal_advise(char *p, size_t len, long what)
{
	if (p != MAP_FAILED)
		(void)syscall(SYS_madvise, p, len, what);
}

/* The calibration child's VMA with uffd-wp registered ("uw"). */
static void cal_uffd_wp(size_t len)
{
	struct uffdio_api api = {.api = UFFD_API};
	int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	char *p = cal_map(len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);

	if (uffd >= 0 && p != MAP_FAILED && !syscall(SYS_ioctl, uffd, UFFDIO_API, &api)) {
		struct uffdio_register reg = {
			.range = {.start = (uintptr_t)p, .len = len},
			.mode = UFFDIO_REGISTER_MODE_WP,
		};

		(void)syscall(SYS_ioctl, uffd, UFFDIO_REGISTER, &reg);
	}
}

/* Make one VMA per flag in this (forked, single-threaded) child, then wait. */
static void __attribute__((noreturn)) cal_child(int ready, int hold)
{
	const size_t pg = 4096, len = 4 * 4096;
	const int madv[] = {MADV_HUGEPAGE,   MADV_NOHUGEPAGE, MADV_DONTFORK,   MADV_DONTDUMP,
			    MADV_WIPEONFORK, MADV_RANDOM,     MADV_SEQUENTIAL, MADV_MERGEABLE};
	const int anon = MAP_PRIVATE | MAP_ANONYMOUS, rw = PROT_READ | PROT_WRITE;
	char *p, b;
	long fd;

	for (size_t i = 0; i < sizeof(madv) / sizeof(madv[0]); i++)
		cal_advise(cal_map(len, rw, anon, -1), len, madv[i]);
	/*
	 * The protections apart, so rd, wr, ex and mr/mw/me come apart.  Not
	 * PROT_EXEC alone: on a CPU with protection keys the kernel tags an
	 * execute-only mapping with its execute-only key, bits that smaps shows
	 * only as "ProtectionKey:" and that no mnemonic would explain.
	 */
	(void)cal_map(len, PROT_NONE, anon, -1);
	(void)cal_map(len, PROT_READ, anon, -1);
	(void)cal_map(len, PROT_WRITE, anon, -1);
	(void)cal_map(len, PROT_WRITE | PROT_EXEC, anon, -1);
	(void)cal_map(len, rw | PROT_EXEC, anon, -1);
	(void)cal_map(len, rw, MAP_SHARED | MAP_ANONYMOUS, -1);
	(void)cal_map(len, rw, anon | MAP_NORESERVE, -1);
	(void)cal_map(len, rw, anon | MAP_GROWSDOWN, -1);
	(void)cal_map(len, rw, MAP_ANONYMOUS | RST_MAP_DROPPABLE, -1);
	p = cal_map(len, rw, anon, -1);
	if (p != MAP_FAILED)
		(void)syscall(SYS_mlock, p, pg);
	p = cal_map(len, rw, anon, -1);
	if (p != MAP_FAILED)
		(void)syscall(SYS_mlock2, p, len, 1 /* MLOCK_ONFAULT */);
	p = cal_map(len, PROT_READ, anon, -1);
	if (p != MAP_FAILED)
		(void)syscall(SYS_mseal, p, len, 0);
	cal_advise(cal_map(len, rw, anon, -1), pg, RST_MADV_GUARD_INSTALL);
	fd = syscall(SYS_openat, AT_FDCWD, "/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (fd >= 0)
		(void)cal_map(pg, PROT_READ, MAP_SHARED, (int)fd);
	cal_uffd_wp(len);
	if (syscall(SYS_write, ready, "r", 1) != 1)
		syscall(SYS_exit_group, 1);
	while (syscall(SYS_read, hold, &b, 1) < 0 && errno == EINTR)
		;
	syscall(SYS_exit_group, 0);
	for (;;)
		;
}

/* One VMA of the calibration child: its vm_flags word and smaps's VmFlags. */
struct cal_vma {
	uint64_t start, end, flags;
	char vmf[160]; /* smaps's VmFlags line, without the key */
};

static bool has_mn(const char *line, const char *mn)
{
	for (const char *s = line; (s = strstr(s, mn)); s += 2)
		if ((s == line || s[-1] == ' ') && (s[2] == ' ' || s[2] == '\0' || s[2] == '\n'))
			return true;
	return false;
}

/* smaps of the child: start, end and the VmFlags line of each VMA. */
static int cal_smaps(pid_t pid, struct cal_vma *c, size_t max, size_t *n)
{
	char path[64], line[512];
	unsigned long long s, e;
	size_t k = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char perms[8];

		if (sscanf(line, "%llx-%llx %7s ", &s, &e, perms) == 3 && strlen(perms) == 4) {
			if (k == max)
				break;
			c[k].start = s;
			c[k].end = e;
			c[k].flags = 0;
			c[k].vmf[0] = '\0';
			k++;
		} else if (k && !strncmp(line, "VmFlags:", 8)) {
			size_t len = strnlen(line + 8, sizeof(c[k - 1].vmf) - 1);

			memcpy(c[k - 1].vmf, line + 8, len);
			c[k - 1].vmf[len] = '\0';
		}
	}
	fclose(f);
	*n = k;
	return 0;
}

#define CAL_MAX 512

/* Each mnemonic's bits: set wherever smaps shows it, clear wherever not. */
static int learn(const struct cal_vma *c, size_t n)
{
	char mn[64][3];
	size_t nmn = 0;

	for (size_t i = 0; i < n; i++)
		for (const char *s = c[i].vmf; *s;) {
			while (*s == ' ' || *s == '\n')
				s++;
			if (!s[0] || !s[1])
				break;
			size_t k = 0;

			while (k < nmn && memcmp(mn[k], s, 2))
				k++;
			if (k == nmn && nmn < 64) {
				memcpy(mn[nmn], s, 2);
				mn[nmn++][2] = '\0';
			}
			s += 2;
		}
	vmf.ng = 0;
	vmf.known = 0;
	for (size_t k = 0; k < nmn; k++) {
		uint64_t mask = ~0ULL;
		size_t g;

		for (size_t i = 0; i < n; i++)
			mask &= has_mn(c[i].vmf, mn[k]) ? c[i].flags : ~c[i].flags;
		if (!mask) {
			pr_debug("no vm_flags bit explains \"%s\"", mn[k]);
			return -EINVAL;
		}
		for (g = 0; g < vmf.ng && vmf.g[g].mask != mask; g++)
			if (vmf.g[g].mask & mask) {
				pr_debug("\"%s\" overlaps \"%s\"", mn[k], vmf.g[g].names);
				return -EINVAL;
			}
		if (g == vmf.ng) {
			if (g == VMF_MAX_GROUPS)
				return -E2BIG;
			vmf.g[vmf.ng].mask = mask;
			vmf.g[vmf.ng++].names[0] = '\0';
			vmf.known |= mask;
		}
		if (strlen(vmf.g[g].names) + 4 > sizeof(vmf.g[g].names))
			return -E2BIG;
		strcat(vmf.g[g].names, mn[k]);
		strcat(vmf.g[g].names, " ");
	}
	return 0;
}

/* smaps's VmFlags for the word @flags, or -ENOENT for a bit no group explains. */
static int translate(uint64_t flags, char *out, size_t len)
{
	size_t used = 0;

	if (flags & ~vmf.known)
		return -ENOENT;
	out[0] = '\0';
	for (size_t g = 0; g < vmf.ng; g++) {
		uint64_t m = flags & vmf.g[g].mask;

		if (!m)
			continue;
		if (m != vmf.g[g].mask)
			return -ENOENT;
		used += (size_t)snprintf(out + used, len > used ? len - used : 0, "%s",
					 vmf.g[g].names);
	}
	return used < len ? 0 : -E2BIG;
}

/* Whether every mnemonic of @x is in @y. */
static bool subset(const char *x, const char *y)
{
	for (const char *s = x; *s;) {
		char m[3];

		while (*s == ' ' || *s == '\n')
			s++;
		if (!s[0] || !s[1])
			break;
		memcpy(m, s, 2);
		m[2] = '\0';
		if (!has_mn(y, m))
			return false;
		s += 2;
	}
	return true;
}

/* The same mnemonics in @a and @b, in any order. */
static bool same_set(const char *a, const char *b)
{
	return subset(a, b) && subset(b, a);
}

/* Match the iterator's records to the child's smaps, learn, and check every VMA. */
static int cal_check(pid_t child)
{
	struct cal_vma *c = calloc(CAL_MAX, sizeof(*c));
	struct vmf_rec *r = NULL;
	size_t n = 0, nr = 0, k = 0, m = 0;
	char got[160];
	int ret;

	if (!c)
		return -ENOMEM;
	ret = cal_smaps(child, c, CAL_MAX, &n);
	if (!ret)
		ret = iter_read(child, &r, &nr);
	if (ret)
		goto out;
	for (size_t i = 0; i < n; i++) {
		while (k < nr && r[k].start < c[i].start)
			k++;
		if (k < nr && r[k].start == c[i].start && r[k].end == c[i].end) {
			c[m] = c[i];
			c[m++].flags = r[k].flags;
		} else if (c[i].start >= 0xffffffffff600000ULL) {
			snprintf(vmf.gate, sizeof(vmf.gate), "%s", c[i].vmf);
		} else {
			pr_debug("VMA %#llx-%#llx: not in the iterator's records",
				 (unsigned long long)c[i].start, (unsigned long long)c[i].end);
			ret = -EINVAL;
			goto out;
		}
	}
	ret = learn(c, m);
	for (size_t i = 0; !ret && i < m; i++) {
		ret = translate(c[i].flags, got, sizeof(got));
		if (!ret && !same_set(got, c[i].vmf))
			ret = -EINVAL;
		if (ret)
			pr_debug("VMA %#llx-%#llx: vm_flags %#llx reads \"%s\", smaps \"%s\"",
				 (unsigned long long)c[i].start, (unsigned long long)c[i].end,
				 (unsigned long long)c[i].flags, got, c[i].vmf);
	}
	if (!ret)
		pr_debug("%zu flag groups learnt from %zu VMAs", vmf.ng, m);
	for (size_t g = 0; !ret && g < vmf.ng; g++)
		pr_debug("  %#llx: %s", (unsigned long long)vmf.g[g].mask, vmf.g[g].names);
out:
	free(r);
	free(c);
	return ret;
}

static int calibrate(void)
{
	int ready[2], hold[2], ret;
	pid_t child;
	char b;

	if (pipe2(ready, O_CLOEXEC))
		return -errno;
	if (pipe2(hold, O_CLOEXEC)) {
		ret = -errno;
		close(ready[0]);
		close(ready[1]);
		return ret;
	}
	child = fork();
	if (child == 0) {
		close(ready[0]);
		close(hold[1]);
		cal_child(ready[1], hold[0]);
	}
	close(ready[1]);
	close(hold[0]);
	ret = child < 0 ? -errno : 0;
	if (!ret && read(ready[0], &b, 1) != 1)
		ret = -ECHILD;
	if (!ret)
		ret = cal_check(child);
	close(hold[1]);
	close(ready[0]);
	if (child > 0)
		while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
			;
	return ret;
}

static int quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	(void)fmt;
	(void)ap;
	return 0;
}

static void vmf_init(void)
{
	const char *env = getenv("HAUL_VMFLAGS");
	int ret;

	if (env && !strcmp(env, "smaps"))
		return;
	libbpf_set_print(quiet);
	vmf.obj = bpf_object__open_mem(haul_vmflags_bpf,
				       (size_t)(haul_vmflags_bpf_end - haul_vmflags_bpf), NULL);
	if (!vmf.obj) {
		pr_debug("cannot open the BPF object (%s); smaps it is", strerror(errno));
		return;
	}
	ret = bpf_object__load(vmf.obj);
	vmf.prog = ret ? NULL : bpf_object__find_program_by_name(vmf.obj, "haul_vmflags");
	if (!ret && vmf.prog)
		ret = calibrate();
	if (ret || !vmf.prog) {
		pr_debug("VmFlags from vm_flags unavailable (%s); smaps it is",
			 strerror(ret < 0 ? -ret : EINVAL));
		bpf_object__close(vmf.obj);
		vmf.obj = NULL;
		return;
	}
	vmf.ok = true;
}

bool rst_vmflags_fast(void)
{
	pthread_once(&vmf.once, vmf_init);
	return vmf.ok;
}

/*
 * Put the iterator's words on @l's VMAs.  A VMA of @l that the iterator did
 * not see as it is (the process mapped or unmapped between the two reads):
 * -EAGAIN, or with @drop it is left out of @l.
 */
static int apply(pid_t pid, struct haul_layout *l, const struct vmf_rec *r, size_t nr, bool drop)
{
	size_t k = 0, out = 0;
	char s[160];

	for (size_t i = 0; i < l->n; i++) {
		struct haul_vma *v = &l->v[i];

		while (k < nr && r[k].end <= v->start)
			k++;
		if (v->flags & HAUL_VMA_VSYSCALL) {
			haul_vma_parse_vmflags(vmf.gate, v);
		} else if (k == nr || r[k].start != v->start || r[k].end != v->end) {
			if (!drop)
				return -EAGAIN;
			free(v->path);
			continue;
		} else if (translate(r[k].flags, s, sizeof(s))) {
			pr_debug(
				"pid %d: VMA %#llx-%#llx has vm_flags %#llx, which the calibration "
				"did not see; reading smaps",
				(int)pid, (unsigned long long)v->start, (unsigned long long)v->end,
				(unsigned long long)r[k].flags);
			return -ENOENT;
		} else {
			haul_vma_parse_vmflags(s, v);
		}
		l->v[out++] = *v;
	}
	if (out < l->n)
		pr_debug("pid %d: %zu VMAs changed while read, left out", (int)pid, l->n - out);
	l->n = out;
	return 0;
}

static int read_flags(pid_t pid, struct haul_layout *out, bool drop)
{
	if (!rst_vmflags_fast())
		return haul_layout_read(pid, true, out);
	for (int attempt = 0; attempt < 3; attempt++) {
		struct haul_layout l;
		struct vmf_rec *r;
		size_t nr;
		int ret = haul_layout_read(pid, false, &l);

		if (ret)
			return ret;
		ret = iter_read(pid, &r, &nr);
		if (!ret) {
			ret = apply(pid, &l, r, nr, drop && attempt == 2);
			free(r);
		}
		if (!ret) {
			*out = l;
			return 0;
		}
		haul_layout_release(&l);
		if (ret != -EAGAIN)
			break;
	}
	return haul_layout_read(pid, true, out);
}

int rst_layout_read_flags(pid_t pid, struct haul_layout *out)
{
	return read_flags(pid, out, false);
}

int rst_layout_read_flags_running(pid_t pid, struct haul_layout *out)
{
	return read_flags(pid, out, true);
}
