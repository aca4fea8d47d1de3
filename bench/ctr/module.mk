# bench/ctr/module.mk - `make bench-containers` (issue 14): a runc container
# under HTTP load migrated with `haul migrate --container`, against podman's
# checkpoint --export + copy + restore --import through haul's criu entry
# point, in the same run (bench/ctr/run.sh; bench/RESULTS.md "Containers").
# CTR_BENCH_ARGS passes --mib N and --repeat N.
# Included before the Makefile's `all`: keep `all` the default goal.
ctr_saved_goal := $(.DEFAULT_GOAL)

bench-containers: all
	BUILD=$(BUILD) bench/ctr/run.sh --out $(BENCH_OUT)/ctr $(CTR_BENCH_ARGS)

.PHONY: bench-containers

.DEFAULT_GOAL := $(ctr_saved_goal)
