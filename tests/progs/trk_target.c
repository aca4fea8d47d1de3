/*
 * trk_target.c - a process whose memory the tracker tests write on command.
 *
 * It maps one region of each kind the tracker must handle (anonymous, THP,
 * heap, stack, shared anonymous, file-private, file-shared), touches every
 * page, and then obeys binary commands on stdin, answering on stdout:
 *
 *   request: u32 op, u32 n, u64 arg, then n u64 values
 *   reply:   i64 status, u64 n, then n u64 values
 *
 * Every page holds a counter in its first 8 bytes, mirrored in a shadow
 * array on the side; OP_VERIFY compares them, so a test can tell that
 * tracking never changed what the program sees.  With argv[1] = "-d" it
 * double-forks first, so the target is not its starter's child.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "trk_proto.h"

#define PG 4096UL

struct region {
	uint64_t kind, addr, npages;
	uint64_t *shadow;
};

static struct region reg[TT_NKINDS + 8];
static int nreg;

static int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

static void reply(int64_t status, const uint64_t *v, uint64_t n)
{
	struct tt_reply r = {status, n};

	if (write_full(1, &r, sizeof(r)) || (n && write_full(1, v, n * 8)))
		_exit(3);
}

static void add_region(uint64_t kind, void *addr, uint64_t npages)
{
	struct region *r = &reg[nreg++];

	r->kind = kind;
	r->addr = (uintptr_t)addr;
	r->npages = npages;
	r->shadow = calloc(npages, sizeof(uint64_t));
	for (uint64_t i = 0; i < npages; i++) {
		uint64_t *p = (uint64_t *)(r->addr + i * PG);

		p[0] = 1;
		r->shadow[i] = 1;
	}
}

static struct region *find(uint64_t addr)
{
	for (int i = 0; i < nreg; i++)
		if (addr >= reg[i].addr && addr < reg[i].addr + reg[i].npages * PG)
			return &reg[i];
	return NULL;
}

static int write_page(uint64_t addr)
{
	struct region *r = find(addr);
	uint64_t i;

	if (!r)
		return -1;
	i = (addr - r->addr) / PG;
	((volatile uint64_t *)(r->addr + i * PG))[0] = ++r->shadow[i];
	return 0;
}

static uint64_t verify(void)
{
	uint64_t bad = 0;

	for (int k = 0; k < nreg; k++)
		for (uint64_t i = 0; i < reg[k].npages; i++)
			if (((uint64_t *)(reg[k].addr + i * PG))[0] != reg[k].shadow[i])
				bad++;
	return bad;
}

/*
 * Writer threads: thread i owns the pages whose running index is i modulo
 * the thread count, so each shadow entry has one writer.
 */
#define MAX_WRITERS 8
static pthread_t writers[MAX_WRITERS];
static int nwriters;
static volatile int writers_stop;
static uint64_t writer_pages[MAX_WRITERS];

static void *writer(void *arg)
{
	int id = (int)(intptr_t)arg;
	unsigned int seed = 1234u + (unsigned int)id;
	uint64_t total = 0;

	for (int k = 0; k < nreg; k++)
		total += reg[k].npages;
	while (!writers_stop) {
		uint64_t idx = ((uint64_t)rand_r(&seed) * 65536 + rand_r(&seed)) % total;
		int k = 0;

		idx -= idx % nwriters;
		idx += id;
		if (idx >= total)
			continue;
		while (idx >= reg[k].npages)
			idx -= reg[k++].npages;
		((volatile uint64_t *)(reg[k].addr + idx * PG))[0] = ++reg[k].shadow[idx];
		writer_pages[id]++;
	}
	return NULL;
}

/*
 * The churner changes the layout nonstop, so that maps, mremaps, munmaps,
 * MADV_DONTNEED and mprotect land in the middle of tracker rounds.  Its
 * memory has no shadow: tests compare the whole address space instead.
 */
#define CHURN_SLOTS 4
#define CHURN_PAGES 16
static pthread_t churn_thread;
static int churning;

static void churn_fill(char *p, int npages, unsigned int *seed, int every)
{
	for (int i = 0; i < npages; i += every)
		((volatile uint64_t *)(p + i * PG))[0] = (uint64_t)rand_r(seed) + 1;
}

