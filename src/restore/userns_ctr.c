/*
 * userns_ctr.c - a container's user namespace (runc's "user" namespace
 * with uidMappings/gidMappings): recorded at dump, made first at restore,
 * everything else of the container inside it.
 *
 * Dump: the user namespace must be a child of ours (the engine's) and own
 * every other namespace the container has apart from us (runc makes it
 * first and the others inside); else refused by name.  Its uid_map and
 * gid_map as we read them (ids inside, ours, count) and whether setgroups
 * was denied go into the record.  The process's ids in the image are ours
 * (/proc/PID/status as we read it); its capability sets are the
 * namespace's own.
 * Restore: the target's helper M forks a mapper (which stays in our user
 * namespace, where root has CAP_SETUID and CAP_SETGID), unshares
 * CLONE_NEWUSER, and the mapper writes "deny" to setgroups if recorded,
 * then gid_map and uid_map of M (only a process of the parent namespace
 * with those capabilities may write a map of several lines, and each map
 * only once).  M then becomes the namespace's root (setresgid/setresuid 0:
 * the map must name 0) with every capability in it, and creates the other
 * namespaces, which it thus owns, as without a user namespace.  The
 * process's ids are translated from ours to the namespace's before they
 * are set (rst_ctr_creds_in).  Files, mounts and tmpfs archives are the
 * namespace root's business as at runc's start: the tmpfs archives are
 * made with the namespace's ids (tar runs in it, mnt_ctr.c).
 */
#define LOG_PREFIX "ctr: "
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "image.pb-c.h"
#include "restore/ctr.h"

/* The namespaces a user namespace may own in a container, with their /proc names. */
static const struct {
	const char *name;
	int flag;
} owned[] = {
	{"mnt", CLONE_NEWNS},  {"uts", CLONE_NEWUTS}, {"ipc", CLONE_NEWIPC},
	{"net", CLONE_NEWNET}, {"pid", CLONE_NEWPID}, {"cgroup", CLONE_NEWCGROUP},
};

static int ns_ino(int fd, ino_t *ino)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	*ino = st.st_ino;
	return 0;
}

/* Whether the user namespace @ufd is a child of ours. */
static int userns_is_child(int ufd, bool *child)
{
	ino_t parent = 0, ours;
	struct stat st;
	int pfd = ioctl(ufd, NS_GET_PARENT), ret;

	if (pfd < 0)
		return -errno;
	ret = ns_ino(pfd, &parent);
	close(pfd);
	if (ret)
		return ret;
	if (stat("/proc/self/ns/user", &st) < 0)
		return -errno;
	ours = st.st_ino;
	*child = parent == ours;
	return 0;
}

/* The lines of /proc/@pid/@file (uid_map, gid_map) into @out. */
static int read_map(pid_t pid, const char *file, Haul__Ctr__IdMap ***out, size_t *n)
{
	char path[64], line[128];
	FILE *f;
	int ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	*out = calloc(RST_CTR_IDMAP_MAX, sizeof(**out));
	*n = 0;
	if (!*out)
		ret = -ENOMEM;
	while (!ret && fgets(line, sizeof(line), f)) {
		Haul__Ctr__IdMap *m;
		unsigned ns, host, count;

		if (sscanf(line, "%u %u %u", &ns, &host, &count) != 3)
			continue;
		if (*n == RST_CTR_IDMAP_MAX) {
			ret = -E2BIG;
			break;
		}
		m = calloc(1, sizeof(*m));
		if (!m) {
			ret = -ENOMEM;
			break;
		}
		haul__ctr__id_map__init(m);
		m->ns_id = ns;
		m->host_id = host;
		m->count = count;
		(*out)[(*n)++] = m;
	}
	fclose(f);
	return ret;
}

