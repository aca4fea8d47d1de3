/* cmd_restore.c - `haul restore`: placeholder until its owner lands it. */
#define LOG_PREFIX "restore: "
#include <errno.h>

#include "common/log.h"
#include "haul/haul.h"

int haul_cmd_restore(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	pr_err("'haul restore' is not available in this build");
	return 2;
}
