/*
 * ctr_podman.c - the source side of `haul migrate --container NAME
 * --podman CMD`: a podman (4.x, with runc) container, moved live so that
 * the target's podman knows it afterwards under the same name and ID.
 *
 * Podman's own checkpoint --export / restore --import carries a container
 * between hosts as an archive: config.dump (podman's configuration of it),
 * spec.dump (the OCI spec, the bundle's config.json), checkpoint/ (CRIU's
 * images; here haul's), rootfs-diff.tar and deleted.files (the container
 * layer's changes), and more that podman skips when it is absent.  haul
 * sends those parts over the file channel instead, the memory pre-copied
 * as for a runc container, and the target builds the archive and runs
 * podman's restore --import (ctr_podman_rst.c), whose runc calls haul's
 * criu entry point on the pre-copied image.
 *
 * Where each part comes from, asked as an operator would where podman has a
 * command: `podman inspect` (ID, pid, runtime, network mode, userdata and
 * overlay dirs); config.dump is the JSON podman keeps in its state
 * database (bucket ctr/<ID>/config: no command prints it; ctr_bolt.c reads
 * it); spec.dump is userdata/config.json (podman exports that file).  The
 * rootfs's changes are the overlay's upper dir: its files (made into
 * rootfs-diff.tar by tar, as podman's export does from its diff) and its
 * whiteouts (character devices 0/0: deleted.files).  They are taken while
 * the container is frozen, so they match its memory.  An opaque directory
 * (a lower directory removed and made again) is refused by name: podman
 * applies deleted.files after the tar and would lose it.  /dev/shm is a
 * tmpfs the container record carries (haul's own tmpfs archive), so
 * devshm-checkpoint.tar is not made.  The container's stdio are pipes to
 * conmon, which stays: each is dumped as "fd I of the restoring haul", and
 * the target's runc hands in conmon's new pipes as inherit_fd, keyed by
 * descriptors.json (criu_ctr.c's criu_stdio_rules, the same rule).  The source's container is removed
 * (`podman rm -f`) only after the target committed.
 */
#define LOG_PREFIX "container: "
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "haul/ctr_int.h"
#include "restore/restore.h"

static int diff_lists(const struct haul_podman *pm, const char *tmp, char *why, size_t wl);

/* Line @n (0-based) of @text into @out. */
static int nth_line(const char *text, int n, char *out, size_t len)
{
	const char *p = text, *e;

	for (int i = 0; i < n && p; i++) {
		p = strchr(p, '\n');
		p = p ? p + 1 : NULL;
	}
	if (!p)
		return -EBADMSG;
	e = strchr(p, '\n');
	if (!e || (size_t)(e - p) >= len)
		return -EBADMSG;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
	return 0;
}

enum {
	PI_ID,
	PI_NAME,
	PI_RUNTIME,
	PI_STATUS,
	PI_PID,
	PI_USERDATA,
	PI_DRIVER,
	PI_UPPER,
	PI_MERGED,
	PI_NET,
	PI_N
};

/* podman inspect's answer, one field a line (paths hold no newline in podman's storage). */
static int inspect(const char *podman, const char *name, char f[PI_N][PATH_MAX])
{
	const char *args[] = {"inspect",
			      "--type",
			      "container",
			      "--format",
			      "{{.Id}}\n{{.Name}}\n{{.OCIRuntime}}\n{{.State.Status}}\n"
			      "{{.State.Pid}}\n{{.StaticDir}}\n{{.GraphDriver.Name}}\n"
			      "{{.GraphDriver.Data.UpperDir}}\n{{.GraphDriver.Data.MergedDir}}\n"
			      "{{.HostConfig.NetworkMode}}",
			      name,
			      NULL};
	char *out = malloc(65536);
	int ret;

	if (!out)
		return -ENOMEM;
	ret = haul_runc(podman, NULL, args, NULL, "/dev/null", out, 65536,
			HAUL_CTR_RUNC_TIMEOUT_MS);
	for (int i = 0; !ret && i < PI_N; i++)
		ret = nth_line(out, i, f[i], PATH_MAX);
	free(out);
	return ret;
}

