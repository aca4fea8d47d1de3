/*
 * fd_inet.h - private to src/restore: what the AF_INET/AF_INET6 socket kinds
 * (fd_inet_listen.c, fd_tcp.c, fd_udp.c) share, in fd_inet.c.
 *
 * Dump side: the socket is read on a pidfd_getfd copy (the same socket:
 * getsockopt, getsockname and TCP_REPAIR on the copy act on the process's
 * socket; closing the copy drops one reference only).  Restore side: the
 * socket is created in the stub by one injected socket(), so it belongs to
 * the stub's network namespace, and haul takes a pidfd_getfd copy of it to
 * do everything else (bind, options, repair, queues) with plain calls.
 */
#ifndef HAUL_RESTORE_FD_INET_H
#define HAUL_RESTORE_FD_INET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "restore/fd_int.h"

/* What a socket fd is, from getsockopt on a copy. */
struct rst_inet_id {
	int family, type, protocol;
	bool listening; /* SO_ACCEPTCONN */
	int state;	/* TCP: tcpi_state (TCP_ESTABLISHED 1, ..., TCP_LISTEN 10); else 0 */
};

/*
 * The socket of probe @p: true with *@id filled when it is an AF_INET or
 * AF_INET6 socket.
 */
bool rst_inet_probe(const struct rst_fd_probe *p, struct rst_inet_id *id);

/* A copy of fd @fd of @pid (pidfd_getfd): the fd, or -errno (-ENOENT: closed since). */
int rst_inet_getfd(pid_t pid, int fd);

/*
 * "TCP 198.18.0.100:6379 <- 198.18.0.3:51234", "TCPv6 [::]:80",
 * "UDP 0.0.0.0:53" for socket @s into @buf.
 */
void rst_inet_name(const Haul__Img__InetSocket *s, char *buf, size_t len);
/* The same for live socket @sfd, before anything is dumped. */
void rst_inet_name_fd(int sfd, char *buf, size_t len);

/*
 * The precheck of every inet kind: 0, or -EOPNOTSUPP with @why naming fd and
 * socket for what no kind carries (an eBPF socket filter).
 */
int rst_inet_refuse(const struct rst_fd_probe *p, char *why, size_t wl);
/* The name of TCP state @state ("SYN_RECV"). */
const char *rst_tcp_state_name(int state);

/*
 * Dump what every kind has (family, type, protocol, addresses, options that
 * differ from a new socket's, SO_LINGER, buffer sizes) of socket @sfd into
 * a new message *@out (free with rst_inet_free).  0 or -errno.
 */
int rst_inet_dump(int sfd, Haul__Img__InetSocket **out);
/*
 * The dump hook's start for the three kinds: rst_inet_dump of @p's fd into
 * @o->inet, read on a pidfd_getfd copy.  The copy (close it), or -errno
 * with no copy left open.
 */
int rst_inet_dump_probe(const struct rst_fd_probe *p, Haul__Img__FileObject *o);
/* Free a message built by rst_inet_dump (and what the kinds added). NULL is a no-op. */
void rst_inet_free(Haul__Img__InetSocket *s);

/*
 * Restore: create socket @s in the stub (injected socket()): *@remote the
 * stub's fd, *@local haul's copy of it (close it).  0 or -errno.
 */
int rst_inet_create(struct rst_target *t, const Haul__Img__InetSocket *s, int *remote, int *local);
/*
 * Set @s's options on @sfd: @early, those that must precede bind()
 * (SO_REUSEADDR/PORT, IPV6_V6ONLY, IP_FREEBIND, IP_TRANSPARENT); else the
 * others, SO_LINGER and, with @bufs, the buffer sizes.  0 or -errno.
 */
int rst_inet_set_opts(int sfd, const Haul__Img__InetSocket *s, bool early, bool bufs);
/* Whether @s carries option @level/@name (one the source changed), its value in *@value. */
bool rst_inet_carried_opt(const Haul__Img__InetSocket *s, int level, int name, int *value);

