/*
 * net_snap.c - the inet sockets read before the freeze and verified at it
 * (haul_net_snap_take / haul_net_snap_again, src/haul/netsock.c).
 *
 * The sockets are the test process's own, on 127.0.0.1 with ports the
 * kernel picks.  An unchanged set is reused, and equals a full read; a new
 * connection, a connection that was cut and made again to another port on
 * the same socket (same inode, new ends), and a UDP socket connected in
 * between are all seen; a TCP socket not connected yet, or more TCP sockets
 * than lookups pay for, make the snapshot unsettled, so it is read again.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/policy.h"
#include "haul/netlock.h"

static int listener(uint16_t *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(a);
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(s, 0);
	cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(s, 8), 0);
	cr_assert_eq(getsockname(s, (struct sockaddr *)&a, &l), 0);
	*port = ntohs(a.sin_port);
	return s;
}

static void connect_to(int s, uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons(port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

	cr_assert_eq(connect(s, (struct sockaddr *)&a, sizeof(a)), 0, "connect to port %u", port);
}

static int client(uint16_t port)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(s, 0);
	connect_to(s, port);
	return s;
}

/* Is there a tuple of @fd with remote port @rport in the snapshot? */
static bool has(const struct haul_net_snap *s, int fd, uint16_t rport)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->t[i].fd == fd && s->t[i].rport == rport)
			return true;
	return false;
}

/* The snapshot equals a full read now: same sockets, same ends. */
static void same_as_full(const struct haul_net_snap *s)
{
	struct haul_net_tuple *t;
	pid_t me = getpid();
	size_t n;

	cr_assert_eq(haul_net_sockets_of(&me, 1, &t, &n), 0);
	cr_assert_eq(n, s->n, "a full read finds %zu sockets, the snapshot %zu", n, s->n);
	for (size_t i = 0; i < n; i++) {
		bool found = false;

		for (size_t j = 0; j < s->n && !found; j++)
			found = t[i].ino == s->t[j].ino && t[i].lport == s->t[j].lport &&
				t[i].rport == s->t[j].rport && t[i].state == s->t[j].state &&
				!memcmp(t[i].raddr, s->t[j].raddr, 16);
		cr_assert(found, "fd %d (port %u -> %u) differs from the snapshot", t[i].fd,
			  t[i].lport, t[i].rport);
	}
	free(t);
}

Test(netsnap, an_unchanged_set_is_reused_and_equals_a_full_read, .timeout = 30)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct haul_net_snap s;
	pid_t me = getpid();
	uint16_t port;
	int l = listener(&port), c = client(port), acc = accept(l, NULL, NULL), pair[2];
	int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool reused;

	cr_assert_geq(acc, 0);
	cr_assert_eq(bind(u, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0); /* not inet: no matter */
	cr_assert_eq(haul_net_snap_take(&me, 1, &s), 0);
	cr_assert(s.settled, "listening, connected and bound UDP sockets are settled");
	cr_assert(has(&s, c, port), "the client's connection is in the snapshot");
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(haul_net_snap_again(&me, 1, &s, &reused), 0);
		cr_assert(reused, "nothing changed, yet the sockets were read again (try %d)", i);
		same_as_full(&s);
	}
	haul_net_snap_free(&s);
	close(pair[0]);
	close(pair[1]);
	close(u);
	close(acc);
	close(c);
	close(l);
}

Test(netsnap, a_connection_made_again_on_the_same_socket_is_read_again, .timeout = 30)
{
	struct sockaddr_in any = {.sin_family = AF_UNSPEC};
	struct haul_net_snap s;
	pid_t me = getpid();
	uint16_t p1, p2;
	int l1 = listener(&p1), l2 = listener(&p2), c = client(p1), a1 = accept(l1, NULL, NULL);
	bool reused;

	cr_assert_geq(a1, 0);
	cr_assert_eq(haul_net_snap_take(&me, 1, &s), 0);
	cr_assert(s.settled && has(&s, c, p1));
	/* the same socket, so the same inode: only its ends tell */
	cr_assert_eq(connect(c, (struct sockaddr *)&any, sizeof(any)), 0, "disconnect");
	connect_to(c, p2);
	cr_assert_eq(haul_net_snap_again(&me, 1, &s, &reused), 0);
	cr_assert_not(reused, "a connection with new ends was taken from the snapshot");
	cr_assert(has(&s, c, p2), "the connection's new ends are read");
	cr_assert_not(has(&s, c, p1), "the connection's old ends are gone");
	same_as_full(&s);
	haul_net_snap_free(&s);
	close(a1);
	close(c);
	close(l2);
	close(l1);
}

Test(netsnap, a_new_connection_and_a_udp_socket_connected_since_are_seen, .timeout = 30)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct haul_net_snap s;
	pid_t me = getpid();
	uint16_t port;
	int l = listener(&port), u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), c;
	bool reused;

	cr_assert_eq(bind(u, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(haul_net_snap_take(&me, 1, &s), 0);
	connect_to(u, port); /* a UDP socket's ends change without a new inode */
	cr_assert_eq(haul_net_snap_again(&me, 1, &s, &reused), 0);
	cr_assert(has(&s, u, port), "the UDP socket's peer is read (reused: %d)", reused);
	same_as_full(&s);
	haul_net_snap_free(&s);

	cr_assert_eq(haul_net_snap_take(&me, 1, &s), 0);
	c = client(port);
	cr_assert_eq(haul_net_snap_again(&me, 1, &s, &reused), 0);
	cr_assert_not(reused, "a new socket was missed");
	cr_assert(has(&s, c, port), "the new connection is read");
	same_as_full(&s);
	haul_net_snap_free(&s);
	close(c);
	close(u);
	close(l);
}

Test(netsnap, more_tcp_sockets_than_lookups_pay_for_are_read_again, .timeout = 30)
{
	enum {
		N = HAUL_NET_LOOKUP_MAX / 2 + 1
	};
	struct haul_net_snap s;
	pid_t me = getpid();
	uint16_t port;
	int l = listener(&port), c[N], a[N];
	bool reused;

	for (int i = 0; i < N; i++) {
		c[i] = client(port);
		a[i] = accept(l, NULL, NULL);
		cr_assert_geq(a[i], 0);
	}
	cr_assert_eq(haul_net_snap_take(&me, 1, &s), 0);
	cr_assert_not(s.settled, "%zu sockets: dumps are cheaper than a lookup each", s.n);
	cr_assert_eq(haul_net_snap_again(&me, 1, &s, &reused), 0);
	cr_assert_not(reused);
	same_as_full(&s);
	haul_net_snap_free(&s);
	for (int i = 0; i < N; i++) {
		close(a[i]);
		close(c[i]);
	}
	close(l);
}

Test(netsnap, a_tcp_socket_not_connected_yet_is_never_taken_from_the_snapshot, .timeout = 30)
{
	struct haul_net_snap s;
	pid_t me = getpid();
	uint16_t port;
	int l = listener(&port), c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool reused;

	cr_assert_geq(c, 0);
	cr_assert_eq(haul_net_snap_take(&me, 1, &s), 0);
	cr_assert_not(s.settled, "an unbound TCP socket can connect without a new inode");
	connect_to(c, port);
	cr_assert_eq(haul_net_snap_again(&me, 1, &s, &reused), 0);
	cr_assert_not(reused);
	cr_assert(has(&s, c, port), "the connection made since is read");
	haul_net_snap_free(&s);
	close(c);
	close(l);
}
