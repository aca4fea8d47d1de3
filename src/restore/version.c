/*
 * version.c - the process image format version, for `haul version`.
 *
 * RST_IMAGE_VERSION lives in the private restore_int.h (the dump writes it,
 * the restorer checks it); this file is the one public way to read it, so
 * that nothing outside src/restore includes the private header.
 */
#include "restore/restore.h"
#include "restore/restore_int.h"

int rst_image_version(void)
{
	return RST_IMAGE_VERSION;
}
