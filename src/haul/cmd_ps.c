/* cmd_ps.c - `haul ps`: placeholder until its owner lands it. */
#define LOG_PREFIX "ps: "
#include <errno.h>

#include "common/log.h"
#include "haul/haul.h"

int haul_cmd_ps(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	pr_err("'haul ps' is not available in this build");
	return 2;
}
