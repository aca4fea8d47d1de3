/*
 * fd_tcp.c - a TCP socket that is not listening: established connections
 * through TCP_REPAIR, and sockets not connected yet (created, maybe bound).
 *
 * Dump (the process is stopped; the network lock, when haul migrate takes
 * one, drops the connection's packets from the freeze on): on a pidfd_getfd
 * copy, the common part (fd_inet.c), then TCP_REPAIR on and, in repair
 * mode: TCP_INFO (state, negotiated options, window scales), TCP_MAXSEG,
 * TCP_TIMESTAMP, TCP_REPAIR_WINDOW, and per queue (TCP_REPAIR_QUEUE) its
 * sequence number (TCP_QUEUE_SEQ: rcv_nxt, write_seq), its length (SIOCINQ;
 * SIOCOUTQ, of which SIOCOUTQNSD were never sent) and its bytes (MSG_PEEK
 * reads the receive queue, and in repair mode the send queue too).  The
 * socket stays in repair mode: when the source process is killed after the
 * target runs, a socket in repair mode closes without a FIN or RST
 * (tcp_close -> tcp_disconnect, nothing sent).  rst_tcp_hold_end() keeps
 * the copies until then, or takes the sockets out of repair mode when the
 * source runs on (rollback, --leave-running).
 *
 * Restore: socket; options bind depends on; TCP_REPAIR on (which forces
 * address reuse, so the connection binds beside its listener); both queue
 * sequence numbers set to the start of the queue; bind; connect (in repair
 * mode: no SYN, the socket is ESTABLISHED); TCP_REPAIR_OPTIONS (MSS, window
 * scales, SACK, timestamps); TCP_TIMESTAMP; buffers large enough for the
 * queues; the receive queue written in repair mode (it becomes received
 * data) and the sent-but-unacknowledged part of the send queue (it becomes
 * sent data, retransmitted when not acknowledged); TCP_REPAIR_WINDOW;
 * TCP_REPAIR off (a window probe goes out); SO_REUSEADDR again (leaving
 * repair mode clears it); the never-sent bytes written normally; the other
 * options.  A connection whose peer is on this host (loopback, or its own
 * address) stays in repair mode until every process of the restore is
 * ready (fd_tcp_local.c): its peer socket may not exist yet, and the
 * window probe would be answered by a RST.  Half-closed connections: the peer's FIN (CLOSE_WAIT, LAST_ACK,
 * CLOSING) is counted in rcv_nxt, so the receive queue is written to end
 * there and shutdown(SHUT_RD) makes reads end after it (nothing is sent);
 * our FIN (FIN_WAIT1/2, LAST_ACK, CLOSING) is queued again by
 * shutdown(SHUT_WR): in repair mode when it had been sent (it counts as
 * sent, the peer acknowledges it again), after the unsent bytes when it had
 * not.  The restored socket is in FIN_WAIT1/2 where the source was in
 * LAST_ACK or CLOSING: the peer sees the same.  Refused by name:
 * SYN_SENT and SYN_RECV (a handshake cannot be carried).
 */
#define LOG_PREFIX "sock: "
#include <arpa/inet.h>
#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/injlog.h"
#include "common/log.h"
#include "restore/fd_inet.h"
#include "restore/restore.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

#ifndef TCP_REPAIR_WINDOW
#define TCP_REPAIR_WINDOW 29
#endif
#ifndef SIOCOUTQNSD
#define SIOCOUTQNSD 0x894B
#endif
#define REPAIR_ON  1
#define REPAIR_OFF 0

/* struct tcp_repair_window of uapi linux/tcp.h (not in glibc 2.36's netinet/tcp.h). */
struct repair_window {
	uint32_t snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup;
};