/* What haul cannot carry, refused before anything is touched.  0 or -errno, logged. */
static int refusals(const char *name, char f[PI_N][PATH_MAX])
{
	const char *net = f[PI_NET];

	if (strcmp(f[PI_STATUS], "running") || atoi(f[PI_PID]) <= 0) {
		pr_err("cannot migrate podman container %s: it is %s, not running%s", name,
		       f[PI_STATUS],
		       !strcmp(f[PI_STATUS], "paused") ? "; podman unpause it first" : "");
		return -EINVAL;
	}
	if (strcmp(f[PI_RUNTIME], "runc")) {
		pr_err("cannot migrate podman container %s: it runs under %s; only runc is "
		       "supported (podman run --runtime runc)",
		       name, f[PI_RUNTIME]);
		return -EOPNOTSUPP;
	}
	if (strcmp(net, "none") && strcmp(net, "host")) {
		pr_err("cannot migrate podman container %s: its network '%s' is a namespace podman "
		       "made with interfaces haul does not carry; run it with --network none or "
		       "--network host",
		       name, net);
		return -EOPNOTSUPP;
	}
	if (strcmp(f[PI_DRIVER], "overlay") || !f[PI_UPPER][0] || !f[PI_MERGED][0]) {
		pr_err("cannot migrate podman container %s: its storage driver is %s; only overlay "
		       "(an upper dir holds its changes) is supported",
		       name, f[PI_DRIVER]);
		return -EOPNOTSUPP;
	}
	return 0;
}

int haul_podman_inspect(const char *podman, const char *name, struct haul_podman *pm,
			struct haul_runc_state *st)
{
	char(*f)[PATH_MAX] = calloc(PI_N, PATH_MAX), want[PATH_MAX + 160], why[512] = "", *cut;
	struct stat sb;
	int ret;

	if (!f)
		return -ENOMEM;
	memset(pm, 0, sizeof(*pm));
	memset(st, 0, sizeof(*st));
	ret = inspect(podman, name, f);
	if (ret) {
		pr_err("cannot migrate container %s: '%s inspect' knows no such container (%s); see "
		       "'podman ps'",
		       name, podman, ret == -EIO ? "it failed" : strerror(-ret));
		goto out;
	}
	ret = refusals(name, f);
	if (ret)
		goto out;
	snprintf(pm->id, sizeof(pm->id), "%s", f[PI_ID]);
	snprintf(pm->name, sizeof(pm->name), "%s", f[PI_NAME]);
	snprintf(pm->userdata, sizeof(pm->userdata), "%s", f[PI_USERDATA]);
	snprintf(pm->upper, sizeof(pm->upper), "%s", f[PI_UPPER]);
	/* GRAPHROOT/overlay-containers/ID/userdata: the database is GRAPHROOT/libpod/ */
	snprintf(want, sizeof(want), "/overlay-containers/%s/userdata", pm->id);
	cut = strstr(pm->userdata, want);
	if (!haul_ctr_id_ok(pm->id) || !cut || cut[strlen(want)]) {
		pr_err("cannot migrate podman container %s: its userdata %s is not "
		       "GRAPHROOT/overlay-containers/%s/userdata, where podman's state database "
		       "is found from",
		       name, pm->userdata, pm->id);
		ret = -EOPNOTSUPP;
		goto out;
	}
	snprintf(pm->db, sizeof(pm->db), "%.*s/libpod/bolt_state.db", (int)(cut - pm->userdata),
		 pm->userdata);
	if (stat(pm->db, &sb) < 0) {
		ret = -errno;
		pr_err_r(ret,
			 "cannot migrate podman container %s: podman's state database %s is "
			 "missing (podman 5 keeps it in sqlite, which haul does not read)",
			 name, pm->db);
		goto out;
	}
	ret = diff_lists(pm, NULL, why, sizeof(why)); /* an opaque directory: refused now */
	if (ret) {
		pr_err("cannot migrate podman container %s: %s; it runs on", name, why);
		goto out;
	}
	st->pid = atoi(f[PI_PID]);
	snprintf(st->status, sizeof(st->status), "%s", f[PI_STATUS]);
	snprintf(st->bundle, sizeof(st->bundle), "%s", pm->userdata);
	snprintf(st->rootfs, sizeof(st->rootfs), "%s", f[PI_MERGED]);
	pr_info("podman container %s is %s, pid %d, under runc", name, pm->id, (int)st->pid);
out:
	free(f);
	return ret;
}

