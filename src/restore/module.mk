# src/restore/module.mk - the restorer's extra targets.
#  bench-restore: checkpoint and restore time for 0.25, 1 and 4 GiB, each as a
#                 ratio to reading / writing the same bytes in the same run
#                 (RST_BENCH_MIB="256 1024 4096", images in RST_BENCH_DIR=/var/tmp).
RST_BENCH_MIB ?= 256 1024 4096

bench-restore: $(BUILD)/progs/rst_bench
	RST_BENCH_MIB="$(RST_BENCH_MIB)" $(BUILD)/progs/rst_bench

.PHONY: bench-restore
