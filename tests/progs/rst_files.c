/*
 * rst_files - open files whose sharing, flags, locks and content a restore
 * must keep exactly.  One mode per case; DIR is a private directory of the
 * test.  Each mode sets its files up, creates DIR/ready, then runs until
 * DIR/stop exists (at most 60 s), checking its invariants every
 * millisecond and counting its steps in DIR/progress; a broken one prints "ERROR ..." and the run ends with
 * "final ok" only when none broke.  Output goes to stdout (fd 1).
 *
 * usage: rst_files MODE DIR
 *  ofd    `cmd >log 2>&1`: DIR/log opened once without O_APPEND on fds 1
 *         and 2; each step writes "out N" through fd 1 and "err N" through
 *         fd 2.  Two opens instead of one OFD would overwrite lines.
 *  pipes  pipe01/02: a pipe, a dup of each end and a second open file
 *         description of each end (/proc/self/fd/N); O_NONBLOCK on the
 *         write end's first OFD and on the read end's second only; 100
 *         bytes rotate through it.
 *  fifos  zdtm fifo, fifo_ro, fifo_wronly: named FIFO DIR/fifo (mode 0640,
 *         owner 4321:8765) open
 *         as a non-blocking reader, a writer and a second, non-blocking
 *         writer, 100 bytes rotating through it; DIR/fifo2 open read-write
 *         only, "abcdefghij" rotating through it; DIR/fifo3 open read-write,
 *         deleted and its name taken by a regular file (zdtm unlink_fifo,
 *         fifo-ghost), "hello" rotating through it.  No other process holds
 *         them: they move with the process, their bytes too.
 *  ghost  unlink_fstat0x / ghost_holes: a deleted sparse file (data at 0
 *         and 1 MiB, 3 MiB long) with mode 0751, owner 1234:5678 and an
 *         old mtime, open twice as two OFDs; a deleted file in a deleted
 *         directory.  At stop: a write through one OFD is read through
 *         the other (one inode).  Its name has a space, quote, backslash and
 *         newline; and an O_TMPFILE file that never had a name.
 *  locks  a POSIX write lock on DIR/posix [0,100), flock LOCK_EX on
 *         DIR/flock, an OFD read lock on DIR/ofd [200,300) and a read lease
 *         on DIR/lease (checked with F_GETLEASE; the others by the test).
 *  opath  O_PATH fds on DIR/file and on DIR.
 *  deldev an fd on a character device node DIR/null, deleted (the dump
 *         must refuse it).
 *  async  a pipe whose read end has O_ASYNC, owner the process, F_SETSIG
 *         SIGUSR1 (blocked): every byte written raises it.
 *  procfs fds on the process's own /proc files (/proc/self/status twice,
 *         one at offset 6; /proc/self/task/PID/stat and the stat of a
 *         second thread, /proc/self/task/TID/stat; /proc/self as a
 *         directory) and on /proc files of no pid (loadavg,
 *         sys/kernel/pid_max): each step checks they show this process
 *         (pid, and its parent, which changes with a restore: "ppid N" is
 *         printed at each change) and the offset; at stop, what is read
 *         on from that offset is the start of its name.
 *  proctree  the parent holds /proc/CHILD/status of its forked child (which
 *         runs until stop too): each step checks it shows the child, its
 *         parent the process itself.
 *  procrefuse  one fd on /proc a dump must refuse, named by DIR/what: mem
 *         (/proc/self/mem), fdlink (O_PATH on the link /proc/self/fd/1), ns
 *         (/proc/self/ns/net), self (O_PATH on the link /proc/self),
 *         threadpid (/proc/TID/stat, a second thread named as a pid), other
 *         (/proc/PPID/status of its parent).
 *  forkshare / forkappend  DIR/log (forkappend: O_APPEND) open in a parent
 *         and its forked child, which writes its pid to DIR/child and runs
 *         the loop (the precheck of the child refuses forkshare only).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *dir;
static int errors;

static void fail(const char *what, long step)
{
	char line[256];
	int n = snprintf(line, sizeof(line), "ERROR %s at step %ld (errno %d)\n", what, step,
			 errno);

	if (write(1, line, n) < 0)
		_exit(3);
	errors++;
}

static void path_of(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

static int exists(const char *name)
{
	char p[512];

	path_of(p, sizeof(p), name);
	return access(p, F_OK) == 0;
}

static void ready(void)
{
	char p[512];
	int fd;

	path_of(p, sizeof(p), "ready");
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0)
		close(fd);
}

static void pause_1ms(void)
{
	struct timespec ts = {0, 1000000};

	nanosleep(&ts, NULL);
}

/*
 * Run @step until DIR/stop appears (60 s at most).  DIR/progress holds the
 * number of steps run so far (every 20), so that a test can wait for steps
 * after a restore before it stops the run.
 */