int haul_podman_send_config(const struct haul_podman *pm, struct fchan *fc)
{
	const char *const key[] = {"ctr", pm->id, "config", NULL};
	struct fchan_hdr h = {.type = FCHAN_FILE, .area = FCHAN_BUNDLE, .mode = 0600};
	char spec[PATH_MAX + 16], *cfg = NULL;
	size_t len = 0;
	int ret;

	ret = haul_bolt_get(pm->db, key, &cfg, &len);
	if (ret) {
		pr_err_r(ret,
			 "podman container %s: cannot read its configuration (ctr/%s/config) "
			 "from podman's state database %s",
			 pm->name, pm->id, pm->db);
		return ret;
	}
	h.path_len = (uint32_t)strlen("config.dump");
	h.data_len = len;
	ret = fchan_send_rec(fc, &h, "config.dump", cfg);
	free(cfg);
	snprintf(spec, sizeof(spec), "%s/config.json", pm->userdata);
	if (!ret)
		ret = fchan_send_file(fc, FCHAN_BUNDLE, spec, "spec.dump");
	if (ret == -ENOENT)
		pr_err("podman container %s: its spec %s is missing", pm->name, spec);
	return ret;
}

/*
 * The upper dir's walk (nftw has no argument for its callback: one walk at
 * a time, on haul migrate's thread): names of what the tar takes into
 * @list (NUL-separated), whiteouts into @del (a JSON array).
 */
static struct diff_walk {
	FILE *list, *del;
	size_t base, ndel;
	char *why;
	size_t wl;
} dw;

static int diff_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	const char *rel = path + dw.base;
	char opaque[2] = "";

	(void)ftw;
	if (!*rel)
		return 0; /* the upper dir itself */
	rel += *rel == '/';
	if (type == FTW_NS) {
		struct stat again;

		/* gone since the directory was read (a rename over it while the container runs) */
		if (lstat(path, &again) < 0 && errno == ENOENT)
			return 0;
	}
	if (type == FTW_DNR || type == FTW_NS) {
		snprintf(dw.why, dw.wl, "cannot read %s in the container's upper dir", path);
		return -EACCES;
	}
	if (S_ISCHR(st->st_mode) && st->st_rdev == 0) { /* overlayfs's whiteout */
		fprintf(dw.del, "%s\"/", dw.ndel++ ? "," : "");
		for (const char *p = rel; *p; p++)
			fprintf(dw.del, *p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
		fputc('"', dw.del);
		return 0;
	}
	if (S_ISDIR(st->st_mode) &&
	    (lgetxattr(path, "trusted.overlay.opaque", opaque, 1) == 1 ||
	     lgetxattr(path, "user.overlay.opaque", opaque, 1) == 1) &&
	    opaque[0] == 'y') {
		snprintf(dw.why, dw.wl,
			 "directory /%s of the rootfs was removed and made again (an opaque "
			 "overlay directory), which podman's rootfs diff cannot express",
			 rel);
		return -EOPNOTSUPP;
	}
	fprintf(dw.list, "%s%c", rel, '\0');
	return 0;
}

/*
 * @tmp/rootfs-diff.list and @tmp/deleted.files from the upper dir (@tmp
 * NULL: only the walk and its refusals).  0 or -errno.
 */
