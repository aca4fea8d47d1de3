/*
 * netreplay.c - the TCP segments the network lock dropped, delivered again
 * once the process runs, so that its peers do not wait for their
 * retransmission timeout.
 *
 * Why: a peer's segment that the lock drops (a request sent during the
 * downtime, an ACK, a SYN) is sent again only on the peer's RTO: at least
 * 200 ms, and for a request alone in flight the tail loss probe waits as
 * long (2 * srtt + 200 ms).  Nothing the restored socket can send makes a
 * Linux peer retransmit one lost segment sooner: duplicate ACKs without
 * SACK blocks do not count on a SACK connection, and RACK needs a later
 * segment SACKed.  So the segments are not lost: a packet socket records
 * what arrives while the lock holds, and once the process runs they are
 * sent again, unchanged but for the TCP checksum, through a raw socket
 * (IP_HDRINCL): to the moving address, now the target's, after the commit;
 * to the process here after a rollback.  A duplicate of something that
 * got through is discarded by TCP (at worst it draws an ACK).
 *
 * Capture: AF_PACKET, SOCK_DGRAM (data starts at the IP header), opened
 * with protocol 0 and bound to ETH_P_ALL only once its classic BPF filter
 * is attached, so nothing outside the filter is ever queued.  The filter
 * keeps incoming (not PACKET_OUTGOING) IPv4/IPv6 TCP packets to a moving
 * address or to the local address (or, for a wildcard bind, the port) of
 * a locked TCP end; the replay then matches each packet against the lock's
 * ends exactly.  The socket's receive queue is the buffer (no thread): it
 * is opened before the lock is taken and read after the lift.  A packet
 * with IPv6 extension headers, an IP fragment, or one larger than the
 * interface's MTU (an unsegmented GSO packet) is not replayed: its sender
 * retransmits it as before.
 */
#define LOG_PREFIX "netlock: "
#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "haul/netlock.h"

#define REPLAY_SNAP   65535
#define REPLAY_RCVBUF (8 << 20) /* ~4000 small segments: far more than a downtime brings */
#define MAX_INSNS     4000	/* below BPF_MAXINSNS (4096) */

/* A program under construction. */
struct prog {
	struct sock_filter *f;
	size_t n, cap;
};

static int emit(struct prog *p, uint16_t code, uint8_t jt, uint8_t jf, uint32_t k)
{
	if (p->n == p->cap) {
		size_t nc = p->cap ? p->cap * 2 : 64;
		struct sock_filter *a = realloc(p->f, nc * sizeof(*a));

		if (!a)
			return -ENOMEM;
		p->f = a;
		p->cap = nc;
	}
	p->f[p->n++] = (struct sock_filter)BPF_JUMP(code, k, jt, jf);
	return 0;
}

/* Jump targets are patched at the end: a `ja` to ACCEPT or REJECT holds this mark in k. */
#define TO_ACCEPT 0xffffff01u
#define TO_REJECT 0xffffff02u

static int ja(struct prog *p, uint32_t to)
{
	return emit(p, BPF_JMP | BPF_JA, 0, 0, to);
}

/* if A == k: accept (a long jump, whatever the program's length) */
static int accept_if(struct prog *p, uint32_t k)
{
	int ret = emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 1, k);

	return ret ? ret : ja(p, TO_ACCEPT);
}

static uint32_t word(const uint8_t *a, int i)
{
	uint32_t w;

	memcpy(&w, a + 4 * i, 4);
	return ntohl(w);
}

