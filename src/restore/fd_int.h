/*
 * fd_int.h - private to src/restore: the fd resource layer.
 *
 * Each kind of fd haul carries is one file (fd_file.c, fd_ghost.c,
 * fd_eventfd.c, fd_signalfd.c, fd_timerfd.c, fd_epoll.c, fd_pipe.c,
 * fd_unix.c, fd_memfd.c) exporting one struct rst_fd_ops; fd_kinds.c lists them in one
 * table.  The sequence stays elsewhere: precheck.c and fd_dump.c walk
 * /proc/PID/fd and call the kind's hooks, fd_restore.c creates the fds in
 * the stub.  A new kind is one new file, one line in the table, its image
 * sub-message of FileObject and its tests.
 *
 * Image (version 4): a FileObject per open file description (generic
 * fields and one sub-message per kind, filled and checked by that kind's
 * hooks), and an FdEntry per fd naming its FileObject by id.
 */
#ifndef HAUL_RESTORE_FD_INT_H
#define HAUL_RESTORE_FD_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "image.pb-c.h"

struct rst_target;

/* What the source knows of one fd before it is classified. */
struct rst_fd_probe {
	pid_t pid;
	int fd;
	unsigned long flags;   /* open flags from fdinfo, O_CLOEXEC included */
	const char *target;    /* the /proc/PID/fd link text, " (deleted)" stripped */
	bool deleted;	       /* the link said " (deleted)" */
	const struct stat *st; /* stat() through the link */
	const char *fdinfo;    /* /proc/PID/fdinfo/FD */
};

/* A pipe or socketpair being rebuilt: its two ends parked above every fd of the image. */
struct rst_tpipe {
	uint64_t id;
	int r, w; /* pipe: read and write end; socketpair: the lower and the higher inode's end */
	uint32_t r_ofd, w_ofd; /* pipe: the file_id that has the parked end's OFD, 0: none yet */
	bool sock;
	bool fifo;    /* a named FIFO (fd_fifo.c): w its parked read-write open, r -1 */
	uint64_t dev; /* ... and its filesystem (id: its inode there) */
	const ProtobufCBinaryData *data;  /* pipe: its bytes; pair: what r's end had to read */
	const ProtobufCBinaryData *data1; /* pair: what w's end had to read */
};

/* A deleted file recreated under a temporary name until every fd has opened it. */
struct rst_tghost {
	uint64_t dev, ino;
	char *path;
	int dirfd; /* its directory (O_PATH): removed by it even once the stub is gone */
};

/* The restore of the fds of one process (fd_restore.c owns it). */
struct rst_fd_rctx {
	struct rst_tpipe *pipes;
	size_t npipes;
	int park; /* next free fd number above the image's */
	struct rst_tghost *ghosts;
	size_t nghosts;
	const Haul__Img__ProcessState *ps;
	size_t cur; /* index in ps->fds of the fd being restored */
};

/* The fds of one dumped process (fd_dump.c); every message malloc'd, freed by rst_fd_image_free. */
struct rst_fd_image {
	Haul__Img__FileObject **files;
	size_t nfiles;
	Haul__Img__FdEntry **fds;
	size_t nfds;
	uint32_t next_id; /* the id the next FileObject gets (ids are unique in the image) */
};
void rst_fd_image_free(struct rst_fd_image *im);

/*
 * One kind of fd.  Every hook but match may be NULL (nothing to do).
 *  match:    whether @p is of this kind (the table is tried in order).
 *  refuse:   at the precheck and at the dump: 0, or -EOPNOTSUPP with the
 *            reason in @why naming fd and file (nothing is touched yet).
 *  precheck: at the precheck only (the process runs): the fdinfo audit of
 *            what the restore must reproduce; 0 or -EOPNOTSUPP with @why.
 *  dump:     fill the kind's sub-message of @o (its generic fields are
 *            set); @prev are the files of the fds dumped before it (one
 *            per fd, before fds of one OFD are merged).  0 or -errno.
 *  validate: at load, before anything is restored: @f's sub-message is
 *            the kind's and its fields are sane; 0 or -EBADMSG with @why
 *            naming the file.
 *  restore:  create file @f for fd @e in the stub; *@tmp the new fd, or a
 *            parked end that stays open (*@shared).  @path: where to open
 *            it for the kinds reopened by path.  0 or -errno.
 *  setup:    once @e is at its own number: what dup3 does not carry.
 *  finish:   once every fd exists (pipe contents, epoll targets).  0 or
 *            -errno with @why.
 */
