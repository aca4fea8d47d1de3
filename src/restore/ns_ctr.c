/*
 * ns_ctr.c - a container's namespaces: which ones the process has apart
 * from its engine (the caller), what of them is carried, and their
 * re-creation around the restored pid 1.
 *
 * Dump: /proc/PID/ns/X against /proc/self/ns/X for mnt, uts, ipc, net,
 * pid, cgroup, user, time.  A user namespace is carried by userns_ctr.c
 * (made first on restore, owning the others); a time namespace is haul's usual one (offsets carried).  A
 * container (own mount namespace) must be pid 1 of its own PID namespace
 * (or in one the engine names as its own: pidns_ctr.c), every other process
 * there its descendant (the tree is dumped whole,
 * tree_ckpt.c; a `runc exec` process, whose parent is outside, is refused
 * by name).  A helper child
 * joins the uts, net and ipc namespaces to read the hostname and
 * domainname, to check that the only network interface is lo (others
 * are the engine's to recreate, refused by name, unless the engine names
 * the namespace as its own: external net[INODE]), and that no SysV IPC
 * object exists (refused by id, unless a process outside the container
 * holds that namespace too: joinns_ctr.c).  Restore: the helper of the
 * restore target unshares uts, ipc (or joins the engine's: join_ns), net
 * (or joins the engine's) and cgroup (then
 * pid and mnt as for any process in a new PID namespace); pid 1 sets the
 * names, brings lo up, builds the mounts (mnt_ctr.c) and pivots into the
 * root; only then is it rebuilt into the process, so every path of the
 * image resolves inside.
 */
#define LOG_PREFIX "ctr: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/ctr.h"
#include "restore/ctr_int.h"

static const struct {
	const char *name;
	int flag;
} ns_names[] = {
	{"mnt", CLONE_NEWNS},	 {"uts", CLONE_NEWUTS},	  {"ipc", CLONE_NEWIPC},
	{"net", CLONE_NEWNET},	 {"pid", CLONE_NEWPID},	  {"cgroup", CLONE_NEWCGROUP},
	{"user", CLONE_NEWUSER}, {"time", CLONE_NEWTIME},
};

/* What the helper child reads inside the container's uts, net and ipc namespaces. */
struct ns_view {
	int err;
	char hostname[65], domainname[65];
	char iface[IF_NAMESIZE + 1]; /* an interface other than lo, "" if none */
	char ipc[64];		     /* a SysV IPC object, "" if none */
};

static void first_ipc(const char *file, const char *what, char *out, size_t len)
{
	char line[512];
	FILE *f = fopen(file, "re");

	if (!f)
		return;
	if (fgets(line, sizeof(line), f) && fgets(line, sizeof(line), f)) {
		long key = 0, id = 0;

		if (sscanf(line, "%ld %ld", &key, &id) == 2)
			snprintf(out, len, "%s key %ld id %ld", what, key, id);
	}
	fclose(f);
}

static void __attribute__((noreturn)) view_child(pid_t pid, uint32_t flags, int wfd)
{
	struct ns_view v = {0};
	struct utsname u;
	char path[64], line[256];
	FILE *f;

	for (size_t i = 0; i < 4; i++) {
		int nsfd;

		if (!(flags & (uint32_t)ns_names[i].flag) || ns_names[i].flag == CLONE_NEWNS)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, ns_names[i].name);
		nsfd = open(path, O_RDONLY | O_CLOEXEC);
		if (nsfd < 0 || setns(nsfd, ns_names[i].flag) < 0) {
			v.err = -errno;
			goto out;
		}
		close(nsfd);
	}
	if (uname(&u) == 0) {
		snprintf(v.hostname, sizeof(v.hostname), "%s", u.nodename);
		snprintf(v.domainname, sizeof(v.domainname), "%s", u.domainname);
	}
	/* /proc/PID/net is the net namespace of PID whatever ours is */
	snprintf(path, sizeof(path), "/proc/%d/net/dev", (int)pid);
	f = fopen(path, "re");
	if (f) {
		while (fgets(line, sizeof(line), f)) {
			char name[IF_NAMESIZE + 1];
			char *colon = strchr(line, ':');

			if (!colon || sscanf(line, " %16[^:]", name) != 1)
				continue;
			if (strcmp(name, "lo")) {
				snprintf(v.iface, sizeof(v.iface), "%s", name);
				break;
			}
		}
		fclose(f);
	}
	/* /proc/sysvipc is the ipc namespace of the reader: ours now */
	first_ipc("/proc/sysvipc/shm", "shared memory segment", v.ipc, sizeof(v.ipc));
	if (!v.ipc[0])
		first_ipc("/proc/sysvipc/msg", "message queue", v.ipc, sizeof(v.ipc));
	if (!v.ipc[0])
		first_ipc("/proc/sysvipc/sem", "semaphore set", v.ipc, sizeof(v.ipc));