/* bind() @sfd to @s's local address, connect() it to its peer.  0 or -errno. */
int rst_inet_bind(int sfd, const Haul__Img__InetSocket *s);
int rst_inet_connect(int sfd, const Haul__Img__InetSocket *s);

/*
 * The restore hook of the three kinds: create @f's socket in the stub
 * (*@tmp its fd there), set the early options, then the kind's steps (a
 * connection's repair or a bind: rst_tcp_steps; bind and listen; bind and
 * connect), then the others (the buffer sizes but for a repaired
 * connection), and log which step failed for fd @e.  0 or -errno.
 */
int rst_inet_restore(struct rst_target *t, struct rst_fd_rctx *x, const Haul__Img__FileObject *f,
		     const Haul__Img__FdEntry *e, const char *path, int *tmp, bool *shared);
/*
 * fd_tcp.c: the TCP kind's steps on haul's copy @sfd: a connection's
 * repair, or a plain socket's bind; then SO_REUSEADDR again.  0 or -errno
 * with *@step naming the step that failed.
 */
int rst_tcp_steps(int sfd, const Haul__Img__InetSocket *s, const char **step);
/*
 * fd_tcp.c: the end of a connection's repair, on @sfd with its window set:
 * rst_tcp_leave_repair (TCP_REPAIR off, SO_REUSEADDR again), then
 * rst_tcp_after_repair (the never-sent bytes, our FIN after them, the
 * peer's FIN).  0 or -errno with *@step.
 */
int rst_tcp_leave_repair(int sfd, const Haul__Img__InetSocket *s, const char **step);
int rst_tcp_after_repair(int sfd, const Haul__Img__InetSocket *s, const char **step);
/*
 * fd_tcp_local.c: rst_tcp_defer keeps a copy of @sfd and of @s when the
 * peer is on this host (1), for rst_tcp_deferred_finish (target_resume.c,
 * before the first process of the restore runs: every socket of it
 * exists); 0: not deferred, finish it now; -errno.  The list is this
 * thread's (one restore); rst_tcp_deferred_drop forgets it (a failed
 * restore).  rst_tcp_deferred_finish: 0 or -errno with @why naming the
 * connection.  rst_tcp_defer_all(@lock): every connection of this
 * thread's restore is deferred, whatever its peer, and the checkpoint's
 * network lock @lock is lifted first thing at the finish (ckpt_lock.c);
 * NULL: back to connections whose peer is here.
 */
int rst_tcp_defer(int sfd, const Haul__Img__InetSocket *s);
/* The same list: set option @level/@name of (a copy of) @sfd to @value then.  0 or -errno. */
int rst_sock_defer_opt(int sfd, int level, int name, int value);
/* The same with an option value of @len bytes at @v (a timeval, a linger; at most 16). */
int rst_sock_defer_optval(int sfd, int level, int name, const void *v, socklen_t len);
/* The same list: shutdown(a copy of @sfd, @how) then (ENOTCONN ignored).  0 or -errno. */
int rst_sock_defer_shutdown(int sfd, int how);
int rst_tcp_deferred_finish(char *why, size_t wl);
void rst_tcp_deferred_drop(void);
void rst_tcp_defer_all(const char *lock);

/*
 * The validate hook of the three kinds: @f's inet part is a socket this
 * haul can make (known family, type and protocol, the kind's, addresses of
 * the family's length, bounded queues).  0, or -EBADMSG with @why naming
 * the file.
 */
int rst_inet_validate(const Haul__Img__FileObject *f, char *why, size_t wl);

/*
 * fd_inet_nonlocal.c: rst_inet_dump_nonlocal marks @s bound_nonlocal when
 * its address is not in @sfd's network namespace and nothing lets it bind
 * there now (0 or -errno); rst_inet_bind_nonlocal turns IP_FREEBIND @on
 * for such a socket around its bind (0 or -errno).  rst_inet_sockaddr
 * (fd_inet.c): @addr, @port, @scope as a sockaddr of @family; its length.
 */
