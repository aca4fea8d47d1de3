/*
 * rst_vmas.c - a process whose VMAs a checkpoint must carry exactly, or
 * refuse (tests/integration/rst_vmas.c).
 *
 *   rst_vmas DIR cases      every VMA of vmcases.h (cases-live: the same, restored
 *                           by a migration, droppable pages not expected zero)
 *   rst_vmas DIR CASE       one: protnone, noreserve, fileprot, guards, shmemprot,
 *                           flags
 *   rst_vmas DIR shmempriv  a shared anonymous object mapped three times:
 *                           shared, MAP_PRIVATE through /proc/self/map_files
 *                           at page 1, and shared again at page 2 (zdtm
 *                           shmemfd-priv): haul must refuse it by name
 *   rst_vmas DIR perfring   a perf event's ring buffer, its fd closed
 *                           (VmFlags "de"): haul must refuse it by name
 *   rst_vmas DIR filepriv   DIR/mapped, 8 pages of 'a'+page, mapped
 *                           MAP_PRIVATE in two VMAs (r-- and rw-), read
 *                           whole, page 5 written ('Z'): every page reads
 *                           back the same
 *   rst_vmas DIR fileelf    DIR/mapped a copy of this program (an ELF file
 *                           with a build-id), mapped MAP_PRIVATE whole: it
 *                           reads back the same
 *   rst_vmas DIR latedel    the "deleted" case of vmcases.h with the file
 *                           deleted on SIGUSR1 (prints "unlinked")
 *   rst_vmas DIR exedel     runs from DIR/exe, a copy of this program, deleted
 *                           once it runs (a server's binary upgraded under
 *                           it): /proc/self/exe stays that file, deleted,
 *                           and the "deleted" case of vmcases.h holds
 *
 * SIGUSR1 maps one more page (a new VMA: the layout's geometry changes)
 * and prints "grown".  It prints "ready" once set up, then waits for SIGUSR2 (blocked outside
 * sigsuspend: no signal is lost), checks the cases and prints "pass" or
 * "FAIL: what", exiting 0 or 1.  stdout should be a file.
 */
#include <linux/perf_event.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include "vmcases.h"

static volatile sig_atomic_t go;

static bool latedel;

static void on_usr1(int sig)
{
	(void)sig;
	if (latedel) { /* latedel: SIGUSR1 deletes the file instead */
		vmc_unlink_deleted();
		(void)!write(1, "unlinked\n", 9);
		return;
	}
	if (mmap(NULL, VMC_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) !=
	    MAP_FAILED)
		(void)!write(1, "grown\n", 6);
}

static void on_usr2(int sig)
{
	(void)sig;
	go = 1;
}

static int shmempriv(void)
{
	char path[96], *shared, *priv, *again;
	int fd;

	shared =
		mmap(NULL, 5 * VMC_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED)
		return -1;
	shared[VMC_PAGE] = 11;
	shared[2 * VMC_PAGE] = 111;
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)shared,
		 (unsigned long)shared + 5 * VMC_PAGE);
	fd = open(path, O_RDWR);
	if (fd < 0)
		return -1;
	priv = mmap(NULL, 5 * VMC_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, VMC_PAGE);
	again = mmap(NULL, 3 * VMC_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 2 * VMC_PAGE);
	close(fd);
	if (priv == MAP_FAILED || again == MAP_FAILED)
		return -1;
	priv[VMC_PAGE] = 22;
	return 0;
}

