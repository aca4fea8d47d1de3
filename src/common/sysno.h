/*
 * sysno.h - syscall numbers the C library's headers may lack.
 *
 * glibc's <sys/syscall.h> names a syscall only from the release that knew
 * it; a build host with an older one may still run a kernel that has it.
 * The numbers are those of the unified syscall table (x86_64, arm64 and the
 * other architectures haul builds for); the probes in probe.c say at run
 * time whether the kernel has the call.  One place, so no file defines its own.
 */
#ifndef HAUL_COMMON_SYSNO_H
#define HAUL_COMMON_SYSNO_H

#include <sys/syscall.h>

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

#endif
