/*
 * res_apparmor.c - the AppArmor label, a per-process resource (res_int.h):
 * the profile each thread is confined by (a label is per task, so each
 * thread carries its own).
 *
 * Dump: /proc/PID/task/TID/attr/apparmor/current ("haultest (enforce)"),
 * or attr/current on kernels before 5.8 where AppArmor is the LSM that
 * owns it; the profile name without its mode goes into
 * ProcessState.apparmor_labels, "" for "unconfined".  Every thread
 * unconfined, or AppArmor off on the source: no field at all.
 * A stacked label ("a//&b") or one in a policy namespace (":ns:a") is
 * refused at the precheck: changeprofile of one name would not give it back.
 *
 * Restore: the image is refused before anything is made when a profile is
 * not loaded on this host (/sys/kernel/security/apparmor/profiles), so a
 * refusal leaves nothing behind.  Each thread then writes "changeprofile
 * NAME" to its own /proc/thread-self/attr/apparmor/current, among the last
 * injected calls (RST_RES_LAST): the profile could forbid what haul injects
 * earlier (opening files, mapping), while the calls after it (seccomp,
 * capset, munmap of the trampoline) are not mediated by AppArmor.  The
 * stub is unconfined (haul's label), and an unconfined task may change to
 * any profile; its tracer, haul, is unconfined too, so the kernel's check
 * that the tracer may still trace the new domain passes.  A thread already
 * under its profile (haul itself confined by it, in a container) is left
 * as it is: a profile need not allow changing to itself.
 *
 * haul migrate: the source reads the set of its process's profiles before
 * pre-copy (rst_apparmor_profiles) and sends it in SessionOpen
 * (apparmor_profiles); the target's sink refuses the open when one is not
 * loaded (rst_apparmor_check_profiles), so the refusal comes before the
 * freeze.  A thread that changes its profile during pre-copy is still
 * caught when the state arrives (aa_validate), in the downtime: a rollback.
 */
#define LOG_PREFIX "apparmor: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/proc.h"
#include "common/validate.h"
#include "restore/res_int.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

#define AA_LABEL_MAX	 1024 /* a profile name longer than this is not one we carry */
#define AA_PROFILES	 "/sys/kernel/security/apparmor/profiles"
#define AA_SECURITYFS	 "/sys/kernel/security/apparmor"
#define AA_ATTR_OWN	 "/proc/thread-self/attr/apparmor/current"
#define AA_ATTR_OWN_OLD	 "/proc/thread-self/attr/current"
#define AA_CHANGEPROFILE "changeprofile "

/* Whether AppArmor owns attr/current here (kernels before 5.8 have no attr/apparmor/). */
static bool owns_attr_current(void)
{
	char lsm[256];

	if (haul_read_file("/sys/kernel/security/lsm", lsm, sizeof(lsm)) < 0)
		return access(AA_SECURITYFS, F_OK) == 0;
	return strstr(lsm, "apparmor") && !strstr(lsm, "selinux") && !strstr(lsm, "smack");
}

int rst_apparmor_raw(pid_t pid, pid_t tid, char *buf, size_t len)
{
	char path[96];
	int n;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/attr/apparmor/current", (int)pid, (int)tid);
	n = haul_read_file(path, buf, len);
	if (n == -ENOENT && access(path, F_OK) && owns_attr_current()) {
		snprintf(path, sizeof(path), "/proc/%d/task/%d/attr/current", (int)pid, (int)tid);
		n = haul_read_file(path, buf, len);
	}
	/* no attr/apparmor/ (AppArmor not built in), or EINVAL (built in, not enabled) */
	if (n == -EINVAL || (n == -ENOENT && access(path, F_OK)))
		return -ENOENT;
	if (n < 0)
		return n;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\0'))
		buf[--n] = '\0';
	return 0;
}

