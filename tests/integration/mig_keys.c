/*
 * mig_keys.c - the key and encryption options of the CLI, end to end:
 * haul migrate --encrypt moves the workload intact between two network
 * namespaces; a key file that others may read, or that holds no secret, is
 * refused by haul migrate before anything is touched (the workload runs on
 * where it was) and by haul pageserver before it listens.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "th_mig.h"

static struct th_mig M;

static void teardown(void)
{
	th_mig_teardown(&M);
}

/* Run haul migrate to completion; its exit status; *@out gets its last lines. */
static int migrate(const char *const extra[], int timeout_ms, char *out, size_t outlen)
{
	char line[512];
	int fd, st;
	pid_t pid = th_mig_haul(&M, &fd, extra);

	cr_assert_gt(pid, 0);
	st = th_wait_exit(pid, timeout_ms);
	out[0] = '\0';
	while (th_read_line(fd, line, sizeof(line)) == 0) {
		cr_log_info("haul: %s", line);
		snprintf(out + strlen(out), outlen - strlen(out), "%s\n", line);
	}
	close(fd);
	if (st == -ETIMEDOUT)
		th_kill(pid, SIGKILL, 1000);
	return st;
}

Test(mig_keys, encrypt_moves_the_workload_intact, .fini = teardown, .timeout = 90)
{
	const char *extra[] = {"--encrypt", "--downtime", "100", NULL};
	char out[4096];
	long seq;

	th_mig_setup(&M, 0);
	th_mig_workload(&M, 32, 8, 0);
	th_mig_ticks(&M, 3, 10000);
	seq = th_mig_seq(&M);
	cr_assert_eq(migrate(extra, 60000, out, sizeof(out)), 0, "haul migrate --encrypt failed");
	cr_assert(th_mig_ticking(&M, M.net_b, 3000), "the workload does not tick in the target");
	cr_assert_gt(th_mig_seq(&M), seq, "progress went backwards");
	cr_assert(th_mig_verify(&M), "memory is not intact after the move");
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy");
}

Test(mig_keys, readable_or_empty_keys_are_refused_and_the_workload_stays, .fini = teardown,
     .timeout = 60)
{
	const char *extra[] = {"--downtime", "100", NULL};
	char out[4096];
	uint8_t zeros[64] = {0};
	int fd;

	th_mig_setup(&M, 0);
	th_mig_workload(&M, 8, 4, 0);
	th_mig_ticks(&M, 2, 10000);
	/* the fixture's key (random, 0600) becomes readable by others */
	cr_assert_eq(chmod(M.key, 0644), 0);
	cr_assert_eq(migrate(extra, 20000, out, sizeof(out)), 2);
	cr_assert(strstr(out, "chmod 600"), "no advice in: %s", out);
	/* private again, but no secret in it */
	fd = open(M.key, O_WRONLY | O_TRUNC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, zeros, sizeof(zeros)), (ssize_t)sizeof(zeros));
	close(fd);
	cr_assert_eq(chmod(M.key, 0600), 0);
	cr_assert_eq(migrate(extra, 20000, out, sizeof(out)), 2);
	cr_assert(strstr(out, "repeated"), "no reason in: %s", out);
	cr_assert(th_mig_ticking(&M, M.net_a, 3000), "the workload stopped in the source");
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy");
}

/* `haul pageserver --key @key` on a port of its choice: exit status, output in @out. */
static int pageserver(const char *key, char *out, size_t len)
{
	char cmd[512];
	const char *bin = getenv("HAUL_BIN");
	FILE *f;
	size_t n;
	int st;

	snprintf(cmd, sizeof(cmd),
		 "timeout 10 %s pageserver --listen 127.0.0.1:0 --key %s --once 2>&1",
		 bin ? bin : "build/haul", key);
	f = popen(cmd, "r");
	cr_assert_not_null(f);
	n = fread(out, 1, len - 1, f);
	out[n] = '\0';
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(mig_keys, pageserver_refuses_a_readable_key_and_a_short_one)
{
	char key[64], out[2048];
	uint8_t k[64];
	int fd;

	snprintf(key, sizeof(key), "/tmp/haul-keys-%d.key", (int)getpid());
	for (size_t i = 0; i < sizeof(k); i++)
		k[i] = (uint8_t)(i * 151 + 3);
	fd = open(key, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, k, sizeof(k)), (ssize_t)sizeof(k));
	close(fd);
	cr_assert_eq(chmod(key, 0644), 0);
	cr_assert_eq(pageserver(key, out, sizeof(out)), 1, "%s", out);
	cr_assert(strstr(out, "chmod 600"), "no advice in: %s", out);
	cr_assert_eq(chmod(key, 0600), 0);
	cr_assert_eq(truncate(key, 16), 0);
	cr_assert_eq(pageserver(key, out, sizeof(out)), 1, "%s", out);
	cr_assert(strstr(out, "holds 16 bytes"), "no reason in: %s", out);
	unlink(key);
}
