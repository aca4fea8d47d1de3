/*
 * load.c - the load-client core (see load.h): command line, the epoll loop
 * that keeps one request in flight on each of N non-blocking connections,
 * error accounting by kind, a latency histogram and the JSON report.
 *
 * Timing: a request's latency runs from the moment its first byte is handed
 * to the kernel until its reply has parsed; "max_gap_ms" is the largest time
 * between two completions of any connections after the first one, i.e. the
 * longest stretch in which no client saw an answer (the downtime clients see).
 * The histogram has 1 us buckets below 100 ms and 1 ms buckets up to 100 s;
 * the maximum is kept exactly.
 *
 * Exit status: 0 when errors and wrong values are both zero, 1 otherwise,
 * 2 for a wrong command line.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "load.h"

#define HIST_FINE   100000 /* 1 us buckets: 0 .. 100 ms */
#define HIST_COARSE 100000 /* 1 ms buckets: 100 ms .. 100 s */
#define TICK_MS	    10	   /* epoll timeout: how often timeouts are looked at */

static const char *const err_names[LE_NR] = {
	[LE_REFUSED] = "connect_refused", [LE_RESET] = "reset",	      [LE_EOF] = "eof",
	[LE_TIMEOUT] = "timeout",	  [LE_PROTOCOL] = "protocol", [LE_OTHER] = "other",
};

struct load {
	const struct load_proto *p;
	struct load_opts o;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	int ep;
	struct load_conn *conns;
	uint64_t *hist;
	uint64_t ops, wrong, reconnects, lost, errors[LE_NR];
	uint64_t lat_max, gap_max, last_done, t_start, t_end, t_ready;
	int live;
	bool ready;
};

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t load_seed(uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t x = a * 0x9e3779b97f4a7c15ULL ^
		     (b + 0x632be59bd9b4e019ULL) * 0xbf58476d1ce4e5b9ULL ^
		     (c + 0x85ebca6b) * 0x94d049bb133111ebULL;

	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ULL;
	return x ^ (x >> 29);
}

void load_fill_bytes(uint64_t seed, char *buf, size_t n)
{
	uint64_t x = seed | 1;

	for (size_t i = 0; i < n; i++) {
		if (!(i & 7)) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
		}
		buf[i] = (char)('a' + ((x >> ((i & 7) * 8)) & 0xff) % 26);
	}
}

static int grow(char **buf, size_t *cap, size_t need)
{
	size_t n = *cap ? *cap : 4096;
	char *b;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	b = realloc(*buf, n);
	if (!b)
		return -ENOMEM;
	*buf = b;
	*cap = n;
	return 0;
}

int load_out(struct load_conn *c, const void *buf, size_t len)
{
	int ret = grow(&c->out, &c->out_cap, c->out_len + len);

	if (ret)
		return ret;
	memcpy(c->out + c->out_len, buf, len);
	c->out_len += len;
	return 0;
}

int load_outf(struct load_conn *c, const char *fmt, ...)
{
	va_list ap;
	int n, ret;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	ret = grow(&c->out, &c->out_cap, c->out_len + (size_t)n + 1);
	if (ret)
		return ret;
	va_start(ap, fmt);
	vsnprintf(c->out + c->out_len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	c->out_len += (size_t)n;
	return 0;
}

static enum load_err err_kind(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return LE_REFUSED;
	case ECONNRESET:
	case EPIPE:
		return LE_RESET;
	case ETIMEDOUT:
		return LE_TIMEOUT;
	default:
		return LE_OTHER;
	}
}

static void hist_add(struct load *l, uint64_t ns)
{
	uint64_t us = ns / 1000, i;

	if (us < HIST_FINE)
		i = us;
	else if (us / 1000 - 100 < HIST_COARSE)
		i = HIST_FINE + us / 1000 - 100;
	else
		i = HIST_FINE + HIST_COARSE - 1;
	l->hist[i]++;
	if (ns > l->lat_max)
		l->lat_max = ns;
}