/* The profile name of label @raw ("haultest (enforce)") into @name; "" for unconfined. */
static void label_name(const char *raw, char *name, size_t len)
{
	const char *mode = strrchr(raw, '(');
	size_t n = strlen(raw);

	if (!strcmp(raw, "unconfined")) {
		name[0] = '\0';
		return;
	}
	if (mode && mode > raw + 1 && mode[-1] == ' ' && raw[n - 1] == ')')
		n = (size_t)(mode - raw) - 1;
	snprintf(name, len, "%.*s", (int)n, raw);
}

/* A label haul cannot give back with one changeprofile: 0, or -EOPNOTSUPP with @why. */
static int refuse_form(pid_t pid, pid_t tid, const char *name, char *why, size_t wl)
{
	const char *what = NULL;

	if (strstr(name, "//&"))
		what = "is a stack of profiles";
	else if (name[0] == ':')
		what = "is in a policy namespace";
	else if (strlen(name) >= AA_LABEL_MAX - 1)
		what = "is too long";
	if (!what)
		return 0;
	snprintf(why, wl,
		 "pid %d: the AppArmor label '%.128s' of thread %d %s, which haul does not carry: "
		 "run the process under a single profile of the root namespace, or move it "
		 "unconfined",
		 (int)pid, name, (int)tid, what);
	return -EOPNOTSUPP;
}

/* The profile name of thread @tid of @pid; "" when unconfined or AppArmor is off. */
static int thread_label(pid_t pid, pid_t tid, char *name, size_t len, char *why, size_t wl)
{
	char raw[AA_LABEL_MAX];
	int ret = rst_apparmor_raw(pid, tid, raw, sizeof(raw));

	name[0] = '\0';
	if (ret == -ENOENT || ret == -ESRCH)
		return 0; /* AppArmor off, or the thread exited */
	if (ret) {
		snprintf(why, wl, "cannot read the AppArmor label of thread %d of pid %d: %s",
			 (int)tid, (int)pid, strerror(-ret));
		return ret;
	}
	label_name(raw, name, len);
	return refuse_form(pid, tid, name, why, wl);
}

bool rst_apparmor_carries(pid_t pid, pid_t tid, const char *attr_current)
{
	char raw[AA_LABEL_MAX];

	return !rst_apparmor_raw(pid, tid, raw, sizeof(raw)) && !strcmp(raw, attr_current);
}

static int aa_precheck(pid_t pid, pid_t tracer, char *why, size_t wl)
{
	char path[64], name[AA_LABEL_MAX];
	struct dirent *de;
	int ret = 0;
	DIR *d;

	(void)tracer;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return errno == ENOENT ? -ESRCH : -errno;
	while (!ret && (de = readdir(d)))
		if (de->d_name[0] != '.')
			ret = thread_label(pid, atoi(de->d_name), name, sizeof(name), why, wl);
	closedir(d);
	return ret;
}

static bool aa_in_use(pid_t pid)
{
	char path[64], name[AA_LABEL_MAX], why[256];
	struct dirent *de;
	bool any = false;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	while (d && !any && (de = readdir(d)))
		any = de->d_name[0] != '.' &&
		      !thread_label(pid, atoi(de->d_name), name, sizeof(name), why, sizeof(why)) &&
		      name[0];
	if (d)
		closedir(d);
	return any;
}

/* What the dump allocated: one name per thread. */
struct aa_buf {
	char **names;
	size_t n;
};

static void aa_release(void *priv)
{
	struct aa_buf *b = priv;

	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++)
		free(b->names[i]);
	free(b->names);
	free(b);
}

static int aa_dump(struct rst_seized *s, uint64_t scratch, Haul__Img__ProcessState *ps, void **priv,
		   char *why, size_t wl)
{
	struct aa_buf *b = calloc(1, sizeof(*b));
	char name[AA_LABEL_MAX];
	bool any = false;
	int ret = 0;

	(void)scratch;
	if (!b)
		return -ENOMEM;
	*priv = b;
	b->names = calloc(s->n, sizeof(*b->names));
	if (!b->names)
		return -ENOMEM;
	for (size_t i = 0; i < s->n && !ret; i++) {
		ret = thread_label(s->pid, s->thr[i].pid, name, sizeof(name), why, wl);
		if (ret)
			break;
		b->names[i] = strdup(name);
		b->n = i + 1;
		if (!b->names[i])
			return -ENOMEM;
		any |= name[0] != '\0';
	}
	if (!ret && any) {
		ps->apparmor_labels = b->names;
		ps->n_apparmor_labels = s->n;
	}
	return ret;
}