/* The destinations of one family: addresses whole, and ports (wildcard binds). */
static int family_part(struct prog *p, int fam, const struct haul_net_tuple *t, size_t n,
		       const struct haul_net_addr *a, size_t na)
{
	static const uint8_t zero[16];
	int ret = 0;

	/* protocol TCP: IPv4 header byte 9, IPv6 next header (byte 6) */
	ret = emit(p, BPF_LD | BPF_B | BPF_ABS, 0, 0, fam == AF_INET ? 9 : 6);
	if (!ret)
		ret = emit(p, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, IPPROTO_TCP);
	if (!ret)
		ret = ja(p, TO_REJECT);
	for (size_t i = 0; !ret && i < na + n; i++) {
		const uint8_t *addr = i < na ? a[i].addr : t[i - na].laddr;

		if ((i < na ? a[i].family : t[i - na].family) != fam ||
		    (i >= na && t[i - na].proto != IPPROTO_TCP) || !memcmp(addr, zero, 16))
			continue;
		if (fam == AF_INET) {
			ret = emit(p, BPF_LD | BPF_W | BPF_ABS, 0, 0, 16);
			if (!ret)
				ret = accept_if(p, word(addr, 0));
			continue;
		}
		/* four words: on a mismatch skip to after this address's `ja` */
		for (int w = 0; !ret && w < 4; w++) {
			ret = emit(p, BPF_LD | BPF_W | BPF_ABS, 0, 0, 24 + 4 * w);
			if (!ret)
				ret = emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, (uint8_t)(7 - 2 * w),
					   word(addr, w));
		}
		if (!ret)
			ret = ja(p, TO_ACCEPT);
	}
	/* wildcard binds: the destination port (IPv4: after a header of IHL words) */
	for (size_t i = 0; !ret && i < n; i++) {
		if (t[i].family != fam || t[i].proto != IPPROTO_TCP || memcmp(t[i].laddr, zero, 16))
			continue;
		if (fam == AF_INET) {
			ret = emit(p, BPF_LDX | BPF_B | BPF_MSH, 0, 0, 0);
			if (!ret)
				ret = emit(p, BPF_LD | BPF_H | BPF_IND, 0, 0, 2);
		} else {
			ret = emit(p, BPF_LD | BPF_H | BPF_ABS, 0, 0, 40 + 2);
		}
		if (!ret)
			ret = accept_if(p, t[i].lport);
	}
	return ret ? ret : ja(p, TO_REJECT);
}

/* The filter of the packets worth keeping; NULL program (keep all TCP) when too long. */
static int build_filter(struct prog *p, const struct haul_net_tuple *t, size_t n,
			const struct haul_net_addr *a, size_t na)
{
	size_t v6_at, accept, reject;
	int ret;

	ret = emit(p, BPF_LD | BPF_W | BPF_ABS, 0, 0, (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE));
	if (!ret)
		ret = emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 1, PACKET_OUTGOING);
	if (!ret)
		ret = ja(p, TO_REJECT);
	if (!ret)
		ret = emit(p, BPF_LD | BPF_W | BPF_ABS, 0, 0,
			   (uint32_t)(SKF_AD_OFF + SKF_AD_PROTOCOL));
	if (!ret)
		ret = emit(p, BPF_JMP | BPF_JEQ | BPF_K, 2, 0, ETH_P_IP);
	if (!ret)
		ret = emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 0, ETH_P_IPV6); /* jt patched */
	if (!ret)
		ret = ja(p, TO_REJECT);
	if (!ret)
		ret = family_part(p, AF_INET, t, n, a, na);
	v6_at = p->n;
	if (!ret)
		ret = family_part(p, AF_INET6, t, n, a, na);
	accept = p->n;
	if (!ret)
		ret = emit(p, BPF_RET | BPF_K, 0, 0, REPLAY_SNAP);
	reject = p->n;
	if (!ret)
		ret = emit(p, BPF_RET | BPF_K, 0, 0, 0);
	if (ret)
		return ret;
	if (p->n > MAX_INSNS || v6_at - 6 > 255)
		return -E2BIG;
	p->f[5].jt = (uint8_t)(v6_at - 6); /* the ETH_P_IPV6 test is instruction 5 */
	for (size_t i = 0; i < p->n; i++)
		if (p->f[i].code == (BPF_JMP | BPF_JA) &&
		    (p->f[i].k == TO_ACCEPT || p->f[i].k == TO_REJECT))
			p->f[i].k = (uint32_t)((p->f[i].k == TO_ACCEPT ? accept : reject) - i - 1);
	return 0;
}

