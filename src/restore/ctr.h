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
	(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID |                 \
	 CLONE_NEWCGROUP | CLONE_NEWUSER)

/* Lines of a user namespace's id map carried (the kernel allows 340). */
#define RST_CTR_IDMAP_MAX 340

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
 * The engine's network namespace, in the same list: on dump key
 * "net[INODE]" (CRIU's external net[INODE]:VALUE: that namespace is the
 * engine's, its interfaces are not carried); on restore key
 * RST_CTR_NET_KEY and value a path to open for it (the namespace joined).
 */
#define RST_CTR_NET_KEY "extRootNetNS"
/*
 * A namespace the engine makes the container join (CRIU's join_ns, runc's
 * namespace path for uts or ipc), in the same list on restore: key
 * RST_CTR_JOIN_KEY "uts" (or "ipc"), value the namespace file's path.
 */
#define RST_CTR_JOIN_KEY "join_ns:"
/*
 * The engine's PID namespace that the container joined (CRIU's external
 * pid[INODE]:KEY on dump, key "pid[INODE]"; inherit_fd KEY on restore, key
 * RST_CTR_PID_KEY, value a path to open for it).
 */
#define RST_CTR_PID_KEY "extRootPidNS"

/*
 * Check that the container of @pid (pid 1 of its PID namespace) can be
 * carried, and record its namespaces and mount table into a new *@out
 * (free with rst_ctr_record_free).  @ext: the engine's external mounts.
 * A refusal names the resource in @why; -EOPNOTSUPP.  0 or -errno.
 */
int rst_ctr_dump_check(pid_t pid, const struct rst_ctr_ext *ext, size_t next,
		       Haul__Ctr__Container **out, char *why, size_t wl);
/*
 * The checkpoint of a container's pid 1 @pid with its descendants into
 * @dir (rst_tree_checkpoint, tree_ctr.c): @stopped(@arg) runs once, while
 * every process of the tree is stopped (the tmpfs archives and the record
 * go there); its failure fails the checkpoint and all run on.  0 or
 * -errno, logged.
 */
struct rst_ckpt_stats;
int rst_ctr_tree_checkpoint(pid_t pid, const char *dir, bool leave_running,
			    int (*stopped)(void *arg), void *arg, struct rst_ckpt_stats *st);
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

/* One line of an id map: ns .. ns+count-1 inside are host .. host+count-1. */
struct rst_ctr_idmap {
	uint32_t ns, host, count;
};

struct rst_ctr {
	uint32_t nsflags;
	/* CLONE_NEWUSER: the maps to write for the new user namespace */
	struct rst_ctr_idmap uid_map[RST_CTR_IDMAP_MAX], gid_map[RST_CTR_IDMAP_MAX];
	size_t n_uid_map, n_gid_map;
	bool setgroups_deny;
	char hostname[65], domainname[65];
	char root[PATH_MAX];
	unsigned long root_flags;
	char tar[PATH_MAX];
	struct rst_ctr_mount *m;
	size_t n;
	char netns[64]; /* joined instead of a new one when set (net_external) */
	/* join_ns (joinns_ctr.c): joined instead of a new one (the names still set) */
	char utsns[PATH_MAX], ipcns[PATH_MAX];
	char pidns[64]; /* pid_external (pidns_ctr.c): joined, the pids kept there */
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
 * Joined namespaces (joinns_ctr.c).  rst_ctr_join_kind(): whether a
 * join_ns of kind @ns ("uts", "ipc") is done.  rst_ctr_ns_shared_outside():
 * a process outside @pid's PID namespace that is in its namespace @ns
 * ("ipc"), 0 when none.  rst_ctr_prepare_joins(): the RST_CTR_JOIN_KEY
 * entries of @ext into @out, refused with @why (-EOPNOTSUPP, -EINVAL or
 * -errno of the path).  rst_ctr_join(): in the restore helper, setns into
 * each, its CLONE_NEW* cleared from *@flags.  0 or -errno.
 */
bool rst_ctr_join_kind(const char *ns);
pid_t rst_ctr_ns_shared_outside(pid_t pid, const char *ns);
/* A process of @pid's PID namespace that maps a SysV segment: refused (@why). 0 or -errno. */
int rst_ctr_shared_ipc_check(pid_t pid, char *why, size_t wl);
int rst_ctr_prepare_joins(const Haul__Ctr__Container *c, const struct rst_ctr_ext *ext, size_t next,
			  struct rst_ctr *out, char *why, size_t wl);
int rst_ctr_join(const struct rst_ctr *c, int *flags);

/*
 * A PID namespace the container joined (pidns_ctr.c).
 * rst_ctr_pid_external(): whether @ext names @pid's PID namespace
 * ("pid[INODE]").  rst_ctr_joined_members(): every process of @pid's PID
 * and mount namespaces descends from @pid (refused with @why: -EOPNOTSUPP).
 * rst_ctr_prepare_pidns(): the RST_CTR_PID_KEY entry of @ext into
 * @out->pidns when the record says pid_external (refused with @why when
 * one is missing, or given for a container that had its own).
 * rst_ctr_clone_joined(): in the restore helper, setns into @c->pidns,
 * a mount namespace of its own, then clone3 with set_tid @pid (our
 * parent's child when @sibling); like fork(), what failed also to @errfd.
 */
bool rst_ctr_pid_external(pid_t pid, const struct rst_ctr_ext *ext, size_t next);
int rst_ctr_joined_members(pid_t pid, char *why, size_t wl);
int rst_ctr_prepare_pidns(const Haul__Ctr__Container *c, const struct rst_ctr_ext *ext, size_t next,
			  struct rst_ctr *out, char *why, size_t wl);
pid_t rst_ctr_clone_joined(const struct rst_ctr *c, pid_t pid, bool sibling, int errfd);

/*
 * The container's user namespace (userns_ctr.c).  rst_ctr_dump_userns():
 * record the maps of @pid's user namespace in @c (refused with @why when
 * it is nested or does not own the namespaces in @flags).
 * rst_ctr_prepare_userns(): the record's maps into @out.  rst_ctr_userns():
 * in the restore helper, first: make the user namespace, have its maps
 * written, become its root (errors also to @errfd).
 * rst_ctr_creds_in(): the image's ids (ours) as the namespace sees them,
 * into @out (a copy of @in; *@groups, freed by the caller, holds its
 * groups); -ERANGE when the map does not name one.  Each 0 or -errno.
 */
struct Haul__Img__Creds;
int rst_ctr_dump_userns(pid_t pid, uint32_t flags, Haul__Ctr__Container *c, char *why, size_t wl);
int rst_ctr_prepare_userns(const Haul__Ctr__Container *c, struct rst_ctr *out, char *why,
			   size_t wl);
int rst_ctr_userns(const struct rst_ctr *c, int errfd);
/* In rst_ctr_prepare(): uid=/gid= mount options as the namespace sees them. */
int rst_ctr_userns_mount_data(struct rst_ctr *c, char *why, size_t wl);
/* In pid 1, first: a bind of the root (the working directory) that pivot_root takes. */
int rst_ctr_userns_root(int errfd);
/* After rst_ctr_userns(): the fd of mount @i's archive, or -1. */
int rst_ctr_userns_archive(size_t i);
int rst_ctr_creds_in(const struct rst_ctr *c, const struct Haul__Img__Creds *in,
		     struct Haul__Img__Creds *out, uint32_t **groups);
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