int rst_ctr_dump_userns(pid_t pid, uint32_t flags, Haul__Ctr__Container *c, char *why, size_t wl)
{
	char path[64], text[16] = "";
	bool child = false;
	ino_t user = 0;
	int ufd, ret;

	snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
	ufd = open(path, O_RDONLY | O_CLOEXEC);
	ret = ufd < 0 ? -errno : ns_ino(ufd, &user);
	if (!ret)
		ret = userns_is_child(ufd, &child);
	if (ufd >= 0)
		close(ufd);
	if (!ret && !child) {
		snprintf(why, wl,
			 "the user namespace of pid %d is not a child of the engine's (a nested "
			 "user namespace): not carried",
			 (int)pid);
		return -EOPNOTSUPP;
	}
	for (size_t i = 0; !ret && i < sizeof(owned) / sizeof(owned[0]); i++) {
		ino_t owner = 0;
		int fd, ofd;

		if (!(flags & (uint32_t)owned[i].flag))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, owned[i].name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		ofd = fd < 0 ? -1 : ioctl(fd, NS_GET_USERNS);
		ret = ofd < 0 ? -errno : ns_ino(ofd, &owner);
		if (fd >= 0)
			close(fd);
		if (ofd >= 0)
			close(ofd);
		if (!ret && owner != user) {
			snprintf(why, wl,
				 "the %s namespace of pid %d is not owned by its user namespace "
				 "(made outside it, or joined): not carried",
				 owned[i].name, (int)pid);
			return -EOPNOTSUPP;
		}
	}
	if (!ret)
		ret = read_map(pid, "uid_map", &c->uid_map, &c->n_uid_map);
	if (!ret)
		ret = read_map(pid, "gid_map", &c->gid_map, &c->n_gid_map);
	if (ret) {
		snprintf(why, wl, "cannot read the user namespace of pid %d: %s", (int)pid,
			 strerror(-ret));
		return ret;
	}
	snprintf(path, sizeof(path), "/proc/%d/setgroups", (int)pid);
	ufd = open(path, O_RDONLY | O_CLOEXEC);
	if (ufd >= 0) {
		if (read(ufd, text, sizeof(text) - 1) < 0)
			text[0] = '\0';
		close(ufd);
	}
	c->has_setgroups_deny = true;
	c->setgroups_deny = !strncmp(text, "deny", 4);
	return 0;
}

/* The record's map into @out; 0 must be mapped (the namespace's root restores it). */
static int copy_map(Haul__Ctr__IdMap *const *in, size_t n, struct rst_ctr_idmap *out, size_t *nout,
		    const char *what, char *why, size_t wl)
{
	bool root = false;

	if (n == 0 || n > RST_CTR_IDMAP_MAX) {
		snprintf(why, wl, "the container record's %s has %zu lines", what, n);
		return -EBADMSG;
	}
	for (size_t i = 0; i < n; i++) {
		if (!in[i]->count || in[i]->ns_id + (uint64_t)in[i]->count > 1ULL << 32 ||
		    in[i]->host_id + (uint64_t)in[i]->count > 1ULL << 32) {
			snprintf(why, wl, "line %zu of the container record's %s is invalid", i,
				 what);
			return -EBADMSG;
		}
		out[i] = (struct rst_ctr_idmap){in[i]->ns_id, in[i]->host_id, in[i]->count};
		root = root || in[i]->ns_id == 0;
	}
	if (!root) {
		snprintf(why, wl,
			 "the container's %s maps no id 0: haul restores the container as the "
			 "root of its user namespace",
			 what);
		return -EOPNOTSUPP;
	}
	*nout = n;
	return 0;
}

int rst_ctr_prepare_userns(const Haul__Ctr__Container *c, struct rst_ctr *out, char *why, size_t wl)
{
	int ret;

	if (!(c->ns_flags & CLONE_NEWUSER))
		return 0;
	ret = copy_map(c->uid_map, c->n_uid_map, out->uid_map, &out->n_uid_map, "uid_map", why, wl);
	if (!ret)
		ret = copy_map(c->gid_map, c->n_gid_map, out->gid_map, &out->n_gid_map, "gid_map",
			       why, wl);
	out->setgroups_deny = c->has_setgroups_deny && c->setgroups_deny;
	return ret;
}

static int write_file(pid_t pid, const char *file, const char *text)
{
	char path[64];
	ssize_t len = (ssize_t)strlen(text);
	int fd, ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != len)
		ret = -errno;
	close(fd);
	return ret;
}

static void map_text(const struct rst_ctr_idmap *m, size_t n, char *out, size_t len)
{
	size_t off = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n && off < len; i++)
		off += (size_t)snprintf(out + off, len - off, "%u %u %u\n", m[i].ns, m[i].host,
					m[i].count);
}

