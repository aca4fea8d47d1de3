/*
 * mnt_ctr.c - a container's mount table: read from /proc/PID/mountinfo at
 * dump, rebuilt under the engine's root at restore.
 *
 * Each mount of the container becomes one of (ctr_image.proto MountKind):
 *   ROOT      its "/": on restore the root the engine prepared (runc
 *             bind-mounts the rootfs for it), made read-only last if it was;
 *   EXTERNAL  a mountpoint the engine names in ext_mnt (runc: its bind
 *             mounts, devices, masked files, v1 cgroup directories): a bind
 *             from the host path the engine gives on restore;
 *   TMPFS     a tmpfs mounted at its root: a new tmpfs with the same
 *             options; its files (device nodes, modes, owners, holes
 *             included; extended attributes not, as CRIU's default) are
 *             archived with tar while the process is stopped, one
 *             filesystem only (nested mounts are their own entries);
 *   FS        proc, sysfs, devpts, mqueue, cgroup, cgroup2 at their root: a
 *             new instance (proc of the new PID namespace, sysfs of the new
 *             network namespace, a new devpts instance);
 *   BIND      any mount whose filesystem is an earlier mount's and whose
 *             root lies below that one's (runc's read-only /proc/sys,
 *             /proc/keys over /dev/null): a bind from that earlier mount;
 * and anything else is refused naming the mount ID, mountpoint and type.
 * Mounts are rebuilt in mountinfo order (parents before children), each
 * mountpoint created when missing; per-mount flags (ro, nosuid, nodev,
 * noexec, atime) are carried, propagation is not (every mount comes back
 * private).  The restore side runs in the container's pid 1 after fork:
 * everything is allocated and checked beforehand by rst_ctr_prepare().
 */
#define LOG_PREFIX "ctr: "
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/ctr.h"

struct mi_line {
	uint32_t id;
	unsigned major, minor;
	char *root, *mp, *opts, *fstype, *source, *super;
};

/* mountinfo escapes space, tab, newline and backslash as \ooo: undo in place. */
static void unescape(char *s)
{
	char *w = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*w++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*w++ = *s;
		}
	}
	*w = '\0';
}

/* Split one mountinfo line (modified in place). 0 or -EBADMSG. */
static int mi_parse(char *line, struct mi_line *m)
{
	char *f[6], *save = NULL, *tok;
	unsigned parent;
	int i = 0;

	for (tok = strtok_r(line, " ", &save); tok && i < 6; tok = strtok_r(NULL, " ", &save))
		f[i++] = tok;
	if (i < 6 || sscanf(f[0], "%u", &m->id) != 1 || sscanf(f[1], "%u", &parent) != 1 ||
	    sscanf(f[2], "%u:%u", &m->major, &m->minor) != 2)
		return -EBADMSG;
	m->root = f[3];
	m->mp = f[4];
	m->opts = f[5];
	while (tok && strcmp(tok, "-")) /* optional fields (propagation) up to "-" */
		tok = strtok_r(NULL, " ", &save);
	m->fstype = strtok_r(NULL, " ", &save);
	m->source = strtok_r(NULL, " ", &save);
	m->super = strtok_r(NULL, " \n", &save);
	if (!m->fstype || !m->source || !m->super)
		return -EBADMSG;
	unescape(m->root);
	unescape(m->mp);
	unescape(m->source);
	return 0;
}

static unsigned long mnt_flags(const char *opts)
{
	static const struct {
		const char *name;
		unsigned long flag;
	} names[] = {
		{"ro", MS_RDONLY},	   {"nosuid", MS_NOSUID},
		{"nodev", MS_NODEV},	   {"noexec", MS_NOEXEC},
		{"noatime", MS_NOATIME},   {"nodiratime", MS_NODIRATIME},
		{"relatime", MS_RELATIME}, {"strictatime", MS_STRICTATIME},
	};
	char buf[512], *save = NULL;
	unsigned long fl = 0;

	snprintf(buf, sizeof(buf), "%s", opts);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (!strcmp(t, names[i].name))
				fl |= names[i].flag;
	/* mountinfo shows no atime word for strictatime (relatime is the default) */
	if (!(fl & (MS_NOATIME | MS_RELATIME)))
		fl |= MS_STRICTATIME;
	return fl;
}