/* The source's sockets left in repair mode by the dump, until rst_tcp_hold_end(). */
static struct tcp_held {
	int sfd;
	int reuse; /* SO_REUSEADDR before repair mode (leaving it clears the flag) */
	ino_t ino; /* the socket's inode: one dump per socket however many fds hold it */
} * held;
static size_t nheld, capheld;
/* Told of each socket before it enters repair mode (rst_tcp_hold_watch). */
static void (*hold_cb)(void *arg, pid_t pid, int fd, int reuse);
static void *hold_arg;

void rst_tcp_hold_watch(void (*cb)(void *arg, pid_t pid, int fd, int reuse), void *arg)
{
	hold_cb = cb;
	hold_arg = arg;
}

static bool tcp_match(const struct rst_fd_probe *p)
{
	struct rst_inet_id id;

	return rst_inet_probe(p, &id) && id.type == SOCK_STREAM && !id.listening;
}

/* The states a connection is carried in: established or half-closed. */
static bool carried(int state)
{
	return state == TCP_ESTABLISHED || state == TCP_CLOSE_WAIT || state == TCP_FIN_WAIT1 ||
	       state == TCP_FIN_WAIT2 || state == TCP_LAST_ACK || state == TCP_CLOSING;
}

/* The peer's FIN was received; ours was queued; ours is not acknowledged yet. */
static bool peer_fin(int state)
{
	return state == TCP_CLOSE_WAIT || state == TCP_LAST_ACK || state == TCP_CLOSING;
}

static bool our_fin(int state)
{
	return state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2 || state == TCP_LAST_ACK ||
	       state == TCP_CLOSING;
}

static bool fin_unacked(int state)
{
	return state == TCP_FIN_WAIT1 || state == TCP_LAST_ACK || state == TCP_CLOSING;
}

static const char *state_reason(int state)
{
	switch (state) {
	case TCP_SYN_SENT:
	case TCP_SYN_RECV:
		return "the handshake is not finished and cannot be carried over; try again "
		       "once it has";
	default:
		return "haul restores only established, half-closed or unconnected TCP sockets";
	}
}

/*
 * " <- ADDR:PORT": the peer of socket inode @ino of @pid from its netns's
 * /proc/net/tcp{,6}, for a state getpeername() refuses (SYN_SENT).  Lines
 * print each 32-bit word of the address in host order.
 */
static void proc_peer(pid_t pid, ino_t ino, char *buf, size_t len)
{
	static const char *const files[] = {"net/tcp", "net/tcp6"};

	buf[0] = '\0';
	for (int f = 0; f < 2 && !buf[0]; f++) {
		char *text = NULL, *line, *save = NULL;

		if (rst_read_proc(pid, files[f], &text, NULL))
			continue;
		for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			char rem[40], ip[INET6_ADDRSTRLEN];
			unsigned port, w[4];
			unsigned long inode;

			if (sscanf(line,
				   "%*d: %*[0-9A-Fa-f]:%*x %39[0-9A-Fa-f]:%x %*x %*s %*s %*s "
				   "%*d %*d %lu",
				   rem, &port, &inode) != 3 ||
			    inode != ino)
				continue;
			for (int k = 0; k < 4; k++)
				w[k] = f ? (unsigned)strtoul(strndupa(rem + 8 * k, 8), NULL, 16)
					 : 0;
			if (!f)
				w[0] = (unsigned)strtoul(rem, NULL, 16);
			inet_ntop(f ? AF_INET6 : AF_INET, w, ip, sizeof(ip));
			snprintf(buf, len, f ? " <- [%s]:%u" : " <- %s:%u", ip, port);
			break;
		}
		free(text);
	}
}

static int tcp_refuse_fd(const struct rst_fd_probe *p, int sfd, int state, char *why, size_t wl)
{
	char name[160], peer[80] = "";

	if (carried(state) || state == TCP_CLOSE)
		return 0;
	rst_inet_name_fd(sfd, name, sizeof(name));
	if (!strstr(name, " <- "))
		proc_peer(p->pid, p->st->st_ino, peer, sizeof(peer));
	snprintf(why, wl, "fd %d: %s%s in %s: %s", p->fd, name, peer, rst_tcp_state_name(state),
		 state_reason(state));
	return -EOPNOTSUPP;
}