int haul_replay_start(struct haul_replay *r, const struct haul_net_tuple *t, size_t n,
		      const struct haul_net_addr *a, size_t na)
{
	struct sock_filter all_tcp[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_OUTGOING, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, REPLAY_SNAP),
		BPF_STMT(BPF_RET | BPF_K, 0),
	};
	struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL)};
	struct prog p = {0};
	struct sock_fprog fp;
	bool tcp = na > 0;
	int fd, ret, buf = REPLAY_RCVBUF;

	r->fd = -1;
	r->t = t;
	r->n = n;
	r->a = a;
	r->na = na;
	for (size_t i = 0; i < n; i++)
		tcp |= t[i].proto == IPPROTO_TCP;
	if (!tcp)
		return 0;
	ret = build_filter(&p, t, n, a, na);
	fp = ret ? (struct sock_fprog){.len = sizeof(all_tcp) / sizeof(all_tcp[0]),
				       .filter = all_tcp}
		 : (struct sock_fprog){.len = (unsigned short)p.n, .filter = p.f};
	if (ret && ret != -E2BIG) {
		free(p.f);
		return ret;
	}
	/* protocol 0: nothing is queued until bind(), after the filter is on */
	fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 ||
	    (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf)) < 0 &&
	     setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf)) < 0) ||
	    setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof(fp)) < 0 ||
	    bind(fd, (struct sockaddr *)&ll, sizeof(ll)) < 0) {
		ret = -errno;
		if (fd >= 0)
			close(fd);
		free(p.f);
		pr_warn("cannot record what the lock drops: %s; peers whose segments it drops "
			"resend them on their retransmission timeout (200 ms or more)",
			strerror(-ret));
		return ret;
	}
	free(p.f);
	r->fd = fd;
	return 0;
}

/* Does the segment @src:@sport -> @dst:@dport (family @fam) belong to what the lock dropped? */
static bool locked(const struct haul_replay *r, int fam, const uint8_t *src, uint16_t sport,
		   const uint8_t *dst, uint16_t dport, bool moved_only)
{
	static const uint8_t zero[16];
	size_t al = fam == AF_INET ? 4 : 16;

	for (size_t i = 0; i < r->na; i++)
		if (r->a[i].family == fam && !memcmp(r->a[i].addr, dst, al))
			return true;
	if (moved_only)
		return false;
	for (size_t i = 0; i < r->n; i++) {
		const struct haul_net_tuple *t = &r->t[i];

		if (t->family != fam || t->proto != IPPROTO_TCP || t->lport != dport ||
		    (memcmp(t->laddr, zero, 16) && memcmp(t->laddr, dst, al)))
			continue;
		if (!t->rport || (t->rport == sport && !memcmp(t->raddr, src, al)))
			return true;
	}
	return false;
}

static uint32_t csum_add(uint32_t sum, const uint8_t *d, size_t len)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(d[i] << 8 | d[i + 1]);
	if (len & 1)
		sum += (uint32_t)(d[len - 1] << 8);
	return sum;
}

/* The TCP checksum of @seg (@len bytes) from @src to @dst (@al bytes each), set in place. */
static void tcp_checksum(uint8_t *seg, size_t len, const uint8_t *src, const uint8_t *dst,
			 size_t al)
{
	uint32_t sum = 0;

	seg[16] = seg[17] = 0;
	sum = csum_add(sum, src, al);
	sum = csum_add(sum, dst, al);
	sum += IPPROTO_TCP + (uint32_t)(len & 0xffff) + (uint32_t)(len >> 16);
	sum = csum_add(sum, seg, len);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	sum = ~sum & 0xffff;
	seg[16] = (uint8_t)(sum >> 8);
	seg[17] = (uint8_t)sum;
}

