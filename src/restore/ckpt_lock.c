/*
 * ckpt_lock.c - the network lock of a checkpoint, from the stop until the
 * restore of its image: when it is taken, whom it belongs to, and when it
 * is lifted.  haul takes and lifts it (src/haul/ckpt_netlock.c, through
 * rst_netlock_ops); the restorer only says when.
 *
 * Between the kill of a checkpoint and its restore no socket exists for
 * the processes' connections: a peer's segment would meet a closed port
 * and draw a RST.  And while the dump reads the queues of two sockets of
 * the checkpoint that talk to each other (over loopback), the kernel still
 * moves segments between them: one end's image could miss bytes the other
 * counts as acknowledged.  So the lock is taken once every process is
 * stopped, before any socket is read:
 *  - without --leave-running, of every TCP and UDP socket the processes
 *    hold; it outlives the checkpoint, and from the commit on it belongs
 *    to the image: the image's file `netlock` names it, and the restore of
 *    that image lifts it once every socket exists again and before any
 *    connection leaves repair mode (every TCP connection waits, as one
 *    whose peer is on this host does, fd_tcp_local.c);
 *  - with --leave-running, only of connections whose two ends are both in
 *    the checkpoint (the image must agree with itself; the processes run
 *    on, so no peer is reset), lifted before they run again;
 *  - a failed checkpoint lifts it before the processes run again.
 *
 * The file `netlock` of an image is one line, "NAME NETNS\n": the lock (an
 * nftables table of family inet, NAME as haul_netlock_name makes it) and
 * the inode of the network namespace it lives in (the processes', where
 * their sockets are).  A restore in another namespace (another host, or
 * haul run outside the processes' namespace) has no lock to lift and says
 * so.
 */
#define LOG_PREFIX "netlock: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_inet.h"
#include "restore/imgdir_int.h"
#include "restore/restore.h"

#define RECORD "netlock"

static struct rst_netlock_ops lock_ops;

void rst_netlock_set(const struct rst_netlock_ops *ops)
{
	if (ops)
		lock_ops = *ops;
	else
		memset(&lock_ops, 0, sizeof(lock_ops));
}

/* The inode of @pid's network namespace (0: ours). */
static int netns_ino(pid_t pid, unsigned long long *ino)
{
	char p[64] = "/proc/self/ns/net";
	struct stat st;

	if (pid)
		snprintf(p, sizeof(p), "/proc/%d/ns/net", (int)pid);
	if (stat(p, &st))
		return -errno;
	*ino = (unsigned long long)st.st_ino;
	return 0;
}

/* A lock's name as haul makes it: "haul-lock-<pid>-<hex id>", nothing else (it goes into nft). */
static bool name_ok(const char *s)
{
	const char *p = s + 10;

	if (strncmp(s, "haul-lock-", 10) || !*p)
		return false;
	while (*p >= '0' && *p <= '9')
		p++;
	if (p == s + 10 || *p++ != '-' || !*p)
		return false;
	return strspn(p, "0123456789abcdef") == strlen(p) && strlen(s) < RST_NETLOCK_NAME;
}

int rst_netlock_record(const char *store, char *name, size_t len, unsigned long long *netns)
{
	char path[PATH_MAX + 16], buf[160], n[RST_NETLOCK_NAME + 1];
	unsigned long long ino;
	ssize_t got;
	int fd;

	snprintf(path, sizeof(path), "%s/" RECORD, store);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	got = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (got <= 0)
		return -EBADMSG;
	buf[got] = '\0';
	if (sscanf(buf, "%" RST_NETLOCK_NAME_S "s %llu", n, &ino) != 2 || !name_ok(n) ||
	    strlen(n) >= len)
		return -EBADMSG;
	snprintf(name, len, "%s", n);
	*netns = ino;
	return 0;
}

/* DIR/<tmp>/netlock, durable before the image is; the lock is in @pid's network namespace. */
static int record_write(const struct rst_imgdir_tx *tx, const char *name, pid_t pid)
{
	char path[PATH_MAX + 16], line[RST_NETLOCK_NAME + 32];
	unsigned long long ino = 0;
	int fd, n, ret = netns_ino(pid, &ino);

	if (ret)
		return ret;
	snprintf(path, sizeof(path), "%s/" RECORD, tx->path);
	n = snprintf(line, sizeof(line), "%s %llu\n", name, ino);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	ret = write(fd, line, n) == n ? 0 : -EIO;
	if (!ret && fsync(fd))
		ret = -errno;
	close(fd);
	return ret;
}

