# bench/module.mk - `make bench` (reduced matrix, <= 10 min on 2 cores) and
# `make bench-full` (the whole matrix).  Both install what is missing, build,
# run the per-module micro benchmarks whose targets exist, then bench/run.sh.
# `make bench-postcopy`: issue 6's metrics (resume, fault latency, all memory
# against the link) for 1 and 4 GiB, against stop-and-copy in the same run,
# three repeats (about 10 minutes here); bench/results/postcopy/postcopy.md.
# `make bench-stalls`: issue 16's cells (1 and 4 GiB, 0 and 64 MiB/s, loopback and
# 1 Gbit/s, pre-copy and post-copy against stop-and-copy), PASS/FAIL per target, after
# bench-stall-phases (bench/stall_bench.c: what each tracker phase costs the workload).
# Every bench/run.sh run prints issue 16's targets for the cells it ran.
# Included before the Makefile's `all`: keep `all` the default goal.
bench_saved_goal := $(.DEFAULT_GOAL)
BENCH_MICRO := bench-ingest bench-tracker bench-restore bench-lazy bench-stall-phases
BENCH_OUT ?= bench/results

# A micro benchmark runs when some module.mk defines its target; its output goes
# to the terminal and to micro.txt, and its ratio lines are repeated at the end.
define bench_micro
	@mkdir -p $(1)
	@: >$(1)/micro.txt
	@for t in $(BENCH_MICRO); do \
		if $(MAKE) -q --no-print-directory BUILD=$(BUILD) $$t 2>&1 | \
				grep -q "No rule to make target '$$t'"; then \
			echo "bench: skipped: $$t (no such make target yet)" | tee -a $(1)/micro.txt; \
			continue; \
		fi; \
		echo "== $$t" | tee -a $(1)/micro.txt; \
		$(MAKE) --no-print-directory BUILD=$(BUILD) $$t 2>&1 | tee -a $(1)/micro.txt; \
	done
	@grep -iE 'ratio|[0-9] ?x ' $(1)/micro.txt | sed 's/^/bench: micro: /' || true
endef

bench: deps
	$(MAKE) --no-print-directory BUILD=$(BUILD) all
	$(call bench_micro,$(BENCH_OUT))
	BUILD=$(BUILD) bench/run.sh --quick --out $(BENCH_OUT)

bench-full: deps
	$(MAKE) --no-print-directory BUILD=$(BUILD) all
	$(call bench_micro,$(BENCH_OUT)/full)
	BUILD=$(BUILD) bench/run.sh --full --out $(BENCH_OUT)/full

bench-postcopy: deps
	$(MAKE) --no-print-directory BUILD=$(BUILD) all
	BUILD=$(BUILD) bench/run.sh --mems "1G 4G 16G" --rates 64 --bws "loopback 1gbit" \
		--modes "stop-and-copy post-copy" --no-peers --repeat 3 --budget 1800 \
		--out $(BENCH_OUT)/postcopy

.PHONY: bench-postcopy

bench-stall-phases: $(BUILD)/progs/stall_bench
	$(BUILD)/progs/stall_bench 1024 4096

# `make bench-throttle`: the pre-copy throttle alone, by depth: main's cpu.max against the
# freezer's duty cycle, as the workload's 1 ms heartbeat sees it (bench/throttle_bench.c).
bench-throttle: $(BUILD)/progs/throttle_bench $(BUILD)/progs/workload
	$(BUILD)/progs/throttle_bench

bench-stalls: deps
	$(MAKE) --no-print-directory BUILD=$(BUILD) all
	$(call bench_micro,$(BENCH_OUT)/stalls)
	BUILD=$(BUILD) bench/run.sh --stalls --no-peers --repeat 2 --budget 2400 \
		--out $(BENCH_OUT)/stalls

.PHONY: bench-stall-phases bench-stalls bench-throttle

# `make conformance ZDTM=DIR`: CRIU's zdtm static tests through haul checkpoint/restore
# and, for a sample, haul migrate between two network namespaces (bench/conformance/
# zdtm-run.py; DIR is a test/zdtm/static built outside this repository, see
# bench/RESULTS.md). ZDTM_ARGS passes more options (--as-root, --filter RE, --migrate N).
conformance:
	@test -n "$(ZDTM)" || { echo "make conformance: set ZDTM=/path/to/criu/test/zdtm/static" \
		"(built outside this repository; see bench/RESULTS.md)"; exit 2; }
	$(MAKE) --no-print-directory BUILD=$(BUILD) all
	bench/conformance/zdtm-run.py "$(ZDTM)" --haul $(BUILD)/haul \
		--out $(BENCH_OUT)/conformance $(ZDTM_ARGS)

.PHONY: conformance

# `make bench-shmem`: pre-copy of 1 GiB of shared memory with a small writer against
# stop-and-copy, per kind (bench/shm_bench.sh; bench/RESULTS.md "Shared memory").
bench-shmem: all $(BUILD)/progs/shm_workload
	BUILD=$(BUILD) bench/shm_bench.sh

.PHONY: bench-shmem

.DEFAULT_GOAL := $(bench_saved_goal)
