/*
 * fchan.c - the file channel of a container migration (in the spirit of
 * p.haul's fs_haul): the container's bundle and rootfs, and the images
 * runc's restore reads besides the pages, sent from the source to the
 * target's `haul pageserver --containers` over a TCP connection of its
 * own.  This file is the frame codec and the source's end; fchan_tree.c
 * walks a tree, fchan_recv.c is the target's end.
 *
 * The connection: the server sends a 32-byte nonce SN; the client sends a
 * 32-byte nonce CN and HMAC-SHA256(key, "haul-fchan-client-v1" || CN ||
 * SN); the server checks it (a mismatch closes the connection) and answers
 * HMAC-SHA256(key, "haul-fchan-server-v1" || CN || SN), which the client
 * checks: both hold the page server's key.  Then records, each a 40-byte
 * little-endian header and two bodies:
 *   0  u32 magic "HFC1"      4 u8 type   5 u8 area (0 bundle, 1 images)
 *   6  u16 reserved (0)      8 u32 mode  12 u32 uid   16 u32 gid
 *   20 u32 path_len (<= 4096)            24 u64 data_len
 *   32 i64 mtime (ns since the epoch)
 * then path_len bytes of path (relative, no "..", no NUL) and data_len
 * bytes of data.  BEGIN and SYNC are answered: a 4-byte LE status (0 or
 * -errno), a 4-byte LE length and that many bytes of message (<= 1024).
 * The stream is authenticated at the start only and not encrypted: run it
 * on the network the page server's own unencrypted sessions would use.
 */
#define LOG_PREFIX "fchan: "
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "haul/ctr_int.h"

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return get32(p) | (uint64_t)get32(p + 4) << 32;
}

void fchan_hdr_encode(const struct fchan_hdr *h, uint8_t out[FCHAN_HDR_LEN])
{
	put32(out, FCHAN_MAGIC);
	out[4] = h->type;
	out[5] = h->area;
	out[6] = out[7] = 0;
	put32(out + 8, h->mode);
	put32(out + 12, h->uid);
	put32(out + 16, h->gid);
	put32(out + 20, h->path_len);
	put64(out + 24, h->data_len);
	put64(out + 32, (uint64_t)h->mtime_ns);
}

int fchan_hdr_decode(const uint8_t in[FCHAN_HDR_LEN], struct fchan_hdr *h)
{
	h->magic = get32(in);
	h->type = in[4];
	h->area = in[5];
	h->reserved = (uint16_t)(in[6] | in[7] << 8);
	h->mode = get32(in + 8);
	h->uid = get32(in + 12);
	h->gid = get32(in + 16);
	h->path_len = get32(in + 20);
	h->data_len = get64(in + 24);
	h->mtime_ns = (int64_t)get64(in + 32);
	if (h->magic != FCHAN_MAGIC || h->reserved || !h->type || h->type > FCHAN_TYPE_MAX ||
	    h->area > FCHAN_IMAGES)
		return -EBADMSG;
	if (h->path_len > FCHAN_MAX_PATH ||
	    (h->type != FCHAN_FILE && h->data_len > FCHAN_MAX_PATH + 8))
		return -EMSGSIZE;
	return 0;
}

void fchan_mac(const uint8_t key[WIRE_KEY_LEN], const char *ctx, const uint8_t cn[WIRE_NONCE_LEN],
	       const uint8_t sn[WIRE_NONCE_LEN], uint8_t mac[WIRE_MAC_LEN])
{
	crypto_auth_hmacsha256_state st;

	crypto_auth_hmacsha256_init(&st, key, WIRE_KEY_LEN);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)ctx, strlen(ctx));
	crypto_auth_hmacsha256_update(&st, cn, WIRE_NONCE_LEN);
	crypto_auth_hmacsha256_update(&st, sn, WIRE_NONCE_LEN);
	crypto_auth_hmacsha256_final(&st, mac);
}

int fchan_read_all(int fd, void *buf, size_t len, int ms)
{
	uint8_t *p = buf;

	while (len) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int r = poll(&pfd, 1, ms);
		ssize_t n;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int fchan_write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int dial(const char *to, int *out)
{
	char host[256];
	const char *colon = strrchr(to, ':');
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
	int fd = -1, ret;

	if (!colon || (size_t)(colon - to) >= sizeof(host))
		return -EINVAL;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - to), to);
	if (host[0] == '[') { /* [v6]:port */
		memmove(host, host + 1, strlen(host));
		host[strcspn(host, "]")] = '\0';
	}
	ret = getaddrinfo(host, colon + 1, &hints, &ai);
	if (ret)
		return -EHOSTUNREACH;
	ret = -ECONNREFUSED;
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		if (!connect(fd, a->ai_addr, a->ai_addrlen))
			break;
		ret = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0)
		return ret;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
	*out = fd;
	return 0;
}

/* The answer to BEGIN or SYNC: 0, or the target's -errno with its message logged. */
static int read_answer(struct fchan *c, const char *what)
{
	uint8_t a[8];
	char msg[1025];
	uint32_t len;
	int32_t st;
	int ret = fchan_read_all(c->fd, a, sizeof(a), c->timeout_ms);

	if (ret) {
		pr_err_r(ret, "no answer from the file channel's target to %s", what);
		return ret;
	}
	st = (int32_t)get32(a);
	len = get32(a + 4);
	if (len > 1024 || st > 0 || st < -4095) {
		pr_err("the file channel's target answered %s with garbage", what);
		return -EPROTO;
	}
	ret = fchan_read_all(c->fd, msg, len, c->timeout_ms);
	if (ret)
		return ret;
	msg[len] = '\0';
	if (st)
		pr_err("the target refused %s: %s", what, len ? msg : strerror(-st));
	return st;
}

