/*
 * criu_swrk.c - `criu swrk FD`: CRIU's RPC service, as runc and crun drive
 * it, over the SOCK_SEQPACKET socket FD the engine passed (one datagram per
 * message, no framing; proto/criu_rpc.proto).
 *
 * The engine sends one request; haul answers it, calling the engine back
 * (NOTIFY with a script name; the engine answers NOTIFY + notify_success)
 * in the order CRIU does, and exits after the answer unless the request
 * said keep_open.  Requests:
 *   VERSION        the interface level (criu_int.h) and haul's version;
 *   FEATURE_CHECK  mem_track true (haul's tracker: criu_predump.c),
 *                  lazy_pages false (criu's lazy-pages protocol is
 *                  refused), the rest as asked;
 *   CHECK          success when restored processes can keep their PIDs;
 *   DUMP, RESTORE  criu_ctr.c, after criu_opts_check();
 *   PRE_DUMP       criu_predump.c, after criu_opts_check() (as for DUMP);
 *   anything else  refused: success false, cr_errno and cr_errmsg name it.
 * Options that name files (images_dir_fd, work_dir_fd) are fds of the
 * caller: they are reached through /proc/<peer>/fd/N, the peer from
 * SO_PEERCRED, as CRIU does.  The log (log_file, in the work directory,
 * else the images directory) receives every message of the request: runc
 * shows its path when a request fails.
 */
#define LOG_PREFIX "criu: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/injlog.h"
#include "common/log.h"
#include "common/probe.h"
#include "haul/criu_int.h"
#include "haul/haul_int.h"
#include "haul_version.h"
#include "restore/restore.h"

static const char *req_name(Haul__Criu__ReqType t)
{
	const ProtobufCEnumValue *v =
		protobuf_c_enum_descriptor_get_value(&haul__criu__req_type__descriptor, (int)t);

	return v ? v->name + 4 : "unknown"; /* "req_dump" -> "dump" */
}

static int send_resp(int fd, const Haul__Criu__Response *r)
{
	size_t len = haul__criu__response__get_packed_size(r);
	uint8_t *buf = malloc(len ? len : 1);
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	haul__criu__response__pack(r, buf);
	n = send(fd, buf, len, MSG_NOSIGNAL);
	free(buf);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EMSGSIZE;
}

/* One request from @fd (NULL and 0 at EOF). 0 or -errno. */
static int recv_req(int fd, Haul__Criu__Request **out)
{
	ssize_t len = recv(fd, NULL, 0, MSG_PEEK | MSG_TRUNC);
	uint8_t *buf;

	*out = NULL;
	if (len < 0)
		return -errno;
	if (len == 0)
		return 0;
	if (len > CRIU_REQ_MAX) {
		pr_err("a request of %zd bytes is over the %d-byte limit; the engine's request is "
		       "refused",
		       len, CRIU_REQ_MAX);
		return -EMSGSIZE;
	}
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	if (recv(fd, buf, len, 0) != len) {
		free(buf);
		return -EIO;
	}
	*out = haul__criu__request__unpack(NULL, len, buf);
	free(buf);
	if (!*out) {
		pr_err("a request of %zd bytes does not decode as a criu RPC request", len);
		return -EBADMSG;
	}
	if (!(*out)->has_type) {
		pr_err("a criu RPC request has no type");
		haul__criu__request__free_unpacked(*out, NULL);
		*out = NULL;
		return -EBADMSG;
	}
	return 0;
}

static int reply_fail(int fd, Haul__Criu__ReqType t, int err, const char *msg)
{
	Haul__Criu__Response r = HAUL__CRIU__RESPONSE__INIT;

	r.has_type = r.has_success = true;
	r.type = t;
	r.success = false;
	r.has_cr_errno = true;
	r.cr_errno = err < 0 ? -err : err;
	r.cr_errmsg = (char *)msg;
	return send_resp(fd, &r);
}

int criu_notify(struct criu_conn *c, const char *script, pid_t pid)
{
	Haul__Criu__Response r = HAUL__CRIU__RESPONSE__INIT;
	Haul__Criu__Callback cb = HAUL__CRIU__CALLBACK__INIT;
	Haul__Criu__Request *ans;
	bool ok;
	int ret;

	if (!c->notify)
		return 0;
	cb.script = (char *)script;
	if (pid > 0) {
		cb.has_pid = true;
		cb.pid = pid;
	}
	r.has_type = r.has_success = true;
	r.type = HAUL__CRIU__REQ_TYPE__REQ_NOTIFY;
	r.success = true;
	r.notify = &cb;
	ret = send_resp(c->fd, &r);
	if (!ret)
		ret = recv_req(c->fd, &ans);
	if (ret) {
		pr_err_r(ret, "cannot call the engine's '%s' hook", script);
		return ret;
	}
	if (!ans) {
		pr_err("the engine closed the connection during its '%s' hook", script);
		return -ECONNRESET;
	}
	ok = ans->type == HAUL__CRIU__REQ_TYPE__REQ_NOTIFY && ans->has_notify_success &&
	     ans->notify_success;
	haul__criu__request__free_unpacked(ans, NULL);
	if (!ok) {
		pr_err("the engine's '%s' hook failed (see the engine's messages)", script);
		return -ECANCELED;
	}
	pr_debug("the engine ran its '%s' hook", script);
	return 0;
}

