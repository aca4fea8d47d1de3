/*
 * ctr.h - a container's namespaces and mounts around the process image
 * (ns_ctr.c, mnt_ctr.c; the record is proto/ctr_image.proto).
 *
 * Dump: rst_ctr_dump_check() refuses what cannot be carried before the
 * process is touched and fills the record; rst_ctr_dump_tmpfs() archives
 * the tmpfs contents while the process is stopped.  Restore:
 * rst_ctr_prepare() turns a record into the paths of this host (all
 * allocation and checks happen here, in the tracer); the restore target
 * (target.c) then calls rst_ctr_unshare() in its helper before the
 * container's pid 1 exists and rst_ctr_enter() in that pid 1, which
 * builds the mounts under the root and pivots into it.
 */
#ifndef HAUL_RESTORE_CTR_H
#define HAUL_RESTORE_CTR_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ctr_image.pb-c.h"

#define RST_CTR_VERSION 1
#define RST_CTR_FILE	"haul-ctr.img"

/* The namespaces carried; any other one the process has apart from its parent is refused. */
#define RST_CTR_NS_CARRIED                                                                         \
	(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWCGROUP)

/*
 * An external mount of the engine (CRIU's ext_mnt): on dump, the
 * mountpoint and the name the image keeps for it; on restore, that name
 * and the host path to bind from.
 */
struct rst_ctr_ext {
	const char *key;
	const char *value;
};

/*
 * Check that the container of @pid (pid 1 of its PID namespace) can be
 * carried, and record its namespaces and mount table into a new *@out
 * (free with rst_ctr_record_free).  @ext: the engine's external mounts.
 * A refusal names the resource in @why; -EOPNOTSUPP.  0 or -errno.
 */
int rst_ctr_dump_check(pid_t pid, const struct rst_ctr_ext *ext, size_t next,
		       Haul__Ctr__Container **out, char *why, size_t wl);
/* Archive each tmpfs of @c (process stopped) into @imgdir. 0 or -errno, @why says. */
int rst_ctr_dump_tmpfs(pid_t pid, Haul__Ctr__Container *c, const char *imgdir, char *why,
		       size_t wl);
void rst_ctr_record_free(Haul__Ctr__Container *c);

/* One mount to make, with the paths of this host. */
struct rst_ctr_mount {
	int kind; /* HAUL__CTR__MOUNT_KIND__* */
	char *target;
	char *fstype, *source, *data;
	unsigned long flags;
	char *from;    /* BIND / EXTERNAL: the path to bind from */
	char *archive; /* TMPFS: the tar file */
	bool is_file;
};

struct rst_ctr {
	uint32_t nsflags;
	char hostname[65], domainname[65];
	char root[PATH_MAX];
	unsigned long root_flags;
	char tar[PATH_MAX];
	struct rst_ctr_mount *m;
	size_t n;
};

/*
 * Prepare the restore of record @c into the engine's @root, images in
 * @imgdir, external mounts from @ext.  0 or -errno (@why says).
 */
int rst_ctr_prepare(const Haul__Ctr__Container *c, const char *imgdir, const char *root,
		    const struct rst_ctr_ext *ext, size_t next, struct rst_ctr *out, char *why,
		    size_t wl);
void rst_ctr_release(struct rst_ctr *c);

/*
 * A socket of the network namespace of @pid (ours when it shares it): the
 * calling thread enters that namespace for the socket() call only.  The
 * fd, or -errno.
 */
int rst_ctr_socket_in(pid_t pid, int domain, int type);

/*
 * rst_sibling: the container's pid 1 among the children of @parent (any
 * of its threads): the one in the PID namespace @helper made for its
 * children.  The PID, or -errno.
 */
pid_t rst_ctr_find_sibling(pid_t parent, pid_t helper);

/* In the restore helper, before the container's pid 1 is forked. 0 or -errno. */
int rst_ctr_unshare(const struct rst_ctr *c);
/*
 * In the container's pid 1: hostname, loopback, mounts, pivot_root.
 * Errors are written as one line to @errfd.  0 or -errno.
 */
int rst_ctr_enter(const struct rst_ctr *c, int errfd);

/* ns_ctr.c's use of mnt_ctr.c: the mount table's dump, prepare and rebuild. */
int rst_ctr_dump_mounts(pid_t pid, const struct rst_ctr_ext *ext, size_t next,
			Haul__Ctr__Container *c, char *why, size_t wl);
int rst_ctr_prepare_mounts(const Haul__Ctr__Container *c, const char *imgdir,
			   const struct rst_ctr_ext *ext, size_t next, struct rst_ctr *out,
			   char *why, size_t wl);
/* The mounts, with / not yet pivoted; a failure is one line on @errfd. 0 or -errno. */
int rst_ctr_mounts(const struct rst_ctr *c, int errfd);

#endif
