/*
 * net_check.c - the refusal before the freeze of a socket that would move
 * without its local address (haul_net_check_local), and the address
 * helpers it rests on (src/haul/netsock.c).  No root, no sockets: the
 * tuples are made up.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>

#include "haul/netlock.h"

static struct haul_net_tuple tcp4(int fd, const char *l, int lport, const char *r, int rport)
{
	struct haul_net_tuple t = {.family = AF_INET, .proto = IPPROTO_TCP, .fd = fd};

	inet_pton(AF_INET, l, t.laddr);
	if (r)
		inet_pton(AF_INET, r, t.raddr);
	t.lport = lport;
	t.rport = rport;
	t.state = r ? TCP_ESTABLISHED : TCP_LISTEN;
	return t;
}

static struct haul_net_addr addr(const char *s)
{
	struct haul_net_addr a;

	cr_assert_eq(haul_net_addr_parse(s, &a), 0, "%s", s);
	return a;
}

Test(net_check, refuses_a_connection_whose_local_address_stays_behind)
{
	struct haul_net_tuple t[] = {tcp4(7, "198.18.0.100", 6379, "198.18.0.3", 51234)};
	struct haul_net_addr target[] = {addr("198.18.0.2/24")};
	char why[256] = "";

	cr_assert_eq(haul_net_check_local(t, 1, NULL, 0, target, 1, why, sizeof(why)),
		     -EADDRNOTAVAIL);
	cr_assert(strstr(why, "fd 7: TCP 198.18.0.100:6379 <- 198.18.0.3:51234"), "%s", why);
	cr_assert(strstr(why, "local address 198.18.0.100 is not on the target"), "%s", why);
	cr_assert(strstr(why, "--move-address 198.18.0.100/"), "says what to do: %s", why);
}

Test(net_check, accepts_a_local_address_that_moves_or_is_on_the_target)
{
	struct haul_net_tuple t[] = {tcp4(7, "198.18.0.100", 6379, "198.18.0.3", 51234),
				     tcp4(8, "198.18.0.2", 80, NULL, 0)};
	struct haul_net_addr moved[] = {addr("198.18.0.100/24")};
	struct haul_net_addr target[] = {addr("198.18.0.2/24")};
	char why[256] = "";

	cr_assert_eq(haul_net_check_local(t, 2, moved, 1, target, 1, why, sizeof(why)), 0, "%s",
		     why);
	/* without the move, the first is refused; the second alone passes */
	cr_assert_eq(haul_net_check_local(t, 2, NULL, 0, target, 1, why, sizeof(why)),
		     -EADDRNOTAVAIL);
	cr_assert_eq(haul_net_check_local(t + 1, 1, NULL, 0, target, 1, why, sizeof(why)), 0);
}