static int perfring(void)
{
	struct perf_event_attr a = {.type = PERF_TYPE_SOFTWARE,
				    .size = sizeof(a),
				    .config = PERF_COUNT_SW_DUMMY,
				    .disabled = 1};
	int fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
	void *ring;

	if (fd < 0)
		return -1;
	ring = mmap(NULL, 2 * VMC_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	return ring == MAP_FAILED ? -1 : 0;
}

#define FP_PAGES 8
static char *fp_map;

static int filepriv(const char *dir)
{
	char path[256], page[VMC_PAGE];
	volatile char sum = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/mapped", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	for (int i = 0; i < FP_PAGES; i++) {
		memset(page, 'a' + i, sizeof(page));
		if (write(fd, page, sizeof(page)) != (ssize_t)sizeof(page))
			return -EIO;
	}
	fp_map = mmap(NULL, FP_PAGES * VMC_PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (fp_map == MAP_FAILED ||
	    mprotect(fp_map + 4 * VMC_PAGE, 4 * VMC_PAGE, PROT_READ | PROT_WRITE))
		return -errno;
	for (int i = 0; i < FP_PAGES; i++)
		sum += fp_map[i * VMC_PAGE];
	fp_map[5 * VMC_PAGE] = 'Z';
	return 0;
}

static char *elf_want;
static size_t elf_len;

static int fileelf(const char *dir)
{
	char path[256];
	int in = open("/proc/self/exe", O_RDONLY | O_CLOEXEC), fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/mapped", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	elf_want = malloc(1 << 22);
	if (in < 0 || fd < 0 || !elf_want)
		return -errno;
	while ((n = read(in, elf_want + elf_len, (1 << 22) - elf_len)) > 0)
		elf_len += (size_t)n;
	close(in);
	if (write(fd, elf_want, elf_len) != (ssize_t)elf_len)
		return -EIO;
	fp_map = mmap(NULL, elf_len, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	return fp_map == MAP_FAILED ? -errno : 0;
}

static int filepriv_check(char *why, size_t len)
{
	if (elf_want) {
		if (memcmp(fp_map, elf_want, elf_len)) {
			snprintf(why, len, "the mapped copy of the program reads otherwise");
			return -1;
		}
		return 0;
	}
	for (int i = 0; i < FP_PAGES; i++) {
		char want = i == 5 ? 'Z' : (char)('a' + i);

		if (fp_map[i * VMC_PAGE] != want ||
		    fp_map[i * VMC_PAGE + VMC_PAGE - 1] != (char)('a' + i)) {
			snprintf(why, len, "page %d of the file mapping reads %c...%c", i,
				 fp_map[i * VMC_PAGE], fp_map[i * VMC_PAGE + VMC_PAGE - 1]);
			return -1;
		}
	}
	return 0;
}

/* exedel: run again from a copy of this program at DIR/exe, which the copy deletes. */
static int exedel(char **argv)
{
	char path[256], buf[65536];
	int in, out;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/exe", argv[1]);
	if (!strcmp(argv[2], "exedel")) {
		in = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
		out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
		if (in < 0 || out < 0)
			return -errno;
		while ((n = read(in, buf, sizeof(buf))) > 0)
			if (write(out, buf, (size_t)n) != n)
				return -EIO;
		close(in);
		close(out);
		argv[2] = "exedel-run";
		execv(path, argv);
		return -errno;
	}
	return unlink(path) ? -errno : vmcases_setup(argv[1], "deleted");
}

/* exedel: /proc/self/exe is DIR/exe, deleted. */
static int exedel_check(const char *dir, char *why, size_t len)
{
	char link[512], want[300];
	ssize_t n = readlink("/proc/self/exe", link, sizeof(link) - 1);

	link[n > 0 ? n : 0] = '\0';
	snprintf(want, sizeof(want), "%s/exe (deleted)", dir);
	if (strcmp(link, want))
		return snprintf(why, len, "exe is '%.100s', not '%.100s'", link, want), -1;
	return vmcases_check(why, len);
}

int main(int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_usr2}, grow = {.sa_handler = on_usr1};
	sigset_t block, old;
	char why[256] = "";
	int ret;

	if (argc != 3)
		return 2;
	setvbuf(stdout, NULL, _IONBF, 0);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	sigprocmask(SIG_BLOCK, &block, &old);
	sigdelset(&old, SIGUSR2); /* blocked already when exedel exec'd its copy */
	sigaction(SIGUSR2, &sa, NULL);
	sigaction(SIGUSR1, &grow, NULL);
	/* "cases-live": the cases, restored by a migration's path (droppable pages may stay) */
	vmc.image = strcmp(argv[2], "cases-live") != 0;
	if (!vmc.image)
		argv[2] = "cases";
	if (!strcmp(argv[2], "shmempriv"))
		ret = shmempriv();
	else if (!strcmp(argv[2], "perfring"))
		ret = perfring();
	else if (!strcmp(argv[2], "filepriv"))
		ret = filepriv(argv[1]);
	else if (!strcmp(argv[2], "fileelf"))
		ret = fileelf(argv[1]);
	else if (!strncmp(argv[2], "exedel", 6))
		ret = exedel(argv);
	else if ((latedel = !strcmp(argv[2], "latedel")))
		ret = vmcases_setup(argv[1], "latedel");
	else if ((ret = vmcases_setup(argv[1], strcmp(argv[2], "cases") ? argv[2] : NULL)) ==
		 -EINVAL)
		return 2;
	if (ret) {
		printf("setup failed: %s\n", strerror(-ret));
		return 3;
	}
	printf("ready guards=%d\n", vmc.have_guard);
	while (!go)
		sigsuspend(&old);
	if (!strcmp(argv[2], "exedel-run") ? exedel_check(argv[1], why, sizeof(why))
	    : fp_map			   ? filepriv_check(why, sizeof(why))
					   : vmcases_check(why, sizeof(why))) {
		printf("FAIL: %s\n", why);
		return 1;
	}
	printf("pass\n");
	return 0;
}