static int do_version(int fd)
{
	Haul__Criu__Response r = HAUL__CRIU__RESPONSE__INIT;
	Haul__Criu__Version v = HAUL__CRIU__VERSION__INIT;
	char gitid[128];

	snprintf(gitid, sizeof(gitid), "haul-%s%s%s", HAUL_VERSION, HAUL_GIT[0] ? "-" : "",
		 HAUL_GIT);
	v.has_major = v.has_minor = v.has_sublevel = true;
	v.major = CRIU_COMPAT_MAJOR;
	v.minor = CRIU_COMPAT_MINOR;
	v.sublevel = 0;
	v.gitid = gitid;
	v.name = "haul";
	r.has_type = r.has_success = true;
	r.type = HAUL__CRIU__REQ_TYPE__REQ_VERSION;
	r.success = true;
	r.version = &v;
	return send_resp(fd, &r);
}

/* Every feature asked is answered; only what haul really does is true. */
static int do_features(int fd, const Haul__Criu__Request *q)
{
	Haul__Criu__Response r = HAUL__CRIU__RESPONSE__INIT;
	Haul__Criu__Features f = HAUL__CRIU__FEATURES__INIT;

	if (q->features) {
		/* pre-dump rounds: haul's tracker daemon; criu's lazy-pages daemon is refused */
		f.has_mem_track = q->features->has_mem_track;
		f.mem_track = true;
		f.has_lazy_pages = q->features->has_lazy_pages;
		f.has_pidfd_store = q->features->has_pidfd_store;
	}
	r.has_type = r.has_success = true;
	r.type = HAUL__CRIU__REQ_TYPE__REQ_FEATURE_CHECK;
	r.success = true;
	r.features = &f;
	return send_resp(fd, &r);
}

static int do_check(int fd)
{
	Haul__Criu__Response r = HAUL__CRIU__RESPONSE__INIT;

	if (!probe_clone3_set_tid())
		return reply_fail(fd, HAUL__CRIU__REQ_TYPE__REQ_CHECK, EOPNOTSUPP,
				  "clone3 with set_tid does not work here: restored processes "
				  "cannot keep their PIDs");
	r.has_type = r.has_success = true;
	r.type = HAUL__CRIU__REQ_TYPE__REQ_CHECK;
	r.success = true;
	return send_resp(fd, &r);
}

/* The caller's fd @num as a directory of ours (O_PATH). -errno on failure. */
static int peer_dir(pid_t peer, int num, const char *what)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)peer, num);
	fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		fd = -errno;
		pr_err_r(fd, "cannot reach the %s (fd %d of pid %d)", what, num, (int)peer);
	}
	return fd;
}

/*
 * Send our messages to the request's log file (no '/' allowed, as for
 * CRIU) in @wdir.  Our stderr stays the engine's when there is no log file.
 */