out:
	if (write(wfd, &v, sizeof(v)) != sizeof(v))
		_exit(1);
	_exit(0);
}

static int ns_view_read(pid_t pid, uint32_t flags, struct ns_view *v)
{
	int p[2], status;
	pid_t child;
	ssize_t n;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	child = fork();
	if (child < 0) {
		close(p[0]);
		close(p[1]);
		return -errno;
	}
	if (child == 0) {
		close(p[0]);
		view_child(pid, flags, p[1]);
	}
	close(p[1]);
	n = read(p[0], v, sizeof(*v));
	close(p[0]);
	waitpid(child, &status, 0);
	if (n != sizeof(*v))
		return -EIO;
	return v->err;
}

/* The CLONE_NEW* namespaces @pid has apart from us. 0 or -errno. */
static int ns_differ(pid_t pid, uint32_t *flags)
{
	*flags = 0;
	for (size_t i = 0; i < sizeof(ns_names) / sizeof(ns_names[0]); i++) {
		char a[64], b[64];
		struct stat sa, sb;

		snprintf(a, sizeof(a), "/proc/%d/ns/%s", (int)pid, ns_names[i].name);
		snprintf(b, sizeof(b), "/proc/self/ns/%s", ns_names[i].name);
		if (stat(b, &sb) < 0)
			continue; /* a namespace this kernel does not have */
		if (stat(a, &sa) < 0)
			return -errno;
		if (sa.st_ino != sb.st_ino || sa.st_dev != sb.st_dev)
			*flags |= (uint32_t)ns_names[i].flag;
	}
	return 0;
}

/*
 * Every process of @pid's PID namespace must descend from @pid, its pid 1:
 * the tree is what is dumped (tree_ckpt.c).  A process that joined the
 * namespace from outside (`runc exec`: its parent is the engine's, outside)
 * is not part of that tree and is refused by name; CRIU cannot dump it
 * either (its parent lies outside the dumped namespace).
 */
static int check_members(pid_t pid, char *why, size_t wl)
{
	static const char *const ns[] = {"pid", NULL};
	pid_t p = rst_ctr_stray_member(pid, ns);

	if (p <= 0)
		return p;
	snprintf(why, wl,
		 "pid %d is in the PID namespace of the container of pid %d but does not "
		 "descend from its pid 1 (a `runc exec` process): not carried; end it and "
		 "checkpoint again",
		 (int)p, (int)pid);
	return -EOPNOTSUPP;
}

/*
 * pid 1 of its PID namespace, and every other process of that namespace
 * its descendant (the container's process tree).
 */
static int check_tree(pid_t pid, char *why, size_t wl)
{
	char path[64], line[512], *last;
	FILE *f;
	bool init = false;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "NSpid:", 6)) {
			line[strcspn(line, "\n")] = '\0';
			last = strrchr(line, '\t');
			init = last && !strcmp(last + 1, "1");
		}
	fclose(f);
	if (!init) {
		snprintf(why, wl,
			 "pid %d is not pid 1 of its PID namespace: only a container's init is "
			 "carried",
			 (int)pid);
		return -EOPNOTSUPP;
	}
	return check_members(pid, why, wl);
}

/* An mqueue mount of the container must be empty (queues are not carried). */
static int check_mqueues(pid_t pid, const Haul__Ctr__Container *c, char *why, size_t wl)
{
	for (size_t i = 0; i < c->n_mounts; i++) {
		char path[PATH_MAX];
		struct dirent *d;
		DIR *dir;

		if (strcmp(c->mounts[i]->fstype, "mqueue"))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/root%s", (int)pid, c->mounts[i]->mountpoint);
		dir = opendir(path);
		if (!dir)
			continue;
		while ((d = readdir(dir)))
			if (d->d_name[0] != '.') {
				snprintf(why, wl,
					 "the POSIX message queue %s/%s of pid %d is not carried",
					 c->mounts[i]->mountpoint, d->d_name, (int)pid);
				closedir(dir);
				return -EOPNOTSUPP;
			}
		closedir(dir);
	}
	return 0;
}

