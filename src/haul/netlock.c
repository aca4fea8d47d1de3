/*
 * netlock.c - the network lock: from the freeze until the process runs on
 * the target, no packet of its connections gets through, so no peer sees
 * a reset, a FIN or a zero window; TCP retransmits once the lock lifts.
 *
 * One nftables table (family inet, through libnftables) per migration and
 * side, "haul-lock-<pid>-<id>", so concurrent migrations (and tests) never
 * share one.  Two base chains at the raw priority, before conntrack:
 * prerouting (covers input and forwarded packets) and output.  A rule per
 * socket end and direction: connected ends by both addresses and ports,
 * listening and unconnected ends by local address and port (a wildcard
 * bind by port alone, in its family); for each moving address, every TCP
 * or UDP packet to or from it.  ICMP, ARP and neighbour discovery pass:
 * the address must be announced and stay reachable for ping.
 *
 * No table may outlive a failure.  Before a table is created it is
 * written to the registry, HAUL_LOCK_DIR/netlock/<netns>-<table>, with
 * its owner's pid and start time.  The owner lifts it on every path; if
 * the owner is killed, its survivor (netguard.c) lifts it; if both are,
 * the next haul migrate, haul pageserver or haul ps (haul_netlock_reap)
 * removes every table whose owner is gone.  Entries name the network
 * namespace (the inode of /proc/self/ns/net), since a table lives in one:
 * a reaper only touches those of its own namespace.
 */
#define LOG_PREFIX "netlock: "
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <nftables/libnftables.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/proc.h"
#include "haul/haul_int.h"
#include "haul/netlock.h"

#define NL_PRIO "-300" /* raw: before conntrack, so a dropped packet leaves no state */

void haul_netlock_name(char *buf, size_t len, pid_t pid, uint64_t id)
{
	snprintf(buf, len, "haul-lock-%d-%llx", (int)pid,
		 (unsigned long long)(id & 0xffffffffffULL));
}

/*
 * Freeing a context closes its netlink socket, and that close waits for an
 * RCU grace period: 8-18 ms on a loaded 2-core VM, twice per lock taken
 * (the check and the transaction), in the downtime.  The transaction is
 * done by then, so the context is freed on a detached thread; libnftables
 * keeps no state across contexts, and glibc's fork takes malloc's locks,
 * so a fork meanwhile is safe.
 */
static void *nft_free_main(void *ctx)
{
	nft_ctx_free(ctx);
	return NULL;
}

static void nft_free_later(struct nft_ctx *ctx)
{
	pthread_attr_t a;
	pthread_t t;

	if (pthread_attr_init(&a) || pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED) ||
	    pthread_create(&t, &a, nft_free_main, ctx))
		nft_ctx_free(ctx);
	pthread_attr_destroy(&a);
}

/* Run @cmd through libnftables; its error text (if any) in @err. */
static int nft_run(const char *cmd, char *err, size_t el)
{
	struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	const char *e;
	int ret;

	if (!ctx)
		return -ENOMEM;
	nft_ctx_buffer_output(ctx);
	nft_ctx_buffer_error(ctx);
	ret = nft_run_cmd_from_buffer(ctx, cmd);
	e = nft_ctx_get_error_buffer(ctx);
	if (err && el) {
		snprintf(err, el, "%s", e ? e : "");
		err[strcspn(err, "\n")] = '\0';
	}
	nft_free_later(ctx);
	return ret ? -EIO : 0;
}

