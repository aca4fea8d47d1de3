/*
 * vmcases.h - VMAs whose attributes a restore must reproduce exactly (issue
 * 15; after CRIU's zdtm maps04, maps02, maps_file_prot, maps12), set up and
 * checked by tests/progs/rst_vmas and mig_workload --vmcases.
 *
 *  protnone  16 filled pages, page 5 PROT_NONE: its data survives (maps04)
 *  noreserve 8 filled pages MAP_NORESERVE: data and VmFlags "nr" (maps02)
 *  fileprot  a 2-page file mapped MAP_SHARED PROT_READ from an O_RDWR fd,
 *            page 1 mprotect'ed writable, fd closed: page 1 stays writable,
 *            page 0 can be made writable (maps_file_prot)
 *  guards    10 pages in 5 VMAs of 2, pages 1, 2, 5, 6 guard pages
 *            (MADV_GUARD_INSTALL), page 5 also MADV_WIPEONFORK: guards
 *            fault, the other pages keep their data, a forked child sees
 *            the guards but those wiped (maps12); skipped before Linux 6.13
 *  shmemprot 2 pages of shared anonymous memory made read-only and 2 made
 *            PROT_NONE after being filled: data and protection survive
 *  flags     4 pages MADV_MERGEABLE ("mg"), 4 pages MAP_DROPPABLE ("dp": zeros
 *            after an image's restore, .image; either after a migration),
 *            4 pages mseal'ed ("sl", munmap fails): each only where the
 *            kernel offers it at setup
 *  deleted   an 8-page file (pattern 9) mapped MAP_PRIVATE from a read-only
 *            open (as ld.so maps a library) in two VMAs (r--,
 *            rw-), page 5 written (pattern 10), page 6 zeroed, the file
 *            unlinked (a library replaced by an upgrade): every page reads
 *            the same, the VMA still shows "(deleted)", and MADV_DONTNEED of
 *            page 5 brings the file's page back
 *  latedel   the same, the file unlinked only by vmc_unlink_deleted() (an
 *            upgrade during a migration); only when asked by name
 *
 * Header-only (static functions): each program is one .c file.
 */
#ifndef HAUL_TESTS_VMCASES_H
#define HAUL_TESTS_VMCASES_H

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define VMC_PAGE	       4096UL
#define VMC_MADV_GUARD_INSTALL 102
#define VMC_MAP_DROPPABLE      0x08
#define VMC_SYS_MSEAL	       462

static struct {
	char *protnone, *noreserve, *file, *guard, *merge, *drop, *seal, *shro, *shnone, *del;
	bool image; /* restored from an image: droppable pages read as zeros */
	bool have_guard;
} vmc;

static const bool vmc_guarded[10] = {0, 1, 1, 0, 0, 1, 1, 0, 0, 0};

static sigjmp_buf vmc_jmp;
static volatile sig_atomic_t vmc_armed;

static void vmc_segv(int sig)
{
	(void)sig;
	if (vmc_armed)
		siglongjmp(vmc_jmp, 1);
}

static void vmc_fill(char *p, size_t npages, unsigned tag)
{
	for (size_t i = 0; i < npages; i++)
		for (size_t w = 0; w < VMC_PAGE / 8; w++)
			((uint64_t *)(p + i * VMC_PAGE))[w] = ((uint64_t)tag << 48) ^ (i << 24) ^ w;
}

/* The first page of @p that does not hold vmc_fill's pattern, or -1. */
static long vmc_bad(const char *p, size_t npages, unsigned tag)
{
	for (size_t i = 0; i < npages; i++)
		for (size_t w = 0; w < VMC_PAGE / 8; w++)
			if (((const uint64_t *)(p + i * VMC_PAGE))[w] !=
			    (((uint64_t)tag << 48) ^ (i << 24) ^ w))
				return (long)i;
	return -1;
}

/* Whether page @i of @p lacks vmc_fill's pattern (of a fill over several pages). */
static bool vmc_bad_at(const char *p, size_t i, unsigned tag)
{
	const uint64_t *w = (const uint64_t *)(p + i * VMC_PAGE);

	for (size_t k = 0; k < VMC_PAGE / 8; k++)
		if (w[k] != (((uint64_t)tag << 48) ^ (i << 24) ^ k))
			return true;
	return false;
}