/* The super-block options without rw/ro (the mount flags say that). */
static char *super_data(const char *super)
{
	char *out = calloc(1, strlen(super) + 1), *save = NULL;
	char *buf = strdup(super);

	if (!out || !buf) {
		free(out);
		free(buf);
		return NULL;
	}
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (!strcmp(t, "rw") || !strcmp(t, "ro"))
			continue;
		if (out[0])
			strcat(out, ",");
		strcat(out, t);
	}
	free(buf);
	return out;
}

static bool fs_rebuilt(const char *fstype)
{
	static const char *const types[] = {"proc",   "sysfs",	"devpts",
					    "mqueue", "cgroup", "cgroup2"};

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (!strcmp(fstype, types[i]))
			return true;
	return false;
}

/* The root of mount @m lies at or below @base's root: the rest, or NULL. */
static const char *below(const char *root, const char *base)
{
	size_t n = strlen(base);

	if (!strcmp(base, "/"))
		return root;
	if (strncmp(root, base, n) || (root[n] && root[n] != '/'))
		return NULL;
	return root[n] ? root + n : "/";
}

/*
 * A cgroup or cgroup2 mount made inside the container's cgroup namespace
 * shows, to us, the root of that namespace as its root: the process's own
 * cgroup of that hierarchy (/proc/PID/cgroup, "N:controllers:path", every
 * controller among the mount's options; "0::path" for cgroup2).
 */
static bool cgroupns_root(pid_t pid, const struct mi_line *m)
{
	char path[64], line[1024];
	bool v2 = !strcmp(m->fstype, "cgroup2"), found = false;
	FILE *f;

	if (!v2 && strcmp(m->fstype, "cgroup"))
		return false;
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL, *save = NULL;
		bool all = true;

		if (!c2)
			continue;
		*c2 = '\0';
		c2[1 + strcspn(c2 + 1, "\n")] = '\0';
		if (strcmp(c2 + 1, m->root) || (v2 != (c1[1] == '\0')))
			continue;
		for (char *t = strtok_r(c1 + 1, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			char opt[128];

			snprintf(opt, sizeof(opt), ",%s,", t);
			char sup[1024];

			snprintf(sup, sizeof(sup), ",%s,", m->super);
			all = all && strstr(sup, opt);
		}
		found = all;
	}
	fclose(f);
	return found;
}

/* Classify line @m as record mount @out (@prev: the lines before it). 0 or -EOPNOTSUPP. */
static int mi_classify(pid_t pid, const struct mi_line *m, const struct mi_line *prev, size_t n,
		       const struct rst_ctr_ext *ext, size_t next, bool cgroupns,
		       Haul__Ctr__Mount *out, char *why, size_t wl)
{
	out->mnt_id = m->id;
	out->mountpoint = strdup(m->mp);
	out->fstype = strdup(m->fstype);
	out->flags = mnt_flags(m->opts);
	if (!out->mountpoint || !out->fstype)
		return -ENOMEM;
	if (!strcmp(m->mp, "/")) {
		out->kind = HAUL__CTR__MOUNT_KIND__MNT_ROOT;
		return n == 0 ? 0 : -EOPNOTSUPP;
	}
	for (size_t k = 0; k < next; k++) {
		if (strcmp(ext[k].key, m->mp))
			continue;
		char path[PATH_MAX + 32];
		struct stat st;

		snprintf(path, sizeof(path), "/proc/%d/root%s", (int)pid, m->mp);
		out->kind = HAUL__CTR__MOUNT_KIND__MNT_EXTERNAL;
		/* on dump the value is the name the image keeps; on restore it is the key */
		out->ext_key = strdup(ext[k].value[0] ? ext[k].value : m->mp);
		out->has_is_file = true;
		out->is_file = stat(path, &st) == 0 && !S_ISDIR(st.st_mode);
		return out->ext_key ? 0 : -ENOMEM;
	}
	if ((!strcmp(m->root, "/") && (!strcmp(m->fstype, "tmpfs") || fs_rebuilt(m->fstype))) ||
	    (cgroupns && cgroupns_root(pid, m))) {
		out->kind = strcmp(m->fstype, "tmpfs") ? HAUL__CTR__MOUNT_KIND__MNT_FS
						       : HAUL__CTR__MOUNT_KIND__MNT_TMPFS;
		out->data = super_data(m->super);
		out->source = strdup(m->source);
		return out->data && out->source ? 0 : -ENOMEM;
	}
	for (size_t j = n; j-- > 0;) {
		const char *rest;

		if (prev[j].major != m->major || prev[j].minor != m->minor)
			continue;
		rest = below(m->root, prev[j].root);
		if (!rest)
			continue;
		out->kind = HAUL__CTR__MOUNT_KIND__MNT_BIND;
		out->has_from = true;
		out->from = (uint32_t)j;
		out->from_path = strdup(rest);
		{
			char path[PATH_MAX + 32];
			struct stat st;

			snprintf(path, sizeof(path), "/proc/%d/root%s", (int)pid, m->mp);
			out->has_is_file = true;
			out->is_file = stat(path, &st) == 0 && !S_ISDIR(st.st_mode);
		}
		return out->from_path ? 0 : -ENOMEM;
	}
	snprintf(why, wl,
		 "mount %u at %s (%s from %s, root %s) of pid %d is not carried: not a new "
		 "instance haul rebuilds (tmpfs, proc, sysfs, devpts, mqueue, cgroup), not a bind "
		 "of another mount of the container, not an external mount the engine names "
		 "(ext_mnt); give it to the engine as a bind mount",
		 m->id, m->mp, m->fstype, m->source, m->root, (int)pid);
	return -EOPNOTSUPP;
}