int rst_ckpt_lock_take(struct rst_ckpt_lock *k, const struct rst_imgdir_tx *tx, const pid_t *pids,
		       size_t n, bool leave_running)
{
	char dir[PATH_MAX], image[PATH_MAX + 100];
	int ret;

	k->name[0] = '\0';
	if (!lock_ops.take)
		return 0;
	/* the lock belongs to the committed image, named by an absolute path */
	if (!realpath(tx->dir, dir)) {
		ret = -errno;
		pr_err_r(ret, "cannot resolve the images directory %s", tx->dir);
		return ret;
	}
	snprintf(image, sizeof(image), "%s/%s", dir, tx->id);
	ret = lock_ops.take(pids, n, leave_running, image, k->name, sizeof(k->name));
	if (ret) {
		k->name[0] = '\0';
		return ret;
	}
	if (!k->name[0] || leave_running)
		return 0;
	ret = record_write(tx, k->name, pids[0]);
	if (ret) {
		pr_err_r(ret, "cannot write %s/" RECORD, tx->path);
		rst_ckpt_lock_lift(k);
	}
	return ret;
}

void rst_ckpt_lock_lift(struct rst_ckpt_lock *k)
{
	if (!k->name[0])
		return;
	if (lock_ops.lift && lock_ops.lift(k->name))
		pr_warn("the network lock %s stays (above): remove it with 'nft delete table inet "
			"%s'",
			k->name, k->name);
	k->name[0] = '\0';
}

void rst_ckpt_lock_keep(struct rst_ckpt_lock *k)
{
	if (!k->name[0])
		return;
	/* from here a dying haul must not lift it (its survivor goes) */
	if (lock_ops.keep)
		lock_ops.keep(k->name);
	pr_info("network lock %s held until 'haul restore' of this image lifts it (or 'nft "
		"delete table inet %s')",
		k->name, k->name);
	k->name[0] = '\0';
}

/* The namespace the armed lock is lifted in (a path); "": this one. */
static __thread char lift_ns[64];

int rst_restore_lock_arm(const char *store, const char *netns)
{
	char name[RST_NETLOCK_NAME];
	unsigned long long ino = 0, here = 0;
	struct stat st;
	int ret = rst_netlock_record(store, name, sizeof(name), &ino);

	rst_tcp_defer_all(NULL);
	lift_ns[0] = '\0';
	if (ret == -ENOENT)
		return 0;
	if (ret) {
		/* a side record: the image itself is whole, and its process is gone */
		pr_warn("%s/" RECORD
			" is unreadable (not 'haul-lock-PID-ID NETNS'): a network lock "
			"its checkpoint took is not lifted by this restore; find it with 'nft list "
			"tables' (haul-lock-PID-...) and remove it with 'nft delete table inet NAME'",
			store);
		return 0;
	}
	if (netns && !stat(netns, &st))
		here = (unsigned long long)st.st_ino;
	else if (netns || netns_ino(0, &here))
		here = 0;
	if (here != ino) {
		pr_warn("the checkpoint's network lock %s is in another network namespace than "
			"this restore (net:[%llu]: another host, or the processes' own): where that "
			"namespace lives on, peers get through once it is lifted there ('nft delete "
			"table inet %s')",
			name, ino, name);
		return 0;
	}
	if (!lock_ops.lift) {
		pr_warn("the checkpoint's network lock %s stays: this restore cannot lift it; "
			"'nft delete table inet %s' does",
			name, name);
		return 0;
	}
	/* every connection waits in repair mode for the lift (fd_tcp_local.c) */
	rst_tcp_defer_all(name);
	if (netns)
		snprintf(lift_ns, sizeof(lift_ns), "%s", netns);
	return 0;
}

static int lift_here(void *name)
{
	return lock_ops.lift(name);
}

int rst_restore_lock_lift(const char *name)
{
	int ns, ret;

	if (!lock_ops.lift)
		return 0;
	if (!lift_ns[0])
		return lock_ops.lift(name);
	/* the processes' namespace (a container's, the engine's): this thread enters it */
	ns = open(lift_ns, O_RDONLY | O_CLOEXEC);
	ret = ns < 0 ? -errno : rst_netns_run(ns, lift_here, (void *)name);
	if (ns >= 0)
		close(ns);
	if (ret)
		pr_err_r(ret, "cannot lift the lock %s in the network namespace %s", name, lift_ns);
	return ret;
}
