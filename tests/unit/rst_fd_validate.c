/*
 * rst_fd_validate.c - the checks of an image's fd records at load
 * (src/restore/fd_validate.c and each kind's validate hook): fd numbers
 * in range and used once, paths of the kinds reopened by path, a deleted
 * file's and a memfd's extents, locks, the O_ASYNC signal, epoll targets,
 * timerfd clocks and socketpair types.  Each refusal names the record.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "restore/fd_int.h"

/* fd 0 on /dev/null (file 1), fd 1 on a pipe (file 2). */
struct fds {
	Haul__Img__ProcessState ps;
	Haul__Img__FileObject f0, f1, *fp[2];
	Haul__Img__RegFile reg;
	Haul__Img__PipeFile pipe;
	Haul__Img__FdEntry e0, e1, *ep[2];
};

static char why[256];

static void fds_init(struct fds *s)
{
	haul__img__process_state__init(&s->ps);
	haul__img__file_object__init(&s->f0);
	haul__img__file_object__init(&s->f1);
	haul__img__reg_file__init(&s->reg);
	haul__img__pipe_file__init(&s->pipe);
	haul__img__fd_entry__init(&s->e0);
	haul__img__fd_entry__init(&s->e1);
	s->f0.id = 1;
	s->f0.kind = HAUL__IMG__FD_KIND__FD_CHR;
	s->f0.path = "/dev/null";
	s->f0.reg = &s->reg;
	s->f1.id = 2;
	s->f1.kind = HAUL__IMG__FD_KIND__FD_PIPE;
	s->f1.path = "pipe:[1234]";
	s->pipe.pipe_id = 1234;
	s->f1.pipe = &s->pipe;
	s->fp[0] = &s->f0;
	s->fp[1] = &s->f1;
	s->ps.files = s->fp;
	s->ps.n_files = 2;
	s->e0.fd = 0;
	s->e0.file_id = 1;
	s->e1.fd = 1;
	s->e1.file_id = 2;
	s->ep[0] = &s->e0;
	s->ep[1] = &s->e1;
	s->ps.fds = s->ep;
	s->ps.n_fds = 2;
}

static int check(struct fds *s)
{
	why[0] = '\0';
	return rst_fd_validate(&s->ps, why, sizeof(why));
}

Test(rst_fd_validate, fd_numbers_out_of_range_or_twice_and_two_files_with_one_id_are_named)
{
	struct fds s;

	fds_init(&s);
	cr_assert_eq(check(&s), 0, "%s", why);
	s.e1.fd = 0;
	cr_assert_eq(check(&s), -EBADMSG);
	cr_expect(strstr(why, "fds[1].fd: 0 appears twice"), "%s", why);
	fds_init(&s);
	s.e1.fd = -3;
	cr_assert_eq(check(&s), -EBADMSG);
	cr_expect(strstr(why, "fds[1].fd: -3"), "%s", why);
	fds_init(&s);
	s.f1.id = 1;
	s.e1.file_id = 1;
	cr_assert_eq(check(&s), -EBADMSG);
	cr_expect(strstr(why, "id 1 is used twice"), "%s", why);
}

Test(rst_fd_validate, kinds_reopened_by_path_need_a_path)
{
	struct fds s;

	fds_init(&s);
	s.f0.path = "";
	cr_assert_eq(check(&s), -EBADMSG);
	cr_expect(strstr(why, "file 1") && strstr(why, "no path"), "%s", why);
	fds_init(&s);
	s.f0.kind = HAUL__IMG__FD_KIND__FD_PATH;
	s.f0.path = "/etc";
	cr_assert_eq(check(&s), 0, "%s", why);
	s.f0.path = NULL;
	cr_assert_eq(check(&s), -EBADMSG);
}

