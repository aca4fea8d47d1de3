/*
 * ctr_migrate.c - the source side of `haul migrate --container ID`: a
 * runc container moved live to the host whose `haul pageserver
 * --containers DIR` listens at --to.
 *
 * Before anything is touched (every refusal leaves the container running):
 * runc resolves the ID (`runc state`: the init pid, the bundle, the
 * rootfs; it must be running); the rootfs must be the bundle's rootfs/
 * (it is copied there) unless --shared-storage; the container's
 * namespaces and mounts are checked as the criu entry point checks them
 * (rst_ctr_dump_check: a user namespace, a mount haul does not rebuild...
 * refused by name), with the external mounts runc itself would name
 * (ext_list below); the rootfs is scanned (a device node or socket file in
 * it is refused); the file channel opens and announces the container (the
 * target refuses an ID its runc knows).
 * Then, while the container runs: config.json and the rootfs go to the
 * target over the file channel, and haul_migrate() pre-copies the memory
 * to the target's page server into an image there.  Frozen, after the
 * final round and the state (on_frozen): the tmpfs archives, the container
 * record and descriptors.json are made (the process is frozen: they are
 * consistent with its memory), what changed in the rootfs since the copy
 * is sent again, and SYNC waits until the target has it all on disk.  The
 * restore command then makes the target run `runc restore`; once the
 * target has committed, the source's process is dead (haul_migrate kills
 * it) and `runc delete` removes the container here.  A failure at any
 * point before is haul_migrate's rollback (the container is thawed and
 * runs on) plus the file channel closing uncommitted (the target removes
 * what it received).  A podman container (--podman CMD) is resolved by
 * podman instead of runc and sends podman's parts instead of the bundle
 * (ctr_podman.c); the rest is the same.
 */
#define LOG_PREFIX "container: "
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "haul/criu_int.h"
#include "haul/ctr_int.h"
#include "haul/haul.h"
#include "haul/haul_int.h"
#include "restore/ctr.h"

struct haul_ctr_mig {
	struct haul_ctr_opts co;
	struct haul_runc_state st;
	struct haul_podman *pm; /* --podman: the container is podman's (ctr_podman.c) */
	Haul__Ctr__Container *rec;
	struct rst_ctr_ext *ext;
	char **extv;
	bool *extnull; /* extv[i] is a bind of the host's /dev/null */
	size_t next;
	char netkey[48]; /* "net[INODE]": the engine's network namespace (ctr_netns.c), or "" */
	struct fchan fc;
	struct fchan_tree tree;
	char tmp[PATH_MAX];
	double frozen_ms; /* on_frozen's share of the downtime */
	uint64_t frozen_files, frozen_bytes;
};

/* One line of mountinfo: what ext_list needs. */
struct mi {
	unsigned major, minor;
	char root[PATH_MAX], mp[PATH_MAX], fstype[64];
};

static int mi_parse(char *line, struct mi *m)
{
	char *f[10], *save = NULL, *sep = strstr(line, " - ");
	int n = 0;

	if (!sep)
		return -EBADMSG;
	*sep = '\0';
	for (char *t = strtok_r(line, " ", &save); t && n < 10; t = strtok_r(NULL, " ", &save))
		f[n++] = t;
	if (n < 5 || sscanf(f[2], "%u:%u", &m->major, &m->minor) != 2 ||
	    sscanf(sep + 3, "%63s", m->fstype) != 1)
		return -EBADMSG;
	snprintf(m->root, sizeof(m->root), "%s", f[3]);
	snprintf(m->mp, sizeof(m->mp), "%s", f[4]);
	return 0;
}

static bool below(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return !strcmp(dir, "/") || (!strncmp(path, dir, n) && (!path[n] || path[n] == '/'));
}

/*
 * The external mounts runc names at checkpoint (its ext_mnt, key = value
 * = the mountpoint): the container's bind mounts of host paths, which
 * runc's restore maps to the target's sources.  A mount is one when haul
 * would not rebuild it (a tmpfs, proc, sysfs, devpts, mqueue or cgroup at
 * its root) and it is no bind of an earlier mount of the container; a
 * cgroup mount of a container with its own cgroup namespace is rebuilt.
 * A bind of the host's /dev/null (a masked path of a container that
 * haul's criu entry point restored: runc names masked paths so, key the
 * path, value /dev/null) keeps /dev/null as its name, which the target's
 * runc maps on restore as for any masked path.
 */
