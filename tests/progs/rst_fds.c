/*
 * rst_fds - a single-threaded event loop over the fd kinds that are not
 * files: an epoll instance watching a semaphore eventfd, a periodic timerfd,
 * a signalfd, a pipe whose both ends it holds (a self-pipe with bytes
 * buffered in it) and a stream socketpair with bytes queued.
 *
 * usage: rst_fds ITERATIONS
 * Each iteration waits on epoll for the timer (1 ms period), takes one unit
 * from the eventfd and gives it back, raises SIGUSR1 (blocked) and reads it
 * from the signalfd, and rotates one byte through the pipe.  Every
 * invariant is checked; a broken one prints "ERROR ...".  The last line is
 * "final ok ITERATIONS"; the eventfd must still count 1000 and the pipe
 * hold its 100 bytes.  Progress "tick N" every 100 iterations on stdout.
 * If a restored copy lost the timer, epoll_wait would block forever (the
 * test's timeout catches it).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

static int errors;

static void check(int ok, const char *what, unsigned long long i)
{
	if (!ok) {
		printf("ERROR %s at iteration %llu (errno %d)\n", what, i, errno);
		fflush(stdout);
		errors++;
	}
}

int main(int argc, char **argv)
{
	struct itimerspec its = {{0, 1000000}, {0, 1000000}};
	unsigned long long iters, got_usr1 = 0, ticks = 0;
	struct epoll_event ev;
	int efd, tfd, sfd, ep, p[2], sv[2], high = -1;
	unsigned sum = 0;
	sigset_t usr1;

	if (argc != 2)
		return 2;
	iters = strtoull(argv[1], NULL, 10);
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	efd = eventfd(1000, EFD_SEMAPHORE | EFD_CLOEXEC);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	sfd = signalfd(-1, &usr1, SFD_NONBLOCK);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (efd < 0 || tfd < 0 || sfd < 0 || ep < 0 || pipe(p) ||
	    timerfd_settime(tfd, 0, &its, NULL))
		return 2;
	for (unsigned char b = 0; b < 100; b++)
		if (write(p[1], &b, 1) != 1)
			return 2;
	/* A socketpair talking to itself, 50 bytes queued towards sv[0]. */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return 2;
	for (unsigned char b = 0; b < 50; b++)
		if (write(sv[1], &b, 1) != 1)
			return 2;
	/* A high fd number, above a restorer's usual limit of 1024. */
	{
		struct rlimit rl;

		getrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_max >= 4096) {
			rl.rlim_cur = 4096;
			setrlimit(RLIMIT_NOFILE, &rl);
			high = dup2(efd, 3000);
		}
	}
	ev.events = EPOLLIN;
	ev.data.u64 = 0x7100000000ULL | (unsigned)tfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
	ev.data.u64 = 0x5100000000ULL | (unsigned)sfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
	ev.events = EPOLLIN | EPOLLET;
	ev.data.u64 = 0xe100000000ULL | (unsigned)efd;
	epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);

	for (unsigned long long i = 0; i < iters; i++) {
		struct epoll_event out[4];
		int timer_seen = 0, n;
		uint64_t v;
		unsigned char b;

		/* Wait for the timer; the other fds may report too. */
		while (!timer_seen) {
			n = epoll_wait(ep, out, 4, 5000);
			/* epoll_wait is not restarted after a stop (ptrace): EINTR, as for any event loop. */
			if (n < 0 && errno == EINTR)
				continue;
			check(n > 0, "epoll_wait returned nothing for 5 s", i);
			if (n <= 0)
				return 1;
			for (int k = 0; k < n; k++) {
				if (out[k].data.u64 == (0x7100000000ULL | (unsigned)tfd)) {
					timer_seen = 1;
					if (read(tfd, &v, 8) == 8)
						ticks += v;
				} else if (out[k].data.u64 != (0x5100000000ULL | (unsigned)sfd) &&
					   out[k].data.u64 != (0xe100000000ULL | (unsigned)efd)) {
					check(0, "epoll reported an unknown data word", i);
				}
			}
		}
		check(read(efd, &v, 8) == 8 && v == 1, "semaphore eventfd read", i);
		v = 1;
		check(write(efd, &v, 8) == 8, "eventfd write", i);

		raise(SIGUSR1);
		{
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo == SIGUSR1)
				got_usr1++;
			else
				check(0, "signalfd did not deliver SIGUSR1", i);
		}
		check(read(p[0], &b, 1) == 1, "self-pipe read", i);
		check(write(p[1], &b, 1) == 1, "self-pipe write", i);
		check(read(sv[0], &b, 1) == 1, "socketpair read", i);
		check(write(sv[1], &b, 1) == 1, "socketpair write", i);
		if (i % 100 == 0) {
			printf("tick %llu\n", i);
			fflush(stdout);
		}
	}
	/* The eventfd still counts 1000 and the pipe holds the 100 bytes 0..99. */
	{
		uint64_t v;
		unsigned long long units = 0;
		unsigned char buf[256];
		ssize_t n;

		fcntl(efd, F_SETFL, O_NONBLOCK);
		while (read(efd, &v, 8) == 8)
			units++;
		check(units == 1000, "eventfd count", iters);
		close(p[1]);
		n = read(p[0], buf, sizeof(buf));
		check(n == 100, "self-pipe holds 100 bytes", iters);
		for (ssize_t k = 0; k < n; k++)
			sum += buf[k];
		check(sum == 4950, "self-pipe bytes", iters);
		fcntl(sv[0], F_SETFL, O_NONBLOCK);
		n = read(sv[0], buf, sizeof(buf));
		check(n == 50, "socketpair holds 50 bytes", iters);
		sum = 0;
		for (ssize_t k = 0; k < n; k++)
			sum += buf[k];
		check(sum == 1225, "socketpair bytes", iters);
	}
	check(high < 0 || fcntl(high, F_GETFD) >= 0, "fd 3000 lost", iters);
	check(got_usr1 == iters, "SIGUSR1 count", iters);
	check(ticks >= iters, "timer ticks", iters);
	if (!errors)
		printf("final ok %llu\n", iters);
	return errors ? 1 : 0;
}
