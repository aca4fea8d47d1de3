/*
 * netlock.c - the network lock: from the freeze until the process runs on
 * the target, no packet of its connections gets through, so no peer sees
 * a reset, a FIN or a zero window; TCP retransmits once the lock lifts.
 *
 * One nftables table (family inet, through libnftables) per migration and
 * side, "haul-lock-<pid>-<id>", so concurrent migrations (and tests) never
 * share one.  Two base chains at the raw priority, before conntrack:
 * prerouting (covers input and forwarded packets) and output.  What they
 * drop sits in named sets, per family: connected ends by both addresses
 * and ports ("c4"/"c6": protocol . local address . port . peer address .
 * port), listening and unconnected ends by local address and port ("l"),
 * a wildcard bind by port alone ("w"), a connected end bound to any
 * address by its port and the peer ("x"), and each moving address ("a":
 * every TCP or UDP packet to or from it).  ICMP, ARP and neighbour
 * discovery pass: the address must be announced and stay reachable.
 *
 * The rules never change, only the sets' elements, so the source builds
 * the table with empty sets before the freeze (haul_netlock_prepare: a
 * lookup in an empty set drops nothing) and at the freeze adds only the
 * elements (haul_netlock_fill): one small transaction in the downtime
 * instead of the whole table.  haul_netlock_take does both at once.
 *
 * No table may outlive a failure.  Before a table is created it is
 * written to the registry, HAUL_LOCK_DIR/netlock/<netns>-<table>, with
 * its owner's pid and start time.  The owner lifts it on every path; if
 * the owner is killed, its survivor (netguard.c) lifts it; if both are,
 * the next haul migrate, haul pageserver or haul ps (haul_netlock_reap)
 * removes every table whose owner is gone.  Entries name the network
 * namespace (the inode of /proc/self/ns/net), since a table lives in one:
 * a reaper only lifts those of its own namespace, and removes the entries
 * of namespaces that are gone (with their tables).  A checkpoint's lock
 * outlives its haul until the restore (src/restore/ckpt_lock.c): its entry
 * also names the image (haul_netlock_own), and it is kept for as long as
 * that committed image's file netlock names it.
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
#include "restore/restore.h"

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

/* The set an end goes to: 'c' both ends known, 'l' local address and port, 'w' local port
 * alone (a wildcard bind), 'x' local port and the peer (connected, bound to any address). */
static char end_kind(const struct haul_net_tuple *t)
{
	if (t->rport)
		return is_any(t) ? 'x' : 'c';
	return is_any(t) ? 'w' : 'l';
}

/* The sets of family @v (4 or 6) and, per direction, the rules that drop what they hold. */
static void frame_family(char **p, size_t *left, const char *table, int v, bool out)
{
	const char *A = v == 4 ? "ipv4_addr" : "ipv6_addr", *ip = v == 4 ? "ip" : "ip6";

	put(p, left,
	    "add set inet %s c%d { type inet_proto . %s . inet_service . %s . inet_service; }\n",
	    table, v, A, A);
	put(p, left, "add set inet %s l%d { type inet_proto . %s . inet_service; }\n", table, v, A);
	put(p, left, "add set inet %s w%d { type inet_proto . inet_service; }\n", table, v);
	put(p, left,
	    "add set inet %s x%d { type inet_proto . inet_service . %s . inet_service; }\n", table,
	    v, A);
	put(p, left, "add set inet %s a%d { type %s; }\n", table, v, A);
	for (int in = 1; in >= (out ? 0 : 1); in--) {
		/* @in: a packet towards the socket (prerouting: the peer is its source) */
		const char *ch = in ? "pre" : "out", *mine = in ? "daddr" : "saddr";
		const char *theirs = in ? "saddr" : "daddr", *mp = in ? "dport" : "sport";
		const char *tp = in ? "sport" : "dport";

		put(p, left,
		    "add rule inet %s %s meta l4proto . %s %s . th %s . %s %s . th %s @c%d counter "
		    "drop\n",
		    table, ch, ip, mine, mp, ip, theirs, tp, v);
		put(p, left, "add rule inet %s %s meta l4proto . %s %s . th %s @l%d counter drop\n",
		    table, ch, ip, mine, mp, v);
		put(p, left,
		    "add rule inet %s %s meta nfproto ipv%d meta l4proto . th %s @w%d counter drop\n",
		    table, ch, v, mp, v);
		put(p, left,
		    "add rule inet %s %s meta l4proto . th %s . %s %s . th %s @x%d counter drop\n",
		    table, ch, mp, ip, theirs, tp, v);
		put(p, left,
		    "add rule inet %s %s %s %s @a%d meta l4proto { tcp, udp } counter drop\n",
		    table, ch, ip, mine, v);
	}
}