/* The latency in ms below which @q of the ops completed. */
static double hist_quantile(const struct load *l, double q)
{
	uint64_t total = 0, want, seen = 0;

	for (int i = 0; i < HIST_FINE + HIST_COARSE; i++)
		total += l->hist[i];
	if (!total)
		return 0;
	want = (uint64_t)(q * (double)total);
	if (want >= total)
		want = total - 1;
	for (int i = 0; i < HIST_FINE + HIST_COARSE; i++) {
		seen += l->hist[i];
		if (seen > want)
			return i < HIST_FINE ? (i + 1) / 1000.0 : (double)(i - HIST_FINE + 101);
	}
	return (double)l->lat_max / 1e6;
}

static void conn_close(struct load *l, struct load_conn *c)
{
	if (c->fd >= 0) {
		epoll_ctl(l->ep, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
		c->fd = -1;
	}
	c->busy = c->connecting = false;
	c->in_len = c->out_len = c->out_off = 0;
}

static void conn_finish(struct load *l, struct load_conn *c)
{
	conn_close(l, c);
	if (!c->done) {
		c->done = true;
		l->live--;
	}
}

static int conn_open(struct load *l, struct load_conn *c);

/* A broken connection: counted, then reopened (--reconnect) or left down. */
static void conn_error(struct load *l, struct load_conn *c, enum load_err kind)
{
	l->errors[kind]++;
	conn_close(l, c);
	if (l->o.reconnect && !c->finishing) {
		l->reconnects++;
		if (l->p->conn_reset)
			l->p->conn_reset(c);
		if (!conn_open(l, c))
			return;
	}
	conn_finish(l, c);
}

static void conn_watch(struct load *l, struct load_conn *c, bool want_out)
{
	struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};

	epoll_ctl(l->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_flush(struct load *l, struct load_conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EAGAIN) {
			conn_watch(l, c, true);
			return;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			conn_error(l, c, err_kind(errno));
			return;
		}
		c->out_off += (size_t)n;
	}
	conn_watch(l, c, false);
}

static void conn_next(struct load *l, struct load_conn *c)
{
	int ret;

	c->out_len = c->out_off = 0;
	ret = l->p->request(c, &l->o);
	if (ret == 1) {
		conn_finish(l, c);
		return;
	}
	if (ret < 0) {
		fprintf(stderr, "load: connection %d: cannot build a request: %s\n", c->id,
			strerror(-ret));
		conn_error(l, c, LE_OTHER);
		return;
	}
	c->busy = true;
	c->t_sent = now_ns();
	conn_flush(l, c);
}

static int conn_open(struct load *l, struct load_conn *c)
{
	struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
	int one = 1;

	c->fd = socket(l->addr.ss_family, (l->p->dgram ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK,
		       0);
	if (c->fd < 0)
		return -errno;
	if (!l->p->dgram)
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&l->addr, l->addr_len) && errno != EINPROGRESS) {
		int err = errno;

		close(c->fd);
		c->fd = -1;
		return -err;
	}
	c->connecting = true;
	c->t_sent = now_ns();
	if (epoll_ctl(l->ep, EPOLL_CTL_ADD, c->fd, &ev)) {
		int err = errno;

		close(c->fd);
		c->fd = -1;
		return -err;
	}
	return 0;
}

static void conn_completed(struct load *l, struct load_conn *c, bool wrong)
{
	uint64_t t = now_ns();

	hist_add(l, t - c->t_sent);
	l->ops++;
	if (wrong)
		l->wrong++;
	if (l->last_done && t - l->last_done > l->gap_max)
		l->gap_max = t - l->last_done;
	l->last_done = t;
	c->ops++;
	c->busy = false;
}

