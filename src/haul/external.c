/*
 * external.c - the --external-fd FD=SPEC and --external KIND=SPEC options
 * of haul checkpoint, migrate, restore and pageserver: what an fd whose
 * other end stays behind becomes on the target (src/restore/fd_extrules.c
 * keeps the rules; the source records its choice in the image, a rule of
 * the restoring haul overrides it).
 */
#include <errno.h>

#include "haul/haul_int.h"
#include "restore/restore.h"

const char haul_external_fd_help[] =
	"what fd FD becomes on the target when its other end\nstays behind (a pipe to a process "
	"that does\nnot move, a unix socket, a terminal): null,\nfile:/PATH, fd:N (of the "
	"restoring haul),\nreconnect, journal, tty, device (repeatable)";
const char haul_external_kind_help[] =
	"the same for every such fd of KIND: pipe, fifo, unix,\ntty (defaults: unix=reconnect, "
	"journal for the\njournald socket; tty=device for a virtual\nconsole or /dev/console, else tty; pipes and fifos: none)";

int haul_external_apply(struct haul_opt_list *byfd, struct haul_opt_list *bykind)
{
	int ret = 0;

	for (size_t i = 0; !ret && i < byfd->n; i++)
		ret = rst_external_add(byfd->v[i], true);
	for (size_t i = 0; !ret && i < bykind->n; i++)
		ret = rst_external_add(bykind->v[i], false);
	haul_opt_list_release(byfd);
	haul_opt_list_release(bykind);
	return ret ? -EINVAL : 0;
}

int haul_opts_parse_external(const struct haul_cmd_spec *spec, int argc, char **argv,
			     struct haul_opt_list *byfd, struct haul_opt_list *bykind)
{
	int arg = haul_opts_parse(spec, argc, argv);

	if (arg < 0)
		return arg;
	if (haul_external_apply(byfd, bykind))
		return -EINVAL;
	return arg;
}