static bool is_dev_null(const struct mi *m)
{
	struct stat st;

	return !strcmp(m->root, "/null") && !stat("/dev/null", &st) &&
	       major(st.st_dev) == m->major && minor(st.st_dev) == m->minor;
}

static int ext_list(struct haul_ctr_mig *c, pid_t pid, bool cgroupns)
{
	static const char *const rebuilt[] = {"tmpfs",	"proc",	  "sysfs",   "devpts",
					      "mqueue", "cgroup", "cgroup2", NULL};
	char path[64], *line = NULL;
	struct mi *m = NULL;
	size_t cap = 0, n = 0, mcap = 0;
	FILE *f;
	int ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (!ret && getline(&line, &cap, f) > 0) {
		bool ext = true;

		if (n == mcap) {
			struct mi *nm = realloc(m, (mcap = mcap ? mcap * 2 : 64) * sizeof(*m));

			if (!nm) {
				ret = -ENOMEM;
				break;
			}
			m = nm;
		}
		line[strcspn(line, "\n")] = '\0';
		if (mi_parse(line, &m[n]))
			continue;
		if (!n++)
			continue; /* the root */
		struct mi *cur = &m[n - 1];

		for (size_t i = 0; rebuilt[i]; i++)
			if (!strcmp(cur->fstype, rebuilt[i]) && !strcmp(cur->root, "/"))
				ext = false;
		if (cgroupns && !strncmp(cur->fstype, "cgroup", 6))
			ext = false;
		for (size_t j = 0; ext && j + 1 < n; j++)
			if (m[j].major == cur->major && m[j].minor == cur->minor &&
			    below(cur->root, m[j].root))
				ext = false;
		if (!ext)
			continue;
		char **nv = realloc(c->extv, (c->next + 1) * sizeof(*nv));
		bool *nn = nv ? realloc(c->extnull, (c->next + 1) * sizeof(*nn)) : NULL;

		c->extv = nv ? nv : c->extv;
		c->extnull = nn ? nn : c->extnull;
		if (!nn || !(nv[c->next] = strdup(cur->mp))) {
			ret = -ENOMEM;
			break;
		}
		nn[c->next] = is_dev_null(cur);
		c->next++;
	}
	fclose(f);
	free(line);
	free(m);
	if (!ret) {
		c->ext = calloc(c->next + 1, sizeof(*c->ext));
		if (!c->ext)
			return -ENOMEM;
		for (size_t i = 0; i < c->next; i++) {
			c->ext[i].key = c->extv[i];
			c->ext[i].value = c->extnull[i] ? "/dev/null" : c->extv[i];
		}
	}
	return ret;
}

/*
 * A network namespace the bundle's config.json names (runc joined it; the
 * engine made it, with its veth) is the engine's, as runc tells CRIU
 * (external net[INODE]:extRootNetNS): its interfaces are not refused, the
 * address moves inside it (mig_net.c), and the target's runc joins the
 * same path there.  Goes into ext_list's spare last entry.
 */
static void ext_netns(struct haul_ctr_mig *c)
{
	char path[PATH_MAX], proc[64];
	struct stat a, b;

	c->netkey[0] = '\0';
	if (haul_ctr_config_netns(c->st.bundle, path, sizeof(path)))
		return;
	snprintf(proc, sizeof(proc), "/proc/%d/ns/net", (int)c->st.pid);
	if (stat(path, &a) < 0 || stat(proc, &b) < 0 || a.st_ino != b.st_ino ||
	    a.st_dev != b.st_dev) {
		pr_warn("container %s: config.json names network namespace %s, which is not "
			"the one pid %d is in: not taken as the engine's",
			c->co.id, path, (int)c->st.pid);
		return;
	}
	snprintf(c->netkey, sizeof(c->netkey), "net[%llu]", (unsigned long long)b.st_ino);
	c->ext[c->next].key = c->netkey;
	c->ext[c->next].value = RST_CTR_NET_KEY;
	pr_info("container %s: network namespace %s is the engine's: joined on the target",
		c->co.id, path);
}

static bool own_ns(pid_t pid, const char *ns)
{
	char a[64], b[64];
	struct stat x, y;

	snprintf(a, sizeof(a), "/proc/%d/ns/%s", (int)pid, ns);
	snprintf(b, sizeof(b), "/proc/self/ns/%s", ns);
	return !stat(a, &x) && !stat(b, &y) && x.st_ino != y.st_ino;
}