int rst_ctr_dump_check(pid_t pid, const struct rst_ctr_ext *ext, size_t next,
		       Haul__Ctr__Container **out, char *why, size_t wl)
{
	bool net_ext, ipc_shared, pid_ext;
	Haul__Ctr__Container *c;
	struct ns_view v;
	uint32_t flags;
	int ret;

	*out = NULL;
	ret = ns_differ(pid, &flags);
	if (ret) {
		snprintf(why, wl, "cannot read the namespaces of pid %d: %s", (int)pid,
			 strerror(-ret));
		return ret;
	}
	flags &= ~(uint32_t)CLONE_NEWTIME; /* haul's own time namespace carries its clocks */
	if ((flags & CLONE_NEWUSER) && !(flags & CLONE_NEWNS)) {
		snprintf(why, wl,
			 "pid %d is in a user namespace of its own but shares our mount namespace: "
			 "not carried (a container's is, userns_ctr.c)",
			 (int)pid);
		return -EOPNOTSUPP;
	}
	if (!(flags & CLONE_NEWNS))
		return 0; /* not a container: haul's usual process restore */
	if (!(flags & CLONE_NEWPID)) {
		snprintf(why, wl,
			 "pid %d has its own mount namespace but shares our PID namespace: not "
			 "carried",
			 (int)pid);
		return -EOPNOTSUPP;
	}
	/* a PID namespace the engine names as its own: the container joined it */
	pid_ext = rst_ctr_pid_external(pid, ext, next);
	if (pid_ext && (flags & CLONE_NEWUSER)) {
		snprintf(why, wl,
			 "the PID namespace of pid %d is the engine's (external) and the container "
			 "has a user namespace: joining it from inside the user namespace is not "
			 "done; run it without one, or without the pid namespace path",
			 (int)pid);
		return -EOPNOTSUPP;
	}
	ret = pid_ext ? rst_ctr_joined_members(pid, why, wl) : check_tree(pid, why, wl);
	if (ret)
		return ret;
	ret = ns_view_read(pid, flags, &v);
	if (ret) {
		snprintf(why, wl, "cannot enter the namespaces of pid %d: %s", (int)pid,
			 strerror(-ret));
		return ret;
	}
	/*
	 * a shared network namespace (host networking) is the host's: nothing to
	 * carry.  One the engine names as its own (CRIU's external net[INODE]:KEY,
	 * runc's network namespace path): its interfaces are the engine's network
	 * setup, and the restore joins the namespace the engine hands over.
	 */
	net_ext = (flags & CLONE_NEWNET) && rst_ctr_ns_external(pid, "net", ext, next);
	if (net_ext && (flags & CLONE_NEWUSER)) {
		snprintf(why, wl,
			 "the network namespace of pid %d is the engine's (external) and the "
			 "container has a user namespace: joining it from inside the user "
			 "namespace is not done; run it without one, or let it own its network",
			 (int)pid);
		return -EOPNOTSUPP;
	}
	if (v.iface[0] && (flags & CLONE_NEWNET) && !net_ext) {
		snprintf(why, wl,
			 "the network namespace of pid %d has interface %s: only lo is carried, "
			 "the engine must recreate others (a network namespace path in its config)",
			 (int)pid, v.iface);
		return -EOPNOTSUPP;
	}
	/* an IPC namespace held outside too is the engine's to join (joinns_ctr.c) */
	ipc_shared = (flags & CLONE_NEWIPC) && rst_ctr_ns_shared_outside(pid, "ipc") > 0;
	if (v.ipc[0] && !ipc_shared) {
		snprintf(why, wl, "the SysV %s in the IPC namespace of pid %d is not carried",
			 v.ipc, (int)pid);
		return -EOPNOTSUPP;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	haul__ctr__container__init(c);
	c->version = RST_CTR_VERSION;
	c->ns_flags = flags;
	c->hostname = strdup(v.hostname);
	c->domainname = strdup(v.domainname);
	c->has_net_external = net_ext;
	c->net_external = net_ext;
	c->has_ipc_shared = ipc_shared;
	c->ipc_shared = ipc_shared;
	c->has_pid_external = pid_ext;
	c->pid_external = pid_ext;
	ret = c->hostname && c->domainname ? 0 : -ENOMEM;
	if (!ret && (flags & CLONE_NEWUSER))
		ret = rst_ctr_dump_userns(pid, flags, c, why, wl);
	if (!ret)
		ret = rst_ctr_dump_mounts(pid, ext, next, c, why, wl);
	if (!ret)
		ret = ipc_shared ? rst_ctr_shared_ipc_check(pid, why, wl)
				 : check_mqueues(pid, c, why, wl);
	if (ret) {
		rst_ctr_record_free(c);
		return ret;
	}
	*out = c;
	return 0;
}

void rst_ctr_record_free(Haul__Ctr__Container *c)
{
	if (c)
		haul__ctr__container__free_unpacked(c, NULL);
}

/* An external network namespace: the engine's, named by RST_CTR_NET_KEY in @ext. */
static int prepare_netns(const Haul__Ctr__Container *c, const struct rst_ctr_ext *ext, size_t next,
			 struct rst_ctr *out, char *why, size_t wl)
{
	size_t i;

	if (!(c->has_net_external && c->net_external && (c->ns_flags & CLONE_NEWNET)))
		return 0;
	for (i = 0; i < next; i++)
		if (ext[i].key && !strcmp(ext[i].key, RST_CTR_NET_KEY))
			break;
	if (i == next || !ext[i].value || !ext[i].value[0] ||
	    strlen(ext[i].value) >= sizeof(out->netns)) {
		snprintf(why, wl,
			 "the container's network namespace was the engine's (external), and the "
			 "restore names none to join (inherit_fd %s): give the container its "
			 "network namespace path in config.json on this host too",
			 RST_CTR_NET_KEY);
		return -EINVAL;
	}
	snprintf(out->netns, sizeof(out->netns), "%s", ext[i].value);
	return 0;
}

int rst_ctr_prepare(const Haul__Ctr__Container *c, const char *imgdir, const char *root,
		    const struct rst_ctr_ext *ext, size_t next, struct rst_ctr *out, char *why,
		    size_t wl)
{
	int ret;

	memset(out, 0, sizeof(*out));
	if (c->version != RST_CTR_VERSION) {
		snprintf(why, wl,
			 "the container record is of version %u, this haul reads version %d: "
			 "restore with the haul that made it",
			 c->version, RST_CTR_VERSION);
		return -EPROTO;
	}
	if (c->ns_flags & ~(uint32_t)RST_CTR_NS_CARRIED) {
		snprintf(why, wl, "the container record has namespaces %#x that are not carried",
			 c->ns_flags & ~(uint32_t)RST_CTR_NS_CARRIED);
		return -EPROTO;
	}
	if (!root || root[0] != '/' || strlen(root) >= sizeof(out->root)) {
		snprintf(why, wl, "the container's root is not an absolute path");
		return -EINVAL;
	}
	out->nsflags = c->ns_flags;
	snprintf(out->root, sizeof(out->root), "%s", root);
	snprintf(out->hostname, sizeof(out->hostname), "%s", c->hostname ? c->hostname : "");
	snprintf(out->domainname, sizeof(out->domainname), "%s",
		 c->domainname ? c->domainname : "");
	if (rst_ctr_prepare_userns(c, out, why, wl))
		return -EPROTO;
	ret = prepare_netns(c, ext, next, out, why, wl);
	if (!ret)
		ret = rst_ctr_prepare_pidns(c, ext, next, out, why, wl);
	if (!ret)
		ret = rst_ctr_prepare_joins(c, ext, next, out, why, wl);
	if (ret)
		return ret;
	ret = rst_ctr_prepare_mounts(c, imgdir, ext, next, out, why, wl);
	return ret ? ret : rst_ctr_userns_mount_data(out, why, wl);
}

void rst_ctr_release(struct rst_ctr *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->m[i].target);
		free(c->m[i].fstype);
		free(c->m[i].source);
		free(c->m[i].data);
		free(c->m[i].from);
		free(c->m[i].archive);
	}
	free(c->m);
	c->m = NULL;
	c->n = 0;
}

