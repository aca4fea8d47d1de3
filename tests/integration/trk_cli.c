/*
 * trk_cli.c - `haul check` and `haul track` as a user runs them.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/probe.h"
#include "trk_drive.h"

static char haul_bin[512], target_bin[512];
static struct td cli_drv = {.to = -1, .from = -1};

static void cli_setup(void)
{
	const char *bin = getenv("HAUL_BIN"), *progs = getenv("HAUL_PROGS");

	snprintf(haul_bin, sizeof(haul_bin), "%s", bin ? bin : "build/haul");
	snprintf(target_bin, sizeof(target_bin), "%s/trk_target", progs ? progs : "build/progs");
	cr_assert(access(haul_bin, X_OK) == 0, "%s is not built", haul_bin);
	cr_assert(access(target_bin, X_OK) == 0, "%s is not built", target_bin);
	cr_assert_eq(td_start(&cli_drv, target_bin), 0);
}

static void cli_teardown(void)
{
	td_stop(&cli_drv);
}

/* Run a shell command line; its stdout (at most @cap bytes) into @out; the exit status. */
static int run(const char *cmd, char *out, size_t cap)
{
	FILE *f = popen(cmd, "r");
	size_t n = 0;
	int st;

	cr_assert_not_null(f);
	while (n + 1 < cap) {
		size_t k = fread(out + n, 1, cap - 1 - n, f);

		if (!k)
			break;
		n += k;
	}
	out[n] = '\0';
	/* drain whatever did not fit */
	while (fgetc(f) != EOF)
		;
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TestSuite(trk_cli, .init = cli_setup, .fini = cli_teardown, .timeout = 60);

Test(trk_cli, check_reports_each_feature_and_the_chosen_tracker)
{
	static const char *const must[] = {"uffd-wp async",  "soft-dirty",	  "content hashing",
					   "tracker chosen", "cgroup v2 freezer", "io_uring",
					   "clone3 set_tid", "time namespaces",	  "WP_ASYNC"};
	static char out[16384];
	char cmd[700];
	int rc;

	snprintf(cmd, sizeof(cmd), "%s check", haul_bin);
	rc = run(cmd, out, sizeof(out));
	cr_log_info("%s", out);
	for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++)
		cr_expect_not_null(strstr(out, must[i]), "'haul check' does not mention %s",
				   must[i]);
	if (probe_uffd_wp_async(NULL))
		cr_expect_not_null(strstr(out, "tracker chosen: uffd"));
	cr_assert(rc == 0 || rc == 1, "exit %d", rc);
}

Test(trk_cli, track_json_prints_one_object_per_round_with_dirty_ranges)
{
	static char out[1 << 20];
	char cmd[700], *line, *save = NULL, want[64];
	int rc, lines = 0;

	snprintf(cmd, sizeof(cmd), "%s track %d --interval 20 --rounds 3 --json", haul_bin,
		 (int)cli_drv.pid);
	rc = run(cmd, out, sizeof(out));
	cr_assert_eq(rc, 0, "haul track exited %d", rc);
	/* round 1 holds every populated page: the target's first region starts a range or lies in one */
	snprintf(want, sizeof(want), "\"start\":\"%#llx\"",
		 (unsigned long long)cli_drv.reg[0].addr);
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char key[32];

		lines++;
		snprintf(key, sizeof(key), "{\"round\":%d,", lines);
		cr_assert(!strncmp(line, key, strlen(key)), "line %d: %.80s", lines, line);
		cr_assert_not_null(strstr(line, "\"dirty\":["), "line %d has no dirty array",
				   lines);
		cr_assert_not_null(strstr(line, "\"dirty_mb_s\":"));
		cr_assert_not_null(strstr(line, "\"working_set_pages\":"));
		cr_assert_eq(line[strlen(line) - 1], '}');
		if (lines == 1)
			cr_expect(strstr(line, want) || strstr(line, "\"pages\":"),
				  "round 1 lists no pages");
	}
	cr_assert_eq(lines, 3);
}

Test(trk_cli, track_refuses_a_missing_pid_and_an_unavailable_tracker)
{
	char out[4096], cmd[700];

	snprintf(cmd, sizeof(cmd), "%s track 12abc --rounds 1 2>/dev/null", haul_bin);
	cr_assert_eq(run(cmd, out, sizeof(out)), 2); /* not a pid: usage error */
	snprintf(cmd, sizeof(cmd), "%s track 4000000 --rounds 1 2>/dev/null", haul_bin);
	cr_assert_eq(run(cmd, out, sizeof(out)), 1);
	snprintf(cmd, sizeof(cmd), "%s track %d --tracker bogus 2>/dev/null", haul_bin,
		 (int)cli_drv.pid);
	cr_assert_eq(run(cmd, out, sizeof(out)), 2);
	if (!probe_soft_dirty()) {
		snprintf(cmd, sizeof(cmd), "%s track %d --tracker soft-dirty --rounds 1 2>&1",
			 haul_bin, (int)cli_drv.pid);
		cr_assert_eq(run(cmd, out, sizeof(out)), 1);
		cr_assert_not_null(strstr(out, "soft-dirty"), "no reason given: %s", out);
	}
}

Test(trk_cli, track_text_shows_rate_and_working_set)
{
	char out[8192], cmd[700];

	snprintf(cmd, sizeof(cmd), "%s track %d --interval 10 --rounds 2 --tracker hash", haul_bin,
		 (int)cli_drv.pid);
	cr_assert_eq(run(cmd, out, sizeof(out)), 0);
	cr_assert_not_null(strstr(out, "with hash"), "%s", out);
	cr_assert_not_null(strstr(out, "round 2:"), "%s", out);
	cr_assert_not_null(strstr(out, "MB/s"), "%s", out);
	cr_assert_not_null(strstr(out, "working set"), "%s", out);
}