/* Whether the VmFlags of the VMA at @addr in /proc/self/smaps hold @flag. */
static bool vmc_has_vmflag(const void *addr, const char *flag)
{
	char line[512], want[24];
	bool in = false, found = false;
	FILE *f = fopen("/proc/self/smaps", "re");

	if (!f)
		return false;
	snprintf(want, sizeof(want), "%lx-", (unsigned long)(uintptr_t)addr);
	while (fgets(line, sizeof(line), f)) {
		/* a VMA's first line starts with its lowercase hex start; keys are capitalised */
		if ((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f'))
			in = !strncmp(line, want, strlen(want));
		if (in && !strncmp(line, "VmFlags:", 8)) {
			char pad[8];

			snprintf(pad, sizeof(pad), " %s", flag);
			found = strstr(line, pad) != NULL;
			break;
		}
	}
	fclose(f);
	return found;
}

/* Whether a write to @p faults (SIGSEGV caught). */
static bool vmc_write_faults(char *p)
{
	struct sigaction sa = {.sa_handler = vmc_segv}, old;
	bool faulted;

	sigaction(SIGSEGV, &sa, &old);
	vmc_armed = 1;
	faulted = sigsetjmp(vmc_jmp, 1) != 0;
	if (!faulted)
		*(volatile char *)p = 'x';
	vmc_armed = 0;
	sigaction(SIGSEGV, &old, NULL);
	return faulted;
}

static char *vmc_map(size_t npages, int extra)
{
	char *p =
		mmap(NULL, npages * VMC_PAGE, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | extra, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static int vmc_setup_protnone(void)
{
	if (!(vmc.protnone = vmc_map(16, MAP_PRIVATE)))
		return -errno;
	vmc_fill(vmc.protnone, 16, 1);
	return mprotect(vmc.protnone + 5 * VMC_PAGE, VMC_PAGE, PROT_NONE) ? -errno : 0;
}

static int vmc_setup_noreserve(void)
{
	if (!(vmc.noreserve = vmc_map(8, MAP_PRIVATE | MAP_NORESERVE)))
		return -errno;
	vmc_fill(vmc.noreserve, 8, 2);
	return 0;
}

static int vmc_setup_fileprot(const char *dir)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/vmcases.fileprot", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, 2 * VMC_PAGE))
		return -errno;
	vmc.file = mmap(NULL, 2 * VMC_PAGE, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (vmc.file == MAP_FAILED ||
	    mprotect(vmc.file + VMC_PAGE, VMC_PAGE, PROT_READ | PROT_WRITE))
		return -errno;
	vmc.file[VMC_PAGE] = 7;
	return 0;
}

static char vmc_deleted_path[512];

/* @unlink: the file deleted now, else by vmc_unlink_deleted() later (during a migration). */
static int vmc_setup_deleted(const char *dir, bool unlink_now)
{
	char path[512], page[VMC_PAGE];
	int fd;

	snprintf(path, sizeof(path), "%s/vmcases.deleted", dir);
	snprintf(vmc_deleted_path, sizeof(vmc_deleted_path), "%s", path);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -errno;
	for (size_t i = 0; i < 8; i++) {
		vmc_fill(page, 1, 9);
		memcpy(page, &i, sizeof(i)); /* each page its own */
		if (pwrite(fd, page, VMC_PAGE, (off_t)(i * VMC_PAGE)) != (ssize_t)VMC_PAGE)
			return -EIO;
	}
	/* mapped as ld.so maps a library: from a read-only open */
	close(fd);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	vmc.del = mmap(NULL, 8 * VMC_PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (vmc.del == MAP_FAILED ||
	    mprotect(vmc.del + 4 * VMC_PAGE, 4 * VMC_PAGE, PROT_READ | PROT_WRITE))
		return -errno;
	vmc_fill(vmc.del + 5 * VMC_PAGE, 1, 10);
	memset(vmc.del + 6 * VMC_PAGE, 0, VMC_PAGE);
	return unlink_now && unlink(path) ? -errno : 0;
}

/* The file of the "latedel" case deleted (async-signal-safe). */
static inline void vmc_unlink_deleted(void)
{
	unlink(vmc_deleted_path);
}

/* Page @i of the deleted file's mapping: 0 if it reads as it should. */
static int vmc_deleted_page(size_t i)
{
	char want[VMC_PAGE];

	if (i == 6) {
		memset(want, 0, sizeof(want));
	} else if (i == 5) {
		vmc_fill(want, 1, 10);
	} else {
		vmc_fill(want, 1, 9);
		memcpy(want, &i, sizeof(i));
	}
	return memcmp(vmc.del + i * VMC_PAGE, want, VMC_PAGE) ? -1 : 0;
}

static int vmc_check_deleted(char *why, size_t len)
{
	char line[512], want[24];
	bool deleted = false;
	FILE *f;

	for (size_t i = 0; i < 8; i++)
		if (vmc_deleted_page(i))
			return snprintf(why, len, "deleted: page %zu lost its data", i), -1;
	/* the file's page comes back where the written copy is dropped */
	if (madvise(vmc.del + 5 * VMC_PAGE, VMC_PAGE, MADV_DONTNEED))
		return snprintf(why, len, "deleted: madvise: %s", strerror(errno)), -1;
	if (((size_t *)(vmc.del + 5 * VMC_PAGE))[0] != 5)
		return snprintf(why, len, "deleted: page 5 dropped is not the file's"), -1;
	vmc_fill(vmc.del + 5 * VMC_PAGE, 1, 10);
	f = fopen("/proc/self/maps", "re");
	snprintf(want, sizeof(want), "%lx-", (unsigned long)(uintptr_t)vmc.del);
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, want, strlen(want)))
			deleted = strstr(line, "vmcases.deleted") && strstr(line, " (deleted)");
	if (f)
		fclose(f);
	if (!deleted)
		return snprintf(why, len, "deleted: maps does not show the file deleted"), -1;
	return 0;
}

/* 5 VMAs of 2 pages, made one by one inside a free 10-page range */
static int vmc_setup_guards(void)
{
	if (!(vmc.guard = vmc_map(10, MAP_PRIVATE)))
		return -errno;
	for (int i = 0; i < 5; i++)
		if (mmap(vmc.guard + 2 * i * VMC_PAGE, 2 * VMC_PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
			return -errno;
	vmc_fill(vmc.guard, 10, 3);
	vmc.have_guard = madvise(vmc.guard + VMC_PAGE, VMC_PAGE, VMC_MADV_GUARD_INSTALL) == 0;
	for (int i = 0; i < 10 && vmc.have_guard; i++)
		if (vmc_guarded[i] &&
		    madvise(vmc.guard + i * VMC_PAGE, VMC_PAGE, VMC_MADV_GUARD_INSTALL))
			return -errno;
	return madvise(vmc.guard + 5 * VMC_PAGE, VMC_PAGE, MADV_WIPEONFORK) ? -errno : 0;
}

static int vmc_setup_shmemprot(void)
{
	if (!(vmc.shro = vmc_map(2, MAP_SHARED)) || !(vmc.shnone = vmc_map(2, MAP_SHARED)))
		return -errno;
	vmc_fill(vmc.shro, 2, 7);
	vmc_fill(vmc.shnone, 2, 8);
	if (mprotect(vmc.shro, 2 * VMC_PAGE, PROT_READ) ||
	    mprotect(vmc.shnone, 2 * VMC_PAGE, PROT_NONE))
		return -errno;
	return 0;
}

static int vmc_setup_flags(void)
{
	if ((vmc.merge = vmc_map(4, MAP_PRIVATE))) {
		vmc_fill(vmc.merge, 4, 4);
		if (madvise(vmc.merge, 4 * VMC_PAGE, MADV_MERGEABLE))
			vmc.merge = NULL;
	}
	if ((vmc.drop = vmc_map(4, VMC_MAP_DROPPABLE)))
		vmc_fill(vmc.drop, 4, 5);
	if ((vmc.seal = vmc_map(4, MAP_PRIVATE))) {
		vmc_fill(vmc.seal, 4, 6);
		if (syscall(VMC_SYS_MSEAL, vmc.seal, 4 * VMC_PAGE, 0))
			vmc.seal = NULL;
	}
	return 0;
}

/*
 * Set case @only up ("protnone", "noreserve", "fileprot", "guards",
 * "shmemprot", "flags", "deleted"),
 * or every case for NULL; the file of fileprot goes in @dir.  0 or -errno
 * (-EINVAL: no such case).
 */
static int vmcases_setup(const char *dir, const char *only)
{
	int ret = -EINVAL;

#define VMC_WANT(name) (!only || !strcmp(only, name))
	if (VMC_WANT("protnone") && (ret = vmc_setup_protnone()))
		return ret;
	if (VMC_WANT("noreserve") && (ret = vmc_setup_noreserve()))
		return ret;
	if (VMC_WANT("fileprot") && (ret = vmc_setup_fileprot(dir)))
		return ret;
	if (VMC_WANT("guards") && (ret = vmc_setup_guards()))
		return ret;
	if (VMC_WANT("shmemprot") && (ret = vmc_setup_shmemprot()))
		return ret;
	if (VMC_WANT("flags") && (ret = vmc_setup_flags()))
		return ret;
	if (VMC_WANT("deleted") && (ret = vmc_setup_deleted(dir, true)))
		return ret;
	/* "latedel" only by name: its file is deleted later (vmc_unlink_deleted) */
	if (only && !strcmp(only, "latedel") && (ret = vmc_setup_deleted(dir, false)))
		return ret;
#undef VMC_WANT
	return ret;
}

static int vmc_guards_in_child(void)
{
	pid_t kid = fork();
	int status;

	if (kid < 0)
		return -1;
	if (kid == 0) {
		for (int i = 0; i < 10; i++)
			if (vmc_guarded[i] && i != 5 && !vmc_write_faults(vmc.guard + i * VMC_PAGE))
				_exit(1);
		_exit(0);
	}
	if (waitpid(kid, &status, 0) != kid)
		return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int vmc_check_guards(char *why, size_t len)
{
	for (int i = 0; i < 10; i++) {
		bool g = vmc.have_guard && vmc_guarded[i];

		if (!g && vmc_bad_at(vmc.guard, i, 3))
			return snprintf(why, len, "guards: page %d lost its data", i), -1;
		if (g && !vmc_write_faults(vmc.guard + i * VMC_PAGE))
			return snprintf(why, len, "guards: page %d is no guard page", i), -1;
	}
	if (vmc.have_guard && vmc_guards_in_child())
		return snprintf(why, len, "guards: a forked child lacks them"), -1;
	return 0;
}

/* Check every case set up; 0, or -1 with what is wrong in @why. */
static int vmcases_check(char *why, size_t len)
{
	long bad;

	if (vmc.protnone) {
		if (mprotect(vmc.protnone + 5 * VMC_PAGE, VMC_PAGE, PROT_READ))
			return snprintf(why, len, "protnone: mprotect: %s", strerror(errno)), -1;
		bad = vmc_bad(vmc.protnone, 16, 1);
		mprotect(vmc.protnone + 5 * VMC_PAGE, VMC_PAGE, PROT_NONE);
		if (bad >= 0)
			return snprintf(why, len, "protnone: page %ld lost its data", bad), -1;
	}
	if (vmc.noreserve && (bad = vmc_bad(vmc.noreserve, 8, 2)) >= 0)
		return snprintf(why, len, "noreserve: page %ld lost its data", bad), -1;
	if (vmc.noreserve && !vmc_has_vmflag(vmc.noreserve, "nr"))
		return snprintf(why, len, "noreserve: VmFlags lost nr"), -1;
	if (vmc.file) {
		if (vmc.file[VMC_PAGE] != 7)
			return snprintf(why, len, "fileprot: page 1 lost its data"), -1;
		vmc.file[VMC_PAGE] = 7; /* still writable, or this faults */
		if (mprotect(vmc.file, VMC_PAGE, PROT_READ | PROT_WRITE))
			return snprintf(why, len, "fileprot: mprotect(PROT_WRITE): %s",
					strerror(errno)),
			       -1;
		mprotect(vmc.file, VMC_PAGE, PROT_READ);
	}
	if (vmc.guard && vmc_check_guards(why, len))
		return -1;
	if (vmc.del && vmc_check_deleted(why, len))
		return -1;
	if (vmc.shro) {
		if (vmc_bad(vmc.shro, 2, 7) >= 0)
			return snprintf(why, len, "shmemprot: read-only pages lost their data"), -1;
		if (!vmc_write_faults(vmc.shro))
			return snprintf(why, len, "shmemprot: read-only pages became writable"), -1;
		if (!vmc_write_faults(vmc.shnone))
			return snprintf(why, len, "shmemprot: PROT_NONE pages became writable"), -1;
		if (mprotect(vmc.shnone, 2 * VMC_PAGE, PROT_READ))
			return snprintf(why, len, "shmemprot: mprotect: %s", strerror(errno)), -1;
		bad = vmc_bad(vmc.shnone, 2, 8);
		mprotect(vmc.shnone, 2 * VMC_PAGE, PROT_NONE);
		if (bad >= 0)
			return snprintf(why, len, "shmemprot: PROT_NONE pages lost their data"), -1;
	}
	if (vmc.merge && (vmc_bad(vmc.merge, 4, 4) >= 0 || !vmc_has_vmflag(vmc.merge, "mg")))
		return snprintf(why, len, "mergeable: data or VmFlags mg lost"), -1;
	if (vmc.drop && !vmc_has_vmflag(vmc.drop, "dp"))
		return snprintf(why, len, "droppable: VmFlags dp lost"), -1;
	for (size_t i = 0; vmc.drop && vmc.image && i < 4 * VMC_PAGE; i++)
		if (vmc.drop[i])
			return snprintf(why, len, "droppable: an image carried its contents"), -1;
	if (vmc.seal && (vmc_bad(vmc.seal, 4, 6) >= 0 || !vmc_has_vmflag(vmc.seal, "sl") ||
			 munmap(vmc.seal, 4 * VMC_PAGE) == 0))
		return snprintf(why, len, "sealed: data, VmFlags sl or the seal lost"), -1;
	return 0;
}

#endif
