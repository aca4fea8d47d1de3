# src/restore/module.mk - the restorer's extra targets.
#  bench-restore: checkpoint and restore time for 0.25, 1 and 4 GiB, each as a
#                 ratio to reading / writing the same bytes in the same run
#                 (RST_BENCH_MIB="256 1024 4096", images in RST_BENCH_DIR=/var/tmp).
#  bench-lazy:    the post-copy fault server alone: time until all memory arrived
#                 against UFFDIO_COPY of the same bytes (a local "link" as fast as
#                 memory), fault latency p50/p99 (LAZY_BENCH_SIZES="256M 1G").
#                 The migration itself: make bench-postcopy.
RST_BENCH_MIB ?= 256 1024 4096
LAZY_BENCH_SIZES ?= 256M 1G

bench-restore: $(BUILD)/progs/rst_bench
	RST_BENCH_MIB="$(RST_BENCH_MIB)" $(BUILD)/progs/rst_bench

bench-lazy: $(BUILD)/progs/lazy_bench $(BUILD)/progs/lazy_workload
	$(BUILD)/progs/lazy_bench -s "$(LAZY_BENCH_SIZES)" -r 3

.PHONY: bench-restore bench-lazy

# The BPF iterators, each compiled with clang for the BPF target and embedded
# in the library as bytes (.incbin, between haul_NAME_bpf and
# haul_NAME_bpf_end), so haul stays one binary.  CO-RE: no vmlinux.h, libbpf
# relocates at load.
#  vmflags:   VmFlags without smaps (vmflags.c), a task_vma iterator.
#  unix_skbs: where the buffers carrying files sit in a unix stream queue
#             (fd_unix_stream.c), a unix iterator.
BPF_CFLAGS := -O2 -g -target bpf -I/usr/include/$(shell $(CC) -print-multiarch)
BPF_EMBEDS := vmflags unix_skbs
LIB_OBJ += $(BPF_EMBEDS:%=$(BUILD)/gen/%_bpf.o)

$(BUILD)/gen/%.bpf.o: src/restore/bpf/%.bpf.c
	@mkdir -p $(dir $@)
	clang $(BPF_CFLAGS) -c -o $@ $<

$(BUILD)/gen/%_bpf.o: $(BUILD)/gen/%.bpf.o
	printf '%s\n' '.section .rodata' '.balign 8' '.global haul_$*_bpf' \
		'.global haul_$*_bpf_end' 'haul_$*_bpf:' '.incbin "$<"' \
		'haul_$*_bpf_end:' '.section .note.GNU-stack,"",@progbits' | \
		$(CC) -c -x assembler -o $@ -
