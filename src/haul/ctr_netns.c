/*
 * ctr_netns.c - a container's own network namespace, made by its engine
 * (runc's config.json: namespaces[type network].path, a namespace with
 * the engine's veth), around a live migration.
 *
 * The engine owns that namespace and its interfaces on both hosts: on the
 * source runc made the container join it, on the target the operator (or
 * the engine's network setup) makes the same before the migration, with
 * the interface up and without the container's address (both hosts on one
 * segment must not answer for it at once).  haul carries the process and
 * moves its address and connections inside it:
 *  - the source (ctr_migrate.c) names the namespace to the container check
 *    as runc names it to CRIU (external net[INODE]), so its interfaces are
 *    not refused; mig_net.c locks and removes the address inside it;
 *  - the target (switch_sink.c) finds it in the received bundle's
 *    config.json (haul_ctr_session_netns) and locks, adds the address
 *    (to the namespace's only interface other than lo when none has an
 *    address on its subnet: the engine's veth) and announces it there;
 *    runc restore makes the process join it (the criu entry point's
 *    inherit_fd extRootNetNS).
 * Each step enters the namespace on the calling thread and returns
 * (haul_netns_enter/leave): the page server's and haul migrate's own
 * connections stay in haul's namespace, where they were made.
 */
#define LOG_PREFIX "container: "
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "haul/ctr_int.h"
#include "haul/netlock.h"

/* config.json is read whole up to this size (runc's are a few KiB) */
#define CONFIG_MAX (1u << 20)

int haul_ctr_config_netns(const char *bundle, char *out, size_t len)
{
	char path[PATH_MAX + 16], *text = malloc(CONFIG_MAX), *p, *end;
	ssize_t n = -1;
	int fd, ret = -ENOENT;

	if (!text)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/config.json", bundle);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, text, CONFIG_MAX - 1);
		close(fd);
	}
	if (n < 0) {
		free(text);
		return -errno;
	}
	text[n] = '\0';
	/* namespaces: an array of flat objects {"type": "...", "path": "..."} */
	p = strstr(text, "\"namespaces\"");
	p = p ? strchr(p, '[') : NULL;
	end = p ? strchr(p, ']') : NULL;
	while (p && end && (p = memchr(p, '{', end - p))) {
		char *close_ = memchr(p, '}', end - p), type[32];

		if (!close_)
			break;
		*close_ = '\0';
		if (!haul_json_flat(p, "type", type, sizeof(type)) && !strcmp(type, "network")) {
			ret = haul_json_flat(p, "path", out, len);
			if (!ret && !out[0])
				ret = -ENOENT;
			break;
		}
		p = close_ + 1;
	}
	free(text);
	return ret;
}

int haul_ctr_session_netns(uint64_t session, char *out, size_t len)
{
	struct ctr_rx *rx = ctr_rx_get(session);
	int ret;

	if (!rx)
		return -ENOENT;
	ret = haul_ctr_config_netns(rx->bundle, out, len);
	ctr_rx_put(rx);
	return ret;
}

int haul_netns_enter(int nsfd, int *back)
{
	*back = -1;
	if (nsfd < 0)
		return 0;
	*back = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (*back < 0 || setns(nsfd, CLONE_NEWNET) < 0) {
		int ret = -errno;

		pr_err_r(ret, "cannot enter the container's network namespace");
		if (*back >= 0)
			close(*back);
		*back = -1;
		return ret;
	}
	return 0;
}

int haul_netns_enter_pid(pid_t pid, int *back)
{
	struct stat a, b;
	char p[64];
	int fd, ret;

	*back = -1;
	snprintf(p, sizeof(p), "/proc/%d/ns/net", (int)pid);
	if (stat(p, &a) || stat("/proc/thread-self/ns/net", &b))
		return -errno;
	if (a.st_ino == b.st_ino && a.st_dev == b.st_dev)
		return 0;
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = haul_netns_enter(fd, back);
	close(fd);
	return ret;
}

void haul_netns_leave(int back)
{
	if (back < 0)
		return;
	if (setns(back, CLONE_NEWNET) < 0) {
		/* this thread would go on in the container's namespace: nothing may go on */
		pr_err("cannot return to haul's network namespace: %s", strerror(errno));
		abort();
	}
	close(back);
}

int haul_netns_sole_iface(struct haul_net_addr *a)
{
	struct if_nameindex *ifs = if_nameindex(), *i;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), found = 0;

	if (!ifs || s < 0) {
		int ret = -errno;

		if (ifs)
			if_freenameindex(ifs);
		if (s >= 0)
			close(s);
		return ret;
	}
	for (i = ifs; i->if_index; i++) {
		struct ifreq ifr = {0};

		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", i->if_name);
		if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0 || (ifr.ifr_flags & IFF_LOOPBACK) ||
		    !(ifr.ifr_flags & IFF_UP))
			continue;
		if (found++)
			break;
		a->ifindex = (int)i->if_index;
		snprintf(a->ifname, sizeof(a->ifname), "%s", i->if_name);
	}
	if_freenameindex(ifs);
	close(s);
	if (found != 1) {
		a->ifindex = 0;
		a->ifname[0] = '\0';
		return -ENODEV;
	}
	return 0;
}