/* Whether profile @name is loaded here: a line "NAME (mode)" of the profiles file @f. */
static bool profile_listed(FILE *f, const char *name)
{
	size_t nl = strlen(name), cap = 0;
	char *line = NULL;
	bool found = false;

	rewind(f);
	while (!found && getline(&line, &cap, f) > 0)
		found = !strncmp(line, name, nl) && line[nl] == ' ' && line[nl + 1] == '(';
	free(line);
	return found;
}

int rst_apparmor_check_profiles(int32_t pid, char *const *names, size_t n, char *why, size_t wl)
{
	FILE *f = NULL;
	int ret = 0;

	for (size_t i = 0; i < n && !ret; i++) {
		const char *name = names[i];

		if (!name[0])
			continue;
		if (!f && access(AA_SECURITYFS, F_OK)) {
			snprintf(
				why, wl,
				"pid %d: AppArmor profile '%.128s' cannot be applied: AppArmor is "
				"not enabled on this host (no %s): restore on a host with AppArmor "
				"on and the profile loaded",
				pid, name, AA_SECURITYFS);
			return -EOPNOTSUPP;
		}
		if (!f && !(f = fopen(AA_PROFILES, "re"))) {
			ret = -errno;
			snprintf(why, wl,
				 "pid %d: cannot read %s to find AppArmor profile '%.128s': %s",
				 pid, AA_PROFILES, name, strerror(-ret));
			return ret;
		}
		if (!profile_listed(f, name)) {
			snprintf(
				why, wl,
				"pid %d: AppArmor profile '%.128s' is not loaded on this host: load "
				"it (apparmor_parser -r FILE) and retry",
				pid, name);
			ret = -EOPNOTSUPP;
		}
	}
	if (f)
		fclose(f);
	return ret;
}

void rst_apparmor_profiles_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* Add @name to the set @v of *@n names unless it is "" or there already: 0 or -errno. */
static int set_add(char ***v, size_t *n, const char *name)
{
	char **nv;

	if (!name[0])
		return 0;
	for (size_t i = 0; i < *n; i++)
		if (!strcmp((*v)[i], name))
			return 0;
	if (*n == VAL_MAX_AA_PROFILES)
		return -E2BIG;
	nv = realloc(*v, (*n + 1) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	*v = nv;
	nv[*n] = strdup(name);
	if (!nv[*n])
		return -ENOMEM;
	(*n)++;
	return 0;
}

int rst_apparmor_profiles(pid_t pid, char ***out, size_t *n, char *why, size_t wl)
{
	char path[64], name[AA_LABEL_MAX];
	struct dirent *de;
	char **v = NULL;
	size_t nv = 0;
	int ret = 0;
	DIR *d;

	*out = NULL;
	*n = 0;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d) {
		ret = errno == ENOENT ? -ESRCH : -errno;
		snprintf(why, wl, "cannot list the threads of pid %d: %s", (int)pid,
			 strerror(-ret));
		return ret;
	}
	while (!ret && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		ret = thread_label(pid, atoi(de->d_name), name, sizeof(name), why, wl);
		if (!ret)
			ret = set_add(&v, &nv, name);
	}
	closedir(d);
	if (ret == -E2BIG)
		snprintf(why, wl,
			 "pid %d: its threads run under more than %d AppArmor profiles, more than "
			 "a migration names to its target: checkpoint and restore it instead, or "
			 "run its threads under fewer profiles",
			 (int)pid, VAL_MAX_AA_PROFILES);
	else if (ret == -ENOMEM)
		snprintf(why, wl, "out of memory reading the AppArmor profiles of pid %d",
			 (int)pid);
	if (ret) {
		rst_apparmor_profiles_free(v, nv);
		return ret;
	}
	*out = v;
	*n = nv;
	return 0;
}