static void conn_readable(struct load *l, struct load_conn *c)
{
	for (;;) {
		ssize_t n;
		long used;
		bool wrong = false;

		if (grow(&c->in, &c->in_cap, c->in_len + 65536)) {
			conn_error(l, c, LE_OTHER);
			return;
		}
		/* one byte kept for a NUL after the data: parsers may use string functions */
		n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len - 1, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {
			conn_error(l, c, err_kind(errno));
			return;
		}
		if (n == 0 && !l->p->dgram) {
			conn_error(l, c, LE_EOF);
			return;
		}
		c->in_len += (size_t)n;
		c->in[c->in_len] = 0;
		if (!c->busy) {
			/* bytes nobody asked for: the stream is out of step */
			conn_error(l, c, LE_PROTOCOL);
			return;
		}
		used = l->p->response(c, &l->o, &wrong);
		if (used < 0) {
			conn_error(l, c, LE_PROTOCOL);
			return;
		}
		if (l->p->dgram) {
			c->in_len = 0; /* one datagram each; a stale one was counted and dropped */
			if (!used)
				continue;
		} else if (!used) {
			continue;
		} else if ((size_t)used < c->in_len) {
			conn_error(l, c, LE_PROTOCOL); /* one request in flight: no extra bytes */
			return;
		} else {
			c->in_len = 0;
		}
		conn_completed(l, c, wrong);
		conn_next(l, c);
		return;
	}
}

static void conn_writable(struct load *l, struct load_conn *c)
{
	if (c->connecting) {
		int err = 0;
		socklen_t len = sizeof(err);

		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			conn_error(l, c, err_kind(err));
			return;
		}
		c->connecting = false;
		conn_next(l, c);
		return;
	}
	conn_flush(l, c);
}

static void check_timeouts(struct load *l, uint64_t t)
{
	uint64_t limit = (uint64_t)l->o.timeout_ms * 1000000ULL;

	for (int i = 0; i < l->o.conns; i++) {
		struct load_conn *c = &l->conns[i];

		if (c->done || !(c->busy || c->connecting) || t - c->t_sent < limit)
			continue;
		if (l->p->dgram && c->busy) {
			/* a lost datagram: counted, and the next one goes out */
			l->lost++;
			c->busy = false;
			c->in_len = 0;
			conn_next(l, c);
			continue;
		}
		conn_error(l, c, LE_TIMEOUT);
	}
}

static void print_progress(struct load *l, uint64_t t)
{
	uint64_t e = 0;

	for (int k = 0; k < LE_NR; k++)
		e += l->errors[k];
	fprintf(stderr, "load: t=%.1f ops=%llu errors=%llu wrong=%llu live=%d\n",
		(double)(t - l->t_start) / 1e9, (unsigned long long)l->ops, (unsigned long long)e,
		(unsigned long long)l->wrong, l->live);
}

static void note_ready(struct load *l)
{
	for (int i = 0; i < l->o.conns; i++)
		if (!l->conns[i].done && l->conns[i].connecting)
			return;
	for (int i = 0; i < l->o.conns; i++)
		if (!l->conns[i].done && !l->conns[i].ops)
			return;
	l->ready = true;
	l->t_ready = now_ns();
	fprintf(stderr, "load: ready conns=%d live=%d\n", l->o.conns, l->live);
}

static int run_loop(struct load *l)
{
	struct epoll_event evs[64];
	uint64_t next_progress;
	bool finishing = false;

	l->t_start = now_ns();
	l->t_end = l->t_start + (uint64_t)l->o.duration_s * 1000000000ULL;
	next_progress = l->t_start + 1000000000ULL;
	for (int i = 0; i < l->o.conns; i++) {
		struct load_conn *c = &l->conns[i];
		int ret = conn_open(l, c);

		if (ret) {
			fprintf(stderr, "load: connection %d to %s:%d: %s\n", i, l->o.host,
				l->o.port, strerror(-ret));
			l->errors[ret == -ECONNREFUSED ? LE_REFUSED : LE_OTHER]++;
			conn_finish(l, c);
		}
	}
	while (l->live > 0) {
		uint64_t t = now_ns();
		int n;

		if (!finishing && (t >= l->t_end || stop_requested)) {
			finishing = true;
			for (int i = 0; i < l->o.conns; i++)
				l->conns[i].finishing = true;
		}
		n = epoll_wait(l->ep, evs, 64, TICK_MS);
		if (n < 0 && errno != EINTR)
			return -errno;
		for (int i = 0; i < n; i++) {
			struct load_conn *c = evs[i].data.ptr;

			if (c->fd < 0)
				continue;
			if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP) && c->connecting)
				conn_writable(l, c);
			else if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				conn_readable(l, c);
			else if (evs[i].events & EPOLLOUT)
				conn_writable(l, c);
		}
		t = now_ns();
		check_timeouts(l, t);
		if (!l->ready)
			note_ready(l);
		if (l->o.progress && t >= next_progress) {
			print_progress(l, t);
			next_progress += 1000000000ULL;
		}
	}
	if (l->o.progress)
		print_progress(l, now_ns()); /* the last word: errors and live=0 show here */
	return 0;
}

