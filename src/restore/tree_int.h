/*
 * tree_int.h - private to src/restore: a process with its descendants (a
 * tree), as the checkpoint finds it (tree_walk.c), as tree.img keeps it
 * (tree_img.c), and the restore-side process creation it needs
 * (target_fork.c).  DESIGN.md "Images" and "Process trees".
 */
#ifndef HAUL_RESTORE_TREE_INT_H
#define HAUL_RESTORE_TREE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "image.pb-c.h"
#include "restore/restore.h"

/* Tree.version: bump when an older restorer would misapply a tree. */
#define RST_TREE_VERSION 1
/* The version of a tree where a process shares its fd table or fs info with its parent. */
#define RST_TREE_VERSION_SHARES 2
/* What a process of a tree may share with its parent and have restored shared (clone flags). */
#define RST_TREE_SHARES (0x400 /* CLONE_FILES */ | 0x200 /* CLONE_FS */)
/* The most processes one tree may hold (a bound on a peer's or a file's claim). */
#define RST_TREE_MAX 4096
/* The file of a tree image, beside the DIR/<pid>/ page stores. */
#define RST_TREE_FILE "tree.img"

/* One process of a tree; ids are in the tree's PID namespace. */
struct rst_tree_proc {
	pid_t host; /* its PID as seen from here */
	pid_t pid, ppid, pgid, sid;
	bool zombie;
	int exit_status; /* zombie: the wait status */
	char comm[16];	 /* zombie: its name, as ps shows it */
	struct rst_seized *sz;
	bool cont;	 /* we stopped it (SIGSTOP hold): SIGCONT once released */
	unsigned shares; /* RST_TREE_SHARES it shares with its parent (tree_ckpt.c) */
};

/* Every parent before its children, the root at [0]. */
struct rst_tree {
	struct rst_tree_proc *p;
	size_t n, cap;
};

/*
 * tree_walk.c.  rst_tree_walk: add to @t every descendant of its processes
 * (the root, host PID @root, first when @t is empty) not in it yet, from
 * /proc/PID/task/TID/children; *@added counts them.  rst_tree_read_ids:
 * read (again) every process's ids and zombie state, dropping those gone
 * (a zombie reaped by its parent before that stopped).  Both refuse a
 * descendant in a PID namespace of its own (-EOPNOTSUPP, @why).
 * rst_tree_find: the index of tree pid @pid, or -1.  rst_tree_release frees.
 */
int rst_tree_walk(struct rst_tree *t, pid_t root, size_t *added, char *why, size_t wl);
int rst_tree_read_ids(struct rst_tree *t, char *why, size_t wl);
ssize_t rst_tree_find(const struct rst_tree *t, pid_t pid);
void rst_tree_release(struct rst_tree *t);
/* tree_ckpt.c: host PID @host is a zombie, or gone (reaped): nothing to precheck or stop. */
bool rst_tree_gone_or_zombie(pid_t host);

/*
 * tree_img.c: write @t as DIR/tree.img (@dirfd: DIR), fsynced; read and
 * check DIR/tree.img into *@out (free with haul__img__tree__free_unpacked):
 * -ENOENT when DIR holds no tree, -EBADMSG (logged, naming the file) when
 * it is damaged or inconsistent (a parent after its child, an unknown
 * parent, twice the same pid, more than RST_TREE_MAX processes).
 */
int rst_tree_img_write(int dirfd, const struct rst_tree *t);
/* The restore's plan of @t's sessions and groups (rst_tree_plan_check), from the dump. */
int rst_tree_img_plan_check(const struct rst_tree *t, char *why, size_t wl);
int rst_tree_img_read(const char *dir, Haul__Img__Tree **out);
/* Whether the page store directory @dir holds a tree (its tree.img exists). */
bool rst_is_tree_image(const char *dir);

/*
 * image.c: stage every page of stopped @pid (host PID) that exists, as a
 * checkpoint without tracker rounds does, into @p.  0 or -errno.
 */
struct pstore_proc;
struct haul_layout;
int rst_store_pages(pid_t pid, const struct haul_layout *l, struct pstore_proc *p,
		    struct rst_ckpt_stats *st);

