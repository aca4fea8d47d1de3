/*
 * fchan_recv.c - the target's end of the file channel (`haul pageserver
 * --containers DIR`): a listener thread, one thread per connection, and
 * the registry of announced containers that ctr_sink.c restores.
 *
 * A connection authenticates (fchan.c), then BEGIN names the container
 * ID and the migration (session) id: refused when runc here knows the ID
 * already.  Its files land in DIR/<session>/bundle (or, on shared
 * storage, the source's bundle path is used as it is) and
 * DIR/<session>/img.  Every path is resolved beneath its area with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS): a path that leaves the
 * area, or crosses a symlink, is refused; the entry itself is never
 * followed (a symlink is replaced, not written through).  SYNC makes
 * everything durable (syncfs) and answers the first error since the last
 * SYNC, so the source learns before the restore command whether the files
 * arrived.  The registry entry lives while the connection or the page
 * session holds it; the last one out removes DIR/<session> unless the page
 * session committed (then only the images go: the bundle is the
 * container's).  END only says the source is done.
 */
#define LOG_PREFIX "fchan: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "haul/ctr_int.h"
#include "haul/netlock.h"

struct ctr_target haul_ctr_target;
static pthread_mutex_t rx_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ctr_rx *rx_list;
static uint8_t rx_key[WIRE_KEY_LEN];

void ctr_rx_lock(void)
{
	pthread_mutex_lock(&rx_mu);
}

void ctr_rx_unlock(void)
{
	pthread_mutex_unlock(&rx_mu);
}

struct ctr_rx *ctr_rx_get(uint64_t session)
{
	struct ctr_rx *r;

	ctr_rx_lock();
	for (r = rx_list; r && r->session != session; r = r->next)
		;
	if (r)
		r->refs++;
	ctr_rx_unlock();
	return r;
}