int rst_ctr_socket_in(pid_t pid, int domain, int type)
{
	char path[64];
	struct stat a, b;
	int own, theirs, fd, ret;

	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	if (stat(path, &a) < 0 || stat("/proc/thread-self/ns/net", &b) < 0 ||
	    (a.st_ino == b.st_ino && a.st_dev == b.st_dev)) {
		fd = socket(domain, type, 0);
		return fd < 0 ? -errno : fd;
	}
	own = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	theirs = open(path, O_RDONLY | O_CLOEXEC);
	if (own < 0 || theirs < 0 || setns(theirs, CLONE_NEWNET) < 0) {
		ret = -errno;
		goto out;
	}
	fd = socket(domain, type, 0);
	ret = fd < 0 ? -errno : fd;
	if (setns(own, CLONE_NEWNET) < 0) {
		/* this thread would stay in the container's namespace: nothing may go on */
		pr_err("cannot return to haul's network namespace after a socket in pid %d's: %s",
		       (int)pid, strerror(errno));
		abort();
	}
out:
	if (own >= 0)
		close(own);
	if (theirs >= 0)
		close(theirs);
	return ret;
}

pid_t rst_ctr_find_sibling(pid_t parent, pid_t helper)
{
	char path[320], buf[4096];
	struct stat want;
	struct dirent *d;
	pid_t found = -ESRCH;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/ns/pid_for_children", (int)helper);
	if (stat(path, &want) < 0)
		return -errno;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)parent);
	dir = opendir(path);
	if (!dir)
		return -errno;
	/* children are listed by the thread that made them: look at every thread */
	while (found < 0 && (d = readdir(dir))) {
		char *tok, *save = NULL;
		ssize_t n;
		int fd;

		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/children", (int)parent, d->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		buf[n > 0 ? n : 0] = '\0';
		for (tok = strtok_r(buf, " \n", &save); tok && found < 0;
		     tok = strtok_r(NULL, " \n", &save)) {
			struct stat st;

			snprintf(path, sizeof(path), "/proc/%s/ns/pid", tok);
			if (atoi(tok) != helper && stat(path, &st) == 0 &&
			    st.st_ino == want.st_ino && st.st_dev == want.st_dev)
				found = atoi(tok);
		}
	}
	closedir(dir);
	return found;
}