/* One captured packet @pkt (@len bytes): sent again when it is one the lock dropped. */
static int replay_one(struct haul_replay *r, int raw[2], uint8_t *pkt, size_t len, bool moved_only)
{
	struct sockaddr_storage ss = {0};
	size_t hl, tot, al;
	int fam, k;

	if (len >= 20 && pkt[0] >> 4 == 4) {
		fam = AF_INET;
		hl = (size_t)(pkt[0] & 0xf) * 4;
		tot = (size_t)(pkt[2] << 8 | pkt[3]);
		if (hl < 20 || pkt[9] != IPPROTO_TCP || (pkt[6] & 0x3f) || pkt[7])
			return 0; /* not TCP, or a fragment */
		al = 4;
	} else if (len >= 40 && pkt[0] >> 4 == 6) {
		fam = AF_INET6;
		hl = 40;
		tot = 40 + (size_t)(pkt[4] << 8 | pkt[5]);
		if (pkt[6] != IPPROTO_TCP)
			return 0; /* extension headers: left to the sender's retransmission */
		al = 16;
	} else {
		return 0;
	}
	if (tot > len || tot < hl + 20)
		return 0; /* cut by the snap length, or malformed */
	{
		const uint8_t *src = pkt + (fam == AF_INET ? 12 : 8);
		const uint8_t *dst = pkt + (fam == AF_INET ? 16 : 24);
		uint8_t *tcp = pkt + hl;
		uint16_t sport = (uint16_t)(tcp[0] << 8 | tcp[1]);
		uint16_t dport = (uint16_t)(tcp[2] << 8 | tcp[3]);

		if (!locked(r, fam, src, sport, dst, dport, moved_only))
			return 0;
		/* the sender may have left the checksum to offload (veth, CHECKSUM_PARTIAL) */
		tcp_checksum(tcp, tot - hl, src, dst, al);
		if (fam == AF_INET) {
			struct sockaddr_in *s = (struct sockaddr_in *)&ss;

			s->sin_family = AF_INET;
			memcpy(&s->sin_addr, dst, 4);
		} else {
			struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;

			s->sin6_family = AF_INET6;
			memcpy(&s->sin6_addr, dst, 16);
		}
	}
	k = fam == AF_INET ? 0 : 1;
	/* IPPROTO_RAW: the header is ours (IP_HDRINCL, and its IPv6 equivalent) */
	if (raw[k] < 0)
		raw[k] = socket(fam, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
	if (raw[k] < 0)
		return -errno;
	if (sendto(raw[k], pkt, tot, MSG_DONTWAIT, (struct sockaddr *)&ss,
		   fam == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)) < 0)
		return -errno;
	return 1;
}

/* Everything recorded, read at once (*@out malloc'd, packets one after another as u32 length + bytes). */
static int drain(int fd, uint8_t **out, size_t *len)
{
	size_t cap = 0, n = 0;
	uint8_t *buf = NULL;

	for (;;) {
		ssize_t got;
		uint32_t l;

		if (cap - n < REPLAY_SNAP + 4) {
			uint8_t *b = realloc(buf, cap + 4 * (REPLAY_SNAP + 4));

			if (!b) {
				free(buf);
				return -ENOMEM;
			}
			buf = b;
			cap += 4 * (REPLAY_SNAP + 4);
		}
		got = recv(fd, buf + n + 4, REPLAY_SNAP, MSG_DONTWAIT);
		if (got < 0)
			break;
		l = (uint32_t)got;
		memcpy(buf + n, &l, 4);
		n += 4 + l;
	}
	*out = buf;
	*len = n;
	return 0;
}

int haul_replay_send(struct haul_replay *r, bool moved_only)
{
	int raw[2] = {-1, -1}, sent = 0, failed = 0, first = 0, ret;
	uint8_t *buf;
	size_t len;

	if (r->fd < 0)
		return 0;
	/* all of it read and the recorder closed first: what is sent now must not come back */
	ret = drain(r->fd, &buf, &len);
	haul_replay_stop(r);
	if (ret)
		return ret;
	for (size_t off = 0; off + 4 <= len;) {
		uint32_t l;

		memcpy(&l, buf + off, 4);
		ret = replay_one(r, raw, buf + off + 4, l, moved_only);
		off += 4 + l;
		if (ret > 0)
			sent++;
		if (ret < 0 && !failed++)
			first = ret;
	}
	free(buf);
	for (int k = 0; k < 2; k++)
		if (raw[k] >= 0)
			close(raw[k]);
	if (failed)
		pr_warn("%d of the segments the lock dropped could not be sent again: %s; their "
			"senders retransmit them on their timeout",
			failed, strerror(-first));
	if (sent)
		pr_debug("sent again %d segments the lock dropped", sent);
	return sent;
}

static void *close_main(void *arg)
{
	close((int)(intptr_t)arg);
	return NULL;
}

void haul_close_later(int fd)
{
	pthread_attr_t a;
	pthread_t t;

	if (fd < 0)
		return;
	if (pthread_attr_init(&a) || pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED) ||
	    pthread_create(&t, &a, close_main, (void *)(intptr_t)fd))
		close(fd);
	pthread_attr_destroy(&a);
}

void haul_replay_stop(struct haul_replay *r)
{
	haul_close_later(r->fd); /* right after the lift: the grace period off this thread */
	r->fd = -1;
}