Test(rst_fd_validate, deleted_file_extents_must_be_ordered_pairs_inside_file_and_content)
{
	uint64_t ext[4] = {0, 4096, 8192, 4096};
	uint8_t data[8192] = {0};
	Haul__Img__GhostFile g = HAUL__IMG__GHOST_FILE__INIT;
	struct fds s;

	fds_init(&s);
	s.f0.kind = HAUL__IMG__FD_KIND__FD_DELETED;
	s.f0.path = "/tmp/x";
	s.f0.reg = NULL;
	s.f0.ghost = &g;
	g.extents = ext;
	g.n_extents = 4;
	g.has_content = true;
	g.content.data = data;
	g.content.len = sizeof(data);
	g.has_size = true;
	g.size = 12288;
	cr_assert_eq(check(&s), 0, "%s", why);
	g.n_extents = 3;
	cr_assert_eq(check(&s), -EBADMSG);
	cr_expect(strstr(why, "file 1 (ghost).extents"), "%s", why);
	g.n_extents = 4;
	g.content.len = 4096; /* the second extent's bytes are missing */
	cr_assert_eq(check(&s), -EBADMSG);
	cr_expect(strstr(why, "extents[1]"), "%s", why);
	g.content.len = sizeof(data);
	g.size = 8192; /* an extent past the file's size */
	cr_assert_eq(check(&s), -EBADMSG);
}

Test(rst_fd_validate, unknown_locks_and_async_signals_out_of_range_are_named)
{
	Haul__Img__FileLock lk = HAUL__IMG__FILE_LOCK__INIT, *lkp[1] = {&lk};
	Haul__Img__Fown own = HAUL__IMG__FOWN__INIT;
	struct fds s;

	fds_init(&s);
	lk.kind = 9;
	s.f0.locks = lkp;
	s.f0.n_locks = 1;
	cr_assert_eq(check(&s), -EBADMSG);
	cr_expect(strstr(why, "file 1).locks[0]"), "%s", why);
	fds_init(&s);
	own.sig = 65;
	s.f1.fown = &own;
	cr_assert_eq(check(&s), -EBADMSG);
	cr_expect(strstr(why, "file 2).fown.sig: 65"), "%s", why);
}

Test(rst_fd_validate, each_kind_checks_its_own_part)
{
	Haul__Img__EpollTarget tg = HAUL__IMG__EPOLL_TARGET__INIT, *tgp[1] = {&tg};
	Haul__Img__EpollFile ep = HAUL__IMG__EPOLL_FILE__INIT;
	Haul__Img__TimerfdFile tf = HAUL__IMG__TIMERFD_FILE__INIT;
	Haul__Img__UnixPairFile u = HAUL__IMG__UNIX_PAIR_FILE__INIT;
	struct fds s;

	fds_init(&s);
	s.f1.kind = HAUL__IMG__FD_KIND__FD_EPOLL;
	s.f1.pipe = NULL;
	s.f1.epoll = &ep;
	ep.targets = tgp;
	ep.n_targets = 1;
	tg.tfd = -1;
	cr_assert_eq(check(&s), -EBADMSG);
	cr_expect(strstr(why, "file 2 (epoll).targets[0].tfd: -1"), "%s", why);
	tg.tfd = 0;
	cr_assert_eq(check(&s), 0, "%s", why);

	fds_init(&s);
	s.f1.kind = HAUL__IMG__FD_KIND__FD_TIMERFD;
	s.f1.pipe = NULL;
	s.f1.timerfd = &tf;
	tf.clockid = 12;
	cr_assert_eq(check(&s), -EBADMSG);
	cr_expect(strstr(why, "file 2 (timerfd).clockid: 12"), "%s", why);

	fds_init(&s);
	s.f1.kind = HAUL__IMG__FD_KIND__FD_UNIX_PAIR;
	s.f1.pipe = NULL;
	s.f1.unix_pair = &u;
	u.type = 3; /* SOCK_RAW */
	cr_assert_eq(check(&s), -EBADMSG);
	cr_expect(strstr(why, "file 2 (unix_pair).type: 3"), "%s", why);
	u.type = 1;
	cr_assert_eq(check(&s), 0, "%s", why);
}