/* Whether connections are carried at all (rst_tcp_carry_connections). */
static bool carry_conns = true;

void rst_tcp_carry_connections(bool carry)
{
	carry_conns = carry;
}

static int tcp_refuse(const struct rst_fd_probe *p, char *why, size_t wl)
{
	struct rst_inet_id id;
	int sfd, ret;

	if (!rst_inet_probe(p, &id))
		return 0;
	ret = rst_inet_refuse(p, why, wl);
	if (!ret && carried(id.state) && !carry_conns) {
		char name[160] = "";

		sfd = rst_inet_getfd(p->pid, p->fd);
		if (sfd >= 0) {
			rst_inet_name_fd(sfd, name, sizeof(name));
			close(sfd);
		}
		snprintf(why, wl,
			 "fd %d: %s is a TCP connection (%s), and the engine did not ask to carry "
			 "connections: checkpoint with --tcp-established (it keeps the network "
			 "locked until the restore), or close it first",
			 p->fd, name[0] ? name : "a TCP socket", rst_tcp_state_name(id.state));
		return -EOPNOTSUPP;
	}
	if (ret || carried(id.state) || id.state == TCP_CLOSE)
		return ret;
	sfd = rst_inet_getfd(p->pid, p->fd);
	if (sfd < 0)
		return sfd;
	ret = tcp_refuse_fd(p, sfd, id.state, why, wl);
	close(sfd);
	return ret;
}

static int set_int(int sfd, int level, int name, int v)
{
	return setsockopt(sfd, level, name, &v, sizeof(v)) < 0 ? -errno : 0;
}

/*
 * Sequence number, length and bytes of queue @q (TCP_RECV_QUEUE or
 * TCP_SEND_QUEUE); @fin: the send queue ends with our FIN, counted by
 * SIOCOUTQ (and SIOCOUTQNSD while unsent) but holding no byte.
 */
static int dump_queue(int sfd, int q, uint32_t *seq, ProtobufCBinaryData *data, uint32_t *unsent,
		      int fin, bool *fin_unsent)
{
	socklen_t l = sizeof(*seq);
	int len = 0, nsd = 0;
	ssize_t n;

	if (set_int(sfd, IPPROTO_TCP, TCP_REPAIR_QUEUE, q) ||
	    getsockopt(sfd, IPPROTO_TCP, TCP_QUEUE_SEQ, seq, &l) < 0)
		return -errno;
	if (ioctl(sfd, q == TCP_RECV_QUEUE ? SIOCINQ : SIOCOUTQ, &len) < 0)
		return -errno;
	if (q == TCP_SEND_QUEUE && ioctl(sfd, SIOCOUTQNSD, &nsd) < 0)
		return -errno;
	if (len < 0 || nsd < 0 || nsd > len || len < fin)
		return -EIO;
	len -= fin;
	if (fin_unsent)
		*fin_unsent = fin && nsd;
	if (nsd)
		nsd -= fin;
	if (unsent)
		*unsent = (uint32_t)nsd;
	data->len = 0;
	data->data = malloc(len ? (size_t)len : 1);
	if (!data->data)
		return -ENOMEM;
	n = len ? recv(sfd, data->data, (size_t)len, MSG_PEEK | MSG_DONTWAIT) : 0;
	if (n != len)
		return n < 0 ? -errno : -EIO;
	data->len = (size_t)len;
	return 0;
}