static long run(void (*step)(long))
{
	char p[512], num[32];
	long i;
	int pf;

	path_of(p, sizeof(p), "progress");
	pf = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	for (i = 0; i < 60000 && !exists("stop"); i++) {
		step(i);
		if (pf >= 0 && i % 20 == 0) {
			int n = snprintf(num, sizeof(num), "%-20ld\n", i);

			if (pwrite(pf, num, n, 0) != n)
				fail("progress write", i);
		}
		pause_1ms();
	}
	return i;
}

/* ---- ofd ------------------------------------------------------------------ */

static void ofd_step(long i)
{
	char line[64];
	int n;

	n = snprintf(line, sizeof(line), "out %ld\n", i);
	if (write(1, line, n) != n)
		fail("write to fd 1", i);
	n = snprintf(line, sizeof(line), "err %ld\n", i);
	if (write(2, line, n) != n)
		fail("write to fd 2", i);
}

static int mode_ofd(void)
{
	char p[512];
	int fd;

	path_of(p, sizeof(p), "log");
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
		return 2;
	close(fd);
	ready();
	run(ofd_step);
	return 0;
}

/* ---- pipes ---------------------------------------------------------------- */

static int pfd[2], pdup[2], prop[2];
static unsigned char pnext; /* the byte the next read must return */