/* The table, its chains, its sets (empty) and its rules; @out: outgoing packets too. */
static void frame(char **p, size_t *left, const char *table, bool out)
{
	put(p, left, "add table inet %s\n", table);
	put(p, left,
	    "add chain inet %s pre { type filter hook prerouting priority " NL_PRIO
	    "; policy accept; }\n",
	    table);
	put(p, left,
	    "add chain inet %s out { type filter hook output priority " NL_PRIO
	    "; policy accept; }\n",
	    table);
	frame_family(p, left, table, 4, out);
	frame_family(p, left, table, 6, out);
}

/* One end as an element of its set (end_kind). */
static void end_element(char **p, size_t *left, const struct haul_net_tuple *t)
{
	char la[INET6_ADDRSTRLEN], ra[INET6_ADDRSTRLEN];
	const char *l4 = t->proto == IPPROTO_TCP ? "tcp" : "udp";

	inet_ntop(t->family, t->laddr, la, sizeof(la));
	inet_ntop(t->family, t->raddr, ra, sizeof(ra));
	switch (end_kind(t)) {
	case 'c':
		put(p, left, "%s . %s . %u . %s . %u", l4, la, t->lport, ra, t->rport);
		break;
	case 'l':
		put(p, left, "%s . %s . %u", l4, la, t->lport);
		break;
	case 'w':
		put(p, left, "%s . %u", l4, t->lport);
		break;
	default:
		put(p, left, "%s . %u . %s . %u", l4, t->lport, ra, t->rport);
	}
}

/* "add element" lines for every end and moving address; the number of elements. */
static size_t elements(char **p, size_t *left, const char *table, const struct haul_net_tuple *t,
		       size_t n, const struct haul_net_addr *a, size_t na)
{
	static const char kinds[] = "clwx";
	size_t count = 0, in_set;

	for (int v = 4; v <= 6; v += 2) {
		int fam = v == 4 ? AF_INET : AF_INET6;

		for (const char *k = kinds; *k; k++) {
			in_set = 0;
			for (size_t i = 0; i < n; i++) {
				if (t[i].family != fam || end_kind(&t[i]) != *k)
					continue;
				if (in_set++)
					put(p, left, ", ");
				else
					put(p, left, "add element inet %s %c%d { ", table, *k, v);
				end_element(p, left, &t[i]);
			}
			if (in_set)
				put(p, left, " }\n");
			count += in_set;
		}
		in_set = 0;
		for (size_t i = 0; i < na; i++) {
			char s[INET6_ADDRSTRLEN];

			if (a[i].family != fam)
				continue;
			inet_ntop(a[i].family, a[i].addr, s, sizeof(s));
			if (in_set++)
				put(p, left, ", %s", s);
			else
				put(p, left, "add element inet %s a%d { %s", table, v, s);
		}
		if (in_set)
			put(p, left, " }\n");
		count += in_set;
	}
	return count;
}

/* ---- the registry ----------------------------------------------------------- */

static int netns_ino(unsigned long long *ino)
{
	struct stat st;

	/* the calling thread's: a step inside a process's namespace enters it on this thread */
	if (stat("/proc/thread-self/ns/net", &st))
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

/*
 * The entry of @name: "PID START\n" (its owner) and, for a lock an image
 * keeps, "image DIR/<id>\n".  Written whole under a temporary name, then
 * renamed over the old one: a reader never sees half an entry.
 */
static int reg_write(const char *name, const char *image)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8], line[PATH_MAX + 64];
	unsigned long long start = 0;
	int fd, ret, n;

	ret = reg_path(name, path, sizeof(path));
	if (ret)
		return ret;
	haul_proc_starttime(getpid(), &start);
	n = snprintf(line, sizeof(line), "%d %llu\n%s%s%s", (int)getpid(), start,
		     image ? "image " : "", image ? image : "", image ? "\n" : "");
	if (n < 0 || (size_t)n >= sizeof(line))
		return -ENAMETOOLONG;
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	ret = write(fd, line, n) == n ? 0 : -EIO;
	close(fd);
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}