static int rm_rf_at(int dfd, const char *name, int depth)
{
	int fd;
	DIR *d;
	struct dirent *de;

	if (!unlinkat(dfd, name, 0) || errno == ENOENT)
		return 0;
	if ((errno != EISDIR && errno != EPERM) || depth > 300)
		return -errno;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rm_rf_at(dirfd(d), de->d_name, depth + 1);
	closedir(d);
	return unlinkat(dfd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

int fchan_rm_rf(int dfd, const char *name)
{
	return rm_rf_at(dfd, name, 0);
}

void ctr_rx_put(struct ctr_rx *r)
{
	struct ctr_rx **pp;
	bool last;

	if (!r)
		return;
	ctr_rx_lock();
	last = --r->refs == 0;
	if (last)
		for (pp = &rx_list; *pp; pp = &(*pp)->next)
			if (*pp == r) {
				*pp = r->next;
				break;
			}
	ctr_rx_unlock();
	if (!last)
		return;
	/*
	 * A committed container keeps its bundle (runc runs it from there),
	 * END or not (a source that died after the commit sends none); its
	 * images are spent.
	 */
	if (r->committed && r->podman) {
		/* podman imported everything into its own storage */
		rm_rf_at(AT_FDCWD, r->dir, 0);
		pr_info("container %s: migrated here, podman's now", r->id);
	} else if (r->committed) {
		rm_rf_at(AT_FDCWD, r->images, 0);
		pr_info("container %s: migrated here, bundle %s", r->id, r->bundle);
	} else {
		rm_rf_at(AT_FDCWD, r->dir, 0);
		pr_info("container %s: migration %016llx did not commit; its files are removed",
			r->id, (unsigned long long)r->session);
	}
	free(r);
}

/* A relative path with no empty, "." or ".." component. */
static bool path_ok(const char *p)
{
	if (!p[0] || p[0] == '/')
		return false;
	for (const char *c = p; *c;) {
		size_t n = strcspn(c, "/");

		if (!n || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		c += n;
		if (*c == '/')
			c++;
		if (!*c && c[-1] == '/')
			return false;
	}
	return true;
}

/* The parent directory of @path beneath @root (O_PATH), and its last component. */
static int open_parent(int root, char *path, const char **base)
{
	struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
			       .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
					  RESOLVE_NO_MAGICLINKS};
	char *slash = strrchr(path, '/');
	long fd;

	if (!slash) {
		*base = path;
		fd = fcntl(root, F_DUPFD_CLOEXEC, 0);
		return fd < 0 ? -errno : (int)fd;
	}
	*slash = '\0';
	*base = slash + 1;
	fd = syscall(SYS_openat2, root, path, &how, sizeof(how));
	*slash = '/';
	return fd < 0 ? -errno : (int)fd;
}

struct conn {
	int fd;
	struct ctr_rx *rx;
	int area[2]; /* dirfds of the bundle and the images */
	int err;     /* the first failure since the last SYNC */
	char errmsg[512];
	uint8_t *buf;
};

static int answer(struct conn *c, int st, const char *msg)
{
	uint8_t a[8];
	size_t len = msg ? strlen(msg) : 0;

	if (len > 1024)
		len = 1024;
	for (int i = 0; i < 4; i++) {
		a[i] = (uint8_t)((uint32_t)st >> (8 * i));
		a[4 + i] = (uint8_t)(len >> (8 * i));
	}
	int ret = fchan_write_all(c->fd, a, sizeof(a));

	return ret ? ret : fchan_write_all(c->fd, msg, len);
}

static void fail_rec(struct conn *c, int err, const char *path)
{
	if (c->err)
		return;
	c->err = err;
	snprintf(c->errmsg, sizeof(c->errmsg), "cannot write %s of container %s: %s", path,
		 c->rx ? c->rx->id : "?", strerror(-err));
	pr_err("%s", c->errmsg);
}

/* The data of a FILE record into @path beneath @root. */
static int put_file(struct conn *c, int root, char *path, const struct fchan_hdr *h)
{
	const char *base;
	int pfd = open_parent(root, path, &base), fd = -1, ret = 0;
	uint64_t left = h->data_len;

	if (pfd >= 0) {
		rm_rf_at(pfd, base, 0);
		fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	}
	if (pfd < 0 || fd < 0)
		ret = pfd < 0 ? pfd : -errno;
	/* the bytes are read off the stream whatever happens to the file */
	while (left) {
		size_t want = left < FCHAN_CHUNK ? (size_t)left : FCHAN_CHUNK;
		int r = fchan_read_all(c->fd, c->buf, want, 60000);

		if (r)
			return r; /* the stream itself broke */
		if (!ret && write(fd, c->buf, want) != (ssize_t)want)
			ret = -EIO;
		left -= want;
	}
	if (!ret && (fchown(fd, h->uid, h->gid) < 0 || fchmod(fd, h->mode & 07777) < 0))
		ret = -errno;
	if (!ret) {
		struct timespec ts[2] = {{0, UTIME_OMIT},
					 {h->mtime_ns / 1000000000, h->mtime_ns % 1000000000}};

		futimens(fd, ts);
	}
	if (fd >= 0)
		close(fd);
	if (pfd >= 0)
		close(pfd);
	if (ret)
		fail_rec(c, ret, path);
	return 0;
}

/* DIR, SYMLINK, DELETE of @path beneath @root (@data: the link's target). */
static void put_other(struct conn *c, int root, char *path, const struct fchan_hdr *h,
		      const char *data)
{
	const char *base;
	int pfd = open_parent(root, path, &base), ret = 0;
	struct stat st;

	if (pfd < 0) {
		if (h->type != FCHAN_DELETE || pfd != -ENOENT)
			fail_rec(c, pfd, path);
		return;
	}
	if (h->type == FCHAN_DELETE) {
		ret = rm_rf_at(pfd, base, 0);
	} else if (h->type == FCHAN_SYMLINK) {
		rm_rf_at(pfd, base, 0);
		if (symlinkat(data, pfd, base) < 0 ||
		    fchownat(pfd, base, h->uid, h->gid, AT_SYMLINK_NOFOLLOW) < 0)
			ret = -errno;
	} else {
		if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode))
			rm_rf_at(pfd, base, 0);
		if (mkdirat(pfd, base, 0700) < 0 && errno != EEXIST)
			ret = -errno;
		if (!ret && (fchownat(pfd, base, h->uid, h->gid, AT_SYMLINK_NOFOLLOW) < 0 ||
			     fchmodat(pfd, base, h->mode & 07777, 0) < 0))
			ret = -errno;
	}
	close(pfd);
	if (ret)
		fail_rec(c, ret, path);
}

