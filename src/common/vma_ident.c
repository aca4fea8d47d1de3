/*
 * vma_ident.c - which file a private file mapping maps, beyond its path:
 * the source reads the file's size and mtime, the restorer checks them.
 *
 * A private file mapping carries only the pages the process wrote (its
 * copies, tracker/read_file.c); every other page the restored process
 * reads comes from the file the restorer opens by path.  Were that another
 * file (a package upgraded between the checkpoint and the restore, another
 * version on the target host), the process would run old copies over new
 * code or data, silently.  So the source records each such file's size and
 * mtime (stat of /proc/PID/map_files, once per file and layout, or taken
 * from an earlier layout where the same VMA was seen), and the restorer
 * compares them with the file it opened (fstat in the stub) before any
 * page is written, refusing a mismatch by name.  The same inode (the dev
 * and ino the source's maps showed: the same host, the same filesystem)
 * passes whatever its times.  A copy with another mtime (a binary copied
 * without -p) passes where both are ELF files with the same build-id: the
 * source records it (libelf: the NT_GNU_BUILD_ID note of a PT_NOTE
 * segment), the restorer reads the target's only when the mtimes differ.
 * Shared file mappings are not checked: their content is the file itself,
 * which must be the same one (shared storage).
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <libelf.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

			if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_NOTE)
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

/* Read the size, mtime and build-id of the file mapped at @v of @pid; false if gone. */
static bool read_ident(pid_t pid, struct haul_vma *v)
{
	char mf[96];
	struct stat st;
	int fd;

	snprintf(mf, sizeof(mf), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pid, v->start,
		 v->end);
	fd = open(mf, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	v->file_size = (uint64_t)st.st_size;
	v->file_mtime = mtime_ns(&st);
	v->build_id_len = (uint8_t)haul_file_build_id(fd, v->build_id);
	close(fd);
	return true;
}

/* @v's file is @w's (same size, mtime, build-id). */
static void same_ident(struct haul_vma *v, const struct haul_vma *w)
{
	v->file_size = w->file_size;
	v->file_mtime = w->file_mtime;
	v->build_id_len = w->build_id_len;
	memcpy(v->build_id, w->build_id, sizeof(v->build_id));
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

		v->file_known = false;
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
	time_t s = (time_t)(ns / 1000000000);
	struct tm tm;
	char day[40];

	if (!gmtime_r(&s, &tm) || !strftime(day, sizeof(day), "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(day, sizeof(day), "%lld s", (long long)s);
	snprintf(buf, len, "%s.%09lld UTC", day, (long long)(ns % 1000000000));
}

/* Whether the file at @readable has @v's build-id. */
static bool same_build_id(const struct haul_vma *v, const char *readable)
{
	uint8_t bid[HAUL_BUILD_ID_MAX];
	size_t n = 0;
	int fd;

	if (!v->build_id_len || !readable)
		return false;
	fd = open(readable, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = haul_file_build_id(fd, bid);
		close(fd);
	}
	return n == v->build_id_len && !memcmp(bid, v->build_id, n);
}

int haul_vma_ident_check(const struct haul_vma *v, const struct stat *st, const char *readable,
			 char *why, size_t len)
{
	char here[64], there[64];
	int64_t ns = mtime_ns(st);

	if (!v->file_known || !haul_vma_ident_wanted(v))
		return 0;
	if ((uint64_t)st->st_dev == v->dev && (uint64_t)st->st_ino == v->ino)
		return 0;
	if ((uint64_t)st->st_size != v->file_size) {
		snprintf(why, len,
			 "%.512s is %lld bytes here and was %" PRIu64 " at the source: it is not "
			 "the file the process mapped (another version?), and the pages the "
			 "process never wrote would come from it; install the same file",
			 v->path, (long long)st->st_size, v->file_size);
		return -ESTALE;
	}
	if (ns == v->file_mtime || same_build_id(v, readable))
		return 0;
	when(ns, here, sizeof(here));
	when(v->file_mtime, there, sizeof(there));
	snprintf(why, len,
		 "%.512s was modified %s here and %s at the source%s: it may not be the file the "
		 "process mapped, and the pages the process never wrote would come from it; "
		 "install the same file, or if its content is the same give it the source's "
		 "time (touch -m -d @%lld.%09lld %.512s)",
		 v->path, here, there, v->build_id_len ? ", with another ELF build-id" : "",
		 (long long)(v->file_mtime / 1000000000), (long long)(v->file_mtime % 1000000000),
		 v->path);
	return -ESTALE;
}
