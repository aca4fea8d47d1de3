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