/* runc's descriptors.json: the targets of the container's fds 0-2. */
static int write_descriptors(pid_t pid, const char *dir)
{
	char path[PATH_MAX + 32], link[64], t[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/descriptors.json", dir);
	f = fopen(path, "we");
	if (!f)
		return -errno;
	fputc('[', f);
	for (int i = 0; i < 3; i++) {
		ssize_t n;

		snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)pid, i);
		n = readlink(link, t, sizeof(t) - 1);
		t[n < 0 ? 0 : n] = '\0';
		fprintf(f, "%s\"", i ? "," : "");
		for (char *p = t; *p; p++)
			fprintf(f, *p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
		fputc('"', f);
	}
	fputc(']', f);
	return fclose(f) ? -errno : 0;
}

/* The container record into @dir (criu_ctr.c writes it for the criu entry point too). */
static int write_record(const Haul__Ctr__Container *rec, const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), ret;

	if (dfd < 0)
		return -errno;
	ret = criu_ctr_write_record(dfd, rec);
	close(dfd);
	return ret;
}

/* Every file of @dir (the frozen-time images) to the target's images directory. */
static int send_images(struct haul_ctr_mig *c)
{
	static const char *const fixed[] = {"descriptors.json", RST_CTR_FILE, NULL};
	char path[PATH_MAX + 300];
	int ret = 0;

	for (size_t i = 0; !ret && fixed[i]; i++) {
		snprintf(path, sizeof(path), "%s/%s", c->tmp, fixed[i]);
		ret = fchan_send_file(&c->fc, FCHAN_IMAGES, path, fixed[i]);
	}
	for (size_t i = 0; !ret && i < c->rec->n_mounts; i++) {
		const char *a = c->rec->mounts[i]->archive;

		if (!a || !a[0])
			continue;
		snprintf(path, sizeof(path), "%s/%s", c->tmp, a);
		ret = fchan_send_file(&c->fc, FCHAN_IMAGES, path, a);
	}
	if (ret == -ENOENT)
		pr_err("container %s: a file of its images in %s vanished", c->co.id, c->tmp);
	return ret;
}

/* haul_migrate's on_frozen: the container's frozen-time parts, and the rootfs's changes. */
static int on_frozen(void *arg, pid_t pid)
{
	struct haul_ctr_mig *c = arg;
	uint64_t b0 = c->fc.bytes, f0 = c->fc.files;
	double t0 = haul_now_ms();
	char why[1024] = "";
	int ret;

	ret = rst_ctr_dump_tmpfs(pid, c->rec, c->tmp, why, sizeof(why));
	if (ret) {
		pr_err("container %s: %s", c->co.id, why[0] ? why : strerror(-ret));
		return ret;
	}
	ret = write_record(c->rec, c->tmp);
	if (!ret)
		ret = write_descriptors(pid, c->tmp);
	if (ret) {
		pr_err_r(ret, "container %s: cannot write its record into %s", c->co.id, c->tmp);
		return ret;
	}
	ret = send_images(c);
	if (!ret && c->pm) {
		ret = haul_podman_send_diff(c->pm, &c->fc, c->tmp, why, sizeof(why));
		if (ret)
			pr_err("container %s: %s", c->co.id, why);
	} else if (!ret && !c->co.shared) {
		ret = fchan_tree_sync(&c->tree, &c->fc, true, why, sizeof(why));
		if (ret)
			pr_err("container %s: %s", c->co.id, why);
	}
	if (!ret)
		ret = fchan_send_cmd(&c->fc, FCHAN_SYNC, "");
	c->frozen_ms = haul_now_ms() - t0;
	c->frozen_files = c->fc.files - f0;
	c->frozen_bytes = c->fc.bytes - b0;
	if (!ret)
		pr_info("container %s: frozen-time files: %llu (%llu bytes) in %.1f ms", c->co.id,
			(unsigned long long)c->frozen_files, (unsigned long long)c->frozen_bytes,
			c->frozen_ms);
	return ret;
}

/* Where the file channel listens: --files-to, or the page server's host, port + 1. */
static int files_to(const struct haul_ctr_opts *co, const char *to, char *out, size_t len)
{
	const char *colon = strrchr(to, ':');
	long port;

	if (co->files_to) {
		snprintf(out, len, "%s", co->files_to);
		return 0;
	}
	if (!colon)
		return -EINVAL;
	port = strtol(colon + 1, NULL, 10);
	if (port <= 0 || port >= 65535)
		return -EINVAL;
	snprintf(out, len, "%.*s:%ld", (int)(colon - to), to, port + 1);
	return 0;
}