static void report(struct load *l, FILE *f, double seconds)
{
	char extra[1024] = "";
	uint64_t e = 0;

	for (int k = 0; k < LE_NR; k++)
		e += l->errors[k];
	if (l->p->report)
		l->p->report(extra, sizeof(extra));
	fprintf(f, "{\"proto\": \"%s\", \"server\": \"%s:%d\", \"conns\": %d, \"seconds\": %.3f,\n",
		l->p->name, l->o.host, l->o.port, l->o.conns, seconds);
	fprintf(f, " \"ops\": %llu, \"ops_per_s\": %.0f, \"errors\": %llu, \"errors_by_kind\": {",
		(unsigned long long)l->ops, seconds > 0 ? (double)l->ops / seconds : 0,
		(unsigned long long)e);
	for (int k = 0; k < LE_NR; k++)
		fprintf(f, "%s\"%s\": %llu", k ? ", " : "", err_names[k],
			(unsigned long long)l->errors[k]);
	fprintf(f, "},\n \"wrong_values\": %llu, \"reconnects\": %llu, \"lost\": %llu,\n",
		(unsigned long long)l->wrong, (unsigned long long)l->reconnects,
		(unsigned long long)l->lost);
	fprintf(f, " \"latency_ms\": {\"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f}, ",
		hist_quantile(l, 0.5), hist_quantile(l, 0.99), (double)l->lat_max / 1e6);
	fprintf(f, "\"max_gap_ms\": %.3f%s%s}\n", (double)l->gap_max / 1e6, *extra ? ", " : "",
		extra);
}

static int write_report(struct load *l, double seconds)
{
	FILE *f = stdout;

	if (l->o.json && strcmp(l->o.json, "-")) {
		f = fopen(l->o.json, "w");
		if (!f) {
			fprintf(stderr, "load: cannot write %s: %s\n", l->o.json, strerror(errno));
			return -errno;
		}
	}
	report(l, f, seconds);
	if (f != stdout && fclose(f))
		return -errno;
	fflush(stdout);
	return 0;
}

static int resolve(struct load *l)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC}, *res;
	char port[16];
	int ret;

	snprintf(port, sizeof(port), "%d", l->o.port);
	hints.ai_socktype = l->p->dgram ? SOCK_DGRAM : SOCK_STREAM;
	ret = getaddrinfo(l->o.host, port, &hints, &res);
	if (ret) {
		fprintf(stderr, "load: cannot resolve %s: %s\n", l->o.host, gai_strerror(ret));
		return -EINVAL;
	}
	memcpy(&l->addr, res->ai_addr, res->ai_addrlen);
	l->addr_len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

int load_dial(const struct load_opts *o)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
	char port[16];
	int fd, one = 1;

	snprintf(port, sizeof(port), "%d", o->port);
	if (getaddrinfo(o->host, port, &hints, &res))
		return -EINVAL;
	fd = socket(res->ai_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen)) {
		int err = errno;

		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		fprintf(stderr, "load: cannot connect to %s:%d: %s\n", o->host, o->port,
			strerror(err));
		return -err;
	}
	freeaddrinfo(res);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

int load_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

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

int load_rd_init(struct load_rd *r, int fd, size_t cap)
{
	r->fd = fd;
	r->len = r->off = 0;
	r->cap = cap;
	r->buf = malloc(cap);
	return r->buf ? 0 : -ENOMEM;
}

void load_rd_release(struct load_rd *r)
{
	free(r->buf);
	r->buf = NULL;
}