/* The mapper: in our user namespace, writes @target's maps once it unshared. */
static void __attribute__((noreturn))
mapper(const struct rst_ctr *c, pid_t target, int go, int done)
{
	static char text[RST_CTR_IDMAP_MAX * 36];
	char b;
	int err = read(go, &b, 1) == 1 ? 0 : -EPIPE;

	if (!err && c->setgroups_deny)
		err = write_file(target, "setgroups", "deny");
	if (!err) {
		map_text(c->gid_map, c->n_gid_map, text, sizeof(text));
		err = write_file(target, "gid_map", text);
	}
	if (!err) {
		map_text(c->uid_map, c->n_uid_map, text, sizeof(text));
		err = write_file(target, "uid_map", text);
	}
	if (write(done, &err, sizeof(err)) != sizeof(err))
		_exit(1);
	_exit(0);
}

/*
 * The tmpfs archives, opened by the helper before it leaves our user
 * namespace (the images directory, runc's mode 0600 and our root's, is
 * not the container root's to search); by mount index, -1 when none.
 * The helper is a process of its own: this is its state only.
 */
static int archive_fd[64] = {[0 ... 63] = -1};

int rst_ctr_userns_archive(size_t i)
{
	return i < sizeof(archive_fd) / sizeof(archive_fd[0]) ? archive_fd[i] : -1;
}

/*
 * What the namespace's root could not reach later, while we are still
 * ours: the working directory becomes the container's root (the engine's
 * path to it, under its 0700 state directory, is not walked again: every
 * mount is made relative to it, mnt_ctr.c) and the archives are opened.
 */
static int before_userns(const struct rst_ctr *c, int errfd)
{
	if (chdir(c->root) < 0) {
		dprintf(errfd, "cannot enter the container's root %s: %s\n", c->root,
			strerror(errno));
		return -errno;
	}
	for (size_t i = 0; i < c->n; i++) {
		if (!c->m[i].archive)
			continue;
		if (i >= sizeof(archive_fd) / sizeof(archive_fd[0])) {
			dprintf(errfd, "the container has more than %zu mounts with archives\n",
				sizeof(archive_fd) / sizeof(archive_fd[0]));
			return -E2BIG;
		}
		archive_fd[i] = open(c->m[i].archive, O_RDONLY | O_CLOEXEC);
		if (archive_fd[i] < 0) {
			dprintf(errfd, "cannot open %s: %s\n", c->m[i].archive, strerror(errno));
			return -errno;
		}
	}
	return 0;
}

int rst_ctr_userns(const struct rst_ctr *c, int errfd)
{
	int go[2], done[2], err = -EPIPE, ret = 0;
	pid_t self = getpid(), w;

	if (!(c->nsflags & CLONE_NEWUSER))
		return 0;
	ret = before_userns(c, errfd);
	if (ret)
		return ret;
	if (pipe2(go, O_CLOEXEC) || pipe2(done, O_CLOEXEC))
		return -errno;
	w = fork();
	if (w < 0)
		return -errno;
	if (w == 0) {
		close(go[1]);
		close(done[0]);
		mapper(c, self, go[0], done[1]);
	}
	close(go[0]);
	close(done[1]);
	if (unshare(CLONE_NEWUSER) < 0) {
		ret = -errno;
		dprintf(errfd, "cannot create the container's user namespace: %s\n",
			strerror(-ret));
		kill(w, SIGKILL);
	} else if (write(go[1], "g", 1) != 1 || read(done[0], &err, sizeof(err)) != sizeof(err) ||
		   err) {
		ret = err ? err : -EPIPE;
		dprintf(errfd, "cannot write the id maps of the container's user namespace: %s\n",
			strerror(-ret));
	}
	close(go[1]);
	close(done[0]);
	waitpid(w, NULL, 0);
	if (ret)
		return ret;
	/* its root, with every capability in it (our uid is not mapped there) */
	if ((!c->setgroups_deny && setgroups(0, NULL) < 0) || setresgid(0, 0, 0) < 0 ||
	    setresuid(0, 0, 0) < 0) {
		ret = -errno;
		dprintf(errfd, "cannot become root of the container's user namespace: %s\n",
			strerror(-ret));
		return ret;
	}
	/*
	 * Changing ids made us non-dumpable: our /proc/self files would then
	 * belong to the host's root, unmapped here, and timens_offsets and
	 * the like could not be written.
	 */
	if (prctl(PR_SET_DUMPABLE, 1) < 0)
		ret = -errno;
	return ret;
}