int rst_ctr_dump_mounts(pid_t pid, const struct rst_ctr_ext *ext, size_t next,
			Haul__Ctr__Container *c, char *why, size_t wl)
{
	char path[64], *text = NULL, *line, *save = NULL;
	struct mi_line *ml = NULL;
	size_t cap = 0, len = 0, n = 0;
	FILE *f;
	int ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)pid);
	f = fopen(path, "re");
	if (!f) {
		ret = -errno;
		snprintf(why, wl, "cannot read the mounts of pid %d: %s", (int)pid, strerror(-ret));
		return ret;
	}
	if (getdelim(&text, &cap, '\0', f) < 0)
		ret = -EIO;
	fclose(f);
	if (ret) {
		snprintf(why, wl, "cannot read the mounts of pid %d", (int)pid);
		free(text);
		return ret;
	}
	for (char *p = text; *p; p++)
		len += *p == '\n';
	ml = calloc(len + 1, sizeof(*ml));
	c->mounts = calloc(len + 1, sizeof(*c->mounts));
	if (!ml || !c->mounts) {
		ret = -ENOMEM;
		goto out;
	}
	for (line = strtok_r(text, "\n", &save); line && !ret; line = strtok_r(NULL, "\n", &save)) {
		Haul__Ctr__Mount *m = calloc(1, sizeof(*m));

		if (!m) {
			ret = -ENOMEM;
			break;
		}
		haul__ctr__mount__init(m);
		c->mounts[c->n_mounts++] = m;
		if (mi_parse(line, &ml[n])) {
			snprintf(why, wl, "line %zu of the mountinfo of pid %d does not parse",
				 n + 1, (int)pid);
			ret = -EBADMSG;
			break;
		}
		ret = mi_classify(pid, &ml[n], ml, n, ext, next, c->ns_flags & CLONE_NEWCGROUP, m,
				  why, wl);
		if (ret == -EOPNOTSUPP && !why[0])
			snprintf(why, wl,
				 "the first mount of pid %d is not its root (/): its mount "
				 "namespace is not a container's",
				 (int)pid);
		n++;
	}
	if (!ret && !n) {
		snprintf(why, wl, "pid %d has no mounts", (int)pid);
		ret = -EOPNOTSUPP;
	}
out:
	free(ml);
	free(text);
	return ret;
}

/*
 * Run @argv (a tar), waiting for it. 0, or -EIO when it failed.  GNU tar
 * exits 1 for "file changed as we read it": a mountpoint directory whose
 * nested mount shows another link count than its stat; the process is
 * stopped, nothing of the tmpfs changes.
 */
