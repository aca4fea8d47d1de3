/*
 * probe.c - kernel feature probes, each run once and cached.
 *
 * Each probe performs the operation haul will later depend on, on an object
 * of its own, and keeps the -errno it got: a feature "exists" only if the
 * call works here, as this user, on this kernel.  Nothing is inferred from
 * the kernel version.  pthread_once makes every probe run at most once per
 * process even when modules call them from different threads.
 */
#define LOG_PREFIX "probe: "
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/probe.h"
#include "common/sysno.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

/* ---- PAGEMAP_SCAN ----------------------------------------------------------- */

static pthread_once_t pms_once = PTHREAD_ONCE_INIT;
static bool pms_ok;

static void pms_probe(void)
{
	struct page_region reg;
	struct pm_scan_arg arg;
	char *page;
	int fd;

	page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		return;
	page[0] = 1;
	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		memset(&arg, 0, sizeof(arg));
		arg.size = sizeof(arg);
		arg.start = (uintptr_t)page;
		arg.end = (uintptr_t)page + 4096;
		arg.vec = (uintptr_t)&reg;
		arg.vec_len = 1;
		arg.category_anyof_mask = PAGE_IS_PRESENT;
		arg.return_mask = PAGE_IS_PRESENT;
		/* returns the number of regions filled: one present page */
		pms_ok = ioctl(fd, PAGEMAP_SCAN, &arg) == 1;
		close(fd);
	}
	munmap(page, 4096);
}

bool probe_pagemap_scan(void)
{
	pthread_once(&pms_once, pms_probe);
	return pms_ok;
}

/* ---- userfaultfd ------------------------------------------------------------ */

static pthread_once_t uffd_once = PTHREAD_ONCE_INIT;
static uint64_t uffd_features;
static int uffd_err;

static int uffd_create(void)
{
	int fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK), dev;

	if (fd >= 0)
		return fd;
	if (errno != EPERM)
		return -errno;
	/* vm.unprivileged_userfaultfd=0 without privilege: /dev/userfaultfd may still work */
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return -EPERM;
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	close(dev);
	return fd < 0 ? -errno : fd;
}

static void uffd_probe(void)
{
	struct uffdio_api api = {.api = UFFD_API};
	int fd = uffd_create();

	if (fd < 0) {
		uffd_err = fd;
		return;
	}
	/* features = 0 asks for nothing and reports everything on offer */
	if (ioctl(fd, UFFDIO_API, &api) < 0)
		uffd_err = -errno;
	else
		uffd_features = api.features;
	close(fd);
}

int probe_uffd_features(uint64_t *features)
{
	pthread_once(&uffd_once, uffd_probe);
	if (uffd_err)
		return uffd_err;
	*features = uffd_features;
	return 0;
}

/* ---- pidfd_getfd ------------------------------------------------------------ */

static pthread_once_t getfd_once = PTHREAD_ONCE_INIT;
static bool getfd_ok;

static void getfd_probe(void)
{
	int pidfd = syscall(SYS_pidfd_open, getpid(), 0), fd;

	if (pidfd < 0)
		return;
	fd = syscall(SYS_pidfd_getfd, pidfd, pidfd, 0);
	if (fd >= 0) {
		getfd_ok = true;
		close(fd);
	}
	close(pidfd);
}

bool probe_pidfd_getfd(void)
{
	pthread_once(&getfd_once, getfd_probe);
	return getfd_ok;
}

bool probe_uffd_wp_async(const char **why)
{
	const uint64_t need = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
	const char *dummy;
	uint64_t f;

	if (!why)
		why = &dummy;
	if (probe_uffd_features(&f)) {
		*why = "userfaultfd cannot be created";
		return false;
	}
	if ((f & need) != need) {
		*why = "userfaultfd lacks WP_ASYNC/WP_UNPOPULATED (kernel < 6.7)";
		return false;
	}
	if (!probe_pagemap_scan()) {
		*why = "ioctl(PAGEMAP_SCAN) is missing (kernel < 6.7)";
		return false;
	}
	if (!probe_pidfd_getfd()) {
		*why = "pidfd_getfd is missing (kernel < 5.6)";
		return false;
	}
	*why = NULL;
	return true;
}

