/*
 * fd_fhandle.c - the path of a file named by a file handle, as the fdinfo
 * of inotify and fanotify fds shows their marks ("sdev:", "fhandle-bytes:",
 * "fhandle-type:", "f_handle:").
 *
 * The handle is opened (open_by_handle_at, O_PATH; needs
 * CAP_DAC_READ_SEARCH) relative to a mount of the superblock @sdev (from
 * /proc/self/mountinfo: the kernel's dev_t, major << 20 | minor), and
 * /proc/self/fd names the file.  The path is haul's view: the process is
 * in the same mount namespace (fds are reopened by path the same way).
 * Both kinds also refuse an fd with events queued: rst_fhandle_refuse_queued.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "restore/fd_int.h"

#define RST_FHANDLE_MAX 128 /* MAX_HANDLE_SZ */

int rst_mount_path(const char *mountinfo, long id, unsigned long sdev, char *path, size_t len)
{
	unsigned maj = (unsigned)(sdev >> 20), min = (unsigned)(sdev & 0xfffff);
	char *text = NULL, *line, *save = NULL;
	int ret = -ENOENT;

	if (rst_read_file(mountinfo, &text, NULL))
		return -EIO;
	for (line = strtok_r(text, "\n", &save); line && ret; line = strtok_r(NULL, "\n", &save)) {
		unsigned a, b;
		long mid;
		char mnt[4096];

		/* "ID PARENT MAJ:MIN ROOT MOUNTPOINT ..." */
		if (sscanf(line, "%ld %*d %u:%u %*s %4095s", &mid, &a, &b, mnt) != 4 ||
		    (id >= 0 ? mid != id : a != maj || b != min))
			continue;
		/* octal escapes (\040 for a space) are left: such a mount point is not found */
		if (strlen(mnt) >= len)
			ret = -ENAMETOOLONG;
		else {
			strcpy(path, mnt);
			ret = 0;
		}
	}
	free(text);
	return ret;
}

/* An fd on a mount of the filesystem with kernel dev_t @sdev, or -errno. */
static int mount_fd(unsigned long sdev)
{
	char mnt[4096];
	int fd = rst_mount_path("/proc/self/mountinfo", -1, sdev, mnt, sizeof(mnt));

	if (!fd) {
		/* not O_PATH: open_by_handle_at takes its mount fd by fdget, which refuses those */
		fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			fd = -errno;
	}
	return fd;
}

static int unhex(const char *s, unsigned char *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -EBADMSG;
		out[i] = (unsigned char)v;
	}
	return 0;
}

int rst_fhandle_path(const char *mark, char *path, size_t len)
{
	struct {
		struct file_handle h;
		unsigned char b[RST_FHANDLE_MAX];
	} fh;
	const char *hex = strstr(mark, "f_handle:");
	const char *sd = strstr(mark, "sdev:");
	const char *hb = strstr(mark, "fhandle-bytes:");
	const char *ht = strstr(mark, "fhandle-type:");
	char link[64];
	int mfd, fd, ret;

	if (!hex || !sd || !hb || !ht)
		return -EBADMSG;
	fh.h.handle_bytes = (unsigned)strtoul(hb + 14, NULL, 16);
	fh.h.handle_type = (int)strtol(ht + 13, NULL, 16);
	if (fh.h.handle_bytes > RST_FHANDLE_MAX || unhex(hex + 9, fh.h.f_handle, fh.h.handle_bytes))
		return -EBADMSG;
	mfd = mount_fd(strtoul(sd + 5, NULL, 16));
	if (mfd < 0)
		return mfd;
	fd = open_by_handle_at(mfd, &fh.h, O_PATH | O_CLOEXEC);
	ret = fd < 0 ? -errno : 0;
	close(mfd);
	if (ret)
		return ret;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ret = rst_read_link(link, path, len);
	close(fd);
	if (!ret && (path[0] != '/' || rst_strip_deleted(path)))
		ret = -ENOENT;
	return ret;
}

/* Bytes of events queued on fd @fd of @pid (FIONREAD on a copy of it), or -errno. */
static int queued(pid_t pid, int fd)
{
	int cfd = rst_fd_copy(pid, fd), n = 0, ret = 0;

	if (cfd < 0)
		return cfd;
	if (ioctl(cfd, FIONREAD, &n) < 0)
		ret = -errno;
	close(cfd);
	return ret ? ret : n;
}

int rst_fhandle_refuse_queued(const struct rst_fd_probe *p, const char *kind, char *why, size_t wl)
{
	int ret = queued(p->pid, p->fd);

	if (ret > 0) {
		snprintf(why, wl,
			 "fd %d (%s) has %d bytes of unread events, which a restore would "
			 "lose: let the process read them, then move it",
			 p->fd, kind, ret);
		return -EOPNOTSUPP;
	}
	if (ret < 0) {
		snprintf(why, wl, "cannot count the queued events of fd %d (%s): %s", p->fd, kind,
			 strerror(-ret));
		return -EOPNOTSUPP;
	}
	return 0;
}
