/*
 * rst_ext - a program whose stdout's other end stays behind, for the
 * external-endpoint tests (tests/integration/rst_external.c, rst_tty.c).
 *
 * usage: rst_ext lines           write "line N" on stdout every 10 ms
 *        rst_ext service PATH    connect a unix stream socket to PATH, make
 *                                it fds 1 and 2 (as systemd does with the
 *                                journald stream socket), then as lines
 *        rst_ext tty             stdin is a terminal: make it its
 *                                controlling terminal, set its termios (no
 *                                ECHO, no ICANON, VTIME 7) and size (33x111),
 *                                then every 10 ms write "tty N lflag L vtime
 *                                T rows R cols C" as it sees them on stdout
 *        rst_ext ptypair         open a pty and keep both ends; set the
 *                                slave's termios (raw, VTIME 9) and size
 *                                (22x77), its owner (13333:44444) and
 *                                mode (0620); every 10 ms send "pN" master ->
 *                                slave and "qN" back, then write "pair N
 *                                vtime T rows R cols C owner U:G mode M ok"
 *                                (or "lost": a message that did not come
 *                                back; a checkpoint refuses a queued one)
 * The first line is the ready signal; N goes up by one each line, so a
 * test sees where the restored copy went on.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static void pause_10ms(void)
{
	struct timespec ts = {0, 10 * 1000 * 1000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int lines(void)
{
	char buf[64];

	for (unsigned long n = 0;; n++) {
		int len = snprintf(buf, sizeof(buf), "line %lu\n", n);

		if (write(1, buf, len) != len && errno != EINTR && errno != EAGAIN)
			return 1;
		pause_10ms();
	}
}

static int service(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int s = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("connect");
		return 1;
	}
	dup2(s, 1);
	dup2(s, 2);
	close(s);
	return lines();
}

static int tty(void)
{
	struct winsize ws = {.ws_row = 33, .ws_col = 111};
	struct termios tm;
	char buf[160];

	setsid();
	if (ioctl(0, TIOCSCTTY, 0) < 0 || tcgetattr(0, &tm) < 0) {
		perror("tty");
		return 1;
	}
	tm.c_lflag &= ~(ECHO | ICANON);
	tm.c_cc[VTIME] = 7;
	tm.c_cc[VMIN] = 1;
	if (tcsetattr(0, TCSANOW, &tm) < 0 || ioctl(0, TIOCSWINSZ, &ws) < 0) {
		perror("tty settings");
		return 1;
	}
	for (unsigned long n = 0;; n++) {
		int len;

		tcgetattr(0, &tm);
		ioctl(0, TIOCGWINSZ, &ws);
		len = snprintf(buf, sizeof(buf), "tty %lu lflag %o vtime %d rows %d cols %d\r\n", n,
			       (unsigned)tm.c_lflag, tm.c_cc[VTIME], ws.ws_row, ws.ws_col);
		if (write(1, buf, len) < 0 && errno != EINTR && errno != EAGAIN && errno != EIO)
			return 1;
		pause_10ms();
	}
}

/* Send @msg into @to, read it back from @from within 200 ms: whether it came whole. */
static int through(int to, int from, const char *msg)
{
	size_t n = strlen(msg), got = 0;
	char buf[64];

	if (write(to, msg, n) != (ssize_t)n)
		return 0;
	while (got < n) {
		struct pollfd p = {.fd = from, .events = POLLIN};
		ssize_t r;

		if (poll(&p, 1, 200) != 1)
			return 0;
		r = read(from, buf + got, sizeof(buf) - got);
		if (r <= 0)
			return 0;
		got += r;
	}
	return got == n && !memcmp(buf, msg, n);
}

static int ptypair(void)
{
	struct winsize ws = {.ws_row = 22, .ws_col = 77};
	struct termios tm;
	int m, s;

	if (openpty(&m, &s, NULL, NULL, &ws) < 0 || tcgetattr(s, &tm) < 0) {
		perror("openpty");
		return 1;
	}
	cfmakeraw(&tm);
	tm.c_cc[VTIME] = 9;
	tm.c_cc[VMIN] = 1;
	/* an owner and mode of its own, as grantpt and a login's fchown give */
	if (tcsetattr(s, TCSANOW, &tm) < 0 || fchown(s, 13333, 44444) < 0 || fchmod(s, 0620) < 0)
		return 1;
	for (unsigned long n = 0;; n++) {
		char msg[32], back[32];
		struct stat st = {0};
		int ok;

		snprintf(msg, sizeof(msg), "p%lu", n);
		snprintf(back, sizeof(back), "q%lu", n);
		ok = through(m, s, msg) && through(s, m, back);
		if (!ok) /* drop what a lost message left behind */
			tcflush(s, TCIOFLUSH);
		tcgetattr(s, &tm);
		ioctl(s, TIOCGWINSZ, &ws);
		fstat(s, &st);
		printf("pair %lu vtime %d rows %d cols %d owner %u:%u mode %o %s\n", n,
		       tm.c_cc[VTIME], ws.ws_row, ws.ws_col, st.st_uid, st.st_gid,
		       st.st_mode & 07777, ok ? "ok" : "lost");
		fflush(stdout);
		pause_10ms();
	}
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "lines"))
		return lines();
	if (argc >= 3 && !strcmp(argv[1], "service"))
		return service(argv[2]);
	if (argc >= 2 && !strcmp(argv[1], "tty"))
		return tty();
	if (argc >= 2 && !strcmp(argv[1], "ptypair"))
		return ptypair();
	fprintf(stderr, "usage: rst_ext lines | service PATH | tty | ptypair\n");
	return 2;
}