/*
 * tree_ckpt.c: rst_ckpt_begin..rst_ckpt_end for @root and all its
 * descendants (restore.h rst_tree_checkpoint).
 */

/*
 * precheck.c: the checks of this thread are for a tree of @n processes
 * @members (host PIDs; NULL: a lone process): children are accepted (they
 * are dumped too) and files and pipes shared with members are not
 * refused (tree_share.c carries them).  @members must outlive the checks.
 */
void rst_precheck_tree(const pid_t *members, size_t n);
/* The members this thread's checks are for (*@members; 0 and NULL: a lone process). */
size_t rst_precheck_members(const pid_t **members);

/*
 * target_fork.c, the tree's process creation, on stubs not laid out yet
 * (no rst_target_layout: their memory is still the stub's).
 * rst_target_fork: inject clone3(set_tid = @pid) into @parent's stub, a
 * fork: the child is a stub too, attached to us stopped, in @parent's
 * session and process group, with PR_SET_PDEATHSIG SIGKILL (a parent
 * killed before resume takes it along).  rst_target_setsid /
 * rst_target_setpgid: injected setsid() / setpgid(0, @pgid).
 * rst_target_exit: make the stub exit with wait status @status (an exit
 * code or a signal), not reaped by its parent: a zombie; the parent's
 * SIGCHLD for it is consumed (the real one was delivered long ago).
 * Each: 0 or -errno, logged naming the pid.
 */
int rst_target_fork(struct rst_target *parent, pid_t pid, struct rst_target **out);
/*
 * rst_target_fork_flags: the same, the child sharing with @parent what
 * @shares names (RST_TREE_SHARES: CLONE_FILES, CLONE_FS), as on the source.
 * A child sharing the fd table gets no fds of its own at its restore: its
 * parent, made ready before it, restored them.
 */
int rst_target_fork_flags(struct rst_target *parent, pid_t pid, unsigned shares,
			  struct rst_target **out);
int rst_target_setsid(struct rst_target *t);
int rst_target_setpgid(struct rst_target *t, pid_t pgid);
int rst_target_exit(struct rst_target *t, struct rst_target *parent, int status);
/* Parent stub @t reaps its exited child @pid (injected wait4).  0 or -errno, logged. */
int rst_target_reap(struct rst_target *t, pid_t pid);
/* The name @comm (prctl PR_SET_NAME) for stub @t, a zombie to be.  0 or -errno, logged. */
int rst_target_set_name(struct rst_target *t, const char *comm);
/*
 * rst_target_release_holder: let a stub that is not laid out (the session
 * stand-in, target.c holder_main) go back to its own code: its registers
 * and mask put back, detached, its M told.  0 or -errno.
 */
int rst_target_release_holder(struct rst_target *t);

/*
 * tree_share.c, dump side: the FileObjects dumped so far (one fd of each,
 * host PID, id, inode).  rst_share_dump_merge: give @ps's ids past every
 * earlier one, then drop each FileObject that is the same open file
 * description as an earlier process's, its FdEntries naming that one.
 * 0 or -errno.
 */
struct rst_share_dump {
	struct {
		pid_t host;
		int fd;
		uint32_t id;
		dev_t dev;
		ino_t ino;
	} * e;
	size_t n, cap;
	uint32_t next_id;
	struct rst_shm_dump *shm; /* shm_tree.c: the shared memory stored so far */
};
int rst_share_dump_merge(struct rst_share_dump *d, pid_t host, Haul__Img__ProcessState *ps);
void rst_share_dump_release(struct rst_share_dump *d);

/*
 * tree_share.c, restore side: the processes of the tree whose fds exist
 * (in tree order; their states and pids in their namespace).  Set for
 * this thread while the tree is made ready (NULL: none).
 * rst_share_known: whether FileObject @id is stored in one of them (the
 * image check accepts an FdEntry naming it).  rst_share_import: fd @e of
 * @t from them, the open file description @e->file_id (@f NULL: stored
 * in another process) or the pipe of @f made by another process; @park:
 * a free fd number above the image's.  -ENOENT: not shared (restore it
 * as usual); 0 or -errno with @why.
 */