int haul_netlock_own(const char *name, const char *image)
{
	int ret = reg_write(name, image);

	if (ret)
		pr_err_r(ret, "cannot hand the network lock %s to the image %s", name, image);
	return ret;
}

static void reg_remove(const char *name)
{
	char path[PATH_MAX];

	if (!reg_path(name, path, sizeof(path)))
		unlink(path);
}

/* ---- take, lift, reap -------------------------------------------------------- */

/* Refuse a name in use: another migration's table, or a stale one. */
static int name_free(const char *name)
{
	if (!haul_netlock_exists(name))
		return 0;
	pr_err("nftables table inet %s exists already; another migration uses this name, or a "
	       "stale one: remove it with 'nft delete table inet %s'",
	       name, name);
	return -EEXIST;
}

/* Register @name, then install @cmd (the whole table) in one transaction. */
static int install(const char *name, const char *cmd)
{
	char err[256] = "";
	int ret;

	/* registered first: a haul killed between the two leaves an entry, never a table alone */
	ret = reg_write(name, NULL);
	if (ret) {
		pr_err_r(ret, "cannot register the network lock %s (in %s/netlock)", name,
			 getenv("HAUL_LOCK_DIR") ? getenv("HAUL_LOCK_DIR") : HAUL_LOCK_DIR);
		return ret;
	}
	/* one transaction: the whole table or nothing */
	ret = nft_run(cmd, err, sizeof(err));
	if (ret) {
		reg_remove(name);
		pr_err("cannot install the network lock (nftables table inet %s): %s; is nf_tables "
		       "available (modprobe nf_tables) and are we CAP_NET_ADMIN?",
		       name, err[0] ? err : "nftables refused the ruleset");
	}
	return ret;
}

static size_t cmd_cap(size_t n, size_t na)
{
	return 8192 + n * 160 + na * 64;
}

/* The whole table under a free @name: its frame and the elements of @t and @a (none: empty sets). */
static int install_table(const char *name, const struct haul_net_tuple *t, size_t n,
			 const struct haul_net_addr *a, size_t na, bool out)
{
	size_t left = cmd_cap(n, na);
	char *cmd = malloc(left), *p = cmd;
	int ret;

	if (!cmd)
		return -ENOMEM;
	ret = name_free(name);
	if (!ret) {
		frame(&p, &left, name, out);
		elements(&p, &left, name, t, n, a, na);
		ret = left ? install(name, cmd) : -E2BIG;
	}
	free(cmd);
	return ret;
}

int haul_netlock_take(const char *name, const struct haul_net_tuple *t, size_t n,
		      const struct haul_net_addr *a, size_t na, bool out)
{
	double t0 = haul_now_ms();
	int ret = install_table(name, t, n, a, na, out);

	if (!ret)
		pr_info("network lock %s: %zu socket%s, %zu address%s%s (%.1f ms)", name, n,
			n == 1 ? "" : "s", na, na == 1 ? "" : "es", out ? "" : ", incoming only",
			haul_now_ms() - t0);
	return ret;
}

int haul_netlock_prepare(const char *name, bool out)
{
	return install_table(name, NULL, 0, NULL, 0, out);
}

