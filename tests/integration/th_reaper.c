/*
 * th_reaper.c - no test leaves a process behind, even when it fails.
 *
 * A failed assertion ends a Criterion test where it stands, so the page
 * servers, workloads and restored processes it started would outlive it.
 * The runner makes itself a child subreaper before any test runs: whatever a
 * test worker started and left behind is reparented to the runner, which
 * kills all of it after the last test.
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
	(void)set;
	prctl(PR_SET_CHILD_SUBREAPER, 1);
}

/* Kill every child of ours (orphans reparented to us included), until none is left. */
static void kill_children(void)
{
	for (int pass = 0; pass < 50; pass++) {
		DIR *d = opendir("/proc");
		struct dirent *e;
		int found = 0;

		if (!d)
			return;
		while ((e = readdir(d))) {
			char path[300], buf[512], *p;
			int ppid;
			FILE *f;

			if (e->d_name[0] < '0' || e->d_name[0] > '9')
				continue;
			snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
			f = fopen(path, "re");
			if (!f)
				continue;
			p = fgets(buf, sizeof(buf), f);
			fclose(f);
			if (!p || !(p = strrchr(buf, ')')))
				continue;
			if (sscanf(p + 1, " %*c %d", &ppid) == 1 && ppid == getpid()) {
				kill(atoi(e->d_name), SIGKILL);
				found++;
			}
		}
		closedir(d);
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if (!found)
			return;
		usleep(20000);
	}
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	kill_children();
}
