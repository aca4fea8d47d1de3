/*
 * rst_unix_tree.c - unix sockets between the processes of a tree across
 * `haul checkpoint` + `haul restore` (tests/progs/rst_unix_tree): socketpairs
 * of each type whose ends a parent and its child hold one each, and
 * connections of a client process to another process's listener (on a
 * path, on an abstract name, the client first in tree order), all with
 * data in flight both ways; a named datagram socket (a syslog) with
 * datagrams queued from senders of both processes (connected, by sendto,
 * named), the socket in the first or in the second process; connections
 * a listener had not accepted yet, back in its queue in their order;
 * regular files in flight (SCM_RIGHTS) on a seqpacket pair, with their
 * offset and flags; one the sender still holds comes back as the sender's
 * open file (the receiver's read moves the sender's offset), and so do a
 * pipe end, an eventfd and a socketpair end the sender holds; one that a
 * process restored after the queue's owner holds is refused by name.  The programs check after the restore, byte
 * for byte and message by message, what they had to read, then talk over
 * every channel.  A pair whose other end is outside the tree is refused
 * by name and the tree runs on.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>

#include "th_tree.h"

/* rst_unix_tree @mode: checkpoint once both sides are ready, restore, let them check. */
static void cycle(const char *mode)
{
	th_tree_cycle("utree", "rst_unix_tree", mode);
}

/* rst_unix_tree @mode is refused at the checkpoint and runs on to its end. */
static void refused(const char *mode)
{
	th_tree_checkpoint_runs_on("utree", "rst_unix_tree", mode, false, -EOPNOTSUPP, false);
}

Test(rst_unix_tree, socketpairs_split_between_parent_and_child_keep_their_queues, .timeout = 120)
{
	cycle("pairs");
}

Test(rst_unix_tree, child_connected_to_its_parents_path_listener_keeps_both_queues, .timeout = 120)
{
	cycle("conn-path");
}

Test(rst_unix_tree, child_connected_to_its_parents_abstract_listener_keeps_both_queues,
     .timeout = 120)
{
	cycle("conn-abstract");
}

Test(rst_unix_tree, parent_connected_to_its_childs_listener_keeps_both_queues, .timeout = 120)
{
	cycle("conn-client");
}

Test(rst_unix_tree, a_named_datagram_socket_keeps_its_queue_and_senders_from_both_processes,
     .timeout = 120)
{
	cycle("dgram");
}

Test(rst_unix_tree, senders_restored_before_the_named_datagram_socket_connect_to_it_again,
     .timeout = 120)
{
	cycle("dgram-rev");
}

Test(rst_unix_tree, connections_not_accepted_yet_wait_in_the_listeners_queue_in_order,
     .timeout = 120)
{
	cycle("pending");
}

Test(rst_unix_tree, clients_restored_before_their_listener_are_queued_in_order, .timeout = 120)
{
	cycle("pending-rev");
}

Test(rst_unix_tree, one_process_reconnects_its_sender_and_client_made_before_their_peers,
     .timeout = 120)
{
	cycle("solo");
}

Test(rst_unix_tree, files_in_flight_come_back_with_their_message_offset_and_flags, .timeout = 120)
{
	cycle("scm");
}

Test(rst_unix_tree, a_pipe_end_an_eventfd_and_a_socket_end_in_flight_that_the_sender_holds_work,
     .timeout = 120)
{
	cycle("scm-kinds");
}

Test(rst_unix_tree, a_file_in_flight_its_sender_still_holds_shares_its_offset_after_restore,
     .timeout = 120)
{
	cycle("scm-held");
}

Test(rst_unix_tree, a_file_in_flight_a_later_process_holds_is_refused_by_name, .timeout = 120)
{
	refused("scm-later");
}

Test(rst_unix_tree, a_pair_whose_other_end_is_outside_the_tree_is_refused_by_name, .timeout = 120)
{
	refused("outside");
}
