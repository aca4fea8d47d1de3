/*
 * vma_ident.c - which file a private file mapping maps, beyond its path:
 * the source records what the file is, the restorer checks it.
 *
 * A private file mapping carries only the pages the process wrote (its
 * copies, tracker/read_file.c); every other page the restored process
 * reads comes from the file the restorer opens by path.  Were that another
 * file (a package upgraded between the checkpoint and the restore, another
 * version on the target host), the process would run old copies over new
 * code or data, silently.  So the source records each such regular file's
 * size, mtime and content identity: its ELF build-id (libelf: the
 * NT_GNU_BUILD_ID note of a PT_NOTE segment), or for a file without one of
 * at most HAUL_IDENT_HASH_MAX bytes the XXH3-64 of its bytes (read through
 * /proc/PID/map_files, once per file and layout, or taken from an earlier
 * layout where the same VMA was seen).  The restorer checks the file it
 * opened (fstat in the stub) before any page is written: the same inode
 * (the dev and ino the source's maps showed: the same host) passes;
 * otherwise the size must match and then the content identity decides
 * (the target's build-id or hash, read through /proc/STUB/fd/N), whatever
 * the mtimes (a binary copied without -p, a locale archive generated on
 * each host); only a large file without a build-id is judged by its mtime.
 * A refusal names the file and what differs.  Shared file mappings are not
 * checked: their content is the file itself, which must be the same one
 * (shared storage); nor are non-regular files (a private /dev/zero).
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <libelf.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/policy.h"
#include "common/vma.h"

bool haul_vma_ident_wanted(const struct haul_vma *v)
{
	return (v->flags & HAUL_VMA_FILE) &&
	       !(v->flags & (HAUL_VMA_SHMEM | HAUL_VMA_SHARED | HAUL_VMA_DELETED));
}

static int64_t mtime_ns(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static pthread_once_t elf_once = PTHREAD_ONCE_INIT;
static bool elf_ok;

static void elf_init(void)
{
	elf_ok = elf_version(EV_CURRENT) != EV_NONE;
}

/* The build-id in note data @d, or 0. */
static size_t note_build_id(Elf_Data *d, uint8_t *out)
{
	size_t off = 0, name_off, desc_off;
	GElf_Nhdr nh;

	if (!d)
		return 0;
	while ((off = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0) {
		if (nh.n_type != NT_GNU_BUILD_ID || nh.n_namesz != 4 ||
		    memcmp((const char *)d->d_buf + name_off, "GNU", 4) || !nh.n_descsz ||
		    nh.n_descsz > HAUL_BUILD_ID_MAX)
			continue;
		memcpy(out, (const char *)d->d_buf + desc_off, nh.n_descsz);
		return nh.n_descsz;
	}
	return 0;
}

size_t haul_file_build_id(int fd, uint8_t out[HAUL_BUILD_ID_MAX])
{
	size_t n = 0, nph;
	Elf *e;

	pthread_once(&elf_once, elf_init);
	if (!elf_ok)
		return 0;
	/* ELF_C_READ: only the parts asked for are read (pread), nothing is mapped */
	e = elf_begin(fd, ELF_C_READ, NULL);
	if (!e)
		return 0;
	if (elf_kind(e) == ELF_K_ELF && !elf_getphdrnum(e, &nph)) {
		for (size_t i = 0; i < nph && !n; i++) {
			GElf_Phdr ph;

			/* a note segment is a few dozen bytes: a huge one is not read */
			if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_NOTE ||
			    ph.p_filesz > 65536)
				continue;
			n = note_build_id(
				elf_getdata_rawchunk(e, (int64_t)ph.p_offset, ph.p_filesz,
						     ph.p_align == 8 ? ELF_T_NHDR8 : ELF_T_NHDR),
				out);
		}
	}
	elf_end(e);
	return n;
}