Test(net_check, wildcard_and_loopback_sockets_move_anywhere)
{
	/* a connection on loopback moves with its other end */
	struct haul_net_tuple t[] = {tcp4(3, "0.0.0.0", 6379, NULL, 0),
				     tcp4(4, "127.0.0.1", 6379, "127.0.0.1", 40000),
				     tcp4(6, "127.0.0.1", 40000, "127.0.0.1", 6379)};
	struct haul_net_tuple v6 = {.family = AF_INET6, .proto = IPPROTO_UDP, .fd = 5, .lport = 53};
	char why[256] = "";

	cr_assert_eq(haul_net_check_local(t, 3, NULL, 0, NULL, 0, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(haul_net_check_local(&v6, 1, NULL, 0, NULL, 0, why, sizeof(why)), 0, "%s",
		     why);
	inet_pton(AF_INET6, "::1", v6.laddr);
	cr_assert_eq(haul_net_check_local(&v6, 1, NULL, 0, NULL, 0, why, sizeof(why)), 0, "%s",
		     why);
}

Test(net_check, refuses_an_ipv6_socket_named_in_brackets)
{
	struct haul_net_tuple t = {.family = AF_INET6, .proto = IPPROTO_TCP, .fd = 9};
	char why[256] = "";

	inet_pton(AF_INET6, "2001:db8::10", t.laddr);
	inet_pton(AF_INET6, "2001:db8::3", t.raddr);
	t.lport = 443;
	t.rport = 50000;
	cr_assert_eq(haul_net_check_local(&t, 1, NULL, 0, NULL, 0, why, sizeof(why)),
		     -EADDRNOTAVAIL);
	cr_assert(strstr(why, "fd 9: TCP [2001:db8::10]:443 <- [2001:db8::3]:50000"), "%s", why);
}

Test(net_check, parses_addresses_with_their_prefix_only)
{
	struct haul_net_addr a;

	cr_assert_eq(haul_net_addr_parse("198.18.0.100/24", &a), 0);
	cr_assert_eq(a.family, AF_INET);
	cr_assert_eq(a.prefix, 24);
	cr_assert_eq(haul_net_addr_parse("2001:db8::10/64", &a), 0);
	cr_assert_eq(a.family, AF_INET6);
	cr_assert_eq(haul_net_addr_parse("198.18.0.100", &a), -EINVAL, "the prefix is required");
	cr_assert_eq(haul_net_addr_parse("198.18.0.100/33", &a), -EINVAL);
	cr_assert_eq(haul_net_addr_parse("198.18.0.100/0", &a), -EINVAL);
	cr_assert_eq(haul_net_addr_parse("host/24", &a), -EINVAL);
	cr_assert_eq(haul_net_addr_parse("198.18.0.100/24x", &a), -EINVAL);
}

Test(net_check, a_subnet_covers_the_addresses_within_its_prefix)
{
	struct haul_net_addr n = addr("198.18.0.2/23"), in = addr("198.18.1.200/32"),
			     out = addr("198.18.2.1/32"), v6 = addr("2001:db8::1/64"),
			     v6in = addr("2001:db8::abcd/128");

	cr_assert(haul_net_covers(AF_INET, n.addr, n.prefix, in.addr));
	cr_assert_not(haul_net_covers(AF_INET, n.addr, n.prefix, out.addr));
	cr_assert(haul_net_covers(AF_INET6, v6.addr, v6.prefix, v6in.addr));
	cr_assert_not(haul_net_covers(AF_INET6, v6in.addr, 128, v6.addr));
}

Test(net_check, lock_names_carry_the_pid_and_the_migration)
{
	char a[64], b[64];

	haul_netlock_name(a, sizeof(a), 1234, 0xabcdefULL);
	haul_netlock_name(b, sizeof(b), 1234, 0xabcdeeULL);
	cr_assert_str_eq(a, "haul-lock-1234-abcdef");
	cr_assert_str_neq(a, b);
}

Test(net_check, refuses_a_loopback_connection_whose_other_end_stays_behind)
{
	struct haul_net_tuple t[] = {tcp4(4, "127.0.0.1", 6379, "127.0.0.1", 40000)};
	struct haul_net_tuple v6 = {.family = AF_INET6, .proto = IPPROTO_TCP, .fd = 9};
	char why[512] = "";

	t[0].pid = 321;
	cr_assert_eq(haul_net_check_local(t, 1, NULL, 0, NULL, 0, why, sizeof(why)),
		     -EADDRNOTAVAIL);
	cr_assert(strstr(why, "fd 4 of pid 321: TCP 127.0.0.1:6379 <- 127.0.0.1:40000"), "%s", why);
	cr_assert(strstr(why, "does not move"), "%s", why);
	inet_pton(AF_INET6, "::1", v6.laddr);
	inet_pton(AF_INET6, "::1", v6.raddr);
	v6.lport = 8880;
	v6.rport = 39306;
	cr_assert_eq(haul_net_check_local(&v6, 1, NULL, 0, NULL, 0, why, sizeof(why)),
		     -EADDRNOTAVAIL);
}
