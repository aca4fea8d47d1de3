/*
 * pstore_disk.c - the page store's images directory: the on-disk format,
 * writing the index at commit, and loading a directory (pstore_open for the
 * page server, which goes on writing it; pstore_open_ro for a restore,
 * which never writes a byte of it).
 *
 * Per process DIR/<pid>/:
 *   pages.img   page slots, 4096 bytes each, slot n at offset n * 4096.
 *               Bytes past the committed slot count, or in slots no page
 *               map run names, are garbage from an uncommitted round.
 *   index.img   the last commit, all integers little-endian:
 *     offset size
 *          0    8 magic "HAULIDX1"
 *          8    4 format version, PSTORE_IDX_VERSION (2)
 *         12    4 reserved, 0
 *         16    8 length N of the message that follows
 *         24    8 XXH3-64 (seed 0) of those N bytes
 *         32    N protobuf haul.wire.ImageIndex (proto/wire.proto): pid,
 *                 comm, round, slot count, layout (Vma list), the process
 *                 state blob, the page map as runs (addr, npages, first
 *                 slot; slot ~0 for zero pages; a run's pages are in
 *                 consecutive slots), and slot_sums: the XXH3-64 (seed 0)
 *                 of each of the nslots 4 KiB slots of pages.img.
 *   Version 1 (before sums) had an XXH64 of the message and no slot_sums;
 *   it is refused by name, never read as if it were 2.
 * So every byte a restore uses is checked: the index and the state inside it
 * by the header's checksum, each page by its slot's sum when it is read
 * (pstore.c slot_read), pages.img's length against the highest slot the
 * runs name.
 *
 * Commit: fsync(pages.img); write index.img.tmp; fsync it; rename over
 * index.img; fsync DIR/<pid>.  A crash or kill -9 at any point leaves either
 * the old or the new index.img, and each names only slots that were fsynced
 * before it was written.  The page server's pstore_open then deletes any
 * index.img.tmp and cuts pages.img back to the committed slot count (never
 * grows it: a pages.img shorter than its index is refused as truncated).
 * pstore_open_ro opens everything O_RDONLY, deletes and truncates nothing,
 * and fails on the first damaged process, naming the file.
 */
#define LOG_PREFIX "pstore: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/log.h"
#include "common/pstore.h"
#include "common/pstore_int.h"
#include "common/validate.h"
#include "common/wire.h"

#define PSTORE_IDX_MAGIC   "HAULIDX1"
#define PSTORE_IDX_VERSION 2
#define PSTORE_IDX_HDR	   32
/* An index larger than this is corrupt (a 64 GiB process with every page its own run). */
#define PSTORE_IDX_MAX (1ull << 31)

/* ---- writing the index ------------------------------------------------------------------- */

