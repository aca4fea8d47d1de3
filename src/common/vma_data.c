/*
 * vma_data.c - the parts of a shared VMA's object that hold data.
 *
 * A shmem or file VMA of another process is opened through
 * /proc/PID/map_files/START-END (root, or ptrace access to the process); on
 * that fd lseek(SEEK_DATA) and lseek(SEEK_HOLE) step over the holes of the
 * object, so pages never written are neither dumped (shm_dump.c) nor sent
 * as dirty (tracker/alias.c).  Offsets are the object's; the walk turns them
 * into addresses of the VMA and keeps to the part of the object it maps.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "common/vma.h"

int haul_vma_data_walk(pid_t pid, const struct haul_vma *v, haul_vma_data_fn fn, void *arg)
{
	uint64_t end = v->pgoff + (v->end - v->start), off = v->pgoff;
	char path[96];
	int fd, ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pid, v->start,
		 v->end);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (!ret && off < end) {
		off_t d = lseek(fd, (off_t)off, SEEK_DATA), h;

		if (d < 0 || (uint64_t)d >= end)
			break; /* ENXIO: holes to the end */
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0 || (uint64_t)h > end)
			h = (off_t)end;
		ret = fn(arg, v->start + ((uint64_t)d - v->pgoff),
			 v->start + ((uint64_t)h - v->pgoff));
		off = (uint64_t)h;
	}
	close(fd);
	return ret;
}
