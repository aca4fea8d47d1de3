/*
 * criu_stats.c - the "stats-dump" file of a work directory, in CRIU's
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
 * no lazy pages).  "stats-restore" likewise with `restore`: restore_time =
 * the whole restore, the rest 0 (the page count is not kept on this
 * path).  Written with a temporary name and renamed: a reader never sees
 * half of it.
 *
 * "inventory.img" of the images directory: podman only checks that it
 * exists before a restore; haul writes CRIU's inventory framing (no common
 * head magic: 0x58313116, size, Inventory) with an image version of its
 * own, 0x68617531 ("hau1"), that CRIU refuses ("not supported images
 * version"): a real CRIU never misreads haul's image as its own.
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

#define STATS_SERVICE_MAGIC    0x55105940u
#define STATS_IMAGE_MAGIC      0x57093306u
#define INVENTORY_MAGIC	       0x58313116u
#define INVENTORY_HAUL_VERSION 0x68617531u

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

/* @len bytes into @name of @dirfd, through a temporary name. 0 or -errno. */
static int put_file(int dirfd, const char *name, const uint8_t *buf, size_t len)
{
	char tmp[64];
	int fd, ret = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, buf, len) != (ssize_t)len || fsync(fd) < 0)
		ret = -errno;
	if (fd >= 0)
		close(fd);
	if (!ret && renameat(dirfd, tmp, dirfd, name) < 0)
		ret = -errno;
	return ret;
}

/*
 * StatsFile @sf into @name of @dirfd (the @where directory), behind the two
 * magics and its size; a failure is a warning, as podman then only lacks
 * the stats of this @what.  0 or -errno.
 */
static int put_stats(int dirfd, const char *name, const Haul__Criu__StatsFile *sf,
		     const char *where, const char *what)
{
	size_t len = haul__criu__stats_file__get_packed_size(sf);
	uint8_t *buf = malloc(12 + len);
	int ret = -ENOMEM;

	if (buf) {
		put_le32(buf, STATS_SERVICE_MAGIC);
		put_le32(buf + 4, STATS_IMAGE_MAGIC);
		put_le32(buf + 8, (uint32_t)len);
		haul__criu__stats_file__pack(sf, buf + 12);
		ret = put_file(dirfd, name, buf, 12 + len);
		free(buf);
	}
	if (ret)
		pr_warn_r(ret,
			  "cannot write %s in the %s directory (podman --print-stats will not show "
			  "this %s)",
			  name, where, what);
	return ret;
}

int criu_stats_restore_write(int dirfd, uint64_t restore_us, uint64_t pages)
{
	Haul__Criu__StatsFile sf = HAUL__CRIU__STATS_FILE__INIT;
	Haul__Criu__RestoreStats r = HAUL__CRIU__RESTORE_STATS__INIT;

	r.has_pages_compared = r.has_pages_skipped_cow = true;
	r.has_forking_time = r.has_restore_time = r.has_pages_restored = true;
	r.restore_time = clamp32(restore_us);
	r.pages_restored = pages;
	sf.restore = &r;
	return put_stats(dirfd, "stats-restore", &sf, "work", "restore");
}

int criu_inventory_write(int imgfd)
{
	Haul__Criu__Inventory inv = HAUL__CRIU__INVENTORY__INIT;
	uint8_t buf[64];
	size_t len;
	int ret;

	inv.has_img_version = inv.has_lsmtype = true;
	inv.img_version = INVENTORY_HAUL_VERSION;
	len = haul__criu__inventory__get_packed_size(&inv);
	put_le32(buf, INVENTORY_MAGIC);
	put_le32(buf + 4, (uint32_t)len);
	haul__criu__inventory__pack(&inv, buf + 8);
	ret = put_file(imgfd, "inventory.img", buf, 8 + len);
	if (ret)
		pr_err_r(ret, "cannot write inventory.img in the images directory");
	return ret;
}

int criu_stats_write(int dirfd, uint64_t frozen_us, uint64_t memdump_us, uint64_t memwrite_us,
		     uint64_t pages_written, uint64_t pages_zero)
{
	Haul__Criu__StatsFile sf = HAUL__CRIU__STATS_FILE__INIT;
	Haul__Criu__DumpStats d = HAUL__CRIU__DUMP_STATS__INIT;

	d.has_freezing_time = d.has_frozen_time = d.has_memdump_time = d.has_memwrite_time = true;
	d.has_pages_scanned = d.has_pages_skipped_parent = d.has_pages_written = true;
	d.has_pages_lazy = true;
	d.frozen_time = clamp32(frozen_us);
	d.memdump_time = clamp32(memdump_us);
	d.memwrite_time = clamp32(memwrite_us);
	d.pages_written = pages_written;
	d.pages_scanned = pages_written + pages_zero;
	sf.dump = &d;
	return put_stats(dirfd, "stats-dump", &sf, "images", "checkpoint");
}
