/*
 * msg_seeds.c - write a seed corpus for msg_fuzz into the directory given as
 * argv[1]: whole sessions after authentication in msg_fuzz's input format
 * (kind byte, message and payload lengths, bytes): a STORE session with
 * layout, raw/zero/LZ4 pages, state, commit and a page request; a lazy LIVE
 * session with stale ranges and a restore; a FETCH session; a two-stream
 * join; and the LAYOUT whose FILE VMA has no path (issue 18).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/wire.h"

/* Index of each frame type in msg_fuzz.c's kinds[]. */
enum {
	K_OPEN,
	K_JOIN,
	K_LAYOUT,
	K_ROUND_BEGIN,
	K_PAGES,
	K_ROUND_END,
	K_STATE,
	K_RESTORE,
	K_COMMIT,
	K_PAGE_REQ,
	K_PAGE_REPLY,
	K_ERROR,
};

static uint8_t out[1 << 20];
static size_t used;

static void add(int kind, const ProtobufCMessage *m, const void *payload, size_t plen)
{
	size_t mlen = m ? protobuf_c_message_get_packed_size(m) : 0;

	if (used + 5 + mlen + plen > sizeof(out) || mlen > 65535 || plen > 65535)
		exit(1);
	out[used++] = (uint8_t)kind;
	out[used++] = (uint8_t)mlen;
	out[used++] = (uint8_t)(mlen >> 8);
	out[used++] = (uint8_t)plen;
	out[used++] = (uint8_t)(plen >> 8);
	if (m)
		protobuf_c_message_pack(m, out + used);
	used += mlen;
	memcpy(out + used, payload, plen);
	used += plen;
}

static void put(const char *dir, const char *name)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(out, 1, used, f) != used) {
		perror(path);
		exit(1);
	}
	fclose(f);
	used = 0;
}

static void open_session(int kind, int32_t pid, uint32_t nstreams, bool lazy)
{
	Haul__Wire__SessionOpen o = HAUL__WIRE__SESSION_OPEN__INIT;

	o.session_id = (uint64_t)pid * 7919;
	o.kind = kind;
	o.pid = pid;
	o.comm = "seed";
	o.nstreams = nstreams;
	o.has_lazy = lazy;
	o.lazy = lazy;
	add(K_OPEN, &o.base, NULL, 0);
}

static void layout(bool pathless)
{
	struct haul_vma v[2] = {{.start = 0x10000, .end = 0x50000, .prot = 3, .flags = 2},
				{.start = 0x80000,
				 .end = 0x90000,
				 .prot = 1,
				 .flags = 4,
				 .path = pathless ? NULL : "/etc/hostname"}};
	struct haul_layout l = {v, 2};
	Haul__Wire__Vma wv[2], *wp[2];
	Haul__Wire__Layout lm;

	wire_layout_to_msg(&l, wv, wp, &lm);
	add(K_LAYOUT, &lm.base, NULL, 0);
}

static void round_of_pages(uint64_t round)
{
	static uint8_t pages[8 * 4096];
	Haul__Wire__RoundBegin rb = HAUL__WIRE__ROUND_BEGIN__INIT;
	Haul__Wire__RoundEnd re = HAUL__WIRE__ROUND_END__INIT;
	struct wire_pages_enc e;
	Haul__Wire__Pages pm;

	rb.round = round;
	add(K_ROUND_BEGIN, &rb.base, NULL, 0);
	for (int i = 0; i < 8; i++)
		memset(pages + i * 4096, i % 3 ? 'a' + i : 0, 4096);
	for (int j = 0; j < 4096; j++)
		pages[3 * 4096 + j] = (uint8_t)(j * 7);
	if (wire_pages_enc_init(&e, 16, WIRE_COMPRESS_AUTO))
		exit(1);
	wire_pages_enc_add(&e, 0x10000, pages, 8);
	wire_pages_enc_msg(&e, &pm);
	add(K_PAGES, &pm.base, e.payload, e.len);
	wire_pages_enc_release(&e);
	re.round = round;
	re.has_pages = true;
	re.pages = 8;
	add(K_ROUND_END, &re.base, NULL, 0);
}

static void page_req(uint64_t addr, uint32_t npages)
{
	Haul__Wire__PageReq q = HAUL__WIRE__PAGE_REQ__INIT;

	q.req_id = 1;
	q.addr = addr;
	q.npages = npages;
	add(K_PAGE_REQ, &q.base, NULL, 0);
}

int main(int argc, char **argv)
{
	Haul__Wire__State st = HAUL__WIRE__STATE__INIT;
	Haul__Wire__Commit cm = HAUL__WIRE__COMMIT__INIT;
	Haul__Wire__Restore rs = HAUL__WIRE__RESTORE__INIT;
	Haul__Wire__SessionJoin sj = HAUL__WIRE__SESSION_JOIN__INIT;
	Haul__Wire__Error er = HAUL__WIRE__ERROR__INIT;
	uint64_t stale[2] = {0x20000, 2};

	if (argc != 2)
		return 2;
	open_session(HAUL__WIRE__SESSION_KIND__STORE, 4242, 1, false);
	layout(false);
	round_of_pages(1);
	st.has_len = true;
	st.len = 5;
	add(K_STATE, &st.base, "state", 5);
	add(K_COMMIT, &cm.base, NULL, 0);
	page_req(0x10000, 8);
	put(argv[1], "store-session");

	open_session(HAUL__WIRE__SESSION_KIND__LIVE, 4243, 1, true);
	layout(false);
	round_of_pages(1);
	st.n_stale = 2;
	st.stale = stale;
	add(K_STATE, &st.base, "state", 5);
	add(K_RESTORE, &rs.base, NULL, 0);
	add(K_COMMIT, &cm.base, NULL, 0);
	put(argv[1], "live-lazy-session");

	open_session(HAUL__WIRE__SESSION_KIND__FETCH, 4242, 1, false);
	page_req(0x10000, 4);
	page_req(0x7ffffffff000ull, 1);
	put(argv[1], "fetch-session");

	open_session(HAUL__WIRE__SESSION_KIND__STORE, 4244, 2, false);
	sj.session_id = 4244ull * 7919;
	sj.stream = 1;
	add(K_JOIN, &sj.base, NULL, 0);
	put(argv[1], "join");

	open_session(HAUL__WIRE__SESSION_KIND__LIVE, 4245, 1, false);
	layout(true);
	put(argv[1], "file-vma-without-path");

	open_session(HAUL__WIRE__SESSION_KIND__STORE, 4246, 1, false);
	er.err = 5;
	er.reason = "seed";
	add(K_ERROR, &er.base, NULL, 0);
	put(argv[1], "error");
	return 0;
}