struct rst_fd_ops {
	const char *name;
	Haul__Img__FdKind kind;
	uint32_t version; /* of its image message: 4, its FileObject sub-message */
	bool (*match)(const struct rst_fd_probe *p);
	int (*refuse)(const struct rst_fd_probe *p, char *why, size_t wl);
	int (*precheck)(const struct rst_fd_probe *p, char *why, size_t wl);
	int (*dump)(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
		    Haul__Img__FileObject *const *prev, size_t nprev);
	int (*validate)(const Haul__Img__FileObject *f, char *why, size_t wl);
	int (*restore)(struct rst_target *t, struct rst_fd_rctx *x, const Haul__Img__FileObject *f,
		       const Haul__Img__FdEntry *e, const char *path, int *tmp, bool *shared);
	int (*setup)(struct rst_target *t, const Haul__Img__FileObject *f,
		     const Haul__Img__FdEntry *e);
	int (*finish)(struct rst_target *t, struct rst_fd_rctx *x, char *why, size_t wl);
};

/*
 * fd_dump.c: every fd of stopped @r (its scratch page @scratch; @self its
 * pid as it knows itself), into @im: one FdEntry per fd, one FileObject
 * per open file description, ids from im->next_id on (@im is filled even
 * on failure: the caller calls rst_fd_image_free).  0, -EOPNOTSUPP or
 * -errno with the reason in @why.
 */
struct rsys;
int rst_dump_fds(struct rsys *r, uint64_t scratch, pid_t self, struct rst_fd_image *im, char *why,
		 size_t whylen);

/*
 * fd_validate.c: the FileObjects and FdEntries of @ps, before anything is
 * restored: generic fields, each kind's validate hook, unique ids and fd
 * numbers, every fd naming a FileObject of the image.  0 or -EBADMSG with
 * @why naming the record.
 */
int rst_fd_validate(const Haul__Img__ProcessState *ps, char *why, size_t wl);
/*
 * fd_validate.c: state blob @blob as the restorer receives it: it parses,
 * has this haul's image version (-EPROTO, both numbers in @why), passes
 * val_process_state and rst_fd_validate (-EBADMSG with @why).
 */
int rst_state_check(const void *blob, size_t len, char *why, size_t wl);
/*
 * fd_validate.c: how many kind sub-messages @f carries (exactly one is
 * valid): every message field of FileObject numbered RST_FD_PART_FIRST or
 * more, found through the descriptor, so a new kind adds nothing here.
 */
#define RST_FD_PART_FIRST 16
unsigned rst_fd_nsub(const Haul__Img__FileObject *f);

/* fd_kinds.c: every kind, in the order they are matched; NULL-terminated. */
extern const struct rst_fd_ops *const rst_fd_kinds[];
/* The ops of @kind, or NULL for a kind this haul does not know. */
const struct rst_fd_ops *rst_fd_ops_of(Haul__Img__FdKind kind);
/*
 * The kind of fd @fd of @pid, after its refuse hook: 0 with *@ops and the
 * probe filled (its strings in @target, @st and the caller's @fdinfo),
 * -ENOENT when the fd was closed meanwhile, -EOPNOTSUPP with @why.
 */
int rst_fd_classify(pid_t pid, int fd, const char *fdinfo, char *target, size_t tlen,
		    struct stat *st, struct rst_fd_probe *p, const struct rst_fd_ops **ops,
		    char *why, size_t whylen);

/*
 * fd_kinds.c: classify every fd of running @pid and call @fn on each (an fd
 * closed meanwhile is skipped).  Stops at the first non-zero return: a
 * refusal (with @why), @fn's, or -errno.
 */
typedef int (*rst_fd_visit)(void *arg, const struct rst_fd_probe *p, const struct rst_fd_ops *k,
			    char *why, size_t whylen);
int rst_fd_each(pid_t pid, rst_fd_visit fn, void *arg, char *why, size_t whylen);