static void *churner(void *arg)
{
	char *slot[CHURN_SLOTS] = {0};
	size_t len = CHURN_PAGES * PG;
	unsigned int seed = 777;

	(void)arg;
	while (!writers_stop) {
		int k = rand_r(&seed) % CHURN_SLOTS, act = rand_r(&seed) % 6;
		char *p = slot[k], *q;

		if (!p || act == 0) {
			/* (re)map, at the same address when there was one */
			if (p)
				munmap(p, len);
			q = mmap(p, len, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | (p ? MAP_FIXED_NOREPLACE : 0), -1,
				 0);
			if (q == MAP_FAILED)
				q = mmap(NULL, len, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			slot[k] = q == MAP_FAILED ? NULL : q;
			if (slot[k])
				churn_fill(slot[k], CHURN_PAGES, &seed, 2);
		} else if (act == 1) {
			/* move it */
			q = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (q != MAP_FAILED) {
				q = mremap(p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, q);
				slot[k] = q == MAP_FAILED ? p : q;
			}
		} else if (act == 2) {
			madvise(p + (rand_r(&seed) % CHURN_PAGES) * PG, PG, MADV_DONTNEED);
		} else if (act == 3) {
			mprotect(p, len / 2, PROT_READ);
			mprotect(p, len / 2, PROT_READ | PROT_WRITE);
		} else {
			int o = rand_r(&seed) % 4;

			churn_fill(p + o * PG, CHURN_PAGES - o, &seed, 5);
		}
	}
	return NULL;
}

static void *map_anon(uint64_t npages, int flags)
{
	void *p = mmap(NULL, npages * PG, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("trk_target: mmap");
		exit(2);
	}
	return p;
}

/*
 * TT_REMERGE: a mapping whose upper half is moved away and back.  Moved
 * back next to its lower half, it merges with it: with both registered by
 * a tracker, the kernel unregisters the merged VMA (mremap without
 * UFFD_FEATURE_EVENT_REMAP), and the lower half keeps its pages' uffd-wp
 * bits.  Every page holds a distinct value; page 3 is written after the
 * merge.  -> the mapping's address, or -errno.
 */
#define RM_PAGES 32
static char *rm_base, *rm_upper;

static int64_t remerge(uint64_t step)
{
	uint64_t half = RM_PAGES / 2 * PG;
	char *hole, *p;

	if (step == TT_RM_MERGE) {
		if (!rm_base)
			return -EINVAL;
		munmap(rm_base + half, half); /* the filler, if any */
		p = mremap(rm_upper, half, half, MREMAP_MAYMOVE | MREMAP_FIXED, rm_base + half);
		if (p == MAP_FAILED)
			return -errno;
		((volatile uint64_t *)(rm_base + 3 * PG))[0] += 1000;
		return (int64_t)(uintptr_t)rm_base;
	}
	rm_base = map_anon(RM_PAGES, MAP_PRIVATE);
	for (int i = 0; i < RM_PAGES; i++)
		((uint64_t *)(rm_base + i * PG))[0] = 0x5200 + i;
	hole = mmap(NULL, half, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (hole == MAP_FAILED)
		return -errno;
	rm_upper = mremap(rm_base + half, half, half, MREMAP_MAYMOVE | MREMAP_FIXED, hole);
	if (rm_upper == MAP_FAILED)
		return -errno;
	if (step == TT_RM_SPLIT_FILLED) {
		p = mmap(rm_base + half, half, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (p == MAP_FAILED)
			return -errno;
		for (int i = 0; i < RM_PAGES / 2; i++)
			((uint64_t *)(p + i * PG))[0] = 0x7700 + i;
	}
	return (int64_t)(uintptr_t)rm_base;
}

static void *map_file(uint64_t npages, int flags)
{
	char path[] = "/tmp/trk_target.XXXXXX";
	int fd = mkstemp(path);
	void *p;

	if (fd < 0 || ftruncate(fd, npages * PG)) {
		perror("trk_target: temp file");
		exit(2);
	}
	unlink(path);
	p = mmap(NULL, npages * PG, PROT_READ | PROT_WRITE, flags, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		perror("trk_target: mmap file");
		exit(2);
	}
	return p;
}

static void *map_thp(uint64_t npages)
{
	uint64_t len = npages * PG, align = 2UL << 20;
	char *p = map_anon(npages + align / PG, MAP_PRIVATE), *a;

	a = (char *)(((uintptr_t)p + align - 1) & ~(align - 1));
	if (a > p)
		munmap(p, a - p);
	munmap(a + len, (p + len + align) - (a + len));
	madvise(a, len, MADV_HUGEPAGE);
	return a;
}

static void serve(char *stackbuf)
{
	static uint64_t out[4 + (TT_NKINDS + 8) * 3];
	uint64_t *args = NULL;
	size_t cap = 0;

	for (;;) {
		struct tt_req q;
		uint64_t n = 0;

		if (read_full(0, &q, sizeof(q)))
			exit(0);
		if (q.n > cap) {
			cap = q.n;
			args = realloc(args, cap * 8);
		}
		if (q.n && read_full(0, args, q.n * 8))
			exit(0);
		switch (q.op) {
		case TT_INFO:
			out[n++] = (uint64_t)getpid();
			for (int i = 0; i < nreg; i++) {
				out[n++] = reg[i].kind;
				out[n++] = reg[i].addr;
				out[n++] = reg[i].npages;
			}
			reply(0, out, n);
			break;
		case TT_WRITE: {
			int64_t bad = 0;

			for (uint32_t i = 0; i < q.n; i++)
				bad += write_page(args[i]) != 0;
			reply(bad, NULL, 0);
			break;
		}
		case TT_VERIFY:
			out[0] = verify();
			reply(0, out, 1);
			break;
		case TT_MREMAP: {
			/* move region arg to a fresh address; the old range becomes a hole */
			struct region *r = &reg[q.arg];
			uint64_t len = r->npages * PG;
			void *dst = map_anon(r->npages, MAP_PRIVATE), *p;

			p = mremap((void *)r->addr, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
			if (p == MAP_FAILED) {
				reply(-errno, NULL, 0);
				break;
			}
			r->addr = (uintptr_t)p;
			out[0] = r->addr;
			reply(0, out, 1);
			break;
		}
		case TT_MMAP: {
			/* a new anonymous region of arg pages, every other page touched */
			char *p = map_anon(q.arg, MAP_PRIVATE);
			struct region *r = &reg[nreg++];

			r->kind = TT_NEW;
			r->addr = (uintptr_t)p;
			r->npages = q.arg;
			r->shadow = calloc(q.arg, 8);
			for (uint64_t i = 0; i < q.arg; i += 2) {
				((uint64_t *)(p + i * PG))[0] = 1;
				r->shadow[i] = 1;
			}
			out[0] = r->addr;
			reply(0, out, 1);
			break;
		}
		case TT_SPARSE: {
			/* a large, mostly empty region: one page touched in every 2 MiB */
			char *p = mmap(NULL, q.arg * PG, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

			if (p == MAP_FAILED) {
				reply(-errno, NULL, 0);
				break;
			}
			for (uint64_t i = 0; i < q.arg; i += 512)
				((uint64_t *)(p + i * PG))[0] = 1;
			out[0] = (uintptr_t)p;
			reply(0, out, 1);
			break;
		}
		case TT_PATCHY: {
			/*
			 * One VMA of 2n page tables, 2 MiB aligned, no THP: in the
			 * first n, every page but one in 16 touched; the others empty
			 */
			uint64_t chunk = 512 * PG, len = 2 * q.arg * chunk, head;
			char *p = mmap(NULL, len + chunk, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

			if (p == MAP_FAILED) {
				reply(-errno, NULL, 0);
				break;
			}
			head = (chunk - (uintptr_t)p % chunk) % chunk;
			if (head)
				munmap(p, head);
			munmap(p + head + len, chunk - head);
			p += head;
			madvise(p, len, MADV_NOHUGEPAGE);
			for (uint64_t i = 0; i < q.arg * 512; i++)
				if (i % 16 != 15)
					((uint64_t *)(p + i * PG))[0] = 1;
			out[0] = (uintptr_t)p;
			reply(0, out, 1);
			break;
		}
		case TT_REMERGE: {
			int64_t st = remerge(q.arg);

			out[0] = st < 0 ? 0 : (uint64_t)st;
			reply(st < 0 ? st : 0, out, 1);
			break;
		}
		case TT_REMAP_SAME: {
			/* munmap region arg and map a fresh one at the same address */
			struct region *r = &reg[q.arg];
			void *p;

			munmap((void *)r->addr, r->npages * PG);
			p = mmap((void *)r->addr, r->npages * PG, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
			if (p == MAP_FAILED) {
				reply(-errno, NULL, 0);
				break;
			}
			memset(r->shadow, 0, r->npages * 8);
			for (uint64_t i = 0; i < r->npages; i += 3) {
				((uint64_t *)((char *)p + i * PG))[0] = 7;
				r->shadow[i] = 7;
			}
			reply(0, NULL, 0);
			break;
		}
		case TT_ZAP:
			for (uint32_t i = 0; i < q.n; i++) {
				struct region *r = find(args[i]);

				madvise((void *)(args[i] & ~(PG - 1)), PG, MADV_DONTNEED);
				if (r && r->kind != TT_SHARED && r->kind != TT_FILE_SHARED)
					r->shadow[(args[i] - r->addr) / PG] = 0;
				else if (r) /* file/shmem pages come back from the page cache */
					r->shadow[(args[i] - r->addr) / PG] =
						((uint64_t *)(args[i] & ~(PG - 1)))[0];
			}
			reply(0, NULL, 0);
			break;
		case TT_FORK: {
			/* the child scribbles on its copy of args[] and exits; we do not */
			pid_t c = fork();
			int st;

			if (c == 0) {
				for (uint32_t i = 0; i < q.n; i++)
					((volatile uint64_t *)args[i])[0] += 100;
				_exit(0);
			}
			waitpid(c, &st, 0);
			/* its writes to shared memory are ours too */
			for (uint32_t i = 0; i < q.n; i++) {
				struct region *r = find(args[i]);

				if (r && (r->kind == TT_SHARED || r->kind == TT_FILE_SHARED))
					r->shadow[(args[i] - r->addr) / PG] =
						((uint64_t *)(args[i] & ~(PG - 1)))[0];
			}
			reply(0, NULL, 0);
			break;
		}
		case TT_THREADS:
			writers_stop = 0;
			nwriters = q.arg < MAX_WRITERS ? (int)q.arg : MAX_WRITERS;
			for (int i = 0; i < nwriters; i++)
				pthread_create(&writers[i], NULL, writer, (void *)(intptr_t)i);
			reply(0, NULL, 0);
			break;
		case TT_CHURN:
			writers_stop = 0;
			churning = pthread_create(&churn_thread, NULL, churner, NULL) == 0;
			reply(churning ? 0 : -EAGAIN, NULL, 0);
			break;
		case TT_QUIESCE:
			writers_stop = 1;
			if (churning)
				pthread_join(churn_thread, NULL);
			churning = 0;
			out[0] = 0;
			for (int i = 0; i < nwriters; i++) {
				pthread_join(writers[i], NULL);
				out[0] += writer_pages[i];
			}
			nwriters = 0;
			reply(0, out, 1);
			break;
		case TT_EXEC:
			reply(0, NULL, 0);
			execl("/proc/self/exe", "trk_target", NULL);
			_exit(4);
		case TT_EXIT:
			reply(0, NULL, 0);
			exit(0);
		default:
			reply(-EINVAL, NULL, 0);
		}
		(void)stackbuf;
	}
}

static void run(void)
{
	/* a region on this thread's stack: [stack] pages the tracker must follow */
	char stackbuf[TT_STACK_PAGES * PG + PG];
	char *st = (char *)(((uintptr_t)stackbuf + PG - 1) & ~(PG - 1));
	void *heap = sbrk(0);

	/* the heap: grow [heap] directly so the region is known exactly */
	if ((uintptr_t)heap & (PG - 1))
		sbrk(PG - ((uintptr_t)heap & (PG - 1)));
	heap = sbrk(TT_HEAP_PAGES * PG);
	if (heap == (void *)-1) {
		perror("trk_target: sbrk");
		exit(2);
	}
	add_region(TT_ANON, map_anon(TT_ANON_PAGES, MAP_PRIVATE), TT_ANON_PAGES);
	add_region(TT_THP, map_thp(TT_THP_PAGES), TT_THP_PAGES);
	add_region(TT_HEAP, heap, TT_HEAP_PAGES);
	add_region(TT_STACK, st, TT_STACK_PAGES);
	add_region(TT_SHARED, map_anon(TT_SHARED_PAGES, MAP_SHARED), TT_SHARED_PAGES);
	add_region(TT_FILE_PRIVATE, map_file(TT_FILE_PAGES, MAP_PRIVATE), TT_FILE_PAGES);
	add_region(TT_FILE_SHARED, map_file(TT_FILE_PAGES, MAP_SHARED), TT_FILE_PAGES);
	serve(st);
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "-d")) {
		pid_t c = fork();

		if (c < 0)
			return 2;
		if (c > 0) {
			int st;

			waitpid(c, &st, 0);
			return 0;
		}
		if (fork() != 0)
			_exit(0);
	}
	run();
	return 0;
}