int load_rd_more(struct load_rd *r)
{
	for (;;) {
		ssize_t got;

		if (r->off) {
			memmove(r->buf, r->buf + r->off, r->len - r->off);
			r->len -= r->off;
			r->off = 0;
		}
		if (grow(&r->buf, &r->cap, r->len + 65536))
			return -ENOMEM;
		got = recv(r->fd, r->buf + r->len, r->cap - r->len, 0);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return -errno;
		if (got == 0)
			return -ECONNRESET;
		r->len += (size_t)got;
		return 0;
	}
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	switch (*end) {
	case 'G':
	case 'g':
		v <<= 30;
		end++;
		break;
	case 'M':
	case 'm':
		v <<= 20;
		end++;
		break;
	case 'K':
	case 'k':
		v <<= 10;
		end++;
		break;
	}
	if (end == s || (*end && strcmp(end, "iB") && strcmp(end, "B")))
		return -EINVAL;
	*out = v;
	return 0;
}

static void usage(const struct load_proto *p)
{
	fprintf(stderr,
		"usage: srvload_%s [--host ADDR] [--port N] [--conns N] [--duration S]\n"
		"       [--timeout MS] [--keys N] [--value-size BYTES] [--reconnect] [--progress]\n"
		"       [--json FILE]\n"
		"       srvload_%s --fill SIZE [--fill-value BYTES] [--pipeline N] [--check]\n"
		"Load: --conns connections (default 16, at most %d) each with one request in\n"
		"flight for --duration seconds (default 10; SIGTERM ends it early), then a\n"
		"final pass that reads back and checks what each connection wrote.  The report\n"
		"(JSON, stdout or --json) counts errors by kind and wrong values; a broken\n"
		"connection is an error, reopened only with --reconnect (counted).  Exit 0\n"
		"when errors and wrong values are zero, else 1.\n"
		"Fill: load SIZE bytes in values of --fill-value bytes (default 64K), or with\n"
		"--check read every one back and compare.\n",
		p->name, p->name, LOAD_MAX_CONNS);
}

static int parse_opts(struct load *l, int argc, char **argv)
{
	static const struct option lo[] = {
		{"host", 1, NULL, 'h'},	      {"port", 1, NULL, 'p'},
		{"conns", 1, NULL, 'c'},      {"duration", 1, NULL, 'd'},
		{"timeout", 1, NULL, 't'},    {"keys", 1, NULL, 'k'},
		{"value-size", 1, NULL, 'v'}, {"reconnect", 0, NULL, 'r'},
		{"progress", 0, NULL, 'P'},   {"json", 1, NULL, 'j'},
		{"fill", 1, NULL, 'f'},	      {"fill-value", 1, NULL, 'F'},
		{"check", 0, NULL, 'C'},      {"pipeline", 1, NULL, 'l'},
		{"help", 0, NULL, 'H'},	      {NULL, 0, NULL, 0},
	};
	struct load_opts *o = &l->o;
	uint64_t sz;
	int opt;

	*o = (struct load_opts){.host = "127.0.0.1",
				.port = l->p->default_port,
				.conns = 16,
				.duration_s = 10,
				.timeout_ms =
					l->p->default_timeout_ms ? l->p->default_timeout_ms : 5000,
				.keys = 64,
				.value_size = 100,
				.fill_value = 65536,
				.pipeline = 32};
	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (opt) {
		case 'h':
			o->host = optarg;
			break;
		case 'p':
			o->port = atoi(optarg);
			break;
		case 'c':
			o->conns = atoi(optarg);
			break;
		case 'd':
			o->duration_s = atoi(optarg);
			break;
		case 't':
			o->timeout_ms = atoi(optarg);
			break;
		case 'k':
			o->keys = atoi(optarg);
			break;
		case 'v':
		case 'F':
			if (parse_size(optarg, &sz) || !sz || sz > LOAD_MAX_VALUE)
				return -EINVAL;
			*(opt == 'v' ? &o->value_size : &o->fill_value) = (int)sz;
			break;
		case 'r':
			o->reconnect = true;
			break;
		case 'P':
			o->progress = true;
			break;
		case 'j':
			o->json = optarg;
			break;
		case 'f':
			if (parse_size(optarg, &o->fill) || !o->fill || o->fill > LOAD_MAX_FILL)
				return -EINVAL;
			break;
		case 'C':
			o->fill_check = true;
			break;
		case 'l':
			o->pipeline = atoi(optarg);
			break;
		default:
			return -EINVAL;
		}
	}
	if (optind != argc || o->port <= 0 || o->port > 65535 || o->conns < 1 ||
	    o->conns > LOAD_MAX_CONNS || o->duration_s < 1 || o->duration_s > LOAD_MAX_DURATION ||
	    o->timeout_ms < 1 || o->keys < 1 || o->keys > 1000000 || o->pipeline < 1 ||
	    o->pipeline > 4096 || (o->fill_check && !o->fill))
		return -EINVAL;
	return 0;
}