extern const struct rst_fd_ops rst_fd_reg, rst_fd_dir, rst_fd_chr, rst_fd_path; /* fd_file.c */
extern const struct rst_fd_ops rst_fd_deleted;					/* fd_ghost.c */
extern const struct rst_fd_ops rst_fd_eventfd, rst_fd_signalfd, rst_fd_timerfd, rst_fd_epoll;
extern const struct rst_fd_ops rst_fd_pipe, rst_fd_unix_pair;
extern const struct rst_fd_ops rst_fd_fifo; /* fd_fifo.c */
/*
 * fd_pipe.c: the size of the pipe or FIFO of fd @fd of @pid and, when
 * @first, the bytes buffered in it (tee from a new read end: not
 * consumed) into @o.  fd_file.c: whether @p's path still names the file
 * (device number for a character device), else -EOPNOTSUPP with @why.
 */
int rst_pipe_dump_data(pid_t pid, int fd, Haul__Img__PipeFile *o, bool first);
/*
 * fd_pipe.c: @p's PipeFile into @o (kind FD_PIPE, or FD_FIFO with its mode,
 * filesystem and whether it was deleted), its bytes on the first
 * FileObject of that pipe among @prev.
 */
int rst_pipe_file_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
		       Haul__Img__FileObject *const *prev, size_t nprev, Haul__Img__FdKind kind);
int rst_fd_path_precheck(const struct rst_fd_probe *p, char *why, size_t whylen);
extern const struct rst_fd_ops rst_fd_memfd;	/* fd_memfd.c */
extern const struct rst_fd_ops rst_fd_pidfd;	/* fd_pidfd.c */
extern const struct rst_fd_ops rst_fd_inotify;	/* fd_inotify.c */
extern const struct rst_fd_ops rst_fd_fanotify; /* fd_fanotify.c */

/*
 * fd_copy.c: haul's copy (pidfd_getfd) of fd @fd of @pid: the same open
 * file, to read with plain calls and close.  The fd, or -errno (-EBADF:
 * the process has no such fd now).
 */
int rst_fd_copy(pid_t pid, int fd);
/*
 * fd_fhandle.c: the path of the file an inotify or fanotify mark line
 * @mark of fdinfo names (its sdev, fhandle-bytes, fhandle-type, f_handle).
 * 0, -ENOENT when it has no path any more (deleted), -EBADMSG when the
 * line does not parse, or -errno of open_by_handle_at.
 */
int rst_fhandle_path(const char *mark, char *path, size_t len);
/*
 * fd_fhandle.c: the refuse hook's last check of the inotify or fanotify
 * (@kind) fd of @p: 0 when no event waits on it, else -EOPNOTSUPP with
 * @why (the events would be lost, or they cannot be counted).
 */
int rst_fhandle_refuse_queued(const struct rst_fd_probe *p, const char *kind, char *why, size_t wl);
/*
 * fd_fhandle.c: the mount point, from @mountinfo (a /proc/.../mountinfo
 * path), of mount @id (>= 0), or else of the first mount of the
 * filesystem with kernel dev_t @sdev (major << 20 | minor).  0, -ENOENT.
 */
int rst_mount_path(const char *mountinfo, long id, unsigned long sdev, char *path, size_t len);
extern const struct rst_fd_ops rst_fd_external; /* fd_external.c */
extern const struct rst_fd_ops rst_fd_pty;	/* fd_pty.c */
extern const struct rst_fd_ops rst_fd_unix_lsn; /* fd_unix_listen.c */
/*
 * fd_unix_dgram.c: unix datagram sockets that are not one end of a pair.
 * rst_unix_dgram_reset: forget the sockets this thread's restore bound and
 * close those still waiting to connect to one (a tree's start and end).
 */
extern const struct rst_fd_ops rst_fd_unix_dgram;
void rst_unix_dgram_reset(void);
/*
 * fd_unix_pending.c: unix connections a listener had not accepted yet.
 * rst_unix_icons: the inodes waiting in listener @ino's accept queue, in
 * order: the clients' inodes (*@icons malloc'd).  rst_unix_is_pending:
 * whether client socket @ino waits in the queue of a listener of @pid or
 * of a process that moves with it.
 * rst_unix_pending_check: listener @p's refusal of a queued connection
 * whose client sent bytes or is outside the tree (@name: the listener in
 * words).  At restore: rst_unix_pending_client makes client end @u and
 * connects it to its listener now or once that is restored
 * (rst_unix_pending_listener, after its listen()); rst_unix_pending_reset
 * forgets this thread's restore.  0 or -errno.
 */
