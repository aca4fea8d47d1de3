/*
 * haul.h - the haul module: the CLI's subcommands and the orchestration
 * (migrate, freezer, workloads).  Each subcommand is `int haul_cmd_X(argc, argv)`
 * with argv[0] the subcommand name; it returns the process exit status.
 */
#ifndef HAUL_HAUL_H
#define HAUL_HAUL_H

#include <stdbool.h>
#include <sys/types.h>

struct rst_ckpt_stats;

int haul_cmd_pageserver(int argc, char **argv);
int haul_cmd_check(int argc, char **argv);
int haul_cmd_track(int argc, char **argv);
int haul_cmd_checkpoint(int argc, char **argv);
int haul_cmd_restore(int argc, char **argv);
int haul_cmd_migrate(int argc, char **argv);
int haul_cmd_run(int argc, char **argv);
int haul_cmd_ps(int argc, char **argv);
int haul_cmd_version(int argc, char **argv);
/* haul run as `criu` (criu_main.c): the criu-compatible entry point; exit status. */
int haul_criu_main(int argc, char **argv);

/*
 * Checkpoint @pid into the images directory @dir (restore.h, rst_ckpt_*):
 * without @leave_running the process is killed once its image is durable;
 * with it, its memory is copied in tracker rounds while it runs and it
 * resumes.  @fault: HAUL_FAULT or NULL.  A refusal is logged naming the
 * resource; the process runs on.  0 or -errno (-EOPNOTSUPP: refused).
 */
int haul_checkpoint_images(pid_t pid, const char *dir, bool leave_running, const char *fault,
			   struct rst_ckpt_stats *st);

#endif
