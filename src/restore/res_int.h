/*
 * res_int.h - private to src/restore: the per-process resources that are
 * not fds, behind one ops table (the fd kinds have theirs in fd_int.h).
 *
 * Each resource is one file exporting one struct rst_res_ops: process
 * attributes (procattr.c), cgroups (cgplace.c), the VMA refusals
 * (vmcheck.c), POSIX timers (res_timers.c), seccomp (res_seccomp.c),
 * scheduling policies (res_sched.c).
 * res_kinds.c lists them in one table and walks it; precheck.c, seize.c,
 * dump.c, fd_validate.c and target_resume.c call the walks at fixed points
 * of their sequence.  A new resource is one new file, one line in the
 * table, its ProcessState fields and its tests.
 */
#ifndef HAUL_RESTORE_RES_INT_H
#define HAUL_RESTORE_RES_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "image.pb-c.h"

struct rst_seized;
struct rst_target;

/* Where in the resume a resource's restore hook runs. */
enum rst_res_phase {
	RST_RES_TASK,  /* after the task's own state (mm map, name, rlimits), before signals */
	RST_RES_CREDS, /* after threads, before credentials: the stub's privileges still hold */
	RST_RES_LAST,  /* after threads, credentials, no_new_privs: the last injected calls */
	RST_RES_VMAS,  /* after the layout and shared memory, before memory hooks, mlock, seals */
};

/*
 * One per-process resource.  Every hook may be NULL (nothing to do).
 *  precheck:        from /proc only, the process running (@tracer 0) or
 *                   stopped by this dump (@tracer us); 0 or -EOPNOTSUPP
 *                   with @why naming the resource and what to do.
 *  precheck_seized: at the precheck, stopped briefly: what only injected
 *                   calls read (@scratch mapped in s->thr[0]).
 *  dump:            fill the resource's ProcessState fields of @ps (the
 *                   threads are dumped already); what it allocates it
 *                   keeps in *@priv, freed by release(*@priv).  0,
 *                   -EOPNOTSUPP with @why, or -errno.
 *  validate:        at load, before anything is restored: its fields of
 *                   @ps are sane; 0 or -EBADMSG with @why.
 *  restore:         injected calls in the stub, in phase @phase.
 *  apply:           from outside, after the registers are loaded.
 *  in_use:          whether @pid has any of it (the capability check).
 * A resource whose image fields an older restorer would ignore names its
 * capability @cap and @version (fd_caps.c): a target that does not
 * announce it is refused before the freeze when in_use says so.
 */
struct rst_res_ops {
	const char *name;
	const char *cap;  /* capability name ("RES_POSIX_TIMERS"), NULL: none */
	uint32_t version; /* of its ProcessState fields */
	enum rst_res_phase phase;
	bool (*in_use)(pid_t pid);
	int (*precheck)(pid_t pid, pid_t tracer, char *why, size_t wl);
	int (*precheck_seized)(struct rst_seized *s, uint64_t scratch, char *why, size_t wl);
	int (*dump)(struct rst_seized *s, uint64_t scratch, Haul__Img__ProcessState *ps,
		    void **priv, char *why, size_t wl);
	void (*release)(void *priv);
	int (*validate)(const Haul__Img__ProcessState *ps, char *why, size_t wl);
	int (*restore)(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
		       size_t wl);
	int (*apply)(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why, size_t wl);
};

extern const struct rst_res_ops rst_res_attrs;	   /* procattr.c */
extern const struct rst_res_ops rst_res_cgroups;   /* cgplace.c */
extern const struct rst_res_ops rst_res_vmas;	   /* vmcheck.c */
extern const struct rst_res_ops rst_res_timers;	   /* res_timers.c */
extern const struct rst_res_ops rst_res_seccomp;   /* res_seccomp.c */
extern const struct rst_res_ops rst_res_apparmor;  /* res_apparmor.c */
extern const struct rst_res_ops rst_res_procfs;	   /* fd_procfs.c */
extern const struct rst_res_ops rst_res_vma_ghost; /* vma_ghost.c */
extern const struct rst_res_ops rst_res_sched;	   /* res_sched.c */

/* res_kinds.c: every resource, in the order their hooks run; NULL-terminated. */
extern const struct rst_res_ops *const rst_res_kinds[];
#define RST_RES_MAX 16

/*
 * The walks, each stopping at the first failure (0, or the hook's error
 * with @why).  rst_res_dump keeps each resource's allocations in @priv
 * (RST_RES_MAX slots, zeroed by the caller), freed by rst_res_release.
 * rst_res_restore runs the restore hooks of @phase.
 */
int rst_res_precheck(pid_t pid, pid_t tracer, char *why, size_t wl);
int rst_res_precheck_seized(struct rst_seized *s, uint64_t scratch, char *why, size_t wl);
int rst_res_dump(struct rst_seized *s, uint64_t scratch, Haul__Img__ProcessState *ps, void **priv,
		 char *why, size_t wl);
void rst_res_release(void **priv);
int rst_res_validate(const Haul__Img__ProcessState *ps, char *why, size_t wl);
/* rst_res_validate of a packed ProcessState; -EBADMSG when it does not unpack. */
int rst_res_validate_blob(const void *blob, size_t len, char *why, size_t wl);
int rst_res_restore(struct rst_target *t, const Haul__Img__ProcessState *ps,
		    enum rst_res_phase phase, char *why, size_t wl);
int rst_res_apply(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why, size_t wl);

/* res_seccomp.c: the seccomp mode of task @tid (status "Seccomp:"): 0, 1 strict, 2 filter; -errno. */
int rst_seccomp_mode(pid_t tid);

/*
 * res_apparmor.c: the AppArmor label of thread @tid of @pid as the kernel
 * shows it ("haultest (enforce)", "unconfined") into @buf: 0, -ENOENT when
 * AppArmor is off here, or -errno.  rst_apparmor_carries: whether
 * @attr_current (its attr/current, newline stripped) is that label, which
 * res_apparmor carries (so the attribute audit leaves it to it).
 */
int rst_apparmor_raw(pid_t pid, pid_t tid, char *buf, size_t len);
bool rst_apparmor_carries(pid_t pid, pid_t tid, const char *attr_current);

#endif
