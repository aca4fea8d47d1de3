/*
 * haul.h - the haul module: the CLI's subcommands and the orchestration
 * (migrate, freezer, workloads).  Each subcommand is `int haul_cmd_X(argc, argv)`
 * with argv[0] the subcommand name; it returns the process exit status.
 */
#ifndef HAUL_HAUL_H
#define HAUL_HAUL_H

int haul_cmd_pageserver(int argc, char **argv);
int haul_cmd_check(int argc, char **argv);
int haul_cmd_track(int argc, char **argv);
int haul_cmd_checkpoint(int argc, char **argv);
int haul_cmd_restore(int argc, char **argv);
int haul_cmd_migrate(int argc, char **argv);
int haul_cmd_run(int argc, char **argv);
int haul_cmd_ps(int argc, char **argv);
int haul_cmd_version(int argc, char **argv);

#endif