Test(rst_fd_validate, memfd_extents_must_be_ordered_pairs_naming_exactly_its_data)
{
	uint64_t ext[4] = {0, 4096, 8192, 4096};
	uint8_t data[8192] = {0};
	Haul__Img__MemfdFile m = HAUL__IMG__MEMFD_FILE__INIT;
	struct fds s;

	fds_init(&s);
	s.f0.kind = HAUL__IMG__FD_KIND__FD_MEMFD;
	s.f0.path = "/memfd:x";
	s.f0.reg = NULL;
	s.f0.memfd = &m;
	m.extents = ext;
	m.n_extents = 4;
	m.data.data = data;
	m.data.len = sizeof(data);
	cr_assert_eq(check(&s), 0, "%s", why);
	m.n_extents = 3;
	cr_assert_eq(check(&s), -EBADMSG);
	cr_expect(strstr(why, "file 1 (memfd).extents: 3 values"), "%s", why);
	m.n_extents = 4;
	ext[3] = UINT64_MAX - 8192; /* a length far past its data */
	cr_assert_eq(check(&s), -EBADMSG);
	cr_expect(strstr(why, "extents[1]"), "%s", why);
	ext[3] = 2048; /* its data holds bytes no extent names */
	cr_assert_eq(check(&s), -EBADMSG);
	cr_expect(strstr(why, "(memfd).data"), "%s", why);
}

Test(rst_fd_validate, unix_listener_needs_a_listening_type_and_an_absolute_or_abstract_name)
{
	Haul__Img__UnixListenFile l = HAUL__IMG__UNIX_LISTEN_FILE__INIT;
	struct fds s;

	fds_init(&s);
	s.f1.kind = HAUL__IMG__FD_KIND__FD_UNIX_LISTEN;
	s.f1.pipe = NULL;
	cr_assert_eq(check(&s), -EBADMSG);
	cr_expect(strstr(why, "file 2"), "%s", why);
	s.f1.unix_listen = &l;
	l.type = 2; /* SOCK_DGRAM: never listens */
	l.name.data = (uint8_t *)"/run/x.sock";
	l.name.len = 11;
	cr_assert_eq(check(&s), -EBADMSG);
	cr_expect(strstr(why, "file 2 (unix_listen).type: 2"), "%s", why);
	l.type = 5; /* SOCK_SEQPACKET */
	cr_assert_eq(check(&s), 0, "%s", why);
	l.name.data = (uint8_t *)"x.sock";
	l.name.len = 6;
	cr_assert_eq(check(&s), -EBADMSG);
	cr_expect(strstr(why, "file 2 (unix_listen).name: 6 bytes"), "%s", why);
	l.name.data = (uint8_t *)"\0abstract";
	l.name.len = 9;
	cr_assert_eq(check(&s), 0, "%s", why);
	l.name.len = 0;
	cr_assert_eq(check(&s), -EBADMSG);
	l.name.data = (uint8_t *)"/a\0b";
	l.name.len = 4;
	cr_assert_eq(check(&s), -EBADMSG, "a path with a NUL inside passed");
}

Test(rst_fd_validate, unix_pair_stream_pieces_need_files_in_flight_of_a_known_kind)
{
	Haul__Img__UnixPairFile u = HAUL__IMG__UNIX_PAIR_FILE__INIT;
	Haul__Img__UnixInflight fl = HAUL__IMG__UNIX_INFLIGHT__INIT;
	Haul__Img__UnixInflight *inflight[1] = {&fl};
	ProtobufCBinaryData msgs[2] = {{2, (uint8_t *)"ab"}, {2, (uint8_t *)"cd"}};
	struct fds s;

	fds_init(&s);
	s.f1.kind = HAUL__IMG__FD_KIND__FD_UNIX_PAIR;
	s.f1.pipe = NULL;
	s.f1.unix_pair = &u;
	u.type = 1; /* SOCK_STREAM: its queue cut where files ride */
	u.msgs = msgs;
	u.n_msgs = 2;
	cr_assert_eq(check(&s), -EBADMSG, "pieces of a stream without files in flight");
	cr_expect(strstr(why, "file 2 (unix_pair).msgs"), "%s", why);
	u.inflight = inflight;
	u.n_inflight = 1;
	fl.msg = 1;
	fl.path = "pipe:[12]";
	fl.has_kind = true;
	fl.kind = 1; /* a pipe's read end no process holds */
	cr_assert_eq(check(&s), 0, "%s", why);
	fl.kind = 9;
	cr_assert_eq(check(&s), -EBADMSG);
	cr_expect(strstr(why, "file 2 (unix_pair).inflight[0]"), "%s", why);
	fl.kind = 3;
	fl.msg = 2; /* no such piece */
	cr_assert_eq(check(&s), -EBADMSG);
	fl.msg = 0;
	u.has_data = true; /* pieces and whole bytes at once */
	cr_assert_eq(check(&s), -EBADMSG);
}