/* runc's container: its state, and its rootfs where the file channel copies it from. */
static int precheck_runc(struct haul_ctr_mig *c)
{
	const struct haul_ctr_opts *co = &c->co;
	char want[PATH_MAX + 16], a[PATH_MAX], b[PATH_MAX];
	int ret;

	if (strcmp(co->runtime, "runc")) {
		pr_err("--runtime %s: only runc is supported (crun refuses this host's hybrid "
		       "cgroups; podman's containers run under runc with --runtime runc)",
		       co->runtime);
		return -EOPNOTSUPP;
	}
	ret = haul_runc_state(co->runtime, co->root, co->id, &c->st);
	if (ret) {
		pr_err("cannot migrate container %s: %s%s%s knows no such container (%s); see "
		       "'runc list'",
		       co->id, co->runtime, co->root ? " --root " : "", co->root ? co->root : "",
		       strerror(-ret));
		return ret;
	}
	if (strcmp(c->st.status, "running") || c->st.pid <= 0) {
		pr_err("cannot migrate container %s: it is %s, not running%s", co->id, c->st.status,
		       !strcmp(c->st.status, "paused") ? "; resume it first (runc resume)" : "");
		return -EINVAL;
	}
	snprintf(want, sizeof(want), "%s/rootfs", c->st.bundle);
	if (!co->shared && (!realpath(want, a) || !realpath(c->st.rootfs, b) || strcmp(a, b))) {
		pr_err("cannot migrate container %s: its rootfs %s is not its bundle's rootfs/ "
		       "(%s), which the file channel copies; move it there, or keep it on shared "
		       "storage (--shared-storage)",
		       co->id, c->st.rootfs, want);
		return -EOPNOTSUPP;
	}
	return 0;
}

/* The checks that touch nothing.  0, or -errno with the refusal logged. */
static int precheck(struct haul_ctr_mig *c)
{
	const struct haul_ctr_opts *co = &c->co;
	char why[1024] = "";
	int ret;

	if (co->podman) {
		c->pm = calloc(1, sizeof(*c->pm));
		ret = c->pm ? haul_podman_inspect(co->podman, co->id, c->pm, &c->st) : -ENOMEM;
		if (!ret)
			ret = haul_podman_stdio(c->st.pid);
	} else {
		ret = precheck_runc(c);
	}
	if (ret)
		return ret;
	ret = ext_list(c, c->st.pid, own_ns(c->st.pid, "cgroup"));
	if (!ret)
		ext_netns(c);
	if (!ret)
		ret = rst_ctr_dump_check(c->st.pid, c->ext, c->next + !!c->netkey[0], &c->rec, why,
					 sizeof(why));
	if (!ret && !c->rec) {
		snprintf(why, sizeof(why), "pid %d has no mount namespace of its own",
			 (int)c->st.pid);
		ret = -EOPNOTSUPP;
	}
	if (!ret && !co->shared && !c->pm) {
		snprintf(c->tree.root, sizeof(c->tree.root), "%s", c->st.rootfs);
		snprintf(c->tree.prefix, sizeof(c->tree.prefix), "rootfs");
		ret = fchan_tree_sync(&c->tree, NULL, false, why, sizeof(why));
	}
	if (ret) {
		pr_err("cannot migrate container %s (pid %d): %s; it runs on", co->id,
		       (int)c->st.pid, why[0] ? why : strerror(-ret));
		return ret;
	}
	return 0;
}

void haul_ctr_mig_free(struct haul_ctr_mig *c)
{
	if (!c)
		return;
	fchan_close(&c->fc);
	fchan_tree_free(&c->tree);
	if (c->tmp[0])
		fchan_rm_rf(AT_FDCWD, c->tmp);
	rst_ctr_record_free(c->rec);
	free(c->pm);
	for (size_t i = 0; i < c->next; i++)
		free(c->extv[i]);
	free(c->extv);
	free(c->extnull);
	free(c->ext);
	free(c);
}

int haul_ctr_mig_prepare(const struct haul_ctr_opts *co, struct haul_mig_opts *o,
			 struct haul_ctr_mig **out)
{
	struct haul_ctr_mig *c = calloc(1, sizeof(*c));
	char to[300], path[PATH_MAX + 16];
	int ret;