/* The repair-mode state of established @sfd into a new message *@out. */
static int dump_repair(int sfd, Haul__Img__TcpRepair **out)
{
	struct repair_window w;
	struct tcp_info ti;
	Haul__Img__TcpRepair *r;
	bool fin_unsent = false;
	socklen_t l;
	int mss = 0, ret;

	r = malloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	haul__img__tcp_repair__init(r);
	*out = r;
	l = sizeof(ti);
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(sfd, IPPROTO_TCP, TCP_INFO, &ti, &l) < 0)
		return -errno;
	if (!carried(ti.tcpi_state))
		return -EAGAIN; /* changed since it was classified: the caller names it */
	r->state = ti.tcpi_state;
	r->options = ti.tcpi_options;
	if (ti.tcpi_options & TCPI_OPT_WSCALE) {
		r->has_snd_wscale = r->has_rcv_wscale = true;
		r->snd_wscale = ti.tcpi_snd_wscale;
		r->rcv_wscale = ti.tcpi_rcv_wscale;
	}
	l = sizeof(mss);
	if (getsockopt(sfd, IPPROTO_TCP, TCP_MAXSEG, &mss, &l) < 0)
		return -errno;
	r->mss = (uint32_t)mss;
	if (ti.tcpi_options & TCPI_OPT_TIMESTAMPS) {
		l = sizeof(r->timestamp);
		if (getsockopt(sfd, IPPROTO_TCP, TCP_TIMESTAMP, &r->timestamp, &l) < 0)
			return -errno;
		r->has_timestamp = true;
	}
	l = sizeof(w);
	if (getsockopt(sfd, IPPROTO_TCP, TCP_REPAIR_WINDOW, &w, &l) < 0)
		return -errno;
	r->snd_wl1 = w.snd_wl1;
	r->snd_wnd = w.snd_wnd;
	r->max_window = w.max_window;
	r->rcv_wnd = w.rcv_wnd;
	r->rcv_wup = w.rcv_wup;
	ret = dump_queue(sfd, TCP_RECV_QUEUE, &r->rcv_seq, &r->recv_queue, NULL, 0, NULL);
	if (!ret)
		ret = dump_queue(sfd, TCP_SEND_QUEUE, &r->snd_seq, &r->send_queue, &r->unsent,
				 fin_unacked(ti.tcpi_state), &fin_unsent);
	set_int(sfd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE);
	if (ret)
		return ret;
	/*
	 * Half-closed: rcv_seq counts the peer's FIN (restored by shutdown
	 * SHUT_RD, nothing sent); snd_seq is made to stop before ours, which is
	 * queued again by shutdown SHUT_WR: in repair mode when it was sent,
	 * after the unsent bytes when it was not.
	 */
	r->has_peer_fin = r->has_fin = r->has_fin_sent = true;
	r->peer_fin = peer_fin(ti.tcpi_state);
	r->fin = our_fin(ti.tcpi_state);
	r->fin_sent = r->fin && !fin_unsent;
	if (r->fin)
		r->snd_seq--;
	return 0;
}

/* Whether socket @ino is held already: dumped through another fd or process. */
static bool held_already(ino_t ino)
{
	for (size_t i = 0; i < nheld; i++)
		if (held[i].ino == ino)
			return true;
	return false;
}

/* Keep @sfd (in repair mode) until rst_tcp_hold_end(). */
static int hold(int sfd, int reuse, ino_t ino)
{
	if (nheld == capheld) {
		size_t nc = capheld ? capheld * 2 : 16;
		struct tcp_held *a = realloc(held, nc * sizeof(*a));

		if (!a)
			return -ENOMEM;
		held = a;
		capheld = nc;
	}
	held[nheld].sfd = sfd;
	held[nheld].ino = ino;
	held[nheld++].reuse = reuse;
	return 0;
}

void rst_tcp_hold_end(bool resume)
{
	for (size_t i = 0; i < nheld; i++) {
		int sfd = held[i].sfd;

		/* Out of repair mode (a window probe tells the peer we are here), reuse back. */
		if (resume && (set_int(sfd, IPPROTO_TCP, TCP_REPAIR, REPAIR_OFF) ||
			       set_int(sfd, SOL_SOCKET, SO_REUSEADDR, held[i].reuse)))
			pr_err("cannot take a TCP socket of the source out of repair mode: %s; "
			       "its connection is stuck (the process must reconnect)",
			       strerror(errno));
		close(sfd);
	}
	nheld = 0;
	injlog_tcp_done(); /* none left for a survivor to take out of repair mode */
}

