/*
 * ps_int.h - private to src/pageserver: helpers the server and client share.
 */
#ifndef HAUL_PAGESERVER_PS_INT_H
#define HAUL_PAGESERVER_PS_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/wire.h"

/* Capabilities this build offers in Hello. */
#define PS_CAPS                                                                                    \
	(HAUL__WIRE__CAP__CAP_LZ4 | HAUL__WIRE__CAP__CAP_ENCRYPT | HAUL__WIRE__CAP__CAP_PAGE_REQ | \
	 HAUL__WIRE__CAP__CAP_STALE | HAUL__WIRE__CAP__CAP_LANE |                                  \
	 HAUL__WIRE__CAP__CAP_STATE_PARTS | HAUL__WIRE__CAP__CAP_GHOST)

/*
 * Resolve "HOST:PORT" ("[v6]:PORT" for IPv6; empty host with @passive means
 * any address).  0, -EINVAL for a malformed string, -EADDRNOTAVAIL when it
 * does not resolve.
 */
int ps_addr_parse(const char *s, bool passive, struct sockaddr_storage *ss, socklen_t *len);

/* "198.18.0.1:40312" for logs. */
void ps_addr_str(const struct sockaddr *sa, char *buf, size_t len);

struct ps_lazy_report;

/*
 * struct ps_lazy_report <-> the LazyReport message (Ack.lazy).  to_msg
 * fills @m (initialised here) with every field set; from_msg reads an absent
 * field as 0.
 */
void ps_lazy_report_to_msg(const struct ps_lazy_report *r, Haul__Wire__LazyReport *m);
void ps_lazy_report_from_msg(const Haul__Wire__LazyReport *m, struct ps_lazy_report *r);

/* A page request's buffer: @npages pages from @addr; @got counts the pages put. */
struct ps_fetch_ctx {
	uint64_t addr;
	uint32_t npages;
	uint8_t *buf;
	uint32_t got;
};

/*
 * wire_pages_decode() callback (@arg a struct ps_fetch_ctx): copy @n pages
 * at @addr (zeros when @data is NULL) into the buffer.  0, or -ERANGE when
 * they fall outside the request.
 */
int ps_fetch_put(void *arg, uint64_t addr, const void *data, uint32_t n);

#endif