static void put_le64(uint8_t *b, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *b)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)b[i] << (8 * i);
	return v;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int pstore_index_write(struct pstore_proc *p, const struct pmap *m, uint64_t round,
		       const struct haul_layout *layout, const void *state, size_t state_len)
{
	Haul__Wire__ImageIndex idx = HAUL__WIRE__IMAGE_INDEX__INIT;
	Haul__Wire__PageRun *runs = NULL, **runp = NULL;
	Haul__Wire__Vma *vmas = NULL, **vmap = NULL;
	Haul__Wire__Layout lm;
	struct pstore_run *r = NULL;
	struct pstore_kv *kv = NULL;
	uint8_t *buf = NULL;
	size_t nr, len;
	int fd = -1, ret;

	ret = pstore_pmap_sorted(m, &kv);
	if (ret)
		return ret;
	r = malloc((m->n ? m->n : 1) * sizeof(*r));
	if (!r) {
		ret = -ENOMEM;
		goto out;
	}
	nr = pstore_make_runs(kv, m->n, r);
	runs = calloc(nr ? nr : 1, sizeof(*runs));
	runp = calloc(nr ? nr : 1, sizeof(*runp));
	vmas = calloc(layout->n ? layout->n : 1, sizeof(*vmas));
	vmap = calloc(layout->n ? layout->n : 1, sizeof(*vmap));
	if (!runs || !runp || !vmas || !vmap) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nr; i++) {
		haul__wire__page_run__init(&runs[i]);
		runs[i].addr = r[i].pg << HAUL_PAGE_SHIFT;
		runs[i].npages = (uint32_t)r[i].npages;
		runs[i].slot = r[i].slot;
		runp[i] = &runs[i];
	}
	wire_layout_to_msg(layout, vmas, vmap, &lm);
	idx.pid = p->pid;
	idx.comm = p->comm;
	idx.round = round;
	idx.nslots = p->nslots;
	idx.n_vmas = lm.n_vmas;
	idx.vmas = lm.vmas;
	idx.has_has_layout = true;
	idx.has_layout = layout->n > 0;
	if (state) {
		idx.has_state = true;
		idx.state.data = (uint8_t *)state;
		idx.state.len = state_len;
	}
	idx.n_runs = nr;
	idx.runs = runp;
	idx.n_slot_sums = p->nslots;
	idx.slot_sums = p->sums;

	len = haul__wire__image_index__get_packed_size(&idx);
	buf = malloc(PSTORE_IDX_HDR + len);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	haul__wire__image_index__pack(&idx, buf + PSTORE_IDX_HDR);
	memcpy(buf, PSTORE_IDX_MAGIC, 8);
	put_le64(buf + 8, PSTORE_IDX_VERSION); /* version, then reserved 0 */
	put_le64(buf + 16, len);
	put_le64(buf + 24, XXH3_64bits(buf + PSTORE_IDX_HDR, len));

	/* pages.img first: the index must never name bytes that could still be lost. */
	if (fsync(p->fd)) {
		ret = -errno;
		pr_err_r(ret, "cannot fsync %s/%d/pages.img", p->store->dir, p->pid);
		goto out;
	}
	fd = openat(p->dirfd, "index.img.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		pr_err_r(ret, "cannot create %s/%d/index.img.tmp", p->store->dir, p->pid);
		goto out;
	}
	ret = write_all(fd, buf, PSTORE_IDX_HDR + len);
	if (!ret && fsync(fd))
		ret = -errno;
	if (ret) {
		pr_err_r(ret, "cannot write %s/%d/index.img.tmp", p->store->dir, p->pid);
		unlinkat(p->dirfd, "index.img.tmp", 0);
		goto out;
	}
	if (renameat(p->dirfd, "index.img.tmp", p->dirfd, "index.img")) {
		ret = -errno;
		pr_err_r(ret, "cannot rename %s/%d/index.img.tmp", p->store->dir, p->pid);
		goto out;
	}
	if (fsync(p->dirfd)) {
		ret = -errno;
		pr_err_r(ret, "cannot fsync %s/%d", p->store->dir, p->pid);
	}
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	free(runs);
	free(runp);
	free(vmas);
	free(vmap);
	free(r);
	free(kv);
	return ret;
}

/* ---- loading an images directory ---------------------------------------------------------- */

/* Check the runs of @idx and build the committed map; *@top gets 1 + the highest slot named. */
static int index_runs(struct pstore_proc *p, const Haul__Wire__ImageIndex *idx, uint8_t *used,
		      uint64_t *top, char *why, size_t wlen)
{
	int ret = pstore_pmap_init(&p->map, 1024);

	*top = 0;
	for (size_t i = 0; !ret && i < idx->n_runs; i++) {
		const Haul__Wire__PageRun *r = idx->runs[i];

		if (r->addr & (HAUL_PAGE_SIZE - 1) ||
		    (r->slot != PSTORE_ZERO &&
		     (r->slot > p->nslots || r->npages > p->nslots - r->slot))) {
			snprintf(why, wlen,
				 "page run %zu (%#llx+%u pages, slot %llu) is out of bounds", i,
				 (unsigned long long)r->addr, r->npages,
				 (unsigned long long)r->slot);
			return -EBADMSG;
		}
		if (r->slot != PSTORE_ZERO && r->npages && r->slot + r->npages > *top)
			*top = r->slot + r->npages;
		for (uint32_t j = 0; !ret && j < r->npages; j++) {
			uint64_t v = r->slot == PSTORE_ZERO ? PSTORE_ZERO : r->slot + j;

			ret = pstore_pmap_set(&p->map, (r->addr >> HAUL_PAGE_SHIFT) + j, v, NULL);
			if (v != PSTORE_ZERO)
				used[v / 8] |= (uint8_t)(1u << (v % 8));
		}
	}
	return ret;
}

