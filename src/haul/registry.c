/*
 * registry.c - the workloads `haul run` started, one directory each under
 * /run/haul (or $HAUL_RUN_DIR): <dir>/<name>/info holds key=value lines
 *   pid=1234            its PID in haul's namespace
 *   start=567890        /proc/PID/stat starttime, so a reused PID is not it
 *   cgroup=/sys/fs/cgroup/unified/haul/NAME
 *   cmd=CMD ARGS...
 *   log=/run/haul/NAME/out
 *   migrated_to=HOST:PORT   once haul migrate moved it away
 * written to info.tmp and renamed, so a reader never sees half an entry.
 * `haul ps` lists them; `haul migrate` marks the one it moved.
 */
#define LOG_PREFIX "registry: "
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>

#include "common/log.h"
#include "haul/haul_int.h"

const char *haul_reg_dir(void)
{
	const char *d = getenv("HAUL_RUN_DIR");

	return d && *d ? d : "/run/haul";
}

int haul_reg_save(const struct haul_wl *w)
{
	char dir[PATH_MAX], path[PATH_MAX + 16], tmp[PATH_MAX + 16];
	FILE *f;
	int ret;

	snprintf(dir, sizeof(dir), "%s/%s", haul_reg_dir(), w->name);
	ret = haul_cg_mkdir_p(dir);
	if (ret)
		return ret;
	snprintf(path, sizeof(path), "%s/info", dir);
	snprintf(tmp, sizeof(tmp), "%s/info.tmp", dir);
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	fprintf(f, "pid=%d\nstart=%llu\ncgroup=%s\ncmd=%s\nlog=%s\n", w->pid, w->start, w->cgroup,
		w->cmd, w->log);
	if (w->migrated_to[0])
		fprintf(f, "migrated_to=%s\n", w->migrated_to);
	if (fclose(f))
		return -errno;
	if (rename(tmp, path))
		return -errno;
	return 0;
}

static void copy_val(char *dst, size_t len, const char *v, size_t vl)
{
	if (vl >= len)
		vl = len - 1;
	memcpy(dst, v, vl);
	dst[vl] = '\0';
}

int haul_reg_parse(const char *text, struct haul_wl *w)
{
	const char *line = text;
	bool have_pid = false;

	while (line && *line) {
		const char *nl = strchr(line, '\n');
		const char *eq = strchr(line, '=');
		size_t kl, vl;

		if (!eq || (nl && eq > nl))
			goto next;
		kl = eq - line;
		vl = nl ? (size_t)(nl - eq - 1) : strlen(eq + 1);
		if (kl == 3 && !strncmp(line, "pid", 3)) {
			w->pid = atoi(eq + 1);
			have_pid = w->pid > 0;
		} else if (kl == 5 && !strncmp(line, "start", 5)) {
			w->start = strtoull(eq + 1, NULL, 10);
		} else if (kl == 6 && !strncmp(line, "cgroup", 6)) {
			copy_val(w->cgroup, sizeof(w->cgroup), eq + 1, vl);
		} else if (kl == 3 && !strncmp(line, "cmd", 3)) {
			copy_val(w->cmd, sizeof(w->cmd), eq + 1, vl);
		} else if (kl == 3 && !strncmp(line, "log", 3)) {
			copy_val(w->log, sizeof(w->log), eq + 1, vl);
		} else if (kl == 11 && !strncmp(line, "migrated_to", 11)) {
			copy_val(w->migrated_to, sizeof(w->migrated_to), eq + 1, vl);
		}
next:
		line = nl ? nl + 1 : NULL;
	}
	return have_pid ? 0 : -EINVAL;
}

int haul_reg_load(const char *name, struct haul_wl *w)
{
	char path[PATH_MAX], text[4096];
	int ret;

	memset(w, 0, sizeof(*w));
	snprintf(w->name, sizeof(w->name), "%s", name);
	snprintf(path, sizeof(path), "%s/%s/info", haul_reg_dir(), name);
	ret = haul_read_file(path, text, sizeof(text));
	if (ret < 0)
		return ret;
	return haul_reg_parse(text, w);
}

int haul_reg_find_pid(pid_t pid, struct haul_wl *w)
{
	unsigned long long start;
	struct dirent *de;
	DIR *d;
	int ret = -ENOENT;

	if (haul_proc_starttime(pid, &start))
		return -ENOENT;
	d = opendir(haul_reg_dir());
	if (!d)
		return -ENOENT;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (haul_reg_load(de->d_name, w))
			continue;
		if (w->pid == pid && w->start == start && !w->migrated_to[0]) {
			ret = 0;
			break;
		}
	}
	closedir(d);
	return ret;
}

char haul_proc_state(pid_t pid)
{
	char s = 0;

	if (haul_proc_stat_field(pid, 3, &s, NULL))
		return 0;
	return s;
}

long long haul_proc_cpu_ticks(pid_t pid)
{
	unsigned long long ut, st;
	int ret;

	ret = haul_proc_stat_field(pid, 14, NULL, &ut);
	if (!ret)
		ret = haul_proc_stat_field(pid, 15, NULL, &st);
	if (ret)
		return ret;
	return (long long)(ut + st);
}

/*
 * The switchover costs measured by the last migrations from this host
 * (<registry>/switchover_ms: one number, ms), so that the next estimate
 * starts from a measurement instead of a guess.
 */
double haul_costs_load(double fallback)
{
	char path[PATH_MAX], buf[64];
	double v;

	snprintf(path, sizeof(path), "%s/switchover_ms", haul_reg_dir());
	if (haul_read_file(path, buf, sizeof(buf)) <= 0)
		return fallback;
	v = atof(buf);
	return v > 0 && v < 60000 ? v : fallback;
}

void haul_costs_save(double measured_ms)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	double prev = haul_costs_load(0), v;
	FILE *f;

	/* half the last estimate, half this measurement: one outlier does not rule */
	v = prev > 0 ? (prev + measured_ms) / 2 : measured_ms;
	if (haul_cg_mkdir_p(haul_reg_dir()))
		return;
	snprintf(path, sizeof(path), "%s/switchover_ms", haul_reg_dir());
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "we");
	if (!f)
		return;
	fprintf(f, "%.3f\n", v);
	if (fclose(f) || rename(tmp, path))
		unlink(tmp);
}
