/*
 * rst_fd_inet.c - the socket kinds' validate hook (fd_inet.c): an image's
 * InetSocket part is refused at load, the file named, when it could not be
 * a socket of its kind (wrong address length, a TCP connection on a UDP
 * socket, a listener without backlog, queues beyond their bound, a
 * timeout on an option that has none).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "restore/fd_inet.h"

static uint8_t v4[4] = {198, 18, 0, 1}, v6[16] = {0x20, 0x01, 0, 2};

struct sock {
	Haul__Img__FileObject f;
	Haul__Img__InetSocket s;
	Haul__Img__TcpRepair r;
};

static void tcp_conn(struct sock *k)
{
	haul__img__file_object__init(&k->f);
	haul__img__inet_socket__init(&k->s);
	haul__img__tcp_repair__init(&k->r);
	k->f.id = 9;
	k->f.kind = HAUL__IMG__FD_KIND__FD_TCP;
	k->f.inet = &k->s;
	k->s.family = AF_INET;
	k->s.type = SOCK_STREAM;
	k->s.protocol = IPPROTO_TCP;
	k->s.has_local_addr = k->s.has_peer_addr = true;
	k->s.local_addr = (ProtobufCBinaryData){4, v4};
	k->s.peer_addr = (ProtobufCBinaryData){4, v4};
	k->s.local_port = 6379;
	k->s.peer_port = 51234;
	k->s.tcp = &k->r;
	k->r.mss = 1448;
}

static void refused(struct sock *k, const char *what)
{
	char why[256] = "";

	cr_assert_eq(rst_inet_validate(&k->f, why, sizeof(why)), -EBADMSG, "%s accepted", what);
	cr_expect(strstr(why, "file 9"), "the refusal does not name the file: %s", why);
}

Test(rst_fd_inet, a_sane_connection_passes)
{
	struct sock k;
	char why[256] = "";

	tcp_conn(&k);
	cr_expect_eq(rst_inet_validate(&k.f, why, sizeof(why)), 0, "%s", why);
}

Test(rst_fd_inet, an_address_of_the_other_familys_length_is_refused)
{
	struct sock k;

	tcp_conn(&k);
	k.s.peer_addr = (ProtobufCBinaryData){16, v6};
	refused(&k, "an IPv6 peer on an IPv4 socket");
}

Test(rst_fd_inet, a_tcp_connection_on_a_udp_socket_is_refused)
{
	struct sock k;

	tcp_conn(&k);
	k.f.kind = HAUL__IMG__FD_KIND__FD_UDP;
	k.s.type = SOCK_DGRAM;
	k.s.protocol = IPPROTO_UDP;
	refused(&k, "a TCP part on a UDP socket");
}

Test(rst_fd_inet, a_listener_without_backlog_and_a_file_without_its_part_are_refused)
{
	struct sock k;

	tcp_conn(&k);
	k.s.tcp = NULL;
	k.f.kind = HAUL__IMG__FD_KIND__FD_TCP_LISTEN;
	refused(&k, "a listener without backlog");
	k.f.inet = NULL;
	refused(&k, "a socket file without its inet part");
}

Test(rst_fd_inet, queues_beyond_their_bound_or_more_unsent_than_queued_are_refused)
{
	struct sock k;

	tcp_conn(&k);
	k.r.unsent = 10;
	refused(&k, "10 unsent bytes of an empty queue");
	k.r.unsent = 0;
	k.r.recv_queue.len = (64u << 20) + 1;
	refused(&k, "a receive queue above 64 MiB");
}

Test(rst_fd_inet, a_timeout_only_on_the_timeout_options_and_bounded)
{
	struct sock k;
	Haul__Img__SockOpt o, *op = &o;
	char why[256] = "";

	tcp_conn(&k);
	haul__img__sock_opt__init(&o);
	k.s.n_opts = 1;
	k.s.opts = &op;
	o.level = SOL_SOCKET;
	o.name = SO_RCVTIMEO;
	o.has_usec = true;
	o.usec = 2500000;
	cr_expect_eq(rst_inet_validate(&k.f, why, sizeof(why)), 0, "%s", why);
	o.has_usec = false;
	refused(&k, "SO_RCVTIMEO without its timeout");
	o.has_usec = true;
	o.usec = UINT64_MAX;
	refused(&k, "a timeout beyond 2^62 us");
	o.usec = 1;
	o.name = SO_KEEPALIVE;
	refused(&k, "a timeout on SO_KEEPALIVE");
}

Test(rst_fd_inet, a_congestion_control_name_that_is_not_one_is_refused)
{
	struct sock k;
	char why[256] = "";

	tcp_conn(&k);
	k.s.congestion = "bbr";
	cr_expect_eq(rst_inet_validate(&k.f, why, sizeof(why)), 0, "%s", why);
	k.s.congestion = "bbr;rm -rf /";
	refused(&k, "a congestion control name with a space");
	k.s.congestion = "averyveryverylongname";
	refused(&k, "a congestion control name of 21 bytes");
}

Test(rst_fd_inet, multicast_groups_only_on_udp_and_of_the_familys_length)
{
	struct sock k;
	Haul__Img__McGroup m, *mp = &m;
	uint8_t g[4] = {239, 7, 7, 7};
	char why[256] = "";

	tcp_conn(&k);
	k.s.tcp = NULL;
	k.f.kind = HAUL__IMG__FD_KIND__FD_UDP;
	k.s.type = SOCK_DGRAM;
	k.s.protocol = IPPROTO_UDP;
	haul__img__mc_group__init(&m);
	m.ifname = "eth0";
	m.group = (ProtobufCBinaryData){4, g};
	k.s.mc = &mp;
	k.s.n_mc = 1;
	cr_expect_eq(rst_inet_validate(&k.f, why, sizeof(why)), 0, "%s", why);
	m.group.len = 16;
	refused(&k, "a 16-byte group on an IPv4 socket");
	m.group.len = 4;
	m.ifname = "";
	refused(&k, "a group on no interface");
}
