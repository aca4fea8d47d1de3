/*
 * mig_unix_tree.c - `haul migrate` of a tree whose processes talk over unix
 * sockets (tests/progs/rst_unix_tree both): a parent and its child holding
 * one end each of a stream, a datagram and a seqpacket socketpair, and the
 * child connected to the parent's stream and seqpacket listeners on paths,
 * with data in flight both ways at the switchover.  The tree moves from
 * network namespace A to B; there each program checks, byte for byte and
 * message by message, what it had to read, and talks over every channel.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "th_mig.h"
#include "th_rst.h"

static struct th_mig M;
static char dir[160]; /* the program's DIR: holds the tag, so teardown finds every copy */

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static void touch(const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	close(open(path, O_WRONLY | O_CREAT, 0644));
}

static void teardown(void)
{
	touch("go");
	th_mig_teardown(&M);
}

/* Wait (bounded) until DIR/@name holds @needle. */
static bool wait_for(const char *name, const char *needle, int ms)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	for (int t = 0; t < ms; t += 10) {
		const char *s = th_slurp(path);

		if (s && strstr(s, needle))
			return true;
		sleep_ms(10);
	}
	return false;
}

Test(mig_unix_tree, socketpairs_and_connections_between_processes_keep_their_queues,
     .fini = teardown, .timeout = 150)
{
	const char *extra[] = {"--downtime", "50", NULL};
	char bin[512], out[200], path[256];
	char *argv[] = {bin, "both", dir, NULL};
	struct stat ns;
	pid_t pid, there;
	int fd, st;

	th_mig_setup(&M, 0);
	snprintf(dir, sizeof(dir), "%s/%s", M.dir, M.tag);
	mkdir(dir, 0755);
	snprintf(bin, sizeof(bin), "%s/rst_unix_tree", th_progs_dir());
	snprintf(out, sizeof(out), "%s/root.stdout", dir);
	M.wl_pid = th_spawn(M.net.a, argv, out);
	cr_assert_gt(M.wl_pid, 0);
	snprintf(path, sizeof(path), "%s/ready-child", dir);
	for (int i = 0; i < 1000 && access(path, F_OK); i++)
		sleep_ms(10);
	snprintf(path, sizeof(path), "%s/ready-parent", dir);
	for (int i = 0; i < 1000 && access(path, F_OK); i++)
		sleep_ms(10);
	cr_assert_eq(access(path, F_OK), 0, "the tree never got ready");
	pid = th_mig_haul(&M, &fd, extra);
	cr_assert_gt(pid, 0);
	st = th_wait_exit(pid, 90000);
	if (st)
		th_mig_dump_output(fd);
	close(fd);
	cr_assert_eq(st, 0, "haul migrate of the tree failed");
	cr_assert_eq(th_mig_json(&M, "processes"), 2);
	there = (pid_t)th_mig_json(&M, "target_pid");
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)there);
	cr_assert(there > 0 && !stat(path, &ns) && ns.st_ino == M.net_b,
		  "the tree does not run in the target");
	touch("go");
	cr_expect(wait_for("child.out", "ok child", 20000), "child: %s",
		  th_slurp(strcat(strcpy(path, dir), "/child.out")));
	cr_expect(wait_for("parent.out", "ok parent", 20000), "parent: %s",
		  th_slurp(strcat(strcpy(path, dir), "/parent.out")));
}