static int run_tar(char *const argv[], pid_t userns_of, int out)
{
	char path[64];
	int status, fd;
	pid_t child = fork();

	if (child < 0)
		return -errno;
	if (child == 0) {
		if (out >= 0 && dup2(out, STDOUT_FILENO) < 0)
			_exit(127);
		/*
		 * In a container's user namespace: owners as it sees them
		 * (userns_ctr.c).  The archive is then written by us, on its
		 * stdout: the images directory (runc's is mode 0600) is not
		 * its to search.
		 */
		if (userns_of) {
			snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)userns_of);
			fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0 || setns(fd, CLONE_NEWUSER) < 0)
				_exit(127);
			/* its root: an unmapped uid would lose every capability at exec */
			if (setgroups(0, NULL) < 0 && errno != EPERM)
				_exit(127);
			if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
				_exit(127);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	if (waitpid(child, &status, 0) < 0)
		return -errno;
	return WIFEXITED(status) && WEXITSTATUS(status) <= 1 ? 0 : -EIO;
}

/* run_tar() with @in (when >= 0) as its stdin: the archive it extracts from "-". */
static int run_tar_in(char *const argv[], int in)
{
	int saved = -1, ret;

	if (in >= 0) {
		saved = dup(STDIN_FILENO);
		if (lseek(in, 0, SEEK_SET) < 0 || dup2(in, STDIN_FILENO) < 0)
			return -errno;
	}
	ret = run_tar(argv, 0, -1);
	if (saved >= 0) {
		dup2(saved, STDIN_FILENO);
		close(saved);
	}
	return ret;
}

static const char *find_tar(void)
{
	return access("/usr/bin/tar", X_OK) == 0 ? "/usr/bin/tar"
	       : access("/bin/tar", X_OK) == 0	 ? "/bin/tar"
						 : NULL;
}

/*
 * tar the tmpfs of mount @i, seen at @dir, to @out.  A file mounted over
 * inside it (a device runc binds from the host in a user namespace) is
 * left out: tar would see the mounted file, and the restore mounts it
 * again over the point it makes.
 */
static int archive_one(const Haul__Ctr__Container *c, size_t i, const char *tar, const char *dir,
		       pid_t pid, int out)
{
	const char *top = c->mounts[i]->mountpoint;
	size_t n = 0, tl = strlen(top);
	char **argv = calloc(c->n_mounts + 12, sizeof(*argv));
	int ret;

	if (!argv)
		return -ENOMEM;
	argv[n++] = (char *)tar;
	argv[n++] = "--warning=no-file-changed";
	argv[n++] = "--one-file-system";
	argv[n++] = "--numeric-owner";
	argv[n++] = "--sparse";
	for (size_t j = i + 1; j < c->n_mounts; j++) {
		const char *p = c->mounts[j]->mountpoint;

		if (!c->mounts[j]->is_file || strncmp(p, top, tl) || p[tl == 1 ? 0 : tl] != '/')
			continue;
		if (asprintf(&argv[n], "--exclude=.%s", p + (tl == 1 ? 0 : tl)) < 0) {
			argv[n] = NULL;
			break;
		}
		n++;
	}
	argv[n++] = "-cpf";
	argv[n++] = "-";
	argv[n++] = "-C";
	argv[n++] = (char *)dir;
	argv[n++] = ".";
	ret = run_tar(argv, (c->ns_flags & CLONE_NEWUSER) ? pid : 0, out);
	for (size_t k = 5; k < n; k++)
		if (!strncmp(argv[k], "--exclude=", 10))
			free(argv[k]);
	free(argv);
	return ret;
}

int rst_ctr_dump_tmpfs(pid_t pid, Haul__Ctr__Container *c, const char *imgdir, char *why, size_t wl)
{
	const char *tar = find_tar();

	for (size_t i = 0; i < c->n_mounts; i++) {
		Haul__Ctr__Mount *m = c->mounts[i];
		char name[64], file[PATH_MAX], dir[PATH_MAX + 32];
		int ret;

		if (m->kind != HAUL__CTR__MOUNT_KIND__MNT_TMPFS)
			continue;
		if (!tar) {
			snprintf(why, wl, "no tar here to archive the tmpfs at %s; install tar",
				 m->mountpoint);
			return -ENOENT;
		}
		snprintf(name, sizeof(name), "ctr-tmpfs-%zu.tar", i);
		snprintf(file, sizeof(file), "%s/%s", imgdir, name);
		snprintf(dir, sizeof(dir), "/proc/%d/root%s", (int)pid, m->mountpoint);
		int out = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		ret = out < 0 ? -errno : archive_one(c, i, tar, dir, pid, out);
		if (out >= 0 && (fsync(out) || close(out)) && !ret)
			ret = -EIO;
		if (ret) {
			snprintf(why, wl,
				 "cannot archive the tmpfs at %s of pid %d into %s (tar failed)",
				 m->mountpoint, (int)pid, file);
			return ret;
		}
		m->archive = strdup(name);
		if (!m->archive)
			return -ENOMEM;
	}
	return 0;
}

