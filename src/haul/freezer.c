/*
 * freezer.c - freeze and thaw a workload's cgroup, v2 or v1.
 *
 * cgroup2: write 1 to cgroup.freeze, then wait for "frozen 1" in
 * cgroup.events.  The kernel notifies changes of cgroup.events with POLLPRI,
 * but rate-limits the notifications (about one per 10 ms), so the wait also
 * re-reads the file on a short period (a freeze takes ~40-70 us on a 2-core VM).
 * v1: write FROZEN to freezer.state and re-read it until it says FROZEN
 * (FREEZING while tasks are still on their way).
 *
 * Freezing a task that is in ptrace-stop completes at once (it counts as
 * frozen) and it stays frozen when the tracer detaches: migrate relies on
 * this to hand a seized process from ptrace to the freezer (measured on
 * 6.18, cgroup2).
 *
 * Why the freezer and not only ptrace: it stops every task of the cgroup at
 * once, and a frozen cgroup stays frozen when haul dies, which is what the
 * source needs past the commit point (see migrate.c and DESIGN.md).
 */
#define LOG_PREFIX "freezer: "
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "haul/haul_int.h"

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static bool v2_is_frozen(const char *dir)
{
	char buf[256];

	if (haul_cg_read(dir, "cgroup.events", buf, sizeof(buf)) <= 0)
		return false;
	return strstr(buf, "frozen 1") != NULL;
}

static int v2_wait_frozen(const char *dir, int timeout_ms)
{
	char path[PATH_MAX + 32];
	double deadline = now_ms() + timeout_ms;
	struct pollfd pfd;
	int ret = -ETIMEDOUT;

	snprintf(path, sizeof(path), "%s/cgroup.events", dir);
	pfd.fd = open(path, O_RDONLY | O_CLOEXEC);
	if (pfd.fd < 0)
		return -errno;
	pfd.events = POLLPRI;
	for (;;) {
		char buf[256];
		ssize_t n;

		/* reading re-arms the notification */
		n = pread(pfd.fd, buf, sizeof(buf) - 1, 0);
		if (n < 0) {
			ret = -errno;
			break;
		}
		buf[n] = '\0';
		if (strstr(buf, "frozen 1")) {
			ret = 0;
			break;
		}
		if (now_ms() >= deadline)
			break;
		poll(&pfd, 1, HAUL_FREEZE_REREAD_MS);
	}
	close(pfd.fd);
	return ret;
}

static int v1_wait_frozen(const char *dir, int timeout_ms)
{
	double deadline = now_ms() + timeout_ms;
	struct timespec ts = {0, HAUL_FREEZE_V1_POLL_US * 1000L};
	char buf[64];
	int ret;

	for (;;) {
		ret = haul_cg_read(dir, "freezer.state", buf, sizeof(buf));
		if (ret < 0)
			return ret;
		if (!strncmp(buf, "FROZEN", 6))
			return 0;
		if (now_ms() >= deadline)
			return -ETIMEDOUT;
		/* FREEZING: some task has not reached the refrigerator yet; ask again */
		haul_cg_write(dir, "freezer.state", "FROZEN");
		nanosleep(&ts, NULL);
	}
}

int haul_freeze_begin(const struct haul_cg *cg)
{
	int ret;

	if (cg->v2_freezer)
		ret = haul_cg_write(cg->freezer_dir, "cgroup.freeze", "1");
	else
		ret = haul_cg_write(cg->freezer_dir, "freezer.state", "FROZEN");
	if (ret)
		pr_err_r(ret, "cannot freeze pid %d in '%s'", cg->pid, cg->freezer_dir);
	return ret;
}

int haul_freeze_settled(const struct haul_cg *cg, int timeout_ms)
{
	if (cg->v2_freezer)
		return v2_wait_frozen(cg->freezer_dir, timeout_ms);
	return v1_wait_frozen(cg->freezer_dir, timeout_ms);
}

int haul_freeze_wait(const struct haul_cg *cg, int timeout_ms)
{
	int ret = haul_freeze_settled(cg, timeout_ms);

	if (ret == -ETIMEDOUT)
		pr_err("pid %d did not freeze within %d ms in '%s'", cg->pid, timeout_ms,
		       cg->freezer_dir);
	else if (ret)
		pr_err_r(ret, "cannot wait for pid %d to freeze in '%s'", cg->pid, cg->freezer_dir);
	return ret;
}

int haul_freeze(const struct haul_cg *cg, int timeout_ms)
{
	int ret = haul_freeze_begin(cg);

	return ret ? ret : haul_freeze_wait(cg, timeout_ms);
}

int haul_thaw(const struct haul_cg *cg)
{
	if (cg->v2_freezer)
		return haul_cg_write(cg->freezer_dir, "cgroup.freeze", "0");
	return haul_cg_write(cg->freezer_dir, "freezer.state", "THAWED");
}

bool haul_frozen(const struct haul_cg *cg)
{
	char buf[64];

	if (cg->v2_freezer)
		return v2_is_frozen(cg->freezer_dir);
	if (haul_cg_read(cg->freezer_dir, "freezer.state", buf, sizeof(buf)) <= 0)
		return false;
	return strncmp(buf, "THAWED", 6) != 0;
}