/* The committed contents of decoded @idx into @p; pages.img's size checked. */
static int index_apply(struct pstore_proc *p, const Haul__Wire__ImageIndex *idx, char *why,
		       size_t wlen)
{
	uint8_t *used = NULL;
	uint64_t top;
	struct stat st;
	int ret;

	if (idx->pid != p->pid || idx->nslots > (1ull << 40) || idx->n_slot_sums != idx->nslots) {
		snprintf(why, wlen, "index.img is inconsistent (pid %d, %llu slots, %zu sums)",
			 idx->pid, (unsigned long long)idx->nslots, idx->n_slot_sums);
		return -EBADMSG;
	}
	/* Every field before use; pages.img's size is checked below, against the runs. */
	if (val_image_index(idx, p->pid, UINT64_MAX, why, wlen))
		return -EBADMSG;
	ret = wire_layout_from_msg(idx->vmas, idx->n_vmas, &p->layout);
	if (ret)
		return ret;
	if (idx->has_state) {
		p->state = malloc(idx->state.len ? idx->state.len : 1);
		if (!p->state)
			return -ENOMEM;
		memcpy(p->state, idx->state.data, idx->state.len);
		p->state_len = idx->state.len;
	}
	snprintf(p->comm, sizeof(p->comm), "%s", idx->comm ? idx->comm : "");
	p->round = idx->round;
	p->nslots = idx->nslots;
	if (p->nslots) {
		p->sums = malloc(p->nslots * sizeof(*p->sums));
		if (!p->sums)
			return -ENOMEM;
		memcpy(p->sums, idx->slot_sums, p->nslots * sizeof(*p->sums));
		p->sums_cap = p->nslots;
	}
	used = calloc(p->nslots / 8 + 1, 1);
	if (!used)
		return -ENOMEM;
	ret = index_runs(p, idx, used, &top, why, wlen);
	for (uint64_t s = 0; !ret && s < p->nslots; s++)
		if (!(used[s / 8] & (1u << (s % 8))))
			ret = pstore_vec_push(&p->free, s);
	free(used);
	if (ret)
		return ret;
	if (fstat(p->fd, &st))
		return -errno;
	if ((uint64_t)st.st_size < top * HAUL_PAGE_SIZE) {
		snprintf(why, wlen,
			 "pages.img is truncated: %lld bytes, but the index names slot %llu "
			 "(%llu bytes)",
			 (long long)st.st_size, (unsigned long long)(top - 1),
			 (unsigned long long)(top * HAUL_PAGE_SIZE));
		return -EBADMSG;
	}
	/* The page server's own store: drop the uncommitted tail (never grow the file). */
	if (!p->store->ro && (uint64_t)st.st_size > p->nslots * HAUL_PAGE_SIZE &&
	    ftruncate(p->fd, (off_t)(p->nslots * HAUL_PAGE_SIZE)))
		return -errno;
	return 0;
}

/* Read, check and decode DIR/<pid>/index.img into *@out.  @why says what is wrong. */
static int index_read(struct pstore_proc *p, Haul__Wire__ImageIndex **out, char *why, size_t wlen)
{
	uint8_t hdr[PSTORE_IDX_HDR], *buf = NULL;
	uint64_t len, version;
	struct stat st;
	ssize_t got;
	int fd, ret = -EBADMSG;

	fd = openat(p->dirfd, "index.img", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(why, wlen, "index.img cannot be opened: %s", strerror(-ret));
		return ret;
	}
	got = pread(fd, hdr, sizeof(hdr), 0);
	if (got != sizeof(hdr) || fstat(fd, &st)) {
		snprintf(why, wlen, "index.img is truncated: %zd bytes, a header is %d", got,
			 PSTORE_IDX_HDR);
		goto out;
	}
	version = get_le64(hdr + 8);
	len = get_le64(hdr + 16);
	if (memcmp(hdr, PSTORE_IDX_MAGIC, 8)) {
		snprintf(why, wlen, "index.img is not a haul index (bad magic)");
	} else if ((uint32_t)version != PSTORE_IDX_VERSION) {
		snprintf(why, wlen,
			 "index.img has format version %u; this haul reads version %d: restore "
			 "with the haul that wrote it, or checkpoint again",
			 (uint32_t)version, PSTORE_IDX_VERSION);
		ret = -EPROTONOSUPPORT;
	} else if (version >> 32) {
		snprintf(why, wlen, "index.img has reserved header bytes set");
	} else if (len > PSTORE_IDX_MAX || (uint64_t)st.st_size != PSTORE_IDX_HDR + len) {
		snprintf(why, wlen, "index.img is %lld bytes, its header says %llu: %s",
			 (long long)st.st_size, (unsigned long long)(PSTORE_IDX_HDR + len),
			 (uint64_t)st.st_size < PSTORE_IDX_HDR + len ? "truncated" : "damaged");
	} else if (!(buf = malloc(len ? len : 1))) {
		ret = -ENOMEM;
	} else if (pread(fd, buf, len, PSTORE_IDX_HDR) != (ssize_t)len) {
		snprintf(why, wlen, "cannot read index.img");
		ret = -EIO;
	} else if (XXH3_64bits(buf, len) != get_le64(hdr + 24)) {
		snprintf(why, wlen,
			 "index.img fails its checksum: the index or the process state in it is "
			 "corrupt");
	} else if (!(*out = haul__wire__image_index__unpack(NULL, len, buf))) {
		snprintf(why, wlen, "index.img cannot be decoded");
	} else {
		ret = 0;
	}
out:
	free(buf);
	close(fd);
	return ret;
}