/* ---- soft-dirty ------------------------------------------------------------- */

static pthread_once_t sd_once = PTHREAD_ONCE_INIT;
static bool sd_ok;

static int pagemap_entry(int fd, const void *addr, uint64_t *e)
{
	off_t off = (off_t)((uintptr_t)addr / 4096) * 8;

	if (pread(fd, e, 8, off) != 8)
		return -EIO;
	return 0;
}

static void sd_probe(void)
{
	volatile char *page;
	uint64_t before, after;
	int pm, cr;

	page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		return;
	page[0] = 1;
	pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	cr = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
	if (pm < 0 || cr < 0)
		goto out;
	if (write(cr, "4", 1) != 1)
		goto out;
	if (pagemap_entry(pm, (const void *)page, &before))
		goto out;
	page[0] = 2;
	if (pagemap_entry(pm, (const void *)page, &after))
		goto out;
	/* without CONFIG_MEM_SOFT_DIRTY clear_refs 4 is accepted and bit 55 never moves */
	sd_ok = !(before & PM_ENTRY_SOFT_DIRTY) && (after & PM_ENTRY_SOFT_DIRTY);
out:
	if (pm >= 0)
		close(pm);
	if (cr >= 0)
		close(cr);
	munmap((void *)page, 4096);
}

bool probe_soft_dirty(void)
{
	pthread_once(&sd_once, sd_probe);
	return sd_ok;
}

/* ---- cgroups ---------------------------------------------------------------- */

static pthread_once_t cg_once = PTHREAD_ONCE_INIT;
static struct probe_cgroup cg;

/* mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS" */
static void cg_probe(void)
{
	bool v1 = false, v2 = false;
	char *line = NULL, path[512];
	size_t cap = 0;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return;
	while (getline(&line, &cap, f) > 0) {
		char mnt[256], fstype[32], super[512];
		char *dash = strstr(line, " - ");

		if (!dash || sscanf(line, "%*s %*s %*s %*s %255s", mnt) != 1 ||
		    sscanf(dash + 3, "%31s %*s %511s", fstype, super) != 2)
			continue;
		if (!strcmp(fstype, "cgroup2")) {
			if (!v2)
				snprintf(cg.v2_mount, sizeof(cg.v2_mount), "%s", mnt);
			v2 = true;
		} else if (!strcmp(fstype, "cgroup")) {
			char *opt, *save = NULL;

			v1 = true;
			for (opt = strtok_r(super, ",", &save); opt;
			     opt = strtok_r(NULL, ",", &save))
				if (!strcmp(opt, "freezer") && !cg.v1_freezer[0])
					snprintf(cg.v1_freezer, sizeof(cg.v1_freezer), "%s", mnt);
		}
	}
	/* getline() below would reuse a stale buffer of this size: start afresh */
	free(line);
	line = NULL;
	cap = 0;
	fclose(f);
	cg.layout = v1 && v2 ? PROBE_CG_HYBRID
		    : v2     ? PROBE_CG_V2
		    : v1     ? PROBE_CG_V1
			     : PROBE_CG_NONE;
	if (!v2)
		return;
	/*
	 * The v2 freezer (5.2+) is a core file of every non-root group, not a
	 * controller; look for it in our own group, or any child of the root.
	 */
	f = fopen("/proc/self/cgroup", "re");
	if (f) {
		while (getline(&line, &cap, f) > 0) {
			if (strncmp(line, "0::", 3))
				continue;
			line[strcspn(line, "\n")] = '\0';
			snprintf(path, sizeof(path), "%s%s/cgroup.freeze", cg.v2_mount, line + 3);
			cg.v2_freeze = access(path, F_OK) == 0;
		}
		free(line);
		fclose(f);
	}
	if (!cg.v2_freeze) {
		/* we may sit in the root group: any child group tells the same */
		snprintf(path, sizeof(path), "%s/init.scope/cgroup.freeze", cg.v2_mount);
		cg.v2_freeze = access(path, F_OK) == 0;
		if (!cg.v2_freeze) {
			snprintf(path, sizeof(path), "%s/system.slice/cgroup.freeze", cg.v2_mount);
			cg.v2_freeze = access(path, F_OK) == 0;
		}
	}
	if (!cg.v2_freeze) {
		/* a fresh empty group of our own settles it (needs write access) */
		snprintf(path, sizeof(path), "%s/haul-probe-%d", cg.v2_mount, (int)getpid());
		if (mkdir(path, 0700) == 0) {
			char file[600];

			snprintf(file, sizeof(file), "%s/cgroup.freeze", path);
			cg.v2_freeze = access(file, F_OK) == 0;
			rmdir(path);
		}
	}
}