static void open_log(int wdir, const char *name)
{
	int fd;

	if (!name || !name[0] || strchr(name, '/') || wdir < 0)
		return;
	fd = openat(wdir, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	dup2(fd, STDERR_FILENO);
	close(fd);
}

/*
 * A DUMP: its injected calls journaled, so that a criu killed in the middle
 * (the engine's timeout, ^C on `runc checkpoint`, the OOM killer) leaves a
 * survivor that puts the process back and continues it (injlog.h), and its
 * connections' repair mode undone.  PRE_DUMP injects in its tracker daemon,
 * which journals its own (trackd.c).
 */
static int dump_journaled(struct criu_conn *c, const Haul__Criu__Options *o, int img, int wdir)
{
	int ret = injlog_open(getenv("HAUL_FAULT"), haul_reg_dir());

	if (ret) {
		pr_err_r(ret, "cannot start the injection journal for pid %d; nothing was touched",
			 o->pid);
		return ret;
	}
	rst_tcp_hold_watch(injlog_tcp_held, NULL);
	ret = criu_ctr_dump(c, o, img, wdir);
	rst_tcp_hold_watch(NULL, NULL);
	injlog_close();
	return ret;
}

/* DUMP, PRE_DUMP and RESTORE: the options first, then the work (criu_ctr.c, criu_predump.c). */
static int do_ckpt(struct criu_conn *c, pid_t peer, const Haul__Criu__Request *q)
{
	Haul__Criu__Response r = HAUL__CRIU__RESPONSE__INIT;
	Haul__Criu__DumpResult dr = HAUL__CRIU__DUMP_RESULT__INIT;
	Haul__Criu__RestoreResult rr = HAUL__CRIU__RESTORE_RESULT__INIT;
	const Haul__Criu__Options *o = q->opts;
	int img = -1, wdir = -1, ret;
	char why[1024] = "";
	pid_t pid = 0;

	if (!o || !o->has_images_dir_fd)
		return reply_fail(c->fd, q->type, EINVAL, "the request has no images_dir_fd");
	img = peer_dir(peer, o->images_dir_fd, "images directory");
	if (img < 0)
		return reply_fail(c->fd, q->type, -img, "cannot open images_dir_fd");
	wdir = o->has_work_dir_fd ? peer_dir(peer, o->work_dir_fd, "work directory") : img;
	if (wdir < 0)
		wdir = img; /* logged; the log and stats-dump go with the images */
	open_log(wdir, o->log_file);
	pr_info("haul %s serves the criu %s request of pid %d", HAUL_VERSION, req_name(q->type),
		(int)peer);
	c->notify = o->has_notify_scripts && o->notify_scripts;
	ret = criu_opts_check(q->type, o, why, sizeof(why));
	if (ret) {
		pr_err("%s; nothing was touched", why);
		goto fail;
	}
	if (q->type == HAUL__CRIU__REQ_TYPE__REQ_DUMP)
		ret = dump_journaled(c, o, img, wdir);
	else if (q->type == HAUL__CRIU__REQ_TYPE__REQ_PRE_DUMP)
		ret = criu_predump(c, o, img, wdir);
	else
		ret = criu_ctr_restore(c, o, img, wdir, &pid);
	if (ret) {
		snprintf(why, sizeof(why), "haul's %s failed (%s); its messages are in the log",
			 req_name(q->type), strerror(-ret));
		goto fail;
	}
	r.has_type = r.has_success = true;
	r.type = q->type;
	r.success = true;
	if (q->type == HAUL__CRIU__REQ_TYPE__REQ_DUMP) {
		dr.has_restored = true; /* false: the process was not restored after the dump */
		r.dump = &dr;
	} else if (q->type == HAUL__CRIU__REQ_TYPE__REQ_RESTORE) {
		rr.has_pid = true;
		rr.pid = pid;
		r.restore = &rr;
	}
	ret = send_resp(c->fd, &r);
	goto out;
fail:
	reply_fail(c->fd, q->type, ret, why);
out:
	if (wdir >= 0 && wdir != img)
		close(wdir);
	close(img);
	return ret;
}

int criu_swrk(int fd)
{
	struct criu_conn c = {fd, false};
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	bool more = true;
	int ret = 0;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
		ret = -errno;
		pr_err_r(ret, "fd %d is not the engine's socket", fd);
		return ret;
	}
	while (more && !ret) {
		Haul__Criu__Request *q;
		char why[256];

		ret = recv_req(fd, &q);
		if (ret || !q)
			break;
		more = q->has_keep_open && q->keep_open;
		switch (q->type) {
		case HAUL__CRIU__REQ_TYPE__REQ_VERSION:
			ret = do_version(fd);
			break;
		case HAUL__CRIU__REQ_TYPE__REQ_FEATURE_CHECK:
			ret = do_features(fd, q);
			break;
		case HAUL__CRIU__REQ_TYPE__REQ_CHECK:
			ret = do_check(fd);
			break;
		case HAUL__CRIU__REQ_TYPE__REQ_DUMP:
		case HAUL__CRIU__REQ_TYPE__REQ_PRE_DUMP:
		case HAUL__CRIU__REQ_TYPE__REQ_RESTORE:
			ret = do_ckpt(&c, cred.pid, q);
			more = false; /* the log and the process are this request's */
			break;
		default:
			snprintf(why, sizeof(why),
				 "the criu request '%s' is not supported by haul's criu entry "
				 "point",
				 req_name(q->type));
			pr_err("%s", why);
			reply_fail(fd, q->type, EOPNOTSUPP, why);
			ret = -EOPNOTSUPP;
			break;
		}
		haul__criu__request__free_unpacked(q, NULL);
	}
	return ret;
}