static int tcp_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
		    Haul__Img__FileObject *const *prev, size_t nprev)
{
	struct tcp_info ti;
	char why[400];
	int sfd, ret, reuse = 0, v;

	(void)prev;
	(void)nprev;
	sfd = rst_inet_dump_probe(p, o);
	if (sfd < 0)
		return sfd;
	memset(&ti, 0, sizeof(ti));
	getsockopt(sfd, IPPROTO_TCP, TCP_INFO, &ti, &(socklen_t){sizeof(ti)});
	/*
	 * Not carried, or the same socket as an fd dumped before (a dup, or a
	 * tree's earlier process: fork): that FileObject is the one kept
	 * (fd_dump.c, tree_share.c), and a second repair-mode dump would read
	 * the forced SO_REUSEADDR of repair mode as the socket's own.
	 */
	if (ti.tcpi_state == TCP_CLOSE && !held_already(p->st->st_ino)) {
		ret = rst_tcp_closed_dump(sfd, o->inet); /* fd_tcp_closed.c */
		close(sfd);
		return ret;
	}
	if (!carried(ti.tcpi_state) || held_already(p->st->st_ino)) {
		close(sfd);
		return 0;
	}
	/* Its buffers as they are (autotuned or set): the queues restored must fit. */
	if (getsockopt(sfd, SOL_SOCKET, SO_SNDBUF, &v, &(socklen_t){sizeof(v)}) == 0) {
		o->inet->has_sndbuf = true;
		o->inet->sndbuf = (uint32_t)v;
	}
	if (getsockopt(sfd, SOL_SOCKET, SO_RCVBUF, &v, &(socklen_t){sizeof(v)}) == 0) {
		o->inet->has_rcvbuf = true;
		o->inet->rcvbuf = (uint32_t)v;
	}
	getsockopt(sfd, SOL_SOCKET, SO_REUSEADDR, &reuse, &(socklen_t){sizeof(reuse)});
	/* before: a dumper killed from here on leaves the socket to its survivor */
	if (hold_cb)
		hold_cb(hold_arg, p->pid, p->fd, reuse);
	if (set_int(sfd, IPPROTO_TCP, TCP_REPAIR, REPAIR_ON)) {
		ret = -errno;
		pr_err("cannot put fd %d of pid %d in TCP repair mode: %s (haul needs "
		       "CAP_NET_ADMIN in the socket's network namespace)",
		       p->fd, (int)p->pid, strerror(-ret));
		close(sfd);
		return ret;
	}
	ret = hold(sfd, reuse, p->st->st_ino);
	if (ret) {
		set_int(sfd, IPPROTO_TCP, TCP_REPAIR, REPAIR_OFF);
		close(sfd);
		return ret;
	}
	ret = dump_repair(sfd, &o->inet->tcp);
	if (ret == -EAGAIN) {
		getsockopt(sfd, IPPROTO_TCP, TCP_INFO, &ti, &(socklen_t){sizeof(ti)});
		tcp_refuse_fd(p, sfd, ti.tcpi_state, why, sizeof(why));
		pr_err("%s", why);
		return -EOPNOTSUPP;
	}
	if (ret)
		pr_err("cannot read the TCP state of fd %d of pid %d: %s", p->fd, (int)p->pid,
		       strerror(-ret));
	return ret;
}