int rst_unix_icons(uint32_t ino, uint32_t **icons, size_t *n);
/*
 * fd_unix_opts.c: rst_unix_passcred: whether fd @fd of @pid has
 * SO_PASSCRED on: 1, 0 or -errno.  rst_unix_setup: the unix kinds' setup
 * hook: O_NONBLOCK, then SO_PASSCRED as the image says; 0 or -errno.
 */
int rst_unix_passcred(pid_t pid, int fd);
/*
 * fd_unix_opts.c: the SOL_SOCKET options of fd @fd of @pid (a unix socket
 * of @type) that differ from a new socket's, into *@opts (calloc'd, each
 * malloc'd: a repeated SockOpt of the image), *@n of them.  0 or -errno.
 */
int rst_unix_opts_dump(pid_t pid, int fd, int type, Haul__Img__SockOpt ***opts, size_t *n);
/* At load: @f's options are ones rst_unix_opts_dump records.  0 or -EBADMSG with @why. */
int rst_unix_opts_valid(const Haul__Img__FileObject *f, char *why, size_t wl);
int rst_unix_setup(struct rst_target *t, const Haul__Img__FileObject *f,
		   const Haul__Img__FdEntry *e);
bool rst_unix_is_pending(pid_t pid, uint32_t ino);
int rst_unix_pending_check(const struct rst_fd_probe *p, const char *name, char *why, size_t wl);
int rst_unix_pending_client(struct rst_target *t, const Haul__Img__UnixPairFile *u, int *src);
int rst_unix_pending_listener(struct rst_target *t, const Haul__Img__UnixListenFile *l);
void rst_unix_pending_reset(void);
/*
 * fd_external.c: the pids of every process that moves (a process tree):
 * a pipe only they hold is theirs, not an external endpoint.  @pids stays
 * the caller's until the next call (NULL, 0: one process moves, the
 * default).  From the thread that checks and dumps.
 */
void rst_ext_moving(const pid_t *pids, size_t n);
/* Whether @pid is one of those (shm_precheck.c leaves them out too). */
bool rst_ext_is_moving(pid_t pid);
/* Those pids (*@pids, NULL when one process moves) and their count. */
size_t rst_ext_moving_pids(const pid_t **pids);
/*
 * fd_external.c: haul's fd @local handed to the stub of @t (SCM_RIGHTS over
 * an abstract socket of the stub's network namespace), its number there in
 * *@fd (close-on-exec).  0 or -errno.
 */
int rst_ext_push_fd(struct rst_target *t, int local, int *fd);

/*
 * fd_extrules.c: what an fd whose other end stays behind becomes (the
 * spec).  rst_ext_spec_parse: 0 or -EINVAL; @out's path points into @s.
 * rst_ext_spec_fits: whether spec @s applies to kind @k.  rst_ext_rule_for:
 * the user's rule for fd @fd of kind @k, or NULL.  rst_ext_default: the
 * kind's default (@path: a unix socket's peer path; a terminal's own path
 * when it is a device every host has), NULL: none (refused).
 * rst_ext_spec_describe: what @spec makes of the fd, in words.
 */
#define RST_JOURNAL_STDOUT "/run/systemd/journal/stdout"
enum rst_ext_how {
	RST_EXT_NULL,
	RST_EXT_FILE,
	RST_EXT_FD,
	RST_EXT_RECONNECT,
	RST_EXT_JOURNAL,
	RST_EXT_TTY,
	RST_EXT_DEVICE,
};
struct rst_ext_spec {
	enum rst_ext_how how;
	const char *path; /* RST_EXT_FILE */
	int fd;		  /* RST_EXT_FD */
};
int rst_ext_spec_parse(const char *s, struct rst_ext_spec *out);
bool rst_ext_spec_fits(const struct rst_ext_spec *s, Haul__Img__ExternalKind k);
const char *rst_ext_kind_name(Haul__Img__ExternalKind k);
const char *rst_ext_rule_for(int fd, Haul__Img__ExternalKind k);
const char *rst_ext_default(Haul__Img__ExternalKind k, const char *path);
void rst_ext_spec_describe(const char *spec, char *buf, size_t len);