int haul_file_hash(int fd, uint64_t size, uint64_t *out)
{
	const size_t chunk = 1 << 20;
	XXH3_state_t *x = XXH3_createState();
	char *buf = malloc(chunk);
	uint64_t off = 0;
	int ret = x && buf ? 0 : -ENOMEM;

	if (!ret)
		XXH3_64bits_reset(x);
	while (!ret && off < size) {
		ssize_t n = pread(fd, buf, size - off < chunk ? size - off : chunk, (off_t)off);

		if (n <= 0)
			ret = n < 0 ? -errno : -EIO; /* shrank meanwhile */
		else
			XXH3_64bits_update(x, buf, (size_t)n);
		off += n > 0 ? (uint64_t)n : 0;
	}
	if (!ret)
		*out = XXH3_64bits_digest(x);
	XXH3_freeState(x);
	free(buf);
	return ret;
}

/* Read what the regular file mapped at @v of @pid is; false if gone or not regular. */
static bool read_ident(pid_t pid, struct haul_vma *v)
{
	char mf[96];
	struct stat st;
	int fd;

	snprintf(mf, sizeof(mf), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pid, v->start,
		 v->end);
	/* only a regular file is opened: a device's open may do things */
	if (stat(mf, &st) < 0 || !S_ISREG(st.st_mode))
		return false;
	fd = open(mf, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	v->file_size = (uint64_t)st.st_size;
	v->file_mtime = mtime_ns(&st);
	v->build_id_len = (uint8_t)haul_file_build_id(fd, v->build_id);
	v->file_hashed = !v->build_id_len && v->file_size <= HAUL_IDENT_HASH_MAX &&
			 !haul_file_hash(fd, v->file_size, &v->file_hash);
	close(fd);
	return true;
}

/* @v's file is @w's (same size, mtime, build-id, hash). */
static void same_ident(struct haul_vma *v, const struct haul_vma *w)
{
	v->file_size = w->file_size;
	v->file_mtime = w->file_mtime;
	v->build_id_len = w->build_id_len;
	memcpy(v->build_id, w->build_id, sizeof(v->build_id));
	v->file_hashed = w->file_hashed;
	v->file_hash = w->file_hash;
	v->file_known = true;
}

void haul_vma_set_build_id(struct haul_vma *v, bool has, const uint8_t *data, size_t len)
{
	v->build_id_len = 0;
	if (has && data && len && len <= HAUL_BUILD_ID_MAX) {
		memcpy(v->build_id, data, len);
		v->build_id_len = (uint8_t)len;
	}
}

/* The same VMA of the same file in @prev, already identified, or NULL. */
static const struct haul_vma *seen_before(const struct haul_layout *prev, const struct haul_vma *v)
{
	const struct haul_vma *w = prev ? haul_layout_find(prev, v->start) : NULL;

	if (!w || !w->file_known || w->start != v->start || w->end != v->end || w->dev != v->dev ||
	    w->ino != v->ino || w->pgoff != v->pgoff)
		return NULL;
	return w;
}

void haul_layout_identify(pid_t pid, struct haul_layout *l, const struct haul_layout *prev)
{
	const struct haul_vma *last = NULL; /* the last one stat'ed: a file's VMAs are adjacent */

	for (size_t i = 0; i < l->n; i++) {
		struct haul_vma *v = &l->v[i];
		const struct haul_vma *w;

		v->file_known = v->file_hashed = false;
		v->build_id_len = 0;
		if (!haul_vma_ident_wanted(v))
			continue;
		w = seen_before(prev, v);
		if (!w && last && last->dev == v->dev && last->ino == v->ino)
			w = last;
		if (w) {
			same_ident(v, w);
		} else if (read_ident(pid, v)) { /* else gone since the maps: not checked */
			v->file_known = true;
			last = v;
		}
	}
}

/* "2026-12-06 06:13:51.123456789 UTC" */
static void when(int64_t ns, char *buf, size_t len)
{
	int64_t sec = ns / 1000000000, sub = ns % 1000000000;
	time_t t;
	struct tm tm;
	char day[40];

	if (sub < 0) { /* before 1970: the second below, a positive fraction */
		sec--;
		sub += 1000000000;
	}
	t = (time_t)sec;
	if (!gmtime_r(&t, &tm) || !strftime(day, sizeof(day), "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(day, sizeof(day), "%lld s", (long long)sec);
	snprintf(buf, len, "%s.%09lld UTC", day, (long long)sub);
}

/* The build-id of the file at @readable into @bid: its length, 0 none, -1 unreadable. */
static int build_id_at(const char *readable, uint8_t bid[HAUL_BUILD_ID_MAX])
{
	int fd = readable ? open(readable, O_RDONLY | O_CLOEXEC) : -1;
	int n;

	if (fd < 0)
		return -1;
	n = (int)haul_file_build_id(fd, bid);
	close(fd);
	return n;
}

/* The XXH3-64 of the file at @readable (@size bytes); 0 or -errno. */
static int hash_at(const char *readable, uint64_t size, uint64_t *out)
{
	int fd = readable ? open(readable, O_RDONLY | O_CLOEXEC) : -1, ret;

	if (fd < 0)
		return readable ? -errno : -ENOENT;
	ret = haul_file_hash(fd, size, out);
	close(fd);
	return ret;
}

static const char tail[] = "the pages the process never wrote would come from it; install the "
			   "same file";

/* The content identity: 0 when it matches, 1 when there is none, -ESTALE with @why. */
static int content_check(const struct haul_vma *v, const struct stat *st, const char *readable,
			 char *why, size_t len)
{
	uint8_t bid[HAUL_BUILD_ID_MAX];
	uint64_t h = 0;
	int n;

	if (v->build_id_len) {
		n = build_id_at(readable, bid);
		if (n == v->build_id_len && !memcmp(bid, v->build_id, (size_t)n))
			return 0;
		snprintf(why, len,
			 "%.512s %s than at the source: it is not the file the process "
			 "mapped (another version?), and %s",
			 v->path,
			 n < 0 ? "cannot be read here to compare its ELF build-id, other"
			 : n   ? "has another ELF build-id on the restoring host"
			       : "has no ELF build-id on the restoring host, other",
			 tail);
		return -ESTALE;
	}
	if (!v->file_hashed)
		return 1;
	if (!hash_at(readable, (uint64_t)st->st_size, &h) && h == v->file_hash)
		return 0;
	snprintf(
		why, len,
		"%.512s holds other bytes on the restoring host than at the source (XXH3 %016" PRIx64
		" against %016" PRIx64 "): it is not the file the process mapped, and %s",
		v->path, h, v->file_hash, tail);
	return -ESTALE;
}

int haul_vma_ident_check(const struct haul_vma *v, const struct stat *st, const char *readable,
			 char *why, size_t len)
{
	char here[64], there[64];
	int64_t ns = mtime_ns(st), sec;
	int ret;

	if (!v->file_known || !haul_vma_ident_wanted(v))
		return 0;
	if (!S_ISREG(st->st_mode)) {
		snprintf(
			why, len,
			"%.512s is not a regular file on the restoring host (mode %#o), but was one at "
			"the source: %s",
			v->path, (unsigned)st->st_mode, tail);
		return -ESTALE;
	}
	if ((uint64_t)st->st_dev == v->dev && (uint64_t)st->st_ino == v->ino)
		return 0;
	if ((uint64_t)st->st_size != v->file_size) {
		snprintf(why, len,
			 "%.512s is %lld bytes on the restoring host and was %" PRIu64
			 " at the source: it is not "
			 "the file the process mapped (another version?), and %s",
			 v->path, (long long)st->st_size, v->file_size, tail);
		return -ESTALE;
	}
	ret = content_check(v, st, readable, why, len);
	if (ret <= 0)
		return ret;
	/* a large file without a build-id: its mtime is all there is */
	if (ns == v->file_mtime)
		return 0;
	when(ns, here, sizeof(here));
	when(v->file_mtime, there, sizeof(there));
	sec = v->file_mtime / 1000000000 - (v->file_mtime % 1000000000 < 0);
	snprintf(
		why, len,
		"%.512s was modified %s on the restoring host and %s at the source: it may not be the file the "
		"process mapped, and %s, or if its content is the same give it the source's "
		"time (touch -m -d @%lld.%09lld '%.512s')",
		v->path, here, there, tail, (long long)sec,
		(long long)(v->file_mtime - sec * 1000000000), v->path);
	return -ESTALE;
}
