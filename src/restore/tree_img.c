/*
 * tree_img.c - tree.img, the process tree of a multi-process image, beside
 * its DIR/<pid>/ page stores.  Byte by byte (integers little-endian):
 *
 *   offset  size
 *        0     8 magic "HAULTRE1"
 *        8     4 format version (1)
 *       12     4 reserved, 0
 *       16     8 length N of the message
 *       24     8 XXH3-64 (seed 0) of those N bytes
 *       32     N protobuf haul.img.Tree (proto/image.proto): Tree.version,
 *                the root's pid, one ProcessEntry per process (pid, ppid,
 *                pgid, sid, zombie, exit_status, shares: the fd table or
 *                fs info it shares with its parent), parents first; version
 *                2 when a process shares, so an older restorer refuses it
 *
 * It is written (and fsynced) into the image's tmp directory before the
 * switch that makes the image committed, so it is part of the same atomic
 * step as the page stores.  Reading checks everything a restore relies on
 * before any of it is used: magic, version, length, checksum, then the
 * tree itself (the root first, each parent before its children, no pid
 * twice, at most RST_TREE_MAX entries, a zombie with no children).
 */
#define LOG_PREFIX "tree: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/tree_int.h"

#define TREE_MAGIC   "HAULTRE1"
#define TREE_FORMAT  1
#define TREE_HDR     32
#define TREE_MAX_LEN (RST_TREE_MAX * 64 + 64)

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* @tr built from @t, in @e and @ep (t->n each); @tr points into them and @t. */
static void fill_tree(const struct rst_tree *t, Haul__Img__Tree *tr, Haul__Img__ProcessEntry *e,
		      Haul__Img__ProcessEntry **ep)
{
	for (size_t i = 0; i < t->n; i++) {
		haul__img__process_entry__init(&e[i]);
		e[i].pid = t->p[i].pid;
		e[i].ppid = t->p[i].ppid;
		e[i].pgid = t->p[i].pgid;
		e[i].sid = t->p[i].sid;
		e[i].has_zombie = e[i].zombie = t->p[i].zombie;
		e[i].has_exit_status = t->p[i].zombie;
		e[i].exit_status = t->p[i].exit_status;
		if (t->p[i].zombie && t->p[i].comm[0])
			e[i].comm = (char *)t->p[i].comm;
		e[i].has_shares = t->p[i].shares != 0;
		e[i].shares = t->p[i].shares;
		ep[i] = &e[i];
	}
	/* an older restorer would give each process its own table: it must refuse */
	tr->version = RST_TREE_VERSION;
	for (size_t i = 0; i < t->n; i++)
		if (t->p[i].shares)
			tr->version = RST_TREE_VERSION_SHARES;
	tr->root = t->p[0].pid;
	tr->n_procs = t->n;
	tr->procs = ep;
}

/* @t as a tree image: written to @dirfd, or with @why its plan checked. */
static int with_tree(const struct rst_tree *t, int dirfd, char *why, size_t wl)
{
	Haul__Img__Tree tr = HAUL__IMG__TREE__INIT;
	Haul__Img__ProcessEntry *e = calloc(t->n, sizeof(*e));
	Haul__Img__ProcessEntry **ep = calloc(t->n, sizeof(*ep));
	int ret = -ENOMEM;

	if (e && ep) {
		fill_tree(t, &tr, e, ep);
		ret = why ? rst_tree_plan_check(&tr, why, wl) : rst_tree_img_put(dirfd, &tr);
	}
	free(ep);
	free(e);
	return ret;
}

int rst_tree_img_write(int dirfd, const struct rst_tree *t)
{
	return with_tree(t, dirfd, NULL, 0);
}

int rst_tree_img_plan_check(const struct rst_tree *t, char *why, size_t wl)
{
	return with_tree(t, -1, why, wl);
}

int rst_tree_img_put(int dirfd, const Haul__Img__Tree *tr)
{
	size_t len = haul__img__tree__get_packed_size(tr);
	uint8_t *buf = malloc(TREE_HDR + len);
	int fd = -1, ret = 0;

	if (!buf)
		return -ENOMEM;
	memcpy(buf, TREE_MAGIC, 8);
	memset(buf + 8, 0, 8);
	buf[8] = TREE_FORMAT;
	put64(buf + 16, len);
	haul__img__tree__pack(tr, buf + TREE_HDR);
	put64(buf + 24, XXH3_64bits(buf + TREE_HDR, len));
	errno = 0;
	fd = openat(dirfd, RST_TREE_FILE, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, buf, TREE_HDR + len) != (ssize_t)(TREE_HDR + len) || fsync(fd)) {
		ret = errno ? -errno : -EIO;
		pr_err_r(ret, "cannot write the tree of pid %d (%s)", tr->root, RST_TREE_FILE);
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	return ret;
}

