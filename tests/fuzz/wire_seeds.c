/*
 * wire_seeds.c - write a seed corpus of valid frames for wire_fuzz into the
 * directory given as argv[1]: hello, auth, layout, and page batches with
 * raw, LZ4 and zero ranges (one stream of several frames per file).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/wire.h"

static uint8_t buf[WIRE_HDR_LEN + 65536 + WIRE_MAX_PAYLOAD];

static void put(const char *dir, const char *name, const uint8_t *p, size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n) {
		perror(path);
		exit(1);
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	static uint8_t pages[16 * 4096];
	Haul__Wire__Hello hello = HAUL__WIRE__HELLO__INIT;
	Haul__Wire__Layout lm;
	Haul__Wire__Vma wv[2], *wp[2];
	struct haul_vma v[2] = {{.start = 0x10000, .end = 0x40000, .prot = 3},
				{.start = 0x80000, .end = 0x90000, .prot = 1, .path = "/x"}};
	struct haul_layout l = {v, 2};
	struct wire_pages_enc e;
	Haul__Wire__Pages pm;
	uint8_t nonce[32] = {1};
	size_t off = 0;
	ssize_t n;

	if (argc != 2)
		return 2;
	hello.version = 1;
	hello.nonce.data = nonce;
	hello.nonce.len = 32;
	n = wire_frame_build(buf, sizeof(buf), WIRE_HELLO, 0, 0, &hello.base, NULL, 0);
	put(argv[1], "hello", buf, (size_t)n);

	wire_layout_to_msg(&l, wv, wp, &lm);
	n = wire_frame_build(buf, sizeof(buf), WIRE_LAYOUT, 0, 0, &lm.base, NULL, 0);
	off = (size_t)n;
	for (int i = 0; i < 16; i++) {
		if (i % 4 == 0)
			continue; /* zero page */
		memset(pages + i * 4096, i % 3 ? 'a' + i : 0, 4096);
		for (int j = 0; j < 4096 && i % 3 == 0; j++)
			pages[i * 4096 + j] = (uint8_t)(j * 7 + i);
	}
	for (int mode = WIRE_COMPRESS_AUTO; mode <= WIRE_COMPRESS_NONE; mode++) {
		if (wire_pages_enc_init(&e, 32, (enum wire_compress)mode))
			return 1;
		wire_pages_enc_add(&e, 0x10000, pages, 16);
		wire_pages_enc_msg(&e, &pm);
		n = wire_frame_build(buf + off, sizeof(buf) - off, WIRE_PAGES, 0, 1, &pm.base,
				     e.payload, (uint32_t)e.len);
		if (n < 0)
			return 1;
		char name[32];
		snprintf(name, sizeof(name), "layout-pages-%d", mode);
		put(argv[1], name, buf, off + (size_t)n);
		wire_pages_enc_release(&e);
	}
	return 0;
}