static int nonblock(int fd)
{
	return (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
}

static void pipes_step(long i)
{
	unsigned char b;

	if (!nonblock(pfd[1]) || !nonblock(pdup[1]))
		fail("the write end lost O_NONBLOCK", i);
	if (nonblock(prop[1]))
		fail("the second write OFD gained O_NONBLOCK", i);
	if (nonblock(pfd[0]) || nonblock(pdup[0]))
		fail("the read end gained O_NONBLOCK", i);
	if (!nonblock(prop[0]))
		fail("the second read OFD lost O_NONBLOCK", i);
	/* Read through one OFD, write back through another: the bytes keep their order. */
	if (read(i % 2 ? pdup[0] : prop[0], &b, 1) != 1 || b != pnext)
		fail("a byte rotating through the pipe", i);
	pnext = (unsigned char)(b + 1) % 100;
	if (write(i % 3 ? prop[1] : pdup[1], &b, 1) != 1)
		fail("writing back into the pipe", i);
}

static int mode_pipes(void)
{
	char p[64];

	if (pipe(pfd))
		return 2;
	pdup[0] = dup(pfd[0]);
	pdup[1] = dup(pfd[1]);
	snprintf(p, sizeof(p), "/proc/self/fd/%d", pfd[0]);
	prop[0] = open(p, O_RDONLY);
	snprintf(p, sizeof(p), "/proc/self/fd/%d", pfd[1]);
	prop[1] = open(p, O_WRONLY);
	if (pdup[0] < 0 || pdup[1] < 0 || prop[0] < 0 || prop[1] < 0)
		return 2;
	fcntl(pfd[1], F_SETFL, O_NONBLOCK);
	fcntl(prop[0], F_SETFL, O_NONBLOCK);
	for (unsigned char b = 0; b < 100; b++)
		if (write(pfd[1], &b, 1) != 1)
			return 2;
	ready();
	run(pipes_step);
	return 0;
}

/* ---- fifos ---------------------------------------------------------------- */

static int fr, fw, fw2, frw, fdel;
static unsigned char fnext;
static char f2next = 'a';
static unsigned f3next; /* index in "hello" */

static void fifos_step(long i)
{
	int n = -1, n2 = -1;
	unsigned char b;
	struct stat st;
	char c;

	if (!nonblock(fr) || nonblock(fw) || !nonblock(fw2) || nonblock(frw))
		fail("a FIFO's open file lost or gained O_NONBLOCK", i);
	/* exactly what was queued: not a byte lost, none doubled */
	if (ioctl(fr, FIONREAD, &n) || n != 100 || ioctl(frw, FIONREAD, &n2) || n2 != 10)
		fail("a FIFO holds other than its 100 (or 10) bytes", i);
	if (read(fr, &b, 1) != 1 || b != fnext)
		fail("a byte rotating through the FIFO", i);
	fnext = (unsigned char)(b + 1) % 100;
	if (write(i % 2 ? fw : fw2, &b, 1) != 1)
		fail("writing back into the FIFO", i);
	if (read(frw, &c, 1) != 1 || c != f2next)
		fail("a byte rotating through the read-write FIFO", i);
	f2next = c == 'j' ? 'a' : (char)(c + 1);
	if (write(frw, &c, 1) != 1)
		fail("writing back into the read-write FIFO", i);
	if (read(fdel, &c, 1) != 1 || c != "hello"[f3next] || write(fdel, &c, 1) != 1)
		fail("a byte rotating through the deleted FIFO", i);
	f3next = (f3next + 1) % 5;
	if (fstat(fdel, &st) || !S_ISFIFO(st.st_mode) || st.st_nlink)
		fail("the deleted FIFO is no longer a deleted FIFO", i);
}

static int mode_fifos(void)
{
	char p[512], p2[512];

	path_of(p, sizeof(p), "fifo3");
	umask(0);
	if (mkfifo(p, 0600) || (fdel = open(p, O_RDWR)) < 0 || write(fdel, "hello", 5) != 5 ||
	    unlink(p) || close(open(p, O_WRONLY | O_CREAT, 0644)))
		return 2;
	path_of(p, sizeof(p), "fifo");
	path_of(p2, sizeof(p2), "fifo2");
	if (mkfifo(p, 0640) || mkfifo(p2, 0600) || chown(p, 4321, 8765))
		return 2;
	fr = open(p, O_RDONLY | O_NONBLOCK);
	fw = open(p, O_WRONLY);
	fw2 = open(p, O_WRONLY | O_NONBLOCK);
	frw = open(p2, O_RDWR);
	if (fr < 0 || fw < 0 || fw2 < 0 || frw < 0)
		return 2;
	for (unsigned char b = 0; b < 100; b++)
		if (write(fw, &b, 1) != 1)
			return 2;
	if (write(frw, "abcdefghij", 10) != 10)
		return 2;
	ready();
	run(fifos_step);
	return 0;
}

/* ---- ghost ---------------------------------------------------------------- */

#define GHOST_SIZE  (3L << 20)
#define GHOST_UID   1234
#define GHOST_GID   5678
#define GHOST_MTIME 1000000000L

static int ga, gb, gc, gd;

static void ghost_step(long i)
{
	struct stat a, b, c;
	char buf[4096];

	if (fstat(ga, &a) || fstat(gb, &b) || fstat(gc, &c)) {
		fail("fstat", i);
		return;
	}
	if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
		fail("the two fds of the deleted file name two files", i);
	if (a.st_nlink != 0 || c.st_nlink != 0)
		fail("a deleted file has a name again", i);
	if ((a.st_mode & 07777) != 0751 || a.st_uid != GHOST_UID || a.st_gid != GHOST_GID)
		fail("mode or owner of the deleted file changed", i);
	if (a.st_mtim.tv_sec != GHOST_MTIME)
		fail("mtime of the deleted file changed", i);
	if (a.st_size != GHOST_SIZE || (long)a.st_blocks * 512 > (1L << 20))
		fail("size changed or holes were filled", i);
	if (lseek(ga, 0, SEEK_HOLE) != 4096 || lseek(ga, 4096, SEEK_DATA) != (1L << 20))
		fail("the hole after the first block moved", i);
	if (pread(ga, buf, 4096, 0) != 4096 || buf[0] != 'A' || buf[4095] != 'A')
		fail("data at 0", i);
	if (pread(gb, buf, 4096, 1L << 20) != 4096 || buf[0] != 'B' || buf[4095] != 'B')
		fail("data at 1 MiB", i);
	if (pread(gc, buf, 5, 0) != 5 || memcmp(buf, "inner", 5))
		fail("the file of the deleted directory", i);
	if (fstat(gd, &c) || c.st_nlink != 0 || (c.st_mode & 0777) != 0640 ||
	    pread(gd, buf, 7, 0) != 7 || memcmp(buf, "tmpfile", 7))
		fail("the O_TMPFILE file", i);
	if (lseek(gb, 0, SEEK_CUR) != 77)
		fail("offset of the second OFD", i);
}

static int mode_ghost(void)
{
	struct timespec ts[2] = {{GHOST_MTIME, 0}, {GHOST_MTIME, 0}};
	char p[600], sub[512], buf[4096];

	/* A name with the characters /proc and fdinfo escape or quote (unlink_fstat04). */
	path_of(p, sizeof(p), "gh ost\\file'\n\"un%link");
	ga = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
	gb = open(p, O_RDONLY);
	if (ga < 0 || gb < 0)
		return 2;
	memset(buf, 'A', sizeof(buf));
	if (pwrite(ga, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
		return 2;
	memset(buf, 'B', sizeof(buf));
	if (pwrite(ga, buf, sizeof(buf), 1L << 20) != (ssize_t)sizeof(buf) ||
	    ftruncate(ga, GHOST_SIZE) || fchown(ga, GHOST_UID, GHOST_GID) || fchmod(ga, 0751) ||
	    futimens(ga, ts) || unlink(p) || lseek(gb, 77, SEEK_SET) != 77)
		return 2;
	path_of(sub, sizeof(sub), "sub");
	if (mkdir(sub, 0755))
		return 2;
	snprintf(p, sizeof(p), "%s/inner", sub);
	gc = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (gc < 0 || write(gc, "inner", 5) != 5 || unlink(p) || rmdir(sub))
		return 2;
	/* A file that never had a name (unlink_fstat041). */
	gd = open(dir, O_RDWR | O_TMPFILE, 0640);
	if (gd < 0 || write(gd, "tmpfile", 7) != 7)
		return 2;
	ready();
	run(ghost_step);
	/* One inode: what one OFD writes, the other reads. */
	if (pwrite(ga, "shared", 6, 100) != 6 || pread(gb, buf, 6, 100) != 6 ||
	    memcmp(buf, "shared", 6))
		fail("a write through one fd is not seen through the other", -1);
	return 0;
}

/* ---- locks ---------------------------------------------------------------- */

static int lease_fd;

static void locks_step(long i)
{
	if (fcntl(lease_fd, F_GETLEASE) != F_RDLCK)
		fail("the read lease is gone", i);
}

static int mode_locks(void)
{
	struct flock pl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 100};
	struct flock ol = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 200, .l_len = 100};
	char p[512];
	int fp, ff, fo;

	path_of(p, sizeof(p), "posix");
	fp = open(p, O_RDWR | O_CREAT, 0644);
	path_of(p, sizeof(p), "flock");
	ff = open(p, O_RDWR | O_CREAT, 0644);
	path_of(p, sizeof(p), "ofd");
	fo = open(p, O_RDWR | O_CREAT, 0644);
	path_of(p, sizeof(p), "lease");
	close(open(p, O_WRONLY | O_CREAT, 0644));
	lease_fd = open(p, O_RDONLY);
	if (fp < 0 || ff < 0 || fo < 0 || lease_fd < 0)
		return 2;
	if (fcntl(fp, F_SETLK, &pl) || flock(ff, LOCK_EX | LOCK_NB) ||
	    fcntl(fo, F_OFD_SETLK, &ol) || fcntl(lease_fd, F_SETLEASE, F_RDLCK))
		return 2;
	ready();
	run(locks_step);
	return 0;
}

/* ---- opath ---------------------------------------------------------------- */

static int op_file, op_dir;

static void opath_step(long i)
{
	struct stat st;

	if (!(fcntl(op_file, F_GETFL) & O_PATH) || !(fcntl(op_dir, F_GETFL) & O_PATH))
		fail("an O_PATH fd lost O_PATH", i);
	if (fstat(op_file, &st) || st.st_size != 5 || fstat(op_dir, &st) || !S_ISDIR(st.st_mode))
		fail("an O_PATH fd names another file", i);
}

static int mode_opath(void)
{
	char p[512];
	int fd;

	path_of(p, sizeof(p), "file");
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, "hello", 5) != 5)
		return 2;
	close(fd);
	op_file = open(p, O_PATH);
	op_dir = open(dir, O_PATH | O_DIRECTORY);
	if (op_file < 0 || op_dir < 0)
		return 2;
	ready();
	run(opath_step);
	return 0;
}