int rst_ctr_unshare(const struct rst_ctr *c)
{
	int fl = (int)(c->nsflags & (CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWCGROUP));
	int ret = rst_ctr_join(c, &fl);

	if (ret)
		return ret;

	/* the engine's network namespace (external): joined, with its interfaces */
	if (c->netns[0] && (fl & CLONE_NEWNET)) {
		int fd = open(c->netns, O_RDONLY | O_CLOEXEC);

		if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
			ret = -errno;
			if (fd >= 0)
				close(fd);
			return ret;
		}
		close(fd);
		fl &= ~CLONE_NEWNET;
	}
	return fl && unshare(fl) < 0 ? -errno : 0;
}

static int lo_up(void)
{
	struct ifreq ifr = {0};
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), ret = 0;

	if (s < 0)
		return -errno;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		ret = -errno;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (!ret && ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		ret = -errno;
	close(s);
	return ret;
}

int rst_ctr_enter(const struct rst_ctr *c, int errfd)
{
	int ret;

	/* a joined uts namespace gets the dumped names too, as CRIU's join_ns */
	if ((c->nsflags & CLONE_NEWUTS) &&
	    (sethostname(c->hostname, strlen(c->hostname)) < 0 ||
	     setdomainname(c->domainname, strlen(c->domainname)) < 0)) {
		ret = -errno;
		dprintf(errfd, "cannot set the hostname %s: %s\n", c->hostname, strerror(-ret));
		return ret;
	}
	if (c->nsflags & CLONE_NEWNET) {
		ret = lo_up();
		if (ret) {
			dprintf(errfd, "cannot bring lo up in the new network namespace: %s\n",
				strerror(-ret));
			return ret;
		}
	}
	if (c->nsflags & CLONE_NEWUSER) {
		ret = rst_ctr_userns_root(errfd);
		if (ret)
			return ret;
	}
	ret = rst_ctr_mounts(c, errfd);
	if (ret)
		return ret;
	/* in a user namespace the working directory is the root already (userns_ctr.c) */
	const char *root = (c->nsflags & CLONE_NEWUSER) ? "." : c->root;

	if ((c->root_flags & MS_RDONLY) &&
	    mount(NULL, root, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0) {
		ret = -errno;
		dprintf(errfd, "cannot make the root %s read-only: %s\n", c->root, strerror(-ret));
		return ret;
	}
	/* pivot_root(".", "."): the old root stacks under the new one and is detached */
	if (chdir(root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0) {
		ret = -errno;
		dprintf(errfd, "cannot pivot into the container's root %s: %s\n", c->root,
			strerror(-ret));
		return ret;
	}
	if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0) {
		ret = -errno;
		dprintf(errfd, "cannot detach the old root under the container's root %s: %s\n",
			c->root, strerror(-ret));
		return ret;
	}
	return 0;
}
