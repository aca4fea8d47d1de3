/*
 * load.h - the load-client core shared by bench/servers/srvload_*.c: N
 * connections to one server, one single-threaded epoll loop, one request in
 * flight per connection, every reply checked by the protocol, and a JSON
 * report of what the clients saw (ops, errors by kind, wrong values,
 * reconnects, latency p50/p99/max, the largest gap between completions).
 *
 * A protocol file fills a struct load_proto and calls load_main().  The core
 * owns sockets, timing and counting; the protocol only writes requests into
 * the connection's output buffer and parses replies from its input buffer.
 * A connection that breaks is an error, never silently reopened: with
 * --reconnect it is reopened and counted in "reconnects", otherwise it stays
 * down for the rest of the run.
 */
#ifndef HAUL_BENCH_SERVERS_LOAD_H
#define HAUL_BENCH_SERVERS_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOAD_MAX_CONNS	  1024		/* bound on --conns: one epoll loop, one request each */
#define LOAD_MAX_DURATION 86400		/* bound on --duration, seconds */
#define LOAD_MAX_VALUE	  (1 << 24)	/* bound on --value-size and fill values: 16 MiB */
#define LOAD_MAX_FILL	  (64ULL << 30) /* bound on --fill: 64 GiB */

enum load_err {
	LE_REFUSED,  /* connect: ECONNREFUSED (or ICMP port unreachable on UDP) */
	LE_RESET,    /* ECONNRESET, EPIPE */
	LE_EOF,	     /* the server closed the connection */
	LE_TIMEOUT,  /* no reply (or no connect) within --timeout */
	LE_PROTOCOL, /* a reply the protocol cannot parse */
	LE_OTHER,    /* any other socket error */
	LE_NR,
};

struct load_conn {
	int id;
	int fd;
	bool busy; /* a request is in flight */
	bool connecting;
	bool done;	 /* finished its final pass, or broken without --reconnect */
	bool finishing;	 /* the run is over: the protocol does its final checks */
	uint64_t t_sent; /* ns, monotonic, of the request in flight */
	uint64_t ops;	 /* replies completed on this connection */
	char *out;
	size_t out_len, out_off, out_cap;
	char *in;
	size_t in_len, in_cap;
	void *priv; /* the protocol's per-connection state */
};

struct load_opts {
	const char *host;
	int port;
	int conns;
	int duration_s;
	int timeout_ms;
	int keys;	/* keys (or paths) per connection */
	int value_size; /* bytes of each value in the load */
	bool reconnect;
	bool progress;
	const char *json;
	/* fill mode (Redis, memcached) */
	uint64_t fill;	 /* bytes to load, 0: none */
	int fill_value;	 /* bytes per fill value */
	bool fill_check; /* read every fill key back and compare */
	int pipeline;	 /* requests in flight per batch in fill mode */
};

struct load_proto {
	const char *name;
	int default_port;
	bool dgram;		/* UDP: a timeout is a lost datagram, not an error */
	int default_timeout_ms; /* --timeout unless given (0: 5000) */
	/* per-connection state, allocated at start, reset after a reconnect */
	int (*conn_init)(struct load_conn *c, const struct load_opts *o);
	void (*conn_reset)(struct load_conn *c);
	void (*conn_free)(struct load_conn *c);
	/*
	 * Append the next request to c->out (load_out*).  Return 0 with a
	 * request, 1 when the connection has nothing more to do (after its
	 * final pass once c->finishing is set), -errno on failure.
	 */
	int (*request)(struct load_conn *c, const struct load_opts *o);
	/*
	 * Parse c->in[0..in_len): the number of bytes of a complete reply
	 * (the core drops them), 0 when more bytes are needed, -EPROTO on a
	 * reply that cannot be parsed.  *wrong is set when the reply parses
	 * but holds a value other than the one the request expects.
	 */
	long (*response)(struct load_conn *c, const struct load_opts *o, bool *wrong);
	/* fill mode: load o->fill bytes, or read them all back and compare */
	int (*fill)(const struct load_opts *o, bool check, uint64_t *keys, uint64_t *wrong);
	/* extra JSON members for the report ("name": value, ...), or NULL */
	void (*report)(char *buf, size_t len);
};

/* Parse the command line and run the load or the fill; the exit status. */
int load_main(const struct load_proto *p, int argc, char **argv);

/* Append to c->out: bytes, or printf-formatted text. */
int load_out(struct load_conn *c, const void *buf, size_t len);
int load_outf(struct load_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Deterministic printable bytes for @seed: the values every check recomputes. */
void load_fill_bytes(uint64_t seed, char *buf, size_t n);
/* A 64-bit mix of three numbers (seeds for load_fill_bytes). */
uint64_t load_seed(uint64_t a, uint64_t b, uint64_t c);

/* Fill mode helpers: blocking connection, whole writes, buffered reads. */
struct load_rd {
	int fd;
	char *buf;
	size_t len, off, cap;
};
int load_dial(const struct load_opts *o);
int load_write_all(int fd, const void *buf, size_t len);
int load_rd_init(struct load_rd *r, int fd, size_t cap);
void load_rd_release(struct load_rd *r);
/* Read at least one more byte into r (compacting and growing it); -ECONNRESET at EOF. */
int load_rd_more(struct load_rd *r);

#endif
