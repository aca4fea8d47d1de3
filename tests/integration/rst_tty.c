/*
 * rst_tty.c - terminals (fd_tty.c, fd_external.c): a shell job whose
 * stdio is a pty slave (the test holds the master, as a terminal emulator
 * would) is checkpointed and restored by a haul running on another pty:
 * the job writes on that terminal, with the termios and window size it
 * had set, and the terminal is its controlling terminal.  A haul without a
 * terminal gives it /dev/null and says so; a pty master is refused by name.
 * A console device comes back as the same device, by its path, or the
 * restore fails naming the fd where that path names another device.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "th_net.h"

static char dir[64], tag[32];
static pid_t prog = -1, restored = -1;
static int master = -1, master2 = -1, slave2 = -1;

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/haul-rsttty-%d", getpid());
	snprintf(tag, sizeof(tag), "rstttytag%d", getpid());
	mkdir(dir, 0755);
	setenv("HAUL_LOCK_DIR", dir, 1);
	if (access(th_haul_bin(), X_OK))
		cr_skip_test("no haul binary at %s", th_haul_bin());
}

static void teardown(void)
{
	int fd = restored > 0 ? (int)syscall(SYS_pidfd_open, restored, 0) : -1;

	if (fd >= 0) {
		syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
		close(fd);
	}
	th_kill(prog, SIGKILL, 2000);
	if (master >= 0)
		close(master);
	if (master2 >= 0)
		close(master2);
	if (slave2 >= 0)
		close(slave2);
	prog = restored = -1;
	master = master2 = slave2 = -1;
	unsetenv("HAUL_LOCK_DIR");
	th_sh("rm -rf %s", dir);
}

TestSuite(rst_tty, .init = setup, .fini = teardown, .timeout = 90);

/*
 * Run haul with @argv (NULL-terminated, after "haul"), stdin @in, its
 * stdout and stderr into @out; its exit status.
 */
static int run_haul(int in, char *out, size_t cap, const char *const argv[])
{
	const char *av[16] = {th_haul_bin()};
	size_t n = 0, k = 1;
	int p[2], st;
	pid_t pid;

	for (; argv[k - 1] && k < 15; k++)
		av[k] = argv[k - 1];
	av[k] = NULL;
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(in, 0);
		dup2(p[1], 1);
		dup2(p[1], 2);
		execv(av[0], (char *const *)av);
		_exit(127);
	}
	close(p[1]);
	while (n + 1 < cap) {
		ssize_t r = read(p[0], out + n, cap - 1 - n);

		if (r <= 0)
			break;
		n += r;
	}
	out[n] = '\0';
	close(p[0]);
	waitpid(pid, &st, 0);
	cr_log_info("haul %s ... -> %d: %s", argv[0], WIFEXITED(st) ? WEXITSTATUS(st) : -1, out);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* rst_ext @mode with stdio on @tty, no other fd, the tag last on its line. */