static void put(char **p, size_t *left, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put(char **p, size_t *left, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(*p, *left, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= *left) {
		*left = 0; /* the caller sees the overflow */
		return;
	}
	*p += n;
	*left -= n;
}

static bool is_any(const struct haul_net_tuple *t)
{
	static const uint8_t zero[16];

	return !memcmp(t->laddr, zero, t->family == AF_INET ? 4 : 16);
}

/*
 * One rule for one end and direction.  @in: a packet towards the socket
 * (prerouting: the peer's address and port are the source).
 */
static void tuple_rule(char **p, size_t *left, const char *table, const struct haul_net_tuple *t,
		       bool in)
{
	const char *ip = t->family == AF_INET ? "ip" : "ip6";
	const char *l4 = t->proto == IPPROTO_TCP ? "tcp" : "udp";
	const char *mine = in ? "daddr" : "saddr", *theirs = in ? "saddr" : "daddr";
	const char *myport = in ? "dport" : "sport", *theirport = in ? "sport" : "dport";
	char la[INET6_ADDRSTRLEN], ra[INET6_ADDRSTRLEN];

	inet_ntop(t->family, t->laddr, la, sizeof(la));
	inet_ntop(t->family, t->raddr, ra, sizeof(ra));
	put(p, left, "add rule inet %s %s meta nfproto %s", table, in ? "pre" : "out",
	    t->family == AF_INET ? "ipv4" : "ipv6");
	if (!is_any(t))
		put(p, left, " %s %s %s", ip, mine, la);
	if (t->rport)
		put(p, left, " %s %s %s", ip, theirs, ra);
	put(p, left, " %s %s %u", l4, myport, t->lport);
	if (t->rport)
		put(p, left, " %s %s %u", l4, theirport, t->rport);
	put(p, left, " counter drop\n");
}

static void addr_rule(char **p, size_t *left, const char *table, const struct haul_net_addr *a,
		      bool in)
{
	char s[INET6_ADDRSTRLEN];

	inet_ntop(a->family, a->addr, s, sizeof(s));
	put(p, left, "add rule inet %s %s %s %s %s meta l4proto { tcp, udp } counter drop\n", table,
	    in ? "pre" : "out", a->family == AF_INET ? "ip" : "ip6", in ? "daddr" : "saddr", s);
}

/* ---- the registry ----------------------------------------------------------- */

static int netns_ino(unsigned long long *ino)
{
	struct stat st;

	if (stat("/proc/self/ns/net", &st))
		return -errno;
	*ino = (unsigned long long)st.st_ino;
	return 0;
}

static int reg_dir(char *buf, size_t len)
{
	const char *d = getenv("HAUL_LOCK_DIR");

	snprintf(buf, len, "%s/netlock", d && *d ? d : HAUL_LOCK_DIR);
	if (mkdir(d && *d ? d : HAUL_LOCK_DIR, 0700) && errno != EEXIST)
		return -errno;
	if (mkdir(buf, 0700) && errno != EEXIST)
		return -errno;
	return 0;
}

static int reg_path(const char *name, char *buf, size_t len)
{
	char dir[PATH_MAX - 96];
	unsigned long long ino = 0;
	int ret = reg_dir(dir, sizeof(dir));

	if (!ret)
		ret = netns_ino(&ino);
	if (ret)
		return ret;
	snprintf(buf, len, "%s/%llu-%s", dir, ino, name);
	return 0;
}

static int reg_write(const char *name)
{
	char path[PATH_MAX], line[64];
	unsigned long long start = 0;
	int fd, ret, n;

	ret = reg_path(name, path, sizeof(path));
	if (ret)
		return ret;
	haul_proc_starttime(getpid(), &start);
	n = snprintf(line, sizeof(line), "%d %llu\n", (int)getpid(), start);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	ret = write(fd, line, n) == n ? 0 : -EIO;
	close(fd);
	return ret;
}

static void reg_remove(const char *name)
{
	char path[PATH_MAX];

	if (!reg_path(name, path, sizeof(path)))
		unlink(path);
}

/* ---- take, lift, reap -------------------------------------------------------- */

int haul_netlock_take(const char *name, const struct haul_net_tuple *t, size_t n,
		      const struct haul_net_addr *a, size_t na, bool out)
{
	size_t cap = 1024 + (n * 2 + na * 2) * 256, left = cap;
	char *cmd = malloc(cap), *p = cmd, err[256] = "";
	double t0;
	int ret;

	if (!cmd)
		return -ENOMEM;
	if (haul_netlock_exists(name)) {
		pr_err("nftables table inet %s exists already; another migration uses this name, or "
		       "a stale one: remove it with 'nft delete table inet %s'",
		       name, name);
		free(cmd);
		return -EEXIST;
	}
	put(&p, &left, "add table inet %s\n", name);
	put(&p, &left,
	    "add chain inet %s pre { type filter hook prerouting priority " NL_PRIO
	    "; policy accept; }\n",
	    name);
	put(&p, &left,
	    "add chain inet %s out { type filter hook output priority " NL_PRIO
	    "; policy accept; }\n",
	    name);
	for (size_t i = 0; i < n; i++) {
		tuple_rule(&p, &left, name, &t[i], true);
		if (out)
			tuple_rule(&p, &left, name, &t[i], false);
	}
	for (size_t i = 0; i < na; i++) {
		addr_rule(&p, &left, name, &a[i], true);
		if (out)
			addr_rule(&p, &left, name, &a[i], false);
	}
	if (!left) {
		free(cmd);
		return -E2BIG;
	}
	/* registered first: a haul killed between the two leaves an entry, never a table alone */
	ret = reg_write(name);
	if (ret) {
		pr_err_r(ret, "cannot register the network lock %s (in %s/netlock)", name,
			 getenv("HAUL_LOCK_DIR") ? getenv("HAUL_LOCK_DIR") : HAUL_LOCK_DIR);
		free(cmd);
		return ret;
	}
	/* one transaction: the whole table or nothing */
	t0 = haul_now_ms();
	ret = nft_run(cmd, err, sizeof(err));
	free(cmd);
	if (ret) {
		reg_remove(name);
		pr_err("cannot install the network lock (nftables table inet %s): %s; is nf_tables "
		       "available (modprobe nf_tables) and are we CAP_NET_ADMIN?",
		       name, err[0] ? err : "nftables refused the ruleset");
		return ret;
	}
	pr_info("network lock %s: %zu socket%s, %zu address%s%s (%.1f ms)", name, n,
		n == 1 ? "" : "s", na, na == 1 ? "" : "es", out ? "" : ", incoming only",
		haul_now_ms() - t0);
	return 0;
}

bool haul_netlock_exists(const char *name)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "list table inet %s", name);
	return nft_run(cmd, NULL, 0) == 0;
}