static int aa_validate(const Haul__Img__ProcessState *ps, char *why, size_t wl)
{
	if (ps->n_apparmor_labels && ps->n_apparmor_labels != ps->n_threads + 1) {
		snprintf(why, wl, "%zu AppArmor labels for %zu threads", ps->n_apparmor_labels,
			 ps->n_threads + 1);
		return -EBADMSG;
	}
	for (size_t i = 0; i < ps->n_apparmor_labels; i++) {
		const char *name = ps->apparmor_labels[i];

		/* "": that thread is unconfined */
		if (name[0] && !val_aa_profile_ok(name)) {
			snprintf(why, wl, "AppArmor label %zu '%.64s' is not a profile name", i,
				 name);
			return -EBADMSG;
		}
	}
	return rst_apparmor_check_profiles(ps->pid, ps->apparmor_labels, ps->n_apparmor_labels, why,
					   wl);
}

/* Thread t->cur changes to profile @name by writing its own attr file. */
static int change_profile(struct rst_target *t, const char *name)
{
	const char *attr =
		access("/proc/self/attr/apparmor/current", F_OK) ? AA_ATTR_OWN_OLD : AA_ATTR_OWN;
	char cmd[sizeof(AA_CHANGEPROFILE) + AA_LABEL_MAX];
	uint64_t path, text;
	long fd, n = 0;
	int ret, len;

	len = snprintf(cmd, sizeof(cmd), AA_CHANGEPROFILE "%s", name);
	ret = rst_put_str(t, 0, attr, &path);
	if (!ret)
		ret = rst_put_str(t, 256, cmd, &text);
	if (!ret)
		ret = rst_rcall(t, SYS_openat, (uint64_t)AT_FDCWD, path, O_WRONLY | O_CLOEXEC, 0, 0,
				0, &fd);
	if (ret)
		return ret;
	ret = rst_rcall(t, SYS_write, (uint64_t)fd, text, (uint64_t)len, 0, 0, 0, &n);
	rst_rcall(t, SYS_close, (uint64_t)fd, 0, 0, 0, 0, 0, NULL);
	if (!ret && n != len)
		ret = -EIO;
	return ret;
}

/* Whether thread @tid of the stub @pid runs under profile @name already (haul confined so). */
static bool already_under(pid_t pid, pid_t tid, const char *name)
{
	char raw[AA_LABEL_MAX], cur[AA_LABEL_MAX];

	if (rst_apparmor_raw(pid, tid, raw, sizeof(raw)))
		return false;
	label_name(raw, cur, sizeof(cur));
	return !strcmp(cur, name);
}

static int aa_restore(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why, size_t wl)
{
	int ret = 0;
	size_t i;

	for (i = 0; i < ps->n_apparmor_labels && i <= t->nthr && !ret; i++) {
		/* a profile may forbid changing to itself: haul under it gave it already */
		if (!ps->apparmor_labels[i][0] ||
		    already_under(t->stub, i ? t->thr[i - 1].pid : t->stub, ps->apparmor_labels[i]))
			continue;
		t->cur = i ? &t->thr[i - 1] : NULL;
		ret = change_profile(t, ps->apparmor_labels[i]);
		if (ret)
			break;
	}
	t->cur = NULL;
	if (ret)
		snprintf(why, wl,
			 "cannot change thread %zu of pid %d to AppArmor profile '%.128s': %s (is "
			 "haul itself confined? it must run unconfined)",
			 i, ps->pid, ps->apparmor_labels[i], strerror(-ret));
	return ret;
}

const struct rst_res_ops rst_res_apparmor = {
	.name = "apparmor",
	.cap = "RES_APPARMOR",
	.version = 1,
	.phase = RST_RES_LAST,
	.in_use = aa_in_use,
	.precheck = aa_precheck,
	.dump = aa_dump,
	.release = aa_release,
	.validate = aa_validate,
	.restore = aa_restore,
};