	if (!c)
		return -ENOMEM;
	c->co = *co;
	c->fc.fd = -1;
	if (!haul_ctr_id_ok(co->id)) {
		pr_err("'%s' is not a container ID (letters, digits, _ . + -)", co->id);
		ret = -EINVAL;
		goto fail;
	}
	ret = precheck(c);
	if (ret)
		goto fail;
	ret = files_to(co, o->to, to, sizeof(to));
	if (ret) {
		pr_err("cannot tell where the file channel listens from --to %s; give --files-to",
		       o->to);
		goto fail;
	}
	randombytes_buf(&o->session_id, sizeof(o->session_id));
	ret = fchan_open(&c->fc, to, o->key, o->timeout_ms ? o->timeout_ms : 30000, o->session_id,
			 c->pm ? c->pm->id : co->id, co->shared && !c->pm ? c->st.bundle : "");
	if (!ret && c->pm)
		ret = haul_podman_send_config(c->pm, &c->fc); /* podman's: config and spec */
	if (ret)
		goto fail;
	/* while it runs: the bundle's config and the rootfs (not on shared storage) */
	if (!co->shared && !c->pm) {
		char why[1024];
		double t0 = haul_now_ms();

		snprintf(path, sizeof(path), "%s/config.json", c->st.bundle);
		ret = fchan_send_file(&c->fc, FCHAN_BUNDLE, path, "config.json");
		if (ret == -ENOENT)
			pr_err("container %s: its bundle has no config.json (%s)", co->id, path);
		if (!ret)
			ret = fchan_tree_sync(&c->tree, &c->fc, true, why, sizeof(why));
		if (!ret)
			ret = fchan_send_cmd(&c->fc, FCHAN_SYNC, "");
		else
			pr_err("container %s: %s", co->id, why);
		if (ret)
			goto fail;
		pr_info("container %s: bundle copied while it runs: %llu files, %llu bytes in "
			"%.0f ms",
			co->id, (unsigned long long)c->fc.files, (unsigned long long)c->fc.bytes,
			haul_now_ms() - t0);
	}
	/*
	 * Made last, right before haul_migrate() forks the guardian that
	 * removes it if haul dies: a haul killed during the copy above leaves
	 * nothing here.
	 */
	snprintf(c->tmp, sizeof(c->tmp), "/tmp/haul-ctr-%s-XXXXXX", co->id);
	if (!mkdtemp(c->tmp)) {
		ret = -errno;
		c->tmp[0] = '\0';
		pr_err_r(ret, "cannot create a work directory for container %s", co->id);
		goto fail;
	}
	o->workdir = c->tmp;
	o->pid = c->st.pid;
	o->on_frozen = on_frozen;
	o->frozen_arg = c;
	*out = c;
	return 0;
fail:
	haul_ctr_mig_free(c);
	return ret;
}

int haul_ctr_mig_finish(struct haul_ctr_mig *c, const struct haul_mig_result *r)
{
	const struct haul_ctr_opts *co = &c->co;
	const char *args[] = {"delete", "-f", co->id, NULL};
	int ret = 0;

	if (!r->committed)
		return 0; /* rolled back (or in doubt): the channel closes uncommitted */
	fchan_send_cmd(&c->fc, FCHAN_END, "");
	if (c->pm) {
		/* the target's podman runs it and the process here is dead */
		ret = haul_podman_rm(co->podman, co->root, c->pm->id);
		if (ret)
			pr_warn("container %s: '%s rm -f %s' failed here; the target runs it, "
				"remove what is left here with podman rm",
				co->id, co->podman, c->pm->id);
		pr_info("container %s: migrated to the target's podman; frozen-time files %.1f "
			"ms of the downtime",
			co->id, c->frozen_ms);
		return ret;
	}
	/* the target runs it and the process here is dead: runc forgets it here */
	ret = haul_runc(co->runtime, co->root, args, NULL, "/dev/null", NULL, 0,
			HAUL_CTR_RUNC_TIMEOUT_MS);
	if (ret)
		pr_warn("container %s: 'runc delete -f %s' failed here; the target runs it, "
			"remove what is left here with runc delete",
			co->id, co->id);
	pr_info("container %s: migrated; frozen-time files %.1f ms of the downtime", co->id,
		c->frozen_ms);
	return ret;
}