static pid_t spawn_on(int tty, const char *mode)
{
	char path[512];
	pid_t pid;

	snprintf(path, sizeof(path), "%s/rst_ext", th_progs_dir());
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(tty, 0);
		dup2(tty, 1);
		dup2(tty, 2);
		syscall(SYS_close_range, 3, ~0U, 0);
		execl(path, "rst_ext", mode, tag, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* A line from @fd (a pty master) within 5 s that holds @needle; 0 or -ETIMEDOUT. */
static int wait_tty_line(int fd, const char *needle, char *line, size_t len)
{
	char buf[8192];
	size_t n = 0;

	while (n + 1 < sizeof(buf)) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t r;
		char *hit;

		if (poll(&p, 1, 5000) != 1)
			break;
		r = read(fd, buf + n, sizeof(buf) - 1 - n);
		if (r <= 0)
			break;
		n += r;
		buf[n] = '\0';
		hit = strstr(buf, needle);
		if (hit && strchr(hit, '\n')) {
			snprintf(line, len, "%.*s", (int)(strchr(hit, '\n') - hit), hit);
			return 0;
		}
	}
	return -ETIMEDOUT;
}

/* The PID haul restore --detach printed (a line of digits in @out). */
static pid_t printed_pid(const char *out)
{
	for (const char *l = out; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		size_t n = strspn(l, "0123456789");

		if (n && (l[n] == '\n' || !l[n]))
			return atoi(l);
	}
	cr_assert_fail("no PID in: %s", out);
	return -1;
}

/* A shell job on a new pty (we hold the master), checkpointed: its image in DIR/img. */
static void checkpoint_job(void)
{
	char out[4096], line[256], pid[16], img[96];
	const char *ck[] = {"checkpoint", pid, "--images", img, NULL};
	int slave;

	cr_assert_eq(openpty(&master, &slave, NULL, NULL, NULL), 0);
	prog = spawn_on(slave, "tty");
	close(slave);
	cr_assert_eq(wait_tty_line(master, "tty ", line, sizeof(line)), 0, "the job never wrote");
	snprintf(pid, sizeof(pid), "%d", (int)prog);
	snprintf(img, sizeof(img), "%s/img", dir);
	cr_assert_eq(run_haul(open("/dev/null", O_RDONLY | O_CLOEXEC), out, sizeof(out), ck), 0,
		     "checkpoint failed: %s", out);
	cr_assert(strstr(out, "fd 0 of pid") && strstr(out, "terminal /dev/pts/"), "said: %s", out);
	th_kill(prog, SIGKILL, 2000);
	prog = -1;
}

Test(rst_tty, a_shell_job_comes_back_on_the_restoring_hauls_terminal_with_termios_size_and_ctty)
{
	char out[4096], line[256], img[96], stat[512], *p;
	const char *rs[] = {"restore", "--images", img, "--detach", NULL};
	struct termios tm;
	struct stat st;
	unsigned long tty_nr = 0;
	FILE *f;

	checkpoint_job();
	snprintf(img, sizeof(img), "%s/img", dir);
	cr_assert_eq(openpty(&master2, &slave2, NULL, NULL, NULL), 0);
	cr_assert_eq(run_haul(slave2, out, sizeof(out), rs), 0, "restore failed: %s", out);
	cr_expect(strstr(out, "stayed behind -> this haul's terminal /dev/pts/"), "said: %s", out);
	restored = printed_pid(out);
	/* its lines come out of the new terminal, and it still sees its own settings */
	cr_assert_eq(wait_tty_line(master2, "vtime 7 rows 33 cols 111", line, sizeof(line)), 0,
		     "no line with its termios and size on the new terminal");
	cr_assert_eq(tcgetattr(slave2, &tm), 0);
	cr_expect_eq(tm.c_cc[VTIME], 7);
	cr_expect_eq(tm.c_lflag & (ECHO | ICANON), 0u);
	/* the new terminal is its controlling terminal */
	snprintf(line, sizeof(line), "/proc/%d/stat", (int)restored);
	f = fopen(line, "r");
	cr_assert_not_null(f);
	cr_assert_not_null(fgets(stat, sizeof(stat), f));
	fclose(f);
	p = strrchr(stat, ')');
	cr_assert(p && sscanf(p + 1, " %*c %*d %*d %*d %lu", &tty_nr) == 1);
	cr_assert_eq(fstat(slave2, &st), 0);
	cr_expect_eq(((tty_nr >> 8) & 0xfff), major(st.st_rdev));
	cr_expect_eq((tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00), minor(st.st_rdev));
}

Test(rst_tty, a_haul_without_a_terminal_gives_the_job_dev_null_and_says_so)
{
	char out[4096], img[96], link[64], target[64];
	const char *rs[] = {"restore", "--images", img, "--detach", NULL};
	ssize_t n;

	checkpoint_job();
	snprintf(img, sizeof(img), "%s/img", dir);
	cr_assert_eq(run_haul(open("/dev/null", O_RDONLY | O_CLOEXEC), out, sizeof(out), rs), 0,
		     "restore failed: %s", out);
	cr_expect(strstr(out, "has no terminal"), "said: %s", out);
	restored = printed_pid(out);
	snprintf(link, sizeof(link), "/proc/%d/fd/1", (int)restored);
	n = readlink(link, target, sizeof(target) - 1);
	target[n > 0 ? n : 0] = '\0';
	cr_expect_str_eq(target, "/dev/null");
}

Test(rst_tty, a_pty_master_is_refused_by_name_and_the_process_runs_on)
{
	char out[4096], pid[16], img[96];
	const char *ck[] = {"checkpoint", pid, "--images", img, NULL};
	int m, s;

	/* the process holds a pty master: it is the terminal emulator */
	cr_assert_eq(openpty(&m, &s, NULL, NULL, NULL), 0);
	prog = spawn_on(m, "lines");
	close(m);
	master = s; /* its "line" output is read here, on the slave side */
	{
		char line[256];

		cr_assert_eq(wait_tty_line(master, "line ", line, sizeof(line)), 0);
	}
	snprintf(pid, sizeof(pid), "%d", (int)prog);
	snprintf(img, sizeof(img), "%s/img", dir);
	cr_expect_eq(run_haul(open("/dev/null", O_RDONLY | O_CLOEXEC), out, sizeof(out), ck), 1);
	cr_expect(strstr(out, "fd 0 is the master of pty /dev/pts/"), "said: %s", out);
	cr_expect_eq(kill(prog, 0), 0);
}

Test(rst_tty, a_pty_whose_both_ends_it_holds_comes_back_as_a_new_pair_with_termios_size_and_owner)
{
	char out[4096], pid[16], img[96], path[128], prg[512], line[256];
	const char *ck[] = {"checkpoint", pid, "--images", img, NULL};
	const char *rs[] = {"restore", "--images", img, "--detach", NULL};
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC), st;
	size_t at;

	snprintf(path, sizeof(path), "%s/pair.out", dir);
	snprintf(prg, sizeof(prg), "%s/rst_ext", th_progs_dir());
	prog = fork();
	cr_assert_geq(prog, 0);
	if (prog == 0) {
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(null, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		syscall(SYS_close_range, 3, ~0U, 0);
		execl(prg, "rst_ext", "ptypair", tag, (char *)NULL);
		_exit(127);
	}
	cr_assert_eq(th_wait_file(path, 0, "vtime 9 rows 22 cols 77 owner 13333:44444 mode 620 ok",
				  5000, line, sizeof(line)),
		     0, "the pair never worked");
	snprintf(pid, sizeof(pid), "%d", (int)prog);
	snprintf(img, sizeof(img), "%s/img", dir);
	/* a message in flight is refused (a pty's queue is not carried): taken again */
	for (int i = 0; (st = run_haul(null, out, sizeof(out), ck)) && i < 5; i++)
		cr_assert(strstr(out, "wait to be read"), "checkpoint failed: %s", out);
	cr_assert_eq(st, 0, "checkpoint failed: %s", out);
	th_kill(prog, SIGKILL, 2000);
	prog = -1;
	at = th_file_size(path);
	cr_assert_eq(run_haul(null, out, sizeof(out), rs), 0, "restore failed: %s", out);
	restored = printed_pid(out);
	/* messages go through the new pair again, with the settings it had */
	cr_expect_eq(th_wait_file(path, at, "vtime 9 rows 22 cols 77 owner 13333:44444 mode 620 ok",
				  5000, line, sizeof(line)),
		     0, "no working round trip after the restore");
	close(null);
}

/* sleep with stdio on /dev/null and fd 3 on @node (read-only), as a daemon holds a console. */
static pid_t spawn_holding(const char *node)
{
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR), fd = open(node, O_RDONLY | O_NOCTTY);

		if (null < 0 || fd < 0)
			_exit(126);
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		dup2(fd, 3);
		syscall(SYS_close_range, 4, ~0U, 0);
		setsid();
		execlp("sleep", "sleep", "600", (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* A console device node (5:1, as zdtm's console test makes) held as fd 3, checkpointed. */
static void checkpoint_console(char *node, size_t len)
{
	char out[4096], pid[16], img[96], want[192];
	const char *ck[] = {"checkpoint", pid, "--images", img, NULL};

	snprintf(node, len, "%s/console.node", dir);
	cr_assert_eq(mknod(node, S_IFCHR | 0600, makedev(5, 1)), 0, "mknod: %s", strerror(errno));
	prog = spawn_holding(node);
	usleep(200000);
	snprintf(pid, sizeof(pid), "%d", (int)prog);
	snprintf(img, sizeof(img), "%s/img", dir);
	cr_assert_eq(run_haul(open("/dev/null", O_RDONLY | O_CLOEXEC), out, sizeof(out), ck), 0,
		     "checkpoint failed: %s", out);
	snprintf(want, sizeof(want), "terminal %s stays behind -> the same terminal device", node);
	cr_expect(strstr(out, want), "said: %s", out);
	th_kill(prog, SIGKILL, 2000);
	prog = -1;
}

/* zdtm console and vt: a console was restored as /dev/null (the restoring haul had no tty). */
Test(rst_tty, a_console_device_comes_back_as_the_same_device)
{
	char out[4096], img[96], node[128], link[64];
	const char *rs[] = {"restore", "--images", img, "--detach", NULL};
	struct stat st;

	checkpoint_console(node, sizeof(node));
	snprintf(img, sizeof(img), "%s/img", dir);
	cr_assert_eq(run_haul(open("/dev/null", O_RDONLY | O_CLOEXEC), out, sizeof(out), rs), 0,
		     "restore failed: %s", out);
	restored = printed_pid(out);
	snprintf(link, sizeof(link), "/proc/%d/fd/3", (int)restored);
	cr_assert_eq(stat(link, &st), 0);
	cr_expect(S_ISCHR(st.st_mode) && st.st_rdev == makedev(5, 1), "fd 3 is %u:%u",
		  major(st.st_rdev), minor(st.st_rdev));
}

/* Its path names another device where it is restored: refused by fd and path, nothing runs. */
Test(rst_tty, a_console_whose_path_names_another_device_is_refused_by_name)
{
	char out[4096], img[96], node[128];
	const char *rs[] = {"restore", "--images", img, "--detach", NULL};

	checkpoint_console(node, sizeof(node));
	cr_assert_eq(unlink(node), 0);
	cr_assert_eq(mknod(node, S_IFCHR | 0600, makedev(1, 3)), 0);
	snprintf(img, sizeof(img), "%s/img", dir);
	cr_expect_neq(run_haul(open("/dev/null", O_RDONLY | O_CLOEXEC), out, sizeof(out), rs), 0,
		      "restored over another device: %s", out);
	cr_expect(strstr(out, "fd 3") && strstr(out, "is not the terminal device it was (5:1)"),
		  "said: %s", out);
}
