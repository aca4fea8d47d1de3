/*
 * th_svc.c - the service network of th_mig (th_mig.h): a client host C
 * bridged to both A and B, the service address on A's link to it, so that
 * `haul migrate --move-address` has somewhere to move the address and a
 * client that follows it.  Shared by mig_netlock.c (the lock and the
 * address) and net_mig.c (a server and its connections).
 *
 * Every name carries the test's pid (namespace nlc<pid>, links
 * nlc[aAbB]<pid>), so tests in parallel never meet.  No nftables rule is
 * ever made here: the only tables in these namespaces are haul's, and
 * th_mig_no_nft checks that none is left.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "haul/haul_int.h"
#include "th_mig.h"

bool th_mig_client_reaches(struct th_mig *m, const char *addr)
{
	/* a SYN to a closed port: "refused" is an answer (no ping binary is needed) */
	return th_sh("ip netns exec %s timeout 3 bash -c 'echo > /dev/tcp/%s/9' 2>&1 | "
		     "grep -q 'Connection refused'",
		     m->client, addr) == 0;
}

/* C, its bridge and its two links; NULL, or what failed. */
static const char *svc_build(struct th_mig *m)
{
	int pid = getpid();
	const char *C = m->client;

	snprintf(m->client, sizeof(m->client), "nlc%d", pid);
	snprintf(m->ca, sizeof(m->ca), "nlca%d", pid);
	snprintf(m->cb, sizeof(m->cb), "nlcb%d", pid);
	if (th_sh("ip netns add %s && ip -n %s link add br0 type bridge && "
		  "ip -n %s link set br0 up && ip -n %s addr add 198.18.1.3/24 dev br0 && "
		  "ip -n %s link set lo up",
		  C, C, C, C, C))
		return "cannot make the client namespace";
	if (th_sh("ip link add %s type veth peer name nlcA%d && "
		  "ip link set %s netns %s && ip link set nlcA%d netns %s && "
		  "ip -n %s link set nlcA%d master br0 up && ip -n %s link set %s up && "
		  "ip -n %s addr add 198.18.1.1/24 dev %s && "
		  "ip -n %s addr add " TH_SVC_PFX " dev %s",
		  m->ca, pid, m->ca, m->net.a, pid, C, C, pid, m->net.a, m->ca, m->net.a, m->ca,
		  m->net.a, m->ca))
		return "cannot link the source to the client";
	if (th_sh("ip link add %s type veth peer name nlcB%d && "
		  "ip link set %s netns %s && ip link set nlcB%d netns %s && "
		  "ip -n %s link set nlcB%d master br0 up && ip -n %s link set %s up && "
		  "ip -n %s addr add 198.18.1.2/24 dev %s",
		  m->cb, pid, m->cb, m->net.b, pid, C, C, pid, m->net.b, m->cb, m->net.b, m->cb))
		return "cannot link the target to the client";
	/* the client knows the service at the source before the move */
	if (!th_mig_client_reaches(m, TH_SVC_ADDR))
		return "the client cannot reach " TH_SVC_ADDR " at the source";
	return NULL;
}

void th_mig_setup_svc(struct th_mig *m)
{
	const char *why;

	th_mig_setup(m, 0);
	if (th_sh("ip netns exec %s nft list tables >/dev/null 2>&1", m->net.a)) {
		th_mig_teardown(m);
		cr_skip_test("nftables does not work here (nf_tables module?)");
	}
	why = svc_build(m);
	if (why) {
		th_mig_teardown(m);
		cr_assert_fail("%s", why);
	}
}

void th_mig_svc_ipv6(struct th_mig *m)
{
	int pid = getpid();

	cr_assert_eq(th_sh("ip -n %s addr add 2001:2:0:1::3/64 dev br0 nodad && "
			   "ip -n %s addr add 2001:2:0:1::1/64 dev %s nodad && "
			   "ip -n %s addr add " TH_SVC6_PFX " dev %s nodad && "
			   "ip -n %s addr add 2001:2:0:1::2/64 dev %s nodad",
			   m->client, m->net.a, m->ca, m->net.a, m->ca, m->net.b, m->cb),
		     0, "cannot add the IPv6 service subnet (links of pid %d)", pid);
	/* the client learns the address at the source first */
	cr_assert(th_mig_client_reaches(m, TH_SVC6_ADDR),
		  "the client cannot reach " TH_SVC6_ADDR " at the source");
}

void th_mig_svc_teardown(struct th_mig *m)
{
	if (m->client[0])
		th_sh("ip netns del %s 2>/dev/null", m->client);
	m->client[0] = '\0';
	/* a veth end that never left this namespace (a setup that failed half-way) */
	th_sh("ip link del nlca%d 2>/dev/null; ip link del nlcb%d 2>/dev/null", (int)getpid(),
	      (int)getpid());
}

bool th_mig_has_addr(const char *ns, const char *pfx)
{
	return th_sh("ip -n %s -o addr show | grep -q ' %s '", ns, pfx) == 0;
}

bool th_mig_addr_only_at(struct th_mig *m, const char *pfx, bool at_a)
{
	return th_mig_has_addr(at_a ? m->net.a : m->net.b, pfx) &&
	       !th_mig_has_addr(at_a ? m->net.b : m->net.a, pfx);
}

bool th_mig_no_nft(struct th_mig *m)
{
	const char *ns[] = {m->net.a, m->net.b, m->client};

	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++)
		if (ns[i][0] &&
		    th_sh("ip netns exec %s nft list ruleset 2>/dev/null | grep -q .", ns[i]) == 0)
			return false;
	return true;
}

bool th_mig_client_neigh_is_b(struct th_mig *m, const char *addr)
{
	return th_sh("test \"$(ip -n %s neigh show %s | awk '{print $5}')\" = "
		     "\"$(ip -n %s -o link show %s | sed 's/.*link.ether \\([^ ]*\\).*/\\1/')\"",
		     m->client, addr, m->net.b, m->cb) == 0;
}

bool th_mig_eventually(bool (*what)(struct th_mig *m, const char *arg), struct th_mig *m,
		       const char *arg, int ms)
{
	for (int i = 0; i < ms / 50; i++) {
		if (what(m, arg))
			return true;
		usleep(50000);
	}
	return what(m, arg);
}

void th_mig_resolve_in_doubt(struct th_mig *m, bool target_runs)
{
	struct haul_cg_mounts mnt;
	char dir[PATH_MAX + 64];

	cr_assert_eq(haul_cg_probe(&mnt), 0);
	snprintf(dir, sizeof(dir), "%s/haul/mig-%d", mnt.v2[0] ? mnt.v2 : mnt.v1_freezer,
		 m->wl_pid);
	if (target_runs)
		kill(m->wl_pid, SIGKILL);
	cr_assert_eq(haul_cg_write(dir, mnt.v2[0] ? "cgroup.freeze" : "freezer.state",
				   mnt.v2[0] ? "0" : "THAWED"),
		     0, "cannot thaw %s", dir);
	if (target_runs)
		th_wait_exit(m->wl_pid, 2000);
}