/* The tree's own consistency; the reason in @why. */
static int check_tree(const Haul__Img__Tree *tr, char *why, size_t wl)
{
	if (tr->version != RST_TREE_VERSION && tr->version != RST_TREE_VERSION_SHARES) {
		snprintf(why, wl, "tree version %u, this haul reads %d and %d", tr->version,
			 RST_TREE_VERSION, RST_TREE_VERSION_SHARES);
		return -EBADMSG;
	}
	if (!tr->n_procs || tr->n_procs > RST_TREE_MAX || tr->procs[0]->pid != tr->root ||
	    tr->procs[0]->zombie) {
		snprintf(why, wl, "%zu processes, the first not the live root %d", tr->n_procs,
			 tr->root);
		return -EBADMSG;
	}
	for (size_t i = 0; i < tr->n_procs; i++) {
		const Haul__Img__ProcessEntry *e = tr->procs[i];
		bool parent = !i;

		/* sid/pgid 0: led from outside the PID namespace haul saw them in */
		if (e->pid <= 0 || e->pgid < 0 || e->sid < 0 || (!e->pgid && e->sid)) {
			snprintf(why, wl, "entry %zu has pid %d, pgid %d, sid %d", i, e->pid,
				 e->pgid, e->sid);
			return -EBADMSG;
		}
		/* shared with a parent in the tree, by a live process, in a version-2 tree */
		if (e->shares && (!i || e->zombie || (e->shares & ~RST_TREE_SHARES) ||
				  tr->version != RST_TREE_VERSION_SHARES)) {
			snprintf(why, wl, "pid %d shares %#x with its parent", e->pid, e->shares);
			return -EBADMSG;
		}
		for (size_t k = 0; k < i; k++) {
			if (tr->procs[k]->pid == e->pid) {
				snprintf(why, wl, "pid %d is in it twice", e->pid);
				return -EBADMSG;
			}
			if (tr->procs[k]->pid == e->ppid) {
				if (tr->procs[k]->zombie) {
					snprintf(why, wl, "pid %d has zombie parent %d", e->pid,
						 e->ppid);
					return -EBADMSG;
				}
				parent = true;
			}
		}
		if (!parent) {
			snprintf(why, wl, "the parent %d of pid %d is not before it", e->ppid,
				 e->pid);
			return -EBADMSG;
		}
	}
	return 0;
}

int rst_tree_check(const Haul__Img__Tree *tr, char *why, size_t wl)
{
	return check_tree(tr, why, wl);
}

int rst_tree_img_read(const char *dir, Haul__Img__Tree **out)
{
	char path[4096], why[256] = "";
	Haul__Img__Tree *tr = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	int ret;

	snprintf(path, sizeof(path), "%s/%s", dir, RST_TREE_FILE);
	ret = rst_read_file(path, (char **)&buf, &len);
	if (ret == -ESRCH || ret == -ENOENT)
		return -ENOENT;
	if (ret) {
		pr_err_r(ret, "cannot read %s", path);
		return ret;
	}
	ret = -EBADMSG;
	if (len < TREE_HDR || memcmp(buf, TREE_MAGIC, 8))
		snprintf(why, sizeof(why), "not a tree file");
	else if (buf[8] != TREE_FORMAT || buf[9] || buf[10] || buf[11])
		snprintf(why, sizeof(why), "format %u, this haul reads %d", buf[8], TREE_FORMAT);
	else if (get64(buf + 16) != len - TREE_HDR || len - TREE_HDR > TREE_MAX_LEN)
		snprintf(why, sizeof(why), "length %llu in a file of %zu bytes",
			 (unsigned long long)get64(buf + 16), len);
	else if (get64(buf + 24) != XXH3_64bits(buf + TREE_HDR, len - TREE_HDR))
		snprintf(why, sizeof(why), "checksum mismatch");
	else if (!(tr = haul__img__tree__unpack(NULL, len - TREE_HDR, buf + TREE_HDR)))
		snprintf(why, sizeof(why), "the message does not decode");
	else
		ret = check_tree(tr, why, sizeof(why));
	free(buf);
	if (ret) {
		pr_err("%s is damaged: %s; checkpoint the tree again", path, why);
		if (tr)
			haul__img__tree__free_unpacked(tr, NULL);
		return ret;
	}
	*out = tr;
	return 0;
}

bool rst_is_tree_image(const char *dir)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", dir, RST_TREE_FILE);
	return access(path, F_OK) == 0;
}
