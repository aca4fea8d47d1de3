/*
 * fd_validate.c - the FileObjects and FdEntries of an image, checked
 * before anything is restored.
 *
 * common/validate.c checks the rest of a ProcessState; the fd records
 * are checked here because each kind checks its own sub-message (its
 * validate hook in the table of fd_kinds.c) and common must not call into
 * restore.  Generic rules: a FileObject has a nonzero id unique in the
 * image, a kind this haul knows, exactly one kind sub-message (its
 * kind's: the hook checks it is there), a bounded path, known locks and
 * an O_ASYNC signal in range; an FdEntry has an fd number in range, used
 * once, and names a FileObject of the image.  A failure names the record
 * in @why and returns -EBADMSG; the restore refuses the image with it.
 * rst_state_check is the whole check of a state blob where the restorer
 * receives one (image load, live sink): version, common checks, fds.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/validate.h"
#include "restore/fd_int.h"
#include "restore/res_int.h"
#include "restore/restore_int.h"
#include "restore/tree_int.h"

#define FDV_NSIG 64

unsigned rst_fd_nsub(const Haul__Img__FileObject *f)
{
	const ProtobufCMessageDescriptor *d = &haul__img__file_object__descriptor;
	unsigned n = 0;

	/* every message field from number 16 on is a kind's part (image.proto): no list to keep */
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *fd = &d->fields[i];

		if (fd->id >= RST_FD_PART_FIRST && fd->type == PROTOBUF_C_TYPE_MESSAGE &&
		    fd->label != PROTOBUF_C_LABEL_REPEATED)
			n += *(void *const *)((const char *)f + fd->offset) != NULL;
	}
	return n;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* The generic fields of FileObject @f (files[@i]), then its kind's own. */
static int file_check(const Haul__Img__FileObject *f, size_t i, char *why, size_t wl)
{
	const struct rst_fd_ops *k = rst_fd_ops_of(f->kind);
	unsigned nsub = rst_fd_nsub(f);

	if (!f->id) {
		snprintf(why, wl, "files[%zu].id: 0", i);
		return -EBADMSG;
	}
	if (!k || !k->validate) {
		snprintf(why, wl,
			 "files[%zu] (file %u).kind: unknown kind %d (a newer haul wrote it?)", i,
			 f->id, (int)f->kind);
		return -EBADMSG;
	}
	if (nsub != 1) {
		snprintf(why, wl, "files[%zu] (file %u, %s): %u kind parts, not exactly its own", i,
			 f->id, k->name, nsub);
		return -EBADMSG;
	}
	if (f->path && strnlen(f->path, VAL_MAX_STR) >= VAL_MAX_STR) {
		snprintf(why, wl, "files[%zu] (file %u).path: longer than %d bytes", i, f->id,
			 VAL_MAX_STR - 1);
		return -EBADMSG;
	}
	if (f->n_locks > VAL_MAX_EPOLL) {
		snprintf(why, wl, "files[%zu] (file %u).locks: %zu locks, more than %d", i, f->id,
			 f->n_locks, VAL_MAX_EPOLL);
		return -EBADMSG;
	}
	for (size_t n = 0; n < f->n_locks; n++)
		if (f->locks[n]->kind > HAUL__IMG__LOCK_KIND__LOCK_LEASE || f->locks[n]->type > 2) {
			snprintf(why, wl, "files[%zu] (file %u).locks[%zu]: kind %d type %u", i,
				 f->id, n, (int)f->locks[n]->kind, f->locks[n]->type);
			return -EBADMSG;
		}
	if (f->fown && (f->fown->sig < 0 || f->fown->sig > FDV_NSIG)) {
		snprintf(why, wl, "files[%zu] (file %u).fown.sig: %d", i, f->id, f->fown->sig);
		return -EBADMSG;
	}
	/* its sub-message is the one of its kind, and sane */
	return k->validate(f, why, wl);
}

/* Every FdEntry: fd in range and used once, naming one of the @nids sorted @ids. */
static int entries_check(const Haul__Img__ProcessState *ps, const uint32_t *ids, size_t nids,
			 char *why, size_t wl)
{
	/* One bit per possible fd number (128 KiB): duplicates would be restored twice. */
	uint64_t *seen = calloc(VAL_MAX_FDS / 64, sizeof(*seen));
	int ret = 0;

	if (!seen)
		return -ENOMEM;
	for (size_t i = 0; i < ps->n_fds && !ret; i++) {
		const Haul__Img__FdEntry *e = ps->fds[i];

		if (e->fd < 0 || (uint32_t)e->fd >= VAL_MAX_FDS) {
			snprintf(why, wl, "fds[%zu].fd: %d (0..%u)", i, e->fd, VAL_MAX_FDS - 1);
			ret = -EBADMSG;
		} else if (seen[e->fd / 64] >> (e->fd % 64) & 1) {
			snprintf(why, wl, "fds[%zu].fd: %d appears twice", i, e->fd);
			ret = -EBADMSG;
		} else if (!bsearch(&e->file_id, ids, nids, sizeof(*ids), cmp_u32) &&
			   !rst_share_known(e->file_id)) {
			snprintf(why, wl, "fds[%zu] (fd %d).file_id: %u names no file of the image",
				 i, e->fd, e->file_id);
			ret = -EBADMSG;
		}
		if (!ret)
			seen[e->fd / 64] |= 1ull << (e->fd % 64);
	}
	free(seen);
	return ret;
}

int rst_fd_validate(const Haul__Img__ProcessState *ps, char *why, size_t wl)
{
	uint32_t *ids;
	int ret = 0;

	if (ps->n_fds > VAL_MAX_FDS || ps->n_files > VAL_MAX_FDS) {
		snprintf(why, wl, "fds/files: %zu/%zu, more than %u", ps->n_fds, ps->n_files,
			 VAL_MAX_FDS);
		return -EBADMSG;
	}
	ids = calloc(ps->n_files ? ps->n_files : 1, sizeof(*ids));
	if (!ids)
		return -ENOMEM;
	for (size_t i = 0; i < ps->n_files && !ret; i++) {
		ret = file_check(ps->files[i], i, why, wl);
		ids[i] = ps->files[i]->id;
	}
	if (!ret)
		qsort(ids, ps->n_files, sizeof(*ids), cmp_u32);
	for (size_t i = 1; i < ps->n_files && !ret; i++)
		if (ids[i] == ids[i - 1]) {
			snprintf(why, wl, "files: id %u is used twice", ids[i]);
			ret = -EBADMSG;
		}
	if (!ret)
		ret = entries_check(ps, ids, ps->n_files, why, wl);
	free(ids);
	return ret;
}

int rst_state_check(const void *blob, size_t len, char *why, size_t wl)
{
	Haul__Img__ProcessState *ps = haul__img__process_state__unpack(NULL, len, blob);
	int ret;

	if (!ps) {
		snprintf(why, wl, "the process state does not parse (corrupt or truncated)");
		return -EBADMSG;
	}
	if (ps->version != RST_IMAGE_VERSION) {
		snprintf(why, wl,
			 "image version %u, this haul restores version %u: restore it with the "
			 "haul that dumped it, or checkpoint again with this one",
			 ps->version, RST_IMAGE_VERSION);
		ret = -EPROTO;
	} else {
		ret = val_process_state(ps, why, wl);
		if (!ret)
			ret = rst_fd_validate(ps, why, wl);
		if (!ret)
			ret = rst_res_validate(ps, why, wl);
	}
	haul__img__process_state__free_unpacked(ps, NULL);
	return ret;
}