/* An absolute path of the record that stays under the root it is joined to. */
static bool path_ok(const char *p)
{
	size_t n = p ? strlen(p) : 0;

	return n && p[0] == '/' && !strstr(p, "/../") && !(n >= 3 && !strcmp(p + n - 3, "/.."));
}

static char *join3(const char *a, const char *b, const char *c)
{
	char *s;

	if (!strcmp(b, "/"))
		b = "";
	if (c && !strcmp(c, "/"))
		c = "";
	if (asprintf(&s, "%s%s%s", a, b, c ? c : "") < 0)
		return NULL;
	return s;
}

int rst_ctr_prepare_mounts(const Haul__Ctr__Container *c, const char *imgdir,
			   const struct rst_ctr_ext *ext, size_t next, struct rst_ctr *out,
			   char *why, size_t wl)
{
	const char *tar = find_tar();

	out->m = calloc(c->n_mounts + 1, sizeof(*out->m));
	if (!out->m)
		return -ENOMEM;
	for (size_t i = 0; i < c->n_mounts; i++) {
		const Haul__Ctr__Mount *m = c->mounts[i];
		struct rst_ctr_mount *r = &out->m[out->n];

		if (!path_ok(m->mountpoint)) {
			snprintf(why, wl, "mount %zu of the container record has a bad mountpoint",
				 i);
			return -EBADMSG;
		}
		if (m->kind == HAUL__CTR__MOUNT_KIND__MNT_ROOT) {
			if (i) {
				snprintf(why, wl,
					 "the container record has a second root (mount %zu)", i);
				return -EBADMSG;
			}
			out->root_flags = m->flags;
			continue;
		}
		out->n++;
		r->kind = m->kind;
		r->flags = m->flags;
		r->is_file = m->has_is_file && m->is_file;
		r->target = join3(out->root, m->mountpoint, NULL);
		r->fstype = strdup(m->fstype ? m->fstype : "");
		r->source = strdup(m->source ? m->source : "none");
		r->data = m->data ? strdup(m->data) : NULL;
		if (!r->target || !r->fstype || !r->source || (m->data && !r->data))
			return -ENOMEM;
		switch (m->kind) {
		case HAUL__CTR__MOUNT_KIND__MNT_FS:
			if (!fs_rebuilt(m->fstype)) {
				snprintf(why, wl,
					 "mount %s of the record is of type %s, not rebuilt",
					 m->mountpoint, m->fstype);
				return -EBADMSG;
			}
			break;
		case HAUL__CTR__MOUNT_KIND__MNT_TMPFS:
			if (!m->archive || strchr(m->archive, '/')) {
				snprintf(why, wl, "the tmpfs at %s has no archive in the image",
					 m->mountpoint);
				return -EBADMSG;
			}
			if (asprintf(&r->archive, "%s/%s", imgdir, m->archive) < 0)
				return -ENOMEM;
			if (access(r->archive, R_OK) < 0 || !tar) {
				snprintf(why, wl, "cannot read %s (the tmpfs at %s) or find tar",
					 r->archive, m->mountpoint);
				return -ENOENT;
			}
			snprintf(out->tar, sizeof(out->tar), "%s", tar);
			break;
		case HAUL__CTR__MOUNT_KIND__MNT_BIND:
			/* from an earlier mount (the root's tree too: from the new root) */
			if (!m->has_from || m->from >= i || !path_ok(m->from_path)) {
				snprintf(why, wl, "the bind mount at %s names no earlier mount",
					 m->mountpoint);
				return -EBADMSG;
			}
			r->from = join3(out->root, c->mounts[m->from]->mountpoint, m->from_path);
			if (!r->from)
				return -ENOMEM;
			break;
		case HAUL__CTR__MOUNT_KIND__MNT_EXTERNAL: {
			size_t k;

			for (k = 0; k < next; k++)
				if (m->ext_key && !strcmp(ext[k].key, m->ext_key))
					break;
			if (k == next) {
				snprintf(
					why, wl,
					"the image has the external mount %s: the engine must name "
					"its source on this host (ext_mnt)",
					m->ext_key ? m->ext_key : m->mountpoint);
				return -ENOENT;
			}
			r->from = strdup(ext[k].value);
			if (!r->from)
				return -ENOMEM;
			break;
		}
		default:
			snprintf(why, wl, "mount %s of the record is of an unknown kind %d",
				 m->mountpoint, (int)m->kind);
			return -EBADMSG;
		}
	}
	return 0;
}

