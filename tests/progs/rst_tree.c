/*
 * rst_tree - a process tree for checkpoint/restore tests.
 *
 * usage: rst_tree DIR SHAPE
 *
 * SHAPE "family": the root forks 3 children, the first of which forks a
 *   grandchild (5 processes, names r c1 c2 c3 g1); c2 has a second thread
 *   that counts, its count on c2's tick lines ("ok threads N").
 * SHAPE "zombie": the root forks z1, which exits with code 42, z2,
 *   killed by SIGTERM, and z3, killed by SIGKILL, and reaps none until
 *   DIR/reap exists; then it writes "reaped PID status STATUS" for each.
 * SHAPE "lostleader": the root calls setsid() and forks p1 (setpgid(0, 0)),
 *   p2, which joins p1's group, and z1, which joins it too and exits with
 *   code 5, unreaped; p1 exits and the root reaps it: a group whose leader
 *   is gone lives on in the root's session, with a zombie in it.
 * SHAPE "latesetsid": the root forks c1, which forks g1 and then calls
 *   setsid(): g1 is left in a session neither its own nor its parent's
 *   (refused by name).
 * SHAPE "jobstop": the root forks s1 (a group of its own), which writes a
 *   line to DIR/s1.out every ~2 ms, and stops it with SIGTSTP (job control, as a shell's ^Z);
 *   the root's ticks end in "stopsig N", the stop signal its wait
 *   reports for s1 (0: not stopped).  At DIR/stop it continues s1.
 * SHAPE "ghost": the root opens DIR/ghost.dat twice (two open file
 *   descriptions of one inode), deletes it and forks c1, which keeps one
 *   and appends a line to it every tick; the root keeps the other, and its
 *   ticks end in "ghost N", the file's size through its own fd.
 * SHAPE "loopback": the root listens on 127.0.0.1 and on ::1 and forks c1,
 *   which connects to both; every tick c1 sends a byte on each connection
 *   and reads it back, which the root echoes: c1's ticks end in "echo N",
 *   the round trips so far (a connection error makes the tick BAD).
 * SHAPE "sessions": the root (in its parent's session and group) forks
 *   s1, which calls setsid() and forks s2 (setpgid(0, 0): a group of its
 *   own in s1's session) and s3 (stays in s1's group); the root also forks
 *   p1 (setpgid(0, 0)) and p2 (joins p1's group).
 * SHAPE "timer": the root forks c1, which has a POSIX timer on its process
 *   CPU clock (haul refuses those by name), and c2.
 * SHAPE "shmem": the root maps shared anonymous memory and forks c1, which
 *   shares it (restored as one object: shm_tree.c).
 * SHAPE "clonefiles": the root clones c1 with CLONE_FILES and CLONE_FS (one
 *   fd table, one cwd and umask for both: restored shared).
 * SHAPE "siblingfiles": the root clones c1 and c2 with CLONE_FILES, then
 *   unshares its own: the two children share a table their parent does not
 *   (refused by name).
 * SHAPE "stdout": the root opens DIR/shared.out (no O_APPEND) and forks c1;
 *   both also write "NAME TICK" lines through that one inherited open file
 *   description (one offset: no line may overwrite another).
 * SHAPE "forker": the root forks c1; once DIR/fork exists, the root forks n1
 *   (once), which lives as the others do, and once DIR/exit exists c1 exits
 *   with code 7 (unreaped until DIR/stop): a tree that changes while it is
 *   being migrated.
 * SHAPE "spawner": the root forks c1, then a second thread of the root forks
 *   a child that exits at once every 100 us and reaps it, as PostgreSQL's
 *   postmaster starts autovacuum workers: a tree that never holds still.
 * SHAPE "async": the root makes a pipe and forks c1, which sets O_ASYNC on
 *   its read end with the ROOT as the owner (F_SETOWN getppid(), as nginx's
 *   workers do on their channel to the master); every tick the root writes
 *   a byte and the kernel sends it SIGIO, which it counts: "ok sigio N".
 * SHAPE "pipeline": producer | filter | consumer, the root their parent:
 *   the producer writes PIPE_LINES numbered lines, the filter rewrites each
 *   with a running hash of everything before it, the consumer writes them
 *   to DIR/pipeline.out, then "done"; both readers go slowly, so bytes wait
 *   in both pipes.  The root waits for all three and exits 0.  If DIR/hold
 *   exists at the start, the consumer stops reading once it has written
 *   HOLD_AT bytes, until DIR/hold is gone: the producer and the filter fill
 *   both pipes and block, so a dump made meanwhile finds bytes in flight in
 *   each pipe and the pipeline unfinished, however fast the machine runs it.
 *
 * Every process fills 64 pages with a pattern of its own (seeded by its
 * name) and every ~10 ms checks all of it, changes one word and writes to
 * DIR/NAME.out:
 *   "tick N pid P ppid Q pgid G sid S ok" (or "... BAD" if the memory
 *   changed under it)
 * It first writes "ready ..." with the same ids.  Once DIR/stop exists each
 * process reaps its children and exits 0.  stdout/stderr are /dev/null
 * (inherited by every process).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NPAGES 64
#define WORDS  (NPAGES * 4096 / 8)

static const char *dir;
static volatile unsigned long thread_ticks; /* c2's second thread counts here */
static int shared_fd = -1;		    /* "stdout": the file the whole tree writes through */
static int fork_on_file;		    /* "forker": the root forks n1 once DIR/fork exists */
static int exit_on_file;		    /* "forker": c1 exits once DIR/exit exists */
static int async_wr = -1, async_rd = -1;    /* "async": the root writes, c1 reads */
static volatile sig_atomic_t sigios;	    /* "async": SIGIOs the root got */

