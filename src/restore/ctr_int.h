/*
 * ctr_int.h - what the container files of the restorer (ns_ctr.c,
 * pidns_ctr.c, joinns_ctr.c) share and nothing outside src/restore/ uses:
 * the walk over the processes of a container's namespaces, and whether the
 * engine names one of them as its own (ctr_members.c).
 */
#ifndef HAUL_RESTORE_CTR_INT_H
#define HAUL_RESTORE_CTR_INT_H

#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Whether @p is in namespace @ns ("pid", "ipc"...): its /proc/PID/ns/@ns stat(2)s as @want. */
bool rst_ctr_in_ns(pid_t p, const char *ns, const struct stat *want);

/*
 * Call @fn(p, @arg) for each process p of /proc (@pid itself included)
 * that is in every namespace of @pid named in @ns (names as in
 * /proc/PID/ns, NULL-ended, at most RST_CTR_WALK_NS), until one returns
 * non-zero: that value.  0 when none did; -errno when @pid's namespaces or
 * /proc cannot be read.
 */
#define RST_CTR_WALK_NS 4
int rst_ctr_walk_ns(pid_t pid, const char *const *ns, int (*fn)(pid_t p, void *arg), void *arg);

/*
 * A process in every namespace of @pid named in @ns (as for
 * rst_ctr_walk_ns) that does not descend from @pid (a `runc exec`
 * process) and is neither gone nor a zombie: its pid; 0 when there is
 * none; -errno when the namespaces or /proc cannot be read.
 */
pid_t rst_ctr_stray_member(pid_t pid, const char *const *ns);

/*
 * Whether @ext (the engine's externals, as for rst_ctr_dump_check) names
 * @pid's namespace @ns ("net", "pid") as the engine's: key "NS[INODE]".
 */
struct rst_ctr_ext;
bool rst_ctr_ns_external(pid_t pid, const char *ns, const struct rst_ctr_ext *ext, size_t next);

#endif