/* mkdir -p @path (and the file itself when @file). 0 or -errno. */
static int make_point(const char *path, bool file)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	/* one that exists is the point as it is (a /proc file is not ours to open for writing) */
	if (file && access(buf, F_OK) == 0)
		return 0;
	if (file) {
		int fd = open(buf, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

		if (fd < 0)
			return errno == EISDIR ? 0 : -errno;
		close(fd);
		return 0;
	}
	if (mkdir(buf, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/*
 * @path under the container's root as the mounts see it: in a user
 * namespace relative to the working directory, which is that root
 * (userns_ctr.c), else as it is.
 */
static const char *at_root(const struct rst_ctr *c, const char *path, char *buf, size_t len)
{
	size_t n = strlen(c->root);

	if (!(c->nsflags & CLONE_NEWUSER) || !path || strncmp(path, c->root, n) ||
	    (path[n] && path[n] != '/'))
		return path;
	snprintf(buf, len, ".%s", path + n);
	return buf;
}

static int one_mount(const struct rst_ctr *c, const struct rst_ctr_mount *m, size_t i)
{
	unsigned long keep = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME |
			     MS_NODIRATIME | MS_RELATIME | MS_STRICTATIME;
	char tbuf[PATH_MAX], fbuf[PATH_MAX];
	const char *target = at_root(c, m->target, tbuf, sizeof(tbuf));
	const char *from = m->kind == HAUL__CTR__MOUNT_KIND__MNT_BIND
				   ? at_root(c, m->from, fbuf, sizeof(fbuf))
				   : m->from;
	int ret = make_point(target, m->is_file);

	if (ret)
		return ret;
	switch (m->kind) {
	case HAUL__CTR__MOUNT_KIND__MNT_FS:
		return mount(m->source, target, m->fstype, m->flags & keep, m->data) ? -errno : 0;
	case HAUL__CTR__MOUNT_KIND__MNT_TMPFS: {
		int in = rst_ctr_userns_archive(i);
		char *argv[] = {
			(char *)c->tar, "--numeric-owner", "-xpf", in >= 0 ? "-" : m->archive,
			"-C",		(char *)target,	   NULL};

		if (mount(m->source, target, "tmpfs", m->flags & keep & ~MS_RDONLY, m->data))
			return -errno;
		ret = run_tar_in(argv, in);
		if (ret)
			return ret;
		if ((m->flags & MS_RDONLY) &&
		    mount(NULL, target, NULL, MS_REMOUNT | (m->flags & keep), m->data))
			return -errno;
		return 0;
	}
	default: /* BIND, EXTERNAL */
		if (mount(from, target, NULL, MS_BIND, NULL))
			return -errno;
		if ((m->flags & keep) &&
		    mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | (m->flags & keep), NULL))
			return -errno;
		return 0;
	}
}

int rst_ctr_mounts(const struct rst_ctr *c, int errfd)
{
	for (size_t i = 0; i < c->n; i++) {
		const struct rst_ctr_mount *m = &c->m[i];
		int ret = one_mount(c, m, i);

		if (ret) {
			dprintf(errfd, "cannot mount %s (%s%s%s) at %s: %s\n",
				m->from ? m->from : m->source, m->fstype, m->from ? ", bind" : "",
				m->archive ? ", with its archived files" : "", m->target,
				strerror(-ret));
			return ret;
		}
	}
	return 0;
}
