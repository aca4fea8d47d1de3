/*
 * read_file.c - read a stopped process's pages of a private file mapping
 * from the file itself, where that is the same thing.
 *
 * A page of a private file mapping that the process never wrote is the
 * file's page: either not mapped in the process (pagemap: not present) or
 * mapped from the page cache (present, a "file page", bit 61).  Only a page
 * the process wrote (its private copy: present and not a file page, or
 * swapped out) holds something else.  process_vm_readv pins every page it
 * reads, faulting into the process's page tables the ones not mapped
 * there: libc's 531 pages, mostly never touched by the process, took
 * 1.7-3.3 ms on the 2-core VM the first time, inside post-copy's stop
 * (postcopy.c re-reads the eager pages there to find the ones written
 * since they were sent), and 0.2 ms the second.  pread of the same bytes
 * from the page cache faults nothing in the process: the file is read
 * through /proc/PID/map_files (the mapped file itself, renamed or deleted
 * or not), and only the written pages through trk_read_pages().  Whatever
 * cannot be read the same way (the map_files link refused, a range past
 * the file's end) falls back to trk_read_pages() for the whole range.
 */
#define LOG_PREFIX "trk: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/probe.h"
#include "tracker/trk_int.h"

/* Whether pagemap entry @e is a page the process wrote (its own copy), not the file's. */
static bool written(uint64_t e)
{
	return (e & PM_ENTRY_SWAPPED) || ((e & PM_ENTRY_PRESENT) && !(e & PM_ENTRY_FILE));
}

/* pread @len bytes at @off of the file mapped at @v; 0, or -1 when not all of them came. */
static int read_mapped_file(pid_t pid, const struct haul_vma *v, uint64_t off, void *buf,
			    size_t len)
{
	char path[96];
	size_t got = 0;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/map_files/%llx-%llx", (int)pid,
		 (unsigned long long)v->start, (unsigned long long)v->end);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	while (got < len) {
		ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	return got == len ? 0 : -1;
}

/* Read the runs of pages of @r that pagemap @pm marks written from the process. */
static int read_written(pid_t pid, const struct trk_range *r, const uint64_t *pm, char *buf)
{
	for (uint64_t i = 0; i < r->npages; i++) {
		uint64_t j = i;
		struct trk_range w;
		int ret;

		if (!written(pm[i]))
			continue;
		while (j < r->npages && written(pm[j]))
			j++;
		w = (struct trk_range){r->start + i * TRK_PAGE, j - i};
		ret = trk_read_pages(pid, &w, 1, buf + i * TRK_PAGE, NULL);
		if (ret)
			return ret;
		i = j; /* page j is not written (or the end) */
	}
	return 0;
}

int trk_read_file_pages(pid_t pid, const struct haul_vma *v, const struct trk_range *r, void *buf,
			uint64_t *zero)
{
	uint64_t *pm = NULL, end = r->start + r->npages * TRK_PAGE;
	char path[64];
	int pmfd = -1, ret;

	if (!(v->flags & HAUL_VMA_FILE) || (v->flags & (HAUL_VMA_SHARED | HAUL_VMA_SHMEM)) ||
	    r->start < v->start || end > v->end || !r->npages)
		return trk_read_pages(pid, r, 1, buf, zero);
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	pmfd = open(path, O_RDONLY | O_CLOEXEC);
	pm = malloc(r->npages * sizeof(*pm));
	if (pmfd < 0 || !pm || trk_pagemap_read(pmfd, r->start, r->npages, pm) ||
	    read_mapped_file(pid, v, v->pgoff + (r->start - v->start), buf, r->npages * TRK_PAGE)) {
		ret = trk_read_pages(pid, r, 1, buf, zero);
		goto out;
	}
	ret = read_written(pid, r, pm, buf);
	if (!ret && zero)
		trk_zero_map(r, 1, buf, zero);
out:
	free(pm);
	if (pmfd >= 0)
		close(pmfd);
	return ret;
}