/* Write @len bytes of @d into queue @q of @sfd (repair mode) or, @q < 0, as a program would. */
static int fill(int sfd, int q, const uint8_t *d, size_t len)
{
	if (q >= 0 && set_int(sfd, IPPROTO_TCP, TCP_REPAIR_QUEUE, q))
		return -errno;
	for (size_t off = 0; off < len;) {
		ssize_t n = send(sfd, d + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		off += (size_t)n;
	}
	return 0;
}

/* Buffers that hold the queues restored (at least what the source had). */
static int size_buffers(int sfd, const Haul__Img__InetSocket *s)
{
	const Haul__Img__TcpRepair *r = s->tcp;
	size_t snd = s->has_sndbuf ? s->sndbuf / 2 : 0, rcv = s->has_rcvbuf ? s->rcvbuf / 2 : 0;

	/* An skb's truesize is about twice its payload at worst. */
	if (snd < r->send_queue.len * 2 + 65536)
		snd = r->send_queue.len * 2 + 65536;
	if (rcv < r->recv_queue.len * 2 + 65536)
		rcv = r->recv_queue.len * 2 + 65536;
	if (set_int(sfd, SOL_SOCKET, SO_SNDBUFFORCE, (int)snd) ||
	    set_int(sfd, SOL_SOCKET, SO_RCVBUFFORCE, (int)rcv))
		return -errno;
	return 0;
}

static int repair_options(int sfd, const Haul__Img__TcpRepair *r)
{
	struct tcp_repair_opt o[4];
	int n = 0;

	o[n].opt_code = TCPOPT_MAXSEG;
	o[n++].opt_val = r->mss;
	if (r->options & TCPI_OPT_WSCALE) {
		o[n].opt_code = TCPOPT_WINDOW;
		o[n++].opt_val = r->snd_wscale | (r->rcv_wscale << 16);
	}
	if (r->options & TCPI_OPT_SACK) {
		o[n].opt_code = TCPOPT_SACK_PERMITTED;
		o[n++].opt_val = 0;
	}
	if (r->options & TCPI_OPT_TIMESTAMPS) {
		o[n].opt_code = TCPOPT_TIMESTAMP;
		o[n++].opt_val = 0;
	}
	if (setsockopt(sfd, IPPROTO_TCP, TCP_REPAIR_OPTIONS, o, n * sizeof(o[0])) < 0)
		return -errno;
	if (r->has_timestamp && set_int(sfd, IPPROTO_TCP, TCP_TIMESTAMP, (int)r->timestamp))
		return -errno;
	return 0;
}

/* The connection of @s on @sfd, in repair mode, then out of it. */
/* SO_REUSEADDR as carried (leaving repair mode cleared it). */
static int reuse_again(int sfd, const Haul__Img__InetSocket *s)
{
	int v;

	return rst_inet_carried_opt(s, SOL_SOCKET, SO_REUSEADDR, &v)
		       ? set_int(sfd, SOL_SOCKET, SO_REUSEADDR, v)
		       : 0;
}

static int restore_conn(int sfd, const Haul__Img__InetSocket *s, const char **step)
{
	const Haul__Img__TcpRepair *r = s->tcp;
	struct repair_window w = {r->snd_wl1, r->snd_wnd, r->max_window, r->rcv_wnd, r->rcv_wup};
	size_t sent = r->send_queue.len - r->unsent;
	int ret;

	*step = "repair mode";
	if (set_int(sfd, IPPROTO_TCP, TCP_REPAIR, REPAIR_ON))
		return -errno;
	*step = "sequence numbers";
	if (set_int(sfd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE) ||
	    set_int(sfd, IPPROTO_TCP, TCP_QUEUE_SEQ, (int)(r->rcv_seq - r->recv_queue.len)) ||
	    set_int(sfd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE) ||
	    set_int(sfd, IPPROTO_TCP, TCP_QUEUE_SEQ, (int)(r->snd_seq - r->send_queue.len)))
		return -errno;
	*step = "bind (is the address on this host?)";
	ret = rst_inet_bind(sfd, s);
	if (ret)
		return ret;
	*step = "connect in repair mode";
	ret = rst_inet_connect(sfd, s);
	if (ret)
		return ret;
	*step = "TCP options";
	ret = repair_options(sfd, r);
	if (!ret) {
		*step = "buffer sizes";
		ret = size_buffers(sfd, s);
	}
	if (!ret) {
		*step = "receive queue";
		ret = fill(sfd, TCP_RECV_QUEUE, r->recv_queue.data, r->recv_queue.len);
	}
	if (!ret) {
		*step = "send queue";
		ret = fill(sfd, TCP_SEND_QUEUE, r->send_queue.data, sent);
	}
	/* Our FIN, sent: queued as sent in repair mode (tcp_write_xmit skips the wire). */
	if (!ret && r->fin && r->fin_sent) {
		*step = "our FIN";
		if (shutdown(sfd, SHUT_WR) < 0)
			ret = -errno;
	}
	if (ret)
		return ret;
	*step = "window";
	if (setsockopt(sfd, IPPROTO_TCP, TCP_REPAIR_WINDOW, &w, sizeof(w)) < 0)
		return -errno;
	/* a peer on this host may not exist yet: the rest once every process is ready */
	*step = "keeping it for the end of the restore";
	ret = rst_tcp_defer(sfd, s);
	if (ret)
		return ret < 0 ? ret : 0;
	ret = rst_tcp_leave_repair(sfd, s, step);
	return ret ? ret : rst_tcp_after_repair(sfd, s, step);
}

int rst_tcp_leave_repair(int sfd, const Haul__Img__InetSocket *s, const char **step)
{
	*step = "leaving repair mode";
	if (set_int(sfd, IPPROTO_TCP, TCP_REPAIR, REPAIR_OFF))
		return -errno;
	*step = "options";
	return reuse_again(sfd, s);
}

int rst_tcp_after_repair(int sfd, const Haul__Img__InetSocket *s, const char **step)
{
	const Haul__Img__TcpRepair *r = s->tcp;
	size_t sent = r->send_queue.len - r->unsent;
	int ret;

	*step = "unsent bytes";
	ret = fill(sfd, -1, r->send_queue.data + sent, r->unsent);
	/* Our FIN not sent yet: it follows the unsent bytes, as it would have. */
	if (!ret && r->fin && !r->fin_sent && shutdown(sfd, SHUT_WR) < 0)
		ret = -errno;
	/* The peer's FIN: reads end after the queue (rcv_nxt already counts it). */
	if (!ret && r->peer_fin && shutdown(sfd, SHUT_RD) < 0)
		ret = -errno;
	if (ret == -ECONNRESET || ret == -EPIPE || ret == -ENOTCONN) {
		char name[160];

		/* a network event the program handles, not a failed restore */
		rst_inet_name(s, name, sizeof(name));
		pr_warn("%s was reset by its peer as it came back (did its segments reach this "
			"host while the process was gone, with no network lock?); the program "
			"finds it closed",
			name);
		ret = 0;
	}
	return ret;
}

int rst_tcp_steps(int sfd, const Haul__Img__InetSocket *s, const char **step)
{
	int ret;

	if (s->tcp) {
		ret = restore_conn(sfd, s, step);
	} else {
		*step = "bind";
		ret = rst_inet_bind(sfd, s);
		if (!ret)
			*step = "shutdown";
		if (!ret)
			ret = rst_inet_shutdown(sfd, s); /* a closed one (fd_tcp_closed.c) */
	}
	if (ret)
		return ret;
	*step = "options";
	return reuse_again(sfd, s);
}

const struct rst_fd_ops rst_fd_tcp = {
	.name = "TCP socket",
	.kind = HAUL__IMG__FD_KIND__FD_TCP,
	.version = 6, /* 6: SO_RCVTIMEO, SO_SNDTIMEO (sock_timeo.c) */
	.match = tcp_match,
	.refuse = tcp_refuse,
	.validate = rst_inet_validate,
	.dump = tcp_dump,
	.restore = rst_inet_restore,
	.setup = rst_fd_set_nonblock,
};