/*
 * fd_tty.c: terminals.  rst_tty_match: whether @st is a tty haul knows
 * (pty slave or master, virtual console, /dev/tty, /dev/console, serial).
 * rst_tty_refuse: -EOPNOTSUPP with @why for the ones it does not carry (a
 * pty master without its slave, a serial line).  rst_tty_dump: termios,
 * window size, controlling terminal of fd @p into @e.  rst_tty_apply: set
 * @e's termios and window size on remote fd @fd (@settings), and make it
 * the controlling terminal if it was.  rst_tty_own: the path of the restoring
 * haul's terminal (its fd 0, 1 or 2), -ENOTTY: none.
 * rst_tty_read_termios: TCGETS and TIOCGWINSZ of our fd @sfd into *@out
 * (heap).  rst_tty_set_termios: both on remote fd @fd.
 * rst_tty_host_device: a virtual console or /dev/console (a device of the
 * host, reopened by its path: spec "device").
 * rst_tty_pts_index: N of /dev/pts/N, -1 if not a pty slave;
 * rst_tty_is_ptmx: a pty master; rst_tty_master_of / rst_tty_slave_of:
 * the fd of @pid that is the master / a slave of pty @index, or -1.
 */
bool rst_tty_match(const struct stat *st);
bool rst_tty_host_device(const struct stat *st);
int rst_tty_refuse(const struct rst_fd_probe *p, char *why, size_t wl);
int rst_tty_dump(const struct rst_fd_probe *p, Haul__Img__External *e);
int rst_tty_apply(struct rst_target *t, int fd, const Haul__Img__External *e, bool settings);
int rst_tty_own(char *path, size_t len);
int rst_tty_read_termios(int sfd, Haul__Img__Termios **out);
int rst_tty_set_termios(struct rst_target *t, int fd, const Haul__Img__Termios *tm);
int rst_tty_pts_index(const struct stat *st);
bool rst_tty_is_ptmx(const struct stat *st);
int rst_tty_master_of(pid_t pid, int index);
int rst_tty_slave_of(pid_t pid, int index);
/*
 * fd_tty.c: make remote fd @fd (a terminal) the controlling terminal of
 * the restored process, which must lead its session and have none (the
 * stub calls setsid), and @pgrp (> 0) its foreground process group: for
 * the process trees, whose session leader calls it once its groups exist.
 * 0, or -errno: -EPERM when the terminal is another session's.
 */
int rst_tty_set_ctty(struct rst_target *t, int fd, pid_t pgrp);

/*
 * fd_procfs.c: the refuse hook's check of an fd on procfs or nsfs (the
 * kinds reopened by path call it first): 0 when it is on neither, or is
 * carried (a /proc file not tied to a pid; one of a task that moves
 * along, named by its own pid); -EOPNOTSUPP with @why naming pid, fd and
 * path and what to do; -ENOENT when the fd was closed meanwhile.
 */
int rst_procfs_refuse(const struct rst_fd_probe *p, char *why, size_t wl);
/* fd_procfs.c: whether image path @path is on /proc (its offset is set by rst_res_procfs). */
bool rst_procfs_path(const char *path);
/*
 * fd_procfs.c: the path that stands in for /proc file @path of one of
 * @ps's other threads until the threads exist (rst_res_procfs reopens it
 * then): the main thread's same entry, in @buf.  false: not such a file.
 */
bool rst_procfs_stand_in(const Haul__Img__ProcessState *ps, const char *path, char *buf,
			 size_t len);
/* fd_file.c: the restore hook of the kinds reopened by path: open @path with @f's flags. */
int rst_fd_open_path(struct rst_target *t, struct rst_fd_rctx *x, const Haul__Img__FileObject *f,
		     const Haul__Img__FdEntry *e, const char *path, int *tmp, bool *shared);
/* fd_file.c: lseek fd @e to @f's offset (regular and deleted files). */
int rst_fd_seek(struct rst_target *t, const Haul__Img__FileObject *f, const Haul__Img__FdEntry *e);
/*
 * fd_eventfd.c: create the fd of an anonymous-inode kind in the stub by one
 * injected syscall @nr(@a0, @a1 | @f's O_NONBLOCK): *@tmp its fd (-1 when
 * the call failed), *@shared false.  0 or -errno (eventfd, timerfd).
 */
int rst_fd_anon_create(struct rst_target *t, const Haul__Img__FileObject *f, long nr, uint64_t a0,
		       uint64_t a1, int *tmp, bool *shared);
/*
 * fd_eventfd.c: the dump hook's start for those kinds: the value of the
 * fdinfo field @key of @p (*@val) and a new message of @desc, initialised
 * (*@out, the kind's part).  0, -EIO without the field, -ENOMEM.
 */