int haul_netlock_lift(const char *name)
{
	char cmd[256], err[256] = "";
	int ret;

	/*
	 * One transaction, whether the table is there or not (adding an
	 * existing table is no error): a separate "list table" first cost as
	 * much again, in the downtime of the target's lift.
	 */
	snprintf(cmd, sizeof(cmd), "add table inet %s\ndelete table inet %s\n", name, name);
	ret = nft_run(cmd, err, sizeof(err));
	if (ret)
		pr_err("cannot remove the network lock (nftables table inet %s): %s; remove "
		       "it with 'nft delete table inet %s'",
		       name, err, name);
	if (!ret)
		reg_remove(name);
	return ret;
}

/* Is the owner (pid, start time) of an entry alive? */
static bool owner_alive(const char *path)
{
	unsigned long long start = 0, now = 0;
	char buf[64] = "", st;
	int fd = open(path, O_RDONLY | O_CLOEXEC), pid = 0;
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0 || sscanf(buf, "%d %llu", &pid, &start) != 2 || pid <= 0)
		return false; /* half-written: its owner died writing it */
	st = haul_proc_state(pid);
	if (!st || st == 'Z' || st == 'X')
		return false;
	return !haul_proc_starttime(pid, &now) && now == start;
}

int haul_netlock_reap(void)
{
	char dir[PATH_MAX - 512], path[PATH_MAX], prefix[32];
	unsigned long long ino = 0;
	struct dirent *e;
	int ret, count = 0;
	DIR *d;

	ret = reg_dir(dir, sizeof(dir));
	if (!ret)
		ret = netns_ino(&ino);
	if (ret)
		return ret;
	snprintf(prefix, sizeof(prefix), "%llu-", ino);
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		const char *name = e->d_name + strlen(prefix);

		if (strncmp(e->d_name, prefix, strlen(prefix)) || strncmp(name, "haul-lock-", 10))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (owner_alive(path))
			continue;
		if (haul_netlock_lift(name) == 0) {
			pr_warn("removed the network lock %s: the haul that took it is gone", name);
			count++;
		}
	}
	closedir(d);
	return count;
}
