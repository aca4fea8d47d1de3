/*
 * unix_skbs.bpf.c - a BPF unix socket iterator that writes, for the one
 * socket whose inode user space put in target_ino, the buffers (skbs) of its
 * receive queue in order: for each, the bytes still to read and how many
 * files ride with it (SCM_RIGHTS).
 *
 * Why: on a stream socket a buffer that carries files is handed to the
 * reader with the first byte of that buffer, and a read ends at its end;
 * MSG_PEEK shows where such a buffer ends but not where it starts (a peek
 * walks on past its last byte to the next buffer with files), so the
 * boundaries are read here (src/restore/fd_unix_stream.c).  The process is
 * frozen: its queue does not change while it is walked.  Records: one
 * struct uskb_rec per buffer; a last one with len ~0 says the queue had
 * more buffers than UNIX_SKBS_MAX.  CO-RE: the structs name only the fields
 * read; libbpf relocates them against the running kernel's BTF.
 */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#define UNIX_SKBS_MAX 4096

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct inode {
	unsigned long i_ino;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
} __attribute__((preserve_access_index));

struct socket {
	struct file *file;
} __attribute__((preserve_access_index));

struct sk_buff {
	struct sk_buff *next;
	unsigned int len;
	char cb[48];
} __attribute__((preserve_access_index));

struct sk_buff_head {
	struct sk_buff *next;
	__u32 qlen;
} __attribute__((preserve_access_index));

struct sock {
	struct socket *sk_socket;
	struct sk_buff_head sk_receive_queue;
} __attribute__((preserve_access_index));

struct unix_sock {
	struct sock sk;
} __attribute__((preserve_access_index));

struct scm_fp_list {
	short count;
} __attribute__((preserve_access_index));

struct unix_skb_parms {
	struct scm_fp_list *fp;
	__u32 consumed;
} __attribute__((preserve_access_index));

struct bpf_iter__unix {
	struct bpf_iter_meta *meta;
	struct unix_sock *unix_sk;
} __attribute__((preserve_access_index));

struct uskb_rec {
	__u32 len;  /* bytes still to read: len - consumed */
	__u32 nfds; /* files in flight with it */
};

__u64 target_ino = 0;

struct walk {
	struct seq_file *seq;
	struct sk_buff *skb, *head;
};

/* One buffer of the queue (bpf_loop's body): 1 stops at the queue's end. */
static long one_skb(__u32 i, struct walk *w)
{
	struct sk_buff *skb = w->skb;
	struct unix_skb_parms *cb;
	struct scm_fp_list *fp;
	struct uskb_rec r;

	(void)i;
	if (!skb || skb == w->head)
		return 1;
	cb = (void *)__builtin_preserve_access_index(&skb->cb);
	fp = BPF_CORE_READ(cb, fp);
	r.len = BPF_CORE_READ(skb, len) - BPF_CORE_READ(cb, consumed);
	r.nfds = fp ? (__u32)BPF_CORE_READ(fp, count) : 0;
	bpf_seq_write(w->seq, &r, sizeof(r));
	w->skb = BPF_CORE_READ(skb, next);
	return 0;
}

SEC("iter/unix")
int haul_unix_skbs(struct bpf_iter__unix *ctx)
{
	struct unix_sock *u = ctx->unix_sk;
	struct walk w;
	struct uskb_rec r;

	if (!u || !target_ino)
		return 0;
	if (BPF_CORE_READ(u, sk.sk_socket, file, f_inode, i_ino) != target_ino)
		return 0;
	w.seq = ctx->meta->seq;
	w.head = (struct sk_buff *)__builtin_preserve_access_index(&u->sk.sk_receive_queue);
	w.skb = BPF_CORE_READ(u, sk.sk_receive_queue.next);
	bpf_loop(UNIX_SKBS_MAX, one_skb, &w, 0);
	if (w.skb && w.skb != w.head) {
		r.len = ~0u;
		r.nfds = 0;
		bpf_seq_write(w.seq, &r, sizeof(r));
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
