/*
 * trk_sd_guest.c - the soft-dirty backend's accuracy test, run as PID 1 of a
 * qemu guest booted with Debian's stock kernel (which has
 * CONFIG_MEM_SOFT_DIRTY; ours does not).  Built statically together with
 * the tracker sources by tests/extra/trk_softdirty_qemu.sh.
 *
 * It mounts /proc, starts /trk_target, runs the same scenario as
 * tests/integration/trk_accuracy.c with the soft-dirty backend, prints one
 * "TRK-SD: PASS ..." or "TRK-SD: FAIL ..." or "TRK-SD: SKIP ..." line on
 * the console and powers the guest off.
 */
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>

#include "../integration/trk_drive.h"
#include "common/log.h"
#include "common/probe.h"

/* The tracker benchmark, if the image has it: soft-dirty's figures exist only here. */
static void run_bench(void)
{
	pid_t pid;
	int st;

	if (access("/trk_bench", X_OK))
		return;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		execl("/trk_bench", "trk_bench", "64", (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, &st, 0);
}

static void finish(void)
{
	fflush(stdout);
	sync();
	reboot(RB_AUTOBOOT); /* qemu -no-reboot turns this into an exit */
	_exit(0);
}

int main(void)
{
	struct td_stats s;
	struct td d;
	char err[512] = "";
	int ret;

	log_init("trk_sd_guest");
	mkdir("/proc", 0755);
	mkdir("/tmp", 01777);
	if (mount("proc", "/proc", "proc", 0, NULL) && errno != EBUSY)
		printf("TRK-SD: FAIL cannot mount /proc: %s\n", strerror(errno));
	if (!probe_soft_dirty()) {
		printf("TRK-SD: FAIL soft-dirty does not track writes on this guest kernel\n");
		finish();
	}
	ret = td_start(&d, "/trk_target");
	if (ret) {
		printf("TRK-SD: FAIL cannot start /trk_target: %s\n", strerror(-ret));
		finish();
	}
	ret = td_scenario(&d, TRK_SOFT_DIRTY, false, &s, err, sizeof(err));
	td_stop(&d);
	if (ret) {
		printf("TRK-SD: FAIL %s\n", err);
		finish();
	}
	printf("TRK-SD: scenario: %llu rounds, %llu pages written, %llu missed, %llu false "
	       "positives, slowest round %.2f ms, longest stop %.3f ms\n",
	       (unsigned long long)s.rounds, (unsigned long long)s.written,
	       (unsigned long long)s.missed, (unsigned long long)s.false_pos, s.max_round_ms,
	       s.stop_ms);
	/* pre-copy while 4 threads write: soft-dirty must hold them all still */
	ret = td_start(&d, "/trk_target");
	if (!ret)
		ret = td_precopy(&d, TRK_SOFT_DIRTY, 4, 10, &s, err, sizeof(err));
	else
		snprintf(err, sizeof(err), "cannot restart /trk_target");
	td_stop(&d);
	if (ret) {
		printf("TRK-SD: FAIL pre-copy: %s\n", err);
		finish();
	}
	printf("TRK-SD: pre-copy under 4 writers: %llu rounds, %llu pages written, 0 differ; "
	       "slowest round %.3f ms\n",
	       (unsigned long long)s.rounds, (unsigned long long)s.written, s.max_round_ms);
	/* the whole address space while a thread remaps, zaps and writes nonstop */
	ret = td_start(&d, "/trk_target");
	if (!ret)
		ret = td_churn_precopy(&d, TRK_SOFT_DIRTY, 20, &s, err, sizeof(err));
	else
		snprintf(err, sizeof(err), "cannot restart /trk_target");
	td_stop(&d);
	if (ret) {
		printf("TRK-SD: FAIL churn: %s\n", err);
		finish();
	}
	run_bench();
	printf("TRK-SD: PASS whole-process copy under layout churn: %llu rounds, %llu "
	       "dirty pages, 0 differ, 0 stale\n",
	       (unsigned long long)s.rounds, (unsigned long long)s.dirty);
	finish();
	return 0;
}
