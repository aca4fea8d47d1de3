/* cmd_checkpoint.c - `haul checkpoint`: placeholder until its owner lands it. */
#define LOG_PREFIX "checkpoint: "
#include <errno.h>

#include "common/log.h"
#include "haul/haul.h"

int haul_cmd_checkpoint(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	pr_err("'haul checkpoint' is not available in this build");
	return 2;
}