int haul_netlock_fill(const char *name, const struct haul_net_tuple *t, size_t n,
		      const struct haul_net_addr *a, size_t na)
{
	size_t left = cmd_cap(n, na);
	char *cmd = malloc(left), *p = cmd, err[256] = "";
	double t0 = haul_now_ms();
	int ret = 0;

	if (!cmd)
		return -ENOMEM;
	if (elements(&p, &left, name, t, n, a, na))
		ret = left ? nft_run(cmd, err, sizeof(err)) : -E2BIG;
	free(cmd);
	if (ret)
		pr_err("cannot fill the network lock (nftables table inet %s): %s", name,
		       err[0] ? err : strerror(-ret));
	else
		pr_info("network lock %s: %zu socket%s, %zu address%s (%.1f ms, prepared before "
			"the freeze)",
			name, n, n == 1 ? "" : "s", na, na == 1 ? "" : "es", haul_now_ms() - t0);
	return ret;
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

/* Does the image @image still keep the lock @name (its file netlock names it)? */
static bool image_keeps(const char *image, const char *name)
{
	char kept[RST_NETLOCK_NAME];
	unsigned long long ns;

	return !rst_netlock_record(image, kept, sizeof(kept), &ns) && !strcmp(kept, name);
}

/* Is the owner of entry @path of lock @name alive: its haul (pid, start time), or its image? */
static bool owner_alive(const char *path, const char *name)
{
	unsigned long long start = 0, now = 0;
	char buf[PATH_MAX + 64] = "", st, *image;
	int fd = open(path, O_RDONLY | O_CLOEXEC), pid = 0;
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0 || sscanf(buf, "%d %llu", &pid, &start) != 2 || pid <= 0)
		return false; /* not one of ours */
	st = haul_proc_state(pid);
	if (st && st != 'Z' && st != 'X' && !haul_proc_starttime(pid, &now) && now == start)
		return true;
	/* a checkpoint's: kept while its committed image names it (gone, replaced: not) */
	image = strstr(buf, "\nimage ");
	if (!image)
		return false;
	image += 7;
	image[strcspn(image, "\n")] = '\0';
	return image_keeps(image, name);
}

int haul_netns_mounted(unsigned long long ino)
{
	char mark[48], line[4096];
	FILE *f = fopen("/proc/self/mountinfo", "re");
	bool found = false;

	if (!f)
		return -errno;
	snprintf(mark, sizeof(mark), " net:[%llu] ", ino);
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, mark) != NULL;
	fclose(f);
	return found;
}

int haul_netns_in_use(unsigned long long ino, bool (*skip)(pid_t pid, void *arg), void *arg)
{
	int mounted = haul_netns_mounted(ino), ret = 0;
	struct dirent *e;
	DIR *d;

	if (mounted > 0)
		return 1; /* ip netns add */
	d = opendir("/proc");
	if (!d)
		return -errno;
	while (!ret && (e = readdir(d))) {
		pid_t pid = e->d_name[0] >= '1' && e->d_name[0] <= '9' ? atoi(e->d_name) : 0;
		struct stat st;
		char p[64];

		snprintf(p, sizeof(p), "/proc/%d/ns/net", (int)pid);
		ret = pid > 0 && !stat(p, &st) && (unsigned long long)st.st_ino == ino &&
		      !(skip && skip(pid, arg));
	}
	closedir(d);
	return ret ? ret : mounted; /* not found: 0, or the mounts could not be read */
}

/* Whether network namespace @ino may still exist (cannot tell: it may). */
static bool netns_lives(unsigned long long ino)
{
	return haul_netns_in_use(ino, NULL, NULL) != 0;
}

/*
 * An entry of another namespace whose owner is gone and which no image
 * keeps: its table is that namespace's reaper's to remove, but when the
 * namespace itself is gone the table went with it, and the entry would stay
 * forever (a test host's namespace, a container's).  Removed then.
 */
static bool foreign_gone(const char *dir, const char *fname)
{
	char path[PATH_MAX];
	unsigned long long ino;
	const char *name = strchr(fname, '-');

	if (!name || sscanf(fname, "%llu-", &ino) != 1 || strncmp(name + 1, "haul-lock-", 10) ||
	    strstr(name, ".new"))
		return false;
	snprintf(path, sizeof(path), "%s/%s", dir, fname);
	if (owner_alive(path, name + 1) || netns_lives(ino))
		return false;
	return unlink(path) == 0;
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

		if (strncmp(e->d_name, prefix, strlen(prefix))) {
			foreign_gone(dir, e->d_name);
			continue;
		}
		if (strncmp(name, "haul-lock-", 10))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (strstr(name, ".new") || owner_alive(path, name))
			continue;
		if (haul_netlock_lift(name) == 0) {
			pr_warn("removed the network lock %s: the haul that took it is gone", name);
			count++;
		}
	}
	closedir(d);
	return count;
}
