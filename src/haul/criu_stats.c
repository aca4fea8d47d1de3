/*
 * criu_stats.c - the "stats-dump" file of an images directory, in CRIU's
 * format, for `podman container checkpoint --print-stats` (go-criu's
 * stats reader) and crit.
 *
 * Byte by byte (little-endian u32s): 0x55105940 (CRIU's service-image
 * magic), 0x57093306 (the stats image), the size N of the message, then N
 * bytes of StatsFile (proto/criu_rpc.proto) with only `dump` set.  What
 * haul writes into it: frozen_time = the stop of the process (seize to
 * commit, or to the kill), memdump_time = memwrite_time = the whole
 * checkpoint (haul copies and writes pages in one pass), pages_written =
 * pages with data, pages_scanned = those plus the zero pages,
 * freezing_time, pages_skipped_parent and pages_lazy 0 (no parent images,
 * no lazy pages).  Written with a temporary name and renamed: a reader
 * never sees half of it.
 */
#define LOG_PREFIX "criu: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "haul/criu_int.h"

#define STATS_SERVICE_MAGIC 0x55105940u
#define STATS_IMAGE_MAGIC   0x57093306u

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
	p[2] = (v >> 16) & 0xff;
	p[3] = v >> 24;
}

static uint32_t clamp32(uint64_t v)
{
	return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

int criu_stats_write(int imgfd, uint64_t frozen_us, uint64_t memdump_us, uint64_t memwrite_us,
		     uint64_t pages_written, uint64_t pages_zero)
{
	Haul__Criu__StatsFile sf = HAUL__CRIU__STATS_FILE__INIT;
	Haul__Criu__DumpStats d = HAUL__CRIU__DUMP_STATS__INIT;
	size_t len;
	uint8_t *buf;
	int fd, ret = 0;

	d.has_freezing_time = d.has_frozen_time = d.has_memdump_time = d.has_memwrite_time = true;
	d.has_pages_scanned = d.has_pages_skipped_parent = d.has_pages_written = true;
	d.has_pages_lazy = true;
	d.frozen_time = clamp32(frozen_us);
	d.memdump_time = clamp32(memdump_us);
	d.memwrite_time = clamp32(memwrite_us);
	d.pages_written = pages_written;
	d.pages_scanned = pages_written + pages_zero;
	sf.dump = &d;
	len = haul__criu__stats_file__get_packed_size(&sf);
	buf = malloc(12 + len);
	if (!buf)
		return -ENOMEM;
	put_le32(buf, STATS_SERVICE_MAGIC);
	put_le32(buf + 4, STATS_IMAGE_MAGIC);
	put_le32(buf + 8, (uint32_t)len);
	haul__criu__stats_file__pack(&sf, buf + 12);
	fd = openat(imgfd, "stats-dump.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, buf, 12 + len) != (ssize_t)(12 + len) || fsync(fd) < 0)
		ret = -errno;
	if (fd >= 0)
		close(fd);
	if (!ret && renameat(imgfd, "stats-dump.tmp", imgfd, "stats-dump") < 0)
		ret = -errno;
	if (ret)
		pr_warn_r(ret, "cannot write stats-dump in the images directory (podman "
			       "--print-stats will not show this checkpoint)");
	free(buf);
	return ret;
}
