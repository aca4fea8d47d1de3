/*
 * th_proc.h - ready signals read from /proc, for tests that wait on another
 * process instead of sleeping: its command name after exec, a signal handler
 * installed (SigCgt), its scheduler state, what it sleeps in (wchan), a line
 * of its maps or its cgroups.  Each polls with a bounded deadline and returns 0 or
 * -ETIMEDOUT (-ESRCH once the process is gone); the caller asserts and
 * names what it waited for.
 */
#ifndef HAUL_TESTS_TH_PROC_H
#define HAUL_TESTS_TH_PROC_H

#include <stdbool.h>
#include <sys/types.h>

/* /proc/@pid/comm is @comm (it has exec'd the program). */
int th_wait_comm(pid_t pid, const char *comm, int timeout_ms);
/* @pid has exited: its /proc entry is gone, or it is a zombie (not our child: init reaps it). */
int th_wait_gone(pid_t pid, int timeout_ms);
/* SigCgt of @pid (its main thread) has @sig: the handler is installed. */
int th_wait_sigcgt(pid_t pid, int sig, int timeout_ms);
/*
 * @pid (or thread @tid of it, 0: the main thread) sleeps (state S or D)
 * and its wchan contains @wchan (NULL: any), e.g. "pipe_read",
 * "handle_userfault", "do_sys_poll".
 */
int th_wait_sleeping(pid_t pid, pid_t tid, const char *wchan, int timeout_ms);
/*
 * A line of /proc/@pid/@file ("maps", "cgroup", "status"...) contains
 * @needle (or, with @gone, none does).
 */
int th_wait_proc_line(pid_t pid, const char *file, const char *needle, bool gone, int timeout_ms);

#endif