int rst_fd_anon_part(const struct rst_fd_probe *p, const char *key,
		     const ProtobufCMessageDescriptor *desc, const char **val, void **out);
/* fd_pipe.c: F_SETFL O_NONBLOCK as @f had it (pipes and socketpairs share parked ends). */
int rst_fd_set_nonblock(struct rst_target *t, const Haul__Img__FileObject *f,
			const Haul__Img__FdEntry *e);

/* fd_restore.c: move remote fd @fd above every fd the image names (*@out). */
int rst_fd_park(struct rst_target *t, struct rst_fd_rctx *x, int fd, int *out);
/* fd_restore.c: the fd restored before x->cur that names @e's FileObject too, or NULL. */
const Haul__Img__FdEntry *rst_fd_ofd_leader(const struct rst_fd_rctx *x,
					    const Haul__Img__FdEntry *e);
/* fd_restore.c: the FileObject @id of @ps, or NULL. */
const Haul__Img__FileObject *rst_fd_file(const Haul__Img__ProcessState *ps, uint32_t id);
/* fd_restore.c: the first fd of @ps naming FileObject @id, or NULL (held by other processes). */
const Haul__Img__FdEntry *rst_fd_first(const Haul__Img__ProcessState *ps, uint32_t id);
/* The data extents of a FileObject's part, for rst_fd_check_extents(). */
struct rst_extents {
	const char *part;   /* the part, in messages: "ghost", "memfd" */
	const char *beyond; /* what an extent may not pass, in messages */
	const uint64_t *v;  /* (offset, length) pairs */
	size_t n;	    /* values in @v */
	uint64_t size;	    /* the file's size, UINT64_MAX when unknown */
	size_t datalen;	    /* bytes of content the image carries */
};
/*
 * fd_extents.c: whether @x holds (offset, length) pairs in order, each
 * inside @x->size and the whole inside @x->datalen (their sum in *@total).
 * 0, or -EBADMSG with @why naming FileObject @id and the extent.
 */
int rst_fd_check_extents(uint32_t id, const struct rst_extents *x, uint64_t *total, char *why,
			 size_t wl);
/*
 * fd_restore.c: the parked pipe (@sock false) or AF_UNIX socketpair of
 * SOCK_* @type (@sock true) @id of @x in *@out: the one made for an earlier
 * fd, else made now in the target with both ends parked (*@made set; the
 * caller fills in the rest).  0 or -errno.
 */
int rst_fd_parked_pair(struct rst_target *t, struct rst_fd_rctx *x, uint64_t id, bool sock,
		       int type, struct rst_tpipe **out, bool *made);
/*
 * fd_restore.c: every fd exists: refill the parked pipes (@sock false) or
 * socketpairs (@sock true) with what their ends had to read, and close
 * the parked ends.  0 or -errno with @why.
 */
int rst_fd_refill_parked(struct rst_target *t, struct rst_fd_rctx *x, bool sock, char *why,
			 size_t wl);

/*
 * fd_unix.c: what sock_diag says of unix socket @ino.  -ENOENT: not a unix
 * socket (or gone).
 */
struct rst_unix_info {
	uint32_t peer;	  /* the other end's inode, 0 when not connected */
	uint32_t rqlen;	  /* bytes waiting to be read (stream, seqpacket); listener: connections */
	uint32_t wqlen;	  /* bytes waiting to be sent; listener: its backlog */
	uint8_t type;	  /* SOCK_STREAM, ... */
	uint8_t state;	  /* TCP_ESTABLISHED (1) when connected */
	bool named;	  /* bound to a path or an abstract name */
	uint8_t shutdown; /* sk_shutdown: RCV_SHUTDOWN 1, SEND_SHUTDOWN 2 */
};
int rst_unix_diag(uint32_t ino, struct rst_unix_info *u);
/* A stream or seqpacket end whose peer closed: connected, no peer inode, shut down both ways. */
static inline bool rst_unix_peer_gone(const struct rst_unix_info *u)
{
	return u->type != SOCK_DGRAM && u->state == 1 && !u->peer && (u->shutdown & 3) == 3;
}
/*
 * fd_unix.c: the unix kinds' precheck of what none of them carries yet: a
 * socket shut down in either direction (its own shutdown() or its peer's).
 * 0, or -EOPNOTSUPP with @why naming the fd.
 */