const struct probe_cgroup *probe_cgroup(void)
{
	pthread_once(&cg_once, cg_probe);
	return &cg;
}

const char *probe_cg_layout_name(enum probe_cg_layout l)
{
	switch (l) {
	case PROBE_CG_V1:
		return "v1";
	case PROBE_CG_V2:
		return "v2";
	case PROBE_CG_HYBRID:
		return "hybrid";
	default:
		return "none";
	}
}

/* ---- io_uring --------------------------------------------------------------- */

static pthread_once_t uring_once = PTHREAD_ONCE_INIT;
static int uring_err = -EOPNOTSUPP;

static void uring_probe(void)
{
	struct io_uring_params p;
	int fd;

	memset(&p, 0, sizeof(p));
	fd = syscall(SYS_io_uring_setup, 1, &p);
	if (fd < 0) {
		/* ENOSYS: not compiled; EPERM: kernel.io_uring_disabled or its group */
		uring_err = -errno;
		return;
	}
	uring_err = 0;
	close(fd);
}

bool probe_io_uring(void)
{
	pthread_once(&uring_once, uring_probe);
	return uring_err == 0;
}

int probe_io_uring_err(void)
{
	pthread_once(&uring_once, uring_probe);
	return uring_err;
}

/* ---- clone3 set_tid ----------------------------------------------------------- */

static pthread_once_t settid_once = PTHREAD_ONCE_INIT;
static int settid_err = -EOPNOTSUPP;

static void settid_probe(void)
{
	pid_t want = getpid();
	struct clone_args args;
	long ret;

	memset(&args, 0, sizeof(args));
	args.exit_signal = SIGCHLD;
	args.set_tid = (uintptr_t)&want;
	args.set_tid_size = 1;
	/*
	 * Our own PID is taken, so a kernel that honours set_tid fails with
	 * EEXIST and creates nothing.  E2BIG/EINVAL: no set_tid (< 5.5);
	 * EPERM: no CAP_CHECKPOINT_RESTORE.
	 */
	ret = syscall(SYS_clone3, &args, sizeof(args));
	if (ret == 0)
		_exit(0); /* cannot happen: our PID is in use; never run on as a copy */
	if (ret > 0) {
		waitpid((pid_t)ret, NULL, 0);
		settid_err = -EIO;
		return;
	}
	settid_err = errno == EEXIST ? 0 : errno == E2BIG ? -EOPNOTSUPP : -errno;
}

bool probe_clone3_set_tid(void)
{
	pthread_once(&settid_once, settid_probe);
	return settid_err == 0;
}

int probe_clone3_set_tid_err(void)
{
	pthread_once(&settid_once, settid_probe);
	return settid_err;
}

/* ---- time namespaces -------------------------------------------------------- */

static pthread_once_t timens_once = PTHREAD_ONCE_INIT;
static int timens_err = -EOPNOTSUPP;

static void timens_probe(void)
{
	int status;
	pid_t pid;

	if (access("/proc/self/ns/time", F_OK)) {
		timens_err = -EOPNOTSUPP;
		return;
	}
	/* unshare in a child: the new namespace would apply to our future children */
	pid = fork();
	if (pid < 0) {
		timens_err = -errno;
		return;
	}
	if (pid == 0)
		_exit(unshare(CLONE_NEWTIME) ? (errno & 0x7f) : 0);
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status)) {
		timens_err = -ECHILD;
		return;
	}
	timens_err = -WEXITSTATUS(status);
}

bool probe_time_ns(void)
{
	pthread_once(&timens_once, timens_probe);
	return timens_err == 0;
}

int probe_time_ns_err(void)
{
	pthread_once(&timens_once, timens_probe);
	return timens_err;
}
