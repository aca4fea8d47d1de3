/*
 * rst_unix_scm.c - files in flight (SCM_RIGHTS) in the queue of a unix
 * stream socketpair across `haul checkpoint` + `haul restore`
 * (tests/progs/unix_scm_stream): the reader gets each file with the bytes
 * it was sent with, and each read ends where the kernel ended it before
 * (plain bytes before a buffer with files are read with it, nothing after
 * it); the files work (a file at its offset, an append-only file, a pipe
 * and an eventfd the sender holds; a pipe with its bytes, an eventfd and a
 * sealed memfd that no process holds any more, a socket end whose peer is
 * closed, with its bytes).  A checkpoint that leaves the process running
 * leaves its queue as it was; a device in flight that no process holds is
 * refused by name, and the queue is kept.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>

#include "th_tree.h"

static void cycle(const char *mode)
{
	th_tree_cycle("uscm", "unix_scm_stream", mode);
}

Test(rst_unix_scm, a_stream_queue_gives_each_file_with_the_bytes_it_was_sent_with, .timeout = 120)
{
	cycle("solo");
}

Test(rst_unix_scm, files_in_flight_from_parent_to_child_on_a_stream_come_back_at_their_bytes,
     .timeout = 120)
{
	cycle("tree");
}

Test(rst_unix_scm, a_checkpoint_that_leaves_the_process_running_leaves_its_queue_as_it_was,
     .timeout = 120)
{
	th_tree_checkpoint_runs_on("uscm", "unix_scm_stream", "tree", true, 0, true);
}

Test(rst_unix_scm, a_pipe_an_eventfd_and_a_memfd_in_flight_that_no_process_holds_work,
     .timeout = 120)
{
	cycle("pipe");
}

Test(rst_unix_scm, a_socket_end_in_flight_whose_peer_is_closed_keeps_its_bytes, .timeout = 120)
{
	cycle("sock");
}

/* Refused before anything was touched: the process reads its queue as it was. */
Test(rst_unix_scm, a_device_in_flight_that_no_process_holds_is_refused_and_the_queue_kept,
     .timeout = 120)
{
	th_tree_checkpoint_runs_on("uscm", "unix_scm_stream", "dev", false, -EOPNOTSUPP, true);
}