static int send_rec(struct fchan *c, const struct fchan_hdr *h, const char *path, const void *data)
{
	uint8_t hdr[FCHAN_HDR_LEN];
	int ret;

	fchan_hdr_encode(h, hdr);
	ret = fchan_write_all(c->fd, hdr, sizeof(hdr));
	if (!ret)
		ret = fchan_write_all(c->fd, path, h->path_len);
	if (!ret && data)
		ret = fchan_write_all(c->fd, data, h->data_len);
	return ret;
}

int fchan_open(struct fchan *c, const char *to, const uint8_t key[WIRE_KEY_LEN], int timeout_ms,
	       uint64_t session, const char *id, const char *bundle)
{
	uint8_t sn[WIRE_NONCE_LEN], cn[WIRE_NONCE_LEN], mac[WIRE_MAC_LEN], peer[WIRE_MAC_LEN];
	uint8_t data[8 + PATH_MAX];
	size_t blen = strlen(bundle);
	int ret;

	memset(c, 0, sizeof(*c));
	c->timeout_ms = timeout_ms;
	ret = dial(to, &c->fd);
	if (ret) {
		c->fd = -1;
		pr_err_r(ret,
			 "cannot reach the file channel at %s (the target's 'haul pageserver "
			 "--containers DIR' listens on its port + 1, or give --files-to)",
			 to);
		return ret;
	}
	ret = fchan_read_all(c->fd, sn, sizeof(sn), timeout_ms);
	randombytes_buf(cn, sizeof(cn));
	fchan_mac(key, FCHAN_CTX_C, cn, sn, mac);
	if (!ret)
		ret = fchan_write_all(c->fd, cn, sizeof(cn));
	if (!ret)
		ret = fchan_write_all(c->fd, mac, sizeof(mac));
	if (!ret)
		ret = fchan_read_all(c->fd, peer, sizeof(peer), timeout_ms);
	if (!ret) {
		fchan_mac(key, FCHAN_CTX_S, cn, sn, mac);
		if (sodium_memcmp(mac, peer, sizeof(mac))) {
			pr_err("the file channel at %s does not hold our key; start its page server "
			       "with the same --key",
			       to);
			ret = -EACCES;
		}
	} else {
		pr_err_r(ret, "the file channel at %s closed during authentication (another key?)",
			 to);
	}
	if (!ret && blen >= PATH_MAX)
		ret = -ENAMETOOLONG;
	if (!ret) {
		put64(data, session);
		memcpy(data + 8, bundle, blen);
		ret = send_rec(c,
			       &(struct fchan_hdr){.type = FCHAN_BEGIN,
						   .path_len = (uint32_t)strlen(id),
						   .data_len = 8 + blen},
			       id, data);
	}
	if (!ret)
		ret = read_answer(c, "the container");
	if (ret)
		fchan_close(c);
	return ret;
}

void fchan_close(struct fchan *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

int fchan_send_cmd(struct fchan *c, enum fchan_type type, const char *name)
{
	int ret = send_rec(c, &(struct fchan_hdr){.type = type, .path_len = (uint32_t)strlen(name)},
			   name, NULL);

	if (ret) {
		pr_err_r(ret, "the file channel broke");
		return ret;
	}
	return type == FCHAN_SYNC ? read_answer(c, "the files") : 0;
}

int fchan_send_file(struct fchan *c, enum fchan_area area, const char *path, const char *name)
{
	struct fchan_hdr h = {.type = FCHAN_FILE, .area = area};
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	uint8_t *buf = NULL;
	struct stat st;
	uint64_t left;
	int ret = 0;

	if (fd < 0 || fstat(fd, &st) < 0) {
		ret = -errno;
		if (ret != -ENOENT) /* gone since the scan: the caller decides */
			pr_err_r(ret, "cannot read '%s' for the file channel", path);
		goto out;
	}
	h.mode = st.st_mode & 07777;
	h.uid = st.st_uid;
	h.gid = st.st_gid;
	h.path_len = (uint32_t)strlen(name);
	h.data_len = (uint64_t)st.st_size;
	h.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	ret = send_rec(c, &h, name, NULL);
	buf = malloc(FCHAN_CHUNK);
	if (!buf && !ret)
		ret = -ENOMEM;
	/* exactly the size announced: a file that shrank meanwhile is padded, and sent again */
	for (left = h.data_len; !ret && left;) {
		size_t want = left < FCHAN_CHUNK ? (size_t)left : FCHAN_CHUNK;
		ssize_t r = read(fd, buf, want);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			break;
		}
		if (r == 0) {
			memset(buf, 0, want);
			r = (ssize_t)want;
		}
		ret = fchan_write_all(c->fd, buf, (size_t)r);
		left -= (uint64_t)r;
	}
	if (ret)
		pr_err_r(ret, "cannot send '%s' over the file channel", path);
	c->bytes += h.data_len;
	c->files++;
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return ret;
}

int fchan_send_rec(struct fchan *c, const struct fchan_hdr *h, const char *name, const void *data)
{
	int ret = send_rec(c, h, name, data);

	if (ret)
		pr_err_r(ret, "the file channel broke sending '%s'", name);
	return ret;
}