int rst_ctr_userns_root(int errfd)
{
	int fd = (int)syscall(SYS_open_tree, AT_FDCWD, ".",
			      OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE),
	    ret = 0;

	/*
	 * The root as the engine mounted it is locked in our mount namespace
	 * (made by a less privileged user namespace), and pivot_root refuses a
	 * locked mount.  A bind of it is ours: clone it, attach it on top and
	 * stand in it (its path is not walked: the engine's state directory
	 * above it is not ours to search).
	 */
	if (fd < 0 || syscall(SYS_move_mount, fd, "", AT_FDCWD, ".", MOVE_MOUNT_F_EMPTY_PATH) < 0 ||
	    fchdir(fd) < 0) {
		ret = -errno;
		dprintf(errfd, "cannot bind the container's root over itself: %s\n",
			strerror(-ret));
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

/* @id of ours as the namespace sees it, or -ERANGE when its map does not name it. */
static int64_t id_in(const struct rst_ctr_idmap *m, size_t n, uint32_t id)
{
	for (size_t i = 0; i < n; i++)
		if (id >= m[i].host && id - m[i].host < m[i].count)
			return (int64_t)m[i].ns + (id - m[i].host);
	return -ERANGE;
}

/* One mount option, with a uid= or gid= value as the namespace sees it, appended to @out. */
static int option_in(const struct rst_ctr *c, const char *opt, char *out, size_t len)
{
	bool uid = !strncmp(opt, "uid=", 4), gid = !strncmp(opt, "gid=", 4);
	size_t off = strlen(out);
	int64_t v = 0;
	int n;

	if (uid || gid)
		v = id_in(uid ? c->uid_map : c->gid_map, uid ? c->n_uid_map : c->n_gid_map,
			  (uint32_t)strtoul(opt + 4, NULL, 10));
	if (v < 0)
		return (int)v;
	if (uid || gid)
		n = snprintf(out + off, len - off, "%s%.4s%lld", off ? "," : "", opt, (long long)v);
	else
		n = snprintf(out + off, len - off, "%s%s", off ? "," : "", opt);
	return n < 0 || (size_t)n >= len - off ? -E2BIG : 0;
}

/*
 * The uid= and gid= options of the new mounts (tmpfs, devpts) as the
 * namespace sees them: mountinfo showed them in ours, and a mount made
 * inside takes them in its own.
 */
int rst_ctr_userns_mount_data(struct rst_ctr *c, char *why, size_t wl)
{
	if (!(c->nsflags & CLONE_NEWUSER))
		return 0;
	for (size_t i = 0; i < c->n; i++) {
		char *d = c->m[i].data, out[4096] = "", *save = NULL;
		int ret = 0;

		if (!d || (!strstr(d, "uid=") && !strstr(d, "gid=")))
			continue;
		for (char *o = strtok_r(d, ",", &save); o && !ret; o = strtok_r(NULL, ",", &save))
			ret = option_in(c, o, out, sizeof(out));
		if (ret) {
			snprintf(
				why, wl,
				"the options of the mount at %s name an id its user namespace does "
				"not map",
				c->m[i].target);
			return -EOPNOTSUPP;
		}
		free(c->m[i].data);
		c->m[i].data = strdup(out);
		if (!c->m[i].data)
			return -ENOMEM;
	}
	return 0;
}

int rst_ctr_creds_in(const struct rst_ctr *c, const Haul__Img__Creds *in, Haul__Img__Creds *out,
		     uint32_t **groups)
{
	uint32_t *u[] = {&out->ruid, &out->euid, &out->suid, &out->fsuid};
	uint32_t *g[] = {&out->rgid, &out->egid, &out->sgid, &out->fsgid};
	int64_t v;

	*out = *in;
	*groups = NULL;
	if (!c || !(c->nsflags & CLONE_NEWUSER))
		return 0;
	for (int i = 0; i < 4; i++) {
		v = id_in(c->uid_map, c->n_uid_map, *u[i]);
		if (v < 0)
			return (int)v;
		*u[i] = (uint32_t)v;
		v = id_in(c->gid_map, c->n_gid_map, *g[i]);
		if (v < 0)
			return (int)v;
		*g[i] = (uint32_t)v;
	}
	if (!in->n_groups)
		return 0;
	*groups = calloc(in->n_groups, sizeof(**groups));
	if (!*groups)
		return -ENOMEM;
	for (size_t i = 0; i < in->n_groups; i++) {
		v = id_in(c->gid_map, c->n_gid_map, in->groups[i]);
		if (v < 0)
			return (int)v;
		(*groups)[i] = (uint32_t)v;
	}
	out->groups = *groups;
	return 0;
}
