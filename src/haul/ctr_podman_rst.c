/*
 * ctr_podman_rst.c - the target side of a podman container's migration
 * (ctr_podman.c is the source's): at the restore command, inside the
 * container sink (ctr_sink.c), the received parts become the archive that
 * `podman container restore --import` takes, and podman restores the
 * container from it, so that this host's podman knows and manages it
 * under the same name and ID.
 *
 * The archive (an uncompressed tar, DIR/<session>/podman-import.tar):
 * config.dump, spec.dump, rootfs-diff.tar and deleted.files from the
 * bundle area, and the images directory (haul's page-store image of the
 * pre-copied memory and state, the container record, the tmpfs archives,
 * descriptors.json) as checkpoint/, with inventory.img, which podman
 * checks for before it restores.  Podman extracts the archive into its
 * own container directory and runs runc restore there, with haul's criu
 * entry point first on its PATH; runc's criu reads the image from that
 * copy.  So the pre-copied pages are copied twice at the switch (into the
 * archive, then out of it): podman's import has no way to take an images
 * directory where it lies.  Both copies are logged with their time.
 * Podman removes its extracted checkpoint/ once the container runs.  The
 * archive, the restore and the pid's inspect share one deadline
 * (HAUL_CTR_RESTORE_TIMEOUT_MS), as runc's restore has.
 */
#define LOG_PREFIX "container: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "haul/criu_int.h"
#include "haul/ctr_int.h"
#include "haul/haul_int.h"

bool haul_podman_bundle(const char *bundle)
{
	char path[PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/config.dump", bundle);
	return !access(path, F_OK);
}

static const char *podman_cmd(void)
{
	return haul_ctr_target.podman[0] ? haul_ctr_target.podman : "podman";
}

/* inventory.img in the images directory, as the criu entry point's dump writes it. */
static int inventory(const struct ctr_rx *rx)
{
	int fd = open(rx->images, O_RDONLY | O_DIRECTORY | O_CLOEXEC), ret;

	if (fd < 0)
		return -errno;
	ret = criu_inventory_write(fd);
	close(fd);
	return ret;
}

/* The archive podman imports, from the bundle area and the images.  0 or -errno. */
static int archive(const struct ctr_rx *rx, const char *tar, const char *log, int ms)
{
	static const char *const parts[] = {"config.dump", "spec.dump", "rootfs-diff.tar",
					    "deleted.files", NULL};
	const char *args[24] = {"-c", "--numeric-owner", "-f", tar, "-C", rx->bundle};
	size_t n = 6;
	char path[PATH_MAX + 32];

	for (size_t i = 0; parts[i]; i++) {
		snprintf(path, sizeof(path), "%s/%s", rx->bundle, parts[i]);
		if (!access(path, F_OK))
			args[n++] = parts[i];
	}
	args[n++] = "-C";
	args[n++] = rx->dir;
	args[n++] = "--transform=s,^img,checkpoint,";
	args[n++] = "img";
	args[n] = NULL;
	return haul_runc("tar", NULL, args, NULL, log, NULL, 0, ms);
}

/* The restored container's init pid, as podman reports it. */
static int podman_pid(const char *id, pid_t *pid, int ms)
{
	const char *args[] = {"inspect",	"--type", "container", "--format",
			      "{{.State.Pid}}", id,	  NULL};
	char out[64];
	int ret;

	ret = haul_runc(podman_cmd(), NULL, args, NULL, "/dev/null", out, sizeof(out), ms);
	if (ret)
		return ret;
	*pid = atoi(out);
	return *pid > 0 ? 0 : -ESRCH;
}

/*
 * What is left of the restore's time from @t0: the archive, podman's restore
 * and its inspect share HAUL_CTR_RESTORE_TIMEOUT_MS, which stays under the
 * source's reply timeout (a slow target is a refused restore, not an
 * in-doubt switch).
 */
static int left_ms(double t0)
{
	double left = HAUL_CTR_RESTORE_TIMEOUT_MS - (haul_now_ms() - t0);

	return left < 1 ? 1 : (int)left; /* haul_runc takes 0 as no limit */
}

static bool expired(double t0)
{
	return haul_now_ms() - t0 >= HAUL_CTR_RESTORE_TIMEOUT_MS;
}

int haul_podman_restore(struct ctr_rx *rx, pid_t *pid, char *why, size_t wl)
{
	struct ctr_target *t = &haul_ctr_target;
	char tar[PATH_MAX + 32], log[PATH_MAX + 32];
	const char *args[] = {"container", "restore", "--import", tar, NULL};
	long long size;
	struct stat st;
	double t0 = haul_now_ms(), t1;
	int ret;

	snprintf(tar, sizeof(tar), "%s/podman-import.tar", rx->dir);
	snprintf(log, sizeof(log), "%s/podman-restore.log", rx->dir);
	ret = inventory(rx);
	if (!ret)
		ret = archive(rx, tar, log, left_ms(t0));
	if (ret) {
		snprintf(why, wl, "cannot make the archive %s for podman's import (%s)", tar, log);
		return ret;
	}
	t1 = haul_now_ms();
	size = stat(tar, &st) ? -1 : (long long)st.st_size;
	ctr_rx_lock();
	rx->podman = true;
	rx->restored = true; /* even a failed restore may leave a container to remove */
	ctr_rx_unlock();
	ret = expired(t0) ? -ETIMEDOUT : 0;
	if (!ret)
		ret = haul_runc(podman_cmd(), NULL, args, t->criu_dir, log, NULL, 0, left_ms(t0));
	if (!ret)
		ret = podman_pid(rx->id, pid, left_ms(t0));
	unlink(tar); /* podman has its own copy now */
	if (ret) {
		char last[320];

		haul_ctr_last_line(log, last, sizeof(last));
		snprintf(why, wl, "%s (%s)", last[0] ? last : strerror(-ret), log);
		return ret;
	}
	pr_info("container %s: restored by podman as pid %d: archive %lld bytes in %.1f ms, "
		"podman restore --import %.1f ms",
		rx->id, (int)*pid, size, t1 - t0, haul_now_ms() - t1);
	return 0;
}