int rst_unix_refuse_shutdown(const struct rst_fd_probe *p, char *why, size_t wl);
/*
 * fd_unix.c: a socket bound to path @path (@len bytes, no NUL) whose name
 * now names a file that is not a socket (it was unlinked and taken): the
 * restore's bind would take that file's place.  0, or -EOPNOTSUPP with @why.
 */
int rst_unix_refuse_name_taken(const struct rst_fd_probe *p, const char *path, size_t len,
			       char *why, size_t wl);
/*
 * fd_unix.c: a pipe or socket fd of the process, by inode.  rst_unix_check_pairs:
 * every socket of @p[0..n) must be one end of a connected unnamed unix pair
 * whose other end is in @p too; 0 or -EOPNOTSUPP with @why.
 */
struct rst_held_pipe {
	uint64_t ino;
	int fd;
	bool sock; /* "socket:[ino]", else "pipe:[ino]" */
	bool inet; /* a TCP or UDP socket: only its sharing is checked */
};
int rst_unix_check_pairs(pid_t pid, const struct rst_held_pipe *p, size_t n, char *why,
			 size_t whylen);
/*
 * fd_unix_listen.c: rst_unix_get_name: the name unix socket @sfd is bound
 * to, its sun_path bytes into @path (108 bytes), their count in *@len (0:
 * none; a path without its NUL).  rst_unix_clear_path: make @path free to
 * bind: a stale socket inode is unlinked, anything else fails (-EEXIST).
 */
int rst_unix_get_name(int sfd, char *path, size_t *len);
int rst_unix_clear_path(const char *path);
/*
 * fd_unix_named.c: the two ends of the connected pair @u (this end) and
 * @peer, one of them named, made in the stub by connect() and accept()
 * on a listener of that name (the process's own once restored, else a
 * temporary one): fds[0] the lower inode's end.  0 or -errno.
 */
/*
 * fd_unix_msgs.c: rst_unix_peek_msgs: the messages queued on datagram or
 * seqpacket socket @sfd (a copy), in order, into @o->msgs; 0, -EOPNOTSUPP
 * (fds in flight, a message too large: logged) or -errno.
 * rst_unix_refill_msgs: once every fd exists, each pair end's messages
 * sent again through the other end.  0 or -errno (logged).
 */
int rst_unix_peek_msgs(pid_t pid, int sfd, Haul__Img__UnixPairFile *o);
/*
 * fd_unix_msgs.c: a dump's peeks at the queue of socket @sfd (a copy, the
 * process stopped) from its first message on, each moving on past the
 * last: rst_unix_peek_start sets SO_PEEK_OFF to 0, its value before into
 * *@old (0 or -errno); rst_unix_peek_end puts @old back (a failure is
 * warned, naming socket @ino).
 */
int rst_unix_peek_start(int sfd, int *old);
void rst_unix_peek_end(int sfd, unsigned long long ino, int old);
int rst_unix_refill_msgs(struct rst_target *t, struct rst_fd_rctx *x);
/*
 * fd_unix_msgs.c: send message @i of @u through haul's socket @lfd, with
 * the files in flight it carried (opened again here, or borrowed from the
 * earlier process of the tree that holds them, through @t parking at
 * @park).  0 or -errno.
 */
int rst_unix_send_msg(struct rst_target *t, int park, int lfd, const Haul__Img__UnixPairFile *u,
		      size_t i);
/*
 * fd_unix_msgs.c: the files in flight a peek of queue owner @pid handed
 * haul in @m, noted in @o with message @msg (or refused: -EOPNOTSUPP,
 * logged); every one closed.  0 or -errno.
 */
/*
 * fd_unix_carry.c: a pipe end or an eventfd in flight that no process
 * holds.  rst_unix_carry_kind: nonzero when the file of link text @link
 * is one.  rst_unix_carry_dump: what it holds, from haul's copy @fd, into
 * @f (flags and path set), or -EOPNOTSUPP (logged: a process holds it or
 * the pipe's other end, or @o has it twice).  rst_unix_carry_make: haul's
 * new fd for @f, or -errno (logged).
 */
int rst_unix_carry_kind(const struct stat *st, const char *link);
int rst_unix_carry_dump(pid_t pid, int fd, const char *link, const Haul__Img__UnixPairFile *o,
			Haul__Img__UnixInflight *f);