static int diff_lists(const struct haul_podman *pm, const char *tmp, char *why, size_t wl)
{
	char lp[PATH_MAX + 32], dp[PATH_MAX + 32];
	int ret;

	/* the precheck's walk (no @tmp) keeps nothing: only its refusals count */
	snprintf(lp, sizeof(lp), "%s%s", tmp ? tmp : "/dev/null", tmp ? "/rootfs-diff.list" : "");
	snprintf(dp, sizeof(dp), "%s%s", tmp ? tmp : "/dev/null", tmp ? "/deleted.files" : "");
	dw = (struct diff_walk){.base = strlen(pm->upper), .why = why, .wl = wl};
	dw.list = fopen(lp, "we");
	dw.del = fopen(dp, "we");
	if (!dw.list || !dw.del) {
		ret = -errno;
		snprintf(why, wl, "cannot write the rootfs diff's list %s", dw.list ? dp : lp);
	} else {
		fputc('[', dw.del);
		ret = nftw(pm->upper, diff_one, 32, FTW_PHYS);
		if (ret > 0 || (ret < 0 && !why[0])) {
			ret = ret > 0 ? -EIO : -errno;
			snprintf(why, wl, "cannot walk the container's upper dir %s", pm->upper);
		}
		fputc(']', dw.del);
	}
	if (dw.list && fclose(dw.list) && !ret)
		ret = -errno;
	if (dw.del && fclose(dw.del) && !ret)
		ret = -errno;
	return ret;
}

int haul_podman_send_diff(const struct haul_podman *pm, struct fchan *fc, const char *tmp,
			  char *why, size_t wl)
{
	char lp[PATH_MAX + 32], tp[PATH_MAX + 32], dp[PATH_MAX + 32], log[PATH_MAX + 32];
	const char *args[] = {"-c",
			      "--null",
			      "--no-recursion",
			      "--numeric-owner",
			      "-f",
			      tp,
			      "-C",
			      pm->upper,
			      "-T",
			      lp,
			      NULL};
	int ret;

	why[0] = '\0';
	ret = diff_lists(pm, tmp, why, wl);
	if (ret)
		return ret;
	snprintf(lp, sizeof(lp), "%s/rootfs-diff.list", tmp);
	snprintf(tp, sizeof(tp), "%s/rootfs-diff.tar", tmp);
	snprintf(dp, sizeof(dp), "%s/deleted.files", tmp);
	snprintf(log, sizeof(log), "%s/tar.log", tmp);
	ret = haul_runc("tar", NULL, args, NULL, log, NULL, 0, HAUL_CTR_RUNC_TIMEOUT_MS);
	if (ret) {
		snprintf(why, wl, "tar of the container's changes in %s failed (%s)", pm->upper,
			 log);
		return ret;
	}
	ret = fchan_send_file(fc, FCHAN_BUNDLE, tp, "rootfs-diff.tar");
	if (!ret)
		ret = fchan_send_file(fc, FCHAN_BUNDLE, dp, "deleted.files");
	if (ret)
		snprintf(why, wl, "cannot send the rootfs diff: %s", strerror(-ret));
	return ret;
}

int haul_podman_stdio(pid_t pid)
{
	char link[64], t[64], rule[32];
	int ret = 0;

	for (int i = 0; !ret && i < 3; i++) {
		ssize_t n;

		snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)pid, i);
		n = readlink(link, t, sizeof(t) - 1);
		if (n < 0)
			continue;
		t[n] = '\0';
		if (strncmp(t, "pipe:[", 6))
			continue;
		snprintf(rule, sizeof(rule), "%d=fd:%d", i, i);
		ret = rst_external_add(rule, true);
	}
	return ret ? -EINVAL : 0;
}

int haul_podman_rm(const char *podman, const char *runc_root, const char *id)
{
	/* --time 0: SIGKILL at once (a pid 1 without a handler ignores podman's SIGTERM) */
	const char *args[] = {"rm", "-f", "--time", "0", id, NULL};

	const char *del[] = {"delete", "-f", id, NULL};
	int ret;

	ret = haul_runc(podman, NULL, args, NULL, "/dev/null", NULL, 0, HAUL_CTR_RUNC_TIMEOUT_MS);
	/*
	 * Podman 4.3's cleanup after the container's exit (conmon's exit
	 * command) drops --runtime-flag, so with a runc root of its own
	 * (--runtime-flag root=DIR) runc's state is left there "stopped"
	 * (measured); runc's own delete removes it, and finds nothing otherwise.
	 */
	haul_runc("runc", runc_root, del, NULL, "/dev/null", NULL, 0, HAUL_CTR_RUNC_TIMEOUT_MS);
	return ret;
}