struct rst_share_rst {
	const Haul__Img__ProcessState **ps;
	pid_t *pid;
	size_t n;
	const Haul__Img__Tree *tr; /* the whole tree (NULL: not known) */
};
void rst_share_restore_set(const struct rst_share_rst *s);
/* The tree being restored by this thread (rst_share_restore_set), or NULL. */
const struct rst_share_rst *rst_share_current(void);
bool rst_share_known(uint32_t id);
/*
 * A name that opens the deleted file (@dev, @ino of the source) a process
 * whose fds exist recreated: "/proc/PID/fd/N" of its fd of it (a new open
 * file description of that inode: two opens of one deleted file stay one
 * file).  false: none did; the caller recreates it.
 */
bool rst_share_ghost(uint64_t dev, uint64_t ino, char *path, size_t plen);
int rst_share_import(struct rst_target *t, int park, const Haul__Img__FileObject *f,
		     const Haul__Img__FdEntry *e, char *why, size_t wl);
/*
 * tree_share.c: a copy in @t (close-on-exec; above @park) of the first fd
 * of a process whose fds exist whose FileObject @match accepts, in *@got:
 * fd_unix_named.c accepts on a listener another process restored.
 * -ENOENT: none; 0 or -errno.
 */
int rst_share_borrow(struct rst_target *t, int park,
		     bool (*match)(const Haul__Img__FileObject *f, const void *arg),
		     const void *arg, int *got);

/*
 * shm_tree.c, dump side: shared memory objects are stored once for the
 * tree.  rst_shm_tree_dumped: after rst_share_dump_merge of @host's @ps,
 * drop the memfd bytes its fds carry when an earlier process's fd carried
 * them already.  rst_shm_tree_store: store @host's pages (rst_store_pages)
 * but the pages of shared memory objects (dev, ino, offset) an earlier
 * process stored; then remember what it stored.  0 or -errno.  The state
 * lives in @d->shm, freed by rst_share_dump_release.
 */
struct rst_shm_dump;
int rst_shm_tree_dumped(struct rst_share_dump *d, Haul__Img__ProcessState *ps);
int rst_shm_tree_store(struct rst_share_dump *d, pid_t host, const struct haul_layout *l,
		       struct pstore_proc *p, struct rst_ckpt_stats *st);
void rst_shm_tree_dump_free(struct rst_shm_dump *s);

/*
 * shm_tree.c, restore side: the shared memory objects of a tree's targets,
 * each made once, by its first target, and mapped by the others
 * (shm_restore.c).  rst_shm_tree_attach: @t uses table @s (NULL: alone);
 * @s outlives its use.  rst_shm_tree_made: @t made object (@dev, @ino) of
 * the source.  rst_shm_tree_maker: the target other than @t that made it,
 * or NULL.  rst_shm_tree_join_ipc: @t (being laid out, before its first
 * SysV segment) joins the IPC namespace another target moved to for the
 * tree's segments.  0 or -errno (logged, naming the pid).
 */
struct rst_shm_made {
	uint64_t dev, ino; /* the source's */
	struct rst_target *t;
	uint32_t seals; /* memfd seals to add once every process is ready */
};
struct rst_shm_tree {
	struct rst_shm_made *m;
	size_t n, cap;
};
void rst_shm_tree_attach(struct rst_shm_tree *s, struct rst_target *t);
int rst_shm_tree_made(struct rst_target *t, uint64_t dev, uint64_t ino);
const struct rst_shm_made *rst_shm_tree_maker(const struct rst_target *t, uint64_t dev,
					      uint64_t ino);
int rst_shm_tree_join_ipc(struct rst_target *t);
void rst_shm_tree_release(struct rst_shm_tree *s);
/*
 * A memfd's write seals cannot be added while another stub maps it
 * writable (EBUSY: a live restore maps it everywhere before its maker is
 * ready).  rst_shm_tree_defer_seals: @t, its maker, adds @seals later;
 * -ENOENT: not a tree's object.  rst_shm_tree_seal (shm_restore.c): once
 * every process is ready (each mapped it read-only), add them; 0 or
 * -errno with @why.
 */
int rst_shm_tree_defer_seals(struct rst_target *t, uint64_t dev, uint64_t ino, uint32_t seals);
int rst_shm_tree_seal(struct rst_shm_tree *s, char *why, size_t wl);