/* ---- deldev --------------------------------------------------------------- */

static void idle_step(long i)
{
	(void)i;
}

static int mode_deldev(void)
{
	char p[512];
	int fd;

	path_of(p, sizeof(p), "null");
	if (mknod(p, S_IFCHR | 0666, makedev(1, 3)))
		return 2;
	fd = open(p, O_RDWR);
	if (fd < 0 || unlink(p))
		return 2;
	ready();
	run(idle_step);
	return 0;
}

/* ---- procfs --------------------------------------------------------------- */

static int pr_status, pr_stat, pr_dir, pr_pos, pr_load, pr_sys, pr_thread;
static long pr_ppid = -1;
static volatile pid_t pr_tid; /* the second thread's, once it runs */

/* The number after "@key:" in /proc status text @buf, or -1. */
static long status_num(const char *buf, const char *key)
{
	char k[32];
	const char *f;

	snprintf(k, sizeof(k), "\n%s:", key);
	f = strstr(buf, k);
	return f ? strtol(f + strlen(k), NULL, 10) : -1;
}

/* The status of fd @fd (pread at 0: its offset stays), NUL-terminated, or "". */
static const char *read_at0(int fd, char *buf, size_t len)
{
	ssize_t n = pread(fd, buf, len - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* The parent /proc/self/task/PID/stat names ("pid (comm) state ppid"), -1: another task's. */
static long stat_ppid(void)
{
	char buf[4096];

	read_at0(pr_stat, buf, sizeof(buf));
	return atol(buf) == getpid() && strrchr(buf, ')') ? atol(strrchr(buf, ')') + 4) : -1;
}

static void procfs_step(long i)
{
	char buf[4096], line[64];
	long ppid = getppid();
	int fd;

	/* its parent may exit meanwhile (reparented): the second read then agrees */
	if (status_num(read_at0(pr_status, buf, sizeof(buf)), "Pid") != getpid() ||
	    (status_num(buf, "PPid") != ppid &&
	     status_num(read_at0(pr_status, buf, sizeof(buf)), "PPid") != (ppid = getppid())))
		fail("/proc/self/status shows another process", i);
	if (stat_ppid() != ppid && stat_ppid() != (ppid = getppid()))
		fail("/proc/self/task/PID/stat shows another task", i);
	if (atol(read_at0(pr_thread, buf, sizeof(buf))) != pr_tid)
		fail("/proc/self/task/TID/stat of the second thread shows another task", i);
	fd = openat(pr_dir, "status", O_RDONLY);
	if (fd < 0 || status_num(read_at0(fd, buf, sizeof(buf)), "Pid") != getpid())
		fail("the /proc/self directory fd names another process", i);
	if (fd >= 0)
		close(fd);
	if (lseek(pr_pos, 0, SEEK_CUR) != 6)
		fail("the offset in /proc/self/status moved", i);
	if (!strchr(read_at0(pr_load, buf, sizeof(buf)), '/'))
		fail("/proc/loadavg", i);
	if (atol(read_at0(pr_sys, buf, sizeof(buf))) <= 0)
		fail("/proc/sys/kernel/pid_max", i);
	/* the parent changes with the restore: the fds show the live process */
	if (ppid != pr_ppid) {
		int n = snprintf(line, sizeof(line), "ppid %ld\n", ppid);

		if (write(1, line, n) != n)
			fail("write to fd 1", i);
		pr_ppid = ppid;
	}
}

static void *tid_thread(void *arg)
{
	(void)arg;
	pr_tid = (pid_t)syscall(SYS_gettid);
	for (;;)
		pause();
	return NULL;
}

/* A second thread, idle: its tid once it runs, or -1. */
static pid_t second_thread(void)
{
	pthread_t th;

	if (pthread_create(&th, NULL, tid_thread, NULL))
		return -1;
	for (int n = 0; !pr_tid && n < 10000; n++)
		pause_1ms();
	return pr_tid ? pr_tid : -1;
}

static int mode_procfs(void)
{
	char p[64], name[8] = "", comm[17] = "";

	snprintf(p, sizeof(p), "/proc/self/task/%d/stat", (int)getpid());
	pr_status = open("/proc/self/status", O_RDONLY);
	pr_stat = open(p, O_RDONLY);
	pr_dir = open("/proc/self", O_RDONLY | O_DIRECTORY);
	pr_pos = open("/proc/self/status", O_RDONLY);
	pr_load = open("/proc/loadavg", O_RDONLY);
	pr_sys = open("/proc/sys/kernel/pid_max", O_RDONLY);
	if (second_thread() < 0)
		return 2;
	snprintf(p, sizeof(p), "/proc/self/task/%d/stat", (int)pr_tid);
	pr_thread = open(p, O_RDONLY);
	if (pr_status < 0 || pr_stat < 0 || pr_dir < 0 || pr_pos < 0 || pr_load < 0 || pr_sys < 0 ||
	    read(pr_pos, name, 6) != 6 || memcmp(name, "Name:\t", 6))
		return 2;
	ready();
	run(procfs_step);
	/* its offset kept, the rest of the line is the name */
	if (prctl(PR_GET_NAME, comm) || read(pr_pos, name, 4) != 4 || memcmp(name, comm, 4))
		fail("reading on from the offset in /proc/self/status", -1);
	return 0;
}

/* ---- proctree: a parent's fd on its child's /proc file --------------------- */

static int pt_status;
static pid_t pt_child;

static void proctree_step(long i)
{
	char buf[4096];

	if (status_num(read_at0(pt_status, buf, sizeof(buf)), "Pid") != pt_child ||
	    status_num(buf, "PPid") != getpid())
		fail("/proc/CHILD/status shows another process", i);
}

static int mode_proctree(void)
{
	char p[64];
	int st;

	pt_child = fork();
	if (pt_child < 0)
		return 2;
	if (pt_child == 0) {
		run(idle_step);
		_exit(0);
	}
	snprintf(p, sizeof(p), "/proc/%d/status", (int)pt_child);
	pt_status = open(p, O_RDONLY);
	if (pt_status < 0)
		return 2;
	ready();
	run(proctree_step);
	if (waitpid(pt_child, &st, 0) != pt_child || !WIFEXITED(st) || WEXITSTATUS(st))
		fail("the child", -1);
	return 0;
}

/* ---- procrefuse: fds on /proc the dump must refuse ----------------------- */

/* DIR/what names the case: mem, fdlink, ns, self, threadpid, other. */
static int mode_procrefuse(void)
{
	char p[512], what[16] = "";
	int fd;

	path_of(p, sizeof(p), "what");
	fd = open(p, O_RDONLY);
	if (fd < 0 || read(fd, what, sizeof(what) - 1) < 0)
		return 2;
	close(fd);
	if (!strcmp(what, "mem"))
		fd = open("/proc/self/mem", O_RDONLY);
	else if (!strcmp(what, "fdlink"))
		fd = open("/proc/self/fd/1", O_PATH | O_NOFOLLOW);
	else if (!strcmp(what, "ns"))
		fd = open("/proc/self/ns/net", O_RDONLY);
	else if (!strcmp(what, "self"))
		fd = open("/proc/self", O_PATH | O_NOFOLLOW);
	else if (!strcmp(what, "other")) {
		snprintf(p, sizeof(p), "/proc/%d/status", (int)getppid());
		fd = open(p, O_RDONLY);
	} else if (!strcmp(what, "threadpid")) {
		if (second_thread() < 0)
			return 2;
		snprintf(p, sizeof(p), "/proc/%d/stat", (int)pr_tid);
		fd = open(p, O_RDONLY);
	}
	if (fd < 0)
		return 2;
	ready();
	run(idle_step);
	return 0;
}

/* ---- async ---------------------------------------------------------------- */

static int ap[2];

static void async_step(long i)
{
	struct timespec zero = {0, 0};
	sigset_t usr1;
	char b = 'x';

	if (!(fcntl(ap[0], F_GETFL) & O_ASYNC) || fcntl(ap[0], F_GETOWN) != getpid() ||
	    fcntl(ap[0], F_GETSIG) != SIGUSR1)
		fail("O_ASYNC, its owner or its signal changed", i);
	/* A byte arriving makes the read end signal SIGUSR1 (blocked: it stays pending). */
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	if (write(ap[1], &b, 1) != 1 || read(ap[0], &b, 1) != 1)
		fail("the async pipe", i);
	if (sigtimedwait(&usr1, NULL, &zero) != SIGUSR1)
		fail("no SIGUSR1 for data on the O_ASYNC pipe", i);
}

static int mode_async(void)
{
	sigset_t usr1;

	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	if (pipe(ap) || fcntl(ap[0], F_SETOWN, getpid()) || fcntl(ap[0], F_SETSIG, SIGUSR1) ||
	    fcntl(ap[0], F_SETFL, O_ASYNC | O_NONBLOCK))
		return 2;
	ready();
	run(async_step);
	return 0;
}

/* ---- forkshare / forkappend ----------------------------------------------- */

/*
 * DIR/log opened once (O_APPEND for forkappend), then fork: the child
 * holds the same open file description as its parent, writes its pid to
 * DIR/child and idles; the parent waits for it.  The test prechecks the
 * child.
 */
static int mode_fork(bool append)
{
	char p[512], num[32];
	int fd, st;
	pid_t child;

	path_of(p, sizeof(p), "log");
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | (append ? O_APPEND : 0), 0644);
	if (fd < 0)
		return 2;
	child = fork();
	if (child < 0)
		return 2;
	if (child == 0) {
		int n = snprintf(num, sizeof(num), "%d\n", (int)getpid());
		int cf;

		/* Its own stdout: only DIR/log is shared with the parent. */
		path_of(p, sizeof(p), "child.out");
		cf = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (cf < 0 || dup2(cf, 1) < 0 || dup2(cf, 2) < 0)
			_exit(2);
		close(cf);
		path_of(p, sizeof(p), "child");
		cf = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (cf < 0 || write(cf, num, n) != n)
			_exit(2);
		close(cf);
		ready();
		run(idle_step);
		_exit(errors ? 1 : 0);
	}
	if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st))
		return 1;
	return 0;
}

static int mode_forkshare(void)
{
	return mode_fork(false);
}

static int mode_forkappend(void)
{
	return mode_fork(true);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(void);
	} modes[] = {{"ofd", mode_ofd},
		     {"pipes", mode_pipes},
		     {"fifos", mode_fifos},
		     {"ghost", mode_ghost},
		     {"locks", mode_locks},
		     {"opath", mode_opath},
		     {"deldev", mode_deldev},
		     {"forkshare", mode_forkshare},
		     {"forkappend", mode_forkappend},
		     {"async", mode_async},
		     {"procfs", mode_procfs},
		     {"proctree", mode_proctree},
		     {"procrefuse", mode_procrefuse}};
	int ret = 2;

	if (argc != 3)
		return 2;
	dir = argv[2];
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (!strcmp(argv[1], modes[i].name))
			ret = modes[i].fn();
	if (ret)
		return ret;
	if (!errors) {
		static const char ok[] = "final ok\n";

		if (write(1, ok, sizeof(ok) - 1) < 0)
			return 3;
	}
	return errors ? 1 : 0;
}