static int index_load(struct pstore_proc *p, char *why, size_t wlen)
{
	Haul__Wire__ImageIndex *idx = NULL;
	int ret;

	if (!p->store->ro)
		unlinkat(p->dirfd, "index.img.tmp", 0);
	ret = index_read(p, &idx, why, wlen);
	if (ret)
		return ret;
	ret = index_apply(p, idx, why, wlen);
	if (!ret)
		p->committed = true;
	else if (!why[0])
		snprintf(why, wlen, "%s", strerror(-ret));
	haul__wire__image_index__free_unpacked(idx, NULL);
	return ret;
}

/* Load DIR/<pid>/ of every pid in the directory. */
static int store_load(struct pstore *s)
{
	DIR *d = fdopendir(dup(s->dirfd));
	struct dirent *de;
	int ret = 0;

	if (!d)
		return -errno;
	while (!ret && (de = readdir(d))) {
		struct pstore_proc *p;
		char *end, why[256] = "";
		long pid = strtol(de->d_name, &end, 10);

		if (*end || pid <= 0 || pid > INT32_MAX || de->d_name[0] == '0')
			continue;
		p = pstore_proc_alloc(s, (int32_t)pid);
		if (!p) {
			ret = -ENOMEM;
			break;
		}
		ret = pstore_proc_open_files(p, false);
		if (!ret)
			ret = index_load(p, why, sizeof(why));
		if (ret == -ENOENT && !s->ro) {
			/* Never committed: nothing to load; keep the directory for a new round. */
			pr_debug("%s/%ld has no committed index", s->dir, pid);
			pstore_proc_free(p);
			ret = 0;
			continue;
		}
		if (ret && s->ro) {
			if (why[0])
				pr_err("cannot load the image of pid %ld in %s/%ld: %s", pid,
				       s->dir, pid, why);
			pstore_proc_free(p);
			break;
		}
		if (ret) {
			pr_warn("cannot load the image of pid %ld in %s/%ld: %s; ignoring it", pid,
				s->dir, pid, why[0] ? why : strerror(-ret));
			pstore_proc_free(p);
			ret = 0;
			continue;
		}
		pr_info("loaded pid %ld (%s) round %llu: %llu pages from %s", pid, p->comm,
			(unsigned long long)p->round, (unsigned long long)p->map.n, s->dir);
		p->next = s->procs;
		s->procs = p;
	}
	closedir(d);
	return ret;
}

static int store_open(const char *dir, bool ro, struct pstore **out)
{
	struct pstore *s = calloc(1, sizeof(*s));
	int ret;

	if (!s)
		return -ENOMEM;
	s->dirfd = -1;
	s->ro = ro;
	if (dir) {
		s->dir = strdup(dir);
		if (!s->dir) {
			free(s);
			return -ENOMEM;
		}
		if (!ro && mkdir(dir, 0700) && errno != EEXIST) {
			ret = -errno;
			pr_err_r(ret, "cannot create the images directory '%s'", dir);
			goto fail;
		}
		s->dirfd = open(dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
		if (s->dirfd < 0) {
			ret = -errno;
			pr_err_r(ret, "cannot open the images directory '%s'", dir);
			goto fail;
		}
		ret = store_load(s);
		if (ret) {
			if (!ro)
				pr_err_r(ret, "cannot read the images directory '%s'", dir);
			goto fail;
		}
	}
	*out = s;
	return 0;
fail:
	pstore_close(s);
	return ret;
}

int pstore_open(const char *dir, struct pstore **out)
{
	return store_open(dir, false, out);
}

int pstore_open_ro(const char *dir, struct pstore **out)
{
	return store_open(dir, true, out);
}

/* Every committed page of @p read once: each slot against its checksum. */
static int verify_page(void *arg, uint64_t addr, const void *data, uint32_t npages)
{
	(void)arg;
	(void)addr;
	(void)data;
	(void)npages;
	return 0;
}

int pstore_verify(struct pstore_proc *p)
{
	return pstore_walk(p, verify_page, NULL);
}

void pstore_close(struct pstore *s)
{
	if (!s)
		return;
	while (s->procs) {
		struct pstore_proc *p = s->procs;

		s->procs = p->next;
		pstore_proc_free(p);
	}
	if (s->dirfd >= 0)
		close(s->dirfd);
	free(s->dir);
	free(s);
}