/* BEGIN: register the container.  0, or the refusal answered (and returned). */
static int begin(struct conn *c, const char *id, const uint8_t *data, size_t len)
{
	struct ctr_target *t = &haul_ctr_target;
	struct haul_runc_state st;
	struct ctr_rx *r;
	char msg[512];
	int ret;

	if (len < 8 || !haul_ctr_id_ok(id))
		return answer(c, -EINVAL, "a container ID runc accepts is needed"), -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return answer(c, -ENOMEM, NULL), -ENOMEM;
	for (int i = 0; i < 8; i++)
		r->session |= (uint64_t)data[i] << (8 * i);
	snprintf(r->id, sizeof(r->id), "%.127s", id);
	snprintf(r->dir, sizeof(r->dir), "%.3900s/%016llx", t->dir, (unsigned long long)r->session);
	snprintf(r->images, sizeof(r->images), "%.4000s/img", r->dir);
	if (len > 8) {
		r->shared = true;
		snprintf(r->bundle, sizeof(r->bundle), "%.*s", (int)(len - 8), data + 8);
	} else {
		snprintf(r->bundle, sizeof(r->bundle), "%.4000s/bundle", r->dir);
	}
	ret = haul_runc_state(t->runtime, t->root, id, &st);
	if (ret != -ENOENT) {
		snprintf(
			msg, sizeof(msg),
			"%.32s here already has a container %.128s (%.32s); remove it (runc delete) or "
			"migrate under another ID",
			t->runtime, id, ret ? strerror(-ret) : st.status);
		free(r);
		return answer(c, -EEXIST, msg), -EEXIST;
	}
	if (mkdir(r->dir, 0700) < 0 || mkdir(r->images, 0700) < 0 ||
	    (!r->shared && mkdir(r->bundle, 0700) < 0)) {
		ret = -errno;
		snprintf(msg, sizeof(msg), "cannot create %.300s: %s", r->dir, strerror(-ret));
		rm_rf_at(AT_FDCWD, r->dir, 0);
		free(r);
		return answer(c, ret, msg), ret;
	}
	c->area[FCHAN_BUNDLE] = open(r->bundle, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	c->area[FCHAN_IMAGES] = open(r->images, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->area[0] < 0 || c->area[1] < 0) {
		ret = -errno;
		snprintf(msg, sizeof(msg), "cannot open the bundle %.300s: %s", r->bundle,
			 strerror(-ret));
		rm_rf_at(AT_FDCWD, r->dir, 0);
		free(r);
		return answer(c, ret, msg), ret;
	}
	r->refs = 1;
	ctr_rx_lock();
	r->next = rx_list;
	rx_list = r;
	ctr_rx_unlock();
	c->rx = r;
	pr_info("container %s: migration %016llx announced, files into %s", id,
		(unsigned long long)r->session, r->shared ? r->bundle : r->dir);
	return answer(c, 0, NULL);
}

/* One record.  0 to go on, or -errno to close the connection. */
static int serve_rec(struct conn *c)
{
	uint8_t hb[FCHAN_HDR_LEN], data[FCHAN_MAX_PATH + 16];
	char path[FCHAN_MAX_PATH + 1];
	struct fchan_hdr h;
	int ret = fchan_read_all(c->fd, hb, sizeof(hb), -1);

	if (!ret)
		ret = fchan_hdr_decode(hb, &h);
	if (!ret)
		ret = fchan_read_all(c->fd, path, h.path_len, 60000);
	if (ret)
		return ret;
	path[h.path_len] = '\0';
	if (strlen(path) != h.path_len)
		return -EBADMSG;
	if (h.type != FCHAN_FILE) {
		ret = fchan_read_all(c->fd, data, h.data_len, 60000);
		if (ret)
			return ret;
		data[h.data_len] = '\0';
	}
	if (!c->rx)
		return h.type == FCHAN_BEGIN ? begin(c, path, data, h.data_len) : -EPROTO;
	switch (h.type) {
	case FCHAN_BEGIN:
		return -EPROTO;
	case FCHAN_SYNC:
		ret = syncfs(c->area[FCHAN_BUNDLE]) < 0 ? -errno : 0;
		if (!ret && syncfs(c->area[FCHAN_IMAGES]) < 0)
			ret = -errno;
		if (!c->err && ret)
			fail_rec(c, ret, "the files (syncfs)");
		ctr_rx_lock();
		c->rx->synced = !c->err;
		ctr_rx_unlock();
		ret = answer(c, c->err, c->err ? c->errmsg : NULL);
		c->err = 0;
		return ret;
	case FCHAN_END:
		ctr_rx_lock();
		c->rx->ended = true;
		ctr_rx_unlock();
		return 0;
	default:
		break;
	}
	if (!path_ok(path)) {
		fail_rec(c, -EINVAL, path);
		return h.type == FCHAN_FILE ? -EPROTO : 0;
	}
	if (h.type == FCHAN_FILE)
		return put_file(c, c->area[h.area], path, &h);
	put_other(c, c->area[h.area], path, &h, (const char *)data);
	return 0;
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	uint8_t sn[WIRE_NONCE_LEN], cn[WIRE_NONCE_LEN], mac[WIRE_MAC_LEN], want[WIRE_MAC_LEN];
	int ret;

	randombytes_buf(sn, sizeof(sn));
	ret = fchan_write_all(c->fd, sn, sizeof(sn));
	if (!ret)
		ret = fchan_read_all(c->fd, cn, sizeof(cn), 10000);
	if (!ret)
		ret = fchan_read_all(c->fd, mac, sizeof(mac), 10000);
	if (!ret) {
		fchan_mac(rx_key, FCHAN_CTX_C, cn, sn, want);
		if (sodium_memcmp(want, mac, sizeof(mac))) {
			pr_warn("a file channel client failed authentication (another key?)");
			ret = -EACCES;
		}
	}
	if (!ret) {
		fchan_mac(rx_key, FCHAN_CTX_S, cn, sn, want);
		ret = fchan_write_all(c->fd, want, sizeof(want));
	}
	while (!ret)
		ret = serve_rec(c);
	if (ret != -ECONNRESET && c->rx)
		pr_warn("container %s: the file channel closed: %s", c->rx->id, strerror(-ret));
	for (int i = 0; i < 2; i++)
		if (c->area[i] >= 0)
			close(c->area[i]);
	close(c->fd);
	ctr_rx_put(c->rx);
	free(c->buf);
	free(c);
	return NULL;
}

static void *accept_main(void *arg)
{
	int lfd = (int)(intptr_t)arg;

	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		struct conn *c;
		pthread_t th;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE)
				continue;
			pr_err("the file channel stopped accepting: %s", strerror(errno));
			return NULL;
		}
		c = calloc(1, sizeof(*c));
		if (c)
			c->buf = malloc(FCHAN_CHUNK);
		if (!c || !c->buf) {
			free(c);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->area[0] = c->area[1] = -1;
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &(int){1}, sizeof(int));
		if (pthread_create(&th, NULL, conn_main, c)) {
			close(fd);
			free(c->buf);
			free(c);
			continue;
		}
		pthread_detach(th);
	}
	return NULL;
}