/*
 * tree_epoll.c: epoll watches whose file is another process's fd.
 * rst_epoll_watch_at: whether fd @fd of @pid is the file of the watch
 * (@tfd, its rank @toff among the watches of that number) of the epoll
 * set at fd @efd of @epid (kcmp KCMP_EPOLL_TFD): 1 yes, 0 no, -ENOSYS or
 * -EPERM when kcmp cannot tell.  rst_epoll_watch_holder: 0 when it is
 * @epid's own fd @tfd, 1 with *@who the index in @cand (host PIDs) of the
 * first other process whose fd @tfd it is, -ENOENT when none, -ENOSYS /
 * -EPERM.  rst_epoll_tree_owners: at the dump of tree process @i into
 * @ps (its FileObjects merged, tree_share.c), set EpollTarget.pid of each
 * watch of a set it stores whose file is another process's fd; 0 or
 * -EOPNOTSUPP with @why (none has it, or one before @i in tree order).
 * rst_epoll_tree_watches: at the restore of @t, all its fds made, add the
 * watches recorded for it on the sets earlier processes made (@park: a
 * free fd number above the image's); 0 or -errno with @why.
 * rst_epoll_tree_later: whether @pid is a live process after @self in the
 * tree being restored.
 */
int rst_epoll_watch_at(pid_t pid, int fd, pid_t epid, int efd, int tfd, int toff);
int rst_epoll_watch_holder(pid_t epid, int efd, int tfd, int toff, const pid_t *cand, size_t n,
			   size_t *who);
int rst_epoll_tree_owners(const struct rst_tree *t, size_t i, Haul__Img__ProcessState *ps,
			  char *why, size_t wl);
int rst_epoll_tree_watches(struct rst_target *t, int park, char *why, size_t wl);
bool rst_epoll_tree_later(pid_t self, pid_t pid);

/*
 * Hooks for what the processes of a tree share besides fds (shared
 * memory: MAP_SHARED anonymous, SysV, memfd, /dev/shm), called if set, in
 * tree order, on the tracer thread.  Each: 0 or -errno (fails the
 * checkpoint or restore; the hook logs why).
 *  dumped:        at the checkpoint, process @host (tree pid @pid) dumped
 *                 into @ps, the earlier processes' already: give its
 *                 shared objects ids unique in the image and store each
 *                 once (as tree_share.c does for open files).
 *  created:       at the restore, every process exists (stopped, forked
 *                 from its parent, not laid out): @t[i] is tree entry i's
 *                 target, NULL for a zombie.
 *  before_layout: before process @t (tree pid @pid) is laid out; the ones
 *                 before it in tree order are laid out, filled and ready:
 *                 objects they made can be attached by id (pidfd_getfd of
 *                 a memfd, /proc/PID/map_files) into @t.
 * rst_tree_set_hooks: install @h (NULL: none); it must outlive its use.
 */
struct rst_tree_hooks {
	int (*dumped)(void *arg, pid_t host, pid_t pid, Haul__Img__ProcessState *ps);
	int (*created)(void *arg, const Haul__Img__Tree *tr, struct rst_target *const *t);
	int (*before_layout)(void *arg, struct rst_target *t, pid_t pid);
	void *arg;
};
void rst_tree_set_hooks(const struct rst_tree_hooks *h);
/* The hooks installed, or NULL. */
const struct rst_tree_hooks *rst_tree_hooks(void);

/*
 * tree_restore.c: restore the tree image in page store directory @path
 * (it holds tree.img) with @o (pid, hold_for, clocks and namespace mode
 * are decided here).  *@out is the first process made (the root, or the
 * stand-in of its session leader, which exits with the root's status):
 * rst_target_wait gives the root's status; *@here the root's PID here.
 * 0 or -errno, logged; on failure nothing of the tree is left.
 */
int rst_restore_tree(const char *path, const struct rst_target_opts *o, struct rst_target **out,
		     pid_t *here);