#define PIPE_LINES 30000
#define HOLD_AT	   8192 /* bytes of output before the consumer waits for DIR/hold to go */

static int exists(const char *name)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

static void say(int fd, const char *what, long tick, const char *tail)
{
	char line[256];
	int n = snprintf(line, sizeof(line), "%s %ld pid %d ppid %d pgid %d sid %d %s\n", what,
			 tick, (int)getpid(), (int)getppid(), (int)getpgid(0), (int)getsid(0),
			 tail);

	if (write(fd, line, n) != n)
		_exit(3);
}

static void pause_ms(int ms)
{
	struct timespec ts = {0, ms * 1000 * 1000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static uint64_t seed_of(const char *name)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *name; name++)
		h = (h ^ (uint8_t)*name) * 1099511628211ULL;
	return h;
}

static pid_t job_stopped;
static int lo_fd[2] = {-1, -1}; /* SHAPE "loopback": the two connections */
static int lo_client;		/* c1: send and read back; the root: echo */
static long lo_echoes;
static int ghost_wr = -1, ghost_rd = -1; /* SHAPE "ghost": c1 writes, the root reads */

/* SHAPE "jobstop": s1's life, a line every ~2 ms until DIR/stop. */
static void __attribute__((noreturn)) busy_lines(const char *name)
{
	char path[4096];
	int fd;
	long n = 0;

	snprintf(path, sizeof(path), "%s/%s.out", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	if (fd < 0)
		_exit(2);
	while (!exists("stop")) {
		struct timespec ts = {0, 2 * 1000 * 1000};

		say(fd, "ran", ++n, "ok");
		nanosleep(&ts, NULL);
	}
	_exit(0);
}

/* The stop signal its wait reports for the job-stopped child, 0: none. */
static int stop_signal_of(pid_t pid)
{
	siginfo_t in = {0};

	if (waitid(P_PID, (id_t)pid, &in, WNOWAIT | WSTOPPED | WNOHANG) < 0 || in.si_pid != pid)
		return 0;
	return in.si_code == CLD_STOPPED ? in.si_status : 0;
}

/* SHAPE "loopback": one tick's traffic on both connections; 0, or -1 on an error. */
static int loopback_tick(void)
{
	for (int i = 0; i < 2; i++) {
		char c = 'x';
		ssize_t n;

		if (lo_client) {
			if (write(lo_fd[i], &c, 1) != 1 || read(lo_fd[i], &c, 1) != 1)
				return -1;
			lo_echoes++;
			continue;
		}
		while ((n = recv(lo_fd[i], &c, 1, MSG_DONTWAIT)) == 1)
			if (write(lo_fd[i], &c, 1) != 1)
				return -1;
		if (n == 0 || (n < 0 && errno != EAGAIN))
			return -1;
	}
	return 0;
}

/* The life of one process: pattern, ticks, then reap and exit at DIR/stop. */
static void __attribute__((noreturn)) live(const char *name, const pid_t *zombies, int nz)
{
	uint64_t seed = seed_of(name), *mem;
	char path[4096];
	int fd;
	long tick = 0;
	int reaped = 0;

	snprintf(path, sizeof(path), "%s/%s.out", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	mem = mmap(NULL, NPAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (fd < 0 || mem == MAP_FAILED)
		_exit(2);
	for (size_t i = 0; i < WORDS; i++)
		mem[i] = seed + i;
	say(fd, "ready", 0, "ok");
	while (!exists("stop")) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		size_t w = (size_t)tick * 513 % WORDS;
		int bad = 0;

		for (size_t i = 0; i < WORDS; i++)
			bad |= mem[i] != seed + i;
		/* change one word and put it back: the memory is live, the pattern fixed */
		mem[w] ^= 0x5a5a;
		mem[w] ^= 0x5a5a;
		tick++;
		if (async_wr >= 0 && write(async_wr, "x", 1) != 1)
			_exit(3);
		if (async_rd >= 0) {
			char drain[64];

			while (read(async_rd, drain, sizeof(drain)) > 0)
				;
		}
		if (async_wr >= 0) {
			char tail[64];

			snprintf(tail, sizeof(tail), "%s sigio %d", bad ? "BAD" : "ok",
				 (int)sigios);
			say(fd, "tick", tick, tail);
		} else if (lo_fd[0] >= 0) {
			char tail[64];

			bad |= loopback_tick() < 0;
			snprintf(tail, sizeof(tail), "%s echo %ld", bad ? "BAD" : "ok", lo_echoes);
			say(fd, "tick", tick, tail);
		} else if (ghost_rd >= 0) {
			char tail[64];
			struct stat st = {0};

			fstat(ghost_rd, &st);
			snprintf(tail, sizeof(tail), "%s ghost %lld", bad ? "BAD" : "ok",
				 (long long)st.st_size);
			say(fd, "tick", tick, tail);
		} else if (job_stopped) {
			char tail[64];

			snprintf(tail, sizeof(tail), "%s stopsig %d", bad ? "BAD" : "ok",
				 stop_signal_of(job_stopped));
			say(fd, "tick", tick, tail);
		} else if (thread_ticks) {
			char tail[64];

			snprintf(tail, sizeof(tail), "%s threads %lu", bad ? "BAD" : "ok",
				 thread_ticks);
			say(fd, "tick", tick, tail);
		} else {
			say(fd, "tick", tick, bad ? "BAD" : "ok");
		}
		if (ghost_wr >= 0) {
			char line[64];
			int n = snprintf(line, sizeof(line), "%s %ld\n", name, tick);

			if (write(ghost_wr, line, n) != n)
				_exit(3);
		}
		if (shared_fd >= 0) {
			char line[64];
			int n = snprintf(line, sizeof(line), "%s %ld\n", name, tick);

			if (write(shared_fd, line, n) != n)
				_exit(3);
		}
		if (exit_on_file && exists("exit"))
			_exit(7);
		if (fork_on_file && exists("fork")) {
			fork_on_file = 0;
			if (fork() == 0) {
				fork_on_file = 0;
				live("n1", NULL, 0);
			}
		}
		if (nz && !reaped && exists("reap")) {
			for (int i = 0; i < nz; i++) {
				int st = -1;
				pid_t r = waitpid(zombies[i], &st, WNOHANG);
				char tail[96];

				snprintf(tail, sizeof(tail), "reaped %d status %d", (int)r, st);
				say(fd, "zombie", tick, tail);
			}
			reaped = 1;
		}
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	if (job_stopped)
		kill(job_stopped, SIGCONT);
	while (wait(NULL) > 0 || errno == EINTR)
		;
	_exit(0);
}

/* "spawner": fork a child that exits at once, reap it, again, until DIR/stop. */
static void *spawner(void *arg)
{
	(void)arg;
	while (!exists("stop")) {
		struct timespec ts = {0, 100 * 1000};
		pid_t p = fork();

		if (p == 0)
			_exit(0);
		if (p > 0)
			waitpid(p, NULL, 0);
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* Fork a child that runs @fn(@name) (or lives as @name). */
static pid_t spawn(const char *name, void (*setup)(void))
{
	pid_t p = fork();

	if (p < 0)
		_exit(4);
	if (p == 0) {
		if (setup)
			setup();
		live(name, NULL, 0);
	}
	return p;
}

static pid_t group_p1;

static void c1_exits(void)
{
	exit_on_file = 1;
}

static void own_group(void)
{
	setpgid(0, 0);
}

static void join_p1(void)
{
	setpgid(0, group_p1);
}

static void c1_setup(void)
{
	spawn("g1", NULL);
}

static void *spin(void *arg)
{
	(void)arg;
	for (;;) {
		thread_ticks++;
		pause_ms(1);
	}
	return NULL;
}

/* c2 has a second thread: it goes on counting after a restore too ("threads N"). */
static void c2_setup(void)
{
	pthread_t th;

	if (pthread_create(&th, NULL, spin, NULL))
		_exit(12);
}

static void on_sigio(int sig)
{
	(void)sig;
	sigios++;
}

/* c1 of "async": its read end signals the root (its parent) on every byte. */
static void async_setup(void)
{
	close(async_wr);
	async_wr = -1;
	if (fcntl(async_rd, F_SETOWN, getppid()) < 0 ||
	    fcntl(async_rd, F_SETFL, O_ASYNC | O_NONBLOCK) < 0)
		_exit(13);
}

static void timer_setup(void)
{
	timer_t id;

	if (timer_create(CLOCK_PROCESS_CPUTIME_ID, NULL, &id) < 0)
		_exit(5);
}

static void late_setsid(void)
{
	spawn("g1", NULL);
	setsid();
}

static void s1_setup(void)
{
	setsid();
	spawn("s2", own_group);
	spawn("s3", NULL);
}

static int write_all(int fd, const char *b, size_t n)
{
	while (n) {
		ssize_t w = write(fd, b, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static void __attribute__((noreturn)) producer(int out)
{
	char line[32];

	for (int i = 1; i <= PIPE_LINES; i++) {
		int n = snprintf(line, sizeof(line), "line %06d\n", i);

		if (write_all(out, line, (size_t)n))
			_exit(6);
		if (i % 50 == 0)
			pause_ms(1);
	}
	_exit(0);
}

/* Each line gets the hash of every byte before it: a lost or repeated byte shows. */
static void __attribute__((noreturn)) filter(int in, int out)
{
	uint64_t h = 1469598103934665603ULL;
	char buf[512], line[128];
	size_t ll = 0;
	long lines = 0;
	ssize_t n;

	while ((n = read(in, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			_exit(7);
		for (ssize_t i = 0; i < n; i++) {
			h = (h ^ (uint8_t)buf[i]) * 1099511628211ULL;
			if (ll < sizeof(line) - 1)
				line[ll++] = buf[i];
			if (buf[i] == '\n') {
				char o[192];
				int m = snprintf(o, sizeof(o), "%016llx %.*s",
						 (unsigned long long)h, (int)ll, line);

				if (write_all(out, o, (size_t)m))
					_exit(8);
				ll = 0;
				if (++lines % 50 == 0)
					pause_ms(2);
			}
		}
	}
	_exit(0);
}

static void __attribute__((noreturn)) consumer(int in)
{
	char path[4096], buf[700];
	ssize_t n;
	long chunks = 0;
	size_t written = 0;
	int fd, hold = exists("hold");

	snprintf(path, sizeof(path), "%s/pipeline.out", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		_exit(9);
	while ((n = read(in, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || write_all(fd, buf, (size_t)n))
			_exit(10);
		written += (size_t)n;
		if (hold && written >= HOLD_AT) {
			while (exists("hold"))
				pause_ms(1);
			hold = 0;
		}
		if (++chunks % 20 == 0)
			pause_ms(1);
	}
	if (write_all(fd, "done\n", 5))
		_exit(11);
	_exit(0);
}

static int pipeline(void)
{
	int a[2], b[2], status, bad = 0;
	pid_t p;

	if (pipe(a) || pipe(b))
		return 1;
	if (fork() == 0) {
		close(a[0]), close(b[0]), close(b[1]);
		producer(a[1]);
	}
	if (fork() == 0) {
		close(a[1]), close(b[0]);
		filter(a[0], b[1]);
	}
	if (fork() == 0) {
		close(a[0]), close(a[1]), close(b[1]);
		consumer(b[0]);
	}
	close(a[0]), close(a[1]), close(b[0]), close(b[1]);
	while ((p = wait(&status)) > 0 || errno == EINTR)
		if (p > 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
			bad = 1;
	return bad;
}

/* A listener on @family's loopback, any port; its address in @a, @len. */
static int lo_listen(int family, struct sockaddr_storage *a, socklen_t *len)
{
	int s = socket(family, SOCK_STREAM, 0);

	memset(a, 0, sizeof(*a));
	a->ss_family = (sa_family_t)family;
	if (family == AF_INET)
		((struct sockaddr_in *)a)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else
		((struct sockaddr_in6 *)a)->sin6_addr = in6addr_loopback;
	*len = sizeof(*a);
	if (s < 0 || bind(s, (struct sockaddr *)a, *len) < 0 || listen(s, 1) < 0 ||
	    getsockname(s, (struct sockaddr *)a, len) < 0)
		_exit(6);
	return s;
}

/* SHAPE "loopback" (above): never returns. */
static void __attribute__((noreturn)) loopback_shape(void)
{
	struct sockaddr_storage a[2];
	socklen_t len[2];
	int ls[2] = {lo_listen(AF_INET, &a[0], &len[0]), lo_listen(AF_INET6, &a[1], &len[1])};

	if (fork() == 0) {
		for (int i = 0; i < 2; i++) {
			close(ls[i]);
			lo_fd[i] = socket(a[i].ss_family, SOCK_STREAM, 0);
			if (lo_fd[i] < 0 || connect(lo_fd[i], (struct sockaddr *)&a[i], len[i]) < 0)
				_exit(6);
		}
		lo_client = 1;
		live("c1", NULL, 0);
	}
	for (int i = 0; i < 2; i++) {
		lo_fd[i] = accept(ls[i], NULL, NULL);
		if (lo_fd[i] < 0)
			_exit(6);
		close(ls[i]);
	}
	live("r", NULL, 0);
}

/* SHAPE "lostleader" (above): the root's part; never returns. */
static void __attribute__((noreturn)) lost_leader(void)
{
	pid_t z1;

	if (setsid() < 0)
		_exit(5);
	group_p1 = fork();
	if (group_p1 < 0)
		_exit(4);
	if (group_p1 == 0) {
		setpgid(0, 0);
		pause(); /* the root's SIGKILL, once the others joined */
		_exit(1);
	}
	setpgid(group_p1, group_p1); /* no race with p1's own call */
	setpgid(spawn("p2", join_p1), group_p1);
	z1 = fork();
	if (z1 == 0) {
		setpgid(0, group_p1);
		_exit(5);
	}
	setpgid(z1, group_p1);
	waitid(P_PID, (id_t)z1, &(siginfo_t){0}, WEXITED | WNOWAIT);
	kill(group_p1, SIGKILL);
	waitpid(group_p1, NULL, 0);
	live("r", NULL, 0);
}

int main(int argc, char **argv)
{
	int nul = open("/dev/null", O_RDWR);
	pid_t z[3];

	if (argc < 3 || nul < 0)
		return 1;
	dir = argv[1];
	/* Inherited by every process: /dev/null is shared freely, a file offset is not. */
	dup2(nul, 0);
	dup2(nul, 1);
	dup2(nul, 2);
	close(nul);
	if (!strcmp(argv[2], "family")) {
		spawn("c1", c1_setup);
		spawn("c2", c2_setup);
		spawn("c3", NULL);
		live("r", NULL, 0);
	}
	if (!strcmp(argv[2], "zombie")) {
		z[0] = fork();
		if (z[0] == 0)
			_exit(42);
		z[1] = fork();
		if (z[1] == 0) {
			raise(SIGTERM);
			_exit(1);
		}
		z[2] = fork();
		if (z[2] == 0) {
			raise(SIGKILL);
			_exit(1);
		}
		live("r", z, 3);
	}
	if (!strcmp(argv[2], "loopback"))
		loopback_shape();
	if (!strcmp(argv[2], "ghost")) {
		char path[4096];

		snprintf(path, sizeof(path), "%s/ghost.dat", dir);
		ghost_rd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
		ghost_wr = open(path, O_RDWR, 0644);
		if (ghost_rd < 0 || ghost_wr < 0 || unlink(path) < 0)
			return 1;
		if (fork() == 0) {
			close(ghost_rd);
			ghost_rd = -1;
			live("c1", NULL, 0);
		}
		close(ghost_wr);
		ghost_wr = -1;
		live("r", NULL, 0);
	}
	if (!strcmp(argv[2], "jobstop")) {
		siginfo_t in;

		/* a group of its own, led from the root's: not orphaned, so SIGTSTP stops it */
		job_stopped = fork();
		if (job_stopped == 0) {
			setpgid(0, 0);
			busy_lines("s1");
		}
		setpgid(job_stopped, job_stopped);
		while (!exists("s1.out"))
			pause_ms(1);
		kill(job_stopped, SIGTSTP);
		waitid(P_PID, (id_t)job_stopped, &in, WNOWAIT | WSTOPPED);
		live("r", NULL, 0);
	}
	if (!strcmp(argv[2], "latesetsid")) {
		spawn("c1", late_setsid);
		live("r", NULL, 0);
	}
	if (!strcmp(argv[2], "lostleader"))
		lost_leader();
	if (!strcmp(argv[2], "sessions")) {
		spawn("s1", s1_setup);
		group_p1 = spawn("p1", own_group);
		setpgid(group_p1, group_p1); /* no race with p1's own call */
		spawn("p2", join_p1);
		live("r", NULL, 0);
	}
	if (!strcmp(argv[2], "stdout")) {
		char path[4096];
		int fd;

		snprintf(path, sizeof(path), "%s/shared.out", dir);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || dup2(fd, 5) < 0)
			return 1;
		close(fd);
		shared_fd = 5;
		spawn("c1", NULL);
		live("r", NULL, 0);
	}
	if (!strcmp(argv[2], "async")) {
		int p[2];

		if (pipe(p) < 0 || signal(SIGIO, on_sigio) == SIG_ERR)
			return 1;
		async_rd = p[0];
		async_wr = p[1];
		spawn("c1", async_setup);
		close(async_rd);
		async_rd = -1;
		live("r", NULL, 0);
	}
	if (!strcmp(argv[2], "forker")) {
		spawn("c1", c1_exits);
		fork_on_file = 1;
		live("r", NULL, 0);
	}
	if (!strcmp(argv[2], "spawner")) {
		pthread_t th;

		spawn("c1", NULL);
		if (pthread_create(&th, NULL, spawner, NULL))
			return 1;
		live("r", NULL, 0);
	}
	if (!strcmp(argv[2], "pipeline"))
		return pipeline();
	if (!strcmp(argv[2], "shmem")) {
		char *shm =
			mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

		if (shm == MAP_FAILED)
			return 1;
		shm[0] = 1;
		spawn("c1", NULL);
		live("r", NULL, 0);
	}
	if (!strcmp(argv[2], "clonefiles")) {
		/* no CLONE_VM: the child runs on a copy of this stack, as after fork */
		long c = syscall(SYS_clone, CLONE_FILES | CLONE_FS | SIGCHLD, NULL, NULL, NULL,
				 NULL);

		if (c == 0)
			live("c1", NULL, 0);
		live("r", NULL, 0);
	}
	if (!strcmp(argv[2], "siblingfiles")) {
		for (int k = 1; k <= 2; k++)
			if (syscall(SYS_clone, CLONE_FILES | SIGCHLD, NULL, NULL, NULL, NULL) == 0)
				live(k == 1 ? "c1" : "c2", NULL, 0);
		if (unshare(CLONE_FILES))
			return 1;
		live("r", NULL, 0);
	}
	if (!strcmp(argv[2], "timer")) {
		spawn("c1", timer_setup);
		spawn("c2", NULL);
		live("r", NULL, 0);
	}
	return 1;
}