static int listen_on(const char *listen_addr, int *out)
{
	char host[256];
	const char *colon = strrchr(listen_addr, ':');
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
	int fd, ret;

	if (!colon || (size_t)(colon - listen_addr) >= sizeof(host))
		return -EINVAL;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - listen_addr), listen_addr);
	if (host[0] == '[') {
		memmove(host, host + 1, strlen(host));
		host[strcspn(host, "]")] = '\0';
	}
	if (getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai))
		return -EINVAL;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ret = fd < 0 ? -errno : 0;
	if (!ret)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int));
	if (!ret && (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 16) < 0))
		ret = -errno;
	freeaddrinfo(ai);
	if (ret && fd >= 0)
		close(fd);
	if (!ret)
		*out = fd;
	return ret;
}

int haul_ctr_target_start(const char *dir, const char *listen_addr, const uint8_t key[WIRE_KEY_LEN],
			  const char *runtime, const char *root)
{
	struct ctr_target *t = &haul_ctr_target;
	char exe[PATH_MAX], link[PATH_MAX + 16];
	pthread_t th;
	ssize_t n;
	int lfd, ret;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		pr_err_r(ret, "cannot create the containers directory %s", dir);
		return ret;
	}
	if (!realpath(dir, t->dir)) {
		ret = -errno;
		pr_err_r(ret, "cannot resolve the containers directory %s", dir);
		return ret;
	}
	snprintf(t->runtime, sizeof(t->runtime), "%s", runtime);
	snprintf(t->root, sizeof(t->root), "%s", root ? root : "");
	/* runc finds haul's criu entry point first on its PATH: a link named criu */
	snprintf(t->criu_dir, sizeof(t->criu_dir), "%.4000s/.criu", t->dir);
	snprintf(link, sizeof(link), "%s/criu", t->criu_dir);
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 0)
		return -errno;
	exe[n] = '\0';
	mkdir(t->criu_dir, 0700);
	unlink(link);
	if (symlink(exe, link) < 0) {
		ret = -errno;
		pr_err_r(ret, "cannot link %s to haul", link);
		return ret;
	}
	memcpy(rx_key, key, WIRE_KEY_LEN);
	ret = listen_on(listen_addr, &lfd);
	if (ret) {
		pr_err_r(ret, "the file channel cannot listen on %s (--files-listen)", listen_addr);
		return ret;
	}
	if (pthread_create(&th, NULL, accept_main, (void *)(intptr_t)lfd)) {
		close(lfd);
		return -EAGAIN;
	}
	pthread_detach(th);
	haul_switch_sink_inner(&haul_ctr_sink);
	pr_info("containers: files on %s into %s, restored with %s%s%s", listen_addr, t->dir,
		runtime, root ? " --root " : "", root ? root : "");
	return 0;
}
