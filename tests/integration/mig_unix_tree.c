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

#include "th_mig.h"
#include "th_tree.h"

static struct th_mig M;
static char dir[160]; /* the program's DIR: holds the tag, so teardown finds every copy */

static void teardown(void)
{
	if (dir[0]) /* not when the setup skipped the test */
		th_tree_touch(dir, "go");
	th_mig_teardown(&M);
}

Test(mig_unix_tree, socketpairs_and_connections_between_processes_keep_their_queues,
     .fini = teardown, .timeout = 150)
{
	th_tree_start_in_a(&M, dir, sizeof(dir), "rst_unix_tree", "both");
	th_tree_migrate(&M);
	cr_assert_eq(th_mig_json(&M, "processes"), 2);
	th_tree_assert_in_b(&M);
	th_tree_touch(dir, "go");
	th_tree_expect_ok(dir, 20000);
}