static int run_fill(struct load *l)
{
	uint64_t keys = 0, wrong = 0, t0 = now_ns();
	int ret;
	FILE *f = stdout;
	double s;

	if (!l->p->fill) {
		fprintf(stderr, "load: %s has no fill mode\n", l->p->name);
		return 2;
	}
	ret = l->p->fill(&l->o, l->o.fill_check, &keys, &wrong);
	s = (double)(now_ns() - t0) / 1e9;
	if (l->o.json && strcmp(l->o.json, "-"))
		f = fopen(l->o.json, "w");
	if (!f)
		f = stdout;
	fprintf(f,
		"{\"proto\": \"%s\", \"mode\": \"%s\", \"bytes\": %llu, \"keys\": %llu, "
		"\"wrong_values\": %llu, \"seconds\": %.3f, \"error\": \"%s\"}\n",
		l->p->name, l->o.fill_check ? "check" : "fill", (unsigned long long)l->o.fill,
		(unsigned long long)keys, (unsigned long long)wrong, s, ret ? strerror(-ret) : "");
	if (f != stdout)
		fclose(f);
	if (ret)
		fprintf(stderr, "load: %s %s of %s:%d failed after %llu keys: %s\n", l->p->name,
			l->o.fill_check ? "check" : "fill", l->o.host, l->o.port,
			(unsigned long long)keys, strerror(-ret));
	return ret || wrong ? 1 : 0;
}

int load_main(const struct load_proto *p, int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_stop};
	struct load l = {.p = p};
	uint64_t e = 0;
	int ret;

	if (parse_opts(&l, argc, argv)) {
		usage(p);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (l.o.fill)
		return run_fill(&l);
	if (resolve(&l))
		return 2;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	l.ep = epoll_create1(EPOLL_CLOEXEC);
	l.conns = calloc((size_t)l.o.conns, sizeof(*l.conns));
	l.hist = calloc(HIST_FINE + HIST_COARSE, sizeof(*l.hist));
	if (l.ep < 0 || !l.conns || !l.hist) {
		fprintf(stderr, "load: out of memory or fds for %d connections\n", l.o.conns);
		return 1;
	}
	for (int i = 0; i < l.o.conns; i++) {
		l.conns[i].id = i;
		l.conns[i].fd = -1;
		ret = p->conn_init(&l.conns[i], &l.o);
		if (ret) {
			fprintf(stderr, "load: connection %d: %s\n", i, strerror(-ret));
			return 1;
		}
	}
	l.live = l.o.conns;
	ret = run_loop(&l);
	if (ret)
		fprintf(stderr, "load: epoll_wait: %s\n", strerror(-ret));
	write_report(&l, (double)(now_ns() - l.t_start) / 1e9);
	for (int i = 0; i < l.o.conns; i++) {
		if (p->conn_free)
			p->conn_free(&l.conns[i]);
		free(l.conns[i].in);
		free(l.conns[i].out);
	}
	free(l.conns);
	free(l.hist);
	close(l.ep);
	for (int k = 0; k < LE_NR; k++)
		e += l.errors[k];
	return ret || e || l.wrong ? 1 : 0;
}