int rst_unix_carry_make(const Haul__Img__UnixPairFile *u, const Haul__Img__UnixInflight *f);
struct msghdr;
int rst_unix_take_fds(pid_t pid, struct msghdr *m, Haul__Img__UnixPairFile *o, uint32_t msg);
/*
 * fd_unix_msgs.c: the files a peek handed us in @m (SCM_RIGHTS), in order:
 * rst_unix_cmsg_fds puts their fds into @fds and returns their count;
 * rst_unix_drop_fds closes them and returns their count.  At most
 * RST_UNIX_FDS_MAX (the kernel's SCM_MAX_FD, the most one message
 * carries): a control buffer of CMSG_SPACE(sizeof(int) * RST_UNIX_FDS_MAX)
 * holds no more.
 */
#define RST_UNIX_FDS_MAX 253
size_t rst_unix_cmsg_fds(struct msghdr *m, int fds[RST_UNIX_FDS_MAX]);
size_t rst_unix_drop_fds(struct msghdr *m);
/*
 * fd_unix_stream.c: the queue of stream socket @sfd (a copy; @rqlen bytes)
 * of @pid when files are in flight in it: o->msgs cut where a buffer that
 * carries files starts and ends, the files noted with theirs.  1: none in
 * flight (the caller peeks the bytes into o->data); 0; -EOPNOTSUPP
 * (logged: what cannot be carried, or the boundaries cannot be read);
 * -errno.
 */
int rst_unix_peek_stream(pid_t pid, int sfd, Haul__Img__UnixPairFile *o, uint32_t rqlen);
/* fd_unix_named.c: whether the peer of unix socket @ino is an fd of @pid too, or of a process
 * that moves with it (rst_ext_moving). */
bool rst_unix_peer_held(pid_t pid, uint64_t ino);
int rst_unix_named_pair(struct rst_target *t, struct rst_fd_rctx *x,
			const Haul__Img__UnixPairFile *u, const Haul__Img__UnixPairFile *peer,
			int32_t fds[2]);
/*
 * fd_unix_tree.c: a unix pair whose ends are fds of different processes of
 * a tree.  rst_unix_moving_holds: whether a process that moves with this
 * one (rst_ext_moving) has an fd on socket @ino.  At restore, for this
 * thread: rst_unix_tree_begin drops every end no process took and says
 * whether a tree is being restored (rst_unix_tree_on).
 * rst_unix_tree_export: end @end of @t's pair (inode @ino) is another
 * process's, @kept the end @t keeps: haul takes copies of both.
 * rst_unix_tree_import: end @u exported by an earlier process: what it had
 * to read queued through the kept end, then the end given to @t, its fd
 * in *@src.  -ENOENT: not exported; 0 or -errno (logged).
 */
bool rst_unix_moving_holds(uint64_t ino);
void rst_unix_tree_begin(bool on);
bool rst_unix_tree_on(void);
int rst_unix_tree_export(struct rst_target *t, uint64_t ino, int end, int kept);
int rst_unix_tree_import(struct rst_target *t, int park, const Haul__Img__UnixPairFile *u,
			 int *src);

/*
 * procread.c: small /proc readers.  rst_read_file: the whole file, NUL-
 * terminated, in *@out (free it); ENOENT is reported as -ESRCH (the
 * process is gone).  rst_read_proc: /proc/@pid/@name.  rst_status_field:
 * the text after "@key:" in a "Key:\tvalue" file, or NULL.  rst_read_link:
 * readlink, NUL-terminated.  rst_strip_deleted: drop a " (deleted)" suffix,
 * true if there was one.  rst_fdinfo_flags: the open flags of fdinfo text.
 * rst_parse_limits: /proc/@pid/limits @text into RLIM_NLIMITS entries of
 * @rl; -EBADMSG (logged) when a line does not parse.
 */
int rst_read_file(const char *path, char **out, size_t *len);
int rst_read_proc(pid_t pid, const char *name, char **out, size_t *len);
const char *rst_status_field(const char *text, const char *key);
/* procread.c: @pid's state letter (status "State:": R, S, T, Z...), 0 when it is gone. */
char rst_proc_state(pid_t pid);
/* procread.c: the last pid of the "NSpid:" field of status or fdinfo @text, or -1. */
long rst_status_last_nspid(const char *text);
int rst_read_link(const char *path, char *buf, size_t len);
bool rst_strip_deleted(char *path);
unsigned long rst_fdinfo_flags(const char *text);
int rst_parse_limits(pid_t pid, const char *text, Haul__Img__Rlimit *rl);

#endif
