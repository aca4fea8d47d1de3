/*
 * vmflags.bpf.c - a BPF task_vma iterator that writes, for each VMA of one
 * process, its start, end and the kernel's vm_flags word: three u64 records.
 *
 * It reads what /proc/PID/smaps prints as VmFlags without smaps's page-table
 * walk (see src/restore/vmflags.c).  The structs below name only the fields
 * read; libbpf relocates them against the running kernel's BTF (CO-RE), so no
 * vmlinux.h is needed.  vm_flags sits in an anonymous union since 6.3: CO-RE
 * finds it by name either way.
 */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct vm_area_struct {
	unsigned long vm_start;
	unsigned long vm_end;
	unsigned long vm_flags;
} __attribute__((preserve_access_index));

struct bpf_iter__task_vma {
	struct bpf_iter_meta *meta;
	void *task;
	struct vm_area_struct *vma;
} __attribute__((preserve_access_index));

SEC("iter/task_vma")
int haul_vmflags(struct bpf_iter__task_vma *ctx)
{
	struct vm_area_struct *vma = ctx->vma;
	__u64 rec[3];

	if (!vma)
		return 0;
	rec[0] = vma->vm_start;
	rec[1] = vma->vm_end;
	rec[2] = vma->vm_flags;
	bpf_seq_write(ctx->meta->seq, rec, sizeof(rec));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
