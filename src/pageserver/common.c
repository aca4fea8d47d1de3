/*
 * common.c - what the page server and its client share: the key file and
 * addresses.
 *
 * The key file holds the shared secret (at least 32 bytes, any content);
 * both sides hash it down with BLAKE2b (crypto_generichash) so that a
 * passphrase-like file and a raw 32-byte key work alike.  The hash is the
 * HMAC key of the challenge-response and the root of the session key.
 *
 * The key is root-equivalent on the target (a holder restores any process
 * with any uid and memory), so a key file that group or others may read or
 * write is refused, as ssh refuses such a private key, and so is a key with
 * almost no entropy by byte frequency (a file of zeros, one repeated byte,
 * "abab..."): 32 random bytes carry ~150 bits by that measure, a short
 * English passphrase of 32 letters ~130, a repeated pattern a few.
 *
 * Also the post-copy report's conversion to and from its message, which the
 * server (target) writes and the client (source) reads, and the page reply
 * decoder's callback both sides use to copy a reply into the requester's
 * buffer.
 */
#define LOG_PREFIX "ps: "
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "pageserver/pageserver.h"
#include "pageserver/ps_int.h"

/* A key file larger than this is not a key file. */
#define PS_KEY_FILE_MAX 65536
/* Fewest bits a key file must carry by byte frequency (see above). */
#define PS_KEY_MIN_BITS 96

/* Shannon entropy of the bytes' frequencies times their count: bits, an upper estimate. */
static double key_bits(const uint8_t *p, size_t n)
{
	size_t count[256] = {0};
	double bits = 0;

	for (size_t i = 0; i < n; i++)
		count[p[i]]++;
	for (int b = 0; b < 256; b++)
		if (count[b])
			bits -= (double)count[b] * log2((double)count[b] / (double)n);
	return bits;
}

/* 0, or -EINVAL with the reason logged: too short, one repeated byte, too little entropy. */
static int key_check(const char *path, const uint8_t *p, size_t n)
{
	size_t same = 1;
	double bits;

	if (n < PS_KEY_LEN) {
		pr_err("key file '%s' holds %zu bytes; it needs at least %d random bytes "
		       "(make one: head -c 32 /dev/urandom > %s; chmod 600 %s)",
		       path, n, PS_KEY_LEN, path, path);
		return -EINVAL;
	}
	while (same < n && p[same] == p[0])
		same++;
	if (same == n) {
		pr_err("key file '%s' is one byte (0x%02x) repeated: no secret at all; make a "
		       "random one: head -c 32 /dev/urandom > %s; chmod 600 %s",
		       path, p[0], path, path);
		return -EINVAL;
	}
	bits = key_bits(p, n);
	if (bits < PS_KEY_MIN_BITS) {
		pr_err("key file '%s' carries about %.0f bits of entropy (at least %d needed); "
		       "make a random one: head -c 32 /dev/urandom > %s; chmod 600 %s",
		       path, bits, PS_KEY_MIN_BITS, path, path);
		return -EINVAL;
	}
	return 0;
}

int ps_key_load(const char *path, uint8_t key[PS_KEY_LEN])
{
	uint8_t buf[PS_KEY_FILE_MAX];
	struct stat st;
	ssize_t n;
	int fd, ret;

	if (sodium_init() < 0) {
		pr_err("cannot initialise libsodium");
		return -EIO;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		pr_err_r(ret,
			 "cannot open key file '%s' (make one with 'head -c 32 /dev/urandom > %s' "
			 "and copy it to the other host)",
			 path, path);
		return ret;
	}
	if (fstat(fd, &st)) {
		ret = -errno;
		close(fd);
		pr_err_r(ret, "cannot stat key file '%s'", path);
		return ret;
	}
	if (st.st_mode & 0077) {
		close(fd);
		pr_err("key file '%s' is accessible by group or others (mode %04o); the key is "
		       "root-equivalent on the target: chmod 600 %s",
		       path, (unsigned)(st.st_mode & 07777), path);
		return -EPERM;
	}
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0) {
		ret = -errno;
		pr_err_r(ret, "cannot read key file '%s'", path);
		return ret;
	}
	ret = key_check(path, buf, (size_t)n);
	if (ret) {
		sodium_memzero(buf, sizeof(buf));
		return ret;
	}
	crypto_generichash(key, PS_KEY_LEN, buf, (size_t)n, NULL, 0);
	sodium_memzero(buf, sizeof(buf));
	return 0;
}

int ps_addr_parse(const char *s, bool passive, struct sockaddr_storage *ss, socklen_t *len)
{
	struct addrinfo hints = {0}, *res = NULL;
	char host[256], *port;
	const char *colon = strrchr(s, ':');
	size_t hlen;
	int rc;

	if (!colon || !colon[1] || (size_t)(colon - s) >= sizeof(host))
		return -EINVAL;
	hlen = (size_t)(colon - s);
	memcpy(host, s, hlen);
	host[hlen] = 0;
	port = (char *)colon + 1;
	if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
		memmove(host, host + 1, hlen - 2);
		host[hlen - 2] = 0;
	}
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc || !res)
		return rc == EAI_SERVICE ? -EINVAL : -EADDRNOTAVAIL;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

void ps_addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "(family %d)", sa->sa_family);
	}
}

/* Every field of struct ps_lazy_report, named as in the LazyReport message. */
#define PS_LAZY_REPORT_FIELDS(X)                                                                   \
	X(faults)                                                                                  \
	X(fault_pages)                                                                             \
	X(pushed_pages)                                                                            \
	X(zero_filled)                                                                             \
	X(present_pages)                                                                           \
	X(total_pages)                                                                             \
	X(eexist_pages)                                                                            \
	X(fetched_bytes)                                                                           \
	X(fault_p50_ns)                                                                            \
	X(fault_p99_ns)                                                                            \
	X(fault_max_ns)                                                                            \
	X(complete_ns)

void ps_lazy_report_to_msg(const struct ps_lazy_report *r, Haul__Wire__LazyReport *m)
{
	haul__wire__lazy_report__init(m);
#define TO_MSG(f)                                                                                  \
	m->has_##f = true;                                                                         \
	m->f = r->f;
	PS_LAZY_REPORT_FIELDS(TO_MSG)
#undef TO_MSG
	/* only when post-copy ended early: a report of every page arrived stays as it was */
	m->has_ended = r->ended != 0;
	m->ended = r->ended;
	m->has_exit_status = r->ended == PS_LAZY_EXITED;
	m->exit_status = r->exit_status;
}

void ps_lazy_report_from_msg(const Haul__Wire__LazyReport *m, struct ps_lazy_report *r)
{
	memset(r, 0, sizeof(*r));
#define FROM_MSG(f)                                                                                \
	if (m->has_##f)                                                                            \
		r->f = m->f;
	PS_LAZY_REPORT_FIELDS(FROM_MSG)
	FROM_MSG(ended)
	FROM_MSG(exit_status)
#undef FROM_MSG
}

int ps_fetch_put(void *arg, uint64_t addr, const void *data, uint32_t n)
{
	struct ps_fetch_ctx *f = arg;
	uint64_t end = f->addr + (uint64_t)f->npages * HAUL_PAGE_SIZE;

	if (addr < f->addr || addr + (uint64_t)n * HAUL_PAGE_SIZE > end)
		return -ERANGE;
	if (data)
		memcpy(f->buf + (addr - f->addr), data, (size_t)n * HAUL_PAGE_SIZE);
	else
		memset(f->buf + (addr - f->addr), 0, (size_t)n * HAUL_PAGE_SIZE);
	f->got += n;
	return 0;
}