int rst_inet_dump_nonlocal(int sfd, Haul__Img__InetSocket *s);
/* @fn(@arg) run by this thread in @sfd's network namespace (SIOCGSKNS); its return or -errno. */
int rst_inet_in_netns(int sfd, int (*fn)(void *arg), void *arg);
/* The same in the network namespace of fd @ns (an nsfs file: /proc/PID/ns/net, a bind of it). */
int rst_netns_run(int ns, int (*fn)(void *arg), void *arg);
int rst_inet_bind_nonlocal(int sfd, const Haul__Img__InetSocket *s, bool on);
socklen_t rst_inet_sockaddr(int family, const ProtobufCBinaryData *addr, uint32_t port,
			    uint32_t scope, struct sockaddr_storage *out);

/*
 * fd_tcp_closed.c: rst_tcp_closed_dump: a TCP socket in TCP_CLOSE: its
 * shutdown, and whether its port is still its own (else the local address
 * is dropped: not bound again).  rst_inet_shutdown: shutdown() of a UDP or
 * closed TCP socket @sfd as @s carries it.  Each 0 or -errno.
 */
int rst_tcp_closed_dump(int sfd, Haul__Img__InetSocket *s);
int rst_inet_shutdown(int sfd, const Haul__Img__InetSocket *s);
/*
 * fd_inet_diag.c: whether inet_diag lists socket @sfd among the sockets of
 * @family and @proto in @states (a mask of 1 << TCP state) of its network
 * namespace: 1 (*@how: its INET_DIAG_SHUTDOWN), 0 not listed, -errno.
 * Asked once per namespace and key per process dump; rst_inet_diag_forget
 * (at the start and end of each rst_dump_fds) drops the answers.
 */
int rst_inet_diag_find(int sfd, int family, int proto, uint32_t states, int *how);
void rst_inet_diag_forget(void);

/* fd_inet_listen.c: connections waiting in the accept queue of listener fd @fd of @pid. */
int rst_tcp_listen_queued(pid_t pid, int fd, uint32_t *queued);

/* fd_inet_listen.c, fd_tcp.c, fd_udp.c */
extern const struct rst_fd_ops rst_fd_tcp_listen, rst_fd_tcp, rst_fd_udp;

/*
 * sock_timeo.c: SO_RCVTIMEO and SO_SNDTIMEO of any socket kind.
 * rst_sock_timeo_dump appends a SockOpt (value 0, usec) for each of @sfd's
 * that is set to @out[*@n...] (room for two), advancing *@n; 0 or -ENOMEM.
 * rst_sock_timeo_is: @o is one of them.  rst_sock_timeo_timeval: @o as a
 * timeval, or -EINVAL.  rst_sock_timeo_set: setsockopt of @o on @sfd; 0 or
 * -errno.  rst_sock_timeo_valid: a `usec` only on them and they always
 * with one, bounded; 0, or -EBADMSG with @why naming file @file.
 */
/*
 * sock_mcast.c: the multicast groups of UDP socket @sfd of @pid into
 * s->mc (0 or -errno); joined again on @sfd (0, or -errno with @why
 * naming group and interface); rst_mcast_valid: 0 or -EBADMSG.
 */
int rst_mcast_dump(pid_t pid, int sfd, Haul__Img__InetSocket *s);
int rst_mcast_restore(int sfd, const Haul__Img__InetSocket *s, char *why, size_t wl);
int rst_mcast_valid(const Haul__Img__InetSocket *s);
/* The namespace's groups are read once per process dump: forgotten by rst_inet_diag_forget. */
void rst_mcast_forget(void);

struct timeval;
int rst_sock_timeo_dump(int sfd, Haul__Img__SockOpt **out, size_t *n);
bool rst_sock_timeo_is(const Haul__Img__SockOpt *o);
int rst_sock_timeo_timeval(const Haul__Img__SockOpt *o, struct timeval *tv);
int rst_sock_timeo_set(int sfd, const Haul__Img__SockOpt *o);
int rst_sock_timeo_valid(const Haul__Img__SockOpt *o, uint32_t file, char *why, size_t wl);

#endif
