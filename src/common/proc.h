/*
 * proc.h - small reads of another process's kernel state: short /proc and
 * cgroup files, the fields of /proc/PID/stat, and the struct that
 * sched_getattr(2)/sched_setattr(2) take.  Every module reads these the same
 * way, so the parsing lives here once.
 */
#ifndef HAUL_COMMON_PROC_H
#define HAUL_COMMON_PROC_H

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Read at most @len - 1 bytes of the small file @path (one read: /proc and
 * cgroup files hand their text over whole) into @buf and NUL-terminate it.
 * Returns the bytes read (0 for an empty file) or -errno of open/read.
 */
int haul_read_file(const char *path, char *buf, size_t len);

/*
 * Field @field of /proc/@pid/stat, numbered as proc(5) does (3 is the state,
 * 22 the start time).  The comm (field 2) may hold spaces and ')', so the
 * fields are counted after the last ')'.  @state (if not NULL) gets the state
 * letter, @val (if not NULL) the number in @field.  Returns 0, -errno of
 * open/read, -ESRCH when the file reads empty (the task is gone), or -EINVAL
 * when the text does not parse.
 */
int haul_proc_stat_field(pid_t pid, int field, char *state, unsigned long long *val);

/*
 * opendir(3) of /proc/@pid/@sub ("task", "fd"): the stream (closedir it),
 * or NULL with errno set.
 */
DIR *haul_proc_opendir(pid_t pid, const char *sub);

/*
 * The wait status the kernel keeps for the reaped process of @pidfd
 * (PIDFD_GET_INFO with PIDFD_INFO_EXIT, Linux 6.15+) in *@wstatus: 0, or -1
 * when it is not reaped yet or the kernel cannot say.
 */
int haul_pidfd_exit_status(int pidfd, int *wstatus);

/* The start time (clock ticks after boot) of @pid: with the pid, one process. */
int haul_proc_starttime(pid_t pid, unsigned long long *start);
/* The threads of @pid (/proc/PID/task) in *@out (free it), *@n of them.  0, -ESRCH or -errno. */
int haul_proc_tids(pid_t pid, pid_t **out, size_t *n);

/* struct sched_attr of sched_setattr(2), which glibc does not declare. */
struct haul_sched_attr {
	uint32_t size, policy;
	uint64_t flags;
	int32_t nice;
	uint32_t priority;
	uint64_t runtime, deadline, period;
	uint32_t util_min, util_max;
};

#endif