/*
 * tree_restore.c, a live migration's tree (the restore sink, sink_tree.c):
 * rst_tree_live_new: check @tr's sessions and groups and create every
 * process of it at once, forked in tree order with its pid (as a tree
 * image's restore does), stand-ins and zombies included, none laid out:
 * pre-copy then lays out and fills each (rst_tree_live_target: entry @i's
 * target, NULL for a zombie).  @tr must outlive @l.
 * rst_tree_live_resume: @state[i]/@len[i] is entry i's ProcessState (any
 * for a zombie): each made ready in tree order (fds shared with those
 * before it), then all run; on failure every process is killed, @why.
 * rst_tree_live_end: @keep (committed): the processes stay; else every one
 * is killed.  rst_tree_live_free: end (killing) unless ended, and free.
 */
struct rst_tree_live;
int rst_tree_live_new(const Haul__Img__Tree *tr, const struct rst_target_opts *o,
		      struct rst_tree_live **out);
struct rst_target *rst_tree_live_target(const struct rst_tree_live *l, size_t i);
int rst_tree_live_resume(struct rst_tree_live *l, const void *const *state, const size_t *len,
			 pid_t *here, char *why, size_t wl);
void rst_tree_live_end(struct rst_tree_live *l, bool keep);
void rst_tree_live_free(struct rst_tree_live *l);
/*
 * sink_tree.c, for sink.c: a session of a live tree migration.
 * rst_live_tree_open: the root's session (@info->tree: make every process
 * with @o) or another's (@info->tree_session: join the root's); *@idx its
 * tree entry.  rst_live_tree_target: entry @idx's stub (NULL once the tree
 * is resumed or ended).  rst_live_tree_state: its state (kept by the
 * session until its close).  rst_live_tree_restore: on the root's session
 * only, every process ready then all run; *@pid the root's here; -errno
 * with @msg.  rst_live_tree_close: the root's decides for all (@committed:
 * kept, else killed); another's detaches.
 */
struct ps_session_info;
struct rst_live_tree;
int rst_live_tree_open(const struct ps_session_info *info, const struct rst_target_opts *o,
		       struct rst_live_tree **out, size_t *idx);
struct rst_target *rst_live_tree_target(const struct rst_live_tree *lt, size_t idx);
void rst_live_tree_state(struct rst_live_tree *lt, size_t idx, const void *state, size_t len);
/* rst_state_check of entry @idx's state, its fds naming files of the states before it. */
int rst_live_tree_check_state(const struct rst_live_tree *lt, size_t idx, const void *blob,
			      size_t len, char *why, size_t wl);
int rst_live_tree_restore(struct rst_live_tree *lt, size_t idx, pid_t *pid, char *msg, size_t ml);
void rst_live_tree_close(struct rst_live_tree *lt, size_t idx, bool committed);
/* tree_img.c: @tr's own consistency (as tree.img is checked); the reason in @why. */
int rst_tree_check(const Haul__Img__Tree *tr, char *why, size_t wl);
/*
 * tree_restore.c: whether @tr's sessions and process groups can be built
 * again (stand-ins where a leader is gone); -EOPNOTSUPP, the reason in
 * @why, naming the pid and id.  The dump asks before it kills the source.
 */
int rst_tree_plan_check(const Haul__Img__Tree *tr, char *why, size_t wl);
/*
 * tree_ckpt.c: refuse, by name in @why, live processes of @t that share a
 * table clone() can share (kcmp) other than down parent links.  (Shared
 * memory is carried: shm_tree.c.)
 */
int rst_tree_check_sharing(struct rst_tree *t, char *why, size_t wl);

/*
 * target_resume.c: rst_target_resume in two steps, so that a tree runs only
 * once every process is ready.  rst_target_ready: apply @state, leave it
 * stopped with its final registers (a failure kills the stub, @why says
 * why).  rst_target_run: detach it (and tell M); *@pid its PID here.
 */
int rst_target_ready(struct rst_target *t, const void *state, size_t len, char *why, size_t wl);
int rst_target_run(struct rst_target *t, pid_t *pid, char *why, size_t wl);

/*
 * tree_share.c: a copy of fd @fd of restored tree process @pid in @t, at a
 * number >= @park (pidfd_open + pidfd_getfd injected in @t): *@out.
 */
int rst_share_getfd(struct rst_target *t, int park, pid_t pid, int fd, int *out);

#endif
