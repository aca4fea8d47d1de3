# src/tracker/module.mk - the tracker's extra targets.
#  bench-tracker: scan cost per GiB (clean, 1%, 10% dirty) per backend and the
#                 workload's write slowdown, as ratios to baselines of the same run.
#  test-qemu:     the soft-dirty backend for real, inside Debian's stock kernel
#                 under qemu (skips, exit 77, when qemu or the kernel cannot be had).
TRK_BENCH_MIB ?= 512

bench-tracker: $(BUILD)/progs/trk_bench
	$(BUILD)/progs/trk_bench $(TRK_BENCH_MIB)

test-qemu: $(BUILD)/progs/trk_target
	BUILD=$(BUILD) sh tests/extra/trk_softdirty_qemu.sh

.PHONY: bench-tracker test-qemu
